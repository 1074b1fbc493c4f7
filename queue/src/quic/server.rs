//! Serving the queue service to applier processes over QUIC.
//!
//! What a peer can make the service hold is bounded before and after its handshake: at most
//! [`MAX_HANDSHAKES`] handshakes at once (beyond [`RETRY_ABOVE`] a client must first prove its
//! address with a Retry), at most [`MAX_CONNECTIONS`] connections, a hello within the lease
//! timeout, no unidirectional streams, `2 × workers + 8` bidirectional ones, 1 MiB per request
//! frame. Failed handshakes are logged at most once per [`LOG_EVERY`], with how many were left
//! out.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use quinn::{Connection, RecvStream, SendStream};
use thiserror::Error;

use super::frames::{self, StreamError};
use super::identity::Identity;
use super::tls::{self, TlsError, TlsFiles};
use crate::client::Release;
use crate::journal::ChunkLimits;
use crate::lease::WorkerId;
use crate::service::QueueService;
use crate::wire::{Message, PROTOCOL_VERSION, code};
use rustls_pki_types::CertificateDer;

/// Longest a worker may wait in one `Acquire`.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// Handshakes under way at once; more are refused.
pub const MAX_HANDSHAKES: usize = 64;
/// Above this many handshakes under way, a client whose address is not yet validated gets a
/// Retry first (it costs the server nothing, and a spoofed address never answers it).
pub const RETRY_ABOVE: usize = 8;
/// Connections at once (applier processes and status observers); more are refused.
pub const MAX_CONNECTIONS: usize = 256;
/// How often a refused handshake is logged.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Largest chunk a reader may ask for.
const MAX_CHUNK_ROWS: u32 = 1_000_000;
const MAX_CHUNK_BYTES: u32 = 64 << 20;

#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub addr: SocketAddr,
    pub tls: TlsFiles,
    /// PEM certificate revocation lists of the CA (`wharfctl certs revoke` writes one).
    pub client_crl: Option<std::path::PathBuf>,
}

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("queue service TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("cannot listen for the queue service on UDP {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// Binds the UDP endpoint (so a bad address or certificate stops startup).
pub fn bind(settings: &ServerSettings, lease_timeout: Duration) -> Result<quinn::Endpoint, ServeError> {
    let config = tls::server_config(&settings.tls, settings.client_crl.as_deref(), lease_timeout)?;
    let bind_error = |source| ServeError::Bind { addr: settings.addr, source };
    let socket = std::net::UdpSocket::bind(settings.addr).map_err(bind_error)?;
    super::datagrams::endpoint(socket, Some(config), std::sync::Arc::new(quinn::TokioRuntime)).map_err(bind_error)
}

/// What limits the connections of one service.
struct Admission {
    handshakes: Arc<Semaphore>,
    connections: Arc<Semaphore>,
    refusals: Mutex<(Option<Instant>, u64)>,
}

impl Admission {
    /// Logs a refused handshake at most once per [`LOG_EVERY`], with how many were left out.
    fn refused(&self, peer: SocketAddr, why: &dyn std::fmt::Display) {
        let mut refusals = self.refusals.lock().expect("refusal log lock");
        let (last, left_out) = &mut *refusals;
        if last.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            *left_out += 1;
            return;
        }
        tracing::warn!(%peer, error = %why, left_out = *left_out, "queue service: connection refused in the handshake (is the applier's certificate signed by --queueClientCA?)");
        *last = Some(Instant::now());
        *left_out = 0;
    }
}

/// Accepts applier connections until `shutdown` completes, then closes them all.
pub async fn serve(endpoint: quinn::Endpoint, service: QueueService, shutdown: impl Future<Output = ()>) {
    let admission = Arc::new(Admission {
        handshakes: Arc::new(Semaphore::new(MAX_HANDSHAKES)),
        connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        refusals: Mutex::new((None, 0)),
    });
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => admit(incoming, &service, &admission),
                None => break,
            },
            _ = &mut shutdown => break,
        }
    }
    endpoint.close(0u32.into(), b"wharf-ingest is shutting down");
}

