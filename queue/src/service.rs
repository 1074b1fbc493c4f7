//! The queue service: the journal and its lease table behind the operations appliers call.
//!
//! One instance lives in the ingest process. In-process workers call it through
//! [`crate::local::LocalClient`]; separate `wharf-applier` processes reach it over QUIC
//! ([`crate::quic`]), whose server calls the same methods. Lease state lives here only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::client::{Grant, Release};
use crate::hlc::Hlc;
use crate::journal::{Chunk, ChunkLimits, Journal, ReadError, WindowCursor};
use crate::lease::{LeaseInfo, LeaseTable, SessionInfo, WorkerId};
use crate::record::Partition;

/// Default lease timeout: a worker silent this long loses its partitions.
pub const DEFAULT_LEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// Counters of what the appliers reported.
#[derive(Debug, Default)]
pub struct ServiceStats {
    pub rows_applied: AtomicU64,
    pub commits: AtomicU64,
    pub fenced: AtomicU64,
}

#[derive(Clone)]
pub struct QueueService {
    inner: Arc<Inner>,
}

struct Inner {
    journal: Journal,
    leases: Mutex<LeaseTable>,
    /// Woken when a lease is freed, so waiting workers look again at once.
    freed: Notify,
    stats: ServiceStats,
}

/// One partition in `wharfctl status`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionStatus {
    #[serde(flatten)]
    pub lease: LeaseInfo,
    /// The newest checkpoint the journal knows committed (a cache of the target's).
    pub applied: Option<String>,
    pub resolved: Option<String>,
    pub pending_rows: u64,
    pub pending_bytes: u64,
    /// Rows at or below the applied checkpoint, acknowledged and dropped since the ingest started.
    pub dropped_stale: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceStatus {
    pub lease_timeout_ms: u64,
    pub sessions: Vec<SessionInfo>,
    pub partitions: Vec<PartitionStatus>,
}

impl QueueService {
    pub fn new(journal: Journal, lease_timeout: Duration) -> Self {
        let inner = Inner {
            journal,
            leases: Mutex::new(LeaseTable::new(lease_timeout)),
            freed: Notify::new(),
            stats: ServiceStats::default(),
        };
        QueueService { inner: Arc::new(inner) }
    }

    pub fn journal(&self) -> &Journal {
        &self.inner.journal
    }

    pub fn stats(&self) -> &ServiceStats {
        &self.inner.stats
    }

    pub fn lease_timeout(&self) -> Duration {
        self.leases().timeout()
    }

    /// Connected sessions, held leases and paused partitions, for `/_/varz`.
    pub fn lease_summary(&self) -> (usize, usize, usize) {
        let leases = self.leases();
        let all = leases.leases(Instant::now());
        let held = all.iter().filter(|l| l.holder.is_some()).count();
        let paused = all.iter().filter(|l| l.paused.is_some()).count();
        (leases.sessions().len(), held, paused)
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, LeaseTable> {
        self.inner.leases.lock().expect("lease table lock")
    }

    /// Registers a session of `workers` workers (`expires: false` for in-process ones).
    pub fn open_session(&self, name: &str, workers: u32, expires: bool) -> u64 {
        let id = self.leases().open_session(name, workers, expires, Instant::now());
        tracing::info!(session = id, name, workers, "applier session opened");
        id
    }

    pub fn close_session(&self, session: u64) {
        self.leases().close_session(session);
        self.inner.freed.notify_waiters();
        tracing::info!(session, "applier session closed; its partitions are free");
    }

    /// Renews a session's leases; `false` if it already expired.
    pub fn heartbeat(&self, session: u64) -> bool {
        self.leases().heartbeat(session, Instant::now())
    }

    /// Work for `worker`, waiting up to `wait` for a resolved timestamp or a freed partition.
    pub async fn acquire(&self, worker: WorkerId, wait: Duration) -> Result<Option<Grant>, ReadError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut changes = self.inner.journal.subscribe();
        loop {
            let freed = self.inner.freed.notified();
            if let Some(grant) = self.try_acquire(worker)? {
                return Ok(Some(grant));
            }
            tokio::select! {
                _ = changes.changed() => {}
                _ = freed => {}
                _ = tokio::time::sleep_until(deadline) => return Ok(None),
            }
        }
    }

