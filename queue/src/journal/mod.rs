//! The journal: durable appends into segment files of our own, an in-memory index of where each
//! partition's rows are, resolved timestamps, windowed reads and deletion of applied segments.
//!
//! An append encodes the request's rows as **one** record, sorted by key, and hands it to the
//! [`writer`] thread, which writes everything queued with one `write` and one `fdatasync` (group
//! commit) and publishes the records in the [`index`]; the [`acknowledger`] then raises the
//! durable mark ([`bounds`]) over them and only then wakes the appenders. Reads merge the runs (journaled requests) of a window
//! straight from the segment files ([`window`]). The index holds about 150–200 bytes per
//! journaled request and nothing per row, so memory does not grow with the rows waiting (it does
//! with the requests: the byte budget does not bound it). A segment is deleted once every row in
//! it is applied, oldest first, after the log start has moved past it.
//!
//! Opening ([`recover`], whose rules are listed there) rebuilds the index from each closed
//! segment's [`summary`] and from the records of the segment being written, and checks them
//! against the bounds: the log's first segment must be there, and every record up to the durable
//! mark. The closed segments' records (checksums, consecutive sequence numbers) are checked in the
//! background ([`verify`]); rows are read only from segments that passed.

mod acknowledger;
mod bounds;
mod dirs;
mod group;
#[doc(hidden)]
pub mod image;
mod index;
mod merge;
mod recover;
mod segment;
mod summary;
mod verify;
mod window;
mod writer;

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use thiserror::Error;
use tokio::sync::watch;

use crate::record::{self, Partition, RecordError, RowRef, RowSource};
use index::{Index, RunShape};
use wharf_base::hlc::Hlc;
pub use window::{Chunk, ChunkLimits, Tables, WindowCursor};
pub use writer::Poisoned;
use writer::{Item, Writer};

/// Default byte budget of the journal on disk: past it ingest answers 503 to partitions with
/// resolved work until appliers catch up.
pub const DEFAULT_BYTE_BUDGET: u64 = 8 << 30;
/// Free disk space kept for the journal's own bookkeeping (and the rest of the machine): below it
/// every append is refused, resolved or not.
pub const DEFAULT_DISK_RESERVE: u64 = 1 << 30;
/// Size at which a segment file is closed and the next one started: small enough that applied
/// rows give their disk space back soon, large enough that files stay few.
pub const DEFAULT_SEGMENT_BYTES: u64 = 32 << 20;
/// How long a write or sync may take before health reports the journal stalled: far above any
/// sync of a working disk, short enough that an operator hears of a hung device within a probe
/// or two.
pub const DEFAULT_SYNC_STALL: std::time::Duration = std::time::Duration::from_secs(10);
/// How stale the cached free disk space may be when the budget is checked.
const SIZE_REFRESH: std::time::Duration = std::time::Duration::from_millis(250);
/// Held (with `flock`) while a process has the journal open.
const LOCK_FILE: &str = "wharf-journal.lock";

#[derive(Clone, Debug)]
pub struct JournalConfig {
    pub dir: PathBuf,
    pub byte_budget: u64,
    pub disk_reserve: u64,
    /// A segment file is closed once it holds this many bytes.
    pub segment_bytes: u64,
    /// Health reports a stall while a write or sync has not returned for this long.
    pub sync_stall: std::time::Duration,
}

impl JournalConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        JournalConfig {
            dir: dir.into(),
            byte_budget: DEFAULT_BYTE_BUDGET,
            disk_reserve: DEFAULT_DISK_RESERVE,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            sync_stall: DEFAULT_SYNC_STALL,
        }
    }

    /// A journal whose loss costs nothing (a test's or a benchmark's temporary directory): no
    /// disk reserve, so it works on a nearly full disk and fails only when the disk is full.
    pub fn scratch(dir: impl Into<PathBuf>) -> Self {
        JournalConfig { disk_reserve: 0, ..JournalConfig::new(dir) }
    }
}

