//! Replays the shared fixtures (`testdata/fixtures/manifest.json`) over HTTP against the real
//! binary and a real PostgreSQL, and compares the target with the expected final state exactly.

mod common;

use std::time::Duration;

use common::{Ingest, Target, fixtures_dir, wait_for};
use serde_json::Value;

fn manifest() -> Vec<Value> {
    let text = std::fs::read_to_string(fixtures_dir().join("manifest.json")).unwrap();
    serde_json::from_str::<Value>(&text).unwrap().as_array().unwrap().clone()
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures_dir().join("expected_final_state.json")).unwrap()).unwrap()
}

fn replay(ingest: &Ingest, scenarios: &[&str]) {
    for entry in manifest() {
        let scenario = entry["scenario"].as_str().unwrap();
        if !scenarios.contains(&scenario) {
            continue;
        }
        let file = entry["file"].as_str().unwrap();
        let body = std::fs::read(fixtures_dir().join(file)).unwrap();
        let method = entry["method"].as_str().unwrap();
        // Content-Type is always sent; the fixtures' token placeholder is not a token.
        let headers: Vec<(&str, &str)> = entry["headers"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "Authorization" | "Content-Type"))
            .map(|(name, value)| (name.as_str(), value.as_str().unwrap()))
            .collect();
        let path = entry["path"].as_str().unwrap();
        let (status, text) = common::request_with(ingest.port, method, path, &headers, &body).unwrap();
        assert_eq!(status as u64, entry["expect_status"].as_u64().unwrap(), "{file}: {text}");
    }
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Compares a table with the expected rows (column names from the first expected row).
fn assert_table(target: &Target, table: &str, expected: &Value) {
    let order =
        if table == "orders" { "orders.customer_id, orders.order_no".to_owned() } else { format!("{table}.id") };
    let rows = expected.as_array().unwrap();
    if rows.is_empty() {
        let count = target.query(&format!("SELECT count(*)::text FROM public.{table}"));
        assert_eq!(count, vec![vec![Some("0".to_owned())]], "{table} is empty");
        return;
    }
    let columns: Vec<&String> = rows[0].as_object().unwrap().keys().collect();
    let select: Vec<String> = columns.iter().map(|c| format!("{c}::text")).collect();
    let got = target.query(&format!("SELECT {} FROM public.{table} ORDER BY {order}", select.join(", ")));
    let want: Vec<Vec<Option<String>>> =
        rows.iter().map(|r| columns.iter().map(|c| text_of(&r[c.as_str()])).collect()).collect();
    assert_eq!(got.len(), want.len(), "row count of {table}");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w, "{table} row (columns {columns:?})");
    }
}

const ALL_TYPES_COLUMNS: &str = "id::text, i2::text, i4::text, i8::text, f4::text, f8::text, dec_fixed::text, dec_any::text, b::text, s, s_coll, bin::text, d::text, t::text, ts::text, tstz::text, iv::text, u::text, format('%s', ip), j::text, arr_i::text, arr_s::text, e::text, vb::text, ST_AsEWKT(g)";

