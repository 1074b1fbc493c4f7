//! Large values are stored as a head entry followed by parts of at most [`PART`] bytes.
//!
//! sled writes any item larger than a quarter of its segment (a tree node holding a large value
//! included) to a blob file of its own, without syncing it, while its own periodic and truncating
//! `fsync`s of the `db` file can make a log entry durable that points at that blob. After a power
//! cut such a journal does not open (found by `ingest/tests/power_cut.rs`). Keeping every sled
//! value small keeps every node under the threshold, so sled never writes blob files.
//!
//! A value of at most [`PART`] bytes is stored as it is (journal values start with a format
//! version byte, never with [`HEAD`] or [`PART_MARK`]). A larger one becomes:
//! - at `key`: `HEAD`, total length (`u64`), part count (`u32`), big-endian;
//! - at `key ++ 0x00 ++ i` (`u32`, big-endian) for each part `i`: `PART_MARK`, then the bytes.
//!
//! Part keys sort right after their head and before any other entry: log keys are fixed-length
//! and partition-tree keys end in a JSON array, which is never a prefix of another key. Parts
//! left behind (an overwrite with a smaller value, a compaction batch ending between a head and
//! its parts) are skipped by readers.

use sled::IVec;

/// Largest value stored in one entry. With sled's split at 16 entries per leaf and 8 MiB
/// segments (blob threshold 2 MiB), leaves stay near 1 MiB.
pub(super) const PART: usize = 60 << 10;
const HEAD: u8 = 0xFE;
const PART_MARK: u8 = 0xFD;
const HEAD_LEN: usize = 13;

/// Adds `key` → `value` to `batch`, split into parts when large.
pub(super) fn insert(batch: &mut sled::Batch, key: &[u8], value: &[u8]) {
    if value.len() <= PART {
        batch.insert(key, value);
        return;
    }
    let count = value.len().div_ceil(PART) as u32;
    let mut head = Vec::with_capacity(HEAD_LEN);
    head.push(HEAD);
    head.extend_from_slice(&(value.len() as u64).to_be_bytes());
    head.extend_from_slice(&count.to_be_bytes());
    batch.insert(key, head);
    for (i, chunk) in value.chunks(PART).enumerate() {
        let mut part = Vec::with_capacity(1 + chunk.len());
        part.push(PART_MARK);
        part.extend_from_slice(chunk);
        batch.insert(part_key(key, i as u32), part);
    }
}

fn part_key(key: &[u8], i: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 5);
    out.extend_from_slice(key);
    out.push(0);
    out.extend_from_slice(&i.to_be_bytes());
    out
}

/// Whole entries from an iterator over sled entries: heads joined with their parts, stray parts
/// skipped.
pub(super) struct Joined<I> {
    inner: I,
}

pub(super) fn joined<I: Iterator<Item = sled::Result<(IVec, IVec)>>>(inner: I) -> Joined<I> {
    Joined { inner }
}

impl<I: Iterator<Item = sled::Result<(IVec, IVec)>>> Iterator for Joined<I> {
    type Item = sled::Result<(IVec, IVec)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (key, value) = match self.inner.next()? {
                Ok(entry) => entry,
                Err(e) => return Some(Err(e)),
            };
            match value.first() {
                Some(&PART_MARK) => continue,
                Some(&HEAD) => return Some(self.join(key, &value)),
                _ => return Some(Ok((key, value))),
            }
        }
    }
}

impl<I: Iterator<Item = sled::Result<(IVec, IVec)>>> Joined<I> {
    fn join(&mut self, key: IVec, head: &[u8]) -> sled::Result<(IVec, IVec)> {
        let damaged = |what: String| sled::Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, what));
        if head.len() != HEAD_LEN {
            return Err(damaged(format!("journal entry {key:?}: head of {} bytes", head.len())));
        }
        let total = u64::from_be_bytes(head[1..9].try_into().expect("8 bytes")) as usize;
        let count = u32::from_be_bytes(head[9..13].try_into().expect("4 bytes"));
        let mut value = Vec::with_capacity(total.min(1 << 30));
        for i in 0..count {
            match self.inner.next() {
                Some(Ok((k, v))) if k.as_ref() == part_key(&key, i).as_slice() && v.first() == Some(&PART_MARK) => {
                    value.extend_from_slice(&v[1..]);
                }
                Some(Err(e)) => return Err(e),
                _ => return Err(damaged(format!("journal entry {key:?}: part {i} of {count} is missing"))),
            }
        }
        if value.len() != total {
            return Err(damaged(format!("journal entry {key:?}: {} bytes in parts, head says {total}", value.len())));
        }
        Ok((key, IVec::from(value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, sled::Tree) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).temporary(true).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        (dir, tree)
    }

    fn all(tree: &sled::Tree) -> Vec<(Vec<u8>, Vec<u8>)> {
        joined(tree.iter()).map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap()).collect()
    }

    #[test]
    fn large_values_round_trip_between_small_ones() {
        let (_dir, tree) = tree();
        let big: Vec<u8> = (0..(3 * PART + 17)).map(|i| (i % 251) as u8 + 1).collect();
        let mut batch = sled::Batch::default();
        insert(&mut batch, b"a]", b"\x01small");
        insert(&mut batch, b"b]", &big);
        insert(&mut batch, b"c]", b"\x01after");
        tree.apply_batch(batch).unwrap();
        assert_eq!(tree.len(), 3 + 4, "one head and four parts");
        let got = all(&tree);
        assert_eq!(
            got,
            vec![
                (b"a]".to_vec(), b"\x01small".to_vec()),
                (b"b]".to_vec(), big),
                (b"c]".to_vec(), b"\x01after".to_vec())
            ]
        );
    }

    #[test]
    fn stray_parts_are_skipped_and_a_missing_part_is_an_error() {
        let (_dir, tree) = tree();
        let big = vec![1u8; 2 * PART + 1];
        let mut batch = sled::Batch::default();
        insert(&mut batch, b"k]", &big);
        tree.apply_batch(batch).unwrap();
        // Overwritten by a small value: the old parts stay behind and are skipped.
        let mut batch = sled::Batch::default();
        insert(&mut batch, b"k]", b"\x01new");
        tree.apply_batch(batch).unwrap();
        assert_eq!(all(&tree), vec![(b"k]".to_vec(), b"\x01new".to_vec())]);

        let mut batch = sled::Batch::default();
        insert(&mut batch, b"m]", &big);
        tree.apply_batch(batch).unwrap();
        tree.remove(part_key(b"m]", 1)).unwrap();
        let err = joined(tree.range(b"m]".to_vec()..)).next().unwrap().unwrap_err();
        assert!(err.to_string().contains("part 1 of 3 is missing"), "{err}");
    }
}
