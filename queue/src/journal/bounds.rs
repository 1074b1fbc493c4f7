//! The journal's durable bounds, kept in `wharf-durable-seq`: where the log starts (the first
//! sequence number of the oldest segment that must exist) and the highest sequence number
//! acknowledged as durable (the mark).
//!
//! The writer thread writes them itself, so both are exact:
//! - the mark, after a group's `fdatasync` and **before** the group is acknowledged, so every
//!   acknowledged record is at or below it, and a record past it was never acknowledged;
//! - the log start, **before** any segment is deleted, so a segment missing at the start of the
//!   log is refused like one missing in the middle, and a segment below the start (deleted, its
//!   unlink not yet durable) is known to be dead.
//!
//! File layout (version 2): two copies of 512 bytes each (different sectors). A copy is `WHWM`,
//! the version `u32` (2), a generation `u64`, the log start `u64`, the mark `u64` and a CRC-32 of
//! those 32 bytes, all big-endian. A write goes to the copy the newest one is not in, then
//! `fdatasync`; the readable copy with the higher generation wins. A write torn by a power cut
//! leaves the previous copy, whose values were true when the torn write began.
//!
//! Version 1 (16 bytes: `WHWM`, 1, the mark), written by earlier versions by a thread of its own
//! after the acknowledgement, is read once (its mark may lag, and it has no log start) and replaced
//! by version 2 at the open.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

pub(super) const FILE_NAME: &str = "wharf-durable-seq";
/// Where a new file is written before it is renamed into place.
pub(super) const TEMPORARY_NAME: &str = "wharf-durable-seq.tmp";
const MAGIC: &[u8; 4] = b"WHWM";
const VERSION: u32 = 2;
const COPY: u64 = 512;
const COPY_LEN: usize = 36;

/// What must be on disk: the log's first record and every record up to `durable`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Bounds {
    pub log_start: u64,
    pub durable: u64,
}

/// What the file held at the open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Found {
    /// No file: a new journal (or one whose file was moved away).
    Missing,
    /// Version 1: a mark that may lag, no log start.
    Legacy {
        durable: u64,
    },
    Exact {
        bounds: Bounds,
        generation: u64,
    },
}

