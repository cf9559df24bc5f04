//! Reading run journals back: `fleetfix runs [ID]` and `--resume RUN_ID`.
//!
//! Journals are written event by event (see [`crate::record::journal`]), so
//! a crashed or killed run leaves a valid prefix, possibly ending in half a
//! line. Reading tolerates that and treats a journal without `run_finished`
//! as "incomplete" (still running, or crashed).

pub mod journal;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{Cell, ContentArrangement, Table};
use serde::Deserialize;

use crate::events::{NodeCounts, NodeStatus, StepStatus};
use crate::support::error::Error;
use crate::support::state;
use crate::support::text::human_duration;

/// One run, as `fleetfix runs` lists it.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub id: String,
    pub playbook: String,
    pub started: jiff::Timestamp,
    /// `None`: no `run_finished` — the run is still going or crashed.
    pub finished: Option<jiff::Timestamp>,
    pub exit_code: Option<i32>,
    pub check: bool,
    /// Nodes selected for the run (from `run_started`).
    pub nodes: usize,
    pub counts: NodeCounts,
    /// Why the run stopped before every node ran, if it did.
    pub stopped: Option<String>,
    /// The journal file.
    pub path: PathBuf,
}

impl RunRecord {
    /// One word for the run's outcome, from its exit code (SPEC section 2).
    pub fn outcome(&self) -> &'static str {
        match self.exit_code {
            None => "incomplete",
            Some(0) => "ok",
            Some(1) => "failed",
            Some(3) => "stopped",
            Some(5) => "drift",
            Some(6) => "unreachable",
            Some(_) => "error",
        }
    }
}

/// One finished step, as journaled.
#[derive(Debug, Clone, Deserialize)]
pub struct StepRecord {
    pub step: String,
    #[serde(default)]
    pub index: usize,
    #[serde(default)]
    pub on_failure: bool,
    #[serde(deserialize_with = "de_step_status")]
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
    #[serde(default)]
    pub error: Option<String>,
}

/// One node of a run: how it ended, and its steps in the order they finished.
#[derive(Debug, Clone)]
pub struct NodeRecord {
    pub name: String,
    /// `None`: no `node_finished` — the run crashed or is still going.
    pub status: Option<NodeStatus>,
    pub error: Option<String>,
    pub duration_ms: Option<u64>,
    /// Captured `report_vars`.
    pub report: BTreeMap<String, String>,
    pub steps: Vec<StepRecord>,
}

/// A `[[gate]]` result.
#[derive(Debug, Clone, Deserialize)]
pub struct GateRecord {
    pub batch: usize,
    pub gate: String,
    pub ok: bool,
    #[serde(default)]
    pub attempt: u32,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub duration_ms: u64,
}

/// One run in full, as `fleetfix runs ID` shows it.
#[derive(Debug, Clone)]
pub struct RunDetail {
    pub record: RunRecord,
    /// In `run_started` order (every selected node), then any node the
    /// journal mentions that was not listed there.
    pub nodes: Vec<NodeRecord>,
    pub gates: Vec<GateRecord>,
}

/// What `--resume` needs from an earlier run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeTargets {
    pub playbook: String,
    /// Nodes that finished ok; the resumed run leaves them out.
    pub finished_ok: HashSet<String>,
    /// Nodes of the earlier run to run again, in its order.
    pub rerun: Vec<String>,
}

/// The nodes of `detail` that must run again: all but those that finished
/// `ok` or `changed`. A node with no `node_finished` (crash) runs again.
///
/// Under `--check` nothing was changed, so a `changed` node there is drift
/// still to fix: only `ok` counts as finished when resuming a check run.
pub fn resume_targets(detail: &RunDetail) -> ResumeTargets {
    let check = detail.record.check;
    let done = |n: &NodeRecord| match n.status {
        Some(NodeStatus::Ok) => true,
        Some(NodeStatus::Changed) => !check,
        _ => false,
    };
    let mut finished_ok = HashSet::new();
    let mut rerun = Vec::new();
    for n in &detail.nodes {
        if done(n) {
            finished_ok.insert(n.name.clone());
        } else {
            rerun.push(n.name.clone());
        }
    }
    ResumeTargets {
        playbook: detail.record.playbook.clone(),
        finished_ok,
        rerun,
    }
}

