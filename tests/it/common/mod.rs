//! Integration-test harness: real OpenSSH `sshd` daemons on loopback.
//!
//! [`Fleet`] starts `/usr/sbin/sshd -D -e -f CONF` child processes inside a
//! private temp dir. Every fleet gets its own random region of 127.0.0.0/8
//! (`127.A.B.C`, A != 0) and a random port, so fleets of concurrently running
//! test processes (cargo-nextest) never share an address; a bind conflict is
//! detected from the sshd log and retried with fresh addresses. Healthy nodes
//! are packed up to 16 `ListenAddress`es per sshd; every special node
//! (changed / unknown host key, rejected client key, `own_sshd`) gets an sshd
//! of its own. The fleet writes an unencrypted ed25519 client key (trusted via
//! `authorized_keys`), a `known_hosts` file, and on request an
//! `inventory.toml`.
//!
//! Dropping a [`Fleet`] stops its sshd processes by pid (SIGTERM, wait, then
//! SIGKILL if needed) and removes the temp dir. A small watchdog (`/bin/sh`)
//! per sshd terminates it if the test process dies without dropping the fleet.
//! Must run as root (sshd privilege separation, `PermitRootLogin`).
//!
//! ```ignore
//! let fleet = Fleet::builder().nodes(3).changed_host_key("evil").start();
//! let inventory = fleet.write_inventory(&[]);
//! ```
#![allow(dead_code)]

pub mod cli;
pub mod http;
pub mod lab;
pub mod netns;
pub mod servers;

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::hash::{BuildHasher, Hasher};
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Absolute path of the sshd binary (sshd refuses to re-exec otherwise).
pub const SSHD_PATH: &str = "/usr/sbin/sshd";
/// Absolute path of ssh-keygen.
pub const SSH_KEYGEN_PATH: &str = "/usr/bin/ssh-keygen";
/// sshd accepts at most 16 `ListenAddress` entries.
pub const MAX_ADDRS_PER_SSHD: usize = 16;

const START_ATTEMPTS: usize = 20;
const READY_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

/// Address of one node of the fleet.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeSpec {
    pub name: String,
    pub addr: Ipv4Addr,
    pub port: u16,
}

impl NodeSpec {
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.addr, self.port))
    }

    /// Host field as OpenSSH writes it in known_hosts: `ADDR` for port 22,
    /// `[ADDR]:PORT` otherwise.
    pub fn known_hosts_host(&self) -> String {
        known_hosts_host(self.addr, self.port)
    }
}

/// What a node simulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// Reachable, host key in known_hosts, client key accepted.
    Healthy,
    /// Its own sshd; known_hosts lists a *different* key for it.
    ChangedHostKey,
    /// Its own sshd; absent from known_hosts.
    UnknownHostKey,
    /// Its own sshd whose authorized_keys does not contain the client key.
    RejectsClientKey,
    /// Nothing listens on its address/port; absent from known_hosts.
    ClosedPort,
}

#[derive(Clone, Debug)]
struct ExtraNode {
    name: String,
    kind: NodeKind,
    own_sshd: bool,
}

/// Configures a [`Fleet`]; finish with [`FleetBuilder::start`].
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct FleetBuilder {
    healthy: usize,
    extra: Vec<ExtraNode>,
    port: Option<u16>,
    sshd_lines: Vec<String>,
}

impl FleetBuilder {
    /// Number of healthy nodes, named `node1..nodeN` (default 0).
    pub fn nodes(mut self, n: usize) -> Self {
        self.healthy = n;
        self
    }

    /// Extra node served by its own sshd with its own host key, while
    /// known_hosts lists another key for it ("host key changed").
    pub fn changed_host_key(self, name: impl Into<String>) -> Self {
        self.special(name.into(), NodeKind::ChangedHostKey, true)
    }

    /// Extra node served by its own sshd with its own host key, absent from
    /// known_hosts.
    pub fn unknown_host_key(self, name: impl Into<String>) -> Self {
        self.special(name.into(), NodeKind::UnknownHostKey, true)
    }

    /// Extra node served by its own sshd (host key in known_hosts) whose
    /// authorized_keys holds an unrelated key, not the client key.
    pub fn rejects_client_key(self, name: impl Into<String>) -> Self {
        self.special(name.into(), NodeKind::RejectsClientKey, true)
    }

