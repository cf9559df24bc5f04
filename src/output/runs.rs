//! `fleetfix runs [ID]`: the recorded runs as a table, or one run in full,
//! rendered from their [`RunRecord`]s.

use comfy_table::{Cell, ContentArrangement};

use super::table;
use crate::events::NodeStatus;
use crate::record::RunRecord;
use crate::support::text::human_duration;

/// `2026-11-26 10:15:00Z`: compact, sortable, unambiguous.
fn when(ts: Option<jiff::Timestamp>) -> String {
    ts.map(|ts| ts.strftime("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// The `fleetfix runs` table.
pub(crate) fn render_list(runs: &[RunRecord]) -> String {
    if runs.is_empty() {
        return "no runs recorded yet".to_string();
    }
    let mut t = table(
        ["id", "playbook", "started", "outcome", "nodes", "counts"],
        ContentArrangement::Dynamic,
    );
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
            Cell::new(r.selected),
            Cell::new(r.counts().describe()),
        ]);
    }
    t.to_string()
}

/// The `fleetfix runs ID` view: header, node table, then each node's steps.
pub(crate) fn render_detail(r: &RunRecord) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: &str| out.push_str(&format!("{k:<9} {v}\n"));
    line("run", &r.id);
    line(
        "playbook",
        &format!("{}{}", r.playbook, if r.check { " (--check)" } else { "" }),
    );
    line("started", &when(r.started));
    match (r.finished, r.exit_code()) {
        (Some(f), Some(code)) => {
            let started = r.started.map_or(0, |s| s.as_millisecond());
            let took = (f.as_millisecond() - started).max(0) as u64;
            line(
                "finished",
                &format!("{} ({})", when(Some(f)), human_duration(took)),
            );
            line("outcome", &format!("{} (exit {code})", r.outcome()));
        }
        _ => line(
            "outcome",
            "incomplete: no run_finished in the journal (still running, or crashed)",
        ),
    }
    if let Some(why) = r.stopped() {
        line("stopped", why.describe());
    }
    let counts = r.counts().describe();
    line(
        "nodes",
        &format!(
            "{}{}{}",
            r.selected,
            if counts.is_empty() { "" } else { ": " },
            counts
        ),
    );
    let journal = r.path.as_ref().map(|p| p.display().to_string());
    line("journal", journal.as_deref().unwrap_or(""));

    let mut t = table(
        ["node", "status", "steps", "time", "error"],
        ContentArrangement::Dynamic,
    );
    for n in &r.nodes {
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

    if !r.gates.is_empty() {
        let mut t = table(
            ["batch", "gate", "result", "attempt", "time", "error"],
            ContentArrangement::Dynamic,
        );
        for g in &r.gates {
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

    for n in r.nodes.iter().filter(|n| !n.steps.is_empty()) {
        let mut t = table(
            ["step", "status", "attempt", "exit", "time", "error"],
            ContentArrangement::Dynamic,
        );
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
    use crate::events::ExitCode;
    use crate::record::journal::tests::{crashed_run, finished, gated_run, journal, started};
    use crate::record::{list, load};

    #[test]
    fn the_detail_shows_outcome_stop_nodes_gates_and_steps() {
        let dir = tempfile::tempdir().unwrap();
        journal(dir.path(), "20261126T101500Z-aaaa", 0, gated_run());
        let text = render_detail(&load(dir.path(), "20261126T101500Z-aaaa").unwrap());
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
    fn a_crashed_run_shows_as_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        crashed_run(dir.path());
        let r = load(dir.path(), "20261126T101500Z-3fa2").unwrap();
        assert!(render_detail(&r).contains("incomplete"));
    }

    #[test]
    fn the_list_shows_ids_check_runs_and_outcomes() {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path();
        journal(
            s,
            "20261127T080000Z-0002",
            86_000,
            vec![started("x", &["a"], true), finished(ExitCode::Drift)],
        );
        let table = render_list(&list(s).unwrap());
        assert!(table.contains("20261127T080000Z-0002"), "{table}");
        assert!(table.contains("relay-rollout (check)"), "{table}");
        assert!(table.contains("drift"), "{table}");
    }

    #[test]
    fn no_runs_say_so() {
        assert_eq!(render_list(&[]), "no runs recorded yet");
    }
}
