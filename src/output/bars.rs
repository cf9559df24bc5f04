//! Live progress on a terminal: an overall bar (batch, nodes done/total,
//! failed, elapsed) and a line per node in flight (step, attempt, elapsed).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Reporter;
use crate::events::{Event, NodeStatus, Stamped};
use crate::support::text::human_duration;

/// Runs with more nodes than this print only problems above the bars.
const ECHO_ALL_UP_TO: usize = 50;

pub(crate) struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    max_lines: usize,
    lines: HashMap<Arc<str>, ProgressBar>,
    /// Nodes in flight without a visible line (more than fit on screen).
    waiting: VecDeque<Arc<str>>,
    last_msg: HashMap<Arc<str>, String>,
    failed: usize,
    total: usize,
    batch: String,
}

impl Bars {
    /// `rows` is the terminal height; node lines take what the bar leaves.
    pub(crate) fn new(rows: usize) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        let overall = multi.add(ProgressBar::hidden());
        overall.set_style(
            ProgressStyle::with_template(
                "{prefix:.bold} [{bar:30.cyan/blue}] {pos}/{len} nodes · {msg} · {elapsed_precise}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        Bars {
            multi,
            overall,
            max_lines: rows.saturating_sub(4).clamp(1, 30),
            lines: HashMap::new(),
            waiting: VecDeque::new(),
            last_msg: HashMap::new(),
            failed: 0,
            total: 0,
            batch: String::new(),
        }
    }

    fn node_line(&mut self, node: &Arc<str>) {
        if self.lines.contains_key(node) {
            return;
        }
        if self.lines.len() >= self.max_lines {
            if !self.waiting.contains(node) {
                self.waiting.push_back(node.clone());
            }
            return;
        }
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("  {spinner:.green} {prefix:<16} {msg} {elapsed:.dim}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(node.to_string());
        bar.set_message(
            self.last_msg
                .get(node)
                .cloned()
                .unwrap_or_else(|| "connecting".into()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        self.lines.insert(node.clone(), bar);
    }

    fn overall_msg(&self) {
        let waiting = if self.waiting.is_empty() {
            String::new()
        } else {
            format!(" · {} more in flight", self.waiting.len())
        };
        self.overall
            .set_message(format!("{} failed{waiting}", self.failed));
    }
}

impl Reporter for Bars {
    fn event(&mut self, ev: &Stamped) {
        match &ev.event {
            Event::RunStarted {
                nodes, playbook, ..
            } => {
                self.total = nodes.len();
                self.overall.set_prefix(playbook.clone());
                self.overall_msg();
                self.overall.set_length(nodes.len() as u64);
                self.overall.enable_steady_tick(Duration::from_millis(200));
            }
            Event::BatchStarted { batch, batches, .. } => {
                self.batch = format!("batch {batch}/{batches}");
                self.overall.set_prefix(self.batch.clone());
            }
            Event::NodeStarted { node } => self.node_line(node),
            Event::StepStarted {
                node,
                step,
                index,
                steps,
                attempt,
                on_failure,
            } => {
                let mut msg = format!(
                    "{}step {}/{steps} {step}",
                    if *on_failure { "on_failure " } else { "" },
                    index + 1
                );
                if *attempt > 1 {
                    msg.push_str(&format!(" (attempt {attempt})"));
                }
                if let Some(bar) = self.lines.get(node) {
                    bar.set_message(msg.clone());
                }
                self.last_msg.insert(node.clone(), msg);
            }
            Event::NodeFinished {
                node,
                status,
                error,
                duration_ms,
                ..
            } => {
                if let Some(bar) = self.lines.remove(node) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
                self.waiting.retain(|n| n != node);
                self.last_msg.remove(node);
                if matches!(status, NodeStatus::Failed | NodeStatus::Unreachable) {
                    self.failed += 1;
                }
                let problem = matches!(status, NodeStatus::Failed | NodeStatus::Unreachable);
                if problem || self.total <= ECHO_ALL_UP_TO {
                    let mark = if problem { "✗" } else { "✓" };
                    let mut line = format!(
                        "{mark} {node} {} ({})",
                        status.as_str(),
                        human_duration(*duration_ms)
                    );
                    if let Some(e) = error {
                        line.push_str(&format!(": {e}"));
                    }
                    let _ = self.multi.println(line);
                }
                self.overall.inc(1);
                if let Some(next) = self.waiting.pop_front() {
                    self.node_line(&next);
                }
                self.overall_msg();
            }
            Event::Interrupted { grace_secs, kill } => {
                let _ = self
                    .multi
                    .println(super::interrupted_line(*grace_secs, *kill));
            }
            Event::RunFinished { .. } => {
                for (_, bar) in self.lines.drain() {
                    bar.finish_and_clear();
                }
                self.overall.finish();
                // indicatif leaves the cursor at the end of the bar line; what
                // follows (the summary table) must start on a line of its own.
                eprintln!();
            }
            _ => {}
        }
    }
}
