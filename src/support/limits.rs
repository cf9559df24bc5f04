//! Process limits the runner sets for itself at start, and undoes for the
//! commands it starts on the runner machine.

use std::io;
use std::sync::OnceLock;

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Many nodes in flight need many sockets; take the hard limit up front.
pub(crate) fn raise_open_files() {
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// The locked-memory soft limit fleetfix was started with, for children.
static MEMLOCK_SOFT: OnceLock<u64> = OnceLock::new();

/// Makes `mlock(2)` fail at once in this process.
///
/// russh's packet buffers (`CryptoVec`) lock every allocation in RAM and
/// unlock it when freed: four syscalls and two splits of the memory map
/// per buffer (its cost: BENCHMARKS.md, "Why it is built so"). OpenSSH's `ssh` locks
/// none of its packet buffers, and the data in them (scripts, output,
/// secrets included) sits in fleetfix's ordinary memory anyway, so the
/// locking protects nothing here. With a zero soft limit and without
/// `CAP_IPC_LOCK` in the effective set, the kernel refuses the call before
/// touching the map. Children get the old limit back ([`child_limits`]);
/// as root they regain the capability through `exec`.
pub(crate) fn refuse_memory_locking() {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_MEMLOCK) else {
        return;
    };
    let _ = MEMLOCK_SOFT.set(soft);
    // Only the effective set: the permitted one stays, so nothing is lost
    // for good, and children recompute theirs at exec.
    let _ = caps::drop(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_IPC_LOCK,
    );
    let _ = setrlimit(Resource::RLIMIT_MEMLOCK, 0, hard);
}

/// Restores, in a child about to `exec`, the locked-memory limit fleetfix
/// was started with. Only async-signal-safe calls: it runs after `fork`.
pub(crate) fn child_limits() -> io::Result<()> {
    if let Some(&soft) = MEMLOCK_SOFT.get()
        && let Ok((_, hard)) = getrlimit(Resource::RLIMIT_MEMLOCK)
    {
        setrlimit(Resource::RLIMIT_MEMLOCK, soft.min(hard), hard).map_err(io::Error::from)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! These change process-wide limits: nextest runs each test in a
    //! process of its own.
    use super::*;

    fn mlock_one_page() -> bool {
        let page = vec![1u8; 8192];
        let ptr = page.as_ptr().cast();
        // SAFETY: the range is a live allocation; unlocked again below.
        let locked = unsafe { nix::libc::mlock(ptr, 4096) } == 0;
        if locked {
            unsafe { nix::libc::munlock(ptr, 4096) };
        }
        locked
    }

    #[test]
    fn memory_locking_is_refused_here_and_restored_for_children() {
        let (before, _) = getrlimit(Resource::RLIMIT_MEMLOCK).unwrap();
        assert!(mlock_one_page(), "mlock should work before");
        refuse_memory_locking();
        assert!(!mlock_one_page(), "mlock still works");
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.args(["-c", "ulimit -l"]);
        // SAFETY: child_limits only calls getrlimit and setrlimit.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, child_limits);
        }
        let out = cmd.output().unwrap();
        let shown = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let expected = if before == nix::libc::RLIM_INFINITY {
            "unlimited".to_string()
        } else {
            (before / 1024).to_string()
        };
        assert_eq!(shown, expected);
    }
}
