//! Opening a journal: the index is rebuilt from each closed segment's summary
//! ([`super::summary`]), and from the records themselves for the segment being written and for any
//! segment without a usable summary. Segments read here are checked as they are read (checksums,
//! consecutive sequence numbers); those known from their summaries are checked in the background
//! ([`super::verify`]) before their rows are read.
//!
//! The rules, in the order applied. `start` and `mark` are the log start and the durable mark of
//! [`super::bounds`]; both are exact (written before what they cover is deleted or acknowledged).
//!
//! 1. **No bounds file** while segments exist: refused (the checks below would be blind). The one
//!    exception is a single first segment no longer than its magic, which holds nothing: what an
//!    earlier version left when the power went while it created the very first segment.
//! 2. **Segments below `start`** were deleted once applied, their unlinks not yet durable: their
//!    deletion is finished. **The segment at `start` missing**: refused.
//! 3. **A gap** between segments, **damage in a closed segment**, a segment file numbered 0 or
//!    with an unreadable magic that may hold acknowledged records: refused, naming the file.
//! 4. **The last segment's end**: whole records up to at least `mark` must be there (else
//!    refused: acknowledged records are missing). What follows the last whole record was never
//!    acknowledged (it is past the mark) and is cut off, with a warning.
//! 5. **A last segment with an unreadable magic and nothing acknowledged in it** (it starts past
//!    `mark`, and its marks are copies of records in the segments before it) is renamed aside
//!    (`*.damaged`), with an error in the log; one no longer than its magic is removed. A file is
//!    never deleted at recovery otherwise.
//! 6. The last segment's records and the directory are synced before the mark is raised to cover
//!    them (they may have been in the page cache only, written by a process that crashed before
//!    its sync).
//! 7. After a repair at the end (4 or 5), and after a version-1 bounds file, the next write
//!    starts a new segment with every partition's marks, so no mark lives only in a segment that
//!    was cut (or that an earlier version created in place, a crash possibly cutting its marks).
//!
//! A bounds file of version 1 (earlier versions: a mark that may lag, no log start) skips the log
//! start check once and refuses in case 5; it is replaced by version 2 at this open.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::OpenError;
use super::bounds::{self, Bounds, BoundsFile, Found};
use super::group::create_segment;
use super::index::{Index, Run, RunShape, Segment};
use super::segment::{self, End, Frame};
use super::summary::{self, Effect, Entry};
use super::verify::Check;
use super::writer::Active;
use crate::record::{self, LogRecord};

pub(super) struct Recovered {
    pub index: Index,
    pub active: Active,
    pub next_seq: u64,
    pub disk_bytes: u64,
    /// Segments known from their summaries, to check in the background.
    pub checks: Vec<Check>,
    /// The end was repaired (cut off or set aside): the next write starts a new segment.
    pub repaired: bool,
}

/// Files an earlier, sled-based journal left in its directory.
const SLED_FILES: [&str; 2] = ["db", "conf"];

/// What the bounds file says, as recovery uses it.
struct Known {
    /// `None` for a version-1 file.
    start: Option<u64>,
    mark: u64,
}

