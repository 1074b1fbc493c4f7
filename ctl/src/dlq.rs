//! `wharfctl dlq list|replay|discard`: the row versions `--onApplyError quarantine` kept aside in
//! the target's quarantine table (see `wharf_applier::dlq`).

use clap::{Args, Subcommand};
use wharf_applier::dlq::{self, Filter, Quarantined};

use crate::security::StagingArgs;

#[derive(Subcommand, Debug)]
pub enum DlqCommand {
    /// List quarantined row versions, oldest first.
    List(Selected),
    /// Apply quarantined versions in timestamp order, exactly once, and remove them; a key whose
    /// version is refused again stays quarantined with the new error.
    Replay(Selected),
    /// Delete quarantined versions without applying them; newer versions of their keys then
    /// apply again. Needs --table, --key, --partition or --all.
    Discard {
        #[command(flatten)]
        staging: StagingArgs,
        #[command(flatten)]
        filter: FilterArgs,
        /// Every quarantined version.
        #[arg(long)]
        all: bool,
    },
}

/// Which versions, in which target, and how to print them.
#[derive(Args, Debug)]
pub struct Selected {
    #[command(flatten)]
    staging: StagingArgs,
    #[command(flatten)]
    filter: FilterArgs,
    /// JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct FilterArgs {
    /// Only this partition (db.schema).
    #[arg(long)]
    partition: Option<String>,
    /// Only this table.
    #[arg(long)]
    table: Option<String>,
    /// Only this key: the changefeed's key array as JSON (`[42]`, `["a", 1]`); a single value may
    /// be given bare (`42`, `abc`).
    #[arg(long)]
    key: Option<String>,
}

impl FilterArgs {
    fn filter(&self) -> Filter {
        Filter { partition: self.partition.clone(), table: self.table.clone(), key: self.key.as_deref().map(key_json) }
    }

    fn is_empty(&self) -> bool {
        self.partition.is_none() && self.table.is_none() && self.key.is_none()
    }
}

/// The key as a JSON array: JSON as given when it is an array, else one element (JSON if it
/// parses, else a string).
fn key_json(text: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(array @ serde_json::Value::Array(_)) => array.to_string(),
        Ok(value) => serde_json::Value::Array(vec![value]).to_string(),
        Err(_) => serde_json::json!([text]).to_string(),
    }
}

pub async fn run(command: DlqCommand) -> anyhow::Result<()> {
    match command {
        DlqCommand::List(Selected { staging, filter, json }) => {
            let client = wharf_targetdb::connect(&staging.target_conn).await?;
            let versions = dlq::list(&client, &staging.staging_schema, &filter.filter()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&versions)?);
            } else {
                print(&versions);
            }
        }
        DlqCommand::Replay(Selected { staging, filter, json }) => {
            let mut client = wharf_targetdb::connect(&staging.target_conn).await?;
            let done = dlq::replay(&mut client, &staging.staging_schema, &filter.filter()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&done)?);
            } else {
                println!("applied {} quarantined version(s)", done.applied);
                for refused in &done.refused {
                    println!(
                        "refused again: {} {} key {} version {}: {} {}",
                        refused.partition,
                        refused.table,
                        refused.key,
                        refused.version,
                        refused.sqlstate.as_deref().unwrap_or("-"),
                        refused.message
                    );
                }
                if done.held > 0 {
                    println!("{} later version(s) of those keys stay quarantined behind them", done.held);
                }
            }
            if !done.refused.is_empty() {
                anyhow::bail!(
                    "{} key(s) stay quarantined: fix the target or the data and replay again",
                    done.refused.len()
                );
            }
        }
        DlqCommand::Discard { staging, filter, all } => {
            if filter.is_empty() && !all {
                anyhow::bail!(
                    "say what to discard: --table, --key or --partition, or --all for every quarantined version"
                );
            }
            let client = wharf_targetdb::connect(&staging.target_conn).await?;
            let deleted = dlq::discard(&client, &staging.staging_schema, &filter.filter()).await?;
            println!("discarded {deleted} quarantined version(s); newer versions of their keys apply again");
        }
    }
    Ok(())
}

fn print(versions: &[Quarantined]) {
    println!(
        "{:>6} {:<20} {:<20} {:<20} {:<22} {:<6} {:<8} MESSAGE",
        "ID", "PARTITION", "TABLE", "KEY", "VERSION", "OP", "SQLSTATE"
    );
    for v in versions {
        println!(
            "{:>6} {:<20} {:<20} {:<20} {:<22} {:<6} {:<8} {}",
            v.id,
            v.partition,
            v.table,
            v.key,
            v.version,
            v.op,
            v.sqlstate.as_deref().unwrap_or("-"),
            v.message
        );
    }
    if versions.is_empty() {
        println!("(nothing quarantined)");
    }
}

#[cfg(test)]
mod tests {
    use super::key_json;

    #[test]
    fn keys_become_json_arrays() {
        assert_eq!(key_json("[1, \"a\"]"), r#"[1,"a"]"#);
        assert_eq!(key_json("42"), "[42]");
        assert_eq!(key_json("abc"), r#"["abc"]"#);
        assert_eq!(key_json("\"abc\""), r#"["abc"]"#);
    }
}
