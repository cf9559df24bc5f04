//! `--report FILE`: the whole run as one JSON document, written when the run
//! ends, for tools that want the outcome rather than the event stream.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Finisher;
use crate::events::{NodeStatus, StepResult, Summary};
use crate::record::{GateRecord, NodeRecord, RunRecord};
use crate::support::error::Error;

/// Writes the run's record as the report when the run is over.
pub(crate) struct JsonReport {
    path: PathBuf,
}

/// The report: a view of the record.
#[derive(Serialize)]
struct Document<'a> {
    run_id: &'a str,
    playbook: &'a str,
    started: jiff::Timestamp,
    /// `null` when the run ended without `run_finished` (it should not).
    finished: Option<jiff::Timestamp>,
    check: bool,
    batches: &'a [usize],
    summary: Option<&'a Summary>,
    nodes: Vec<NodeEntry<'a>>,
    gates: &'a [GateRecord],
}

#[derive(Serialize)]
struct NodeEntry<'a> {
    name: &'a str,
    /// A node with no `node_finished`: it did not run, as far as we know.
    status: NodeStatus,
    error: &'a Option<String>,
    duration_ms: u64,
    report_vars: &'a BTreeMap<String, String>,
    steps: &'a [StepResult],
}

impl<'a> NodeEntry<'a> {
    fn of(n: &'a NodeRecord) -> Self {
        NodeEntry {
            name: &n.name,
            status: n.status.unwrap_or(NodeStatus::NotRun),
            error: &n.error,
            duration_ms: n.duration_ms.unwrap_or(0),
            report_vars: &n.report,
            steps: &n.steps,
        }
    }
}

impl JsonReport {
    pub(crate) fn new(path: PathBuf) -> Self {
        JsonReport { path }
    }

    /// The document as JSON, or `None` before `run_started`.
    fn render(run: &RunRecord) -> Option<serde_json::Result<Vec<u8>>> {
        let doc = Document {
            run_id: &run.id,
            playbook: &run.playbook,
            started: run.started?,
            finished: run.finished,
            check: run.check,
            batches: &run.batches,
            summary: run.summary.as_ref(),
            nodes: run.nodes.iter().map(NodeEntry::of).collect(),
            gates: &run.gates,
        };
        Some(serde_json::to_vec_pretty(&doc).map(|mut v| {
            v.push(b'\n');
            v
        }))
    }
}

impl Finisher for JsonReport {
    fn finish(&mut self, run: &RunRecord) {
        match Self::render(run) {
            None => tracing::warn!(
                "no run started; the report {} was not written",
                self.path.display()
            ),
            Some(Err(e)) => tracing::error!("cannot build the report: {e}"),
            Some(Ok(bytes)) => {
                if let Err(e) = write_atomic(&self.path, &bytes) {
                    tracing::error!("cannot write the report {}: {e}", self.path.display());
                }
            }
        }
    }
}

