//! Creating the journal directory so that it survives a power cut.

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
