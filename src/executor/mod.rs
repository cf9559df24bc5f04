//! Runs a job: batch by batch, nodes in parallel up to the concurrency, each
//! node's steps in order over its one connection, gates after each batch,
//! failure budgets across the run. It only emits events; what they look
//! like is the writers' business.

mod gate;
mod node;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::rollout::Size;
use crate::events::{Event, EventSink, NodeStatus, StopReason, Summary};
use crate::job::Job;
use crate::transport::Connector;
use crate::transport::http;

/// Default cap of captured output per stream and step.
pub(crate) const DEFAULT_OUTPUT_CAP: usize = 256 * 1024;

/// How the caller steers a run from outside (Ctrl-C).
#[derive(Debug, Clone, Default)]
pub(crate) struct Control {
    /// No new node or step starts.
    pub interrupt: CancellationToken,
    /// Running commands are ended.
    pub kill: CancellationToken,
}

/// Knobs of an execution that are not part of the job itself.
#[derive(Debug, Clone)]
pub(crate) struct ExecOptions {
    pub output_cap: usize,
    /// `--check`: run read-only steps and guards, change nothing.
    pub check: bool,
    pub control: Control,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            output_cap: DEFAULT_OUTPUT_CAP,
            check: false,
            control: Control::default(),
        }
    }
}

/// What every node task shares.
struct Shared<C> {
    job: Arc<Job>,
    connector: Arc<C>,
    events: EventSink,
    opts: ExecOptions,
    /// Built on first use: loading the system's roots costs time a run
    /// without HTTP checks should not pay.
    http: std::sync::OnceLock<Result<http::Clients, String>>,
    /// Cancelled when a budget is spent or a gate fails (or on interrupt).
    stop_nodes: CancellationToken,
    failed: AtomicUsize,
    unreachable: AtomicUsize,
    /// Why the run stopped starting nodes; the first reason stands.
    stopped: Mutex<Option<StopReason>>,
}

impl<C> Shared<C> {
    /// The HTTP clients, or why they cannot be built (no usable TLS roots).
    fn http(&self) -> Result<&http::Clients, http::SendError> {
        self.http
            .get_or_init(http::Clients::new)
            .as_ref()
            .map_err(|e| http::SendError::Failed(format!("cannot set up HTTPS: {e}")))
    }

    fn stop(&self, why: StopReason) {
        let mut stopped = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        // The most severe reason stands; of equals, the first.
        if stopped
            .as_ref()
            .is_none_or(|was| why.severity() > was.severity())
        {
            *stopped = Some(why);
        }
        self.stop_nodes.cancel();
    }

    /// Counts a finished node against the budgets; spends them if exceeded.
    fn count(&self, status: NodeStatus) {
        let total = self.job.nodes.len();
        let rollout = &self.job.playbook.rollout;
        let check = |counter: &AtomicUsize, budget: Option<Size>, what: &str, key: &str| {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            if let Some(b) = budget
                && b.exceeded_by(n, total)
            {
                self.stop(StopReason::Budget(format!(
                    "{what} budget spent: {n} of {total} nodes {what} ({key} = {})",
                    show(b)
                )));
            }
        };
        match status {
            NodeStatus::Failed => check(&self.failed, rollout.max_failed, "failed", "max_failed"),
            NodeStatus::Unreachable => check(
                &self.unreachable,
                rollout.max_unreachable,
                "unreachable",
                "max_unreachable",
            ),
            _ => {}
        }
    }
}

fn show(s: Size) -> String {
    match s {
        Size::Count(n) => n.to_string(),
        Size::Percent(p) => format!("\"{p}%\""),
    }
}

