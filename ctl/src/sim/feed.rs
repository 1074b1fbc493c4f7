//! Drives a model as a changefeed: batches with reordering across keys, duplicates, re-emission
//! after a simulated restart, and resolved timestamps sent only after every earlier batch was
//! acknowledged (CockroachDB's resolved guarantee).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use rand::seq::SliceRandom;
use tokio::task::JoinSet;
use wharf_queue::Hlc;

use super::model::{Model, Msg};
use crate::http::Sender;

#[derive(Clone, Debug)]
pub struct FeedConfig {
    pub batch_rows: usize,
    pub concurrency: usize,
    /// Batches between resolved timestamps.
    pub resolved_every: usize,
    /// Probability that a batch is sent twice (a lost response).
    pub duplicate_rate: f64,
    /// Probability that, before a resolved timestamp, everything since the last one is re-emitted.
    pub restart_rate: f64,
}

impl Default for FeedConfig {
    fn default() -> Self {
        FeedConfig { batch_rows: 500, concurrency: 8, resolved_every: 8, duplicate_rate: 0.05, restart_rate: 0.1 }
    }
}

/// Progress shared with a progress bar.
#[derive(Debug, Default)]
pub struct FeedStats {
    pub rows_acked: AtomicU64,
    pub resolved_sent: AtomicU64,
}

/// One resolved timestamp and when its request was acknowledged.
#[derive(Clone, Copy, Debug)]
pub struct ResolvedMark {
    pub hlc: Hlc,
    pub acked_at: Instant,
}

/// Runs the feed until `deadline`, then sends a final resolved timestamp covering everything.
pub async fn drive(
    model: &mut Model,
    sender: &Sender,
    config: &FeedConfig,
    deadline: Instant,
    stats: Arc<FeedStats>,
    mut on_resolved: impl FnMut(ResolvedMark),
) -> anyhow::Result<Hlc> {
    let mut since_resolved: Vec<Msg> = Vec::new();
    loop {
        let mut inflight = JoinSet::new();
        for _ in 0..config.resolved_every {
            let batch = next_batch(model, config.batch_rows);
            since_resolved.extend(batch.iter().cloned());
            let copies = if model.rng().random_bool(config.duplicate_rate) { 2 } else { 1 };
            for _ in 0..copies {
                spawn_send(&mut inflight, sender, shuffled(model, batch.clone()), &stats, config.concurrency).await?;
            }
        }
        if model.rng().random_bool(config.restart_rate) {
            let mut replay = since_resolved.clone();
            replay.shuffle(model.rng());
            for chunk in replay.chunks(config.batch_rows) {
                spawn_send(&mut inflight, sender, shuffled(model, chunk.to_vec()), &stats, config.concurrency).await?;
            }
        }
        while let Some(done) = inflight.join_next().await {
            done??;
        }
        since_resolved.clear();
        let resolved = model.now();
        sender.post(Bytes::from(format!("{{\"resolved\":\"{resolved}\"}}"))).await?;
        stats.resolved_sent.fetch_add(1, Ordering::Relaxed);
        on_resolved(ResolvedMark { hlc: resolved, acked_at: Instant::now() });
        if Instant::now() >= deadline {
            return Ok(resolved);
        }
    }
}

async fn spawn_send(
    inflight: &mut JoinSet<anyhow::Result<()>>,
    sender: &Sender,
    batch: Vec<Msg>,
    stats: &Arc<FeedStats>,
    concurrency: usize,
) -> anyhow::Result<()> {
    while inflight.len() >= concurrency {
        if let Some(done) = inflight.join_next().await {
            done??;
        }
    }
    let rows = batch.len() as u64;
    let body = Bytes::from(webhook_body(&batch));
    let (sender, stats) = (sender.clone(), stats.clone());
    inflight.spawn(async move {
        sender.post(body).await?;
        stats.rows_acked.fetch_add(rows, Ordering::Relaxed);
        Ok(())
    });
    Ok(())
}

fn next_batch(model: &mut Model, rows: usize) -> Vec<Msg> {
    let mut batch = Vec::with_capacity(rows + 8);
    while batch.len() < rows {
        batch.extend(model.transaction());
    }
    batch
}

/// Shuffles a batch across keys while keeping each key's versions in timestamp order.
fn shuffled(model: &mut Model, mut batch: Vec<Msg>) -> Vec<Msg> {
    batch.shuffle(model.rng());
    let mut by_key: std::collections::HashMap<(&'static str, String), Vec<usize>> = std::collections::HashMap::new();
    for (i, m) in batch.iter().enumerate() {
        by_key.entry(m.row_id()).or_default().push(i);
    }
    for slots in by_key.values().filter(|s| s.len() > 1) {
        let mut versions: Vec<Msg> = slots.iter().map(|&i| batch[i].clone()).collect();
        versions.sort_by_key(|m| m.hlc);
        for (&slot, version) in slots.iter().zip(versions) {
            batch[slot] = version;
        }
    }
    batch
}

/// `{"payload":[…],"length":N}` as the v2 webhook sink writes it.
pub fn webhook_body(batch: &[Msg]) -> String {
    let messages: Vec<String> = batch.iter().map(Msg::to_wire).collect();
    format!("{{\"payload\":[{}],\"length\":{}}}", messages.join(","), batch.len())
}

/// Waits until `done` returns true, polling every 20 ms, for at most `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, mut done: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !done().await {
        anyhow::ensure!(Instant::now() < deadline, "timed out after {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
