//! The node lock: two runners (separate state dirs, as on two machines)
//! rolling the same playbook onto one node. The second is refused with exit
//! 4 naming the holder while the first changes the node; the lock ends
//! with the first run's connection (a command of it still running on the
//! node holds it until it ends), however that connection ends.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::Fleet;
use crate::common::cli::{Run, finish, json_run, playbook, run, signal, spawn, wait_for};

const ROLL: &str = r#"
name = "roll"
[[steps]]
name = "change"
run = "echo $$ > MARK/started; sleep SECS; echo done >> MARK/done"
"#;

/// `fleetfix run` as `user` on a machine of its own: its own state dir.
fn runner(fleet: &Fleet, inv: &Path, pb: &Path, user: &str, extra: &[&str]) -> Command {
    runner_with(fleet.known_hosts(), fleet, inv, pb, user, extra)
}

fn runner_with(
    kh: &Path,
    fleet: &Fleet,
    inv: &Path,
    pb: &Path,
    user: &str,
    extra: &[&str],
) -> Command {
    let mut c = json_run(fleet.dir(), inv, kh, pb, extra);
    c.env(
        "FLEETFIX_STATE_DIR",
        fleet.dir().join(format!("state-{user}")),
    )
    .env("USER", user);
    c
}

fn roll(fleet: &Fleet, secs: u32) -> (PathBuf, PathBuf) {
    let mark = fleet.dir().join("mark");
    std::fs::create_dir_all(&mark).expect("mark dir");
    let _ = std::fs::remove_file(mark.join("started"));
    let text = ROLL
        .replace("MARK", &mark.display().to_string())
        .replace("SECS", &secs.to_string());
    (playbook(fleet.dir(), "roll.toml", &text), mark)
}

fn run_id(out: &Run) -> String {
    out.events()[0]["run_id"]
        .as_str()
        .expect("run id")
        .to_string()
}

/// The busy node's error names the holder: run id, user, runner host,
/// start.
fn assert_refused_by(out: &Run, holder_run: &str, user: &str) {
    assert_eq!(out.code, 4, "{}", out.dump());
    let node = out
        .of_kind("node_finished")
        .into_iter()
        .find(|e| e["node"] == "node1")
        .expect("node1 finished");
    assert_eq!(node["status"], "not_run", "{node}");
    let error = node["error"].as_str().unwrap_or_default();
    let host = nix::unistd::gethostname()
        .expect("hostname")
        .into_string()
        .expect("utf-8 hostname");
    for part in [
        "node node1 is locked by another run of `roll`".to_string(),
        format!("run {holder_run}"),
        format!("user {user}"),
        format!("runner host {host}"),
        "started 20".to_string(),
    ] {
        assert!(error.contains(&part), "no {part:?} in {error:?}");
    }
}

#[test]
fn a_second_runner_is_refused_while_the_first_changes_the_node() {
    let fleet = Fleet::start(1);
    let inv = fleet.write_inventory(&[]);
    let (pb, mark) = roll(&fleet, 3);
    let first = spawn(runner(&fleet, &inv, &pb, "alice", &[]));
    wait_for("alice's step to start", Duration::from_secs(20), || {
        mark.join("started").exists()
    });
    let second = run(&mut runner(&fleet, &inv, &pb, "bob", &[]));
    let first = finish(first);
    assert_eq!(first.code, 0, "{}", first.dump());
    assert_refused_by(&second, &run_id(&first), "alice");
    assert_eq!(
        std::fs::read_to_string(mark.join("done")).unwrap_or_default(),
        "done\n",
        "bob changed nothing"
    );
    // alice's run ended: bob's goes.
    let again = run(&mut runner(&fleet, &inv, &pb, "bob", &[]));
    assert_eq!(again.code, 0, "{}", again.dump());
    // A read-only look (--check) never takes the lock.
    let (pb, mark) = roll(&fleet, 3);
    let first = spawn(runner(&fleet, &inv, &pb, "alice", &[]));
    wait_for("alice's step to start", Duration::from_secs(20), || {
        mark.join("started").exists()
    });
    let check = run(&mut runner(&fleet, &inv, &pb, "bob", &["--check"]));
    assert_eq!(check.code, 5, "{}", check.dump());
    assert_eq!(finish(first).code, 0);
}

