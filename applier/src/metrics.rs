//! Apply metrics for Prometheus, with MOLT Replicator's names where the concept is the same
//! (`apply_upserts_total`, `apply_deletes_total`, `apply_errors_total`, `apply_duration_seconds`,
//! `target_applied_timestamp_seconds`, `target_lag_seconds`), labelled by partition.

use std::sync::atomic::AtomicU64;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use wharf_base::metrics::{SchemaLabel, latency_histogram};
use wharf_queue::Partition;

use crate::window::Committed;

type PerSchema<M> = Family<SchemaLabel, M>;
type Seconds = Gauge<f64, AtomicU64>;

#[derive(Debug)]
pub struct ApplyMetrics {
    upserts: PerSchema<Counter>,
    deletes: PerSchema<Counter>,
    errors: PerSchema<Counter>,
    quarantined: PerSchema<Counter>,
    duration: Family<SchemaLabel, Histogram, fn() -> Histogram>,
    applied_timestamp: PerSchema<Seconds>,
    target_lag: PerSchema<Seconds>,
}

impl Default for ApplyMetrics {
    fn default() -> Self {
        ApplyMetrics {
            upserts: Family::default(),
            deletes: Family::default(),
            errors: Family::default(),
            quarantined: Family::default(),
            duration: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            applied_timestamp: Family::default(),
            target_lag: Family::default(),
        }
    }
}

impl ApplyMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register("apply_upserts", "Rows inserted or updated in the target", self.upserts.clone());
        registry.register("apply_deletes", "Rows deleted from the target", self.deletes.clone());
        registry.register(
            "apply_errors",
            "Failed apply attempts (each is retried or pauses the partition)",
            self.errors.clone(),
        );
        registry.register(
            "wharf_quarantined_rows",
            "Row versions written to the quarantine table (--onApplyError quarantine): refused by the target, or held behind a refused version of their key",
            self.quarantined.clone(),
        );
        registry.register(
            "apply_duration_seconds",
            "Time of one target transaction, from BEGIN to COMMIT with its checkpoint",
            self.duration.clone(),
        );
        registry.register(
            "target_applied_timestamp_seconds",
            "Resolved timestamp of the last checkpoint committed in the target (Unix seconds)",
            self.applied_timestamp.clone(),
        );
        registry.register(
            "target_lag_seconds",
            "Age of the last committed checkpoint's resolved timestamp when it was committed",
            self.target_lag.clone(),
        );
    }

    pub(crate) fn committed(&self, partition: &Partition, done: &Committed) {
        let label = SchemaLabel::of(partition);
        self.upserts.get_or_create(&label).inc_by(done.upserts);
        self.deletes.get_or_create(&label).inc_by(done.deletes);
        self.quarantined.get_or_create(&label).inc_by(done.quarantined);
        // Shown at 0 once the partition is applied.
        drop(self.errors.get_or_create(&label));

        self.duration.get_or_create(&label).observe(done.took.as_secs_f64());
        let applied = done.through.wall as f64 / 1e9;
        self.applied_timestamp.get_or_create(&label).set(applied);
        self.target_lag.get_or_create(&label).set((now_seconds() - applied).max(0.0));
    }

    pub(crate) fn failed(&self, partition: &Partition) {
        self.errors.get_or_create(&SchemaLabel::of(partition)).inc();
    }
}

fn now_seconds() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}
