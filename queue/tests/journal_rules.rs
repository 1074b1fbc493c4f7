//! Rules of the journal's bookkeeping that no crash is needed to break: what the applied mark may
//! cover, how large a record may be, that deletion goes on past a file it cannot remove, and that
//! the marks at a segment's start are never lost with the segments before it.

use std::path::Path;

use wharf_queue::{AppendError, ChunkLimits, Hlc, Journal, JournalConfig, Partition, Row, WindowCursor};

fn p(i: u8) -> Partition {
    Partition::new("db", format!("s{i}"))
}

fn row(wall: u64, key: u64) -> Row {
    Row {
        hlc: Hlc::new(wall, 0),
        table: "t".into(),
        key: format!("[{key}]").into_bytes(),
        after: Some(format!("{{\"k\":{key}}}").into_bytes()),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn read(journal: &Journal, partition: &Partition, after: Hlc, upto: Hlc) -> Vec<Row> {
    let mut cursor = WindowCursor::new(after, upto, Vec::new());
    let mut rows = Vec::new();
    loop {
        let chunk =
            journal.read_chunk(partition, &mut cursor, ChunkLimits { max_rows: 1000, max_bytes: 1 << 20 }).unwrap();
        rows.extend(chunk.rows.to_rows());
        if chunk.last {
            return rows;
        }
    }
}

/// Segment files in `dir`, by name.
fn wal_files(dir: &Path) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".wal"))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().len()))
        .collect();
    out.sort();
    out
}

#[test]
fn an_applied_mark_past_the_resolved_timestamp_never_drops_unapplied_rows() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&JournalConfig::scratch(dir.path())).unwrap();
    rt.block_on(journal.append_durable(&p(1), &[row(50, 1), row(50, 2)])).unwrap();
    rt.block_on(journal.resolve_durable(&p(1), Hlc::new(40, 0))).unwrap();
    // An applier (a bug, or a client that is not one) reports more than was ever resolved.
    journal.mark_applied(&p(1), Hlc::new(100, 0)).unwrap();
    assert_eq!(journal.applied(&p(1)), Some(Hlc::new(40, 0)), "clamped to the resolved timestamp");
    rt.block_on(journal.resolve_durable(&p(1), Hlc::new(60, 0))).unwrap();
    assert_eq!(read(&journal, &p(1), Hlc::new(40, 0), Hlc::new(60, 0)), vec![row(50, 1), row(50, 2)]);
    journal.mark_applied(&p(2), Hlc::new(7, 0)).unwrap();
    assert_eq!(journal.applied(&p(2)), None, "nothing resolved, nothing to mark");
}

#[test]
fn a_record_larger_than_the_journal_reads_back_is_refused_at_write() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&JournalConfig::scratch(dir.path())).unwrap();
    let mut big = row(10, 1);
    big.after = Some(vec![b'x'; (1 << 30) + 1]);
    let refused = rt.block_on(journal.append_durable(&p(1), &[big])).unwrap_err();
    assert!(matches!(refused, AppendError::TooLarge { .. }), "{refused}");
    assert!(refused.to_string().contains("1073741824"), "{refused}");
    rt.block_on(journal.append_durable(&p(1), &[row(11, 2)])).unwrap();
    drop(journal);
    let journal = Journal::open(&JournalConfig::scratch(dir.path())).unwrap();
    journal.verified().unwrap();
    rt.block_on(journal.resolve_durable(&p(1), Hlc::new(20, 0))).unwrap();
    assert_eq!(read(&journal, &p(1), Hlc::ZERO, Hlc::new(20, 0)), vec![row(11, 2)]);
}

#[test]
fn a_summary_that_cannot_be_removed_does_not_stop_reclaiming_space() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let config = JournalConfig { segment_bytes: 200, ..JournalConfig::scratch(dir.path()) };
    let journal = Journal::open(&config).unwrap();
    for round in 1..=6u64 {
        rt.block_on(journal.append_durable(&p(1), &[row(round * 10, round)])).unwrap();
        rt.block_on(journal.resolve_durable(&p(1), Hlc::new(round * 10, 0))).unwrap();
    }
    let oldest = wal_files(dir.path()).remove(0).0;
    let summary = dir.path().join(oldest.replace(".wal", ".sum"));
    std::fs::remove_file(&summary).unwrap();
    std::fs::create_dir(&summary).unwrap();
    std::fs::write(summary.join("keep"), b"not empty").unwrap();
    journal.mark_applied(&p(1), Hlc::new(60, 0)).unwrap();
    for round in 7..=12u64 {
        rt.block_on(journal.append_durable(&p(1), &[row(round * 10, round)])).unwrap();
        rt.block_on(journal.resolve_durable(&p(1), Hlc::new(round * 10, 0))).unwrap();
        journal.mark_applied(&p(1), Hlc::new(round * 10, 0)).unwrap();
    }
    rt.block_on(journal.append_durable(&p(1), &[row(130, 13)])).unwrap();
    let files = wal_files(dir.path());
    assert!(!files.iter().any(|(name, _)| *name == oldest), "{oldest} was not deleted: {files:?}");
    assert!(files.len() <= 2, "applied segments were not all deleted: {files:?}");
    assert_eq!(journal.disk_bytes(), files.iter().map(|(_, len)| len).sum::<u64>());
    drop(journal);
    Journal::open(&config).expect("a summary that cannot be removed does not refuse the open");
}

