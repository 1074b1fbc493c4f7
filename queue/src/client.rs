//! The queue interface appliers use, whether the journal is in their process or across QUIC.
//!
//! A worker asks for work ([`QueueClient::acquire`]), gets a partition with an epoch and the
//! newest resolved timestamp, claims the epoch in the target, opens the window after the target's
//! checkpoint ([`QueueClient::open`]) and reads it in bounded chunks ([`WindowReader`]). After
//! each target commit it reports the checkpoint ([`QueueClient::committed`]), which lets the
//! journal compact and tells the worker whether it keeps the partition. Leases are renewed by the
//! client itself (heartbeats) for as long as its process lives.

use std::future::Future;
use std::time::Duration;

use thiserror::Error;

use crate::batch::RowBatch;
use crate::journal::{Chunk, ChunkLimits, ReadError};
use crate::record::Partition;
use wharf_base::hlc::Hlc;

/// Work granted to one worker: apply `partition` up to `upto` under `epoch`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub partition: Partition,
    /// The worker claims it in the target before its first window under it (see
    /// `wharf_targetdb::checkpoint`); a worker knows which epochs it claimed.
    pub epoch: u64,
    /// The newest resolved timestamp of the partition.
    pub upto: Hlc,
    /// A group's tables (`--partitionBy group`); empty for a schema. The worker claims the group
    /// under them (see `wharf_targetdb::checkpoint`).
    pub tables: Vec<String>,
}

/// How a worker gives a partition back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Release {
    /// Between windows (shutdown, rebalancing).
    Done,
    /// Its apply failed permanently: nobody gets it for `pause`.
    Paused { pause: Duration, reason: String },
    /// The target holds a newer epoch: another worker took the partition over.
    Fenced { target_epoch: u64 },
}

#[derive(Debug, Error)]
pub enum QueueError {
    /// The queue service cannot be reached now; try again after a pause.
    #[error("queue service unavailable: {0}")]
    Unavailable(String),
    /// The lease is gone (expired, reconnected, taken over): give the partition up.
    #[error("the lease on {0} is no longer ours")]
    NotHolder(String),
    #[error(transparent)]
    Journal(#[from] ReadError),
    /// The service reported a failure reading its journal.
    #[error("queue service: {0}")]
    Remote(String),
    /// The peers do not understand each other (version mismatch, bad frame): a configuration
    /// error, not retried.
    #[error("queue protocol: {0}")]
    Protocol(String),
}

impl QueueError {
    /// Whether the same call may succeed later without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        matches!(self, QueueError::Unavailable(_))
    }
}

/// The appliers' view of the queue service.
pub trait QueueClient: Clone + Send + Sync + 'static {
    type Window: WindowReader;

    /// A partition with work for worker `worker` of this client, waiting up to `wait` for one.
    fn acquire(&self, worker: u32, wait: Duration) -> impl Future<Output = Result<Option<Grant>, QueueError>> + Send;

    /// Opens the window `(after, grant.upto]`; `tables` is the target's parent-first table order.
    fn open(
        &self,
        worker: u32,
        grant: &Grant,
        after: Hlc,
        tables: Vec<String>,
    ) -> impl Future<Output = Result<Self::Window, QueueError>> + Send;

    /// Reports a target commit up to `checkpoint`; answers whether the worker keeps the partition.
    fn committed(
        &self,
        worker: u32,
        grant: &Grant,
        checkpoint: Hlc,
        rows: u64,
    ) -> impl Future<Output = Result<bool, QueueError>> + Send;

    /// Gives the partition back.
    fn release(&self, worker: u32, grant: &Grant, how: Release) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// A window being read. Each call returns the next chunk; the last one has `last` set.
pub trait WindowReader: Send + 'static {
    fn next_chunk(&mut self, limits: ChunkLimits) -> impl Future<Output = Result<Chunk, QueueError>> + Send;

    /// Takes back a chunk's rows once they are used, so a reader can read the next chunk into
    /// the same memory.
    fn recycle(&mut self, _rows: RowBatch) {}
}
