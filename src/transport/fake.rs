//! An in-memory [`Connector`] for tests: each node follows a script (can it
//! be reached, how long connecting takes, what each command answers), and
//! everything that happens is logged with its (tokio, so virtual under
//! paused time) timestamp, so tests can assert on order and concurrency.
//!
//! Commands are matched by a piece of their script text (`*` as the node
//! matches every node); the latest matching rule wins, so a rule for one
//! node can override one for all. A command no rule matches exits 0
//! silently. Like the real transport, a command ends as `TimedOut(Ended)`
//! when its `timeout` passes and as `Interrupted(Ended)` when `cancel`
//! fires; `interrupt` alone lets a running command go on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;

use crate::config::inventory::Node;
use crate::job::StepRef;
use crate::transport::{
    Ahead, Captured, ConnectError, Connector, Ending, ExecOutput, ExecRequest, ExitStatus, Session,
    SessionError,
};

/// What a scripted command does.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reply {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// How long it runs (tokio time).
    pub delay: Duration,
    /// The connection dies after `delay` instead of an exit status.
    pub lost: bool,
    /// The node lock is held by another run: this holder's line.
    pub locked: Option<String>,
}

impl Reply {
    pub(crate) fn ok() -> Self {
        Reply::default()
    }

    pub(crate) fn code(code: i32) -> Self {
        Reply {
            code,
            ..Default::default()
        }
    }

    pub(crate) fn stdout(text: &str) -> Self {
        Reply {
            stdout: text.to_string(),
            ..Default::default()
        }
    }

    /// The connection is lost `after` the command started.
    pub(crate) fn lost(after: Duration) -> Self {
        Reply {
            delay: after,
            lost: true,
            ..Default::default()
        }
    }

    /// The node is locked by another run (`holder`); nothing runs.
    pub(crate) fn locked(holder: &str) -> Self {
        Reply {
            locked: Some(holder.to_string()),
            ..Default::default()
        }
    }

    pub(crate) fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// Why a scripted node cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unreachable {
    Refused,
    Timeout,
    HostKeyChanged,
    Auth,
}

/// A command as a rule sees it.
pub(crate) struct Call<'a> {
    pub node: &'a str,
    /// The script as the shell reads it (exports, the script, its wrapper).
    pub script: &'a str,
    /// How many commands of this node this rule answered before (0: first).
    pub nth: usize,
}

type Respond = Arc<dyn Fn(&Call<'_>) -> Reply + Send + Sync>;

struct Rule {
    node: String,
    pattern: String,
    respond: Respond,
}

/// What happened, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum What {
    /// Connecting began.
    Connecting,
    Connected,
    Unreachable(String),
    /// A command started: its script, and whether the run was already
    /// interrupted when it started.
    Exec {
        script: String,
        step: Option<StepRef>,
        after_interrupt: bool,
    },
    /// A command ended: its script and how.
    Done {
        script: String,
        status: String,
    },
    /// Steps named to be sent ahead (their scripts).
    Ahead(Vec<String>),
    Tunnel(String),
    Closed,
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Since the fake was made (virtual under paused time).
    pub at: Duration,
    pub node: String,
    pub what: What,
}

#[derive(Default)]
struct NodeSetup {
    unreachable: Option<Unreachable>,
    connect_delay: Duration,
    http: HashMap<String, String>,
}

