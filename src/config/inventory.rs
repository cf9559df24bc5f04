//! The fleet: `inventory.toml` loaded into resolved nodes (SPEC section 3).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;
use serde_spanned::Spanned;

use crate::config::ansible::resolve::HostSpec;
use crate::config::ansible::{self, Origin};
use crate::config::ssh_config::HostSettings;
use crate::config::toml_source::{self, Zero, expand_tilde};
use crate::support::error::{Error, SourceFile};

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    #[serde(default)]
    defaults: RawSettings,
    #[serde(default)]
    vars: IndexMap<String, toml::Value>,
    #[serde(default)]
    jump_hosts: IndexMap<String, RawJumpHost>,
    #[serde(default)]
    nodes: IndexMap<String, Spanned<RawNode>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJumpHost {
    host: Spanned<String>,
    user: Option<Spanned<String>>,
    port: Option<Spanned<u16>>,
    identity_file: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<String>>,
    host_key: Option<Spanned<String>>,
}

/// `jump = "name"` or a list of hops.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "a [jump_hosts] name, \"user@host:port\", or a list of them"
)]
enum RawJump {
    One(String),
    Chain(Vec<String>),
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    user: Option<Spanned<String>>,
    port: Option<Spanned<u16>>,
    identity_file: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<String>>,
    jump: Option<Spanned<RawJump>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    host: Option<Spanned<String>>,
    user: Option<Spanned<String>>,
    port: Option<Spanned<u16>>,
    identity_file: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<String>>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    vars: IndexMap<String, toml::Value>,
    host_key: Option<Spanned<String>>,
    jump: Option<Spanned<RawJump>>,
}

/// One hop on the way to a node (a bastion).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpHost {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub identity_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub host_key: Option<HostKeyPin>,
}

impl JumpHost {
    /// `user@host:port`, as a person (and the connection cache) knows it.
    pub fn label(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }
}

/// How a node's host key is pinned in the inventory instead of known_hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyPin {
    /// `SHA256:…` as `ssh-keygen -l` prints it.
    Fingerprint(String),
    /// A full public key line, `ssh-ed25519 AAAA…`.
    PublicKey(String),
}

/// One node with every setting resolved (node, then `[defaults]`, then built-ins).
#[derive(Debug, Clone)]
pub struct Node {
    pub name: Arc<str>,
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Explicit identity file; `None` means the usual `~/.ssh/id_*`.
    pub identity_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub groups: Vec<String>,
    pub vars: IndexMap<String, toml::Value>,
    pub host_key: Option<HostKeyPin>,
    /// Bastions to go through, first hop first (empty: connect directly).
    pub jump: Vec<JumpHost>,
    /// Where each setting and variable came from, for an inventory in
    /// Ansible's formats (`fleetfix nodes` shows it); empty for TOML,
    /// where the node's table says it all.
    pub origins: Vec<(Arc<str>, Origin)>,
}

/// The loaded inventory file.
#[derive(Debug, Clone)]
pub struct Inventory {
    pub source: SourceFile,
    pub vars: IndexMap<String, toml::Value>,
    /// Where each of `vars` came from, for an Ansible inventory (its
    /// `all` group); empty for TOML.
    pub var_origins: Vec<(Arc<str>, Origin)>,
    pub nodes: Vec<Arc<Node>>,
}

impl Inventory {
    /// Loads and validates an inventory (fleetfix TOML, or Ansible's
    /// formats, told by content); unset settings fall back to
    /// `~/.ssh/config`.
    pub fn load(path: &std::path::Path) -> Result<Self, Error> {
        let ssh = crate::config::ssh_config::SshConfig::load_user()?;
        match ansible::load::read(path)? {
            ansible::load::Form::Toml(source) => Self::resolve(source, &ssh),
            ansible::load::Form::Ansible(sources) => {
                let hosts = ansible::resolve::resolve(&sources)?;
                let fleet = ansible::resolve::fleet_vars(&sources);
                Self::from_ansible(path, fleet, hosts, &ssh)
            }
        }
    }

