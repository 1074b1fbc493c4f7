//! `version`: build and supply-chain facts embedded at build time (see `build.rs`).

use std::fmt::Write as _;

/// One package linked into a binary.
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

/// The packages linked into `binary` (every locked package if that could not be worked out).
pub fn dependencies(binary: &str) -> &'static [Dependency] {
    BINARIES.iter().find(|(name, _)| *name == binary).map_or(&[], |(_, deps)| deps)
}

/// Human-readable report: one line of build facts, then one line per linked package.
pub fn text(binary: &str) -> String {
    let mut out = String::new();
    let deps = dependencies(binary);
    let dirty = if GIT_DIRTY { " (modified)" } else { "" };
    let _ = writeln!(out, "{binary} {}", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(out, "commit      {GIT_COMMIT}{dirty}");
    let _ = writeln!(out, "rustc       {RUSTC}");
    let _ = writeln!(out, "target      {TARGET} ({PROFILE})");
    let _ = writeln!(out, "Cargo.lock  sha256:{CARGO_LOCK_SHA256}");
    match LINKED_EXACT {
        Ok(()) => {
            let _ = writeln!(out, "linked packages ({}):", deps.len());
        }
        Err(reason) => {
            let _ = writeln!(out, "locked packages ({}; the linked set is unknown: {reason}):", deps.len());
        }
    }
    for d in deps {
        let origin = if d.source.is_empty() { "workspace".to_owned() } else { format!("sha256:{}", d.checksum) };
        let _ = writeln!(out, "  {} {} {origin}", d.name, d.version);
    }
    out
}

/// The same facts as one JSON object.
pub fn json(binary: &str) -> String {
    let dependencies: Vec<serde_json::Value> = dependencies(binary)
        .iter()
        .map(|d| serde_json::json!({"name": d.name, "version": d.version, "source": d.source, "checksum": d.checksum}))
        .collect();
    serde_json::json!({
        "binary": binary,
        "version": env!("CARGO_PKG_VERSION"),
        "commit": GIT_COMMIT,
        "modified": GIT_DIRTY,
        "rustc": RUSTC,
        "target": TARGET,
        "profile": PROFILE,
        "cargo_lock_sha256": CARGO_LOCK_SHA256,
        "linked_exact": LINKED_EXACT.is_ok(),
        "dependencies": dependencies,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(binary: &str) -> Vec<&'static str> {
        dependencies(binary).iter().map(|d| d.name).collect()
    }

    #[test]
    fn each_binary_lists_what_is_linked_into_it_with_registry_checksums() {
        assert_eq!(LINKED_EXACT, Ok(()));
        assert_eq!(CARGO_LOCK_SHA256.len(), 64);
        let tokio = dependencies("wharf-applier").iter().find(|d| d.name == "tokio").expect("tokio is linked");
        assert!(tokio.source.starts_with("registry+"));
        assert_eq!(tokio.checksum.len(), 64);
        let ingest = names("wharf-ingest");
        let applier = names("wharf-applier");
        let ctl = names("wharfctl");
        for own in ["wharf-queue", "wharf-targetdb"] {
            assert!(ingest.contains(&own) && applier.contains(&own) && ctl.contains(&own), "{own}");
        }
        assert!(ingest.contains(&"jsonwebtoken") || ingest.contains(&"wharf-ingest"));
        assert!(!applier.contains(&"wharf-ingest"), "the applier does not link the ingest");
        for not_linked in ["proptest", "tempfile", "thiserror-impl", "cc"] {
            assert!(!applier.contains(&not_linked), "{not_linked} is a dev, build or proc-macro dependency");
        }
        let parsed: serde_json::Value = serde_json::from_str(&json("wharf-applier")).unwrap();
        assert_eq!(parsed["dependencies"].as_array().unwrap().len(), applier.len());
        assert_eq!(parsed["linked_exact"], true);
    }
}
