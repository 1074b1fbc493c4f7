//! The journal: durable appends, resolved timestamps, windowed reads and compaction over sled.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::watch;

use crate::commit::{GroupCommit, Poisoned};
use crate::hlc::Hlc;
use crate::record::{self, Partition, RecordError, Row};

/// Default byte budget of the journal on disk: past it ingest answers 503 until appliers catch up.
pub const DEFAULT_BYTE_BUDGET: u64 = 8 << 30;
/// sled's page cache; the journal is written once and read once, so a small cache suffices.
const CACHE_BYTES: u64 = 64 << 20;
/// Large enough that ordinary tree pages stay inside the log instead of sled's separate blob files.
const SEGMENT_BYTES: usize = 8 << 20;
/// How stale the cached on-disk size may be when the budget is checked.
const SIZE_REFRESH: Duration = Duration::from_millis(250);
/// Rows deleted per sled batch when compacting.
const COMPACT_BATCH: usize = 10_000;

#[derive(Clone, Debug)]
pub struct JournalConfig {
    pub dir: PathBuf,
    pub byte_budget: u64,
}

impl JournalConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        JournalConfig { dir: dir.into(), byte_budget: DEFAULT_BYTE_BUDGET }
    }
}

#[derive(Debug, Error)]
pub enum OpenError {
    #[error("cannot open journal at {dir}: {source} (is another wharf process using it?)")]
    Sled { dir: PathBuf, source: sled::Error },
    #[error("cannot prepare journal at {dir}: {source}")]
    Io { dir: PathBuf, source: std::io::Error },
}

