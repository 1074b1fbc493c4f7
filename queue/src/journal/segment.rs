//! Segment files, the journal's data: `<first sequence number, 20 digits>.wal`, each an 8-byte
//! magic followed by framed records.
//!
//! Frame (all integers big-endian):
//!
//! | bytes | field |
//! | --- | --- |
//! | 4 | payload length `n` (at least 1) |
//! | 4 | CRC-32 of the next 8 + n bytes |
//! | 8 | sequence number: one more than the record before it, across segments |
//! | n | payload: a [`crate::record`] log record |
//!
//! A segment holds records in sequence order; the next segment is named after the sequence number
//! of its first record, so a missing segment shows as a gap.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

/// The first bytes of every segment file.
pub(super) const MAGIC: &[u8; 8] = b"WHARFJ1\n";
pub(super) const FRAME_HEADER: u64 = 16;
/// Larger payloads are treated as damage: no request body comes near it.
pub(super) const MAX_PAYLOAD: u32 = 1 << 30;
const EXTENSION: &str = ".wal";

pub(super) fn file_name(first_seq: u64) -> String {
    format!("{first_seq:020}{EXTENSION}")
}

/// The first sequence number a segment file's name carries, if it is a segment file.
pub(super) fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(EXTENSION)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok())?
}

/// Appends one framed record to `out`.
pub(super) fn frame(out: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    out.extend_from_slice(&header(seq, payload));
    out.extend_from_slice(payload);
}

/// The frame header of record `seq` holding `payload`.
pub(super) fn header(seq: u64, payload: &[u8]) -> [u8; FRAME_HEADER as usize] {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&seq.to_be_bytes());
    crc.update(payload);
    let mut out = [0u8; FRAME_HEADER as usize];
    out[..4].copy_from_slice(&(payload.len() as u32).to_be_bytes());
    out[4..8].copy_from_slice(&crc.finalize().to_be_bytes());
    out[8..].copy_from_slice(&seq.to_be_bytes());
    out
}

/// One record read back from a segment.
pub(super) struct Frame {
    pub seq: u64,
    /// Offset of the payload in the segment file.
    pub payload_at: u64,
    pub payload: Vec<u8>,
}

/// How a segment's scan ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum End {
    /// Every byte belongs to a whole, intact record.
    Clean,
    /// From `at` on the bytes are not a whole record with a valid checksum: a write cut short by a
    /// crash, or damage.
    Torn { at: u64, why: String },
}

/// Reads every intact record of the segment at `path`, in order, handing each to `visit`; stops at
/// the first that is not. `Ok(None)` if the file does not start with [`MAGIC`].
pub(super) fn scan<E>(
    path: &Path,
    mut visit: impl FnMut(Frame) -> Result<(), E>,
) -> std::io::Result<Result<Option<End>, E>> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut magic = [0u8; 8];
    if len < MAGIC.len() as u64 || reader.read_exact(&mut magic).is_err() || &magic != MAGIC {
        return Ok(Ok(None));
    }
    let mut at = MAGIC.len() as u64;
    loop {
        if at == len {
            return Ok(Ok(Some(End::Clean)));
        }
        let torn = |why: String| Ok(Ok(Some(End::Torn { at, why })));
        if len - at < FRAME_HEADER {
            return torn(format!("{} bytes at the end are less than a record header", len - at));
        }
        let mut header = [0u8; FRAME_HEADER as usize];
        reader.read_exact(&mut header)?;
        let size = u32::from_be_bytes(header[..4].try_into().expect("4 bytes"));
        let crc = u32::from_be_bytes(header[4..8].try_into().expect("4 bytes"));
        let seq = u64::from_be_bytes(header[8..].try_into().expect("8 bytes"));
        if size == 0 || size > MAX_PAYLOAD || u64::from(size) > len - at - FRAME_HEADER {
            return torn(format!("a record claims {size} bytes"));
        }
        let mut payload = vec![0u8; size as usize];
        reader.read_exact(&mut payload)?;
        let mut check = crc32fast::Hasher::new();
        check.update(&header[8..]);
        check.update(&payload);
        if check.finalize() != crc {
            return torn("a record's checksum does not match".into());
        }
        let payload_at = at + FRAME_HEADER;
        at = payload_at + u64::from(size);
        if let Err(e) = visit(Frame { seq, payload_at, payload }) {
            return Ok(Err(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, records: &[(u64, &[u8])]) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        for (seq, payload) in records {
            frame(&mut bytes, *seq, payload);
        }
        std::fs::write(path, &bytes).unwrap();
        bytes
    }

    /// Sequence number, payload offset and payload of each record read.
    type Seen = Vec<(u64, u64, Vec<u8>)>;

    fn read(path: &Path) -> (Seen, Option<End>) {
        let mut seen = Vec::new();
        let end = scan::<()>(path, |f| {
            seen.push((f.seq, f.payload_at, f.payload));
            Ok(())
        })
        .unwrap()
        .unwrap();
        (seen, end)
    }

    #[test]
    fn names_round_trip_and_other_files_are_not_segments() {
        assert_eq!(file_name(42), "00000000000000000042.wal");
        assert_eq!(parse_file_name(&file_name(42)), Some(42));
        assert_eq!(parse_file_name("wharf-durable-seq"), None);
        assert_eq!(parse_file_name("42.wal"), None);
    }

    #[test]
    fn records_round_trip_and_damage_ends_the_scan_where_it_starts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(1));
        let bytes = write(&path, &[(1, b"one"), (2, b"two"), (3, b"three")]);
        let (seen, end) = read(&path);
        assert_eq!(end, Some(End::Clean));
        assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(seen[1].1, 8 + 16 + 3 + 16);
        assert_eq!(seen[2].2, b"three");

        let second = 8 + 16 + 3;
        let mut flipped = bytes.clone();
        flipped[second + 16] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        let (seen, end) = read(&path);
        assert_eq!(seen.len(), 1);
        assert!(matches!(end, Some(End::Torn { at, .. }) if at == second as u64), "{end:?}");

        std::fs::write(&path, &bytes[..bytes.len() - 2]).unwrap();
        let (seen, end) = read(&path);
        assert_eq!(seen.len(), 2);
        assert!(matches!(end, Some(End::Torn { .. })), "{end:?}");

        std::fs::write(&path, b"WHARF").unwrap();
        assert_eq!(read(&path).1, None);
    }
}
