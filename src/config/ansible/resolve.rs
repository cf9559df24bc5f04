//! From Ansible's model to fleetfix hosts: groups reconciled as Ansible
//! does (`all`, `ungrouped`, depth), each host's variables merged with
//! Ansible's precedence, and the `ansible_*` connection variables turned
//! into settings, or refused when fleetfix cannot honour them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;

use super::{Origin, Sources, Value, Var};
use crate::support::error::{Error, Location};

/// One host, resolved: connection settings with where each came from, its
/// groups (every ancestor, `all` included) and its other variables.
#[derive(Debug, Clone)]
pub(crate) struct HostSpec {
    pub(crate) name: String,
    pub(crate) origin: Origin,
    pub(crate) host: Option<(String, Origin)>,
    pub(crate) port: Option<(u16, Origin)>,
    pub(crate) user: Option<(String, Origin)>,
    pub(crate) identity_file: Option<(PathBuf, Origin)>,
    pub(crate) connect_timeout: Option<(Duration, Origin)>,
    /// ProxyJump hops as written (`[user@]host[:port]`), first hop first.
    pub(crate) jump: Option<(Vec<String>, Origin)>,
    pub(crate) groups: Vec<String>,
    pub(crate) vars: IndexMap<String, Var>,
}

/// Resolves every host of `sources`, in the order they were first named.
pub(crate) fn resolve(sources: &Sources) -> Result<Vec<HostSpec>, Error> {
    let tree = Tree::build(sources)?;
    sources
        .hosts
        .iter()
        .map(|(name, _)| host(sources, &tree, name))
        .collect()
}

/// The variables of `all` (its own, then `group_vars/all`) other than
/// `ansible_*`: the lowest layer of every host, so fleetfix keeps them
/// once, as an inventory's fleet-wide `[vars]`, instead of a copy per
/// host (the hosts' own layers override them as node variables).
pub(crate) fn fleet_vars(sources: &Sources) -> IndexMap<String, Var> {
    let mut vars = IndexMap::new();
    if let Some(all) = sources.groups.get("all") {
        for (k, v) in all.vars.iter().chain(&all.file_vars) {
            if !is_ansible(k) {
                vars.insert(k.clone(), v.clone());
            }
        }
    }
    vars
}

/// Ansible's own variables: settings, or refused, or kept per host.
fn is_ansible(key: &str) -> bool {
    key.starts_with("ansible_")
}

/// The group graph as Ansible reconciles it.
struct Tree<'a> {
    parents: HashMap<&'a str, Vec<&'a str>>,
    /// Longest path from `all` (Ansible's `depth`).
    depth: HashMap<&'a str, usize>,
    priority: HashMap<&'a str, i64>,
    /// Groups each host was placed in directly.
    member_of: HashMap<&'a str, Vec<&'a str>>,
}

impl<'a> Tree<'a> {
    fn build(sources: &'a Sources) -> Result<Self, Error> {
        let mut parents: HashMap<&str, Vec<&str>> = HashMap::new();
        for (name, g) in &sources.groups {
            for c in &g.children {
                parents.entry(c.as_str()).or_default().push(name.as_str());
            }
        }
        // A group nobody holds is a child of `all`, as in Ansible.
        for name in sources.groups.keys() {
            if name != "all" && parents.get(name.as_str()).is_none_or(Vec::is_empty) {
                parents.insert(name.as_str(), vec!["all"]);
            }
        }
        let mut tree = Tree {
            parents,
            depth: HashMap::new(),
            priority: HashMap::new(),
            member_of: HashMap::new(),
        };
        for name in sources.groups.keys() {
            tree.depth_of(sources, name, &mut Vec::new())?;
        }
        for (name, g) in &sources.groups {
            if let Some(p) = g.vars.get("ansible_group_priority") {
                let n = as_int(&p.value).ok_or_else(|| {
                    error_at(
                        &p.origin,
                        format!("ansible_group_priority of group `{name}` is not a whole number"),
                        "give a number like 10; higher wins among groups of one depth",
                    )
                })?;
                tree.priority.insert(name.as_str(), n);
            }
            for h in &g.hosts {
                tree.member_of
                    .entry(h.as_str())
                    .or_default()
                    .push(name.as_str());
            }
        }
        Ok(tree)
    }

