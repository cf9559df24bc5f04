//! SSH servers other than the fleet's: OpenSSH, Debian's dropbear and
//! tinysshd, each a node of its own, with the login shell and home files a
//! test asks for.
//!
//! Each server runs in a mount namespace of its own (`unshare -m`) in
//! which root's passwd entry is a copy with the test's shell and a home on
//! a private tmpfs (`/mnt/home`: tinysshd refuses a home below a directory
//! others can write, such as /tmp), and `/tmp` is private too, as on a
//! machine of its own (the test's dir stays reachable at its path). The
//! servers are ended by pid, with their descendants, on drop; a watchdog
//! ends them if the test process dies first.

use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{
    SshdProc, generate_keys, has_ssh_banner, pub_path, pubkey_line, random_u64, read_log,
    stop_proc, toml_str, watchdog, write_file,
};

/// Which server a node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Daemon {
    OpenSsh,
    Dropbear,
    Tinysshd,
}

impl Daemon {
    pub fn all() -> [Daemon; 3] {
        [Daemon::OpenSsh, Daemon::Dropbear, Daemon::Tinysshd]
    }

    pub fn name(self) -> &'static str {
        match self {
            Daemon::OpenSsh => "openssh",
            Daemon::Dropbear => "dropbear",
            Daemon::Tinysshd => "tinysshd",
        }
    }
}

/// One node to start.
#[derive(Clone, Debug)]
pub struct Host {
    pub name: String,
    pub daemon: Daemon,
    /// root's login shell.
    pub shell: String,
    /// Files in root's home: (name, content).
    pub home: Vec<(String, String)>,
    /// OpenSSH only: extra sshd_config lines (they win over the defaults).
    pub sshd_lines: Vec<String>,
    /// OpenSSH only: the host key type (`ssh-keygen -t`), default ed25519.
    pub key_type: String,
}

impl Host {
    pub fn new(name: &str, daemon: Daemon) -> Host {
        Host {
            name: name.to_string(),
            daemon,
            shell: "/bin/sh".into(),
            home: Vec::new(),
            sshd_lines: Vec::new(),
            key_type: "ed25519".into(),
        }
    }

    pub fn shell(mut self, shell: &str) -> Self {
        self.shell = shell.into();
        self
    }

    pub fn home_file(mut self, name: &str, content: &str) -> Self {
        self.home.push((name.into(), content.into()));
        self
    }

    pub fn sshd(mut self, line: &str) -> Self {
        self.sshd_lines.push(line.into());
        self
    }

    pub fn key_type(mut self, t: &str) -> Self {
        self.key_type = t.into();
        self
    }
}

struct Running {
    host: Host,
    addr: Ipv4Addr,
    port: u16,
    log: PathBuf,
    proc_: SshdProc,
}

/// Running servers; see the module docs.
pub struct Servers {
    running: Vec<Running>,
    client_key: PathBuf,
    known_hosts: PathBuf,
    // Last: removed once the servers are stopped.
    dir: tempfile::TempDir,
}

impl Servers {
    /// Starts every host and waits for its SSH banner.
    pub fn start(hosts: Vec<Host>) -> Servers {
        fs::create_dir_all("/run/sshd").expect("sshd privilege separation dir");
        let dir = tempfile::Builder::new()
            .prefix("fleetfix-servers-")
            .tempdir()
            .expect("temp dir");
        let client_key = dir.path().join("client_ed25519");
        generate_keys(std::slice::from_ref(&client_key));
        let authorized = format!("{}\n", pubkey_line(&pub_path(&client_key)));
        let mut servers = Servers {
            running: Vec::new(),
            known_hosts: dir.path().join("known_hosts"),
            client_key,
            dir,
        };
        let mut known = String::new();
        for host in hosts {
            let (running, line) = servers.launch(host, &authorized);
            let _ = writeln!(known, "[{}]:{} {line}", running.addr, running.port);
            servers.running.push(running);
        }
        write_file(&servers.known_hosts, &known);
        servers
    }

    /// The test's own dir: reachable at this path from every server.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }

    pub fn client_key(&self) -> &Path {
        &self.client_key
    }

    /// The server's log (for OpenSSH, `LogLevel DEBUG1` among the host's
    /// lines makes it name what the key exchange chose).
    pub fn log(&self, name: &str) -> String {
        read_log(&self.get(name).log)
    }

