//! The acknowledger thread: raises the durable mark ([`super::bounds`]) over what the writer
//! synced, syncs it, and only then answers the appenders.
//!
//! It runs beside the writer so that the mark's sync of group N overlaps the writer's work on
//! group N + 1: an acknowledgement waits for both syncs, the writer for its own only. Several
//! groups synced while the mark was being written are covered by one write of the mark.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use tokio::sync::watch;

use super::bounds::{Bounds, BoundsFile};
use super::writer::{Busy, Durable};

/// What the writer handed over and the acknowledger has not yet taken.
#[derive(Default)]
struct Handoff {
    /// The last record synced and the last ticket it covers.
    synced: Option<(u64, u64)>,
    /// The writer failed: answer what was synced before, then refuse everything after.
    poison: bool,
    stop: bool,
}

struct State {
    handoff: Mutex<Handoff>,
    wake: Condvar,
}

/// Handle to the thread; [`Acknowledger::finish`] answers what was handed over and stops it.
pub(super) struct Acknowledger {
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl Acknowledger {
    pub fn start(
        bounds: Arc<Mutex<BoundsFile>>,
        durable: watch::Sender<Durable>,
        busy: Arc<Busy>,
    ) -> std::io::Result<Acknowledger> {
        let state = Arc::new(State { handoff: Mutex::new(Handoff::default()), wake: Condvar::new() });
        let thread_state = state.clone();
        let thread = std::thread::Builder::new()
            .name("wharf-journal-ack".into())
            .spawn(move || run(&thread_state, &bounds, &durable, &busy))?;
        Ok(Acknowledger { state, thread: Some(thread) })
    }

    /// Records up to `seq` are synced; their appenders (tickets up to `ticket`) may be answered
    /// once the mark covers them.
    pub fn synced(&self, seq: u64, ticket: u64) {
        self.state.handoff.lock().expect("acknowledger lock").synced = Some((seq, ticket));
        self.state.wake.notify_one();
    }

    /// The writer failed: nothing handed over after this is answered.
    pub fn poison(&self) {
        self.state.handoff.lock().expect("acknowledger lock").poison = true;
        self.state.wake.notify_one();
    }

    /// Answers what was handed over, then stops the thread.
    pub fn finish(&mut self) {
        self.state.handoff.lock().expect("acknowledger lock").stop = true;
        self.state.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Acknowledger {
    fn drop(&mut self) {
        self.finish();
    }
}

fn run(state: &State, bounds: &Mutex<BoundsFile>, durable: &watch::Sender<Durable>, busy: &Busy) {
    loop {
        let (synced, poison, stop) = {
            let mut handoff = state.handoff.lock().expect("acknowledger lock");
            while handoff.synced.is_none() && !handoff.poison && !handoff.stop {
                handoff = state.wake.wait(handoff).expect("acknowledger lock");
            }
            (handoff.synced.take(), handoff.poison, handoff.stop)
        };
        if let Some((seq, ticket)) = synced {
            let written = busy.timed(|| {
                let mut file = bounds.lock().expect("bounds lock");
                let now = file.written();
                file.write(Bounds { durable: seq.max(now.durable), ..now })
            });
            if let Err(error) = written {
                tracing::error!(%error, "writing the journal's durable mark failed; refusing all further writes (restart to recover from the last durable state)");
                durable.send_modify(|d| d.poisoned = true);
                return;
            }
            durable.send_modify(|d| d.ticket = d.ticket.max(ticket));
        }
        if poison {
            durable.send_modify(|d| d.poisoned = true);
            return;
        }
        if stop {
            return;
        }
    }
}