    /// Extra node whose address/port has no listener (connection refused).
    pub fn closed_port(self, name: impl Into<String>) -> Self {
        self.special(name.into(), NodeKind::ClosedPort, false)
    }

    /// A healthy node served by an sshd of its own, so that
    /// [`Fleet::kill_node`] takes down only that node. If `name` is one of
    /// `node1..nodeN` that node is moved to its own sshd; any other name adds
    /// an extra healthy node.
    pub fn own_sshd(self, name: impl Into<String>) -> Self {
        self.special(name.into(), NodeKind::Healthy, true)
    }

    /// Use this port for every sshd instead of a random one in 20000..=60000
    /// (e.g. 22, to get plain `ADDR` entries in known_hosts).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    fn special(mut self, name: String, kind: NodeKind, own_sshd: bool) -> Self {
        self.extra.push(ExtraNode {
            name,
            kind,
            own_sshd,
        });
        self
    }

    /// Generates keys, starts every sshd and waits until each address
    /// answers with an SSH banner. Panics (with the sshd log) on failure.
    /// An extra line for every sshd_config of the fleet (e.g.
    /// `TrustedUserCAKeys /path/ca.pub`).
    pub fn sshd_config(mut self, line: impl Into<String>) -> Self {
        self.sshd_lines.push(line.into());
        self
    }

    pub fn start(self) -> Fleet {
        Fleet::launch(self)
    }
}

struct SshdProc {
    pid: u32,
    child: Child,
    watchdog: Option<Child>,
    stopped: bool,
}

struct SshdSlot {
    dir: PathBuf,
    host_key: PathBuf,
    config: PathBuf,
    log: PathBuf,
    authorized_keys: PathBuf,
    nodes: Vec<usize>,
    proc_: Mutex<Option<SshdProc>>,
}

/// A set of real sshd processes on loopback; see the module docs.
pub struct Fleet {
    nodes: Vec<NodeSpec>,
    kinds: Vec<NodeKind>,
    node_slot: Vec<Option<usize>>,
    slots: Vec<SshdSlot>,
    client_key: PathBuf,
    authorized_keys: PathBuf,
    known_hosts: PathBuf,
    decoy_host_key: Option<PathBuf>,
    sshd_lines: Vec<String>,
    // Last field: removed after `Drop::drop` has stopped the daemons.
    dir: tempfile::TempDir,
}

impl Fleet {
    pub fn builder() -> FleetBuilder {
        FleetBuilder::default()
    }

    /// `n` healthy nodes named `node1..nodeN`, all keys trusted, sshd ready.
    pub fn start(n: usize) -> Fleet {
        Fleet::builder().nodes(n).start()
    }

    /// The fleet's temp dir (tests may put their own files here).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// node1..nodeN in order, then the special nodes in builder-call order.
    pub fn nodes(&self) -> &[NodeSpec] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> &NodeSpec {
        &self.nodes[self.index_of(name)]
    }

    pub fn node_kind(&self, name: &str) -> NodeKind {
        self.kinds[self.index_of(name)]
    }

    /// Unencrypted ed25519 private key accepted by every sshd except the
    /// `rejects_client_key` ones.
    pub fn client_key(&self) -> &Path {
        &self.client_key
    }

    /// The authorized_keys file (client key only) used by the accepting sshds.
    pub fn authorized_keys(&self) -> &Path {
        &self.authorized_keys
    }