fn all_types_expected() -> Vec<Vec<Option<&'static str>>> {
    vec![
        vec![
            Some("1"),
            Some("32767"),
            Some("-2147483648"),
            Some("9223372036854775807"),
            Some("0.1"),
            Some("5e-324"),
            Some("12345.67890"),
            Some("3.141592653589793238462643383279"),
            Some("true"),
            Some(""),
            Some("Straße"),
            Some("\\x00ff10"),
            Some("2024-02-29"),
            Some("23:59:59.999999"),
            Some("2024-11-26 10:00:00"),
            Some("2024-11-26 10:00:00.5+00"),
            Some("1 year 2 mons 3 days 04:05:06.789"),
            Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            Some("192.168.1.10/24"),
            Some(r#"{"nested": {"deep": [[]], "empty": {}}}"#),
            Some("{}"),
            Some(r#"{a,"b,c","",NULL}"#),
            Some("happy"),
            Some("10110"),
            Some("SRID=4326;POINT(-73.9857 40.7484)"),
        ],
        vec![
            Some("2"),
            Some("-32768"),
            Some("2147483647"),
            Some("-9223372036854775808"),
            Some("Infinity"),
            Some("NaN"),
            Some("-0.00001"),
            Some("NaN"),
            Some("false"),
            Some(""),
            None,
            Some("\\x"),
            Some("infinity"),
            Some("00:00:00"),
            Some("1970-01-01 00:00:00"),
            Some("0001-01-01 00:00:00+00"),
            Some("-00:00:01"),
            Some("00000000-0000-0000-0000-000000000000"),
            Some("::1"),
            None,
            Some("{}"),
            None,
            Some("sad"),
            Some(""),
            None,
        ],
    ]
}

#[test]
fn scenarios_a_b_d_replay_to_the_expected_target_state() {
    let target = Target::start();
    let journal = tempfile::tempdir().unwrap();
    let ingest = Ingest::start(&target.url(), journal.path(), &[]);
    replay(&ingest, &["A", "B", "D"]);
    let expected = expected();
    let final_a = &expected["scenario_A_after_A13"];
    let resolved = final_a["resolved"].as_str().unwrap().to_owned();
    wait_for("checkpoint R3 applied", Duration::from_secs(60), || {
        target.checkpoint().as_deref() == Some(resolved.as_str())
    });
    for table in ["customers", "orders", "events"] {
        assert_table(&target, table, &final_a[table]);
    }
    let got = target.query(&format!("SELECT {ALL_TYPES_COLUMNS} FROM public.all_types ORDER BY id"));
    let want: Vec<Vec<Option<String>>> =
        all_types_expected().into_iter().map(|r| r.into_iter().map(|v| v.map(str::to_owned)).collect()).collect();
    assert_eq!(got, want);
    assert_eq!(target.query("SELECT count(*)::text FROM public.kv_bare"), vec![vec![Some("0".to_owned())]]);
}

#[test]
fn scenario_c_cloud_storage_files_replay_into_a_fresh_target() {
    let target = Target::start();
    let journal = tempfile::tempdir().unwrap();
    let ingest = Ingest::start(&target.url(), journal.path(), &[]);
    replay(&ingest, &["C"]);
    assert_scenario(&target, &expected()["scenario_C_after_C03"], &["customers", "orders"]);
}

/// Waits for the scenario's resolved timestamp to be applied, then compares `tables`.
fn assert_scenario(target: &Target, expected: &Value, tables: &[&str]) {
    let resolved = expected["resolved"].as_str().unwrap().to_owned();
    wait_for("checkpoint applied", Duration::from_secs(60), || {
        target.checkpoint().as_deref() == Some(resolved.as_str())
    });
    for table in tables {
        assert_table(target, table, &expected[*table]);
    }
}

/// Compressed bodies and files, hourly and flat layouts; a bomb, an unknown encoding, a truncated
/// body and stacked encodings are refused and leave nothing behind.
#[test]
fn scenario_e_compressed_bodies_and_file_layouts_replay_exactly() {
    let target = Target::start();
    let journal = tempfile::tempdir().unwrap();
    let ingest = Ingest::start(&target.url(), journal.path(), &[]);
    replay(&ingest, &["E"]);
    assert_scenario(&target, &expected()["scenario_E_after_E06"], &["customers", "orders"]);
    let metrics = common::request(ingest.port, "GET", "/_/varz", b"").unwrap().1;
    assert_eq!(common::metric_sum(&metrics, "mutations_received_total"), 8.0, "rows journaled");
}

/// A CDC-query feed: the path names the table, the row its key; a phantom delete is dropped and
/// counted; columns the query does not select keep their target values.
#[test]
fn scenario_q_query_feeds_replay_exactly() {
    let target = Target::start();
    // Loaded before the changefeed started (as MOLT Fetch or a dump would).
    target.execute("app", "INSERT INTO public.vehicles VALUES (5, 'new', 'Berlin', 100)");
    let journal = tempfile::tempdir().unwrap();
    let ingest = Ingest::start(&target.url(), journal.path(), &[]);
    replay(&ingest, &["Q"]);
    let expected = &expected()["scenario_Q_after_Q07"];
    assert_scenario(&target, expected, &["vehicles"]);
    let metrics = common::request(ingest.port, "GET", "/_/varz", b"").unwrap().1;
    let dropped = expected["phantom_deletes_dropped"].as_f64().unwrap();
    assert_eq!(common::metric_sum(&metrics, "wharf_phantom_deletes_dropped_total"), dropped);
    let (status, text) = common::request(ingest.port, "POST", "/app/public/vehicles", {
        br#"{"payload":[{"after": {"status": "new"}, "before": null, "updated": "1732615202600000000.0000000000"}]}"#
    })
    .unwrap();
    assert_eq!(
        (status, text.trim()),
        (400, r#"message 0: table "vehicles": "after" has no value for primary-key column "id""#)
    );
}

/// Enriched envelopes, with `source` and nested under `payload` with `schema`.
#[test]
fn scenario_n_enriched_envelopes_replay_exactly() {
    let target = Target::start();
    let journal = tempfile::tempdir().unwrap();
    let ingest = Ingest::start(&target.url(), journal.path(), &[]);
    replay(&ingest, &["N"]);
    assert_scenario(&target, &expected()["scenario_N_after_N04"], &["products"]);
}
