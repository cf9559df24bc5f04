//! One run of a playbook at a time on the runner machine (SPEC section 6).
//!
//! The lock is an advisory `flock` on `<state>/locks/<playbook>.lock`. The
//! kernel releases it when the holder's file is closed — including when the
//! holder crashes or is killed — so a leftover lock file is never "stale".
//! The file's content only describes the holder, for the busy message.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::support::error::Error;
use crate::support::state;

/// How often a `--lock-wait` retries.
const POLL: Duration = Duration::from_millis(200);

/// A held playbook lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub(crate) struct Lock {
    file: File,
    path: PathBuf,
}

impl Lock {
    /// The lock file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Clear the holder info while still holding the lock, so nobody reads
        // a finished run as the holder; closing the file then unlocks it.
        let _ = self.file.set_len(0);
    }
}

/// Who holds a lock, as written into the lock file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Holder {
    #[serde(default)]
    pid: Option<u32>,
    #[serde(default)]
    user: Option<String>,
    /// RFC 3339.
    #[serde(default)]
    started: Option<String>,
    #[serde(default)]
    run_id: Option<String>,
}

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another run holds the lock (exit 4). Holder fields are `None` when
    /// the lock file does not say (a holder that has just started).
    #[error("{}", busy_message(.playbook, .pid, .user, .started, .run_id, .path, .waited))]
    Busy {
        playbook: String,
        pid: Option<u32>,
        user: Option<String>,
        started: Option<String>,
        run_id: Option<String>,
        path: PathBuf,
        /// How long we waited (`--lock-wait`) before giving up.
        waited: Option<Duration>,
    },
    #[error("cannot use the lock file {}: {source}\nhint: set FLEETFIX_STATE_DIR to a directory of your own (not writable by every user)", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<LockError> for Error {
    /// Busy is exit 4; a state directory fleetfix may not use (not
    /// writable, or writable by every user) is the environment's bad input
    /// (exit 2: nothing ran); any other failure is a runtime error.
    fn from(e: LockError) -> Self {
        match &e {
            LockError::Busy { .. } => Error::Locked {
                message: e.to_string(),
            },
            LockError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::PermissionDenied
                    || source.raw_os_error() == Some(libc::ELOOP) =>
            {
                let text = e.to_string();
                let (message, hint) = text.split_once("\nhint: ").unwrap_or((&text, ""));
                Error::input(message, hint)
            }
            LockError::Io { .. } => Error::Runtime {
                message: e.to_string(),
            },
        }
    }
}

fn busy_message(
    playbook: &str,
    pid: &Option<u32>,
    user: &Option<String>,
    started: &Option<String>,
    run_id: &Option<String>,
    path: &Path,
    waited: &Option<Duration>,
) -> String {
    let pid = pid.map_or("unknown".to_string(), |p| p.to_string());
    let user = user.as_deref().unwrap_or("unknown");
    let started = started.as_deref().unwrap_or("at an unknown time");
    let run = run_id
        .as_deref()
        .map(|r| format!(", run {r}"))
        .unwrap_or_default();
    let (still, hint) = match waited {
        Some(w) => (
            format!(" still, after waiting {}", humantime::format_duration(*w)),
            "wait longer with a larger `--lock-wait`, or check that the holder is not stuck",
        ),
        None => (
            String::new(),
            "wait for it with `--lock-wait 5m`, or let the other run finish first",
        ),
    };
    format!(
        "playbook `{playbook}` is locked{still} by another run (pid {pid}, user {user}, started {started}{run}); lock file {}\nhint: {hint}",
        path.display()
    )
}

