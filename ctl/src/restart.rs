//! The restart phase of `wharfctl bench`: a journal of a given size written through the journal's
//! own API (1,000-row requests, 64 at a time), then the time `Journal::open` takes (what a
//! restarted `wharf-ingest` waits for before it serves) and the time until the background check
//! of every segment is done (rows are read only from checked segments): from a cold page cache
//! (dropped first, when running as root) and again warm.

use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use wharf_queue::{Hlc, Journal, JournalConfig, Partition, Row};

const T0: u64 = 1_950_000_000_000_000_000;
const REQUEST_ROWS: usize = 1000;
const CONCURRENT: usize = 64;

pub struct RestartReport {
    pub journal_bytes: u64,
    pub rows: u64,
    /// `None` when the page cache could not be dropped (not root).
    pub cold: Option<Timing>,
    pub warm: Timing,
}

#[derive(Clone, Copy)]
pub struct Timing {
    /// Until `Journal::open` returned: serving.
    pub open: Duration,
    /// Until every segment passed its check.
    pub checked: Duration,
}

fn request(first: u64) -> Vec<Row> {
    (first..first + REQUEST_ROWS as u64)
        .map(|id| Row {
            hlc: Hlc::new(T0 + id, 0),
            table: "rows".into(),
            key: format!("[{id}]").into_bytes(),
            after: Some(format!("{{\"id\": {id}, \"payload\": \"restart {id:010} {}\"}}", "r".repeat(80)).into_bytes()),
        })
        .collect()
}

/// Writes about `gib` GiB of unapplied rows, then times opening the journal.
pub async fn measure(gib: f64) -> anyhow::Result<RestartReport> {
    let dir = tempfile::tempdir()?;
    let config = JournalConfig::scratch(dir.path());
    let partition = Partition::new("db", "bench_restart");
    let journal = Journal::open(&config)?;
    let target = (gib * (1u64 << 30) as f64) as u64;
    let mut rows = 0u64;
    let mut inflight = JoinSet::new();
    while journal.disk_bytes() < target {
        while inflight.len() >= CONCURRENT {
            inflight.join_next().await.expect("non-empty")??;
        }
        let (journal, partition, batch) = (journal.clone(), partition.clone(), request(rows));
        rows += REQUEST_ROWS as u64;
        inflight.spawn(async move { journal.append_durable(&partition, &batch).await.map(|_| ()) });
    }
    while let Some(done) = inflight.join_next().await {
        done??;
    }
    journal.resolve_durable(&partition, Hlc::new(T0 + rows, 0)).await?;
    let journal_bytes = journal.disk_bytes();
    drop(journal);
    let cold = if drop_page_cache() { Some(time_open(&config)?) } else { None };
    let warm = time_open(&config)?;
    Ok(RestartReport { journal_bytes, rows, cold, warm })
}

fn time_open(config: &JournalConfig) -> anyhow::Result<Timing> {
    let started = Instant::now();
    let journal = Journal::open(config)?;
    let open = started.elapsed();
    journal.verified()?;
    let checked = started.elapsed();
    drop(journal);
    Ok(Timing { open, checked })
}

/// Writes dirty pages back and drops the page cache; false when not allowed (not root).
fn drop_page_cache() -> bool {
    crate::bench::feed::settle();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}
