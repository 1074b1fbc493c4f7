//! The journal: durable appends through a write-ahead log, an ordered index per partition,
//! resolved timestamps, windowed reads and compaction, over sled.
//!
//! An append writes the request as **one** record of the `log` tree and returns once that record
//! is on disk (group commit). The [`indexer`] thread then moves the rows into their partition tree,
//! keyed `(HLC, table, key)`, and publishes resolved timestamps in log order, so a resolved
//! timestamp becomes visible only after every row acknowledged before it is indexed. Log records
//! are deleted only after a later sync made their index entries durable.

mod compact;
mod dirs;
mod high_water;
mod indexer;
mod parts;
mod window;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::watch;

use crate::commit::{GroupCommit, Poisoned};
use crate::hlc::Hlc;
use crate::record::{self, LogRecord, Partition, RecordError, Row};
use compact::Compactor;
use high_water::HighWater;
use indexer::Indexer;
pub use window::{Chunk, ChunkLimits, WindowCursor};

/// Default byte budget of the journal on disk: past it ingest answers 503 to partitions with
/// resolved work until appliers catch up.
pub const DEFAULT_BYTE_BUDGET: u64 = 8 << 30;
/// Free disk space kept for the journal's own bookkeeping (and the rest of the machine): below it
/// every append is refused, resolved or not.
pub const DEFAULT_DISK_RESERVE: u64 = 1 << 30;
/// sled's page cache; the journal is written once and read once, so a small cache suffices, and
/// it counts against the ingest process's memory.
const CACHE_BYTES: u64 = 64 << 20;
/// Large enough that a 1,000-row request stays inside sled's log instead of its blob files.
const SEGMENT_BYTES: usize = 8 << 20;
/// How long an open waits for sled's file lock to be let go by an earlier open in this process.
const LOCK_WAIT: Duration = Duration::from_secs(3);
/// How stale the cached on-disk size may be when the budget is checked.
const SIZE_REFRESH: Duration = Duration::from_millis(250);

#[derive(Clone, Debug)]
pub struct JournalConfig {
    pub dir: PathBuf,
    pub byte_budget: u64,
    pub disk_reserve: u64,
}

impl JournalConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        JournalConfig { dir: dir.into(), byte_budget: DEFAULT_BYTE_BUDGET, disk_reserve: DEFAULT_DISK_RESERVE }
    }
}

#[derive(Debug, Error)]
pub enum OpenError {
    #[error("cannot open journal at {dir}: {source} (is another wharf process using it?)")]
    Sled { dir: PathBuf, source: sled::Error },
    #[error("cannot prepare journal at {dir}: {source}")]
    Io { dir: PathBuf, source: std::io::Error },
    #[error("journal at {dir} has a damaged log record: {source}. {DAMAGED_ADVICE}")]
    Damaged { dir: PathBuf, source: RecordError },
    #[error("journal at {dir} is damaged: {detail}. {DAMAGED_ADVICE}")]
    Corrupt { dir: PathBuf, detail: String },
    #[error(
        "journal at {dir} is missing acknowledged records: records up to {durable} were acknowledged as durable (recorded in {dir}/{}), but its data file {dir}/db holds only up to {found}; it was truncated or damaged. {DAMAGED_ADVICE}",
        high_water::FILE_NAME
    )]
    Missing { dir: PathBuf, durable: u64, found: u64 },
}

/// What to do with a journal that fails its checks at open.
pub const DAMAGED_ADVICE: &str = "Do not run on it: move the directory aside, start wharf-ingest on an empty --journalDir, and restart the changefeeds from the target's checkpoints (wharfctl recover prints the statements)";

