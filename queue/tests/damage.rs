//! A damaged journal is refused with an error that names the file and says what to do, never read
//! with acknowledged rows missing or wrong: a truncated segment, bytes flipped anywhere in any
//! segment or summary, a deleted segment, and segments that went back to an older state. Damage
//! the open can see refuses the open; damage inside a closed segment known from its summary fails
//! the background check ([`Journal::verified`]) before any of its rows is read.

use std::path::{Path, PathBuf};

use wharf_queue::{ChunkLimits, Hlc, Journal, JournalConfig, Partition, Row, WindowCursor};

const ROWS: u64 = 40_000;

fn partition() -> Partition {
    Partition::new("db", "s")
}

/// 2 MiB segments, so the 12 MB the tests write span several.
fn config(dir: &Path) -> JournalConfig {
    JournalConfig { segment_bytes: 2 << 20, ..JournalConfig::scratch(dir) }
}

/// Journals `ROWS` acknowledged rows (about 12 MB) in requests of 1,000, resolved, and one row of
/// 3 MiB.
fn fill(dir: &Path) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let journal = Journal::open(&config(dir)).unwrap();
    rt.block_on(async {
        for first in (0..ROWS).step_by(1000) {
            let rows: Vec<Row> = (first..first + 1000)
                .map(|k| Row {
                    hlc: Hlc::new(10 + k, 0),
                    table: "t".into(),
                    key: format!("[{k}]").into_bytes(),
                    after: Some(format!("{{\"k\":{k},\"v\":\"{}\"}}", "x".repeat(250)).into_bytes()),
                })
                .collect();
            journal.append_durable(&partition(), &rows).await.unwrap();
        }
        let big = Row {
            hlc: Hlc::new(10 + ROWS, 0),
            table: "t".into(),
            key: b"[\"big\"]".to_vec(),
            after: Some(format!("{{\"v\":\"{}\"}}", "b".repeat(3 << 20)).into_bytes()),
        };
        journal.append_durable(&partition(), &[big]).await.unwrap();
        journal.resolve_durable(&partition(), Hlc::new(10 + ROWS, 0)).await.unwrap();
        journal.wait_written().await;
    });
}

/// Every row read back through a window.
fn read_all(journal: &Journal) -> Result<Vec<Row>, String> {
    let mut cursor = WindowCursor::new(Hlc::ZERO, Hlc::new(10 + ROWS, 0), Vec::new());
    let mut rows = Vec::new();
    loop {
        let chunk = journal
            .read_chunk(&partition(), &mut cursor, ChunkLimits { max_rows: 10_000, max_bytes: 64 << 20 })
            .map_err(|e| e.to_string())?;
        rows.extend(chunk.rows.to_rows());
        if chunk.last {
            return Ok(rows);
        }
    }
}

/// Whether `row` is exactly one of the rows [`fill`] wrote.
fn is_written(row: &Row) -> bool {
    let Some(after) = &row.after else { return false };
    if row.key == b"[\"big\"]" {
        return row.hlc == Hlc::new(10 + ROWS, 0)
            && *after == format!("{{\"v\":\"{}\"}}", "b".repeat(3 << 20)).into_bytes();
    }
    let k: u64 = match std::str::from_utf8(&row.key).ok().and_then(|t| t.trim_matches(['[', ']']).parse().ok()) {
        Some(k) => k,
        None => return false,
    };
    row.table == "t"
        && row.hlc == Hlc::new(10 + k, 0)
        && *after == format!("{{\"k\":{k},\"v\":\"{}\"}}", "x".repeat(250)).into_bytes()
}

/// The invariant: refused (at open or by the background check) with an error naming the
/// journal, or complete and exact.
fn refused_or_complete(dir: &Path) -> String {
    let opened = std::panic::catch_unwind(|| Journal::open(&config(dir)).and_then(|j| j.verified().map(|()| j)));
    let opened = opened.unwrap_or_else(|_| panic!("a panic escaped Journal::open"));
    match opened {
        Err(error) => {
            let text = error.to_string();
            assert!(text.contains(&dir.display().to_string()), "the error must name the journal: {text}");
            assert!(text.contains("wharfctl recover"), "{text}");
            eprintln!("refused: {text}");
            text
        }
        Ok(journal) => {
            let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_all(&journal)));
            match read {
                Ok(Ok(rows)) => {
                    assert_eq!(rows.len() as u64, ROWS + 1, "opened with acknowledged rows missing");
                    let keys: std::collections::HashSet<&[u8]> = rows.iter().map(|r| r.key.as_slice()).collect();
                    assert_eq!(keys.len(), rows.len(), "a row returned twice");
                    assert!(rows.iter().all(is_written), "a row that was never written, or changed");
                }
                Ok(Err(error)) => panic!("opened, then failed reading acknowledged rows: {error}"),
                Err(_) => panic!("opened, then panicked reading acknowledged rows"),
            }
            "complete".into()
        }
    }
}

