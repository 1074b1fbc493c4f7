//! The file work of one group commit (see [`super::writer`] for the order): closing a full
//! segment and creating the next atomically, writing and syncing the records, publishing, and
//! deleting applied segments after the log start has moved past them.

use std::fs::File;
use std::io::{IoSlice, Write};
use std::path::Path;
use std::sync::Arc;

use super::bounds::Bounds;
use super::index::{Run, Segment};
use super::summary::{self, Effect};
use super::writer::{Active, Context, Item};
use super::{dirs, segment};
use crate::record::{self, Partition};

/// Whether a failed write means the disk is full (nothing written is lost: retry later).
pub(super) fn is_no_space(error: &std::io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Writes `items` as consecutive records and syncs them; returns the first one's sequence number
/// and each one's payload offset and length. The payloads go to the kernel as they are (one
/// vectored write), not copied into a buffer first. Nothing in `context` moves unless the records
/// are durable.
pub(super) fn write_group(context: &mut Context, items: &[Item]) -> std::io::Result<(u64, Vec<(u64, usize)>)> {
    if context.rotate_first || (context.active.len >= context.segment_bytes && room_to_rotate(context)) {
        rotate(context)?;
        context.rotate_first = false;
    }
    let first_seq = context.next_seq;
    let payloads: Vec<std::borrow::Cow<'_, [u8]>> = items.iter().map(Item::payload).collect();
    let mut headers = Vec::with_capacity(payloads.len());
    let mut places = Vec::with_capacity(payloads.len());
    let mut at = context.active.len;
    for (seq, payload) in (first_seq..).zip(&payloads) {
        headers.push(segment::header(seq, payload));
        places.push((at + segment::FRAME_HEADER, payload.len()));
        at += segment::FRAME_HEADER + payload.len() as u64;
    }
    let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(2 * payloads.len());
    for (header, payload) in headers.iter().zip(&payloads) {
        slices.push(IoSlice::new(header));
        slices.push(IoSlice::new(payload));
    }
    write_all_vectored(&mut context.active.file, &mut slices)?;
    // Covers a power loss after the write: the records are in the page cache only.
    context.active.file.sync_data()?;
    context.next_seq = first_seq + items.len() as u64;
    context.disk_bytes += at - context.active.len;
    context.active.len = at;
    Ok((first_seq, places))
}

/// Cuts the segment being written back to the end of its last durable record and syncs it, so
/// what a failed group left in the page cache is not read back by the next open (best effort:
/// it runs after a failure).
pub(super) fn cut_back(context: &mut Context) {
    let active = &context.active;
    let cut = active.file.set_len(active.len).and_then(|()| active.file.sync_all());
    if let Err(error) = cut {
        tracing::error!(%error, segment = active.first_seq, "cannot cut the journal segment back to its last acknowledged length");
    }
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
pub(super) fn publish(context: &mut Context, items: Vec<Item>, first_seq: u64, places: &[(u64, usize)]) {
    let shared = &context.shared;
    let summary = &mut context.active.summary;
    let mut advanced = false;
    {
        let mut index = shared.index();
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

/// Whether the disk has room for a new segment: rotation waits while less than half the reserve
/// is free (the active segment then grows past its size; only bookkeeping comes in then).
fn room_to_rotate(context: &mut Context) -> bool {
    let free = dirs::free_bytes(&context.dir).unwrap_or(u64::MAX);
    let room = free >= context.disk_reserve / 2;
    if !room && !context.rotation_postponed {
        tracing::warn!(
            free,
            reserve = context.disk_reserve,
            "the journal's disk is low: the next segment waits for space"
        );
    }
    context.rotation_postponed = !room;
    room
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
        let index = context.shared.index();
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
    for ((partition, effect), seq) in marks.iter().zip(first_seq..) {
        let payload = match effect {
            Effect::Resolved(hlc) => record::encode_log_resolved(partition, *hlc),
            Effect::Applied(hlc) => record::encode_log_applied(partition, *hlc),
            Effect::Epoch(epoch) => record::encode_log_epoch(partition, *epoch),
            Effect::Rows(_) => unreachable!("marks only"),
        };
        summary.push(partition, bytes.len() as u64 + segment::FRAME_HEADER, payload.len(), effect);
        segment::frame(&mut bytes, seq, &payload);
    }
    let (file, read) = create_segment(&context.dir, first_seq, &bytes)?;
    context.shared.index().segments.insert(first_seq, Segment { file: Arc::new(read), live_runs: 0 });
    context.next_seq = first_seq + marks.len() as u64;
    context.disk_bytes += bytes.len() as u64;
    context.active = Active { first_seq, file, len: bytes.len() as u64, summary };
    Ok(())
}

/// Creates a segment holding `bytes` atomically and durably: written under a temporary name and
/// synced, renamed into place, the directory synced. A crash leaves no segment or a whole one,
/// never one with part of its marks. Returns a handle to append with and one to read with.
pub(super) fn create_segment(dir: &Path, first_seq: u64, bytes: &[u8]) -> std::io::Result<(File, File)> {
    let path = dir.join(segment::file_name(first_seq));
    let temporary = path.with_extension("wal.tmp");
    // Appends always go to the end (`O_APPEND`), also after a failed group is cut back.
    remove_if_there(&temporary)?;
    let created = (|| -> std::io::Result<File> {
        let mut file = dirs::private_file().create_new(true).append(true).open(&temporary)?;
        file.write_all(bytes)?;
        // Covers a power loss after the rename: the new name must not point at unwritten bytes.
        file.sync_all()?;
        std::fs::rename(&temporary, &path)?;
        Ok(file)
    })();
    let file = created.inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })?;
    // Covers a crash right after: the new file's directory entry must be durable before any
    // record in it is acknowledged.
    File::open(dir)?.sync_all()?;
    let read = File::open(&path)?;
    Ok((file, read))
}

/// Deletes the oldest segments whose rows are all applied. The log start is moved past them
/// durably first: a segment missing at the start of the log is then refused at the next open,
/// and one left below the start (an unlink not yet durable) is known to be dead.
pub(super) fn delete_dead_segments(context: &mut Context) -> std::io::Result<()> {
    let (dead, start) = {
        let index = context.shared.index();
        let dead = index.dead_head();
        let start = index.segments.keys().copied().find(|s| !dead.contains(s));
        (dead, start.expect("the segment being written is never dead"))
    };
    if dead.is_empty() {
        return Ok(());
    }
    // Every record before `next_seq` is synced (groups and the marks of a new segment).
    let moved =
        context.bounds.lock().expect("bounds lock").write(Bounds { log_start: start, durable: context.next_seq - 1 });
    moved?;
    for first_seq in dead {
        let path = context.dir.join(segment::file_name(first_seq));
        let len = context.shared.index().segments.get(&first_seq).and_then(|s| s.file.metadata().ok()).map(|m| m.len());
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                // Below the log start: the next open finishes it; until then it is tried again.
                tracing::warn!(%error, file = %path.display(), "cannot delete an applied journal segment");
                continue;
            }
        }
        context.shared.index().segments.remove(&first_seq);
        context.disk_bytes = context.disk_bytes.saturating_sub(len.unwrap_or(0));
        if let Err(error) = remove_if_there(&summary::path(&context.dir, first_seq)) {
            tracing::warn!(%error, segment = first_seq, "cannot remove an applied segment's summary (the next open does)");
        }
    }
    // Covers a power loss after the unlinks; a failure is fatal like every other failed sync.
    File::open(&context.dir)?.sync_all()
}

fn remove_if_there(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}
