//! The final summary table: the fleet's state at a glance.

use std::collections::HashMap;
use std::sync::Arc;

use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{Cell, ContentArrangement, Table};

use super::{Reporter, human_duration, last_lines};
use crate::events::{Event, NodeStatus, Stamped, StepStatus, Summary};

/// What the table shows of one node.
#[derive(Debug, Default, Clone)]
struct Row {
    status: Option<NodeStatus>,
    counts: [usize; 4],
    duration_ms: u64,
    detail: String,
    report: std::collections::BTreeMap<String, String>,
}

/// Builds the table from events and prints it when the run finishes.
pub struct SummaryTable {
    report_vars: Vec<String>,
    order: Vec<Arc<str>>,
    rows: HashMap<Arc<str>, Row>,
    summary: Option<Summary>,
    width: Option<u16>,
}

impl SummaryTable {
    pub fn new(report_vars: Vec<String>, width: Option<u16>) -> Self {
        SummaryTable {
            report_vars,
            order: Vec::new(),
            rows: HashMap::new(),
            summary: None,
            width,
        }
    }

    /// The table and the closing line, as text.
    pub fn render(&self) -> String {
        let mut table = Table::new();
        table.load_preset(UTF8_BORDERS_ONLY);
        table.set_content_arrangement(ContentArrangement::Dynamic);
        if let Some(w) = self.width {
            table.set_width(w);
        }
        let mut header = vec![
            "node", "status", "ok", "changed", "skipped", "failed", "time",
        ];
        header.extend(self.report_vars.iter().map(String::as_str));
        header.push("detail");
        table.set_header(header);
        for name in &self.order {
            let row = self.rows.get(name).cloned().unwrap_or_default();
            let status = row.status.map(NodeStatus::as_str).unwrap_or("not_run");
            let mut cells = vec![Cell::new(name), Cell::new(status)];
            cells.extend(row.counts.iter().map(Cell::new));
            cells.push(Cell::new(human_duration(row.duration_ms)));
            // An empty value ("no version header") shows as `-`, so a blank
            // cell never hides it.
            for v in &self.report_vars {
                let value = row.report.get(v).map(String::as_str).unwrap_or("");
                cells.push(Cell::new(if value.is_empty() { "-" } else { value }));
            }
            cells.push(Cell::new(&row.detail));
            table.add_row(cells);
        }
        let mut text = table.to_string();
        if let Some(s) = &self.summary {
            text.push('\n');
            text.push_str(&closing_line(s));
        }
        text
    }
}

/// `5 nodes: 3 changed, 1 ok, 1 failed · 2.1s · exit 1`
pub fn closing_line(s: &Summary) -> String {
    format!(
        "{} nodes: {} · {} · exit {}",
        s.nodes,
        s.counts.describe(),
        human_duration(s.duration_ms),
        s.exit_code
    )
}

impl Reporter for SummaryTable {
    fn event(&mut self, ev: &Stamped) {
        match &ev.event {
            Event::RunStarted { nodes, .. } => self.order = nodes.clone(),
            Event::StepFinished(s) => {
                let row = self.rows.entry(s.node.clone()).or_default();
                // Under --check, `would_run` counts as changed, `would_skip` as skipped.
                let i = match s.status {
                    StepStatus::Ok => 0,
                    StepStatus::Changed | StepStatus::WouldRun => 1,
                    StepStatus::Skipped | StepStatus::WouldSkip => 2,
                    StepStatus::Failed => 3,
                };
                row.counts[i] += 1;
                if s.status == StepStatus::Failed && row.detail.is_empty() {
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
                        d.push_str(&format!(": {e}"));
                    }
                    let tail = last_lines(&s.stderr, 3);
                    if !tail.is_empty() {
                        d.push('\n');
                        d.push_str(&tail);
                    }
                    row.detail = d;
                }
            }
            Event::NodeFinished {
                node,
                status,
                error,
                duration_ms,
                report,
            } => {
                let row = self.rows.entry(node.clone()).or_default();
                row.status = Some(*status);
                row.duration_ms = *duration_ms;
                row.report = report.clone();
                if *status == NodeStatus::Unreachable
                    && let Some(e) = error
                {
                    row.detail = e.clone();
                }
            }
            Event::RunFinished { summary } => self.summary = Some(summary.clone()),
            _ => {}
        }
    }

    fn finish(&mut self) {
        if self.summary.is_some() {
            println!("{}", self.render());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::StepResult;

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

    #[test]
    fn table_shows_status_counts_report_vars_and_failure_detail() {
        let mut t = SummaryTable::new(vec!["running_image".into()], Some(140));
        let events = [
            Event::RunStarted {
                run_id: "r".into(),
                playbook: "p".into(),
                nodes: vec!["dfw1".into(), "dfw2".into(), "ord1".into()],
                batches: vec![3],
                check: false,
            },
            step("dfw1", "pull image", StepStatus::Changed, Some(0), ""),
            step("dfw1", "inspect", StepStatus::Ok, Some(0), ""),
            finished("dfw1", NodeStatus::Changed, None, "relay:sha-39a4e17"),
            step(
                "dfw2",
                "pull image",
                StepStatus::Failed,
                Some(1),
                "pulling\nError: manifest unknown\n",
            ),
            finished(
                "dfw2",
                NodeStatus::Failed,
                Some("step `pull image` failed"),
                "relay:sha-old",
            ),
            finished(
                "ord1",
                NodeStatus::Unreachable,
                Some("connection refused by ord1:22"),
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
                    exit_code: 1,
                    duration_ms: 1500,
                    ..Default::default()
                },
            },
        ];
        for e in events {
            t.event(&at(e));
        }
        insta::assert_snapshot!(t.render());
    }
}