/// Checks before the run that a report can be written to `path` (its
/// directory exists and is a directory), so a typo in `--report`/`--junit`
/// is bad input (exit 2) rather than a report lost after the run.
pub(crate) fn check_output_path(path: &Path, option: &str) -> Result<(), Error> {
    let dir = parent_dir(path);
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() && !path.is_dir() => Ok(()),
        Ok(_) if path.is_dir() => Err(Error::input(
            format!("{option} {} is a directory", path.display()),
            "give a file name",
        )),
        Ok(_) => Err(Error::input(
            format!(
                "{option} {}: {} is not a directory",
                path.display(),
                dir.display()
            ),
            "give a path inside an existing directory",
        )),
        Err(e) => Err(Error::input(
            format!(
                "{option} {}: cannot use directory {}: {e}",
                path.display(),
                dir.display()
            ),
            "create the directory first, or give another path",
        )),
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory
/// and a rename, so a reader never sees half a report and an old report is
/// only replaced by a complete new one.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the path names no file"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = parent_dir(path).join(tmp_name);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::events::{Event, ExitCode, Stamped, StepStatus, StopReason};

    pub(crate) fn at(event: Event) -> Stamped {
        Stamped::new(jiff::Timestamp::from_second(1_795_000_000).unwrap(), event)
    }

    pub(crate) fn step(
        node: &str,
        name: &str,
        status: StepStatus,
        on_failure: bool,
        error: Option<&str>,
    ) -> Event {
        Event::StepFinished(StepResult {
            node: node.into(),
            step: name.into(),
            index: 0,
            on_failure,
            status,
            attempt: 1,
            exit: Some(if status == StepStatus::Failed { 1 } else { 0 }),
            stdout: format!("{name} out"),
            stderr: format!("{name} err"),
            duration_ms: 1250,
            error: error.map(String::from),
        })
    }

    pub(crate) fn done(node: &str, status: NodeStatus, error: Option<&str>) -> Event {
        Event::NodeFinished {
            node: node.into(),
            status,
            error: error.map(String::from),
            duration_ms: 3000,
            report: [("running_image".to_string(), format!("img-{node}"))].into(),
        }
    }

    /// The record of a run of `events`.
    pub(crate) fn record_of(events: Vec<Event>) -> RunRecord {
        let mut run = RunRecord::new();
        for e in events {
            run.apply(&at(e));
        }
        run
    }

    /// A run with every kind of outcome: changed, failed with on_failure,
    /// unreachable, not run, skipped steps and a failing gate.
    pub(crate) fn sample_run() -> Vec<Event> {
        vec![
            Event::RunStarted {
                run_id: "20261126T101500Z-3fa2".into(),
                playbook: "relay-rollout".into(),
                nodes: vec!["b".into(), "a".into(), "c".into(), "d".into()],
                batches: vec![1, 3],
                check: false,
                user: "ops".into(),
                host: "runner1".into(),
            },
            Event::BatchStarted {
                batch: 1,
                batches: 2,
                nodes: vec!["a".into()],
            },
            Event::NodeStarted { node: "a".into() },
            step("a", "pull", StepStatus::Changed, false, None),
            step(
                "a",
                "swap",
                StepStatus::Skipped,
                false,
                Some("when is false"),
            ),
            done("a", NodeStatus::Changed, None),
            step(
                "b",
                "pull",
                StepStatus::Failed,
                false,
                Some("exit code 1, expected 0"),
            ),
            step("b", "restore", StepStatus::Changed, true, None),
            done("b", NodeStatus::Failed, Some("step `pull` failed")),
            done("c", NodeStatus::Unreachable, Some("connection refused")),
            Event::GateFinished {
                batch: 1,
                gate: "endpoint".into(),
                ok: false,
                attempt: 2,
                error: Some("status 502".into()),
                duration_ms: 80,
            },
            done("d", NodeStatus::NotRun, Some("a gate failed")),
            Event::RunFinished {
                summary: Summary {
                    nodes: 4,
                    counts: crate::events::NodeCounts {
                        ok: 0,
                        changed: 1,
                        failed: 1,
                        unreachable: 1,
                        not_run: 1,
                    },
                    exit_code: ExitCode::Stopped,
                    duration_ms: 9000,
                    stopped: Some(StopReason::Gate("gate `endpoint` failed".into())),
                    check: false,
                },
            },
        ]
    }

    #[test]
    fn writes_the_whole_run_as_one_document() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        JsonReport::new(path.clone()).finish(&record_of(sample_run()));
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["run_id"], "20261126T101500Z-3fa2");
        assert_eq!(v["playbook"], "relay-rollout");
        assert_eq!(v["started"], "2026-11-18T11:06:40Z");
        assert_eq!(v["finished"], "2026-11-18T11:06:40Z");
        assert_eq!(v["check"], false);
        assert_eq!(v["batches"], serde_json::json!([1, 3]));
        assert_eq!(v["summary"]["exit_code"], 3);
        let names: Vec<_> = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["b", "a", "c", "d"], "run_started order");
        let b = &v["nodes"][0];
        assert_eq!(b["status"], "failed");
        assert_eq!(b["error"], "step `pull` failed");
        assert_eq!(b["duration_ms"], 3000);
        assert_eq!(b["report_vars"]["running_image"], "img-b");
        assert_eq!(b["steps"].as_array().unwrap().len(), 2);
        assert_eq!(b["steps"][0]["stderr"], "pull err");
        assert_eq!(b["steps"][1]["on_failure"], true);
        assert_eq!(v["nodes"][3]["status"], "not_run");
        assert_eq!(v["gates"][0]["gate"], "endpoint");
        assert_eq!(v["gates"][0]["ok"], false);
        // No temporary file left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn output_path_is_checked_up_front() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_output_path(&dir.path().join("r.json"), "--report").is_ok());
        assert!(check_output_path(Path::new("r.json"), "--report").is_ok());
        let err = check_output_path(&dir.path().join("nope/r.json"), "--report").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--report"), "{err}");
        assert!(check_output_path(dir.path(), "--report").is_err());
    }
}