#[derive(Debug, Error)]
pub enum AppendError {
    #[error(
        "journal is over its byte budget ({used} of {budget} bytes) while {partition} has resolved rows waiting; retry once the appliers catch up"
    )]
    Full { used: u64, budget: u64, partition: Partition },
    #[error(
        "the journal's disk has {free} bytes free, under the {reserve}-byte reserve; free disk space or move the journal"
    )]
    DiskLow { free: u64, reserve: u64 },
    #[error(transparent)]
    Poisoned(#[from] Poisoned),
    #[error("journal write failed: {0}")]
    Storage(#[from] sled::Error),
}

impl AppendError {
    /// Whether the same request may succeed later without a restart.
    pub fn is_transient(&self) -> bool {
        matches!(self, AppendError::Full { .. } | AppendError::DiskLow { .. })
    }
}

#[derive(Debug, Error)]
pub enum ReadError {
    #[error("journal read failed: {0}")]
    Storage(#[from] sled::Error),
    #[error("damaged journal entry in {partition}: {source}")]
    Damaged { partition: Partition, source: RecordError },
}

/// What an append did with a request's rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Appended {
    /// Rows now durable in the journal.
    pub journaled: usize,
    /// Rows at or below the partition's applied checkpoint: acknowledged and dropped.
    pub dropped_stale: usize,
}

/// What a resolved timestamp did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolved {
    Advanced,
    /// At or below the newest resolved timestamp accepted so far: a no-op.
    Stale {
        current: Hlc,
    },
}

/// State shared by the journal handle and its background threads.
pub(crate) struct Shared {
    db: sled::Db,
    meta: sled::Tree,
    log: sled::Tree,
    commit: GroupCommit,
    trees: Mutex<HashMap<Partition, sled::Tree>>,
    /// Bumped whenever a resolved timestamp becomes visible.
    changes: watch::Sender<u64>,
    /// The highest log sequence number the indexer has processed.
    indexed: watch::Sender<u64>,
    /// Why the journal cannot make progress, if it cannot (see [`Fault`]).
    fault: Mutex<Option<Fault>>,
}

/// Something that stops the journal from making progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Retried; the journal may recover by itself (the indexer keeps trying).
    Stalled(String),
    /// A journal thread is gone: only a restart helps.
    Fatal(String),
}

impl Shared {
    /// Records a fault; a fatal one is never replaced.
    pub(crate) fn set_fault(&self, fault: Option<Fault>) {
        let mut current = self.fault.lock().expect("fault lock");
        if !matches!(*current, Some(Fault::Fatal(_))) {
            *current = fault;
        }
    }
}

/// Runs a journal thread's body; a panic is recorded as a fatal fault instead of ending silently.
pub(crate) fn supervised(shared: &Shared, name: &str, body: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let reason = format!("journal {name} thread panicked: {what}; restart the process");
        tracing::error!("{reason}");
        shared.set_fault(Some(Fault::Fatal(reason)));
    }
}

const RESOLVED: &[u8] = b"resolved/";
const APPLIED: &[u8] = b"applied/";
const EPOCH: &[u8] = b"epoch/";
/// Meta key of the last log sequence number the indexer processed.
const INDEXED: &[u8] = b"indexed";

impl Shared {
    fn tree(&self, partition: &Partition) -> Result<sled::Tree, sled::Error> {
        let mut trees = self.trees.lock().expect("tree map lock");
        if let Some(tree) = trees.get(partition) {
            return Ok(tree.clone());
        }
        let tree = self.db.open_tree(partition.tree_name())?;
        trees.insert(partition.clone(), tree.clone());
        Ok(tree)
    }

    fn meta_hlc(&self, prefix: &[u8], partition: &Partition) -> Option<Hlc> {
        self.meta.get(meta_key(prefix, partition)).ok().flatten().and_then(|v| Hlc::from_bytes(&v))
    }

    /// Raises a partition's meta timestamp to at least `hlc`; returns the previous value.
    fn raise_meta(&self, prefix: &[u8], partition: &Partition, hlc: Hlc) -> Result<Option<Hlc>, sled::Error> {
        let previous = self.meta.fetch_and_update(meta_key(prefix, partition), |old| {
            let old = old.and_then(Hlc::from_bytes).unwrap_or(Hlc::ZERO);
            Some(old.max(hlc).to_bytes().to_vec())
        })?;
        Ok(previous.as_deref().and_then(Hlc::from_bytes))
    }
}

