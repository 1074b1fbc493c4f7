//! A journal directory as one byte string, for the `journal_dir` fuzz target: recovery (the
//! bounds file, summaries, segment scans, the background check) over arbitrary directory contents.
//!
//! Image: entries of a kind byte (0 segment, 1 summary, 2 the bounds file, 3 a temporary or
//! set-aside file), a sequence number `u32` and a length `u16` (both little-endian), then that
//! many bytes of the file.

use std::path::Path;

use super::{ChunkLimits, Journal, JournalConfig, WindowCursor, bounds, segment, summary};
use wharf_base::hlc::Hlc;

const SEGMENT: u8 = 0;
const SUMMARY: u8 = 1;
const BOUNDS: u8 = 2;

/// Writes the files of `image` into `dir` (empty); a later file of the same name replaces one.
pub fn unpack(image: &[u8], dir: &Path) -> std::io::Result<()> {
    let mut rest = image;
    while rest.len() >= 7 {
        let (kind, seq) = (rest[0] % 4, u32::from_le_bytes(rest[1..5].try_into().expect("4 bytes")));
        let len = (u16::from_le_bytes(rest[5..7].try_into().expect("2 bytes")) as usize).min(rest.len() - 7);
        let bytes = &rest[7..7 + len];
        rest = &rest[7 + len..];
        let name = match kind {
            SEGMENT => segment::file_name(seq.into()),
            SUMMARY => summary::path(dir, seq.into()).file_name().expect("a name").to_string_lossy().into_owned(),
            BOUNDS => bounds::FILE_NAME.to_owned(),
            // 3: a temporary or set-aside file.
            _ => match seq % 3 {
                0 => format!("{}.tmp", segment::file_name(seq.into())),
                1 => bounds::TEMPORARY_NAME.to_owned(),
                _ => format!("{}.damaged-1", segment::file_name(seq.into())),
            },
        };
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}

/// The image of a journal directory's segments, summaries and bounds file (for seeds).
pub fn pack(dir: &Path) -> std::io::Result<Vec<u8>> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir)?.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned())).collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let (kind, seq) = if let Some(seq) = segment::parse_file_name(&name) {
            (SEGMENT, seq)
        } else if let Some(seq) = summary::parse_file_name(&name) {
            (SUMMARY, seq)
        } else if name == bounds::FILE_NAME {
            (BOUNDS, 0)
        } else {
            continue;
        };
        let bytes = std::fs::read(dir.join(&name))?;
        let (Ok(seq), Ok(len)) = (u32::try_from(seq), u16::try_from(bytes.len())) else { continue };
        out.push(kind);
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&bytes);
    }
    Ok(out)
}

/// Opens the journal in `dir` (unpacked from an image) and reads every partition's rows; panics
/// only if recovery breaks a rule whatever the contents: it never panics, and a journal it opened
/// once opens again. Returns the rows read, if it opened.
pub fn open_and_read(dir: &Path) -> Option<usize> {
    let config = JournalConfig { segment_bytes: 4096, ..JournalConfig::scratch(dir) };
    let journal = Journal::open(&config).ok()?;
    let checked = journal.verified();
    let mut rows = 0;
    for partition in journal.partitions() {
        let after = journal.applied(&partition).unwrap_or(Hlc::ZERO);
        let mut cursor = WindowCursor::new(after, Hlc::new(u64::MAX >> 1, 0), Vec::new());
        let limits = ChunkLimits { max_rows: 1000, max_bytes: 1 << 20 };
        while let Ok(chunk) = journal.read_chunk(&partition, &mut cursor, limits) {
            rows += chunk.rows.len();
            if chunk.last {
                break;
            }
        }
    }
    drop(journal);
    let again = Journal::open(&config).unwrap_or_else(|e| panic!("opened once, then refused: {e}"));
    assert_eq!(again.verified().is_ok(), checked.is_ok(), "the background check changed its mind");
    Some(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Partition, Row};

    /// A journal of a few segments: two partitions, resolved and partly applied.
    fn journal(dir: &Path) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let config = JournalConfig { segment_bytes: 4096, ..JournalConfig::scratch(dir) };
        let journal = Journal::open(&config).unwrap();
        for round in 1..=12u64 {
            for schema in ["s1", "s2"] {
                let p = Partition::new("db", schema);
                let rows: Vec<Row> = (0..4)
                    .map(|k| Row {
                        hlc: Hlc::new(round * 10, 0),
                        table: "t".into(),
                        key: format!("[{k}]").into_bytes(),
                        after: (k != 3).then(|| format!("{{\"k\":{k},\"round\":{round}}}").into_bytes()),
                    })
                    .collect();
                rt.block_on(journal.append_durable(&p, &rows)).unwrap();
                rt.block_on(journal.resolve_durable(&p, Hlc::new(round * 10, 0))).unwrap();
            }
            journal.mark_applied(&Partition::new("db", "s1"), Hlc::new((round * 10).saturating_sub(30), 0)).unwrap();
        }
    }

    #[test]
    fn a_journal_packed_and_unpacked_opens_with_its_rows() {
        let (written, copy) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        journal(written.path());
        let image = pack(written.path()).unwrap();
        unpack(&image, copy.path()).unwrap();
        // s1 keeps the rows of its last three rounds (4 keys each), s2 all twelve rounds.
        assert_eq!(open_and_read(copy.path()), Some(15 * 4));
        if let Some(path) = std::env::var_os("WHARF_WRITE_FUZZ_SEED") {
            std::fs::write(path, &image).unwrap();
        }
    }

    #[test]
    fn the_fuzz_seed_is_a_journal_that_opens() {
        let seed = include_bytes!("../../../fuzz/seeds/journal_dir/journal");
        let dir = tempfile::tempdir().unwrap();
        unpack(seed, dir.path()).unwrap();
        assert_eq!(open_and_read(dir.path()), Some(15 * 4));
    }
}
