//! Did the demo go as staged? A consumer of the run's event stream: the
//! nodes told to fail must have failed and been rolled back, every other
//! node must run the new version. The demo exits 0 when it did, so its
//! staged failure does not read as a broken demo.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::events::Stamped;
use crate::events::{Event, NodeStatus, StepStatus};
use crate::output::Reporter;

#[derive(Debug, Default)]
struct Seen {
    status: BTreeMap<String, NodeStatus>,
    /// Nodes with an `[[on_failure]]` step that failed.
    rollback_failed: Vec<String>,
    /// Nodes with an `[[on_failure]]` step that ran.
    rolled_back: Vec<String>,
}

/// Collects what the demo run did; clone it to keep a handle.
#[derive(Debug, Clone)]
pub struct Verdict {
    staged: Vec<String>,
    seen: Arc<Mutex<Seen>>,
}

impl Verdict {
    pub fn new(staged: Vec<String>) -> Self {
        Verdict {
            staged,
            seen: Arc::default(),
        }
    }

    /// The demo's exit code and a closing line saying why.
    pub fn judge(&self, run_exit: i32) -> (i32, String) {
        let Ok(seen) = self.seen.lock() else {
            return (run_exit, String::new());
        };
        let failed: Vec<&String> = seen
            .status
            .iter()
            .filter(|(_, s)| **s == NodeStatus::Failed)
            .map(|(n, _)| n)
            .collect();
        let others_rolled = seen
            .status
            .iter()
            .filter(|(n, _)| !self.staged.contains(n))
            .all(|(_, s)| matches!(s, NodeStatus::Changed | NodeStatus::Ok));
        let staged_failed = failed.len() == self.staged.len()
            && self.staged.iter().all(|n| failed.contains(&n))
            && self.staged.iter().all(|n| seen.rolled_back.contains(n))
            && seen.rollback_failed.is_empty();
        let new_version = seen.status.len() - failed.len();
        if staged_failed && others_rolled && (run_exit == 0 || run_exit == 1) {
            let line = if self.staged.is_empty() {
                format!("demo: as staged, all {new_version} nodes were rolled out")
            } else {
                format!(
                    "demo: as staged, {} failed the version check and {} rolled back; {new_version} nodes were rolled out",
                    self.staged.join(", "),
                    if self.staged.len() == 1 {
                        "was"
                    } else {
                        "were"
                    },
                )
            };
            return (0, line);
        }
        let code = if run_exit == 0 { 1 } else { run_exit };
        (
            code,
            format!(
                "demo: not as staged (told to fail: {}); see above",
                self.staged.join(", ")
            ),
        )
    }
}

impl Reporter for Verdict {
    fn event(&mut self, ev: &Stamped) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        match &ev.event {
            Event::NodeFinished { node, status, .. } => {
                seen.status.insert(node.to_string(), *status);
            }
            Event::StepFinished(s) if s.on_failure && s.status != StepStatus::Skipped => {
                let node = s.node.to_string();
                if s.status == StepStatus::Failed {
                    seen.rollback_failed.push(node.clone());
                }
                if !seen.rolled_back.contains(&node) {
                    seen.rolled_back.push(node);
                }
            }
            _ => {}
        }
    }
}
