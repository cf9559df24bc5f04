//! The web views: `fleetfix runs ID --html FILE` opened offline in headless
//! Chromium, `fleetfix run --serve` (the live page and its event stream,
//! driven over WebDriver with chromedriver), the token off loopback, and
//! secrets masked in all of them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::Fleet;
use crate::common::cli::{fleetfix, json_run, playbook, run, wait_for};

const SECRET: &str = "s3cr3t-web-9f2c";

/// A playbook: node1 fails with a telling stderr, node2 and node3 sleep
/// `slow2` and `slow3` seconds, node4 is done at once; every node prints
/// the secret.
fn pb(dir: &Path, slow2: u32, slow3: u32) -> PathBuf {
    playbook(
        dir,
        "web.toml",
        &format!(
            r#"
name = "web <view>"
[secrets]
tok = {{ env = "FLEETFIX_WEB_TEST_SECRET" }}

[[steps]]
name = "work"
env = {{ T = "${{{{ secret.tok }}}}" }}
run = '''
echo "token $T"
case ${{{{ node.name }}}} in
  node1) echo "boom <b>on</b> node1 $T" >&2; exit 3 ;;
  node2) sleep {slow2} ;;
  node3) sleep {slow3} ;;
esac
'''
"#
        ),
    )
}

fn state(fleet: &Fleet) -> PathBuf {
    fleet.dir().join("state")
}

/// One HTTP/1.1 GET (`Connection: close`): status, head, body.
fn get(addr: &str, path: &str, extra: &str) -> (u16, String, String) {
    request(addr, "GET", path, extra, "")
}

fn request(addr: &str, method: &str, path: &str, extra: &str, body: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the web view");
    s.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\r\n{body}"
    )
    .unwrap();
    // Read the head, then a body of its Content-Length, else to the end
    // (chromedriver keeps the connection open).
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let n = s.read(&mut buf).expect("read the answer");
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            });
            if n == 0 || length.is_some_and(|len| body.len() >= len) {
                break;
            }
        }
        if n == 0 {
            break;
        }
    }
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// Starts `cmd` (stdout drained), and waits for `what` in a line of its
/// stderr; that line.
fn start_and_read_url(mut cmd: Command, what: &str) -> (Child, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fleetfix");
    let mut out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut out, &mut std::io::sink());
    });
    let err = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
            end(child);
            panic!("no `{what}` on stderr");
        };
        if line.contains(what) {
            return (child, line);
        }
    }
}

fn url_in(line: &str) -> String {
    line.split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("a URL")
        .to_string()
}

/// From the line printed for a server off loopback: the loopback
/// address to reach it at (its port on 127.0.0.1), and its token.
fn loopback_and_token(line: &str) -> (String, String) {
    let url = url_in(line);
    let port = authority(&url).rsplit(':').next().unwrap().to_string();
    let token = url.split("token=").nth(1).unwrap().to_string();
    (format!("127.0.0.1:{port}"), token)
}

/// `host:port` of `http://host:port/…`.
fn authority(url: &str) -> String {
    url["http://".len()..]
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

fn end(mut child: Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = child.wait();
}

/// Chromium's flags for a test: headless, nothing fetched from outside
/// (a dead proxy for all but loopback), a fresh profile.
fn chromium_flags(profile: &Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--proxy-server=http://127.0.0.1:9",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

/// The DOM of `url` after its scripts ran, from Chromium in a network
/// namespace of its own (no network at all).
fn dump_dom_offline(url: &str, profile: &Path) -> String {
    let mut child = Command::new("unshare")
        .arg("--net")
        .arg("chromium")
        .args(chromium_flags(profile))
        .arg("--virtual-time-budget=2000")
        .arg("--dump-dom")
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium (apt-get install chromium)");
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        let _ = tx.send(s);
    });
    let dom = rx.recv_timeout(Duration::from_secs(90));
    end(child);
    dom.expect("chromium dumped the DOM in time")
}

fn secret_env(cmd: &mut Command, fleet: &Fleet) {
    cmd.env("FLEETFIX_WEB_TEST_SECRET", SECRET)
        .env("FLEETFIX_STATE_DIR", state(fleet));
}

