//! `http` steps against real sshd nodes: from the runner and tunnelled
//! through the node's SSH connection.

use std::time::Duration;

use crate::common::Fleet;
use crate::common::cli::{Run, fleetfix, playbook, run, run_json_on};
use crate::common::http::CannedServer;
use serde_json::Value;

fn run_json(fleet: &Fleet, pb: &std::path::Path) -> Run {
    run_json_on(fleet, &fleet.write_inventory(&[]), pb, &[])
}

fn steps(out: &Run) -> Vec<Value> {
    out.of_kind("step_finished")
}

#[test]
fn version_header_from_the_runner_and_through_ssh() {
    let fleet = Fleet::start(2);
    let server = CannedServer::start(
        200,
        &[
            ("X-Relay-Version", "0.2.0"),
            ("Access-Control-Allow-Origin", "*"),
        ],
        "relay ok",
    );
    let pb = playbook(
        fleet.dir(),
        "http.toml",
        &format!(
            r#"
name = "http"
report_vars = ["served"]
[vars]
port = {port}
expected_version = "0.2.0"

[[steps]]
name = "direct"
http = {{ url = "http://127.0.0.1:${{{{ port }}}}/hooks/lib/sources/tmdb.js", headers = {{ "X-Relay-Branch" = "main" }} }}
expect = {{ status = 200, headers = {{ "x-relay-version" = "${{{{ expected_version }}}}" }}, body_contains = "ok" }}

[[steps]]
name = "through ssh"
http = {{ url = "http://127.0.0.1:${{{{ port }}}}/", via = "ssh", method = "HEAD" }}
expect = {{ status = [200, 204], headers = {{ "X-RELAY-VERSION" = "0.2.0" }} }}
capture = "served"
capture_header = "X-Relay-Version"

[[steps]]
name = "preflight"
http = {{ url = "http://127.0.0.1:${{{{ port }}}}/", via = "ssh", method = "OPTIONS", headers = {{ Origin = "https://example.org" }} }}
expect = {{ headers = {{ "access-control-allow-origin" = "*" }}, body_not_contains = ["error", "failed"] }}
"#,
            port = server.addr.port()
        ),
    );
    let out = run_json(&fleet, &pb);
    assert_eq!(out.code, 0, "{}", out.dump());
    let s = steps(&out);
    assert_eq!(s.len(), 6);
    assert!(s.iter().all(|e| e["status"] == "ok"), "{s:?}");
    let finished: Vec<Value> = out
        .events()
        .into_iter()
        .filter(|e| e["event"] == "node_finished")
        .collect();
    assert!(
        finished.iter().all(|n| n["report"]["served"] == "0.2.0"),
        "{finished:?}"
    );
    let requests = server.requests.lock().expect("requests").clone();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("GET /hooks/lib/sources/tmdb.js")
                && r.to_lowercase().contains("x-relay-branch: main"))
    );
    assert!(requests.iter().any(|r| r.starts_with("HEAD / ")));
    assert!(
        requests.iter().any(|r| r.starts_with("OPTIONS / ")
            && r.to_lowercase().contains("origin: https://example.org"))
    );
}

#[test]
fn a_header_mismatch_shows_expected_and_actual() {
    let fleet = Fleet::start(1);
    let server = CannedServer::start(200, &[("X-Relay-Version", "0.1.0")], "old");
    let pb = playbook(
        fleet.dir(),
        "mismatch.toml",
        &format!(
            r#"
name = "mismatch"
[[steps]]
name = "version"
http = {{ url = "{url}", via = "ssh" }}
expect = {{ headers = {{ "x-relay-version" = "0.2.0" }} }}
"#,
            url = server.url("/")
        ),
    );
    let out = run_json(&fleet, &pb);
    assert_eq!(out.code, 1, "{}", out.dump());
    let s = steps(&out);
    let err = s[0]["error"].as_str().unwrap_or_default();
    assert!(err.contains("expected `0.2.0`, got `0.1.0`"), "{err}");
    assert!(
        s[0]["stdout"]
            .as_str()
            .is_some_and(|o| o.contains("HTTP 200")),
        "{s:?}"
    );
}

#[test]
fn retries_wait_for_a_server_that_comes_up_later() {
    let fleet = Fleet::start(1);
    let server = CannedServer::start_after(Duration::from_secs(3), 200, &[], "up");
    let pb = playbook(
        fleet.dir(),
        "later.toml",
        &format!(
            r#"
name = "later"
[[steps]]
name = "wait for it"
http = {{ url = "{url}", via = "ssh", timeout = "1s" }}
expect = {{ body_contains = "up" }}
retries = 20
retry_delay = "500ms"
"#,
            url = server.url("/health")
        ),
    );
    let out = run_json(&fleet, &pb);
    assert_eq!(out.code, 0, "{}", out.dump());
    let s = steps(&out);
    let attempt = s[0]["attempt"].as_u64().unwrap_or(0);
    assert!(
        attempt >= 3,
        "succeeded too soon (attempt {attempt}): {s:?}"
    );
    assert!(s[0]["duration_ms"].as_u64().unwrap_or(0) >= 2500, "{s:?}");
}

