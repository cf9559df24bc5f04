//! The one stream of events the executor produces; every writer (bars, plain
//! log, JSON Lines, summary) consumes it and none lives in the executor.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::secrets::Masker;

/// A step's outcome (SPEC section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Ok,
    Changed,
    Skipped,
    Failed,
    /// `--check`: the step would run (and change the node).
    WouldRun,
    /// `--check`: a guard says the step would be skipped.
    WouldSkip,
}

/// A node's outcome (SPEC section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    Ok,
    Changed,
    Failed,
    Unreachable,
    NotRun,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Ok => "ok",
            NodeStatus::Changed => "changed",
            NodeStatus::Failed => "failed",
            NodeStatus::Unreachable => "unreachable",
            NodeStatus::NotRun => "not_run",
        }
    }
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Ok => "ok",
            StepStatus::Changed => "changed",
            StepStatus::Skipped => "skipped",
            StepStatus::Failed => "failed",
            StepStatus::WouldRun => "would_run",
            StepStatus::WouldSkip => "would_skip",
        }
    }
}

/// One finished step on one node.
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    pub node: Arc<str>,
    pub step: String,
    /// Position in `[[steps]]` (or `[[on_failure]]` when `on_failure`).
    pub index: usize,
    pub on_failure: bool,
    pub status: StepStatus,
    pub attempt: u32,
    pub exit: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub duration_ms: u64,
    /// Why it failed or was skipped, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Node counts per final status.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct NodeCounts {
    pub ok: usize,
    pub changed: usize,
    pub failed: usize,
    pub unreachable: usize,
    pub not_run: usize,
}

impl NodeCounts {
    pub fn add(&mut self, status: NodeStatus) {
        match status {
            NodeStatus::Ok => self.ok += 1,
            NodeStatus::Changed => self.changed += 1,
            NodeStatus::Failed => self.failed += 1,
            NodeStatus::Unreachable => self.unreachable += 1,
            NodeStatus::NotRun => self.not_run += 1,
        }
    }

    /// `3 changed, 1 failed` (zero counts left out).
    pub fn describe(&self) -> String {
        [
            (self.changed, "changed"),
            (self.ok, "ok"),
            (self.failed, "failed"),
            (self.unreachable, "unreachable"),
            (self.not_run, "not_run"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, w)| format!("{n} {w}"))
        .collect::<Vec<_>>()
        .join(", ")
    }
}

/// Node counts per status, and the exit code they mean.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub nodes: usize,
    #[serde(flatten)]
    pub counts: NodeCounts,
    pub exit_code: i32,
    pub duration_ms: u64,
    /// Why the run stopped before every node ran, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// `--check`: nodes that would change are counted as `changed`.
    pub check: bool,
}

impl Summary {
    pub fn add(&mut self, status: NodeStatus) {
        self.nodes += 1;
        self.counts.add(status);
    }

    /// SPEC section 2. A stopped rollout (3) outranks a failed node (1),
    /// which outranks unreachable nodes (6), which outrank drift (5).
    pub fn compute_exit_code(&self) -> i32 {
        if self.stopped.is_some() {
            3
        } else if self.counts.failed > 0 {
            1
        } else if self.counts.unreachable > 0 {
            6
        } else if self.check && self.counts.changed > 0 {
            5
        } else {
            0
        }
    }
}

/// Everything that happens during a run, in order.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        run_id: String,
        playbook: String,
        nodes: Vec<Arc<str>>,
        /// Batch sizes, in order.
        batches: Vec<usize>,
        check: bool,
    },
    BatchStarted {
        batch: usize,
        batches: usize,
        nodes: Vec<Arc<str>>,
    },
    NodeStarted {
        node: Arc<str>,
    },
    /// An attempt of a step begins (drives the bars; not part of JSON output).
    StepStarted {
        node: Arc<str>,
        step: String,
        index: usize,
        steps: usize,
        attempt: u32,
        on_failure: bool,
    },
    StepFinished(StepResult),
    NodeFinished {
        node: Arc<str>,
        status: NodeStatus,
        error: Option<String>,
        duration_ms: u64,
        /// Captured values named by the playbook's `report_vars`.
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        report: BTreeMap<String, String>,
    },
    BatchFinished {
        batch: usize,
    },
    /// A `[[gate]]` ran on the runner after a batch.
    GateFinished {
        batch: usize,
        gate: String,
        ok: bool,
        attempt: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        duration_ms: u64,
    },
    /// Ctrl-C (or SIGTERM): no new work; `kill` is false during the grace
    /// period and true once running commands are being ended.
    Interrupted {
        grace_secs: u64,
        kill: bool,
    },
    RunFinished {
        summary: Summary,
    },
}

