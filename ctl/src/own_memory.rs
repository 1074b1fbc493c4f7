//! Resident memory of the `wharfctl` process itself during a benchmark phase run in it (the
//! in-process ingest server with its 64 senders and the prebuilt bodies, or the embedded
//! applier): the kernel's peak (`VmHWM`) is reset to the current size before the phase and read
//! after it.

use std::future::Future;

use serde_json::{Value, json};

/// One in-process phase's memory, in MiB.
#[derive(Clone, Copy, Debug)]
pub struct PhaseMemory {
    /// Resident at the start (the bodies and whatever earlier phases left).
    pub start_mib: f64,
    pub peak_mib: f64,
}

impl PhaseMemory {
    pub fn json(phase: &str, memory: Option<PhaseMemory>) -> Value {
        json!({
            "phase": phase,
            "start_rss_mib": memory.map(|m| m.start_mib.round()),
            "peak_rss_mib": memory.map(|m| m.peak_mib.round()),
        })
    }
}

/// Runs `phase` and measures this process's memory over it; `None` where `/proc` does not allow
/// resetting the peak (not Linux).
pub async fn measure<T>(phase: impl Future<Output = T>) -> (T, Option<PhaseMemory>) {
    let start = reset_peak();
    let out = phase.await;
    let memory = start.zip(status_mib("VmHWM:")).map(|(start_mib, peak_mib)| PhaseMemory { start_mib, peak_mib });
    (out, memory)
}

/// Sets the peak to the current resident size (Linux: `5` written to `clear_refs`); returns it.
fn reset_peak() -> Option<f64> {
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    status_mib("VmRSS:")
}

fn status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
