//! The rollout rules of SPEC section 6, through the real executor with the
//! in-memory fake transport: no sshd, no network, no root. Under paused
//! tokio time, delays, timeouts, retry delays and pauses cost no real time
//! and durations are asserted exactly (virtual). The executor's own
//! `duration_ms` fields use `std::time::Instant` and so read ~0 here.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Control, ExecOptions, run};
use crate::config::inventory::Inventory;
use crate::config::playbook::Playbook;
use crate::events::{Event, EventSink, NodeStatus, StepStatus, StopReason, Summary};
use crate::job::{Job, JobOptions};
use crate::support::error::SourceFile;
use crate::transport::fake::{FakeConnector, Reply, Unreachable, What};

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Nodes `n1`..`nN`, in that order.
fn inventory(n: usize) -> Inventory {
    let mut text = String::from("[defaults]\nuser = \"ops\"\nconnect_timeout = \"5s\"\n");
    for i in 1..=n {
        text.push_str(&format!("[nodes.n{i}]\nhost = \"10.0.0.{i}\"\n"));
    }
    Inventory::from_source(SourceFile {
        path: "inventory.toml".into(),
        text: text.into(),
    })
    .unwrap_or_else(|e| panic!("{}", e.render()))
}

/// A job as the app builds one: playbook and inventory text, validated.
fn job_with(n: usize, playbook: &str, concurrency: Option<usize>) -> Arc<Job> {
    let pb = Playbook::from_source(SourceFile {
        path: "pb.toml".into(),
        text: format!("name = \"t\"\n{playbook}").into(),
    })
    .unwrap_or_else(|e| panic!("{}", e.render()));
    let opts = JobOptions {
        run_id: "test-run".into(),
        concurrency,
        secrets_required: true,
        ..Default::default()
    };
    Arc::new(Job::prepare(&inventory(n), pb, &opts).unwrap_or_else(|e| panic!("{}", e.render())))
}

fn job(n: usize, playbook: &str) -> Arc<Job> {
    job_with(n, playbook, None)
}

struct Ran {
    summary: Summary,
    events: Vec<Event>,
    /// Tokio (virtual) time the run took.
    took: Duration,
}

async fn go_with(job: Arc<Job>, fake: &FakeConnector, check: bool, control: Control) -> Ran {
    let (sink, mut rx) = EventSink::channel(job.masker.clone(), Default::default());
    let started = Instant::now();
    let opts = ExecOptions {
        check,
        control,
        ..Default::default()
    };
    let summary = run(job, Arc::new(fake.clone()), sink, opts).await;
    let took = started.elapsed();
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e.event.clone());
    }
    let ran = Ran {
        summary,
        events,
        took,
    };
    ran.assert_consistent();
    ran
}

async fn go(job: Arc<Job>, fake: &FakeConnector) -> Ran {
    go_with(job, fake, false, Control::default()).await
}

impl Ran {
    fn status(&self, node: &str) -> NodeStatus {
        let found = self.events.iter().find_map(|e| match e {
            Event::NodeFinished {
                node: n, status, ..
            } if &**n == node => Some(*status),
            _ => None,
        });
        found.unwrap_or_else(|| panic!("no NodeFinished for {node}"))
    }

    fn error(&self, node: &str) -> String {
        self.events
            .iter()
            .find_map(|e| match e {
                Event::NodeFinished { node: n, error, .. } if &**n == node => error.clone(),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// `(step, status, attempt, on_failure)` of each finished step of `node`.
    fn steps(&self, node: &str) -> Vec<(String, StepStatus, u32, bool)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::StepFinished(r) if &*r.node == node => {
                    Some((r.step.clone(), r.status, r.attempt, r.on_failure))
                }
                _ => None,
            })
            .collect()
    }

