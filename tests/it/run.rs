//! `fleetfix run` against real OpenSSH sshd nodes on loopback.

use std::time::{Duration, Instant};

use crate::common::Fleet;
use crate::common::cli::{fleetfix, playbook, run};
use serde_json::Value;

fn events_of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

#[test]
fn four_step_playbook_runs_on_all_nodes_and_json_agrees() {
    let fleet = Fleet::start(5);
    let inv = fleet.write_inventory(&[]);
    let pb = playbook(
        fleet.dir(),
        "four.toml",
        r#"
name = "four"
report_vars = ["kernel"]
[vars]
wanted = "ok"

[[steps]]
name = "kernel"
run = "uname -s"
capture = "kernel"
changes = false

[[steps]]
name = "only on linux"
when = "kernel == 'Linux'"
run = "echo linux > ${{ marker_dir }}/linux"

[[steps]]
name = "never on linux"
when = "kernel != 'Linux'"
run = "touch ${{ marker_dir }}/wrong"

[[steps]]
name = "create once"
unless = "test -f ${{ marker_dir }}/once"
run = "echo ${{ wanted }}-${{ node.name }} > ${{ marker_dir }}/once; cat ${{ marker_dir }}/once"
expect = { stdout_contains = "ok-", stdout_regex = "^ok-node[0-9]+$" }
"#,
    );
    let started = Instant::now();
    let out = run(fleetfix(fleet.dir())
        .args(["run", "--output", "json", "-i"])
        .arg(&inv)
        .arg("--known-hosts")
        .arg(fleet.known_hosts())
        .arg(&pb));
    let elapsed = started.elapsed();
    assert_eq!(out.code, 0, "{}", out.dump());
    // A clean run says nothing on stderr: no warning from a dependency
    // (russh_cryptovec's about the memory locking fleetfix refuses).
    assert_eq!(out.stderr.trim(), "", "{}", out.dump());
    let events = out.events();
    assert_eq!(
        events.first().map(|e| &e["event"]),
        Some(&Value::from("run_started"))
    );
    assert_eq!(
        events.last().map(|e| &e["event"]),
        Some(&Value::from("run_finished"))
    );
    for e in &events {
        assert!(
            e["ts"].as_str().is_some_and(|t| t.contains('T')),
            "ts missing in {e}"
        );
    }
    let finished = events_of(&events, "node_finished");
    assert_eq!(finished.len(), 5);
    for n in &finished {
        assert_eq!(n["status"], "changed", "{n}");
        assert_eq!(n["report"]["kernel"], "Linux", "{n}");
    }
    let steps = events_of(&events, "step_finished");
    assert_eq!(steps.len(), 20);
    let count = |name: &str, status: &str| {
        steps
            .iter()
            .filter(|s| s["step"] == name && s["status"] == status)
            .count()
    };
    assert_eq!(count("kernel", "ok"), 5);
    assert_eq!(count("only on linux", "changed"), 5);
    assert_eq!(count("never on linux", "skipped"), 5);
    assert_eq!(count("create once", "changed"), 5);
    let summary = &events_of(&events, "run_finished")[0]["summary"];
    assert_eq!(summary["nodes"], 5);
    assert_eq!(summary["changed"], 5);
    assert_eq!(summary["exit_code"], 0);
    // In parallel: every node started before the first one finished.
    let first_finish = events
        .iter()
        .position(|e| e["event"] == "node_finished")
        .expect("finish");
    let starts_before = events[..first_finish]
        .iter()
        .filter(|e| e["event"] == "node_started")
        .count();
    assert_eq!(starts_before, 5, "nodes did not run in parallel");
    for node in fleet.nodes() {
        let dir = fleet.dir().join("markers").join(&node.name);
        let once = std::fs::read_to_string(dir.join("once")).expect("marker written");
        assert_eq!(once.trim(), format!("ok-{}", node.name));
        assert!(!dir.join("wrong").exists());
    }

    // Second run: the `unless` guard now skips the last step on every node.
    let again = run(fleetfix(fleet.dir())
        .args(["run", "-i"])
        .arg(&inv)
        .arg("--known-hosts")
        .arg(fleet.known_hosts())
        .arg(&pb));
    assert_eq!(again.code, 0, "{}", again.dump());
    assert_eq!(
        again.stdout.matches("skipped  create once").count(),
        5,
        "{}",
        again.dump()
    );
    assert!(elapsed < Duration::from_secs(30));
}

