//! A network namespace of the test's own, joined to the host by a veth
//! pair (10.231.X.1 on the host, 10.231.X.2 inside), with processes started
//! inside it. Everything is ended by pid and deleted on drop.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Netns {
    pub name: String,
    host_if: String,
    pub host_ip: Ipv4Addr,
    pub ns_ip: Ipv4Addr,
    children: Vec<Child>,
    /// Holds subnet 10.231.X.0/30 for this namespace's lifetime; the kernel
    /// drops the lock if the test process dies.
    _subnet: std::fs::File,
}

/// Claims a free subnet number: an flock per number, so parallel test
/// processes never pick the same one (two veths with one address route
/// to whichever came first).
pub fn claim_subnet() -> (u8, std::fs::File) {
    let dir = std::env::temp_dir().join("fleetfix-test-subnets");
    std::fs::create_dir_all(&dir).expect("subnet lock dir");
    let in_use = Command::new("/usr/sbin/ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let start = (std::process::id() % 250) as u8;
    for i in 0..250u16 {
        let x = ((start as u16 + i) % 250) as u8 + 1;
        if in_use.contains(&format!(" 10.231.{x}.")) {
            continue;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(x.to_string()))
            .expect("subnet lock file");
        if file.try_lock().is_ok() {
            return (x, file);
        }
    }
    panic!("no free 10.231.X.0/30 subnet for a test namespace");
}

pub fn ip(args: &[&str]) -> bool {
    Command::new("/usr/sbin/ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

impl Netns {
    /// A fresh namespace on a subnet no other test holds.
    pub fn create() -> Netns {
        for _ in 0..20u32 {
            let (x, subnet) = claim_subnet();
            let name = format!("fftest-{}-{x}", std::process::id());
            let host_if = format!("ffh{}x{x}", std::process::id() % 100_000);
            let ns_if = format!("ffn{}x{x}", std::process::id() % 100_000);
            let (host_ip, ns_ip) = (Ipv4Addr::new(10, 231, x, 1), Ipv4Addr::new(10, 231, x, 2));
            let ok = ip(&["netns", "add", &name])
                && ip(&[
                    "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
                ])
                && ip(&["link", "set", &ns_if, "netns", &name])
                && ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if])
                && ip(&["link", "set", &host_if, "up"])
                && ip(&[
                    "netns",
                    "exec",
                    &name,
                    "ip",
                    "addr",
                    "add",
                    &format!("{ns_ip}/30"),
                    "dev",
                    &ns_if,
                ])
                && ip(&["netns", "exec", &name, "ip", "link", "set", &ns_if, "up"])
                && ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
            if ok {
                return Netns {
                    name,
                    host_if,
                    host_ip,
                    ns_ip,
                    children: Vec::new(),
                    _subnet: subnet,
                };
            }
            ip(&["netns", "del", &name]);
            ip(&["link", "del", &host_if]);
        }
        panic!("could not create a network namespace (needs root and iproute2)");
    }

    /// Starts `program args…` inside the namespace; ended on drop.
    pub fn spawn(&mut self, program: &str, args: &[&str], log: &Path) -> u32 {
        let out = std::fs::File::create(log).expect("log file");
        let child = Command::new("/usr/sbin/ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("spawn in netns");
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// Cuts the link: the host side of the veth goes down, no FIN, no RST.
    pub fn cut(&self) {
        assert!(
            ip(&["link", "set", &self.host_if, "down"]),
            "ip link set down"
        );
    }

    /// Waits until `text` shows in `log`.
    pub fn wait_for(log: &Path, text: &str) {
        let start = Instant::now();
        loop {
            if std::fs::read_to_string(log)
                .unwrap_or_default()
                .contains(text)
            {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no {text:?} in {}",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// SIGKILLs every process in network namespace `name`, by the pids
/// `ip netns pids` reports.
pub fn kill_all_in(name: &str) {
    let Ok(out) = Command::new("/usr/sbin/ip")
        .args(["netns", "pids", name])
        .output()
    else {
        return;
    };
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        if let Ok(pid) = pid.parse::<i32>() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // sshd's session processes live on in the namespace: end them too.
        kill_all_in(&self.name);
        ip(&["netns", "del", &self.name]);
        ip(&["link", "del", &self.host_if]);
    }
}

fn keygen(path: &Path) {
    let ok = Command::new("/usr/bin/ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "ssh-keygen {}", path.display());
}

/// The client key all of the test's sshds accept (made once per `dir`).
pub fn client_key(dir: &Path) -> PathBuf {
    let client = dir.join("ns_client_key");
    if !client.exists() {
        keygen(&client);
        std::fs::copy(
            dir.join("ns_client_key.pub"),
            dir.join("ns_authorized_keys"),
        )
        .expect("authorized_keys");
    }
    client
}

/// Host key and config for an sshd named `name` listening on `addr:port`:
/// returns (config path, known_hosts line).
pub fn sshd_setup(dir: &Path, name: &str, addr: Ipv4Addr, port: u16) -> (PathBuf, String) {
    client_key(dir);
    let host = dir.join(format!("{name}_host_key"));
    keygen(&host);
    let conf = dir.join(format!("{name}_sshd_config"));
    // Node locks in the test's own dir: every test's nodes share /tmp.
    let locks = dir.join("node-locks");
    std::fs::create_dir_all(&locks).expect("node lock dir");
    std::fs::write(
        &conf,
        format!(
            "ListenAddress {addr}:{port}\nHostKey {}\nAuthorizedKeysFile {}\nPermitRootLogin prohibit-password\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\n\
             MaxStartups 100:30:100\nLogLevel VERBOSE\nUseDNS no\nSetEnv SHLVL=1 FLEETFIX_LOCK_DIR={}\n",
            host.display(),
            dir.join("ns_authorized_keys").display(),
            locks.display()
        ),
    )
    .expect("sshd_config");
    let pubkey =
        std::fs::read_to_string(dir.join(format!("{name}_host_key.pub"))).expect("host pub");
    let words: Vec<&str> = pubkey.split_whitespace().collect();
    let host_part = if port == 22 {
        addr.to_string()
    } else {
        format!("[{addr}]:{port}")
    };
    (conf, format!("{host_part} {} {}", words[0], words[1]))
}
