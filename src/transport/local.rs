//! `local` steps: the same request a node gets, run on the runner machine
//! in its own process group so a timeout ends the whole tree.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::transport::{Captured, Ending, ExecOutput, ExecRequest, ExitStatus, SessionError};

const TERM_GRACE: Duration = Duration::from_secs(2);

/// Runs the request's shell through `/bin/sh -c`, feeding `req.stdin`.
pub(crate) async fn exec(req: &ExecRequest) -> Result<ExecOutput, SessionError> {
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(req.shell_command())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // SAFETY: child_limits only calls getrlimit and setrlimit.
    unsafe { cmd.pre_exec(crate::support::limits::child_limits) };
    let mut child = cmd
        .spawn()
        .map_err(|e| SessionError::Refused(format!("cannot start /bin/sh on the runner: {e}")))?;
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    let stdin = child.stdin.take();
    let input = req.stdin.clone();
    let writer = tokio::spawn(async move {
        if let Some(mut stdin) = stdin {
            let _ = stdin.write_all(&input).await;
        }
    });
    let cap = req.output_cap;
    let out = tokio::spawn(read_capped(child.stdout.take(), cap));
    let err = tokio::spawn(read_capped(child.stderr.take(), cap));
    let limit = req.timeout.unwrap_or(Duration::from_secs(86_400 * 365));
    let waited = tokio::select! {
        w = child.wait() => Ok(w),
        _ = tokio::time::sleep(limit) => Err(ExitStatus::TimedOut as fn(Ending) -> ExitStatus),
        _ = req.cancel.cancelled() => Err(ExitStatus::Interrupted as fn(Ending) -> ExitStatus),
    };
    let status = match waited {
        Ok(Ok(st)) => match st.code() {
            Some(c) => ExitStatus::Code(c),
            None => ExitStatus::Signal(format!("{st}")),
        },
        Ok(Err(e)) => return Err(SessionError::Lost(e.to_string())),
        Err(why) => why(end_group(pgid, &mut child).await),
    };
    // A background child may keep the pipes open after the shell exited;
    // what it writes later is not this step's output.
    let drain = Duration::from_secs(2);
    let _ = tokio::time::timeout(drain, writer).await;
    let stdout = tokio::time::timeout(drain, out).await;
    let stderr = tokio::time::timeout(drain, err).await;
    Ok(ExecOutput {
        status,
        stdout: stdout.ok().and_then(Result::ok).unwrap_or_default(),
        stderr: stderr.ok().and_then(Result::ok).unwrap_or_default(),
    })
}

/// SIGTERM to the group, then SIGKILL after a grace period; then whether
/// any process of the group is left.
async fn end_group(pgid: Option<Pid>, child: &mut tokio::process::Child) -> Ending {
    let Some(pgid) = pgid else {
        let _ = child.kill().await;
        return Ending::Unchecked("the shell's process group was not known".into());
    };
    let _ = killpg(pgid, Signal::SIGTERM);
    let _ = tokio::time::timeout(TERM_GRACE, child.wait()).await;
    let _ = killpg(pgid, Signal::SIGKILL);
    let _ = child.wait().await;
    // Children of the shell are reaped by init once it is gone; give
    // them a moment before the group is found empty.
    for _ in 0..20 {
        if killpg(pgid, None) == Err(nix::errno::Errno::ESRCH) {
            return Ending::Ended;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ending::Left(format!("process group {pgid}"))
}

async fn read_capped<R: AsyncRead + Unpin>(stream: Option<R>, cap: usize) -> Captured {
    let mut captured = Captured::default();
    let Some(mut stream) = stream else {
        return captured;
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => captured.push(&buf[..n], cap),
        }
    }
    captured
}
