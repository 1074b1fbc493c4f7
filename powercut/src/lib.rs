//! A power-cut test filesystem: a FUSE mount, held in memory, that loses on command everything
//! not yet made durable by `fsync`/`fdatasync` (file contents) or a directory `fsync` (new names,
//! removals, renames).
//!
//! Killing a process with SIGKILL keeps the kernel's page cache, so a crash test on a normal disk
//! cannot tell a write from a sync. On this mount it can: [`PowerCut::cut`] unmounts, throws the
//! unsynced layer away and mounts again, as if the machine had lost power. Mounting needs root
//! (or `fusermount3` from Debian's `fuse3` package) and `/dev/fuse`.

mod fs;
pub mod model;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fuser::{BackgroundSession, MountOption};

pub use model::CutReport;
use model::Model;

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
    mountpoint: PathBuf,
    session: Option<BackgroundSession>,
}

impl PowerCut {
    /// Mounts an empty filesystem at `mountpoint` (an existing, empty directory).
    pub fn mount(mountpoint: &Path) -> Result<PowerCut, Error> {
        let mut cut = PowerCut { model: Arc::default(), mountpoint: mountpoint.to_owned(), session: None };
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
        self.unmount()?;
        let report = self.model.lock().expect("power-cut model lock").cut();
        self.session = Some(self.start_session()?);
        Ok(report)
    }

    fn start_session(&self) -> Result<BackgroundSession, Error> {
        let fs = fs::PowerCutFs { model: self.model.clone() };
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
        if let Err(error) = self.unmount() {
            tracing::warn!(%error, "power-cut filesystem left mounted");
        }
    }
}
