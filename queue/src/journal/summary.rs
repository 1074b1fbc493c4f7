//! Segment summaries: beside each closed segment, `<first sequence number>.sum` lists what its
//! records put in the index (one entry per record: where its payload is, its partition, and the
//! shape of its rows or the mark it sets). Opening a journal reads the summaries instead of the
//! segments, so restart time does not grow with the rows waiting; the segments themselves are
//! then checked in the background ([`super::verify`]) before any of their rows is read.
//!
//! A summary is written when its segment is closed, without a sync: a summary that is missing,
//! cut short or damaged (its CRC-32 does not match) or that describes another length of the file
//! is ignored, and the segment is read instead. The segment being written never has one.
//!
//! File (integers big-endian): magic, first sequence number (8), sequence number after the last
//! record (8), segment length (8), entry count (4), the entries, CRC-32 of all bytes before it (4).
//! Entry: kind (1), payload offset (8), payload length (4), database and schema (2-byte length and
//! UTF-8 each), then for rows: lowest and highest timestamp (12 each), row count (4), table count (2) and per
//! table its name and a flag byte (1: upserts, 2: deletes); for resolved and applied marks: the
//! timestamp (12); for an epoch: the epoch (8).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::index::{RunShape, TableOps};
use crate::record::Partition;
use wharf_base::hlc::{HLC_BYTES, Hlc};

/// Version 2 added each run's row count; a version-1 summary is ignored (its segment is read).
const MAGIC: &[u8; 8] = b"WHARFS2\n";
const EXTENSION: &str = ".sum";
const HEADER: usize = 8 + 8 + 8 + 8 + 4;

const ROWS: u8 = 1;
const RESOLVED: u8 = 2;
const APPLIED: u8 = 3;
const EPOCH: u8 = 4;

pub(super) fn path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}{EXTENSION}"))
}

/// The first sequence number a summary file's name carries, if it is a summary file.
pub(super) fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(EXTENSION)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok())?
}

/// What one record does to the index.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Effect {
    Rows(RunShape),
    Resolved(Hlc),
    Applied(Hlc),
    Epoch(u64),
}

/// One record of a segment, as its summary lists it.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Entry {
    pub partition: Partition,
    pub payload_at: u64,
    pub payload_len: u32,
    pub effect: Effect,
}

/// The entries of the segment being written, encoded as they come.
#[derive(Default)]
pub(super) struct Builder {
    bytes: Vec<u8>,
    count: u32,
}

impl Builder {
    pub fn push(&mut self, partition: &Partition, payload_at: u64, payload_len: usize, effect: &Effect) {
        let out = &mut self.bytes;
        let kind = match effect {
            Effect::Rows(_) => ROWS,
            Effect::Resolved(_) => RESOLVED,
            Effect::Applied(_) => APPLIED,
            Effect::Epoch(_) => EPOCH,
        };
        out.push(kind);
        out.extend_from_slice(&payload_at.to_be_bytes());
        out.extend_from_slice(&(payload_len as u32).to_be_bytes());
        push_name(out, &partition.database);
        push_name(out, &partition.schema);
        match effect {
            Effect::Rows(shape) => {
                out.extend_from_slice(&shape.min.to_bytes());
                out.extend_from_slice(&shape.max.to_bytes());
                out.extend_from_slice(&shape.rows.to_be_bytes());
                out.extend_from_slice(&(shape.tables.len() as u16).to_be_bytes());
                for table in &shape.tables {
                    push_name(out, &table.name);
                    out.push(u8::from(table.upserts) | (u8::from(table.deletes) << 1));
                }
            }
            Effect::Resolved(hlc) | Effect::Applied(hlc) => out.extend_from_slice(&hlc.to_bytes()),
            Effect::Epoch(epoch) => out.extend_from_slice(&epoch.to_be_bytes()),
        }
        self.count += 1;
    }

    /// Writes the summary of the segment starting at `first_seq`, `segment_len` bytes long, whose
    /// records end before `end_seq` (written to a temporary name, then renamed; not synced).
    pub fn write(&self, dir: &Path, first_seq: u64, end_seq: u64, segment_len: u64) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(HEADER + self.bytes.len() + 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&first_seq.to_be_bytes());
        out.extend_from_slice(&end_seq.to_be_bytes());
        out.extend_from_slice(&segment_len.to_be_bytes());
        out.extend_from_slice(&self.count.to_be_bytes());
        out.extend_from_slice(&self.bytes);
        out.extend_from_slice(&crc32fast::hash(&out).to_be_bytes());
        let final_path = path(dir, first_seq);
        let temporary = final_path.with_extension("sum.tmp");
        super::dirs::private_file().write(true).create(true).truncate(true).open(&temporary)?.write_all(&out)?;
        std::fs::rename(&temporary, &final_path)
    }
}

fn push_name(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(&(name.len() as u16).to_be_bytes());
    out.extend_from_slice(name.as_bytes());
}