    /// `all` is 0; a group is one deeper than its deepest parent. A group
    /// that is its own ancestor is an error, as in Ansible.
    fn depth_of(
        &mut self,
        sources: &'a Sources,
        name: &'a str,
        path: &mut Vec<&'a str>,
    ) -> Result<usize, Error> {
        if name == "all" {
            return Ok(0);
        }
        if let Some(&d) = self.depth.get(name) {
            return Ok(d);
        }
        if path.contains(&name) {
            let origin = sources.groups.get(name).and_then(|g| g.origin.clone());
            let message = format!(
                "group `{name}` is its own ancestor ({} -> {name})",
                path.join(" -> ")
            );
            let hint = "remove one of the children entries so the groups form a tree";
            return Err(match origin {
                Some(o) => error_at(&o, message, hint),
                None => Error::input(message, hint),
            });
        }
        path.push(name);
        let parents = self.parents.get(name).cloned().unwrap_or_default();
        let mut depth = 0;
        for p in parents {
            let p: &'a str = sources
                .groups
                .get_key_value(p)
                .map_or(p, |(k, _)| k.as_str());
            depth = depth.max(self.depth_of(sources, p, path)? + 1);
        }
        path.pop();
        self.depth.insert(name, depth);
        Ok(depth)
    }

    /// Every group of `host` (ancestors included, `all` first), in
    /// Ansible's order of precedence: depth, then priority, then name.
    fn groups_of(&self, host: &str) -> Vec<&'a str> {
        let mut seen: Vec<&'a str> = vec!["all"];
        let mut todo: Vec<&'a str> = self.member_of.get(host).cloned().unwrap_or_default();
        // `ungrouped` holds exactly the hosts no other group holds (Ansible's
        // reconcile, whatever the sources said).
        if todo.iter().all(|g| *g == "all" || *g == "ungrouped") {
            todo.push("ungrouped");
        } else {
            todo.retain(|g| *g != "ungrouped");
        }
        while let Some(g) = todo.pop() {
            if seen.contains(&g) {
                continue;
            }
            seen.push(g);
            if let Some(ps) = self.parents.get(g) {
                todo.extend(ps.iter().copied());
            }
        }
        seen.sort_by(|a, b| {
            let key = |g: &str| {
                (
                    self.depth.get(g).copied().unwrap_or(0),
                    self.priority.get(g).copied().unwrap_or(1),
                )
            };
            key(a).cmp(&key(b)).then_with(|| a.cmp(b))
        });
        seen
    }
}

/// One host's variables merged with Ansible's precedence, low to high:
/// `all`'s, `group_vars/all`, the other groups' in order, their
/// `group_vars/` files, the host's own, its `host_vars/` file.
fn host<'a>(sources: &'a Sources, tree: &Tree<'_>, name: &str) -> Result<HostSpec, Error> {
    let groups = tree.groups_of(name);
    // Merged by reference; only the winners are copied.
    let mut merged: IndexMap<&str, &Var> = IndexMap::new();
    let put = |merged: &mut IndexMap<&'a str, &'a Var>, vars: &'a IndexMap<String, Var>| {
        for (k, v) in vars {
            merged.insert(k.as_str(), v);
        }
    };
    let group = |g: &str| sources.groups.get(g);
    // `all`'s own variables are the fleet's (`fleet_vars`), but for the
    // ansible_* ones, which each host needs among its settings.
    if let Some(all) = group("all") {
        for (k, v) in all.vars.iter().chain(&all.file_vars) {
            if is_ansible(k) {
                merged.insert(k.as_str(), v);
            }
        }
    }
    let others = groups.iter().filter(|g| **g != "all");
    // A group's `ansible_group_priority` is its priority, not a variable
    // (Ansible's `Group.set_variable`).
    for g in others.clone().filter_map(|g| group(g)) {
        for (k, v) in &g.vars {
            if k != "ansible_group_priority" {
                merged.insert(k.as_str(), v);
            }
        }
    }
    for g in others.filter_map(|g| group(g)) {
        put(&mut merged, &g.file_vars);
    }
    let Some(h) = sources.hosts.get(name) else {
        return Err(Error::input(
            format!("host `{name}` is named but not defined"),
            "this is a bug in fleetfix's Ansible reader",
        ));
    };
    put(&mut merged, &h.vars);
    put(&mut merged, &h.file_vars);
    let merged: IndexMap<String, Var> = merged
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    connection(name, h.origin.clone(), groups, merged)
}

