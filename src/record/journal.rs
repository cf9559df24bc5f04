//! The run journal: every event of a run appended to
//! `<state>/runs/<run-id>.jsonl`, one JSON object per line (SPEC section 7),
//! and read back into a [`RunRecord`] for `fleetfix runs` and `--resume`:
//! the writer and the reader side by side.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::RunRecord;
use crate::events::Reporter;
use crate::events::{Event, Stamped};
use crate::support::error::Error;
use crate::support::state;

/// Appends events to the journal file as they happen.
///
/// It is fed on the executor's thread (see [`crate::events::Inline`]): each
/// event is one whole-line `write` before the executor goes on (SPEC
/// section 7: flushed event by event), so a step is journaled before the
/// node's next step that may change it starts (read-only steps may be sent
/// ahead), and a crash or `SIGKILL` of fleetfix loses
/// nothing that finished. The file is fsynced when the run finishes, so the
/// whole journal also survives a power loss after that.
pub(crate) struct Journal {
    file: File,
    path: PathBuf,
    /// Lines handled but not yet written.
    pending: Vec<u8>,
    /// A full disk should produce one warning, not one per event.
    warned: bool,
}

impl Journal {
    /// Creates `runs/<run_id>.jsonl` under `state_dir` (directories too,
    /// private to the user; the file is mode 0600).
    pub(crate) fn create(state_dir: &Path, run_id: &str) -> Result<Journal, Error> {
        use std::os::unix::fs::OpenOptionsExt;

        if run_id.is_empty() || run_id.contains(['/', '\0']) || run_id.starts_with('.') {
            return Err(Error::Runtime {
                message: format!("invalid run id `{run_id}` for the journal"),
            });
        }
        let dir = state::runs_dir(state_dir);
        let io_error = |what: &str, path: &Path, e: std::io::Error| {
            Error::input(
                format!("cannot {what} {}: {e}", path.display()),
                "set FLEETFIX_STATE_DIR to a directory of your own (not writable by every user)",
            )
        };
        state::create_private_dir(&dir).map_err(|e| io_error("create", &dir, e))?;
        let path = dir.join(format!("{run_id}.jsonl"));
        let file = state::no_follow(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600),
        )
        .open(&path)
        .map_err(|e| io_error("open the journal", &path, e))?;
        // Make the new directory entry itself durable; best effort.
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(Journal {
            file,
            path,
            pending: Vec::new(),
            warned: false,
        })
    }

    /// The journal file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn warn_once(&mut self, e: &dyn std::fmt::Display) {
        if !self.warned {
            self.warned = true;
            tracing::warn!(
                "cannot write the run journal {}: {e}; `fleetfix runs` and --resume will miss part of this run",
                self.path.display()
            );
        }
    }
}

impl Journal {
    /// Writes the pending lines: whole lines only, so readers never see
    /// half of an event unless the disk fills up mid-line (then `runs`
    /// skips that line).
    fn write_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let result = self.file.write_all(&self.pending);
        self.pending.clear();
        if let Err(e) = result {
            self.warn_once(&e);
        }
    }
}

impl Reporter for Journal {
    fn event(&mut self, ev: &Stamped) {
        self.pending.extend_from_slice(ev.json_line());
        if matches!(ev.event, Event::RunFinished { .. }) {
            self.write_pending();
            if let Err(e) = self.file.sync_all() {
                self.warn_once(&e);
            }
        }
    }

    fn idle(&mut self) {
        self.write_pending();
    }

    fn finish(&mut self) {
        // An interrupted run may end without `run_finished`; sync anyway.
        self.write_pending();
        if let Err(e) = self.file.sync_all() {
            self.warn_once(&e);
        }
    }
}

/// Every journaled run, newest first, without its steps. A missing runs
/// directory is no runs; a journal that cannot be read is skipped with a
/// warning.
pub(crate) fn list(state_dir: &Path) -> Result<Vec<RunRecord>, Error> {
    let mut runs = Vec::new();
    for (id, path) in journal_files(state_dir)? {
        match read(&path, &id, false) {
            Ok(run) => runs.push(run),
            Err(why) => tracing::warn!("skipping run journal {}: {why}", path.display()),
        }
    }
    runs.sort_by(|a, b| (b.started, &b.id).cmp(&(a.started, &a.id)));
    Ok(runs)
}