    fn step(&self, node: &str, step: &str) -> crate::events::StepResult {
        self.events
            .iter()
            .find_map(|e| match e {
                Event::StepFinished(r) if &*r.node == node && r.step == step => Some(r.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no step `{step}` on {node}"))
    }

    /// The run as short words: `batch1+`, `n1+`, `n1:a+`, `n1:a-`, `n1-`,
    /// `batch1-`, `gate1:name`.
    fn trace(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::RunStarted { .. } => Some("run+".into()),
                Event::BatchStarted { batch, .. } => Some(format!("batch{batch}+")),
                Event::NodeStarted { node } => Some(format!("{node}+")),
                Event::StepStarted { node, step, .. } => Some(format!("{node}:{step}+")),
                Event::StepFinished(r) => Some(format!("{}:{}-", r.node, r.step)),
                Event::NodeFinished { node, .. } => Some(format!("{node}-")),
                Event::BatchFinished { batch } => Some(format!("batch{batch}-")),
                Event::GateFinished { batch, gate, .. } => Some(format!("gate{batch}:{gate}")),
                Event::RunFinished { .. } => Some("run-".into()),
                Event::Interrupted { .. } => None,
            })
            .collect()
    }

    /// What holds for every run: the stream opens and closes once, every
    /// node finishes exactly once and after it started, steps nest in their
    /// node, nodes in their batch, and the summary counts what the events say.
    fn assert_consistent(&self) {
        let t = self.trace();
        assert_eq!(t.first().map(String::as_str), Some("run+"), "{t:?}");
        assert_eq!(t.last().map(String::as_str), Some("run-"), "{t:?}");
        let Some(Event::RunStarted { nodes, .. }) = self.events.first() else {
            panic!("no RunStarted");
        };
        let pos = |w: &str| t.iter().position(|x| x == w);
        let mut counts = crate::events::NodeCounts::default();
        for node in nodes {
            let finished: Vec<_> = self
                .events
                .iter()
                .filter_map(|e| match e {
                    Event::NodeFinished {
                        node: n, status, ..
                    } if n == node => Some(*status),
                    _ => None,
                })
                .collect();
            assert_eq!(finished.len(), 1, "{node} finished {finished:?}");
            counts.add(finished[0]);
            let end = pos(&format!("{node}-")).expect("finished");
            match pos(&format!("{node}+")) {
                Some(start) => {
                    assert!(start < end, "{node}: {t:?}");
                    // Its steps lie between its start and end.
                    for (i, w) in t.iter().enumerate() {
                        if w.starts_with(&format!("{node}:")) {
                            assert!(start < i && i < end, "{w} outside {node}: {t:?}");
                        }
                    }
                    // And it lies inside one batch.
                    let batch = t[..start]
                        .iter()
                        .rev()
                        .find(|w| w.starts_with("batch"))
                        .expect("a batch before the node");
                    assert!(batch.ends_with('+'), "{node} outside a batch: {t:?}");
                    let close = batch.replace('+', "-");
                    let close_at = pos(&close).expect("the batch finished");
                    assert!(end < close_at, "{node} ends after {close}: {t:?}");
                }
                None => assert_eq!(finished[0], NodeStatus::NotRun, "{node} never started"),
            }
        }
        assert_eq!(self.summary.counts, counts, "summary vs events");
        assert_eq!(self.summary.nodes, nodes.len());
        let Some(Event::RunFinished { summary }) = self.events.last() else {
            panic!("no RunFinished");
        };
        assert_eq!(summary, &self.summary);
    }
}

// --- batches, canary, serial, concurrency ---------------------------------

#[tokio::test(start_paused = true)]
async fn batches_run_in_order_and_each_finishes_before_the_next_starts() {
    let fake = FakeConnector::new();
    // Later nodes are quicker: a batch still waits for its slowest.
    for (i, d) in [(1, 9), (2, 7), (3, 1), (4, 5), (5, 2)] {
        fake.on(&format!("n{i}"), "work", Reply::ok().after(secs(d)));
    }
    let job = job(
        5,
        r#"
[rollout]
batches = [1, "40%"]
[[steps]]
name = "w"
run = "work"
"#,
    );
    let ran = go(job, &fake).await;
    let Some(Event::RunStarted { batches, .. }) = ran.events.first() else {
        panic!()
    };
    assert_eq!(
        batches,
        &vec![1, 2, 2],
        "canary of 1, then 40% of 5 repeated"
    );
    let members: Vec<Vec<String>> = ran
        .events
        .iter()
        .filter_map(|e| match e {
            Event::BatchStarted { nodes, .. } => {
                Some(nodes.iter().map(|n| n.to_string()).collect())
            }
            _ => None,
        })
        .collect();
    assert_eq!(members, [vec!["n1"], vec!["n2", "n3"], vec!["n4", "n5"]]);
    // Every node of a batch is done (connection closed) before any node of
    // the next batch begins connecting.
    for (earlier, later) in [(&members[0], &members[1]), (&members[1], &members[2])] {
        let done = earlier
            .iter()
            .map(|n| fake.span(n).unwrap().1)
            .max()
            .unwrap();
        let begun = later.iter().map(|n| fake.span(n).unwrap().0).min().unwrap();
        assert!(
            done <= begun,
            "{earlier:?} done at {done:?}, {later:?} began {begun:?}"
        );
    }
    assert_eq!(
        ran.took,
        secs(9 + 7 + 5),
        "each batch takes its slowest node"
    );
    assert_eq!(ran.summary.counts.changed, 5);
    assert_eq!(ran.summary.exit_code, 0);
}

#[tokio::test(start_paused = true)]
async fn a_failed_canary_stops_the_rollout_before_the_next_batch() {
    let fake = FakeConnector::new();
    fake.on("n1", "deploy", Reply::code(1));
    let job = job(
        4,
        r#"
[rollout]
batches = [1, "100%"]
max_failed = 0
[[steps]]
name = "deploy"
run = "deploy"
"#,
    );
    let ran = go(job, &fake).await;
    assert_eq!(ran.status("n1"), NodeStatus::Failed);
    for n in ["n2", "n3", "n4"] {
        assert_eq!(ran.status(n), NodeStatus::NotRun);
        assert!(fake.span(n).is_none(), "{n} was connected");
        assert!(
            ran.error(n).contains("failed budget spent"),
            "{}",
            ran.error(n)
        );
    }
    assert!(
        !ran.trace().contains(&"batch2+".to_string()),
        "{:?}",
        ran.trace()
    );
    assert_eq!(ran.summary.exit_code, 3);
    assert_eq!(ran.summary.counts.not_run, 3);
    assert!(
        ran.summary
            .stopped
            .as_ref()
            .map(crate::events::StopReason::describe)
            .unwrap()
            .contains("max_failed = 0")
    );
}

#[tokio::test(start_paused = true)]
async fn batches_of_one_run_the_nodes_serially_in_inventory_order() {
    let fake = FakeConnector::new();
    fake.on("*", "work", Reply::ok().after(secs(3)));
    let job = job(
        4,
        r#"
[rollout]
batches = [1]
[[steps]]
name = "w"
run = "work"
"#,
    );
    let ran = go(job, &fake).await;
    assert_eq!(fake.max_in_flight(), 1);
    let spans: Vec<_> = ["n1", "n2", "n3", "n4"]
        .iter()
        .map(|n| fake.span(n).unwrap())
        .collect();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "overlap: {spans:?}");
    }
    assert_eq!(ran.took, secs(12));
    assert_eq!(ran.summary.exit_code, 0);
}