/// A segment's summary, read back.
#[derive(Debug)]
pub(super) struct Summary {
    /// The sequence number after the segment's last record.
    pub end_seq: u64,
    /// In sequence order, starting with the segment's first record.
    pub entries: Vec<Entry>,
}

/// The summary of the segment starting at `first_seq`, if there is one that checks out for a
/// segment of `segment_len` bytes; `None` otherwise (the segment is then read instead).
pub(super) fn load(dir: &Path, first_seq: u64, segment_len: u64) -> Option<Summary> {
    let bytes = std::fs::read(path(dir, first_seq)).ok()?;
    let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
    if crc32fast::hash(body).to_be_bytes() != crc || !body.starts_with(MAGIC) {
        return None;
    }
    let mut cursor = Cursor(&body[MAGIC.len()..]);
    if cursor.u64()? != first_seq {
        return None;
    }
    let end_seq = cursor.u64()?;
    if cursor.u64()? != segment_len {
        return None;
    }
    let count = cursor.u32()?;
    if end_seq.checked_sub(first_seq)? != u64::from(count) {
        return None;
    }
    let entries = (0..count).map(|_| cursor.entry()).collect::<Option<Vec<Entry>>>()?;
    cursor.0.is_empty().then_some(Summary { end_seq, entries })
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn hlc(&mut self) -> Option<Hlc> {
        Hlc::from_bytes(self.take(HLC_BYTES)?)
    }
    fn name(&mut self) -> Option<String> {
        let n = self.u16()? as usize;
        std::str::from_utf8(self.take(n)?).ok().map(str::to_owned)
    }

    fn entry(&mut self) -> Option<Entry> {
        let kind = self.u8()?;
        let payload_at = self.u64()?;
        let payload_len = self.u32()?;
        let partition = Partition::new(self.name()?, self.name()?);
        let effect = match kind {
            ROWS => {
                let (min, max, rows) = (self.hlc()?, self.hlc()?, self.u32()?);
                let tables = (0..self.u16()?)
                    .map(|_| {
                        let name = self.name()?;
                        let flags = self.u8()?;
                        Some(TableOps { name, upserts: flags & 1 != 0, deletes: flags & 2 != 0 })
                    })
                    .collect::<Option<Vec<_>>>()?;
                Effect::Rows(RunShape { min, max, rows, tables })
            }
            RESOLVED => Effect::Resolved(self.hlc()?),
            APPLIED => Effect::Applied(self.hlc()?),
            EPOCH => Effect::Epoch(self.u64()?),
            _ => return None,
        };
        Some(Entry { partition, payload_at, payload_len, effect })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<Entry> {
        let p = Partition::new("db", "s");
        let tables = vec![
            TableOps { name: "parent".into(), upserts: true, deletes: false },
            TableOps { name: "child".into(), upserts: true, deletes: true },
        ];
        vec![
            Entry { partition: p.clone(), payload_at: 24, payload_len: 30, effect: Effect::Resolved(Hlc::new(5, 1)) },
            Entry {
                partition: p.clone(),
                payload_at: 70,
                payload_len: 900,
                effect: Effect::Rows(RunShape { min: Hlc::new(6, 0), max: Hlc::new(9, 2), rows: 5, tables }),
            },
            Entry { partition: p.clone(), payload_at: 986, payload_len: 30, effect: Effect::Applied(Hlc::new(9, 2)) },
            Entry {
                partition: Partition::new("db", "other"),
                payload_at: 1032,
                payload_len: 26,
                effect: Effect::Epoch(7),
            },
        ]
    }

    #[test]
    fn a_summary_round_trips_and_any_damage_makes_it_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut builder = Builder::default();
        for e in entries() {
            builder.push(&e.partition, e.payload_at, e.payload_len as usize, &e.effect);
        }
        builder.write(dir.path(), 40, 44, 1058).unwrap();
        let read = load(dir.path(), 40, 1058).unwrap();
        assert_eq!((read.end_seq, read.entries), (44, entries()));
        assert!(load(dir.path(), 40, 1059).is_none(), "a segment of another length");
        assert!(load(dir.path(), 41, 1058).is_none(), "no summary of that segment");
        let file = path(dir.path(), 40);
        let pristine = std::fs::read(&file).unwrap();
        for at in 0..pristine.len() {
            let mut damaged = pristine.clone();
            damaged[at] ^= 0x04;
            std::fs::write(&file, &damaged).unwrap();
            assert!(load(dir.path(), 40, 1058).is_none(), "a flipped byte at {at} was not noticed");
        }
        std::fs::write(&file, &pristine[..pristine.len() - 1]).unwrap();
        assert!(load(dir.path(), 40, 1058).is_none());
    }

    #[test]
    fn names_round_trip() {
        let dir = Path::new("/j");
        assert_eq!(path(dir, 42), Path::new("/j/00000000000000000042.sum"));
        assert_eq!(parse_file_name("00000000000000000042.sum"), Some(42));
        assert_eq!(parse_file_name("00000000000000000042.sum.tmp"), None);
    }
}
