//! The russh implementation of [`Connector`] and [`Session`].

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{Algorithm, HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, Sig};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::auth::{self, Credentials, Identity};
use super::driver::{self, EndScan, Framed};
use super::known_hosts::{self, KnownHosts, Verdict};
use super::wire::Wire;
use super::{
    Captured, ConnectError, Connector, ExecOutput, ExecRequest, ExitStatus, Session, SessionError,
};
use crate::inventory::{HostKeyPin, JumpHost, Node};
use std::collections::{HashMap, VecDeque};
use tokio::sync::OnceCell;

/// Prefix of the stderr line that reports the remote shell's pid.
const PID_MARKER: &str = "__FLEETFIX_PID=";

/// How much stderr may precede the pid line (login scripts) before we stop looking.
const PID_SEARCH_LIMIT: usize = 64 * 1024;

/// How long a timed-out command gets after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);

/// A bastion session, opened at most once (its error is kept too, so the
/// nodes behind a dead bastion fail fast and alike).
type JumpCell = OnceCell<Result<Arc<SshSession>, ConnectError>>;

/// Settings shared by every connection of a run.
pub struct SshOptions {
    pub known_hosts: Arc<KnownHosts>,
    pub accept_new_host_keys: bool,
    pub credentials: Arc<Credentials>,
    pub keepalive: Duration,
}

/// Connects nodes over SSH with russh.
pub struct SshConnector {
    config: Arc<client::Config>,
    opts: SshOptions,
    /// Bastion sessions by hop chain, opened once and shared.
    jumps: tokio::sync::Mutex<HashMap<String, Arc<JumpCell>>>,
}

impl SshConnector {
    pub fn new(opts: SshOptions) -> Self {
        SshConnector {
            config: Arc::new(base_config(opts.keepalive)),
            opts,
            jumps: Default::default(),
        }
    }
}

/// The client settings every connection starts from.
fn base_config(keepalive: Duration) -> client::Config {
    let mut config = client::Config {
        keepalive_interval: Some(keepalive),
        keepalive_max: 3,
        inactivity_timeout: None,
        nodelay: true,
        ..Default::default()
    };
    config.preferred.cipher = std::borrow::Cow::Borrowed(cipher_order());
    config
}

/// Both AEAD ciphers are strong; AES-GCM is the cheap one where the CPU
/// does AES in hardware, ChaCha20-Poly1305 everywhere else.
fn cipher_order() -> &'static [russh::cipher::Name] {
    use russh::cipher::{AES_128_CTR, AES_192_CTR, AES_256_CTR, AES_256_GCM, CHACHA20_POLY1305};
    const AES_FIRST: &[russh::cipher::Name] = &[
        AES_256_GCM,
        CHACHA20_POLY1305,
        AES_256_CTR,
        AES_192_CTR,
        AES_128_CTR,
    ];
    const CHACHA_FIRST: &[russh::cipher::Name] = &[
        CHACHA20_POLY1305,
        AES_256_GCM,
        AES_256_CTR,
        AES_192_CTR,
        AES_128_CTR,
    ];
    #[cfg(target_arch = "x86_64")]
    let hardware_aes = std::arch::is_x86_feature_detected!("aes")
        && std::arch::is_x86_feature_detected!("pclmulqdq");
    #[cfg(target_arch = "aarch64")]
    let hardware_aes = std::arch::is_aarch64_feature_detected!("aes");
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let hardware_aes = false;
    if hardware_aes {
        AES_FIRST
    } else {
        CHACHA_FIRST
    }
}

/// Verifies the server key in the handshake and keeps the reason of a refusal.
struct Verifier {
    host: String,
    port: u16,
    pin: Option<HostKeyPin>,
    known_hosts: Arc<KnownHosts>,
    accept_new: bool,
    refusal: Arc<Mutex<Option<ConnectError>>>,
}

