//! The journal's writer thread: group commit into segment files.
//!
//! Appends queue their encoded records and wait. The thread takes everything queued, gives each
//! record the next sequence number, writes them all with one `write` to the segment being written
//! and makes them durable with one `fdatasync`; only then does it publish them in the index (a
//! resolved timestamp becomes visible after every row logged before it, because records are
//! published in order) and wake their writers. A segment that has grown past its size is closed
//! at a group boundary: the next one starts with the partitions' marks (resolved, applied, epoch),
//! so older segments can be deleted once their rows are applied, oldest first.
//!
//! A failed write or fsync poisons the journal for good: after a failed fsync the kernel may have
//! dropped the dirty pages, so retrying could report success for data that is gone.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{IoSlice, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use tokio::sync::watch;

use super::high_water::HighWater;
use super::index::{Run, RunShape, Segment};
use super::summary::{self, Effect};
use super::{Shared, segment};
use crate::hlc::Hlc;
use crate::metrics::SyncMetrics;
use crate::record::{self, Partition};

/// One record waiting to be written.
pub(super) enum Item {
    Rows { partition: Partition, payload: Vec<u8>, shape: RunShape },
    Resolved { partition: Partition, hlc: Hlc },
    Applied { partition: Partition, hlc: Hlc },
    Epoch { partition: Partition, epoch: u64 },
}

