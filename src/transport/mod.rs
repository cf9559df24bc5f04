//! Layer 4: how a command reaches a node. The seam the executor sees is
//! here ([`Connector`] opens a [`Session`], which runs an [`ExecRequest`]);
//! behind it SSH (`ssh`), the control machine itself (`local`), HTTP
//! through either (`http`), and in tests an in-memory fake.

#[cfg(test)]
pub(crate) mod fake;
pub(crate) mod http;
pub(crate) mod local;
pub(crate) mod ssh;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::config::inventory::Node;
use crate::job::StepRef;
use crate::support::text::TRUNCATED;

/// Why a node could not be reached. Each reads as one clear sentence.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("cannot resolve host `{host}`: {detail}")]
    Dns { host: String, detail: String },
    #[error("connection refused by {addr} (is sshd running and the port right?)")]
    Refused { addr: String },
    #[error("connection to {addr} timed out after {secs:.1}s")]
    Timeout { addr: String, secs: f64 },
    #[error(
        "the SSH handshake with {addr} (key exchange, authentication) did not finish within {secs:.0}s"
    )]
    HandshakeTimeout { addr: String, secs: f64 },
    #[error("cannot connect to {addr}: {detail}")]
    Network { addr: String, detail: String },
    #[error(
        "host key of {host} is unknown ({key_type} {fingerprint}); verify the fingerprint out of band, \
         then add it to {known_hosts}, pin it as host_key in the inventory, or rerun with \
         --accept-new-host-keys"
    )]
    HostKeyUnknown {
        host: String,
        key_type: String,
        fingerprint: String,
        known_hosts: String,
    },
    #[error(
        "HOST KEY CHANGED for {host}: it presented {key_type} {fingerprint}, which differs from \
         {recorded}; this may be an attack (man in the middle) or a reinstalled host. Refusing to \
         connect. If the change is expected, remove the old key ({recorded}) and verify the new one"
    )]
    HostKeyChanged {
        host: String,
        key_type: String,
        fingerprint: String,
        recorded: String,
    },
    #[error("via jump host {via}: {detail}")]
    Jump { via: String, detail: String },
    #[error("host certificate of {host} refused: {detail}")]
    HostCertificate { host: String, detail: String },
    #[error(
        "host key of {host} ({fingerprint}) is marked @revoked in {known_hosts}; refusing to connect"
    )]
    HostKeyRevoked {
        host: String,
        fingerprint: String,
        known_hosts: String,
    },
    #[error(
        "authentication failed for {user}@{host}: the server accepted none of {tried}; \
         add the key to the node's authorized_keys or set identity_file"
    )]
    Auth {
        user: String,
        host: String,
        tried: String,
    },
    #[error("cannot record the host key of {host} in {known_hosts}: {detail}")]
    Learn {
        host: String,
        known_hosts: String,
        detail: String,
    },
    #[error("SSH handshake with {addr} failed: {detail}")]
    Protocol { addr: String, detail: String },
}

/// A failure of an established connection.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum SessionError {
    #[error("connection lost: {0}")]
    Lost(String),
    #[error("the node refused to run the command: {0}")]
    Refused(String),
    /// Another run holds the node lock; the holder's own line.
    #[error("the node is locked by another run: {0}")]
    Locked(String),
}

/// How a remote command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExitStatus {
    Code(i32),
    Signal(String),
    /// The step's timeout fired, and ending its processes went as told.
    TimedOut(Ending),
    /// The run was interrupted, and ending its processes went as told.
    Interrupted(Ending),
    /// The account's login shell did not start the command (`nologin`):
    /// its exit status and what it said.
    NotStarted {
        code: Option<i32>,
        said: String,
    },
    /// The channel closed without a status.
    Unknown,
}

impl ExitStatus {
    /// The numeric exit code, when there is one (a login shell's refusal
    /// included: it is what the node said).
    pub(crate) fn code(&self) -> Option<i32> {
        match self {
            ExitStatus::Code(c) => Some(*c),
            ExitStatus::NotStarted { code, .. } => *code,
            _ => None,
        }
    }

    /// Ended on purpose by an interrupt.
    pub(crate) fn interrupted(&self) -> bool {
        matches!(self, ExitStatus::Interrupted(_))
    }
}

