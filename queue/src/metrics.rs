//! The journal's sync metrics (the shared label and buckets are in `wharf_base::metrics`).

use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use wharf_base::metrics::latency_histogram;

/// What the journal's group commit does: how long a flush + fsync takes, how many appends share one.
#[derive(Clone, Debug)]
pub struct SyncMetrics {
    pub duration: Histogram,
    pub group_size: Histogram,
}

impl Default for SyncMetrics {
    fn default() -> Self {
        SyncMetrics {
            duration: latency_histogram(),
            group_size: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(1.0, 2.0, 12)),
        }
    }
}

impl SyncMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "wharf_journal_fsync_duration_seconds",
            "Time of one journal group commit (write and fdatasync of the segment file)",
            self.duration.clone(),
        );
        registry.register(
            "wharf_journal_group_commit_size",
            "Durable appends and resolved timestamps that shared one journal sync",
            self.group_size.clone(),
        );
    }
}
