//! The filesystem's state in two layers: what programs see now, and what a power cut leaves.
//!
//! Every change lands in the current layer. `fsync`/`fdatasync` of a file copies that file's
//! changed pages and its length to the durable layer; `fsync` of a directory copies its entries
//! (new names, removed names, renames into and out of it). What a power cut leaves is chosen in
//! [`crash`]: the strictest reading of POSIX ([`Model::cut`]: exactly the durable layer), or any
//! state a real disk may leave ([`Model::cut_with`]: some of the unsynced pages, a length between
//! the synced and the written one, zeros under a grown size, a prefix of each directory's unsynced
//! operations). Injected failures and a capacity are in [`faults`].
//!
//! Every mutating operation is numbered ([`Model::ops`]); a crash may be armed for a given
//! operation ([`Model::arm_crash`]), so a test can cut the power at each step of a program.

mod crash;
mod faults;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};

pub use crash::{Chooser, Granularity};
pub use faults::{Fault, Op};

/// Inode number of the root directory (FUSE's fixed root id).
pub const ROOT: u64 = 1;
/// Granularity of the record of what changed since the last sync.
const PAGE: u64 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

/// A failed operation, as the errno FUSE passes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

#[derive(Debug, Default, Clone)]
struct File {
    current: Vec<u8>,
    durable: Vec<u8>,
    dirty: BTreeSet<u64>,
}

/// One change to a directory's entries since its last sync, in the order made.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DirOp {
    Insert(OsString, u64),
    Remove(OsString),
    /// A rename inside this directory: atomic, replacing what `to` named.
    Rename {
        from: OsString,
        to: OsString,
        ino: u64,
    },
}

#[derive(Debug, Default, Clone)]
struct Dir {
    current: BTreeMap<OsString, u64>,
    durable: BTreeMap<OsString, u64>,
    unsynced: Vec<DirOp>,
}

#[derive(Debug, Clone)]
enum Body {
    File(File),
    Dir(Dir),
}

#[derive(Debug, Clone)]
struct Node {
    body: Body,
    mode: u16,
}

/// What `stat` shows of one inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    pub mode: u16,
}

/// Counts of what the last power cut threw away.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CutReport {
    /// Files whose content differed from its last synced state.
    pub files_reverted: usize,
    /// Directories whose entries differed from their last synced state.
    pub dirs_reverted: usize,
    /// Inodes no synced directory entry reached any more.
    pub inodes_forgotten: usize,
}

#[derive(Debug, Clone)]
pub struct Model {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    /// Mutating operations so far.
    ops: u64,
    /// A crash armed for an operation: before that operation runs, the state a cut would leave is
    /// kept in `crashed`.
    armed: Option<(u64, Chooser)>,
    crashed: Option<Box<Model>>,
    faults: faults::Faults,
}

impl Default for Model {
    fn default() -> Self {
        let root = Node { body: Body::Dir(Dir::default()), mode: 0o755 };
        Model {
            nodes: HashMap::from([(ROOT, root)]),
            next_ino: ROOT + 1,
            ops: 0,
            armed: None,
            crashed: None,
            faults: faults::Faults::default(),
        }
    }
}

const ENOENT: Errno = Errno(libc::ENOENT);
const EEXIST: Errno = Errno(libc::EEXIST);
const ENOTDIR: Errno = Errno(libc::ENOTDIR);
const EISDIR: Errno = Errno(libc::EISDIR);
const ENOTEMPTY: Errno = Errno(libc::ENOTEMPTY);
const EINVAL: Errno = Errno(libc::EINVAL);

impl Model {
    pub fn stat(&self, ino: u64) -> Result<Stat, Errno> {
        let node = self.nodes.get(&ino).ok_or(ENOENT)?;
        let (kind, size) = match &node.body {
            Body::File(f) => (Kind::File, f.current.len() as u64),
            Body::Dir(d) => (Kind::Dir, d.current.len() as u64),
        };
        Ok(Stat { ino, kind, size, mode: node.mode })
    }

    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<Stat, Errno> {
        let ino = *self.dir(parent)?.current.get(name).ok_or(ENOENT)?;
        self.stat(ino)
    }

