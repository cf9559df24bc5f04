//! A node's small HTTP service, served on a direct-tcpip channel: it
//! answers with the version its sandbox's `version` file says it runs
//! (`x-relay-version`), like the relay does. A node told to fail answers
//! 503 for any version but the one it started with.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::spec::NodeSpec;

/// The version every demo node starts with.
pub(super) const FIRST_VERSION: &str = "0.1.0";

/// Serves HTTP/1.1 on one tunnelled connection until the client is done.
pub(super) async fn serve<S>(stream: S, node: Arc<NodeSpec>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| answer(req, node.clone()));
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn answer(
    _req: Request<Incoming>,
    node: Arc<NodeSpec>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let version = tokio::fs::read_to_string(node.dir.join("version"))
        .await
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    let response = if version.is_empty() {
        plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "error: no version installed\n",
        )
    } else if node.fail && version != FIRST_VERSION {
        plain(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("error: {} crashed starting {version}\n", node.name),
        )
    } else {
        let mut r = plain(
            StatusCode::OK,
            &format!("demo service {version} on {}\n", node.name),
        );
        if let Ok(v) = version.parse() {
            r.headers_mut().insert("x-relay-version", v);
        }
        r
    };
    Ok(response)
}

fn plain(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    if let Ok(v) = "text/plain; charset=utf-8".parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}
