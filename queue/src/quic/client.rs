//! The queue client of `wharf-applier` (and `wharfctl status`): one QUIC connection per process,
//! re-established when the ingest restarts or the network drops; heartbeats keep its leases.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, RecvStream, SendStream};

use super::datagrams;
use super::frames::{self, StreamError};
use super::io_thread::IoThread;
use super::tls::{self, TlsError, TlsFiles};
use crate::batch::RowBatch;
use crate::client::{Grant, QueueClient, QueueError, Release, WindowReader};
use crate::journal::{Chunk, ChunkLimits};
use crate::service::ServiceStatus;
use crate::wire::{Message, PROTOCOL_VERSION, code};
use wharf_base::hlc::Hlc;

/// How long connecting (with the handshake and hello) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// `HOST:PORT` of the queue service; HOST is also the name checked in its certificate.
    pub addr: String,
    pub tls: TlsFiles,
    /// Shown by `wharfctl status`.
    pub name: String,
    /// Worker tasks of this process (0: an observer that takes no leases).
    pub workers: u32,
}

#[derive(Clone)]
pub struct QuicClient {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: quinn::Endpoint,
    settings: ClientSettings,
    current: tokio::sync::Mutex<Option<Session>>,
}

#[derive(Clone)]
struct Session {
    conn: Connection,
    lease_timeout: Duration,
}

