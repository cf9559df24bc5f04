//! A docker fleet of the test's own, for the relay playbooks.
//!
//! Each node is a network namespace plus a mount namespace with a private
//! `/run` and `/opt`, so its sshd sessions, its `docker` CLI and its own
//! dockerd all meet at the node's `/run/docker.sock`, as on a real host, and
//! bind mounts under `/opt/relay` stay inside the node. A bridge
//! (10.231.X.1/24, X claimed by flock) joins the nodes (10.231.X.11, .12, …)
//! to the runner, where a local registry (Debian's `docker-registry`) serves
//! relay stand-ins built `FROM scratch` with a static busybox:
//! [`OLD`] answers like v0.1.0 did (no version header, `OPTIONS` answered
//! 405, a page that says "error: … failed to load"), [`NEW`] like
//! `sha-39a4e17` (`x-relay-version: 0.2.0`, CORS), [`BROKEN`] never answers.
//! Every node starts out running [`OLD`], deployed as the relay was.
//!
//! Processes are ended by pid on drop (a watchdog does it if the test
//! process dies first); nothing leaves loopback or the lab's own bridge.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::cli::{Run, fleetfix, run};
use super::netns::{claim_subnet, client_key, ip, kill_all_in, sshd_setup};

/// The tag the relay ran before the fix: no version header.
pub const OLD: &str = "v0.1.0";
/// The fixed release: `x-relay-version: 0.2.0` and CORS headers.
pub const NEW: &str = "sha-39a4e17";
/// A release that starts but never answers.
pub const BROKEN: &str = "sha-broken";

/// The relay's server port (host networking).
pub const PORT: u16 = 8088;

/// Secret values the rollout passes to the container.
pub const VERCEL_TOKEN: &str = "vercel-token-7f3a9c1e";
pub const VERCEL_TEAM: &str = "team-relaynet-42";

const BOOT: Duration = Duration::from_secs(60);

pub struct Lab {
    pub dir: tempfile::TempDir,
    /// `10.231.X.1:5000`
    pub registry: String,
    pub nodes: Vec<LabNode>,
    bridge: String,
    registry_proc: Option<Child>,
    watchdog: Option<Child>,
    known_hosts: String,
    _subnet: std::fs::File,
}

pub struct LabNode {
    pub name: String,
    pub ip: Ipv4Addr,
    netns: String,
    host_if: String,
    /// Holds the node's mount namespace; everything else enters it.
    holder: Child,
    sshd: Option<Child>,
    dockerd: Option<Child>,
}

