//! A power-cut test filesystem: a FUSE mount, held in memory, that loses on command what was not
//! yet made durable by `fsync`/`fdatasync` (file contents) or a directory `fsync` (new names,
//! removals, renames).
//!
//! Killing a process with SIGKILL keeps the kernel's page cache, so a crash test on a normal disk
//! cannot tell a write from a sync. On this mount it can: [`PowerCut::cut`] unmounts, throws the
//! unsynced layer away and mounts again, as if the machine had lost power; [`PowerCut::cut_with`]
//! keeps what a real disk might of the unsynced layer (torn pages and sectors, grown lengths full
//! of zeros, a prefix of the directory operations); [`PowerCut::arm_crash`] and
//! [`PowerCut::restore_crash`] cut at a chosen operation while a program runs. Failures
//! ([`Fault`]), a capacity (`ENOSPC`) and a hung device ([`PowerCut::hang_syncs`]) can be
//! injected. Mounting needs root (or `fusermount3` from Debian's `fuse3` package) and `/dev/fuse`.

mod fs;
pub mod model;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fuser::{BackgroundSession, MountOption};

use model::Model;
pub use model::{Chooser, CutReport, Fault, Granularity, Op};

/// Why mounting or cutting failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot mount the power-cut filesystem at {path}: {source} (needs /dev/fuse and root or fusermount3)")]
    Mount { path: PathBuf, source: std::io::Error },
    #[error("cannot unmount {path}: {source} (is a process still using it?)")]
    Unmount { path: PathBuf, source: std::io::Error },
    #[error(
        "the FUSE session at {path} did not end within {waited:?} after unmounting (a process still holds a file?)"
    )]
    Stuck { path: PathBuf, waited: Duration },
}

/// A mounted power-cut filesystem; dropping it unmounts and discards everything.
pub struct PowerCut {
    model: Arc<Mutex<Model>>,
    hang: Arc<fs::Hang>,
    mountpoint: PathBuf,
    session: Option<BackgroundSession>,
}

impl PowerCut {
    /// Mounts an empty filesystem at `mountpoint` (an existing, empty directory).
    pub fn mount(mountpoint: &Path) -> Result<PowerCut, Error> {
        let mut cut =
            PowerCut { model: Arc::default(), hang: Arc::default(), mountpoint: mountpoint.to_owned(), session: None };
        cut.session = Some(cut.start_session()?);
        Ok(cut)
    }

    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// Cuts the power and brings the filesystem back with only what was synced.
    ///
    /// Stop (and reap) every process using the mount first: a cut drops the kernel's view of the
    /// filesystem, and the unmount waits for open files to close.
    pub fn cut(&mut self) -> Result<CutReport, Error> {
        self.cut_with(Chooser::strict())
    }

    /// Like [`PowerCut::cut`], keeping what `chooser` decides of the unsynced changes.
    pub fn cut_with(&mut self, mut chooser: Chooser) -> Result<CutReport, Error> {
        self.unmount()?;
        let report = self.model().cut_with(&mut chooser);
        self.session = Some(self.start_session()?);
        Ok(report)
    }

    /// Mutating operations so far; the next one gets this number.
    pub fn ops(&self) -> u64 {
        self.model().ops()
    }

    /// Cuts the power, as `chooser` decides, just before operation `op` (see [`PowerCut::ops`]):
    /// the state is kept while the program goes on, and [`PowerCut::restore_crash`] brings it back.
    pub fn arm_crash(&self, op: u64, chooser: Chooser) {
        self.model().arm_crash(op, chooser);
    }

    /// Mounts again with the state the armed crash kept; `false` (and the filesystem as it is)
    /// if its operation never came. Stop every process using the mount first.
    pub fn restore_crash(&mut self) -> Result<bool, Error> {
        self.unmount()?;
        let crashed = self.model().take_crashed();
        let restored = crashed.is_some();
        if let Some(crashed) = crashed {
            *self.model() = crashed;
        }
        self.session = Some(self.start_session()?);
        Ok(restored)
    }

    /// Fails matching operations from now on.
    pub fn inject(&self, fault: Fault) {
        self.model().inject(fault);
    }

    /// Removes every injected failure.
    pub fn clear_faults(&self) {
        self.model().clear_faults();
    }

    /// Limits the bytes files may hold in all (`ENOSPC` past it); `None` for no limit.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.model().set_capacity(bytes);
    }

    /// Bytes files hold now.
    pub fn used_bytes(&self) -> u64 {
        let (total, free) = self.model().space();
        total - free
    }

    /// Bytes files may still grow by (see [`PowerCut::set_capacity`]).
    pub fn space_free(&self) -> u64 {
        self.model().space().1
    }

    /// While `true`, every file sync waits (and the whole filesystem behind it), as on a device
    /// that stopped answering.
    pub fn hang_syncs(&self, hung: bool) {
        self.hang.set(hung);
    }

    fn model(&self) -> std::sync::MutexGuard<'_, Model> {
        self.model.lock().expect("power-cut model lock")
    }

    fn start_session(&self) -> Result<BackgroundSession, Error> {
        let fs = fs::PowerCutFs { model: self.model.clone(), hang: self.hang.clone() };
        let options = [MountOption::FSName("wharf-powercut".into()), MountOption::RW];
        fuser::spawn_mount2(fs, &self.mountpoint, &options)
            .map_err(|source| Error::Mount { path: self.mountpoint.clone(), source })
    }

    fn unmount(&mut self) -> Result<(), Error> {
        let Some(session) = self.session.take() else { return Ok(()) };
        let path = std::ffi::CString::new(self.mountpoint.as_os_str().as_encoded_bytes()).expect("no NUL in path");
        // SAFETY: `path` is a valid NUL-terminated string for the duration of the call.
        if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } != 0 {
            let source = std::io::Error::last_os_error();
            return Err(Error::Unmount { path: self.mountpoint.clone(), source });
        }
        let waited = Duration::from_secs(30);
        let deadline = Instant::now() + waited;
        while !session.guard.is_finished() {
            if Instant::now() > deadline {
                return Err(Error::Stuck { path: self.mountpoint.clone(), waited });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // Not `session.join()`: it unwraps the session loop's result, and after a detached unmount
        // the loop's read may end with ECONNABORTED, the normal end of an aborted connection.
        let BackgroundSession { guard, .. } = session;
        match guard.join() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) if error.raw_os_error() == Some(libc::ECONNABORTED) => Ok(()),
            Ok(Err(source)) => Err(Error::Unmount { path: self.mountpoint.clone(), source }),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for PowerCut {
    fn drop(&mut self) {
        self.hang.set(false);
        if let Err(error) = self.unmount() {
            tracing::warn!(%error, "power-cut filesystem left mounted");
        }
    }
}
