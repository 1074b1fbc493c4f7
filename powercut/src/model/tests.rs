use super::*;

fn name(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn new_file(m: &mut Model, parent: u64, n: &str) -> u64 {
    m.create(parent, name(n), Kind::File, 0o644).unwrap().ino
}

#[test]
fn unsynced_data_is_gone_after_a_cut_and_synced_data_stays() {
    let mut m = Model::default();
    let f = new_file(&mut m, ROOT, "log");
    m.sync_dir(ROOT).unwrap();
    m.write(f, 0, b"first").unwrap();
    m.sync_file(f).unwrap();
    m.write(f, 5, b" second").unwrap();
    m.write(f, 0, b"FIRST").unwrap();
    let report = m.cut();
    assert_eq!(report, CutReport { files_reverted: 1, dirs_reverted: 0, inodes_forgotten: 0 });
    assert_eq!(m.read(f, 0, 100).unwrap(), b"first");
}

#[test]
fn a_synced_file_without_a_synced_directory_entry_is_gone() {
    let mut m = Model::default();
    let f = new_file(&mut m, ROOT, "blob");
    m.write(f, 0, b"data").unwrap();
    m.sync_file(f).unwrap();
    let report = m.cut();
    assert_eq!(report.inodes_forgotten, 1);
    assert_eq!(m.lookup(ROOT, name("blob")), Err(ENOENT));
}

#[test]
fn a_rename_is_undone_unless_both_directories_were_synced() {
    let mut m = Model::default();
    let d = m.create(ROOT, name("d"), Kind::Dir, 0o755).unwrap().ino;
    let f = new_file(&mut m, ROOT, "tmp");
    m.sync_file(f).unwrap();
    m.sync_dir(ROOT).unwrap();
    m.rename(ROOT, name("tmp"), d, name("final")).unwrap();
    m.sync_dir(d).unwrap();
    m.cut();
    // The old name was not removed durably; the new one was added durably.
    assert_eq!(m.lookup(ROOT, name("tmp")).unwrap().ino, f);
    assert_eq!(m.lookup(d, name("final")).unwrap().ino, f);
}

#[test]
fn an_unlinked_file_comes_back_with_its_synced_content() {
    let mut m = Model::default();
    let f = new_file(&mut m, ROOT, "snap");
    m.write(f, 0, b"old").unwrap();
    m.sync_file(f).unwrap();
    m.sync_dir(ROOT).unwrap();
    m.unlink(ROOT, name("snap")).unwrap();
    m.cut();
    assert_eq!(m.read(m.lookup(ROOT, name("snap")).unwrap().ino, 0, 10).unwrap(), b"old");
}

#[test]
fn truncation_then_growth_syncs_zeros_not_old_bytes() {
    let mut m = Model::default();
    let f = new_file(&mut m, ROOT, "db");
    m.sync_dir(ROOT).unwrap();
    m.write(f, 0, &[7u8; 10_000]).unwrap();
    m.sync_file(f).unwrap();
    m.set_len(f, 100).unwrap();
    m.set_len(f, 9_000).unwrap();
    m.sync_file(f).unwrap();
    m.cut();
    let data = m.read(f, 0, 20_000).unwrap();
    assert_eq!(data.len(), 9_000);
    assert!(data[..100].iter().all(|b| *b == 7));
    assert!(data[100..].iter().all(|b| *b == 0));
}

#[test]
fn a_new_directory_tree_vanishes_with_its_unsynced_parent_entry() {
    let mut m = Model::default();
    let d = m.create(ROOT, name("blobs"), Kind::Dir, 0o755).unwrap().ino;
    let f = new_file(&mut m, d, "17");
    m.sync_file(f).unwrap();
    m.sync_dir(d).unwrap();
    let report = m.cut();
    assert_eq!(report.inodes_forgotten, 2);
    assert_eq!(m.entries(ROOT).unwrap(), vec![]);
}

#[test]
fn rename_refuses_what_posix_refuses() {
    let mut m = Model::default();
    let d = m.create(ROOT, name("d"), Kind::Dir, 0o755).unwrap().ino;
    new_file(&mut m, d, "x");
    new_file(&mut m, ROOT, "f");
    assert_eq!(m.rename(ROOT, name("f"), ROOT, name("d")), Err(EISDIR));
    assert_eq!(m.rename(ROOT, name("d"), d, name("inner")), Err(EINVAL));
    assert_eq!(m.rmdir(ROOT, name("d")), Err(ENOTEMPTY));
    assert_eq!(m.unlink(ROOT, name("d")), Err(EISDIR));
}

/// A file with a synced first part and unsynced growth and overwrites.
fn torn_candidate() -> (Model, u64) {
    let mut m = Model::default();
    let f = new_file(&mut m, ROOT, "log");
    m.sync_dir(ROOT).unwrap();
    m.write(f, 0, &[1u8; 10_000]).unwrap();
    m.sync_file(f).unwrap();
    m.write(f, 10_000, &[2u8; 9_000]).unwrap();
    m.write(f, 100, &[3u8; 50]).unwrap();
    (m, f)
}

#[test]
fn a_crash_leaves_every_byte_as_synced_as_written_or_zero_and_a_length_between() {
    let mut torn = 0;
    for seed in 0..200 {
        let (mut m, f) = torn_candidate();
        let written = m.read(f, 0, 1 << 20).unwrap().to_vec();
        m.cut_with(&mut Chooser::new(seed));
        let left = m.read(f, 0, 1 << 20).unwrap();
        assert!((10_000..=19_000).contains(&left.len()), "seed {seed}: length {}", left.len());
        for (at, byte) in left.iter().enumerate() {
            let synced = if at < 10_000 { 1 } else { 0 };
            assert!(*byte == synced || *byte == written[at], "seed {seed}: byte {at} is {byte}");
        }
        let kept = left.iter().enumerate().filter(|(at, b)| **b == written[*at] && *at >= 10_000).count();
        if kept > 0 && kept < left.len() - 10_000 {
            torn += 1;
        }
    }
    assert!(torn > 20, "only {torn} of 200 crashes tore the unsynced part");
}

#[test]
fn a_crash_keeps_a_prefix_of_each_directorys_unsynced_operations() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..100 {
        let mut m = Model::default();
        new_file(&mut m, ROOT, "a");
        m.sync_dir(ROOT).unwrap();
        new_file(&mut m, ROOT, "b");
        m.rename(ROOT, name("b"), ROOT, name("c")).unwrap();
        m.unlink(ROOT, name("a")).unwrap();
        m.cut_with(&mut Chooser::new(seed));
        let names: Vec<String> = m.entries(ROOT).unwrap().into_iter().map(|(n, _)| n.into_string().unwrap()).collect();
        let prefixes = [vec!["a"], vec!["a", "b"], vec!["a", "c"], vec!["c"]];
        assert!(prefixes.iter().any(|p| *p == names), "seed {seed}: {names:?} is not a prefix's state");
        seen.insert(names);
    }
    assert_eq!(seen.len(), 4, "every prefix should come up in 100 crashes: {seen:?}");
}

