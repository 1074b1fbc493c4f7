//! The scaling phases of `wharfctl bench` (issue 21, decision 0011), through real processes:
//!
//! - [`scaling`]: the same rows (8 tables of `rows` rows each) drained from a resolved backlog by
//!   1, 2 and 4 `wharf-applier` processes, laid out three ways: 8 schemas of one table each (the
//!   way to scale before foreign-key groups), one schema of 8 tables under `--partitionBy schema`,
//!   and the same under `--partitionBy group` (8 independent tables: 8 groups), with bodies of one
//!   table each and with bodies mixing all 8 tables (each body then read by all 8 groups).
//!
//! The group-lag phase is in `group_lag.rs`; the figures of both are reported here.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::task::JoinSet;
use wharf_queue::Hlc;

use crate::cluster::{Certs, IngestProcess, start_applier};
use crate::group_lag::GroupLag;
use crate::http::Sender;
use crate::scale::{observer, wait_status};

pub(crate) const TABLES: usize = 8;
const SENDERS: usize = 64;
const BODY_ROWS: usize = 1000;
const DRAIN_LIMIT: Duration = Duration::from_secs(1800);

/// How the 8 tables of a scaling drain are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    EightSchemas,
    OneSchema,
    OneSchemaGroups,
    /// As `OneSchemaGroups`, every body holding rows of all 8 tables.
    OneSchemaGroupsMixed,
}

impl Layout {
    pub const ALL: [Layout; 4] =
        [Layout::EightSchemas, Layout::OneSchema, Layout::OneSchemaGroups, Layout::OneSchemaGroupsMixed];

    pub fn name(self) -> &'static str {
        match self {
            Layout::EightSchemas => "8 schemas",
            Layout::OneSchema => "1 schema, --partitionBy schema",
            Layout::OneSchemaGroups => "1 schema, --partitionBy group",
            Layout::OneSchemaGroupsMixed => "1 schema, group, bodies of 8 tables",
        }
    }

    /// Its name in the JSON report.
    pub fn key(self) -> &'static str {
        match self {
            Layout::EightSchemas => "schemas",
            Layout::OneSchema => "schema",
            Layout::OneSchemaGroups => "group",
            Layout::OneSchemaGroupsMixed => "group_mixed",
        }
    }

    fn flags(self) -> &'static [&'static str] {
        match self {
            Layout::OneSchemaGroups | Layout::OneSchemaGroupsMixed => &["--partitionBy", "group"],
            _ => &[],
        }
    }

    /// Where table `i`'s rows go: (schema, table).
    fn target(self, i: usize) -> (String, String) {
        match self {
            Layout::EightSchemas => (format!("bench_p{i}"), "rows".into()),
            Layout::OneSchema => ("bench_one".into(), format!("t{i}")),
            Layout::OneSchemaGroups | Layout::OneSchemaGroupsMixed => ("bench_grp".into(), format!("t{i}")),
        }
    }

    fn schemas(self) -> Vec<String> {
        let mut schemas: Vec<String> = (0..TABLES).map(|i| self.target(i).0).collect();
        schemas.dedup();
        schemas
    }

    /// The checkpoint rows a drain waits for, and the pending rows each shows once indexed.
    fn units(self, database: &str, rows: usize) -> (Vec<String>, u64) {
        match self {
            Layout::EightSchemas => (self.schemas().iter().map(|s| format!("{database}.{s}")).collect(), rows as u64),
            Layout::OneSchema => (vec![format!("{database}.bench_one")], (rows * TABLES) as u64),
            Layout::OneSchemaGroups | Layout::OneSchemaGroupsMixed => {
                let units = (0..TABLES).map(|i| format!("{database}.bench_grp/t{i}")).collect();
                // A group's pending figure is its schema's above the group's checkpoint.
                (units, (rows * TABLES) as u64)
            }
        }
    }

    fn ddl(self, database: &str) -> String {
        let mut ddl = String::new();
        for schema in self.schemas() {
            ddl.push_str(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
                 DELETE FROM _replicator.checkpoints WHERE split_part(partition, '/', 1) = '{database}.{schema}';"
            ));
        }
        for i in 0..TABLES {
            let (schema, table) = self.target(i);
            ddl.push_str(&format!("CREATE TABLE {schema}.{table} (id bigint PRIMARY KEY, payload text);"));
        }
        ddl
    }
}

