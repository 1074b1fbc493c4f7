//! The HTTP server: routes, body limits, status codes, graceful shutdown.
//!
//! Status codes: 200 accepted and durable · 400 the body can never be accepted · 404 unknown route,
//! database or schema · 413 body over the limit · 503 transient (journal full or failed, target
//! catalog unavailable, shutting down) with `Retry-After`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wharf_queue::{Journal, Partition};

use crate::accept::{accept, resolve};
use crate::decode::compressed::Encoding;
use crate::decode::{self, Feed, decode_webhook};
use crate::metrics::Refusal;
use crate::route::{Ops, Route, parse_route};
use crate::target::Target;

/// Bounds on what clients may hold or send.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Open connections; more are closed at once.
    pub max_connections: usize,
    /// Open connections from one client address; more from it are closed at once.
    pub max_connections_per_address: usize,
    /// Requests being processed; more get 503 + Retry-After.
    pub max_requests: usize,
    /// Time a client gets to send its headers, and its body.
    pub read_timeout: Duration,
    /// Request body bytes held at once (bodies and what is decoded from them); a request waits
    /// for room, and gets 503 + Retry-After if none frees up in time.
    pub max_inflight_bytes: u64,
}

/// Largest request head (request line and headers) accepted; larger gets 431.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Shared state of every request.
pub struct State {
    pub limits: Limits,
    pub requests: Arc<tokio::sync::Semaphore>,
    pub inflight: crate::inflight::Inflight,
    pub stalls: crate::stall::StallWatch,
    pub journal: Option<Journal>,
    /// `None` with `--disableAuthentication`.
    pub auth: Option<Arc<crate::auth::Authenticator>>,
    /// Testing-only settings in force, repeated on `/_/healthz`.
    pub warnings: Vec<&'static str>,
    pub target: Target,
    /// The staging schema (`--stagingSchema`): never written through the HTTP routes.
    pub staging_schema: String,
    /// Timestamps further ahead of this process's clock are refused (`--maxClockSkew`).
    pub max_clock_skew: Duration,
    pub body_limit: u64,
    pub shutting_down: CancellationToken,
    pub metrics: crate::metrics::IngestMetrics,
    /// `--onUnknownColumn` and `--onUnknownTable`, and the drift seen.
    pub drift_policies: crate::config::DriftPolicies,
    pub drift: crate::drift::DriftWatch,
    /// `--metricsAddr` is set: `/_/varz` is served there only.
    pub metrics_elsewhere: bool,
    /// Rate limit of the warnings about refused callers.
    pub refusal_log: crate::refusals::LogLimiter,
    /// The queue service appliers read the journal through (`None` in discard mode).
    pub queue: Option<wharf_queue::QueueService>,
    /// `--partitionBy group`: the queue service leases each schema's foreign-key groups.
    pub group_partitions: bool,
    /// When the dropped-rows warning was last logged, per partition.
    pub dropped_warned: std::sync::Mutex<std::collections::HashMap<Partition, std::time::Instant>>,
}

pub(crate) type Reply = Response<crate::answer::Answer>;