#[test]
fn runs_html_is_one_offline_page_and_runs_serve_asks_off_loopback_for_its_token() {
    let fleet = Fleet::start(4);
    let inv = fleet.write_inventory(&[]);
    let pb = pb(fleet.dir(), 0, 0);
    let mut cmd = json_run(fleet.dir(), &inv, fleet.known_hosts(), &pb, &[]);
    secret_env(&mut cmd, &fleet);
    let out = run(&mut cmd);
    assert_eq!(out.code, 1, "{}", out.dump());
    let id = out.of_kind("run_started")[0]["run_id"]
        .as_str()
        .unwrap()
        .to_string();

    // (1) One self-contained file: every node in the grid and in the details.
    let file = fleet.dir().join("run.html");
    let mut cmd = fleetfix(fleet.dir());
    cmd.args(["runs", &id, "--html"]).arg(&file);
    secret_env(&mut cmd, &fleet);
    let out = run(&mut cmd);
    assert_eq!(out.code, 0, "{}", out.dump());
    let html = std::fs::read_to_string(&file).unwrap();
    assert!(!html.contains(SECRET));
    assert!(html.contains("token ******"), "masked stdout");
    assert!(!html.contains("<b>on</b>"), "stderr is escaped");
    let dom = dump_dom_offline(
        &format!("file://{}", file.display()),
        &fleet.dir().join("chrome1"),
    );
    assert!(dom.contains("<h1>web &lt;view&gt;"), "{dom}");
    for n in ["node1", "node2", "node3", "node4"] {
        assert_eq!(
            dom.matches(&format!("data-node=\"{n}\"")).count(),
            2,
            "{n} in {dom}"
        );
    }
    assert!(
        dom.contains("class=\"s-failed\" title=\"node1: failed\""),
        "{dom}"
    );
    assert!(dom.contains("boom &lt;b&gt;on&lt;/b&gt; node1"), "{dom}");
    assert!(!dom.contains(SECRET));

    // (4) Off loopback: 401 without the token, 200 with it (then a cookie).
    let mut cmd = fleetfix(fleet.dir());
    cmd.args(["runs", "--serve", "0.0.0.0:0"]);
    secret_env(&mut cmd, &fleet);
    let (child, line) = start_and_read_url(cmd, "token=");
    let (addr, token) = loopback_and_token(&line);
    let (status, _, body) = get(&addr, "/", "");
    assert_eq!(status, 401, "{body}");
    assert_eq!(get(&addr, &format!("/runs/{id}"), "").0, 401);
    assert_eq!(get(&addr, "/?token=wrong", "").0, 401);
    let (status, head, body) = get(&addr, &format!("/?token={token}"), "");
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("set-cookie: fleetfix_token=")
    );
    assert!(body.contains(&format!("href=\"runs/{id}\"")), "{body}");
    let cookie = format!("Cookie: fleetfix_token={token}\r\n");
    let (status, _, body) = get(&addr, &format!("/runs/{id}"), &cookie);
    assert_eq!(status, 200);
    assert!(body.contains("data-node=\"node3\"") && !body.contains(SECRET));
    assert_eq!(request(&addr, "POST", "/", &cookie, "").0, 405);
    assert_eq!(get(&addr, "/runs/nope", &cookie).0, 404);
    end(child);
}

/// A W3C WebDriver session with chromedriver, spoken over plain HTTP.
struct Driver {
    child: Child,
    addr: String,
    session: String,
}

impl Driver {
    fn start(profile: &Path) -> Driver {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (apt-get install chromium-driver)");
        let addr = format!("127.0.0.1:{port}");
        wait_for("chromedriver", Duration::from_secs(30), || {
            TcpStream::connect(&addr).is_ok()
        });
        let mut d = Driver {
            child,
            addr,
            session: String::new(),
        };
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": chromium_flags(profile)}
        }}});
        let v = d.call("POST", "/session", &caps);
        d.session = v["value"]["sessionId"]
            .as_str()
            .expect("a session")
            .to_string();
        d
    }

    fn call(&self, method: &str, path: &str, body: &serde_json::Value) -> serde_json::Value {
        let body = body.to_string();
        let (_, head, answer) = request(
            &self.addr,
            method,
            path,
            &format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ),
            &body,
        );
        let answer = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(&answer)
        } else {
            answer
        };
        serde_json::from_str(answer.trim()).unwrap_or(serde_json::Value::Null)
    }

    fn go(&self, url: &str) {
        self.call(
            "POST",
            &format!("/session/{}/url", self.session),
            &serde_json::json!({ "url": url }),
        );
    }

    fn js(&self, script: &str) -> serde_json::Value {
        self.call(
            "POST",
            &format!("/session/{}/execute/sync", self.session),
            &serde_json::json!({ "script": script, "args": [] }),
        )["value"]
            .clone()
    }

    fn click(&self, css: &str) {
        let el = self.call(
            "POST",
            &format!("/session/{}/element", self.session),
            &serde_json::json!({ "using": "css selector", "value": css }),
        );
        let id = el["value"]
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("no element {css}: {el}"))
            .to_string();
        self.call(
            "POST",
            &format!("/session/{}/element/{id}/click", self.session),
            &serde_json::json!({}),
        );
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = std::panic::catch_unwind(|| {
                self.call(
                    "DELETE",
                    &format!("/session/{}", self.session),
                    &serde_json::json!({}),
                )
            });
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.wait();
    }
}

