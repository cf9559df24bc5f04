//! The one stream of events the executor produces; every writer (bars, plain
//! log, JSON Lines, summary) consumes it and none lives in the executor.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::config::secrets::Masker;
pub(crate) use crate::support::exit::ExitCode;

/// A step's outcome (SPEC section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StepStatus {
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum NodeStatus {
    Ok,
    Changed,
    Failed,
    Unreachable,
    NotRun,
}

impl NodeStatus {
    /// Every node status of SPEC section 6.
    pub(crate) const ALL: [NodeStatus; 5] = [
        NodeStatus::Ok,
        NodeStatus::Changed,
        NodeStatus::Failed,
        NodeStatus::Unreachable,
        NodeStatus::NotRun,
    ];

    pub(crate) fn as_str(self) -> &'static str {
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
    pub(crate) fn as_str(self) -> &'static str {
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

/// One finished step on one node. (`#[serde(default)]`: older journals
/// may lack a field; they still read.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StepResult {
    pub node: Arc<str>,
    pub step: String,
    /// Position in `[[steps]]` (or `[[on_failure]]` when `on_failure`).
    #[serde(default)]
    pub index: usize,
    #[serde(default)]
    pub on_failure: bool,
    pub status: StepStatus,
    #[serde(default)]
    pub attempt: u32,
    #[serde(default)]
    pub exit: Option<i32>,
    #[serde(default)]
    pub stdout: String,
    #[serde(default)]
    pub stderr: String,
    #[serde(default)]
    pub duration_ms: u64,
    /// Why it failed or was skipped, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Node counts per final status.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub(crate) struct NodeCounts {
    pub ok: usize,
    pub changed: usize,
    pub failed: usize,
    pub unreachable: usize,
    pub not_run: usize,
}

impl NodeCounts {
    pub(crate) fn add(&mut self, status: NodeStatus) {
        match status {
            NodeStatus::Ok => self.ok += 1,
            NodeStatus::Changed => self.changed += 1,
            NodeStatus::Failed => self.failed += 1,
            NodeStatus::Unreachable => self.unreachable += 1,
            NodeStatus::NotRun => self.not_run += 1,
        }
    }

    /// The count of one status.
    pub(crate) fn get(&self, status: NodeStatus) -> usize {
        match status {
            NodeStatus::Ok => self.ok,
            NodeStatus::Changed => self.changed,
            NodeStatus::Failed => self.failed,
            NodeStatus::Unreachable => self.unreachable,
            NodeStatus::NotRun => self.not_run,
        }
    }

    /// `3 changed, 1 failed` (zero counts left out).
    pub(crate) fn describe(&self) -> String {
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
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Summary {
    #[serde(default)]
    pub nodes: usize,
    #[serde(flatten)]
    pub counts: NodeCounts,
    pub exit_code: ExitCode,
    #[serde(default)]
    pub duration_ms: u64,
    /// Why the run stopped before every node ran, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<StopReason>,
    /// `--check`: nodes that would change are counted as `changed`.
    #[serde(default)]
    pub check: bool,
}

impl Summary {
    pub(crate) fn add(&mut self, status: NodeStatus) {
        self.nodes += 1;
        self.counts.add(status);
    }

    /// SPEC section 2. A stopped rollout (3) outranks a failed node (1),
    /// which outranks unreachable nodes (6), which outrank drift (5).
    pub(crate) fn compute_exit_code(&self) -> ExitCode {
        if self.stopped.is_some() {
            ExitCode::Stopped
        } else if self.counts.failed > 0 {
            ExitCode::Failed
        } else if self.counts.unreachable > 0 {
            ExitCode::Unreachable
        } else if self.check && self.counts.changed > 0 {
            ExitCode::Drift
        } else {
            ExitCode::Ok
        }
    }
}

/// Why a run stopped starting nodes. It serializes as the reason in words
/// (`"interrupted"`, or what the budget, gate or lock says), which also
/// names its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StopReason {
    Interrupted,
    /// A failure budget was spent: what it says
    /// (`failed budget spent: …`).
    Budget(String),
    /// A gate failed: what it says (`gate `NAME` failed after batch …`).
    Gate(String),
    /// Another run holds the lock of a node (exit 4):
    /// `node NAME is locked by another run …`.
    Locked(String),
}

impl StopReason {
    /// The reason in words, as the summary and the journal carry it.
    pub(crate) fn describe(&self) -> &str {
        match self {
            StopReason::Interrupted => "interrupted",
            StopReason::Budget(s) | StopReason::Gate(s) | StopReason::Locked(s) => s,
        }
    }

