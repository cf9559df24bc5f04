//! `fleetfix demo`: the embedded fleet (russh server nodes on 127.0.0.1)
//! and the demo rollout through the normal runner; `--serve` as a sandbox.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::cli::{Run, fleetfix, run};
use serde_json::Value;

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

#[test]
fn the_demo_rolls_out_in_batches_and_rolls_back_the_failing_node() {
    let home = tempfile::tempdir().expect("tempdir");
    let out = run(fleetfix(home.path()).args(["demo", "--output", "json"]));
    assert_eq!(
        out.code,
        0,
        "the staged failure is the demo: {}",
        out.dump()
    );
    assert!(
        out.stderr.contains("demo: as staged, node09 failed the version check and was rolled back; 11 nodes were rolled out"),
        "{}",
        out.dump()
    );
    // Every line is an event with a kind and a timestamp.
    let events = out.events();
    assert_eq!(events.len(), out.stdout.lines().count());
    assert!(
        events
            .iter()
            .all(|e| e["event"].is_string() && e["ts"].is_string())
    );

    let started = &out.of_kind("run_started")[0];
    assert_eq!(started["playbook"], "demo-rollout");
    assert_eq!(started["nodes"].as_array().map(Vec::len), Some(12));
    // A canary, then a quarter of the fleet per batch.
    let batches: Vec<usize> = out
        .of_kind("batch_started")
        .iter()
        .map(|b| b["nodes"].as_array().map(Vec::len).unwrap_or(0))
        .collect();
    assert_eq!(batches, [1, 3, 3, 3, 2]);

    let finished: BTreeMap<String, Value> = out
        .of_kind("node_finished")
        .into_iter()
        .map(|e| (s(&e["node"]), e))
        .collect();
    assert_eq!(finished.len(), 12);
    for (node, e) in &finished {
        if node == "node09" {
            assert_eq!(e["status"], "failed", "{e}");
            assert_eq!(e["report"]["restored"], "0.1.0", "{e}");
        } else {
            assert_eq!(e["status"], "changed", "{e}");
            assert_eq!(e["report"]["serving"], "0.2.0", "{e}");
        }
    }
    let steps: Vec<(String, String, String)> = out
        .of_kind("step_finished")
        .iter()
        .filter(|e| e["node"] == "node09")
        .map(|e| (s(&e["step"]), s(&e["status"]), s(&e["stdout"])))
        .collect();
    let status_of = |name: &str| {
        steps
            .iter()
            .find(|(n, ..)| n == name)
            .map(|(_, st, out)| (st.clone(), out.clone()))
            .unwrap_or_else(|| panic!("no step {name}: {steps:?}"))
    };
    let (check, body) = status_of("version check");
    assert_eq!(check, "failed");
    assert!(
        body.contains("HTTP 503") && body.contains("crashed"),
        "{body}"
    );
    assert_eq!(status_of("roll back").0, "changed");
    let (answers, body) = status_of("previous version answers");
    assert_eq!(answers, "ok");
    assert!(body.contains("x-relay-version: 0.1.0"), "{body}");

    let summary = &out.of_kind("run_finished")[0]["summary"];
    assert_eq!(summary["changed"], 11);
    assert_eq!(summary["failed"], 1);
    assert_eq!(summary["exit_code"], 1, "the run itself says a node failed");
}

#[test]
fn the_demo_checks_its_options() {
    let home = tempfile::tempdir().expect("tempdir");
    let out = run(fleetfix(home.path()).args(["demo", "--fail", "node99"]));
    assert_eq!(out.code, 2, "{}", out.dump());
    assert!(
        out.stderr
            .contains("--fail node99: the demo fleet has no such node")
    );
    assert!(out.stderr.contains("hint: the nodes are node01…node12"));

    let out =
        run(fleetfix(home.path())
            .args(["demo", "--nodes", "3", "--fail", "none", "--output", "json"]));
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        out.stderr
            .contains("demo: as staged, all 3 nodes were rolled out")
    );
}

/// A `fleetfix demo --serve` child, ended by SIGINT on drop.
struct Served {
    child: std::process::Child,
    info: Value,
}

impl Served {
    fn start(home: &std::path::Path, nodes: usize) -> Served {
        let mut child = fleetfix(home)
            .args([
                "demo",
                "--serve",
                "--output",
                "json",
                "--nodes",
                &nodes.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("first line");
        let info: Value = serde_json::from_str(&line).expect("demo_serving line");
        assert_eq!(info["event"], "demo_serving");
        Served { child, info }
    }

    fn path(&self, key: &str) -> String {
        s(&self.info[key])
    }

    /// `fleetfix ARGS` against the served fleet.
    fn fleetfix(&self, home: &std::path::Path, args: &[&str]) -> Run {
        let (cmd, rest) = args.split_first().expect("a command");
        run(fleetfix(home)
            .arg(cmd)
            .args(["--output", "json", "-i", &self.path("inventory")])
            .args(["--known-hosts", &self.path("known_hosts")])
            .args(rest))
    }

    fn stop(&mut self) -> std::process::ExitStatus {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "--serve did not stop on Ctrl-C"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn versions(out: &Run) -> BTreeMap<String, String> {
    out.of_kind("step_finished")
        .iter()
        .map(|e| (s(&e["node"]), s(&e["stdout"]).trim().to_string()))
        .collect()
}

#[test]
fn demo_serve_is_a_sandbox_for_any_playbook() {
    let home = tempfile::tempdir().expect("tempdir");
    let mut served = Served::start(home.path(), 40);
    let dir = served.path("dir");

    let out = served.fleetfix(home.path(), &["exec", "--", "cat", "version"]);
    assert_eq!(out.code, 0, "{}", out.dump());
    let before = versions(&out);
    assert_eq!(before.len(), 40);
    assert!(before.values().all(|v| v == "0.1.0"), "{before:?}");

    // The served fleet takes the demo playbook (or any other).
    let pb = served.path("playbook");
    let out = served.fleetfix(home.path(), &["run", "-j", "20", &pb]);
    assert_eq!(out.code, 0, "{}", out.dump());
    let out = served.fleetfix(home.path(), &["exec", "--", "cat", "version"]);
    assert!(
        versions(&out).values().all(|v| v == "0.2.0"),
        "{}",
        out.dump()
    );

    // Its host keys are verified like any host's: not in the default
    // known_hosts, so unknown there.
    let out = run(fleetfix(home.path())
        .args([
            "exec",
            "--output",
            "json",
            "-l",
            "node01",
            "-i",
            &served.path("inventory"),
        ])
        .args(["--", "true"]));
    assert_eq!(out.code, 6, "{}", out.dump());
    assert!(
        s(&out.of_kind("node_finished")[0]["error"]).contains("unknown"),
        "{}",
        out.dump()
    );

    // A timeout ends the command's process group on a demo node too.
    let out = served.fleetfix(
        home.path(),
        &[
            "exec",
            "-l",
            "node02",
            "--timeout",
            "1s",
            "--",
            "sleep 37 & sleep 37; echo never",
        ],
    );
    assert_eq!(out.code, 1, "{}", out.dump());
    let ps = Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .expect("ps");
    let sleepers = String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter(|l| l.trim() == "sleep 37")
        .count();
    assert_eq!(sleepers, 0, "the timed-out command's processes live on");

    let status = served.stop();
    assert!(status.success(), "{status:?}");
    assert!(!std::path::Path::new(&dir).exists(), "{dir} left behind");
}