/// Opens what `dir` holds by the rules above; returns the index and the segment to append to, and
/// the bounds file with the bounds this open established.
pub(super) fn recover(dir: &Path) -> Result<(Recovered, BoundsFile), OpenError> {
    let corrupt = |detail: String| OpenError::Corrupt { dir: dir.to_owned(), detail };
    let io_err = |source| OpenError::Io { dir: dir.to_owned(), source };
    if let Some(old) = SLED_FILES.iter().map(|f| dir.join(f)).find(|p| p.exists()) {
        return Err(OpenError::OldFormat { dir: dir.to_owned(), file: old });
    }
    let found = bounds::read(dir).map_err(corrupt)?;
    let mut segments = list(dir)?;
    let known = match found {
        Found::Missing => return recover_without_bounds(dir, &segments),
        Found::Legacy { durable } => Known { start: None, mark: durable },
        Found::Exact { bounds, .. } => Known { start: Some(bounds.log_start), mark: bounds.durable },
    };
    if let Some(start) = known.start {
        finish_deletions(dir, &mut segments, start).map_err(io_err)?;
        if segments.first().is_some_and(|first| *first > start) {
            return Err(corrupt(format!(
                "{} is missing: the log starts at record {start} ({} says so), but {}; acknowledged records may be lost with it",
                dir.join(segment::file_name(start)).display(),
                dir.join(bounds::FILE_NAME).display(),
                segments.first().map_or(String::new(), |first| format!(
                    "the oldest segment there is {}",
                    segment::file_name(*first)
                ))
            )));
        }
    }
    remove_strays(dir, &segments).map_err(io_err)?;
    if segments.is_empty() && known.mark > 0 {
        return Err(OpenError::Missing { dir: dir.to_owned(), durable: known.mark, found: 0 });
    }
    if segments.is_empty() {
        let empty = start_empty(dir, known.start.unwrap_or(1)).map_err(io_err)?;
        let bounds = Bounds { log_start: empty.active.first_seq, durable: known.mark };
        return finish(dir, found, empty, bounds);
    }
    let mut recovered = match read_segments(dir, &segments, &known)? {
        Scanned::Log(recovered) => recovered,
        Scanned::SetAside(path) => {
            set_aside(dir, &path).map_err(io_err)?;
            let (mut again, bounds) = recover(dir)?;
            again.repaired = true;
            return Ok((again, bounds));
        }
    };
    let found_end = recovered.next_seq - 1;
    if found_end < known.mark {
        return Err(OpenError::Missing { dir: dir.to_owned(), durable: known.mark, found: found_end });
    }
    // Rule 6: records past the mark may be in the page cache only, and the last segment's name
    // too (a crash between its rename and the directory's sync).
    recovered.active.file.sync_data().map_err(io_err)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err)?;
    // Rule 7: an earlier version created segments in place, so the last one's marks may be
    // incomplete; a new segment carries them all before older ones can be deleted.
    recovered.repaired |= known.start.is_none();
    let bounds = Bounds { log_start: segments[0], durable: found_end };
    finish(dir, found, recovered, bounds)
}

/// Writes the bounds the open established (a new file for a missing or version-1 one).
fn finish(
    dir: &Path,
    found: Found,
    recovered: Recovered,
    bounds: Bounds,
) -> Result<(Recovered, BoundsFile), OpenError> {
    let io_err = |source| OpenError::Io { dir: dir.to_owned(), source };
    let file = match found {
        Found::Exact { bounds: old, generation } => {
            let mut file = BoundsFile::open(dir, old, generation).map_err(io_err)?;
            file.write(bounds).map_err(io_err)?;
            file
        }
        Found::Legacy { .. } | Found::Missing => BoundsFile::create(dir, bounds).map_err(io_err)?,
    };
    Ok((recovered, file))
}

/// Rule 1.
fn recover_without_bounds(dir: &Path, segments: &[u64]) -> Result<(Recovered, BoundsFile), OpenError> {
    let io_err = |source| OpenError::Io { dir: dir.to_owned(), source };
    if let [1] = segments {
        let path = dir.join(segment::file_name(1));
        if std::fs::metadata(&path).map_err(io_err)?.len() <= segment::MAGIC.len() as u64 {
            tracing::warn!(file = %path.display(), "removing an empty first journal segment left by a crash while it was created");
            std::fs::remove_file(&path).map_err(io_err)?;
            return recover_without_bounds(dir, &[]);
        }
    }
    if !segments.is_empty() {
        return Err(OpenError::Corrupt {
            dir: dir.to_owned(),
            detail: format!(
                "{} is missing while segments exist: it says where the log starts and how far it was acknowledged, and without it missing segments or records cannot be told",
                dir.join(bounds::FILE_NAME).display()
            ),
        });
    }
    remove_strays(dir, segments).map_err(io_err)?;
    // The bounds first, then the first segment: a journal with a segment never lacks its bounds.
    let file = BoundsFile::create(dir, Bounds { log_start: 1, durable: 0 }).map_err(io_err)?;
    Ok((start_empty(dir, 1).map_err(io_err)?, file))
}