/// Time a client gets to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests at once on one HTTP/2 connection: a changefeed sends one at a time per connection,
/// so this only bounds what one connection can take of `--maxRequests`.
const H2_STREAMS: u32 = 16;
const H2_PING_EVERY: Duration = Duration::from_secs(20);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// Accepts connections until `shutdown`, then stops accepting and waits up to `grace` for
/// in-flight requests to finish. With `tls`, every connection must complete a TLS handshake first;
/// plain HTTP on a TLS port fails the handshake and is closed.
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(state.limits.read_timeout)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .max_concurrent_streams(H2_STREAMS)
        // A peer that stops answering pings is gone: its connection and slot are given back.
        .keep_alive_interval(Some(H2_PING_EVERY))
        .keep_alive_timeout(H2_PING_TIMEOUT);
    let connections = Arc::new(tokio::sync::Semaphore::new(state.limits.max_connections));
    let per_address = Arc::new(crate::connections::PerAddress::default());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let slots = connections
            .clone()
            .try_acquire_owned()
            .ok()
            .zip(per_address.admit(peer.ip(), state.limits.max_connections_per_address));
        let Some(permit) = slots else {
            if let Some(left_out) = state.refusal_log.allow("connections", std::time::Instant::now()) {
                tracing::warn!(%peer, limit = state.limits.max_connections, per_address = state.limits.max_connections_per_address, left_out, "connection limit reached; closing a new connection");
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let service_state = state.clone();
        let activity = crate::connections::Activity::new();
        let service_activity = activity.clone();
        let service = service_fn(move |req| {
            let state = service_state.clone();
            let request = service_activity.request();
            async move {
                let reply = handle(&state, peer, req).await;
                drop(request);
                Ok::<_, Infallible>(reply)
            }
        });
        // Idle (no request in progress, none begun) for --readTimeout: closed, whatever the
        // protocol, also before its first bytes are read.
        let idle = state.limits.read_timeout;
        match &tls {
            None => {
                let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service).into_owned());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = conn => {}
                        _ = activity.idle(idle) => tracing::debug!(%peer, "closing an idle connection"),
                    }
                    drop(permit);
                });
            }
            Some(acceptor) => {
                let (acceptor, builder, watcher) = (acceptor.clone(), builder.clone(), graceful.watcher());
                let state_for_tls = state.clone();
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => return handshake_failed(&state_for_tls, peer, &error),
                        Err(_) => return tracing::debug!("TLS handshake timed out"),
                    };
                    let conn = watcher.watch(builder.serve_connection(TokioIo::new(stream), service).into_owned());
                    tokio::select! {
                        _ = conn => {}
                        _ = activity.idle(idle) => tracing::debug!(%peer, "closing an idle connection"),
                    }
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("in-flight requests finished"),
        _ = tokio::time::sleep(grace) => tracing::warn!(grace_s = grace.as_secs(), "grace period over; closing remaining connections"),
    }
}

async fn handle(state: &State, peer: SocketAddr, req: Request<Incoming>) -> Reply {
    let started = std::time::Instant::now();
    let response = respond(state, peer, req).await;
    state.metrics.response(response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

async fn respond(state: &State, peer: SocketAddr, req: Request<Incoming>) -> Reply {
    let route = match parse_route(req.uri().path()) {
        Ok(route) => route,
        Err(no_route) => return refuse(state, req, reply(StatusCode::NOT_FOUND, no_route.0)).await,
    };
    let partition = match &route {
        Route::Ops(Ops::Metrics) if state.metrics_elsewhere => {
            return refuse(state, req, reply(StatusCode::NOT_FOUND, "metrics are served on --metricsAddr")).await;
        }
        Route::Ops(ops) => return crate::ops::answer(state, *ops).await,
        Route::Webhook { partition: p, .. }
        | Route::NdjsonFile { partition: p, .. }
        | Route::ResolvedFile { partition: p, .. } => match canonical(state, p) {
            Ok(partition) => partition,
            Err(why) => return refuse(state, req, reply(StatusCode::NOT_FOUND, &why)).await,
        },
    };
    let _admitted = match admit(state, peer, &req, &partition).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refuse(state, req, refusal).await,
    };
    let header = req.headers().get(hyper::header::CONTENT_ENCODING).map(|v| v.as_bytes());
    let encoding = match (Encoding::from_header(header), &route) {
        (Err(why), _) => return refuse(state, req, reply(StatusCode::UNSUPPORTED_MEDIA_TYPE, &why)).await,
        (Ok(Encoding::Identity), Route::NdjsonFile { encoding, .. }) => *encoding,
        (Ok(header), Route::NdjsonFile { encoding: file @ (Encoding::Gzip | Encoding::Zstd), .. }) => {
            let why = format!(
                "the file is {} and Content-Encoding says {}: stacked encodings are not accepted",
                file.name(),
                header.name()
            );
            return refuse(state, req, reply(StatusCode::UNSUPPORTED_MEDIA_TYPE, &why)).await;
        }
        (Ok(header), _) => header,
    };
    if let Some(declared) = declared_length(&req).filter(|n| *n > state.body_limit) {
        let text = format!("body of {declared} bytes exceeds the limit of {} bytes (--bodyLimit)", state.body_limit);
        return refuse_unread(req, reply(StatusCode::PAYLOAD_TOO_LARGE, &text));
    }
    // Body bytes are held of --inflightLimit as they arrive; a body that must wait for room
    // waits for what it announced (clamped to the limit), so growing bodies never hold the budget
    // for each other (see inflight.rs).
    let mut held = state.inflight.hold(declared_length(&req).unwrap_or(0));
    let reading = read_body(req, state.body_limit, &state.inflight, &mut held);
    let body = match tokio::time::timeout(state.limits.read_timeout, reading).await {
        Ok(Ok(body)) => body,
        Ok(Err(reply)) => return reply,
        Err(_) => return reply(StatusCode::REQUEST_TIMEOUT, "the body was not received in time"),
    };
    let body = match encoding {
        Encoding::Identity => body,
        _ => match decode_body(&body, encoding, state.body_limit, &state.inflight, &mut held).await {
            Ok(decoded) => decoded,
            Err(reply) => return reply,
        },
    };
    match route {
        Route::ResolvedFile { hlc, .. } => resolve(state, &partition, hlc).await,
        Route::Webhook { query: None, .. } => accept(state, &partition, decode_webhook(&body, Feed::Tables)).await,
        Route::Webhook { query: Some(table), .. } => {
            let feed = Feed::Query(&table);
            accept(state, &partition, decode_webhook(&body, feed)).await
        }
        Route::NdjsonFile { table, query, .. } => {
            let feed = if query { Feed::Query(&table) } else { Feed::File(&table) };
            accept(state, &partition, decode::decode_ndjson(&body, feed)).await
        }
        Route::Ops(_) => unreachable!("handled above"),
    }
}

/// An answer given without using the request body. The body is read and discarded first (up to
/// `--bodyLimit` bytes, within `--readTimeout`), so HTTP/2 clients that are still sending receive
/// the status instead of a reset stream; whatever is left is dropped only after the answer is sent
/// (see [`crate::answer`]).
async fn refuse(state: &State, req: Request<Incoming>, reply: Reply) -> Reply {
    let mut body = req.into_body();
    let mut read = 0u64;
    let deadline = tokio::time::Instant::now() + state.limits.read_timeout;
    while read <= state.body_limit && !body.is_end_stream() {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => read += frame.data_ref().map_or(0, |d| d.len() as u64),
            _ => break,
        }
    }
    reply.map(|answer| answer.holding(body))
}