/// Settings fleetfix takes from these variables; the key is Ansible's name
/// (and its older `ansible_ssh_*` spelling).
const HOST: &[&str] = &["ansible_host", "ansible_ssh_host"];
const PORT: &[&str] = &["ansible_port", "ansible_ssh_port"];
const USER: &[&str] = &["ansible_user", "ansible_ssh_user"];
const KEY: &[&str] = &["ansible_ssh_private_key_file", "ansible_private_key_file"];
const TIMEOUT: &[&str] = &["ansible_ssh_timeout", "ansible_timeout"];
const SSH_ARGS: &[&str] = &[
    "ansible_ssh_common_args",
    "ansible_ssh_extra_args",
    "ansible_ssh_args",
];
const PASSWORDS: &[&str] = &[
    "ansible_password",
    "ansible_ssh_pass",
    "ansible_ssh_password",
    "ansible_become_password",
    "ansible_become_pass",
    "ansible_sudo_pass",
    "ansible_sudo_password",
];

/// Takes the connection variables out of `vars` into settings.
fn connection(
    name: &str,
    origin: Origin,
    groups: Vec<&str>,
    mut vars: IndexMap<String, Var>,
) -> Result<HostSpec, Error> {
    refuse(name, &vars)?;
    let mut spec = HostSpec {
        name: name.to_string(),
        origin,
        host: None,
        port: None,
        user: None,
        identity_file: None,
        connect_timeout: None,
        jump: None,
        groups: groups.into_iter().map(String::from).collect(),
        vars: IndexMap::new(),
    };
    // Ansible's own name wins over the old `ansible_ssh_*` one.
    let mut take = |keys: &[&str]| {
        let found: Vec<(String, Var)> = keys
            .iter()
            .filter_map(|k| vars.shift_remove(*k).map(|v| (k.to_string(), v)))
            .collect();
        found.into_iter().next()
    };
    if let Some((k, v)) = take(HOST) {
        spec.host = Some((text(name, &k, &v)?, v.origin));
    }
    if let Some((k, v)) = take(PORT) {
        let port = as_int(&v.value)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| bad(name, &k, &v, "is not a port from 1 to 65535"))?;
        spec.port = Some((port, v.origin));
    }
    if let Some((k, v)) = take(USER) {
        spec.user = Some((text(name, &k, &v)?, v.origin));
    }
    if let Some((k, v)) = take(KEY) {
        let path = crate::config::toml_source::expand_tilde(&text(name, &k, &v)?);
        if !path.is_file() {
            return Err(bad(
                name,
                &k,
                &v,
                &format!("names {}, which does not exist", path.display()),
            ));
        }
        spec.identity_file = Some((path, v.origin));
    }
    if let Some((k, v)) = take(TIMEOUT) {
        let secs = as_int(&v.value)
            .filter(|s| (1..=86_400).contains(s))
            .ok_or_else(|| bad(name, &k, &v, "is not a number of seconds from 1 to 86400"))?;
        spec.connect_timeout = Some((Duration::from_secs(secs as u64), v.origin));
    }
    for key in SSH_ARGS {
        if let Some(v) = vars.shift_remove(*key) {
            ssh_args(name, key, &v, &mut spec)?;
        }
    }
    spec.vars = vars;
    Ok(spec)
}

/// Variables that would change what happens in ways fleetfix cannot do.
fn refuse(name: &str, vars: &IndexMap<String, Var>) -> Result<(), Error> {
    for key in PASSWORDS {
        if let Some(v) = vars.get(*key) {
            return Err(error_at(
                &v.origin,
                format!(
                    "host `{name}`: `{key}` sets a password; fleetfix logs in with keys only and never types a password"
                ),
                "use a key (ssh-agent, or ansible_ssh_private_key_file) and passwordless sudo (NOPASSWD) on the node",
            ));
        }
    }
    if let Some(v) = vars.get("ansible_connection") {
        let plugin = v.value.as_str().unwrap_or_default();
        if !matches!(plugin, "ssh" | "smart" | "paramiko" | "ansible.builtin.ssh") {
            return Err(error_at(
                &v.origin,
                format!(
                    "host `{name}`: `ansible_connection` is `{}`; fleetfix connects over SSH only",
                    show(&v.value)
                ),
                "remove the host from the selection (--limit '!NAME'), or set ansible_connection to ssh",
            ));
        }
    }
    if let Some(v) = vars.get("ansible_become_method")
        && v.value.as_str() != Some("sudo")
    {
        return Err(error_at(
            &v.origin,
            format!(
                "host `{name}`: `ansible_become_method` is `{}`; fleetfix becomes root with sudo only",
                show(&v.value)
            ),
            "use sudo on this host, or remove ansible_become_method",
        ));
    }
    for key in ["ansible_host_key_checking", "ansible_ssh_host_key_checking"] {
        if let Some(v) = vars.get(key)
            && !truthy(&v.value)
        {
            return Err(error_at(
                &v.origin,
                format!(
                    "host `{name}`: `{key}` turns host key checking off; fleetfix always verifies host keys"
                ),
                "remove it; for hosts not yet in known_hosts pass --accept-new-host-keys (trust on first use)",
            ));
        }
    }
    Ok(())
}

