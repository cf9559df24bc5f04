//! Did the demo go as staged? Read from the run's record: the nodes told
//! to fail must have failed and been rolled back, every other node must run
//! the new version. The demo exits 0 when it did, so its staged failure
//! does not read as a broken demo.

use crate::events::{ExitCode, NodeStatus, StepStatus};
use crate::record::RunRecord;

/// What the demo staged: the nodes told to fail.
#[derive(Debug, Clone)]
pub(crate) struct Verdict {
    staged: Vec<String>,
}

impl Verdict {
    pub(crate) fn new(staged: Vec<String>) -> Self {
        Verdict { staged }
    }

    /// The demo's exit code and a closing line saying why, from the run's
    /// record and exit code.
    pub(crate) fn judge(&self, run: &RunRecord, run_exit: ExitCode) -> (ExitCode, String) {
        // Nodes that finished, and how.
        let status: Vec<(&str, NodeStatus)> = run
            .nodes
            .iter()
            .filter_map(|n| n.status.map(|s| (&*n.name, s)))
            .collect();
        // Nodes with an `[[on_failure]]` step that ran, and that failed.
        let on_failure = |failed: bool| -> Vec<&str> {
            run.nodes
                .iter()
                .filter(|n| {
                    n.steps.iter().any(|s| {
                        s.on_failure
                            && s.status != StepStatus::Skipped
                            && (!failed || s.status == StepStatus::Failed)
                    })
                })
                .map(|n| &*n.name)
                .collect()
        };
        let rolled_back = on_failure(false);
        let rollback_failed = on_failure(true);
        let failed: Vec<&str> = status
            .iter()
            .filter(|(_, s)| *s == NodeStatus::Failed)
            .map(|(n, _)| *n)
            .collect();
        let others_rolled = status
            .iter()
            .filter(|(n, _)| !self.staged.iter().any(|s| s == n))
            .all(|(_, s)| matches!(s, NodeStatus::Changed | NodeStatus::Ok));
        let staged_failed = failed.len() == self.staged.len()
            && self.staged.iter().all(|n| failed.contains(&n.as_str()))
            && self
                .staged
                .iter()
                .all(|n| rolled_back.contains(&n.as_str()))
            && rollback_failed.is_empty();
        let new_version = status.len() - failed.len();
        if staged_failed && others_rolled && matches!(run_exit, ExitCode::Ok | ExitCode::Failed) {
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
            return (ExitCode::Ok, line);
        }
        let code = if run_exit == ExitCode::Ok {
            ExitCode::Failed
        } else {
            run_exit
        };
        (
            code,
            format!(
                "demo: not as staged (told to fail: {}); see above",
                self.staged.join(", ")
            ),
        )
    }
}
