//! Embeds build and supply-chain facts for `version`: git commit, rustc, target, profile, the
//! SHA-256 of the Cargo.lock the binary was built from, and every locked dependency with its
//! version, source and registry checksum.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

fn main() {
    let root = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("..");
    let lock_path = root.join("Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock_path.display());
    println!("cargo:rerun-if-changed={}", root.join(".git/HEAD").display());
    if let Some(reference) = std::fs::read_to_string(root.join(".git/HEAD"))
        .ok()
        .and_then(|h| h.strip_prefix("ref: ").map(|r| r.trim().to_owned()))
    {
        println!("cargo:rerun-if-changed={}", root.join(".git").join(reference).display());
    }
    let lock = std::fs::read_to_string(&lock_path).unwrap_or_default();
    let lock_sha = Sha256::digest(lock.as_bytes()).iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    });
    let commit = git(&root, &["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = git(&root, &["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = Command::new(rustc)
        .arg("-V")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "pub const GIT_COMMIT: &str = {:?};", commit);
    let _ = writeln!(out, "pub const GIT_DIRTY: bool = {dirty};");
    let _ = writeln!(out, "pub const RUSTC: &str = {:?};", rustc_version);
    let _ = writeln!(out, "pub const TARGET: &str = {:?};", std::env::var("TARGET").unwrap_or_default());
    let _ = writeln!(out, "pub const PROFILE: &str = {:?};", std::env::var("PROFILE").unwrap_or_default());
    let _ = writeln!(out, "pub const CARGO_LOCK_SHA256: &str = {:?};", lock_sha);
    let _ = writeln!(out, "pub const DEPENDENCIES: &[Dependency] = &[");
    for package in packages(&lock) {
        let _ = writeln!(
            out,
            "    Dependency {{ name: {:?}, version: {:?}, source: {:?}, checksum: {:?} }},",
            package.0, package.1, package.2, package.3
        );
    }
    let _ = writeln!(out, "];");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("cargo sets it")).join("build_info.rs");
    std::fs::write(dest, out).expect("write build_info.rs");
}

fn git(root: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git").arg("-C").arg(root).args(args).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// (name, version, source, checksum) of every `[[package]]` in a Cargo.lock.
fn packages(lock: &str) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for block in lock.split("[[package]]").skip(1) {
        let field = |key: &str| {
            block
                .lines()
                .find_map(|l| {
                    l.strip_prefix(key)
                        .and_then(|r| r.trim().strip_prefix('='))
                        .map(|v| v.trim().trim_matches('"').to_owned())
                })
                .unwrap_or_default()
        };
        out.push((field("name "), field("version "), field("source "), field("checksum ")));
    }
    out
}
