//! `version`: build and supply-chain facts embedded at build time (see `build.rs`).

use std::fmt::Write as _;

/// One locked dependency.
#[derive(Debug)]
pub struct Dependency {
    pub name: &'static str,
    pub version: &'static str,
    /// `registry+https://…` for crates.io, empty for workspace crates.
    pub source: &'static str,
    /// The registry's SHA-256 of the crate archive (empty for workspace crates).
    pub checksum: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/build_info.rs"));

/// Human-readable report: one line of build facts, then one line per dependency.
pub fn text(binary: &str) -> String {
    let mut out = String::new();
    let dirty = if GIT_DIRTY { " (modified)" } else { "" };
    let _ = writeln!(out, "{binary} {}", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(out, "commit      {GIT_COMMIT}{dirty}");
    let _ = writeln!(out, "rustc       {RUSTC}");
    let _ = writeln!(out, "target      {TARGET} ({PROFILE})");
    let _ = writeln!(out, "Cargo.lock  sha256:{CARGO_LOCK_SHA256}");
    let _ = writeln!(out, "dependencies ({}):", DEPENDENCIES.len());
    for d in DEPENDENCIES {
        let origin = if d.source.is_empty() { "workspace".to_owned() } else { format!("sha256:{}", d.checksum) };
        let _ = writeln!(out, "  {} {} {origin}", d.name, d.version);
    }
    out
}

/// The same facts as one JSON object.
pub fn json(binary: &str) -> String {
    let dependencies: Vec<serde_json::Value> = DEPENDENCIES
        .iter()
        .map(|d| serde_json::json!({"name": d.name, "version": d.version, "source": d.source, "checksum": d.checksum}))
        .collect();
    serde_json::json!({
        "binary": binary,
        "package": env!("CARGO_PKG_NAME"),
        "version": env!("CARGO_PKG_VERSION"),
        "commit": GIT_COMMIT,
        "modified": GIT_DIRTY,
        "rustc": RUSTC,
        "target": TARGET,
        "profile": PROFILE,
        "cargo_lock_sha256": CARGO_LOCK_SHA256,
        "dependencies": dependencies,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_file_is_embedded_with_registry_checksums() {
        assert_eq!(CARGO_LOCK_SHA256.len(), 64);
        let tokio = DEPENDENCIES.iter().find(|d| d.name == "tokio").expect("tokio is locked");
        assert!(tokio.source.starts_with("registry+"));
        assert_eq!(tokio.checksum.len(), 64);
        let own = DEPENDENCIES.iter().find(|d| d.name == "wharf-ingest").expect("workspace crates are listed");
        assert!(own.source.is_empty());
        let parsed: serde_json::Value = serde_json::from_str(&json("wharf-ingest")).unwrap();
        assert_eq!(parsed["dependencies"].as_array().unwrap().len(), DEPENDENCIES.len());
    }
}