/// Takes the lock of `playbook` for run `run_id`. When it is busy, waits up
/// to `wait` (polling every 200 ms) before returning [`LockError::Busy`].
///
/// This blocks the calling thread while waiting: call it before starting
/// the async runtime, or from `spawn_blocking`.
// Busy carries the holder in plain fields for the caller to match on; the
// error is returned once per process, so its size does not matter.
#[allow(clippy::result_large_err)]
pub(crate) fn acquire(
    state_dir: &Path,
    playbook: &str,
    run_id: &str,
    wait: Option<Duration>,
) -> Result<Lock, LockError> {
    let dir = state::locks_dir(state_dir);
    let path = dir.join(format!("{}.lock", sanitize(playbook)));
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    state::create_private_dir(&dir).map_err(io)?;
    let deadline = wait.map(|w| Instant::now() + w);
    loop {
        // Never truncate on open: the file describes the current holder.
        // Never through a symlink: one planted there would be truncated.
        let file = state::no_follow(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600),
        )
        .open(&path)
        .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {
                // Someone may have deleted the file between our open and
                // lock; a lock on an unlinked file guards nothing.
                if !same_file(&file, &path) {
                    continue;
                }
                write_holder(&file, run_id).map_err(io)?;
                return Ok(Lock { file, path });
            }
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        drop(file);
        let now = Instant::now();
        match deadline {
            Some(d) if now < d => std::thread::sleep(POLL.min(d - now)),
            _ => {
                let h = read_holder(&path);
                return Err(LockError::Busy {
                    playbook: playbook.to_string(),
                    pid: h.pid,
                    user: h.user,
                    started: h.started,
                    run_id: h.run_id,
                    path,
                    waited: wait,
                });
            }
        }
    }
}

fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn write_holder(mut file: &File, run_id: &str) -> std::io::Result<()> {
    let holder = Holder {
        pid: Some(std::process::id()),
        user: Some(crate::support::runner::user()),
        started: Some(
            jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string(),
        ),
        run_id: Some(run_id.to_string()),
    };
    let json = serde_json::to_vec(&holder).map_err(std::io::Error::other)?;
    file.set_len(0)?;
    std::os::unix::fs::FileExt::write_all_at(file, &json, 0)?;
    file.flush()
}

