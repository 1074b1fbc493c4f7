//! `--partitionBy group` (the issue-21 branch): a schema's foreign-key groups are applied on
//! their own, so a table locked in one group does not hold the others.

mod common;

use std::time::Duration;

use common::{Ingest, Target, lock_table, wait_for};

const T: u64 = 1732615200000000000;

fn at(ms: u64) -> String {
    format!("{}.0000000000", T + ms * 1_000_000)
}

fn checkpoint(target: &Target, partition: &str) -> Option<String> {
    let sql = format!("SELECT resolved FROM _replicator.checkpoints WHERE partition = '{partition}'");
    if target.query("SELECT to_regclass('_replicator.checkpoints')::text") == [[None]] {
        return None;
    }
    target.query(&sql).first().and_then(|r| r[0].clone())
}

#[test]
fn a_locked_group_does_not_hold_the_others() {
    let target = Target::start();
    let journal = tempfile::tempdir().unwrap();
    let ingest = Ingest::start(&target.url(), journal.path(), &["--appliers", "2", "--partitionBy", "group"]);
    let customer = r#"{"after": {"created_at": "2024-11-26T10:00:01Z", "email": "c1@example.com", "id": 1, "name": "C 1"}, "key": [1], "topic": "customers", "updated": "UPDATED"}"#;
    let event = r#"{"after": {"id": 7, "kind": "click"}, "key": [7], "topic": "events", "updated": "UPDATED"}"#;
    let body = format!(r#"{{"payload":[{},{}],"length":2}}"#, customer, event).replace("UPDATED", &at(1000));
    // The customers' group cannot commit while its table is locked.
    let blocker = lock_table(&target, "public.customers", "ACCESS EXCLUSIVE");
    assert_eq!(ingest.post("/app/public", body.as_bytes()).0, 200);
    assert_eq!(ingest.post("/app/public", format!(r#"{{"resolved":"{}"}}"#, at(1500)).as_bytes()).0, 200);
    wait_for("the events group applied", Duration::from_secs(30), || {
        checkpoint(&target, "app.public/events").as_deref() == Some(at(1500).as_str())
    });
    assert_eq!(target.query("SELECT id::text FROM public.events"), [[Some("7".to_owned())]]);
    // Every group but the customers' one reaches the resolved timestamp (empty ones too).
    let behind = format!(
        "SELECT partition FROM _replicator.checkpoints WHERE partition LIKE 'app.public/%' AND resolved <> '{}'",
        at(1500)
    );
    wait_for("only the customers' group behind", Duration::from_secs(30), || target.query(&behind).len() == 1);
    let behind = target.query(&behind);
    drop(blocker);
    wait_for("the customers' group applied after the unlock", Duration::from_secs(30), || {
        target.query("SELECT count(*)::text FROM public.customers") == [[Some("1".to_owned())]]
    });
    let group = behind[0][0].clone().unwrap();
    wait_for("every group at the resolved timestamp", Duration::from_secs(30), || {
        checkpoint(&target, &group).as_deref() == Some(at(1500).as_str())
    });
}
