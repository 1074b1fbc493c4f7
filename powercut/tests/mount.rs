//! The mounted filesystem through real system calls: what was synced survives a cut, nothing else.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;

use wharf_powercut::PowerCut;

fn sync_dir(path: &std::path::Path) {
    File::open(path).unwrap().sync_all().unwrap();
}

#[test]
fn a_cut_keeps_exactly_what_was_synced() {
    let dir = tempfile::tempdir().unwrap();
    let mut fs = PowerCut::mount(dir.path()).unwrap();
    let root = fs.path().to_owned();

    fs::create_dir(root.join("blobs")).unwrap();
    let mut log = File::create(root.join("db")).unwrap();
    log.write_all(b"synced|").unwrap();
    log.sync_data().unwrap();
    sync_dir(&root);
    log.write_all(b"written only").unwrap();
    drop(log);

    let mut blob = File::create(root.join("blobs/7")).unwrap();
    blob.write_all(b"large value").unwrap();
    blob.sync_all().unwrap();
    drop(blob);
    // The blob's directory entry was never synced; the journal directory's entry for blobs/ was.
    fs::write(root.join("never-synced"), b"x").unwrap();

    let report = fs.cut().unwrap();
    assert_eq!(fs::read(root.join("db")).unwrap(), b"synced|");
    assert_eq!(fs::read_dir(root.join("blobs")).unwrap().count(), 0);
    assert!(!root.join("never-synced").exists());
    // db and never-synced lost content; / and blobs/ lost entries; blobs/7 and never-synced are gone.
    let expected = wharf_powercut::CutReport { files_reverted: 2, dirs_reverted: 2, inodes_forgotten: 2 };
    assert_eq!(report, expected);
}

#[test]
fn renames_and_in_place_rewrites_follow_the_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let mut fs = PowerCut::mount(dir.path()).unwrap();
    let root = fs.path().to_owned();

    fs::write(root.join("snap.1"), b"one").unwrap();
    File::open(root.join("snap.1")).unwrap().sync_all().unwrap();
    sync_dir(&root);
    fs::write(root.join("snap.2.tmp"), b"two").unwrap();
    File::open(root.join("snap.2.tmp")).unwrap().sync_all().unwrap();
    fs::rename(root.join("snap.2.tmp"), root.join("snap.2")).unwrap();
    fs::remove_file(root.join("snap.1")).unwrap();
    sync_dir(&root);

    let mark = OpenOptions::new().create(true).truncate(false).write(true).open(root.join("mark")).unwrap();
    mark.write_all_at(&1u64.to_be_bytes(), 0).unwrap();
    mark.sync_data().unwrap();
    sync_dir(&root);
    mark.write_all_at(&2u64.to_be_bytes(), 0).unwrap();
    drop(mark);

    fs.cut().unwrap();
    let mut names: Vec<_> =
        fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["mark", "snap.2"]);
    assert_eq!(fs::read(root.join("snap.2")).unwrap(), b"two");
    assert_eq!(fs::read(root.join("mark")).unwrap(), 1u64.to_be_bytes());
}
