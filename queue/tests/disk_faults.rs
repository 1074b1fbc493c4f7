//! What the journal does when the disk misbehaves, on the power-cut filesystem: a power cut right
//! after an acknowledgement, a crash and restart followed by a power cut, a failed `fsync` of the
//! segment or of the directory, a full disk, a device that stops answering.

mod on_powercut;

use std::time::Duration;

use on_powercut::{Disk, frame, frames, p, row, rows_above_applied, runtime, segments};
use wharf_powercut::{Chooser, Fault, Op};
use wharf_queue::{AppendError, Hlc, Journal, JournalConfig};

fn config(dir: &std::path::Path) -> JournalConfig {
    JournalConfig::scratch(dir)
}

/// The state a power cut leaves right after an append returned holds that append: damage to it
/// is refused, never cut off as a write that was not acknowledged.
#[test]
fn the_durable_mark_covers_a_record_as_soon_as_it_is_acknowledged() {
    let rt = runtime();
    let mut disk = Disk::mount();
    for round in 0..5u64 {
        let dir = disk.path(&format!("journal-{round}"));
        let journal = Journal::open(&config(&dir)).unwrap();
        for key in 0..3 {
            rt.block_on(journal.append_durable(&p(1), &[row(10 + key, key)])).unwrap();
        }
        disk.cut.arm_crash(disk.cut.ops(), Chooser::strict());
        drop(journal);
        assert!(disk.cut.restore_crash().unwrap());
        let last = segments(&dir).pop().unwrap();
        let mut bytes = std::fs::read(&last).unwrap();
        let (at, len) = *frames(&bytes).last().unwrap();
        bytes[at + 16 + len / 2] ^= 0x20;
        std::fs::write(&last, &bytes).unwrap();
        let refused = Journal::open(&config(&dir)).err().expect("an acknowledged record was damaged");
        assert!(refused.to_string().contains(&last.display().to_string()), "{refused}");
    }
}

#[test]
fn a_crash_a_restart_and_then_a_power_cut_open_without_a_false_alarm() {
    let rt = runtime();
    let mut disk = Disk::mount();
    let dir = disk.path("journal");
    let journal = Journal::open(&config(&dir)).unwrap();
    rt.block_on(journal.append_durable(&p(1), &[row(10, 1)])).unwrap();
    rt.block_on(journal.resolve_durable(&p(1), Hlc::new(10, 0))).unwrap();
    drop(journal);
    // A writer killed between its write and its fdatasync: a whole record in the page cache only.
    let last = segments(&dir).pop().unwrap();
    let seq = frames(&std::fs::read(&last).unwrap()).len() as u64 + 1;
    let payload = wharf_queue::record::encode_log_resolved(&p(1), Hlc::new(20, 0));
    let mut file = std::fs::OpenOptions::new().append(true).open(&last).unwrap();
    std::io::Write::write_all(&mut file, &frame(seq, &payload)).unwrap();
    drop(file);
    let journal = Journal::open(&config(&dir)).unwrap();
    assert_eq!(journal.resolved(&p(1)), Some(Hlc::new(20, 0)), "the record was whole");
    drop(journal);
    disk.cut.cut().unwrap();
    let journal = Journal::open(&config(&dir)).expect("nothing acknowledged was lost");
    assert!(journal.resolved(&p(1)) >= Some(Hlc::new(10, 0)));
}

#[test]
fn a_failed_segment_sync_is_not_acknowledged_and_the_restart_does_not_revive_it() {
    let rt = runtime();
    let mut disk = Disk::mount();
    let dir = disk.path("journal");
    let journal = Journal::open(&config(&dir)).unwrap();
    rt.block_on(journal.append_durable(&p(1), &[row(10, 1)])).unwrap();
    disk.cut.inject(Fault::once(Op::Fsync, libc::EIO).on(".wal"));
    let failed = rt.block_on(journal.append_durable(&p(1), &[row(11, 2)])).unwrap_err();
    assert!(matches!(failed, AppendError::Poisoned(_)), "{failed}");
    let later = rt.block_on(journal.append_durable(&p(1), &[row(12, 3)])).unwrap_err();
    assert!(matches!(later, AppendError::Poisoned(_)), "{later}");
    drop(journal);
    // A restart without a power cut: the page cache still holds the failed write's pages.
    let journal = Journal::open(&config(&dir)).unwrap();
    assert_eq!(rows_above_applied(&journal, &p(1)), vec![row(10, 1)], "only the acknowledged row");
    rt.block_on(journal.append_durable(&p(1), &[row(13, 4)])).unwrap();
    drop(journal);
    disk.cut.cut().unwrap();
    let journal = Journal::open(&config(&dir)).expect("a journal that lost nothing acknowledged");
    assert_eq!(rows_above_applied(&journal, &p(1)), vec![row(10, 1), row(13, 4)]);
}

