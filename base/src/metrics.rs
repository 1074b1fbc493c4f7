//! Prometheus pieces every process uses: the label of a partition and the latency buckets. Labels
//! are bounded: a partition label is a target schema that exists (rows for unknown schemas are
//! refused before anything is counted).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::histogram::Histogram;

/// One partition: `database.schema` of the target.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SchemaLabel {
    pub schema: String,
}

impl SchemaLabel {
    pub fn of(partition: &crate::partition::Partition) -> SchemaLabel {
        SchemaLabel { schema: partition.to_string() }
    }
}

/// 1, 2, … 9 ms, 10, 20, … 90 ms, … up to 60 s: the buckets MOLT Replicator's dashboards expect.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    // In whole milliseconds first, so 9 ms is 0.009 and not 0.009000000000000001.
    let millis = [1u32, 10, 100, 1000].into_iter().flat_map(|decade| (1..10).map(move |i| i * decade));
    millis.chain([10_000, 20_000, 30_000, 40_000, 50_000, 60_000]).map(|ms| f64::from(ms) / 1000.0)
}

pub fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}
