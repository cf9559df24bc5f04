//! Safe rollouts against real sshd: batches, pause, failure budgets, gates
//! and `--check`.

use std::time::Duration;

use crate::common::Fleet;
use crate::common::cli::{Run, fleetfix, playbook, run};
use crate::common::http::CannedServer;
use serde_json::Value;

fn run_json(fleet: &Fleet, inv: &std::path::Path, pb: &std::path::Path, extra: &[&str]) -> Run {
    run(fleetfix(fleet.dir())
        .env("FLEETFIX_STATE_DIR", fleet.dir().join("state"))
        .args(["run", "--output", "json", "-i"])
        .arg(inv)
        .arg("--known-hosts")
        .arg(fleet.known_hosts())
        .args(extra)
        .arg(pb))
}

/// An inventory listing `names` in exactly this order.
fn inventory_in_order(fleet: &Fleet, names: &[&str]) -> std::path::PathBuf {
    let mut head = String::new();
    let mut tables = String::new();
    for name in names {
        let text =
            std::fs::read_to_string(fleet.write_inventory_for(&[name], &[])).expect("inventory");
        let at = text.find("\n[nodes.").expect("a node table");
        head = text[..at].to_string();
        tables.push_str(&text[at..]);
    }
    let path = fleet.dir().join("ordered.toml");
    std::fs::write(&path, head + &tables).expect("write");
    path
}

fn ts(e: &Value) -> jiff::Timestamp {
    e["ts"].as_str().and_then(|t| t.parse().ok()).expect("ts")
}

