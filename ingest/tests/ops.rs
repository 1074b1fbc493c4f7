//! The operator's endpoints: `/_/livez` and `/_/readyz` while the target goes away, the
//! Prometheus exposition on `--metricsAddr` (it parses, has histograms), and the Grafana dashboard
//! in `deploy/` asks only for metrics that are exported.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Ingest, Target, request, wait_for};

fn rows(k: u32, wall: u64) -> String {
    format!(
        r#"{{"payload":[{{"after": {{"k": {k}, "v": "x"}}, "key": [{k}], "topic": "kv_bare", "updated": "{wall}.0000000000"}}],"length":1}}"#
    )
}

fn started(metrics_port: u16) -> (Target, tempfile::TempDir, Ingest) {
    let target = Target::start();
    let journal = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{metrics_port}");
    let ingest = Ingest::start(&target.url(), journal.path(), &["--metricsAddr", &addr]);
    (target, journal, ingest)
}

#[test]
fn readiness_follows_the_target_and_liveness_does_not() {
    let metrics_port = common::free_port().unwrap();
    let (target, _journal, ingest) = started(metrics_port);
    for port in [ingest.port, metrics_port] {
        for path in ["/_/livez", "/_/readyz", "/_/healthz"] {
            assert_eq!(request(port, "GET", path, b"").unwrap().0, 200, "{path} on {port}");
        }
    }
    drop(target);
    wait_for("readyz to turn 503", Duration::from_secs(30), || {
        request(metrics_port, "GET", "/_/readyz", b"").unwrap().0 == 503
    });
    let (status, body) = request(ingest.port, "GET", "/_/readyz", b"").unwrap();
    assert_eq!((status, body.trim()), (503, "target database is not answering"));
    assert_eq!(request(ingest.port, "GET", "/_/healthz", b"").unwrap().0, 503);
    assert_eq!(request(ingest.port, "GET", "/_/livez", b"").unwrap().0, 200);
    assert_eq!(request(metrics_port, "GET", "/_/livez", b"").unwrap().0, 200);
}

/// Sample names of an exposition, after checking every line's syntax.
fn parse_exposition(text: &str) -> (BTreeSet<String>, BTreeSet<(String, String)>) {
    let mut samples = BTreeSet::new();
    let mut types = BTreeSet::new();
    assert_eq!(text.lines().last(), Some("# EOF"), "OpenMetrics ends with # EOF");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("bad TYPE line {line:?}"));
            types.insert((name.to_owned(), kind.to_owned()));
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line:?}"));
        assert!(value.parse::<f64>().is_ok() || value == "+Inf", "value of {line:?}");
        let name = series.split('{').next().unwrap();
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name in {line:?}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            assert!(labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')), "labels in {line:?}");
        }
        samples.insert(name.to_owned());
    }
    (samples, types)
}

/// Metric names in a PromQL expression: identifiers that are not functions, keywords or labels.
fn metric_names(expr: &str) -> Vec<String> {
    const NOT_METRICS: &[&str] =
        &["by", "without", "on", "ignoring", "sum", "min", "max", "avg", "count", "le", "schema", "code", "reason"];
    let mut out = Vec::new();
    let mut rest = expr;
    let mut depth = 0;
    while let Some(start) = rest.find(|c: char| c.is_ascii_alphabetic() || c == '_' || "{}[]\"".contains(c)) {
        let c = rest[start..].chars().next().unwrap();
        if "{}[]".contains(c) {
            depth += if c == '{' || c == '[' { 1 } else { -1 };
            rest = &rest[start + 1..];
            continue;
        }
        if c == '"' {
            let close = rest[start + 1..].find('"').unwrap();
            rest = &rest[start + close + 2..];
            continue;
        }
        let end =
            rest[start..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(rest.len(), |e| start + e);
        let word = &rest[start..end];
        let is_call = rest[end..].trim_start().starts_with('(');
        if depth == 0 && !is_call && !NOT_METRICS.contains(&word) && !word.chars().all(|c| c.is_ascii_digit()) {
            out.push(word.to_owned());
        }
        rest = &rest[end..];
    }
    out
}

#[test]
fn the_exposition_parses_has_histograms_and_covers_the_dashboard() {
    let metrics_port = common::free_port().unwrap();
    let (target, _journal, ingest) = started(metrics_port);
    // 2023-11-14T22:13:20Z, in the nanoseconds of CockroachDB's HLC.
    const WALL: u64 = 1_700_000_000_000_000_000;
    assert_eq!(ingest.post("/app/public", rows(1, WALL).as_bytes()).0, 200);
    let resolved = format!(r#"{{"resolved":"{WALL}.0000000000"}}"#);
    assert_eq!(ingest.post("/app/public", resolved.as_bytes()).0, 200);
    let checkpoint = format!("{WALL}.0000000000");
    wait_for("the window applied", Duration::from_secs(30), || target.checkpoint() == Some(checkpoint.clone()));
    assert_eq!(request(ingest.port, "GET", "/_/varz", b"").unwrap().0, 404, "metrics left the main port");
    let (status, text) = request(metrics_port, "GET", "/_/varz", b"").unwrap();
    assert_eq!(status, 200);
    let (samples, types) = parse_exposition(&text);
    for histogram in [
        "http_latency_seconds",
        "apply_duration_seconds",
        "wharf_journal_fsync_duration_seconds",
        "wharf_journal_group_commit_size",
    ] {
        assert!(types.contains(&(histogram.to_owned(), "histogram".to_owned())), "{histogram} is a histogram:\n{text}");
        assert!(samples.contains(&format!("{histogram}_bucket")), "{histogram} has buckets:\n{text}");
    }
    for line in [
        r#"mutations_received_total{schema="app.public"} 1"#,
        r#"apply_upserts_total{schema="app.public"} 1"#,
        r#"apply_deletes_total{schema="app.public"} 0"#,
        r#"target_applied_timestamp_seconds{schema="app.public"} 1700000000.0"#,
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/wharf.json")).unwrap(),
    )
    .unwrap();
    let mut queried = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queried.extend(metric_names(target["expr"].as_str().unwrap()));
        }
    }
    assert!(queried.len() >= 15, "{queried:?}");
    // A labelled family has no sample until its first event; its TYPE line says what it exports.
    let exported: BTreeSet<String> = types
        .iter()
        .flat_map(|(name, kind)| match kind.as_str() {
            "counter" => vec![format!("{name}_total")],
            "histogram" => ["_bucket", "_sum", "_count"].iter().map(|s| format!("{name}{s}")).collect(),
            _ => vec![name.clone()],
        })
        .collect();
    let missing: Vec<_> = queried.iter().filter(|m| !exported.contains(*m)).collect();
    assert!(missing.is_empty(), "the dashboard queries metrics that are not exported: {missing:?}\n{text}");
}

#[test]
fn promql_names_are_found() {
    assert_eq!(
        metric_names(
            r#"histogram_quantile(0.99, sum by (le, schema) (rate(apply_duration_seconds_bucket{schema="a.b"}[5m])))"#
        ),
        ["apply_duration_seconds_bucket"]
    );
    assert_eq!(metric_names("time() - jwt_last_refresh_time"), ["jwt_last_refresh_time"]);
}
