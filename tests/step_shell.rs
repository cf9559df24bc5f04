//! The step shell: one `sh` per connection runs every step of the node
//! (the transport's fast path), against real sshd.

mod common;

use std::collections::HashMap;

use common::Fleet;
use common::cli::{Run, fleetfix, playbook, run, run_json_on};
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

/// node -> step -> its step_finished event.
fn by_node(out: &Run) -> HashMap<String, HashMap<String, Value>> {
    let mut m: HashMap<String, HashMap<String, Value>> = HashMap::new();
    for e in out.of_kind("step_finished") {
        let node = e["node"].as_str().unwrap_or_default().to_string();
        let step = e["step"].as_str().unwrap_or_default().to_string();
        m.entry(node).or_default().insert(step, e);
    }
    m
}

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
    let all = by_node(&out);
    let n = fleet.nodes().len();
    assert_eq!(all.len(), n, "{}", out.dump());
    for (node, steps) in &all {
        check_results(steps, node);
    }
    let left = sleepers_left(fleet, &inv, sleep);
    assert_eq!(left, vec!["0"; n], "the timed-out sleep survived");
    all
}

#[test]
fn steps_share_one_shell_and_a_timeout_leaves_a_fresh_one() {
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
        assert_ne!(c.0, d.0, "{node}: the timeout ended that shell");
        assert_eq!(d.1, "sh", "{node}: {d:?}");
        assert_eq!(d, e, "{node}: one shell again after it");
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

/// `fails` is followed by two read-only steps that leave a trace; `capture`
/// (the step shell's pid) feeds the step after it. TRACE is a directory of
/// the test.
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
name = "fails"
run = "echo out; exit 3"
changes = false

[[steps]]
name = "trace"
run = "touch TRACE/${{ node.name }}"
changes = false

[[steps]]
name = "trace too"
run = "touch TRACE/${{ node.name }}.2"
changes = false

# Holds the session open while what was sent ahead runs: giving the shell
# up (for "after") or the session could end it first.
[[on_failure]]
name = "pause"
local = "sleep 1"

[[on_failure]]
name = "after"
run = "echo recovered"
"#;

/// As AHEAD, but what follows the failing step may change the node.
const NOT_AHEAD: &str = r#"
name = "not-ahead"

[[steps]]
name = "fails"
run = "exit 3"
changes = false

[[steps]]
name = "change"
run = "touch TRACE/${{ node.name }}"
"#;

fn traces(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// Waits up to 5 s for `n` traces.
fn wait_traces(dir: &std::path::Path, n: usize) -> usize {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while traces(dir) < n && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    traces(dir)
}

/// Read-only steps are sent to the node's shell behind the step before
/// them, saving a round trip each: so they run even when that step fails,
/// unreported and to no effect. A step that may change the node never is, nor under
/// --check, nor a step whose rendering needs the capture of the one before.
#[test]
fn read_only_steps_are_sent_ahead_and_nothing_else_is() {
    let fleet = Fleet::start(3);
    let n = fleet.nodes().len();
    let inv = fleet.write_inventory(&[]);
    let trace = tempfile::tempdir().expect("tempdir");
    let text = |pb: &str| pb.replace("TRACE", &trace.path().display().to_string());

    let pb = playbook(fleet.dir(), "ahead.toml", &text(AHEAD));
    let checked = run_json_on(&fleet, &inv, &pb, &["--check"]);
    assert_eq!(checked.code, 1, "{}", checked.dump());
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(traces(trace.path()), 0, "sent ahead under --check");

    let out = run_json_on(&fleet, &inv, &pb, &[]);
    assert_eq!(out.code, 1, "{}", out.dump());
    let all = by_node(&out);
    assert_eq!(all.len(), n, "{}", out.dump());
    for (node, steps) in &all {
        // Not sent ahead with the capture unknown, which would cost a
        // fresh shell: the same shell runs it, with the capture.
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
        assert_eq!(steps["fails"]["stdout"], "out\n", "{node}");
        assert_eq!(steps["fails"]["exit"], 3, "{node}");
        assert!(
            !steps.contains_key("trace") && !steps.contains_key("trace too"),
            "{node}: reported after a failure"
        );
        let after = &steps["after"];
        assert_eq!(after["status"], "changed", "{node}: {after}");
        assert_eq!(after["stdout"], "recovered\n", "{node}: {after}");
    }
    assert_eq!(
        wait_traces(trace.path(), 2 * n),
        2 * n,
        "both read-only steps were sent ahead"
    );

    let trace_change = tempfile::tempdir().expect("tempdir");
    let pb = playbook(
        fleet.dir(),
        "not-ahead.toml",
        &NOT_AHEAD.replace("TRACE", &trace_change.path().display().to_string()),
    );
    let out = run_json_on(&fleet, &inv, &pb, &[]);
    assert_eq!(out.code, 1, "{}", out.dump());
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        traces(trace_change.path()),
        0,
        "a changing step ran after a failure"
    );
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
    for (node, steps) in &by_node(&out) {
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