/// The holder info; a holder that has just locked may not have written it
/// yet, so an empty file is read again briefly before giving up.
fn read_holder(path: &Path) -> Holder {
    for _ in 0..5 {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(h) = serde_json::from_str::<Holder>(&text)
        {
            return h;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Holder::default()
}

/// The lock a run of `playbook` takes on each node it may change, held by
/// the node's step shell for as long as its connection lives: the same
/// file for every runner and user of the node. `{node}` in its name stands
/// for the node's inventory name, so two nodes on one machine (as in the
/// tests) do not share it.
pub(crate) fn node_lock(
    playbook: &str,
    run_id: &str,
    wait: Option<Duration>,
) -> crate::transport::ssh::NodeLock {
    let host = crate::support::runner::host();
    let started = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ");
    crate::transport::ssh::NodeLock {
        file: format!("fleetfix-{}.{{node}}.lock", sanitize(playbook)),
        holder: format!(
            "run {run_id}, user {}, runner host {host}, started {started}",
            crate::support::runner::user()
        ),
        // A wait of a fraction of a second is still a wait.
        wait_secs: wait.map(|w| w.as_secs_f64().ceil() as u64),
    }
}

/// A file name from a playbook name: `[A-Za-z0-9._-]` kept, the rest `_`,
/// and no leading dot (no hidden files, no `..`).
fn sanitize(playbook: &str) -> String {
    let mut name: String = playbook
        .chars()
        .take(120)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with('.') {
        name.insert(0, '_');
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::exit::ExitCode;
    use std::io::{BufRead, BufReader};

    fn busy_fields(e: LockError) -> (Option<u32>, Option<String>, Option<String>, PathBuf) {
        match e {
            LockError::Busy {
                pid,
                run_id,
                started,
                path,
                ..
            } => (pid, run_id, started, path),
            other => panic!("expected Busy, got {other}"),
        }
    }

    #[test]
    fn second_acquire_is_busy_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let held = acquire(dir.path(), "relay-rollout", "run-1", None).unwrap();
        assert_eq!(held.path(), dir.path().join("locks/relay-rollout.lock"));
        // flock is per open file description: a second open in the same
        // process conflicts too.
        let err = acquire(dir.path(), "relay-rollout", "run-2", None).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        assert!(text.contains("run run-1"), "{text}");
        assert!(text.contains("relay-rollout.lock"), "{text}");
        assert!(text.contains("--lock-wait 5m"), "{text}");
        let (pid, run_id, started, path) = busy_fields(err);
        assert_eq!(pid, Some(std::process::id()));
        assert_eq!(run_id.as_deref(), Some("run-1"));
        assert!(started.is_some_and(|s| s.parse::<jiff::Timestamp>().is_ok()));
        assert_eq!(path, held.path());
        let again = acquire(dir.path(), "relay-rollout", "run-2", None).unwrap_err();
        assert_eq!(Error::from(again).exit_code(), ExitCode::Locked);
        // Another playbook has its own lock.
        acquire(dir.path(), "other", "run-3", None).unwrap();
    }

    #[test]
    fn dropping_releases() {
        let dir = tempfile::tempdir().unwrap();
        let held = acquire(dir.path(), "p", "run-1", None).unwrap();
        drop(held);
        // A wait, not none: a child another test forks at this moment
        // shares the lock's open file until its exec closes it (CLOEXEC).
        let again = acquire(dir.path(), "p", "run-2", Some(Duration::from_secs(10))).unwrap();
        let text = std::fs::read_to_string(again.path()).unwrap();
        assert!(text.contains("run-2"), "{text}");
    }

    #[test]
    fn leftover_holder_info_without_a_holder_is_not_busy() {
        let dir = tempfile::tempdir().unwrap();
        let locks = state::locks_dir(dir.path());
        std::fs::create_dir_all(&locks).unwrap();
        std::fs::write(
            locks.join("p.lock"),
            r#"{"pid":999999,"user":"ghost","started":"2020-01-01T00:00:00Z","run_id":"old"}"#,
        )
        .unwrap();
        acquire(dir.path(), "p", "new", None).unwrap();
    }

    #[test]
    fn waits_for_a_release() {
        let dir = tempfile::tempdir().unwrap();
        let held = acquire(dir.path(), "p", "run-1", None).unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
        });
        let start = Instant::now();
        acquire(dir.path(), "p", "run-2", Some(Duration::from_secs(10))).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(250));
        t.join().unwrap();
    }

    #[test]
    fn gives_up_after_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let _held = acquire(dir.path(), "p", "run-1", None).unwrap();
        let start = Instant::now();
        let err = acquire(dir.path(), "p", "run-2", Some(Duration::from_millis(450))).unwrap_err();
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
        let text = err.to_string();
        assert!(text.contains("after waiting 450ms"), "{text}");
        assert_eq!(busy_fields(err).1.as_deref(), Some("run-1"));
    }

    #[test]
    fn playbook_names_become_safe_file_names() {
        assert_eq!(sanitize("relay-rollout"), "relay-rollout");
        assert_eq!(sanitize("../etc/passwd"), "_.._etc_passwd");
        assert_eq!(sanitize("a b/c"), "a_b_c");
        assert_eq!(sanitize(""), "_");
    }

    /// Not a test by itself: the child process of
    /// `a_killed_holder_releases_the_lock`.
    #[test]
    #[ignore]
    fn lock_holder_child() {
        let Some(dir) = std::env::var_os("FLEETFIX_TEST_LOCK_DIR") else {
            return;
        };
        let _held = acquire(Path::new(&dir), "p", "child-run", None).unwrap();
        println!("\nFLEETFIX_LOCK_HELD");
        std::thread::sleep(Duration::from_secs(60));
    }

    /// Kills the child even when an assertion fails first.
    struct KillOnDrop(std::process::Child);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn a_killed_holder_releases_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = KillOnDrop(
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    concat!(module_path!(), "::lock_holder_child").trim_start_matches("fleetfix::"),
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("FLEETFIX_TEST_LOCK_DIR", dir.path())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let stdout = child.0.stdout.take().unwrap();
        // The harness prints the test name on the same line, hence `contains`.
        let locked = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("FLEETFIX_LOCK_HELD"));
        assert!(locked, "the child never took the lock");

        let err = acquire(dir.path(), "p", "parent", None).unwrap_err();
        let (pid, run_id, ..) = busy_fields(err);
        assert_eq!(pid, Some(child.0.id()));
        assert_eq!(run_id.as_deref(), Some("child-run"));

        // SIGKILL: no destructor runs in the child, only the kernel cleans up.
        drop(child);
        acquire(dir.path(), "p", "parent", None).unwrap();
    }
}
