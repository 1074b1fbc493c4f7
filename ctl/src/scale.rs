//! The phases of `wharfctl bench` that run appliers as separate processes:
//!
//! - `apply_quic`: the same backlog as the embedded apply phase, applied by one `wharf-applier`
//!   process through the QUIC queue service (served in this process over the same journal code).
//! - `scan`: a single-timestamp initial scan through a real `wharf-ingest` and one
//!   `wharf-applier`, with the peak resident memory of both processes.
//!
//! The scaling phases (8 tables laid out three ways, 1, 2 and 4 appliers) are in `scaling.rs`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use wharf_queue::{DEFAULT_LEASE_TIMEOUT, Hlc, Journal, JournalConfig, Partition, QueueService};

use wharf_queue::quic::{ClientSettings, QuicClient, TlsFiles};

use crate::cluster::{BenchStack, Certs, start_applier};
use crate::harness::checkpoint;
use crate::http::Sender;

const T0: u64 = 1_732_615_200_000_000_000;
const SENDERS: usize = 64;
const BODY_ROWS: usize = 1000;
const DRAIN_LIMIT: Duration = Duration::from_secs(1800);

/// Times one separate applier process draining the resolved backlog in `journal_dir`
/// (`rows` rows of `database.bench`, already in the target once: the table is emptied first).
pub async fn apply_quic(
    url: &str,
    journal_dir: &std::path::Path,
    database: &str,
    rows: usize,
) -> anyhow::Result<(Duration, Option<f64>)> {
    let client = wharf_targetdb::connect(url).await?;
    let partition = Partition::new(database, "bench");
    reset_target(&client, &partition).await?;
    let journal = Journal::open(&JournalConfig::scratch(journal_dir))?;
    journal.wait_written().await;
    let service = QueueService::new(journal.clone(), DEFAULT_LEASE_TIMEOUT);
    let certs = Certs::new()?;
    let endpoint = wharf_queue::quic::server::bind(&certs.server("127.0.0.1:0".parse()?), DEFAULT_LEASE_TIMEOUT)?;
    let queue_addr = format!("127.0.0.1:{}", endpoint.local_addr()?.port());
    let stop = CancellationToken::new();
    let server = tokio::spawn(wharf_queue::quic::serve(endpoint, service.clone(), stop.clone().cancelled_owned()));
    let applier = start_applier(&queue_addr, url, &certs, 1, "bench")?;
    // Timing starts once the applier is connected and the backlog is resolved.
    crate::sim::feed::wait_until(Duration::from_secs(30), || {
        let service = service.clone();
        async move { service.status().await.is_ok_and(|s| !s.sessions.is_empty()) }
    })
    .await?;
    let resolved = Hlc::new(T0 + rows as u64, 0);
    journal.resolve_durable(&partition, resolved).await?;
    crate::bench::feed::settle();
    let busy = crate::cpu_cost::Busy::start();
    let started = Instant::now();
    wait_checkpoint(&client, &partition, resolved).await?;
    let elapsed = started.elapsed();
    let busy = busy.and_then(crate::cpu_cost::Busy::seconds);
    applier.stop()?;
    stop.cancel();
    server.await?;
    Ok((elapsed, busy))
}

/// Empties `bench.rows` and forgets `partition`'s checkpoint, so the backlog is applied again.
pub async fn reset_target(client: &tokio_postgres::Client, partition: &Partition) -> anyhow::Result<()> {
    client.batch_execute("TRUNCATE bench.rows").await?;
    client.execute("DELETE FROM _replicator.checkpoints WHERE partition = $1", &[&partition.to_string()]).await?;
    Ok(())
}

async fn wait_checkpoint(client: &tokio_postgres::Client, partition: &Partition, resolved: Hlc) -> anyhow::Result<()> {
    let key = partition.to_string();
    let want = resolved.to_string();
    crate::sim::feed::wait_until(DRAIN_LIMIT, || {
        let (key, want) = (&key, &want);
        async move { checkpoint(client, key).await.ok().flatten().is_some_and(|c| &c == want) }
    })
    .await
}

/// What the scan phase measured.
pub struct ScanReport {
    pub rows: usize,
    pub elapsed: Duration,
    pub peak_rss_mib_ingest: f64,
    pub peak_rss_mib_applier: f64,
}

fn scan_body(first: usize, rows: usize, hlc: Hlc) -> Bytes {
    let messages: Vec<String> = (first..first + rows)
        .map(|id| {
            format!(
                "{{\"after\": {{\"id\": {id}, \"payload\": \"scan {id:010} {}\"}}, \"key\": [{id}], \"topic\": \"scan\", \"updated\": \"{hlc}\"}}",
                "s".repeat(80)
            )
        })
        .collect();
    Bytes::from(format!("{{\"payload\":[{}],\"length\":{}}}", messages.join(","), rows))
}

/// An initial scan: `rows` rows of one table at one timestamp, sent by 64 senders through a
/// `wharf-ingest` process, resolved, and applied by one `wharf-applier` process.
pub async fn scan(url: &str, database: &str, rows: usize) -> anyhow::Result<ScanReport> {
    let BenchStack { ingest, client, certs, journal: _journal } = BenchStack::start(url, "bench_scan", "scan").await?;
    let applier = start_applier(&ingest.queue_addr, url, &certs, 1, "scan")?;
    let sender = Sender::new(ingest.base_url(database, "bench_scan"));
    let hlc = Hlc::new(T0, 0);
    crate::bench::feed::settle();
    let started = Instant::now();
    let mut inflight = JoinSet::new();
    for first in (0..rows).step_by(BODY_ROWS) {
        while inflight.len() >= SENDERS {
            inflight.join_next().await.expect("non-empty")??;
        }
        let (sender, body) = (sender.clone(), scan_body(first, BODY_ROWS.min(rows - first), hlc));
        inflight.spawn(async move { sender.post(body).await });
    }
    while let Some(done) = inflight.join_next().await {
        done??;
    }
    sender.post(Bytes::from(format!("{{\"resolved\":\"{hlc}\"}}"))).await?;
    wait_checkpoint(&client, &Partition::new(database, "bench_scan"), hlc).await?;
    let elapsed = started.elapsed();
    let report = ScanReport {
        rows,
        elapsed,
        peak_rss_mib_ingest: ingest.process.peak_rss_mib().unwrap_or(f64::NAN),
        peak_rss_mib_applier: applier.peak_rss_mib().unwrap_or(f64::NAN),
    };
    applier.stop()?;
    ingest.process.stop()?;
    Ok(report)
}

/// A queue client that only reads the service's status.
pub(crate) fn observer(queue_addr: &str, certs: &Certs) -> anyhow::Result<QuicClient> {
    let tls = TlsFiles {
        certificate: certs.path("applier.crt"),
        private_key: certs.path("applier.key"),
        ca: certs.path("ca.crt"),
    };
    let settings = ClientSettings { addr: queue_addr.to_owned(), tls, name: "bench".into(), workers: 0 };
    Ok(QuicClient::new(settings)?)
}

pub(crate) async fn wait_status(
    observer: &QuicClient,
    done: impl Fn(&wharf_queue::ServiceStatus) -> bool,
) -> anyhow::Result<()> {
    crate::sim::feed::wait_until(DRAIN_LIMIT, || {
        let status = observer.status();
        let done = &done;
        async move { status.await.is_ok_and(|s| done(&s)) }
    })
    .await
}
