//! `--report FILE`: the whole run as one JSON document, written when the run
//! ends, for tools that want the outcome rather than the event stream.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::Reporter;
use crate::events::{Event, NodeStatus, Stamped, StepResult, Summary};
use crate::support::error::Error;

/// Collects the run's events and writes the report on `finish`.
pub struct JsonReport {
    path: PathBuf,
    doc: Option<Document>,
    index: HashMap<Arc<str>, usize>,
}

#[derive(Serialize)]
struct Document {
    run_id: String,
    playbook: String,
    started: jiff::Timestamp,
    /// `null` when the run ended without `run_finished` (it should not).
    finished: Option<jiff::Timestamp>,
    check: bool,
    batches: Vec<usize>,
    summary: Option<Summary>,
    nodes: Vec<NodeEntry>,
    gates: Vec<GateEntry>,
}

#[derive(Serialize)]
struct NodeEntry {
    name: Arc<str>,
    status: NodeStatus,
    error: Option<String>,
    duration_ms: u64,
    report_vars: BTreeMap<String, String>,
    steps: Vec<StepResult>,
}

#[derive(Serialize)]
struct GateEntry {
    batch: usize,
    gate: String,
    ok: bool,
    attempt: u32,
    error: Option<String>,
    duration_ms: u64,
}

impl JsonReport {
    pub fn new(path: PathBuf) -> Self {
        JsonReport {
            path,
            doc: None,
            index: HashMap::new(),
        }
    }

    fn node(&mut self, name: &Arc<str>) -> Option<&mut NodeEntry> {
        let doc = self.doc.as_mut()?;
        let i = *self.index.entry(name.clone()).or_insert_with(|| {
            doc.nodes.push(NodeEntry::new(name.clone()));
            doc.nodes.len() - 1
        });
        doc.nodes.get_mut(i)
    }

    /// The document as JSON, or `None` before `run_started`.
    fn render(&self) -> Option<serde_json::Result<Vec<u8>>> {
        let doc = self.doc.as_ref()?;
        Some(serde_json::to_vec_pretty(doc).map(|mut v| {
            v.push(b'\n');
            v
        }))
    }
}

impl NodeEntry {
    /// A node with no `node_finished` yet: it did not run, as far as we know.
    fn new(name: Arc<str>) -> Self {
        NodeEntry {
            name,
            status: NodeStatus::NotRun,
            error: None,
            duration_ms: 0,
            report_vars: BTreeMap::new(),
            steps: Vec::new(),
        }
    }
}

impl Reporter for JsonReport {
    fn event(&mut self, ev: &Stamped) {
        match &ev.event {
            Event::RunStarted {
                run_id,
                playbook,
                nodes,
                batches,
                check,
            } => {
                self.index = nodes
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n.clone(), i))
                    .collect();
                self.doc = Some(Document {
                    run_id: run_id.clone(),
                    playbook: playbook.clone(),
                    started: ev.ts,
                    finished: None,
                    check: *check,
                    batches: batches.clone(),
                    summary: None,
                    nodes: nodes.iter().cloned().map(NodeEntry::new).collect(),
                    gates: Vec::new(),
                });
            }
            Event::StepFinished(s) => {
                if let Some(n) = self.node(&s.node) {
                    n.steps.push(s.clone());
                }
            }
            Event::NodeFinished {
                node,
                status,
                error,
                duration_ms,
                report,
            } => {
                if let Some(n) = self.node(node) {
                    n.status = *status;
                    n.error = error.clone();
                    n.duration_ms = *duration_ms;
                    n.report_vars = report.clone();
                }
            }
            Event::GateFinished {
                batch,
                gate,
                ok,
                attempt,
                error,
                duration_ms,
            } => {
                if let Some(doc) = &mut self.doc {
                    doc.gates.push(GateEntry {
                        batch: *batch,
                        gate: gate.clone(),
                        ok: *ok,
                        attempt: *attempt,
                        error: error.clone(),
                        duration_ms: *duration_ms,
                    });
                }
            }
            Event::RunFinished { summary } => {
                if let Some(doc) = &mut self.doc {
                    doc.finished = Some(ev.ts);
                    doc.summary = Some(summary.clone());
                }
            }
            _ => {}
        }
    }

    fn finish(&mut self) {
        match self.render() {
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
pub fn check_output_path(path: &Path, option: &str) -> Result<(), Error> {
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
    use crate::events::StepStatus;

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
                    exit_code: 3,
                    duration_ms: 9000,
                    stopped: Some("gate `endpoint` failed".into()),
                    check: false,
                },
            },
        ]
    }

    #[test]
    fn writes_the_whole_run_as_one_document() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        let mut r = JsonReport::new(path.clone());
        for e in sample_run() {
            r.event(&at(e));
        }
        r.finish();
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
