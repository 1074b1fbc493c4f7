//! `wharfctl recover`: after a lost or damaged journal, the statements that restart each
//! changefeed from the checkpoint the target holds, so nothing is lost and nothing is applied twice.
//!
//! The target's checkpoint is authoritative: every row at or below it is applied, and rows above
//! it are re-sent by a changefeed started with `cursor` = the checkpoint. CockroachDB can only do
//! that while the history is kept (`gc.ttlseconds` of the tables, 4 hours by default).
//!
//! Under `--partitionBy group` a schema has a row per foreign-key group: its changefeed restarts
//! from the lowest of them (retired rows aside), and each group skips what it applied already.

use clap::Args;
use serde_json::json;
use wharf_queue::Hlc;
use wharf_targetdb::catalog::discover;

#[derive(Args, Debug)]
pub struct RecoverArgs {
    /// Target database: postgresql://user@host:port/database
    #[arg(long = "targetConn", env = "WHARF_TARGET_CONN", hide_env_values = true)]
    pub target_conn: String,
    /// Schema of wharf's tables in the target.
    #[arg(long = "stagingSchema", env = "WHARF_STAGING_SCHEMA", default_value = "_replicator")]
    pub staging_schema: String,
    /// Base of the changefeed's sink URL, e.g. webhook-https://wharf.example:26258 (the partition's
    /// /database/schema path is added).
    #[arg(long = "sinkUrl", default_value = "webhook-https://WHARF_HOST:26258")]
    pub sink_url: String,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: RecoverArgs) -> anyhow::Result<()> {
    let client = wharf_targetdb::connect(&args.target_conn).await?;
    let checkpoints = wharf_targetdb::checkpoint::read_all(&client, &args.staging_schema).await?;
    anyhow::ensure!(
        !checkpoints.is_empty(),
        "no checkpoints in {}.checkpoints: nothing was applied yet, so restart the changefeeds with an initial scan",
        args.staging_schema
    );
    let mut out = Vec::new();
    for (partition, resolved) in per_schema(&checkpoints) {
        let Some((database, schema)) = partition.split_once('.') else { continue };
        let mut tables: Vec<String> = discover(&client, schema).await?.tables.keys().cloned().collect();
        tables.sort();
        let statement = statement(database, schema, &tables, resolved, &args.sink_url);
        out.push((partition, resolved, statement));
    }
    if args.json {
        let items: Vec<_> =
            out.iter().map(|(p, c, s)| json!({"partition": p, "checkpoint": c.to_string(), "statement": s})).collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(());
    }
    for (partition, resolved, statement) in out {
        println!("-- {partition}: applied up to {resolved}");
        println!("{statement}\n");
    }
    println!("-- Run these in CockroachDB against a wharf-ingest with an empty journal directory, before the");
    println!("-- checkpoints are older than the tables' gc.ttlseconds. Add your webhook_auth_header and ca_cert;");
    println!("-- the table names assume the source database and schema are named as the target's.");
    Ok(())
}

/// Per schema (`db.schema`), the lowest checkpoint of its live rows: its own, or its groups'.
fn per_schema(checkpoints: &[wharf_targetdb::CheckpointRow]) -> std::collections::BTreeMap<String, Hlc> {
    let mut lowest = std::collections::BTreeMap::new();
    for row in checkpoints.iter().filter(|r| !r.retired) {
        let schema = row.partition.split_once('/').map_or(row.partition.as_str(), |(schema, _)| schema);
        let entry = lowest.entry(schema.to_owned()).or_insert(row.resolved);
        *entry = (*entry).min(row.resolved);
    }
    lowest
}

/// The statement that restarts a partition's changefeed after `checkpoint`; without a
/// checkpoint yet (zero), an initial scan instead.
pub fn statement(database: &str, schema: &str, tables: &[String], checkpoint: Hlc, sink: &str) -> String {
    let list: Vec<String> = tables.iter().map(|t| format!("{database}.{schema}.{t}")).collect();
    let start = if checkpoint == Hlc::ZERO { String::new() } else { format!(", cursor = '{checkpoint}'") };
    format!(
        "CREATE CHANGEFEED FOR TABLE {}\n  INTO '{}/{database}/{schema}'\n  WITH updated, resolved = '1s', min_checkpoint_frequency = '1s'{start};",
        list.join(", "),
        sink.trim_end_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statement_restarts_after_the_checkpoint() {
        let tables = vec!["customers".to_owned(), "orders".to_owned()];
        let s = statement("app", "public", &tables, Hlc::new(1732615200000000000, 2), "webhook-https://w:26258/");
        assert_eq!(
            s,
            "CREATE CHANGEFEED FOR TABLE app.public.customers, app.public.orders\n  INTO 'webhook-https://w:26258/app/public'\n  WITH updated, resolved = '1s', min_checkpoint_frequency = '1s', cursor = '1732615200000000000.0000000002';"
        );
        assert!(!statement("app", "public", &tables, Hlc::ZERO, "x").contains("cursor"));
    }

    #[test]
    fn a_grouped_schema_restarts_from_its_slowest_live_group() {
        let row = |partition: &str, wall: u64, retired: bool| wharf_targetdb::CheckpointRow {
            partition: partition.into(),
            resolved: Hlc::new(wall, 0),
            epoch: 1,
            tables: None,
            floors: Default::default(),
            retired,
        };
        let rows = [
            row("app.public", 5, true),
            row("app.public/a", 30, false),
            row("app.public/b", 20, false),
            row("app.other", 7, false),
        ];
        let want = [("app.other".to_owned(), Hlc::new(7, 0)), ("app.public".to_owned(), Hlc::new(20, 0))];
        assert_eq!(per_schema(&rows), want.into());
    }
}
