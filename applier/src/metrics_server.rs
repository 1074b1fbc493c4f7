//! `wharf-applier --metricsAddr`: `/_/varz` (this process's apply metrics) and `/_/livez`, on the
//! ops server of `wharf_base::ops_http`.

use std::sync::Arc;

use hyper::StatusCode;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wharf_base::ops_http::{OPENMETRICS, respond, serve_paths};

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