struct Inner {
    start: Instant,
    rules: Mutex<Vec<Rule>>,
    nodes: Mutex<HashMap<String, NodeSetup>>,
    counts: Mutex<HashMap<(usize, String), usize>>,
    log: Mutex<Vec<Entry>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Inner {
    fn record(&self, node: &str, what: What) {
        let at = self.start.elapsed();
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.push(Entry {
            at,
            node: node.to_string(),
            what,
        });
    }

    fn reply(&self, node: &str, script: &str) -> Reply {
        let found = {
            let rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
            rules
                .iter()
                .enumerate()
                .rev()
                .find(|(_, r)| (r.node == "*" || r.node == node) && script.contains(&r.pattern))
                .map(|(i, r)| (i, r.respond.clone()))
        };
        let Some((i, respond)) = found else {
            return Reply::ok();
        };
        let nth = {
            let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            let n = counts.entry((i, node.to_string())).or_default();
            *n += 1;
            *n - 1
        };
        respond(&Call { node, script, nth })
    }
}

/// Counts a node in flight from the start of connecting until its session
/// (or the attempt to connect) is gone.
struct InFlight(Arc<Inner>);

impl InFlight {
    fn new(inner: &Arc<Inner>) -> Self {
        let now = inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        inner.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(inner.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The fake fleet; clones share it.
#[derive(Clone)]
pub(crate) struct FakeConnector {
    inner: Arc<Inner>,
}

impl Default for FakeConnector {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeConnector {
    pub(crate) fn new() -> Self {
        FakeConnector {
            inner: Arc::new(Inner {
                start: Instant::now(),
                rules: Mutex::default(),
                nodes: Mutex::default(),
                counts: Mutex::default(),
                log: Mutex::default(),
                in_flight: AtomicUsize::new(0),
                max_in_flight: AtomicUsize::new(0),
            }),
        }
    }

    fn setup(&self, node: &str, f: impl FnOnce(&mut NodeSetup)) -> &Self {
        let mut nodes = self.inner.nodes.lock().unwrap_or_else(|p| p.into_inner());
        f(nodes.entry(node.to_string()).or_default());
        self
    }

    /// Commands of `node` (`*`: any) whose script contains `pattern` answer `reply`.
    pub(crate) fn on(&self, node: &str, pattern: &str, reply: Reply) -> &Self {
        self.on_fn(node, pattern, move |_| reply.clone())
    }

    /// The n-th such command of a node answers `replies[n]`; the last repeats.
    pub(crate) fn seq(&self, node: &str, pattern: &str, replies: Vec<Reply>) -> &Self {
        assert!(!replies.is_empty(), "a sequence needs a reply");
        self.on_fn(node, pattern, move |c| {
            replies[c.nth.min(replies.len() - 1)].clone()
        })
    }

    /// Such commands answer what `f` says.
    pub(crate) fn on_fn(
        &self,
        node: &str,
        pattern: &str,
        f: impl Fn(&Call<'_>) -> Reply + Send + Sync + 'static,
    ) -> &Self {
        let mut rules = self.inner.rules.lock().unwrap_or_else(|p| p.into_inner());
        rules.push(Rule {
            node: node.to_string(),
            pattern: pattern.to_string(),
            respond: Arc::new(f),
        });
        self
    }

    pub(crate) fn unreachable(&self, node: &str, why: Unreachable) -> &Self {
        self.setup(node, |s| s.unreachable = Some(why))
    }

    /// Connecting takes this long (past the node's `connect_timeout`: a timeout).
    pub(crate) fn connect_delay(&self, node: &str, delay: Duration) -> &Self {
        self.setup(node, |s| s.connect_delay = delay)
    }

    /// A tunnel of `node` to `host:port` answers every request with this
    /// status and body (HTTP/1.1).
    pub(crate) fn http(&self, node: &str, host_port: &str, status: u16, body: &str) -> &Self {
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        self.setup(node, |s| {
            s.http.insert(host_port.to_string(), response);
        })
    }

    /// Everything that happened, in order.
    pub(crate) fn log(&self) -> Vec<Entry> {
        self.inner
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The scripts that started on `node`, in order.
    pub(crate) fn ran(&self, node: &str) -> Vec<String> {
        self.log()
            .into_iter()
            .filter(|e| e.node == node)
            .filter_map(|e| match e.what {
                What::Exec { script, .. } => Some(script),
                _ => None,
            })
            .collect()
    }

    /// Whether some command containing `pattern` started on `node`.
    pub(crate) fn ran_on(&self, node: &str, pattern: &str) -> bool {
        self.ran(node).iter().any(|s| s.contains(pattern))
    }

    /// The most nodes that were connecting or connected at once.
    pub(crate) fn max_in_flight(&self) -> usize {
        self.inner.max_in_flight.load(Ordering::SeqCst)
    }

    /// When `node` began connecting, and when it was done (closed or
    /// unreachable).
    pub(crate) fn span(&self, node: &str) -> Option<(Duration, Duration)> {
        let log = self.log();
        let start = log
            .iter()
            .find(|e| e.node == node && e.what == What::Connecting)?
            .at;
        let end = log
            .iter()
            .rev()
            .find(|e| e.node == node && matches!(e.what, What::Closed | What::Unreachable(_)))?
            .at;
        Some((start, end))
    }
}

/// The script inside the shell input's wrapper, as written in the playbook
/// (exports included).
fn script_of(stdin: &[u8]) -> String {
    let text = String::from_utf8_lossy(stdin);
    let body = text.strip_prefix("{\n").unwrap_or(&text);
    let body = body.strip_suffix("} </dev/null\n").unwrap_or(body);
    body.trim_end_matches('\n').to_string()
}

fn captured(text: &str) -> Captured {
    Captured {
        bytes: text.as_bytes().to_vec(),
        dropped: 0,
    }
}

impl Connector for FakeConnector {
    type Session = FakeSession;

    async fn connect(&self, node: &Arc<Node>) -> Result<FakeSession, ConnectError> {
        let guard = InFlight::new(&self.inner);
        let name = node.name.to_string();
        self.inner.record(&name, What::Connecting);
        let (why, delay, http) = {
            let nodes = self.inner.nodes.lock().unwrap_or_else(|p| p.into_inner());
            nodes
                .get(&name)
                .map(|s| (s.unreachable, s.connect_delay, s.http.clone()))
                .unwrap_or_default()
        };
        let addr = format!("{}:{}", node.host, node.port);
        let timeout = node.connect_timeout;
        let err = if delay > timeout {
            tokio::time::sleep(timeout).await;
            Some(ConnectError::Timeout {
                addr,
                secs: timeout.as_secs_f64(),
            })
        } else {
            tokio::time::sleep(delay).await;
            why.map(|w| match w {
                Unreachable::Refused => ConnectError::Refused { addr },
                Unreachable::Timeout => ConnectError::Timeout {
                    addr,
                    secs: timeout.as_secs_f64(),
                },
                Unreachable::HostKeyChanged => ConnectError::HostKeyChanged {
                    host: node.host.clone(),
                    key_type: "ssh-ed25519".into(),
                    fingerprint: "SHA256:new".into(),
                    recorded: "known_hosts:1".into(),
                },
                Unreachable::Auth => ConnectError::Auth {
                    user: node.user.clone(),
                    host: node.host.clone(),
                    tried: "no key".into(),
                },
            })
        };
        if let Some(e) = err {
            self.inner.record(&name, What::Unreachable(e.to_string()));
            return Err(e);
        }
        self.inner.record(&name, What::Connected);
        Ok(FakeSession {
            inner: self.inner.clone(),
            node: name,
            http,
            _in_flight: guard,
        })
    }
}

/// One node's open fake connection.
pub(crate) struct FakeSession {
    inner: Arc<Inner>,
    node: String,
    http: HashMap<String, String>,
    _in_flight: InFlight,
}

impl Session for FakeSession {
    type Tunnel = DuplexStream;

    async fn exec(&self, req: ExecRequest) -> Result<ExecOutput, SessionError> {
        let script = script_of(&req.stdin);
        let reply = self.inner.reply(&self.node, &script);
        self.inner.record(
            &self.node,
            What::Exec {
                script: script.clone(),
                step: req.step,
                after_interrupt: req.interrupt.is_cancelled(),
            },
        );
        if let Some(holder) = reply.locked {
            // As with `--lock-wait`: busy is known after the wait.
            tokio::time::sleep(reply.delay).await;
            self.inner.record(
                &self.node,
                What::Done {
                    script,
                    status: "locked".into(),
                },
            );
            return Err(SessionError::Locked(holder));
        }
        let far = Duration::from_secs(86_400 * 365);
        let status = tokio::select! {
            _ = tokio::time::sleep(reply.delay) => {
                if reply.lost {
                    self.inner.record(&self.node, What::Done { script, status: "lost".into() });
                    return Err(SessionError::Lost("the fake connection died".into()));
                }
                ExitStatus::Code(reply.code)
            }
            _ = tokio::time::sleep(req.timeout.unwrap_or(far)), if req.timeout.is_some() => {
                ExitStatus::TimedOut(Ending::Ended)
            }
            _ = req.cancel.cancelled() => ExitStatus::Interrupted(Ending::Ended),
        };
        self.inner.record(
            &self.node,
            What::Done {
                script,
                status: format!("{status:?}"),
            },
        );
        let ended = !matches!(status, ExitStatus::Code(_));
        Ok(ExecOutput {
            status,
            // An ended command's output is what it wrote so far: none here.
            stdout: captured(if ended { "" } else { &reply.stdout }),
            stderr: captured(if ended { "" } else { &reply.stderr }),
        })
    }

    fn run_ahead(&self, next: Vec<Ahead>) {
        let scripts = next.iter().map(|a| script_of(&a.req.stdin)).collect();
        self.inner.record(&self.node, What::Ahead(scripts));
    }

    async fn tunnel(&self, host: &str, port: u16) -> Result<DuplexStream, SessionError> {
        let target = format!("{host}:{port}");
        self.inner.record(&self.node, What::Tunnel(target.clone()));
        let Some(response) = self.http.get(&target).cloned() else {
            return Err(SessionError::Refused(format!(
                "nothing listens on {target}"
            )));
        };
        let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            // The request head (the fake's requests carry no body).
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match theirs.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = theirs.write_all(response.as_bytes()).await;
            let _ = theirs.shutdown().await;
        });
        Ok(ours)
    }

    async fn close(self) {
        self.inner.record(&self.node, What::Closed);
    }
}
