//! The read-only web server: the journaled runs (`fleetfix runs --serve`)
//! or one run live (`fleetfix run --serve`), on a thread and a runtime of
//! its own, so no browser ever slows a run.
//!
//! A live run reaches it through [`LiveFeed`], a reporter on the writers'
//! thread: each (masked) event goes into the run's record for the page and
//! into a bounded broadcast for the pages' event streams (server-sent
//! events). A browser that falls behind loses events and is told to reload
//! a fresh page; the run never waits.
//!
//! Safe by default: loopback unless told; any other address needs a random
//! token (in the URL printed once, then a cookie) and every request without
//! it gets 401; GET and HEAD only (405 otherwise); on loopback a `Host` that
//! is not a loopback name gets 403 (DNS rebinding).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{broadcast, mpsc};

use super::page::{self, PageOptions};
use crate::events::{Reporter, Stamped};
use crate::output::SharedRecord;
use crate::record;
use crate::support::error::Error;

/// Bursts of events a page's stream may fall behind by before it must
/// reload.
const BACKLOG: usize = 1024;
/// Bytes of past events kept for pages that connect after they were
/// rendered. A large page takes a while to load, and a busy run has
/// thousands of events meanwhile; a page that missed more must reload,
/// and a reload renders the whole run again, so enough is kept for a
/// 1,000-node run (~1.5 MB of events) many times over.
const RECENT_BYTES: usize = 32 << 20;
/// A page's event stream writes at most this often; events arriving
/// meanwhile go out together.
const COALESCE: Duration = Duration::from_millis(100);
/// Connections served at once; more wait in the kernel's queue.
const MAX_CONNECTIONS: usize = 256;
const COOKIE: &str = "fleetfix_token";

type ResBody = BoxBody<Bytes, Infallible>;

/// A listening socket, with the token it asks for (non-loopback only).
pub(crate) struct Bound {
    listener: std::net::TcpListener,
    addr: SocketAddr,
    token: Option<String>,
}

/// Binds `ADDR` (`HOST:PORT`, or a bare `PORT` on 127.0.0.1). `option`
/// names the flag in errors.
pub(crate) fn bind(addr: &str, option: &str) -> Result<Bound, Error> {
    let bad = |why: String| {
        Error::input(
            format!("{option} `{addr}`: {why}"),
            format!(
                "write e.g. {option} 127.0.0.1:8080 (loopback), or {option} 0.0.0.0:8080 (any address, with a token)"
            ),
        )
    };
    let text = if !addr.is_empty() && addr.bytes().all(|b| b.is_ascii_digit()) {
        format!("127.0.0.1:{addr}")
    } else {
        addr.to_string()
    };
    let sock = text
        .to_socket_addrs()
        .map_err(|e| bad(e.to_string()))?
        .next()
        .ok_or_else(|| bad("names no address".into()))?;
    let listener =
        std::net::TcpListener::bind(sock).map_err(|e| bad(format!("cannot listen: {e}")))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| bad(e.to_string()))?;
    let addr = listener.local_addr().map_err(|e| bad(e.to_string()))?;
    let token = (!addr.ip().is_loopback()).then(|| {
        let bytes: [u8; 24] = rand::random();
        data_encoding::BASE64URL_NOPAD.encode(&bytes)
    });
    Ok(Bound {
        listener,
        addr,
        token,
    })
}

impl Bound {
    /// The URL to open, with the token when one is needed.
    pub(crate) fn url(&self) -> String {
        let host = if self.addr.ip().is_unspecified() {
            crate::support::runner::host()
        } else {
            match self.addr.ip() {
                IpAddr::V6(ip) => format!("[{ip}]"),
                IpAddr::V4(ip) => ip.to_string(),
            }
        };
        let port = self.addr.port();
        match &self.token {
            Some(t) => format!("http://{host}:{port}/?token={t}"),
            None => format!("http://{host}:{port}/"),
        }
    }
}

/// What a server serves.
pub(crate) enum Site {
    /// One run as it happens.
    Live(Arc<Live>),
    /// The runs journaled under this state directory.
    Journals(PathBuf),
}

/// One run as it happens: its record so far, and the stream of its events.
pub(crate) struct Live {
    /// The run's one record, applied on the writer thread before the
    /// event reaches [`LiveFeed`]; pages are rendered from it.
    record: SharedRecord,
    state: Mutex<LiveState>,
    /// Event streams whose response is still being written.
    open_streams: Arc<std::sync::atomic::AtomicUsize>,
}