/// A chunked body, joined.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn run_serve_updates_the_page_live_and_streams_masked_events() {
    let fleet = Fleet::start(4);
    let inv = fleet.write_inventory(&[]);
    let pb = pb(fleet.dir(), 4, 14);
    let mut cmd = json_run(
        fleet.dir(),
        &inv,
        fleet.known_hosts(),
        &pb,
        &["--serve", "127.0.0.1:0"],
    );
    secret_env(&mut cmd, &fleet);
    let (child, line) = start_and_read_url(cmd, "serving this run at");
    let url = url_in(&line);
    assert!(!url.contains("token="), "loopback needs no token: {line}");
    let addr = authority(&url);

    // The event stream from the start (a plain client), read on a thread
    // until it ends with the run.
    let stream = {
        let addr = addr.clone();
        std::thread::spawn(move || get(&addr, "/events?after=0", "Accept: text/event-stream\r\n"))
    };

    // The page, in a real browser: it gains finished nodes without a reload.
    let driver = Driver::start(&fleet.dir().join("chrome2"));
    driver.go(&url);
    driver.js("window.fleetfixMarker = 42; return 1");
    let cell = |n: &str| {
        driver.js(&format!(
            "var c = document.querySelector('#grid a[data-node=\"{n}\"]'); return c ? c.className : null"
        ))
    };
    wait_for(
        "node2 to finish on the page",
        Duration::from_secs(40),
        || cell("node2") == "s-changed",
    );
    assert_eq!(
        driver.js("return window.fleetfixMarker || 0"),
        42,
        "the page reloaded"
    );
    assert_eq!(cell("node3"), "s-running", "node3 is still sleeping");
    assert_eq!(cell("node1"), "s-failed");
    // Clicking the failed node opens its details, stderr shown.
    driver.click("#grid a[data-node=\"node1\"]");
    let open = driver.js(
        "var d = document.querySelector('details.node[data-node=\"node1\"]'); \
         return [d.open, d.innerText]",
    );
    assert_eq!(open[0], true, "{open}");
    let text = open[1].as_str().unwrap_or_default();
    assert!(text.contains("boom <b>on</b> node1 ******"), "{text}");
    let (status, head, page) = get(&addr, "/", "");
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-security-policy")
    );
    assert!(!page.contains(SECRET));

    // The run ends: the page says so in place (the process ends with the run).
    wait_for(
        "the run to end on the page",
        Duration::from_secs(60),
        || cell("node3") == "s-changed",
    );
    wait_for("the final page", Duration::from_secs(20), || {
        driver
            .js("return document.body.dataset.live || ''")
            .as_str()
            .is_some_and(str::is_empty)
    });
    let header = driver.js("return document.querySelector('table.kv').innerText");
    assert!(
        header.as_str().unwrap_or_default().contains("exit 1"),
        "{header}"
    );

    let (status, _, events) = stream.join().unwrap();
    assert_eq!(status, 200);
    for kind in [
        "run_started",
        "step_finished",
        "node_finished",
        "run_finished",
    ] {
        assert!(
            events.contains(&format!("\"event\":\"{kind}\"")),
            "{kind} in {events}"
        );
    }
    assert!(events.contains("boom <b>on</b> node1"), "{events}");
    assert!(!events.contains(SECRET), "{events}");
    drop(driver);
    // Without --serve-linger the process ends with the run.
    let mut child = child;
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
}

/// `run --serve` off loopback asks for its token too, and with
/// `--serve-linger` the finished run's page stays up until Ctrl-C (which
/// then ends the process with the run's exit code).
#[test]
fn run_serve_off_loopback_needs_the_token_and_lingers_until_interrupted() {
    let fleet = Fleet::start(2);
    let inv = fleet.write_inventory(&[]);
    let pb = pb(fleet.dir(), 0, 0);
    let mut cmd = json_run(fleet.dir(), &inv, fleet.known_hosts(), &pb, &[]);
    cmd.args(["--serve", "0.0.0.0:0", "--serve-linger"]);
    secret_env(&mut cmd, &fleet);
    let (child, line) = start_and_read_url(cmd, "token=");
    let (addr, token) = loopback_and_token(&line);
    assert_eq!(get(&addr, "/", "").0, 401);
    assert_eq!(get(&addr, "/events", "").0, 401);
    assert_eq!(get(&addr, "/?token=nope", "").0, 401);
    let cookie = format!("Cookie: fleetfix_token={token}\r\n");
    // The run is over (node1 fails at once, node2 is done) and the page
    // still answers, finished, while the process lingers.
    let mut page = String::new();
    wait_for("the finished page", Duration::from_secs(60), || {
        let (status, _, body) = get(&addr, "/", &cookie);
        page = body;
        status == 200 && page.contains("exit 1")
    });
    assert!(
        page.contains("data-node=\"node2\"") && !page.contains(SECRET),
        "{page}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let mut child = child;
    assert!(
        child.try_wait().unwrap().is_none(),
        "--serve-linger keeps the process up"
    );
    assert_eq!(get(&addr, "/", &cookie).0, 200);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "Ctrl-C ends a lingering run");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1), "the run's exit code");
}
