//! Checking, in the background, the segments whose index entries came from their summaries: every
//! record's checksum, its sequence number, and that it lies where the summary says. The journal
//! serves as soon as it is opened; a read of rows waits until the segments holding them are
//! checked. A segment that fails its check stops the journal: the fault is fatal (the process
//! stops with the error, as a damaged journal at open always did), and appends and reads are
//! refused from then on.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use super::segment::{self, End, Frame};
use super::{Fault, Shared};

/// One segment to check: the payload offset and length of each record its summary lists.
pub(super) struct Check {
    pub first_seq: u64,
    pub path: PathBuf,
    pub records: Vec<(u64, u32)>,
}

/// Which segments still wait for their check, and whether one failed.
pub(crate) struct Verification {
    state: Mutex<State>,
    changed: Condvar,
    failed: AtomicBool,
    stop: AtomicBool,
}

struct State {
    pending: BTreeSet<u64>,
    failure: Option<String>,
}

impl Verification {
    pub fn new(pending: impl IntoIterator<Item = u64>) -> Self {
        Verification {
            state: Mutex::new(State { pending: pending.into_iter().collect(), failure: None }),
            changed: Condvar::new(),
            failed: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        }
    }

    /// Waits until none of `segments` waits for its check; the failure if a check failed.
    pub fn wait_for(&self, segments: impl Iterator<Item = u64> + Clone) -> Result<(), String> {
        self.wait_until(|pending| !segments.clone().any(|s| pending.contains(&s)))
    }

    /// Waits until every segment is checked.
    pub fn wait_all(&self) -> Result<(), String> {
        self.wait_until(BTreeSet::is_empty)
    }

    fn wait_until(&self, done: impl Fn(&BTreeSet<u64>) -> bool) -> Result<(), String> {
        let mut state = self.state.lock().expect("verification lock");
        loop {
            if let Some(failure) = &state.failure {
                return Err(failure.clone());
            }
            if done(&state.pending) {
                return Ok(());
            }
            state = self.changed.wait(state).expect("verification lock");
        }
    }

    /// The failure, if a check failed (cheap when none did).
    pub fn failure(&self) -> Option<String> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        self.state.lock().expect("verification lock").failure.clone()
    }

    fn passed(&self, first_seq: u64) {
        self.state.lock().expect("verification lock").pending.remove(&first_seq);
        self.changed.notify_all();
    }

    fn fail(&self, reason: String) {
        self.state.lock().expect("verification lock").failure = Some(reason);
        self.failed.store(true, Ordering::Release);
        self.changed.notify_all();
    }
}

/// The checking thread; dropping it stops and joins it.
pub(super) struct Verifier {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Verifier {
    /// Starts checking `checks`, oldest first (the order appliers read in). `describe` turns a
    /// failure into the journal's error text.
    pub fn start(
        shared: Arc<Shared>,
        checks: Vec<Check>,
        describe: impl Fn(String) -> String + Send + 'static,
    ) -> std::io::Result<Verifier> {
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new().name("wharf-journal-verify".into()).spawn(move || {
            let shared = thread_shared;
            super::supervised(&shared, "verify", || run(&shared, checks, describe));
        })?;
        Ok(Verifier { shared, thread: Some(thread) })
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        self.shared.verification.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(shared: &Shared, checks: Vec<Check>, describe: impl Fn(String) -> String) {
    if checks.is_empty() {
        return;
    }
    let started = Instant::now();
    let (count, mut bytes) = (checks.len(), 0u64);
    for check in checks {
        match verify_unless_deleted(&check, &shared.verification.stop) {
            Ok(Some(len)) => {
                bytes += len;
                shared.verification.passed(check.first_seq);
            }
            Ok(None) => return,
            Err(detail) => {
                let reason = describe(detail);
                tracing::error!(%reason, "journal check failed");
                shared.verification.fail(reason.clone());
                shared.set_fault(Some(Fault::Fatal(reason)));
                return;
            }
        }
    }
    tracing::info!(segments = count, bytes, seconds = started.elapsed().as_secs_f64(), "journal segments checked");
}

/// [`verify`], except that a segment deleted meanwhile passes: the writer deletes a segment once
/// every row in it is applied (the target's checkpoint, reported by an applier, may cover it at
/// once after a restart), and then nothing reads it any more.
fn verify_unless_deleted(check: &Check, stop: &AtomicBool) -> Result<Option<u64>, String> {
    match verify(check, stop) {
        Err(_) if !check.path.exists() => Ok(Some(0)),
        other => other,
    }
}

/// Checks one segment against its summary: `Ok(Some(bytes))` if it matches, `Ok(None)` if
/// stopped, `Err` naming the file and the damage otherwise.
fn verify(check: &Check, stop: &AtomicBool) -> Result<Option<u64>, String> {
    let path = check.path.display();
    let mut seen = 0usize;
    let mut end_at = segment::MAGIC.len() as u64;
    let visit = |frame: Frame| -> Result<(), Option<String>> {
        if stop.load(Ordering::Relaxed) {
            return Err(None);
        }
        let expected_seq = check.first_seq + seen as u64;
        let listed = check.records.get(seen);
        if frame.seq != expected_seq {
            return Err(Some(format!("{path} holds record {} where record {expected_seq} belongs", frame.seq)));
        }
        if listed != Some(&(frame.payload_at, frame.payload.len() as u32)) {
            return Err(Some(format!("{path} does not match its summary at record {}", frame.seq)));
        }
        seen += 1;
        end_at = frame.payload_at + frame.payload.len() as u64;
        Ok(())
    };
    match segment::scan(&check.path, visit) {
        Err(error) => Err(format!("cannot read {path}: {error}")),
        Ok(Err(None)) => Ok(None),
        Ok(Err(Some(detail))) => Err(detail),
        Ok(Ok(None)) => Err(format!("{path} is not a wharf journal segment")),
        Ok(Ok(Some(End::Torn { at, why }))) => Err(format!("{path} is damaged at byte {at}: {why}")),
        Ok(Ok(Some(End::Clean))) if seen != check.records.len() => {
            Err(format!("{path} holds {seen} records where its summary lists {}", check.records.len()))
        }
        Ok(Ok(Some(End::Clean))) => Ok(Some(end_at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_deleted_before_its_check_passes_and_a_damaged_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(segment::file_name(1));
        let check = Check { first_seq: 1, path: path.clone(), records: vec![(24, 3)] };
        let stop = AtomicBool::new(false);
        assert_eq!(verify_unless_deleted(&check, &stop), Ok(Some(0)), "deleted as applied");
        let mut bytes = segment::MAGIC.to_vec();
        segment::frame(&mut bytes, 1, b"one");
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(verify_unless_deleted(&check, &stop), Ok(Some(bytes.len() as u64)));
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let failed = verify_unless_deleted(&check, &stop).unwrap_err();
        assert!(failed.contains("is damaged at byte 8"), "{failed}");
        let other = Check { records: vec![(24, 4)], ..check };
        std::fs::write(&path, b"WHARFJ1\n").unwrap();
        assert!(
            verify_unless_deleted(&other, &stop).unwrap_err().contains("holds 0 records where its summary lists 1")
        );
    }
}