#[tokio::test(start_paused = true)]
async fn concurrency_is_never_exceeded_and_is_used_fully() {
    let fake = FakeConnector::new();
    fake.on("*", "work", Reply::ok().after(secs(10)));
    let job = job(
        10,
        r#"
[rollout]
concurrency = 3
[[steps]]
name = "w"
run = "work"
"#,
    );
    let ran = go(job, &fake).await;
    assert_eq!(fake.max_in_flight(), 3);
    // 10 nodes, 3 at a time, 10 s each: 4 rounds.
    assert_eq!(ran.took, secs(40));
    assert_eq!(ran.summary.counts.changed, 10);
}

#[tokio::test(start_paused = true)]
async fn the_cli_concurrency_overrides_the_playbook() {
    let fake = FakeConnector::new();
    fake.on("*", "work", Reply::ok().after(secs(1)));
    let pb = r#"
[rollout]
concurrency = 5
[[steps]]
name = "w"
run = "work"
"#;
    let ran = go(job_with(6, pb, Some(2)), &fake).await;
    assert_eq!(fake.max_in_flight(), 2);
    assert_eq!(ran.took, secs(3));
}

#[tokio::test(start_paused = true)]
async fn one_connection_per_node_is_reused_by_all_its_steps() {
    let fake = FakeConnector::new();
    let job = job(
        2,
        r#"
[[steps]]
name = "a"
run = "step-a"
[[steps]]
name = "b"
run = "step-b"
[[steps]]
name = "c"
run = "step-c"
"#,
    );
    let ran = go(job, &fake).await;
    for n in ["n1", "n2"] {
        let connects = fake
            .log()
            .iter()
            .filter(|e| e.node == n && e.what == What::Connecting)
            .count();
        assert_eq!(connects, 1);
        assert_eq!(fake.ran(n), ["step-a", "step-b", "step-c"], "in order");
        let closed = fake
            .log()
            .iter()
            .rposition(|e| e.node == n && e.what == What::Closed);
        let last_exec = fake
            .log()
            .iter()
            .rposition(|e| e.node == n && matches!(e.what, What::Exec { .. }));
        assert!(closed > last_exec, "closed after its last step");
    }
    assert_eq!(ran.summary.exit_code, 0);
}

// --- failure budgets ------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn max_failed_count_stops_starting_nodes_once_exceeded() {
    let fake = FakeConnector::new();
    fake.on("n1", "deploy", Reply::code(1));
    fake.on("n2", "deploy", Reply::code(1));
    let job = job(
        6,
        r#"
[rollout]
concurrency = 1
max_failed = 1
[[steps]]
name = "deploy"
run = "deploy"
"#,
    );
    let ran = go(job, &fake).await;
    assert_eq!(ran.status("n1"), NodeStatus::Failed, "within the budget");
    assert_eq!(ran.status("n2"), NodeStatus::Failed, "spends it");
    for n in ["n3", "n4", "n5", "n6"] {
        assert_eq!(ran.status(n), NodeStatus::NotRun);
        assert!(
            fake.span(n).is_none(),
            "{n} started after the budget was spent"
        );
    }
    assert_eq!(ran.summary.exit_code, 3);
    assert_eq!(
        ran.summary
            .stopped
            .as_ref()
            .map(crate::events::StopReason::describe),
        Some("failed budget spent: 2 of 6 nodes failed (max_failed = 1)")
    );
}

#[tokio::test(start_paused = true)]
async fn max_failed_percent_of_the_selected_nodes() {
    let pb = r#"
[rollout]
concurrency = 1
max_failed = "20%"
[[steps]]
name = "deploy"
run = "deploy"
"#;
    // 20% of 10 is 2: two failures are allowed, the run goes on (exit 1).
    let fake = FakeConnector::new();
    fake.on("n1", "deploy", Reply::code(1));
    fake.on("n2", "deploy", Reply::code(1));
    let ran = go(job(10, pb), &fake).await;
    assert_eq!(ran.summary.counts.failed, 2);
    assert_eq!(ran.summary.counts.changed, 8);
    assert_eq!(ran.summary.stopped, None);
    assert_eq!(ran.summary.exit_code, 1);
    // A third spends it.
    let fake = FakeConnector::new();
    for n in ["n1", "n2", "n3"] {
        fake.on(n, "deploy", Reply::code(1));
    }
    let ran = go(job(10, pb), &fake).await;
    assert_eq!(ran.summary.counts.failed, 3);
    assert_eq!(ran.summary.counts.not_run, 7);
    assert!(fake.span("n4").is_none());
    assert_eq!(ran.summary.exit_code, 3);
    assert!(
        ran.summary
            .stopped
            .unwrap()
            .describe()
            .contains("max_failed = \"20%\"")
    );
}

#[tokio::test(start_paused = true)]
async fn a_budget_spent_by_the_last_node_stops_nothing_early() {
    let fake = FakeConnector::new();
    fake.on("n3", "deploy", Reply::code(1));
    let job = job(
        3,
        r#"
[rollout]
concurrency = 1
max_failed = 0
[[steps]]
name = "deploy"
run = "deploy"
"#,
    );
    let ran = go(job, &fake).await;
    assert_eq!(ran.summary.counts.not_run, 0);
    assert_eq!(ran.summary.stopped, None);
    assert_eq!(
        ran.summary.exit_code, 1,
        "a failed node, not a stopped rollout"
    );
}