/// The durable journal. Cheap to clone; all clones share one sled database.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    /// Serialises sequence assignment with the log insert, so log order is insertion order.
    log_order: Mutex<LogOrder>,
    budget: u64,
    disk_reserve: u64,
    dir: PathBuf,
    size: AtomicU64,
    /// Free bytes on the journal's file system, refreshed with `size`.
    free: AtomicU64,
    size_checked: Mutex<Option<Instant>>,
    indexer: Indexer,
    compactor: Compactor,
    high_water: HighWater,
    /// Rows acknowledged and dropped per partition because they were at or below its applied
    /// checkpoint (since this process started).
    dropped: Mutex<HashMap<Partition, u64>>,
}

struct LogOrder {
    next_seq: u64,
    /// The newest resolved timestamp accepted per partition (indexed or still in the log).
    accepted: HashMap<Partition, Hlc>,
}

impl Journal {
    /// Opens (or creates) the journal. A journal that lost acknowledged records, or whose data
    /// sled cannot read, is refused with an error naming the file; sled's panics on damaged data
    /// are caught and refused the same way.
    pub fn open(config: &JournalConfig) -> Result<Journal, OpenError> {
        let dir = &config.dir;
        let io_err = |source| OpenError::Io { dir: dir.clone(), source };
        dirs::create_durably(dir).map_err(io_err)?;
        let durable = high_water::read(dir).map_err(|detail| OpenError::Corrupt { dir: dir.clone(), detail })?;
        let opened = std::panic::catch_unwind(|| open_sled(dir));
        let (db, meta, log, order) = opened.unwrap_or_else(|panic| {
            let what =
                panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned());
            Err(OpenError::Corrupt {
                dir: dir.clone(),
                detail: format!("sled panicked reading {}/db: {}", dir.display(), shortened(what.unwrap_or_default())),
            })
        })?;
        let found = order.next_seq.saturating_sub(1);
        if found < durable {
            return Err(OpenError::Missing { dir: dir.clone(), durable, found });
        }
        let commit = GroupCommit::start(db.clone(), dir).map_err(io_err)?;
        let size = db.size_on_disk().unwrap_or(0);
        let shared = Arc::new(Shared {
            db,
            meta,
            log,
            commit,
            trees: Mutex::new(HashMap::new()),
            changes: watch::channel(0).0,
            indexed: watch::channel(found).0,
            fault: Mutex::new(None),
        });
        let high_water = HighWater::start(dir, durable.max(found), shared.clone()).map_err(io_err)?;
        let indexer = Indexer::start(shared.clone()).map_err(io_err)?;
        let compactor = Compactor::start().map_err(io_err)?;
        let inner = Inner {
            shared,
            log_order: Mutex::new(order),
            budget: config.byte_budget,
            disk_reserve: config.disk_reserve,
            dir: dir.clone(),
            size: AtomicU64::new(size),
            free: AtomicU64::new(free_bytes(dir).unwrap_or(u64::MAX)),
            size_checked: Mutex::new(None),
            indexer,
            compactor,
            high_water,
            dropped: Mutex::new(HashMap::new()),
        };
        Ok(Journal { inner: Arc::new(inner) })
    }

    /// Journals `rows` of one request as one log record and returns once it is on disk.
    /// Rows at or below the partition's applied checkpoint are dropped.
    pub async fn append_durable(&self, partition: &Partition, rows: &[Row]) -> Result<Appended, AppendError> {
        let incoming: u64 =
            rows.iter().map(|r| (r.table.len() + r.key.len() + r.after.as_ref().map_or(0, Vec::len) + 24) as u64).sum();
        self.check_budget(partition, incoming)?;
        let applied = self.applied(partition).unwrap_or(Hlc::ZERO);
        let fresh: Vec<&Row> = rows.iter().filter(|r| r.hlc > applied).collect();
        let outcome = Appended { journaled: fresh.len(), dropped_stale: rows.len() - fresh.len() };
        if outcome.dropped_stale > 0 {
            *self.inner.dropped.lock().expect("dropped lock").entry(partition.clone()).or_default() +=
                outcome.dropped_stale as u64;
        }
        if !fresh.is_empty() {
            let seq = self.log_insert(record::encode_log_rows(partition, &fresh), |_| None::<()>)?;
            // Counted at once, so a burst between two size refreshes cannot slip past the budget.
            self.inner.size.fetch_add(incoming, Ordering::Relaxed);
            self.inner.shared.commit.wait_durable().await?;
            if let Ok(seq) = seq {
                self.inner.high_water.observe(seq);
            }
            self.inner.indexer.notify();
        }
        Ok(outcome)
    }

    /// Records a resolved timestamp durably. It only moves forward; an older one is a no-op. It
    /// becomes visible to appliers once every row logged before it is indexed.
    pub async fn resolve_durable(&self, partition: &Partition, hlc: Hlc) -> Result<Resolved, AppendError> {
        if self.inner.shared.commit.is_poisoned() {
            return Err(Poisoned.into());
        }
        let floor = self.applied(partition).unwrap_or(Hlc::ZERO).max(self.resolved(partition).unwrap_or(Hlc::ZERO));
        let outcome = self.log_insert(record::encode_log_resolved(partition, hlc), |order| {
            let accepted = order.accepted.entry(partition.clone()).or_insert(Hlc::ZERO);
            let current = (*accepted).max(floor);
            if hlc <= current {
                return Some(current);
            }
            *accepted = hlc;
            None
        })?;
        // A stale copy is answered only once the first copy is durable: it may still be waiting
        // for its sync, and the sender takes the 200 as a promise never to send it again.
        self.inner.shared.commit.wait_durable().await?;
        let seq = match outcome {
            Err(current) => return Ok(Resolved::Stale { current }),
            Ok(seq) => seq,
        };
        self.inner.high_water.observe(seq);
        self.inner.indexer.notify();
        Ok(Resolved::Advanced)
    }

    /// Inserts a log record under the ordering lock unless `veto` returns `Some`; `Ok(Ok(seq))`
    /// gives the record's sequence number.
    fn log_insert<T>(
        &self,
        record: Vec<u8>,
        veto: impl FnOnce(&mut LogOrder) -> Option<T>,
    ) -> Result<Result<u64, T>, sled::Error> {
        let mut order = self.inner.log_order.lock().expect("log order lock");
        if let Some(out) = veto(&mut order) {
            return Ok(Err(out));
        }
        let seq = order.next_seq;
        let mut batch = sled::Batch::default();
        parts::insert(&mut batch, &seq.to_be_bytes(), &record);
        self.inner.shared.log.apply_batch(batch)?;
        crate::commit::release_sled_garbage();
        order.next_seq += 1;
        Ok(Ok(seq))
    }

    /// Rows acknowledged and dropped per partition since start, because they were at or below
    /// the applied checkpoint: a re-emission after a changefeed restart, or rows lost to a second
    /// changefeed into the same schema or an emptied journal.
    pub fn dropped_stale(&self) -> Vec<(Partition, u64)> {
        let mut out: Vec<(Partition, u64)> =
            self.inner.dropped.lock().expect("dropped lock").iter().map(|(p, n)| (p.clone(), *n)).collect();
        out.sort();
        out
    }

    /// The newest resolved timestamp visible to appliers.
    pub fn resolved(&self, partition: &Partition) -> Option<Hlc> {
        self.inner.shared.meta_hlc(RESOLVED, partition)
    }

    /// The newest checkpoint known to be committed on the target (a cache of the target's own).
    pub fn applied(&self, partition: &Partition) -> Option<Hlc> {
        self.inner.shared.meta_hlc(APPLIED, partition)
    }

    /// Every partition that ever received an indexed row or resolved timestamp.
    pub fn partitions(&self) -> Vec<Partition> {
        let mut out: Vec<Partition> =
            self.inner.shared.db.tree_names().iter().filter_map(|n| Partition::from_tree_name(n)).collect();
        out.sort();
        out
    }

    /// A receiver that changes whenever a resolved timestamp becomes visible.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.shared.changes.subscribe()
    }

    /// Waits until everything logged before this call is indexed (for tests and benchmarks).
    pub async fn wait_indexed(&self) {
        let last = self.inner.log_order.lock().expect("log order lock").next_seq.saturating_sub(1);
        self.inner.indexer.notify();
        let mut rx = self.inner.shared.indexed.subscribe();
        let _ = rx.wait_for(|seq| *seq >= last).await;
    }

    /// Reads the next chunk of a window; see [`window`] for what a chunk holds.
    pub fn read_chunk(
        &self,
        partition: &Partition,
        cursor: &mut WindowCursor,
        limits: ChunkLimits,
    ) -> Result<Chunk, ReadError> {
        window::read_chunk(&self.inner.shared.tree(partition)?, partition, cursor, limits)
    }

    /// Rows and bytes of `partition` above `after` still in the journal (a scan: for status only).
    pub fn pending(&self, partition: &Partition, after: Hlc) -> Result<(u64, u64), ReadError> {
        let tree = self.inner.shared.tree(partition)?;
        let (mut rows, mut bytes) = (0u64, 0u64);
        for item in parts::joined(tree.range(record::key_after(after)..)) {
            let (key, value) = item?;
            rows += 1;
            bytes += (key.len() + value.len()) as u64;
        }
        Ok((rows, bytes))
    }

    /// The newest lease epoch issued for `partition` (kept in the journal so epochs only grow).
    pub fn lease_epoch(&self, partition: &Partition) -> u64 {
        let key = meta_key(EPOCH, partition);
        self.inner
            .shared
            .meta
            .get(key)
            .ok()
            .flatten()
            .and_then(|v| v.as_ref().try_into().ok())
            .map_or(0, u64::from_be_bytes)
    }

    /// Stores the newest lease epoch issued for `partition`.
    pub fn set_lease_epoch(&self, partition: &Partition, epoch: u64) -> Result<(), ReadError> {
        self.inner.shared.meta.insert(meta_key(EPOCH, partition), &epoch.to_be_bytes())?;
        Ok(())
    }

    /// Records that everything up to `checkpoint` is committed on the target; a background thread
    /// then deletes those entries. Not synced: if the process dies first, the entries come back and
    /// are skipped, because windows start after the target's own checkpoint.
    pub fn mark_applied(&self, partition: &Partition, checkpoint: Hlc) -> Result<(), ReadError> {
        let previous = self.inner.shared.raise_meta(APPLIED, partition, checkpoint)?;
        if previous.is_none_or(|p| p < checkpoint) {
            self.inner.compactor.compact(self.inner.shared.tree(partition)?, checkpoint);
        }
        Ok(())
    }

    /// Sync duration and group-commit size, for `/_/varz`.
    pub fn sync_metrics(&self) -> &crate::metrics::SyncMetrics {
        self.inner.shared.commit.metrics()
    }

    /// Approximate bytes on disk, refreshed at most every [`SIZE_REFRESH`].
    pub fn disk_bytes(&self) -> u64 {
        self.inner.size.load(Ordering::Relaxed)
    }

    /// `Err` with the reason when the journal cannot make progress: a failed sync (fatal), a dead
    /// thread (fatal), or indexing failing (retried).
    pub fn health(&self) -> Result<(), Fault> {
        if self.inner.shared.commit.is_poisoned() {
            return Err(Fault::Fatal(
                "journal sync failed; the journal is read-only until the process restarts".into(),
            ));
        }
        match self.inner.shared.fault.lock().expect("fault lock").clone() {
            Some(fault) => Err(fault),
            None => Ok(()),
        }
    }

    /// Refuses `incoming` more bytes of `partition` when the disk is low, or when the journal is
    /// over its budget while this partition has resolved rows the appliers can work off.
    ///
    /// Over the budget with nothing resolved, rows are still accepted: CockroachDB sends a resolved
    /// timestamp only after every earlier row is acknowledged, so refusing unresolved rows would
    /// wait for a resolved timestamp that can never come (a scan larger than the budget would
    /// deadlock). Resolved timestamps themselves are never refused for the budget.
    fn check_budget(&self, partition: &Partition, incoming: u64) -> Result<(), AppendError> {
        if self.inner.shared.commit.is_poisoned() {
            return Err(Poisoned.into());
        }
        self.refresh_sizes();
        let free = self.inner.free.load(Ordering::Relaxed);
        if free < self.inner.disk_reserve.saturating_add(incoming) {
            return Err(AppendError::DiskLow { free, reserve: self.inner.disk_reserve });
        }
        let used = self.disk_bytes();
        // The newest resolved timestamp accepted (durable, perhaps not yet indexed and visible).
        let accepted = self.inner.log_order.lock().expect("log order lock").accepted.get(partition).copied();
        let resolved_work = match (accepted.max(self.resolved(partition)), self.applied(partition)) {
            (Some(resolved), applied) => applied.is_none_or(|a| resolved > a),
            (None, _) => false,
        };
        if used.saturating_add(incoming) > self.inner.budget && resolved_work {
            return Err(AppendError::Full { used, budget: self.inner.budget, partition: partition.clone() });
        }
        Ok(())
    }

    /// Re-reads the journal's size and the free disk space at most every [`SIZE_REFRESH`].
    fn refresh_sizes(&self) {
        let mut checked = self.inner.size_checked.lock().expect("size lock");
        if checked.is_some_and(|at| at.elapsed() <= SIZE_REFRESH) {
            return;
        }
        *checked = Some(Instant::now());
        if let Ok(size) = self.inner.shared.db.size_on_disk() {
            self.inner.size.store(size, Ordering::Relaxed);
        }
        if let Some(free) = free_bytes(&self.inner.dir) {
            self.inner.free.store(free, Ordering::Relaxed);
        }
    }
}

