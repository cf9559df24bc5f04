//! One node's open connection: steps in its step shell (or a channel of
//! their own), tunnels, and the helpers that end what must end.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client;
use russh::{Channel, ChannelMsg};
use tokio::time::Instant;

use super::collect::{ChannelReader, Output, Reader, ShellReader, Start};
use super::reap::{self, Target};
use super::shell::{self, EndScan, Framed, Header, LockState, NodeLock};
use super::verify::Verifier;
use crate::config::inventory::Node;
use crate::transport::{Ahead, ConnectError};
use crate::transport::{Ending, ExecOutput, ExecRequest, ExitStatus, Session, SessionError};

/// How long a helper (ending a command, or stopping the step shell's
/// queue) may take, connection included.
const HELPER_LIMIT: Duration = Duration::from_secs(20);

/// How long a command may take to go once its processes were ended (or
/// could not be): then its channel is given up.
const AFTER_END: Duration = Duration::from_secs(5);

/// An authenticated connection, and the bastion it goes through (kept
/// alive with it).
pub(super) struct Link {
    pub handle: client::Handle<Verifier>,
    pub _via: Option<Arc<SshSession>>,
}

/// What a session needs of the dialer that opened it: the run's node lock,
/// and another connection to its node when its server allows one channel
/// at a time. A trait, so sessions need not know how connections are made
/// (and that, through jump hosts, is made of sessions).
pub(super) trait Redial: Send + Sync {
    fn node_lock(&self) -> Option<&NodeLock>;
    fn redial(
        self: Arc<Self>,
        node: Arc<Node>,
    ) -> Pin<Box<dyn Future<Output = Result<SshSession, ConnectError>> + Send>>;
}

/// An authenticated SSH connection to one node.
pub(crate) struct SshSession {
    link: Link,
    /// To open another connection to the node, for helpers, when its
    /// server allows one channel per connection (tinysshd).
    dialer: Arc<dyn Redial>,
    node: Arc<Node>,
    /// The server refused a second channel: helpers and commands that need
    /// a channel of their own get a connection of their own.
    one_channel: AtomicBool,
    /// The step shell (see [`shell`]), started by the first step.
    shell: tokio::sync::Mutex<Shell>,
    /// Marks the start and end of commands on this connection's streams.
    mark: String,
    /// The commands named by [`Session::run_ahead`] for the next `exec`.
    ahead: Mutex<Vec<Ahead>>,
}

/// A connection's step shell.
enum Shell {
    /// Not started yet, or ended.
    Closed,
    Open(Box<StepShell>),
    /// This node gets a channel per step (its `sh` has no builtin printf);
    /// the channel kept is the shell that holds the node lock.
    Unfit {
        _lock: Option<Channel<client::Msg>>,
    },
}

struct StepShell {
    ch: Channel<client::Msg>,
    /// Until the shell's start was read on both streams.
    start: Option<Start>,
    header: Option<Header>,
    /// Steps sent ahead (their frames), queued in the shell behind the one
    /// running, whose results are still to be read.
    queued: VecDeque<Framed>,
    /// What followed the last step's end on stdout and stderr: a queued
    /// step's output, or a background process's.
    carry: [Vec<u8>; 2],
}

/// A channel, and the extra connection it lives on when the node's
/// server allows one channel per connection.
struct Opened {
    ch: Channel<client::Msg>,
    _extra: Option<SshSession>,
}

impl SshSession {
    pub(super) fn new(link: Link, dialer: Arc<dyn Redial>, node: Arc<Node>) -> Self {
        SshSession {
            link,
            dialer,
            node,
            one_channel: AtomicBool::new(false),
            shell: tokio::sync::Mutex::new(Shell::Closed),
            mark: shell::new_mark(),
            ahead: Mutex::new(Vec::new()),
        }
    }

    fn handle(&self) -> &client::Handle<Verifier> {
        &self.link.handle
    }
}

impl Session for SshSession {
    type Tunnel = russh::ChannelStream<client::Msg>;

