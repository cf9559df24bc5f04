//! The reconcile-cron guarantees against real sshd: the lock, the journal
//! surviving SIGINT and SIGKILL, `--resume`, secrets kept out of every sink,
//! and reports a real JUnit consumer reads.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::Fleet;
use crate::common::cli::{finish, fleetfix, playbook, run, signal, spawn, wait_for};
use serde_json::Value;

fn state(fleet: &Fleet) -> PathBuf {
    fleet.dir().join("state")
}

/// `fleetfix run` with the fleet's inventory, known_hosts and state dir.
fn cmd(fleet: &Fleet, inv: &Path, pb: &Path, extra: &[&str]) -> Command {
    let mut c = fleetfix(fleet.dir());
    c.env("FLEETFIX_STATE_DIR", state(fleet))
        .args(["run", "-i"])
        .arg(inv)
        .arg("--known-hosts")
        .arg(fleet.known_hosts())
        .args(extra)
        .arg(pb);
    c
}

/// Every journal in the state dir, as parsed events per file.
fn journals(fleet: &Fleet) -> Vec<Vec<Value>> {
    let dir = state(fleet).join("runs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .expect("journal")
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .collect()
}

#[test]
fn a_second_run_of_a_playbook_waits_or_exits_4() {
    let fleet = Fleet::start(2);
    let inv = fleet.write_inventory(&[]);
    let pb = playbook(
        fleet.dir(),
        "slow.toml",
        "name = \"slow\"\n[[steps]]\nrun = \"sleep 3\"\n",
    );
    let first = spawn(cmd(&fleet, &inv, &pb, &[]));
    let lock = state(&fleet).join("locks");
    wait_for("the first run's lock", Duration::from_secs(10), || {
        std::fs::read_dir(&lock)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    });
    std::thread::sleep(Duration::from_millis(200));
    let second = run(&mut cmd(&fleet, &inv, &pb, &[]));
    assert_eq!(second.code, 4, "{}", second.dump());
    assert!(
        second.stderr.contains(&first.id().to_string()),
        "holder pid missing: {}",
        second.dump()
    );
    let started = Instant::now();
    let third = run(&mut cmd(&fleet, &inv, &pb, &["--lock-wait", "60s"]));
    assert_eq!(third.code, 0, "{}", third.dump());
    let first = finish(first);
    assert_eq!(first.code, 0, "{}", first.dump());
    // The waiting run started its work only after the first one finished.
    let mut runs = journals(&fleet);
    assert_eq!(runs.len(), 2, "the refused run leaves no journal");
    let finished = |evs: &Vec<Value>, kind: &str| -> jiff::Timestamp {
        evs.iter()
            .find(|e| e["event"] == kind)
            .and_then(|e| e["ts"].as_str()?.parse().ok())
            .expect("ts")
    };
    runs.sort_by_key(|j| finished(j, "run_started"));
    assert!(
        finished(&runs[1], "run_started") >= finished(&runs[0], "run_finished"),
        "the waiting run started before the first finished:\n{:?}\n{:?}",
        runs[0],
        runs[1]
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[test]
fn sigint_ends_the_run_within_12s_with_summary_and_journal() {
    let fleet = Fleet::start(3);
    let inv = fleet.write_inventory(&[]);
    let pb = playbook(
        fleet.dir(),
        "hang.toml",
        "name = \"hang\"\n[[steps]]\nname = \"hang\"\nrun = \"sleep 3017\"\n",
    );
    let child = spawn(cmd(&fleet, &inv, &pb, &["--progress", "never"]));
    wait_for("the step to start", Duration::from_secs(15), || {
        journals(&fleet)
            .iter()
            .flatten()
            .filter(|e| e["event"] == "step_started")
            .count()
            == 3
    });
    let sent = Instant::now();
    signal(&child, nix::sys::signal::Signal::SIGINT);
    let out = finish(child);
    let took = sent.elapsed();
    assert_eq!(out.code, 3, "{}", out.dump());
    assert!(took < Duration::from_secs(12), "took {took:?}");
    assert!(
        out.stdout.contains("3 nodes:"),
        "no summary: {}",
        out.dump()
    );
    assert!(
        out.stdout
            .contains("interrupted: no new node or step starts"),
        "{}",
        out.dump()
    );
    assert!(
        journal_has_interrupt(&fleet),
        "the interrupt is not in the journal"
    );
    let journal = journals(&fleet).pop().expect("journal");
    let last = journal.last().expect("events");
    assert_eq!(journals(&fleet).len(), 1);
    assert_eq!(last["event"], "run_finished", "{last}");
    assert_eq!(last["summary"]["exit_code"], 3);
    let check = run(fleetfix(fleet.dir())
        .args(["exec", "-i"])
        .arg(&inv)
        .arg("--known-hosts")
        .arg(fleet.known_hosts())
        .args(["--", "ps -eo args | grep -c '^sleep 301[7]' || true"]));
    assert!(
        check.stdout.lines().filter(|l| l.trim() == "0").count() == 3,
        "sleep survived: {}",
        check.dump()
    );
}

/// A second Ctrl-C ends fleetfix at once (exit 3); as the README says, it
/// leaves what runs on the nodes running: it did not wait to end it.
#[test]
fn a_second_sigint_ends_at_once_and_leaves_the_nodes_as_they_are() {
    let fleet = Fleet::start(1);
    let inv = fleet.write_inventory(&[]);
    let pb = playbook(
        fleet.dir(),
        "hang.toml",
        "name = \"hang\"\n[[steps]]\nname = \"hang\"\nrun = \"sleep 3018\"\n",
    );
    let child = spawn(cmd(&fleet, &inv, &pb, &["--progress", "never"]));
    wait_for("the step to start", Duration::from_secs(15), || {
        journals(&fleet)
            .iter()
            .flatten()
            .any(|e| e["event"] == "step_started")
    });
    signal(&child, nix::sys::signal::Signal::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    signal(&child, nix::sys::signal::Signal::SIGINT);
    let out = finish(child);
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "{:?}",
        sent.elapsed()
    );
    assert_eq!(out.code, 3, "{}", out.dump());
    assert!(
        out.stderr.contains("interrupted again: ending now"),
        "{}",
        out.dump()
    );
    let ps = Command::new("ps")
        .args(["-eo", "pid=,args="])
        .output()
        .expect("ps");
    let left: Vec<String> = String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter(|l| l.trim_start().split_once(' ').map(|(_, a)| a) == Some("sleep 3018"))
        .map(|l| l.trim().to_string())
        .collect();
    assert_eq!(left.len(), 1, "the node's command runs on: {left:?}");
    // End it by its pid, as the operator would.
    if let Some(pid) = left[0]
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

fn journal_has_interrupt(fleet: &Fleet) -> bool {
    journals(fleet)
        .iter()
        .flatten()
        .any(|e| e["event"] == "interrupted")
}

#[test]
fn sigkill_loses_no_finished_step_and_resume_completes_the_rest() {
    let fleet = Fleet::start(4);
    let inv = fleet.write_inventory(&[]);
    // One node at a time; each step first leaves a marker, so the marker of
    // step k+1 proves step k finished.
    let pb = playbook(
        fleet.dir(),
        "steps.toml",
        r#"
name = "steps"
[rollout]
batches = [1]
[[steps]]
name = "one"
run = "echo one >> ${{ marker_dir }}/log; sleep 0.3"
[[steps]]
name = "two"
run = "echo two >> ${{ marker_dir }}/log; sleep 0.3"
[[steps]]
name = "three"
run = "echo three >> ${{ marker_dir }}/log; sleep 0.3"
"#,
    );
    let child = spawn(cmd(&fleet, &inv, &pb, &["--progress", "never"]));
    let log = |n: &str| {
        std::fs::read_to_string(fleet.dir().join("markers").join(n).join("log")).unwrap_or_default()
    };
    wait_for("node2 to be mid-way", Duration::from_secs(20), || {
        log("node2").lines().count() >= 2
    });
    signal(&child, nix::sys::signal::Signal::SIGKILL);
    let _ = finish(child);
    let journal = journals(&fleet).pop().expect("journal");
    let id = journal[0]["run_id"].as_str().expect("run id").to_string();
    let finished = |node: &str, step: &str| {
        journal.iter().any(|e| {
            e["event"] == "step_finished"
                && e["node"] == node
                && e["step"] == step
                && e["status"] == "changed"
        })
    };
    let steps = ["one", "two", "three"];
    for n in ["node1", "node2", "node3", "node4"] {
        let lines: Vec<String> = log(n).lines().map(String::from).collect();
        for (k, step) in steps.iter().enumerate() {
            if lines.len() > k + 1 {
                assert!(
                    finished(n, step),
                    "{n}: marker proves `{step}` finished, journal lacks it"
                );
            }
        }
    }
    assert!(
        finished("node1", "three"),
        "node1 completed before the kill"
    );
    assert!(!journal.iter().any(|e| e["event"] == "run_finished"));

    // The journal lists it as incomplete; resume runs only the unfinished.
    let runs = run(fleetfix(fleet.dir())
        .env("FLEETFIX_STATE_DIR", state(&fleet))
        .arg("runs"));
    assert_eq!(runs.code, 0, "{}", runs.dump());
    assert!(runs.stdout.contains(&id), "{}", runs.dump());
    let before1 = log("node1");
    // The killed run's last command still runs on node2 (a crash does not
    // end it) and holds the node's lock until it ends: wait for it.
    let resumed = run(&mut cmd(
        &fleet,
        &inv,
        &pb,
        &["--resume", &id, "--output", "json", "--lock-wait", "10s"],
    ));
    assert_eq!(resumed.code, 0, "{}", resumed.dump());
    let started = &resumed.events()[0];
    let nodes: Vec<&str> = started["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        !nodes.contains(&"node1"),
        "node1 finished ok and must not run again: {nodes:?}"
    );
    assert!(
        nodes.contains(&"node2") && nodes.contains(&"node3") && nodes.contains(&"node4"),
        "{nodes:?}"
    );
    assert_eq!(log("node1"), before1);
    for n in ["node2", "node3", "node4"] {
        assert!(log(n).ends_with("one\ntwo\nthree\n"), "{n}: {:?}", log(n));
    }
    let show = run(fleetfix(fleet.dir())
        .env("FLEETFIX_STATE_DIR", state(&fleet))
        .args(["runs", &id]));
    assert_eq!(show.code, 0, "{}", show.dump());
    assert!(show.stdout.contains("node1"), "{}", show.dump());
}

#[test]
fn a_secret_appears_in_no_sink_and_no_process_list() {
    let fleet = Fleet::start(2);
    let inv = fleet.write_inventory(&[]);
    let secret = format!("TOPSECRET-{}", std::process::id());
    let pb = playbook(
        fleet.dir(),
        "secret.toml",
        r#"
name = "secret"
[secrets]
token = { env = "RELAY_TEST_TOKEN" }
[[steps]]
name = "use it"
env = { TOKEN = "${{ secret.token }}" }
run = """
echo "token is $TOKEN"
echo "again ${{ secret.token }}" >&2
sleep 2
exit 1
"""
"#,
    );
    let report = fleet.dir().join("report.json");
    let junit = fleet.dir().join("junit.xml");
    let mut c = cmd(
        &fleet,
        &inv,
        &pb,
        &[
            "--report",
            report.to_str().expect("utf8"),
            "--junit",
            junit.to_str().expect("utf8"),
        ],
    );
    c.env("RELAY_TEST_TOKEN", &secret);
    let child = spawn(c);
    // Sample the process list (the nodes are this machine) while the step sleeps.
    let mut samples = 0;
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline {
        let ps = Command::new("ps")
            .args(["-eo", "args"])
            .output()
            .expect("ps");
        let text = String::from_utf8_lossy(&ps.stdout);
        assert!(
            !text.contains(&secret),
            "secret in the process list:\n{text}"
        );
        samples += 1;
        if text.contains("sleep 2") && samples > 20 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let human = finish(child);
    assert_eq!(human.code, 1, "{}", human.dump());
    assert!(
        human.stdout.contains("******"),
        "masked stderr shows in the summary: {}",
        human.dump()
    );
    let mut sinks = vec![("terminal", format!("{}{}", human.stdout, human.stderr))];
    let json = run(cmd(&fleet, &inv, &pb, &["--output", "json"]).env("RELAY_TEST_TOKEN", &secret));
    assert!(json.stdout.contains("******"));
    sinks.push(("json", format!("{}{}", json.stdout, json.stderr)));
    for (i, j) in journals(&fleet).iter().enumerate() {
        sinks.push(("journal", format!("{i}: {j:?}")));
    }
    sinks.push((
        "report",
        std::fs::read_to_string(&report).expect("report written"),
    ));
    sinks.push((
        "junit",
        std::fs::read_to_string(&junit).expect("junit written"),
    ));
    let plan = run(fleetfix(fleet.dir())
        .env("RELAY_TEST_TOKEN", &secret)
        .args(["plan", "-i"])
        .arg(&inv)
        .arg(&pb));
    assert_eq!(plan.code, 0, "{}", plan.dump());
    assert!(plan.stdout.contains("******"), "{}", plan.dump());
    sinks.push(("plan", format!("{}{}", plan.stdout, plan.stderr)));
    for (name, text) in &sinks {
        assert!(
            !text.contains(&secret),
            "secret leaked into {name}:\n{text}"
        );
    }
    // Without the variable: exit 2 before any node is touched.
    let missing = run(&mut cmd(&fleet, &inv, &pb, &[]));
    assert_eq!(missing.code, 2, "{}", missing.dump());
    assert!(
        missing.stderr.contains("RELAY_TEST_TOKEN"),
        "{}",
        missing.dump()
    );
}

#[test]
fn junit_and_report_agree_with_the_summary() {
    let fleet = Fleet::builder().nodes(4).closed_port("gone").start();
    let inv = fleet.write_inventory(&[]);
    let pb = playbook(
        fleet.dir(),
        "mixed.toml",
        r#"
name = "mixed"
[rollout]
batches = [2]
max_failed = 0
[[steps]]
name = "look"
run = "uname -s"
changes = false
[[steps]]
name = "maybe fail"
run = "test ${{ node.name }} != node2"
[[steps]]
name = "skip me"
when = "false"
run = "true"
"#,
    );
    let report = fleet.dir().join("report.json");
    let junit = fleet.dir().join("junit.xml");
    let out = run(&mut cmd(
        &fleet,
        &inv,
        &pb,
        &[
            "--output",
            "json",
            "--report",
            report.to_str().expect("utf8"),
            "--junit",
            junit.to_str().expect("utf8"),
        ],
    ));
    assert_eq!(out.code, 3, "{}", out.dump());
    let summary = out
        .events()
        .into_iter()
        .find(|e| e["event"] == "run_finished")
        .expect("summary")["summary"]
        .clone();
    let rep: Value = serde_json::from_str(&std::fs::read_to_string(&report).expect("report"))
        .expect("report JSON");
    assert_eq!(rep["summary"], summary);
    let statuses: Vec<&str> = rep["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["status"].as_str())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == "not_run").count(),
        summary["not_run"].as_u64().expect("n") as usize
    );
    assert!(statuses.contains(&"not_run"), "{statuses:?}");
    // A real JUnit consumer reads the file.
    let py = r#"
import sys, junitparser
xml = junitparser.JUnitXml.fromfile(sys.argv[1])
suites = list(xml) if hasattr(xml, '__iter__') else [xml]
tests = failures = skipped = errors = 0
names = []
for s in suites:
    names.append(s.name)
    for c in s:
        tests += 1
        for r in c.result:
            k = type(r).__name__
            failures += k == 'Failure'
            skipped += k == 'Skipped'
            errors += k == 'Error'
print(len(suites), tests, failures, skipped, errors, ','.join(sorted(names)))
"#;
    let parsed = Command::new("python3")
        .arg("-c")
        .arg(py)
        .arg(&junit)
        .output()
        .expect("python3");
    assert!(
        parsed.status.success(),
        "junitparser: {}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let line = String::from_utf8_lossy(&parsed.stdout).trim().to_string();
    let f: Vec<&str> = line.split(' ').collect();
    // node1 ok (3 cases), node2 failed (2 cases: look ok, maybe fail failed),
    // gone unreachable (1 error case) in batch 1 → budget spent;
    // node3 node4 not_run (1 skipped case each).
    let n: Vec<usize> = f[..5].iter().map(|x| x.parse().expect("number")).collect();
    assert_eq!(
        n[2],
        summary["failed"].as_u64().expect("failed") as usize,
        "{line}"
    );
    assert_eq!(
        n[4],
        summary["unreachable"].as_u64().expect("u") as usize,
        "{line}"
    );
    assert!(
        n[3] >= summary["not_run"].as_u64().expect("nr") as usize,
        "{line}"
    );
    assert!(f[5].contains("node1") && f[5].contains("node3"), "{line}");
}

#[test]
fn a_step_is_journaled_before_the_nodes_next_step_starts() {
    let fleet = Fleet::start(8);
    let inv = fleet.write_inventory(&[]);
    let runs = state(&fleet).join("runs");
    // The nodes share this machine's files: each step looks in the journal
    // for the one before it.
    let mut text = String::from("name = \"journaled\"\n[[steps]]\nname = \"s0\"\nrun = \"true\"\n");
    for k in 1..5 {
        text.push_str(&format!(
            r#"
[[steps]]
name = "s{k}"
env = {{ NODE = "${{{{ node.name }}}}" }}
run = '''
grep -hF '"event":"step_finished"' {runs}/*.jsonl | grep -F "\"node\":\"$NODE\"" | grep -qF '"step":"s{prev}"'
'''
"#,
            runs = runs.display(),
            prev = k - 1
        ));
    }
    let pb = playbook(fleet.dir(), "journaled.toml", &text);
    let out = run(&mut cmd(&fleet, &inv, &pb, &["--output", "json"]));
    assert_eq!(out.code, 0, "{}", out.dump());
    let steps = out.of_kind("step_finished");
    assert_eq!(steps.len(), 8 * 5, "{}", out.dump());
    for e in steps {
        assert_eq!(e["status"], "changed", "{e}");
    }
}

/// A secret that the output cap cuts in half leaves no start of it in any
/// sink: the summary, JSON events, the journal, the report.
#[test]
fn a_secret_cut_by_the_output_cap_leaves_no_half_anywhere() {
    let fleet = Fleet::start(1);
    let inv = fleet.write_inventory(&[]);
    let secret = format!("Zq8vercel7f3a9c1eY2kX0b1d5e9a4fQ{}", std::process::id());
    let pb = playbook(
        fleet.dir(),
        "cut.toml",
        r#"
name = "cut"
[secrets]
token = { env = "CUT_TEST_TOKEN" }
[[steps]]
name = "print it"
env = { TOKEN = "${{ secret.token }}" }
run = "printf '%s' '0123456789012345678901234567890123456789'; echo \"$TOKEN and more\"; echo \"$TOKEN\" >&2"
"#,
    );
    let report = fleet.dir().join("report.json");
    // The cap falls 20 characters into the secret on both streams.
    let mut sinks = Vec::new();
    for output in ["human", "json"] {
        let out = run(cmd(
            &fleet,
            &inv,
            &pb,
            &[
                "--output",
                output,
                "--output-cap",
                "60",
                "--report",
                report.to_str().expect("utf8"),
            ],
        )
        .env("CUT_TEST_TOKEN", &secret));
        assert_eq!(out.code, 0, "{}", out.dump());
        sinks.push((output, format!("{}{}", out.stdout, out.stderr)));
        sinks.push(("report", std::fs::read_to_string(&report).expect("report")));
    }
    assert!(
        sinks[2].1.contains("truncated"),
        "the cap cut it: {}",
        sinks[2].1
    );
    for (i, j) in journals(&fleet).iter().enumerate() {
        sinks.push(("journal", format!("{i}: {j:?}")));
    }
    let chars: Vec<char> = secret.chars().collect();
    for (name, text) in &sinks {
        for k in 4..=chars.len() {
            let head: String = chars[..k].iter().collect();
            assert!(
                !text.contains(&head),
                "{k} chars of the secret survived in {name}:\n{text}"
            );
        }
    }
}
