//! The step shell: one `sh` per connection runs every step of the node
//! (the transport's fast path), against real sshd.

use std::collections::HashMap;

use crate::common::Fleet;
use crate::common::cli::{
    finish, fleetfix, json_run, playbook, run, run_json_on, signal, spawn, wait_for,
};
use serde_json::Value;

/// Each step reports its parent: its pid and command name. `SLEEP` is a
/// length no other test uses, so the sleeper can be counted.
const PLAYBOOK: &str = r#"
name = "shell"

[[steps]]
name = "a"
run = "echo $PPID $(ps -o comm= -p $PPID)"
changes = false

[[steps]]
name = "b"
run = "printf 'no newline'; printf 'to stderr' >&2"
changes = false

[[steps]]
name = "c"
run = "echo $PPID $(ps -o comm= -p $PPID); sleep SLEEP"
timeout = "1s"
ignore_failure = true

[[steps]]
name = "d"
run = "echo $PPID $(ps -o comm= -p $PPID); printf 'x\\037y\\n'; exit 7"
ignore_failure = true

[[steps]]
name = "e"
run = "echo $PPID $(ps -o comm= -p $PPID)"
changes = false
"#;

/// "PID COMM" of a step's parent.
fn parent(step: &Value) -> (String, String) {
    let out = step["stdout"].as_str().unwrap_or_default();
    let line = out.lines().next().unwrap_or_default();
    let mut it = line.split_whitespace();
    let pid = it.next().unwrap_or_default().to_string();
    let comm = it.next().unwrap_or_default().to_string();
    (pid, comm)
}

/// What every node must show whichever way its steps ran.
fn check_results(steps: &HashMap<String, Value>, node: &str) {
    let b = &steps["b"];
    assert_eq!(b["status"], "ok", "{node}: {b}");
    assert_eq!(b["stdout"], "no newline", "{node}: {b}");
    assert_eq!(b["stderr"], "to stderr", "{node}: {b}");
    let c = &steps["c"];
    assert_eq!(c["status"], "failed", "{node}: {c}");
    assert!(
        c["error"].as_str().is_some_and(|e| e.contains("timed out")),
        "{node}: {c}"
    );
    assert!(
        c["duration_ms"].as_u64().is_some_and(|d| d < 5000),
        "{node}: {c}"
    );
    let d = &steps["d"];
    assert_eq!(d["exit"], 7, "{node}: {d}");
    assert!(
        d["stdout"]
            .as_str()
            .is_some_and(|o| o.ends_with("x\u{1f}y\n")),
        "{node}: {d}"
    );
    assert_eq!(steps["e"]["status"], "ok", "{node}: {}", steps["e"]);
}

fn sleepers_left(fleet: &Fleet, inv: &std::path::Path, secs: u32) -> Vec<String> {
    let check = run(fleetfix(fleet.dir())
        .args(["exec", "-i"])
        .arg(inv)
        .arg("--known-hosts")
        .arg(fleet.known_hosts())
        .arg("--")
        .arg(format!("ps -eo args | grep -c '^sleep {secs}$' || true")));
    assert_eq!(check.code, 0, "{}", check.dump());
    check
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_digit()))
        .map(String::from)
        .collect()
}

/// Runs the playbook on every node of `fleet` (`sleep` names its sleeper)
/// and checks what must hold whichever way the steps ran: the results, and
/// no sleeper left. Returns node -> step -> event.
fn run_checked(fleet: &Fleet, sleep: u32) -> HashMap<String, HashMap<String, Value>> {
    let inv = fleet.write_inventory(&[]);
    let pb = playbook(
        fleet.dir(),
        "shell.toml",
        &PLAYBOOK.replace("SLEEP", &sleep.to_string()),
    );
    let out = run_json_on(fleet, &inv, &pb, &[]);
    assert_eq!(out.code, 0, "{}", out.dump());
    let all = out.steps_by_node();
    let n = fleet.nodes().len();
    assert_eq!(all.len(), n, "{}", out.dump());
    for (node, steps) in &all {
        check_results(steps, node);
    }
    let left = sleepers_left(fleet, &inv, sleep);
    assert_eq!(left, vec!["0"; n], "the timed-out sleep survived");
    all
}