/// A crashed holder (SIGKILL) needs no cleanup: its last command still runs
/// on the node and holds the lock until it ends, which `--lock-wait` waits
/// for.
#[test]
fn a_crashed_holder_releases_the_node_when_its_last_command_ends() {
    let fleet = Fleet::start(1);
    let inv = fleet.write_inventory(&[]);
    let (pb, mark) = roll(&fleet, 2);
    let first = spawn(runner(&fleet, &inv, &pb, "alice", &[]));
    wait_for("alice's step to start", Duration::from_secs(20), || {
        mark.join("started").exists()
    });
    signal(&first, nix::sys::signal::Signal::SIGKILL);
    let _ = finish(first);
    let busy = run(&mut runner(&fleet, &inv, &pb, "bob", &[]));
    assert_eq!(busy.code, 4, "{}", busy.dump());
    let waited = run(&mut runner(
        &fleet,
        &inv,
        &pb,
        "bob",
        &["--lock-wait", "20s"],
    ));
    assert_eq!(waited.code, 0, "{}", waited.dump());
}

/// A TCP relay between the runner and sshd whose connections the test can
/// cut, as a lost link would.
struct Relay {
    port: u16,
    streams: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>,
    /// Set: bytes are dropped both ways and nothing is closed, as when a
    /// link goes silent.
    silent: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    fn to(target: std::net::SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let port = listener.local_addr().expect("addr").port();
        let streams = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let silent = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let kept = streams.clone();
        let quiet = silent.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                for s in [&client, &server] {
                    if let Ok(c) = s.try_clone() {
                        kept.lock().expect("lock").push(c);
                    }
                }
                pipe(
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                    quiet.clone(),
                );
                pipe(server, client, quiet.clone());
            }
        });
        Relay {
            port,
            streams,
            silent,
        }
    }

    /// Drops every byte from now on, closing nothing.
    fn go_silent(&self) {
        self.silent.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Ends every connection through the relay, both ways.
    fn cut(&self) {
        for s in self.streams.lock().expect("lock").drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    silent: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if silent.load(std::sync::atomic::Ordering::SeqCst) {
                continue;
            }
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        if !silent.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = to.shutdown(Shutdown::Both);
        }
    });
}

/// alice rolls node1 through a relay that `lose` breaks mid-step; bob
/// then finds node1 locked, and gets it once alice's command ended and
/// sshd let go of her session.
fn lose_the_link(fleet: &Fleet, lose: impl FnOnce(&Relay), wait: &str) {
    let node = fleet.node("node1");
    let relay = Relay::to(node.socket_addr());
    // alice reaches node1 through the relay (known_hosts names the relay's
    // address with node1's key).
    let kh = fleet.dir().join("known_hosts_relay");
    std::fs::write(
        &kh,
        format!(
            "[127.0.0.1]:{} {}\n",
            relay.port,
            fleet.host_pubkey_line("node1")
        ),
    )
    .expect("known_hosts");
    let inv_relay = fleet.dir().join("inventory_relay.toml");
    let inv = fleet.write_inventory(&[]);
    let text = std::fs::read_to_string(&inv).expect("inventory");
    std::fs::write(
        &inv_relay,
        text.replace(&format!("host = \"{}\"", node.addr), "host = \"127.0.0.1\"")
            .replace(
                &format!("port = {}", node.port),
                &format!("port = {}", relay.port),
            ),
    )
    .expect("inventory");
    let (pb, mark) = roll(fleet, 2);
    let first = spawn(runner_with(&kh, fleet, &inv_relay, &pb, "alice", &[]));
    wait_for("alice's step to start", Duration::from_secs(20), || {
        mark.join("started").exists()
    });
    lose(&relay);
    let busy = run(&mut runner(fleet, &inv, &pb, "bob", &[]));
    assert_eq!(busy.code, 4, "{}", busy.dump());
    let waited = run(&mut runner(fleet, &inv, &pb, "bob", &["--lock-wait", wait]));
    assert_eq!(waited.code, 0, "{}", waited.dump());
    let first = finish(first);
    assert_eq!(first.code, 6, "alice lost node1: {}", first.dump());
}

/// The link is cut under the holder (both ends see it close).
#[test]
fn a_holder_that_loses_its_connection_releases_the_node() {
    lose_the_link(&Fleet::start(1), Relay::cut, "20s");
}

/// The link goes silent (nothing closes): sshd's `ClientAliveInterval`
/// ends the session, and with it the lock, as the README advises.
#[test]
fn a_holder_whose_link_goes_silent_releases_the_node_after_client_alive() {
    let fleet = Fleet::builder()
        .nodes(1)
        .sshd_config("ClientAliveInterval 1")
        .sshd_config("ClientAliveCountMax 2")
        .start();
    lose_the_link(&fleet, Relay::go_silent, "30s");
}
