//! The journal directory: created so that it survives a power cut, and its free space.

use std::fs::File;
use std::path::Path;

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
        match std::fs::create_dir(created) {
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
