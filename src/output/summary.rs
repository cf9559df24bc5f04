//! The final summary: a table of the fleet's state at a glance that fits
//! the terminal, then each failure in full, one line per node and step.

use comfy_table::{Cell, ColumnConstraint, ContentArrangement, Table, Width};

use super::Finisher;
use crate::events::{NodeStatus, StepStatus, Summary};
use crate::record::{NodeRecord, RunRecord};
use crate::support::text::{human_duration, last_lines};

/// What the summary shows of one node, from its record.
#[derive(Debug, Default, Clone)]
struct Row {
    status: Option<NodeStatus>,
    counts: [usize; 4],
    duration_ms: u64,
    /// Its failed steps, or why it was unreachable, one line each.
    failures: Vec<String>,
    report: std::collections::BTreeMap<String, String>,
}

impl Row {
    fn of(n: &NodeRecord) -> Row {
        let mut row = Row {
            status: n.status,
            duration_ms: n.duration_ms.unwrap_or(0),
            report: n.report.clone(),
            ..Row::default()
        };
        for s in &n.steps {
            // Under --check, `would_run` counts as changed, `would_skip` as skipped.
            let i = match s.status {
                StepStatus::Ok => 0,
                StepStatus::Changed | StepStatus::WouldRun => 1,
                StepStatus::Skipped | StepStatus::WouldSkip => 2,
                StepStatus::Failed => 3,
            };
            row.counts[i] += 1;
            if s.status == StepStatus::Failed {
                row.failures.push(failure_line(s));
            }
        }
        if n.status == Some(NodeStatus::Unreachable)
            && let Some(e) = &n.error
        {
            row.failures.push(format!("unreachable: {}", one_line(e)));
        }
        row
    }
}

/// Prints the summary of the run's record when the run finishes.
pub(crate) struct SummaryTable {
    report_vars: Vec<String>,
    width: Option<u16>,
}

/// One rendering: the rows of the nodes `run_started` listed, in its order.
struct View<'a> {
    report_vars: &'a [String],
    rows: Vec<(&'a str, Row)>,
    summary: Option<&'a Summary>,
}

impl SummaryTable {
    /// `width`: the terminal's columns (none: not a terminal, no limit).
    pub(crate) fn new(report_vars: Vec<String>, width: Option<u16>) -> Self {
        SummaryTable { report_vars, width }
    }

    /// The table, the report values that did not fit it, the failures and
    /// the closing line, as text.
    pub(crate) fn render(&self, run: &RunRecord) -> String {
        View {
            report_vars: &self.report_vars,
            rows: run
                .listed_nodes()
                .iter()
                .map(|n| (&*n.name, Row::of(n)))
                .collect(),
            summary: run.summary.as_ref(),
        }
        .render(self.width)
    }
}

impl View<'_> {
    /// The table, the report values that did not fit it, the failures and
    /// the closing line, as text.
    fn render(&self, width: Option<u16>) -> String {
        let limit = width.map(usize::from).unwrap_or(usize::MAX);
        // Report values are columns when the table still fits; else a line
        // per node under it.
        let mut text = self.table(true);
        let inline = widest(&text) <= limit;
        if !inline {
            text = self.table(false);
        }
        if widest(&text) > limit {
            text = self.squeezed(limit);
        }
        // Node names padded alike (up to a point), so the lines under the
        // table align.
        let pad = self
            .rows
            .iter()
            .map(|(n, _)| n.chars().count())
            .max()
            .unwrap_or(0)
            .min(16);
        if !inline && !self.report_vars.is_empty() {
            text.push_str("\nreport:");
            for (name, row) in &self.rows {
                let values: Vec<String> = self
                    .report_vars
                    .iter()
                    .map(|v| format!("{v}={}", shown(row.report.get(v))))
                    .collect();
                text.push_str(&format!("\n  {name:pad$}  {}", values.join("  ")));
            }
        }
        let failures: Vec<(&str, &String)> = self
            .rows
            .iter()
            .flat_map(|(n, r)| r.failures.iter().map(move |f| (*n, f)))
            .collect();
        if !failures.is_empty() {
            text.push_str("\nfailed:");
            for (node, line) in failures {
                text.push_str(&format!("\n  {node:pad$}  {line}"));
            }
        }
        if let Some(s) = self.summary {
            if let Some(why) = &s.stopped {
                text.push_str(&format!("\nstopped: {why}"));
            }
            text.push('\n');
            text.push_str(&closing_line(s));
        }
        text
    }

    /// The table at its natural width, with or without the report columns.
    fn table(&self, with_report: bool) -> String {
        self.build(with_report).to_string()
    }

    /// The table without report columns, its cells wrapped to `limit`
    /// (long node names); no header word is ever split.
    fn squeezed(&self, limit: usize) -> String {
        let mut table = self.build(false);
        table.set_content_arrangement(ContentArrangement::Dynamic);
        table.set_width(limit.min(u16::MAX as usize) as u16);
        let headers: Vec<usize> = table
            .header()
            .map(|h| h.cell_iter().map(|c| c.content().chars().count()).collect())
            .unwrap_or_default();
        for (col, w) in table.column_iter_mut().zip(headers) {
            col.set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(w as u16)));
        }
        table.to_string()
    }

    fn build(&self, with_report: bool) -> Table {
        let mut header = vec![
            "node", "status", "ok", "changed", "skipped", "failed", "time",
        ];
        if with_report {
            header.extend(self.report_vars.iter().map(String::as_str));
        }
        let mut table = super::table(header, ContentArrangement::Disabled);
        for (name, row) in &self.rows {
            let status = row.status.map(NodeStatus::as_str).unwrap_or("not_run");
            let mut cells = vec![Cell::new(name), Cell::new(status)];
            cells.extend(row.counts.iter().map(Cell::new));
            cells.push(Cell::new(human_duration(row.duration_ms)));
            if with_report {
                for v in self.report_vars {
                    cells.push(Cell::new(shown(row.report.get(v))));
                }
            }
            table.add_row(cells);
        }
        table
    }
}

