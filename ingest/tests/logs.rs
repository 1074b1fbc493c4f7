//! Log output: `--logFormat json` writes one JSON object per line; text written to a file (not a
//! terminal) carries no colour codes.

mod common;

use common::{Ingest, Target};

fn run_and_read_log(extra: &[&str]) -> String {
    let target = Target::start();
    let journal = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("ingest.log");
    let port = common::free_port().unwrap();
    let mut ingest = Ingest::start_logged_on(port, &target.url(), journal.path(), extra, &log);
    let status = ingest.terminate();
    assert!(status.success(), "{status:?}");
    std::fs::read_to_string(&log).unwrap()
}

#[test]
fn json_logs_are_one_object_per_line() {
    let text = run_and_read_log(&["--logFormat", "json"]);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "{text}");
    let mut levels = Vec::new();
    for line in &lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON object ({e}): {line}"));
        levels.push(value["level"].as_str().unwrap_or_else(|| panic!("no level: {line}")).to_owned());
        assert!(value["fields"]["message"].is_string(), "no message: {line}");
    }
    assert!(levels.iter().any(|l| l == "WARN"), "the --disableAuthentication warning: {text}");
    assert!(text.contains("wharf-ingest listening"), "{text}");
}

#[test]
fn text_logs_to_a_file_carry_no_colour_codes() {
    let text = run_and_read_log(&[]);
    assert!(text.contains("wharf-ingest listening"), "{text}");
    assert!(!text.contains('\u{1b}'), "escape codes in a log file: {text:?}");
    assert!(!text.contains("NOTICE"), "PostgreSQL notices belong at debug: {text}");
}

#[test]
fn authentication_without_any_key_is_announced_at_start() {
    let target = Target::start();
    let journal = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("ingest.log");
    let mut ingest = Ingest::start_logged(&target.url(), journal.path(), &[], &log);
    assert!(ingest.terminate().success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("_replicator.jwt_public_keys holds no active key: every request gets 401"), "{text}");
}