/// `openssl s_server -www` with a fresh self-signed certificate, by pid.
struct SelfSigned {
    child: std::process::Child,
    port: u16,
}

impl SelfSigned {
    fn start(dir: &std::path::Path) -> Self {
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        let made = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl req");
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let child = std::process::Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_server");
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "s_server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        SelfSigned { child, port }
    }
}

impl Drop for SelfSigned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_self_signed_server_needs_insecure_tls() {
    let fleet = Fleet::start(1);
    let tls = SelfSigned::start(fleet.dir());
    let pb = |insecure: bool| {
        playbook(
            fleet.dir(),
            &format!("tls-{insecure}.toml"),
            &format!(
                "name = \"tls\"\n[[steps]]\nname = \"https\"\nhttp = {{ url = \"https://127.0.0.1:{}/\", insecure_tls = {insecure} }}\nexpect = {{ status = 200 }}\n",
                tls.port
            ),
        )
    };
    let out = run_json(&fleet, &pb(true));
    assert_eq!(out.code, 0, "{}", out.dump());
    let out = run_json(&fleet, &pb(false));
    assert_eq!(out.code, 1, "{}", out.dump());
    let err = steps(&out)[0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        err.contains("TLS error") && err.contains("insecure_tls = true"),
        "{err}"
    );
}

#[test]
fn via_ssh_reaches_what_only_the_node_can_reach() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ns = crate::common::netns::Netns::create();
    let (conf, kh_line) = crate::common::netns::sshd_setup(dir.path(), "node", ns.ns_ip, 22);
    let key = crate::common::netns::client_key(dir.path());
    let sshd_log = dir.path().join("sshd.log");
    ns.spawn(
        "/usr/sbin/sshd",
        &["-D", "-e", "-f", conf.to_str().expect("utf8")],
        &sshd_log,
    );
    crate::common::netns::Netns::wait_for(&sshd_log, "Server listening");
    // An HTTP server on the namespace's own loopback.
    let web_log = dir.path().join("web.log");
    let server = dir.path().join("server.py");
    std::fs::write(
        &server,
        "import http.server as h\n\
         class H(h.BaseHTTPRequestHandler):\n\
         \x20   def do_GET(s):\n\
         \x20       s.send_response(200); s.send_header('X-Relay-Version', '0.2.0'); s.end_headers(); s.wfile.write(b'relay')\n\
         \x20   def log_message(s, *a): pass\n\
         print('serving', flush=True)\n\
         h.HTTPServer(('127.0.0.1', 18088), H).serve_forever()\n",
    )
    .expect("server.py");
    ns.spawn("python3", &[server.to_str().expect("utf8")], &web_log);
    crate::common::netns::Netns::wait_for(&web_log, "serving");
    std::thread::sleep(Duration::from_millis(200));
    // The runner cannot reach it: 127.0.0.1 here is another machine.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", 18088)).is_err(),
        "port 18088 is taken on the runner"
    );

    std::fs::write(dir.path().join("known_hosts"), format!("{kh_line}\n")).expect("kh");
    let inv = dir.path().join("inventory.toml");
    std::fs::write(
        &inv,
        format!(
            "[nodes.isolated]\nhost = \"{}\"\nuser = \"root\"\nidentity_file = \"{}\"\n",
            ns.ns_ip,
            key.display()
        ),
    )
    .expect("inventory");
    let pb = playbook(
        dir.path(),
        "ns.toml",
        r#"
name = "ns"
[[steps]]
name = "through the node"
http = { url = "http://127.0.0.1:18088/", via = "ssh" }
expect = { headers = { "x-relay-version" = "0.2.0" } }
[[steps]]
name = "from the runner"
http = { url = "http://127.0.0.1:18088/", timeout = "2s" }
ignore_failure = true
"#,
    );
    let out = run(fleetfix(dir.path())
        .args(["run", "--output", "json", "-i"])
        .arg(&inv)
        .arg("--known-hosts")
        .arg(dir.path().join("known_hosts"))
        .arg(&pb));
    assert_eq!(out.code, 0, "{}", out.dump());
    let s = steps(&out);
    assert_eq!(s[0]["status"], "ok", "{s:?}");
    assert_eq!(
        s[1]["status"], "failed",
        "the runner reached the node's loopback: {s:?}"
    );
}
