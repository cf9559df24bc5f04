//! `--metrics FILE`: the run in the Prometheus text exposition format, as
//! node_exporter's textfile collector reads it, written when the run ends
//! (failed, stopped or interrupted too) through a temporary file and a
//! rename. Every series is a gauge labelled with the playbook, so the files
//! of several playbooks can sit side by side in the collector's directory.
//!
//! It renders the run's one [`RunRecord`], which holds masked events only.

use std::fmt::{Display, Write as _};
use std::path::PathBuf;

use super::Finisher;
use super::report::write_atomic;
use crate::events::{NodeCounts, NodeStatus, StepStatus};
use crate::record::RunRecord;

/// Writes the run's record as Prometheus metrics when the run is over.
pub(crate) struct MetricsFile {
    path: PathBuf,
}

impl MetricsFile {
    pub(crate) fn new(path: PathBuf) -> Self {
        MetricsFile { path }
    }
}

impl Finisher for MetricsFile {
    fn finish(&mut self, run: &RunRecord) {
        match render(run) {
            None => tracing::warn!(
                "no run started; the metrics {} were not written",
                self.path.display()
            ),
            Some(text) => {
                if let Err(e) = write_atomic(&self.path, text.as_bytes()) {
                    tracing::error!("cannot write the metrics {}: {e}", self.path.display());
                }
            }
        }
    }
}

/// The metrics of `run` in the text exposition format, or `None` before
/// `run_started`. A run without `run_finished` (it crashed) has no exit
/// code nor duration; its nodes without a status count as `not_run`.
pub(crate) fn render(run: &RunRecord) -> Option<String> {
    let started = run.started?;
    let playbook = run.playbook.as_str();
    let pb = [("playbook", playbook)];
    let mut out = Exposition::default();

    out.family(
        "fleetfix_last_run_info",
        "The last run of the playbook: its run id (the journal's name), who ran it and on which runner host.",
    );
    out.sample(
        "fleetfix_last_run_info",
        &[
            ("playbook", playbook),
            ("run_id", &run.id),
            ("user", &run.user),
            ("host", &run.host),
        ],
        1,
    );
    out.family(
        "fleetfix_last_run_start_time_seconds",
        "When the last run started, in seconds since the Unix epoch.",
    );
    out.sample(
        "fleetfix_last_run_start_time_seconds",
        &pb,
        seconds(started.as_millisecond()),
    );
    if let Some(summary) = &run.summary {
        out.family(
            "fleetfix_last_run_duration_seconds",
            "How long the last run took, in seconds.",
        );
        let ms = i64::try_from(summary.duration_ms).unwrap_or(i64::MAX);
        out.sample("fleetfix_last_run_duration_seconds", &pb, seconds(ms));
        out.family(
            "fleetfix_last_run_exit_code",
            "The exit code of the last run (0 ok, 1 failed, 3 stopped, 4 locked, 5 drift, 6 unreachable).",
        );
        out.sample("fleetfix_last_run_exit_code", &pb, summary.exit_code.code());
    }
    out.family(
        "fleetfix_last_run_check",
        "1 if the last run was a --check run (changes nothing, reports drift), else 0.",
    );
    out.sample("fleetfix_last_run_check", &pb, u8::from(run.check));

    let status_of = |s: Option<NodeStatus>| s.unwrap_or(NodeStatus::NotRun);
    let mut counts = NodeCounts::default();
    for n in &run.nodes {
        counts.add(status_of(n.status));
    }
    out.family(
        "fleetfix_last_run_nodes",
        "Nodes of the last run by final status.",
    );
    for status in NodeStatus::ALL {
        out.sample(
            "fleetfix_last_run_nodes",
            &[("playbook", playbook), ("status", status.as_str())],
            counts.get(status),
        );
    }

    out.family(
        "fleetfix_node_status",
        "The node's final status in the last run: 1 for its status, 0 for the others.",
    );
    for n in &run.nodes {
        let own = status_of(n.status);
        for status in NodeStatus::ALL {
            out.sample(
                "fleetfix_node_status",
                &[
                    ("playbook", playbook),
                    ("node", &n.name),
                    ("status", status.as_str()),
                ],
                u8::from(status == own),
            );
        }
    }
    if run.check {
        out.family(
            "fleetfix_node_drift",
            "1 if the --check run found the node drifted (a step would run), else 0.",
        );
        for n in &run.nodes {
            let drift = n.steps.iter().any(|s| s.status == StepStatus::WouldRun);
            out.sample(
                "fleetfix_node_drift",
                &[("playbook", playbook), ("node", &n.name)],
                u8::from(drift),
            );
        }
    }
    Some(out.text)
}

