//! The apply phase: one applier drains a journal's backlog, embedded twice around two runs of a
//! separate `wharf-applier` over the QUIC queue; and the references, a bare client loading the
//! same rows with `unnest` upserts in 1,000-row batches and with binary `COPY`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_util::sync::CancellationToken;
use wharf_applier::{ApplierConfig, ApplyStats};
use wharf_queue::{DEFAULT_LEASE_TIMEOUT, Hlc, Journal, JournalConfig, LocalClient, Partition, QueueService};

use super::feed::{T0, payload, settle};
use super::ingest::Journals;
use crate::cpu_cost::Busy;
use crate::harness::checkpoint;
use crate::own_memory::{PhaseMemory, measure};

/// What the apply phase measured.
pub struct ApplyRuns {
    /// Time to open the first backlog's journal until it was readable.
    pub open: Duration,
    /// The embedded applier, before and after the separate ones, with their CPU seconds.
    pub embedded: [(Duration, Option<f64>); 2],
    /// The separate `wharf-applier`, twice.
    pub separate: Vec<(Duration, Option<f64>)>,
    /// wharfctl's memory in the embedded runs.
    pub memory: Vec<Value>,
}

/// Each kind compared by its mean (as ingest is): single runs on this machine vary by a tenth or
/// more.
pub async fn measure_apply(
    url: &str,
    client: &tokio_postgres::Client,
    database: &str,
    rows: usize,
    journals: &Journals,
) -> anyhow::Result<ApplyRuns> {
    let (applied, memory_first) = measure(apply_backlog(url, journals.durable.path(), database, rows)).await;
    let (open, first, first_busy) = applied?;
    let mut separate = Vec::new();
    for dir in [&journals.durable_again, &journals.extra] {
        let (took, busy) = crate::scale::apply_quic(url, dir.path(), database, rows).await?;
        eprintln!("bench: apply by a separate wharf-applier {:.0} rows/s", rows as f64 / took.as_secs_f64());
        separate.push((took, busy));
    }
    crate::scale::reset_target(client, &Partition::new(database, "bench")).await?;
    let (applied, memory_again) = measure(apply_backlog(url, journals.jwt.path(), database, rows)).await;
    let (_, again, again_busy) = applied?;
    Ok(ApplyRuns {
        open,
        embedded: [(first, first_busy), (again, again_busy)],
        separate,
        memory: vec![
            PhaseMemory::json("apply, embedded applier", memory_first),
            PhaseMemory::json("apply, embedded applier (again)", memory_again),
        ],
    })
}

/// The references: binary `COPY` before and after `unnest` upserts.
pub struct References {
    pub copy: [Duration; 2],
    pub unnest: Duration,
}

pub async fn measure_references(client: &tokio_postgres::Client, rows: usize) -> anyhow::Result<References> {
    let copy_first = reference_copy(client, rows).await?;
    let unnest = reference_unnest(client, rows).await?;
    client.batch_execute("TRUNCATE bench.ref_copy").await?;
    let copy_last = reference_copy(client, rows).await?;
    Ok(References { copy: [copy_first, copy_last], unnest })
}

/// Times the opening of the logged backlog, then resolves it at once and times one applier
/// draining it.
async fn apply_backlog(
    url: &str,
    journal_dir: &std::path::Path,
    database: &str,
    rows: usize,
) -> anyhow::Result<(Duration, Duration, Option<f64>)> {
    let opening = Instant::now();
    let journal = Journal::open(&JournalConfig::scratch(journal_dir))?;
    journal.wait_written().await;
    let open = opening.elapsed();
    let partition = Partition::new(database, "bench");
    let resolved = Hlc::new(T0 + rows as u64, 0);
    journal.resolve_durable(&partition, resolved).await?;
    // Timing starts once the backlog is resolved, i.e. readable by an applier.
    while journal.resolved(&partition) != Some(resolved) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    settle();
    let stop = CancellationToken::new();
    let config = ApplierConfig::new(url, "_replicator", 1);
    let busy = Busy::start();
    let started = Instant::now();
    let client = LocalClient::new(QueueService::new(journal.clone(), DEFAULT_LEASE_TIMEOUT), "bench", 1);
    let task = tokio::spawn(wharf_applier::run(config, client, Arc::new(ApplyStats::default()), stop.clone()));
    let client = wharf_targetdb::connect(url).await?;
    let key = partition.to_string();
    crate::sim::feed::wait_until(Duration::from_secs(600), || {
        let (client, key) = (&client, &key);
        async move { checkpoint(client, key).await.ok().flatten().is_some_and(|c| c == resolved.to_string()) }
    })
    .await?;
    let elapsed = started.elapsed();
    let busy = busy.and_then(Busy::seconds);
    stop.cancel();
    task.await?;
    Ok((open, elapsed, busy))
}

async fn reference_unnest(client: &tokio_postgres::Client, rows: usize) -> anyhow::Result<Duration> {
    settle();
    let statement = client
        .prepare("INSERT INTO bench.ref_unnest (id, payload) SELECT * FROM unnest($1::bigint[], $2::text[]) ON CONFLICT (id) DO UPDATE SET payload = excluded.payload")
        .await?;
    let started = Instant::now();
    client.batch_execute("BEGIN").await?;
    for start in (0..rows).step_by(1000) {
        let ids: Vec<i64> = (start..(start + 1000).min(rows)).map(|i| i as i64).collect();
        let payloads: Vec<String> = ids.iter().map(|&i| payload(i as usize)).collect();
        client.execute(&statement, &[&ids, &payloads]).await?;
    }
    client.batch_execute("COMMIT").await?;
    Ok(started.elapsed())
}

async fn reference_copy(client: &tokio_postgres::Client, rows: usize) -> anyhow::Result<Duration> {
    settle();
    let started = Instant::now();
    let sink = client.copy_in("COPY bench.ref_copy (id, payload) FROM STDIN BINARY").await?;
    let writer = BinaryCopyInWriter::new(sink, &[Type::INT8, Type::TEXT]);
    let mut writer = std::pin::pin!(writer);
    for id in 0..rows {
        writer.as_mut().write(&[&(id as i64), &payload(id)]).await?;
    }
    writer.finish().await?;
    Ok(started.elapsed())
}
