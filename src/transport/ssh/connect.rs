//! Opening connections: TCP (or a tunnel through jump hosts), the
//! handshake with host key verification, and authentication.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client;
use russh::keys::Algorithm;
use tokio::net::TcpStream;
use tokio::sync::OnceCell;

use super::auth::{self, Credentials};
use super::known_hosts::{self, KnownHosts};
use super::session::{Link, Redial, SshSession};
use super::shell::NodeLock;
use super::verify::Verifier;
use super::wire::Wire;
use crate::config::inventory::{JumpHost, Node};
use crate::transport::{ConnectError, Connector, Session};

/// A bastion session, opened at most once (its error is kept too, so the
/// nodes behind a dead bastion fail fast and alike).
type JumpCell = OnceCell<Result<Arc<SshSession>, ConnectError>>;

/// Settings shared by every connection of a run.
pub(crate) struct SshOptions {
    pub known_hosts: Arc<KnownHosts>,
    pub accept_new_host_keys: bool,
    pub credentials: Arc<Credentials>,
    pub keepalive: Duration,
    /// The lock every node's step shell takes (a run that may change
    /// nodes), or none.
    pub node_lock: Option<NodeLock>,
}

/// Connects nodes over SSH with russh.
pub(crate) struct SshConnector {
    dialer: Arc<Dialer>,
}

/// What opens connections; sessions keep it to open another connection
/// to their node when its server allows one channel at a time.
pub(super) struct Dialer {
    config: Arc<client::Config>,
    pub(super) opts: SshOptions,
    /// Bastion sessions by hop chain, opened once and shared.
    jumps: tokio::sync::Mutex<HashMap<String, Arc<JumpCell>>>,
}

impl SshConnector {
    pub(crate) fn new(opts: SshOptions) -> Self {
        SshConnector {
            dialer: Arc::new(Dialer {
                config: Arc::new(base_config(opts.keepalive)),
                opts,
                jumps: Default::default(),
            }),
        }
    }
}

/// The client settings every connection starts from.
fn base_config(keepalive: Duration) -> client::Config {
    client::Config {
        keepalive_interval: Some(keepalive),
        keepalive_max: 3,
        inactivity_timeout: None,
        nodelay: true,
        preferred: super::algorithms::preferred(),
        ..Default::default()
    }
}

/// How long the key exchange and authentication may take once the server
/// answered.
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

impl Connector for SshConnector {
    type Session = SshSession;

    async fn connect(&self, node: &Arc<Node>) -> Result<SshSession, ConnectError> {
        self.dialer.connect(node).await
    }
}

impl Redial for Dialer {
    fn node_lock(&self) -> Option<&NodeLock> {
        self.opts.node_lock.as_ref()
    }

    fn redial(
        self: Arc<Self>,
        node: Arc<Node>,
    ) -> Pin<Box<dyn Future<Output = Result<SshSession, ConnectError>> + Send>> {
        Box::pin(async move { self.connect(&node).await })
    }
}

impl Dialer {
    /// A new authenticated connection to `node`.
    pub(super) async fn connect(
        self: &Arc<Self>,
        node: &Arc<Node>,
    ) -> Result<SshSession, ConnectError> {
        let link = self.connect_inner(node).await?;
        Ok(SshSession::new(link, self.clone(), node.clone()))
    }

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
    async fn connect_inner(self: &Arc<Self>, node: &Node) -> Result<Link, ConnectError> {
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
    async fn jump_chain(self: &Arc<Self>, node: &Node) -> Result<Arc<SshSession>, ConnectError> {
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
            connect_timeout: last.connect_timeout,
            groups: Vec::new(),
            vars: Default::default(),
            host_key: last.host_key.clone(),
            jump: before.to_vec(),
            origins: Vec::new(),
        };
        cell.get_or_init(|| async {
            Box::pin(self.connect(&Arc::new(hop)))
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
    ) -> Result<Link, ConnectError>
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
        auth::authenticate(&mut handle, node, &self.opts.credentials, &ids).await?;
        Ok(Link { handle, _via: via })
    }
}

/// `handshake` bounded by [`HANDSHAKE_TIMEOUT`] (or the node's longer
/// connect_timeout).
async fn handshake_limited(
    node: &Node,
    handshake: impl std::future::Future<Output = Result<Link, ConnectError>>,
) -> Result<Link, ConnectError> {
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

/// The default known_hosts path, `~/.ssh/known_hosts`.
pub(crate) fn default_known_hosts_path() -> PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_default();
    PathBuf::from(home).join(".ssh").join("known_hosts")
}
