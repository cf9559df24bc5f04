//! The run journal: every event of a run appended to
//! `<state>/runs/<run-id>.jsonl`, one JSON object per line (SPEC section 7).
//! `fleetfix runs` and `--resume` read it back (see [`crate::record`]).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

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
pub struct Journal {
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
    pub fn create(state_dir: &Path, run_id: &str) -> Result<Journal, Error> {
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
    pub fn path(&self) -> &Path {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

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
}