/// Milliseconds as seconds, without trailing zeros (`9`, `1.25`).
fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// The text being written: families of gauges, each HELP and TYPE first.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} gauge");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", label_value(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

/// A label value as the format wants it: backslash, double quote and line
/// feed escaped.
fn label_value(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, ExitCode, Summary};
    use crate::output::report::tests::{done, record_of, sample_run, step};

    /// The value of the one sample whose line starts with `series`.
    fn value(text: &str, series: &str) -> String {
        let hits: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .collect();
        assert_eq!(hits.len(), 1, "{series} in\n{text}");
        hits[0].to_string()
    }

    #[test]
    fn run_values() {
        let text = render(&record_of(sample_run())).unwrap();
        let pb = r#"{playbook="relay-rollout"}"#;
        assert_eq!(
            value(
                &text,
                r#"fleetfix_last_run_info{playbook="relay-rollout",run_id="20261126T101500Z-3fa2",user="ops",host="runner1"}"#
            ),
            "1"
        );
        assert_eq!(
            value(&text, &format!("fleetfix_last_run_start_time_seconds{pb}")),
            "1795000000"
        );
        assert_eq!(
            value(&text, &format!("fleetfix_last_run_duration_seconds{pb}")),
            "9"
        );
        assert_eq!(
            value(&text, &format!("fleetfix_last_run_exit_code{pb}")),
            "3"
        );
        assert_eq!(value(&text, &format!("fleetfix_last_run_check{pb}")), "0");
        assert!(!text.contains("fleetfix_node_drift"), "only under --check");
        // Every family is a gauge with its help, given once, before its samples.
        for family in [
            "fleetfix_last_run_info",
            "fleetfix_last_run_start_time_seconds",
            "fleetfix_last_run_duration_seconds",
            "fleetfix_last_run_exit_code",
            "fleetfix_last_run_check",
            "fleetfix_last_run_nodes",
            "fleetfix_node_status",
        ] {
            let help = text.find(&format!("# HELP {family} ")).unwrap();
            let ty = text.find(&format!("# TYPE {family} gauge\n")).unwrap();
            let first = text.find(&format!("\n{family}{{")).unwrap();
            assert!(help < ty && ty < first, "{family}");
            assert_eq!(text.matches(&format!("# TYPE {family} ")).count(), 1);
        }
    }

    #[test]
    fn every_status_is_present_with_its_count() {
        let text = render(&record_of(sample_run())).unwrap();
        let count = |status: &str| {
            value(
                &text,
                &format!(
                    r#"fleetfix_last_run_nodes{{playbook="relay-rollout",status="{status}"}}"#
                ),
            )
        };
        assert_eq!(count("ok"), "0", "zero counts are written too");
        assert_eq!(count("changed"), "1");
        assert_eq!(count("failed"), "1");
        assert_eq!(count("unreachable"), "1");
        assert_eq!(count("not_run"), "1");
        // One-hot: each node has a series per status, 1 for its own.
        let node = |node: &str, status: &str| {
            value(
                &text,
                &format!(
                    r#"fleetfix_node_status{{playbook="relay-rollout",node="{node}",status="{status}"}}"#
                ),
            )
        };
        for (n, own) in [
            ("a", "changed"),
            ("b", "failed"),
            ("c", "unreachable"),
            ("d", "not_run"),
        ] {
            for s in NodeStatus::ALL {
                let want = if s.as_str() == own { "1" } else { "0" };
                assert_eq!(node(n, s.as_str()), want, "{n} {}", s.as_str());
            }
        }
        assert_eq!(text.matches("\nfleetfix_node_status{").count(), 20);
    }

    #[test]
    fn drift_under_check() {
        let run = record_of(vec![
            Event::RunStarted {
                run_id: "r1".into(),
                playbook: "verify".into(),
                nodes: vec!["in-sync".into(), "drifted".into()],
                batches: vec![2],
                check: true,
                user: "ops".into(),
                host: "runner1".into(),
            },
            step("in-sync", "image", StepStatus::Ok, false, None),
            step("in-sync", "swap", StepStatus::WouldSkip, false, None),
            done("in-sync", NodeStatus::Ok, None),
            step("drifted", "image", StepStatus::Ok, false, None),
            step("drifted", "swap", StepStatus::WouldRun, false, None),
            done("drifted", NodeStatus::Changed, None),
            Event::RunFinished {
                summary: Summary {
                    nodes: 2,
                    counts: NodeCounts {
                        ok: 1,
                        changed: 1,
                        ..NodeCounts::default()
                    },
                    exit_code: ExitCode::Drift,
                    duration_ms: 1250,
                    stopped: None,
                    check: true,
                },
            },
        ]);
        let text = render(&run).unwrap();
        assert_eq!(
            value(&text, r#"fleetfix_last_run_check{playbook="verify"}"#),
            "1"
        );
        assert_eq!(
            value(&text, r#"fleetfix_last_run_exit_code{playbook="verify"}"#),
            "5"
        );
        assert_eq!(
            value(
                &text,
                r#"fleetfix_last_run_duration_seconds{playbook="verify"}"#
            ),
            "1.25"
        );
        assert_eq!(
            value(
                &text,
                r#"fleetfix_node_drift{playbook="verify",node="drifted"}"#
            ),
            "1"
        );
        assert_eq!(
            value(
                &text,
                r#"fleetfix_node_drift{playbook="verify",node="in-sync"}"#
            ),
            "0"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label_value(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(label_value("two\nlines"), r"two\nlines");
        assert_eq!(label_value("plain-name.1"), "plain-name.1");
        let run = record_of(vec![
            Event::RunStarted {
                run_id: "r2".into(),
                playbook: "say \"hi\"\\now\n".into(),
                nodes: vec!["n\"1\\\n".into()],
                batches: vec![1],
                check: false,
                user: "ops".into(),
                host: "runner1".into(),
            },
            done("n\"1\\\n", NodeStatus::Ok, None),
        ]);
        let text = render(&run).unwrap();
        assert!(
            text.contains(
                r#"fleetfix_node_status{playbook="say \"hi\"\\now\n",node="n\"1\\\n",status="ok"} 1"#
            ),
            "{text}"
        );
        // Every line is a comment or one whole sample: no raw line feed
        // from a name splits one.
        for line in text.lines() {
            assert!(
                line.starts_with("# ") || line.starts_with("fleetfix_"),
                "{line:?}"
            );
        }
    }

    #[test]
    fn an_incomplete_run_has_no_exit_code_and_nothing_before_it_started() {
        assert_eq!(render(&RunRecord::new()), None);
        let run = record_of(vec![Event::RunStarted {
            run_id: "r3".into(),
            playbook: "p".into(),
            nodes: vec!["a".into()],
            batches: vec![1],
            check: false,
            user: "ops".into(),
            host: "runner1".into(),
        }]);
        let text = render(&run).unwrap();
        assert!(!text.contains("fleetfix_last_run_exit_code"), "{text}");
        assert!(!text.contains("fleetfix_last_run_duration_seconds"));
        assert_eq!(
            value(
                &text,
                r#"fleetfix_last_run_nodes{playbook="p",status="not_run"}"#
            ),
            "1"
        );
    }

    #[test]
    fn the_file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleetfix.prom");
        std::fs::write(&path, "old\n").unwrap();
        MetricsFile::new(path.clone()).finish(&record_of(sample_run()));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, render(&record_of(sample_run())).unwrap());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