fn node_status(events: &[Value]) -> std::collections::HashMap<String, String> {
    events
        .iter()
        .filter(|e| e["event"] == "node_finished")
        .map(|e| {
            (
                e["node"].as_str().unwrap_or("").to_string(),
                e["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn summary(events: &[Value]) -> Value {
    events
        .iter()
        .find(|e| e["event"] == "run_finished")
        .expect("run_finished")["summary"]
        .clone()
}

#[test]
fn canary_then_half_batches_in_order_with_pause() {
    let fleet = Fleet::start(5);
    let inv = fleet.write_inventory(&[]);
    let pb = playbook(
        fleet.dir(),
        "batches.toml",
        r#"
name = "batches"
[rollout]
batches = [1, "50%"]
pause = "1s"
[[steps]]
name = "work"
run = "sleep 0.2; touch ${{ marker_dir }}/done"
"#,
    );
    let out = run_json(&fleet, &inv, &pb, &[]);
    assert_eq!(out.code, 0, "{}", out.dump());
    let events = out.events();
    let started = &events[0];
    assert_eq!(started["batches"], serde_json::json!([1, 2, 2]));
    let batches: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "batch_started")
        .collect();
    assert_eq!(batches.len(), 3);
    assert_eq!(
        batches[0]["nodes"].as_array().map(Vec::len),
        Some(1),
        "canary of exactly 1"
    );
    // Which batch each node belongs to, then: no node of batch k+1 starts
    // before every node of batch k finished, and the pause separates them.
    let mut batch_of = std::collections::HashMap::new();
    for b in &batches {
        for n in b["nodes"].as_array().expect("nodes") {
            batch_of.insert(
                n.as_str().expect("name").to_string(),
                b["batch"].as_u64().expect("batch"),
            );
        }
    }
    for k in 1..3u64 {
        let last_finish = events
            .iter()
            .filter(|e| {
                e["event"] == "node_finished" && batch_of[e["node"].as_str().unwrap_or("")] == k
            })
            .map(ts)
            .max()
            .expect("finishes");
        let first_start = events
            .iter()
            .filter(|e| {
                e["event"] == "node_started" && batch_of[e["node"].as_str().unwrap_or("")] == k + 1
            })
            .map(ts)
            .min()
            .expect("starts");
        let gap = first_start.duration_since(last_finish);
        assert!(
            gap >= jiff::SignedDuration::from_millis(950),
            "batch {} started {gap:?} after batch {k}",
            k + 1
        );
    }
    assert!(node_status(&events).values().all(|s| s == "changed"));
}

#[test]
fn a_failing_canary_with_max_failed_0_stops_everything() {
    let fleet = Fleet::start(5);
    let inv = fleet.write_inventory(&[]);
    let pb = playbook(
        fleet.dir(),
        "canary.toml",
        r#"
name = "canary"
[rollout]
batches = [1, "50%"]
max_failed = 0
[[steps]]
name = "bad image"
run = "touch ${{ marker_dir }}/touched; exit 1"
"#,
    );
    let out = run_json(&fleet, &inv, &pb, &[]);
    assert_eq!(out.code, 3, "{}", out.dump());
    let events = out.events();
    let st = node_status(&events);
    assert_eq!(st["node1"], "failed");
    for n in ["node2", "node3", "node4", "node5"] {
        assert_eq!(st[n], "not_run", "{n}");
        assert!(
            !fleet.dir().join("markers").join(n).join("touched").exists(),
            "{n} was touched"
        );
    }
    assert_eq!(
        events
            .iter()
            .filter(|e| e["event"] == "node_started")
            .count(),
        1
    );
    let s = summary(&events);
    assert_eq!(
        (s["failed"].as_u64(), s["not_run"].as_u64()),
        (Some(1), Some(4))
    );
    assert!(
        s["stopped"]
            .as_str()
            .is_some_and(|r| r.contains("max_failed = 0")),
        "{s}"
    );
    // The human table says so too.
    let human = run(fleetfix(fleet.dir())
        .env("FLEETFIX_STATE_DIR", fleet.dir().join("state"))
        .args(["run", "-i"])
        .arg(&inv)
        .arg("--known-hosts")
        .arg(fleet.known_hosts())
        .arg(&pb));
    assert_eq!(human.code, 3);
    assert_eq!(
        human.stdout.matches("not_run").count(),
        4 + 1,
        "{}",
        human.dump()
    );
}

#[test]
fn the_failure_budget_counts_across_batches() {
    let fleet = Fleet::start(5);
    let inv = fleet.write_inventory(&[]);
    // batches of 2: [node1 node2] [node3 node4] [node5]; node2 and node4 fail.
    let pb = playbook(
        fleet.dir(),
        "budget.toml",
        r#"
name = "budget"
[rollout]
batches = [2]
max_failed = 1
[[steps]]
name = "work"
run = "touch ${{ marker_dir }}/ran; case ${{ node.name }} in node2|node4) exit 1;; esac"
"#,
    );
    let out = run_json(&fleet, &inv, &pb, &[]);
    assert_eq!(out.code, 3, "{}", out.dump());
    let st = node_status(&out.events());
    assert_eq!(st["node2"], "failed");
    assert_eq!(st["node3"], "changed", "one failure is within the budget");
    assert_eq!(st["node4"], "failed");
    assert_eq!(
        st["node5"], "not_run",
        "the second failure spent the budget"
    );
    assert!(!fleet.dir().join("markers/node5/ran").exists());
}

#[test]
fn unreachable_nodes_count_against_max_unreachable_only() {
    let fleet = Fleet::builder()
        .nodes(2)
        .closed_port("gone1")
        .closed_port("gone2")
        .start();
    let inv = inventory_in_order(&fleet, &["gone1", "node1", "gone2", "node2"]);
    let pb = playbook(
        fleet.dir(),
        "unreach.toml",
        r#"
name = "unreach"
[rollout]
batches = [1]
max_failed = 0
max_unreachable = 1
[[steps]]
name = "work"
run = "touch ${{ marker_dir }}/ran"
"#,
    );
    let out = run_json(&fleet, &inv, &pb, &[]);
    assert_eq!(out.code, 3, "{}", out.dump());
    let events = out.events();
    let st = node_status(&events);
    assert_eq!(st["gone1"], "unreachable");
    assert_eq!(
        st["node1"],
        "changed",
        "an unreachable node is not a failure: {}",
        out.dump()
    );
    assert_eq!(st["gone2"], "unreachable");
    assert_eq!(
        st["node2"], "not_run",
        "the second unreachable node spent max_unreachable = 1"
    );
    assert!(
        summary(&events)["stopped"]
            .as_str()
            .is_some_and(|r| r.contains("max_unreachable"))
    );
}

#[test]
fn a_failing_gate_stops_the_rollout_and_a_passing_http_gate_does_not() {
    let fleet = Fleet::start(4);
    let inv = fleet.write_inventory(&[]);
    let server = CannedServer::start(200, &[("X-Relay-Version", "0.2.0")], "hello");
    let pb = playbook(
        fleet.dir(),
        "gate.toml",
        &format!(
            r#"
name = "gated"
[rollout]
batches = [1, 1]

[[gate]]
name = "version endpoint"
http = {{ url = "{url}" }}
expect = {{ status = 200, headers = {{ "x-relay-version" = "0.2.0" }} }}

[[gate]]
name = "health file"
local = "test -f {health}"

[[steps]]
name = "work"
run = "touch ${{{{ marker_dir }}}}/ran"
"#,
            url = server.url("/version"),
            health = fleet.dir().join("healthy").display()
        ),
    );
    let out = run_json(&fleet, &inv, &pb, &[]);
    assert_eq!(out.code, 3, "{}", out.dump());
    let events = out.events();
    let gates: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "gate_finished")
        .collect();
    assert_eq!(gates.len(), 2, "both gates ran once, after batch 1");
    assert_eq!(gates[0]["ok"], true, "{}", gates[0]);
    assert_eq!(gates[1]["ok"], false);
    assert_eq!(server.hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    let st = node_status(&events);
    assert_eq!(st["node1"], "changed");
    for n in ["node2", "node3", "node4"] {
        assert_eq!(st[n], "not_run");
    }
    let stopped = summary(&events)["stopped"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        stopped.contains("gate `health file` failed after batch 1"),
        "{stopped}"
    );

    // With the health file present every batch passes both gates.
    std::fs::write(fleet.dir().join("healthy"), "").expect("write");
    let out = run_json(&fleet, &inv, &pb, &[]);
    assert_eq!(out.code, 0, "{}", out.dump());
    let gates = out
        .events()
        .into_iter()
        .filter(|e| e["event"] == "gate_finished")
        .count();
    assert_eq!(gates, 2 * 4);
}

#[test]
fn check_mode_reports_drift_and_changes_nothing() {
    let fleet = Fleet::start(3);
    let inv = fleet.write_inventory(&[]);
    let pb = playbook(
        fleet.dir(),
        "converge.toml",
        r#"
name = "converge"
[[steps]]
name = "read state"
run = "cat ${{ marker_dir }}/state 2>/dev/null || echo none"
capture = "state"
changes = false

[[steps]]
name = "write state"
when = "state != 'converged'"
run = "echo converged > ${{ marker_dir }}/state"

[[steps]]
name = "verify state"
run = "grep -qx converged ${{ marker_dir }}/state"
changes = false
"#,
    );
    let markers = fleet.dir().join("markers");
    for n in ["node1", "node2", "node3"] {
        std::fs::write(markers.join(n).join("state"), "converged\n").expect("write");
    }
    let mtime = |n: &str| {
        std::fs::metadata(markers.join(n).join("state"))
            .and_then(|m| m.modified())
            .expect("mtime")
    };
    let before = mtime("node1");
    std::thread::sleep(Duration::from_millis(50));
    let out = run_json(&fleet, &inv, &pb, &["--check"]);
    assert_eq!(out.code, 0, "converged fleet: {}", out.dump());
    let steps: Vec<Value> = out
        .events()
        .into_iter()
        .filter(|e| e["event"] == "step_finished")
        .collect();
    assert!(
        steps
            .iter()
            .filter(|s| s["step"] == "read state")
            .all(|s| s["status"] == "ok")
    );
    assert!(
        steps
            .iter()
            .filter(|s| s["step"] == "write state")
            .all(|s| s["status"] == "would_skip")
    );
    assert_eq!(mtime("node1"), before, "--check touched a node");
    assert!(
        steps
            .iter()
            .filter(|s| s["step"] == "verify state")
            .all(|s| s["status"] == "ok")
    );

    // Drift on node2: exit 5, the step would run, and still nothing changes.
    std::fs::write(markers.join("node2/state"), "stale\n").expect("write");
    let out = run_json(&fleet, &inv, &pb, &["--check"]);
    assert_eq!(out.code, 5, "{}", out.dump());
    let events = out.events();
    let drift: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "step_finished" && e["status"] == "would_run")
        .collect();
    // The read-only check after the pretended write is not run either: it
    // would only see the state the write would have replaced.
    let drift: Vec<(&str, &str)> = drift
        .iter()
        .map(|e| {
            (
                e["node"].as_str().unwrap_or(""),
                e["step"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(drift, [("node2", "write state"), ("node2", "verify state")]);
    assert_eq!(
        std::fs::read_to_string(markers.join("node2/state")).expect("read"),
        "stale\n"
    );
    assert_eq!(node_status(&events)["node2"], "changed");
    assert_eq!(summary(&events)["check"], true);
}