    /// Nodes from an Ansible inventory's resolved hosts: the same rules
    /// as TOML nodes (ssh_config fallback, jump hops, name checks).
    fn from_ansible(
        path: &std::path::Path,
        fleet: IndexMap<String, ansible::Var>,
        hosts: Vec<HostSpec>,
        ssh: &crate::config::ssh_config::SshConfig,
    ) -> Result<Self, Error> {
        let defaults = Settings::default();
        let mut nodes = Vec::with_capacity(hosts.len());
        // One `vars.NAME` label per variable name, shared by every node.
        let mut labels: rustc_hash::FxHashMap<String, Arc<str>> = Default::default();
        for h in hosts {
            nodes.push(Arc::new(ansible_node(h, ssh, &defaults, &mut labels)?));
        }
        if nodes.is_empty() {
            return Err(Error::input(
                format!("the inventory {} defines no host", path.display()),
                "add hosts to a group, e.g. a line `web1 ansible_host=10.0.0.5` under [web]",
            ));
        }
        let mut vars = IndexMap::with_capacity(fleet.len());
        let mut var_origins = Vec::with_capacity(fleet.len());
        for (k, v) in fleet {
            if let Some(value) = ansible_value(v.value) {
                var_origins.push((Arc::from(format!("vars.{k}").as_str()), v.origin));
                vars.insert(k, value);
            }
        }
        Ok(Inventory {
            source: SourceFile {
                path: path.to_path_buf(),
                text: Arc::from(""),
            },
            vars,
            var_origins,
            nodes,
        })
    }

    /// Validates an inventory already in memory (no ssh_config).
    pub fn from_source(source: SourceFile) -> Result<Self, Error> {
        Self::resolve(source, &crate::config::ssh_config::SshConfig::default())
    }

    /// Validates an inventory, filling unset settings from `ssh`.
    pub fn resolve(
        source: SourceFile,
        ssh: &crate::config::ssh_config::SshConfig,
    ) -> Result<Self, Error> {
        let raw: RawInventory = toml_source::parse(&source, "inventory")?;
        let d = &raw.defaults;
        // [defaults]' key is checked once, here, not per node.
        let defaults = Settings {
            user: word(&source, &d.user, "user")?,
            port: port(&source, &d.port)?,
            identity_file: d
                .identity_file
                .as_ref()
                .map(|p| existing_identity(&source, p))
                .transpose()?,
            connect_timeout: d
                .connect_timeout
                .as_ref()
                .map(|t| toml_source::duration(&source, t, Zero::Refused))
                .transpose()?,
        };
        let mut nodes = Vec::with_capacity(raw.nodes.len());
        for (name, spanned) in raw.nodes {
            check_name(&source, &name, &spanned)?;
            let raw_node = spanned.into_inner();
            // ssh's own lookup: Host patterns match the name one would type.
            let alias = word(&source, &raw_node.host, "host")?.unwrap_or_else(|| name.clone());
            let fallback = ssh.query(&alias);
            let own = Settings {
                user: word(&source, &raw_node.user, "user")?,
                port: port(&source, &raw_node.port)?,
                identity_file: raw_node
                    .identity_file
                    .as_ref()
                    .map(|p| existing_identity(&source, p))
                    .transpose()?,
                connect_timeout: raw_node
                    .connect_timeout
                    .as_ref()
                    .map(|t| toml_source::duration(&source, t, Zero::Refused))
                    .transpose()?,
            };
            let conn = own.resolve(&defaults, &fallback);
            let host_key = match &raw_node.host_key {
                Some(k) => Some(parse_pin(&source, k)?),
                None => None,
            };
            let jump = match raw_node.jump.as_ref().or(d.jump.as_ref()) {
                Some(j) => resolve_jump(&source, &raw.jump_hosts, j, ssh, &defaults)?,
                None => ssh_config_jump(&fallback, ssh, &defaults),
            };
            nodes.push(Arc::new(Node {
                name: Arc::from(name.as_str()),
                host: fallback.host_name.clone().unwrap_or(alias),
                port: conn.port,
                user: conn.user,
                identity_file: conn.identity_file,
                connect_timeout: conn.connect_timeout,
                groups: raw_node.groups,
                vars: raw_node.vars,
                host_key,
                jump,
                origins: Vec::new(),
            }));
        }
        if nodes.is_empty() {
            return Err(Error::at(
                source.locate(0..0),
                "the inventory defines no node",
                "add at least one [nodes.NAME] table with a host",
            ));
        }
        Ok(Inventory {
            source,
            vars: raw.vars,
            var_origins: Vec::new(),
            nodes,
        })
    }

