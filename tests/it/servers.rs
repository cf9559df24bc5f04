//! fleetfix against the SSH servers and login shells users run: OpenSSH,
//! Debian's dropbear and tinysshd (one channel per connection, no signals,
//! no port forwarding), a chatty `~/.bashrc`, a refusing `nologin`.

use crate::common::cli::{Run, finish, fleetfix, json_run, playbook, run, signal, spawn, wait_for};
use crate::common::servers::{Daemon, Host, Servers};

/// `fleetfix run` on every server, JSON events out.
fn run_on(servers: &Servers, pb: &std::path::Path, extra: &[&str]) -> Run {
    run(&mut command(servers, pb, extra))
}

fn command(servers: &Servers, pb: &std::path::Path, extra: &[&str]) -> std::process::Command {
    let inv = servers.write_inventory("");
    json_run(servers.dir(), &inv, servers.known_hosts(), pb, extra)
}

/// Processes on this machine (every node's) whose command line is `args`.
fn left(args: &str) -> Vec<String> {
    let out = std::process::Command::new("ps")
        .args(["-eo", "pid=,args="])
        .output()
        .expect("ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim_start().split_once(' ').map(|(_, a)| a.trim()) == Some(args))
        .map(String::from)
        .collect()
}

fn one_of_each() -> Servers {
    Servers::start(Daemon::all().map(|d| Host::new(d.name(), d)).to_vec())
}

/// STEPSH is a shell of the test's own (a link to /bin/sh), so the steps'
/// own shells can be told from every other `sh -s` on this machine.
const TIMEOUT: &str = r#"
name = "timeout"

[[steps]]
name = "hello"
run = "echo hello"

[[steps]]
name = "as root"
run = "sleep 3032"
shell = "STEPSH"
sudo = true
timeout = "1s"
ignore_failure = true

[[steps]]
name = "slow"
run = "sleep 3031"
shell = "STEPSH"
timeout = "2s"

[[on_failure]]
name = "rollback"
run = "echo rolled back"
"#;

/// Points 1 and 2: a timed-out step leaves no process of it on the node,
/// the message claims what was checked, and the rollback runs after it,
/// on a server that allows one channel per connection too. The servers
/// themselves go on (tinysshd's tcpserver shares a process group with
/// every session: ending that group would end the server).
#[test]
fn a_timeout_ends_the_step_on_every_server_and_the_rollback_runs() {
    let servers = one_of_each();
    let stepsh = servers.dir().join("stepsh");
    std::os::unix::fs::symlink("/bin/sh", &stepsh).expect("symlink");
    let stepsh = stepsh.display().to_string();
    let pb = playbook(
        servers.dir(),
        "timeout.toml",
        &TIMEOUT.replace("STEPSH", &stepsh),
    );
    let out = run_on(&servers, &pb, &[]);
    assert_eq!(out.code, 1, "{}", out.dump());
    let all = out.steps_by_node();
    for d in Daemon::all() {
        let steps = &all[d.name()];
        for (step, secs) in [("as root", 1), ("slow", 2)] {
            let e = &steps[step];
            assert_eq!(e["status"], "failed", "{} {step}: {e}", d.name());
            assert_eq!(
                e["error"],
                format!("timed out after {secs}s; its processes were ended"),
                "{}: {e}",
                d.name()
            );
        }
        assert_eq!(
            steps["rollback"]["stdout"],
            "rolled back\n",
            "{}: {}",
            d.name(),
            steps["rollback"]
        );
    }
    assert_eq!(left("sleep 3031"), Vec::<String>::new());
    assert_eq!(left("sleep 3032"), Vec::<String>::new());
    assert_eq!(left(&format!("{stepsh} -s")), Vec::<String>::new());
    assert_eq!(
        left(&format!("sudo -n -- {stepsh} -s")),
        Vec::<String>::new()
    );
    // Every server still serves, and nothing but the summary is said.
    let inv = servers.write_inventory("");
    let again = run(fleetfix(servers.dir())
        .args(["run", "--progress", "never", "-i"])
        .arg(&inv)
        .arg("--known-hosts")
        .arg(servers.known_hosts())
        .arg(&pb));
    assert_eq!(again.code, 1, "{}", again.dump());
    assert!(
        again.stdout.contains("3 nodes: 3 failed"),
        "{}",
        again.dump()
    );
    assert_eq!(again.stderr, "", "{}", again.dump());
}

/// Point 1: an interrupted step is ended after its grace, and no process
/// of it is left.
#[test]
fn an_interrupt_ends_the_step_on_every_server() {
    let servers = one_of_each();
    let trace = servers.dir().join("started");
    std::fs::create_dir_all(&trace).expect("trace dir");
    let pb = playbook(
        servers.dir(),
        "long.toml",
        &format!(
            r#"
name = "long"
[[steps]]
name = "long"
run = "touch {}/${{{{ node.name }}}}; sleep 3033"
"#,
            trace.display()
        ),
    );
    let child = spawn(command(&servers, &pb, &[]));
    wait_for(
        "every node to start",
        std::time::Duration::from_secs(20),
        || std::fs::read_dir(&trace).map(|d| d.count()).unwrap_or(0) == 3,
    );
    signal(&child, nix::sys::signal::Signal::SIGINT);
    let out = finish(child);
    assert_eq!(out.code, 3, "{}", out.dump());
    for (node, steps) in &out.steps_by_node() {
        assert_eq!(
            steps["long"]["error"], "interrupted; its processes were ended",
            "{node}: {}",
            steps["long"]
        );
    }
    assert_eq!(left("sleep 3033"), Vec::<String>::new());
}

/// A ~/.bashrc that talks, as many real hosts have.
const BASHRC: &str = "echo 'Welcome to node (from .bashrc)'\necho 'bashrc: warning' >&2\n";

/// Point 4: a step's stdout, stderr and capture are what the step printed,
/// whatever the login shell prints first: in the step shell, in a channel
/// of its own (a large script), and after a timeout. bash reads ~/.bashrc
/// for commands from OpenSSH and dropbear (it sees SSH_CLIENT); tinysshd
/// sets no SSH_CLIENT, so there the login shell itself talks first.
#[test]
fn login_shell_noise_is_not_a_steps_output() {
    // Outside /tmp, which each server has a private one of.
    let talk = tempfile::Builder::new()
        .prefix("fleetfix-talk-")
        .tempdir_in("/var/tmp")
        .expect("temp dir");
    let talker = talk.path().join("talking-bash");
    std::fs::write(
        &talker,
        format!("#!/bin/sh\n{BASHRC}exec /bin/bash \"$@\"\n"),
    )
    .expect("write shell");
    std::fs::set_permissions(&talker, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let servers = Servers::start(
        Daemon::all()
            .map(|d| match d {
                Daemon::Tinysshd => Host::new(d.name(), d).shell(&talker.display().to_string()),
                _ => Host::new(d.name(), d)
                    .shell("/bin/bash")
                    .home_file(".bashrc", BASHRC),
            })
            .to_vec(),
    );
    for d in Daemon::all() {
        let said = servers.ssh(d.name(), "true");
        assert!(
            String::from_utf8_lossy(&said.stdout).contains("Welcome to node")
                && String::from_utf8_lossy(&said.stderr).contains("bashrc: warning"),
            "{}: the login shell should talk: {said:?}",
            d.name()
        );
    }
    let big = format!("echo big\n# {}\n", "x".repeat(300 * 1024));
    let pb = playbook(
        servers.dir(),
        "noise.toml",
        &format!(
            r#"
name = "noise"

[[steps]]
name = "capture"
run = "echo value"
capture = "v"

[[steps]]
name = "write"
run = "printf %s ${{{{ v }}}} > {dir}/${{{{ node.name }}}}.out; echo wrote; echo to-stderr >&2"

[[steps]]
name = "big"
run = '''{big}'''

[[steps]]
name = "slow"
run = "sleep 3034"
timeout = "1s"
ignore_failure = true

[[steps]]
name = "after"
run = "echo after"
"#,
            dir = servers.dir().display()
        ),
    );
    let out = run_on(&servers, &pb, &[]);
    assert_eq!(out.code, 0, "{}", out.dump());
    let all = out.steps_by_node();
    for d in Daemon::all() {
        let n = d.name();
        let steps = &all[n];
        let expect = [
            ("capture", "value\n", ""),
            ("write", "wrote\n", "to-stderr\n"),
            ("big", "big\n", ""),
            ("after", "after\n", ""),
        ];
        for (step, stdout, stderr) in expect {
            let e = &steps[step];
            assert_eq!(e["stdout"], stdout, "{n} {step}: {e}");
            assert_eq!(e["stderr"], stderr, "{n} {step}: {e}");
        }
        assert_eq!(
            steps["slow"]["error"], "timed out after 1s; its processes were ended",
            "{n}: {}",
            steps["slow"]
        );
        let written =
            std::fs::read_to_string(servers.dir().join(format!("{n}.out"))).unwrap_or_default();
        assert_eq!(written, "value", "{n}: the capture carried login noise");
    }
    assert_eq!(left("sleep 3034"), Vec::<String>::new());
}

/// Point 5: a login shell that refuses (`nologin`) is shown with its own
/// words, in the human output too, and its exit status is kept. dropbear
/// refuses such an account at login (its shell is not in /etc/shells):
/// the node is unreachable, saying so.
#[test]
fn a_refusing_login_shell_says_why() {
    let servers = Servers::start(
        Daemon::all()
            .map(|d| Host::new(d.name(), d).shell("/usr/sbin/nologin"))
            .to_vec(),
    );
    let pb = playbook(
        servers.dir(),
        "refused.toml",
        "name = \"refused\"\n[[steps]]\nname = \"hello\"\nrun = \"echo hello\"\n",
    );
    let out = run_on(&servers, &pb, &[]);
    let all = out.steps_by_node();
    for n in ["openssh", "tinysshd"] {
        let e = &all[n]["hello"];
        assert_eq!(e["status"], "failed", "{n}: {e}");
        assert_eq!(e["exit"], 1, "{n}: {e}");
        assert_eq!(
            e["error"],
            "the account's login shell did not run the command (exit 1): This account is currently not available.",
            "{n}: {e}"
        );
    }
    let dropbear = out
        .of_kind("node_finished")
        .into_iter()
        .find(|e| e["node"] == "dropbear")
        .expect("dropbear finished");
    assert_eq!(dropbear["status"], "unreachable", "{dropbear}");
    let inv = servers.write_inventory("");
    let human = run(fleetfix(servers.dir())
        .args(["run", "-i"])
        .arg(&inv)
        .arg("--known-hosts")
        .arg(servers.known_hosts())
        .arg(&pb));
    assert_eq!(human.code, 1, "{}", human.dump());
    assert!(
        human
            .stdout
            .contains("This account is currently not available."),
        "{}",
        human.dump()
    );
}