fn unavailable(e: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

impl From<StreamError> for QueueError {
    fn from(e: StreamError) -> Self {
        match e {
            StreamError::Wire(w) => QueueError::Protocol(w.to_string()),
            other => unavailable(other),
        }
    }
}

impl QuicClient {
    pub fn new(settings: ClientSettings) -> Result<Self, TlsError> {
        let config = tls::client_config(&settings.tls)?;
        let io = IoThread::start().map_err(|e| TlsError::Quic(format!("cannot start the QUIC thread: {e}")))?;
        let mut endpoint = datagrams::client_socket()
            .and_then(|socket| datagrams::endpoint(socket, None, Arc::new(io)))
            .map_err(|e| TlsError::Quic(format!("cannot open a UDP socket: {e}")))?;
        endpoint.set_default_client_config(config);
        let inner = Inner { endpoint, settings, current: tokio::sync::Mutex::new(None) };
        Ok(QuicClient { inner: Arc::new(inner) })
    }

    /// Connects now (or reuses the live connection): startup uses it to report a bad address,
    /// certificate or protocol version at once.
    pub async fn connect(&self) -> Result<(), QueueError> {
        self.session().await.map(|_| ())
    }

    /// Leases, sessions and journal figures of the service.
    pub async fn status(&self) -> Result<ServiceStatus, QueueError> {
        match self.call(&Message::StatusRequest).await? {
            Message::Status { json } => serde_json::from_str(&json).map_err(|e| QueueError::Protocol(e.to_string())),
            other => Err(unexpected(other)),
        }
    }

    async fn session(&self) -> Result<Session, QueueError> {
        let mut current = self.inner.current.lock().await;
        if let Some(session) = current.as_ref()
            && session.conn.close_reason().is_none()
        {
            return Ok(session.clone());
        }
        *current = None;
        let session = tokio::time::timeout(CONNECT_TIMEOUT, self.open_session()).await.map_err(|_| {
            unavailable(format!("no answer from {} within {CONNECT_TIMEOUT:?}", self.inner.settings.addr))
        })??;
        tokio::spawn(heartbeat(session.clone()));
        *current = Some(session.clone());
        Ok(session)
    }

    async fn open_session(&self) -> Result<Session, QueueError> {
        let settings = &self.inner.settings;
        let (host, addr) = resolve(&settings.addr).await?;
        let conn = self
            .inner
            .endpoint
            .connect(addr, &host)
            .map_err(unavailable)?
            .await
            .map_err(|e| unavailable(format!("cannot connect to the queue service at {}: {e}", settings.addr)))?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(unavailable)?;
        let hello =
            Message::Hello { version: PROTOCOL_VERSION, name: settings.name.clone(), workers: settings.workers };
        frames::write(&mut send, &hello).await?;
        send.finish().map_err(unavailable)?;
        match frames::read(&mut recv).await? {
            Message::Welcome { version: PROTOCOL_VERSION, session, lease_timeout_ms } => {
                tracing::info!(addr = %settings.addr, session, "connected to the queue service");
                Ok(Session { conn, lease_timeout: Duration::from_millis(lease_timeout_ms) })
            }
            Message::Welcome { version, .. } => Err(QueueError::Protocol(format!(
                "queue protocol version mismatch: this client speaks version {PROTOCOL_VERSION}, the service {version}"
            ))),
            Message::Error { message, .. } => Err(QueueError::Protocol(message)),
            other => Err(unexpected(other)),
        }
    }

    /// One request on a fresh stream, one answer.
    async fn call(&self, request: &Message) -> Result<Message, QueueError> {
        let session = self.session().await?;
        let (mut send, mut recv) = session.conn.open_bi().await.map_err(unavailable)?;
        frames::write(&mut send, request).await?;
        send.finish().map_err(unavailable)?;
        let reply = frames::read(&mut recv).await?;
        check(&session.conn, reply)
    }
}

/// Turns an error frame into a [`QueueError`]; an expired session drops the connection so the
/// next call reconnects.
fn check(conn: &Connection, reply: Message) -> Result<Message, QueueError> {
    match reply {
        Message::Error { code: code::NOT_HOLDER, message } => Err(QueueError::NotHolder(message)),
        Message::Error { code: code::SESSION_EXPIRED, message } => {
            conn.close(0u32.into(), b"session expired");
            Err(unavailable(message))
        }
        Message::Error { code: code::JOURNAL, message } => Err(QueueError::Remote(message)),
        Message::Error { message, .. } => Err(QueueError::Protocol(message)),
        other => Ok(other),
    }
}

fn unexpected(message: Message) -> QueueError {
    QueueError::Protocol(format!("unexpected answer {message:?}"))
}

async fn resolve(addr: &str) -> Result<(String, SocketAddr), QueueError> {
    let (host, _) =
        addr.rsplit_once(':').ok_or_else(|| QueueError::Protocol(format!("--queueAddr {addr:?} is not HOST:PORT")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let found = tokio::net::lookup_host(addr).await.map_err(|e| unavailable(format!("cannot resolve {addr}: {e}")))?;
    let mut found: Vec<SocketAddr> = found.collect();
    found.sort_by_key(|a| !a.is_ipv4());
    let first = found.first().copied().ok_or_else(|| unavailable(format!("{addr} resolves to no address")))?;
    Ok((host, first))
}

/// Renews the session's leases every third of the lease timeout while the connection lives.
async fn heartbeat(session: Session) {
    let every = (session.lease_timeout / 3).max(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = session.conn.closed() => return,
        }
        let beat = async {
            let (mut send, mut recv) = session.conn.open_bi().await.map_err(unavailable)?;
            frames::write(&mut send, &Message::Heartbeat).await?;
            send.finish().map_err(unavailable)?;
            check(&session.conn, frames::read(&mut recv).await?)
        };
        if let Err(error) = beat.await {
            tracing::warn!(%error, "queue heartbeat failed");
        }
    }
}

pub struct QuicWindow {
    conn: Connection,
    send: SendStream,
    recv: RecvStream,
    /// A `Next` is already on its way: the service reads the following chunk while this client
    /// works on the current one (at most two chunks in flight per window).
    requested: bool,
    /// The buffer the next frame is read into: a `Rows` frame takes it with its rows, and
    /// [`WindowReader::recycle`] brings one back.
    frame: Vec<u8>,
}

impl QueueClient for QuicClient {
    type Window = QuicWindow;

    async fn acquire(&self, worker: u32, wait: Duration) -> Result<Option<Grant>, QueueError> {
        let wait_ms = wait.as_millis().min(u32::MAX as u128) as u32;
        match self.call(&Message::Acquire { worker, wait_ms }).await? {
            Message::Granted { partition, epoch, upto, tables } => Ok(Some(Grant { partition, epoch, upto, tables })),
            Message::NoWork => Ok(None),
            other => Err(unexpected(other)),
        }
    }

    async fn open(
        &self,
        worker: u32,
        grant: &Grant,
        after: Hlc,
        tables: Vec<String>,
    ) -> Result<QuicWindow, QueueError> {
        let session = self.session().await?;
        let (mut send, mut recv) = session.conn.open_bi().await.map_err(unavailable)?;
        let open = Message::Open {
            worker,
            partition: grant.partition.clone(),
            epoch: grant.epoch,
            after,
            upto: grant.upto,
            tables,
        };
        frames::write(&mut send, &open).await?;
        match check(&session.conn, frames::read(&mut recv).await?)? {
            Message::Ok => Ok(QuicWindow { conn: session.conn, send, recv, requested: false, frame: Vec::new() }),
            other => Err(unexpected(other)),
        }
    }

    async fn committed(&self, worker: u32, grant: &Grant, checkpoint: Hlc, rows: u64) -> Result<bool, QueueError> {
        let request =
            Message::Committed { worker, partition: grant.partition.clone(), epoch: grant.epoch, checkpoint, rows };
        match self.call(&request).await? {
            Message::Keep { keep } => Ok(keep),
            other => Err(unexpected(other)),
        }
    }

    async fn release(&self, worker: u32, grant: &Grant, how: Release) -> Result<(), QueueError> {
        let (how, pause_ms, reason, target_epoch) = match how {
            Release::Done => (0, 0, String::new(), 0),
            Release::Paused { pause, reason } => (1, pause.as_millis() as u64, reason, 0),
            Release::Fenced { target_epoch } => (2, 0, String::new(), target_epoch),
        };
        let request = Message::Release {
            worker,
            partition: grant.partition.clone(),
            epoch: grant.epoch,
            how,
            pause_ms,
            reason,
            target_epoch,
        };
        match self.call(&request).await? {
            Message::Ok => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

impl WindowReader for QuicWindow {
    async fn next_chunk(&mut self, limits: ChunkLimits) -> Result<Chunk, QueueError> {
        let next = Message::Next {
            max_rows: limits.max_rows.min(u32::MAX as usize) as u32,
            max_bytes: limits.max_bytes.min(u32::MAX as usize) as u32,
        };
        if !self.requested {
            frames::write(&mut self.send, &next).await?;
        }
        self.requested = false;
        match check(&self.conn, frames::read_into(&mut self.recv, &mut self.frame).await?)? {
            Message::Rows { complete_through, last, rows } => {
                if last {
                    let _ = self.send.finish();
                } else {
                    frames::write(&mut self.send, &next).await?;
                    self.requested = true;
                }
                Ok(Chunk { rows, complete_through, last })
            }
            other => Err(unexpected(other)),
        }
    }

    fn recycle(&mut self, rows: RowBatch) {
        if self.frame.capacity() == 0 {
            self.frame = rows.into_buffer();
        }
    }
}