    fn try_acquire(&self, worker: WorkerId) -> Result<Option<Grant>, ReadError> {
        let journal = &self.inner.journal;
        let partitions = journal.partitions();
        let mut leases = self.leases();
        for partition in &partitions {
            if !leases.knows(partition) {
                leases.add_partition(partition, journal.lease_epoch(partition));
            }
        }
        let has_work = |p: &Partition| match (journal.resolved(p), journal.applied(p)) {
            (Some(resolved), Some(applied)) => resolved > applied,
            (resolved, _) => resolved.is_some(),
        };
        let Some(granted) = leases.acquire(worker, Instant::now(), has_work) else { return Ok(None) };
        if granted.fresh {
            journal.set_lease_epoch(&granted.partition, granted.epoch)?;
        }
        let upto = journal.resolved(&granted.partition).unwrap_or(Hlc::ZERO);
        Ok(Some(Grant { partition: granted.partition, epoch: granted.epoch, fresh: granted.fresh, upto }))
    }

    /// Starts reading `(after, grant.upto]` for the grant's holder.
    pub fn open_window(
        &self,
        worker: WorkerId,
        partition: &Partition,
        epoch: u64,
        after: Hlc,
        upto: Hlc,
        tables: Vec<String>,
    ) -> Option<WindowCursor> {
        if !self.holds(worker, partition, epoch) {
            return None;
        }
        Some(WindowCursor::new(after, upto, tables))
    }

    /// Whether `worker` still holds `partition` at `epoch`.
    pub fn holds(&self, worker: WorkerId, partition: &Partition, epoch: u64) -> bool {
        self.leases().holds(worker, partition, epoch)
    }

    /// Reads the next chunk on a blocking thread (segment reads block).
    pub async fn read(
        &self,
        partition: Partition,
        mut cursor: WindowCursor,
        limits: ChunkLimits,
    ) -> Result<(WindowCursor, Chunk), ReadError> {
        let journal = self.inner.journal.clone();
        tokio::task::spawn_blocking(move || {
            let chunk = journal.read_chunk(&partition, &mut cursor, limits)?;
            Ok((cursor, chunk))
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// A commit on the target up to `checkpoint`: the journal may compact; answers whether
    /// `worker` keeps the partition.
    pub fn committed(
        &self,
        worker: WorkerId,
        partition: &Partition,
        epoch: u64,
        checkpoint: Hlc,
        rows: u64,
    ) -> Result<bool, ReadError> {
        // A fact about the target, whoever reports it: compaction may proceed.
        self.inner.journal.mark_applied(partition, checkpoint)?;
        self.inner.stats.rows_applied.fetch_add(rows, Ordering::Relaxed);
        self.inner.stats.commits.fetch_add(1, Ordering::Relaxed);
        let keep = self.leases().keep_after_commit(worker, partition, epoch);
        if !keep {
            self.inner.freed.notify_waiters();
        }
        Ok(keep)
    }

    pub fn release(&self, worker: WorkerId, partition: &Partition, epoch: u64, how: &Release) {
        let mut leases = self.leases();
        let pause = match how {
            Release::Paused { pause, reason } => Some((Instant::now() + *pause, reason.clone())),
            Release::Fenced { target_epoch } => {
                leases.observe_epoch(partition, *target_epoch);
                self.inner.stats.fenced.fetch_add(1, Ordering::Relaxed);
                None
            }
            Release::Done => None,
        };
        if leases.release(worker, partition, epoch, pause) {
            drop(leases);
            self.inner.freed.notify_waiters();
        }
    }

    /// Leases, sessions and per partition the journal's view (counting pending rows scans them).
    pub async fn status(&self) -> Result<ServiceStatus, ReadError> {
        let service = self.clone();
        tokio::task::spawn_blocking(move || service.status_blocking())
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    fn status_blocking(&self) -> Result<ServiceStatus, ReadError> {
        let journal = &self.inner.journal;
        let known = journal.partitions();
        let (timeout, sessions, leases) = {
            let mut table = self.leases();
            for partition in &known {
                if !table.knows(partition) {
                    table.add_partition(partition, journal.lease_epoch(partition));
                }
            }
            (table.timeout(), table.sessions(), table.leases(Instant::now()))
        };
        let mut partitions = Vec::with_capacity(leases.len());
        let by_name: std::collections::HashMap<String, &Partition> = known.iter().map(|p| (p.to_string(), p)).collect();
        let dropped = journal.dropped_stale();
        for lease in leases {
            let Some(&partition) = by_name.get(&lease.partition) else { continue };
            let applied = journal.applied(partition);
            let (pending_rows, pending_bytes) = journal.pending(partition, applied.unwrap_or(Hlc::ZERO))?;
            partitions.push(PartitionStatus {
                lease,
                applied: applied.map(|h| h.to_string()),
                resolved: journal.resolved(partition).map(|h| h.to_string()),
                pending_rows,
                pending_bytes,
                dropped_stale: dropped.iter().find(|(p, _)| p == partition).map_or(0, |(_, n)| *n),
            });
        }
        Ok(ServiceStatus { lease_timeout_ms: timeout.as_millis() as u64, sessions, partitions })
    }
}