/// Starts the handshake of `incoming` if the limits allow: a Retry first for an unvalidated
/// address under load, a refusal over the limits.
fn admit(incoming: quinn::Incoming, service: &QueueService, admission: &Arc<Admission>) {
    let in_flight = MAX_HANDSHAKES - admission.handshakes.available_permits();
    if !incoming.remote_address_validated() && in_flight >= RETRY_ABOVE {
        let _ = incoming.retry();
        return;
    }
    let (Ok(handshake), Ok(connection)) =
        (admission.handshakes.clone().try_acquire_owned(), admission.connections.clone().try_acquire_owned())
    else {
        admission.refused(incoming.remote_address(), &"too many connections or handshakes at once");
        incoming.refuse();
        return;
    };
    let (service, admission) = (service.clone(), admission.clone());
    tokio::spawn(async move {
        let _connection = connection;
        let peer = incoming.remote_address();
        let conn = match incoming.await {
            Ok(conn) => conn,
            Err(error) => return admission.refused(peer, &error),
        };
        drop(handshake);
        serve_connection(conn, service).await;
    });
}

async fn serve_connection(conn: Connection, service: QueueService) {
    let peer = conn.remote_address();
    let identity = identity(&conn);
    // A client that does not say hello within a lease timeout is not an applier.
    let said = tokio::time::timeout(service.lease_timeout(), hello(&conn, &service, identity)).await;
    let Ok(Some((session, workers))) = said else {
        conn.close(1u32.into(), b"no hello");
        return;
    };
    conn.set_max_concurrent_bi_streams(quinn::VarInt::from_u32(2 * workers.max(1) + 8));
    loop {
        match conn.accept_bi().await {
            Ok((send, recv)) => {
                let service = service.clone();
                tokio::spawn(async move {
                    if let Err(error) = stream(&service, session, send, recv).await {
                        tracing::debug!(%error, "queue stream ended with an error");
                    }
                });
            }
            Err(error) => {
                tracing::info!(%peer, session, %error, "applier connection closed");
                break;
            }
        }
    }
    if session != 0 {
        service.close_session(session);
    }
}

/// What the client's certificate allows (read-only if it cannot be read).
fn identity(conn: &Connection) -> Identity {
    let chain = conn.peer_identity().and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok());
    chain
        .and_then(|chain| chain.first().map(|leaf| Identity::of(leaf.as_ref())))
        .unwrap_or(Identity { observer: true, scope: None })
}

/// The first stream: protocol version, name and worker count; the session and its worker count,
/// or `None` when the peer is refused.
async fn hello(conn: &Connection, service: &QueueService, identity: Identity) -> Option<(u64, u32)> {
    let peer = conn.remote_address();
    let (mut send, mut recv) = conn.accept_bi().await.ok()?;
    let (reply, session) = match frames::read_request(&mut recv).await {
        Ok(Message::Hello { workers, .. }) if workers > crate::lease::MAX_WORKERS => {
            let message = format!("a session may declare at most {} workers", crate::lease::MAX_WORKERS);
            (Message::Error { code: code::BAD_REQUEST, message }, None)
        }
        Ok(Message::Hello { workers, .. }) if workers > 0 && identity.observer => {
            let message = "this certificate is an observer's (wharfctl status): it may not declare workers".into();
            (Message::Error { code: code::BAD_REQUEST, message }, None)
        }
        Ok(Message::Hello { version, name, workers }) if version == PROTOCOL_VERSION => {
            // workers = 0: an observer such as `wharfctl status`, which takes no leases.
            let session = match workers {
                0 => 0,
                _ => service.open_scoped_session(&name, workers, true, identity.scope),
            };
            let lease_timeout_ms = service.lease_timeout().as_millis() as u64;
            (Message::Welcome { version: PROTOCOL_VERSION, session, lease_timeout_ms }, Some((session, workers)))
        }
        Ok(Message::Hello { version, name, .. }) => {
            let message = format!(
                "queue protocol version mismatch: this wharf-ingest speaks version {PROTOCOL_VERSION}, {name:?} speaks {version}; run the same wharf release on both sides"
            );
            tracing::error!(%peer, "{message}");
            (Message::Error { code: code::VERSION, message }, None)
        }
        other => {
            let what = match other {
                Ok(message) => format!("a frame of type {}", message.type_name()),
                Err(error) => error.to_string(),
            };
            tracing::warn!(%peer, %what, "queue service: the first frame was not a hello");
            (Message::Error { code: code::BAD_REQUEST, message: "expected a hello".into() }, None)
        }
    };
    let _ = frames::write(&mut send, &reply).await;
    let _ = send.finish();
    if session.is_none() {
        // Let the error frame reach the peer before the connection goes.
        let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
        conn.close(1u32.into(), b"refused");
    }
    session
}