/// A timeout ends the step's processes, not the shell: the steps after it
/// (here, and an `[[on_failure]]` rollback elsewhere) run in the same one.
#[test]
fn steps_share_one_shell_that_outlives_a_timeout() {
    let fleet = Fleet::start(3);
    for (node, steps) in &run_checked(&fleet, 3023) {
        let (a, c, d, e) = (
            parent(&steps["a"]),
            parent(&steps["c"]),
            parent(&steps["d"]),
            parent(&steps["e"]),
        );
        // Each step's script runs under the node's step shell, not sshd.
        assert_eq!(a.1, "sh", "{node}: {a:?}");
        assert_eq!(a, c, "{node}: one shell for the steps before the timeout");
        assert_eq!(c, d, "{node}: the timeout did not end the shell");
        assert_eq!(d, e, "{node}: one shell to the end");
        assert_eq!(
            steps["c"]["error"], "timed out after 1s; its processes were ended",
            "{node}: only what was checked is claimed"
        );
    }
}

/// mksh has no builtin `printf`: a step shell there would show the script
/// on printf's command line, so every step gets a channel of its own.
#[test]
fn a_node_without_a_builtin_printf_gets_a_channel_per_step() {
    let mksh = std::path::Path::new("/usr/bin/mksh");
    assert!(mksh.exists(), "this test needs mksh (apt-get install mksh)");
    let bin = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(mksh, bin.path().join("sh")).expect("symlink");
    let fleet = Fleet::builder()
        .nodes(2)
        .sshd_config(format!(
            "SetEnv PATH={}:/usr/sbin:/usr/bin:/sbin:/bin",
            bin.path().display()
        ))
        .start();
    for (node, steps) in &run_checked(&fleet, 3029) {
        for step in ["a", "c", "d", "e"] {
            let p = parent(&steps[step]);
            assert_eq!(p.1, "sshd", "{node} {step}: a channel of its own: {p:?}");
        }
    }
}

/// `capture` (the step shell's pid) feeds the step after it; `first`
/// leaves a trace and takes a second, `second` leaves a trace. TRACE is a
/// directory of the test.
const AHEAD: &str = r#"
name = "ahead"

[[steps]]
name = "capture"
run = "echo $PPID"
changes = false
capture = "got"

[[steps]]
name = "echo"
run = "echo $PPID got=${{ got }}"
changes = false

[[steps]]
name = "first"
run = "echo ran >> TRACE/${{ node.name }}.first; sleep 1"
changes = false

[[steps]]
name = "second"
run = "echo ran >> TRACE/${{ node.name }}.second"
changes = false

[[steps]]
name = "third"
run = "echo ran >> TRACE/${{ node.name }}.third"
changes = false
"#;

fn traces(dir: &std::path::Path, suffix: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
                .count()
        })
        .unwrap_or(0)
}

