//! Where fleetfix keeps what outlives a run on the runner machine: the run
//! journals (`runs/`) and the playbook locks (`locks/`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The state directory: `$FLEETFIX_STATE_DIR`, else `$XDG_STATE_HOME/fleetfix`,
/// else `~/.local/state/fleetfix`.
pub(crate) fn state_dir() -> PathBuf {
    state_dir_from(|k| std::env::var_os(k))
}

/// [`state_dir`] over any environment, so tests need not mutate the real one.
fn state_dir_from(env: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    let set = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(dir) = set("FLEETFIX_STATE_DIR") {
        return PathBuf::from(dir);
    }
    // The XDG spec says relative values are invalid and must be ignored.
    if let Some(xdg) = set("XDG_STATE_HOME").map(PathBuf::from)
        && xdg.is_absolute()
    {
        return xdg.join("fleetfix");
    }
    let home = set("HOME")
        .map(PathBuf::from)
        .or_else(std::env::home_dir)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/state/fleetfix")
}

/// One `<run-id>.jsonl` journal per run.
pub(crate) fn runs_dir(state: &Path) -> PathBuf {
    state.join("runs")
}

/// One `<playbook>.lock` per playbook.
pub(crate) fn locks_dir(state: &Path) -> PathBuf {
    state.join("locks")
}

/// Creates `dir` (a subdirectory of the state dir) and its parents,
/// private to the user: journals hold command output, which may be
/// sensitive even with secrets masked. Refuses a state dir, or a `dir`,
/// that users other than its owner and group may write to: they could put
/// a symlink where fleetfix writes a lock or a journal; and a `dir` that is
/// itself a symlink.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let refuse = |why: String| {
        Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            why,
        ))
    };
    if std::fs::symlink_metadata(dir)?.file_type().is_symlink() {
        return refuse(format!(
            "{} is a symlink; fleetfix writes only to a directory of its own",
            dir.display()
        ));
    }
    for d in [dir.parent(), Some(dir)].into_iter().flatten() {
        if std::fs::metadata(d)?.mode() & 0o002 != 0 {
            return refuse(format!(
                "{} is writable by every user, who could replace what fleetfix writes there",
                d.display()
            ));
        }
    }
    Ok(())
}

/// Opens options for a state file: never through a symlink.
pub(crate) fn no_follow(opts: &mut std::fs::OpenOptions) -> &mut std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    opts.custom_flags(libc::O_NOFOLLOW)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn explicit_dir_wins_then_xdg_then_home() {
        let all = [
            ("FLEETFIX_STATE_DIR", "/srv/ff"),
            ("XDG_STATE_HOME", "/x"),
            ("HOME", "/home/op"),
        ];
        assert_eq!(state_dir_from(env(&all)), PathBuf::from("/srv/ff"));
        assert_eq!(state_dir_from(env(&all[1..])), PathBuf::from("/x/fleetfix"));
        assert_eq!(
            state_dir_from(env(&all[2..])),
            PathBuf::from("/home/op/.local/state/fleetfix")
        );
    }

    #[test]
    fn empty_and_relative_values_are_ignored() {
        let vars = [
            ("FLEETFIX_STATE_DIR", ""),
            ("XDG_STATE_HOME", "relative/state"),
            ("HOME", "/home/op"),
        ];
        assert_eq!(
            state_dir_from(env(&vars)),
            PathBuf::from("/home/op/.local/state/fleetfix")
        );
    }

    #[test]
    fn subdirectories() {
        let s = Path::new("/s");
        assert_eq!(runs_dir(s), PathBuf::from("/s/runs"));
        assert_eq!(locks_dir(s), PathBuf::from("/s/locks"));
    }
}