/// One drain of the scaling phase.
pub struct ScalePoint {
    pub layout: Layout,
    pub appliers: usize,
    pub rows_per_s: f64,
    pub peak_rss_mib_applier: f64,
}

/// Each layout drained by `n` applier processes (one worker each) for each `n` in `counts`.
pub async fn scaling(url: &str, database: &str, rows: usize, counts: &[usize]) -> anyhow::Result<Vec<ScalePoint>> {
    let mut points = Vec::new();
    for layout in Layout::ALL {
        for &n in counts {
            points.push(drain(url, database, layout, rows, n).await?);
        }
    }
    Ok(points)
}

async fn drain(url: &str, database: &str, layout: Layout, rows: usize, n: usize) -> anyhow::Result<ScalePoint> {
    let client = wharf_targetdb::connect(url).await?;
    client.batch_execute(&layout.ddl(database)).await?;
    let certs = Certs::new()?;
    let journal = tempfile::tempdir()?;
    let ingest = IngestProcess::start_with(url, journal.path(), &certs, layout.flags()).await?;
    let mut inflight = JoinSet::new();
    for (schema, body) in bodies(layout, rows) {
        while inflight.len() >= SENDERS {
            inflight.join_next().await.expect("non-empty")??;
        }
        let sender = Sender::new(ingest.base_url(database, &schema));
        inflight.spawn(async move { sender.post(body).await });
    }
    while let Some(done) = inflight.join_next().await {
        done??;
    }
    // Timing starts once the backlog is indexed, the appliers are connected, and it is resolved.
    let (units, pending) = layout.units(database, rows);
    let observer = observer(&ingest.queue_addr, &certs)?;
    let indexed = |status: &wharf_queue::ServiceStatus| {
        units.iter().all(|u| status.partitions.iter().any(|p| p.lease.partition == *u && p.pending_rows == pending))
    };
    wait_status(&observer, indexed).await?;
    let appliers: Vec<_> = (0..n)
        .map(|i| start_applier(&ingest.queue_addr, url, &certs, 1, &format!("scale-{i}")))
        .collect::<anyhow::Result<_>>()?;
    wait_status(&observer, |status| status.sessions.len() == n).await?;
    let resolved = Hlc::new(crate::bench::feed::T0 + rows as u64, 0);
    crate::bench::feed::settle();
    let started = Instant::now();
    for schema in layout.schemas() {
        let sender = Sender::new(ingest.base_url(database, &schema));
        sender.post(Bytes::from(format!("{{\"resolved\":\"{resolved}\"}}"))).await?;
    }
    let want = resolved.to_string();
    for unit in &units {
        crate::sim::feed::wait_until(DRAIN_LIMIT, || async {
            crate::harness::checkpoint(&client, unit).await.ok().flatten().is_some_and(|c| c == want)
        })
        .await?;
    }
    let elapsed = started.elapsed();
    let peak = appliers.iter().filter_map(|a| a.peak_rss_mib()).fold(0.0, f64::max);
    for applier in appliers {
        applier.stop()?;
    }
    ingest.process.stop()?;
    let rows_per_s = (rows * TABLES) as f64 / elapsed.as_secs_f64();
    Ok(ScalePoint { layout, appliers: n, rows_per_s, peak_rss_mib_applier: peak })
}

/// The bodies of a drain and the schema each goes to: `BODY_ROWS` rows of one table each, or for
/// the mixed layout an eighth of that of each of the 8 tables.
fn bodies(layout: Layout, rows: usize) -> Vec<(String, Bytes)> {
    use crate::bench::feed::bodies_from;
    if layout != Layout::OneSchemaGroupsMixed {
        let of = |i| {
            let (schema, table) = layout.target(i);
            (0..rows)
                .step_by(BODY_ROWS)
                .map(move |first| (schema.clone(), bodies_from(first, BODY_ROWS.min(rows - first), &table)))
        };
        return (0..TABLES).flat_map(of).collect();
    }
    let step = BODY_ROWS / TABLES;
    (0..rows)
        .step_by(step)
        .map(|first| {
            let parts: Vec<Bytes> =
                (0..TABLES).map(|i| bodies_from(first, step.min(rows - first), &format!("t{i}"))).collect();
            ("bench_grp".to_owned(), merge(&parts))
        })
        .collect()
}