#[test]
fn after_a_failed_fsync_the_pages_are_clean_and_lost_at_a_cut_even_after_a_later_sync() {
    let mut m = Model::default();
    let f = new_file(&mut m, ROOT, "seg.wal");
    m.sync_dir(ROOT).unwrap();
    m.write(f, 0, b"acknowledged").unwrap();
    m.sync_file(f).unwrap();
    m.write(f, 12, b" lost").unwrap();
    m.inject(Fault::once(Op::Fsync, libc::EIO).on(".wal"));
    assert_eq!(m.sync_file(f), Err(Errno(libc::EIO)));
    assert_eq!(m.read(f, 0, 100).unwrap(), b"acknowledged lost", "the page cache still shows it");
    m.sync_file(f).unwrap();
    m.cut();
    assert_eq!(m.read(f, 0, 100).unwrap(), b"acknowledged\0\0\0\0\0");
}

#[test]
fn faults_match_their_kind_and_name_and_are_spent() {
    let mut m = Model::default();
    m.inject(Fault::once(Op::Create, libc::EIO).on("x"));
    new_file(&mut m, ROOT, "a");
    assert_eq!(m.create(ROOT, name("x1"), Kind::File, 0o600), Err(Errno(libc::EIO)));
    new_file(&mut m, ROOT, "x1");
    m.inject(Fault::once(Op::Unlink, libc::EROFS).always());
    assert_eq!(m.unlink(ROOT, name("a")), Err(Errno(libc::EROFS)));
    assert_eq!(m.unlink(ROOT, name("a")), Err(Errno(libc::EROFS)));
    m.clear_faults();
    m.unlink(ROOT, name("a")).unwrap();
}

#[test]
fn writes_past_the_capacity_fail_with_enospc_and_change_nothing() {
    let mut m = Model::default();
    m.set_capacity(Some(10_000));
    let f = new_file(&mut m, ROOT, "f");
    m.write(f, 0, &[1; 8_000]).unwrap();
    assert_eq!(m.write(f, 8_000, &[2; 4_000]), Err(Errno(libc::ENOSPC)));
    assert_eq!(m.read(f, 0, 1 << 20).unwrap().len(), 8_000);
    m.write(f, 0, &[3; 8_000]).unwrap();
    assert_eq!(m.space(), (10_000, 2_000));
    m.set_len(f, 1_000).unwrap();
    m.write(f, 1_000, &[2; 4_000]).unwrap();
}

#[test]
fn an_armed_crash_keeps_the_state_from_just_before_its_operation() {
    let mut m = Model::default();
    let f = new_file(&mut m, ROOT, "f");
    m.sync_dir(ROOT).unwrap();
    m.write(f, 0, b"one").unwrap();
    let sync = m.ops();
    m.arm_crash(sync, Chooser::strict());
    m.sync_file(f).unwrap();
    m.write(f, 3, b" two").unwrap();
    m.sync_file(f).unwrap();
    let mut crashed = m.take_crashed().expect("the operation came");
    assert_eq!(crashed.read(f, 0, 100).unwrap(), b"", "cut just before the first sync");
    assert_eq!(m.read(f, 0, 100).unwrap(), b"one two", "the running state goes on");
    m.arm_crash(m.ops() + 1, Chooser::strict());
    m.write(f, 0, b"x").unwrap();
    assert!(m.take_crashed().is_none(), "its operation did not come");
    m.arm_crash(0, Chooser::strict());
    crashed = m.take_crashed().expect("an operation already past keeps the state now");
    assert_eq!(crashed.read(f, 0, 100).unwrap(), b"one two");
}