async fn stream(
    service: &QueueService,
    session: u64,
    mut send: SendStream,
    mut recv: RecvStream,
) -> Result<(), StreamError> {
    let worker = |index| WorkerId { session, index };
    let journal_error = |e: crate::journal::ReadError| Message::Error { code: code::JOURNAL, message: e.to_string() };
    let reply = match frames::read_request(&mut recv).await? {
        Message::Acquire { worker: index, wait_ms } => {
            let wait = Duration::from_millis(wait_ms.into()).min(MAX_WAIT);
            match service.acquire(worker(index), wait).await {
                Ok(Some(g)) => {
                    Message::Granted { partition: g.partition, epoch: g.epoch, upto: g.upto, tables: g.tables }
                }
                Ok(None) => Message::NoWork,
                Err(e) => journal_error(e),
            }
        }
        Message::Open { worker: index, partition, epoch, after, upto, tables } => {
            return window(service, worker(index), partition, epoch, (after, upto, tables), send, recv).await;
        }
        Message::Committed { worker: index, partition, epoch, checkpoint, rows } => {
            match service.committed(worker(index), &partition, epoch, checkpoint, rows).await {
                Ok(keep) => Message::Keep { keep },
                Err(e) => journal_error(e),
            }
        }
        Message::Release { worker: index, partition, epoch, how, pause_ms, reason, target_epoch } => {
            let how = match how {
                1 => Release::Paused { pause: Duration::from_millis(pause_ms), reason },
                2 => Release::Fenced { target_epoch },
                _ => Release::Done,
            };
            service.release(worker(index), &partition, epoch, &how);
            Message::Ok
        }
        Message::Heartbeat if session == 0 || service.heartbeat(session) => Message::Ok,
        Message::Heartbeat => Message::Error { code: code::SESSION_EXPIRED, message: "session expired".into() },
        Message::StatusRequest => match service.status().await {
            Ok(status) => Message::Status { json: serde_json::to_string(&status).expect("status serializes") },
            Err(e) => journal_error(e),
        },
        other => {
            Message::Error { code: code::BAD_REQUEST, message: format!("unexpected request {}", other.type_name()) }
        }
    };
    frames::write(&mut send, &reply).await?;
    send.finish()?;
    Ok(())
}

/// Serves one window: a chunk per `Next`, while the worker still holds the lease.
async fn window(
    service: &QueueService,
    worker: WorkerId,
    partition: crate::record::Partition,
    epoch: u64,
    (after, upto, tables): (wharf_base::hlc::Hlc, wharf_base::hlc::Hlc, Vec<String>),
    mut send: SendStream,
    mut recv: RecvStream,
) -> Result<(), StreamError> {
    let not_holder =
        || Message::Error { code: code::NOT_HOLDER, message: format!("no lease on {partition} at epoch {epoch}") };
    let Some(mut cursor) = service.open_window(worker, &partition, epoch, after, upto, tables) else {
        frames::write(&mut send, &not_holder()).await?;
        send.finish()?;
        return Ok(());
    };
    frames::write(&mut send, &Message::Ok).await?;
    loop {
        let (max_rows, max_bytes) = match frames::read_request(&mut recv).await {
            Ok(Message::Next { max_rows, max_bytes }) => (max_rows, max_bytes),
            // The reader closed its side: the window is abandoned.
            Ok(_) | Err(_) => return Ok(()),
        };
        if !service.progress(worker, &partition, epoch) {
            frames::write(&mut send, &not_holder()).await?;
            break;
        }
        let limits = ChunkLimits {
            max_rows: max_rows.clamp(1, MAX_CHUNK_ROWS) as usize,
            max_bytes: max_bytes.clamp(1, MAX_CHUNK_BYTES) as usize,
        };
        let (next, chunk) = match service.read(partition.clone(), cursor, limits).await {
            Ok(read) => read,
            Err(e) => {
                frames::write(&mut send, &Message::Error { code: code::JOURNAL, message: e.to_string() }).await?;
                break;
            }
        };
        cursor = next;
        let last = chunk.last;
        frames::write_owned(
            &mut send,
            Message::Rows { complete_through: chunk.complete_through, last, rows: chunk.rows },
        )
        .await?;
        if last {
            break;
        }
    }
    send.finish()?;
    Ok(())
}
