//! `wharfctl recover` against a real PostgreSQL: one statement per partition, restarting the feed
//! from the checkpoint the target holds, with the schema's tables.

use std::process::Command;

use wharf_testkit::LocalPg;

fn wharfctl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wharfctl")).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn recover_prints_a_changefeed_restart_from_each_checkpoint() {
    let pg = LocalPg::start().unwrap();
    let url = pg.url("postgres");
    let (ok, _, stderr) = wharfctl(&["recover", "--targetConn", &url]);
    assert!(!ok && stderr.contains("no checkpoints"), "{stderr}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let c = wharf_targetdb::connect(&url).await.unwrap();
        wharf_targetdb::staging::create_checkpoints(&c, "_replicator").await.unwrap();
        c.batch_execute(
            "CREATE SCHEMA shop;
             CREATE TABLE shop.orders (id int PRIMARY KEY);
             CREATE TABLE shop.customers (id int PRIMARY KEY);
             INSERT INTO _replicator.checkpoints (partition, resolved, resolved_wall, resolved_logical, lease_epoch)
               VALUES ('postgres.shop', '1732615200000000000.0000000003', 1732615200000000000, 3, 7);",
        )
        .await
        .unwrap();
    });
    let (ok, stdout, stderr) =
        wharfctl(&["recover", "--targetConn", &url, "--sinkUrl", "webhook-https://wharf.example:26258"]);
    assert!(ok, "{stderr}");
    let want = "-- postgres.shop: applied up to 1732615200000000000.0000000003
CREATE CHANGEFEED FOR TABLE postgres.shop.customers, postgres.shop.orders
  INTO 'webhook-https://wharf.example:26258/postgres/shop'
  WITH updated, resolved = '1s', min_checkpoint_frequency = '1s', cursor = '1732615200000000000.0000000003';";
    assert!(stdout.starts_with(want), "{stdout}");
    let (ok, json, _) = wharfctl(&["recover", "--targetConn", &url, "--json"]);
    assert!(ok);
    let items: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(items[0]["checkpoint"], "1732615200000000000.0000000003");
}