impl Verifier {
    fn check(&self, key: &PublicKey) -> Result<(), ConnectError> {
        let fingerprint = known_hosts::fingerprint(key);
        let key_type = key.algorithm().to_string();
        let host = known_hosts::host_port(&self.host, self.port);
        if let Some(pin) = &self.pin {
            let ok = match pin {
                HostKeyPin::Fingerprint(f) => *f == fingerprint,
                HostKeyPin::PublicKey(k) => PublicKey::from_openssh(k)
                    .map(|p| p.key_data() == key.key_data())
                    .unwrap_or(false),
            };
            return if ok {
                Ok(())
            } else {
                Err(ConnectError::HostKeyChanged {
                    host,
                    key_type,
                    fingerprint,
                    recorded: "the host_key pinned in the inventory".into(),
                })
            };
        }
        let kh = &self.known_hosts;
        match kh.verify(&self.host, self.port, key) {
            Verdict::Trusted => Ok(()),
            Verdict::Changed { line } => Err(ConnectError::HostKeyChanged {
                host,
                key_type,
                fingerprint,
                recorded: format!("the key at {}:{line}", kh.path().display()),
            }),
            Verdict::Revoked { .. } => Err(ConnectError::HostKeyRevoked {
                host,
                fingerprint,
                known_hosts: kh.path().display().to_string(),
            }),
            Verdict::Unknown if self.accept_new => {
                kh.learn(&self.host, self.port, key)
                    .map_err(|e| ConnectError::Learn {
                        host: host.clone(),
                        known_hosts: kh.path().display().to_string(),
                        detail: e.to_string(),
                    })?;
                tracing::info!("learned host key of {host}: {key_type} {fingerprint}");
                Ok(())
            }
            Verdict::Unknown => Err(ConnectError::HostKeyUnknown {
                host,
                key_type,
                fingerprint,
                known_hosts: kh.path().display().to_string(),
            }),
        }
    }
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            PublicKeyOrCertificate::Certificate(cert) => {
                return match self.known_hosts.verify_cert(&self.host, self.port, cert) {
                    Ok(()) => Ok(true),
                    Err(why) => {
                        let refusal = ConnectError::HostCertificate {
                            host: known_hosts::host_port(&self.host, self.port),
                            detail: why,
                        };
                        *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(refusal);
                        Ok(false)
                    }
                };
            }
        };
        match self.check(key) {
            Ok(()) => Ok(true),
            Err(e) => {
                *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                Ok(false)
            }
        }
    }
}

/// How long the key exchange and authentication may take once the server
/// answered.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// An authenticated SSH connection to one node.
pub struct SshSession {
    handle: Handle<Verifier>,
    /// The bastion this session tunnels through, kept alive with it.
    _via: Option<Arc<SshSession>>,
    /// The step shell (see [`driver`]), started by the first step.
    shell: tokio::sync::Mutex<Shell>,
    /// Ends each step's output on the step shell's streams.
    mark: String,
    /// The commands named by [`Session::run_ahead`] for the next `exec`.
    ahead: Mutex<Vec<ExecRequest>>,
}

/// A connection's step shell.
enum Shell {
    /// Not started yet, or ended (a timeout ends it with its step).
    Closed,
    Open(StepShell),
    /// This node gets a channel per step (its `sh` has no builtin printf).
    Unfit,
}

struct StepShell {
    ch: russh::Channel<client::Msg>,
    pid: Option<u32>,
    /// No step has finished in it yet: its pid line is still to come, and
    /// it may still turn out unfit.
    fresh: bool,
    /// Steps sent ahead (their frames), queued in the shell behind the one
    /// running, whose output is still to be read.
    queued: VecDeque<Framed>,
    /// What followed the last step's end on stdout and stderr: the queued
    /// step's output, or a background process's.
    carry: [Vec<u8>; 2],
}

impl SshSession {
    fn new(handle: Handle<Verifier>, via: Option<Arc<SshSession>>) -> Self {
        SshSession {
            handle,
            _via: via,
            shell: tokio::sync::Mutex::new(Shell::Closed),
            mark: driver::new_mark(),
            ahead: Mutex::new(Vec::new()),
        }
    }
}

impl Connector for SshConnector {
    type Session = SshSession;

    async fn connect(&self, node: &Node) -> Result<SshSession, ConnectError> {
        self.connect_inner(node).await
    }
}

