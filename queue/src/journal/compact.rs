//! Compaction: deleting a partition's entries once the target committed them, off the apply path.

use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::hlc::Hlc;
use crate::record;

/// Rows deleted per sled batch.
const COMPACT_BATCH: usize = 10_000;

/// The compaction thread; dropping it waits for the current compaction, so the journal can be
/// reopened right after it is dropped.
pub(super) struct Compactor {
    tx: Option<mpsc::Sender<(sled::Tree, Hlc)>>,
    thread: Option<JoinHandle<()>>,
}

impl Compactor {
    pub(super) fn start() -> std::io::Result<Compactor> {
        let (tx, rx) = mpsc::channel::<(sled::Tree, Hlc)>();
        let thread = std::thread::Builder::new().name("wharf-journal-compact".into()).spawn(move || {
            while let Ok((tree, checkpoint)) = rx.recv() {
                if let Err(error) = compact(&tree, checkpoint) {
                    tracing::warn!(%error, "journal compaction failed; it is retried after the next apply");
                }
            }
        })?;
        Ok(Compactor { tx: Some(tx), thread: Some(thread) })
    }

    /// Queues deletion of `tree`'s entries at or below `checkpoint`.
    pub(super) fn compact(&self, tree: sled::Tree, checkpoint: Hlc) {
        if let Some(tx) = &self.tx {
            let _ = tx.send((tree, checkpoint));
        }
    }
}

impl Drop for Compactor {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

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