/// Rule 2: segments below the log start are dead; their deletion is finished durably.
fn finish_deletions(dir: &Path, segments: &mut Vec<u64>, start: u64) -> std::io::Result<()> {
    let dead: Vec<u64> = segments.iter().copied().take_while(|s| *s < start).collect();
    if dead.is_empty() {
        return Ok(());
    }
    for first_seq in &dead {
        tracing::info!(segment = first_seq, "finishing the deletion of an applied journal segment");
        std::fs::remove_file(dir.join(segment::file_name(*first_seq)))?;
        remove_if_there(&summary::path(dir, *first_seq))?;
    }
    File::open(dir)?.sync_all()?;
    segments.drain(..dead.len());
    Ok(())
}

/// What reading the segments gave: the index and the last segment, or a last segment to set
/// aside first (rule 5).
enum Scanned {
    Log(Recovered),
    SetAside(PathBuf),
}

fn read_segments(dir: &Path, segments: &[u64], known: &Known) -> Result<Scanned, OpenError> {
    let corrupt = |detail: String| OpenError::Corrupt { dir: dir.to_owned(), detail };
    let io_err = |source| OpenError::Io { dir: dir.to_owned(), source };
    let mut index = Index::default();
    let mut next_seq = segments[0];
    let (mut disk_bytes, mut checks, mut repaired) = (0u64, Vec::new(), false);
    let mut active_summary = summary::Builder::default();
    let last_first = *segments.last().expect("not empty");
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
        let read = Arc::new(File::open(&path).map_err(io_err)?);
        index.segments.insert(first_seq, Segment { file: read.clone(), live_runs: 0 });
        if first_seq != last_first {
            let len = read.metadata().map_err(io_err)?.len();
            if let Some(known) = summary::load(dir, first_seq, len) {
                let records = replay_summary(&mut index, first_seq, &read, known.entries);
                checks.push(Check { first_seq, path, records });
                next_seq = known.end_seq;
                disk_bytes += len;
                continue;
            }
        }
        active_summary = summary::Builder::default();
        let end = scan(&path, &read, &mut index, &mut next_seq, &mut active_summary)?;
        let last = first_seq == last_first;
        let len = match end {
            Some(End::Clean) => read.metadata().map_err(io_err)?.len(),
            Some(End::Torn { at, why }) if last => {
                if next_seq - 1 < known.mark {
                    return Err(corrupt(format!(
                        "{} is damaged at byte {at}: {why}; records up to {} were acknowledged as durable, and only those up to {} come before it",
                        path.display(),
                        known.mark,
                        next_seq - 1
                    )));
                }
                tracing::warn!(
                    file = %path.display(), offset = at,
                    "cutting off the journal's end after record {}: {why} (past the durable mark {}, so never acknowledged: a write a crash cut short)",
                    next_seq - 1, known.mark
                );
                cut(&path, at).map_err(io_err)?;
                repaired = true;
                at
            }
            Some(End::Torn { at, why }) => {
                return Err(corrupt(format!("{} is damaged at byte {at}: {why}", path.display())));
            }
            // Rule 5: past the mark, so nothing in it was acknowledged; with a version-1 mark
            // (which may lag) only if it is empty.
            None if last && first_seq > known.mark && (known.start.is_some() || no_longer_than_magic(&read)) => {
                return Ok(Scanned::SetAside(path));
            }
            None => {
                return Err(corrupt(format!(
                    "{} is not a wharf journal segment (its first bytes are not the segment magic){}",
                    path.display(),
                    if last { "; records in it may have been acknowledged" } else { "" }
                )));
            }
        };
        disk_bytes += len;
    }
    let path = dir.join(segment::file_name(last_first));
    let file = OpenOptions::new().append(true).open(&path).map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    let active = Active { first_seq: last_first, file, len, summary: active_summary };
    Ok(Scanned::Log(Recovered { index, active, next_seq, disk_bytes, checks, repaired }))
}

