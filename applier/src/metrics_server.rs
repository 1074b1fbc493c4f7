//! `wharf-applier --metricsAddr`: `/_/varz` (this process's apply metrics) and `/_/livez`, on
//! plain HTTP/1.1 or h2c.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves until `shutdown`.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>, shutdown: CancellationToken) {
    let builder = auto::Builder::new(TokioExecutor::new());
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
        let registry = registry.clone();
        let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let answer = match req.uri().path() {
                "/_/varz" => {
                    let mut text = String::new();
                    prometheus_client::encoding::text::encode(&mut text, &registry).expect("writing to a String");
                    respond(StatusCode::OK, text, OPENMETRICS)
                }
                "/_/livez" => respond(StatusCode::OK, "OK\n".into(), "text/plain; charset=utf-8"),
                _ => respond(
                    StatusCode::NOT_FOUND,
                    "this port serves /_/varz and /_/livez\n".into(),
                    "text/plain; charset=utf-8",
                ),
            };
            async move { Ok::<_, Infallible>(answer) }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}

fn respond(status: StatusCode, body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