#[test]
fn a_failing_node_runs_on_failure_and_the_others_finish() {
    let fleet = Fleet::start(5);
    let inv = fleet.write_inventory(&[]);
    let pb = playbook(
        fleet.dir(),
        "fail.toml",
        r#"
name = "fail-one"
[[steps]]
name = "work"
run = "test ${{ node.name }} != node3"

[[steps]]
name = "after"
run = "touch ${{ marker_dir }}/after"

[[on_failure]]
name = "rollback"
run = "touch ${{ marker_dir }}/rolled-back"
"#,
    );
    let out = run(fleetfix(fleet.dir())
        .args(["run", "--output", "json", "-i"])
        .arg(&inv)
        .arg("--known-hosts")
        .arg(fleet.known_hosts())
        .arg(&pb));
    assert_eq!(out.code, 1, "{}", out.dump());
    let events = out.events();
    for n in events_of(&events, "node_finished") {
        let want = if n["node"] == "node3" {
            "failed"
        } else {
            "changed"
        };
        assert_eq!(n["status"], want, "{n}");
    }
    let markers = fleet.dir().join("markers");
    assert!(
        markers.join("node3/rolled-back").exists(),
        "on_failure did not run"
    );
    assert!(
        !markers.join("node3/after").exists(),
        "steps went on after the failure"
    );
    for n in ["node1", "node2", "node4", "node5"] {
        assert!(markers.join(n).join("after").exists(), "{n} did not finish");
        assert!(!markers.join(n).join("rolled-back").exists());
    }
    let failed = events_of(&events, "step_finished")
        .into_iter()
        .find(|s| s["status"] == "failed")
        .expect("a failed step");
    assert_eq!(failed["node"], "node3");
    assert_eq!(failed["exit"], 1);
}

#[test]
fn retries_record_the_attempt_that_succeeded() {
    let fleet = Fleet::start(5);
    let inv = fleet.write_inventory(&[]);
    let pb = playbook(
        fleet.dir(),
        "retry.toml",
        r#"
name = "retry"
[[steps]]
name = "flaky"
run = """
n=$(cat ${{ marker_dir }}/count 2>/dev/null || echo 0)
n=$((n + 1))
echo $n > ${{ marker_dir }}/count
test $n -ge 3
"""
retries = 4
retry_delay = "100ms"
"#,
    );
    let out = run(fleetfix(fleet.dir())
        .args(["run", "--output", "json", "-i"])
        .arg(&inv)
        .arg("--known-hosts")
        .arg(fleet.known_hosts())
        .arg(&pb));
    assert_eq!(out.code, 0, "{}", out.dump());
    let steps = out.events();
    let steps = events_of(&steps, "step_finished");
    assert_eq!(steps.len(), 5);
    for s in steps {
        assert_eq!(s["attempt"], 3, "{s}");
        assert_eq!(s["status"], "changed", "{s}");
    }
}