/// `ansible_ssh_common_args` and friends: ProxyJump (`-J`, `-o
/// ProxyJump=`, or a `ProxyCommand` of `ssh -W %h:%p HOST`),
/// ConnectTimeout, and options that change nothing for fleetfix; anything
/// else is refused rather than dropped.
fn ssh_args(name: &str, key: &str, v: &Var, spec: &mut HostSpec) -> Result<(), Error> {
    let line = text(name, key, v)?;
    let words = shell_words::split(&line)
        .map_err(|e| bad(name, key, v, &format!("cannot be split into words: {e}")))?;
    let mut options: Vec<(String, String)> = Vec::new();
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let mut value = |flag: &str, rest: &str| -> Result<String, Error> {
            if !rest.is_empty() {
                return Ok(rest.to_string());
            }
            it.next().ok_or_else(|| {
                bad(
                    name,
                    key,
                    v,
                    &format!("ends after {flag} without its value"),
                )
            })
        };
        if let Some(rest) = w.strip_prefix("-o") {
            let opt = value("-o", rest)?;
            let (k, val) = match opt.split_once('=') {
                Some((k, val)) => (k.trim().to_string(), val.trim().to_string()),
                None => match opt.split_once(char::is_whitespace) {
                    Some((k, val)) => (k.to_string(), val.trim().to_string()),
                    None => (opt.clone(), it.next().unwrap_or_default()),
                },
            };
            options.push((k, val));
        } else if let Some(rest) = w.strip_prefix("-J") {
            options.push(("ProxyJump".into(), value("-J", rest)?));
        } else {
            return Err(bad(
                name,
                key,
                v,
                &format!(
                    "has `{w}`, which fleetfix cannot honour (it takes -J and -o ProxyJump/ProxyCommand/ConnectTimeout)"
                ),
            ));
        }
    }
    for (opt, val) in options {
        match opt.to_ascii_lowercase().as_str() {
            "proxyjump" => {
                let hops: Vec<String> = val.split(',').map(|h| h.trim().to_string()).collect();
                if !val.eq_ignore_ascii_case("none") {
                    spec.jump = Some((hops, v.origin.clone()));
                }
            }
            "proxycommand" => {
                let hop = proxy_command_hop(&val).ok_or_else(|| {
                    bad(
                        name,
                        key,
                        v,
                        &format!("has ProxyCommand `{val}`, which is not `ssh -W %h:%p [user@]host`; fleetfix can only jump through an SSH host"),
                    )
                })?;
                spec.jump = Some((vec![hop], v.origin.clone()));
            }
            "connecttimeout" => {
                let secs: u64 = val
                    .parse()
                    .ok()
                    .filter(|s| (1..=86_400).contains(s))
                    .ok_or_else(|| {
                        bad(
                            name,
                            key,
                            v,
                            "has a ConnectTimeout that is not seconds from 1 to 86400",
                        )
                    })?;
                spec.connect_timeout = Some((Duration::from_secs(secs), v.origin.clone()));
            }
            // One connection per node, kept for the run; keepalives: these
            // change nothing fleetfix does.
            "controlmaster"
            | "controlpersist"
            | "controlpath"
            | "serveraliveinterval"
            | "serveralivecountmax"
            | "tcpkeepalive"
            | "compression"
            | "loglevel"
            | "identitiesonly"
            | "forwardagent" => {}
            _ => {
                return Err(bad(
                    name,
                    key,
                    v,
                    &format!("has `-o {opt}={val}`, which fleetfix cannot honour"),
                ));
            }
        }
    }
    Ok(())
}