    /// Entries of a directory in name order, without `.` and `..`.
    pub fn entries(&self, dir: u64) -> Result<Vec<(OsString, Stat)>, Errno> {
        let dir = self.dir(dir)?;
        dir.current.iter().map(|(name, ino)| Ok((name.clone(), self.stat(*ino)?))).collect()
    }

    pub fn create(&mut self, parent: u64, name: &OsStr, kind: Kind, mode: u16) -> Result<Stat, Errno> {
        self.step(Op::Create, Some(name))?;
        if self.dir(parent)?.current.contains_key(name) {
            return Err(EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let body = match kind {
            Kind::File => Body::File(File::default()),
            Kind::Dir => Body::Dir(Dir::default()),
        };
        self.nodes.insert(ino, Node { body, mode });
        let dir = self.dir_mut(parent)?;
        dir.current.insert(name.to_owned(), ino);
        dir.unsynced.push(DirOp::Insert(name.to_owned(), ino));
        self.stat(ino)
    }

    pub fn set_mode(&mut self, ino: u64, mode: u16) -> Result<(), Errno> {
        self.nodes.get_mut(&ino).ok_or(ENOENT)?.mode = mode;
        Ok(())
    }

    pub fn read(&self, ino: u64, offset: u64, size: usize) -> Result<&[u8], Errno> {
        let data = &self.file(ino)?.current;
        let start = (offset as usize).min(data.len());
        let end = start.saturating_add(size).min(data.len());
        Ok(&data[start..end])
    }

    pub fn write(&mut self, ino: u64, offset: u64, bytes: &[u8]) -> Result<(), Errno> {
        let name = self.name_of(ino);
        self.step(Op::Write, name.as_deref())?;
        let end = offset as usize + bytes.len();
        let grows = end.saturating_sub(self.file(ino)?.current.len()) as u64;
        self.faults.check_room(self.used_bytes(), grows)?;
        let file = self.file_mut(ino)?;
        if file.current.len() < end {
            file.current.resize(end, 0);
        }
        file.current[offset as usize..end].copy_from_slice(bytes);
        mark(&mut file.dirty, offset, end as u64);
        Ok(())
    }

    pub fn set_len(&mut self, ino: u64, len: u64) -> Result<(), Errno> {
        let name = self.name_of(ino);
        self.step(Op::Truncate, name.as_deref())?;
        let grows = len.saturating_sub(self.file(ino)?.current.len() as u64);
        self.faults.check_room(self.used_bytes(), grows)?;
        let file = self.file_mut(ino)?;
        let old = file.current.len() as u64;
        file.current.resize(len as usize, 0);
        mark(&mut file.dirty, old.min(len), old.max(len));
        Ok(())
    }

    /// `fsync`/`fdatasync` of a file: its content and length survive a cut from now on. An
    /// injected failure does what Linux does: the changed pages are marked clean without being
    /// written, so a later sync succeeds and a cut still loses them.
    pub fn sync_file(&mut self, ino: u64) -> Result<(), Errno> {
        let name = self.name_of(ino);
        if let Err(errno) = self.step(Op::Fsync, name.as_deref()) {
            self.file_mut(ino)?.dirty.clear();
            return Err(errno);
        }
        let file = self.file_mut(ino)?;
        let len = file.current.len();
        file.durable.resize(len, 0);
        for page in std::mem::take(&mut file.dirty) {
            let start = ((page * PAGE) as usize).min(len);
            let end = (((page + 1) * PAGE) as usize).min(len);
            file.durable[start..end].copy_from_slice(&file.current[start..end]);
        }
        Ok(())
    }

    /// `fsync` of a directory: its entries survive a cut from now on.
    pub fn sync_dir(&mut self, ino: u64) -> Result<(), Errno> {
        let name = self.name_of(ino);
        self.step(Op::FsyncDir, name.as_deref())?;
        let dir = self.dir_mut(ino)?;
        dir.durable = dir.current.clone();
        dir.unsynced.clear();
        Ok(())
    }

    pub fn unlink(&mut self, parent: u64, name: &OsStr) -> Result<(), Errno> {
        self.step(Op::Unlink, Some(name))?;
        let target = self.lookup(parent, name)?;
        if target.kind == Kind::Dir {
            return Err(EISDIR);
        }
        self.remove_entry(parent, name)
    }

    pub fn rmdir(&mut self, parent: u64, name: &OsStr) -> Result<(), Errno> {
        self.step(Op::Unlink, Some(name))?;
        let target = self.lookup(parent, name)?;
        if !self.dir(target.ino)?.current.is_empty() {
            return Err(ENOTEMPTY);
        }
        self.remove_entry(parent, name)
    }

    /// `rename(2)` without flags: replaces a file (or an empty directory) of the new name.
    pub fn rename(&mut self, parent: u64, name: &OsStr, new_parent: u64, new_name: &OsStr) -> Result<(), Errno> {
        self.step(Op::Rename, Some(name))?;
        let moving = self.lookup(parent, name)?;
        self.dir(new_parent)?;
        if let Ok(existing) = self.lookup(new_parent, new_name) {
            if existing.ino == moving.ino {
                return Ok(());
            }
            match (moving.kind, existing.kind) {
                (Kind::File, Kind::Dir) => return Err(EISDIR),
                (Kind::Dir, Kind::File) => return Err(ENOTDIR),
                (Kind::Dir, Kind::Dir) if !self.dir(existing.ino)?.current.is_empty() => return Err(ENOTEMPTY),
                _ => {}
            }
        }
        if moving.kind == Kind::Dir && self.is_within(new_parent, moving.ino) {
            return Err(EINVAL);
        }
        if parent == new_parent {
            let dir = self.dir_mut(parent)?;
            dir.current.remove(name);
            dir.current.insert(new_name.to_owned(), moving.ino);
            dir.unsynced.push(DirOp::Rename { from: name.to_owned(), to: new_name.to_owned(), ino: moving.ino });
            return Ok(());
        }
        self.remove_entry(parent, name)?;
        let to = self.dir_mut(new_parent)?;
        to.current.insert(new_name.to_owned(), moving.ino);
        to.unsynced.push(DirOp::Insert(new_name.to_owned(), moving.ino));
        Ok(())
    }

    /// Mutating operations so far (the number the next one gets).
    pub fn ops(&self) -> u64 {
        self.ops
    }

    /// Arms a crash: just before operation `op` runs (see [`Model::ops`]), the state a power cut
    /// would leave, chosen by `chooser`, is kept (see [`Model::take_crashed`]). An operation
    /// already past keeps the state now.
    pub fn arm_crash(&mut self, op: u64, chooser: Chooser) {
        self.crashed = None;
        self.armed = Some((op, chooser));
        if op <= self.ops {
            self.crash_now();
        }
    }

    /// The state kept by an armed crash, if its operation came.
    pub fn take_crashed(&mut self) -> Option<Model> {
        self.armed = None;
        self.crashed.take().map(|m| *m)
    }

    /// Fails matching operations from now on (see [`Fault`]).
    pub fn inject(&mut self, fault: Fault) {
        self.faults.inject(fault);
    }

    /// Removes every injected failure.
    pub fn clear_faults(&mut self) {
        self.faults.clear();
    }

    /// Limits the bytes files may hold (`None`: unlimited); writes past it fail with `ENOSPC`.
    pub fn set_capacity(&mut self, bytes: Option<u64>) {
        self.faults.capacity = bytes;
    }

    /// Total and free bytes, for `statfs`.
    pub fn space(&self) -> (u64, u64) {
        let total = self.faults.capacity.unwrap_or(1 << 42);
        (total, total.saturating_sub(self.used_bytes()))
    }

    /// Bytes of the current content of every file a name reaches (an unlinked file gives its
    /// space back at once: open handles are not modelled).
    fn used_bytes(&self) -> u64 {
        let reachable = self.reachable();
        let file_bytes = |(ino, n): (&u64, &Node)| match &n.body {
            Body::File(f) if reachable.contains(ino) => f.current.len() as u64,
            _ => 0,
        };
        self.nodes.iter().map(file_bytes).sum()
    }

    /// Numbers a mutating operation, keeps the armed crash state before it, and fails it if an
    /// injected fault matches.
    fn step(&mut self, op: Op, name: Option<&OsStr>) -> Result<(), Errno> {
        if self.armed.as_ref().is_some_and(|(at, _)| *at == self.ops) && self.crashed.is_none() {
            self.crash_now();
        }
        self.ops += 1;
        self.faults.check(op, name)
    }

    fn crash_now(&mut self) {
        let Some((_, chooser)) = &mut self.armed else { return };
        let mut chooser = chooser.clone();
        let mut copy = Model { armed: None, crashed: None, faults: faults::Faults::default(), ..self.clone() };
        copy.cut_with(&mut chooser);
        self.crashed = Some(Box::new(copy));
    }

    fn remove_entry(&mut self, parent: u64, name: &OsStr) -> Result<(), Errno> {
        let dir = self.dir_mut(parent)?;
        dir.current.remove(name);
        dir.unsynced.push(DirOp::Remove(name.to_owned()));
        Ok(())
    }

    /// A name of `ino` (for matching faults), if a directory holds one.
    fn name_of(&self, ino: u64) -> Option<OsString> {
        self.nodes.values().find_map(|node| match &node.body {
            Body::Dir(d) => d.current.iter().find(|(_, i)| **i == ino).map(|(n, _)| n.clone()),
            Body::File(_) => None,
        })
    }

    fn reachable(&self) -> BTreeSet<u64> {
        let mut seen = BTreeSet::from([ROOT]);
        let mut todo = vec![ROOT];
        while let Some(ino) = todo.pop() {
            if let Some(Node { body: Body::Dir(d), .. }) = self.nodes.get(&ino) {
                for child in d.current.values() {
                    if seen.insert(*child) {
                        todo.push(*child);
                    }
                }
            }
        }
        seen
    }

    /// Whether `ino` is `ancestor` or lies below it (a directory may not move into itself).
    fn is_within(&self, ino: u64, ancestor: u64) -> bool {
        let mut todo = vec![ancestor];
        while let Some(dir) = todo.pop() {
            if dir == ino {
                return true;
            }
            if let Ok(d) = self.dir(dir) {
                todo.extend(d.current.values().copied());
            }
        }
        false
    }

    fn dir(&self, ino: u64) -> Result<&Dir, Errno> {
        match &self.nodes.get(&ino).ok_or(ENOENT)?.body {
            Body::Dir(d) => Ok(d),
            Body::File(_) => Err(ENOTDIR),
        }
    }

    fn dir_mut(&mut self, ino: u64) -> Result<&mut Dir, Errno> {
        match &mut self.nodes.get_mut(&ino).ok_or(ENOENT)?.body {
            Body::Dir(d) => Ok(d),
            Body::File(_) => Err(ENOTDIR),
        }
    }

    fn file(&self, ino: u64) -> Result<&File, Errno> {
        match &self.nodes.get(&ino).ok_or(ENOENT)?.body {
            Body::File(f) => Ok(f),
            Body::Dir(_) => Err(EISDIR),
        }
    }

    fn file_mut(&mut self, ino: u64) -> Result<&mut File, Errno> {
        match &mut self.nodes.get_mut(&ino).ok_or(ENOENT)?.body {
            Body::File(f) => Ok(f),
            Body::Dir(_) => Err(EISDIR),
        }
    }
}

fn mark(dirty: &mut BTreeSet<u64>, start: u64, end: u64) {
    if end > start {
        dirty.extend(start / PAGE..=(end - 1) / PAGE);
    }
}

#[cfg(test)]
mod tests;
