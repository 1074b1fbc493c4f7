//! Prometheus pieces every process uses: the label of a partition and the latency buckets. Labels
//! are bounded: a partition label is a target schema that exists (rows for unknown schemas are
//! refused before anything is counted), and a `group` label, on the apply metrics of a
//! foreign-key group only (`--partitionBy group`), one of the groups the schema's catalog has.

use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::histogram::Histogram;

/// One partition: `database.schema` of the target, and a foreign-key group's name when it is one
/// (no `group` label otherwise, so a schema's series read as before groups existed).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct SchemaLabel {
    pub schema: String,
    pub group: Option<String>,
}

impl SchemaLabel {
    pub fn of(partition: &crate::partition::Partition) -> SchemaLabel {
        SchemaLabel { schema: partition.schema_level().to_string(), group: partition.group.clone() }
    }

    /// A whole schema, by its `database.schema` name.
    pub fn schema(name: impl Into<String>) -> SchemaLabel {
        SchemaLabel { schema: name.into(), group: None }
    }
}

impl EncodeLabelSet for SchemaLabel {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        ("schema", self.schema.as_str()).encode(encoder.encode_label())?;
        match &self.group {
            Some(group) => ("group", group.as_str()).encode(encoder.encode_label()),
            None => Ok(()),
        }
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

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::registry::Registry;

    use super::SchemaLabel;
    use crate::partition::Partition;

    #[test]
    fn a_group_adds_its_label_and_a_schema_reads_as_before() {
        let family = Family::<SchemaLabel, Counter>::default();
        let schema = Partition::new("app", "shop");
        family.get_or_create(&SchemaLabel::of(&schema)).inc();
        family.get_or_create(&SchemaLabel::of(&schema.group("authors"))).inc();
        let mut registry = Registry::default();
        registry.register("apply_upserts", "rows", family);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.lines().any(|l| l == r#"apply_upserts_total{schema="app.shop"} 1"#), "{text}");
        assert!(text.lines().any(|l| l == r#"apply_upserts_total{schema="app.shop",group="authors"} 1"#), "{text}");
    }
}
