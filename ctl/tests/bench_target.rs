//! `wharfctl bench --targetConn` leaves the database as it found it, and refuses one that holds a
//! schema it would drop.

use std::process::Command;

use wharf_testkit::LocalPg;

fn schemas(url: &str) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = wharf_targetdb::connect(url).await.unwrap();
        let rows = client
            .query(
                "SELECT nspname::text FROM pg_namespace WHERE nspname !~ '^(pg_|information_schema)' ORDER BY 1",
                &[],
            )
            .await
            .unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    })
}

fn execute(url: &str, sql: &str) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async { wharf_targetdb::connect(url).await.unwrap().batch_execute(sql).await.unwrap() });
}

fn bench(url: &str) -> (bool, String) {
    bench_with(url, &["--scaleRows", "0", "--groupLagSeconds", "0"])
}

fn bench_with(url: &str, phases: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wharfctl"))
        .args(["bench", "--json", "--targetConn", url, "--rows", "2000", "--bodyRows", "100", "--senders", "4"])
        .args(["--scanRows", "0", "--bigBodies", "0", "--churnSeconds", "0", "--lagSeconds", "0"])
        .args(["--capacitySeconds", "0", "--restartGiB", "0"])
        .args(phases)
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn a_given_target_is_left_as_it_was_found() {
    let pg = LocalPg::start().unwrap();
    let url = pg.url("postgres");
    execute(&url, "CREATE TABLE public.keep (id int); CREATE SCHEMA bench2;");
    let before = schemas(&url);
    let (ok, text) = bench(&url);
    assert!(ok, "{text}");
    assert!(text.contains("removed the benchmark's schemas"), "{text}");
    assert_eq!(schemas(&url), before);
}

/// Also runs the scaling and group-lag phases (small), whose groups leave checkpoint rows of their
/// own (`db.schema/group`) that must go too.
#[test]
fn keys_and_checkpoints_of_others_stay_when_replicator_existed() {
    let pg = LocalPg::start().unwrap();
    let url = pg.url("postgres");
    let theirs = rcgen::KeyPair::generate().unwrap().public_key_pem();
    execute(
        &url,
        &format!(
            "CREATE SCHEMA _replicator;
             CREATE TABLE _replicator.jwt_public_keys (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), public_key text NOT NULL, active bool NOT NULL DEFAULT true);
             INSERT INTO _replicator.jwt_public_keys (public_key) VALUES ('{theirs}');"
        ),
    );
    let (ok, text) = bench_with(&url, &["--scaleRows", "300", "--groupLagSeconds", "1"]);
    assert!(ok, "{text}");
    let json: serde_json::Value = serde_json::from_str(&text[..text.rfind('}').unwrap() + 1]).unwrap();
    let layouts: Vec<String> = json["scaling"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{}/{}", p["layout"].as_str().unwrap(), p["appliers"]))
        .collect();
    let want = [
        "schemas/1",
        "schemas/2",
        "schemas/4",
        "schema/1",
        "schema/2",
        "schema/4",
        "group/1",
        "group/2",
        "group/4",
        "group_mixed/1",
        "group_mixed/2",
        "group_mixed/4",
    ];
    assert_eq!(layouts, want);
    assert!(json["scaling_group_speedup_vs_schemas_4"].is_number(), "{json}");
    assert!(json["group_lag_p99_ms_one_locked"].is_number(), "{json}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (keys, checkpoints) = rt.block_on(async {
        let client = wharf_targetdb::connect(&url).await.unwrap();
        let keys: Vec<String> = client
            .query("SELECT public_key FROM _replicator.jwt_public_keys", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let checkpoints: i64 =
            client.query_one("SELECT count(*) FROM _replicator.checkpoints", &[]).await.unwrap().get(0);
        (keys, checkpoints)
    });
    assert_eq!(keys, [theirs]);
    assert_eq!(checkpoints, 0);
    assert!(!schemas(&url).iter().any(|s| s == "bench" || s.starts_with("bench_")));
}

#[test]
fn a_schema_the_benchmark_would_drop_stops_it_before_anything_changes() {
    let pg = LocalPg::start().unwrap();
    let url = pg.url("postgres");
    execute(&url, "CREATE SCHEMA bench; CREATE TABLE bench.mine (id int);");
    let before = schemas(&url);
    let (ok, text) = bench(&url);
    assert!(!ok);
    assert!(text.contains("the target already has schema(s) bench that the benchmark would drop"), "{text}");
    assert_eq!(schemas(&url), before);
}
