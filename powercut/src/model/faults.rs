//! Failures a test injects: an errno for the next (or every) operation of a kind, optionally only
//! on names containing a text, and a capacity past which writes fail with `ENOSPC`.

use std::ffi::OsStr;

use super::Errno;

/// The kinds of mutating operation a fault can match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Write,
    Truncate,
    /// `fsync`/`fdatasync` of a file.
    Fsync,
    /// `fsync` of a directory.
    FsyncDir,
    Rename,
    Unlink,
}

/// Fails operations of kind `op` with `errno`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub op: Op,
    pub errno: i32,
    /// Only on files or directories whose name contains this (for a rename, the old name).
    pub name_contains: Option<String>,
    /// How many matching operations fail before the fault is spent (`None`: all of them).
    pub times: Option<u32>,
}

impl Fault {
    /// Fails the next operation of kind `op` (on any name) with `errno`.
    pub fn once(op: Op, errno: i32) -> Fault {
        Fault { op, errno, name_contains: None, times: Some(1) }
    }

    /// Only on names containing `text`.
    pub fn on(mut self, text: &str) -> Fault {
        self.name_contains = Some(text.to_owned());
        self
    }

    /// Every matching operation, until cleared.
    pub fn always(mut self) -> Fault {
        self.times = None;
        self
    }
}

#[derive(Debug, Clone, Default)]
pub(super) struct Faults {
    active: Vec<Fault>,
    /// Bytes the files may hold in all.
    pub capacity: Option<u64>,
}

impl Faults {
    pub fn inject(&mut self, fault: Fault) {
        self.active.push(fault);
    }

    pub fn clear(&mut self) {
        self.active.clear();
    }

    /// The errno of the first fault that matches, spending one of its times.
    pub fn check(&mut self, op: Op, name: Option<&OsStr>) -> Result<(), Errno> {
        let name = name.map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let hit = self
            .active
            .iter()
            .position(|f| f.op == op && f.name_contains.as_ref().is_none_or(|text| name.contains(text.as_str())));
        let Some(at) = hit else { return Ok(()) };
        let errno = self.active[at].errno;
        if let Some(times) = &mut self.active[at].times {
            *times -= 1;
            if *times == 0 {
                self.active.remove(at);
            }
        }
        Err(Errno(errno))
    }

    /// `ENOSPC` if `grows` more bytes do not fit beside `used`.
    pub fn check_room(&self, used: u64, grows: u64) -> Result<(), Errno> {
        match self.capacity {
            Some(capacity) if grows > 0 && used + grows > capacity => Err(Errno(libc::ENOSPC)),
            _ => Ok(()),
        }
    }
}
