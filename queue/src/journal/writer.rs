//! The journal's writer thread: group commit into segment files.
//!
//! Appends queue their encoded records and wait. The thread takes everything queued and, as one
//! group ([`super::group`]):
//! 1. closes the segment if it is full and starts the next with every partition's marks;
//! 2. writes the records with one vectored `write` and makes them durable with one `fdatasync`;
//! 3. publishes them in the index (a resolved timestamp becomes visible after every row logged
//!    before it, because records are published in order);
//! 4. deletes the oldest segments whose rows are all applied (the log start first);
//! 5. hands them to the [`super::acknowledger`], which raises the durable mark over them
//!    ([`super::bounds`]), syncs it and only then wakes their appenders, while this thread goes on
//!    with the next group.
//!
//! **A failed write or sync** (of a segment, of the bounds, of the directory) poisons the journal
//! for good: after a failed fsync the kernel may have marked the unwritten pages clean, so
//! retrying could report success for data that is gone. The segment is cut back to the end of
//! its last synced record before the thread ends (best effort), so a restart does not read
//! records whose sync failed from the page cache.
//!
//! **No space** (`ENOSPC`, `EDQUOT` from a write, which comes before any data is lost) is not a
//! poison: the segment is cut back, health reports the stall, and the same group is tried again
//! every second until it fits; its appenders wait, new appends are refused as the disk is low.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::acknowledger::Acknowledger;
use super::bounds::BoundsFile;
use super::index::RunShape;
use super::{Fault, Shared, group, summary};
use crate::metrics::SyncMetrics;
use crate::record::{self, Partition};
use wharf_base::hlc::Hlc;

/// How long a group that did not fit waits before it is tried again.
const NO_SPACE_RETRY: Duration = Duration::from_secs(1);

/// One record waiting to be written.
pub(super) enum Item {
    Rows { partition: Partition, payload: Vec<u8>, shape: RunShape },
    Resolved { partition: Partition, hlc: Hlc },
    Applied { partition: Partition, hlc: Hlc },
    Epoch { partition: Partition, epoch: u64 },
}

impl Item {
    pub(super) fn payload(&self) -> std::borrow::Cow<'_, [u8]> {
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
    /// Applied rows were forgotten without a record: look for segments to delete.
    compact: bool,
    stop: bool,
}

/// The segment being written.
pub(super) struct Active {
    pub first_seq: u64,
    pub file: File,
    /// Its length up to the end of the last record synced.
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
    /// The writer's file work under way, and the acknowledger's.
    busy: [Arc<Busy>; 2],
}

/// How long one thread's write or sync under way has taken (for the hung-device watch).
#[derive(Debug)]
pub(super) struct Busy {
    /// When the work began, in nanoseconds after `clock` plus one; 0 if none.
    since: AtomicU64,
    clock: Instant,
}

impl Busy {
    fn new() -> Busy {
        Busy { since: AtomicU64::new(0), clock: Instant::now() }
    }

    /// Runs `work` with the clock running.
    pub fn timed<T>(&self, work: impl FnOnce() -> T) -> T {
        let since = self.clock.elapsed().as_nanos() as u64 + 1;
        self.since.store(since, Ordering::Relaxed);
        let out = work();
        self.since.store(0, Ordering::Relaxed);
        out
    }