#[derive(Debug, Error)]
pub enum OpenError {
    #[error("cannot open journal at {dir}: another process has it open (another wharf-ingest?)")]
    Locked { dir: PathBuf },
    #[error(
        "journal at {dir} was written by an earlier wharf (sled format, {file} exists); this build cannot read it. Let the earlier version's appliers catch up, then start this one on an empty --journalDir"
    )]
    OldFormat { dir: PathBuf, file: PathBuf },
    #[error("cannot prepare journal at {dir}: {source}")]
    Io { dir: PathBuf, source: std::io::Error },
    #[error("journal at {dir} has a damaged log record: {source}. {DAMAGED_ADVICE}")]
    Damaged { dir: PathBuf, source: RecordError },
    #[error("journal at {dir} is damaged: {detail}. {DAMAGED_ADVICE}")]
    Corrupt { dir: PathBuf, detail: String },
    #[error(
        "journal at {dir} is missing acknowledged records: records up to {durable} were acknowledged as durable (recorded in {dir}/{}), but its segments hold only up to {found}; a segment was truncated, damaged or deleted. {DAMAGED_ADVICE}",
        bounds::FILE_NAME
    )]
    Missing { dir: PathBuf, durable: u64, found: u64 },
    /// A closed segment failed its background check (see [`Journal::verified`]); the text names
    /// the journal and the file and says what to do.
    #[error("{0}")]
    FailedCheck(String),
}

/// What to do with a journal that fails its checks at open.
pub const DAMAGED_ADVICE: &str = "Do not run on it: move the directory aside, start wharf-ingest on an empty --journalDir, and restart the changefeeds from the target's checkpoints (wharfctl recover prints the statements)";

