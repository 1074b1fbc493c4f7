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
