//! The durable high-water mark: the highest log sequence number acknowledged as durable, kept in a
//! file of its own (`wharf-durable-seq`) outside sled, so opening a journal can tell that sled lost
//! acknowledged records (a truncated or damaged `db` file recovers silently to an older state).
//!
//! It is written by a thread of its own after the fact, never on the acknowledgement path: the
//! value on disk can lag behind (a weaker check after a crash, never a false alarm), because a
//! sequence number is only observed after the sync that made its record durable.
//!
//! File layout (16 bytes): `WHWM`, a format version `u32` (1), the sequence number `u64`, all
//! big-endian, rewritten in place.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use super::{Fault, Shared};

pub(super) const FILE_NAME: &str = "wharf-durable-seq";
const MAGIC: &[u8; 4] = b"WHWM";
const VERSION: u32 = 1;

/// Reads the mark; 0 when the file does not exist (a new journal, or one from before the mark).
pub(super) fn read(dir: &Path) -> Result<u64, String> {
    let path = dir.join(FILE_NAME);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    if bytes.len() != 16 || &bytes[..4] != MAGIC || bytes[4..8] != VERSION.to_be_bytes() {
        return Err(format!("{} is not a wharf high-water file (damaged?)", path.display()));
    }
    Ok(u64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes")))
}

#[derive(Default)]
struct State {
    observed: u64,
    stop: bool,
}

/// The writer thread; dropping it writes the last value observed and stops.
pub(super) struct HighWater {
    state: Arc<(Mutex<State>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl HighWater {
    pub(super) fn start(dir: &Path, initial: u64, shared: Arc<Shared>) -> std::io::Result<HighWater> {
        let path = dir.join(FILE_NAME);
        let file = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path)?;
        write(&file, initial)?;
        // Covers a crash right after the file was created: its directory entry must survive.
        File::open(dir)?.sync_all()?;
        let state = Arc::new((Mutex::new(State { observed: initial, stop: false }), Condvar::new()));
        let thread_state = state.clone();
        let thread = std::thread::Builder::new().name("wharf-journal-hwm".into()).spawn(move || {
            super::supervised(&shared, "high-water", || writer(&file, &path, initial, &thread_state, &shared));
        })?;
        Ok(HighWater { state, thread: Some(thread) })
    }

    /// Notes that every record up to `seq` is durable.
    pub(super) fn observe(&self, seq: u64) {
        let (lock, wake) = &*self.state;
        let mut state = lock.lock().expect("high-water lock");
        if seq > state.observed {
            state.observed = seq;
            wake.notify_one();
        }
    }
}

impl Drop for HighWater {
    fn drop(&mut self) {
        let (lock, wake) = &*self.state;
        lock.lock().expect("high-water lock").stop = true;
        wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn writer(file: &File, path: &Path, mut written: u64, state: &(Mutex<State>, Condvar), shared: &Shared) {
    let (lock, wake) = state;
    loop {
        let (value, stop) = {
            let mut s = lock.lock().expect("high-water lock");
            while s.observed == written && !s.stop {
                s = wake.wait(s).expect("high-water lock");
            }
            (s.observed, s.stop)
        };
        if value != written {
            if let Err(error) = write(file, value) {
                // Like a failed journal fsync: the mark can no longer be trusted to be on disk.
                let reason = format!("cannot write {}: {error}; restart the process", path.display());
                tracing::error!("{reason}");
                shared.set_fault(Some(Fault::Fatal(reason)));
                return;
            }
            written = value;
        }
        if stop {
            return;
        }
    }
}

fn write(file: &File, seq: u64) -> std::io::Result<()> {
    let mut bytes = [0u8; 16];
    bytes[..4].copy_from_slice(MAGIC);
    bytes[4..8].copy_from_slice(&VERSION.to_be_bytes());
    bytes[8..].copy_from_slice(&seq.to_be_bytes());
    file.write_all_at(&bytes, 0)?;
    // Covers a power loss after the write: the mark must not move back below what was acknowledged.
    file.sync_data()
}
