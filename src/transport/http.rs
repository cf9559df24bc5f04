//! HTTP checks from the runner (gates, and `http` steps with `via =
//! "runner"`): rustls with the system's roots, or no verification at all
//! when a check says `insecure_tls = true`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use crate::job::http::{Request, Response};
use crate::transport::{Session, SessionError};

/// Why a request got no response.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum SendError {
    /// The node's SSH connection died (`via = "ssh"`): the node is unreachable.
    #[error("{0}")]
    Lost(String),
    #[error("{0}")]
    Failed(String),
}

/// The two clients a run may need, built once.
pub(crate) struct Clients {
    verified: reqwest::Client,
    insecure: reqwest::Client,
}

impl Clients {
    pub(crate) fn new() -> Result<Self, String> {
        let build = |insecure: bool| {
            reqwest::Client::builder()
                .tls_danger_accept_invalid_certs(insecure)
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .build()
                .map_err(|e| chain(&e))
        };
        Ok(Clients {
            verified: build(false)?,
            insecure: build(true)?,
        })
    }

    /// Sends `req`; the body is read up to `cap` bytes.
    pub(crate) async fn send(&self, req: &Request, cap: usize) -> Result<Response, SendError> {
        self.send_inner(req, cap).await.map_err(SendError::Failed)
    }

    async fn send_inner(&self, req: &Request, cap: usize) -> Result<Response, String> {
        let client = if req.insecure_tls {
            &self.insecure
        } else {
            &self.verified
        };
        let method = reqwest::Method::from_bytes(req.method.as_bytes())
            .map_err(|_| format!("`{}` is not an HTTP method", req.method))?;
        let mut builder = client.request(method, &req.url).timeout(req.timeout);
        for (k, v) in &req.headers {
            builder = builder.header(k, v);
        }
        if let Some(b) = &req.body {
            builder = builder.body(b.clone());
        }
        let mut resp = builder.send().await.map_err(|e| describe_error(&e, req))?;
        let status = resp.status().as_u16();
        let headers = header_pairs(resp.headers());
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| chain(&e))? {
            if keep(&mut body, &chunk, cap) {
                break;
            }
        }
        Ok(Response {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// Sends `req` through a direct-tcpip channel of the node's SSH connection,
/// so `127.0.0.1` in the URL is the node itself. HTTP/1.1.
pub(crate) async fn send_via<S: Session>(
    session: &S,
    req: &Request,
    cap: usize,
) -> Result<Response, SendError> {
    let fail = SendError::Failed;
    let url = reqwest::Url::parse(&req.url)
        .map_err(|e| fail(format!("`{}` is not a URL: {e}", req.url)))?;
    let tls = match url.scheme() {
        "http" => false,
        "https" => true,
        other => return Err(fail(format!("{}: `{other}` is not http or https", req.url))),
    };
    let host = url
        .host_str()
        .ok_or_else(|| fail(format!("{}: no host", req.url)))?
        .to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    let work = async {
        let stream = session.tunnel(&host, port).await.map_err(|e| match e {
            SessionError::Lost(m) => SendError::Lost(m),
            SessionError::Refused(m) | SessionError::Locked(m) => {
                fail(format!("the node could not connect to {host}:{port}: {m}"))
            }
        })?;
        if !tls {
            return exchange(stream, &url, req, cap).await;
        }
        let config = tls_config(req.insecure_tls).map_err(fail)?;
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| fail(format!("`{host}` is not a TLS server name: {e}")))?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, stream)
            .await
            .map_err(|e| {
                let hint = if req.insecure_tls {
                    ""
                } else {
                    " (a self-signed server needs insecure_tls = true)"
                };
                fail(format!("TLS error for {} through SSH: {e}{hint}", req.url))
            })?;
        exchange(stream, &url, req, cap).await
    };
    match tokio::time::timeout(req.timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(fail(format!(
            "{} {} through SSH timed out after {:.1}s",
            req.method,
            req.url,
            req.timeout.as_secs_f64()
        ))),
    }
}

/// One HTTP/1.1 request over an open byte stream.
async fn exchange<S>(
    stream: S,
    url: &reqwest::Url,
    req: &Request,
    cap: usize,
) -> Result<Response, SendError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let fail = SendError::Failed;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| {
            fail(format!(
                "HTTP handshake with {} failed: {e}",
                host_header(url)
            ))
        })?;
    tokio::spawn(conn);
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let mut builder = hyper::Request::builder()
        .method(req.method.as_str())
        .uri(path)
        .header(hyper::header::HOST, host_header(url));
    for (k, v) in &req.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let body = Full::new(Bytes::from(req.body.clone().unwrap_or_default()));
    let request = builder
        .body(body)
        .map_err(|e| fail(format!("bad request: {e}")))?;
    let resp = sender.send_request(request).await.map_err(|e| {
        fail(format!(
            "{} {} through SSH failed: {e}",
            req.method, req.url
        ))
    })?;
    let status = resp.status().as_u16();
    let headers = header_pairs(resp.headers());
    let mut body = resp.into_body();
    let mut kept = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| fail(format!("reading the body: {e}")))?;
        if let Some(data) = frame.data_ref()
            && keep(&mut kept, data, cap)
        {
            break;
        }
    }
    Ok(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&kept).into_owned(),
    })
}

/// rustls for HTTPS through SSH: the system's roots, or no verification at
/// all when a check says `insecure_tls = true`.
fn tls_config(insecure: bool) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    use std::sync::Arc;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let mut config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
            .with_no_client_auth()
    } else {
        use rustls_platform_verifier::BuilderVerifierExt;
        builder
            .with_platform_verifier()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `insecure_tls = true`: any certificate, but the handshake signatures
/// are still checked.
#[derive(Debug)]
struct AcceptAnyCert(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Response headers as (lower-case name, value) pairs.
fn header_pairs(map: &hyper::HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Appends what fits under `cap`; true once the body is full.
fn keep(kept: &mut Vec<u8>, data: &[u8], cap: usize) -> bool {
    let room = cap.saturating_sub(kept.len());
    kept.extend_from_slice(&data[..room.min(data.len())]);
    kept.len() >= cap
}

/// `host` or `host:port` as the Host header wants it.
fn host_header(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// A request error in words, with the TLS cause spelled out.
fn describe_error(e: &reqwest::Error, req: &Request) -> String {
    let text = chain(e);
    let tls = ["certificate", "tls", "handshake", "UnknownIssuer"]
        .iter()
        .any(|w| text.to_lowercase().contains(&w.to_lowercase()));
    if e.is_timeout() {
        format!(
            "{} {} timed out after {:.1}s",
            req.method,
            req.url,
            req.timeout.as_secs_f64()
        )
    } else if tls && !req.insecure_tls {
        format!(
            "TLS error for {}: {text} (a self-signed server needs insecure_tls = true)",
            req.url
        )
    } else {
        format!("{} {} failed: {text}", req.method, req.url)
    }
}

/// An error with every cause, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}