/// Bytes available to unprivileged writers on the file system holding `dir`.
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `statvfs` is plain integers, for which all-zero bytes are a valid value.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `stat` a properly sized, writable struct.
    let result = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
    (result == 0).then(|| stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// Opens sled and its trees and recovers the log's order (run under `catch_unwind`: sled panics
/// on some kinds of damage).
fn open_sled(dir: &std::path::Path) -> Result<(sled::Db, sled::Tree, sled::Tree, LogOrder), OpenError> {
    let sled_err = |source: sled::Error| match source {
        sled::Error::Corruption { .. } => OpenError::Corrupt {
            dir: dir.to_owned(),
            detail: format!("sled found {}/db damaged: {source}", dir.display()),
        },
        source => OpenError::Sled { dir: dir.to_owned(), source },
    };
    let config = sled::Config::new().path(dir).cache_capacity(CACHE_BYTES).segment_size(SEGMENT_BYTES);
    // sled lets go of its file lock a moment after the last handle of an earlier open is dropped
    // (its IO threads finish first), so a reopen in the same process waits for it briefly; another
    // process holding the journal is still refused after that.
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    let db = loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock") && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => break other.map_err(sled_err)?,
        }
    };
    let meta = db.open_tree("meta").map_err(sled_err)?;
    let log = db.open_tree("log").map_err(sled_err)?;
    let order = recover_log_order(&log, &meta).map_err(|e| match e {
        RecoverError::Sled(source) => sled_err(source),
        RecoverError::Damaged(source) => OpenError::Damaged { dir: dir.to_owned(), source },
    })?;
    Ok((db, meta, log, order))
}

