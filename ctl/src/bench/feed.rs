//! The benchmark's rows and how they are sent: webhook bodies of `bench.rows`, 64 senders, and
//! the page-cache settling before each timed phase (also used by the other bench modules).

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::task::JoinSet;
use wharf_queue::Hlc;

use crate::http::Sender;

/// The timestamp of row 0; row `id` is at `T0 + id`.
pub const T0: u64 = 1_732_615_200_000_000_000;

pub fn payload(id: usize) -> String {
    format!("row {id:010} {}", "x".repeat(80))
}

/// `rows` rows in bodies of `body_rows`.
pub fn bodies(rows: usize, body_rows: usize) -> Vec<Bytes> {
    (0..rows).step_by(body_rows).map(|first| bodies_from(first, body_rows.min(rows - first), "rows")).collect()
}

/// One webhook body with rows `first..first + count` of table `topic`, each at its own timestamp.
pub fn bodies_from(first: usize, count: usize, topic: &str) -> Bytes {
    let messages: Vec<String> = (first..first + count)
        .map(|id| {
            format!(
                "{{\"after\": {{\"id\": {id}, \"payload\": \"{}\"}}, \"key\": [{id}], \"topic\": \"{topic}\", \"updated\": \"{}\"}}",
                payload(id),
                Hlc::new(T0 + id as u64, 0)
            )
        })
        .collect();
    Bytes::from(format!("{{\"payload\":[{}],\"length\":{}}}", messages.join(","), messages.len()))
}

/// Writes back every dirty page first, so one phase's leftover disk writes do not slow the next.
pub fn settle() {
    let _ = std::process::Command::new("sync").status();
}

/// Posts every body with `senders` at once; the time from the first to the last answer.
pub async fn send_all(sender: &Sender, bodies: &[Bytes], senders: usize) -> anyhow::Result<Duration> {
    settle();
    let started = Instant::now();
    let mut inflight = JoinSet::new();
    for body in bodies {
        while inflight.len() >= senders {
            inflight.join_next().await.expect("non-empty")??;
        }
        let (sender, body) = (sender.clone(), body.clone());
        inflight.spawn(async move { sender.post(body).await });
    }
    while let Some(done) = inflight.join_next().await {
        done??;
    }
    Ok(started.elapsed())
}