/// Every journaled run, newest first. A missing runs directory is no runs;
/// a journal that cannot be read is skipped with a warning.
pub fn list(state_dir: &Path) -> Result<Vec<RunRecord>, Error> {
    let mut runs = Vec::new();
    for (id, path) in journal_files(state_dir)? {
        match read_journal(&path, &id, false) {
            Ok(detail) => runs.push(detail.record),
            Err(why) => tracing::warn!("skipping run journal {}: {why}", path.display()),
        }
    }
    runs.sort_by(|a, b| (b.started, &b.id).cmp(&(a.started, &a.id)));
    Ok(runs)
}

/// One run by id, or by a prefix of exactly one id.
pub fn load(state_dir: &Path, id: &str) -> Result<RunDetail, Error> {
    let (id, path) = resolve(state_dir, id)?;
    read_journal(&path, &id, true).map_err(|why| {
        Error::input(
            format!(
                "cannot read the journal of run {id} ({}): {why}",
                path.display()
            ),
            "`fleetfix runs` lists the runs that can be read",
        )
    })
}

/// Finds the journal of `id`: an exact id, else a unique prefix.
fn resolve(state_dir: &Path, id: &str) -> Result<(String, PathBuf), Error> {
    let dir = state::runs_dir(state_dir);
    let not_found = || {
        Error::input(
            format!("no run `{id}` in {}", dir.display()),
            "`fleetfix runs` lists the recorded runs and their ids",
        )
    };
    if id.is_empty() || id.contains(['/', '\0']) {
        return Err(not_found());
    }
    let files = journal_files(state_dir)?;
    if let Some(exact) = files.iter().find(|(i, _)| i == id) {
        return Ok(exact.clone());
    }
    let matches: Vec<_> = files
        .into_iter()
        .filter(|(i, _)| i.starts_with(id))
        .collect();
    match matches.len() {
        0 => Err(not_found()),
        1 => Ok(matches.into_iter().next().ok_or_else(not_found)?),
        n => {
            let mut ids: Vec<&str> = matches.iter().map(|(i, _)| i.as_str()).collect();
            ids.sort_unstable();
            ids.truncate(5);
            Err(Error::input(
                format!(
                    "run id prefix `{id}` matches {n} runs: {}{}",
                    ids.join(", "),
                    if n > 5 { ", …" } else { "" }
                ),
                "give more of the id; `fleetfix runs` lists them",
            ))
        }
    }
}

/// `(id, path)` of every `*.jsonl` in the runs directory.
fn journal_files(state_dir: &Path) -> Result<Vec<(String, PathBuf)>, Error> {
    let dir = state::runs_dir(state_dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::input(
                format!("cannot read the run journals in {}: {e}", dir.display()),
                "check the permissions of the state directory (FLEETFIX_STATE_DIR)",
            ));
        }
    };
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "jsonl")
            && let Some(id) = path.file_stem().and_then(|s| s.to_str())
        {
            files.push((id.to_string(), path));
        }
    }
    Ok(files)
}

/// The journal's lines we use; other event kinds are ignored.
#[derive(Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Line {
    RunStarted {
        run_id: String,
        playbook: String,
        #[serde(default)]
        nodes: Vec<String>,
        #[serde(default)]
        check: bool,
    },
    StepFinished {
        node: String,
        #[serde(flatten)]
        step: StepRecord,
    },
    NodeFinished {
        node: String,
        #[serde(deserialize_with = "de_node_status")]
        status: NodeStatus,
        #[serde(default)]
        error: Option<String>,
        #[serde(default)]
        duration_ms: u64,
        #[serde(default)]
        report: BTreeMap<String, String>,
    },
    GateFinished(GateRecord),
    RunFinished {
        summary: JournalSummary,
    },
    #[serde(other)]
    Other,
}