impl SshConnector {
    /// The shared config, unless known_hosts records key types for this
    /// host that are not our first choice: then those are asked for first.
    fn config_for(&self, node: &Node) -> Arc<client::Config> {
        if node.host_key.is_some() {
            return self.config.clone();
        }
        if self
            .opts
            .known_hosts
            .has_cert_authority(&node.host, node.port)
        {
            // Ask for a host certificate first; a plain key still verifies
            // against ordinary known_hosts lines.
            let mut config = base_config(self.opts.keepalive);
            config.preferred.host_key_certificates = config.preferred.key.clone();
            return Arc::new(config);
        }
        let recorded = self
            .opts
            .known_hosts
            .recorded_algorithms(&node.host, node.port);
        let same_kind = |a: &Algorithm, b: &Algorithm| {
            a == b || (matches!(a, Algorithm::Rsa { .. }) && matches!(b, Algorithm::Rsa { .. }))
        };
        let preferred = &self.config.preferred.key;
        if recorded.is_empty()
            || preferred
                .first()
                .is_some_and(|p| recorded.iter().any(|r| same_kind(p, r)))
        {
            return self.config.clone();
        }
        let (first, rest): (Vec<Algorithm>, Vec<Algorithm>) = preferred
            .iter()
            .cloned()
            .partition(|p| recorded.iter().any(|r| same_kind(p, r)));
        let mut config = base_config(self.opts.keepalive);
        config.preferred.key = first.into_iter().chain(rest).collect::<Vec<_>>().into();
        Arc::new(config)
    }

    /// `connect_timeout` bounds reaching the server (TCP, or the tunnel
    /// through the jump hosts) and its first word, as OpenSSH's
    /// ConnectTimeout does; the key exchange and authentication then get
    /// [`HANDSHAKE_TIMEOUT`], since a server busy with a thousand
    /// handshakes answers each one slowly but surely.
    async fn connect_inner(&self, node: &Node) -> Result<SshSession, ConnectError> {
        let limit = node.connect_timeout;
        let timed_out = || ConnectError::Timeout {
            addr: known_hosts::host_port(&node.host, node.port),
            secs: limit.as_secs_f64(),
        };
        if node.jump.is_empty() {
            let reach = async {
                let stream = tcp_connect(node).await?;
                // The server speaks first (its version line): a socket that
                // accepts and stays silent is no SSH server.
                let _ = stream.readable().await;
                Ok::<_, ConnectError>(stream)
            };
            let stream = tokio::time::timeout(limit, reach)
                .await
                .map_err(|_| timed_out())??;
            let stream = Wire::new(stream);
            return handshake_limited(node, self.handshake(node, stream, None)).await;
        }
        let via = self.jump_chain(node).await?;
        let stream = tokio::time::timeout(limit, via.tunnel(&node.host, node.port))
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| ConnectError::Jump {
                via: node.jump.last().map(JumpHost::label).unwrap_or_default(),
                detail: format!(
                    "cannot reach {}: {e}",
                    known_hosts::host_port(&node.host, node.port)
                ),
            })?;
        handshake_limited(node, self.handshake(node, stream, Some(via))).await
    }

    /// The session to the last hop before `node`, shared by every node
    /// behind the same chain (one bastion connection, not one per node).
    async fn jump_chain(&self, node: &Node) -> Result<Arc<SshSession>, ConnectError> {
        let key = node
            .jump
            .iter()
            .map(JumpHost::label)
            .collect::<Vec<_>>()
            .join(" > ");
        let cell = {
            let mut jumps = self.jumps.lock().await;
            jumps.entry(key).or_default().clone()
        };
        let (last, before) = match node.jump.split_last() {
            Some(x) => x,
            None => unreachable!("jump_chain is only called with hops"),
        };
        let hop = Node {
            name: Arc::from(last.label()),
            host: last.host.clone(),
            port: last.port,
            user: last.user.clone(),
            identity_file: last.identity_file.clone(),
            connect_timeout: node.connect_timeout,
            groups: Vec::new(),
            vars: Default::default(),
            host_key: last.host_key.clone(),
            jump: before.to_vec(),
        };
        cell.get_or_init(|| async {
            Box::pin(self.connect_inner(&hop))
                .await
                .map(Arc::new)
                .map_err(|e| match e {
                    ConnectError::Jump { .. } => e,
                    other => ConnectError::Jump {
                        via: last.label(),
                        detail: other.to_string(),
                    },
                })
        })
        .await
        .clone()
    }

    /// SSH over an open stream: host key check, then authentication.
    async fn handshake<S>(
        &self,
        node: &Node,
        stream: S,
        via: Option<Arc<SshSession>>,
    ) -> Result<SshSession, ConnectError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let addr = known_hosts::host_port(&node.host, node.port);
        let refusal = Arc::new(Mutex::new(None));
        let verifier = Verifier {
            host: node.host.clone(),
            port: node.port,
            pin: node.host_key.clone(),
            known_hosts: self.opts.known_hosts.clone(),
            accept_new: self.opts.accept_new_host_keys,
            refusal: refusal.clone(),
        };
        let mut handle = match client::connect_stream(self.config_for(node), stream, verifier).await
        {
            Ok(h) => h,
            Err(e) => {
                let stored = refusal.lock().unwrap_or_else(|p| p.into_inner()).take();
                return Err(stored.unwrap_or(ConnectError::Protocol {
                    addr,
                    detail: e.to_string(),
                }));
            }
        };
        let ids = self.opts.credentials.identities_for(node);
        authenticate(&mut handle, node, &self.opts.credentials, &ids).await?;
        Ok(SshSession::new(handle, via))
    }
}