#[tokio::test(start_paused = true)]
async fn in_flight_nodes_finish_when_a_budget_is_spent() {
    let fake = FakeConnector::new();
    fake.on("*", "deploy", Reply::ok().after(secs(5)));
    fake.on("n1", "deploy", Reply::code(1).after(secs(1)));
    let job = job(
        5,
        r#"
[rollout]
concurrency = 2
max_failed = 0
[[steps]]
name = "deploy"
run = "deploy"
"#,
    );
    let ran = go(job, &fake).await;
    assert_eq!(ran.status("n1"), NodeStatus::Failed);
    assert_eq!(
        ran.status("n2"),
        NodeStatus::Changed,
        "already running: not cut"
    );
    for n in ["n3", "n4", "n5"] {
        assert_eq!(ran.status(n), NodeStatus::NotRun);
    }
    assert_eq!(ran.took, secs(5));
    assert_eq!(ran.summary.exit_code, 3);
}

#[tokio::test(start_paused = true)]
async fn max_unreachable_is_a_budget_of_its_own() {
    let fake = FakeConnector::new();
    fake.unreachable("n1", Unreachable::Refused);
    fake.unreachable("n2", Unreachable::HostKeyChanged);
    let job = job(
        6,
        r#"
[rollout]
concurrency = 1
max_failed = 0
max_unreachable = 1
[[steps]]
name = "deploy"
run = "deploy"
"#,
    );
    let ran = go(job, &fake).await;
    assert_eq!(ran.status("n1"), NodeStatus::Unreachable);
    assert_eq!(ran.status("n2"), NodeStatus::Unreachable);
    assert!(
        ran.error("n1").contains("connection refused"),
        "{}",
        ran.error("n1")
    );
    assert!(
        ran.error("n2").contains("HOST KEY CHANGED"),
        "{}",
        ran.error("n2")
    );
    for n in ["n3", "n4", "n5", "n6"] {
        assert_eq!(ran.status(n), NodeStatus::NotRun);
        assert!(fake.span(n).is_none());
    }
    // Unreachable is not failed: max_failed = 0 was not what stopped it.
    assert_eq!(ran.summary.counts.failed, 0);
    assert_eq!(
        ran.summary
            .stopped
            .as_ref()
            .map(crate::events::StopReason::describe),
        Some("unreachable budget spent: 2 of 6 nodes unreachable (max_unreachable = 1)")
    );
    assert_eq!(ran.summary.exit_code, 3);
}

#[tokio::test(start_paused = true)]
async fn unreachable_nodes_are_not_failed_and_exit_6() {
    let fake = FakeConnector::new();
    fake.unreachable("n1", Unreachable::Auth);
    // Connecting takes longer than connect_timeout (5s): a timeout.
    fake.connect_delay("n2", secs(60));
    // The connection dies in the middle of a command.
    fake.on("n3", "deploy", Reply::lost(secs(2)));
    let job = job(
        4,
        r#"
[rollout]
max_failed = 0
[[steps]]
name = "deploy"
run = "deploy"
"#,
    );
    let ran = go(job, &fake).await;
    for n in ["n1", "n2", "n3"] {
        assert_eq!(ran.status(n), NodeStatus::Unreachable, "{n}");
    }
    assert!(
        ran.error("n2").contains("timed out after 5.0s"),
        "{}",
        ran.error("n2")
    );
    assert!(
        ran.error("n3").contains("the fake connection died"),
        "{}",
        ran.error("n3")
    );
    assert_eq!(ran.status("n4"), NodeStatus::Changed);
    assert_eq!(ran.summary.counts.failed, 0);
    assert_eq!(ran.summary.counts.unreachable, 3);
    assert_eq!(ran.summary.exit_code, 6);
    assert_eq!(ran.took, secs(5), "the connect timeout, in parallel");
}

#[tokio::test(start_paused = true)]
async fn a_failed_node_outranks_unreachable_ones_in_the_exit_code() {
    let fake = FakeConnector::new();
    fake.unreachable("n1", Unreachable::Timeout);
    fake.on("n2", "deploy", Reply::code(2));
    let job = job(3, "[[steps]]\nname = \"deploy\"\nrun = \"deploy\"\n");
    let ran = go(job, &fake).await;
    assert_eq!(ran.summary.counts.unreachable, 1);
    assert_eq!(ran.summary.counts.failed, 1);
    assert_eq!(ran.summary.exit_code, 1);
}

// --- gates and pauses -----------------------------------------------------

/// Gates run `local` commands on the runner (`/bin/sh`, no root): a real
/// child process, which paused time cannot wait for (the executor's
/// one-year guard sleep would fire first), so these run in real time.
#[tokio::test]
async fn a_passing_gate_runs_after_every_batch() {
    let fake = FakeConnector::new();
    let job = job(
        3,
        r#"
[rollout]
batches = [1]
[[gate]]
name = "healthy"
local = "exit 0"
[[steps]]
name = "deploy"
run = "deploy"
"#,
    );
    let ran = go(job, &fake).await;
    let t = ran.trace();
    for b in 1..=3 {
        let gate = t.iter().position(|w| w == &format!("gate{b}:healthy"));
        let done = t.iter().position(|w| w == &format!("batch{b}-"));
        assert!(gate > done, "gate after batch {b}: {t:?}");
        if b < 3 {
            let next = t.iter().position(|w| w == &format!("batch{}+", b + 1));
            assert!(gate < next, "gate before batch {}: {t:?}", b + 1);
        }
    }
    assert_eq!(ran.summary.exit_code, 0);
}