/// The jump host of `ssh [-q] [-p PORT] [-l USER] -W %h:%p [user@]host`.
fn proxy_command_hop(command: &str) -> Option<String> {
    let words = shell_words::split(command).ok()?;
    let mut it = words.iter().map(String::as_str);
    let prog = it.next()?;
    if prog != "ssh" && !prog.ends_with("/ssh") {
        return None;
    }
    let (mut port, mut user, mut target, mut forwards) = (None, None, None, false);
    while let Some(w) = it.next() {
        match w {
            "-W" => forwards = it.next()? == "%h:%p",
            "-p" => port = Some(it.next()?),
            "-l" => user = Some(it.next()?),
            "-q" | "-T" | "-A" | "-4" | "-6" | "-C" | "-N" => {}
            w if !w.starts_with('-') && target.is_none() => target = Some(w),
            _ => return None,
        }
    }
    let target = target?;
    if !forwards {
        return None;
    }
    let mut hop = match (user, target.contains('@')) {
        (Some(u), false) => format!("{u}@{target}"),
        _ => target.to_string(),
    };
    if let Some(p) = port {
        hop = format!("{hop}:{p}");
    }
    Some(hop)
}

/// A variable that must be one word of text (a host, a user, a path).
fn text(name: &str, key: &str, v: &Var) -> Result<String, Error> {
    match &v.value {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(bad(name, key, v, "is not a text")),
    }
}

/// An integer, also from text (INI and scripts often quote numbers).
fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Ansible's boolean reading of a variable.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => matches!(
            s.to_ascii_lowercase().as_str(),
            "yes" | "on" | "1" | "true" | "t" | "y"
        ),
        Value::Number(n) => n.as_f64() != Some(0.0),
        _ => false,
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn bad(name: &str, key: &str, v: &Var, why: &str) -> Error {
    error_at(
        &v.origin,
        format!("host `{name}`: `{key}` ({}) {why}", show(&v.value)),
        "fix the variable in the inventory, or remove it",
    )
}