/// A journal line: the time, then the event.
#[derive(Deserialize)]
struct Entry {
    ts: jiff::Timestamp,
    #[serde(flatten)]
    line: Line,
}

#[derive(Deserialize)]
struct JournalSummary {
    exit_code: i32,
    #[serde(default)]
    stopped: Option<String>,
}

/// Event kinds that carry bulky output and that a listing does not need.
fn is_step_line(line: &str) -> bool {
    // `Stamped` serializes `ts` then `event` first: the kind is near the start.
    let head = line.get(..line.len().min(96)).unwrap_or(line);
    head.contains(r#""event":"step_finished""#) || head.contains(r#""event":"step_started""#)
}

/// Reads one journal. `full = false` skips step lines, for listings.
fn read_journal(path: &Path, id: &str, full: bool) -> Result<RunDetail, String> {
    let text = std::fs::read(path).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();

    let mut record: Option<RunRecord> = None;
    let mut nodes: Vec<NodeRecord> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut gates = Vec::new();
    let mut node = |nodes: &mut Vec<NodeRecord>, name: &str| -> usize {
        *index.entry(name.to_string()).or_insert_with(|| {
            nodes.push(NodeRecord {
                name: name.to_string(),
                status: None,
                error: None,
                duration_ms: None,
                report: BTreeMap::new(),
                steps: Vec::new(),
            });
            nodes.len() - 1
        })
    };

    for (i, raw) in lines.iter().enumerate() {
        if !full && is_step_line(raw) {
            continue;
        }
        let Entry { ts, line } = match serde_json::from_str::<Entry>(raw) {
            Ok(entry) => entry,
            // The last line of a killed run may be cut short.
            Err(_) if i + 1 == lines.len() => break,
            Err(e) => {
                tracing::warn!("{}: skipping line {}: {e}", path.display(), i + 1);
                continue;
            }
        };
        match line {
            Line::RunStarted {
                run_id,
                playbook,
                nodes: names,
                check,
            } => {
                if run_id != id {
                    tracing::debug!(
                        "{}: run id {run_id} differs from the file name",
                        path.display()
                    );
                }
                for name in &names {
                    node(&mut nodes, name);
                }
                record = Some(RunRecord {
                    id: id.to_string(),
                    playbook,
                    started: ts,
                    finished: None,
                    exit_code: None,
                    check,
                    nodes: names.len(),
                    counts: NodeCounts::default(),
                    stopped: None,
                    path: path.to_path_buf(),
                });
            }
            Line::StepFinished { node: name, step } => {
                let n = node(&mut nodes, &name);
                nodes[n].steps.push(step);
            }
            Line::NodeFinished {
                node: name,
                status,
                error,
                duration_ms,
                report,
            } => {
                let n = node(&mut nodes, &name);
                let rec = &mut nodes[n];
                rec.status = Some(status);
                rec.error = error;
                rec.duration_ms = Some(duration_ms);
                rec.report = report;
            }
            Line::GateFinished(g) => gates.push(g),
            Line::RunFinished { summary } => {
                if let Some(r) = &mut record {
                    r.finished = Some(ts);
                    r.exit_code = Some(summary.exit_code);
                    r.stopped = summary.stopped;
                }
            }
            Line::Other => {}
        }
    }

    let mut record = record.ok_or("no run_started event in it")?;
    // Counted from final statuses, so a node reported twice counts once.
    for n in &nodes {
        if let Some(s) = n.status {
            record.counts.add(s);
        }
    }
    Ok(RunDetail {
        record,
        nodes,
        gates,
    })
}

fn de_node_status<'de, D: serde::Deserializer<'de>>(d: D) -> Result<NodeStatus, D::Error> {
    let s = String::deserialize(d)?;
    [
        NodeStatus::Ok,
        NodeStatus::Changed,
        NodeStatus::Failed,
        NodeStatus::Unreachable,
        NodeStatus::NotRun,
    ]
    .into_iter()
    .find(|v| v.as_str() == s)
    .ok_or_else(|| serde::de::Error::custom(format!("unknown node status `{s}`")))
}

fn de_step_status<'de, D: serde::Deserializer<'de>>(d: D) -> Result<StepStatus, D::Error> {
    let s = String::deserialize(d)?;
    [
        StepStatus::Ok,
        StepStatus::Changed,
        StepStatus::Skipped,
        StepStatus::Failed,
        StepStatus::WouldRun,
        StepStatus::WouldSkip,
    ]
    .into_iter()
    .find(|v| v.as_str() == s)
    .ok_or_else(|| serde::de::Error::custom(format!("unknown step status `{s}`")))
}

/// `2026-11-26 10:15:00Z`: compact, sortable, unambiguous.
fn when(ts: jiff::Timestamp) -> String {
    ts.strftime("%Y-%m-%d %H:%M:%SZ").to_string()
}

fn table() -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    t.set_content_arrangement(ContentArrangement::Dynamic);
    t
}