    /// The reason from its words: the kind is in how they begin.
    pub(crate) fn from_words(words: &str) -> StopReason {
        let text = words.to_string();
        if words == "interrupted" {
            StopReason::Interrupted
        } else if words.starts_with("gate ") {
            StopReason::Gate(text)
        } else if words.starts_with("node ") && words.contains(" is locked by another run") {
            StopReason::Locked(text)
        } else {
            // `failed budget spent: …`, `unreachable budget spent: …`, and
            // any wording an older journal may hold.
            StopReason::Budget(text)
        }
    }

    /// How much the reason says about the fleet, least first: a budget
    /// (this rollout went badly), a failed gate (the fleet as a whole is
    /// unwell), an interrupt (a person stopped it), another run holding a
    /// node (someone else is changing the fleet now: exit 4). When several
    /// happen in one run, the most severe is the one reported.
    pub(crate) fn severity(&self) -> u8 {
        match self {
            StopReason::Budget(_) => 0,
            StopReason::Gate(_) => 1,
            StopReason::Interrupted => 2,
            StopReason::Locked(_) => 3,
        }
    }

    /// A budget spent after the last node started stopped nothing early;
    /// the others always did.
    pub(crate) fn always_early(&self) -> bool {
        !matches!(self, StopReason::Budget(_))
    }

    /// The exit code of a run stopped so: a node locked by another run is
    /// 4, any other stop 3 (SPEC section 2).
    pub(crate) fn exit_code(&self) -> ExitCode {
        match self {
            StopReason::Locked(_) => ExitCode::Locked,
            _ => ExitCode::Stopped,
        }
    }

    fn mask(&mut self, m: &Masker) {
        match self {
            StopReason::Interrupted => {}
            StopReason::Budget(s) | StopReason::Gate(s) | StopReason::Locked(s) => {
                m.mask_in_place(s)
            }
        }
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

impl Serialize for StopReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.describe())
    }
}

impl<'de> Deserialize<'de> for StopReason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(StopReason::from_words(&String::deserialize(d)?))
    }
}

/// Everything that happens during a run, in order. It reads back from a
/// journal; `#[serde(default)]` marks what an older journal may lack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum Event {
    RunStarted {
        run_id: String,
        playbook: String,
        #[serde(default)]
        nodes: Vec<Arc<str>>,
        /// Batch sizes, in order.
        #[serde(default)]
        batches: Vec<usize>,
        #[serde(default)]
        check: bool,
        /// Who ran it, on which runner machine (older journals lack them).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        user: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        host: String,
    },
    BatchStarted {
        batch: usize,
        #[serde(default)]
        batches: usize,
        #[serde(default)]
        nodes: Vec<Arc<str>>,
    },
    NodeStarted {
        node: Arc<str>,
    },
    /// An attempt of a step begins (drives the bars; not part of JSON output).
    StepStarted {
        node: Arc<str>,
        step: String,
        #[serde(default)]
        index: usize,
        #[serde(default)]
        steps: usize,
        #[serde(default)]
        attempt: u32,
        #[serde(default)]
        on_failure: bool,
    },
    StepFinished(StepResult),
    NodeFinished {
        node: Arc<str>,
        status: NodeStatus,
        #[serde(default)]
        error: Option<String>,
        #[serde(default)]
        duration_ms: u64,
        /// Captured values named by the playbook's `report_vars`.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
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
        #[serde(default)]
        attempt: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        #[serde(default)]
        duration_ms: u64,
    },
    /// Ctrl-C (or SIGTERM): no new work; `kill` is false during the grace
    /// period and true once running commands are being ended.
    Interrupted {
        #[serde(default)]
        grace_secs: u64,
        #[serde(default)]
        kill: bool,
    },
    RunFinished {
        summary: Summary,
    },
}