/// An event with the time it happened.
#[derive(Debug, Clone, Serialize)]
pub struct Stamped {
    pub ts: jiff::Timestamp,
    #[serde(flatten)]
    pub event: Event,
    /// The JSON line, made by the first writer that needs it: the journal
    /// and `--output json` print the same line.
    #[serde(skip)]
    line: std::sync::OnceLock<Box<[u8]>>,
}

impl Stamped {
    pub fn new(ts: jiff::Timestamp, event: Event) -> Self {
        Stamped {
            ts,
            event,
            line: std::sync::OnceLock::new(),
        }
    }

    /// The event as one JSON object and a newline (SPEC section 7).
    pub fn json_line(&self) -> &[u8] {
        self.line.get_or_init(|| {
            let mut line = serde_json::to_vec(self).unwrap_or_else(|e| {
                // Only a map with non-string keys could fail; there is none.
                serde_json::to_vec(&serde_json::json!({"ts": self.ts, "error": e.to_string()}))
                    .unwrap_or_default()
            });
            line.push(b'\n');
            line.into_boxed_slice()
        })
    }
}

impl Event {
    /// Replaces secret values in every text the event carries.
    fn mask(&mut self, m: &Masker) {
        match self {
            Event::StepFinished(s) => {
                m.mask_in_place(&mut s.stdout);
                m.mask_in_place(&mut s.stderr);
                if let Some(e) = &mut s.error {
                    m.mask_in_place(e);
                }
            }
            Event::NodeFinished { error, report, .. } => {
                if let Some(e) = error {
                    m.mask_in_place(e);
                }
                for v in report.values_mut() {
                    m.mask_in_place(v);
                }
            }
            Event::GateFinished { error: Some(e), .. } => m.mask_in_place(e),
            Event::RunFinished { summary } => {
                if let Some(s) = &mut summary.stopped {
                    m.mask_in_place(s);
                }
            }
            _ => {}
        }
    }
}

/// A consumer of the event stream.
pub trait Reporter: Send {
    fn event(&mut self, ev: &Stamped);
    /// Called whenever no further event is waiting: write out what is
    /// buffered. A busy run then costs one write per burst, not per event,
    /// and nothing waits longer than the writer takes to catch up.
    fn idle(&mut self) {}
    /// Called once after the last event.
    fn finish(&mut self) {}
}

/// Writers fed on the emitting thread, before an event goes on to the
/// writer thread: the journal, so a finished step is written (to the page
/// cache) before the node's next step starts, whatever the terminal does.
pub type Inline = Arc<std::sync::Mutex<Vec<Box<dyn Reporter>>>>;

/// Where the executor sends events; cheap to clone, never blocks on a
/// terminal. Secrets are masked here, once, so no writer can ever see them.
#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::UnboundedSender<Arc<Stamped>>,
    masker: Arc<Masker>,
    inline: Inline,
}

impl EventSink {
    pub fn channel(
        masker: Arc<Masker>,
        inline: Inline,
    ) -> (Self, mpsc::UnboundedReceiver<Arc<Stamped>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (EventSink { tx, masker, inline }, rx)
    }

    pub fn emit(&self, mut event: Event) {
        if !self.masker.is_empty() {
            event.mask(&self.masker);
        }
        let stamped = Arc::new(Stamped::new(jiff::Timestamp::now(), event));
        {
            let mut inline = self.inline.lock().unwrap_or_else(|p| p.into_inner());
            for r in inline.iter_mut() {
                r.event(&stamped);
                r.idle();
            }
        }
        // A closed receiver means output is gone; the run still completes.
        let _ = self.tx.send(stamped);
    }
}
