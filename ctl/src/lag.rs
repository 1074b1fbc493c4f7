//! The lag phase of `wharfctl bench`: a steady feed at a given rate with a resolved timestamp
//! every second (as `resolved='1s'`), measuring for each resolved timestamp the time from its
//! acknowledgement to its checkpoint being committed on the target.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::task::JoinSet;
use wharf_queue::Hlc;

use crate::cluster::{BenchStack, Process, start_applier};
use crate::demo::{Marks, watch_lag};
use crate::harness::{InProcessIngest, IngestOptions};
use crate::http::Sender;
use crate::sim::feed::ResolvedMark;

/// Lag percentiles in milliseconds, and the rate actually offered.
pub struct LagReport {
    pub offered_rows_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Above every timestamp the earlier phases use, below any clock this runs on (ingest refuses
/// timestamps ahead of its clock).
const T0: u64 = 1_760_000_000_000_000_000;
pub const BODY_ROWS: usize = 1000;

/// What a steady feed sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Every row a new key: an initial scan or an insert-only table.
    Inserts,
    /// Updates of [`crate::churn::KEYS`] keys over and over (after the first pass inserts them).
    Updates,
}

impl Workload {
    fn body(self) -> fn(usize, usize) -> Bytes {
        match self {
            Workload::Inserts => insert_body,
            Workload::Updates => update_body,
        }
    }
}

/// One body, written straight into one buffer: the bench generates its feed on the machine it
/// measures, so the generator is kept cheap (with a `String` per row it took 0.47 µs per row, written
/// this way 0.19 µs).
fn lag_body(first: usize, rows: usize, key: fn(usize) -> usize) -> Bytes {
    use std::io::Write;
    const PAD: &str = "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy";
    let mut out = Vec::with_capacity(rows * 200 + 64);
    out.extend_from_slice(b"{\"payload\":[");
    for id in first..first + rows {
        if id > first {
            out.push(b',');
        }
        let key = key(id);
        let updated = Hlc::new(T0 + id as u64, 0);
        write!(
            out,
            "{{\"after\": {{\"id\": {key}, \"payload\": \"lag {id:010} {PAD}\"}}, \"key\": [{key}], \"topic\": \"lag\", \"updated\": \"{updated}\"}}"
        )
        .expect("writing to a Vec");
    }
    write!(out, "],\"length\":{rows}}}").expect("writing to a Vec");
    Bytes::from(out)
}

fn insert_body(first: usize, rows: usize) -> Bytes {
    lag_body(first, rows, |id| id)
}

fn update_body(first: usize, rows: usize) -> Bytes {
    lag_body(first, rows, |id| id % crate::churn::KEYS)
}

/// One second of a steady feed: `bodies` bodies of [`BODY_ROWS`] rows spread over the second,
/// then, once all are acknowledged, a resolved timestamp above them (as `resolved='1s'`).
pub struct SteadyFeed<'a> {
    pub sender: &'a Sender,
    pub started: Instant,
    /// Wall time of row id 0; row `id` is at `t0 + id`.
    pub t0: u64,
    pub bodies: usize,
    /// The body of rows `first..first + count`.
    pub body: fn(usize, usize) -> Bytes,
}

impl SteadyFeed<'_> {
    /// Sends second `second` (counted from `started`), advancing `next_id`; returns the resolved
    /// timestamp it sent.
    pub async fn second(&self, second: u64, next_id: &mut usize) -> anyhow::Result<Hlc> {
        let mut inflight = JoinSet::new();
        for b in 0..self.bodies {
            let due =
                self.started + Duration::from_secs(second) + Duration::from_secs_f64(b as f64 / self.bodies as f64);
            tokio::time::sleep_until(due.into()).await;
            let (sender, payload) = (self.sender.clone(), (self.body)(*next_id, BODY_ROWS));
            *next_id += BODY_ROWS;
            inflight.spawn(async move { sender.post(payload).await });
        }
        while let Some(done) = inflight.join_next().await {
            done??;
        }
        let resolved = Hlc::new(self.t0 + *next_id as u64, 0);
        self.sender.post(Bytes::from(format!("{{\"resolved\":\"{resolved}\"}}"))).await?;
        Ok(resolved)
    }
}

/// What one steady feed did: the rate it offered, and per resolved timestamp the time until its
/// checkpoint was committed (`None`: not yet when the feed was judged).
pub struct FeedRun {
    pub offered_rows_per_s: f64,
    pub lags: Vec<Option<Duration>>,
    /// Peak RSS of the `wharf-ingest` and `wharf-applier` processes ([`Pipeline::Separate`] only).
    pub peak_rss_mib: Option<(f64, f64)>,
}

/// What a steady feed runs through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pipeline {
    /// An ingest with one embedded applier, in this process.
    Embedded,
    /// A `wharf-ingest` process and one `wharf-applier` process over the QUIC queue service.
    Separate,
}

enum Running {
    Embedded(InProcessIngest),
    Separate { stack: Box<BenchStack>, applier: Process },
}