    async fn tunnel(&self, host: &str, port: u16) -> Result<Self::Tunnel, SessionError> {
        let ch = self
            .handle()
            .channel_open_direct_tcpip(host, port as u32, "127.0.0.1", 0)
            .await
            .map_err(|e| {
                use russh::ChannelOpenFailure as Why;
                match e {
                    _ if self.handle().is_closed() => SessionError::Lost(e.to_string()),
                    russh::Error::ChannelOpenFailure(Why::ConnectFailed) => {
                        SessionError::Refused("nothing accepts connections there".into())
                    }
                    russh::Error::ChannelOpenFailure(
                        Why::AdministrativelyProhibited | Why::UnknownChannelType,
                    ) => SessionError::Refused(
                        "the SSH server does not forward ports (tinysshd never does; \
                         OpenSSH not with AllowTcpForwarding no)"
                            .into(),
                    ),
                    e => SessionError::Refused(e.to_string()),
                }
            })?;
        Ok(ch.into_stream())
    }

    /// In the step shell when the script can go there, else in a channel
    /// of its own.
    async fn exec(&self, req: ExecRequest) -> Result<ExecOutput, SessionError> {
        let next = self
            .ahead
            .lock()
            .map(|mut a| std::mem::take(&mut *a))
            .unwrap_or_default();
        if let Some(frame) = shell::frame(&req, &self.mark)
            && let Ok(mut sh) = self.shell.try_lock()
        {
            let next = shell::frames_ahead(&next, &self.mark);
            let this = Framed {
                step: req.step,
                frame,
                after: None,
            };
            if let Some(out) = self.exec_in_shell(&mut sh, &req, this, next).await? {
                return Ok(out);
            }
        }
        self.exec_in_channel(req).await
    }

    fn run_ahead(&self, next: Vec<Ahead>) {
        if let Ok(mut a) = self.ahead.lock() {
            *a = next;
        }
    }

    /// Steps still queued in the step shell are told not to start; then
    /// dropping the handle and the channels ends russh's session task,
    /// which shuts the socket down (sshd reads the end of the stream and
    /// cleans up as it does on a DISCONNECT message, a packet more).
    async fn close(self) {
        let queued = match &*self.shell.lock().await {
            Shell::Open(sh) if !sh.queued.is_empty() => sh.header.as_ref().map(|h| h.pid),
            _ => None,
        };
        if let Some(pid) = queued {
            let script = reap::stop_script(pid, &self.mark);
            let _ = tokio::time::timeout(HELPER_LIMIT, self.helper(script, false)).await;
        }
    }
}

impl SshSession {
    /// A channel for this command alone.
    async fn exec_in_channel(&self, req: ExecRequest) -> Result<ExecOutput, SessionError> {
        let lost = |e: russh::Error| SessionError::Lost(e.to_string());
        let Opened { mut ch, _extra } = self.open_channel().await?;
        ch.exec(true, shell::channel_command(&req, &self.mark).as_bytes())
            .await
            .map_err(lost)?;
        ch.data(&req.stdin[..]).await.map_err(lost)?;
        ch.eof().await.map_err(lost)?;
        let mut reader = ChannelReader {
            start: Start::new(&self.mark),
            out: Output::new(req.output_cap),
        };
        let drove = self.drive(&mut ch, &req, &mut reader, false).await?;
        let code = reader.out.code;
        if !reader.start.started()
            && drove.ended.is_none()
            && (code.is_some() || !self.handle().is_closed())
        {
            return Ok(self.refused_status(Some(reader.start.refusal(code)), code));
        }
        self.finish(reader.out, drove.ended)
    }

