//! Serving the queue service to applier processes over QUIC.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use quinn::{Connection, RecvStream, SendStream};
use thiserror::Error;

use super::frames::{self, StreamError};
use super::tls::{self, TlsError, TlsFiles};
use crate::client::Release;
use crate::journal::ChunkLimits;
use crate::lease::WorkerId;
use crate::service::QueueService;
use crate::wire::{Message, PROTOCOL_VERSION, code};

/// Longest a worker may wait in one `Acquire`.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// Largest chunk a reader may ask for.
const MAX_CHUNK_ROWS: u32 = 1_000_000;
const MAX_CHUNK_BYTES: u32 = 64 << 20;

#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub addr: SocketAddr,
    pub tls: TlsFiles,
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
    let config = tls::server_config(&settings.tls, lease_timeout)?;
    let bind_error = |source| ServeError::Bind { addr: settings.addr, source };
    let socket = std::net::UdpSocket::bind(settings.addr).map_err(bind_error)?;
    super::datagrams::endpoint(socket, Some(config), std::sync::Arc::new(quinn::TokioRuntime)).map_err(bind_error)
}

/// Accepts applier connections until `shutdown` completes, then closes them all.
pub async fn serve(endpoint: quinn::Endpoint, service: QueueService, shutdown: impl Future<Output = ()>) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => { tokio::spawn(connection(incoming, service.clone())); }
                None => break,
            },
            _ = &mut shutdown => break,
        }
    }
    endpoint.close(0u32.into(), b"wharf-ingest is shutting down");
}

async fn connection(incoming: quinn::Incoming, service: QueueService) {
    let peer = incoming.remote_address();
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(error) => {
            tracing::warn!(%peer, %error, "queue service: connection refused in the handshake (is the applier's certificate signed by --queueClientCA?)");
            return;
        }
    };
    let Some(session) = hello(&conn, &service).await else { return };
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

/// The first stream: protocol version, name and worker count. `None` when the peer is refused.
async fn hello(conn: &Connection, service: &QueueService) -> Option<u64> {
    let peer = conn.remote_address();
    let (mut send, mut recv) = conn.accept_bi().await.ok()?;
    let (reply, session) = match frames::read_request(&mut recv).await {
        Ok(Message::Hello { workers, .. }) if workers > crate::lease::MAX_WORKERS => {
            let message = format!("a session may declare at most {} workers", crate::lease::MAX_WORKERS);
            (Message::Error { code: code::BAD_REQUEST, message }, None)
        }
        Ok(Message::Hello { version, name, workers }) if version == PROTOCOL_VERSION => {
            // workers = 0: an observer such as `wharfctl status`, which takes no leases.
            let session = if workers > 0 { service.open_session(&name, workers, true) } else { 0 };
            let lease_timeout_ms = service.lease_timeout().as_millis() as u64;
            (Message::Welcome { version: PROTOCOL_VERSION, session, lease_timeout_ms }, Some(session))
        }
        Ok(Message::Hello { version, name, .. }) => {
            let message = format!(
                "queue protocol version mismatch: this wharf-ingest speaks version {PROTOCOL_VERSION}, {name:?} speaks {version}; run the same wharf release on both sides"
            );
            tracing::error!(%peer, "{message}");
            (Message::Error { code: code::VERSION, message }, None)
        }
        other => {
            tracing::warn!(%peer, ?other, "queue service: the first frame was not a hello");
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
                    Message::Granted { partition: g.partition, epoch: g.epoch, fresh: g.fresh, upto: g.upto }
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
        other => Message::Error { code: code::BAD_REQUEST, message: format!("unexpected request {other:?}") },
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
    (after, upto, tables): (crate::hlc::Hlc, crate::hlc::Hlc, Vec<String>),
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