    /// Runs `command` on a node with OpenSSH's own client.
    pub fn ssh(&self, name: &str, command: &str) -> std::process::Output {
        let r = self.get(name);
        Command::new("/usr/bin/ssh")
            .arg("-i")
            .arg(&self.client_key)
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args(["-o", "BatchMode=yes", "-p"])
            .arg(r.port.to_string())
            .arg(format!("root@{}", r.addr))
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .expect("ssh runs")
    }

    /// `addr:port` of a node.
    pub fn addr(&self, name: &str) -> (Ipv4Addr, u16) {
        let r = self.get(name);
        (r.addr, r.port)
    }

    /// An inventory of every node, user root with the client key;
    /// `extra_top` goes after the `[defaults]` keys.
    pub fn write_inventory(&self, extra_top: &str) -> PathBuf {
        let mut s = format!(
            "[defaults]\nuser = \"root\"\nidentity_file = {}\nconnect_timeout = \"5s\"\n{extra_top}\n",
            toml_str(&self.client_key.to_string_lossy())
        );
        for r in &self.running {
            let _ = write!(
                s,
                "\n[nodes.{}]\nhost = \"{}\"\nport = {}\n",
                r.host.name, r.addr, r.port
            );
        }
        let path = self.dir().join("inventory.toml");
        write_file(&path, &s);
        path
    }

    fn get(&self, name: &str) -> &Running {
        self.running
            .iter()
            .find(|r| r.host.name == name)
            .unwrap_or_else(|| panic!("no server {name:?}"))
    }