    /// The step shell runs `this`, with `next` queued behind it; `None`
    /// when this node has no step shell (no frame ran).
    async fn exec_in_shell(
        &self,
        shell: &mut Shell,
        req: &ExecRequest,
        this: Framed,
        next: Vec<Framed>,
    ) -> Result<Option<ExecOutput>, SessionError> {
        let lost = |e: russh::Error| SessionError::Lost(e.to_string());
        let mut input = Vec::new();
        if matches!(shell, Shell::Closed) {
            let Opened { ch, .. } = self.open_channel().await?;
            let lock = self.dialer.node_lock().map(|l| l.on(&self.node.name));
            ch.exec(
                true,
                shell::step_shell_command(&self.mark, lock.as_ref()).as_bytes(),
            )
            .await
            .map_err(lost)?;
            input.extend_from_slice(shell::TRAPS);
            *shell = Shell::Open(Box::new(StepShell {
                ch,
                start: Some(Start::new(&self.mark)),
                header: None,
                queued: VecDeque::new(),
                carry: Default::default(),
            }));
        }
        let Shell::Open(sh) = shell else {
            return Ok(None);
        };
        // This step is already in the shell when it was sent ahead;
        // otherwise every step queued there runs (or skips) before it, and
        // those results are read and dropped.
        let own = this.step.is_some();
        let mut discard = 0;
        if own && sh.queued.front().is_some_and(|q| q.same(&this)) {
            sh.queued.pop_front();
        } else {
            discard = sh.queued.len();
            sh.queued.clear();
            input.extend_from_slice(&this.frame);
        }
        // What is queued already begins `next` (the same steps announced
        // again, one fewer); the rest of it follows.
        if sh.queued.iter().zip(&next).all(|(q, n)| q.same(n)) {
            for f in next.into_iter().skip(sh.queued.len()) {
                input.extend_from_slice(&f.input(&self.mark));
                sh.queued.push_back(f);
            }
        }
        if !input.is_empty() {
            sh.ch.data_bytes(input).await.map_err(lost)?;
        }
        let out = self.read_step(shell, req, discard).await?;
        // A step sent ahead that the shell skipped, although it is the one
        // asked for now (the step before it failed, yet the run goes on):
        // it runs now, after the steps queued behind it are read.
        if let Some(Step::Skipped) = out {
            let Shell::Open(sh) = shell else {
                return Ok(None);
            };
            let discard = sh.queued.len();
            sh.queued.clear();
            sh.ch.data_bytes(this.frame).await.map_err(lost)?;
            return match self.read_step(shell, req, discard).await? {
                Some(Step::Ran(out)) => Ok(Some(out)),
                Some(Step::Skipped) => Ok(Some(Output::new(0).finish(None))),
                None => Ok(None),
            };
        }
        Ok(out.map(|s| match s {
            Step::Ran(out) => out,
            Step::Skipped => Output::new(0).finish(None),
        }))
    }

    /// Reads the next step's result off the step shell, after `discard`
    /// unwanted ones; `None` when the shell turned out unfit.
    async fn read_step(
        &self,
        shell: &mut Shell,
        req: &ExecRequest,
        discard: usize,
    ) -> Result<Option<Step>, SessionError> {
        let Shell::Open(sh) = shell else {
            return Ok(None);
        };
        let fresh = sh.start.is_some();
        let StepShell {
            ch,
            start,
            header,
            queued,
            carry,
        } = &mut **sh;
        let mut reader = ShellReader {
            start,
            header,
            queued: !queued.is_empty(),
            discard,
            ends: [EndScan::new(&self.mark), EndScan::new(&self.mark)],
            mark: &self.mark,
            out: Output::new(req.output_cap),
            exit: None,
        };
        let [carry_out, carry_err] = std::mem::take(carry);
        reader.data(false, &carry_out);
        reader.data(true, &carry_err);
        let drove = self.drive(ch, req, &mut reader, true).await?;
        let header = reader.header.clone();
        let lock = header.as_ref().map(Header::lock);
        match &lock {
            Some(LockState::Busy(holder)) => {
                *shell = Shell::Closed;
                return Err(SessionError::Locked(holder.clone()));
            }
            Some(LockState::Unavailable(why)) if fresh => {
                tracing::warn!("node {}: runs without a node lock: {why}", self.node.name);
            }
            _ => {}
        }
        if header.as_ref().is_some_and(|h| !h.fit()) {
            tracing::debug!("no builtin printf on the node: a channel per step");
            let kept = match std::mem::replace(shell, Shell::Closed) {
                Shell::Open(sh) if !drove.closed && lock == Some(LockState::Held) => Some(sh.ch),
                _ => None,
            };
            *shell = Shell::Unfit { _lock: kept };
            return Ok(None);
        }
        if reader.done() && !drove.closed {
            let skipped = reader.ends[0].skipped();
            *carry = [reader.ends[0].after(), reader.ends[1].after()];
            if skipped && drove.ended.is_none() {
                return Ok(Some(Step::Skipped));
            }
            reader.out.code = reader.ends[0].code();
            return self
                .finish(reader.out, drove.ended)
                .map(|o| Some(Step::Ran(o)));
        }
        // The shell ended: its login shell refused to start it, or it
        // ended with the step (the step ended it, or its processes could
        // not be ended and the channel was given up).
        let refusal = reader.start.as_ref().map(|s| s.refusal(reader.exit));
        let exit = reader.exit;
        let mut out = reader.out;
        for (i, end) in reader.ends.iter_mut().enumerate() {
            out.push(i == 1, &end.rest());
        }
        if let Shell::Open(sh) = std::mem::replace(shell, Shell::Closed) {
            let _ = sh.ch.close().await;
        }
        if let Some(refusal) = refusal
            && drove.ended.is_none()
            && (exit.is_some() || !self.handle().is_closed())
        {
            return Ok(Some(Step::Ran(self.refused_status(Some(refusal), exit))));
        }
        out.code = None;
        self.finish(out, drove.ended).map(|o| Some(Step::Ran(o)))
    }