/// `handshake` bounded by [`HANDSHAKE_TIMEOUT`] (or the node's longer
/// connect_timeout).
async fn handshake_limited(
    node: &Node,
    handshake: impl std::future::Future<Output = Result<SshSession, ConnectError>>,
) -> Result<SshSession, ConnectError> {
    let limit = HANDSHAKE_TIMEOUT.max(node.connect_timeout);
    tokio::time::timeout(limit, handshake)
        .await
        .unwrap_or_else(|_| {
            Err(ConnectError::HandshakeTimeout {
                addr: known_hosts::host_port(&node.host, node.port),
                secs: limit.as_secs_f64(),
            })
        })
}

/// A TCP connection to the node, with DNS and refusal told apart.
async fn tcp_connect(node: &Node) -> Result<TcpStream, ConnectError> {
    let addr = known_hosts::host_port(&node.host, node.port);
    let sockets: Vec<_> = tokio::net::lookup_host((node.host.as_str(), node.port))
        .await
        .map_err(|e| ConnectError::Dns {
            host: node.host.clone(),
            detail: e.to_string(),
        })?
        .collect();
    let mut last_err = None;
    for sa in sockets {
        match TcpStream::connect(sa).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last_err = Some(e),
        }
    }
    match last_err {
        Some(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err(ConnectError::Refused { addr })
        }
        e => Err(ConnectError::Network {
            addr,
            detail: e
                .map(|e| e.to_string())
                .unwrap_or_else(|| "no address".into()),
        }),
    }
}