enum RecoverError {
    Sled(sled::Error),
    Damaged(RecordError),
}

/// The next sequence number, and the resolved timestamps still waiting in the log.
fn recover_log_order(log: &sled::Tree, meta: &sled::Tree) -> Result<LogOrder, RecoverError> {
    let logged = match log.last().map_err(RecoverError::Sled)? {
        // A large record's last part has a longer key; its first 8 bytes are the sequence number.
        Some((key, _)) => key.get(..8).map_or(0, |seq| u64::from_be_bytes(seq.try_into().expect("8 bytes"))),
        None => 0,
    };
    // Records are deleted from the log once indexed; the indexer keeps the last one it did.
    let indexed = meta
        .get(INDEXED)
        .map_err(RecoverError::Sled)?
        .and_then(|v| v.as_ref().try_into().ok())
        .map_or(0, u64::from_be_bytes);
    let next_seq = logged.max(indexed) + 1;
    let mut accepted: HashMap<Partition, Hlc> = HashMap::new();
    for item in parts::joined(log.iter()) {
        let (_, value) = item.map_err(RecoverError::Sled)?;
        if let LogRecord::Resolved { partition, hlc } = record::decode_log(&value).map_err(RecoverError::Damaged)? {
            let entry = accepted.entry(partition).or_insert(Hlc::ZERO);
            *entry = (*entry).max(hlc);
        }
    }
    for item in meta.scan_prefix(RESOLVED) {
        let (key, value) = item.map_err(RecoverError::Sled)?;
        if let (Some(partition), Some(hlc)) =
            (Partition::from_tree_name(&key[RESOLVED.len()..]), Hlc::from_bytes(&value))
        {
            let entry = accepted.entry(partition).or_insert(Hlc::ZERO);
            *entry = (*entry).max(hlc);
        }
    }
    Ok(LogOrder { next_seq, accepted })
}

