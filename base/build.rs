//! Embeds build and supply-chain facts for `version`: git commit, rustc, target, profile, the
//! SHA-256 of the Cargo.lock the binary was built from, and for each of the three binaries the
//! packages linked into it (normal dependencies for this target, proc-macros and build and dev
//! dependencies left out, as `cargo metadata` resolves them) with version, source and registry
//! checksum. Should `cargo metadata` fail, every locked package is listed and the report says so.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

fn main() {
    let root = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("..");
    let lock_path = root.join("Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock_path.display());
    for member in ["base", "queue", "targetdb", "ingest", "applier", "ctl"] {
        println!("cargo:rerun-if-changed={}", root.join(member).join("Cargo.toml").display());
    }
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
    let locked = packages(&lock);
    let linked = linked_sets(&root);
    let _ = writeln!(
        out,
        "pub const LINKED_EXACT: Result<(), &str> = {};",
        match &linked {
            Ok(_) => "Ok(())".to_owned(),
            Err(e) => format!("Err({e:?})"),
        }
    );
    let _ = writeln!(out, "pub const BINARIES: &[(&str, &[Dependency])] = &[");
    for (binary, package) in BINARIES {
        let _ = writeln!(out, "    ({binary:?}, &[");
        for p in &locked {
            let keep = match &linked {
                Ok(sets) => sets.get(package).is_some_and(|set| set.contains(&(p.0.clone(), p.1.clone()))),
                Err(_) => true,
            };
            if keep {
                let _ = writeln!(
                    out,
                    "        Dependency {{ name: {:?}, version: {:?}, source: {:?}, checksum: {:?} }},",
                    p.0, p.1, p.2, p.3
                );
            }
        }
        let _ = writeln!(out, "    ]),");
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

/// Each binary and the package that builds it.
const BINARIES: [(&str, &str); 3] =
    [("wharf-ingest", "wharf-ingest"), ("wharf-applier", "wharf-applier"), ("wharfctl", "wharfctl")];

type Linked = std::collections::HashMap<String, std::collections::HashSet<(String, String)>>;

/// (name, version) of the packages linked into each binary's package.
fn linked_sets(root: &Path) -> Result<Linked, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = std::env::var("TARGET").unwrap_or_default();
    let output = Command::new(cargo)
        .current_dir(root)
        .args(["metadata", "--format-version", "1", "--offline", "--locked", "--filter-platform", &target])
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err(format!("cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr).trim()));
    }
    let meta: serde_json::Value = serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())?;
    let packages: std::collections::HashMap<&str, &serde_json::Value> =
        meta["packages"].as_array().into_iter().flatten().filter_map(|p| Some((p["id"].as_str()?, p))).collect();
    let nodes: std::collections::HashMap<&str, &serde_json::Value> = meta["resolve"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| Some((n["id"].as_str()?, n)))
        .collect();
    let is_proc_macro = |p: &serde_json::Value| {
        p["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["kind"].as_array().into_iter().flatten().any(|k| k == "proc-macro"))
    };
    let mut out = Linked::new();
    for (_, name) in BINARIES {
        let start = packages
            .iter()
            .find(|(_, p)| p["name"] == name && p["source"].is_null())
            .map(|(id, _)| *id)
            .ok_or_else(|| format!("package {name} not in the workspace"))?;
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![start];
        while let Some(id) = stack.pop() {
            let Some(package) = packages.get(id) else { continue };
            if is_proc_macro(package) || !seen.insert(id) {
                continue;
            }
            for dep in nodes.get(id).and_then(|n| n["deps"].as_array()).into_iter().flatten() {
                let normal = dep["dep_kinds"].as_array().into_iter().flatten().any(|k| k["kind"].is_null());
                if let (true, Some(pkg)) = (normal, dep["pkg"].as_str()) {
                    stack.push(pkg);
                }
            }
        }
        let set = seen
            .iter()
            .filter_map(|id| packages.get(id))
            .map(|p| {
                (
                    p["name"].as_str().unwrap_or_default().to_owned(),
                    p["version"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        out.insert(name.to_owned(), set);
    }
    Ok(out)
}