/// An empty value ("no version header") shows as `-`, so a blank never
/// hides it.
fn shown(value: Option<&String>) -> &str {
    match value.map(String::as_str) {
        None | Some("") => "-",
        Some(v) => v,
    }
}

/// The display width of the widest line.
fn widest(text: &str) -> usize {
    text.lines()
        .map(console::measure_text_width)
        .max()
        .unwrap_or(0)
}

/// One failed step, in full on one line: `step (exit 3): why ⏎ stderr`.
fn failure_line(s: &crate::events::StepResult) -> String {
    let mut d = format!(
        "{}{}",
        if s.on_failure { "on_failure " } else { "" },
        s.step
    );
    let says_exit = s
        .error
        .as_deref()
        .is_some_and(|e| e.starts_with("exit code"));
    if let Some(c) = s.exit.filter(|_| !says_exit) {
        d.push_str(&format!(" (exit {c})"));
    }
    if let Some(e) = &s.error {
        d.push_str(&format!(": {}", one_line(e)));
    }
    let tail = last_lines(&s.stderr, 3);
    if !tail.is_empty() {
        d.push_str(" ⏎ ");
        d.push_str(&one_line(&tail));
    }
    d
}

/// Line breaks shown as ` ⏎ `, so one failure stays one line.
fn one_line(text: &str) -> String {
    text.trim()
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join(" ⏎ ")
}

/// `5 nodes: 3 changed, 1 ok, 1 failed · 2.1s · exit 1`
pub(crate) fn closing_line(s: &Summary) -> String {
    format!(
        "{} nodes: {} · {} · exit {}",
        s.nodes,
        s.counts.describe(),
        human_duration(s.duration_ms),
        s.exit_code
    )
}