#[derive(Debug, Error)]
pub enum AppendError {
    #[error(
        "journal is over its byte budget ({used} of {budget} bytes) while {partition} has resolved rows waiting; retry once the appliers catch up"
    )]
    Full { used: u64, budget: u64, partition: Partition },
    /// `needed` is what the write needs free: its bytes above the reserve (rows), or half the
    /// reserve (bookkeeping).
    #[error(
        "the journal's disk has {free} bytes free, under the {needed} this write needs with the {reserve}-byte reserve; free disk space or move the journal"
    )]
    DiskLow { free: u64, needed: u64, reserve: u64 },
    /// More than one record may hold; the same request can never be journaled (413).
    #[error(
        "the request's rows take {bytes} bytes in the journal, more than one record may hold ({limit} bytes); send smaller batches (webhook_sink_config Flush.Bytes) or lower --bodyLimit"
    )]
    TooLarge { bytes: u64, limit: u64 },
    #[error(transparent)]
    Poisoned(#[from] Poisoned),
    #[error("{0}")]
    Damaged(String),
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
    Io(#[from] std::io::Error),
    #[error("damaged journal entry in {partition}: {source}")]
    Damaged { partition: Partition, source: RecordError },
    #[error("damaged journal entry in {partition}: {detail}")]
    DamagedRun { partition: Partition, detail: String },
    /// A segment failed its background check.
    #[error("{0}")]
    Unverified(String),
    #[error(transparent)]
    Poisoned(#[from] Poisoned),
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

/// State shared by the journal handle and its threads.
pub(crate) struct Shared {
    index: Mutex<Index>,
    /// Bumped whenever a resolved timestamp becomes visible.
    changes: watch::Sender<u64>,
    /// Why the journal cannot make progress, if it cannot (see [`Fault`]).
    fault: Mutex<Option<Fault>>,
    /// Closed segments not yet checked since the open.
    verification: verify::Verification,
}

/// Something that stops the journal from making progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Retried; the journal may recover by itself.
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

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().expect("journal index lock")
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

/// The durable journal. Cheap to clone; all clones share one set of files.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    /// Dropped first: its thread stops checking segments.
    _verifier: verify::Verifier,
    /// Its thread writes what is queued before the lock goes.
    writer: Writer,
    budget: u64,
    disk_reserve: u64,
    sync_stall: std::time::Duration,
    dir: PathBuf,
    /// Free bytes on the journal's file system, read at most every [`SIZE_REFRESH`].
    free: Mutex<FreeSpace>,
    /// Rows acknowledged and dropped per partition because they were at or below its applied
    /// checkpoint (since this process started).
    dropped: Mutex<HashMap<Partition, u64>>,
    _lock: File,
}

impl Journal {
    /// Opens (or creates) the journal. A journal that lost acknowledged records or holds damaged
    /// ones is refused with an error naming the file; damage in a closed segment may be found
    /// after the open instead, by the background check (see [`Journal::verified`]).
    pub fn open(config: &JournalConfig) -> Result<Journal, OpenError> {
        let dir = &config.dir;
        let io_err = |source| OpenError::Io { dir: dir.clone(), source };
        dirs::create_durably(dir).map_err(io_err)?;
        let lock = lock(dir)?;
        let loosened = dirs::make_private(dir).map_err(io_err)?;
        if loosened > 0 {
            tracing::warn!(dir = %dir.display(), files = loosened, "the journal's directory or files could be read by other users; made them private (0700 and 0600)");
        }
        let (recovered, bounds) = recover::recover(dir)?;
        let shared = Arc::new(Shared {
            index: Mutex::new(recovered.index),
            changes: watch::channel(0).0,
            fault: Mutex::new(None),
            verification: verify::Verification::new(recovered.checks.iter().map(|c| c.first_seq)),
        });
        let described = dir.clone();
        let describe = move |detail| OpenError::Corrupt { dir: described.clone(), detail }.to_string();
        let verifier = verify::Verifier::start(shared.clone(), recovered.checks, describe).map_err(io_err)?;
        let writer = Writer::start(writer::Context {
            dir: dir.clone(),
            shared: shared.clone(),
            bounds: Arc::new(Mutex::new(bounds)),
            active: recovered.active,
            next_seq: recovered.next_seq,
            disk_bytes: recovered.disk_bytes,
            segment_bytes: config.segment_bytes,
            disk_reserve: config.disk_reserve,
            rotate_first: recovered.repaired,
            rotation_postponed: false,
        })
        .map_err(io_err)?;
        let inner = Inner {
            shared,
            _verifier: verifier,
            writer,
            budget: config.byte_budget,
            disk_reserve: config.disk_reserve,
            sync_stall: config.sync_stall,
            dir: dir.clone(),
            free: Mutex::new(FreeSpace { read_at: None, free: u64::MAX, used_then: 0 }),
            dropped: Mutex::new(HashMap::new()),
            _lock: lock,
        };
        Ok(Journal { inner: Arc::new(inner) })
    }

    /// Journals `rows` of one request as one record and returns once it is on disk. Rows at or
    /// below the partition's applied checkpoint are dropped.
    pub async fn append_durable<R: RowSource>(
        &self,
        partition: &Partition,
        rows: &[R],
    ) -> Result<Appended, AppendError> {
        let rows: Vec<RowRef<'_>> = rows.iter().map(R::row).collect();
        let incoming: u64 =
            rows.iter().map(|r| (r.table.len() + r.key.len() + r.after.map_or(0, <[u8]>::len) + 24) as u64).sum();
        let applied = self.applied(partition).unwrap_or(Hlc::ZERO);
        let total = rows.len();
        let mut fresh: Vec<RowRef<'_>> = rows.into_iter().filter(|r| r.hlc > applied).collect();
        let outcome = Appended { journaled: fresh.len(), dropped_stale: total - fresh.len() };
        // Sorted by key, the last copy of a key winning (a stable sort keeps request order).
        fresh.sort_by(|a, b| record::key_order(a, b));
        fresh.reverse();
        fresh.dedup_by(|later, earlier| record::key_order(later, earlier).is_eq());
        fresh.reverse();
        // A record that can never be journaled is refused as such (413) before any check that
        // would only ask the sender to retry it.
        let bytes = record::log_rows_len(partition, &fresh) as u64;
        if bytes > u64::from(segment::MAX_PAYLOAD) {
            return Err(AppendError::TooLarge { bytes, limit: segment::MAX_PAYLOAD.into() });
        }
        self.check_budget(partition, incoming)?;
        if outcome.dropped_stale > 0 {
            *self.inner.dropped.lock().expect("dropped lock").entry(partition.clone()).or_default() +=
                outcome.dropped_stale as u64;
        }
        let Some(shape) = RunShape::of(&fresh) else { return Ok(outcome) };
        let payload = record::encode_log_rows(partition, &fresh);
        let ticket = self.inner.writer.enqueue(Item::Rows { partition: partition.clone(), payload, shape })?;
        self.inner.writer.wait(ticket).await?;
        Ok(outcome)
    }

    /// Records a resolved timestamp durably. It only moves forward; an older one is a no-op. It
    /// becomes visible to appliers with the rows journaled before it.
    pub async fn resolve_durable(&self, partition: &Partition, hlc: Hlc) -> Result<Resolved, AppendError> {
        self.refuse_if_damaged()?;
        self.check_bookkeeping_room()?;
        let floor = self.applied(partition).unwrap_or(Hlc::ZERO).max(self.resolved(partition).unwrap_or(Hlc::ZERO));
        let item = Item::Resolved { partition: partition.clone(), hlc };
        let outcome = self.inner.writer.enqueue_unless(item, |queue| {
            let accepted = queue.accepted.entry(partition.clone()).or_insert(Hlc::ZERO);
            let current = (*accepted).max(floor);
            if hlc <= current {
                return Some((current, queue.last_ticket));
            }
            *accepted = hlc;
            None
        })?;
        match outcome {
            Ok(ticket) => {
                self.inner.writer.wait(ticket).await?;
                Ok(Resolved::Advanced)
            }
            // A stale copy is answered only once the first copy is durable: it may still be
            // waiting for its write, and the sender takes the 200 as a promise never to send it again.
            Err((current, queued)) => {
                self.inner.writer.wait(queued).await?;
                Ok(Resolved::Stale { current })
            }
        }
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
        self.inner.shared.index().partitions.get(partition).and_then(|p| p.resolved)
    }

    /// The newest checkpoint known to be committed on the target (a cache of the target's own).
    pub fn applied(&self, partition: &Partition) -> Option<Hlc> {
        self.inner.shared.index().partitions.get(partition).and_then(|p| p.applied)
    }

    /// Every partition that ever received a row, a resolved timestamp, a checkpoint or a lease.
    pub fn partitions(&self) -> Vec<Partition> {
        self.inner.shared.index().partitions.keys().cloned().collect()
    }

    /// A receiver that changes whenever a resolved timestamp becomes visible.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.shared.changes.subscribe()
    }

    /// Waits until everything queued before this call is written, synced and readable (for tests
    /// and benchmarks).
    pub async fn wait_written(&self) {
        let _ = self.inner.writer.wait(self.inner.writer.last_ticket()).await;
    }

    /// Reads the next chunk of a window; see [`window`] for what a chunk holds.
    pub fn read_chunk(
        &self,
        partition: &Partition,
        cursor: &mut WindowCursor,
        limits: ChunkLimits,
    ) -> Result<Chunk, ReadError> {
        window::read_chunk(&self.inner.shared, partition, cursor, limits)
    }

    /// Waits until the background check of the closed segments is done; the journal's error if a
    /// segment failed it (the journal then refuses appends and reads, and [`Journal::health`]
    /// reports a fatal fault).
    pub fn verified(&self) -> Result<(), OpenError> {
        self.inner.shared.verification.wait_all().map_err(OpenError::FailedCheck)
    }

    /// Rows and bytes of `partition` above `after` still in the journal (for status), counted
    /// from the index without reading anything: a request that straddles `after` counts whole,
    /// and a row redelivered in a later request counts again.
    pub fn pending(&self, partition: &Partition, after: Hlc) -> (u64, u64) {
        self.inner.shared.index().pending(partition, after)
    }

    /// The newest lease epoch issued for `partition` (kept in the journal so epochs only grow).
    pub fn lease_epoch(&self, partition: &Partition) -> u64 {
        self.inner.shared.index().partitions.get(partition).map_or(0, |p| p.epoch)
    }

    /// Stores the newest lease epoch issued for `partition` (written with the next group, unless
    /// the disk is under half its reserve: the target still refuses a reused epoch).
    pub fn set_lease_epoch(&self, partition: &Partition, epoch: u64) -> Result<(), ReadError> {
        self.inner.shared.index().raise_epoch(partition, epoch);
        if self.check_bookkeeping_room().is_ok() {
            self.inner.writer.enqueue(Item::Epoch { partition: partition.clone(), epoch })?;
        }
        Ok(())
    }

    /// Records that everything up to `checkpoint` is committed on the target; the rows it covers
    /// are forgotten at once and their segments deleted once nothing else in them is waiting.
    /// Never past the partition's resolved timestamp: rows above it cannot have been applied,
    /// whoever says so. Not synced: if the process dies first, the rows come back and are
    /// skipped, because windows start after the target's own checkpoint.
    pub fn mark_applied(&self, partition: &Partition, checkpoint: Hlc) -> Result<(), ReadError> {
        let raised = {
            let mut index = self.inner.shared.index();
            let resolved = index.partitions.get(partition).and_then(|p| p.resolved);
            let Some(resolved) = resolved else { return Ok(()) };
            let applied = checkpoint.min(resolved);
            index.raise_applied(partition, applied).then_some(applied)
        };
        let Some(applied) = raised else { return Ok(()) };
        if self.check_bookkeeping_room().is_ok() {
            self.inner.writer.enqueue(Item::Applied { partition: partition.clone(), hlc: applied })?;
        } else {
            self.inner.writer.compact();
        }
        Ok(())
    }

    /// Write duration and group-commit size, for `/_/varz`.
    pub fn sync_metrics(&self) -> &crate::metrics::SyncMetrics {
        self.inner.writer.metrics()
    }

    /// Bytes of the journal's segment files.
    pub fn disk_bytes(&self) -> u64 {
        self.inner.writer.disk_bytes()
    }

    /// `Err` with the reason when the journal cannot make progress: a failed write or sync
    /// (fatal), a dead thread (fatal), a write or sync that has not returned for
    /// [`JournalConfig::sync_stall`] or a full disk (stalled: it goes on by itself when the disk
    /// does).
    pub fn health(&self) -> Result<(), Fault> {
        if self.inner.writer.is_poisoned() {
            return Err(Fault::Fatal(
                "journal sync failed; the journal is read-only until the process restarts".into(),
            ));
        }
        if let Some(busy) = self.inner.writer.busy_for().filter(|b| *b >= self.inner.sync_stall) {
            return Err(Fault::Stalled(format!(
                "a journal write or fsync has not returned for {:.1} s (a hung or failing disk?); nothing is acknowledged until it does",
                busy.as_secs_f64()
            )));
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
        self.refuse_if_damaged()?;
        let free = self.free_bytes();
        let needed = self.inner.disk_reserve.saturating_add(incoming);
        if free < needed {
            return Err(AppendError::DiskLow { free, needed, reserve: self.inner.disk_reserve });
        }
        let used = self.inner.writer.used_bytes();
        if used.saturating_add(incoming) <= self.inner.budget {
            return Ok(());
        }
        // The newest resolved timestamp accepted (durable, perhaps not yet visible).
        let accepted = self.inner.writer.accepted(partition);
        let resolved_work = match (accepted.max(self.resolved(partition)), self.applied(partition)) {
            (Some(resolved), applied) => applied.is_none_or(|a| resolved > a),
            (None, _) => false,
        };
        if resolved_work {
            return Err(AppendError::Full { used, budget: self.inner.budget, partition: partition.clone() });
        }
        Ok(())
    }

    /// Refuses appends once the journal is poisoned, a segment failed its check or a journal
    /// thread failed.
    fn refuse_if_damaged(&self) -> Result<(), AppendError> {
        if self.inner.writer.is_poisoned() {
            return Err(Poisoned.into());
        }
        if let Some(reason) = self.inner.shared.verification.failure() {
            return Err(AppendError::Damaged(reason));
        }
        match self.inner.shared.fault.lock().expect("fault lock").as_ref() {
            Some(Fault::Fatal(reason)) => Err(AppendError::Damaged(reason.clone())),
            _ => Ok(()),
        }
    }

    /// Bookkeeping (resolved timestamps, applied marks, epochs) may use the lower half of the
    /// disk reserve, which rows may not: the feed's resolved timestamps keep the appliers going,
    /// and their deletions give space back, while rows wait.
    fn check_bookkeeping_room(&self) -> Result<(), AppendError> {
        let free = self.free_bytes();
        let needed = self.inner.disk_reserve / 2;
        if free < needed {
            return Err(AppendError::DiskLow { free, needed, reserve: self.inner.disk_reserve });
        }
        Ok(())
    }

    /// Free bytes on the journal's disk: read at most every [`SIZE_REFRESH`], less what the
    /// journal wrote or queued since.
    fn free_bytes(&self) -> u64 {
        let used = self.inner.writer.used_bytes();
        let mut space = self.inner.free.lock().expect("free space lock");
        if space.read_at.is_none_or(|at| at.elapsed() > SIZE_REFRESH) {
            *space = FreeSpace {
                read_at: Some(Instant::now()),
                free: dirs::free_bytes(&self.inner.dir).unwrap_or(u64::MAX),
                used_then: used,
            };
        }
        space.free.saturating_sub(used.saturating_sub(space.used_then))
    }
}

/// The last reading of the journal's free disk space.
struct FreeSpace {
    read_at: Option<Instant>,
    free: u64,
    /// The journal's bytes (on disk and queued) at that reading.
    used_then: u64,
}

/// Takes the journal's lock file, refusing a journal another process has open.
fn lock(dir: &std::path::Path) -> Result<File, OpenError> {
    use std::os::fd::AsRawFd;
    let path = dir.join(LOCK_FILE);
    let file = dirs::private_file()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| OpenError::Io { dir: dir.to_owned(), source })?;
    // SAFETY: `flock` on a descriptor this function owns; it touches no memory.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(OpenError::Locked { dir: dir.to_owned() });
        }
        // ENOLCK on a file system without locks, for one: not another process.
        return Err(OpenError::Io { dir: dir.to_owned(), source: error });
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_journal_thread_is_a_fatal_fault_and_indexing_errors_a_passing_one() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&JournalConfig::scratch(dir.path())).unwrap();
        let shared = &journal.inner.shared;
        assert_eq!(journal.health(), Ok(()));
        shared.set_fault(Some(Fault::Stalled("a sync has not returned for 10 s".into())));
        assert_eq!(journal.health(), Err(Fault::Stalled("a sync has not returned for 10 s".into())));
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
    use crate::Row;

    #[test]
    fn a_dropped_journal_can_be_reopened_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&JournalConfig::scratch(dir.path())).unwrap();
        drop(journal);
        Journal::open(&JournalConfig::scratch(dir.path())).unwrap();
    }

    #[test]
    fn a_journal_with_data_can_be_reopened_at_once() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = Partition::new("db", "s");
        let row = |w| Row { hlc: Hlc::new(w, 0), table: "t".into(), key: b"[1]".to_vec(), after: None };
        for round in 0..3u64 {
            let journal = Journal::open(&JournalConfig::scratch(dir.path())).unwrap();
            rt.block_on(journal.append_durable(&p, &[row(10 + round)])).unwrap();
            rt.block_on(journal.resolve_durable(&p, Hlc::new(10 + round, 0))).unwrap();
            journal.mark_applied(&p, Hlc::new(5 + round, 0)).unwrap();
            rt.block_on(journal.wait_written());
        }
    }

    #[test]
    fn marking_an_untouched_partition_applied_does_not_keep_the_journal_open() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let row = Row { hlc: Hlc::new(20, 0), table: "t2".into(), key: b"[3]".to_vec(), after: Some(b"{}".to_vec()) };
        let journal = Journal::open(&JournalConfig::scratch(dir.path())).unwrap();
        rt.block_on(journal.append_durable(&Partition::new("db", "s0"), &[row])).unwrap();
        rt.block_on(journal.wait_written());
        journal.mark_applied(&Partition::new("db", "s1"), Hlc::ZERO).unwrap();
        journal.mark_applied(&Partition::new("db", "s0"), Hlc::ZERO).unwrap();
        rt.block_on(journal.wait_written());
        drop(journal);
        Journal::open(&JournalConfig::scratch(dir.path())).unwrap();
    }
}
