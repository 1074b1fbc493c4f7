//! `GET /_/varz`: Prometheus text exposition of wharf's counters. No token is needed and nothing
//! secret is shown (no connection strings, no token text, no label taken from a request).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::server::State;

/// Status codes counted individually; anything else is counted as `other`.
const CODES: [u16; 11] = [200, 400, 401, 403, 404, 408, 413, 431, 500, 503, 0];

/// Counters of the HTTP surface.
#[derive(Debug, Default)]
pub struct IngestStats {
    pub rows_journaled: AtomicU64,
    responses: [AtomicU64; CODES.len()],
}

impl IngestStats {
    pub fn count_response(&self, status: u16) {
        let slot = CODES.iter().position(|c| *c == status).unwrap_or(CODES.len() - 1);
        self.responses[slot].fetch_add(1, Ordering::Relaxed);
    }
}

/// The exposition text.
pub fn render(state: &State) -> String {
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
    };
    let stats = &state.stats;
    counter(
        "wharf_rows_journaled_total",
        "Rows made durable in the journal.",
        stats.rows_journaled.load(Ordering::Relaxed),
    );
    let queue = state.queue.as_ref().map(|q| q.stats());
    counter(
        "wharf_apply_rows_total",
        "Rows applied to the target, as reported by embedded and separate appliers.",
        queue.map_or(0, |s| s.rows_applied.load(Ordering::Relaxed)),
    );
    counter(
        "wharf_apply_commits_total",
        "Target transactions committed with a checkpoint.",
        queue.map_or(0, |s| s.commits.load(Ordering::Relaxed)),
    );
    counter(
        "wharf_apply_fenced_total",
        "Commits refused because another applier took the partition over.",
        queue.map_or(0, |s| s.fenced.load(Ordering::Relaxed)),
    );
    let failures = state.auth.as_ref().map_or(0, |a| a.refresh_failures.load(Ordering::Relaxed));
    counter("wharf_jwt_refresh_failures_total", "JWT key refreshes that failed (previous keys kept).", failures);
    let _ = writeln!(
        out,
        "# HELP wharf_http_responses_total Responses by status code.\n# TYPE wharf_http_responses_total counter"
    );
    for (code, count) in CODES.iter().zip(&stats.responses) {
        let label = if *code == 0 { "other".to_owned() } else { code.to_string() };
        let _ = writeln!(out, "wharf_http_responses_total{{code=\"{label}\"}} {}", count.load(Ordering::Relaxed));
    }
    let _ = writeln!(
        out,
        "# HELP wharf_rows_dropped_stale_total Rows at or below their partition's applied checkpoint, acknowledged and dropped.\n# TYPE wharf_rows_dropped_stale_total counter"
    );
    for (partition, count) in state.journal.as_ref().map(|j| j.dropped_stale()).unwrap_or_default() {
        let _ = writeln!(out, "wharf_rows_dropped_stale_total{{partition=\"{partition}\"}} {count}");
    }
    let bytes = state.journal.as_ref().map_or(0, |j| j.disk_bytes());
    let _ = writeln!(
        out,
        "# HELP wharf_journal_disk_bytes Journal size on disk.\n# TYPE wharf_journal_disk_bytes gauge\nwharf_journal_disk_bytes {bytes}"
    );
    out
}