impl Finisher for SummaryTable {
    fn finish(&mut self, run: &RunRecord) {
        if run.summary.is_some() {
            super::println(&self.render(run));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, ExitCode, Stamped, StepResult};

    /// A summary and the record of a run it renders.
    struct Fixture(SummaryTable, RunRecord);

    impl Fixture {
        fn render(&self) -> String {
            self.0.render(&self.1)
        }
    }

    fn at(event: Event) -> Stamped {
        Stamped::new(jiff::Timestamp::UNIX_EPOCH, event)
    }

    fn step(node: &str, name: &str, status: StepStatus, exit: Option<i32>, stderr: &str) -> Event {
        Event::StepFinished(StepResult {
            node: node.into(),
            step: name.into(),
            index: 0,
            on_failure: false,
            status,
            attempt: 1,
            exit,
            stdout: String::new(),
            stderr: stderr.into(),
            duration_ms: 5,
            error: (status == StepStatus::Failed)
                .then(|| format!("exit code {}, expected 0", exit.unwrap_or(0))),
        })
    }

    fn finished(node: &str, status: NodeStatus, error: Option<&str>, image: &str) -> Event {
        Event::NodeFinished {
            node: node.into(),
            status,
            error: error.map(String::from),
            duration_ms: 1234,
            report: [("running_image".to_string(), image.to_string())].into(),
        }
    }

    /// A run like the demo's: report values, a failure with stderr, a
    /// rollback that failed too, an unreachable node with a long error.
    fn demo_like(width: u16, node_name: &str) -> Fixture {
        let t = SummaryTable::new(
            vec!["previous".into(), "serving".into(), "restored".into()],
            Some(width),
        );
        let report = |p: &str, s: &str, r: &str| {
            [
                ("previous".to_string(), p.to_string()),
                ("serving".to_string(), s.to_string()),
                ("restored".to_string(), r.to_string()),
            ]
            .into()
        };
        let mut rollback = step("dfw2", "restore", StepStatus::Failed, Some(2), "no image\n");
        if let Event::StepFinished(s) = &mut rollback {
            s.on_failure = true;
        }
        let events = [
            Event::RunStarted {
                run_id: "r".into(),
                playbook: "p".into(),
                nodes: vec![node_name.into(), "dfw2".into(), "ord1".into()],
                batches: vec![3],
                check: false,
                user: String::new(),
                host: String::new(),
            },
            step(node_name, "pull image", StepStatus::Changed, Some(0), ""),
            step(node_name, "inspect", StepStatus::Ok, Some(0), ""),
            Event::NodeFinished {
                node: node_name.into(),
                status: NodeStatus::Changed,
                error: None,
                duration_ms: 1234,
                report: report("0.1.0", "0.2.0", ""),
            },
            step(
                "dfw2",
                "pull image",
                StepStatus::Failed,
                Some(1),
                "pulling\nError: manifest unknown\n",
            ),
            rollback,
            Event::NodeFinished {
                node: "dfw2".into(),
                status: NodeStatus::Failed,
                error: Some("step `pull image` failed".into()),
                duration_ms: 2345,
                report: report("0.1.0", "", "0.1.0"),
            },
            finished(
                "ord1",
                NodeStatus::Unreachable,
                Some(
                    "HOST KEY CHANGED for ord1:22: it presented ssh-ed25519 SHA256:abc, which \
                     differs from the key at known_hosts:3; this may be an attack",
                ),
                "",
            ),
            Event::RunFinished {
                summary: Summary {
                    nodes: 3,
                    counts: crate::events::NodeCounts {
                        changed: 1,
                        failed: 1,
                        unreachable: 1,
                        ..Default::default()
                    },
                    exit_code: ExitCode::Failed,
                    duration_ms: 1500,
                    ..Default::default()
                },
            },
        ];
        let mut run = RunRecord::new();
        for e in events {
            run.apply(&at(e));
        }
        Fixture(t, run)
    }

    /// The table (from its top border to its bottom one) fits `width`.
    fn assert_table_fits(text: &str, width: usize) {
        let table: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with('┌'))
            .take_while(|l| !l.starts_with("report:") && !l.starts_with("failed:"))
            .collect();
        assert!(!table.is_empty(), "{text}");
        for line in table {
            assert!(
                console::measure_text_width(line) <= width,
                "wider than {width}: {line}"
            );
        }
    }

    #[test]
    fn at_80_columns_the_table_fits_and_report_values_go_under_it() {
        let text = demo_like(80, "dfw1").render();
        assert_table_fits(&text, 80);
        assert!(text.contains("\nreport:\n  dfw1  previous=0.1.0  serving=0.2.0  restored=-"));
        insta::assert_snapshot!(text);
    }

    #[test]
    fn at_132_columns_report_values_are_columns() {
        let text = demo_like(132, "dfw1").render();
        assert_table_fits(&text, 132);
        assert!(!text.contains("report:"), "{text}");
        insta::assert_snapshot!(text);
    }

    #[test]
    fn a_long_node_name_wraps_in_its_cell_not_the_headers() {
        let name = "node-with-a-very-long-name-in-dallas-dfw1.relaynet.online";
        let text = demo_like(80, name).render();
        assert_table_fits(&text, 80);
        assert!(text.contains("│ node "), "{text}");
        assert!(
            text.contains(" changed "),
            "no header word is split: {text}"
        );
        assert!(
            text.contains(&format!("report:\n  {name}  previous=0.1.0")),
            "{text}"
        );
        insta::assert_snapshot!(text);
    }

    #[test]
    fn every_failure_is_one_line_in_full() {
        let text = demo_like(80, "dfw1").render();
        let failed: Vec<&str> = text
            .lines()
            .skip_while(|l| *l != "failed:")
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .collect();
        assert_eq!(
            failed,
            [
                "  dfw2  pull image: exit code 1, expected 0 ⏎ pulling ⏎ Error: manifest unknown",
                "  dfw2  on_failure restore: exit code 2, expected 0 ⏎ no image",
                "  ord1  unreachable: HOST KEY CHANGED for ord1:22: it presented ssh-ed25519 SHA256:abc, which differs from the key at known_hosts:3; this may be an attack",
            ]
        );
    }
}
