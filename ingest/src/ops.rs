//! The operator's endpoints: `/_/livez`, `/_/readyz`, `/_/healthz` (MOLT's name for readiness)
//! and `/_/varz`, on the main port and, with `--metricsAddr`, on a plain-HTTP port of their own.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::StatusCode;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::route::Ops;
use crate::server::{Reply, State, reply, unavailable};

pub async fn answer(state: &State, ops: Ops) -> Reply {
    match ops {
        Ops::Live => live(state),
        Ops::Ready | Ops::Health => ready(state).await,
        Ops::Metrics => {
            let mut response = reply(StatusCode::OK, crate::metrics::render(state).trim_end());
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(wharf_base::ops_http::OPENMETRICS));
            response
        }
    }
}

/// 503 only when restarting the process is the cure: the journal failed for good.
fn live(state: &State) -> Reply {
    if let Some(Err(wharf_queue::Fault::Fatal(reason))) = state.journal.as_ref().map(wharf_queue::Journal::health) {
        return unavailable(&reason, 5);
    }
    reply(StatusCode::OK, "OK")
}

/// 503 while changefeed requests cannot be acknowledged or applied: the journal cannot write or
/// its writer thread is gone, the target does not answer, shutdown has begun, a partition stalled
/// or its apply fails for good (blocked), or schema drift halts a changefeed (its requests get 400 until the target has what they name).
async fn ready(state: &State) -> Reply {
    if let Some(Err(fault)) = state.journal.as_ref().map(wharf_queue::Journal::health) {
        let (wharf_queue::Fault::Stalled(reason) | wharf_queue::Fault::Fatal(reason)) = fault;
        return unavailable(&reason, 5);
    }
    if !state.target.is_healthy().await {
        return unavailable("target database is not answering", 5);
    }
    if state.shutting_down.is_cancelled() {
        return unavailable("shutting down", 5);
    }
    let now = std::time::Instant::now();
    let stalls = state.stalls.reasons(now);
    if !stalls.is_empty() {
        return unavailable(&format!("stalled (--stallTimeout): {}", stalls.join("; ")), 5);
    }
    let blocked: Vec<String> =
        state.queue.iter().flat_map(|q| q.blocked()).map(|(p, why)| format!("{p}: {why}")).collect();
    if !blocked.is_empty() {
        let text = format!(
            "apply blocked (retried every minute; fix the target or the data, see wharfctl status): {}",
            blocked.join("; ")
        );
        return unavailable(&text, 5);
    }
    let (halted, ignored) = state.drift.lines(now);
    if !halted.is_empty() {
        let text =
            format!("schema drift halts the changefeed (--onUnknownColumn, --onUnknownTable): {}", halted.join("; "));
        return unavailable(&text, 5);
    }
    let mut body = String::from("OK");
    let ignored = ignored.iter().map(|line| format!("schema drift ignored: {line}"));
    let quarantined = state.target.quarantined(&state.staging_schema).await.into_iter().map(|(partition, rows)| {
        format!("{partition}: {rows} row versions quarantined (--onApplyError quarantine; wharfctl dlq list)")
    });
    for warning in state.warnings.iter().map(|w| w.to_string()).chain(ignored).chain(quarantined) {
        body.push_str("\nwarning: ");
        body.push_str(&warning);
    }
    reply(StatusCode::OK, &body)
}

/// Binds `--metricsAddr`.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, crate::StartError> {
    TcpListener::bind(addr).await.map_err(|source| crate::StartError::Bind { addr, source })
}

/// Serves only the operator's endpoints (plain HTTP/1.1 or h2c) until `shutdown`.
pub async fn serve(listener: TcpListener, state: Arc<State>, shutdown: CancellationToken) {
    wharf_base::ops_http::serve_paths(listener, shutdown, move |path| {
        let state = state.clone();
        async move {
            match Ops::parse(&path) {
                Some(ops) => answer(&state, ops).await,
                None => reply(StatusCode::NOT_FOUND, "this port serves /_/livez, /_/readyz, /_/healthz and /_/varz"),
            }
        }
    })
    .await
}