/// sled's panic messages can quote whole keys; an error line needs only their start.
fn shortened(mut text: String) -> String {
    const MAX: usize = 300;
    if text.len() > MAX {
        let cut = (0..=MAX).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        text.truncate(cut);
        text.push_str(" …");
    }
    text
}

fn meta_key(prefix: &[u8], partition: &Partition) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(&partition.tree_name());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_journal_thread_is_a_fatal_fault_and_indexing_errors_a_passing_one() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&JournalConfig::new(dir.path())).unwrap();
        let shared = &journal.inner.shared;
        assert_eq!(journal.health(), Ok(()));
        shared.set_fault(Some(Fault::Stalled("indexing failed".into())));
        assert_eq!(journal.health(), Err(Fault::Stalled("indexing failed".into())));
        shared.set_fault(None);
        assert_eq!(journal.health(), Ok(()));
        supervised(shared, "test", || panic!("boom"));
        let Err(Fault::Fatal(reason)) = journal.health() else { panic!("expected a fatal fault") };
        assert!(reason.contains("journal test thread panicked: boom"), "{reason}");
        shared.set_fault(None);
        assert!(matches!(journal.health(), Err(Fault::Fatal(_))), "a fatal fault is never cleared");
    }
}

#[cfg(test)]
mod reopen_tests {
    use super::*;