/// The segment files, oldest first.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    out.sort();
    out
}

#[test]
fn a_truncated_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let all = segments(dir.path());
    assert!(all.len() >= 4, "{all:?}");
    for (i, victim) in [0, all.len() / 2, all.len() - 1].into_iter().enumerate() {
        let copy = tempfile::tempdir().unwrap();
        for file in std::fs::read_dir(dir.path()).unwrap() {
            let file = file.unwrap();
            std::fs::copy(file.path(), copy.path().join(file.file_name())).unwrap();
        }
        let path = copy.path().join(all[victim].file_name().unwrap());
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len * 2 / 3).unwrap();
        let text = refused_or_complete(copy.path());
        assert_ne!(text, "complete", "case {i}");
        assert!(text.contains(&path.display().to_string()) || text.contains("missing acknowledged records"), "{text}");
    }
}

#[test]
fn flipped_bytes_anywhere_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let pristine: Vec<(PathBuf, Vec<u8>)> =
        segments(dir.path()).into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect();
    let mut cases = 0;
    for (path, bytes) in &pristine {
        // 16 places in every segment, first byte and last byte included.
        let places: Vec<usize> = (0..16).map(|i| i * (bytes.len() - 1) / 15).collect();
        for at in places {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            std::fs::write(path, &damaged).unwrap();
            let text = refused_or_complete(dir.path());
            assert_ne!(text, "complete", "a flipped byte at {at} of {} was not noticed", path.display());
            assert!(text.contains(&path.display().to_string()), "the error must name {}: {text}", path.display());
            std::fs::write(path, bytes).unwrap();
            cases += 1;
        }
    }
    assert!(cases >= 64, "{cases} cases");
    assert_eq!(refused_or_complete(dir.path()), "complete");
}

#[test]
fn damaged_or_missing_summaries_are_read_around() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let summaries: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sum"))
        .collect();
    assert_eq!(summaries.len(), segments(dir.path()).len() - 1, "every closed segment has a summary");
    for path in &summaries {
        let bytes = std::fs::read(path).unwrap();
        for at in [0, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            std::fs::write(path, &damaged).unwrap();
            assert_eq!(refused_or_complete(dir.path()), "complete", "{} flipped at {at}", path.display());
            std::fs::write(path, &bytes).unwrap();
        }
    }
    for path in &summaries {
        std::fs::remove_file(path).unwrap();
    }
    assert_eq!(refused_or_complete(dir.path()), "complete");
}

#[test]
fn a_deleted_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let all = segments(dir.path());
    std::fs::rename(&all[1], dir.path().join("aside")).unwrap();
    let text = refused_or_complete(dir.path());
    assert!(text.contains("a segment between them is missing"), "{text}");
    std::fs::rename(dir.path().join("aside"), &all[1]).unwrap();
    let last = all.last().unwrap();
    std::fs::rename(last, dir.path().join("aside")).unwrap();
    let text = refused_or_complete(dir.path());
    assert!(text.contains("missing acknowledged records"), "{text}");
}

#[test]
fn segments_that_went_back_to_an_older_state_are_refused_by_the_high_water_mark() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    let append = |journal: &Journal, first: u64| {
        let rows: Vec<Row> = (first..first + 100)
            .map(|k| Row {
                hlc: Hlc::new(10 + k, 0),
                table: "t".into(),
                key: format!("[{k}]").into_bytes(),
                after: None,
            })
            .collect();
        rt.block_on(journal.append_durable(&partition(), &rows)).unwrap();
    };
    let journal = Journal::open(&JournalConfig::scratch(dir.path())).unwrap();
    append(&journal, 0);
    drop(journal);
    let segment = segments(dir.path()).pop().unwrap();
    std::fs::copy(&segment, backup.path().join("segment")).unwrap();
    let journal = Journal::open(&JournalConfig::scratch(dir.path())).unwrap();
    for first in (100..1000).step_by(100) {
        append(&journal, first);
    }
    drop(journal);
    // A whole, consistent, older segment: everything acknowledged after the copy is gone.
    std::fs::copy(backup.path().join("segment"), &segment).unwrap();
    let error = Journal::open(&JournalConfig::scratch(dir.path())).err().expect("an older segment must be refused");
    let text = error.to_string();
    assert!(text.contains("missing acknowledged records: records up to 10 were acknowledged"), "{text}");
    assert!(text.contains("its segments hold only up to 1;"), "{text}");
    assert!(text.contains("wharfctl recover"), "{text}");
}

#[test]
fn a_cut_short_last_write_is_cut_off_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    // A write a crash cut short, after everything acknowledged: garbage past the last record.
    let last = segments(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&last).unwrap().len();
    let mut file = std::fs::OpenOptions::new().append(true).open(&last).unwrap();
    std::io::Write::write_all(&mut file, &[0x00, 0x00, 0x10, 0x00, 0xde, 0xad]).unwrap();
    drop(file);
    assert_eq!(refused_or_complete(dir.path()), "complete");
    assert_eq!(std::fs::metadata(&last).unwrap().len(), len, "the torn tail is cut off");
}