fn no_longer_than_magic(file: &File) -> bool {
    file.metadata().is_ok_and(|m| m.len() <= segment::MAGIC.len() as u64)
}

/// Rule 5: a last segment that holds nothing acknowledged and cannot be read.
fn set_aside(dir: &Path, path: &Path) -> std::io::Result<()> {
    if std::fs::metadata(path)?.len() <= segment::MAGIC.len() as u64 {
        tracing::warn!(file = %path.display(), "removing a journal segment no longer than its magic (nothing in it)");
        std::fs::remove_file(path)?;
    } else {
        let aside = path.with_extension(format!("wal.damaged-{}", unix_seconds()));
        tracing::error!(
            file = %path.display(), aside = %aside.display(),
            "the last journal segment's magic is damaged; it starts past the durable mark, so nothing in it was acknowledged: set aside for inspection, the journal goes on without it"
        );
        std::fs::rename(path, &aside)?;
    }
    File::open(dir)?.sync_all()
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Puts a summary's entries in the index; returns where each record's payload is, for its check.
fn replay_summary(index: &mut Index, first_seq: u64, file: &Arc<File>, entries: Vec<Entry>) -> Vec<(u64, u32)> {
    let records = entries.iter().map(|e| (e.payload_at, e.payload_len)).collect();
    for (seq, entry) in (first_seq..).zip(entries) {
        replay(index, first_seq, file, seq, entry);
    }
    records
}

/// Removes what is never part of the log: summaries without a segment (deleted once applied),
/// the summary of the segment being written (it may have been closed once, before a crash cut
/// its successor short), summaries and segments a crash left under their temporary names. A
/// failure is logged, not fatal: none of them is read.
fn remove_strays(dir: &Path, segments: &[u64]) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let stray = match summary::parse_file_name(name) {
            Some(seq) => segments.binary_search(&seq).is_err() || segments.last() == Some(&seq),
            None => name.ends_with(".sum.tmp") || name.ends_with(".wal.tmp") || name == bounds::TEMPORARY_NAME,
        };
        if stray && let Err(error) = std::fs::remove_file(&path) {
            tracing::warn!(file = %path.display(), %error, "cannot remove a stray journal file");
        }
    }
    Ok(())
}

/// Segment files in the directory, by first sequence number.
fn list(dir: &Path) -> Result<Vec<u64>, OpenError> {
    let io_err = |source| OpenError::Io { dir: dir.to_owned(), source };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let name = entry.map_err(io_err)?.file_name();
        match name.to_str().and_then(segment::parse_file_name) {
            Some(0) => {
                return Err(OpenError::Corrupt {
                    dir: dir.to_owned(),
                    detail: format!("{} is not a journal segment name (records start at 1)", dir.join(name).display()),
                });
            }
            Some(seq) => out.push(seq),
            None => {}
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn start_empty(dir: &Path, first_seq: u64) -> std::io::Result<Recovered> {
    let (file, read) = create_segment(dir, first_seq, segment::MAGIC)?;
    let mut index = Index::default();
    index.segments.insert(first_seq, Segment { file: Arc::new(read), live_runs: 0 });
    let len = segment::MAGIC.len() as u64;
    let active = Active { first_seq, file, len, summary: summary::Builder::default() };
    Ok(Recovered { index, active, next_seq: first_seq, disk_bytes: len, checks: Vec::new(), repaired: false })
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
    // Covers a power loss after the cut: the bytes past `len` must not come back under the
    // sequence numbers the next records take.
    file.sync_all()
}

fn remove_if_there(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}
