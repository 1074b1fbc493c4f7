//! A plain-HTTP server for operator endpoints (HTTP/1.1 or h2c), used by `wharf-applier
//! --metricsAddr` (`/_/varz` of its apply metrics, `/_/livez`) and `wharf-ingest --metricsAddr`:
//! what each path answers is the caller's; the limits on connections are here.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Body;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Connections at once; more are closed at once (a scraper and a few probes need a handful).
const MAX_CONNECTIONS: usize = 64;
/// Time to send a request head.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Longest a connection stays open, also one that never sends a byte (a scraper reconnects).
const CONNECTION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(60);

/// Answers every request on `listener` with `answer(path)` until `shutdown`: at most
/// [`MAX_CONNECTIONS`] at once, each for at most [`CONNECTION_LIFETIME`].
pub async fn serve_paths<B, F, Fut>(listener: TcpListener, shutdown: CancellationToken, answer: F)
where
    F: Fn(String) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
    builder.http2().max_concurrent_streams(8);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut refused_logged: Option<std::time::Instant> = None;
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "metrics listener: accept failed");
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if refused_logged.is_none_or(|at| at.elapsed() > std::time::Duration::from_secs(10)) {
                tracing::warn!(
                    limit = MAX_CONNECTIONS,
                    "metrics listener: connection limit reached; closing a new connection"
                );
                refused_logged = Some(std::time::Instant::now());
            }
            continue;
        };
        let answer = answer.clone();
        let asked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let service_asked = asked.clone();
        let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            service_asked.store(true, std::sync::atomic::Ordering::Relaxed);
            let reply = answer(req.uri().path().to_owned());
            async move { Ok::<_, Infallible>(reply.await) }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
        tokio::spawn(async move {
            // Also a connection that never sends a request (hyper's header timeout starts only
            // once it knows the protocol) goes after the header timeout.
            let silent = async {
                tokio::time::sleep(HEADER_TIMEOUT).await;
                if asked.load(std::sync::atomic::Ordering::Relaxed) {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = connection => {}
                _ = silent => {}
                _ = tokio::time::sleep(CONNECTION_LIFETIME) => {}
            }
            drop(slot);
        });
    }
}

/// A response of `body` as `content_type`.
pub fn respond(status: StatusCode, body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
