//! Status codes over a real port: 404 for unknown routes, databases and schemas, 413 over the body
//! limit, 503 with Retry-After when the journal is over budget, and health.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::{Ingest, QueuePki, Target, journal_only, request, strs};

const ROW: &str = r#"{"payload":[{"after": {"k": 1, "v": "x"}, "key": [1], "topic": "kv_bare", "updated": "1732615200000000000.0000000000"}],"length":1}"#;

fn raw_response(port: u16, body: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head =
        format!("POST /app/public HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn routes_limits_and_health_answer_with_exact_codes() {
    let target = Target::start();
    let journal = tempfile::tempdir().unwrap();
    let pki = QueuePki::new();
    let ingest = Ingest::start(
        &target.url(),
        journal.path(),
        &[&["--bodyLimit", "8192"][..], &strs(&journal_only(&pki))].concat(),
    );
    let port = ingest.port;
    let health = (200, format!("OK\nwarning: {}\n", wharf_ingest::WARN_NO_AUTH));
    assert_eq!(request(port, "GET", "/_/healthz", b"").unwrap(), health);
    assert_eq!(request(port, "GET", "/_/diag", b"").unwrap().0, 404);
    assert_eq!(request(port, "POST", "/app", ROW.as_bytes()).unwrap().0, 404);
    assert_eq!(request(port, "POST", "/app/public/kv_bare/a/b/c/d", ROW.as_bytes()).unwrap().0, 404);
    let (status, text) = request(port, "POST", "/other/public", ROW.as_bytes()).unwrap();
    assert_eq!(status, 404);
    assert!(text.contains("unknown database"), "{text}");
    assert!(!text.contains("\"app\""), "the 404 does not name the target's database: {text}");
    let (status, text) = request(port, "POST", "/app/nope", ROW.as_bytes()).unwrap();
    assert_eq!(status, 404);
    assert!(text.contains("unknown schema"), "{text}");
    assert_eq!(request(port, "POST", "/app/public", ROW.as_bytes()).unwrap().0, 200);
    let big = vec![b' '; 10000];
    let (status, text) = request(port, "POST", "/app/public", &big).unwrap();
    assert_eq!(status, 413, "{text}");
    let (status, text) = request(
        port,
        "POST",
        "/app/public",
        br#"{"payload":[{"after": {"k": 1, "nope": 2}, "key": [1], "topic": "kv_bare", "updated": "1.0000000000"}]}"#,
    )
    .unwrap();
    assert_eq!(status, 400);
    assert!(text.contains("has no column \"nope\""), "{text}");
    let (status, text) = request(
        port,
        "POST",
        "/app/public",
        br#"{"payload":[{"after": {"k": 1}, "key": [1, 2], "topic": "kv_bare", "updated": "1.0000000000"}]}"#,
    )
    .unwrap();
    assert_eq!(status, 400);
    assert!(text.contains("key has 2 values but the primary key has 1"), "{text}");
    // Keys and values nested deeper than the limit get an answer (400), not a dropped connection.
    let deep = format!("{}1 {}", "[".repeat(300), "]".repeat(300));
    let body = format!(
        r#"{{"payload":[{{"after": {{"k": 1}}, "key": [{deep}], "topic": "kv_bare", "updated": "1.0000000000"}}]}}"#
    );
    let (status, text) = request(port, "POST", "/app/public", body.as_bytes()).unwrap();
    assert_eq!(status, 400);
    assert!(text.contains("the key is nested 300 levels deep; at most 64 are accepted"), "{text}");
    let body = format!(
        r#"{{"payload":[{{"after": {{"k": 1, "v": {deep}}}, "key": [1], "topic": "kv_bare", "updated": "1.0000000000"}}]}}"#
    );
    let (status, text) = request(port, "POST", "/app/public", body.as_bytes()).unwrap();
    assert_eq!(status, 400);
    assert!(text.contains("the after value is nested 301 levels deep"), "{text}");
    // Primary keys are bounded too (journal tree nodes must stay small).
    let long = "k".repeat(5000);
    let body = format!(
        r#"{{"payload":[{{"after": {{"k": 1}}, "key": ["{long}"], "topic": "kv_bare", "updated": "1.0000000000"}}]}}"#
    );
    let (status, text) = request(port, "POST", "/app/public", body.as_bytes()).unwrap();
    assert_eq!(status, 400);
    assert!(text.contains("the primary key is 5004 bytes of JSON; at most 4096 are accepted"), "{text}");
    // A resolved timestamp older than the newest is a 200 no-op, counted.
    for resolved in ["1732615205000000000.0000000000", "1732615201000000000.0000000000"] {
        let body = format!(r#"{{"resolved":"{resolved}"}}"#);
        assert_eq!(request(port, "POST", "/app/public", body.as_bytes()).unwrap().0, 200);
    }
    // Metrics count what happened, and need no token.
    let (status, metrics) = request(port, "GET", "/_/varz", b"").unwrap();
    assert_eq!(status, 200);
    for line in [
        "mutations_received_total{schema=\"app.public\"} 1",
        "http_status_codes_total{code=\"404\"} 5",
        "http_status_codes_total{code=\"400\"} 5",
        "http_status_codes_total{code=\"413\"} 1",
        "wharf_jwt_refresh_failures_total 0",
        "wharf_resolved_stale_total{schema=\"app.public\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in:\n{metrics}");
    }
}

#[test]
fn over_budget_only_resolved_work_gets_503_so_a_scan_larger_than_the_budget_completes() {
    let target = Target::start();
    let journal = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let pki = QueuePki::new();
    let udp = common::free_port().unwrap();
    let ingest = Ingest::start(
        &target.url(),
        journal.path(),
        &[&["--journalBudget", "65536"][..], &strs(&pki.ingest_args(udp, "10s"))].concat(),
    );
    // A single-timestamp scan several times the budget, with no applier running: CockroachDB
    // sends its resolved timestamp only after every row is acknowledged, so all are accepted.
    let scan_at = "1732615200000000000.0000000000";
    for b in 0..20 {
        let rows: Vec<String> = (b * 100..(b + 1) * 100)
            .map(|k| {
                format!(
                    r#"{{"after": {{"k": {k}, "v": "{}"}}, "key": [{k}], "topic": "kv_bare", "updated": "{scan_at}"}}"#,
                    "s".repeat(200)
                )
            })
            .collect();
        let body = format!(r#"{{"payload":[{}],"length":100}}"#, rows.join(","));
        assert_eq!(ingest.post("/app/public", body.as_bytes()).0, 200, "scan body {b}");
    }
    assert_eq!(ingest.post("/app/public", format!(r#"{{"resolved":"{scan_at}"}}"#).as_bytes()).0, 200);
    // Now the partition has resolved work nobody applied: its rows wait, with Retry-After.
    let later = r#"{"payload":[{"after": {"k": 5000, "v": "later"}, "key": [5000], "topic": "kv_bare", "updated": "1732615300000000000.0000000000"}],"length":1}"#;
    let response = raw_response(ingest.port, later.as_bytes());
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(response.to_lowercase().contains("retry-after: 1"), "{response}");
    assert!(
        response.contains("over its byte budget") && response.contains("app.public has resolved rows waiting"),
        "{response}"
    );
    // An applier works the backlog off; then the same rows are accepted.
    let _applier = common::Applier::start("applier", &format!("127.0.0.1:{udp}"), &target.url(), &pki, 1, logs.path());
    common::wait_for("the scan applied", std::time::Duration::from_secs(60), || {
        target.checkpoint().as_deref() == Some(scan_at)
    });
    assert_eq!(target.query("SELECT count(*)::text FROM public.kv_bare"), vec![vec![Some("2000".to_owned())]]);
    // The target commits before the applier's report reaches the journal, so the 503 may last a
    // moment longer; CockroachDB retries it, and so does this test.
    common::wait_for("the later row accepted", std::time::Duration::from_secs(30), || {
        ingest.post("/app/public", later.as_bytes()).0 == 200
    });
    common::wait_for("the later row applied", std::time::Duration::from_secs(30), || {
        ingest.post("/app/public", br#"{"resolved":"1732615300000000000.0000000000"}"#).0 == 200
            && target.query("SELECT count(*)::text FROM public.kv_bare") == vec![vec![Some("2001".to_owned())]]
    });
}

#[test]
fn below_the_disk_reserve_rows_and_resolved_timestamps_get_503_and_nothing_is_journaled() {
    let target = Target::start();
    let journal = tempfile::tempdir().unwrap();
    let ingest = Ingest::start(&target.url(), journal.path(), &["--diskReserve", "1000000000000000000"]);
    let response = raw_response(ingest.port, ROW.as_bytes());
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(response.contains("with the 1000000000000000000-byte reserve"), "{response}");
    // Under half the reserve, resolved timestamps wait too.
    let (status, text) = ingest.post("/app/public", br#"{"resolved":"1732615300000000000.0000000000"}"#);
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("reserve"), "{text}");
    drop(ingest);
    // Nothing was journaled: with room again, a resolved timestamp applies no row.
    let ingest = Ingest::start(&target.url(), journal.path(), &[]);
    assert_eq!(ingest.post("/app/public", br#"{"resolved":"1732615300000000000.0000000000"}"#).0, 200);
    common::wait_for("checkpoint", std::time::Duration::from_secs(30), || {
        target.checkpoint().as_deref() == Some("1732615300000000000.0000000000")
    });
    assert_eq!(target.query("SELECT count(*)::text FROM public.kv_bare"), vec![vec![Some("0".to_owned())]]);
}

/// A connection that got a 200 to a keep-alive request and stays open, or `None` if it was closed.
fn served_keep_alive(port: u16) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.write_all(b"GET /_/healthz HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    stream.set_read_timeout(Some(std::time::Duration::from_millis(500))).ok()?;
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).ok()?;
    buf[..n].starts_with(b"HTTP/1.1 200").then_some(stream)
}

fn read_all(mut stream: TcpStream) -> String {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn slow_bodies_large_headers_and_excess_connections_are_cut_off() {
    let target = Target::start();
    let journal = tempfile::tempdir().unwrap();
    let pki = QueuePki::new();
    let ingest = Ingest::start(
        &target.url(),
        journal.path(),
        &[&["--readTimeout", "1s", "--maxConnections", "3"][..], &strs(&journal_only(&pki))].concat(),
    );
    // A body that never arrives: 408 after the read timeout.
    let mut slow = TcpStream::connect(("127.0.0.1", ingest.port)).unwrap();
    slow.write_all(b"POST /app/public HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"payload\"").unwrap();
    let response = read_all(slow);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    // A request head over 64 KiB: 431.
    let mut big = TcpStream::connect(("127.0.0.1", ingest.port)).unwrap();
    let head =
        format!("POST /app/public HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\nContent-Length: 0\r\n\r\n", "a".repeat(70_000));
    let _ = big.write_all(head.as_bytes());
    let response = read_all(big);
    assert!(response.starts_with("HTTP/1.1 431"), "{response}");
    drop(ingest);
    // Connections past the limit are closed at once, without a response.
    let pki = QueuePki::new();
    let ingest = Ingest::start(
        &target.url(),
        journal.path(),
        &[&["--maxConnections", "3"][..], &strs(&journal_only(&pki))].concat(),
    );
    // Hold every slot with a keep-alive connection the server answered (a connection that still
    // holds a slot from the start-up health check may refuse one of them at first).
    let mut idle: Vec<TcpStream> = Vec::new();
    common::wait_for("three served keep-alive connections", std::time::Duration::from_secs(10), || {
        if let Some(stream) = served_keep_alive(ingest.port) {
            idle.push(stream);
        }
        idle.len() == 3
    });
    common::wait_for("a fourth connection to be refused", std::time::Duration::from_secs(10), || {
        let mut extra = TcpStream::connect(("127.0.0.1", ingest.port)).unwrap();
        let _ = extra.write_all(b"GET /_/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        read_all(extra).is_empty()
    });
    drop(idle);
    // Once they are gone, new connections are served again.
    common::wait_for("a free connection slot", std::time::Duration::from_secs(10), || {
        request(ingest.port, "GET", "/_/healthz", b"").is_ok_and(|(s, _)| s == 200)
    });
}