/// Tries the agent's keys, then each identity file (its certificate first).
async fn authenticate(
    handle: &mut Handle<Verifier>,
    node: &Node,
    creds: &Credentials,
    ids: &[Arc<Identity>],
) -> Result<(), ConnectError> {
    let user = node.user.as_str();
    let lost = |e: russh::Error| ConnectError::Protocol {
        addr: known_hosts::host_port(&node.host, node.port),
        detail: e.to_string(),
    };
    let mut tried = Vec::new();
    if !creds.agent_keys.is_empty()
        && let Some(mut agent) = auth::agent().await
    {
        for key in &creds.agent_keys {
            tried.push(format!("agent key {}", known_hosts::fingerprint(key)));
            let hash = rsa_hash(handle, key).await;
            match handle
                .authenticate_publickey_with(user, key.clone(), hash, &mut agent)
                .await
            {
                Ok(r) if r.success() => return Ok(()),
                Ok(_) => {}
                Err(e) => tracing::debug!("agent signing failed: {e:?}"),
            }
        }
    }
    for id in ids {
        tried.push(id.path.display().to_string());
        if let Some(cert) = &id.cert {
            let r = handle
                .authenticate_openssh_cert(user, id.key.clone(), cert.clone())
                .await
                .map_err(lost)?;
            if r.success() {
                return Ok(());
            }
        }
        let r = if let Some(key) = &id.ed25519 {
            let mut signer = auth::Ed25519Signer(key.clone());
            let public = id.key.public_key().clone();
            handle
                .authenticate_publickey_with(user, public, None, &mut signer)
                .await
                .map_err(|_| lost(russh::Error::SendError))?
        } else {
            let hash = rsa_hash(handle, id.key.public_key()).await;
            let key = PrivateKeyWithHashAlg::new(id.key.clone(), hash);
            handle
                .authenticate_publickey(user, key)
                .await
                .map_err(lost)?
        };
        if r.success() {
            return Ok(());
        }
    }
    Err(ConnectError::Auth {
        user: user.to_string(),
        host: known_hosts::host_port(&node.host, node.port),
        tried: if tried.is_empty() {
            "no key at all (no ssh-agent, no identity file)".to_string()
        } else {
            tried.join(", ")
        },
    })
}

/// RSA keys need the server's preferred hash; other keys have none.
async fn rsa_hash(handle: &Handle<Verifier>, key: &PublicKey) -> Option<HashAlg> {
    if !key.algorithm().is_rsa() {
        return None;
    }
    handle
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten()
}

impl Session for SshSession {
    type Tunnel = russh::ChannelStream<client::Msg>;