    /// Starts `host` (retrying on a taken address) and returns it with
    /// its known_hosts key.
    fn launch(&self, host: Host, authorized: &str) -> (Running, String) {
        let hdir = self.dir().join(format!("host-{}", host.name));
        let home = hdir.join("home");
        fs::create_dir_all(home.join(".ssh")).expect("home dir");
        write_file(&home.join(".ssh/authorized_keys"), authorized);
        for (name, content) in &host.home {
            write_file(&home.join(name), content);
        }
        let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
        let passwd: String = passwd
            .lines()
            .map(|l| {
                if l.starts_with("root:") {
                    format!("root:x:0:0:root:/mnt/home:{}\n", host.shell)
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        write_file(&hdir.join("passwd"), &passwd);
        let key_line = host_key(&host, &hdir);
        let mut last = String::new();
        for _ in 0..10 {
            let addr = Ipv4Addr::new(
                127,
                1 + (random_u64() % 254) as u8,
                (random_u64() % 256) as u8,
                1 + (random_u64() % 254) as u8,
            );
            let Ok(probe) = TcpListener::bind(SocketAddrV4::new(addr, 0)) else {
                continue;
            };
            let port = probe.local_addr().expect("probe addr").port();
            drop(probe);
            let log = hdir.join("server.log");
            let child = spawn(&host, &hdir, self.dir(), addr, port, &log);
            let mut proc_ = SshdProc {
                pid: child.id(),
                child,
                watchdog: None,
                stopped: false,
            };
            proc_.watchdog = watchdog(proc_.pid);
            if ready(addr, port, &mut proc_) {
                let running = Running {
                    host,
                    addr,
                    port,
                    log,
                    proc_,
                };
                return (running, key_line);
            }
            last = read_log(&log);
            stop_proc(&mut proc_, true);
        }
        panic!("{} did not start:\n{last}", host.name);
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for r in &mut self.running {
            stop_proc(&mut r.proc_, false);
        }
    }
}

/// Makes the host key; returns its known_hosts part (`type base64`).
fn host_key(host: &Host, hdir: &Path) -> String {
    let run = |cmd: &mut Command| {
        let out = cmd.output().expect("key tool runs");
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first_key = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("ssh-") || l.starts_with("ecdsa-"))
            .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| panic!("no public key in {text:?}"))
    };
    match host.daemon {
        Daemon::OpenSsh => {
            let key = hdir.join("host_key");
            run(Command::new("/usr/bin/ssh-keygen")
                .args(["-q", "-N", "", "-t", &host.key_type, "-f"])
                .arg(&key));
            pubkey_line(&pub_path(&key))
        }
        Daemon::Dropbear => {
            let key = hdir.join("dropbear_key");
            run(Command::new("/usr/bin/dropbearkey")
                .args(["-t", "ed25519", "-f"])
                .arg(&key));
            first_key(&run(Command::new("/usr/bin/dropbearkey")
                .arg("-y")
                .arg("-f")
                .arg(&key)))
        }
        Daemon::Tinysshd => {
            let keys = hdir.join("tinyssh_keys");
            run(Command::new("/usr/sbin/tinysshd-makekey").arg(&keys));
            first_key(&run(Command::new("/usr/sbin/tinysshd-printkey").arg(&keys)))
        }
    }
}

/// The namespace's set-up, then `exec "$@"`: root's passwd entry and home,
/// a private /tmp with the test's dir bound back in.
const NAMESPACE: &str = r#"set -e
mount --make-rprivate /
mount -t tmpfs -o mode=0755 fleetfix-mnt /mnt
mkdir -p /mnt/keep
mount --bind "$FLEETFIX_TEST_DIR" /mnt/keep
mount -t tmpfs -o mode=1777 fleetfix-tmp /tmp
mkdir -p "$FLEETFIX_TEST_DIR"
mount --bind /mnt/keep "$FLEETFIX_TEST_DIR"
cp -a "$FLEETFIX_HOST_DIR/home" /mnt/home
chown -R 0:0 /mnt/home
chmod 700 /mnt/home /mnt/home/.ssh
chmod 600 /mnt/home/.ssh/authorized_keys
mount --bind "$FLEETFIX_HOST_DIR/passwd" /etc/passwd
exec "$@"
"#;

fn spawn(
    host: &Host,
    hdir: &Path,
    test_dir: &Path,
    addr: Ipv4Addr,
    port: u16,
    log: &Path,
) -> Child {
    let mut argv: Vec<String> = Vec::new();
    match host.daemon {
        Daemon::OpenSsh => {
            let conf = hdir.join("sshd_config");
            let mut c = String::new();
            for l in &host.sshd_lines {
                let _ = writeln!(c, "{l}");
            }
            let _ = write!(
                c,
                "ListenAddress {addr}:{port}\nHostKey {}\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 StrictModes no\nPidFile none\nMaxStartups 1000:30:1000\nMaxSessions 100\n\
                 LogLevel VERBOSE\nUseDNS no\nPrintMotd no\nPrintLastLog no\n",
                hdir.join("host_key").display()
            );
            write_file(&conf, &c);
            argv.extend(["/usr/sbin/sshd", "-D", "-e", "-f"].map(String::from));
            argv.push(conf.display().to_string());
        }
        Daemon::Dropbear => {
            argv.extend(["/usr/sbin/dropbear", "-F", "-E", "-s", "-p"].map(String::from));
            argv.push(format!("{addr}:{port}"));
            argv.push("-r".into());
            argv.push(hdir.join("dropbear_key").display().to_string());
            argv.push("-P".into());
            argv.push(hdir.join("dropbear.pid").display().to_string());
        }
        Daemon::Tinysshd => {
            argv.extend(["/usr/bin/tcpserver", "-HRDl0"].map(String::from));
            argv.push(addr.to_string());
            argv.push(port.to_string());
            argv.extend(["/usr/sbin/tinysshd", "-v"].map(String::from));
            argv.push(hdir.join("tinyssh_keys").display().to_string());
        }
    }
    let out = fs::File::create(log).expect("server log");
    Command::new("/usr/bin/unshare")
        .args(["-m", "/bin/sh", "-c", NAMESPACE, "fleetfix-namespace"])
        .args(&argv)
        .env("FLEETFIX_TEST_DIR", test_dir)
        .env("FLEETFIX_HOST_DIR", hdir)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log"))
        .stderr(out)
        .spawn()
        .expect("spawn unshare")
}

/// True once the server answers with an SSH banner; false if it exited.
fn ready(addr: Ipv4Addr, port: u16, p: &mut SshdProc) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if matches!(p.child.try_wait(), Ok(Some(_))) {
            return false;
        }
        let sa = std::net::SocketAddr::V4(SocketAddrV4::new(addr, port));
        if let Ok(stream) = TcpStream::connect_timeout(&sa, Duration::from_millis(500))
            && has_ssh_banner(stream)
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}