/// How long the end of a run waits for open streams to write what is left
/// (`run_finished` last): the process may end right after the run.
const DRAIN: Duration = Duration::from_secs(2);

struct LiveState {
    /// Events sent so far; each stream message carries its number (the
    /// same count as the record's: every event passes both).
    seq: u64,
    /// `None` once the run is over.
    tx: Option<broadcast::Sender<Batch>>,
    /// Messages of the burst under way, sent together when it ends.
    pending: Vec<Message>,
    /// Up to [`RECENT_BYTES`] of the last messages: a page that connects a little after
    /// it was rendered gets what it missed from here.
    recent: std::collections::VecDeque<Message>,
    /// The bytes of `recent`.
    recent_bytes: usize,
}

/// An event's number and its JSON line.
type Message = Arc<(u64, Bytes)>;

/// The messages of one burst of events: streams wake and write once per
/// burst, not once per event (a busy run has thousands a second).
type Batch = Arc<Vec<Message>>;

/// A live run's view, and the reporter that feeds it (threaded, on the
/// writers' thread).
pub(crate) fn live(record: SharedRecord) -> (Arc<Live>, LiveFeed) {
    let (tx, _) = broadcast::channel(BACKLOG);
    let live = Arc::new(Live {
        record,
        state: Mutex::new(LiveState {
            seq: 0,
            tx: Some(tx),
            pending: Vec::new(),
            recent: std::collections::VecDeque::new(),
            recent_bytes: 0,
        }),
        open_streams: Default::default(),
    });
    (live.clone(), LiveFeed(live))
}

impl Live {
    fn lock(&self) -> std::sync::MutexGuard<'_, LiveState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Feeds a [`Live`] view from the event stream; never waits on a browser.
pub(crate) struct LiveFeed(Arc<Live>);

impl Reporter for LiveFeed {
    fn event(&mut self, ev: &Stamped) {
        let mut st = self.0.lock();
        st.seq += 1;
        let seq = st.seq;
        let line = ev.json_line();
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let msg = Arc::new((seq, Bytes::copy_from_slice(line)));
        st.recent_bytes += msg.1.len();
        st.recent.push_back(msg.clone());
        while st.recent_bytes > RECENT_BYTES {
            match st.recent.pop_front() {
                Some(old) => st.recent_bytes -= old.1.len(),
                None => break,
            }
        }
        if st.tx.is_some() {
            st.pending.push(msg);
        }
    }

    fn idle(&mut self) {
        self.0.lock().flush();
    }

    fn finish(&mut self) {
        // Streams end once they have sent what is left; give them that
        // long (the run is over: nothing waits on this but the exit).
        {
            let mut st = self.0.lock();
            st.flush();
            st.tx = None;
        }
        let until = std::time::Instant::now() + DRAIN;
        while self
            .0
            .open_streams
            .load(std::sync::atomic::Ordering::Acquire)
            > 0
            && std::time::Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl LiveState {
    /// Sends the burst's messages to the streams.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let batch = Arc::new(std::mem::take(&mut self.pending));
        if let Some(tx) = &self.tx {
            // No subscriber is no error: nobody is watching.
            let _ = tx.send(batch);
        }
    }
}

struct Ctx {
    site: Site,
    token: Option<String>,
    loopback: bool,
}

/// Serves `site` on a thread of its own until the process ends.
pub(crate) fn spawn(bound: Bound, site: Site) -> std::io::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("fleetfix-web".into())
        .spawn(move || runtime.block_on(serve(bound, site)))
}

/// Serves `site` on the current thread until Ctrl-C or SIGTERM.
pub(crate) fn serve_until_interrupted(bound: Bound, site: Site) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        tokio::select! {
            () = serve(bound, site) => {}
            () = interrupted() => {}
        }
    });
    Ok(())
}

/// Ctrl-C or SIGTERM.
pub(crate) async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

async fn serve(bound: Bound, site: Site) {
    let listener = match tokio::net::TcpListener::from_std(bound.listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("web view: cannot listen: {e}");
            return;
        }
    };
    let ctx = Arc::new(Ctx {
        site,
        token: bound.token,
        loopback: bound.addr.ip().is_loopback(),
    });
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::debug!("web view: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(answer(req, &ctx).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}

fn query_param<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

fn cookie<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// Compares without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0, |d, (x, y)| d | (x ^ y)) == 0
}