/// An event with the time it happened: a line of the JSON output and of
/// the journal, which reads back into it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Stamped {
    pub ts: jiff::Timestamp,
    #[serde(flatten)]
    pub event: Event,
    /// The JSON line, made by the first writer that needs it: the journal
    /// and `--output json` print the same line.
    #[serde(skip)]
    line: std::sync::OnceLock<Box<[u8]>>,
}

impl Stamped {
    pub(crate) fn new(ts: jiff::Timestamp, event: Event) -> Self {
        Stamped {
            ts,
            event,
            line: std::sync::OnceLock::new(),
        }
    }

    /// The event as one JSON object and a newline (SPEC section 7).
    pub(crate) fn json_line(&self) -> &[u8] {
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
                    s.mask(m);
                }
            }
            _ => {}
        }
    }
}

/// A consumer of the event stream.
pub(crate) trait Reporter: Send {
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
pub(crate) type Inline = Arc<std::sync::Mutex<Vec<Box<dyn Reporter>>>>;

/// Where the executor sends events; cheap to clone, never blocks on a
/// terminal. Secrets are masked here, once, so no writer can ever see them.
#[derive(Clone)]
pub(crate) struct EventSink {
    tx: mpsc::UnboundedSender<Arc<Stamped>>,
    masker: Arc<Masker>,
    inline: Inline,
}

impl EventSink {
    pub(crate) fn channel(
        masker: Arc<Masker>,
        inline: Inline,
    ) -> (Self, mpsc::UnboundedReceiver<Arc<Stamped>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (EventSink { tx, masker, inline }, rx)
    }

    pub(crate) fn emit(&self, mut event: Event) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// One of every event kind, with optional fields both set and unset.
    fn every_event() -> Vec<Event> {
        let step = |error: Option<&str>, exit: Option<i32>| StepResult {
            node: "dfw1".into(),
            step: "pull \"image\"".into(),
            index: 2,
            on_failure: error.is_some(),
            status: StepStatus::Failed,
            attempt: 3,
            exit,
            stdout: "out\n".into(),
            stderr: "é ⏎ \u{1b}[1m".into(),
            duration_ms: 1500,
            error: error.map(String::from),
        };
        let summary = |stopped: Option<StopReason>, exit_code| Summary {
            nodes: 5,
            counts: NodeCounts {
                ok: 1,
                changed: 1,
                failed: 1,
                unreachable: 1,
                not_run: 1,
            },
            exit_code,
            duration_ms: 9000,
            stopped,
            check: true,
        };
        let mut events = vec![
            Event::RunStarted {
                run_id: "20261126T101500Z-3fa2".into(),
                playbook: "relay-rollout".into(),
                nodes: vec!["dfw1".into(), "ord1".into()],
                batches: vec![1, 1],
                check: false,
                user: String::new(),
                host: String::new(),
            },
            Event::BatchStarted {
                batch: 1,
                batches: 2,
                nodes: vec!["dfw1".into()],
            },
            Event::NodeStarted {
                node: "dfw1".into(),
            },
            Event::StepStarted {
                node: "dfw1".into(),
                step: "pull".into(),
                index: 0,
                steps: 3,
                attempt: 1,
                on_failure: false,
            },
            Event::StepFinished(step(None, None)),
            Event::StepFinished(step(Some("exit code 1, expected 0"), Some(1))),
            Event::NodeFinished {
                node: "dfw1".into(),
                status: NodeStatus::Failed,
                error: Some("step `pull` failed".into()),
                duration_ms: 2000,
                report: [("running_image".to_string(), "v2".to_string())].into(),
            },
            Event::NodeFinished {
                node: "ord1".into(),
                status: NodeStatus::NotRun,
                error: None,
                duration_ms: 0,
                report: BTreeMap::new(),
            },
            Event::BatchFinished { batch: 1 },
            Event::GateFinished {
                batch: 1,
                gate: "endpoint".into(),
                ok: false,
                attempt: 2,
                error: Some("status 502".into()),
                duration_ms: 80,
            },
            Event::GateFinished {
                batch: 1,
                gate: "endpoint".into(),
                ok: true,
                attempt: 1,
                error: None,
                duration_ms: 80,
            },
            Event::Interrupted {
                grace_secs: 10,
                kill: true,
            },
            Event::RunFinished {
                summary: summary(None, ExitCode::Ok),
            },
        ];
        for (why, code) in [
            (StopReason::Interrupted, ExitCode::Stopped),
            (
                StopReason::Budget(
                    "failed budget spent: 2 of 5 nodes failed (max_failed = 1)".into(),
                ),
                ExitCode::Stopped,
            ),
            (
                StopReason::Gate("gate `endpoint` failed after batch 1: status 502".into()),
                ExitCode::Stopped,
            ),
            (
                StopReason::Locked(
                    "node dfw1 is locked by another run of `relay-rollout`: run r1".into(),
                ),
                ExitCode::Locked,
            ),
        ] {
            events.push(Event::RunFinished {
                summary: summary(Some(why), code),
            });
        }
        for status in [
            StepStatus::Ok,
            StepStatus::Changed,
            StepStatus::Skipped,
            StepStatus::WouldRun,
            StepStatus::WouldSkip,
        ] {
            events.push(Event::StepFinished(StepResult {
                status,
                ..step(None, Some(0))
            }));
        }
        for status in [NodeStatus::Ok, NodeStatus::Changed, NodeStatus::Unreachable] {
            events.push(Event::NodeFinished {
                node: "n".into(),
                status,
                error: None,
                duration_ms: 1,
                report: BTreeMap::new(),
            });
        }
        events
    }