    /// known_hosts with one `HOST ssh-ed25519 BASE64` line per node, except
    /// `unknown_host_key` and `closed_port` nodes; HOST is `ADDR` for port 22
    /// and `[ADDR]:PORT` otherwise. `changed_host_key` nodes are listed with
    /// a decoy key that their sshd does not have.
    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }

    /// Writes `<dir>/inventory.toml` for all nodes and returns its path.
    /// `extra_node_toml` holds `(node name, TOML lines)` appended inside that
    /// node's `[nodes.NAME]` table (several entries per node are allowed).
    pub fn write_inventory(&self, extra_node_toml: &[(&str, &str)]) -> PathBuf {
        self.write_inventory_with(None, "", extra_node_toml)
    }

    /// Like [`Fleet::write_inventory`] but only for the named nodes, in the
    /// given order (odd/even/first groups still follow the fleet position).
    pub fn write_inventory_for(&self, names: &[&str], extra_node_toml: &[(&str, &str)]) -> PathBuf {
        self.write_inventory_with(Some(names), "", extra_node_toml)
    }

    /// The general form: `names` (None = all nodes), `extra_top_toml` is
    /// inserted right after the `[defaults]` keys (so it may add keys to
    /// `[defaults]` or start new tables such as `[vars]`), and
    /// `extra_node_toml` as for [`Fleet::write_inventory`].
    ///
    /// Format per node:
    /// ```toml
    /// [nodes.node1]
    /// host = "127.A.B.C"
    /// port = 22
    /// groups = ["all-test", "odd", "first"]
    /// vars = { marker_dir = "<dir>/markers/node1" }
    /// <extra lines>
    /// ```
    /// `markers/<name>` directories are created.
    pub fn write_inventory_with(
        &self,
        names: Option<&[&str]>,
        extra_top_toml: &str,
        extra_node_toml: &[(&str, &str)],
    ) -> PathBuf {
        let idxs: Vec<usize> = match names {
            None => (0..self.nodes.len()).collect(),
            Some(names) => names.iter().map(|n| self.index_of(n)).collect(),
        };
        for (name, _) in extra_node_toml {
            let i = self.index_of(name);
            assert!(
                idxs.contains(&i),
                "write_inventory: extra TOML given for node {name:?}, which is not in the inventory"
            );
        }
        let mut s = String::new();
        let _ = writeln!(s, "[defaults]");
        let _ = writeln!(s, "user = \"root\"");
        let _ = writeln!(
            s,
            "identity_file = {}",
            toml_str(&self.client_key.to_string_lossy())
        );
        let _ = writeln!(s, "connect_timeout = \"5s\"");
        if !extra_top_toml.trim().is_empty() {
            let _ = writeln!(s, "{}", extra_top_toml.trim_end());
        }
        for &i in &idxs {
            let node = &self.nodes[i];
            let marker = self.dir().join("markers").join(&node.name);
            fs::create_dir_all(&marker)
                .unwrap_or_else(|e| panic!("create marker dir {}: {e}", marker.display()));
            let pos = i + 1;
            let mut groups = vec!["all-test", if pos % 2 == 1 { "odd" } else { "even" }];
            if pos == 1 {
                groups.push("first");
            }
            let groups: Vec<String> = groups.iter().map(|g| toml_str(g)).collect();
            let _ = writeln!(s, "\n[nodes.{}]", toml_key(&node.name));
            let _ = writeln!(s, "host = \"{}\"", node.addr);
            let _ = writeln!(s, "port = {}", node.port);
            let _ = writeln!(s, "groups = [{}]", groups.join(", "));
            let _ = writeln!(
                s,
                "vars = {{ marker_dir = {} }}",
                toml_str(&marker.to_string_lossy())
            );
            for (_, toml) in extra_node_toml.iter().filter(|(n, _)| *n == node.name) {
                let _ = writeln!(s, "{}", toml.trim_end());
            }
        }
        let path = self.dir().join("inventory.toml");
        fs::write(&path, s).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// `ssh-ed25519 AAAA...` of the host key the node's sshd really serves
    /// (for a `changed_host_key` node: its real key, not the known_hosts one).
    pub fn host_pubkey_line(&self, node: &str) -> String {
        pubkey_line(&pub_path(&self.slot_of(node).host_key))
    }

    /// The private host key file of the node's sshd (its `.pub` beside it).
    pub fn host_key_path(&self, node: &str) -> PathBuf {
        self.slot_of(node).host_key.clone()
    }

    /// `SHA256:...` of the node's real host key, as `ssh-keygen -lf` prints it.
    pub fn host_fingerprint(&self, node: &str) -> String {
        fingerprint(&pub_path(&self.slot_of(node).host_key))
    }

    /// `ssh-ed25519 AAAA...` that known_hosts lists for a `changed_host_key`
    /// node (the decoy key), or the real key for other listed nodes.
    pub fn known_hosts_pubkey_line(&self, node: &str) -> String {
        match (self.node_kind(node), &self.decoy_host_key) {
            (NodeKind::ChangedHostKey, Some(decoy)) => pubkey_line(&pub_path(decoy)),
            _ => self.host_pubkey_line(node),
        }
    }

    /// Pid of the sshd serving `node` (still the old pid after `kill_node`).
    pub fn sshd_pid(&self, node: &str) -> u32 {
        let slot = self.slot_of(node);
        let guard = lock(&slot.proc_);
        guard
            .as_ref()
            .map(|p| p.pid)
            .unwrap_or_else(|| panic!("sshd for node {node:?} was never started"))
    }

    /// Names of all nodes served by the same sshd as `node` (including it);
    /// [`Fleet::kill_node`] takes all of them down.
    pub fn sshd_group(&self, node: &str) -> Vec<&str> {
        self.slot_of(node)
            .nodes
            .iter()
            .map(|&i| self.nodes[i].name.as_str())
            .collect()
    }

    /// Current contents of the log of the sshd serving `node`.
    pub fn sshd_log(&self, node: &str) -> String {
        read_log(&self.slot_of(node).log)
    }

    /// SIGKILLs the sshd serving `node` (by pid) plus that sshd's own
    /// descendants (its live SSH sessions), and reaps it. Every node of
    /// [`Fleet::sshd_group`] goes down; use [`FleetBuilder::own_sshd`] to
    /// isolate a node. New connections are refused once this returns.
    /// Killing an already killed node is a no-op.
    pub fn kill_node(&self, node: &str) {
        let slot = self.slot_of(node);
        let mut guard = lock(&slot.proc_);
        match guard.as_mut() {
            Some(p) => stop_proc(p, true),
            None => panic!("kill_node: sshd for node {node:?} was never started"),
        }
    }

    fn index_of(&self, name: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .unwrap_or_else(|| {
                let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
                panic!("no node named {name:?} in this fleet; nodes: {names:?}")
            })
    }

    fn slot_of(&self, name: &str) -> &SshdSlot {
        let i = self.index_of(name);
        match self.node_slot[i] {
            Some(s) => &self.slots[s],
            None => panic!("node {name:?} is a closed_port node: it has no sshd and no host key"),
        }
    }

    fn launch(b: FleetBuilder) -> Fleet {
        fs::create_dir_all("/run/sshd").expect("create sshd privilege separation dir /run/sshd");
        let tmp = tempfile::Builder::new()
            .prefix("fleetfix-fleet-")
            .tempdir()
            .expect("create fleet temp dir");
        let dir = tmp.path().to_path_buf();

        // --- nodes, in order ---
        let mut entries: Vec<ExtraNode> = (1..=b.healthy)
            .map(|k| ExtraNode {
                name: format!("node{k}"),
                kind: NodeKind::Healthy,
                own_sshd: false,
            })
            .collect();
        for e in b.extra {
            if e.kind == NodeKind::Healthy
                && let Some(pos) = entries[..b.healthy].iter().position(|x| x.name == e.name)
            {
                entries[pos].own_sshd = true;
                continue;
            }
            entries.push(e);
        }
        let mut seen = HashSet::new();
        for e in &entries {
            assert!(!e.name.is_empty(), "FleetBuilder: empty node name");
            assert!(
                seen.insert(e.name.clone()),
                "FleetBuilder: node name {:?} used twice (node1..node{} are the healthy nodes)",
                e.name,
                b.healthy
            );
        }

        // --- keys ---
        let client_key = dir.join("client_ed25519");
        let mut keys = vec![client_key.clone()];
        let any_kind = |k: NodeKind| entries.iter().any(|e| e.kind == k);
        let decoy_host_key =
            any_kind(NodeKind::ChangedHostKey).then(|| dir.join("decoy_host_ed25519"));
        let decoy_client_key =
            any_kind(NodeKind::RejectsClientKey).then(|| dir.join("decoy_client_ed25519"));
        keys.extend(decoy_host_key.iter().cloned());
        keys.extend(decoy_client_key.iter().cloned());

        // --- sshd slots: healthy nodes packed by 16, every other one alone ---
        let authorized_keys = dir.join("authorized_keys");
        let rejecting_keys = dir.join("authorized_keys_rejecting");
        let mut plans: Vec<(Vec<usize>, bool)> = Vec::new(); // (nodes, rejecting)
        let shared: Vec<usize> = (0..entries.len())
            .filter(|&i| entries[i].kind == NodeKind::Healthy && !entries[i].own_sshd)
            .collect();
        for chunk in shared.chunks(MAX_ADDRS_PER_SSHD) {
            plans.push((chunk.to_vec(), false));
        }
        for (i, e) in entries.iter().enumerate() {
            if e.own_sshd {
                plans.push((vec![i], e.kind == NodeKind::RejectsClientKey));
            }
        }
        let mut node_slot = vec![None; entries.len()];
        let mut slots = Vec::new();
        for (s, (nodes, rejecting)) in plans.into_iter().enumerate() {
            let sdir = dir.join(format!("sshd-{s}"));
            fs::create_dir_all(&sdir).unwrap_or_else(|e| panic!("create {}: {e}", sdir.display()));
            for &i in &nodes {
                node_slot[i] = Some(s);
            }
            let host_key = sdir.join("host_ed25519");
            keys.push(host_key.clone());
            slots.push(SshdSlot {
                config: sdir.join("sshd_config"),
                log: sdir.join("sshd.log"),
                authorized_keys: if rejecting {
                    rejecting_keys.clone()
                } else {
                    authorized_keys.clone()
                },
                host_key,
                dir: sdir,
                nodes,
                proc_: Mutex::new(None),
            });
        }
        generate_keys(&keys);
        write_file(
            &authorized_keys,
            &format!("{}\n", pubkey_line(&pub_path(&client_key))),
        );
        if let Some(decoy) = &decoy_client_key {
            write_file(
                &rejecting_keys,
                &format!("{}\n", pubkey_line(&pub_path(decoy))),
            );
        }
        fs::create_dir_all(dir.join("markers")).expect("create markers dir");

        let mut fleet = Fleet {
            nodes: entries
                .iter()
                .map(|e| NodeSpec {
                    name: e.name.clone(),
                    addr: Ipv4Addr::LOCALHOST,
                    port: 0,
                })
                .collect(),
            kinds: entries.iter().map(|e| e.kind).collect(),
            node_slot,
            slots,
            client_key,
            authorized_keys,
            known_hosts: dir.join("known_hosts"),
            decoy_host_key,
            sshd_lines: b.sshd_lines.clone(),
            dir: tmp,
        };

        // --- start, retrying on address conflicts ---
        let mut last_conflict = String::new();
        for _attempt in 0..START_ATTEMPTS {
            fleet.assign_addresses(b.port);
            fleet.write_known_hosts();
            for s in 0..fleet.slots.len() {
                fleet.write_sshd_config(s);
                fleet.spawn_sshd(s);
            }
            let mut conflict = None;
            for s in 0..fleet.slots.len() {
                if let Err(msg) = fleet.wait_ready(s) {
                    conflict = Some(msg);
                    break;
                }
            }
            match conflict {
                None => return fleet,
                Some(msg) => {
                    for slot in &fleet.slots {
                        if let Some(p) = lock(&slot.proc_).as_mut() {
                            stop_proc(p, true);
                        }
                    }
                    last_conflict = msg;
                }
            }
        }
        panic!(
            "could not start the sshd fleet after {START_ATTEMPTS} attempts (address conflicts); last:\n{last_conflict}"
        );
    }

    fn assign_addresses(&mut self, fixed_port: Option<u16>) {
        let count = self.nodes.len().max(1);
        let blocks = count.div_ceil(254);
        assert!(blocks <= 255, "fleet too large: {count} nodes");
        let r = random_u64();
        let a = 1 + (r % 254) as u32; // 1..=254, never 127.0.x.x
        let b = ((r >> 16) % (256 - blocks as u64 + 1)) as u32;
        let port = fixed_port.unwrap_or_else(|| 20000 + (random_u64() % 40001) as u16);
        for (i, node) in self.nodes.iter_mut().enumerate() {
            let i = i as u32;
            node.addr = Ipv4Addr::new(127, a as u8, (b + i / 254) as u8, (1 + i % 254) as u8);
            node.port = port;
        }
        for i in 0..self.nodes.len() {
            if self.kinds[i] == NodeKind::ClosedPort {
                let addr = self.nodes[i].addr;
                let listener = TcpListener::bind(SocketAddrV4::new(addr, 0))
                    .unwrap_or_else(|e| panic!("bind {addr}:0 to pick a closed port: {e}"));
                self.nodes[i].port = listener
                    .local_addr()
                    .expect("local_addr of the closed-port probe listener")
                    .port();
            }
        }
    }

    fn write_known_hosts(&self) {
        let mut s = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let key = match self.kinds[i] {
                NodeKind::Healthy | NodeKind::RejectsClientKey => self.host_pubkey_line(&node.name),
                NodeKind::ChangedHostKey => pubkey_line(&pub_path(
                    self.decoy_host_key.as_ref().expect("decoy host key"),
                )),
                NodeKind::UnknownHostKey | NodeKind::ClosedPort => continue,
            };
            let _ = writeln!(s, "{} {key}", node.known_hosts_host());
        }
        write_file(&self.known_hosts, &s);
    }

    fn write_sshd_config(&self, s: usize) {
        let slot = &self.slots[s];
        let mut c = String::from("# generated by tests/it/common/mod.rs\n");
        for &i in &slot.nodes {
            let _ = writeln!(
                c,
                "ListenAddress {}:{}",
                self.nodes[i].addr, self.nodes[i].port
            );
        }
        // The test's own lines come first: for sshd the first value of a
        // keyword wins, so they override the defaults below (no `Match`).
        // Its `SetEnv` variables join the fleet's on one line.
        let mut env = Vec::new();
        for line in &self.sshd_lines {
            match line.strip_prefix("SetEnv ") {
                Some(vars) => env.push(vars.to_string()),
                None => {
                    c.push_str(line);
                    c.push('\n');
                }
            }
        }
        let _ = writeln!(c, "HostKey {}", conf_path(&slot.host_key));
        let _ = writeln!(c, "AuthorizedKeysFile {}", conf_path(&slot.authorized_keys));
        // Debian's bash sources ~/.bashrc for commands run by sshd unless
        // SHLVL is set; this machine's root .bashrc costs ~0.2 s of CPU per
        // command (pyenv), which would swamp every timing in the tests.
        c.push_str(
            "PermitRootLogin prohibit-password\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\n\
             UsePAM no\n\
             StrictModes no\n\
             PidFile none\n\
             MaxStartups 10000:30:10000\n\
             MaxSessions 1000\n\
             ClientAliveInterval 0\n\
             LogLevel VERBOSE\n\
             AcceptEnv none\n\
             UseDNS no\n\
             PrintMotd no\n\
             PrintLastLog no\n\
             X11Forwarding no\n\
             Subsystem sftp internal-sftp\n",
        );
        // Node locks in the fleet's own dir: every test's nodes share /tmp.
        let locks = self.dir().join("node-locks");
        fs::create_dir_all(&locks).unwrap_or_else(|e| panic!("create {}: {e}", locks.display()));
        env.push(format!("SHLVL=1 FLEETFIX_LOCK_DIR={}", conf_path(&locks)));
        let _ = writeln!(c, "SetEnv {}", env.join(" "));
        write_file(&slot.config, &c);
    }

    fn spawn_sshd(&self, s: usize) {
        let slot = &self.slots[s];
        let log = File::create(&slot.log)
            .unwrap_or_else(|e| panic!("create sshd log {}: {e}", slot.log.display()));
        let log2 = log.try_clone().expect("clone sshd log file handle");
        let child = Command::new(SSHD_PATH)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&slot.config)
            .current_dir(&slot.dir)
            .stdin(Stdio::null())
            .stdout(log2)
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("spawn {SSHD_PATH} -D -e -f {}: {e}", slot.config.display())
            });
        let pid = child.id();
        let watchdog = watchdog(pid);
        *lock(&slot.proc_) = Some(SshdProc {
            pid,
            child,
            watchdog,
            stopped: false,
        });
    }

    /// Ok once every address of the slot answers with an SSH banner.
    /// Err(log) on a bind conflict (caller retries with other addresses).
    fn wait_ready(&self, s: usize) -> Result<(), String> {
        let slot = &self.slots[s];
        let addrs: Vec<SocketAddr> = slot
            .nodes
            .iter()
            .map(|&i| self.nodes[i].socket_addr())
            .collect();
        let names: Vec<&str> = slot
            .nodes
            .iter()
            .map(|&i| self.nodes[i].name.as_str())
            .collect();
        let mut ready = vec![false; addrs.len()];
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let exited = {
                let mut guard = lock(&slot.proc_);
                let p = guard.as_mut().expect("sshd spawned before wait_ready");
                p.child.try_wait().expect("try_wait on sshd child")
            };
            let log = read_log(&slot.log);
            // ("debug1: Bind to port …" is no failure, at LogLevel DEBUG1.)
            let bind_failed = log
                .lines()
                .any(|l| l.contains("Bind to port") && l.contains("failed"));
            if bind_failed || log.contains("Cannot bind") {
                return Err(format!(
                    "sshd for {names:?} could not bind its addresses\n--- {} ---\n{log}",
                    slot.log.display()
                ));
            }
            if let Some(status) = exited {
                panic!(
                    "sshd for nodes {names:?} exited ({status}) before it was ready\n\
                     --- {} ---\n{log}\n--- {} ---\n{}",
                    slot.log.display(),
                    slot.config.display(),
                    fs::read_to_string(&slot.config).unwrap_or_default()
                );
            }
            let listening = addrs.iter().all(|a| {
                log.contains(&format!(
                    "Server listening on {} port {}.",
                    a.ip(),
                    a.port()
                ))
            });
            if listening {
                // Connect to every pending address first so that sshd serves
                // the banners concurrently, then read them.
                let streams: Vec<(usize, TcpStream)> = (0..addrs.len())
                    .filter(|&k| !ready[k])
                    .filter_map(|k| {
                        TcpStream::connect_timeout(&addrs[k], Duration::from_secs(1))
                            .ok()
                            .map(|st| (k, st))
                    })
                    .collect();
                for (k, stream) in streams {
                    ready[k] = has_ssh_banner(stream);
                }
                if ready.iter().all(|&ok| ok) {
                    let mut guard = lock(&slot.proc_);
                    let p = guard.as_mut().expect("sshd spawned before wait_ready");
                    if p.child
                        .try_wait()
                        .expect("try_wait on sshd child")
                        .is_none()
                    {
                        return Ok(());
                    }
                    continue; // exited meanwhile: report it on the next round
                }
            }
            if Instant::now() >= deadline {
                let pending: Vec<String> = addrs
                    .iter()
                    .zip(&ready)
                    .filter(|(_, ok)| !**ok)
                    .map(|(a, _)| a.to_string())
                    .collect();
                panic!(
                    "sshd for nodes {names:?} not ready after {READY_TIMEOUT:?} \
                     (no SSH banner from {pending:?})\n--- {} ---\n{}",
                    slot.log.display(),
                    read_log(&slot.log)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for slot in &mut self.slots {
            let proc_ = slot.proc_.get_mut().unwrap_or_else(|e| e.into_inner());
            if let Some(p) = proc_.as_mut() {
                stop_proc(p, false);
            }
        }
    }
}

// ---------------------------------------------------------------- helpers

/// Ends `pid` if this test process dies without stopping it: the
/// watchdog's `read` returns at EOF, once our end of its stdin is closed.
fn watchdog(pid: u32) -> Option<Child> {
    Command::new("/bin/sh")
        .arg("-c")
        .arg("read -r _ignored; kill -TERM \"$1\" 2>/dev/null")
        .arg("fleetfix-watchdog")
        .arg(pid.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Stops the sshd listener and its descendants, by pid only. `hard`:
/// SIGKILL at once; otherwise SIGTERM, wait up to 5 s, then SIGKILL.
fn stop_proc(p: &mut SshdProc, hard: bool) {
    if p.stopped {
        return;
    }
    // Watchdog first, so that it can never signal a recycled pid.
    if let Some(mut w) = p.watchdog.take() {
        let _ = w.kill();
        let _ = w.wait();
    }
    let tree = descendants(p.pid);
    let sig = if hard { SIGKILL } else { SIGTERM };
    // The child is not reaped yet, so its pid cannot have been recycled.
    send_signal(p.pid, sig);
    for &(pid, start) in &tree {
        if proc_start_time(pid) == Some(start) {
            send_signal(pid, sig);
        }
    }
    if !hard {
        let deadline = Instant::now() + STOP_TIMEOUT;
        while matches!(p.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if matches!(p.child.try_wait(), Ok(None)) {
            let _ = p.child.kill();
        }
    }
    let _ = p.child.wait();
    for &(pid, start) in &tree {
        if proc_start_time(pid) == Some(start) {
            send_signal(pid, SIGKILL);
        }
    }
    p.stopped = true;
}

mod ffi {
    unsafe extern "C" {
        pub fn kill(pid: i32, sig: i32) -> i32;
    }
}

/// Signals one process by pid; refuses pids <= 1 (process groups, init).
fn send_signal(pid: u32, sig: i32) -> bool {
    match i32::try_from(pid) {
        // SAFETY: kill(2) with a positive pid only signals that one process.
        Ok(pid) if pid > 1 => unsafe { ffi::kill(pid, sig) == 0 },
        _ => false,
    }
}

/// (ppid, starttime) from /proc/PID/stat.
fn proc_stat(pid: u32) -> Option<(u32, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state); ppid is field 4, starttime field 22.
    Some((f.get(1)?.parse().ok()?, f.get(19)?.parse().ok()?))
}

fn proc_start_time(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|(_, start)| start)
}

/// All (pid, starttime) below `root` in the process tree.
fn descendants(root: u32) -> Vec<(u32, u64)> {
    let mut children: HashMap<u32, Vec<(u32, u64)>> = HashMap::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for entry in rd.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some((ppid, start)) = proc_stat(pid) {
                children.entry(ppid).or_default().push((pid, start));
            }
        }
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        for &(c, start) in children.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
            out.push((c, start));
            stack.push(c);
        }
    }
    out
}