/// One run in full by id, or by a prefix of exactly one id.
pub(crate) fn load(state_dir: &Path, id: &str) -> Result<RunRecord, Error> {
    let (id, path) = resolve(state_dir, id)?;
    read(&path, &id, true).map_err(|why| {
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

/// Event kinds that carry bulky output and that a listing does not need.
fn is_step_line(line: &str) -> bool {
    // `Stamped` serializes `ts` then `event` first: the kind is near the start.
    let head = line.get(..line.len().min(96)).unwrap_or(line);
    head.contains(r#""event":"step_finished""#) || head.contains(r#""event":"step_started""#)
}

/// Reads one journal through [`RunRecord::apply`]. `full = false` skips
/// step lines, for listings.
pub(crate) fn read(path: &Path, id: &str, full: bool) -> Result<RunRecord, String> {
    let text = std::fs::read(path).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut run = RunRecord::new();
    for (i, raw) in lines.iter().enumerate() {
        if !full && is_step_line(raw) {
            continue;
        }
        match serde_json::from_str::<Stamped>(raw) {
            Ok(ev) => run.apply(&ev),
            // The last line of a killed run may be cut short.
            Err(_) if i + 1 == lines.len() => break,
            Err(e) => tracing::warn!("{}: skipping line {}: {e}", path.display(), i + 1),
        }
    }
    if run.started.is_none() {
        return Err("no run_started event in it".into());
    }
    if run.id != id {
        tracing::debug!(
            "{}: run id {} differs from the file name",
            path.display(),
            run.id
        );
    }
    run.id = id.to_string();
    run.path = Some(path.to_path_buf());
    Ok(run)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::events::{ExitCode, NodeCounts, NodeStatus, StepResult, StepStatus, Summary};
    use std::collections::{BTreeMap, HashSet};
    use std::os::unix::fs::PermissionsExt;

    pub(crate) fn ts(secs: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_795_000_000 + secs).unwrap()
    }

    pub(crate) fn step(node: &str, name: &str, status: StepStatus, exit: Option<i32>) -> Event {
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

    pub(crate) fn node_done(node: &str, status: NodeStatus, error: Option<&str>) -> Event {
        Event::NodeFinished {
            node: node.into(),
            status,
            error: error.map(String::from),
            duration_ms: 2000,
            report: BTreeMap::new(),
        }
    }

    pub(crate) fn started(id: &str, nodes: &[&str], check: bool) -> Event {
        Event::RunStarted {
            run_id: id.into(),
            playbook: "relay-rollout".into(),
            nodes: nodes.iter().map(|&n| n.into()).collect(),
            batches: vec![1, nodes.len().saturating_sub(1)],
            check,
            user: String::new(),
            host: String::new(),
        }
    }

    pub(crate) fn finished(exit_code: ExitCode) -> Event {
        Event::RunFinished {
            summary: Summary {
                exit_code,
                ..Default::default()
            },
        }
    }

    /// Journals `events` as run `id`, the n-th at `start + n` seconds.
    pub(crate) fn journal(state: &Path, id: &str, start: i64, events: Vec<Event>) {
        let mut j = Journal::create(state, id).unwrap();
        for (n, event) in events.into_iter().enumerate() {
            j.event(&Stamped::new(ts(start + n as i64), event));
        }
        j.finish();
    }

    /// A run that crashed after dfw1 changed and dfw2 failed, with ord1 and
    /// ord2 never finished.
    pub(crate) fn crashed_run(state: &Path) {
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

    /// A stopped run with a changed, an unreachable and a not-run node, and
    /// a failed gate.
    pub(crate) fn gated_run() -> Vec<Event> {
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
                    exit_code: ExitCode::Stopped,
                    stopped: Some(crate::events::StopReason::Gate(
                        "gate `endpoint` failed".into(),
                    )),
                    ..Default::default()
                },
            },
        ]
    }

    #[test]
    fn writes_every_event_as_a_line_with_private_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::create(dir.path(), "20261126T101500Z-3fa2").unwrap();
        let events = [
            Event::NodeStarted { node: "a".into() },
            Event::StepStarted {
                node: "a".into(),
                step: "s".into(),
                index: 0,
                steps: 1,
                attempt: 1,
                on_failure: false,
            },
            Event::BatchFinished { batch: 1 },
        ];
        let mut written = 0;
        for event in events {
            j.event(&Stamped::new(jiff::Timestamp::UNIX_EPOCH, event));
            // Visible to another reader once the writer is idle, without
            // any drop or sync.
            j.idle();
            let len = std::fs::metadata(j.path()).unwrap().len();
            assert!(len > written);
            written = len;
        }
        let text = std::fs::read_to_string(j.path()).unwrap();
        let kinds: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"].to_string())
            .collect();
        assert_eq!(
            kinds,
            ["\"node_started\"", "\"step_started\"", "\"batch_finished\""]
        );
        let mode = std::fs::metadata(j.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            j.path(),
            dir.path().join("runs/20261126T101500Z-3fa2.jsonl")
        );
    }

    #[test]
    fn rejects_ids_that_would_escape_the_runs_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Journal::create(dir.path(), "../x").is_err());
        assert!(Journal::create(dir.path(), "").is_err());
    }

    #[test]
    fn unwritable_state_dir_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "").unwrap();
        let Err(e) = Journal::create(&file, "r") else {
            panic!("expected an error")
        };
        assert!(e.to_string().contains("not-a-dir"), "{e}");
    }

    #[test]
    fn journal_round_trips_into_load() {
        let dir = tempfile::tempdir().unwrap();
        journal(dir.path(), "20261126T101500Z-aaaa", 0, gated_run());
        let r = load(dir.path(), "20261126T101500Z-aaaa").unwrap();
        assert_eq!(r.playbook, "relay-rollout");
        assert_eq!(r.started, Some(ts(0)));
        assert_eq!(r.finished, Some(ts(7)));
        assert_eq!(
            (r.exit_code(), r.outcome()),
            (Some(ExitCode::Stopped), "stopped")
        );
        assert_eq!(
            r.stopped().map(|s| s.to_string()).as_deref(),
            Some("gate `endpoint` failed")
        );
        assert!(matches!(
            r.stopped(),
            Some(crate::events::StopReason::Gate(_))
        ));
        assert_eq!(r.selected, 3);
        assert_eq!(
            r.counts(),
            NodeCounts {
                changed: 1,
                unreachable: 1,
                not_run: 1,
                ..Default::default()
            }
        );
        let names: Vec<_> = r.nodes.iter().map(|n| &*n.name).collect();
        assert_eq!(names, ["a", "b", "c"]);
        let a = &r.nodes[0];
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
        assert_eq!(r.nodes[1].error.as_deref(), Some("connection refused"));
        assert_eq!(r.gates.len(), 1);
        assert!(!r.gates[0].ok);
    }

    #[test]
    fn a_journal_reads_back_into_the_record_of_the_live_run() {
        let dir = tempfile::tempdir().unwrap();
        let id = "20261126T101500Z-3fa2";
        let mut events = vec![
            started(id, &["dfw1", "dfw2", "ord1"], true),
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
                steps: 2,
                attempt: 1,
                on_failure: false,
            },
            step("dfw1", "pull", StepStatus::WouldRun, None),
            Event::NodeFinished {
                node: "dfw1".into(),
                status: NodeStatus::Changed,
                error: None,
                duration_ms: 9,
                report: [("running_image".to_string(), "v2".to_string())].into(),
            },
            Event::BatchFinished { batch: 1 },
        ];
        events.extend(gated_run().into_iter().skip(1));
        events.push(Event::Interrupted {
            grace_secs: 10,
            kill: false,
        });
        let mut live = RunRecord::new();
        let mut j = Journal::create(dir.path(), id).unwrap();
        for (n, event) in events.into_iter().enumerate() {
            let ev = Stamped::new(ts(n as i64), event);
            j.event(&ev);
            j.idle();
            live.apply(&ev);
        }
        j.finish();
        let mut read = load(dir.path(), id).unwrap();
        assert_eq!(read.path.take(), Some(j.path().to_path_buf()));
        assert_eq!(read, live);
        assert_eq!(read.nodes.len(), 6);
        assert_eq!(read.nodes[0].report["running_image"], "v2");
    }

    #[test]
    fn a_lean_record_keeps_the_output_of_failed_steps_only() {
        let mut r = RunRecord::lean();
        for e in [
            step("a", "pull", StepStatus::Changed, Some(0)),
            step("a", "swap", StepStatus::Failed, Some(1)),
        ] {
            r.apply(&Stamped::new(ts(0), e));
        }
        let out: Vec<_> = r.nodes[0]
            .steps
            .iter()
            .map(|s| (s.stdout.as_str(), s.stderr.as_str()))
            .collect();
        assert_eq!(out, [("", ""), ("out", "err")]);
    }

    #[test]
    fn crashed_run_is_incomplete_and_tolerates_a_cut_last_line() {
        let dir = tempfile::tempdir().unwrap();
        crashed_run(dir.path());
        let path = state::runs_dir(dir.path()).join("20261126T101500Z-3fa2.jsonl");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(r#"{"ts":"2026-11-26T10:15:09Z","event":"node_fini"#);
        std::fs::write(&path, text).unwrap();

        let r = load(dir.path(), "20261126T101500Z-3fa2").unwrap();
        assert_eq!(r.outcome(), "incomplete");
        assert_eq!(r.finished, None);
        assert_eq!(r.nodes.len(), 4);
        assert_eq!(r.nodes[2].status, None);
        assert_eq!(r.nodes[2].steps.len(), 1);
        let runs = list(dir.path()).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].counts().describe(), "1 changed, 1 failed");
        assert!(runs[0].nodes.iter().all(|n| n.steps.is_empty()));
    }

    #[test]
    fn an_older_journal_without_newer_fields_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let runs = state::runs_dir(dir.path());
        std::fs::create_dir_all(&runs).unwrap();
        std::fs::write(
            runs.join("old.jsonl"),
            concat!(
                r#"{"ts":"2026-11-26T10:15:00Z","event":"run_started","run_id":"old","playbook":"p"}"#,
                "\n",
                r#"{"ts":"2026-11-26T10:15:01Z","event":"step_finished","node":"a","step":"s","status":"ok"}"#,
                "\n",
                r#"{"ts":"2026-11-26T10:15:02Z","event":"node_finished","node":"a","status":"ok"}"#,
                "\n",
                r#"{"ts":"2026-11-26T10:15:03Z","event":"run_finished","summary":{"exit_code":3,"stopped":"failed budget spent: 1 of 1 nodes failed (max_failed = 0)"}}"#,
                "\n",
            ),
        )
        .unwrap();
        let r = load(dir.path(), "old").unwrap();
        assert_eq!(r.outcome(), "stopped");
        assert!(matches!(
            r.stopped(),
            Some(crate::events::StopReason::Budget(_))
        ));
        assert_eq!(r.nodes[0].steps[0].status, StepStatus::Ok);
        assert_eq!(r.nodes[0].status, Some(NodeStatus::Ok));
    }

    #[test]
    fn list_is_newest_first_and_skips_unreadable_journals() {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path();
        journal(
            s,
            "20261126T101500Z-0001",
            0,
            vec![started("x", &["a"], false), finished(ExitCode::Ok)],
        );
        journal(
            s,
            "20261127T080000Z-0002",
            86_000,
            vec![started("x", &["a"], true), finished(ExitCode::Drift)],
        );
        journal(
            s,
            "20261126T120000Z-0003",
            7_000,
            vec![started("x", &["a"], false), finished(ExitCode::Failed)],
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
    }

    #[test]
    fn missing_runs_dir_lists_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(list(dir.path()).unwrap().is_empty());
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
            journal(
                s,
                id,
                0,
                vec![started(id, &["a"], false), finished(ExitCode::Ok)],
            );
        }
        assert_eq!(load(s, "20261127").unwrap().id, "20261127T000000Z-0000");
        assert_eq!(
            load(s, "20261126T101500Z-3fb").unwrap().id,
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
        let r = load(dir.path(), "20261126T101500Z-3fa2").unwrap();
        let t = crate::record::resume_targets(&r);
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
                finished(ExitCode::Stopped),
            ],
        );
        let t = crate::record::resume_targets(&load(dir.path(), "r1").unwrap());
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
                finished(ExitCode::Drift),
            ],
        );
        let t = crate::record::resume_targets(&load(dir.path(), "r2").unwrap());
        assert_eq!(t.rerun, ["b"]);
    }
}
