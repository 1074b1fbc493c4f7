//! The filesystem's state in two layers: what programs see now, and what a power cut leaves.
//!
//! Every change lands in the current layer. `fsync`/`fdatasync` of a file copies that file's
//! changed pages and its length to the durable layer; `fsync` of a directory copies its entries
//! (new names, removed names, renames into and out of it). A power cut replaces the current layer
//! with the durable one and forgets every inode no durable directory entry reaches. This is the
//! strictest reading of POSIX: a new file is only there after a cut if its directory was synced,
//! and data written but not synced is gone, even if the program closed the file.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};

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

#[derive(Debug, Default)]
struct File {
    current: Vec<u8>,
    durable: Vec<u8>,
    dirty: BTreeSet<u64>,
}

#[derive(Debug, Default)]
struct Dir {
    current: BTreeMap<OsString, u64>,
    durable: BTreeMap<OsString, u64>,
}

#[derive(Debug)]
enum Body {
    File(File),
    Dir(Dir),
}

#[derive(Debug)]
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

#[derive(Debug)]
pub struct Model {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
}

impl Default for Model {
    fn default() -> Self {
        let root = Node { body: Body::Dir(Dir::default()), mode: 0o755 };
        Model { nodes: HashMap::from([(ROOT, root)]), next_ino: ROOT + 1 }
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
        self.dir_mut(parent)?.current.insert(name.to_owned(), ino);
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
        let file = self.file_mut(ino)?;
        let end = offset as usize + bytes.len();
        if file.current.len() < end {
            file.current.resize(end, 0);
        }
        file.current[offset as usize..end].copy_from_slice(bytes);
        mark(&mut file.dirty, offset, end as u64);
        Ok(())
    }

    pub fn set_len(&mut self, ino: u64, len: u64) -> Result<(), Errno> {
        let file = self.file_mut(ino)?;
        let old = file.current.len() as u64;
        file.current.resize(len as usize, 0);
        mark(&mut file.dirty, old.min(len), old.max(len));
        Ok(())
    }

    /// `fsync`/`fdatasync` of a file: its content and length survive a cut from now on.
    pub fn sync_file(&mut self, ino: u64) -> Result<(), Errno> {
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
        let dir = self.dir_mut(ino)?;
        dir.durable = dir.current.clone();
        Ok(())
    }

    pub fn unlink(&mut self, parent: u64, name: &OsStr) -> Result<(), Errno> {
        let target = self.lookup(parent, name)?;
        if target.kind == Kind::Dir {
            return Err(EISDIR);
        }
        self.dir_mut(parent)?.current.remove(name);
        Ok(())
    }

    pub fn rmdir(&mut self, parent: u64, name: &OsStr) -> Result<(), Errno> {
        let target = self.lookup(parent, name)?;
        if !self.dir(target.ino)?.current.is_empty() {
            return Err(ENOTEMPTY);
        }
        self.dir_mut(parent)?.current.remove(name);
        Ok(())
    }

    /// `rename(2)` without flags: replaces a file (or an empty directory) of the new name.
    pub fn rename(&mut self, parent: u64, name: &OsStr, new_parent: u64, new_name: &OsStr) -> Result<(), Errno> {
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
        self.dir_mut(parent)?.current.remove(name);
        self.dir_mut(new_parent)?.current.insert(new_name.to_owned(), moving.ino);
        Ok(())
    }

    /// The power cut: every unsynced change is gone.
    pub fn cut(&mut self) -> CutReport {
        let mut report = CutReport::default();
        for node in self.nodes.values_mut() {
            match &mut node.body {
                Body::File(f) => {
                    if f.current != f.durable {
                        report.files_reverted += 1;
                        f.current = f.durable.clone();
                    }
                    f.dirty.clear();
                }
                Body::Dir(d) => {
                    if d.current != d.durable {
                        report.dirs_reverted += 1;
                        d.current = d.durable.clone();
                    }
                }
            }
        }
        let reachable = self.reachable();
        let before = self.nodes.len();
        self.nodes.retain(|ino, _| reachable.contains(ino));
        report.inodes_forgotten = before - self.nodes.len();
        report
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