/// The `fleetfix runs` table.
pub fn render_list(runs: &[RunRecord]) -> String {
    if runs.is_empty() {
        return "no runs recorded yet".to_string();
    }
    let mut t = table();
    t.set_header(["id", "playbook", "started", "outcome", "nodes", "counts"]);
    for r in runs {
        let mut playbook = r.playbook.clone();
        if r.check {
            playbook.push_str(" (check)");
        }
        t.add_row([
            Cell::new(&r.id),
            Cell::new(playbook),
            Cell::new(when(r.started)),
            Cell::new(r.outcome()),
            Cell::new(r.nodes),
            Cell::new(r.counts.describe()),
        ]);
    }
    t.to_string()
}

/// The `fleetfix runs ID` view: header, node table, then each node's steps.
pub fn render_detail(d: &RunDetail) -> String {
    let r = &d.record;
    let mut out = String::new();
    let mut line = |k: &str, v: &str| out.push_str(&format!("{k:<9} {v}\n"));
    line("run", &r.id);
    line(
        "playbook",
        &format!("{}{}", r.playbook, if r.check { " (--check)" } else { "" }),
    );
    line("started", &when(r.started));
    match (r.finished, r.exit_code) {
        (Some(f), Some(code)) => {
            let took = (f.as_millisecond() - r.started.as_millisecond()).max(0) as u64;
            line(
                "finished",
                &format!("{} ({})", when(f), human_duration(took)),
            );
            line("outcome", &format!("{} (exit {code})", r.outcome()));
        }
        _ => line(
            "outcome",
            "incomplete: no run_finished in the journal (still running, or crashed)",
        ),
    }
    if let Some(why) = &r.stopped {
        line("stopped", why);
    }
    let counts = r.counts.describe();
    line(
        "nodes",
        &format!(
            "{}{}{}",
            r.nodes,
            if counts.is_empty() { "" } else { ": " },
            counts
        ),
    );
    line("journal", &r.path.display().to_string());

    let mut t = table();
    t.set_header(["node", "status", "steps", "time", "error"]);
    for n in &d.nodes {
        t.add_row([
            Cell::new(&n.name),
            Cell::new(n.status.map(NodeStatus::as_str).unwrap_or("unfinished")),
            Cell::new(n.steps.len()),
            Cell::new(n.duration_ms.map(human_duration).unwrap_or_default()),
            Cell::new(n.error.as_deref().unwrap_or("")),
        ]);
    }
    out.push('\n');
    out.push_str(&t.to_string());
    out.push('\n');

    if !d.gates.is_empty() {
        let mut t = table();
        t.set_header(["batch", "gate", "result", "attempt", "time", "error"]);
        for g in &d.gates {
            t.add_row([
                Cell::new(g.batch),
                Cell::new(&g.gate),
                Cell::new(if g.ok { "ok" } else { "failed" }),
                Cell::new(g.attempt),
                Cell::new(human_duration(g.duration_ms)),
                Cell::new(g.error.as_deref().unwrap_or("")),
            ]);
        }
        out.push_str("\ngates\n");
        out.push_str(&t.to_string());
        out.push('\n');
    }

    for n in d.nodes.iter().filter(|n| !n.steps.is_empty()) {
        let mut t = table();
        t.set_header(["step", "status", "attempt", "exit", "time", "error"]);
        for s in &n.steps {
            t.add_row([
                Cell::new(format!(
                    "{}{}",
                    if s.on_failure { "on_failure: " } else { "" },
                    s.step
                )),
                Cell::new(s.status.as_str()),
                Cell::new(s.attempt),
                Cell::new(s.exit.map(|c| c.to_string()).unwrap_or_default()),
                Cell::new(human_duration(s.duration_ms)),
                Cell::new(s.error.as_deref().unwrap_or("")),
            ]);
        }
        out.push_str(&format!("\nsteps on {}\n", n.name));
        out.push_str(&t.to_string());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, Stamped, StepResult, Summary};
    use crate::output::Reporter;
    use crate::record::journal::Journal;

    fn ts(secs: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_795_000_000 + secs).unwrap()
    }

    fn step(node: &str, name: &str, status: StepStatus, exit: Option<i32>) -> Event {
        Event::StepFinished(StepResult {
            node: node.into(),
            step: name.into(),
            index: 0,
            on_failure: false,
            status,
            attempt: 2,
            exit,
            stdout: "out".into(),
            stderr: "err".into(),
            duration_ms: 1500,
            error: (status == StepStatus::Failed).then(|| "exit code 1, expected 0".into()),
        })
    }

    fn node_done(node: &str, status: NodeStatus, error: Option<&str>) -> Event {
        Event::NodeFinished {
            node: node.into(),
            status,
            error: error.map(String::from),
            duration_ms: 2000,
            report: BTreeMap::new(),
        }
    }

    fn started(id: &str, nodes: &[&str], check: bool) -> Event {
        Event::RunStarted {
            run_id: id.into(),
            playbook: "relay-rollout".into(),
            nodes: nodes.iter().map(|&n| n.into()).collect(),
            batches: vec![1, nodes.len().saturating_sub(1)],
            check,
        }
    }

    fn finished(exit_code: i32) -> Event {
        Event::RunFinished {
            summary: Summary {
                exit_code,
                ..Default::default()
            },
        }
    }

    /// Journals `events` as run `id`, the n-th at `start + n` seconds.
    fn journal(state: &Path, id: &str, start: i64, events: Vec<Event>) {
        let mut j = Journal::create(state, id).unwrap();
        for (n, event) in events.into_iter().enumerate() {
            j.event(&Stamped::new(ts(start + n as i64), event));
        }
        j.finish();
    }

    /// A run that crashed after dfw1 changed and dfw2 failed, with ord1 and
    /// ord2 never finished.
    fn crashed_run(state: &Path) {
        journal(
            state,
            "20261126T101500Z-3fa2",
            0,
            vec![
                started(
                    "20261126T101500Z-3fa2",
                    &["dfw1", "dfw2", "ord1", "ord2"],
                    false,
                ),
                Event::NodeStarted {
                    node: "dfw1".into(),
                },
                Event::StepStarted {
                    node: "dfw1".into(),
                    step: "pull".into(),
                    index: 0,
                    steps: 1,
                    attempt: 1,
                    on_failure: false,
                },
                step("dfw1", "pull", StepStatus::Changed, Some(0)),
                node_done("dfw1", NodeStatus::Changed, None),
                step("dfw2", "pull", StepStatus::Failed, Some(1)),
                node_done("dfw2", NodeStatus::Failed, Some("step `pull` failed")),
                step("ord1", "pull", StepStatus::Ok, Some(0)),
            ],
        );
    }

    #[test]
    fn journal_round_trips_into_load() {
        let dir = tempfile::tempdir().unwrap();
        journal(
            dir.path(),
            "20261126T101500Z-aaaa",
            0,
            vec![
                started("20261126T101500Z-aaaa", &["a", "b", "c"], false),
                step("a", "pull", StepStatus::Changed, Some(0)),
                step("a", "check", StepStatus::Ok, Some(0)),
                node_done("a", NodeStatus::Changed, None),
                node_done("b", NodeStatus::Unreachable, Some("connection refused")),
                Event::GateFinished {
                    batch: 1,
                    gate: "endpoint".into(),
                    ok: false,
                    attempt: 3,
                    error: Some("status 502".into()),
                    duration_ms: 40,
                },
                node_done("c", NodeStatus::NotRun, Some("a gate failed")),
                Event::RunFinished {
                    summary: Summary {
                        exit_code: 3,
                        stopped: Some("gate `endpoint` failed".into()),
                        ..Default::default()
                    },
                },
            ],
        );
        let d = load(dir.path(), "20261126T101500Z-aaaa").unwrap();
        let r = &d.record;
        assert_eq!(r.playbook, "relay-rollout");
        assert_eq!(r.started, ts(0));
        assert_eq!(r.finished, Some(ts(7)));
        assert_eq!((r.exit_code, r.outcome()), (Some(3), "stopped"));
        assert_eq!(r.stopped.as_deref(), Some("gate `endpoint` failed"));
        assert_eq!(r.nodes, 3);
        assert_eq!(
            r.counts,
            NodeCounts {
                changed: 1,
                unreachable: 1,
                not_run: 1,
                ..Default::default()
            }
        );
        let names: Vec<_> = d.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        let a = &d.nodes[0];
        let steps: Vec<_> = a
            .steps
            .iter()
            .map(|s| (s.step.as_str(), s.status))
            .collect();
        assert_eq!(
            steps,
            [("pull", StepStatus::Changed), ("check", StepStatus::Ok)]
        );
        assert_eq!((a.steps[0].attempt, a.steps[0].exit), (2, Some(0)));
        assert_eq!(a.steps[0].stdout, "out");
        assert_eq!(d.nodes[1].error.as_deref(), Some("connection refused"));
        assert_eq!(d.gates.len(), 1);
        assert!(!d.gates[0].ok);

        let text = render_detail(&d);
        for want in [
            "20261126T101500Z-aaaa",
            "stopped (exit 3)",
            "gate `endpoint` failed",
            "unreachable",
            "connection refused",
            "status 502",
            "pull",
            "changed",
            "1.5s",
        ] {
            assert!(text.contains(want), "{want:?} missing in\n{text}");
        }
    }

    #[test]
    fn crashed_run_is_incomplete_and_tolerates_a_cut_last_line() {
        let dir = tempfile::tempdir().unwrap();
        crashed_run(dir.path());
        let path = state::runs_dir(dir.path()).join("20261126T101500Z-3fa2.jsonl");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(r#"{"ts":"2026-11-26T10:15:09Z","event":"node_fini"#);
        std::fs::write(&path, text).unwrap();

        let d = load(dir.path(), "20261126T101500Z-3fa2").unwrap();
        assert_eq!(d.record.outcome(), "incomplete");
        assert_eq!(d.record.finished, None);
        assert_eq!(d.nodes.len(), 4);
        assert_eq!(d.nodes[2].status, None);
        assert_eq!(d.nodes[2].steps.len(), 1);
        assert!(render_detail(&d).contains("incomplete"));
        let runs = list(dir.path()).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].counts.describe(), "1 changed, 1 failed");
    }

    #[test]
    fn list_is_newest_first_and_skips_unreadable_journals() {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path();
        journal(
            s,
            "20261126T101500Z-0001",
            0,
            vec![started("x", &["a"], false), finished(0)],
        );
        journal(
            s,
            "20261127T080000Z-0002",
            86_000,
            vec![started("x", &["a"], true), finished(5)],
        );
        journal(
            s,
            "20261126T120000Z-0003",
            7_000,
            vec![started("x", &["a"], false), finished(1)],
        );
        std::fs::write(state::runs_dir(s).join("garbage.jsonl"), "not json\n").unwrap();
        std::fs::write(state::runs_dir(s).join("notes.txt"), "ignored").unwrap();

        let runs = list(s).unwrap();
        let ids: Vec<_> = runs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "20261127T080000Z-0002",
                "20261126T120000Z-0003",
                "20261126T101500Z-0001"
            ]
        );
        let outcomes: Vec<_> = runs.iter().map(RunRecord::outcome).collect();
        assert_eq!(outcomes, ["drift", "failed", "ok"]);
        let table = render_list(&runs);
        assert!(table.contains("20261127T080000Z-0002"), "{table}");
        assert!(table.contains("relay-rollout (check)"), "{table}");
        assert!(table.contains("drift"), "{table}");
    }

    #[test]
    fn missing_runs_dir_lists_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(list(dir.path()).unwrap().is_empty());
        assert_eq!(render_list(&[]), "no runs recorded yet");
    }

    #[test]
    fn load_accepts_a_unique_prefix_and_names_bad_ids() {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path();
        for id in [
            "20261126T101500Z-3fa2",
            "20261126T101500Z-3fb9",
            "20261127T000000Z-0000",
        ] {
            journal(s, id, 0, vec![started(id, &["a"], false), finished(0)]);
        }
        assert_eq!(
            load(s, "20261127").unwrap().record.id,
            "20261127T000000Z-0000"
        );
        assert_eq!(
            load(s, "20261126T101500Z-3fb").unwrap().record.id,
            "20261126T101500Z-3fb9"
        );

        let err = load(s, "20261126T101500Z-3f").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let text = err.render();
        assert!(text.contains("matches 2 runs"), "{text}");

        let err = load(s, "1999").unwrap_err();
        let text = err.render();
        assert_eq!(err.exit_code(), 2);
        assert!(text.contains("`1999`"), "{text}");
        assert!(text.contains("fleetfix runs"), "{text}");
        assert!(load(s, "../runs/x").is_err());
        assert!(load(s, "").is_err());
    }

    #[test]
    fn resume_reruns_everything_that_did_not_finish_ok() {
        let dir = tempfile::tempdir().unwrap();
        crashed_run(dir.path());
        let d = load(dir.path(), "20261126T101500Z-3fa2").unwrap();
        let t = resume_targets(&d);
        assert_eq!(t.playbook, "relay-rollout");
        assert_eq!(t.finished_ok, HashSet::from(["dfw1".to_string()]));
        assert_eq!(t.rerun, ["dfw2", "ord1", "ord2"]);
    }

    #[test]
    fn resume_counts_not_run_and_unreachable_as_unfinished() {
        let dir = tempfile::tempdir().unwrap();
        journal(
            dir.path(),
            "r1",
            0,
            vec![
                started("r1", &["a", "b", "c", "d"], false),
                node_done("a", NodeStatus::Ok, None),
                node_done("b", NodeStatus::Unreachable, Some("timeout")),
                node_done("c", NodeStatus::NotRun, None),
                node_done("d", NodeStatus::Changed, None),
                finished(3),
            ],
        );
        let t = resume_targets(&load(dir.path(), "r1").unwrap());
        assert_eq!(
            t.finished_ok,
            HashSet::from(["a".to_string(), "d".to_string()])
        );
        assert_eq!(t.rerun, ["b", "c"]);
    }

    #[test]
    fn resuming_a_check_run_reruns_drifted_nodes() {
        let dir = tempfile::tempdir().unwrap();
        journal(
            dir.path(),
            "r2",
            0,
            vec![
                started("r2", &["a", "b"], true),
                node_done("a", NodeStatus::Ok, None),
                node_done("b", NodeStatus::Changed, None),
                finished(5),
            ],
        );
        let t = resume_targets(&load(dir.path(), "r2").unwrap());
        assert_eq!(t.rerun, ["b"]);
    }
}