#[test]
fn a_timeout_ends_the_remote_process() {
    let fleet = Fleet::start(5);
    let inv = fleet.write_inventory(&[]);
    // A sleep length no other test uses, so the check below is exact.
    let pb = playbook(
        fleet.dir(),
        "timeout.toml",
        r#"
name = "timeout"
[[steps]]
name = "hang"
run = "echo started; sleep 3007; echo never"
timeout = "2s"
"#,
    );
    let started = Instant::now();
    let out = run(fleetfix(fleet.dir())
        .args(["run", "--output", "json", "-i"])
        .arg(&inv)
        .arg("--known-hosts")
        .arg(fleet.known_hosts())
        .arg(&pb));
    let took = started.elapsed();
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(took < Duration::from_secs(20), "took {took:?}");
    for s in events_of(&out.events(), "step_finished") {
        assert_eq!(s["status"], "failed");
        // The step (not connection setup) is what the timeout bounds.
        assert!(
            s["duration_ms"]
                .as_u64()
                .is_some_and(|d| (2000..5000).contains(&d)),
            "{s}"
        );
        assert!(
            s["error"].as_str().is_some_and(|e| e.contains("timed out")),
            "{s}"
        );
        assert!(
            s["stdout"].as_str().is_some_and(|o| o.contains("started")),
            "{s}"
        );
    }
    // A second command on the nodes looks for the sleeper.
    let check = run(fleetfix(fleet.dir())
        .args(["exec", "-i"])
        .arg(&inv)
        .arg("--known-hosts")
        .arg(fleet.known_hosts())
        .args(["--", "ps -eo args | grep -c '^sleep 3007' || true"]));
    assert_eq!(check.code, 0, "{}", check.dump());
    let counts: Vec<&str> = check
        .stdout
        .lines()
        .filter(|l| l.trim().chars().all(|c| c.is_ascii_digit()) && !l.trim().is_empty())
        .collect();
    assert_eq!(counts.len(), 5, "{}", check.dump());
    assert!(
        counts.iter().all(|c| c.trim() == "0"),
        "sleep survived: {}",
        check.dump()
    );
}

#[test]
fn a_hostile_variable_cannot_inject_commands() {
    let fleet = Fleet::start(5);
    let inv = fleet.write_inventory(&[]);
    let pwned = fleet.dir().join("pwned");
    let evil = format!("x'; touch {}-$$; echo '", pwned.display());
    let pb = playbook(
        fleet.dir(),
        "inject.toml",
        r#"
name = "inject"
[[steps]]
name = "echo it"
run = "echo ${{ evil }} > ${{ marker_dir }}/echoed; echo ${{ evil | tojson }} ${{ evil | safe }} > ${{ marker_dir }}/json"
"#,
    );
    let out = run(fleetfix(fleet.dir())
        .args(["run", "-i"])
        .arg(&inv)
        .arg("--known-hosts")
        .arg(fleet.known_hosts())
        .arg("--var")
        .arg(format!("evil={evil}"))
        .arg(&pb));
    assert_eq!(out.code, 0, "{}", out.dump());
    let leftovers: Vec<_> = std::fs::read_dir(fleet.dir())
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("pwned"))
        .collect();
    assert!(leftovers.is_empty(), "injection created {leftovers:?}");
    let echoed = std::fs::read_to_string(fleet.dir().join("markers/node1/echoed")).expect("echoed");
    assert_eq!(echoed.trim_end(), evil);
}

#[test]
fn exec_groups_output_and_fails_when_a_node_fails() {
    let fleet = Fleet::start(5);
    let inv = fleet.write_inventory(&[]);
    let out = run(fleetfix(fleet.dir())
        .args(["exec", "-i"])
        .arg(&inv)
        .arg("--known-hosts")
        .arg(fleet.known_hosts())
        .args(["--limit", "odd", "--", "echo hello from", "$(hostname)"]));
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(
        out.stdout.matches("hello from").count(),
        3,
        "{}",
        out.dump()
    );
    for n in ["node1", "node3", "node5"] {
        assert!(
            out.stdout.contains(&format!("── {n} (exit 0")),
            "{}",
            out.dump()
        );
    }
    let out = run(fleetfix(fleet.dir())
        .args(["exec", "-i"])
        .arg(&inv)
        .arg("--known-hosts")
        .arg(fleet.known_hosts())
        .args(["--", "test ${{ node.name }} != node2"]));
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(out.stdout.contains("── node2 (exit 1"), "{}", out.dump());
}