    fn running_for(&self) -> Option<Duration> {
        let since = self.since.load(Ordering::Relaxed);
        (since > 0).then(|| self.clock.elapsed().saturating_sub(Duration::from_nanos(since - 1)))
    }
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
    /// Shared with the acknowledger, which raises the mark; the writer moves the log start.
    pub bounds: Arc<Mutex<BoundsFile>>,
    pub active: Active,
    pub next_seq: u64,
    pub disk_bytes: u64,
    /// A segment is closed once it is this large (at the end of a group, so it may be larger).
    pub segment_bytes: u64,
    /// Rotation waits while the disk has less than half of this free.
    pub disk_reserve: u64,
    /// The next group starts a new segment (the open repaired the end of the last one).
    pub rotate_first: bool,
    /// Rotation is waiting for disk space (logged once).
    pub rotation_postponed: bool,
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
                compact: false,
                stop: false,
            }),
            wake: Condvar::new(),
            durable,
            metrics: SyncMetrics::default(),
            disk_bytes: AtomicU64::new(context.disk_bytes),
            busy: [Arc::new(Busy::new()), Arc::new(Busy::new())],
        });
        let mut acknowledger =
            Acknowledger::start(context.bounds.clone(), state.durable.clone(), state.busy[1].clone())?;
        let thread_state = state.clone();
        let thread = std::thread::Builder::new().name("wharf-journal-writer".into()).spawn(move || {
            let shared = context.shared.clone();
            super::supervised(&shared, "writer", || run(&thread_state, context, &acknowledger));
            // What was synced is answered before the thread (and then the journal's lock) goes.
            acknowledger.finish();
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

    /// Asks the thread to delete the segments whose rows are all applied, with no record to write.
    pub fn compact(&self) {
        self.state.queue.lock().expect("journal queue lock").compact = true;
        self.state.wake.notify_one();
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

    /// How long the write or sync under way (of the writer or the acknowledger) has taken so
    /// far; `None` if neither is in one.
    pub fn busy_for(&self) -> Option<Duration> {
        self.state.busy.iter().filter_map(|b| b.running_for()).max()
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

impl State {
    /// Runs one piece of the writer's file work with the clock of [`Writer::busy_for`] running.
    fn timed<T>(&self, work: impl FnOnce() -> T) -> T {
        self.busy[0].timed(work)
    }
}

fn run(state: &State, mut context: Context, acknowledger: &Acknowledger) {
    loop {
        let (items, last_ticket) = {
            let mut queue = state.queue.lock().expect("journal queue lock");
            while queue.items.is_empty() && !queue.compact && !queue.stop {
                queue = state.wake.wait(queue).expect("journal queue lock");
            }
            if queue.items.is_empty() && !queue.compact {
                return;
            }
            queue.compact = false;
            (std::mem::take(&mut queue.items), queue.last_ticket)
        };
        // The acknowledger failed to write the mark: nothing more is answered.
        if state.durable.borrow().poisoned {
            return;
        }
        if !items.is_empty() && !write_until_it_fits(state, &mut context, items) {
            group::cut_back(&mut context);
            acknowledger.poison();
            return;
        }
        // Before answering anyone, so a caller that waited sees the disk space given back.
        if let Err(error) = state.timed(|| group::delete_dead_segments(&mut context)) {
            tracing::error!(%error, "deleting applied journal segments failed; refusing all further writes (restart to recover from the last durable state)");
            acknowledger.synced(context.next_seq - 1, last_ticket);
            acknowledger.poison();
            return;
        }
        state.disk_bytes.store(context.disk_bytes, Ordering::Relaxed);
        acknowledger.synced(context.next_seq - 1, last_ticket);
    }
}

/// Writes, syncs and publishes `items` as one group, trying again while the disk is full;
/// `false` when the journal must stop (a failed write or sync, or a stop while the disk is full).
fn write_until_it_fits(state: &State, context: &mut Context, items: Vec<Item>) -> bool {
    let queued: u64 =
        items.iter().map(|i| if let Item::Rows { payload, .. } = i { payload.len() as u64 } else { 0 }).sum();
    let mut waited = false;
    let outcome = loop {
        let started = Instant::now();
        let written = state.timed(|| group::write_group(context, &items));
        state.metrics.duration.observe(started.elapsed().as_secs_f64());
        match written {
            Ok(done) => break Some(done),
            Err(error) if group::is_no_space(&error) => {
                group::cut_back(context);
                if !waited {
                    let reason = format!(
                        "no space left for the journal's next write in {} ({error}); retrying every second, nothing is lost",
                        context.dir.display()
                    );
                    tracing::error!("{reason}");
                    context.shared.set_fault(Some(Fault::Stalled(reason)));
                    waited = true;
                }
                let queue = state.queue.lock().expect("journal queue lock");
                let (queue, _) = state.wake.wait_timeout(queue, NO_SPACE_RETRY).expect("journal queue lock");
                if queue.stop {
                    break None;
                }
            }
            Err(error) => {
                tracing::error!(%error, "journal write failed; refusing all further writes (restart to recover from the last durable state)");
                break None;
            }
        }
    };
    if waited {
        context.shared.set_fault(None);
    }
    state.metrics.group_size.observe(items.len() as f64);
    state.queue.lock().expect("journal queue lock").queued_bytes -= queued;
    let Some((first_seq, places)) = outcome else { return false };
    group::publish(context, items, first_seq, &places);
    true
}
