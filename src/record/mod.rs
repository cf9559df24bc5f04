//! The one record of a run: built by [`RunRecord::apply`] from the event
//! stream, live during a run (the summary, `--report`, `--junit` and the
//! demo's verdict read it when the run is over) and from a journal file
//! (`fleetfix runs [ID]`, `--resume RUN_ID`), through the same `apply`.
//!
//! Journals are written event by event (see [`journal`]), so a crashed or
//! killed run leaves a valid prefix: a record without `run_finished` is
//! "incomplete" (still running, or crashed).

pub(crate) mod journal;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::events::{
    Event, ExitCode, NodeCounts, NodeStatus, Reporter, Stamped, StepResult, StepStatus, StopReason,
    Summary,
};

pub(crate) use journal::{list, load};

/// One run: what started, what each node and gate did, how it ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RunRecord {
    /// The run id (read back: the journal's file name).
    pub id: String,
    pub playbook: String,
    /// When `run_started` happened; `None` before it (a journal without it
    /// does not load).
    pub started: Option<jiff::Timestamp>,
    /// `None`: no `run_finished` — the run is still going or crashed.
    pub finished: Option<jiff::Timestamp>,
    pub check: bool,
    /// Who ran it and on which runner machine; empty from older journals.
    pub user: String,
    pub host: String,
    /// Batch sizes, in order.
    pub batches: Vec<usize>,
    /// How many nodes `run_started` selected.
    pub selected: usize,
    /// In `run_started` order (every selected node), then any node the
    /// events mention that was not listed there.
    pub nodes: Vec<NodeRecord>,
    pub gates: Vec<GateRecord>,
    /// From `run_finished`.
    pub summary: Option<Summary>,
    /// The journal file it was read from.
    pub path: Option<PathBuf>,
    /// Distinct nodes listed by `run_started`: the first of `nodes`.
    listed: usize,
    index: HashMap<Arc<str>, usize>,
    /// Output of steps that did not fail is not kept (see [`Self::lean`]).
    lean: bool,
}

/// One node of a run: how it ended, and its steps in the order they finished.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NodeRecord {
    pub name: Arc<str>,
    /// `None`: no `node_finished` — the run crashed or is still going.
    pub status: Option<NodeStatus>,
    pub error: Option<String>,
    pub duration_ms: Option<u64>,
    /// Captured `report_vars`.
    pub report: BTreeMap<String, String>,
    pub steps: Vec<StepResult>,
    /// When `node_started` happened.
    pub started: Option<jiff::Timestamp>,
    /// When `node_finished` happened.
    pub finished: Option<jiff::Timestamp>,
    /// Every attempt of every step in the order they began, with their
    /// times: the node's timeline.
    pub attempts: Vec<Attempt>,
}

/// One attempt of a step on a node: from its `step_started` to the next
/// attempt's start (a retry, so this one failed) or its `step_finished`.
/// A step that never started (skipped by its guard) spans its own
/// duration before its `step_finished`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Attempt {
    pub step: String,
    pub index: usize,
    pub attempt: u32,
    pub on_failure: bool,
    pub start: jiff::Timestamp,
    /// `None` while it runs.
    pub end: Option<jiff::Timestamp>,
    /// `None` while it runs; `failed` for an attempt that was retried.
    pub status: Option<StepStatus>,
}

/// A `[[gate]]` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct GateRecord {
    pub batch: usize,
    pub gate: String,
    pub ok: bool,
    pub attempt: u32,
    pub error: Option<String>,
    pub duration_ms: u64,
}

impl NodeRecord {
    fn new(name: Arc<str>) -> Self {
        NodeRecord {
            name,
            status: None,
            error: None,
            duration_ms: None,
            report: BTreeMap::new(),
            steps: Vec::new(),
            started: None,
            finished: None,
            attempts: Vec::new(),
        }
    }
}

impl RunRecord {
    pub(crate) fn new() -> Self {
        RunRecord::default()
    }

    /// A record that keeps the stdout and stderr of failed steps only: what
    /// the summary and JUnit show. A run without `--report` needs no more.
    pub(crate) fn lean() -> Self {
        RunRecord {
            lean: true,
            ..RunRecord::default()
        }
    }