/// A loopback name in `Host`, with or without a port.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn text(status: StatusCode, body: &str) -> Response<ResBody> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn html(body: String) -> Response<ResBody> {
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&page::content_security_policy()) {
        r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

async fn answer(req: Request<Incoming>, ctx: &Ctx) -> Response<ResBody> {
    let mut set_cookie = None;
    if let Some(token) = &ctx.token {
        if query_param(&req, "token").is_some_and(|t| same(t, token)) {
            set_cookie = Some(format!(
                "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
            ));
        } else if !cookie(&req, COOKIE).is_some_and(|t| same(t, token)) {
            return text(
                StatusCode::UNAUTHORIZED,
                "401: this view needs its token: open the URL fleetfix printed (…/?token=…)\n",
            );
        }
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if ctx.loopback && !loopback_host(host) {
        return text(
            StatusCode::FORBIDDEN,
            "403: this view answers loopback names only (localhost, 127.0.0.1, [::1])\n",
        );
    }
    let mut res = if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "405: this view is read-only\n",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        r
    } else {
        route(&req, ctx).await
    };
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The token is in the URL: never hand it on.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if let Some(c) = set_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::SET_COOKIE, c);
    }
    res
}

async fn route(req: &Request<Incoming>, ctx: &Ctx) -> Response<ResBody> {
    let path = req.uri().path();
    match (&ctx.site, path) {
        (Site::Live(live), "/") => {
            let live = live.clone();
            blocking(move || {
                let open = live.lock().tx.is_some();
                let (record, seq) = {
                    let a = crate::output::lock_record(&live.record);
                    (a.record.clone(), a.seq)
                };
                let opts = PageOptions {
                    live: (open && record.finished.is_none()).then_some("events"),
                    seq,
                    back: None,
                };
                html(page::render_run(&record, &opts))
            })
            .await
        }
        (Site::Live(live), "/events") => {
            let after = req
                .headers()
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
                .or_else(|| query_param(req, "after"))
                .and_then(|v| v.parse().ok());
            events(live, after)
        }
        (Site::Journals(state), "/") => {
            let state = state.clone();
            blocking(move || match record::list(&state) {
                Ok(runs) => html(page::render_list(&runs)),
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("{}\n", e.render()),
                ),
            })
            .await
        }
        (Site::Journals(state), p) if p.starts_with("/runs/") => {
            let id = percent_decode(&p["/runs/".len()..]);
            let state = state.clone();
            blocking(
                move || match id.as_deref().map(|id| record::load(&state, id)) {
                    Some(Ok(run)) => html(page::render_run(
                        &run,
                        &PageOptions {
                            live: None,
                            seq: 0,
                            back: Some("../"),
                        },
                    )),
                    _ => text(StatusCode::NOT_FOUND, "404: no such run\n"),
                },
            )
            .await
        }
        _ => text(StatusCode::NOT_FOUND, "404: not found\n"),
    }
}

/// Rendering takes a while for a large fleet: off the accepting thread.
async fn blocking(f: impl FnOnce() -> Response<ResBody> + Send + 'static) -> Response<ResBody> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "500\n"))
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A body fed from a channel: the event stream of one page.
struct Stream {
    rx: mpsc::Receiver<Bytes>,
    /// Counts this stream open until hyper drops it, written or abandoned.
    _open: StreamOpen,
}

struct StreamOpen(Arc<std::sync::atomic::AtomicUsize>);

impl StreamOpen {
    fn new(count: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        StreamOpen(count.clone())
    }
}

impl Drop for StreamOpen {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Body for Stream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|m| m.map(|b| Ok(Frame::data(b))))
    }
}

/// The frames of a batch's messages not yet sent (`after` is the last
/// sent), appended to `out`.
fn frames(batch: &[Message], after: &mut u64, out: &mut Vec<u8>) {
    for m in batch {
        if m.0 > *after {
            *after = m.0;
            out.extend_from_slice(&frame(m));
        }
    }
}

fn frame(m: &Message) -> Bytes {
    let mut f = format!("id: {}\ndata: ", m.0).into_bytes();
    f.extend_from_slice(&m.1);
    f.extend_from_slice(b"\n\n");
    Bytes::from(f)
}

const RELOAD: &[u8] = b"event: reload\ndata: reload\n\n";

