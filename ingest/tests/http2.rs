//! Answers given before the body is read (401, 404) reach an HTTP/2 client that is still sending
//! a large body: curl, the client that showed the problem (error 92, a reset stream), over h2c.

mod common;

use std::process::Command;

use common::{Ingest, Target};

/// `curl --http2-prior-knowledge` POSTing `body_bytes` to `path`; returns (status, body, exit code).
fn curl_post(port: u16, path: &str, body_bytes: usize) -> (String, String, i32) {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    std::fs::write(&body, "x".repeat(body_bytes)).unwrap();
    let output = Command::new("curl")
        .args(["-s", "--http2-prior-knowledge", "-X", "POST", "-w", "\n%{http_code} %{http_version}"])
        .arg("--data-binary")
        .arg(format!("@{}", body.display()))
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl is needed for this test (scripts/setup.sh installs it)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (answer, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.to_owned(), answer.to_owned(), output.status.code().unwrap_or(-1))
}

#[test]
fn refusals_reach_an_http2_client_still_sending_its_body() {
    let target = Target::start();
    let journal = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    // Authentication on and no key: every write gets 401.
    let ingest = Ingest::start_logged(&target.url(), journal.path(), &[], &logs.path().join("ingest.log"));
    for size in [100_000, 3_000_000] {
        let (status, answer, code) = curl_post(ingest.port, "/app/public", size);
        assert_eq!((status.as_str(), code), ("401 2", 0), "{size} bytes: {answer}");
        assert_eq!(answer.trim(), "missing or invalid access token");
        let (status, answer, code) = curl_post(ingest.port, "/elsewhere/public", size);
        assert_eq!((status.as_str(), code), ("404 2", 0), "{size} bytes: {answer}");
        assert_eq!(answer.trim(), "unknown database: this server writes to one database only");
    }
}
