//! The indexer: moves logged requests into their partition trees and publishes resolved
//! timestamps, in log order.
//!
//! Order is the safety argument: CockroachDB sends a resolved timestamp R only after every row at
//! or below R was acknowledged, an acknowledged row's log record precedes R's record, and the
//! indexer publishes R only after it indexed everything before it. A log record is deleted only
//! after a sync that started after its rows were indexed has finished, so a crash never loses an
//! indexed row whose log record is gone; records indexed twice after a crash overwrite themselves.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{APPLIED, INDEXED, RESOLVED, Shared};
use crate::hlc::Hlc;
use crate::record::{self, LogRecord};

/// Log records indexed per round before pending deletions are looked at again.
const RECORDS_PER_ROUND: usize = 256;
/// Bytes of log records after which a round ends early. sled buffers writes in memory until its
/// log catches up; the indexer waits for the sync of one round before it starts the one after
/// next, so at most about two rounds of index writes are buffered (measured: without the wait,
/// 128 bodies of 8 MiB held over 400 MiB of sled write buffers).
const BYTES_PER_ROUND: usize = 16 << 20;
/// How long the indexer sleeps without a wake-up (deletions still pending are retried then).
const IDLE_WAIT: Duration = Duration::from_millis(100);

pub(super) struct Indexer {
    wake: SyncSender<()>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Indexer {
    pub(super) fn start(shared: Arc<Shared>) -> std::io::Result<Indexer> {
        let (wake, rx) = sync_channel(1);
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wharf-journal-index".into())
            .spawn(move || super::supervised(&shared, "indexer", || run(&shared, &rx, &thread_stop)))?;
        Ok(Indexer { wake, stop, thread: Some(thread) })
    }

    pub(super) fn notify(&self) {
        match self.wake.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }
}

impl Drop for Indexer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.notify();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Nice value of the indexer thread: acknowledging requests comes first; the indexer catches up
/// when ingest pauses, and the journal budget turns a lasting backlog into 503s.
const INDEXER_NICE: libc::c_int = 19;

fn lower_priority() {
    // SAFETY: plain system calls on the calling thread's own id; no memory is shared.
    let result = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, INDEXER_NICE)
    };
    if result != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not lower the indexer's priority");
    }
}

fn run(shared: &Shared, wake: &Receiver<()>, stop: &AtomicBool) {
    lower_priority();
    let mut indexed_upto = 0u64;
    // (sync epoch that makes the index durable, last log sequence it covers)
    let mut pending: Vec<(u64, u64)> = Vec::new();
    // The sync requested after the previous round: waited for before the next round starts.
    let mut previous_sync = 0u64;
    loop {
        let mut failed = false;
        if shared.commit.wait_epoch_blocking(previous_sync).is_err() {
            // The journal is poisoned; the sync thread reported it, nothing more can be written.
            return;
        }
        match index_round(shared, indexed_upto) {
            Ok(Some(last)) => {
                shared.set_fault(None);
                indexed_upto = last;
                let epoch = shared.commit.request();
                pending.push((epoch, last));
                previous_sync = pending.iter().rev().nth(1).map_or(0, |(e, _)| *e);
                shared.indexed.send_replace(last);
            }
            Ok(None) => {}
            Err(error) => {
                tracing::error!(%error, "journal indexing failed; retrying");
                shared.set_fault(Some(super::Fault::Stalled(format!("journal indexing failed (retrying): {error}"))));
                failed = true;
            }
        }
        crate::commit::release_sled_garbage();
        if let Err(error) = delete_durable(shared, &mut pending) {
            tracing::error!(%error, "deleting indexed log records failed; retrying");
        }
        let caught_up = shared.log.range(next_key(indexed_upto)..).next().is_none();
        // Records not indexed yet stay in the log and are indexed when the journal is next opened.
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if caught_up || failed {
            let _ = wake.recv_timeout(IDLE_WAIT);
        }
    }
}

fn next_key(seq: u64) -> [u8; 8] {
    (seq + 1).to_be_bytes()
}

/// Indexes up to [`RECORDS_PER_ROUND`] log records after `after`; returns the last sequence done.
fn index_round(shared: &Shared, after: u64) -> Result<Option<u64>, String> {
    let mut last = None;
    let mut published = false;
    let mut bytes = 0usize;
    for item in super::parts::joined(shared.log.range(next_key(after)..)).take(RECORDS_PER_ROUND) {
        let (key, value) = item.map_err(|e| e.to_string())?;
        bytes += value.len();
        let seq = u64::from_be_bytes(key.as_ref().try_into().map_err(|_| "log key is not 8 bytes".to_owned())?);
        match record::decode_log(&value).map_err(|e| format!("log record {seq}: {e}"))? {
            LogRecord::Rows { partition, entries } => {
                let applied = shared.meta_hlc(APPLIED, &partition).unwrap_or(Hlc::ZERO);
                let mut batch = sled::Batch::default();
                for &(k, v) in &entries {
                    if Hlc::from_bytes(k).is_some_and(|h| h > applied) {
                        super::parts::insert(&mut batch, k, v);
                    }
                }
                let tree = shared.tree(&partition).map_err(|e| e.to_string())?;
                tree.apply_batch(batch).map_err(|e| e.to_string())?;
                touch(&tree, &entries).map_err(|e| e.to_string())?;
            }
            LogRecord::Resolved { partition, hlc } => {
                shared.tree(&partition).map_err(|e| e.to_string())?;
                shared.raise_meta(RESOLVED, &partition, hlc).map_err(|e| e.to_string())?;
                published = true;
            }
        }
        last = Some(seq);
        if bytes >= BYTES_PER_ROUND {
            break;
        }
    }
    if let Some(last) = last {
        // Kept so sequence numbers go on growing once the indexed records leave the log; it is
        // durable in the same sync that lets them be deleted.
        shared.meta.insert(INDEXED, &last.to_be_bytes()).map_err(|e| e.to_string())?;
    }
    if published {
        shared.changes.send_modify(|n| *n += 1);
    }
    Ok(last)
}

/// Reads back the key range just written. sled enters a page in its cache's LRU only when it is
/// read, so pages that were only written are never paged out and its `cache_capacity` does not
/// bound them: measured, a 1,000,000-row scan peaked at 1,709 MiB without this and 366 MiB with
/// it. Reading the range lets sled page the written leaves out once the cache is full.
fn touch(tree: &sled::Tree, entries: &[(&[u8], &[u8])]) -> Result<(), sled::Error> {
    let first = entries.iter().map(|(k, _)| *k).min();
    let last = entries.iter().map(|(k, _)| *k).max();
    if let (Some(first), Some(last)) = (first, last) {
        for item in tree.range(first..=last) {
            item?;
        }
    }
    Ok(())
}

/// Deletes log records whose index entries a finished sync made durable.
fn delete_durable(shared: &Shared, pending: &mut Vec<(u64, u64)>) -> Result<(), sled::Error> {
    let durable = shared.commit.durable_epoch();
    let Some(upto) = pending.iter().filter(|(epoch, _)| *epoch <= durable).map(|(_, seq)| *seq).max() else {
        if !pending.is_empty() {
            shared.commit.request();
        }
        return Ok(());
    };
    pending.retain(|(epoch, _)| *epoch > durable);
    let mut batch = sled::Batch::default();
    for key in shared.log.range(..next_key(upto)).keys() {
        batch.remove(key?);
    }
    shared.log.apply_batch(batch)
}