    #[test]
    fn every_event_reads_back_and_writes_the_same_line() {
        let ts: jiff::Timestamp = "2026-11-26T10:15:00.123456789Z".parse().unwrap();
        for event in every_event() {
            let written = Stamped::new(ts, event.clone());
            let line = written.json_line();
            let read: Stamped = serde_json::from_slice(line).unwrap();
            assert_eq!(read.ts, ts);
            assert_eq!(read.event, event);
            assert_eq!(
                std::str::from_utf8(read.json_line()).unwrap(),
                std::str::from_utf8(line).unwrap()
            );
        }
    }

    #[test]
    fn lines_keep_their_shape() {
        let ts = jiff::Timestamp::UNIX_EPOCH;
        let line = |event| String::from_utf8(Stamped::new(ts, event).json_line().to_vec()).unwrap();
        assert_eq!(
            line(Event::RunFinished {
                summary: Summary {
                    nodes: 2,
                    exit_code: ExitCode::Stopped,
                    stopped: Some(StopReason::Interrupted),
                    ..Default::default()
                }
            }),
            "{\"ts\":\"1970-01-01T00:00:00Z\",\"event\":\"run_finished\",\"summary\":{\"nodes\":2,\
             \"ok\":0,\"changed\":0,\"failed\":0,\"unreachable\":0,\"not_run\":0,\"exit_code\":3,\
             \"duration_ms\":0,\"stopped\":\"interrupted\",\"check\":false}}\n"
        );
        assert_eq!(
            line(Event::NodeFinished {
                node: "a".into(),
                status: NodeStatus::NotRun,
                error: None,
                duration_ms: 0,
                report: BTreeMap::new(),
            }),
            "{\"ts\":\"1970-01-01T00:00:00Z\",\"event\":\"node_finished\",\"node\":\"a\",\
             \"status\":\"not_run\",\"error\":null,\"duration_ms\":0}\n"
        );
    }

    #[test]
    fn a_stop_reason_is_its_words_and_its_words_name_its_kind() {
        for why in [
            StopReason::Interrupted,
            StopReason::Budget("unreachable budget spent: 3 of 9 nodes unreachable".into()),
            StopReason::Gate("gate `g` failed after batch 2: timeout".into()),
            StopReason::Locked("node x is locked by another run of `p`: pid 3".into()),
        ] {
            assert_eq!(StopReason::from_words(why.describe()), why);
        }
        assert_eq!(StopReason::Interrupted.exit_code(), ExitCode::Stopped);
        assert_eq!(
            StopReason::Locked(String::new()).exit_code(),
            ExitCode::Locked
        );
    }
}