    /// Feeds a command's messages to `reader` until it is done (or its
    /// channel closed), ending it on timeout or cancel. `spare`: the
    /// command is the step shell, whose steps end but not it.
    async fn drive(
        &self,
        ch: &mut Channel<client::Msg>,
        req: &ExecRequest,
        reader: &mut impl Reader,
        spare: bool,
    ) -> Result<Drove, SessionError> {
        type Helper<'h, T> = Option<Pin<Box<dyn Future<Output = T> + Send + 'h>>>;
        let mut deadline = req.timeout.map(|t| Instant::now() + t);
        let mut interrupted = false;
        let mut ending: Helper<'_, Ending> = None;
        let mut ended: Option<(bool, Ending)> = None;
        let mut stopping: Helper<'_, ()> = None;
        let mut stop_sent = false;
        let mut give_up: Option<Instant> = None;
        let far = || Instant::now() + Duration::from_secs(86_400 * 365);
        loop {
            if reader.done() && ending.is_none() && stopping.is_none() {
                return Ok(Drove {
                    closed: false,
                    ended,
                });
            }
            let msg = tokio::select! {
                m = ch.wait() => m,
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(far)), if deadline.is_some() => {
                    deadline = None;
                    ending = Some(Box::pin(self.end(reader.header(), spare, req.sudo)));
                    continue;
                }
                _ = req.cancel.cancelled(), if ending.is_none() && ended.is_none() => {
                    interrupted = true;
                    deadline = None;
                    ending = Some(Box::pin(self.end(reader.header(), spare, req.sudo)));
                    continue;
                }
                _ = req.interrupt.cancelled(), if !stop_sent && reader.queued() => {
                    stop_sent = true;
                    if let Some(h) = reader.header() {
                        let script = reap::stop_script(h.pid, &self.mark);
                        stopping = Some(Box::pin(async move {
                            let _ = self.helper(script, false).await;
                        }));
                    }
                    continue;
                }
                e = async { ending.as_mut().expect("guarded").await }, if ending.is_some() => {
                    ending = None;
                    ended = Some((interrupted, e));
                    give_up = Some(Instant::now() + AFTER_END);
                    continue;
                }
                _ = async { stopping.as_mut().expect("guarded").await }, if stopping.is_some() => {
                    stopping = None;
                    continue;
                }
                _ = tokio::time::sleep_until(give_up.unwrap_or_else(far)), if give_up.is_some() => {
                    tracing::debug!("the command did not end after its processes were ended; its channel is given up");
                    let _ = ch.close().await;
                    return Ok(Drove { closed: true, ended });
                }
            };
            let Some(msg) = msg else {
                // Closed: a verdict still on its way is worth the wait.
                if let Some(e) = ending.take() {
                    ended = Some((interrupted, e.await));
                }
                return Ok(Drove {
                    closed: true,
                    ended,
                });
            };
            match msg {
                ChannelMsg::Data { data } => reader.data(false, &data),
                ChannelMsg::ExtendedData { data, ext: 1 } => reader.data(true, &data),
                ChannelMsg::ExitStatus { exit_status } => reader.exit(exit_status),
                ChannelMsg::ExitSignal { signal_name, .. } => {
                    reader.signal(format!("{signal_name:?}"))
                }
                ChannelMsg::Failure => {
                    return Err(SessionError::Refused("exec request was refused".into()));
                }
                ChannelMsg::Close => {
                    if let Some(e) = ending.take() {
                        ended = Some((interrupted, e.await));
                    }
                    return Ok(Drove {
                        closed: true,
                        ended,
                    });
                }
                _ => {}
            }
        }
    }

    /// Ends the processes of the command that printed `header`, and says
    /// what became of them.
    async fn end(&self, header: Option<Header>, spare: bool, sudo: bool) -> Ending {
        let Some(header) = header else {
            return Ending::Unchecked(
                "it had not started on the node yet, so it could not be found there".into(),
            );
        };
        let script = reap::end_script(&Target::of(&header, spare), &self.mark);
        match tokio::time::timeout(HELPER_LIMIT, self.helper(script, sudo)).await {
            Ok(Ok(stdout)) => reap::verdict(&stdout, &self.mark),
            Ok(Err(why)) => Ending::Unchecked(why),
            Err(_) => Ending::Unchecked(format!(
                "the node did not answer within {}s",
                HELPER_LIMIT.as_secs()
            )),
        }
    }

    /// Runs a helper script (under sudo when the command ran so) and
    /// returns its stdout.
    async fn helper(&self, script: String, sudo: bool) -> Result<Vec<u8>, String> {
        let Opened { mut ch, _extra } = self.open_channel().await.map_err(|e| e.to_string())?;
        let shell = if sudo { "sudo -n sh -s" } else { "sh -s" };
        let failed = |e: russh::Error| format!("the helper could not run: {e}");
        ch.exec(true, shell).await.map_err(failed)?;
        ch.data(script.as_bytes()).await.map_err(failed)?;
        ch.eof().await.map_err(failed)?;
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        while let Some(msg) = ch.wait().await {
            match msg {
                ChannelMsg::Data { data } => stdout.extend_from_slice(&data),
                ChannelMsg::ExtendedData { data, .. } => stderr.extend_from_slice(&data),
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        if !stdout.contains(&0x1f) && !stderr.is_empty() {
            let said = String::from_utf8_lossy(&stderr);
            return Err(format!("the helper failed: {}", said.trim()));
        }
        Ok(stdout)
    }

    /// A session channel: on this connection, or on a connection of its
    /// own when the server allows one channel per connection.
    async fn open_channel(&self) -> Result<Opened, SessionError> {
        if !self.one_channel.load(Ordering::Relaxed) {
            match self.handle().channel_open_session().await {
                Ok(ch) => return Ok(Opened { ch, _extra: None }),
                Err(e) if self.handle().is_closed() => {
                    return Err(SessionError::Lost(e.to_string()));
                }
                Err(russh::Error::ChannelOpenFailure(why)) => {
                    tracing::debug!(
                        "node {}: a second channel was refused ({why:?}); another connection",
                        self.node.name
                    );
                    self.one_channel.store(true, Ordering::Relaxed);
                }
                Err(e) => return Err(SessionError::Refused(e.to_string())),
            }
        }
        let extra = self
            .dialer
            .clone()
            .redial(self.node.clone())
            .await
            .map_err(|e| SessionError::Refused(format!("cannot open another connection: {e}")))?;
        let ch = extra
            .handle()
            .channel_open_session()
            .await
            .map_err(|e| SessionError::Refused(e.to_string()))?;
        Ok(Opened {
            ch,
            _extra: Some(extra),
        })
    }

    /// The command's result, unless the connection died under it.
    fn finish(
        &self,
        out: Output,
        ended: Option<(bool, Ending)>,
    ) -> Result<ExecOutput, SessionError> {
        if out.code.is_none()
            && out.signal.is_none()
            && ended.is_none()
            && self.handle().is_closed()
        {
            return Err(SessionError::Lost(
                "the SSH connection closed during the command".into(),
            ));
        }
        Ok(out.finish(ended))
    }

    /// The login shell would not start the command.
    fn refused_status(&self, status: Option<ExitStatus>, code: Option<i32>) -> ExecOutput {
        ExecOutput {
            status: status.unwrap_or(ExitStatus::NotStarted {
                code,
                said: String::new(),
            }),
            stdout: Default::default(),
            stderr: Default::default(),
        }
    }
}

/// How reading a command ended.
struct Drove {
    /// Its channel closed (or was given up).
    closed: bool,
    /// It was ended (true: by an interrupt), and what became of it.
    ended: Option<(bool, Ending)>,
}

/// A step's result in the step shell.
enum Step {
    Ran(ExecOutput),
    /// The shell did not start it (sent ahead behind a failure).
    Skipped,
}