/// Read-only steps are sent to the node's shell behind the step before
/// them, saving a round trip each: `second` starts on the node while the
/// runner is stopped (SIGSTOP) and so cannot have asked for it. A step
/// whose rendering needs the capture of the one before waits for it, and
/// nothing goes ahead under --check.
#[test]
fn read_only_steps_go_ahead_without_the_runner() {
    let fleet = Fleet::start(3);
    let n = fleet.nodes().len();
    let inv = fleet.write_inventory(&[]);
    let trace = tempfile::tempdir().expect("tempdir");
    let pb = playbook(
        fleet.dir(),
        "ahead.toml",
        &AHEAD.replace("TRACE", &trace.path().display().to_string()),
    );
    let child = spawn(json_run(fleet.dir(), &inv, fleet.known_hosts(), &pb, &[]));
    let limit = std::time::Duration::from_secs(20);
    wait_for("every `first` to start", limit, || {
        traces(trace.path(), ".first") == n
    });
    signal(&child, nix::sys::signal::Signal::SIGSTOP);
    let went_ahead = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        traces(trace.path(), ".second") == n
    });
    signal(&child, nix::sys::signal::Signal::SIGCONT);
    let out = finish(child);
    assert!(
        went_ahead,
        "`second` did not start while the runner was stopped"
    );
    assert_eq!(out.code, 0, "{}", out.dump());
    for (node, steps) in &out.steps_by_node() {
        let shell = steps["capture"]["stdout"]
            .as_str()
            .unwrap_or_default()
            .trim();
        assert!(!shell.is_empty(), "{node}");
        assert_eq!(
            steps["echo"]["stdout"],
            format!("{shell} got={shell}\n"),
            "{node}: waits for the capture, in the same shell"
        );
        for step in ["second", "third"] {
            assert_eq!(steps[step]["status"], "ok", "{node}");
        }
        // Sent ahead, each ran once: not again when its turn came.
        for step in ["first", "second", "third"] {
            let ran = std::fs::read_to_string(trace.path().join(format!("{node}.{step}")))
                .unwrap_or_default();
            assert_eq!(ran, "ran\n", "{node} {step}");
        }
    }

    let checked = tempfile::tempdir().expect("tempdir");
    let pb = playbook(
        fleet.dir(),
        "ahead-check.toml",
        &AHEAD.replace("TRACE", &checked.path().display().to_string()),
    );
    let out = run_json_on(&fleet, &inv, &pb, &["--check"]);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(traces(checked.path(), ".second"), n, "{}", out.dump());
}

/// Steps that fail in different ways, each followed by read-only steps
/// that would leave a trace: a wait loop (as one behind a failed container
/// swap would be), and one more. TRACE is a directory of the test.
const BEHIND_A_FAILURE: &[(&str, &str)] = &[
    ("exit", "run = \"exit 3\"\nchanges = false"),
    ("changing", "run = \"exit 1\""),
    (
        "timeout",
        "run = \"sleep 3021\"\ntimeout = \"1s\"\nchanges = false",
    ),
    (
        "expectation",
        "run = \"echo not ready\"\nexpect = { stdout_contains = [\"ready!\"] }\nchanges = false",
    ),
    (
        "retried",
        "run = \"exit 4\"\nretries = 1\nretry_delay = \"1s\"\nchanges = false",
    ),
];

fn behind(kind: &str, failing: &str) -> String {
    format!(
        r#"
name = "behind-{kind}"

[[steps]]
name = "fails"
{failing}

[[steps]]
name = "wait loop"
run = "i=0; while [ $i -lt 20 ]; do touch TRACE/${{{{ node.name }}}}.{kind}; sleep 0.1; i=$((i+1)); done"
changes = false

[[steps]]
name = "trace"
run = "touch TRACE/${{{{ node.name }}}}.{kind}.2"
changes = false

[[on_failure]]
name = "rollback"
run = "echo rolled back"
"#
    )
}