/// The marks a new segment starts with are the only copy once the segments before it are gone:
/// an open that cuts off a torn start must not then delete the older copies.
#[test]
fn torn_marks_at_a_segments_start_are_not_lost_with_the_older_segments() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let config = JournalConfig { segment_bytes: 400, ..JournalConfig::scratch(dir.path()) };
    let journal = Journal::open(&config).unwrap();
    for i in [1, 2] {
        rt.block_on(journal.append_durable(&p(i), &[row(10, 1)])).unwrap();
        rt.block_on(journal.resolve_durable(&p(i), Hlc::new(10, 0))).unwrap();
        journal.mark_applied(&p(i), Hlc::new(10, 0)).unwrap();
    }
    let mut key = 100;
    while wal_files(dir.path()).len() < 2 {
        key += 1;
        rt.block_on(journal.append_durable(&p(1), &[row(20, key)])).unwrap();
    }
    drop(journal);
    // The new segment as a crash during its creation could leave it: the magic and p1's marks only.
    let (name, _) = wal_files(dir.path()).pop().unwrap();
    let path = dir.path().join(&name);
    let bytes = std::fs::read(&path).unwrap();
    let mut at = 8;
    for _ in 0..2 {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += 16 + len;
    }
    std::fs::write(&path, &bytes[..at]).unwrap();
    let first_seq: u64 = name.trim_end_matches(".wal").parse().unwrap();
    let mut old_mark = b"WHWM".to_vec();
    old_mark.extend_from_slice(&1u32.to_be_bytes());
    old_mark.extend_from_slice(&(first_seq - 1).to_be_bytes());
    std::fs::write(dir.path().join("wharf-durable-seq"), &old_mark).unwrap();

    let journal = Journal::open(&config).unwrap();
    journal.verified().unwrap();
    assert_eq!(journal.resolved(&p(2)), Some(Hlc::new(10, 0)));
    rt.block_on(journal.append_durable(&p(1), &[row(30, 1)])).unwrap();
    rt.block_on(journal.resolve_durable(&p(1), Hlc::new(30, 0))).unwrap();
    journal.mark_applied(&p(1), Hlc::new(30, 0)).unwrap();
    rt.block_on(journal.append_durable(&p(1), &[row(40, 1)])).unwrap();
    assert!(!wal_files(dir.path()).iter().any(|(n, _)| *n < name), "the older segments were deleted");
    drop(journal);
    let journal = Journal::open(&config).unwrap();
    journal.verified().unwrap();
    assert_eq!(journal.resolved(&p(2)), Some(Hlc::new(10, 0)), "p2's resolved timestamp was lost");
    assert_eq!(journal.applied(&p(2)), Some(Hlc::new(10, 0)));
}

#[test]
fn only_the_owner_can_read_the_journal() {
    use std::os::unix::fs::PermissionsExt;
    let rt = runtime();
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("journal");
    let config = JournalConfig { segment_bytes: 200, ..JournalConfig::scratch(&dir) };
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let journal = Journal::open(&config).unwrap();
    for round in 1..=4u64 {
        rt.block_on(journal.append_durable(&p(1), &[row(round * 10, round)])).unwrap();
        rt.block_on(journal.resolve_durable(&p(1), Hlc::new(round * 10, 0))).unwrap();
    }
    drop(journal);
    assert_eq!(mode(&dir), 0o700);
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(files.iter().any(|f| f.extension().is_some_and(|e| e == "sum")), "{files:?}");
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    // What an earlier version left readable is made private at the next open.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&files[0], std::fs::Permissions::from_mode(0o644)).unwrap();
    drop(Journal::open(&config).unwrap());
    assert_eq!((mode(&dir), mode(&files[0])), (0o700, 0o600));
}