#[tokio::test]
async fn a_failing_gate_stops_the_rollout_with_exit_3() {
    let fake = FakeConnector::new();
    let job = job(
        3,
        r#"
[rollout]
batches = [1]
[[gate]]
name = "healthy"
local = "echo sick >&2; exit 1"
[[gate]]
name = "never"
local = "exit 0"
[[steps]]
name = "deploy"
run = "deploy"
"#,
    );
    let ran = go(job, &fake).await;
    let gates: Vec<_> = ran
        .events
        .iter()
        .filter_map(|e| match e {
            Event::GateFinished {
                batch,
                gate,
                ok,
                error,
                ..
            } => Some((*batch, gate.clone(), *ok, error.clone().unwrap_or_default())),
            _ => None,
        })
        .collect();
    assert_eq!(
        gates.len(),
        1,
        "the first failing gate ends the gates: {gates:?}"
    );
    assert_eq!((gates[0].0, gates[0].2), (1, false));
    assert!(gates[0].3.contains("sick"), "{gates:?}");
    assert_eq!(ran.status("n1"), NodeStatus::Changed);
    for n in ["n2", "n3"] {
        assert_eq!(ran.status(n), NodeStatus::NotRun);
        assert!(fake.span(n).is_none());
    }
    assert!(
        ran.summary
            .stopped
            .unwrap()
            .describe()
            .contains("gate `healthy` failed after batch 1")
    );
    assert_eq!(ran.summary.exit_code, 3);
}

