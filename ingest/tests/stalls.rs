//! Stalls are visible: `/_/healthz` answers 503 with the reason while resolved rows wait with
//! nothing applied, or rows arrive without new resolved timestamps, and 200 again once the
//! partition moves (`--stallTimeout`, 1 s here).

mod common;

use std::time::Duration;

use common::{Applier, Ingest, QueuePki, Target, request, strs, wait_for};

fn row(k: u64, wall: u64) -> String {
    format!(
        r#"{{"payload":[{{"after": {{"k": {k}, "v": "v"}}, "key": [{k}], "topic": "kv_bare", "updated": "{wall}.0000000000"}}],"length":1}}"#
    )
}

fn resolved(wall: u64) -> String {
    format!(r#"{{"resolved":"{wall}.0000000000"}}"#)
}

fn health(port: u16) -> (u16, String) {
    request(port, "GET", "/_/healthz", b"").unwrap()
}

const T1: u64 = 1_732_615_200_000_000_000;
const T2: u64 = T1 + 1_000_000_000;

#[test]
fn resolved_rows_that_nobody_applies_turn_health_503_until_an_applier_comes() {
    let target = Target::start();
    let journal = tempfile::tempdir().unwrap();
    let pki = QueuePki::new();
    let udp = common::free_port().unwrap();
    let mut args = pki.ingest_args(udp, "10s");
    args.extend(["--stallTimeout".to_owned(), "1s".to_owned()]);
    let ingest = Ingest::start(&target.url(), journal.path(), &strs(&args));
    assert_eq!(ingest.post("/app/public", row(1, T1).as_bytes()).0, 200);
    assert_eq!(ingest.post("/app/public", resolved(T1).as_bytes()).0, 200);
    wait_for("health to report the stall", Duration::from_secs(30), || health(ingest.port).0 == 503);
    let (_, text) = health(ingest.port);
    assert!(
        text.contains("stalled (--stallTimeout): app.public: resolved rows have waited")
            && text.contains("nothing was applied"),
        "{text}"
    );
    let logs = tempfile::tempdir().unwrap();
    let _applier = Applier::start("late", &format!("127.0.0.1:{udp}"), &target.url(), &pki, 1, logs.path());
    wait_for("health to recover once rows are applied", Duration::from_secs(60), || health(ingest.port).0 == 200);
    assert_eq!(target.query("SELECT k::text FROM public.kv_bare"), [[Some("1".to_owned())]]);
}

#[test]
fn rows_without_new_resolved_timestamps_turn_health_503_until_one_comes() {
    let target = Target::start();
    let journal = tempfile::tempdir().unwrap();
    let ingest = Ingest::start(&target.url(), journal.path(), &["--stallTimeout", "1s"]);
    assert_eq!(ingest.post("/app/public", row(1, T1).as_bytes()).0, 200);
    assert_eq!(ingest.post("/app/public", resolved(T1).as_bytes()).0, 200);
    let first = format!("{T1}.0000000000");
    wait_for("the first window applied", Duration::from_secs(30), || {
        target.checkpoint().as_deref() == Some(first.as_str())
    });
    assert_eq!(health(ingest.port).0, 200);
    assert_eq!(ingest.post("/app/public", row(2, T2).as_bytes()).0, 200);
    wait_for("health to report the stall", Duration::from_secs(30), || health(ingest.port).0 == 503);
    let (_, text) = health(ingest.port);
    assert!(text.contains("app.public: rows keep arriving but no new resolved timestamp came in"), "{text}");
    assert_eq!(ingest.post("/app/public", resolved(T2).as_bytes()).0, 200);
    wait_for("health to recover", Duration::from_secs(30), || health(ingest.port).0 == 200);
    let rows = target.query("SELECT k::text FROM public.kv_bare ORDER BY kv_bare.k");
    assert_eq!(rows, [[Some("1".to_owned())], [Some("2".to_owned())]]);
}