#[test]
fn another_process_holding_the_journal_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _open = Journal::open(&JournalConfig::scratch(dir.path())).unwrap();
    // flock is per open file description, so a second open in this process is refused too.
    let text = Journal::open(&JournalConfig::scratch(dir.path())).err().expect("refused").to_string();
    assert!(text.contains("another process has it open"), "{text}");
}

#[test]
fn a_journal_written_by_the_sled_format_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("db"), b"sled").unwrap();
    std::fs::write(dir.path().join("conf"), b"segment_size: 8388608").unwrap();
    let text = Journal::open(&JournalConfig::scratch(dir.path())).err().expect("refused").to_string();
    assert!(text.contains("earlier wharf (sled format"), "{text}");
    assert!(text.contains("empty --journalDir"), "{text}");
}

#[test]
fn a_moved_first_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let first = segments(dir.path()).remove(0);
    std::fs::rename(&first, dir.path().join("aside")).unwrap();
    let text = refused_or_complete(dir.path());
    assert!(text.contains(&first.display().to_string()), "the error must name the missing segment: {text}");
    assert!(text.contains("missing"), "{text}");
}

#[test]
fn a_moved_mark_file_is_refused_with_or_without_the_last_segment() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let mark = dir.path().join("wharf-durable-seq");
    std::fs::rename(&mark, dir.path().join("mark-aside")).unwrap();
    let text = refused_or_complete(dir.path());
    assert!(text.contains("wharf-durable-seq") && text.contains("missing"), "{text}");
    let last = segments(dir.path()).pop().unwrap();
    std::fs::rename(&last, dir.path().join("aside")).unwrap();
    let text = refused_or_complete(dir.path());
    assert!(text.contains("wharf-durable-seq") && text.contains("missing"), "{text}");
}

#[test]
fn a_damaged_mark_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let mark = dir.path().join("wharf-durable-seq");
    let pristine = std::fs::read(&mark).unwrap();
    for at in [0, 5, pristine.len() / 2, pristine.len() - 1] {
        let mut damaged = pristine.clone();
        damaged[at] ^= 0x40;
        std::fs::write(&mark, &damaged).unwrap();
        // One copy of the mark may be damaged (the other is the previous value); never both
        // silently.
        let text = refused_or_complete(dir.path());
        if text != "complete" {
            assert!(text.contains("wharf-durable-seq"), "{text}");
        }
        std::fs::write(&mark, &pristine).unwrap();
    }
    std::fs::write(&mark, vec![0x55; pristine.len()]).unwrap();
    let text = refused_or_complete(dir.path());
    assert!(text.contains("wharf-durable-seq"), "{text}");
}

/// A last segment whose magic is unreadable is never deleted at open, whatever the mark says.
#[test]
fn a_last_segment_with_a_damaged_magic_is_never_deleted() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let last = segments(dir.path()).pop().unwrap();
    let first_seq: u64 = last.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    // The mark of an earlier wharf (format 1) that lags behind the last segment's records.
    let mut old_mark = b"WHWM".to_vec();
    old_mark.extend_from_slice(&1u32.to_be_bytes());
    old_mark.extend_from_slice(&(first_seq - 1).to_be_bytes());
    std::fs::write(dir.path().join("wharf-durable-seq"), &old_mark).unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&last, &bytes).unwrap();
    let _ = Journal::open(&config(dir.path())).map(|j| j.verified());
    let kept: Vec<Vec<u8>> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(last.file_name().unwrap().to_str().unwrap()))
        .filter(|p| !p.to_str().unwrap().ends_with(".sum"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(kept, vec![bytes], "the damaged segment must stay on disk, as it is or set aside");
}

#[test]
fn an_empty_first_segment_without_a_mark_opens_as_a_new_journal() {
    // What an earlier wharf left when the power went while it created the very first segment.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("00000000000000000001.wal"), b"").unwrap();
    let journal = Journal::open(&config(dir.path())).expect("nothing was ever acknowledged");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(journal.resolve_durable(&partition(), Hlc::new(5, 0))).unwrap();
    drop(journal);
    let journal = Journal::open(&config(dir.path())).unwrap();
    assert_eq!(journal.resolved(&partition()), Some(Hlc::new(5, 0)));
}

#[test]
fn a_segment_numbered_zero_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("00000000000000000000.wal"), b"WHARFJ1\n").unwrap();
    let opened = std::panic::catch_unwind(|| Journal::open(&config(dir.path())).map(|_| ()));
    let text = opened.expect("no panic").expect_err("refused").to_string();
    assert!(text.contains("00000000000000000000.wal"), "{text}");
}