impl Running {
    /// Starts `pipeline` on an empty table and without a checkpoint: every feed starts its row
    /// timestamps at the same `T0`, and rows at or below a checkpoint left by an earlier feed
    /// would be skipped, making the feed look faster than it is.
    async fn start(
        target_url: &str,
        database: &str,
        pipeline: Pipeline,
    ) -> anyhow::Result<(Running, Option<tempfile::TempDir>)> {
        let schema = match pipeline {
            Pipeline::Embedded => "bench",
            Pipeline::Separate => SEPARATE_SCHEMA,
        };
        let client = wharf_targetdb::connect(target_url).await?;
        let forget = "DELETE FROM _replicator.checkpoints WHERE partition = $1";
        match client.execute(forget, &[&format!("{database}.{schema}")]).await {
            Err(e) if e.code() != Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => return Err(e.into()),
            _ => {}
        }
        Ok(match pipeline {
            Pipeline::Embedded => {
                client
                    .batch_execute(
                        "DROP TABLE IF EXISTS bench.lag; CREATE TABLE bench.lag (id bigint PRIMARY KEY, payload text)",
                    )
                    .await?;
                let journal = tempfile::tempdir()?;
                let options = IngestOptions { appliers: 1, ..IngestOptions::default() };
                (Running::Embedded(InProcessIngest::start(target_url, journal.path(), options).await?), Some(journal))
            }
            Pipeline::Separate => {
                let stack = BenchStack::start(target_url, SEPARATE_SCHEMA, "lag").await?;
                let applier = start_applier(&stack.ingest.queue_addr, target_url, &stack.certs, 1, "lag")?;
                (Running::Separate { stack: Box::new(stack), applier }, None)
            }
        })
    }

    fn schema(&self) -> &'static str {
        match self {
            Running::Embedded(_) => "bench",
            Running::Separate { .. } => SEPARATE_SCHEMA,
        }
    }

    fn base_url(&self, database: &str) -> String {
        match self {
            Running::Embedded(ingest) => ingest.base_url(database, "bench"),
            Running::Separate { stack, .. } => stack.ingest.base_url(database, SEPARATE_SCHEMA),
        }
    }

    /// Stops everything; returns the processes' peak RSS (ingest, applier) when they were processes.
    async fn stop(self) -> anyhow::Result<Option<(f64, f64)>> {
        match self {
            Running::Embedded(ingest) => {
                ingest.stop().await?;
                Ok(None)
            }
            Running::Separate { stack, applier } => {
                let peaks = (
                    stack.ingest.process.peak_rss_mib().unwrap_or(f64::NAN),
                    applier.peak_rss_mib().unwrap_or(f64::NAN),
                );
                applier.stop()?;
                stack.ingest.process.stop()?;
                Ok(Some(peaks))
            }
        }
    }
}

/// The schema of the feeds through separate processes.
const SEPARATE_SCHEMA: &str = "bench_e2e";

/// Feeds `workload` at `rows_per_s` for `seconds` into table `lag` through `pipeline`, then waits up to `settle`
/// for every resolved timestamp to be applied.
pub async fn feed(
    target_url: &str,
    database: &str,
    pipeline: Pipeline,
    workload: Workload,
    rows_per_s: f64,
    seconds: u64,
    settle: Duration,
) -> anyhow::Result<FeedRun> {
    let (running, _journal) = Running::start(target_url, database, pipeline).await?;
    let sender = Sender::new(running.base_url(database));
    let partition = format!("{database}.{}", running.schema());
    let per_second = (rows_per_s as usize).max(BODY_ROWS);
    let marks: Marks = Marks::default();
    let lag_client = wharf_targetdb::connect(target_url).await?;
    let watcher = tokio::spawn(watch_lag(lag_client, partition.clone(), marks.clone()));
    let started = Instant::now();
    let mut next_id = 0usize;
    for second in 0..seconds {
        let bodies = per_second / BODY_ROWS;
        let feed = SteadyFeed { sender: &sender, started, t0: T0, bodies, body: workload.body() };
        let resolved = feed.second(second, &mut next_id).await?;
        marks.lock().expect("marks").push((ResolvedMark { hlc: resolved, acked_at: Instant::now() }, None));
    }
    let offered = next_id as f64 / started.elapsed().as_secs_f64();
    let all_applied = || {
        let marks = marks.clone();
        async move { marks.lock().expect("marks").iter().all(|(_, lag)| lag.is_some()) }
    };
    let _ = crate::sim::feed::wait_until(settle, all_applied).await;
    watcher.abort();
    let peak_rss_mib = running.stop().await?;
    let lags = marks.lock().expect("marks").iter().map(|(_, lag)| *lag).collect();
    Ok(FeedRun { offered_rows_per_s: offered, lags, peak_rss_mib })
}

/// The lag phase: [`feed`], then percentiles of the lag of every resolved timestamp.
pub async fn measure(target_url: &str, database: &str, rows_per_s: f64, seconds: u64) -> anyhow::Result<LagReport> {
    let settle = Duration::from_secs(120);
    let run = feed(target_url, database, Pipeline::Embedded, Workload::Inserts, rows_per_s, seconds, settle).await?;
    let mut lags: Vec<Duration> = run.lags.iter().flatten().copied().collect();
    anyhow::ensure!(lags.len() == run.lags.len(), "resolved timestamps still unapplied 120 s after the feed ended");
    lags.sort();
    let ms = |d: Option<&Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    let pct = |p: f64| ms(lags.get(((lags.len() as f64 - 1.0) * p).round() as usize));
    Ok(LagReport {
        offered_rows_per_s: run.offered_rows_per_s,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        max_ms: ms(lags.last()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_the_json_the_feed_means() {
        let body = insert_body(5, 2);
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["length"], 2);
        let first = &value["payload"][0];
        assert_eq!(first["after"]["id"], 5);
        assert_eq!(first["key"][0], 5);
        assert_eq!(first["after"]["payload"], format!("lag 0000000005 {}", "y".repeat(80)));
        assert_eq!(first["topic"], "lag");
        assert_eq!(first["updated"], Hlc::new(T0 + 5, 0).to_string());
        assert_eq!(value["payload"][1]["key"][0], 6);
        let update: serde_json::Value = serde_json::from_slice(&update_body(crate::churn::KEYS + 3, 1)).unwrap();
        assert_eq!(update["payload"][0]["key"][0], 3);
    }
}
