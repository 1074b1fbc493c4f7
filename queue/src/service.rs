//! The queue service: the journal and its lease table behind the operations appliers call.
//!
//! One instance lives in the ingest process. In-process workers call it through
//! [`crate::local::LocalClient`]; separate `wharf-applier` processes reach it over QUIC
//! ([`crate::quic`]), whose server calls the same methods. Lease state lives here only.
//!
//! Whoever calls, a report changes the journal only as far as it can be true: a commit moves the
//! applied mark only when it comes from the partition's holder at its epoch, never past the
//! partition's resolved timestamp, and, with a [`CommitWitness`], never past what the target's
//! own checkpoint row says for that epoch. A window reads at most up to the resolved timestamp.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::client::{Grant, Release};
use crate::groups::{Grouping, Groups};
use crate::journal::{Chunk, ChunkLimits, Journal, ReadError, Tables, WindowCursor};
use crate::lease::{LeaseInfo, LeaseTable, MAX_PAUSE, Scope, SessionInfo, WorkerId};
use crate::record::Partition;
use wharf_base::hlc::Hlc;

/// The target's own checkpoint row of a partition: its applied timestamp and lease epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetCheckpoint {
    pub resolved: Hlc,
    pub epoch: u64,
}

/// Reads the target's checkpoint row, the truth a commit report is checked against before the
/// journal forgets rows (`None` if there is none, or the target cannot say now).
pub trait CommitWitness: Send + Sync {
    fn checkpoint<'a>(
        &'a self,
        partition: &'a Partition,
    ) -> Pin<Box<dyn Future<Output = Option<TargetCheckpoint>> + Send + 'a>>;
}

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
    witness: Option<Arc<dyn CommitWitness>>,
    /// Woken when a lease is freed, so waiting workers look again at once.
    freed: Notify,
    stats: ServiceStats,
    drift: std::sync::OnceLock<DriftSource>,
    /// Foreign-key groups leased as units of their own (`--partitionBy group`).
    groups: Mutex<Groups>,
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
    /// A foreign-key group's tables (`--partitionBy group`); none for a schema. Its pending figures
    /// are its schema's above the group's checkpoint (the journal counts per schema).
    #[serde(default)]
    pub tables: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceStatus {
    pub lease_timeout_ms: u64,
    pub sessions: Vec<SessionInfo>,
    pub partitions: Vec<PartitionStatus>,
    /// Schema drift the ingest sees (an older ingest sends none).
    #[serde(default)]
    pub drift: Vec<DriftStatus>,
}

/// A payload table or column the target lacks (or a key of another arity), as the ingest's
/// policy handles it: `halt` refuses the requests, `ignore` drops it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DriftStatus {
    pub partition: String,
    pub table: String,
    pub column: Option<String>,
    /// `unknown_column`, `unknown_table` or `key_arity`.
    pub kind: String,
    pub policy: String,
    pub since_unix_s: u64,
    /// Requests refused (halt).
    pub refused: u64,
    /// Rows whose column was dropped, or dropped whole (ignore).
    pub dropped: u64,
}

/// Where the ingest's drift comes from, for [`ServiceStatus::drift`].
pub type DriftSource = Arc<dyn Fn() -> Vec<DriftStatus> + Send + Sync>;

impl QueueService {
    pub fn new(journal: Journal, lease_timeout: Duration) -> Self {
        Self::with_witness(journal, lease_timeout, None)
    }

    /// A service whose commit reports are checked against the target's checkpoint rows.
    pub fn with_witness(journal: Journal, lease_timeout: Duration, witness: Option<Arc<dyn CommitWitness>>) -> Self {
        let inner = Inner {
            journal,
            leases: Mutex::new(LeaseTable::new(lease_timeout)),
            witness,
            freed: Notify::new(),
            stats: ServiceStats::default(),
            drift: std::sync::OnceLock::new(),
            groups: Mutex::new(Groups::default()),
        };
        QueueService { inner: Arc::new(inner) }
    }

    /// Sets where [`ServiceStatus::drift`] comes from (once).
    pub fn report_drift(&self, source: DriftSource) {
        let _ = self.inner.drift.set(source);
    }

    /// Leases `schema` as its foreign-key groups from now on (`--partitionBy group`); the same
    /// grouping again changes nothing. Another one replaces it at once: the old units' leases end
    /// (see [`crate::groups`] for why that is safe); returns whether it changed.
    pub fn set_groups(&self, schema: &Partition, groups: &[Vec<String>]) -> bool {
        let schema = schema.schema_level();
        if self.groups().is_current(&schema, groups) {
            return false;
        }
        let grouping = Grouping::of(&schema, groups);
        let units = grouping.groups.len();
        let Some(ended) = self.groups().set(&schema, grouping) else { return false };
        self.leases().retain(|unit| !ended.contains(unit));
        self.inner.freed.notify_waiters();
        tracing::info!(%schema, units, ended = ?ended.iter().map(ToString::to_string).collect::<Vec<_>>(), "the schema's foreign-key groups are leased as units");
        true
    }

