//! What `wharfctl dlq` does with the quarantine table ([`crate::quarantine`]): list its row
//! versions, replay them, discard them.
//!
//! A replay is one target transaction. It locks the selected versions (`FOR UPDATE`), applies
//! them in timestamp order (within one timestamp as a window would: deletes child→parent, then
//! upserts parent→child), each in a savepoint, and deletes the ones applied. A version the target
//! refuses again is rolled back, keeps its place with the new error, and every later version of
//! its key stays behind it. Two replays at once cannot apply a version twice: the second waits
//! for the first's locks and then finds the versions gone. An applier meanwhile only adds newer
//! versions behind a key, never applies one while older versions of the key are quarantined.

use std::collections::{HashMap, HashSet};

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Transaction};
use wharf_queue::{BatchRow, Hlc};
use wharf_targetdb::catalog::{SchemaCatalog, discover, quote_ident};

use crate::apply::{execute, prepare};
use crate::error::{ApplyError, Next};
use crate::fold::fold;
use crate::insert_first::{InsertFirst, Savepoint};
use crate::statements::StatementCache;

/// Which quarantined versions: every given field must match. `key` is the key as JSON (an array,
/// as the changefeed sends it), compared as JSON.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub partition: Option<String>,
    pub table: Option<String>,
    pub key: Option<String>,
}

impl Filter {
    const SQL: &'static str = "($1::text IS NULL OR partition = $1) AND ($2::text IS NULL OR table_name = $2) \
                               AND ($3::text IS NULL OR key::jsonb = $3::text::jsonb)";

    fn params(&self) -> [&(dyn ToSql + Sync); 3] {
        [&self.partition, &self.table, &self.key]
    }
}

/// One quarantined row version.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Quarantined {
    pub id: i64,
    pub partition: String,
    pub table: String,
    pub key: String,
    pub version: String,
    /// `upsert` or `delete`.
    pub op: &'static str,
    /// `None` for a version held behind an earlier one of its key.
    pub sqlstate: Option<String>,
    pub message: String,
    pub first_seen: String,
    pub last_tried: Option<String>,
    #[serde(skip)]
    after: Option<String>,
    #[serde(skip)]
    hlc: Hlc,
}

impl Quarantined {
    fn of(row: &Row) -> Quarantined {
        let after: Option<String> = row.get("after");
        Quarantined {
            id: row.get("id"),
            partition: row.get("partition"),
            table: row.get("table_name"),
            key: row.get("key"),
            version: row.get("version"),
            op: if after.is_some() { "upsert" } else { "delete" },
            sqlstate: row.get("sqlstate"),
            message: row.get("message"),
            first_seen: row.get("first_seen"),
            last_tried: row.get("last_tried"),
            hlc: Hlc::new(row.get::<_, i64>("version_wall") as u64, row.get::<_, i32>("version_logical") as u32),
            after,
        }
    }

    fn batch_row(&self) -> BatchRow<'_> {
        BatchRow {
            hlc: self.hlc,
            table: &self.table,
            key: self.key.as_bytes(),
            after: self.after.as_deref().map(str::as_bytes),
        }
    }
}

fn select(staging_schema: &str, suffix: &str) -> String {
    format!(
        "SELECT id, partition, table_name, key, version, version_wall, version_logical, after, sqlstate, message,
                first_seen::text AS first_seen, last_tried::text AS last_tried
         FROM {}.quarantine WHERE {} ORDER BY version_wall, version_logical, id {suffix}",
        quote_ident(staging_schema),
        Filter::SQL
    )
}

/// The quarantined versions the filter selects, oldest first.
pub async fn list(client: &Client, staging_schema: &str, filter: &Filter) -> Result<Vec<Quarantined>, ApplyError> {
    let rows = client.query(&select(staging_schema, ""), &filter.params()).await?;
    Ok(rows.iter().map(Quarantined::of).collect())
}

/// Deletes the versions the filter selects; newer versions of their keys then apply again.
/// Returns how many were deleted.
pub async fn discard(client: &Client, staging_schema: &str, filter: &Filter) -> Result<u64, ApplyError> {
    let sql = format!("DELETE FROM {}.quarantine WHERE {}", quote_ident(staging_schema), Filter::SQL);
    Ok(client.execute(&sql, &filter.params()).await?)
}

/// What a replay did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Replayed {
    /// Versions applied (and removed from quarantine).
    pub applied: u64,
    /// Versions refused again, with the new error; their keys stay quarantined.
    pub refused: Vec<Quarantined>,
    /// Versions left behind a refused one of their key.
    pub held: u64,
}

