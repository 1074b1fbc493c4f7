//! The FUSE side: each request is one call on the shared [`Model`].
//!
//! Files are opened with direct I/O, so every `write(2)` reaches the model at once and the kernel
//! keeps no page cache of its own that could outlive a cut.

use std::ffi::OsStr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::consts::FOPEN_DIRECT_IO;
use fuser::{
    FileAttr, FileType, Filesystem, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
};

use crate::model::{Errno, Kind, Model, Stat};

/// Attributes and entries change only through this filesystem, so the kernel may cache them.
const TTL: Duration = Duration::from_secs(60);

pub(crate) struct PowerCutFs {
    pub(crate) model: Arc<Mutex<Model>>,
    pub(crate) hang: Arc<Hang>,
}

/// Makes file syncs hang (a device that stops answering) until released.
#[derive(Default)]
pub(crate) struct Hang {
    hung: Mutex<bool>,
    released: Condvar,
}

impl Hang {
    pub(crate) fn set(&self, hung: bool) {
        *self.hung.lock().expect("hang lock") = hung;
        self.released.notify_all();
    }

    fn wait(&self) {
        let mut hung = self.hung.lock().expect("hang lock");
        while *hung {
            hung = self.released.wait(hung).expect("hang lock");
        }
    }
}

impl PowerCutFs {
    fn model(&self) -> MutexGuard<'_, Model> {
        self.model.lock().expect("power-cut model lock")
    }
}

fn attr(stat: Stat) -> FileAttr {
    let (kind, nlink) = match stat.kind {
        Kind::File => (FileType::RegularFile, 1),
        Kind::Dir => (FileType::Directory, 2),
    };
    FileAttr {
        ino: stat.ino,
        size: stat.size,
        blocks: stat.size.div_ceil(512),
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind,
        perm: stat.mode,
        nlink,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
    }
}

fn empty(reply: ReplyEmpty, result: Result<(), Errno>) {
    match result {
        Ok(()) => reply.ok(),
        Err(Errno(e)) => reply.error(e),
    }
}

fn entry(reply: ReplyEntry, result: Result<Stat, Errno>) {
    match result {
        Ok(stat) => reply.entry(&TTL, &attr(stat), 0),
        Err(Errno(e)) => reply.error(e),
    }
}

impl Filesystem for PowerCutFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        entry(reply, self.model().lookup(parent, name));
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match self.model().stat(ino) {
            Ok(stat) => reply.attr(&TTL, &attr(stat)),
            Err(Errno(e)) => reply.error(e),
        }
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let mut model = self.model();
        let result = (|| {
            if let Some(size) = size {
                model.set_len(ino, size)?;
            }
            if let Some(mode) = mode {
                model.set_mode(ino, (mode & 0o7777) as u16)?;
            }
            model.stat(ino)
        })();
        match result {
            Ok(stat) => reply.attr(&TTL, &attr(stat)),
            Err(Errno(e)) => reply.error(e),
        }
    }

    fn mkdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        entry(reply, self.model().create(parent, name, Kind::Dir, (mode & !umask & 0o7777) as u16));
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.model().unlink(parent, name));
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.model().rmdir(parent, name));
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        reply: ReplyEmpty,
    ) {
        if flags != 0 {
            // RENAME_NOREPLACE / RENAME_EXCHANGE are not modelled.
            return reply.error(libc::EINVAL);
        }
        empty(reply, self.model().rename(parent, name, newparent, newname));
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        match self.model().stat(ino) {
            Ok(_) => reply.opened(0, FOPEN_DIRECT_IO),
            Err(Errno(e)) => reply.error(e),
        }
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        match self.model().create(parent, name, Kind::File, (mode & !umask & 0o7777) as u16) {
            Ok(stat) => reply.created(&TTL, &attr(stat), 0, 0, FOPEN_DIRECT_IO),
            Err(Errno(e)) => reply.error(e),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        match self.model().read(ino, offset.max(0) as u64, size as usize) {
            Ok(data) => reply.data(data),
            Err(Errno(e)) => reply.error(e),
        }
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        match self.model().write(ino, offset.max(0) as u64, data) {
            Ok(()) => reply.written(data.len() as u32),
            Err(Errno(e)) => reply.error(e),
        }
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _lock_owner: u64, reply: ReplyEmpty) {
        // close(2) is not a sync: nothing becomes durable here.
        reply.ok();
    }

    fn fsync(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, _datasync: bool, reply: ReplyEmpty) {
        // The whole filesystem waits, as every request behind a hung device's queue does.
        self.hang.wait();
        empty(reply, self.model().sync_file(ino));
    }

    fn readdir(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, offset: i64, mut reply: ReplyDirectory) {
        let entries = match self.model().entries(ino) {
            Ok(entries) => entries,
            Err(Errno(e)) => return reply.error(e),
        };
        let dots = [(ino, FileType::Directory, OsStr::new(".")), (ino, FileType::Directory, OsStr::new(".."))];
        let all = dots.into_iter().chain(entries.iter().map(|(n, s)| (s.ino, file_type(s.kind), n.as_os_str())));
        for (i, (child, kind, name)) in all.enumerate().skip(offset.max(0) as usize) {
            if reply.add(child, i as i64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, _datasync: bool, reply: ReplyEmpty) {
        empty(reply, self.model().sync_dir(ino));
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        // Plenty of room unless the test set a capacity.
        let (total, free) = self.model().space();
        let (blocks, free) = (total / 4096, free / 4096);
        reply.statfs(blocks, free, free, 1 << 20, 1 << 20, 4096, 255, 4096);
    }

    fn access(&mut self, _req: &Request<'_>, _ino: u64, _mask: i32, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fallocate(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        length: i64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode != 0 {
            return reply.error(libc::EOPNOTSUPP);
        }
        let mut model = self.model();
        let result = model.stat(ino).and_then(|stat| {
            let end = (offset + length).max(0) as u64;
            if end > stat.size { model.set_len(ino, end) } else { Ok(()) }
        });
        empty(reply, result);
    }
}