/// An input error pointing at a variable's origin.
pub(crate) fn error_at(origin: &Origin, message: String, hint: &str) -> Error {
    match origin.line {
        Some(line) if !origin.script => Error::at(
            Location {
                file: origin.file.to_path_buf(),
                line: line as usize,
                col: 1,
                source_line: None,
                caret: 0,
                width: 0,
            },
            message,
            hint,
        ),
        _ => Error::input(format!("{origin}: {message}"), hint),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;

    fn origin(line: u32) -> Origin {
        let file: Arc<Path> = Arc::from(Path::new("hosts"));
        Origin::at(&file, line)
    }

    fn var(value: Value, line: u32) -> Var {
        Var {
            value,
            origin: origin(line),
        }
    }

    /// all < parent < child < host; a group_vars file outranks every
    /// group's inventory vars; priority and name order groups of a depth.
    #[test]
    fn variables_follow_ansibles_precedence() {
        let mut s = Sources::default();
        let o = origin(1);
        s.add_child("prod", "web", &o);
        s.add_host("w1", Some("web"), &o);
        s.add_host("w1", Some("zeta"), &o);
        s.add_host("w1", Some("alpha"), &o);
        for (g, line) in [
            ("all", 1),
            ("prod", 2),
            ("web", 3),
            ("alpha", 4),
            ("zeta", 5),
        ] {
            s.set_group_var(g, "x", var(Value::from(g), line));
        }
        s.set_group_var("alpha", "y", var(Value::from("alpha"), 6));
        s.set_group_var("zeta", "y", var(Value::from("zeta"), 7));
        s.set_group_var("zeta", "ansible_group_priority", var(Value::from(0), 8));
        s.groups["prod"]
            .file_vars
            .insert("z".into(), var(Value::from("prod-file"), 9));
        s.set_group_var("web", "z", var(Value::from("web-inventory"), 10));
        let hosts = resolve(&s).expect("resolves");
        let h = &hosts[0];
        assert_eq!(h.vars["x"].value, "web", "the deepest group wins");
        assert_eq!(h.vars["y"].value, "alpha", "priority 0 < 1 at one depth");
        assert_eq!(
            h.vars["z"].value, "prod-file",
            "group_vars/ files outrank inventory vars"
        );
        assert_eq!(h.groups, ["all", "zeta", "alpha", "prod", "web"]);
        s.set_host_var("w1", "x", var(Value::from("host"), 11));
        assert_eq!(resolve(&s).expect("resolves")[0].vars["x"].value, "host");
    }

    #[test]
    fn hosts_without_a_group_are_ungrouped() {
        let mut s = Sources::default();
        s.add_host("lone", None, &origin(1));
        s.add_host("grouped", Some("g"), &origin(2));
        let hosts = resolve(&s).expect("resolves");
        assert_eq!(hosts[0].groups, ["all", "ungrouped"]);
        assert_eq!(hosts[1].groups, ["all", "g"]);
        // Named before any section (ungrouped), then in a group: not both.
        s.add_host("lone", Some("ungrouped"), &origin(3));
        s.add_host("lone", Some("late"), &origin(4));
        assert_eq!(resolve(&s).expect("resolves")[0].groups, ["all", "late"]);
    }

    #[test]
    fn connection_variables_become_settings() {
        let mut s = Sources::default();
        s.add_host("h", Some("g"), &origin(1));
        s.set_group_var("g", "ansible_user", var(Value::from("ops"), 2));
        s.set_host_var("h", "ansible_host", var(Value::from("10.0.0.5"), 3));
        s.set_host_var("h", "ansible_port", var(Value::from("2222"), 4));
        s.set_host_var(
            "h",
            "ansible_ssh_common_args",
            var(
                Value::from("-o ProxyJump=ops@bastion:2200,hop2 -o ConnectTimeout=7"),
                5,
            ),
        );
        s.set_host_var("h", "app", var(Value::from("relay"), 6));
        let h = &resolve(&s).expect("resolves")[0];
        assert_eq!(h.host.as_ref().map(|h| h.0.as_str()), Some("10.0.0.5"));
        assert_eq!(h.port.as_ref().map(|p| p.0), Some(2222));
        assert_eq!(
            h.user.as_ref().map(|u| (u.0.as_str(), u.1.line)),
            Some(("ops", Some(2)))
        );
        assert_eq!(
            h.jump.as_ref().map(|j| j.0.clone()),
            Some(vec!["ops@bastion:2200".to_string(), "hop2".to_string()])
        );
        assert_eq!(
            h.connect_timeout.as_ref().map(|t| t.0),
            Some(Duration::from_secs(7))
        );
        assert_eq!(h.vars.keys().collect::<Vec<_>>(), ["app"]);
    }

    #[test]
    fn a_proxy_command_through_ssh_is_a_jump() {
        assert_eq!(
            proxy_command_hop("ssh -W %h:%p -q ops@bastion").as_deref(),
            Some("ops@bastion")
        );
        assert_eq!(
            proxy_command_hop("/usr/bin/ssh -p 2200 -l ops -W %h:%p bastion").as_deref(),
            Some("ops@bastion:2200")
        );
        assert_eq!(proxy_command_hop("nc -X connect -x proxy:3128 %h %p"), None);
        assert_eq!(proxy_command_hop("ssh bastion nc %h %p"), None);
    }

    /// What fleetfix cannot honour is an error naming host and variable.
    #[test]
    fn what_cannot_be_honoured_is_refused_by_name() {
        let cases = [
            ("ansible_password", Value::from("hunter2")),
            ("ansible_become_pass", Value::from("x")),
            ("ansible_connection", Value::from("winrm")),
            ("ansible_become_method", Value::from("su")),
            (
                "ansible_ssh_common_args",
                Value::from("-o StrictHostKeyChecking=no"),
            ),
            ("ansible_ssh_extra_args", Value::from("-F other_config")),
            (
                "ansible_ssh_common_args",
                Value::from("-o ProxyCommand='nc %h %p'"),
            ),
            ("ansible_host_key_checking", Value::from(false)),
            ("ansible_port", Value::from("ssh")),
        ];
        for (key, value) in cases {
            let mut s = Sources::default();
            s.add_host("db1", None, &origin(1));
            s.set_host_var("db1", key, var(value.clone(), 7));
            let err = resolve(&s).expect_err(key).render();
            assert!(err.contains("hosts:7:"), "{key}: {err}");
            assert!(err.contains("db1") && err.contains(key), "{key}: {err}");
            assert!(!err.contains("hunter2"), "a password is never shown: {err}");
        }
        let mut s = Sources::default();
        s.add_host("ok", None, &origin(1));
        s.set_host_var("ok", "ansible_connection", var(Value::from("ssh"), 2));
        s.set_host_var("ok", "ansible_become_method", var(Value::from("sudo"), 3));
        resolve(&s).expect("ssh and sudo are fine");
    }

    #[test]
    fn a_group_that_is_its_own_ancestor_is_an_error() {
        let mut s = Sources::default();
        s.add_child("a", "b", &origin(1));
        s.add_child("b", "a", &origin(2));
        s.add_host("h", Some("a"), &origin(3));
        let err = resolve(&s).expect_err("a loop").render();
        assert!(err.contains("own ancestor"), "{err}");
    }
}
