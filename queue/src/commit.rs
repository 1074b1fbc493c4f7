//! Group commit: one flush + fsync shared by every append that arrived while the previous one ran.
//!
//! A writer first applies its sled batch (written, not durable), then asks for the next sync epoch
//! and waits until that epoch is durable. A dedicated thread runs syncs back to back while anyone
//! waits: `sled::Db::flush` writes sled's buffers (it ends in `sync_file_range`, which neither
//! flushes the device cache nor file metadata), then we `fdatasync` the files that hold the data.
//! A sync that starts after a writer's request covers that writer's batch, because the batch was in
//! sled's buffers before the request was made.
//!
//! A failed flush or fsync poisons the journal for good: after a failed fsync the kernel may have
//! dropped the dirty pages, so retrying could report success for data that is gone.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use tokio::sync::watch;

use crate::metrics::SyncMetrics;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Durable {
    epoch: u64,
    poisoned: bool,
}

#[derive(Default)]
struct State {
    /// The epoch the next sync will carry.
    next: u64,
    /// Highest epoch a writer waits for.
    requested: u64,
    /// Requests since the last sync began (the next sync's group size).
    waiting: u64,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Notified (under `state`) after every sync, for threads that wait without a runtime.
    synced: Condvar,
    durable: watch::Sender<Durable>,
    metrics: SyncMetrics,
}