/// Runs the job to completion and returns its summary (also emitted).
pub(crate) async fn run<C: Connector>(
    job: Arc<Job>,
    connector: Arc<C>,
    events: EventSink,
    opts: ExecOptions,
) -> Summary {
    let started = Instant::now();
    let stop_nodes = opts.control.interrupt.child_token();
    let shared = Arc::new(Shared {
        job: job.clone(),
        connector,
        events: events.clone(),
        http: std::sync::OnceLock::new(),
        stop_nodes,
        failed: AtomicUsize::new(0),
        unreachable: AtomicUsize::new(0),
        stopped: Mutex::new(None),
        opts,
    });
    // An interrupt names itself as the reason, before any node it stops
    // could spend a budget and claim the reason instead.
    let watcher = {
        let shared = shared.clone();
        tokio::spawn(async move {
            shared.opts.control.interrupt.cancelled().await;
            shared.stop(StopReason::Interrupted);
        })
    };
    let sizes = job.playbook.rollout.batch_sizes(job.nodes.len());
    events.emit(Event::RunStarted {
        run_id: job.run.id.clone(),
        playbook: job.playbook.name.clone(),
        nodes: job.nodes.iter().map(|n| n.name.clone()).collect(),
        batches: sizes.clone(),
        check: shared.opts.check,
        user: crate::support::runner::user(),
        host: crate::support::runner::host(),
    });
    let mut summary = Summary {
        check: shared.opts.check,
        ..Default::default()
    };
    let mut first = 0;
    for (b, &size) in sizes.iter().enumerate() {
        let batch: Vec<usize> = (first..first + size).collect();
        first += size;
        if shared.stop_nodes.is_cancelled() {
            for &i in &batch {
                summary.add(not_run(&shared, i));
            }
            continue;
        }
        events.emit(Event::BatchStarted {
            batch: b + 1,
            batches: sizes.len(),
            nodes: batch.iter().map(|&i| job.nodes[i].name.clone()).collect(),
        });
        for status in run_batch(&shared, &batch).await {
            summary.add(status);
        }
        events.emit(Event::BatchFinished { batch: b + 1 });
        if !shared.stop_nodes.is_cancelled() {
            gate::run_all(&shared, b + 1).await;
        }
        let last = b + 1 == sizes.len();
        if !last && !shared.stop_nodes.is_cancelled() && !job.playbook.rollout.pause.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(job.playbook.rollout.pause) => {}
                _ = shared.stop_nodes.cancelled() => {}
            }
        }
    }
    watcher.abort();
    if shared.opts.control.interrupt.is_cancelled() {
        shared.stop(StopReason::Interrupted);
    }
    let stopped = shared
        .stopped
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .filter(|s| s.always_early() || summary.counts.not_run > 0);
    summary.stopped = stopped;
    summary.exit_code = match &summary.stopped {
        Some(why @ StopReason::Locked(_)) => why.exit_code(),
        _ => summary.compute_exit_code(),
    };
    summary.duration_ms = started.elapsed().as_millis() as u64;
    events.emit(Event::RunFinished {
        summary: summary.clone(),
    });
    summary
}

/// Reports a node that never started.
fn not_run<C: Connector>(shared: &Shared<C>, i: usize) -> NodeStatus {
    let why = shared
        .stopped
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|s| s.describe().to_string())
        .unwrap_or_else(|| "interrupted".to_string());
    shared.events.emit(Event::NodeFinished {
        node: shared.job.nodes[i].name.clone(),
        status: NodeStatus::NotRun,
        error: Some(format!("not run: {why}")),
        duration_ms: 0,
        report: Default::default(),
    });
    NodeStatus::NotRun
}

/// Runs one batch's nodes, at most `concurrency` at a time.
async fn run_batch<C: Connector>(shared: &Arc<Shared<C>>, batch: &[usize]) -> Vec<NodeStatus> {
    let permits = Arc::new(Semaphore::new(shared.job.concurrency));
    let mut tasks = JoinSet::new();
    let mut node_of = std::collections::HashMap::new();
    for &i in batch {
        let shared = shared.clone();
        let permits = permits.clone();
        let handle = tasks.spawn(async move {
            let permit = tokio::select! {
                p = permits.acquire_owned() => p.ok(),
                _ = shared.stop_nodes.cancelled() => None,
            };
            // Checked again: a budget may have been spent while waiting.
            if permit.is_none() || shared.stop_nodes.is_cancelled() {
                return not_run(&shared, i);
            }
            let status = node::run(&shared, i).await;
            shared.count(status);
            status
        });
        node_of.insert(handle.id(), i);
    }
    let mut out = Vec::with_capacity(batch.len());
    while let Some(r) = tasks.join_next_with_id().await {
        match r {
            Ok((_, status)) => out.push(status),
            Err(e) => {
                // A bug, not the node's fault; still reported like any node.
                let i = node_of.get(&e.id()).copied();
                if let Some(i) = i {
                    shared.events.emit(Event::NodeFinished {
                        node: shared.job.nodes[i].name.clone(),
                        status: NodeStatus::Failed,
                        error: Some(format!("internal error: {e}")),
                        duration_ms: 0,
                        report: Default::default(),
                    });
                }
                shared.count(NodeStatus::Failed);
                out.push(NodeStatus::Failed);
            }
        }
    }
    out
}