    fn groups(&self) -> std::sync::MutexGuard<'_, Groups> {
        self.inner.groups.lock().expect("groups lock")
    }

    /// What a unit applied: a group's own report, else the journal's mark.
    fn applied(&self, unit: &Partition) -> Option<Hlc> {
        match unit.group {
            Some(_) => self.groups().applied(unit),
            None => self.inner.journal.applied(unit),
        }
    }

    /// Where a unit's epochs start: the journal keeps one per schema, the highest any of the
    /// schema's units (itself or its groups) was granted, so a restarted service grants every
    /// unit above what the target has seen.
    fn epoch(&self, unit: &Partition) -> u64 {
        self.inner.journal.lease_epoch(&unit.schema_level())
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

    /// Partitions whose apply fails for good, and why (see [`LeaseInfo::blocked`]).
    pub fn blocked(&self) -> Vec<(String, String)> {
        let all = self.leases().leases(Instant::now());
        all.into_iter().filter_map(|l| Some((l.partition, l.blocked?))).collect()
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, LeaseTable> {
        self.inner.leases.lock().expect("lease table lock")
    }

    /// Registers a session of `workers` workers (`expires: false` for in-process ones).
    pub fn open_session(&self, name: &str, workers: u32, expires: bool) -> u64 {
        self.open_scoped_session(name, workers, expires, None)
    }

    /// Registers a session that may lease only what `scope` allows (`None`: everything).
    pub fn open_scoped_session(&self, name: &str, workers: u32, expires: bool, scope: Option<Scope>) -> u64 {
        let scoped = scope.is_some();
        let id = self.leases().open_scoped_session(name, workers, expires, Instant::now(), scope);
        tracing::info!(session = id, name, workers, scoped, "applier session opened");
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
        let units = self.groups().units(&journal.partitions());
        let epochs: Vec<u64> = units.iter().map(|u| self.epoch(u)).collect();
        let applied: Vec<Option<Hlc>> = units.iter().map(|u| self.applied(u)).collect();
        let mut leases = self.leases();
        for (unit, epoch) in units.iter().zip(&epochs) {
            if !leases.knows(unit) {
                leases.add_partition(unit, *epoch);
            }
        }
        let has_work = |p: &Partition| {
            let applied = units.iter().position(|u| u == p).and_then(|i| applied[i]);
            match (journal.resolved(&p.schema_level()), applied) {
                (Some(resolved), Some(applied)) => resolved > applied,
                (resolved, _) => resolved.is_some(),
            }
        };
        let Some(lease) = leases.acquire(worker, Instant::now(), has_work) else { return Ok(None) };
        drop(leases);
        if lease.new_epoch {
            let schema = lease.partition.schema_level();
            journal.set_lease_epoch(&schema, lease.epoch.max(journal.lease_epoch(&schema)))?;
        }
        let upto = journal.resolved(&lease.partition.schema_level()).unwrap_or(Hlc::ZERO);
        let tables = match (self.groups().tables(&lease.partition), &lease.partition.group) {
            (Some(tables), _) => tables.to_vec(),
            (None, None) => Vec::new(),
            (None, Some(_)) => {
                // A regrouping ended this group between the lease and here: no grant.
                self.leases().release(worker, &lease.partition, lease.epoch, None);
                return Ok(None);
            }
        };
        Ok(Some(Grant { partition: lease.partition, epoch: lease.epoch, upto, tables }))
    }

    /// Starts reading `(after, upto]` for the partition's holder; `upto` no further than the
    /// partition's resolved timestamp (rows above it are not final).
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
        let upto = upto.min(self.inner.journal.resolved(&partition.schema_level()).unwrap_or(Hlc::ZERO));
        let cursor = WindowCursor::new(after.min(upto), upto, tables);
        match self.groups().tables(partition) {
            Some(group) => Some(cursor.only(Tables::new(group.to_vec()))),
            None => Some(cursor),
        }
    }

    /// Whether `worker` still holds `partition` at `epoch`.
    pub fn holds(&self, worker: WorkerId, partition: &Partition, epoch: u64) -> bool {
        self.leases().holds(worker, partition, epoch)
    }

    /// Whether `worker` still holds `partition` at `epoch`, noting that it makes progress (it
    /// reads a chunk).
    pub fn progress(&self, worker: WorkerId, partition: &Partition, epoch: u64) -> bool {
        self.leases().progress(worker, partition, epoch, Instant::now())
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
            let chunk = journal.read_chunk(&partition.schema_level(), &mut cursor, limits)?;
            Ok((cursor, chunk))
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// A commit on the target up to `checkpoint` by `worker`: answers whether it keeps the
    /// partition. The journal may forget the rows only if `worker` holds the partition at `epoch`,
    /// and only up to what the target's checkpoint row says for that epoch (with a witness) and
    /// the partition's resolved timestamp.
    pub async fn committed(
        &self,
        worker: WorkerId,
        partition: &Partition,
        epoch: u64,
        checkpoint: Hlc,
        rows: u64,
    ) -> Result<bool, ReadError> {
        if !self.holds(worker, partition, epoch) {
            tracing::debug!(%partition, epoch, "commit report from a worker that does not hold the partition: ignored");
            return Ok(false);
        }
        let confirmed = match &self.inner.witness {
            None => Some(checkpoint),
            Some(witness) => match witness.checkpoint(partition).await {
                Some(target) if target.epoch == epoch => Some(checkpoint.min(target.resolved)),
                // Another epoch or no row: nothing this report says can be trusted yet.
                _ => None,
            },
        };
        if let Some(applied) = confirmed {
            match partition.group {
                Some(_) => {
                    // Never past the schema's resolved timestamp, as the journal's own mark.
                    let resolved = self.inner.journal.resolved(&partition.schema_level()).unwrap_or(Hlc::ZERO);
                    let lowest = self.groups().mark_applied(partition, applied.min(resolved));
                    if let Some(lowest) = lowest {
                        self.inner.journal.mark_applied(&partition.schema_level(), lowest)?;
                    }
                }
                None => self.inner.journal.mark_applied(partition, applied)?,
            }
        }
        self.inner.stats.rows_applied.fetch_add(rows, Ordering::Relaxed);
        self.inner.stats.commits.fetch_add(1, Ordering::Relaxed);
        let keep = {
            let mut leases = self.leases();
            if rows > 0 {
                leases.unblock(partition);
            }
            leases.keep_after_commit(worker, partition, epoch)
        };
        if !keep {
            self.inner.freed.notify_waiters();
        }
        Ok(keep)
    }

    /// The holder gives the partition up: done, paused (at most [`MAX_PAUSE`]) or fenced (the
    /// next grant goes above the target's epoch). From anyone else, nothing happens.
    pub fn release(&self, worker: WorkerId, partition: &Partition, epoch: u64, how: &Release) {
        let mut leases = self.leases();
        let freed = match how {
            Release::Paused { pause, reason } => {
                let until = Instant::now() + (*pause).min(MAX_PAUSE);
                leases.release(worker, partition, epoch, Some((until, reason.clone())))
            }
            Release::Fenced { target_epoch } => {
                let fenced = leases.fenced(worker, partition, epoch, *target_epoch);
                if fenced {
                    self.inner.stats.fenced.fetch_add(1, Ordering::Relaxed);
                }
                fenced
            }
            Release::Done => leases.release(worker, partition, epoch, None),
        };
        if freed {
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
        let known = self.groups().units(&journal.partitions());
        let epochs: Vec<u64> = known.iter().map(|u| self.epoch(u)).collect();
        let (timeout, sessions, leases) = {
            let mut table = self.leases();
            for (unit, epoch) in known.iter().zip(epochs) {
                if !table.knows(unit) {
                    table.add_partition(unit, epoch);
                }
            }
            (table.timeout(), table.sessions(), table.leases(Instant::now()))
        };
        let mut partitions = Vec::with_capacity(leases.len());
        let by_name: std::collections::HashMap<String, &Partition> = known.iter().map(|p| (p.to_string(), p)).collect();
        let dropped = journal.dropped_stale();
        for lease in leases {
            let Some(&unit) = by_name.get(&lease.partition) else { continue };
            let schema = unit.schema_level();
            let applied = self.applied(unit);
            // A group's pending figures are its schema's (the journal counts per schema).
            let (pending_rows, pending_bytes) = journal.pending(&schema, applied.unwrap_or(Hlc::ZERO));
            partitions.push(PartitionStatus {
                lease,
                applied: applied.map(|h| h.to_string()),
                resolved: journal.resolved(&schema).map(|h| h.to_string()),
                pending_rows,
                pending_bytes,
                dropped_stale: dropped.iter().find(|(p, _)| *p == schema).map_or(0, |(_, n)| *n),
                tables: self.groups().tables(unit).map(<[String]>::to_vec).unwrap_or_default(),
            });
        }
        let drift = self.inner.drift.get().map(|source| source()).unwrap_or_default();
        Ok(ServiceStatus { lease_timeout_ms: timeout.as_millis() as u64, sessions, partitions, drift })
    }
}