impl Item {
    fn payload(&self) -> std::borrow::Cow<'_, [u8]> {
        match self {
            Item::Rows { payload, .. } => payload.as_slice().into(),
            Item::Resolved { partition, hlc } => record::encode_log_resolved(partition, *hlc).into(),
            Item::Applied { partition, hlc } => record::encode_log_applied(partition, *hlc).into(),
            Item::Epoch { partition, epoch } => record::encode_log_epoch(partition, *epoch).into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Durable {
    /// Every item queued with a ticket up to this one is written and published.
    pub ticket: u64,
    pub poisoned: bool,
}

pub(super) struct Queue {
    items: Vec<Item>,
    /// The ticket of the last item queued.
    pub last_ticket: u64,
    /// Bytes of row payloads queued and not yet written (they count against the budget).
    queued_bytes: u64,
    /// The newest resolved timestamp queued per partition (written or not).
    pub accepted: HashMap<Partition, Hlc>,
    stop: bool,
}

/// The segment being written.
pub(super) struct Active {
    pub first_seq: u64,
    pub file: File,
    pub len: u64,
    /// Its records so far, for the summary written when it is closed.
    pub summary: summary::Builder,
}

struct State {
    queue: Mutex<Queue>,
    wake: Condvar,
    durable: watch::Sender<Durable>,
    metrics: SyncMetrics,
    /// Bytes of all segment files.
    disk_bytes: AtomicU64,
}

/// Handle to the writer thread; dropping it writes what is queued and stops the thread.
pub(super) struct Writer {
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

/// The sync failed once; the journal accepts nothing more.
#[derive(Debug, thiserror::Error)]
#[error("journal sync failed earlier; the journal is read-only until the process restarts")]
pub struct Poisoned;

/// What the thread needs besides its queue.
pub(super) struct Context {
    pub dir: PathBuf,
    pub shared: Arc<Shared>,
    pub high_water: HighWater,
    pub active: Active,
    pub next_seq: u64,
    pub disk_bytes: u64,
    /// A segment is closed once it is this large (at the end of a group, so it may be larger).
    pub segment_bytes: u64,
}

impl Writer {
    pub fn start(context: Context) -> std::io::Result<Writer> {
        let (durable, _) = watch::channel(Durable { ticket: 0, poisoned: false });
        let state = Arc::new(State {
            queue: Mutex::new(Queue {
                items: Vec::new(),
                last_ticket: 0,
                queued_bytes: 0,
                accepted: HashMap::new(),
                stop: false,
            }),
            wake: Condvar::new(),
            durable,
            metrics: SyncMetrics::default(),
            disk_bytes: AtomicU64::new(context.disk_bytes),
        });
        let thread_state = state.clone();
        let thread = std::thread::Builder::new().name("wharf-journal-writer".into()).spawn(move || {
            let shared = context.shared.clone();
            super::supervised(&shared, "writer", || run(&thread_state, context));
            // Whatever ended the loop, nobody may wait for a write that will not come.
            let mut durable = *thread_state.durable.borrow();
            if durable.ticket < thread_state.queue.lock().expect("journal queue lock").last_ticket {
                durable.poisoned = true;
            }
            thread_state.durable.send_replace(durable);
        })?;
        Ok(Writer { state, thread: Some(thread) })
    }

    /// Queues `item`, letting `veto` look at the queue first (under its lock); returns the item's
    /// ticket, or what `veto` returned.
    pub fn enqueue_unless<T>(
        &self,
        item: Item,
        veto: impl FnOnce(&mut Queue) -> Option<T>,
    ) -> Result<Result<u64, T>, Poisoned> {
        if self.is_poisoned() {
            return Err(Poisoned);
        }
        let ticket = {
            let mut queue = self.state.queue.lock().expect("journal queue lock");
            if let Some(out) = veto(&mut queue) {
                return Ok(Err(out));
            }
            if let Item::Rows { payload, .. } = &item {
                queue.queued_bytes += payload.len() as u64;
            }
            queue.items.push(item);
            queue.last_ticket += 1;
            queue.last_ticket
        };
        self.state.wake.notify_one();
        Ok(Ok(ticket))
    }

    pub fn enqueue(&self, item: Item) -> Result<u64, Poisoned> {
        Ok(self.enqueue_unless(item, |_| None::<()>)?.unwrap_or_else(|()| unreachable!("no veto")))
    }

    /// The ticket of the last item queued so far.
    pub fn last_ticket(&self) -> u64 {
        self.state.queue.lock().expect("journal queue lock").last_ticket
    }

    /// Waits until the item with `ticket` (and every one before it) is durable and published.
    pub async fn wait(&self, ticket: u64) -> Result<(), Poisoned> {
        let mut rx = self.state.durable.subscribe();
        let seen = rx.wait_for(|d| d.poisoned || d.ticket >= ticket).await.map_err(|_| Poisoned)?;
        if seen.ticket >= ticket { Ok(()) } else { Err(Poisoned) }
    }

    pub fn is_poisoned(&self) -> bool {
        self.state.durable.borrow().poisoned
    }

    pub fn metrics(&self) -> &SyncMetrics {
        &self.state.metrics
    }

    /// Bytes on disk plus row bytes queued for writing.
    pub fn used_bytes(&self) -> u64 {
        let queued = self.state.queue.lock().expect("journal queue lock").queued_bytes;
        self.state.disk_bytes.load(Ordering::Relaxed) + queued
    }

    pub fn disk_bytes(&self) -> u64 {
        self.state.disk_bytes.load(Ordering::Relaxed)
    }

    /// The newest resolved timestamp queued for `partition` since the journal was opened.
    pub fn accepted(&self, partition: &Partition) -> Option<Hlc> {
        self.state.queue.lock().expect("journal queue lock").accepted.get(partition).copied()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.state.queue.lock().expect("journal queue lock").stop = true;
        self.state.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(state: &State, mut context: Context) {
    loop {
        let (items, last_ticket) = {
            let mut queue = state.queue.lock().expect("journal queue lock");
            while queue.items.is_empty() && !queue.stop {
                queue = state.wake.wait(queue).expect("journal queue lock");
            }
            if queue.items.is_empty() {
                return;
            }
            (std::mem::take(&mut queue.items), queue.last_ticket)
        };
        let started = std::time::Instant::now();
        let written = write_group(&mut context, &items);
        state.metrics.duration.observe(started.elapsed().as_secs_f64());
        state.metrics.group_size.observe(items.len() as f64);
        let queued: u64 =
            items.iter().map(|i| if let Item::Rows { payload, .. } = i { payload.len() as u64 } else { 0 }).sum();
        state.queue.lock().expect("journal queue lock").queued_bytes -= queued;
        let (first_seq, places) = match written {
            Ok(done) => done,
            Err(error) => {
                tracing::error!(%error, "journal write failed; refusing all further writes (restart to recover from the last durable state)");
                let ticket = state.durable.borrow().ticket;
                state.durable.send_replace(Durable { ticket, poisoned: true });
                return;
            }
        };
        publish(&mut context, items, first_seq, &places);
        context.high_water.observe(context.next_seq - 1);
        // Before waking anyone, so a caller that waited sees the disk space given back.
        if let Err(error) = delete_dead_segments(&mut context) {
            tracing::warn!(%error, "cannot delete an applied journal segment; retrying after the next write");
        }
        state.disk_bytes.store(context.disk_bytes, Ordering::Relaxed);
        state.durable.send_replace(Durable { ticket: last_ticket, poisoned: false });
    }
}

/// Writes `items` as consecutive records and syncs them; returns the first one's sequence number
/// and each one's payload offset and length. The payloads go to the kernel as they are (one
/// vectored write), not copied into a buffer first.
fn write_group(context: &mut Context, items: &[Item]) -> std::io::Result<(u64, Vec<(u64, usize)>)> {
    if context.active.len >= context.segment_bytes {
        rotate(context)?;
    }
    let first_seq = context.next_seq;
    let payloads: Vec<std::borrow::Cow<'_, [u8]>> = items.iter().map(Item::payload).collect();
    let mut headers = Vec::with_capacity(payloads.len());
    let mut places = Vec::with_capacity(payloads.len());
    let mut at = context.active.len;
    for payload in &payloads {
        headers.push(segment::header(context.next_seq, payload));
        places.push((at + segment::FRAME_HEADER, payload.len()));
        at += segment::FRAME_HEADER + payload.len() as u64;
        context.next_seq += 1;
    }
    let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(2 * payloads.len());
    for (header, payload) in headers.iter().zip(&payloads) {
        slices.push(IoSlice::new(header));
        slices.push(IoSlice::new(payload));
    }
    write_all_vectored(&mut context.active.file, &mut slices)?;
    // Covers a power loss after the write: the records are in the page cache only.
    context.active.file.sync_data()?;
    let written = at - context.active.len;
    context.active.len = at;
    context.disk_bytes += written;
    Ok((first_seq, places))
}

/// `write_all` for several buffers (the standard library's is not stable yet).
fn write_all_vectored(file: &mut File, mut slices: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Makes the written records visible (runs and resolved timestamps into the index) and adds them
/// to the segment's summary.
fn publish(context: &mut Context, items: Vec<Item>, first_seq: u64, places: &[(u64, usize)]) {
    let shared = &context.shared;
    let summary = &mut context.active.summary;
    let mut advanced = false;
    {
        let mut index = shared.index.lock().expect("journal index lock");
        let segment = context.active.first_seq;
        let file = index.segments.get(&segment).expect("the active segment is indexed").file.clone();
        for ((seq, item), &(at, len)) in (first_seq..).zip(items).zip(places) {
            match item {
                Item::Rows { partition, shape, .. } => {
                    let effect = Effect::Rows(shape);
                    summary.push(&partition, at, len, &effect);
                    let Effect::Rows(shape) = effect else { unreachable!("built above") };
                    index.add_run(&partition, Run::new(seq, segment, file.clone(), &partition, (at, len), shape));
                }
                Item::Resolved { partition, hlc } => {
                    summary.push(&partition, at, len, &Effect::Resolved(hlc));
                    advanced |= index.raise_resolved(&partition, hlc);
                }
                // Already in the index: they take effect when made, not when written.
                Item::Applied { partition, hlc } => summary.push(&partition, at, len, &Effect::Applied(hlc)),
                Item::Epoch { partition, epoch } => summary.push(&partition, at, len, &Effect::Epoch(epoch)),
            }
        }
    }
    if advanced {
        shared.changes.send_modify(|n| *n += 1);
    }
}

/// Closes the segment being written (writing its summary) and starts the next, beginning with
/// every partition's marks.
fn rotate(context: &mut Context) -> std::io::Result<()> {
    let closed = &context.active;
    if let Err(error) = closed.summary.write(&context.dir, closed.first_seq, context.next_seq, closed.len) {
        // The next open reads this segment instead.
        tracing::warn!(%error, segment = closed.first_seq, "cannot write a journal segment's summary");
    }
    let marks: Vec<(Partition, Effect)> = {
        let index = context.shared.index.lock().expect("journal index lock");
        let mut marks = Vec::new();
        for (partition, state) in &index.partitions {
            if let Some(hlc) = state.resolved {
                marks.push((partition.clone(), Effect::Resolved(hlc)));
            }
            if let Some(hlc) = state.applied {
                marks.push((partition.clone(), Effect::Applied(hlc)));
            }
            if state.epoch > 0 {
                marks.push((partition.clone(), Effect::Epoch(state.epoch)));
            }
        }
        marks
    };
    let first_seq = context.next_seq;
    let mut bytes = segment::MAGIC.to_vec();
    let mut summary = summary::Builder::default();
    for (partition, effect) in &marks {
        let payload = match effect {
            Effect::Resolved(hlc) => record::encode_log_resolved(partition, *hlc),
            Effect::Applied(hlc) => record::encode_log_applied(partition, *hlc),
            Effect::Epoch(epoch) => record::encode_log_epoch(partition, *epoch),
            Effect::Rows(_) => unreachable!("marks only"),
        };
        summary.push(partition, bytes.len() as u64 + segment::FRAME_HEADER, payload.len(), effect);
        segment::frame(&mut bytes, context.next_seq, &payload);
        context.next_seq += 1;
    }
    let (file, read) = create_segment(&context.dir, first_seq, &bytes)?;
    context
        .shared
        .index
        .lock()
        .expect("journal index lock")
        .segments
        .insert(first_seq, Segment { file: Arc::new(read), live_runs: 0 });
    context.disk_bytes += bytes.len() as u64;
    context.active = Active { first_seq, file, len: bytes.len() as u64, summary };
    Ok(())
}

/// Creates a segment holding `bytes`, durably (file and directory entry); returns a handle to
/// append with and one to read with.
pub(super) fn create_segment(dir: &Path, first_seq: u64, bytes: &[u8]) -> std::io::Result<(File, File)> {
    let path = dir.join(segment::file_name(first_seq));
    let mut file = OpenOptions::new().create_new(true).append(true).open(&path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    // Covers a crash right after: the new file's directory entry must be durable before any
    // record in it is acknowledged.
    File::open(dir)?.sync_all()?;
    let read = File::open(&path)?;
    Ok((file, read))
}

/// Deletes the oldest segments whose rows are all applied.
fn delete_dead_segments(context: &mut Context) -> std::io::Result<()> {
    let dead = context.shared.index.lock().expect("journal index lock").dead_head();
    if dead.is_empty() {
        return Ok(());
    }
    for first_seq in dead {
        let path = context.dir.join(segment::file_name(first_seq));
        let len = std::fs::metadata(&path)?.len();
        std::fs::remove_file(&path)?;
        remove_if_there(&summary::path(&context.dir, first_seq))?;
        context.shared.index.lock().expect("journal index lock").segments.remove(&first_seq);
        context.disk_bytes = context.disk_bytes.saturating_sub(len);
    }
    // Deletions go oldest first; syncing the directory keeps them from surviving out of order,
    // which would look like a missing segment at the next open.
    File::open(&context.dir)?.sync_all()
}

fn remove_if_there(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}