    /// Every group name used by some node, in first-seen order.
    pub fn groups(&self) -> Vec<&str> {
        let mut seen: Vec<&str> = Vec::new();
        for g in self.nodes.iter().flat_map(|n| n.groups.iter()) {
            if !seen.contains(&g.as_str()) {
                seen.push(g);
            }
        }
        seen
    }
}

/// One node from an Ansible host; settings it leaves unset fall back as a
/// TOML node's do.
fn ansible_node(
    h: HostSpec,
    ssh: &crate::config::ssh_config::SshConfig,
    defaults: &Settings,
    labels: &mut rustc_hash::FxHashMap<String, Arc<str>>,
) -> Result<Node, Error> {
    if !is_node_name(&h.name) {
        return Err(ansible::resolve::error_at(
            &h.origin,
            format!(
                "host name `{}` has characters other than letters, digits, `-`, `_`, `.`",
                h.name
            ),
            "name the host with those characters and put its address in ansible_host",
        ));
    }
    let mut origins: Vec<(Arc<str>, Origin)> = Vec::new();
    let mut note = |what: &str, o: &Origin| origins.push((Arc::from(what), o.clone()));
    let alias = match &h.host {
        Some((host, o)) => {
            note("host", o);
            host.clone()
        }
        None => h.name.clone(),
    };
    if let Some((_, o)) = &h.port {
        note("port", o);
    }
    if let Some((_, o)) = &h.user {
        note("user", o);
    }
    if let Some((_, o)) = &h.identity_file {
        note("identity_file", o);
    }
    if let Some((_, o)) = &h.connect_timeout {
        note("connect_timeout", o);
    }
    let fallback = ssh.query(&alias);
    let own = Settings {
        user: h.user.map(|u| u.0),
        port: h.port.map(|p| p.0),
        identity_file: h.identity_file.map(|i| i.0),
        connect_timeout: h.connect_timeout.map(|t| t.0),
    };
    let conn = own.resolve(defaults, &fallback);
    let jump = match &h.jump {
        Some((hops, o)) => {
            note("jump", o);
            hops.iter()
                .map(|hop| {
                    parse_hop(hop, ssh, defaults).ok_or_else(|| {
                        ansible::resolve::error_at(
                            o,
                            format!(
                                "host `{}`: ProxyJump hop `{hop}` is not [user@]host[:port]",
                                h.name
                            ),
                            "write the jump host as user@host:port",
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
        }
        None => ssh_config_jump(&fallback, ssh, defaults),
    };
    let mut vars = IndexMap::with_capacity(h.vars.len());
    for (k, v) in h.vars {
        if let Some(value) = ansible_value(v.value) {
            let label = match labels.get(&k) {
                Some(l) => l.clone(),
                None => {
                    let l: Arc<str> = Arc::from(format!("vars.{k}").as_str());
                    labels.insert(k.clone(), l.clone());
                    l
                }
            };
            origins.push((label, v.origin));
            vars.insert(k, value);
        }
    }
    Ok(Node {
        name: Arc::from(h.name.as_str()),
        host: fallback.host_name.clone().unwrap_or(alias),
        port: conn.port,
        user: conn.user,
        identity_file: conn.identity_file,
        connect_timeout: conn.connect_timeout,
        groups: h.groups,
        vars,
        host_key: None,
        jump,
        origins,
    })
}

/// An Ansible value as a TOML one. TOML has no null: a variable without a
/// value is left undefined (and so is a null inside a list or map).
fn ansible_value(v: serde_json::Value) -> Option<toml::Value> {
    use serde_json::Value as J;
    Some(match v {
        J::Null => return None,
        J::Bool(b) => toml::Value::Boolean(b),
        J::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => toml::Value::Integer(i),
            (None, Some(f)) if n.is_f64() => toml::Value::Float(f),
            _ => toml::Value::String(n.to_string()),
        },
        J::String(s) => toml::Value::String(s),
        J::Array(items) => {
            toml::Value::Array(items.into_iter().filter_map(ansible_value).collect())
        }
        J::Object(map) => toml::Value::Table(
            map.into_iter()
                .filter_map(|(k, v)| Some((k, ansible_value(v)?)))
                .collect(),
        ),
    })
}

/// A port that can be connected to: 0 cannot.
fn port(source: &SourceFile, p: &Option<Spanned<u16>>) -> Result<Option<u16>, Error> {
    match p {
        Some(p) if *p.get_ref() == 0 => Err(Error::at(
            source.locate(p.span()),
            "port 0 cannot be connected to",
            "ports run from 1 to 65535; sshd listens on 22 unless told otherwise",
        )),
        p => Ok(p.as_ref().map(|p| *p.get_ref())),
    }
}

/// A host or user name: not empty, no spaces or control characters (they
/// would be found out only on the fleet).
fn word(
    source: &SourceFile,
    v: &Option<Spanned<String>>,
    what: &str,
) -> Result<Option<String>, Error> {
    let Some(v) = v else { return Ok(None) };
    let text = v.get_ref();
    if !text.is_empty() && !text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Ok(Some(text.clone()));
    }
    let why = if text.is_empty() {
        "is empty"
    } else {
        "has spaces or control characters"
    };
    Err(Error::at(
        source.locate(v.span()),
        format!("{what} `{}` {why}", toml_source::shorten(text, 60)),
        format!("give the {what} as one word, or remove the key to use the default"),
    ))
}

/// Letters, digits, `-`, `_`, `.`: names go into file names and
/// `--limit` patterns.
fn is_node_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn check_name(source: &SourceFile, name: &str, at: &Spanned<RawNode>) -> Result<(), Error> {
    if is_node_name(name) {
        return Ok(());
    }
    Err(Error::at(
        source.locate(at.span()),
        format!("node name `{name}` has characters other than letters, digits, `-`, `_`, `.`"),
        "rename the node; names are used in file names and --limit patterns",
    ))
}

/// A configured identity file must exist: a typo here would otherwise
/// surface as an authentication failure on every node.
fn existing_identity(source: &SourceFile, path: &Spanned<String>) -> Result<PathBuf, Error> {
    let expanded = expand_tilde(path.get_ref());
    if expanded.is_file() {
        return Ok(expanded);
    }
    Err(Error::at(
        source.locate(path.span()),
        format!("identity file {} does not exist", expanded.display()),
        "fix the path, or remove identity_file to use ssh-agent and ~/.ssh/id_*",
    ))
}

/// The connection settings of a node or a jump host, or of `[defaults]`.
#[derive(Debug, Default)]
struct Settings {
    user: Option<String>,
    port: Option<u16>,
    identity_file: Option<PathBuf>,
    connect_timeout: Option<Duration>,
}

/// Connection settings with the rule applied.
struct Resolved {
    user: String,
    port: u16,
    identity_file: Option<PathBuf>,
    connect_timeout: Duration,
}

impl Settings {
    /// One rule for nodes and jump hosts alike, setting by setting: the
    /// entry's own, then `[defaults]`, then `~/.ssh/config` for its host,
    /// then the built-in (port 22, the local user, the usual keys, 10 s).
    fn resolve(self, defaults: &Settings, ssh: &HostSettings) -> Resolved {
        Resolved {
            user: self
                .user
                .or_else(|| defaults.user.clone())
                .or_else(|| ssh.user.clone())
                .unwrap_or_else(local_user),
            port: self.port.or(defaults.port).or(ssh.port).unwrap_or(22),
            identity_file: self
                .identity_file
                .or_else(|| defaults.identity_file.clone())
                .or_else(|| ssh.identity_file.clone()),
            connect_timeout: self
                .connect_timeout
                .or(defaults.connect_timeout)
                .or(ssh.connect_timeout)
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        }
    }
}

/// Resolves `jump`: `[jump_hosts]` names or `user@host:port` strings.
fn resolve_jump(
    source: &SourceFile,
    named: &IndexMap<String, RawJumpHost>,
    jump: &Spanned<RawJump>,
    ssh: &crate::config::ssh_config::SshConfig,
    defaults: &Settings,
) -> Result<Vec<JumpHost>, Error> {
    let hops = match jump.get_ref() {
        RawJump::One(h) => vec![h.clone()],
        RawJump::Chain(c) => c.clone(),
    };
    hops.iter()
        .map(|hop| match named.get(hop) {
            Some(j) => {
                let own = Settings {
                    user: word(source, &j.user, "user")?,
                    port: port(source, &j.port)?,
                    identity_file: j
                        .identity_file
                        .as_ref()
                        .map(|p| existing_identity(source, p))
                        .transpose()?,
                    connect_timeout: j
                        .connect_timeout
                        .as_ref()
                        .map(|t| toml_source::duration(source, t, Zero::Refused))
                        .transpose()?,
                };
                let host_key = j
                    .host_key
                    .as_ref()
                    .map(|k| parse_pin(source, k))
                    .transpose()?;
                let host = word(source, &Some(j.host.clone()), "host")?.unwrap_or_default();
                Ok(hop_with(&host, own, defaults, ssh, host_key))
            }
            None => parse_hop(hop, ssh, defaults).ok_or_else(|| {
                Error::at(
                    source.locate(jump.span()),
                    format!("jump host `{hop}` is neither a [jump_hosts] entry nor user@host:port"),
                    "define [jump_hosts.NAME] with a host, or write \"user@host:port\"",
                )
            }),
        })
        .collect()
}

/// The hops of `~/.ssh/config`'s ProxyJump for a node without its own
/// (none if one of them does not parse).
fn ssh_config_jump(
    fallback: &HostSettings,
    ssh: &crate::config::ssh_config::SshConfig,
    defaults: &Settings,
) -> Vec<JumpHost> {
    fallback
        .proxy_jump
        .iter()
        .map(|hop| parse_hop(hop, ssh, defaults))
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default()
}

/// `[user@]host[:port]`, resolved like any jump host.
fn parse_hop(
    hop: &str,
    ssh: &crate::config::ssh_config::SshConfig,
    defaults: &Settings,
) -> Option<JumpHost> {
    let (user, rest) = match hop.split_once('@') {
        Some((u, r)) => (Some(u.to_string()), r),
        None => (None, hop),
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, Some(p.parse().ok()?)),
        None => (rest, None),
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return None;
    }
    let own = Settings {
        user,
        port,
        ..Settings::default()
    };
    Some(hop_with(host, own, defaults, ssh, None))
}

/// A jump host at `host` (an ssh_config alias or a name) with the rule
/// applied to its own settings.
fn hop_with(
    host: &str,
    own: Settings,
    defaults: &Settings,
    ssh: &crate::config::ssh_config::SshConfig,
    host_key: Option<HostKeyPin>,
) -> JumpHost {
    let fallback = ssh.query(host);
    let conn = own.resolve(defaults, &fallback);
    JumpHost {
        host: fallback
            .host_name
            .clone()
            .unwrap_or_else(|| host.to_string()),
        port: conn.port,
        user: conn.user,
        identity_file: conn.identity_file,
        connect_timeout: conn.connect_timeout,
        host_key,
    }
}

fn parse_pin(source: &SourceFile, key: &Spanned<String>) -> Result<HostKeyPin, Error> {
    let text = key.get_ref().trim();
    if let Some(b64) = text.strip_prefix("SHA256:")
        && !b64.is_empty()
    {
        return Ok(HostKeyPin::Fingerprint(text.to_string()));
    }
    if russh::keys::ssh_key::PublicKey::from_openssh(text).is_ok() {
        return Ok(HostKeyPin::PublicKey(text.to_string()));
    }
    Err(Error::at(
        source.locate(key.span()),
        format!("host_key `{text}` is neither a SHA256 fingerprint nor a public key"),
        "use the `SHA256:…` fingerprint from `ssh-keygen -lf KEY.pub`, or the key line itself",
    ))
}

/// The user ssh would log in as when none is configured.
fn local_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "root".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Inventory, Error> {
        Inventory::from_source(SourceFile {
            path: "inv.toml".into(),
            text: text.into(),
        })
    }

    #[test]
    fn node_settings_fall_back_to_defaults() {
        let inv = load(
            "[defaults]\nuser = \"ops\"\nport = 2222\nconnect_timeout = \"3s\"\n\
             [nodes.a]\nhost = \"10.0.0.1\"\n[nodes.b]\nport = 22\nuser = \"root\"\n",
        )
        .expect("valid inventory");
        assert_eq!(inv.nodes[0].user, "ops");
        assert_eq!(inv.nodes[0].port, 2222);
        assert_eq!(inv.nodes[0].connect_timeout, Duration::from_secs(3));
        assert_eq!(inv.nodes[1].host, "b");
        assert_eq!(
            (inv.nodes[1].user.as_str(), inv.nodes[1].port),
            ("root", 22)
        );
    }

    /// One rule for every connection setting, nodes and jump hosts alike:
    /// the entry's own, then [defaults], then ssh_config, then built-ins.
    #[test]
    fn jump_hosts_take_every_setting_from_defaults_like_nodes() {
        let key = tempfile::NamedTempFile::new().expect("key file");
        let inv = load(&format!(
            "[defaults]\nuser = \"ops\"\nport = 2322\nconnect_timeout = \"3s\"\n\
             identity_file = \"{}\"\n\
             [jump_hosts.named]\nhost = \"bastion\"\n\
             [jump_hosts.own]\nhost = \"b2\"\nuser = \"admin\"\nport = 22\nconnect_timeout = \"9s\"\n\
             [nodes.a]\njump = \"named\"\n\
             [nodes.b]\njump = [\"ops2@hop1\", \"hop2:2200\"]\n\
             [nodes.c]\njump = \"own\"\n",
            key.path().display()
        ))
        .expect("valid");
        let hop = |n: usize, h: usize| &inv.nodes[n].jump[h];
        for (n, h) in [(0, 0), (1, 1)] {
            assert_eq!(hop(n, h).user, "ops", "{n}/{h}");
            assert_eq!(hop(n, h).identity_file.as_deref(), Some(key.path()));
            assert_eq!(hop(n, h).connect_timeout, Duration::from_secs(3));
        }
        assert_eq!(hop(0, 0).port, 2322, "[defaults].port, as for a node");
        assert_eq!((hop(1, 0).user.as_str(), hop(1, 0).port), ("ops2", 2322));
        assert_eq!(hop(1, 1).port, 2200);
        let own = hop(2, 0);
        assert_eq!(
            (own.user.as_str(), own.port, own.connect_timeout),
            ("admin", 22, Duration::from_secs(9)),
            "the hop's own keys win"
        );
        assert_eq!(inv.nodes[0].port, 2322);
    }

    #[test]
    fn nodes_keep_the_order_of_the_file() {
        let inv = load("[nodes.zeta]\n[nodes.alpha]\n[nodes.mid]\n").expect("valid");
        let names: Vec<&str> = inv.nodes.iter().map(|n| &*n.name).collect();
        assert_eq!(names, ["zeta", "alpha", "mid"]);
    }

    #[test]
    fn duplicate_node_is_an_error_with_position() {
        let err = load("[nodes.a]\nhost = \"x\"\n[nodes.a]\nhost = \"y\"\n").unwrap_err();
        let text = err.render();
        assert!(text.contains("inv.toml:3:"), "{text}");
    }

    #[test]
    fn bad_pin_is_rejected() {
        let err = load("[nodes.a]\nhost_key = \"nope\"\n").unwrap_err();
        assert!(
            err.render().contains("neither a SHA256"),
            "{}",
            err.render()
        );
    }
}
