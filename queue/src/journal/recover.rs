//! Opening a journal: the index is rebuilt from each closed segment's summary
//! ([`super::summary`]), and from the records themselves for the segment being written and for any
//! segment without a usable summary. Segments read here are checked as they are read (checksums,
//! consecutive sequence numbers); those known from their summaries are checked in the background
//! ([`super::verify`]) before their rows are read. At least as many records as were acknowledged
//! must be there (the high-water mark).
//!
//! The end of the last segment may hold a write cut short by a crash: records that were never
//! acknowledged. It is cut off, once the records before it reach the durable high-water mark.
//! Anything else that does not check out refuses the open, naming the file: damage is never
//! skipped.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::OpenError;
use super::index::{Index, Run, RunShape, Segment};
use super::segment::{self, End, Frame};
use super::summary::{self, Effect, Entry};
use super::verify::Check;
use super::writer::{Active, create_segment};
use crate::record::{self, LogRecord};

pub(super) struct Recovered {
    pub index: Index,
    pub active: Active,
    pub next_seq: u64,
    pub disk_bytes: u64,
    /// Segments known from their summaries, to check in the background.
    pub checks: Vec<Check>,
}

/// Files an earlier, sled-based journal left in its directory.
const SLED_FILES: [&str; 2] = ["db", "conf"];

pub(super) fn recover(dir: &Path, durable: u64) -> Result<Recovered, OpenError> {
    let corrupt = |detail: String| OpenError::Corrupt { dir: dir.to_owned(), detail };
    let io_err = |source| OpenError::Io { dir: dir.to_owned(), source };
    if let Some(old) = SLED_FILES.iter().map(|f| dir.join(f)).find(|p| p.exists()) {
        return Err(OpenError::OldFormat { dir: dir.to_owned(), file: old });
    }
    let segments = list(dir).map_err(io_err)?;
    remove_stray_summaries(dir, &segments).map_err(io_err)?;
    let mut index = Index::default();
    let mut next_seq = 1u64;
    let mut disk_bytes = 0u64;
    let mut checks = Vec::new();
    let mut active_summary = summary::Builder::default();
    let Some(&last_first) = segments.last() else {
        if durable > 0 {
            return Err(OpenError::Missing { dir: dir.to_owned(), durable, found: 0 });
        }
        return start_empty(dir, index).map_err(io_err);
    };
    for (i, first_seq) in segments.iter().copied().enumerate() {
        let path = dir.join(segment::file_name(first_seq));
        if i > 0 && first_seq != next_seq {
            let previous = path.with_file_name(segment::file_name(segments[i - 1]));
            return Err(corrupt(format!(
                "{} starts at record {first_seq}, but {} ends at record {}: a segment between them is missing",
                path.display(),
                previous.display(),
                next_seq - 1
            )));
        }
        next_seq = first_seq;
        let read = Arc::new(File::open(&path).map_err(io_err)?);
        index.segments.insert(first_seq, Segment { file: read.clone(), live_runs: 0 });
        if first_seq != last_first {
            let len = read.metadata().map_err(io_err)?.len();
            if let Some(known) = summary::load(dir, first_seq, len) {
                checks.push(Check {
                    first_seq,
                    path,
                    records: replay_summary(&mut index, first_seq, &read, known.entries),
                });
                next_seq = known.end_seq;
                disk_bytes += len;
                continue;
            }
        }
        active_summary = summary::Builder::default();
        let end = scan(&path, &read, &mut index, &mut next_seq, &mut active_summary)?;
        let len = match end {
            Some(End::Clean) => std::fs::metadata(&path).map_err(io_err)?.len(),
            Some(End::Torn { at, why }) if first_seq == last_first => {
                if next_seq - 1 < durable {
                    return Err(corrupt(format!(
                        "{} is damaged at byte {at}: {why}; records up to {durable} were acknowledged as durable, and only those up to {} come before it",
                        path.display(),
                        next_seq - 1
                    )));
                }
                tracing::warn!(
                    file = %path.display(), offset = at,
                    "cutting off the journal's end after record {}: {why} (a write that a crash cut short; it was never acknowledged)",
                    next_seq - 1
                );
                cut(&path, at).map_err(io_err)?;
                at
            }
            Some(End::Torn { at, why }) => {
                return Err(corrupt(format!("{} is damaged at byte {at}: {why}", path.display())));
            }
            // A segment whose creation a crash cut short holds nothing acknowledged (the
            // high-water mark says so).
            None if first_seq == last_first && next_seq == first_seq && first_seq > 1 && durable < first_seq => {
                tracing::warn!(file = %path.display(), "removing a journal segment whose creation a crash cut short");
                std::fs::remove_file(&path).map_err(io_err)?;
                File::open(dir).and_then(|d| d.sync_all()).map_err(io_err)?;
                return recover(dir, durable);
            }
            None => return Err(corrupt(format!("{} is not a wharf journal segment", path.display()))),
        };
        disk_bytes += len;
    }
    if next_seq - 1 < durable {
        return Err(OpenError::Missing { dir: dir.to_owned(), durable, found: next_seq - 1 });
    }
    let path = dir.join(segment::file_name(last_first));
    let file = OpenOptions::new().append(true).open(&path).map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    let active = Active { first_seq: last_first, file, len, summary: active_summary };
    Ok(Recovered { index, active, next_seq, disk_bytes, checks })
}