    async fn tunnel(&self, host: &str, port: u16) -> Result<Self::Tunnel, SessionError> {
        let ch = self
            .handle
            .channel_open_direct_tcpip(host, port as u32, "127.0.0.1", 0)
            .await
            .map_err(|e| {
                if self.handle.is_closed() {
                    SessionError::Lost(e.to_string())
                } else {
                    SessionError::Refused(e.to_string())
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
        if let Some(frame) = driver::frame(&req, &self.mark)
            && let Ok(mut shell) = self.shell.try_lock()
        {
            let next = driver::frames_ahead(&next, &self.mark);
            let this = Framed {
                step: req.step,
                frame,
            };
            if let Some(out) = self.exec_in_shell(&mut shell, &req, this, next).await? {
                return Ok(out);
            }
        }
        self.exec_in_channel(req).await
    }

    fn run_ahead(&self, next: Vec<ExecRequest>) {
        if let Ok(mut a) = self.ahead.lock() {
            *a = next;
        }
    }

    /// Dropping the handle and the channels ends russh's session task,
    /// which shuts the socket down; sshd reads the end of the stream and
    /// cleans up as it does on a DISCONNECT message, which costs a packet
    /// more per node.
    async fn close(self) {
        drop(self);
    }
}

impl SshSession {
    /// A channel for this command alone.
    async fn exec_in_channel(&self, req: ExecRequest) -> Result<ExecOutput, SessionError> {
        let lost = |e: russh::Error| SessionError::Lost(e.to_string());
        let mut ch = self.open_channel().await?;
        ch.exec(true, remote_command(&req).as_bytes())
            .await
            .map_err(lost)?;
        ch.data(&req.stdin[..]).await.map_err(lost)?;
        ch.eof().await.map_err(lost)?;
        let mut out = Collector::new(req.output_cap, req.sudo);
        self.pump(&mut ch, &req, &mut out, None).await?;
        self.finish(out)
    }

    /// The step shell runs `frame`, and `next` is queued behind it; `None`
    /// when this node has no step shell (no frame ran).
    async fn exec_in_shell(
        &self,
        shell: &mut Shell,
        req: &ExecRequest,
        this: Framed,
        next: Vec<Framed>,
    ) -> Result<Option<ExecOutput>, SessionError> {
        let lost = |e: russh::Error| SessionError::Lost(e.to_string());
        // A step sent ahead that is not this one (a step before it failed,
        // or is tried again): it runs to no purpose, so its shell is left
        // to it.
        let own = this.step.is_some();
        if let Shell::Open(sh) = shell
            && sh.queued.front().is_some_and(|q| !own || *q != this)
            && let Shell::Open(sh) = std::mem::replace(shell, Shell::Closed)
        {
            let _ = sh.ch.close().await;
        }
        if matches!(shell, Shell::Closed) {
            let ch = self.open_channel().await?;
            ch.exec(true, driver::command(PID_MARKER).as_bytes())
                .await
                .map_err(lost)?;
            *shell = Shell::Open(StepShell {
                ch,
                pid: None,
                fresh: true,
                queued: VecDeque::new(),
                carry: Default::default(),
            });
        }
        let Shell::Open(sh) = shell else {
            return Ok(None);
        };
        // This step is already in the shell when it was sent ahead.
        let mut input = if own && sh.queued.front() == Some(&this) {
            sh.queued.pop_front();
            Vec::new()
        } else {
            this.frame
        };
        // What is queued already begins `next` (the same steps announced
        // again, one fewer); the rest of it follows.
        if sh.queued.iter().zip(&next).all(|(q, n)| q == n) {
            for f in next.into_iter().skip(sh.queued.len()) {
                input.extend_from_slice(&f.frame);
                sh.queued.push_back(f);
            }
        }
        if !input.is_empty() {
            sh.ch.data_bytes(input).await.map_err(lost)?;
        }
        let mut out = Collector::new(req.output_cap, req.sudo);
        if !sh.fresh {
            out.pid = sh.pid;
            out.pid_line = None;
        }
        let mut ends = [EndScan::new(&self.mark), EndScan::new(&self.mark)];
        let [carry_out, carry_err] = std::mem::take(&mut sh.carry);
        let cap = out.cap;
        ends[0].feed(&carry_out, &mut |b: &[u8]| out.stdout.push(b, cap));
        ends[1].feed(&carry_err, &mut |b: &[u8]| out.stderr_data(b));
        let closed = self
            .pump(&mut sh.ch, req, &mut out, Some(&mut ends))
            .await?;
        let [stdout, stderr] = &mut ends;
        if !closed && stdout.ended() && stderr.ended() {
            sh.pid = out.pid;
            sh.fresh = false;
            sh.carry = [stdout.after(), stderr.after()];
            out.code = stdout.code();
            return Ok(Some(out.finish()));
        }
        let unfit = sh.fresh && out.code == Some(driver::UNFIT as i32) && !stdout.found();
        if let Shell::Open(sh) = std::mem::replace(shell, Shell::Closed) {
            let _ = sh.ch.close().await;
        }
        if unfit {
            tracing::debug!("no builtin printf on the node: a channel per step");
            *shell = Shell::Unfit;
            return Ok(None);
        }
        // The shell ended with the step: a timeout or an interrupt ended
        // its process group, or the step ended the shell itself.
        out.stdout.push(&stdout.rest(), out.cap);
        out.stderr_data(&stderr.rest());
        out.code = None;
        self.finish(out).map(Some)
    }

    /// Feeds a command's messages to `out` until it ends (or, in the step
    /// shell, until both streams reached their end marks), ending it on
    /// timeout or cancel. Returns whether the channel closed.
    async fn pump(
        &self,
        ch: &mut russh::Channel<client::Msg>,
        req: &ExecRequest,
        out: &mut Collector,
        mut ends: Option<&mut [EndScan; 2]>,
    ) -> Result<bool, SessionError> {
        let mut deadline = req.timeout.map(|t| Instant::now() + t);
        let mut kills = 0u8;
        loop {
            if ends.as_ref().is_some_and(|e| e.iter().all(EndScan::ended)) {
                return Ok(false);
            }
            let wake =
                deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
            let msg = tokio::select! {
                m = ch.wait() => m,
                _ = tokio::time::sleep_until(wake), if deadline.is_some() => {
                    out.timed_out |= !out.interrupted;
                    if !self.end(ch, out, &mut kills).await {
                        return Ok(true);
                    }
                    deadline = Some(Instant::now() + TERM_GRACE);
                    continue;
                }
                _ = req.cancel.cancelled(), if kills == 0 => {
                    out.interrupted = true;
                    self.end(ch, out, &mut kills).await;
                    deadline = Some(Instant::now() + TERM_GRACE);
                    continue;
                }
            };
            let Some(msg) = msg else { return Ok(true) };
            let cap = out.cap;
            match (msg, ends.as_deref_mut()) {
                (ChannelMsg::Data { data }, None) => out.stdout.push(&data, cap),
                (ChannelMsg::Data { data }, Some([o, _])) => {
                    o.feed(&data, &mut |b: &[u8]| out.stdout.push(b, cap))
                }
                (ChannelMsg::ExtendedData { data, ext: 1 }, None) => out.stderr_data(&data),
                (ChannelMsg::ExtendedData { data, ext: 1 }, Some([_, e])) => {
                    e.feed(&data, &mut |b: &[u8]| out.stderr_data(b))
                }
                (ChannelMsg::ExitStatus { exit_status }, _) => out.code = Some(exit_status as i32),
                (ChannelMsg::ExitSignal { signal_name, .. }, _) => {
                    out.signal = Some(format!("{signal_name:?}"))
                }
                (ChannelMsg::Failure, _) => {
                    return Err(SessionError::Refused("exec request was refused".into()));
                }
                (ChannelMsg::Close, _) => return Ok(true),
                _ => {}
            }
        }
    }

    /// The command's result, unless the connection died under it.
    fn finish(&self, out: Collector) -> Result<ExecOutput, SessionError> {
        let ended = out.timed_out || out.interrupted;
        if out.code.is_none() && out.signal.is_none() && !ended && self.handle.is_closed() {
            return Err(SessionError::Lost(
                "the SSH connection closed during the command".into(),
            ));
        }
        Ok(out.finish())
    }

    /// One stage of ending a command: TERM, then KILL, then give up on the
    /// channel (returns false). sshd honours `signal` requests only under
    /// privilege separation (not for root), so a second channel runs `kill`
    /// on the process group too.
    async fn end(
        &self,
        ch: &russh::Channel<client::Msg>,
        out: &mut Collector,
        kills: &mut u8,
    ) -> bool {
        if *kills >= 2 {
            let _ = ch.close().await;
            return false;
        }
        let (sig, name) = if *kills == 0 {
            (Sig::TERM, "TERM")
        } else {
            (Sig::KILL, "KILL")
        };
        let _ = ch.signal(sig).await;
        tracing::debug!("ending remote pid {:?} with {name}", out.pid);
        if let Some(pid) = out.pid {
            self.kill_group(pid, name, out.sudo).await;
        }
        *kills += 1;
        true
    }

    async fn open_channel(&self) -> Result<russh::Channel<client::Msg>, SessionError> {
        self.handle.channel_open_session().await.map_err(|e| {
            if self.handle.is_closed() {
                SessionError::Lost(e.to_string())
            } else {
                SessionError::Refused(e.to_string())
            }
        })
    }

    /// Signals the process group of `pid` from a fresh channel. The group is
    /// read from /proc (or ps) so it is right whatever the login shell did.
    async fn kill_group(&self, pid: u32, sig: &str, sudo: bool) {
        let script = format!(
            "g=$(sed 's/.*) //' /proc/{pid}/stat 2>/dev/null | cut -d' ' -f3)\n\
             [ -n \"$g\" ] || g=$(ps -o pgid= -p {pid} 2>/dev/null | tr -d ' ')\n\
             [ -n \"$g\" ] && [ \"$g\" -gt 1 ] && kill -s {sig} -- -\"$g\" 2>/dev/null\n\
             exit 0\n"
        );
        let Ok(mut ch) = self.open_channel().await else {
            return;
        };
        // A `sudo` step runs as root: only root may signal it.
        let shell = if sudo { "sudo -n sh -s" } else { "sh -s" };
        if ch.exec(true, shell).await.is_err() {
            return;
        }
        let _ = ch.data(script.as_bytes()).await;
        let _ = ch.eof().await;
        // Reaping the helper channel must not delay the command's own end.
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                while let Some(msg) = ch.wait().await {
                    if matches!(msg, ChannelMsg::Close) {
                        break;
                    }
                }
            })
            .await;
        });
    }
}