/// What became of a command's processes that were told to end: only what
/// was checked is claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ending {
    /// None of them is left: checked after TERM (and KILL where needed).
    Ended,
    /// These pids were still there after TERM and KILL.
    Left(String),
    /// They could not be ended or checked, for this reason.
    Unchecked(String),
}

impl Ending {
    /// The clause that follows "timed out after 2s; " or "interrupted; ".
    pub(crate) fn describe(&self) -> String {
        match self {
            Ending::Ended => "its processes were ended".into(),
            Ending::Left(pids) => {
                format!("processes of it still run after TERM and KILL (pids {pids})")
            }
            Ending::Unchecked(why) => format!("it may still be running: {why}"),
        }
    }
}

/// Output of one stream, capped so memory per node stays bounded.
#[derive(Debug, Clone, Default)]
pub(crate) struct Captured {
    pub bytes: Vec<u8>,
    /// Bytes past the cap that were dropped.
    pub dropped: usize,
}

impl Captured {
    pub(crate) fn push(&mut self, data: &[u8], cap: usize) {
        let room = cap.saturating_sub(self.bytes.len());
        let take = room.min(data.len());
        self.bytes.extend_from_slice(&data[..take]);
        self.dropped += data.len() - take;
    }

    /// The text, with a clear mark where it was cut.
    pub(crate) fn text(&self) -> String {
        let mut s = String::from_utf8_lossy(&self.bytes).into_owned();
        if self.dropped > 0 {
            s.push_str(&format!(
                "{TRUNCATED} {} more bytes not kept]",
                self.dropped
            ));
        }
        s
    }
}

/// A script to run: `shell` reads it from `stdin`, so the script (and any
/// secret in it) never appears on a command line.
#[derive(Debug, Clone)]
pub(crate) struct ExecRequest {
    pub shell: String,
    pub sudo: bool,
    pub stdin: Vec<u8>,
    pub timeout: Option<Duration>,
    pub output_cap: usize,
    /// Cancelled: end the command now (its process group), as on a timeout.
    pub cancel: tokio_util::sync::CancellationToken,
    /// Cancelled: the run was interrupted; no step queued behind this one
    /// may start (this one goes on until `cancel`).
    pub interrupt: tokio_util::sync::CancellationToken,
    /// The step whose own command this is (`None` for a guard, a gate, an
    /// ad-hoc command): a step sent ahead stands only for the exec of that
    /// same step, whatever other step has the same script.
    pub step: Option<StepRef>,
}

/// What a command produced.
#[derive(Debug, Clone)]
pub(crate) struct ExecOutput {
    pub status: ExitStatus,
    pub stdout: Captured,
    pub stderr: Captured,
}

impl ExecRequest {
    /// `SHELL -s`, or `sudo -n -- SHELL -s` (sudo never prompts).
    pub(crate) fn shell_command(&self) -> String {
        let shell = crate::support::quote::shell_quote(&self.shell);
        if self.sudo {
            format!("sudo -n -- {shell} -s")
        } else {
            format!("{shell} -s")
        }
    }
}

/// Opens sessions to nodes.
pub(crate) trait Connector: Send + Sync + 'static {
    type Session: Session;
    fn connect(
        &self,
        node: &Arc<Node>,
    ) -> impl Future<Output = Result<Self::Session, ConnectError>> + Send;
}

/// One open connection to a node; every step of the node runs through it.
pub(crate) trait Session: Send + Sync + 'static {
    /// A byte stream to `host:port` as seen from the node (direct-tcpip).
    type Tunnel: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static;
    fn exec(
        &self,
        req: ExecRequest,
    ) -> impl Future<Output = Result<ExecOutput, SessionError>> + Send;
    /// Names the commands that will most likely follow the next `exec`, in
    /// order, so the transport may send them along and save each a round
    /// trip. Each names the exit codes of the command before it that let it
    /// run; the transport starts it only after one of those and when the
    /// run was not interrupted. Only read-only steps are named.
    fn run_ahead(&self, _next: Vec<Ahead>) {}
    fn tunnel(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = Result<Self::Tunnel, SessionError>> + Send;
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// A step that may be sent ahead: its request, and the exit codes of the
/// step before it that let it run.
#[derive(Debug, Clone)]
pub(crate) struct Ahead {
    pub req: ExecRequest,
    pub after: Vec<i32>,
}