/// As [`refuse`], for a body too large to be worth reading.
fn refuse_unread(req: Request<Incoming>, reply: Reply) -> Reply {
    reply.map(|answer| answer.holding(req.into_body()))
}

/// What a request holds while it is processed: a request slot.
struct Admitted<'a> {
    _request: tokio::sync::SemaphorePermit<'a>,
}

/// The partition a path names, keyed by the target's own names: the target's database (the path
/// may spell it in another case) and the schema as the path spells it (the catalog matches it
/// exactly). The staging schema and PostgreSQL's own schemas are never a partition.
fn canonical(state: &State, path: &Partition) -> Result<Partition, String> {
    if !path.database.eq_ignore_ascii_case(&state.target.database) {
        return Err("unknown database: this server writes to one database only".into());
    }
    if is_reserved_schema(&path.schema, &state.staging_schema) {
        return Err(format!("schema {:?} is wharf's or PostgreSQL's own and never replicated into", path.schema));
    }
    Ok(Partition::new(&state.target.database, &path.schema))
}

/// The staging schema and PostgreSQL's system schemas (compared as PostgreSQL folds them).
pub fn is_reserved_schema(schema: &str, staging: &str) -> bool {
    let folded = schema.to_ascii_lowercase();
    folded == staging.to_ascii_lowercase()
        || ["pg_catalog", "information_schema", "pg_toast"].contains(&folded.as_str())
        || folded.starts_with("pg_temp")
        || folded.starts_with("pg_toast_temp")
}

/// Whether a request for `partition` (canonical) is taken on: not shutting down, a request slot,
/// a token that grants the schema.
async fn admit<'a>(
    state: &'a State,
    peer: SocketAddr,
    req: &Request<Incoming>,
    partition: &Partition,
) -> Result<Admitted<'a>, Reply> {
    // The request slot first: a flood of bad tokens costs at most --maxRequests signature checks
    // at once.
    if state.shutting_down.is_cancelled() {
        state.metrics.refused(Refusal::ShuttingDown);
        return Err(unavailable("server is shutting down", 5));
    }
    let Ok(request) = state.requests.try_acquire() else {
        state.metrics.refused(Refusal::MaxRequests);
        return Err(unavailable("too many concurrent requests", 1));
    };
    if let Some(auth) = &state.auth {
        let token = crate::auth::token::extract(req.headers(), req.uri().query());
        match auth.check(token.as_deref(), &partition.database, &partition.schema) {
            Ok(()) => {}
            Err(crate::auth::Denied::Unauthenticated(reason)) => {
                let reason = reason.map_or("no token".to_owned(), |r| r.to_string());
                if let Some(left_out) = state.refusal_log.allow("401", std::time::Instant::now()) {
                    tracing::warn!(%peer, %partition, %reason, left_out, "refused a caller: 401 (missing or invalid token)");
                }
                // The reason stays in the log: the caller learns nothing about a stolen token.
                return Err(reply(StatusCode::UNAUTHORIZED, "missing or invalid access token"));
            }
            Err(crate::auth::Denied::Forbidden) => {
                if let Some(left_out) = state.refusal_log.allow("403", std::time::Instant::now()) {
                    tracing::warn!(%peer, %partition, left_out, "refused a caller: 403 (the token does not grant this schema)");
                }
                return Err(reply(StatusCode::FORBIDDEN, &format!("the token does not grant writes to {partition}")));
            }
        }
    }
    Ok(Admitted { _request: request })
}