#[test]
fn a_failed_directory_sync_after_deleting_segments_poisons_the_journal() {
    let rt = runtime();
    let disk = Disk::mount();
    let dir = disk.path("journal");
    let journal = Journal::open(&JournalConfig { segment_bytes: 200, ..config(&dir) }).unwrap();
    for round in 1..=4u64 {
        rt.block_on(journal.append_durable(&p(1), &[row(round * 10, round)])).unwrap();
        rt.block_on(journal.resolve_durable(&p(1), Hlc::new(round * 10, 0))).unwrap();
    }
    assert!(segments(&dir).len() >= 3, "{:?}", segments(&dir));
    disk.cut.inject(Fault::once(Op::FsyncDir, libc::EIO).always());
    journal.mark_applied(&p(1), Hlc::new(40, 0)).unwrap();
    let outcome = rt.block_on(journal.append_durable(&p(1), &[row(50, 5)]));
    let next = rt.block_on(journal.append_durable(&p(1), &[row(60, 6)]));
    assert!(
        matches!(next, Err(AppendError::Poisoned(_))),
        "a failed directory sync must stop the journal: {outcome:?}, then {next:?}"
    );
    assert!(journal.health().is_err());
}

#[test]
fn a_full_disk_refuses_with_a_transient_error_and_recovers_when_space_returns() {
    let rt = runtime();
    let disk = Disk::mount();
    let dir = disk.path("journal");
    let reserve = 64 << 10;
    disk.cut.set_capacity(Some(reserve + (256 << 10)));
    let config = JournalConfig { disk_reserve: reserve, segment_bytes: 16 << 10, ..JournalConfig::new(&dir) };
    let journal = Journal::open(&config).unwrap();
    // Rows until the reserve is reached: refused as disk low, never a failed journal.
    let mut key = 100;
    let refused = loop {
        key += 1;
        let mut big = row(20, key);
        big.after = Some(format!("{{\"pad\":\"{}\"}}", "x".repeat(8 << 10)).into_bytes());
        match rt.block_on(journal.append_durable(&p(1), &[big])) {
            Ok(_) => assert!(key < 200, "the reserve was never reached"),
            Err(error) => break error,
        }
    };
    assert!(matches!(refused, AppendError::DiskLow { .. }), "{refused}");
    assert!(refused.is_transient());
    assert!(disk.cut.space_free() >= reserve / 2, "refused before the reserve: {}", disk.cut.space_free());
    // Resolved timestamps still fit in the reserve's lower half.
    rt.block_on(journal.resolve_durable(&p(1), Hlc::new(20, 0))).unwrap();
    // A write that finds the disk full anyway (something else took the space since the journal
    // last looked): the group waits, health says why, and it goes through once space is back.
    disk.cut.inject(Fault::once(Op::Write, libc::ENOSPC).on(".wal").always());
    let (stalled, appended) = std::thread::scope(|s| {
        let append = s.spawn(|| rt.block_on(journal.resolve_durable(&p(1), Hlc::new(30, 0))));
        let stalled = wharf_testkit::wait_until(
            Duration::from_secs(10),
            || matches!(journal.health(), Err(wharf_queue::Fault::Stalled(ref r)) if r.contains("no space")),
        );
        disk.cut.clear_faults();
        (stalled, append.join().unwrap())
    });
    assert!(stalled, "health must say the disk is full: {:?}", journal.health());
    appended.expect("the write went through once space was back");
    assert_eq!(journal.health(), Ok(()));
    assert_eq!(journal.resolved(&p(1)), Some(Hlc::new(30, 0)));
    // Applying gives the space back: large rows are taken again.
    journal.mark_applied(&p(1), Hlc::new(30, 0)).unwrap();
    let mut big = row(40, 1);
    big.after = Some(format!("{{\"pad\":\"{}\"}}", "x".repeat(64 << 10)).into_bytes());
    let taken = wharf_testkit::wait_until(Duration::from_secs(10), || {
        rt.block_on(journal.append_durable(&p(1), std::slice::from_ref(&big))).is_ok()
    });
    assert!(taken, "free {}", disk.cut.space_free());
    drop(journal);
    let journal = Journal::open(&config).unwrap();
    assert_eq!(journal.resolved(&p(1)), Some(Hlc::new(30, 0)));
}