/// Runs syncs for one sled database; dropping it stops the thread after a last sync.
pub struct GroupCommit {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// The sync failed once; the journal accepts nothing more.
#[derive(Debug, thiserror::Error)]
#[error("journal sync failed earlier; the journal is read-only until the process restarts")]
pub struct Poisoned;

impl GroupCommit {
    pub fn start(db: sled::Db, dir: &Path) -> std::io::Result<GroupCommit> {
        let files = SyncedFiles::open(dir)?;
        let (durable, _) = watch::channel(Durable { epoch: 0, poisoned: false });
        let shared = Arc::new(Shared {
            state: Mutex::new(State { next: 1, requested: 0, waiting: 0, stop: false }),
            wake: Condvar::new(),
            synced: Condvar::new(),
            durable,
            metrics: SyncMetrics::default(),
        });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new().name("wharf-journal-sync".into()).spawn(move || {
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                sync_loop(&thread_shared, &db, files);
            }));
            if ran.is_err() {
                // Without this every writer would wait for its sync forever.
                tracing::error!("journal sync thread panicked; refusing all further writes (restart the process)");
                let epoch = thread_shared.durable.borrow().epoch;
                thread_shared.durable.send_replace(Durable { epoch, poisoned: true });
                notify_synced(&thread_shared);
            }
        })?;
        Ok(GroupCommit { shared, thread: Some(thread) })
    }

    /// Asks for a sync that covers everything written before this call; returns its epoch.
    pub fn request(&self) -> u64 {
        let target = {
            let mut state = self.shared.state.lock().expect("sync state lock");
            state.requested = state.next;
            state.waiting += 1;
            state.next
        };
        self.shared.wake.notify_one();
        target
    }

    /// The newest epoch known to be on disk.
    pub fn durable_epoch(&self) -> u64 {
        self.shared.durable.borrow().epoch
    }

    /// Waits until everything written before this call is on disk.
    pub async fn wait_durable(&self) -> Result<(), Poisoned> {
        let target = self.request();
        let mut rx = self.shared.durable.subscribe();
        let seen = rx.wait_for(|d| d.poisoned || d.epoch >= target).await.map_err(|_| Poisoned)?;
        if seen.poisoned { Err(Poisoned) } else { Ok(()) }
    }

    /// Blocks the calling thread until `epoch` is on disk (a thread outside the runtime).
    pub fn wait_epoch_blocking(&self, epoch: u64) -> Result<(), Poisoned> {
        let mut state = self.shared.state.lock().expect("sync state lock");
        loop {
            let durable = *self.shared.durable.borrow();
            if durable.poisoned {
                return Err(Poisoned);
            }
            if durable.epoch >= epoch || state.stop {
                return Ok(());
            }
            state = self.shared.synced.wait(state).expect("sync state lock");
        }
    }

    /// Sync duration and group size, for `/_/varz`.
    pub fn metrics(&self) -> &SyncMetrics {
        &self.shared.metrics
    }

    pub fn is_poisoned(&self) -> bool {
        self.shared.durable.borrow().poisoned
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.shared.state.lock().expect("sync state lock").stop = true;
        self.shared.wake.notify_one();
        self.shared.synced.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn sync_loop(shared: &Shared, db: &sled::Db, mut files: SyncedFiles) {
    loop {
        let (epoch, group) = {
            let mut state = shared.state.lock().expect("sync state lock");
            while state.requested < state.next && !state.stop {
                state = shared.wake.wait(state).expect("sync state lock");
            }
            if state.stop && state.requested < state.next {
                return;
            }
            let epoch = state.next;
            state.next += 1;
            (epoch, std::mem::take(&mut state.waiting))
        };
        let started = std::time::Instant::now();
        let result = db.flush().map_err(std::io::Error::other).and_then(|_| files.sync());
        shared.metrics.duration.observe(started.elapsed().as_secs_f64());
        shared.metrics.group_size.observe(group as f64);
        release_sled_garbage();
        match result {
            Ok(()) => {
                shared.durable.send_replace(Durable { epoch, poisoned: false });
                notify_synced(shared);
            }
            Err(error) => {
                tracing::error!(%error, "journal fsync failed; refusing all further writes (restart to recover from the last durable state)");
                shared.durable.send_replace(Durable { epoch, poisoned: true });
                notify_synced(shared);
                return;
            }
        }
    }
}

/// Hands this thread's deferred frees to sled's epoch collector.
///
/// `Db::flush` seals sled's 8 MiB write buffer and defers its free to the calling thread's local
/// garbage bag, which is only handed over once it holds 64 items: a thread that flushes often and
/// does little else kept up to 64 buffers (512 MiB) alive. Measured with heaptrack: 500 MiB of
/// sled write buffers at peak under 64 senders of 8 MiB bodies.
pub(crate) fn release_sled_garbage() {
    crossbeam_epoch::pin().flush();
}

fn notify_synced(shared: &Shared) {
    let _state = shared.state.lock().expect("sync state lock");
    shared.synced.notify_all();
}

/// The files that hold sled's data: its log `db` and large values under `blobs/`.
struct SyncedFiles {
    db_file: File,
    blob_dir: PathBuf,
    /// Size of each blob file at its last fsync. sled names a blob by the log sequence number it
    /// reserved and writes it without syncing; writers run concurrently, so a blob may appear with
    /// a lower number than one already synced, or still be growing while a sync lists it. A file
    /// is synced again whenever its size differs from the size it had when last synced.
    synced_blobs: HashMap<OsString, u64>,
}

impl SyncedFiles {
    fn open(dir: &Path) -> std::io::Result<SyncedFiles> {
        let db_file = File::open(dir.join("db"))?;
        // sled writes its `conf` file without syncing it; an empty one after a power cut makes it
        // fall back to the caller's configuration with a warning.
        File::open(dir.join("conf"))?.sync_all()?;
        // Covers a crash right after the journal was created: without it the directory entries
        // of `db` and `blobs/` may not survive, and the whole journal with them.
        File::open(dir)?.sync_all()?;
        Ok(SyncedFiles { db_file, blob_dir: dir.join("blobs"), synced_blobs: HashMap::new() })
    }

    fn sync(&mut self) -> std::io::Result<()> {
        // Covers a power loss after sled's write: pages in the page cache or device cache are lost.
        self.db_file.sync_data()?;
        let mut seen = HashMap::with_capacity(self.synced_blobs.len());
        let mut new_names = false;
        for entry in std::fs::read_dir(&self.blob_dir)? {
            let entry = entry?;
            let name = entry.file_name();
            // Covers a crash after sled wrote a large value to its own file, which it never fsyncs.
            let file = match File::open(entry.path()) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let size = file.metadata()?.len();
            match self.synced_blobs.get(&name) {
                Some(synced) if *synced == size => {}
                previous => {
                    new_names |= previous.is_none();
                    file.sync_data()?;
                }
            }
            seen.insert(name, size);
        }
        if new_names {
            // Covers a crash after a blob file was created: its directory entry must be durable too.
            File::open(&self.blob_dir)?.sync_all()?;
        }
        self.synced_blobs = seen;
        Ok(())
    }
}
