//! The large-body phase of `wharfctl bench`: 64 senders post bodies of about 8 MiB to a real
//! `wharf-ingest` process (no appliers, nothing resolved), and the process's peak resident memory
//! is reported next to the target. Bytes in flight are bounded by `--inflightLimit`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::task::JoinSet;
use wharf_queue::Hlc;

use crate::cluster::BenchStack;
use crate::http::Sender;

const T0: u64 = 1_732_615_200_000_000_000;
const SENDERS: usize = 64;
/// Rows per body; each row carries an 8 KiB payload, so a body is about 8.3 MB.
const BODY_ROWS: usize = 1000;
const PAYLOAD: usize = 8 << 10;

pub struct MemoryReport {
    pub bodies: usize,
    pub body_bytes: usize,
    pub elapsed: Duration,
    pub peak_rss_mib_ingest: f64,
}

fn big_body(n: usize) -> Bytes {
    let filler = "m".repeat(PAYLOAD);
    let messages: Vec<String> = (0..BODY_ROWS)
        .map(|i| {
            let id = n * BODY_ROWS + i;
            format!(
                "{{\"after\": {{\"id\": {id}, \"payload\": \"{filler}\"}}, \"key\": [{id}], \"topic\": \"big\", \"updated\": \"{}\"}}",
                Hlc::new(T0 + id as u64, 0)
            )
        })
        .collect();
    Bytes::from(format!("{{\"payload\":[{}],\"length\":{}}}", messages.join(","), messages.len()))
}

/// Posts `bodies` large bodies through 64 senders and reports the ingest's peak memory.
pub async fn big_bodies(url: &str, database: &str, bodies: usize) -> anyhow::Result<MemoryReport> {
    let BenchStack { ingest, journal: _journal, .. } = BenchStack::start(url, "bench_big", "big").await?;
    let sender = Sender::new(ingest.base_url(database, "bench_big"));
    let body_bytes = big_body(0).len();
    crate::bench::feed::settle();
    let started = Instant::now();
    let mut inflight = JoinSet::new();
    for n in 0..bodies {
        while inflight.len() >= SENDERS {
            inflight.join_next().await.expect("non-empty")??;
        }
        let sender = sender.clone();
        inflight.spawn(async move { sender.post(big_body(n)).await });
    }
    while let Some(done) = inflight.join_next().await {
        done??;
    }
    let report = MemoryReport {
        bodies,
        body_bytes,
        elapsed: started.elapsed(),
        peak_rss_mib_ingest: ingest.process.peak_rss_mib().unwrap_or(f64::NAN),
    };
    ingest.process.stop()?;
    Ok(report)
}
