//! Two changefeeds into one schema: the second one's rows at or below the checkpoint the first
//! one's resolved timestamps moved are dropped, and wharf says so loudly (a warning naming the
//! schema, a per-partition metric, `wharfctl status`), never silently.

mod common;

use std::time::Duration;

use common::{Ingest, Target, request, wait_for};

fn row(k: u32, wall: u64) -> String {
    format!(
        r#"{{"payload":[{{"after": {{"k": {k}, "v": "feed"}}, "key": [{k}], "topic": "kv_bare", "updated": "{wall}.0000000000"}}],"length":1}}"#
    )
}

#[test]
fn rows_of_a_second_feed_below_the_checkpoint_are_reported_not_silently_dropped() {
    let target = Target::start();
    let journal = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("ingest.log");
    let ingest = Ingest::start_logged(&target.url(), journal.path(), &["--disableAuthentication"], &log);
    // Feed A: a row and a resolved timestamp at 2000; the checkpoint moves there.
    assert_eq!(ingest.post("/app/public", row(1, 2000).as_bytes()).0, 200);
    assert_eq!(ingest.post("/app/public", br#"{"resolved":"2000.0000000000"}"#).0, 200);
    wait_for("feed A applied", Duration::from_secs(30), || target.checkpoint().as_deref() == Some("2000.0000000000"));
    // Feed B, a second changefeed into the same schema with an older clock.
    assert_eq!(ingest.post("/app/public", row(2, 1000).as_bytes()).0, 200);
    let (_, metrics) = request(ingest.port, "GET", "/_/varz", b"").unwrap();
    assert!(metrics.lines().any(|l| l == r#"wharf_rows_dropped_stale_total{schema="app.public"} 1"#), "{metrics}");
    let text = std::fs::read_to_string(&log).unwrap();
    let warning = text
        .lines()
        .find(|l| l.contains("acknowledged and dropped"))
        .unwrap_or_else(|| panic!("no warning in:\n{text}"));
    assert!(warning.contains("app.public") && warning.contains("second changefeed"), "{warning}");
    assert_eq!(target.query("SELECT k::text FROM public.kv_bare ORDER BY k"), [[Some("1".to_owned())]]);
}