/// Puts a summary's entries in the index; returns where each record's payload is, for its check.
fn replay_summary(index: &mut Index, first_seq: u64, file: &Arc<File>, entries: Vec<Entry>) -> Vec<(u64, u32)> {
    let records = entries.iter().map(|e| (e.payload_at, e.payload_len)).collect();
    for (seq, entry) in (first_seq..).zip(entries) {
        replay(index, first_seq, file, seq, entry);
    }
    records
}

/// Removes summaries without a segment (deleted once applied), the summary of the segment being
/// written (it may have been closed once, before a crash cut its successor short) and summaries a
/// crash left half written.
fn remove_stray_summaries(dir: &Path, segments: &[u64]) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let stray = match summary::parse_file_name(name) {
            Some(seq) => segments.binary_search(&seq).is_err() || segments.last() == Some(&seq),
            None => name.ends_with(".sum.tmp"),
        };
        if stray {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Segment files in the directory, by first sequence number.
fn list(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        if let Some(seq) = entry?.file_name().to_str().and_then(segment::parse_file_name) {
            out.push(seq);
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn start_empty(dir: &Path, mut index: Index) -> std::io::Result<Recovered> {
    let (file, read) = create_segment(dir, 1, segment::MAGIC)?;
    index.segments.insert(1, Segment { file: Arc::new(read), live_runs: 0 });
    let len = segment::MAGIC.len() as u64;
    let active = Active { first_seq: 1, file, len, summary: summary::Builder::default() };
    Ok(Recovered { index, active, next_seq: 1, disk_bytes: len, checks: Vec::new() })
}

/// Replays one segment's records into `index` and `summary`, checking their sequence numbers.
fn scan(
    path: &Path,
    file: &Arc<File>,
    index: &mut Index,
    next_seq: &mut u64,
    summary: &mut summary::Builder,
) -> Result<Option<End>, OpenError> {
    let dir = path.parent().unwrap_or(Path::new(".")).to_owned();
    let segment_seq = *next_seq;
    let replay_frame = |frame: Frame| -> Result<(), OpenError> {
        if frame.seq != *next_seq {
            return Err(OpenError::Corrupt {
                dir: dir.clone(),
                detail: format!("{} holds record {} where record {} belongs", path.display(), frame.seq, *next_seq),
            });
        }
        *next_seq += 1;
        let entry = entry_of(&frame).map_err(|source| OpenError::Damaged { dir: dir.clone(), source })?;
        summary.push(&entry.partition, entry.payload_at, entry.payload_len as usize, &entry.effect);
        replay(index, segment_seq, file, frame.seq, entry);
        Ok(())
    };
    match segment::scan(path, replay_frame) {
        Ok(Ok(end)) => Ok(end),
        Ok(Err(e)) => Err(e),
        Err(source) => Err(OpenError::Io { dir: PathBuf::from(&dir), source }),
    }
}

/// What a record does to the index, worked out from its payload.
fn entry_of(frame: &Frame) -> Result<Entry, record::RecordError> {
    let (partition, effect) = match record::decode_log(&frame.payload)? {
        LogRecord::Rows { partition, entries } => {
            let mut shape: Option<RunShape> = None;
            for (key, value) in &entries {
                let (hlc, table, _) = record::decode_key(key)?;
                RunShape::include(&mut shape, hlc, table, value.get(1).copied() == Some(0));
            }
            // A request whose rows were all dropped is never written, so a record has rows.
            (partition, Effect::Rows(shape.ok_or(record::RecordError::NoRows)?))
        }
        LogRecord::Resolved { partition, hlc } => (partition, Effect::Resolved(hlc)),
        LogRecord::Applied { partition, hlc } => (partition, Effect::Applied(hlc)),
        LogRecord::Epoch { partition, epoch } => (partition, Effect::Epoch(epoch)),
    };
    Ok(Entry { partition, payload_at: frame.payload_at, payload_len: frame.payload.len() as u32, effect })
}

/// Applies one record's entry (record `seq` of `segment`) to the index.
fn replay(index: &mut Index, segment: u64, file: &Arc<File>, seq: u64, entry: Entry) {
    let Entry { partition, payload_at, payload_len, effect } = entry;
    match effect {
        Effect::Rows(shape) => {
            let place = (payload_at, payload_len as usize);
            index.add_run(&partition, Run::new(seq, segment, file.clone(), &partition, place, shape));
        }
        Effect::Resolved(hlc) => {
            index.raise_resolved(&partition, hlc);
        }
        Effect::Applied(hlc) => {
            index.raise_applied(&partition, hlc);
        }
        Effect::Epoch(epoch) => index.raise_epoch(&partition, epoch),
    }
}

/// Cuts a segment off at `len` durably.
fn cut(path: &Path, len: u64) -> std::io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(len)?;
    file.sync_all()
}