/// "A failing step stops that node" holds for steps sent ahead too: the
/// node's shell starts a queued step only if the one before it exited
/// with a status that passes it, so nothing behind a failure, a timeout,
/// a failed expectation or a try that is retried ever starts; the
/// rollback runs, in the same shell.
#[test]
fn nothing_sent_ahead_starts_after_a_failure() {
    let fleet = Fleet::start(2);
    let inv = fleet.write_inventory(&[]);
    let trace = tempfile::tempdir().expect("tempdir");
    for (kind, failing) in BEHIND_A_FAILURE {
        let text = behind(kind, failing).replace("TRACE", &trace.path().display().to_string());
        let pb = playbook(fleet.dir(), &format!("{kind}.toml"), &text);
        let out = run_json_on(&fleet, &inv, &pb, &[]);
        assert_eq!(out.code, 1, "{kind}: {}", out.dump());
        for (node, steps) in &out.steps_by_node() {
            assert_eq!(steps["fails"]["status"], "failed", "{kind} {node}");
            assert_eq!(
                steps["rollback"]["stdout"], "rolled back\n",
                "{kind} {node}: {}",
                steps["rollback"]
            );
            assert!(!steps.contains_key("wait loop"), "{kind} {node}");
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let left: Vec<String> = std::fs::read_dir(trace.path())
        .expect("trace dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.is_empty(),
        "queued steps ran after a failure: {left:?}"
    );
}

/// A step queued behind the one running when the run is interrupted does
/// not start: the running one gets its grace and finishes, and the node's
/// shell is told to start nothing more.
#[test]
fn nothing_sent_ahead_starts_after_an_interrupt() {
    let fleet = Fleet::start(2);
    let n = fleet.nodes().len();
    let inv = fleet.write_inventory(&[]);
    let trace = tempfile::tempdir().expect("tempdir");
    let pb = playbook(
        fleet.dir(),
        "interrupted.toml",
        &r#"
name = "interrupted"

[[steps]]
name = "long"
run = "touch TRACE/${{ node.name }}.long; sleep 2; touch TRACE/${{ node.name }}.done"
changes = false

[[steps]]
name = "queued"
run = "touch TRACE/${{ node.name }}.queued"
changes = false
"#
        .replace("TRACE", &trace.path().display().to_string()),
    );
    let child = spawn(json_run(fleet.dir(), &inv, fleet.known_hosts(), &pb, &[]));
    let limit = std::time::Duration::from_secs(20);
    wait_for("`long` to start", limit, || {
        traces(trace.path(), ".long") == n
    });
    signal(&child, nix::sys::signal::Signal::SIGINT);
    let out = finish(child);
    assert_eq!(out.code, 3, "{}", out.dump());
    assert_eq!(traces(trace.path(), ".done"), n, "`long` had its grace");
    std::thread::sleep(std::time::Duration::from_millis(1000));
    assert_eq!(traces(trace.path(), ".queued"), 0, "{}", out.dump());
}

/// `probe` fails once and is retried after 1 s; `again`, sent ahead behind
/// it, has the very same script. STAMP is a directory of the test.
const RETRY: &str = r#"
name = "retry"

[[steps]]
name = "probe"
run = "now=$(date +%s%N); f=STAMP/${{ node.name }}; if [ -e $f ]; then echo $now; else echo $now > $f; exit 1; fi"
changes = false
retries = 1
retry_delay = "1s"

[[steps]]
name = "again"
run = "now=$(date +%s%N); f=STAMP/${{ node.name }}; if [ -e $f ]; then echo $now; else echo $now > $f; exit 1; fi"
changes = false
"#;

/// A step sent ahead stands for that step alone: the retry of the step
/// before it, with the same script, runs anew after its delay instead of
/// taking the early run's output.
#[test]
fn a_retry_is_not_the_step_sent_ahead_behind_it() {
    let fleet = Fleet::start(2);
    let inv = fleet.write_inventory(&[]);
    let stamp = tempfile::tempdir().expect("tempdir");
    let text = RETRY.replace("STAMP", &stamp.path().display().to_string());
    let pb = playbook(fleet.dir(), "retry.toml", &text);
    let out = run_json_on(&fleet, &inv, &pb, &[]);
    assert_eq!(out.code, 0, "{}", out.dump());
    let ns = |s: &str| s.trim().parse::<u128>().unwrap_or_default();
    for (node, steps) in &out.steps_by_node() {
        let probe = &steps["probe"];
        assert_eq!(probe["attempt"], 2, "{node}: {probe}");
        let first = std::fs::read_to_string(stamp.path().join(node)).expect("first stamp");
        let retried = ns(probe["stdout"].as_str().unwrap_or_default());
        let gap_ms = retried.saturating_sub(ns(&first)) / 1_000_000;
        assert!(
            gap_ms >= 900,
            "{node}: the retry ran {gap_ms} ms after the first try"
        );
        assert_eq!(steps["again"]["status"], "ok", "{node}");
    }
}