/// One body with the messages of `parts` (bodies of the same shape).
fn merge(parts: &[Bytes]) -> Bytes {
    let mut messages = Vec::new();
    let mut count = 0;
    for part in parts {
        let value: serde_json::Value = serde_json::from_slice(part).expect("a body the bench built");
        let payload = value["payload"].as_array().expect("a payload");
        count += payload.len();
        messages.extend(payload.iter().map(ToString::to_string));
    }
    Bytes::from(format!("{{\"payload\":[{}],\"length\":{count}}}", messages.join(",")))
}

/// A layout's speed-up with `n` appliers over one, from the points of one run.
pub fn speedup(points: &[ScalePoint], layout: Layout, n: usize) -> Option<f64> {
    Some(rate(points, layout, n)? / rate(points, layout, 1)?)
}

fn rate(points: &[ScalePoint], layout: Layout, n: usize) -> Option<f64> {
    points.iter().find(|p| p.layout == layout && p.appliers == n).map(|p| p.rows_per_s)
}

/// The scaling figures of the JSON report.
pub fn json(points: &[ScalePoint], lag: Option<&GroupLag>) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::json;
    let round2 = |v: Option<f64>| v.map(|v| (v * 100.0).round() / 100.0);
    let scaling: Vec<_> = points
        .iter()
        .map(|p| json!({"layout": p.layout.key(), "appliers": p.appliers, "rows_per_s": p.rows_per_s.round(), "peak_rss_mib_applier": p.peak_rss_mib_applier.round()}))
        .collect();
    let versus = |n| {
        let group = speedup(points, Layout::OneSchemaGroups, n);
        round2(group.zip(speedup(points, Layout::EightSchemas, n)).map(|(g, s)| g / s))
    };
    let out = json!({
        "scaling": scaling,
        "scaling_group_speedup_vs_schemas_2": versus(2),
        "scaling_group_speedup_vs_schemas_4": versus(4),
        "scaling_group_mixed_vs_group_1": round2(rate(points, Layout::OneSchemaGroupsMixed, 1).zip(rate(points, Layout::OneSchemaGroups, 1)).map(|(m, g)| m / g)),
        "group_lag_offered_rows_per_s": lag.map(|l| l.offered_rows_per_s.round()),
        "group_lag_p99_ms_unlocked": lag.map(|l| l.p99_ms_free.round()),
        "group_lag_p99_ms_one_locked": lag.map(|l| l.p99_ms_locked.round()),
        "group_lag_max_ms_one_locked": lag.map(|l| l.max_ms_locked.round()),
        "group_lag_locked_group_ms": lag.map(|l| l.locked_group_ms.round()),
    });
    match out {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("a JSON object"),
    }
}

/// The scaling figures, each layout's speed-up beside 8 schemas' of the same run.
pub fn print(points: &[ScalePoint], lag: Option<&GroupLag>) {
    for point in points {
        let up = speedup(points, point.layout, point.appliers).unwrap_or(f64::NAN);
        let versus = match (point.layout, speedup(points, Layout::EightSchemas, point.appliers)) {
            (Layout::EightSchemas, _) | (_, None) => String::new(),
            (_, Some(schemas)) => format!(", {:.2} of 8 schemas' ({schemas:.2}×)", up / schemas),
        };
        println!(
            "{:<36} {:>12.0}   {}: speed-up {up:.2}×{versus}; peak RSS of an applier {:.0} MiB",
            format!("drain by {} wharf-applier process(es)", point.appliers),
            point.rows_per_s,
            point.layout.name(),
            point.peak_rss_mib_applier
        );
    }
    if points.iter().any(|p| p.layout == Layout::OneSchemaGroups && p.appliers > 1) {
        println!("{:<36} {:>12}   target: group speed-up ≥ 0.9 of 8 schemas'", "", "");
    }
    if let (Some(mixed), Some(single)) =
        (rate(points, Layout::OneSchemaGroupsMixed, 1), rate(points, Layout::OneSchemaGroups, 1))
    {
        println!(
            "{:<36} {:>12.2}   1 applier, 8 groups: bodies of 8 tables (each read by every group) against bodies of one table",
            "group read cost (ratio)",
            mixed / single
        );
    }
    if let Some(lag) = lag {
        println!(
            "{:<36} {:>12.0}   ms; 7 idle groups while the 8th's table is locked; unlocked (same run) {:.0} ms; max {:.0} ms; the locked group {:.0} ms behind; {:.0} rows/s offered",
            "group lag p99, one group locked",
            lag.p99_ms_locked,
            lag.p99_ms_free,
            lag.max_ms_locked,
            lag.locked_group_ms,
            lag.offered_rows_per_s
        );
    }
}