/// Replays the versions the filter selects, as the module says.
pub async fn replay(client: &mut Client, staging_schema: &str, filter: &Filter) -> Result<Replayed, ApplyError> {
    let catalogs = catalogs(client, staging_schema, filter).await?;
    let tx = client.transaction().await?;
    let mut versions: Vec<Quarantined> =
        tx.query(&select(staging_schema, "FOR UPDATE"), &filter.params()).await?.iter().map(Quarantined::of).collect();
    versions.sort_by_key(|v| order(v, &catalogs));
    let mut replay =
        Replay { tx: &tx, staging_schema, statements: StatementCache::default(), first: InsertFirst::default() };
    let mut done = Replayed::default();
    let mut applied = Vec::new();
    let mut stopped: HashSet<(String, String, String)> = HashSet::new();
    for version in versions {
        let key = (version.partition.clone(), version.table.clone(), version.key.clone());
        if stopped.contains(&key) {
            done.held += 1;
            continue;
        }
        let catalog = &catalogs[&version.partition];
        match replay.one(catalog, &version).await? {
            None => applied.push(version.id),
            Some(refused) => {
                stopped.insert(key);
                done.refused.push(refused);
            }
        }
    }
    let sql = format!("DELETE FROM {}.quarantine WHERE id = ANY($1)", quote_ident(staging_schema));
    tx.execute(&sql, &[&applied]).await?;
    tx.commit().await?;
    done.applied = applied.len() as u64;
    Ok(done)
}

/// The catalog of each partition the filter selects, keyed by partition.
async fn catalogs(
    client: &Client,
    staging_schema: &str,
    filter: &Filter,
) -> Result<HashMap<String, SchemaCatalog>, ApplyError> {
    let sql =
        format!("SELECT DISTINCT partition FROM {}.quarantine WHERE {}", quote_ident(staging_schema), Filter::SQL);
    let mut out = HashMap::new();
    for row in client.query(&sql, &filter.params()).await? {
        let partition: String = row.get(0);
        let schema = partition.split_once('.').map_or(partition.as_str(), |(_, schema)| schema);
        let catalog = discover(client, schema).await?;
        out.insert(partition, catalog);
    }
    Ok(out)
}

/// Timestamp order; within one timestamp, deletes child→parent, then upserts parent→child.
fn order(version: &Quarantined, catalogs: &HashMap<String, SchemaCatalog>) -> (Hlc, bool, isize, i64) {
    let rank = catalogs.get(&version.partition).map_or(0, |c| c.rank(&version.table).min(isize::MAX as usize) as isize);
    let upsert = version.after.is_some();
    (version.hlc, upsert, if upsert { rank } else { -rank }, version.id)
}

struct Replay<'a> {
    tx: &'a Transaction<'a>,
    staging_schema: &'a str,
    statements: StatementCache,
    first: InsertFirst,
}

impl Replay<'_> {
    /// Applies one version in a savepoint; `Some` with the new error when the target refuses it.
    async fn one(&mut self, catalog: &SchemaCatalog, version: &Quarantined) -> Result<Option<Quarantined>, ApplyError> {
        self.tx.batch_execute("SAVEPOINT wharf_replay").await?;
        let attempt = async {
            let statements = prepare(catalog, fold(&[version.batch_row()])?)?;
            let mut savepoint = Savepoint::default();
            execute(self.tx, &mut self.statements, &mut self.first, &mut savepoint, &statements).await
        };
        let error = match attempt.await {
            Ok(()) => {
                self.tx.batch_execute("RELEASE SAVEPOINT wharf_replay").await?;
                return Ok(None);
            }
            Err(error) if error.next() == Next::Retry => return Err(error),
            Err(error) => error,
        };
        self.tx.batch_execute("ROLLBACK TO SAVEPOINT wharf_replay; RELEASE SAVEPOINT wharf_replay").await?;
        // Statements prepared inside the rolled-back savepoint stay valid; insert-first state too.
        let (sqlstate, message) = match &error {
            ApplyError::Target(e) => crate::careful::describe(e),
            other => (String::new(), other.to_string()),
        };
        let sql = format!(
            "UPDATE {}.quarantine SET sqlstate = $2, message = $3, last_tried = now() WHERE id = $1
             RETURNING id, partition, table_name, key, version, version_wall, version_logical, after, sqlstate, message,
                       first_seen::text AS first_seen, last_tried::text AS last_tried",
            quote_ident(self.staging_schema)
        );
        let row = self.tx.query_one(&sql, &[&version.id, &sqlstate, &message]).await?;
        Ok(Some(Quarantined::of(&row)))
    }
}

/// Quarantined versions per partition (none when the table does not exist yet).
pub async fn counts(client: &Client, staging_schema: &str) -> Result<HashMap<String, u64>, ApplyError> {
    Ok(wharf_targetdb::staging::quarantine_counts(client, staging_schema).await?.into_iter().collect())
}