#[test]
fn a_sync_that_does_not_return_turns_health_stalled_until_it_does() {
    let rt = runtime();
    let disk = Disk::mount();
    let dir = disk.path("journal");
    let config = JournalConfig { sync_stall: Duration::from_millis(300), ..config(&dir) };
    let journal = Journal::open(&config).unwrap();
    rt.block_on(journal.append_durable(&p(1), &[row(10, 1)])).unwrap();
    assert_eq!(journal.health(), Ok(()));
    disk.cut.hang_syncs(true);
    std::thread::scope(|s| {
        let append = s.spawn(|| rt.block_on(journal.append_durable(&p(1), &[row(11, 2)])));
        let stalled = wharf_testkit::wait_until(
            Duration::from_secs(10),
            || matches!(journal.health(), Err(wharf_queue::Fault::Stalled(ref r)) if r.contains("has not returned")),
        );
        disk.cut.hang_syncs(false);
        assert!(stalled, "health: {:?}", journal.health());
        append.join().unwrap().unwrap();
    });
    assert_eq!(journal.health(), Ok(()));
}

/// Every kind of failure the journal's files can meet, one at a time, during a life with tiny
/// segments: after a failure that stops the journal, nothing more is acknowledged; a restart
/// holds every acknowledged row and nothing never sent, before and after a power cut.
#[test]
fn every_failing_operation_loses_nothing_acknowledged_and_acknowledges_nothing_after() {
    let faults = [
        (Op::Write, libc::EIO, ".wal"),
        (Op::Fsync, libc::EIO, ".wal"),
        (Op::Fsync, libc::EIO, "durable-seq"),
        (Op::FsyncDir, libc::EIO, "journal"),
        (Op::Rename, libc::EIO, ".wal.tmp"),
        (Op::Create, libc::EIO, ".wal.tmp"),
        (Op::Create, libc::ENOSPC, ".wal.tmp"),
        (Op::Unlink, libc::EIO, ".wal"),
        (Op::Unlink, libc::EIO, ".sum"),
        (Op::Rename, libc::EIO, ".sum.tmp"),
    ];
    let rt = runtime();
    let mut disk = Disk::mount();
    for (case, (op, errno, on)) in faults.into_iter().enumerate() {
        let dir = disk.path(&format!("journal-{case}"));
        let config = JournalConfig { segment_bytes: 300, ..config(&dir) };
        let mut acks = on_powercut::Acks::default();
        let journal = Journal::open(&config).unwrap();
        let mut failed = None;
        for round in 1..=12u64 {
            if round == 4 {
                disk.cut.inject(Fault::once(op, errno).on(on));
            }
            let rows = vec![row(round * 10, round)];
            acks.sent.extend(rows.iter().map(|r| (p(1), r.clone())));
            let appended = rt.block_on(journal.append_durable(&p(1), &rows));
            let resolved = rt.block_on(journal.resolve_durable(&p(1), Hlc::new(round * 10, 0)));
            match (&failed, appended, resolved) {
                (None, Ok(_), Ok(_)) => {
                    acks.acked.push((0, on_powercut::Ack::Rows(p(1), rows)));
                    acks.acked.push((0, on_powercut::Ack::Resolved(p(1), Hlc::new(round * 10, 0))));
                }
                (None, appended, resolved) => {
                    failed = Some(format!("{appended:?} / {resolved:?}"));
                    if appended.is_ok() {
                        acks.acked.push((0, on_powercut::Ack::Rows(p(1), rows)));
                    }
                }
                (Some(first), appended, resolved) => {
                    assert!(
                        appended.is_err() && resolved.is_err(),
                        "case {case} ({op:?} {errno} on {on}): acknowledged after a failure ({first}): {appended:?} / {resolved:?}"
                    );
                }
            }
            if round % 3 == 0 {
                acks.reported.push((0, p(1), Hlc::new(round * 10 - 10, 0)));
                let _ = journal.mark_applied(&p(1), Hlc::new(round * 10 - 10, 0));
            }
        }
        disk.cut.clear_faults();
        drop(journal);
        let context = format!("case {case} ({op:?} {errno} on {on}, first failure: {failed:?})");
        let journal = Journal::open(&config).unwrap_or_else(|e| panic!("{context}: restart refused: {e}"));
        acks.check(&journal, u64::MAX, &format!("{context}, restart"));
        drop(journal);
        disk.cut.cut().unwrap();
        let journal = Journal::open(&config).unwrap_or_else(|e| panic!("{context}: refused after a cut: {e}"));
        acks.check(&journal, u64::MAX, &format!("{context}, power cut"));
        rt.block_on(journal.append_durable(&p(1), &[row(500, 500)])).unwrap();
        eprintln!("{context}: ok");
    }
}