/// An HTTP answer as the test saw it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Lab {
    /// `n` nodes, each running [`OLD`], and the registry holding all three
    /// images.
    pub fn start(n: usize) -> Lab {
        let dir = tempfile::tempdir().expect("tempdir");
        let (x, subnet) = claim_subnet();
        let tag = std::process::id() % 100_000;
        let bridge = format!("ffbr{tag}");
        let gateway = Ipv4Addr::new(10, 231, x, 1);
        let mut lab = Lab {
            dir,
            registry: format!("{gateway}:5000"),
            nodes: Vec::new(),
            bridge: bridge.clone(),
            registry_proc: None,
            watchdog: None,
            known_hosts: String::new(),
            _subnet: subnet,
        };
        assert!(
            ip(&["link", "add", &bridge, "type", "bridge"])
                && ip(&["addr", "add", &format!("{gateway}/24"), "dev", &bridge])
                && ip(&["link", "set", &bridge, "up"]),
            "bridge {bridge}"
        );
        lab.start_registry();
        for i in 0..n {
            let node = LabNode::create(&bridge, x, i, tag);
            lab.nodes.push(node);
        }
        lab.start_watchdog();
        // dockerds boot in parallel; sshds meanwhile.
        for i in 0..n {
            lab.spawn_dockerd(i);
        }
        for i in 0..n {
            lab.start_sshd(i);
        }
        for i in 0..n {
            let log = lab.log(&format!("{}-dockerd", lab.nodes[i].name));
            wait_for(&log, "API listen on", BOOT);
        }
        lab.build_images();
        for i in 0..n {
            lab.deploy(i, OLD, false);
        }
        for i in 0..n {
            assert!(
                lab.wait_answer(i, BOOT).is_some(),
                "{} never answered",
                lab.nodes[i].name
            );
        }
        lab
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    fn start_registry(&mut self) {
        let conf = self.dir.path().join("registry.yml");
        std::fs::write(
            &conf,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: {}\n  secret: fleetfix-lab\n",
                self.dir.path().join("registry").display(),
                self.registry
            ),
        )
        .expect("registry config");
        let log = std::fs::File::create(self.log("registry")).expect("log");
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("docker-registry (apt-get install docker-registry)");
        self.registry_proc = Some(child);
        let addr: SocketAddr = self.registry.parse().expect("addr");
        let start = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(start.elapsed() < BOOT, "the registry never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Ends everything of the lab if the test process dies without dropping
    /// it (a nextest timeout kills with SIGKILL).
    fn start_watchdog(&mut self) {
        let mut script = format!(
            "while kill -0 {} 2>/dev/null; do sleep 1; done\n",
            std::process::id()
        );
        for n in &self.nodes {
            script.push_str(&format!(
                "for p in $(ip netns pids {ns}); do kill -9 $p; done; ip netns del {ns}\n",
                ns = n.netns
            ));
        }
        if let Some(r) = &self.registry_proc {
            script.push_str(&format!("kill -9 {}\n", r.id()));
        }
        script.push_str(&format!("ip link del {}\n", self.bridge));
        let child = Command::new("/bin/sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("watchdog");
        self.watchdog = Some(child);
    }

    fn spawn_dockerd(&mut self, i: usize) {
        let node = &self.nodes[i];
        let data = self.dir.path().join(format!("{}-docker", node.name));
        let log = std::fs::File::create(self.log(&format!("{}-dockerd", node.name))).expect("log");
        let child = node
            .enter("/usr/sbin/dockerd")
            .arg("--data-root")
            .arg(&data)
            .args([
                "--exec-root",
                "/run/docker",
                "-H",
                "unix:///run/docker.sock",
                "--pidfile",
                "/run/docker.pid",
                "--storage-driver",
                "vfs",
                "--bridge",
                "none",
                "--iptables=false",
                "--ip-masq=false",
                "--insecure-registry",
                &self.registry,
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("dockerd (apt-get install docker.io)");
        self.nodes[i].dockerd = Some(child);
    }

    fn start_sshd(&mut self, i: usize) {
        let (name, addr) = (self.nodes[i].name.clone(), self.nodes[i].ip);
        let (conf, line) = sshd_setup(self.dir.path(), &name, addr, 22);
        self.known_hosts.push_str(&line);
        self.known_hosts.push('\n');
        let log_path = self.log(&format!("{name}-sshd"));
        let log = std::fs::File::create(&log_path).expect("log");
        let child = self.nodes[i]
            .enter("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("sshd");
        self.nodes[i].sshd = Some(child);
        wait_for(&log_path, "Server listening", BOOT);
    }

    /// Builds the three stand-ins on the first node, pushes them, and removes
    /// them there again, so every node starts with only what it pulls.
    fn build_images(&self) {
        let ctx = self.dir.path().join("image");
        std::fs::create_dir_all(&ctx).expect("image dir");
        std::fs::copy("/bin/busybox", ctx.join("busybox"))
            .expect("a static /bin/busybox (apt-get install busybox-static)");
        std::fs::write(ctx.join("serve.sh"), SERVE_SH).expect("serve.sh");
        std::fs::write(ctx.join("handler.sh"), HANDLER_SH).expect("handler.sh");
        std::fs::write(ctx.join("Dockerfile"), DOCKERFILE).expect("Dockerfile");
        let ctx = ctx.to_str().expect("utf8");
        for (tag, version, mode) in [
            (OLD, "", "serve"),
            (NEW, "0.2.0", "serve"),
            (BROKEN, "", "broken"),
        ] {
            let image = self.image(tag);
            let version = format!("VERSION={version}");
            let mode = format!("MODE={mode}");
            self.docker_ok(
                0,
                &[
                    "build",
                    "-q",
                    "--build-arg",
                    &version,
                    "--build-arg",
                    &mode,
                    "-t",
                    &image,
                    ctx,
                ],
            );
            self.docker_ok(0, &["push", "-q", &image]);
        }
        let images: Vec<String> = [OLD, NEW, BROKEN].iter().map(|t| self.image(t)).collect();
        let mut args = vec!["rmi"];
        args.extend(images.iter().map(String::as_str));
        self.docker_ok(0, &args);
    }

    /// The registry's reference of a relay tag.
    pub fn image(&self, tag: &str) -> String {
        format!("{}/clevertree/relay:{tag}", self.registry)
    }

    /// Runs `docker ARGS` on node `i`.
    pub fn docker(&self, i: usize, args: &[&str]) -> Output {
        self.nodes[i]
            .enter("docker")
            .args(args)
            .env("DOCKER_BUILDKIT", "0")
            .stdin(Stdio::null())
            .output()
            .expect("docker")
    }

    /// `docker ARGS` on node `i`, which must succeed; its stdout, trimmed.
    pub fn docker_ok(&self, i: usize, args: &[&str]) -> String {
        let out = self.docker(i, args);
        assert!(
            out.status.success(),
            "docker {args:?} on {}: {}",
            self.nodes[i].name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `docker inspect --format FORMAT relay` on node `i`.
    pub fn inspect(&self, i: usize, format: &str) -> String {
        self.docker_ok(i, &["inspect", "--format", format, "relay"])
    }

    /// (Re)deploys the relay container on node `i` by hand, as it ran before
    /// the fix: its env and letsencrypt volumes, and `/srv/relay/data` on a
    /// volume only when `data_volume`.
    pub fn deploy(&self, i: usize, tag: &str, data_volume: bool) {
        let _ = self.docker(i, &["rm", "-f", "relay"]);
        let subdomain = format!("RELAY_DNS_SUBDOMAIN={}", self.nodes[i].name);
        let image = self.image(tag);
        let mut args = vec![
            "run",
            "-d",
            "--name",
            "relay",
            "--restart",
            "unless-stopped",
            "--network",
            "host",
            "-e",
            "RELAY_SSL_MODE=auto",
            "-e",
            &subdomain,
            "-e",
            "RELAY_DNS_DOMAIN=relaynet.test",
            "-v",
            "/opt/relay/letsencrypt:/etc/letsencrypt",
            "-v",
            "/opt/relay/letsencrypt-var:/var/lib/letsencrypt",
        ];
        if data_volume {
            args.extend(["-v", "relay-data:/srv/relay/data"]);
        }
        args.push(&image);
        self.docker_ok(i, &args);
    }

    /// One HTTP request from the runner to node `i`'s relay port.
    pub fn request(&self, i: usize, method: &str) -> Option<Reply> {
        let addr = SocketAddr::from((self.nodes[i].ip, PORT));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "{method} / HTTP/1.1\r\nHost: {}\r\nOrigin: https://example.org\r\nConnection: close\r\n\r\n",
            self.nodes[i].ip
        )
        .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        Some(Reply {
            status,
            headers,
            body: body.to_string(),
        })
    }

    /// Waits until node `i` answers a GET.
    pub fn wait_answer(&self, i: usize, limit: Duration) -> Option<Reply> {
        let start = Instant::now();
        loop {
            if let Some(r) = self.request(i, "GET") {
                return Some(r);
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops node `i`'s sshd: the node stays up, nothing can log in.
    pub fn stop_sshd(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].sshd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// An inventory of the lab's nodes, in the shape of the shipped one.
    pub fn inventory(&self) -> PathBuf {
        let key = client_key(self.dir.path());
        let mut text = format!(
            "[defaults]\nuser = \"root\"\nidentity_file = \"{}\"\nconnect_timeout = \"5s\"\n\n\
             [vars]\nrelay_dns_domain = \"relaynet.test\"\nrelay_ssl_mode = \"auto\"\n\
             relay_certbot_email = \"ops@relaynet.test\"\n",
            key.display()
        );
        for n in &self.nodes {
            text.push_str(&format!(
                "\n[nodes.{name}]\nhost = \"{ip}\"\ngroups = [\"relay\", \"lab\"]\n\
                 vars = {{ relay_dns_subdomain = \"{name}\", public_url = \"http://{ip}:{PORT}\" }}\n",
                name = n.name,
                ip = n.ip
            ));
        }
        let path = self.dir.path().join("inventory.toml");
        std::fs::write(&path, text).expect("inventory");
        std::fs::write(self.dir.path().join("known_hosts"), &self.known_hosts)
            .expect("known_hosts");
        path
    }

    /// `fleetfix run --output json` of a shipped playbook on the lab, with
    /// the secrets in the environment; `extra` adds options (`-e`, `--check`).
    pub fn run(&self, playbook: &str, extra: &[&str]) -> Run {
        let mut args = vec!["--output", "json"];
        args.extend(extra);
        self.run_human(playbook, &args)
    }

    /// `fleetfix run` as an operator types it (human output unless `extra`
    /// says otherwise).
    pub fn run_human(&self, playbook: &str, extra: &[&str]) -> Run {
        let inventory = self.inventory();
        let pb = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("playbooks")
            .join(playbook);
        run(fleetfix(self.dir.path())
            .env("FLEETFIX_STATE_DIR", self.dir.path().join("state"))
            .env("VERCEL_API_TOKEN", VERCEL_TOKEN)
            .env("VERCEL_TEAM_ID", VERCEL_TEAM)
            .args(["run", "-i"])
            .arg(&inventory)
            .arg("--known-hosts")
            .arg(self.dir.path().join("known_hosts"))
            .args(extra)
            .arg(&pb))
    }
}

impl LabNode {
    fn create(bridge: &str, x: u8, i: usize, tag: u32) -> LabNode {
        let n = i + 1;
        let netns = format!("fflab-{}-{n}", std::process::id());
        let host_if = format!("ffl{tag}h{n}");
        let ns_if = format!("ffl{tag}n{n}");
        let addr = Ipv4Addr::new(10, 231, x, 10 + n as u8);
        let ok = ip(&["netns", "add", &netns])
            && ip(&[
                "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
            ])
            && ip(&["link", "set", &ns_if, "netns", &netns])
            && ip(&["link", "set", &host_if, "master", bridge])
            && ip(&["link", "set", &host_if, "up"])
            && ip(&[
                "-n",
                &netns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                &ns_if,
            ])
            && ip(&["-n", &netns, "link", "set", &ns_if, "up"])
            && ip(&["-n", &netns, "link", "set", "lo", "up"]);
        assert!(ok, "network namespace {netns}");
        // A private /run (docker.sock, sshd's privsep dir, sudo) and /opt
        // (the relay's bind mounts) make this namespace a host of its own.
        let holder = Command::new("/usr/bin/nsenter")
            .arg(format!("--net=/var/run/netns/{netns}"))
            .args([
                "--",
                "/usr/bin/unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
            ])
            .args([
                "/bin/sh",
                "-c",
                "mount -t tmpfs tmpfs /run && mkdir -p /run/sshd && mkdir -p /opt && \
                 mount -t tmpfs tmpfs /opt && touch /run/fleetfix-lab && exec sleep 1000000",
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("nsenter/unshare (util-linux)");
        let ready = PathBuf::from(format!("/proc/{}/root/run/fleetfix-lab", holder.id()));
        let start = Instant::now();
        while !ready.exists() {
            assert!(start.elapsed() < BOOT, "node {n}'s mount namespace");
            std::thread::sleep(Duration::from_millis(20));
        }
        LabNode {
            name: format!("relay{n}"),
            ip: addr,
            netns,
            host_if,
            holder,
            sshd: None,
            dockerd: None,
        }
    }

    /// A command that runs inside the node (its network and mount namespaces).
    fn enter(&self, program: &str) -> Command {
        let mut cmd = Command::new("/usr/bin/nsenter");
        cmd.args([
            "--target",
            &self.holder.id().to_string(),
            "--mount",
            "--net",
            "--",
            program,
        ]);
        cmd
    }

    fn stop(&mut self) {
        if let Some(mut d) = self.dockerd.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(d.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if matches!(d.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = d.kill();
            let _ = d.wait();
        }
        if let Some(mut s) = self.sshd.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
        // Sessions, containerd, shims and containers (host network) are
        // all in the namespace: end whatever is left.
        kill_all_in(&self.netns);
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        ip(&["netns", "del", &self.netns]);
        ip(&["link", "del", &self.host_if]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            let _ = self.docker(i, &["rm", "-f", "relay"]);
        }
        for n in &mut self.nodes {
            n.stop();
        }
        if let Some(mut r) = self.registry_proc.take() {
            let _ = r.kill();
            let _ = r.wait();
        }
        ip(&["link", "del", &self.bridge]);
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

fn wait_for(log: &Path, text: &str, limit: Duration) {
    let start = Instant::now();
    loop {
        let seen = std::fs::read_to_string(log).unwrap_or_default();
        if seen.contains(text) {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "no {text:?} in {} after {limit:?}:\n{seen}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

const DOCKERFILE: &str = "\
FROM scratch
ARG VERSION
ARG MODE
COPY busybox /bin/busybox
COPY serve.sh handler.sh /
ENV PATH=/bin RELAY_FAKE_VERSION=$VERSION RELAY_FAKE_MODE=$MODE
ENTRYPOINT [\"/bin/busybox\", \"sh\", \"/serve.sh\"]
";

/// The stand-in's entry point: one `handler.sh` per connection on 8088.
const SERVE_SH: &str = "\
if [ \"$RELAY_FAKE_MODE\" = broken ]; then exec busybox sleep 1000000; fi
busybox mkdir -p /srv/relay/data
exec busybox nc -ll -p 8088 -e busybox sh /handler.sh
";

/// Answers one request like relay would: with `x-relay-version` and CORS
/// headers when the image has a version. v0.1.0 as it was: no version
/// header, `OPTIONS` answered 405, and a page that says a source failed.
const HANDLER_SH: &str = "\
cr=$(busybox printf '\\r')
read -r method path proto
while read -r line; do
  case \"$line\" in \"\"|\"$cr\") break ;; esac
done
body=\"<html><body>relay ${RELAY_FAKE_VERSION:-0.1.0} on $RELAY_DNS_SUBDOMAIN</body></html>\"
status=\"200 OK\"
if [ -z \"$RELAY_FAKE_VERSION\" ]; then
  body=\"<html><body>relay 0.1.0 on $RELAY_DNS_SUBDOMAIN<p>error: hooks/lib/sources/tmdb.js failed to load</p></body></html>\"
fi
if [ \"$method\" = OPTIONS ]; then
  if [ -n \"$RELAY_FAKE_VERSION\" ]; then status=\"204 No Content\"; else status=\"405 Method Not Allowed\"; fi
  body=\"\"
fi
busybox printf 'HTTP/1.1 %s\\r\\nContent-Type: text/html\\r\\nContent-Length: %d\\r\\nConnection: close\\r\\n' \"$status\" \"${#body}\"
if [ -n \"$RELAY_FAKE_VERSION\" ]; then
  busybox printf 'x-relay-version: %s\\r\\nAccess-Control-Allow-Origin: *\\r\\nAccess-Control-Allow-Methods: GET, POST, OPTIONS\\r\\n' \"$RELAY_FAKE_VERSION\"
fi
busybox printf '\\r\\n%s' \"$body\"
";