/// The events after the `after`-th one, as server-sent events. A page
/// that missed some (it is older than the stream, or fell behind) is told
/// to reload; once the run is over there is nothing more (204: the
/// browser stops asking).
fn events(live: &Live, after: Option<u64>) -> Response<ResBody> {
    let (rx, seq, missed) = {
        let st = live.lock();
        let after = after.unwrap_or(st.seq);
        let oldest = st.recent.front().map_or(st.seq + 1, |m| m.0);
        // `None`: more was missed than is kept. A page may be one event
        // ahead: the record takes each event just before the stream does.
        let missed = (after + 1 >= oldest && after <= st.seq + 1).then(|| {
            st.recent
                .iter()
                .filter(|m| m.0 > after)
                .cloned()
                .collect::<Vec<_>>()
        });
        (
            st.tx.as_ref().map(broadcast::Sender::subscribe),
            after,
            missed,
        )
    };
    let after = seq;
    let (tx, body) = mpsc::channel::<Bytes>(64);
    match (rx, missed) {
        (_, None) => {
            let _ = tx.try_send(Bytes::from_static(RELOAD));
        }
        (None, Some(missed)) if missed.is_empty() => {
            let mut r = text(StatusCode::NO_CONTENT, "");
            *r.body_mut() = Full::new(Bytes::new()).boxed();
            return r;
        }
        (rx, Some(missed)) => {
            tokio::spawn(async move {
                if tx
                    .send(Bytes::from_static(b"retry: 2000\n\n"))
                    .await
                    .is_err()
                {
                    return;
                }
                let mut after = after;
                for m in missed {
                    after = m.0;
                    if tx.send(frame(&m)).await.is_err() {
                        return;
                    }
                }
                // The run is over: what it said was all.
                let Some(mut rx) = rx else { return };
                let mut keepalive = tokio::time::interval(Duration::from_secs(15));
                let mut last_write = tokio::time::Instant::now();
                loop {
                    let msg = tokio::select! {
                        m = rx.recv() => m,
                        _ = keepalive.tick() => {
                            if tx.send(Bytes::from_static(b": keepalive\n\n")).await.is_err() {
                                return;
                            }
                            continue;
                        }
                    };
                    // This message and what else comes within COALESCE of
                    // the last write go out together: the browser (and the
                    // run's host) wake a few times a second, not per burst.
                    let due = last_write + COALESCE;
                    let (mut out, mut over, mut next) = (Vec::new(), false, msg);
                    loop {
                        match next {
                            Ok(batch) => frames(&batch, &mut after, &mut out),
                            Err(broadcast::error::RecvError::Lagged(_)) => {
                                let _ = tx.send(Bytes::from_static(RELOAD)).await;
                                return;
                            }
                            Err(broadcast::error::RecvError::Closed) => {
                                over = true;
                                break;
                            }
                        }
                        match tokio::time::timeout_at(due, rx.recv()).await {
                            Ok(m) => next = m,
                            Err(_) => break,
                        }
                    }
                    if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
                        return;
                    }
                    last_write = tokio::time::Instant::now();
                    if over {
                        return;
                    }
                }
            });
        }
    }
    let open = StreamOpen::new(&live.open_streams);
    let mut r = Response::new(BodyExt::boxed(Stream {
        rx: body,
        _open: open,
    }));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names() {
        for h in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:80",
            "[::1]:9",
            "127.1.2.3",
        ] {
            assert!(loopback_host(h), "{h}");
        }
        for h in [
            "",
            "evil.example:8080",
            "10.0.0.1",
            "[fe80::1]:80",
            "localhost.evil",
        ] {
            assert!(!loopback_host(h), "{h}");
        }
    }

    #[test]
    fn addresses_bind_loopback_unless_told() {
        let b = bind("0", "--serve").unwrap();
        assert!(b.addr.ip().is_loopback());
        assert!(b.token.is_none());
        assert!(b.url().starts_with("http://127.0.0.1:"));
        let b = bind("0.0.0.0:0", "--serve").unwrap();
        let t = b.token.clone().unwrap();
        assert!(t.len() >= 32);
        assert!(b.url().ends_with(&format!("/?token={t}")));
        assert!(bind("nowhere.invalid:80", "--serve").is_err());
    }

    #[test]
    fn ids_decode() {
        assert_eq!(percent_decode("a%2Fb").as_deref(), Some("a/b"));
        assert_eq!(percent_decode("%zz"), None);
    }
}
