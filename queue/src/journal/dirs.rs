//! The journal directory: created so that it survives a power cut and only its owner reads it,
//! and its free space.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of the journal directory: rows are the source database's data.
pub(super) const DIR_MODE: u32 = 0o700;
/// Mode of every file in it.
pub(super) const FILE_MODE: u32 = 0o600;

/// Options to create a journal file: only its owner may read or write it.
pub(super) fn private_file() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.mode(FILE_MODE);
    options
}

/// Takes group and other permissions off the journal directory and its files if an earlier
/// version (or an operator) left them on; returns how many it changed.
pub(super) fn make_private(dir: &Path) -> std::io::Result<usize> {
    let mut changed = 0;
    let tighten = |path: &Path, mode: u32, changed: &mut usize| -> std::io::Result<()> {
        let meta = std::fs::symlink_metadata(path)?;
        if meta.permissions().mode() & 0o077 != 0 && !meta.file_type().is_symlink() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
            *changed += 1;
        }
        Ok(())
    };
    tighten(dir, DIR_MODE, &mut changed)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            tighten(&entry.path(), FILE_MODE, &mut changed)?;
        }
    }
    Ok(changed)
}

/// `mkdir -p` that also fsyncs the parent of every directory it creates: a new directory's entry
/// is only durable once its parent is synced, and without it a power cut could take the whole
/// journal (every acknowledged row) with it.
pub(super) fn create_durably(dir: &Path) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.exists() {
        missing.push(at);
        match at.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => at = parent,
            _ => break,
        }
    }
    for created in missing.into_iter().rev() {
        match std::fs::DirBuilder::new().mode(DIR_MODE).create(created) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
        let parent = created.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Bytes available to unprivileged writers on the file system holding `dir`.
pub(super) fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `statvfs` is plain integers, for which all-zero bytes are a valid value.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `stat` a properly sized, writable struct.
    let result = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
    (result == 0).then(|| stat.f_bavail as u64 * stat.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn creates_every_missing_level() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("a/b/journal");
        super::create_durably(&dir).unwrap();
        assert!(dir.is_dir());
        super::create_durably(&dir).unwrap();
    }
}
