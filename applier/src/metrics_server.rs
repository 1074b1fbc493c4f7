//! A plain-HTTP server for operator endpoints (HTTP/1.1 or h2c), shared by `wharf-applier
//! --metricsAddr` (`/_/varz` of its apply metrics, `/_/livez`) and `wharf-ingest --metricsAddr`.

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
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Answers every request on `listener` with `answer(path)` until `shutdown`.
pub async fn serve_paths<B, F, Fut>(listener: TcpListener, shutdown: CancellationToken, answer: F)
where
    F: Fn(String) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
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
        let answer = answer.clone();
        let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let reply = answer(req.uri().path().to_owned());
            async move { Ok::<_, Infallible>(reply.await) }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}

/// `wharf-applier --metricsAddr`: `/_/varz` and `/_/livez` until `shutdown`.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>, shutdown: CancellationToken) {
    serve_paths(listener, shutdown, move |path| {
        let registry = registry.clone();
        async move {
            match path.as_str() {
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
            }
        }
    })
    .await
}

fn respond(status: StatusCode, body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