fn declared_length(req: &Request<Incoming>) -> Option<u64> {
    req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
}

/// Reads the body, up to `limit` bytes, holding each frame's bytes in `held` before it is kept.
async fn read_body(
    req: Request<Incoming>,
    limit: u64,
    inflight: &crate::inflight::Inflight,
    held: &mut crate::inflight::Held,
) -> Result<Bytes, Reply> {
    let mut body = req.into_body();
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| reply(StatusCode::BAD_REQUEST, &format!("could not read the body: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        let total = out.len() as u64 + data.len() as u64;
        if total > limit {
            let text = format!("body exceeds the limit of {limit} bytes (--bodyLimit)");
            return Err(reply(StatusCode::PAYLOAD_TOO_LARGE, &text).map(|answer| answer.holding(body)));
        }
        if !inflight.grow(held, total).await {
            let text = "too many body bytes in flight (--inflightLimit); retry shortly";
            return Err(unavailable(text, 1).map(|answer| answer.holding(body)));
        }
        out.extend_from_slice(&data);
    }
    Ok(out.freeze())
}

/// Decodes a compressed body in pieces, each held of `--inflightLimit` (with the compressed
/// bytes) before it is kept, and refused once it passes `limit` decoded bytes.
async fn decode_body(
    raw: &Bytes,
    encoding: Encoding,
    limit: u64,
    inflight: &crate::inflight::Inflight,
    held: &mut crate::inflight::Held,
) -> Result<Bytes, Reply> {
    use std::io::Read as _;
    let corrupt = |e: std::io::Error| {
        reply(StatusCode::BAD_REQUEST, &format!("the {} body cannot be decoded: {e}", encoding.name()))
    };
    let mut decoder = encoding.decoder(raw).map_err(corrupt)?;
    let mut out = Vec::new();
    let mut piece = vec![0u8; DECODE_PIECE];
    loop {
        let n = decoder.read(&mut piece).map_err(corrupt)?;
        if n == 0 {
            return Ok(Bytes::from(out));
        }
        if (out.len() + n) as u64 > limit {
            let text = format!("the body decodes to more than the limit of {limit} bytes (--bodyLimit)");
            return Err(reply(StatusCode::PAYLOAD_TOO_LARGE, &text));
        }
        if !inflight.grow(held, (raw.len() + out.len() + n) as u64).await {
            return Err(unavailable("too many body bytes in flight (--inflightLimit); retry shortly", 1));
        }
        out.extend_from_slice(&piece[..n]);
    }
}

/// Decoded bytes read (and held) at a time.
const DECODE_PIECE: usize = 256 << 10;

pub(crate) fn unavailable(message: &str, retry_after_s: u32) -> Reply {
    let mut response = reply(StatusCode::SERVICE_UNAVAILABLE, message);
    response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(retry_after_s));
    response
}

pub(crate) fn reply(status: StatusCode, message: &str) -> Reply {
    let mut response = Response::new(crate::answer::Answer::text(format!("{message}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// A failed TLS handshake: a client with the wrong CA, plain HTTP on the TLS port, a scanner.
fn handshake_failed(state: &State, peer: SocketAddr, error: &std::io::Error) {
    match state.refusal_log.allow("tls", std::time::Instant::now()) {
        Some(left_out) => tracing::warn!(%peer, %error, left_out, "TLS handshake failed"),
        None => tracing::debug!(%peer, %error, "TLS handshake failed"),
    }
}