    /// Takes one event into the record.
    pub(crate) fn apply(&mut self, ev: &Stamped) {
        match &ev.event {
            Event::RunStarted {
                run_id,
                playbook,
                nodes,
                batches,
                check,
                user,
                host,
            } => {
                self.id = run_id.clone();
                self.user = user.clone();
                self.host = host.clone();
                self.playbook = playbook.clone();
                self.started = Some(ev.ts);
                self.check = *check;
                self.batches = batches.clone();
                self.selected = nodes.len();
                for n in nodes {
                    self.node(n);
                }
                self.listed = self.nodes.len();
            }
            Event::StepFinished(s) => {
                let mut s = s.clone();
                if self.lean && s.status != StepStatus::Failed {
                    s.stdout = String::new();
                    s.stderr = String::new();
                }
                let n = self.node(&s.node.clone());
                match n.attempts.last_mut() {
                    Some(a)
                        if a.end.is_none()
                            && a.index == s.index
                            && a.on_failure == s.on_failure =>
                    {
                        a.end = Some(ev.ts);
                        a.status = Some(s.status);
                    }
                    _ => {
                        let start = ev
                            .ts
                            .checked_sub(jiff::SignedDuration::from_millis(s.duration_ms as i64))
                            .unwrap_or(ev.ts);
                        n.attempts.push(Attempt {
                            step: s.step.clone(),
                            index: s.index,
                            attempt: s.attempt,
                            on_failure: s.on_failure,
                            start,
                            end: Some(ev.ts),
                            status: Some(s.status),
                        });
                    }
                }
                n.steps.push(s);
            }
            Event::NodeFinished {
                node,
                status,
                error,
                duration_ms,
                report,
            } => {
                let n = self.node(node);
                n.finished = Some(ev.ts);
                n.status = Some(*status);
                n.error = error.clone();
                n.duration_ms = Some(*duration_ms);
                n.report = report.clone();
            }
            Event::GateFinished {
                batch,
                gate,
                ok,
                attempt,
                error,
                duration_ms,
            } => self.gates.push(GateRecord {
                batch: *batch,
                gate: gate.clone(),
                ok: *ok,
                attempt: *attempt,
                error: error.clone(),
                duration_ms: *duration_ms,
            }),
            Event::RunFinished { summary } => {
                self.finished = Some(ev.ts);
                self.summary = Some(summary.clone());
            }
            Event::NodeStarted { node } => self.node(node).started = Some(ev.ts),
            Event::StepStarted {
                node,
                step,
                index,
                attempt,
                on_failure,
                ..
            } => {
                let n = self.node(node);
                // The attempt before, still open, was retried: it failed.
                if let Some(a) = n.attempts.last_mut()
                    && a.end.is_none()
                {
                    a.end = Some(ev.ts);
                    a.status = Some(StepStatus::Failed);
                }
                n.attempts.push(Attempt {
                    step: step.clone(),
                    index: *index,
                    attempt: *attempt,
                    on_failure: *on_failure,
                    start: ev.ts,
                    end: None,
                    status: None,
                });
            }
            Event::BatchStarted { .. }
            | Event::BatchFinished { .. }
            | Event::Interrupted { .. } => {}
        }
    }

    fn node(&mut self, name: &Arc<str>) -> &mut NodeRecord {
        let nodes = &mut self.nodes;
        let i = *self.index.entry(name.clone()).or_insert_with(|| {
            nodes.push(NodeRecord::new(name.clone()));
            nodes.len() - 1
        });
        &mut self.nodes[i]
    }

    /// The nodes `run_started` listed, in its order.
    pub(crate) fn listed_nodes(&self) -> &[NodeRecord] {
        &self.nodes[..self.listed.min(self.nodes.len())]
    }

    /// Node counts from the final statuses, so a node reported twice
    /// counts once.
    pub(crate) fn counts(&self) -> NodeCounts {
        let mut counts = NodeCounts::default();
        for n in &self.nodes {
            if let Some(s) = n.status {
                counts.add(s);
            }
        }
        counts
    }

    /// The run's exit code; `None` without `run_finished`.
    pub(crate) fn exit_code(&self) -> Option<ExitCode> {
        self.summary.as_ref().map(|s| s.exit_code)
    }

    /// Why the run stopped before every node ran, if it did.
    pub(crate) fn stopped(&self) -> Option<&StopReason> {
        self.summary.as_ref().and_then(|s| s.stopped.as_ref())
    }

    /// One word for the run's outcome, from its exit code (SPEC section 2).
    pub(crate) fn outcome(&self) -> &'static str {
        self.exit_code().map_or("incomplete", ExitCode::word)
    }
}

/// The record as a consumer of the event stream.
impl Reporter for RunRecord {
    fn event(&mut self, ev: &Stamped) {
        self.apply(ev);
    }
}

/// What `--resume` needs from an earlier run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResumeTargets {
    pub playbook: String,
    /// Nodes that finished ok; the resumed run leaves them out.
    pub finished_ok: HashSet<String>,
    /// Nodes of the earlier run to run again, in its order.
    pub rerun: Vec<String>,
}

/// The nodes of `run` that must run again: all but those that finished
/// `ok` or `changed`. A node with no `node_finished` (crash) runs again.
///
/// Under `--check` nothing was changed, so a `changed` node there is drift
/// still to fix: only `ok` counts as finished when resuming a check run.
pub(crate) fn resume_targets(run: &RunRecord) -> ResumeTargets {
    let done = |n: &NodeRecord| match n.status {
        Some(NodeStatus::Ok) => true,
        Some(NodeStatus::Changed) => !run.check,
        _ => false,
    };
    let mut finished_ok = HashSet::new();
    let mut rerun = Vec::new();
    for n in &run.nodes {
        if done(n) {
            finished_ok.insert(n.name.to_string());
        } else {
            rerun.push(n.name.to_string());
        }
    }
    ResumeTargets {
        playbook: run.playbook.clone(),
        finished_ok,
        rerun,
    }
}