/// The exec line: report the shell's pid on stderr's first line (so a
/// timeout can end its process group), then read the script from stdin.
fn remote_command(req: &ExecRequest) -> String {
    let inner = format!("echo \"{PID_MARKER}$$\" >&2; exec {}", req.shell_command());
    format!("sh -c {}", crate::quote::shell_quote(&inner))
}

/// Accumulates one command's output and end.
struct Collector {
    cap: usize,
    stdout: Captured,
    stderr: Captured,
    /// The remote shell's pid, from its `__FLEETFIX_PID=` stderr line.
    pid: Option<u32>,
    /// Stderr held back until the pid line is seen (`None` once it was).
    pid_line: Option<Vec<u8>>,
    /// The command runs under sudo, so ending it needs sudo too.
    sudo: bool,
    code: Option<i32>,
    signal: Option<String>,
    timed_out: bool,
    interrupted: bool,
}

impl Collector {
    fn new(cap: usize, sudo: bool) -> Self {
        Collector {
            cap,
            sudo,
            stdout: Captured::default(),
            stderr: Captured::default(),
            pid: None,
            pid_line: Some(Vec::new()),
            code: None,
            signal: None,
            timed_out: false,
            interrupted: false,
        }
    }

    /// Stderr bytes: the pid line is ours and taken out; the rest (login
    /// script noise before it included) is the command's.
    fn stderr_data(&mut self, data: &[u8]) {
        let Some(held) = &mut self.pid_line else {
            self.stderr.push(data, self.cap);
            return;
        };
        held.extend_from_slice(data);
        let marker = PID_MARKER.as_bytes();
        while let Some(nl) = held.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = held.drain(..=nl).collect();
            if let Some(rest) = line.strip_prefix(marker) {
                self.pid = std::str::from_utf8(rest)
                    .ok()
                    .and_then(|s| s.trim().parse().ok());
                let after = std::mem::take(held);
                self.pid_line = None;
                self.stderr.push(&after, self.cap);
                return;
            }
            self.stderr.push(&line, self.cap);
        }
        if held.len() > PID_SEARCH_LIMIT {
            let rest = std::mem::take(held);
            self.pid_line = None;
            self.stderr.push(&rest, self.cap);
        }
    }

    fn finish(mut self) -> ExecOutput {
        if let Some(partial) = self.pid_line.take() {
            // Output with no pid line at all (or its unfinished tail).
            let cap = self.cap;
            self.stderr.push(&partial, cap);
        }
        let status = match (self.timed_out, self.code, self.signal) {
            _ if self.interrupted => ExitStatus::Interrupted,
            (true, _, _) => ExitStatus::TimedOut,
            (_, Some(c), _) => ExitStatus::Code(c),
            (_, None, Some(s)) => ExitStatus::Signal(s),
            _ => ExitStatus::Unknown,
        };
        ExecOutput {
            status,
            stdout: self.stdout,
            stderr: self.stderr,
        }
    }
}

/// The default known_hosts path, `~/.ssh/known_hosts`.
pub fn default_known_hosts_path() -> PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_default();
    PathBuf::from(home).join(".ssh").join("known_hosts")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pid_line_is_found_after_login_noise_and_taken_out() {
        let mut c = Collector::new(1024, false);
        c.stderr_data(b"motd noise\n__FLEETFIX_");
        c.stderr_data(b"PID=4242\nreal error\n");
        c.stderr_data(b"more\n");
        assert_eq!(c.pid, Some(4242));
        assert_eq!(
            String::from_utf8_lossy(&c.stderr.bytes),
            "motd noise\nreal error\nmore\n"
        );
    }

    #[test]
    fn stderr_without_a_pid_line_is_kept_whole() {
        let mut c = Collector::new(1024, false);
        c.stderr_data(b"no newline at all");
        let out = c.finish();
        assert_eq!(
            String::from_utf8_lossy(&out.stderr.bytes),
            "no newline at all"
        );
    }
}
