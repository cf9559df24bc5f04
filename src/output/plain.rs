//! Output without a terminal: one plain line per step result, and the
//! grouped per-node output of `fleetfix exec`.

use std::io::Write;

use super::Reporter;
use crate::events::{Event, Stamped, StepStatus};
use crate::support::text::{human_duration, last_lines};

/// One line per step result (and per unreachable node), for logs and cron.
#[derive(Default)]
pub(crate) struct PlainLines;

impl Reporter for PlainLines {
    fn event(&mut self, ev: &Stamped) {
        let mut out = std::io::stdout().lock();
        let _ = match &ev.event {
            Event::StepFinished(s) => {
                let mut line = format!(
                    "{} {:<8} {}{} ({}",
                    s.node,
                    s.status.as_str(),
                    if s.on_failure { "on_failure: " } else { "" },
                    s.step,
                    human_duration(s.duration_ms)
                );
                if s.attempt > 1 {
                    line.push_str(&format!(", attempt {}", s.attempt));
                }
                if let Some(code) = s.exit.filter(|_| s.status == StepStatus::Failed) {
                    line.push_str(&format!(", exit {code}"));
                }
                line.push(')');
                if let (StepStatus::Failed, Some(err)) = (s.status, &s.error) {
                    line.push_str(&format!(": {err}"));
                }
                writeln!(out, "{line}")
            }
            Event::NodeFinished {
                node,
                status,
                error: Some(err),
                ..
            } if status.as_str() == "unreachable" => writeln!(out, "{node} unreachable: {err}"),
            Event::Interrupted { grace_secs, kill } => {
                writeln!(out, "{}", super::interrupted_line(*grace_secs, *kill))
            }
            Event::BatchStarted {
                batch,
                batches,
                nodes,
            } if *batches > 1 => {
                writeln!(out, "batch {batch}/{batches}: {} nodes", nodes.len())
            }
            _ => Ok(()),
        };
    }
}

/// `fleetfix exec`: each node's output as one block once it finished.
#[derive(Default)]
pub(crate) struct ExecGrouped;

impl Reporter for ExecGrouped {
    fn event(&mut self, ev: &Stamped) {
        let mut out = std::io::stdout().lock();
        match &ev.event {
            Event::StepFinished(s) => {
                let code = s
                    .exit
                    .map(|c| format!("exit {c}"))
                    .unwrap_or_else(|| "no exit code".into());
                let _ = writeln!(
                    out,
                    "── {} ({code}, {}) ──",
                    s.node,
                    human_duration(s.duration_ms)
                );
                if !s.stdout.is_empty() {
                    let _ = write!(out, "{}", s.stdout);
                    if !s.stdout.ends_with('\n') {
                        let _ = writeln!(out);
                    }
                }
                if !s.stderr.is_empty() {
                    for line in s.stderr.lines() {
                        let _ = writeln!(out, "stderr: {line}");
                    }
                }
                if let (StepStatus::Failed, Some(err)) = (s.status, &s.error) {
                    let _ = writeln!(out, "error: {}", last_lines(err, 3));
                }
            }
            Event::NodeFinished {
                node,
                status,
                error: Some(err),
                ..
            } if status.as_str() == "unreachable" => {
                let _ = writeln!(out, "── {node} (unreachable) ──\n{err}");
            }
            Event::Interrupted { grace_secs, kill } => {
                let _ = writeln!(out, "{}", super::interrupted_line(*grace_secs, *kill));
            }
            _ => {}
        }
    }
}