/// Reads the file; `Err` with the reason if it is damaged.
pub(super) fn read(dir: &Path) -> Result<Found, String> {
    let path = dir.join(FILE_NAME);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Missing),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    if bytes.len() == 16 && &bytes[..4] == MAGIC && bytes[4..8] == 1u32.to_be_bytes() {
        return Ok(Found::Legacy { durable: u64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes")) });
    }
    let copies = [0, COPY as usize].map(|at| bytes.get(at..at + COPY_LEN).and_then(decode));
    match copies.into_iter().flatten().max_by_key(|(_, generation)| *generation) {
        Some((bounds, generation)) if bytes.len() == 2 * COPY as usize => Ok(Found::Exact { bounds, generation }),
        _ => Err(format!(
            "{} is damaged (neither copy of the journal's bounds checks out); it says where the log starts and how far it was acknowledged",
            path.display()
        )),
    }
}

fn decode(copy: &[u8]) -> Option<(Bounds, u64)> {
    let (body, crc) = copy.split_at(32);
    if &body[..4] != MAGIC || body[4..8] != VERSION.to_be_bytes() || crc32fast::hash(body).to_be_bytes() != crc {
        return None;
    }
    let u64_at = |at: usize| u64::from_be_bytes(body[at..at + 8].try_into().expect("8 bytes"));
    Some((Bounds { log_start: u64_at(16), durable: u64_at(24) }, u64_at(8)))
}

fn encode(bounds: Bounds, generation: u64) -> [u8; COPY_LEN] {
    let mut out = [0u8; COPY_LEN];
    out[..4].copy_from_slice(MAGIC);
    out[4..8].copy_from_slice(&VERSION.to_be_bytes());
    out[8..16].copy_from_slice(&generation.to_be_bytes());
    out[16..24].copy_from_slice(&bounds.log_start.to_be_bytes());
    out[24..32].copy_from_slice(&bounds.durable.to_be_bytes());
    let crc = crc32fast::hash(&out[..32]);
    out[32..].copy_from_slice(&crc.to_be_bytes());
    out
}

/// The open file; only the writer thread writes it.
pub(super) struct BoundsFile {
    file: File,
    generation: u64,
    written: Bounds,
}

impl BoundsFile {
    /// Writes a new file under a temporary name, syncs it, renames it into place and syncs the
    /// directory: a crash leaves the old file or the new one, never a part of either.
    pub fn create(dir: &Path, bounds: Bounds) -> std::io::Result<BoundsFile> {
        let path = dir.join(FILE_NAME);
        let temporary = dir.join(TEMPORARY_NAME);
        let mut bytes = vec![0u8; 2 * COPY as usize];
        // Generation g lives in copy g % 2.
        bytes[COPY as usize..COPY as usize + COPY_LEN].copy_from_slice(&encode(bounds, 1));
        let file = super::dirs::private_file().create(true).truncate(true).read(true).write(true).open(&temporary)?;
        file.write_all_at(&bytes, 0)?;
        // Covers a power loss after the rename: the new name must not point at unwritten bytes.
        file.sync_all()?;
        std::fs::rename(&temporary, &path)?;
        // Covers a power loss right after: the rename (and so the file) must survive.
        File::open(dir)?.sync_all()?;
        Ok(BoundsFile { file, generation: 1, written: bounds })
    }

    /// The existing version-2 file, written in place from now on.
    pub fn open(dir: &Path, bounds: Bounds, generation: u64) -> std::io::Result<BoundsFile> {
        let file = OpenOptions::new().read(true).write(true).open(dir.join(FILE_NAME))?;
        Ok(BoundsFile { file, generation, written: bounds })
    }

    pub fn written(&self) -> Bounds {
        self.written
    }

    /// Writes `bounds` over the older copy and syncs it; the bounds only move forward.
    pub fn write(&mut self, bounds: Bounds) -> std::io::Result<()> {
        debug_assert!(bounds.log_start >= self.written.log_start && bounds.durable >= self.written.durable);
        if bounds == self.written {
            return Ok(());
        }
        let generation = self.generation + 1;
        self.file.write_all_at(&encode(bounds, generation), (generation % 2) * COPY)?;
        // Covers a power loss after the write: an acknowledged record must never be past the
        // mark, and no segment may be deleted before the log start that leaves it out.
        self.file.sync_data()?;
        self.generation = generation;
        self.written = bounds;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_readable_copy_wins_and_a_torn_write_leaves_the_previous_one() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()), Ok(Found::Missing));
        let first = Bounds { log_start: 1, durable: 0 };
        let mut file = BoundsFile::create(dir.path(), first).unwrap();
        assert_eq!(read(dir.path()), Ok(Found::Exact { bounds: first, generation: 1 }));
        let second = Bounds { log_start: 1, durable: 7 };
        file.write(second).unwrap();
        let third = Bounds { log_start: 5, durable: 9 };
        file.write(third).unwrap();
        assert_eq!(read(dir.path()), Ok(Found::Exact { bounds: third, generation: 3 }));
        let path = dir.path().join(FILE_NAME);
        let pristine = std::fs::read(&path).unwrap();
        // Generation 3 is in the second copy: tearing it leaves generation 2.
        for at in COPY as usize..COPY as usize + COPY_LEN {
            let mut torn = pristine.clone();
            torn[at] ^= 0x01;
            std::fs::write(&path, &torn).unwrap();
            assert_eq!(read(dir.path()), Ok(Found::Exact { bounds: second, generation: 2 }), "byte {at}");
        }
        let mut both = pristine.clone();
        both[3] ^= 1;
        both[COPY as usize + 3] ^= 1;
        std::fs::write(&path, &both).unwrap();
        assert!(read(dir.path()).unwrap_err().contains("is damaged"));
        std::fs::write(&path, &pristine[..600]).unwrap();
        assert!(read(dir.path()).is_err(), "a cut-short file");
    }

    #[test]
    fn a_version_1_mark_is_read_as_a_mark_that_may_lag() {
        let dir = tempfile::tempdir().unwrap();
        let mut old = MAGIC.to_vec();
        old.extend_from_slice(&1u32.to_be_bytes());
        old.extend_from_slice(&42u64.to_be_bytes());
        std::fs::write(dir.path().join(FILE_NAME), &old).unwrap();
        assert_eq!(read(dir.path()), Ok(Found::Legacy { durable: 42 }));
        BoundsFile::create(dir.path(), Bounds { log_start: 3, durable: 42 }).unwrap();
        assert_eq!(read(dir.path()), Ok(Found::Exact { bounds: Bounds { log_start: 3, durable: 42 }, generation: 1 }));
    }
}