fn has_ssh_banner(mut stream: TcpStream) -> bool {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    while buf.len() < 8 && !buf.contains(&b'\n') {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    buf.starts_with(b"SSH-2.0-")
}

fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// Runs ssh-keygen for all paths concurrently.
fn generate_keys(paths: &[PathBuf]) {
    let children: Vec<(PathBuf, Child)> = paths
        .iter()
        .map(|p| {
            let child = Command::new(SSH_KEYGEN_PATH)
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "fleetfix-test", "-f"])
                .arg(p)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {SSH_KEYGEN_PATH} for {}: {e}", p.display()));
            (p.clone(), child)
        })
        .collect();
    for (p, child) in children {
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("wait for ssh-keygen ({}): {e}", p.display()));
        assert!(
            out.status.success(),
            "ssh-keygen -t ed25519 -f {} failed ({}): {}{}",
            p.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn pub_path(key: &Path) -> PathBuf {
    let mut s = key.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// First two fields (`type base64`) of a .pub file.
fn pubkey_line(pub_file: &Path) -> String {
    let text = fs::read_to_string(pub_file)
        .unwrap_or_else(|e| panic!("read public key {}: {e}", pub_file.display()));
    let fields: Vec<&str> = text.split_whitespace().take(2).collect();
    assert!(
        fields.len() == 2,
        "malformed public key file {}: {text:?}",
        pub_file.display()
    );
    fields.join(" ")
}

fn fingerprint(pub_file: &Path) -> String {
    let out = Command::new(SSH_KEYGEN_PATH)
        .arg("-lf")
        .arg(pub_file)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {SSH_KEYGEN_PATH} -lf {}: {e}", pub_file.display()));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ssh-keygen -lf {} failed ({}): {text}{}",
        pub_file.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text.split_whitespace()
        .find(|f| f.starts_with("SHA256:"))
        .unwrap_or_else(|| panic!("no SHA256 fingerprint in ssh-keygen -lf output: {text:?}"))
        .to_string()
}

fn known_hosts_host(addr: Ipv4Addr, port: u16) -> String {
    if port == 22 {
        addr.to_string()
    } else {
        format!("[{addr}]:{port}")
    }
}

fn read_log(path: &Path) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            // Keep panic messages readable: the tail is what matters.
            let max = 32 * 1024;
            if text.len() > max {
                let mut cut = text.len() - max;
                while !text.is_char_boundary(cut) {
                    cut += 1;
                }
                format!("[...]\n{}", &text[cut..])
            } else {
                text.into_owned()
            }
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

fn write_file(path: &Path, contents: &str) {
    fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// A path for sshd_config, quoted if it contains whitespace.
fn conf_path(p: &Path) -> String {
    let s = p.to_string_lossy();
    if s.chars().any(char::is_whitespace) {
        format!("\"{s}\"")
    } else {
        s.into_owned()
    }
}

fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_key(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        s.to_string()
    } else {
        toml_str(s)
    }
}
