//! The README's flag tables and `--help` agree: every flag `--help` prints is documented, and no
//! documented flag is missing from `--help`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Every `--flag` in `text`, without `--help` and `--version`.
fn flags(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (i, _) in text.match_indices("--") {
        let name: String = text[i + 2..].chars().take_while(char::is_ascii_alphanumeric).collect();
        if !name.is_empty() && name != "help" && name != "version" {
            found.insert(name);
        }
    }
    found
}

/// The first column of the README table that follows `heading`.
fn documented(heading: &str) -> BTreeSet<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
    let start = readme.find(heading).unwrap_or_else(|| panic!("README has no {heading:?}"));
    let table = readme[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.split('|').nth(1))
        .collect::<Vec<_>>()
        .join(" ");
    flags(&table)
}

fn help(binary: &Path) -> BTreeSet<String> {
    let out = Command::new(binary).args(["start", "--help"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Only the option lines (and their aliases), not flags named in other flags' descriptions.
    let text = String::from_utf8(out.stdout).unwrap();
    let options: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with('-') || l.contains("[aliases:") || l.contains("[alias:"))
        .collect();
    flags(&options.join("\n"))
}

#[test]
fn every_flag_of_wharf_ingest_start_is_documented_and_no_other() {
    let ingest = Path::new(env!("CARGO_BIN_EXE_wharf-ingest"));
    assert_eq!(documented("### Flags of `wharf-ingest start`"), help(ingest));
}

#[test]
fn every_flag_of_wharf_applier_start_is_documented_and_no_other() {
    let applier = Path::new(env!("CARGO_BIN_EXE_wharf-ingest")).with_file_name("wharf-applier");
    assert!(applier.exists(), "{} is not built; `cargo test --workspace` builds it", applier.display());
    assert_eq!(documented("| flag of `wharf-applier start`"), help(&applier));
}