#[derive(Debug, Error)]
pub enum AppendError {
    #[error("journal is over its byte budget ({used} of {budget} bytes); appliers must catch up")]
    Full { used: u64, budget: u64 },
    #[error(transparent)]
    Poisoned(#[from] Poisoned),
    #[error("journal write failed: {0}")]
    Storage(#[from] sled::Error),
}

impl AppendError {
    /// Whether the same request may succeed later (503) rather than never (500).
    pub fn is_transient(&self) -> bool {
        matches!(self, AppendError::Full { .. })
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
    /// At or below the current resolved timestamp: a no-op.
    Stale {
        current: Hlc,
    },
}

/// A position inside a window `(after, upto]`, moved forward by [`Journal::read_chunk`].
#[derive(Clone, Debug)]
pub struct WindowCursor {
    next_key: Vec<u8>,
    end_key: Vec<u8>,
    done: bool,
}

impl WindowCursor {
    pub fn new(after: Hlc, upto: Hlc) -> Self {
        WindowCursor { next_key: record::key_after(after), end_key: record::key_after(upto), done: after >= upto }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }
}

/// The durable journal. Cheap to clone; all clones share one sled database.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    meta: sled::Tree,
    commit: GroupCommit,
    budget: u64,
    size: AtomicU64,
    size_checked: Mutex<Option<Instant>>,
    trees: Mutex<HashMap<Partition, sled::Tree>>,
    changes: watch::Sender<u64>,
    compactor: Compactor,
}

/// The compaction thread; dropping it waits for the current compaction, so the journal can be
/// reopened right after it is dropped.
struct Compactor {
    tx: Option<std::sync::mpsc::Sender<(sled::Tree, Hlc)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Compactor {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

const RESOLVED: &[u8] = b"resolved/";
const APPLIED: &[u8] = b"applied/";

impl Journal {
    pub fn open(config: &JournalConfig) -> Result<Journal, OpenError> {
        let dir = &config.dir;
        std::fs::create_dir_all(dir).map_err(|source| OpenError::Io { dir: dir.clone(), source })?;
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .segment_size(SEGMENT_BYTES)
            .open()
            .map_err(|source| OpenError::Sled { dir: dir.clone(), source })?;
        let meta = db.open_tree("meta").map_err(|source| OpenError::Sled { dir: dir.clone(), source })?;
        let commit =
            GroupCommit::start(db.clone(), dir).map_err(|source| OpenError::Io { dir: dir.clone(), source })?;
        let size = db.size_on_disk().unwrap_or(0);
        let (changes, _) = watch::channel(0);
        let compactor = start_compactor().map_err(|source| OpenError::Io { dir: dir.clone(), source })?;
        let inner = Inner {
            db,
            meta,
            commit,
            budget: config.byte_budget,
            size: AtomicU64::new(size),
            size_checked: Mutex::new(None),
            trees: Mutex::new(HashMap::new()),
            changes,
            compactor,
        };
        Ok(Journal { inner: Arc::new(inner) })
    }

    pub fn dir_is_open(dir: &Path) -> bool {
        dir.join("db").exists()
    }

    /// Journals `rows` of one request as one atomic batch and returns once it is on disk.
    /// Rows at or below the partition's applied checkpoint are dropped.
    pub async fn append_durable(&self, partition: &Partition, rows: &[Row]) -> Result<Appended, AppendError> {
        let incoming: u64 =
            rows.iter().map(|r| (r.table.len() + r.key.len() + r.after.as_ref().map_or(0, Vec::len) + 16) as u64).sum();
        self.check_budget(incoming)?;
        let applied = self.applied(partition).unwrap_or(Hlc::ZERO);
        let tree = self.tree(partition)?;
        let mut batch = sled::Batch::default();
        let mut outcome = Appended::default();
        for row in rows {
            if row.hlc <= applied {
                outcome.dropped_stale += 1;
                continue;
            }
            batch.insert(record::encode_key(row), record::encode_value(row));
            outcome.journaled += 1;
        }
        if outcome.journaled > 0 {
            tree.apply_batch(batch)?;
            self.inner.commit.wait_durable().await?;
        }
        Ok(outcome)
    }

    /// Records a resolved timestamp durably. It only moves forward; an older one is a no-op.
    pub async fn resolve_durable(&self, partition: &Partition, hlc: Hlc) -> Result<Resolved, AppendError> {
        if self.inner.commit.is_poisoned() {
            return Err(Poisoned.into());
        }
        self.tree(partition)?;
        let key = meta_key(RESOLVED, partition);
        let floor = self.applied(partition).unwrap_or(Hlc::ZERO);
        let mut current = self.inner.meta.get(&key)?;
        loop {
            let known = current.as_deref().and_then(Hlc::from_bytes).unwrap_or(Hlc::ZERO).max(floor);
            if hlc <= known {
                return Ok(Resolved::Stale { current: known });
            }
            match self.inner.meta.compare_and_swap(&key, current.clone(), Some(&hlc.to_bytes()[..]))? {
                Ok(()) => break,
                Err(conflict) => current = conflict.current,
            }
        }
        self.inner.commit.wait_durable().await?;
        self.inner.changes.send_modify(|n| *n += 1);
        Ok(Resolved::Advanced)
    }

    pub fn resolved(&self, partition: &Partition) -> Option<Hlc> {
        self.meta_hlc(RESOLVED, partition)
    }

    /// The newest checkpoint known to be committed on the target (a cache of the target's own).
    pub fn applied(&self, partition: &Partition) -> Option<Hlc> {
        self.meta_hlc(APPLIED, partition)
    }

    /// Every partition that ever received a row or a resolved timestamp.
    pub fn partitions(&self) -> Vec<Partition> {
        let mut out: Vec<Partition> =
            self.inner.db.tree_names().iter().filter_map(|n| Partition::from_tree_name(n)).collect();
        out.sort();
        out
    }

    /// A receiver that changes whenever a resolved timestamp advances.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// Reads up to about `max_rows` rows of a window in (HLC, table, key) order. A chunk never
    /// ends inside one timestamp, so the rows of one source transaction stay together.
    pub fn read_chunk(
        &self,
        partition: &Partition,
        cursor: &mut WindowCursor,
        max_rows: usize,
    ) -> Result<Vec<Row>, ReadError> {
        if cursor.done {
            return Ok(Vec::new());
        }
        let tree = self.tree(partition)?;
        let mut rows: Vec<Row> = Vec::new();
        for item in tree.range(cursor.next_key.clone()..cursor.end_key.clone()) {
            let (key, value) = item?;
            let row = record::decode(&key, &value)
                .map_err(|source| ReadError::Damaged { partition: partition.clone(), source })?;
            if rows.len() >= max_rows && rows.last().is_some_and(|last| last.hlc != row.hlc) {
                cursor.next_key = key.to_vec();
                return Ok(rows);
            }
            rows.push(row);
        }
        cursor.done = true;
        Ok(rows)
    }

    /// Records that everything up to `checkpoint` is committed on the target; a background thread
    /// then deletes those entries. Not synced: if the process dies first, the entries come back and
    /// are skipped, because windows start after the target's own checkpoint.
    pub fn mark_applied(&self, partition: &Partition, checkpoint: Hlc) -> Result<(), ReadError> {
        let key = meta_key(APPLIED, partition);
        let previous = self.inner.meta.fetch_and_update(&key, |old| {
            let old = old.and_then(Hlc::from_bytes).unwrap_or(Hlc::ZERO);
            Some(old.max(checkpoint).to_bytes().to_vec())
        })?;
        if previous.as_deref().and_then(Hlc::from_bytes).is_none_or(|p| p < checkpoint) {
            let tree = self.tree(partition)?;
            if let Some(tx) = &self.inner.compactor.tx {
                let _ = tx.send((tree, checkpoint));
            }
        }
        Ok(())
    }

    /// Deletes a partition's entries up to `checkpoint` now, in the caller's thread.
    pub fn compact_now(&self, partition: &Partition, checkpoint: Hlc) -> Result<usize, ReadError> {
        Ok(compact(&self.tree(partition)?, checkpoint)?)
    }

    /// Approximate bytes on disk, refreshed at most every [`SIZE_REFRESH`].
    pub fn disk_bytes(&self) -> u64 {
        self.inner.size.load(Ordering::Relaxed)
    }

    pub fn is_healthy(&self) -> bool {
        !self.inner.commit.is_poisoned()
    }

    /// Refuses `incoming` more bytes when they would take the journal past its budget.
    fn check_budget(&self, incoming: u64) -> Result<(), AppendError> {
        if self.inner.commit.is_poisoned() {
            return Err(Poisoned.into());
        }
        let stale = self.inner.size_checked.lock().expect("size lock").is_none_or(|at| at.elapsed() > SIZE_REFRESH);
        if stale {
            *self.inner.size_checked.lock().expect("size lock") = Some(Instant::now());
            if let Ok(size) = self.inner.db.size_on_disk() {
                self.inner.size.store(size, Ordering::Relaxed);
            }
        }
        let used = self.disk_bytes();
        if used.saturating_add(incoming) > self.inner.budget {
            return Err(AppendError::Full { used, budget: self.inner.budget });
        }
        Ok(())
    }

    fn tree(&self, partition: &Partition) -> Result<sled::Tree, sled::Error> {
        let mut trees = self.inner.trees.lock().expect("tree map lock");
        if let Some(tree) = trees.get(partition) {
            return Ok(tree.clone());
        }
        let tree = self.inner.db.open_tree(partition.tree_name())?;
        trees.insert(partition.clone(), tree.clone());
        Ok(tree)
    }

    fn meta_hlc(&self, prefix: &[u8], partition: &Partition) -> Option<Hlc> {
        self.inner.meta.get(meta_key(prefix, partition)).ok().flatten().and_then(|v| Hlc::from_bytes(&v))
    }
}

/// Deletes a tree's entries at or below `checkpoint`, a batch at a time.
fn compact(tree: &sled::Tree, checkpoint: Hlc) -> Result<usize, sled::Error> {
    let end = record::key_after(checkpoint);
    let mut deleted = 0;
    loop {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for key in tree.range(..end.clone()).keys().take(COMPACT_BATCH) {
            batch.remove(key?);
            n += 1;
        }
        if n == 0 {
            return Ok(deleted);
        }
        tree.apply_batch(batch)?;
        deleted += n;
    }
}

/// Runs compactions off the apply path until the journal is dropped.
fn start_compactor() -> std::io::Result<Compactor> {
    let (tx, rx) = std::sync::mpsc::channel::<(sled::Tree, Hlc)>();
    let thread = std::thread::Builder::new().name("wharf-journal-compact".into()).spawn(move || {
        while let Ok((tree, checkpoint)) = rx.recv() {
            if let Err(error) = compact(&tree, checkpoint) {
                tracing::warn!(%error, "journal compaction failed; it is retried after the next apply");
            }
        }
    })?;
    Ok(Compactor { tx: Some(tx), thread: Some(thread) })
}

fn meta_key(prefix: &[u8], partition: &Partition) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(&partition.tree_name());
    key
}
