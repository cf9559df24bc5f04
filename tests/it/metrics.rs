//! `fleetfix run --metrics FILE` against real sshd nodes: the file is what
//! Prometheus' own `promtool check metrics` accepts, says what the run did,
//! and replaces the one before it whole.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::Fleet;
use crate::common::cli::{
    Run, finish, json_run, playbook, run, run_json_on, signal, spawn, wait_for,
};

/// One sample of the file: its metric name, labels and value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of a text-format file (comments left out), label values
/// unescaped.
fn parse(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect("a value");
        let (name, mut rest) = match series.split_once('{') {
            Some((n, r)) => (n, r.strip_suffix('}').expect("closing brace")),
            None => (series, ""),
        };
        let mut labels = BTreeMap::new();
        while !rest.is_empty() {
            let (label, after) = rest.split_once("=\"").expect("label=\"");
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next().expect("closing quote") {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next().expect("escaped char").1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (_, c) => value.push(c),
                }
            };
            labels.insert(label.to_string(), value);
            rest = after[end + 1..]
                .strip_prefix(',')
                .unwrap_or(&after[end + 1..]);
        }
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value: value.parse().expect("a number"),
        });
    }
    samples
}

/// The value of the one sample named `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let hits: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert_eq!(hits.len(), 1, "{name} {labels:?} in {samples:#?}");
    hits[0].value
}

/// Fails the test unless `promtool check metrics` accepts `path` with no
/// complaint (parse errors and lint problems alike).
fn promtool_accepts(path: &Path) {
    let file = std::fs::File::open(path).expect("metrics file");
    let out = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::from(file))
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!(
            "cannot run promtool ({e}): install it with `apt-get install -y prometheus` \
             (Debian's package ships /usr/bin/promtool; .ci/run installs it)"
        ),
    };
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics refused {}: {}\n{}{}\n--- file\n{}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(path).unwrap_or_default()
    );
}

/// Checks the file with promtool, then reads it back.
fn read_metrics(path: &Path) -> (String, Vec<Sample>) {
    promtool_accepts(path);
    let text = std::fs::read_to_string(path).expect("metrics written");
    let samples = parse(&text);
    (text, samples)
}

/// The names of the files in `dir`.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn metrics_dir(fleet: &Fleet) -> PathBuf {
    let dir = fleet.dir().join("textfile");
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

/// The node status series of `node`: the status whose value is 1, and
/// that each of the five statuses has a series.
fn status_of(samples: &[Sample], pb: &str, node: &str) -> String {
    let of_node: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == "fleetfix_node_status"
                && s.labels["playbook"] == pb
                && s.labels["node"] == node
        })
        .collect();
    let statuses: Vec<&str> = of_node
        .iter()
        .map(|s| s.labels["status"].as_str())
        .collect();
    assert_eq!(
        statuses,
        ["ok", "changed", "failed", "unreachable", "not_run"],
        "{node}"
    );
    let on: Vec<&&Sample> = of_node.iter().filter(|s| s.value == 1.0).collect();
    assert_eq!(on.len(), 1, "one-hot for {node}: {of_node:?}");
    assert!(of_node.iter().all(|s| s.value == 0.0 || s.value == 1.0));
    on[0].labels["status"].clone()
}