#[tokio::test(start_paused = true)]
async fn the_pause_separates_batches_but_not_the_end() {
    let fake = FakeConnector::new();
    fake.on("*", "work", Reply::ok().after(secs(1)));
    let job = job(
        3,
        r#"
[rollout]
batches = [1]
pause = "30s"
[[steps]]
name = "w"
run = "work"
"#,
    );
    let ran = go(job, &fake).await;
    assert_eq!(
        ran.took,
        secs(3 + 2 * 30),
        "two pauses between three batches"
    );
    let (_, end1) = fake.span("n1").unwrap();
    let (start2, _) = fake.span("n2").unwrap();
    assert_eq!(start2 - end1, secs(30));
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_cuts_the_pause_short() {
    let fake = FakeConnector::new();
    let control = Control::default();
    let interrupt = control.interrupt.clone();
    tokio::spawn(async move {
        tokio::time::sleep(secs(10)).await;
        interrupt.cancel();
    });
    let job = job(
        2,
        "[rollout]\nbatches = [1]\npause = \"1h\"\n[[steps]]\nname = \"w\"\nrun = \"work\"\n",
    );
    let ran = go_with(job, &fake, false, control).await;
    assert_eq!(ran.took, secs(10));
    assert_eq!(ran.status("n2"), NodeStatus::NotRun);
    assert_eq!(ran.summary.exit_code, 3);
}

// --- steps: on_failure, retries, timeouts, guards --------------------------

#[tokio::test(start_paused = true)]
async fn on_failure_steps_run_in_order_only_on_the_failed_node() {
    let fake = FakeConnector::new();
    fake.on("n2", "step-two", Reply::code(1));
    let job = job(
        2,
        r#"
[[steps]]
name = "one"
run = "step-one"
[[steps]]
name = "two"
run = "step-two"
[[steps]]
name = "three"
run = "step-three"
[[on_failure]]
name = "undo-a"
run = "undo-a"
[[on_failure]]
name = "undo-b"
run = "undo-b"
"#,
    );
    let ran = go(job, &fake).await;
    assert_eq!(fake.ran("n1"), ["step-one", "step-two", "step-three"]);
    assert_eq!(fake.ran("n2"), ["step-one", "step-two", "undo-a", "undo-b"]);
    let on_failure: Vec<_> = ran.steps("n2").into_iter().filter(|s| s.3).collect();
    assert_eq!(on_failure.len(), 2);
    assert_eq!(ran.status("n1"), NodeStatus::Changed);
    assert_eq!(ran.status("n2"), NodeStatus::Failed);
    assert!(ran.error("n2").contains("step `two` failed"));
    assert_eq!(ran.summary.exit_code, 1);
}

#[tokio::test(start_paused = true)]
async fn ignore_failure_lets_the_node_go_on() {
    let fake = FakeConnector::new();
    fake.on("*", "optional", Reply::code(3));
    let job = job(
        1,
        r#"
[[steps]]
name = "optional"
run = "optional"
ignore_failure = true
changes = false
[[steps]]
name = "then"
run = "then"
changes = false
[[on_failure]]
name = "undo"
run = "undo"
"#,
    );
    let ran = go(job, &fake).await;
    assert_eq!(fake.ran("n1"), ["optional", "then"]);
    assert_eq!(ran.step("n1", "optional").status, StepStatus::Failed);
    assert_eq!(ran.status("n1"), NodeStatus::Ok);
    assert_eq!(ran.summary.exit_code, 0);
}

#[tokio::test(start_paused = true)]
async fn retries_repeat_after_the_delay_until_an_attempt_succeeds() {
    let fake = FakeConnector::new();
    fake.seq(
        "*",
        "flaky",
        vec![Reply::code(1), Reply::code(1), Reply::stdout("ok")],
    );
    let job = job(
        1,
        r#"
[[steps]]
name = "flaky"
run = "flaky"
retries = 3
retry_delay = "5s"
"#,
    );
    let ran = go(job, &fake).await;
    assert_eq!(fake.ran("n1").len(), 3);
    let r = ran.step("n1", "flaky");
    assert_eq!((r.status, r.attempt), (StepStatus::Changed, 3));
    let started: Vec<u32> = ran
        .events
        .iter()
        .filter_map(|e| match e {
            Event::StepStarted { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(started, [1, 2, 3]);
    assert_eq!(ran.took, secs(10), "two delays of 5s");
    assert_eq!(ran.summary.exit_code, 0);
}

#[tokio::test(start_paused = true)]
async fn retries_exhausted_fail_the_step() {
    let fake = FakeConnector::new();
    fake.on("*", "broken", Reply::code(7));
    let job = job(
        1,
        "[[steps]]\nname = \"b\"\nrun = \"broken\"\nretries = 2\nretry_delay = \"1s\"\n",
    );
    let ran = go(job, &fake).await;
    let r = ran.step("n1", "b");
    assert_eq!(
        (r.status, r.attempt, r.exit),
        (StepStatus::Failed, 3, Some(7))
    );
    assert_eq!(fake.ran("n1").len(), 3);
    assert_eq!(ran.summary.exit_code, 1);
}

#[tokio::test(start_paused = true)]
async fn a_timeout_ends_the_command_and_counts_as_a_failed_attempt() {
    let fake = FakeConnector::new();
    // Hangs on the first attempt, quick on the second.
    fake.seq(
        "*",
        "slow",
        vec![Reply::ok().after(secs(3600)), Reply::ok()],
    );
    let job = job(
        2,
        r#"
[[steps]]
name = "slow"
run = "slow"
timeout = "2s"
retries = 1
retry_delay = "1s"
"#,
    );
    let ran = go(job, &fake).await;
    let r = ran.step("n1", "slow");
    assert_eq!((r.status, r.attempt), (StepStatus::Changed, 2));
    assert_eq!(
        ran.took,
        secs(2 + 1),
        "timeout, delay, then a quick attempt"
    );
    let ended = fake
        .log()
        .iter()
        .filter(|e| matches!(&e.what, What::Done { status, .. } if status.starts_with("TimedOut")))
        .count();
    assert_eq!(ended, 2, "one timed-out attempt per node");
    // Without a retry the timeout fails the step, in words.
    let fake = FakeConnector::new();
    fake.on("*", "slow", Reply::ok().after(secs(3600)));
    let job = job_with(
        1,
        "[[steps]]\nname = \"slow\"\nrun = \"slow\"\ntimeout = \"2s\"\n",
        None,
    );
    let ran = go(job, &fake).await;
    let r = ran.step("n1", "slow");
    assert_eq!(r.status, StepStatus::Failed);
    assert_eq!(
        r.error.as_deref(),
        Some("timed out after 2s; its processes were ended")
    );
    assert_eq!(ran.took, secs(2));
    assert_eq!(ran.summary.exit_code, 1);
}

#[tokio::test(start_paused = true)]
async fn when_and_unless_skip_steps_and_captures_feed_guards() {
    let fake = FakeConnector::new();
    fake.on("n1", "print-version", Reply::stdout("1.0\n"));
    fake.on("n2", "print-version", Reply::stdout("0.9\n"));
    // `unless` passes (exit 0) on n1 only.
    fake.on("*", "is-installed", Reply::code(1));
    fake.on("n1", "is-installed", Reply::code(0));
    let job = job(
        2,
        r#"
[vars]
want = "1.0"
[[steps]]
name = "version"
run = "print-version"
capture = "version"
changes = false
[[steps]]
name = "upgrade"
when = "version != want"
run = "do-upgrade"
[[steps]]
name = "install"
unless = "is-installed"
run = "do-install"
[[steps]]
name = "never"
when = "false"
run = "never-runs"
"#,
    );
    let ran = go(job, &fake).await;
    assert_eq!(fake.ran("n1"), ["print-version", "is-installed"]);
    assert_eq!(
        fake.ran("n2"),
        ["print-version", "do-upgrade", "is-installed", "do-install"]
    );
    let statuses = |n| ran.steps(n).into_iter().map(|s| s.1).collect::<Vec<_>>();
    use StepStatus::*;
    assert_eq!(statuses("n1"), [Ok, Skipped, Skipped, Skipped]);
    assert_eq!(statuses("n2"), [Ok, Changed, Changed, Skipped]);
    assert_eq!(ran.status("n1"), NodeStatus::Ok);
    assert_eq!(ran.status("n2"), NodeStatus::Changed);
}

#[tokio::test(start_paused = true)]
async fn an_http_step_via_ssh_goes_through_the_nodes_tunnel() {
    let fake = FakeConnector::new();
    fake.http("n1", "127.0.0.1:8088", 200, "ready");
    fake.http("n2", "127.0.0.1:8088", 503, "down");
    let job = job(
        2,
        r#"
[[steps]]
name = "health"
http = { url = "http://127.0.0.1:8088/health", via = "ssh" }
expect = { status = 200, body_contains = "ready" }
"#,
    );
    let ran = go(job, &fake).await;
    assert_eq!(ran.status("n1"), NodeStatus::Ok);
    assert_eq!(ran.status("n2"), NodeStatus::Failed);
    assert!(
        fake.log()
            .iter()
            .any(|e| e.node == "n2" && e.what == What::Tunnel("127.0.0.1:8088".into()))
    );
}

#[tokio::test(start_paused = true)]
async fn a_step_sent_ahead_does_not_start_after_a_failure() {
    let fake = FakeConnector::new();
    fake.on("*", "deploy", Reply::code(1));
    let job = job(
        1,
        r#"
[[steps]]
name = "deploy"
run = "deploy"
[[steps]]
name = "verify"
run = "verify"
changes = false
"#,
    );
    let ran = go(job, &fake).await;
    let ahead = fake.log().into_iter().find_map(|e| match e.what {
        What::Ahead(scripts) => Some(scripts),
        _ => None,
    });
    assert_eq!(
        ahead,
        Some(vec!["verify".to_string()]),
        "the read-only step went ahead"
    );
    assert_eq!(fake.ran("n1"), ["deploy"], "but never started");
    assert_eq!(ran.steps("n1").len(), 1);
    assert_eq!(ran.summary.exit_code, 1);
}

#[tokio::test(start_paused = true)]
async fn scripts_reach_the_node_on_stdin_with_their_environment() {
    let fake = FakeConnector::new();
    // Exits 0 only when the script carries the export and the node's name.
    fake.on_fn("*", "greet", |c| {
        let want = format!("export TOKEN=s3cret\necho hello {} # greet", c.node);
        Reply::code(if c.script == want { 0 } else { 1 })
    });
    let job = job(
        2,
        r#"
[[steps]]
name = "greet"
run = "echo hello ${{ node.name | raw }} # greet"
env = { TOKEN = "s3cret" }
"#,
    );
    let ran = go(job, &fake).await;
    assert_eq!(ran.summary.exit_code, 0, "{:?}", fake.ran("n1"));
}

// --- --check --------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn check_runs_only_read_only_steps_and_guards() {
    let fake = FakeConnector::new();
    fake.on("*", "is-installed", Reply::code(0));
    let job = job(
        1,
        r#"
[[steps]]
name = "read"
run = "read-state"
changes = false
[[steps]]
name = "install"
unless = "is-installed"
run = "do-install"
[[steps]]
name = "skip"
when = "false"
run = "do-skip"
[[steps]]
name = "change"
run = "do-change"
[[steps]]
name = "read-after"
run = "read-after"
changes = false
"#,
    );
    let ran = go_with(job, &fake, true, Control::default()).await;
    assert_eq!(
        fake.ran("n1"),
        ["read-state", "is-installed"],
        "nothing changing ran"
    );
    assert!(!fake.ran_on("n1", "do-install") && !fake.ran_on("n1", "read-after"));
    use StepStatus::*;
    let statuses: Vec<_> = ran.steps("n1").into_iter().map(|s| s.1).collect();
    // After a step that would run, even a read-only step only pretends.
    assert_eq!(statuses, [Ok, WouldSkip, WouldSkip, WouldRun, WouldRun]);
    assert!(
        !fake.log().iter().any(|e| matches!(e.what, What::Ahead(_))),
        "nothing is sent ahead under --check"
    );
    assert!(ran.summary.check);
    assert_eq!(
        ran.status("n1"),
        NodeStatus::Changed,
        "drift counts as changed"
    );
    assert_eq!(ran.summary.exit_code, 5);
}

#[tokio::test(start_paused = true)]
async fn check_without_drift_exits_0_and_a_failure_outranks_drift() {
    let pb = r#"
[[steps]]
name = "read"
run = "read-state"
changes = false
[[steps]]
name = "install"
unless = "is-installed"
run = "do-install"
"#;
    let fake = FakeConnector::new();
    fake.on("*", "is-installed", Reply::code(0));
    let ran = go_with(job(2, pb), &fake, true, Control::default()).await;
    assert_eq!(ran.summary.exit_code, 0);
    let fake = FakeConnector::new();
    fake.on("n1", "read-state", Reply::code(1));
    fake.on("*", "is-installed", Reply::code(1));
    let ran = go_with(job(2, pb), &fake, true, Control::default()).await;
    assert_eq!(ran.status("n1"), NodeStatus::Failed);
    assert_eq!(ran.status("n2"), NodeStatus::Changed);
    assert_eq!(ran.summary.exit_code, 1);
}

// --- interrupts and the node lock ------------------------------------------

#[tokio::test(start_paused = true)]
async fn an_interrupt_starts_no_new_node_or_step_and_lets_commands_finish() {
    let fake = FakeConnector::new();
    fake.on("*", "first", Reply::ok().after(secs(10)));
    let control = Control::default();
    let interrupt = control.interrupt.clone();
    tokio::spawn(async move {
        tokio::time::sleep(secs(4)).await;
        interrupt.cancel();
    });
    let job = job(
        4,
        r#"
[rollout]
concurrency = 2
[[steps]]
name = "first"
run = "first"
[[steps]]
name = "second"
run = "second"
[[on_failure]]
name = "undo"
run = "undo"
"#,
    );
    let ran = go_with(job, &fake, false, control).await;
    // The running commands were not ended: the interrupt alone does not kill.
    for n in ["n1", "n2"] {
        assert_eq!(fake.ran(n), ["first"], "no step after the interrupt");
        assert!(fake.log().iter().any(|e| e.node == n
            && e.what
                == What::Done {
                    script: "first".into(),
                    status: "Code(0)".into()
                }));
        assert!(ran.error(n).contains("interrupted before step `second`"));
    }
    for n in ["n3", "n4"] {
        assert_eq!(ran.status(n), NodeStatus::NotRun);
        assert!(fake.span(n).is_none(), "{n} started after the interrupt");
    }
    assert!(!fake.log().iter().any(|e| matches!(
        e.what,
        What::Exec {
            after_interrupt: true,
            ..
        }
    )));
    assert_eq!(ran.took, secs(10));
    assert_eq!(
        ran.summary
            .stopped
            .as_ref()
            .map(crate::events::StopReason::describe),
        Some("interrupted")
    );
    assert_eq!(ran.summary.exit_code, 3);
}

#[tokio::test(start_paused = true)]
async fn kill_ends_running_commands() {
    let fake = FakeConnector::new();
    fake.on("*", "long", Reply::ok().after(secs(3600)));
    let control = Control::default();
    let c = control.clone();
    tokio::spawn(async move {
        tokio::time::sleep(secs(4)).await;
        c.interrupt.cancel();
        // The grace period, then the end.
        tokio::time::sleep(secs(10)).await;
        c.kill.cancel();
    });
    let job = job(
        2,
        "[[steps]]\nname = \"long\"\nrun = \"long\"\nretries = 5\n[[on_failure]]\nname = \"undo\"\nrun = \"undo\"\n",
    );
    let ran = go_with(job, &fake, false, control).await;
    assert_eq!(ran.took, secs(14));
    for n in ["n1", "n2"] {
        let r = ran.step(n, "long");
        assert_eq!(
            (r.status, r.attempt),
            (StepStatus::Failed, 1),
            "no retry after an interrupt"
        );
        assert!(r.error.unwrap().starts_with("interrupted"));
        assert_eq!(
            fake.ran(n),
            ["long"],
            "no on_failure step after an interrupt"
        );
    }
    assert_eq!(ran.summary.exit_code, 3);
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_while_connecting_leaves_the_node_not_run() {
    let fake = FakeConnector::new();
    fake.connect_delay("n1", secs(4));
    let control = Control::default();
    let interrupt = control.interrupt.clone();
    tokio::spawn(async move {
        tokio::time::sleep(secs(1)).await;
        interrupt.cancel();
    });
    let job = job(1, "[[steps]]\nname = \"w\"\nrun = \"work\"\n");
    let ran = go_with(job, &fake, false, control).await;
    assert_eq!(ran.status("n1"), NodeStatus::NotRun);
    assert!(fake.ran("n1").is_empty());
    assert_eq!(ran.took, secs(1));
    assert_eq!(fake.max_in_flight(), 1);
    assert_eq!(ran.summary.exit_code, 3);
}

#[tokio::test(start_paused = true)]
async fn a_node_locked_by_another_run_stops_the_run_with_exit_4() {
    let fake = FakeConnector::new();
    fake.on(
        "n2",
        "deploy",
        Reply::locked("run r1 by ops@runner since 10:00"),
    );
    let job = job(
        4,
        "[rollout]\nconcurrency = 1\n[[steps]]\nname = \"deploy\"\nrun = \"deploy\"\n",
    );
    let ran = go(job, &fake).await;
    assert_eq!(ran.status("n1"), NodeStatus::Changed);
    assert_eq!(ran.status("n2"), NodeStatus::NotRun);
    assert!(
        ran.error("n2").contains("run r1 by ops@runner"),
        "{}",
        ran.error("n2")
    );
    for n in ["n3", "n4"] {
        assert!(
            fake.span(n).is_none(),
            "{n} started after a lock was found held"
        );
    }
    assert_eq!(ran.summary.exit_code, 4);
}

#[tokio::test(start_paused = true)]
async fn a_node_lock_found_after_a_spent_budget_is_what_the_run_reports() {
    let fake = FakeConnector::new();
    fake.on("n1", "deploy", Reply::code(1).after(Duration::from_secs(1)));
    fake.on(
        "n2",
        "deploy",
        Reply::locked("run r1 by ops@runner since 10:00").after(Duration::from_secs(5)),
    );
    let job = job(
        3,
        "[rollout]\nconcurrency = 2\nmax_failed = 0\n[[steps]]\nname = \"deploy\"\nrun = \"deploy\"\n",
    );
    let ran = go(job, &fake).await;
    assert_eq!(ran.status("n1"), NodeStatus::Failed);
    assert_eq!(ran.status("n2"), NodeStatus::NotRun);
    assert!(
        fake.span("n3").is_none(),
        "n3 started after the budget was spent"
    );
    let stopped = ran.summary.stopped.as_ref().map(StopReason::describe);
    assert!(
        stopped.is_some_and(|s| s.contains("is locked by another run")),
        "{stopped:?}"
    );
    assert_eq!(ran.summary.exit_code, 4);
}

// --- the event stream -----------------------------------------------------

#[tokio::test(start_paused = true)]
async fn events_come_in_a_consistent_order() {
    let fake = FakeConnector::new();
    fake.on("n2", "b-step", Reply::code(1));
    let job = job(
        2,
        r#"
[rollout]
batches = [1]
[[steps]]
name = "a"
run = "a-step"
[[steps]]
name = "b"
run = "b-step"
[[on_failure]]
name = "u"
run = "undo"
"#,
    );
    let ran = go(job, &fake).await;
    let want = [
        "run+", "batch1+", "n1+", "n1:a+", "n1:a-", "n1:b+", "n1:b-", "n1-", "batch1-", "batch2+",
        "n2+", "n2:a+", "n2:a-", "n2:b+", "n2:b-", "n2:u+", "n2:u-", "n2-", "batch2-", "run-",
    ];
    assert_eq!(ran.trace(), want);
    assert_eq!(ran.summary.counts.changed, 1);
    assert_eq!(ran.summary.counts.failed, 1);
    assert_eq!(ran.summary.exit_code, 1);
}