    #[test]
    fn a_dropped_journal_can_be_reopened_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&JournalConfig::new(dir.path())).unwrap();
        drop(journal);
        Journal::open(&JournalConfig::new(dir.path())).unwrap();
    }

    #[test]
    fn a_journal_with_data_can_be_reopened_at_once() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = Partition::new("db", "s");
        let row = |w| Row { hlc: Hlc::new(w, 0), table: "t".into(), key: b"[1]".to_vec(), after: None };
        for round in 0..3u64 {
            let journal = Journal::open(&JournalConfig::new(dir.path())).unwrap();
            rt.block_on(journal.append_durable(&p, &[row(10 + round)])).unwrap();
            rt.block_on(journal.resolve_durable(&p, Hlc::new(10 + round, 0))).unwrap();
            journal.mark_applied(&p, Hlc::new(5 + round, 0)).unwrap();
            rt.block_on(journal.wait_indexed());
        }
    }

    #[test]
    fn marking_an_untouched_partition_applied_does_not_keep_the_journal_open() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let row = Row { hlc: Hlc::new(20, 0), table: "t2".into(), key: b"[3]".to_vec(), after: Some(b"{}".to_vec()) };
        let journal = Journal::open(&JournalConfig::new(dir.path())).unwrap();
        rt.block_on(journal.append_durable(&Partition::new("db", "s0"), &[row])).unwrap();
        rt.block_on(journal.wait_indexed());
        journal.mark_applied(&Partition::new("db", "s1"), Hlc::ZERO).unwrap();
        journal.mark_applied(&Partition::new("db", "s0"), Hlc::ZERO).unwrap();
        rt.block_on(journal.wait_indexed());
        drop(journal);
        Journal::open(&JournalConfig::new(dir.path())).unwrap();
    }
}