#[test]
fn an_ok_run_and_a_failed_run_replace_the_file_whole() {
    let fleet = Fleet::start(3);
    let inv = fleet.write_inventory(&[]);
    // A name that needs escaping: quotes, a backslash and a line feed.
    let name = "metrics \"ok\" \\ then\nfailed";
    let pb = playbook(
        fleet.dir(),
        "metrics.toml",
        r#"
name = "metrics \"ok\" \\ then\nfailed"
[vars]
fail = "none"
[secrets]
token = { env = "METRICS_TEST_TOKEN" }
[[steps]]
name = "work"
env = { TOKEN = "${{ secret.token }}" }
run = "echo $TOKEN; touch ${{ marker_dir }}/ran; case ${{ node.name }} in ${{ fail }}) exit 1;; esac"
"#,
    );
    let dir = metrics_dir(&fleet);
    let prom = dir.join("fleetfix.prom");
    let prom_arg = prom.to_str().expect("utf-8 path");
    let token = "s3cr3t-metrics-token";
    let go = |extra: &[&str]| -> Run {
        run(json_run(fleet.dir(), &inv, fleet.known_hosts(), &pb, extra)
            .env("METRICS_TEST_TOKEN", token))
    };

    // A path in a missing directory is bad input: nothing runs.
    let missing = dir.join("nope").join("fleetfix.prom");
    let out = go(&["--metrics", missing.to_str().expect("utf-8")]);
    assert_eq!(out.code, 2, "{}", out.dump());
    assert!(out.stderr.contains("--metrics"), "{}", out.dump());
    assert!(!fleet.dir().join("markers/node1/ran").exists(), "it ran");

    // An existing file is replaced; no temporary file is left behind.
    std::fs::write(&prom, "# stale\n").expect("write");
    let started = jiff::Timestamp::now().as_second() as f64;
    let out = go(&["--metrics", prom_arg]);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(files_in(&dir), ["fleetfix.prom"]);
    let (text, samples) = read_metrics(&prom);
    assert!(!text.contains("# stale"), "{text}");
    assert!(!text.contains(token), "a secret leaked: {text}");
    let pb_label = [("playbook", name)];
    let run_id = out.of_kind("run_started")[0]["run_id"]
        .as_str()
        .expect("run id")
        .to_string();
    assert_eq!(
        value(
            &samples,
            "fleetfix_last_run_info",
            &[("playbook", name), ("run_id", &run_id)]
        ),
        1.0
    );
    assert_eq!(
        value(&samples, "fleetfix_last_run_exit_code", &pb_label),
        0.0
    );
    assert_eq!(value(&samples, "fleetfix_last_run_check", &pb_label), 0.0);
    let start = value(&samples, "fleetfix_last_run_start_time_seconds", &pb_label);
    assert!(
        (started - 1.0..started + 60.0).contains(&start),
        "start {start}, test began {started}"
    );
    let duration = value(&samples, "fleetfix_last_run_duration_seconds", &pb_label);
    assert!((0.0..60.0).contains(&duration), "{duration}");
    let count = |samples: &[Sample], status: &str| {
        value(
            samples,
            "fleetfix_last_run_nodes",
            &[("playbook", name), ("status", status)],
        )
    };
    assert_eq!(count(&samples, "changed"), 3.0);
    for status in ["ok", "failed", "unreachable", "not_run"] {
        assert_eq!(count(&samples, status), 0.0, "{status}");
    }
    for node in ["node1", "node2", "node3"] {
        assert_eq!(status_of(&samples, name, node), "changed");
    }
    assert!(
        samples.iter().all(|s| s.name != "fleetfix_node_drift"),
        "drift is for --check runs"
    );

    // The same playbook failing on node2: the file now says so.
    let out = go(&["--metrics", prom_arg, "-e", "fail=node2"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    assert_eq!(files_in(&dir), ["fleetfix.prom"]);
    let (text, samples) = read_metrics(&prom);
    assert!(!text.contains(token), "a secret leaked: {text}");
    assert!(!text.contains(&run_id), "the earlier run's id is gone");
    assert_eq!(
        value(&samples, "fleetfix_last_run_exit_code", &pb_label),
        1.0
    );
    assert_eq!(count(&samples, "changed"), 2.0);
    assert_eq!(count(&samples, "failed"), 1.0);
    assert_eq!(count(&samples, "ok"), 0.0);
    assert_eq!(status_of(&samples, name, "node2"), "failed");
    assert_eq!(status_of(&samples, name, "node1"), "changed");
}

#[test]
fn a_check_run_reports_drift_per_node() {
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
"#,
    );
    let markers = fleet.dir().join("markers");
    for n in ["node1", "node3"] {
        std::fs::write(markers.join(n).join("state"), "converged\n").expect("write");
    }
    std::fs::write(markers.join("node2/state"), "stale\n").expect("write");
    let dir = metrics_dir(&fleet);
    let prom = dir.join("converge.prom");
    let out = run_json_on(
        &fleet,
        &inv,
        &pb,
        &["--check", "--metrics", prom.to_str().expect("utf-8")],
    );
    assert_eq!(out.code, 5, "{}", out.dump());
    assert_eq!(files_in(&dir), ["converge.prom"]);
    let (_, samples) = read_metrics(&prom);
    let pb_label = [("playbook", "converge")];
    assert_eq!(
        value(&samples, "fleetfix_last_run_exit_code", &pb_label),
        5.0
    );
    assert_eq!(value(&samples, "fleetfix_last_run_check", &pb_label), 1.0);
    let drift = |node: &str| {
        value(
            &samples,
            "fleetfix_node_drift",
            &[("playbook", "converge"), ("node", node)],
        )
    };
    assert_eq!(drift("node1"), 0.0);
    assert_eq!(drift("node2"), 1.0);
    assert_eq!(drift("node3"), 0.0);
    assert_eq!(status_of(&samples, "converge", "node2"), "changed");
    assert_eq!(status_of(&samples, "converge", "node1"), "ok");
    let count = |status: &str| {
        value(
            &samples,
            "fleetfix_last_run_nodes",
            &[("playbook", "converge"), ("status", status)],
        )
    };
    assert_eq!(count("ok"), 2.0);
    assert_eq!(count("changed"), 1.0);
    assert_eq!(
        std::fs::read_to_string(markers.join("node2/state")).expect("read"),
        "stale\n",
        "--check changed nothing"
    );
}

#[test]
fn an_interrupted_run_still_writes_its_metrics() {
    let fleet = Fleet::start(3);
    let inv = fleet.write_inventory(&[]);
    let pb = playbook(
        fleet.dir(),
        "paused.toml",
        r#"
name = "paused"
[rollout]
batches = [1]
pause = "60s"
[[steps]]
name = "work"
run = "touch ${{ marker_dir }}/ran"
"#,
    );
    let dir = metrics_dir(&fleet);
    let prom = dir.join("paused.prom");
    let child = spawn(json_run(
        fleet.dir(),
        &inv,
        fleet.known_hosts(),
        &pb,
        &["--metrics", prom.to_str().expect("utf-8")],
    ));
    // The canary ran; the run now pauses before the next batch.
    let markers = fleet.dir().join("markers");
    wait_for("the canary", Duration::from_secs(15), || {
        ["node1", "node2", "node3"]
            .iter()
            .any(|n| markers.join(n).join("ran").exists())
    });
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, nix::sys::signal::Signal::SIGINT);
    let out = finish(child);
    assert_eq!(out.code, 3, "{}", out.dump());
    assert_eq!(files_in(&dir), ["paused.prom"]);
    let (_, samples) = read_metrics(&prom);
    let pb_label = [("playbook", "paused")];
    assert_eq!(
        value(&samples, "fleetfix_last_run_exit_code", &pb_label),
        3.0
    );
    let count = |status: &str| {
        value(
            &samples,
            "fleetfix_last_run_nodes",
            &[("playbook", "paused"), ("status", status)],
        )
    };
    assert_eq!(count("changed"), 1.0);
    assert_eq!(count("not_run"), 2.0);
}
