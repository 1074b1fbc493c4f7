//! The fenced checkpoint in the target: `<staging schema>.checkpoints`, one row per partition.
//!
//! # Why each row version is applied once
//!
//! This is the one place the argument is written; the lease table, the applier's worker, the
//! queue protocol and ARCHITECTURE.md point here.
//!
//! 1. **Lease.** The queue service grants a partition to one worker with an epoch that only grows
//!    (kept in the journal, so it grows across restarts). The lease table only decides who
//!    *should* work; what follows makes that safe when two workers believe they hold it.
//! 2. **Claim.** Before its first window the worker raises `lease_epoch` in the partition's row
//!    to its own epoch, only if the row's epoch is lower, and reads the checkpoint `C` there
//!    ([`claim`]). Everything at or below `C` is applied.
//! 3. **Commit.** Each transaction of the window `(C, R]` ends at a timestamp boundary `T` and
//!    carries its rows together with `UPDATE … SET resolved = T WHERE lease_epoch = mine`
//!    ([`commit`]). So:
//!    - two workers can never both hold one epoch in the target (the second claim finds it equal);
//!    - once a newer holder has claimed, an older holder's commit updates no row and fails with
//!      [`CheckpointError::Fenced`], and its transaction's rows roll back with it;
//!    - a claim waits on the row lock of an older holder's open commit, so the newer holder starts
//!      from the checkpoint that commit wrote and applies nothing twice.
//! 4. **Unknown outcome.** When the connection dies during `COMMIT`, the worker forgets `C` and
//!    re-reads it (checking its epoch is still there) before the next window.
//! 5. **Report.** The queue service lets the journal drop a partition's rows only up to what this
//!    row says for the reporting holder's epoch ([`crate::witness`]), so a false report cannot
//!    discard rows that were never applied.
//!
//! A fenced worker gives the partition up; it never claims again with a higher epoch of its own.
//!
//! # Units that change: foreign-key groups (decision 0011)
//!
//! Under `--partitionBy group` a row is one group's (`db.schema/group`), and it names the group's
//! `tables`; a schema's own row (`db.schema`) has none (every table). When the groups change (a
//! foreign key added or dropped, a table created, `--partitionBy` switched) a unit's first claim
//! *seeds* its row ([`claim`]), in one transaction that holds the schema's rows:
//!
//! - every table's applied point is the highest any row (live or retired) covering it says: each
//!   table is covered by one live row at a time, and each new owner starts where the last stopped;
//! - the unit's checkpoint is the lowest of its tables' points, and the tables a former unit
//!   applied further keep that point as a *floor*: the applier skips their versions at or below it
//!   and commits only at or past the highest floor, so nothing is applied twice or skipped, and
//!   every commit leaves the group's tables at one resolved timestamp;
//! - every other live row covering one of its tables is *retired*: its holder's next commit is
//!   fenced, and a claim under it seeds again.

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;
use tokio_postgres::{Client, GenericClient, Transaction};
use wharf_base::{Hlc, Partition};

use crate::catalog::quote_ident;

/// Another worker holds a newer epoch in the target, or the unit was regrouped away: this worker
/// must give the partition up, and never claims it again on its own (two workers would fence each
/// other forever).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("lease on {partition} was taken over (our epoch {mine}, the target's {current}{})", if *.retired { ", retired by a regrouping" } else { "" })]
pub struct Fenced {
    pub partition: String,
    pub mine: u64,
    pub current: u64,
    /// The unit's row was retired by a unit that took over some of its tables.
    pub retired: bool,
}

#[derive(Debug, Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Fenced(#[from] Fenced),
    #[error(transparent)]
    Target(#[from] tokio_postgres::Error),
}

/// Per table, a point a former unit applied it to beyond the unit's checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Floors(BTreeMap<String, Hlc>);

impl Floors {
    /// Whether `table`'s version at `hlc` was applied already.
    pub fn covers(&self, table: &str, hlc: Hlc) -> bool {
        self.0.get(table).is_some_and(|floor| hlc <= *floor)
    }

    /// The highest floor: a window commits only at or past it.
    pub fn highest(&self) -> Option<Hlc> {
        self.0.values().max().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn of(tables: Option<Vec<String>>, walls: Option<Vec<i64>>, logicals: Option<Vec<i32>>) -> Floors {
        let (tables, walls, logicals) =
            (tables.unwrap_or_default(), walls.unwrap_or_default(), logicals.unwrap_or_default());
        Floors(tables.into_iter().zip(walls.into_iter().zip(logicals)).map(|(t, (w, l))| (t, hlc_of(w, l))).collect())
    }

    fn columns(&self) -> (Vec<String>, Vec<i64>, Vec<i32>) {
        let tables = self.0.keys().cloned().collect();
        let walls = self.0.values().map(|h| h.wall as i64).collect();
        let logicals = self.0.values().map(|h| h.logical as i32).collect();
        (tables, walls, logicals)
    }
}

/// One unit's row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointRow {
    pub partition: String,
    pub resolved: Hlc,
    pub epoch: u64,
    /// The group's tables; `None` for a schema's row (every table).
    pub tables: Option<Vec<String>>,
    pub floors: Floors,
    /// Taken over by a unit of another grouping.
    pub retired: bool,
}

impl CheckpointRow {
    fn covers(&self, table: &str) -> bool {
        self.tables.as_ref().is_none_or(|tables| tables.iter().any(|t| t == table))
    }

    /// How far this row applied `table` (it covers it).
    fn applied(&self, table: &str) -> Hlc {
        self.floors.0.get(table).map_or(self.resolved, |floor| (*floor).max(self.resolved))
    }
}

/// What a claim starts from: everything at or below `checkpoint` is applied, and per table
/// everything at or below its floor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimed {
    pub checkpoint: Hlc,
    pub floors: Floors,
}

/// A unit's tables: a group's, or a schema's (its row names none; `catalog` lists the tables the
/// applier sees, so that a seed covers each of them).
#[derive(Clone, Copy, Debug)]
pub enum Unit<'a> {
    Group(&'a [String]),
    Schema { catalog: &'a [String] },
}

impl Unit<'_> {
    fn stored(&self) -> Option<Vec<String>> {
        match self {
            Unit::Group(tables) => Some(tables.to_vec()),
            Unit::Schema { .. } => None,
        }
    }
}

pub fn partition_key(partition: &Partition) -> String {
    partition.to_string()
}

const COLUMNS: &str = "partition, resolved_wall, resolved_logical, lease_epoch, tables, floor_tables, floor_walls, floor_logicals, retired";

/// Raises the row's epoch to `epoch` and returns what the unit starts from, or fails with
/// [`CheckpointError::Fenced`] when the row already has this epoch or a newer one. A unit whose
/// live row does not have these tables (new, regrouped, or retired) is seeded (see the module).
pub async fn claim(
    client: &mut Client,
    staging_schema: &str,
    partition: &Partition,
    unit: Unit<'_>,
    epoch: u64,
) -> Result<Claimed, CheckpointError> {
    let sql = format!(
        "UPDATE {}.checkpoints SET lease_epoch = $2
         WHERE partition = $1 AND lease_epoch < $2 AND NOT retired AND tables IS NOT DISTINCT FROM $3
         RETURNING {COLUMNS}",
        quote_ident(staging_schema)
    );
    let key = partition_key(partition);
    if let Some(row) = client.query_opt(&sql, &[&key, &(epoch as i64), &unit.stored()]).await? {
        let row = row_of(&row);
        return Ok(Claimed { checkpoint: row.resolved, floors: row.floors });
    }
    if let Some(row) = read(&*client, staging_schema, partition).await?
        && row.epoch >= epoch
    {
        return Err(Fenced { partition: key, mine: epoch, current: row.epoch, retired: row.retired }.into());
    }
    seed(client, staging_schema, partition, unit, epoch).await
}

/// A unit's first claim under its tables: in one transaction holding the schema's rows, its
/// checkpoint and floors from every row covering its tables, and the other live ones retired.
async fn seed(
    client: &mut Client,
    staging_schema: &str,
    partition: &Partition,
    unit: Unit<'_>,
    epoch: u64,
) -> Result<Claimed, CheckpointError> {
    let schema = quote_ident(staging_schema);
    let (key, parent) = (partition_key(partition), partition_key(&partition.schema_level()));
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&format!("wharf checkpoints {parent}")]).await?;
    let sql = format!("SELECT {COLUMNS} FROM {schema}.checkpoints WHERE parent = $1 ORDER BY partition FOR UPDATE");
    let rows: Vec<CheckpointRow> = tx.query(&sql, &[&parent]).await?.iter().map(row_of).collect();
    if let Some(own) = rows.iter().find(|r| r.partition == key)
        && own.epoch >= epoch
    {
        return Err(Fenced { partition: key, mine: epoch, current: own.epoch, retired: own.retired }.into());
    }
    let claimed = seeded(&rows, unit);
    let retire: Vec<String> = rows
        .iter()
        .filter(|r| r.partition != key && !r.retired && overlaps(r, unit))
        .map(|r| r.partition.clone())
        .collect();
    if !retire.is_empty() {
        tracing::info!(unit = %key, retired = ?retire, checkpoint = %claimed.checkpoint, floors = ?claimed.floors, "a regrouped unit takes its tables over");
        let sql = format!("UPDATE {schema}.checkpoints SET retired = true WHERE partition = ANY($1)");
        tx.execute(&sql, &[&retire]).await?;
    }
    let (floor_tables, floor_walls, floor_logicals) = claimed.floors.columns();
    let sql = format!(
        "INSERT INTO {schema}.checkpoints
             (partition, parent, tables, resolved, resolved_wall, resolved_logical, lease_epoch,
              floor_tables, floor_walls, floor_logicals, retired)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, false)
         ON CONFLICT (partition) DO UPDATE SET parent = excluded.parent, tables = excluded.tables,
             resolved = excluded.resolved, resolved_wall = excluded.resolved_wall,
             resolved_logical = excluded.resolved_logical, lease_epoch = excluded.lease_epoch,
             floor_tables = excluded.floor_tables, floor_walls = excluded.floor_walls,
             floor_logicals = excluded.floor_logicals, retired = false"
    );
    let at = claimed.checkpoint;
    tx.execute(
        &sql,
        &[
            &key,
            &parent,
            &unit.stored(),
            &at.to_string(),
            &(at.wall as i64),
            &(at.logical as i32),
            &(epoch as i64),
            &floor_tables,
            &floor_walls,
            &floor_logicals,
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(claimed)
}

/// The seed of `unit` from its schema's rows: per table the highest point a covering row applied.
fn seeded(rows: &[CheckpointRow], unit: Unit<'_>) -> Claimed {
    let tables: BTreeSet<&str> = match unit {
        Unit::Group(tables) => tables.iter().map(String::as_str).collect(),
        // A schema's unit covers every table any row names, and those its catalog has.
        Unit::Schema { catalog } => catalog
            .iter()
            .map(String::as_str)
            .chain(rows.iter().flat_map(|r| r.tables.iter().flatten().map(String::as_str)))
            .collect(),
    };
    let applied: BTreeMap<&str, Hlc> = tables
        .iter()
        .map(|t| (*t, rows.iter().filter(|r| r.covers(t)).map(|r| r.applied(t)).max().unwrap_or(Hlc::ZERO)))
        .collect();
    let checkpoint = applied.values().min().copied().unwrap_or(Hlc::ZERO);
    let floors = applied.into_iter().filter(|(_, at)| *at > checkpoint).map(|(t, at)| (t.to_owned(), at)).collect();
    Claimed { checkpoint, floors: Floors(floors) }
}

fn overlaps(row: &CheckpointRow, unit: Unit<'_>) -> bool {
    match (unit, &row.tables) {
        (Unit::Schema { .. }, _) | (Unit::Group(_), None) => true,
        (Unit::Group(mine), Some(theirs)) => mine.iter().any(|t| theirs.contains(t)),
    }
}

/// The partition's row, if it has one.
pub async fn read(
    client: &impl GenericClient,
    staging_schema: &str,
    partition: &Partition,
) -> Result<Option<CheckpointRow>, tokio_postgres::Error> {
    let sql = format!("SELECT {COLUMNS} FROM {}.checkpoints WHERE partition = $1", quote_ident(staging_schema));
    Ok(client.query_opt(&sql, &[&partition_key(partition)]).await?.map(|r| row_of(&r)))
}

/// Every partition's row; none when the staging tables do not exist yet.
pub async fn read_all(client: &Client, staging_schema: &str) -> Result<Vec<CheckpointRow>, tokio_postgres::Error> {
    let sql = format!("SELECT {COLUMNS} FROM {}.checkpoints ORDER BY partition", quote_ident(staging_schema));
    match client.query(&sql, &[]).await {
        Ok(rows) => Ok(rows.iter().map(row_of).collect()),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Moves the checkpoint to `resolved` inside `tx`, or fails with [`CheckpointError::Fenced`].
pub async fn commit(
    tx: &Transaction<'_>,
    staging_schema: &str,
    partition: &Partition,
    epoch: u64,
    resolved: Hlc,
) -> Result<(), CheckpointError> {
    let sql = format!(
        "UPDATE {}.checkpoints SET resolved = $2, resolved_wall = $3, resolved_logical = $4, applied_at = now()
         WHERE partition = $1 AND lease_epoch = $5 AND NOT retired",
        quote_ident(staging_schema)
    );
    let key = partition_key(partition);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
        [&key, &resolved.to_string(), &(resolved.wall as i64), &(resolved.logical as i32), &(epoch as i64)];
    if tx.execute(&sql, &params).await? == 1 {
        return Ok(());
    }
    let row = read(tx, staging_schema, partition).await?;
    let (current, retired) = row.map_or((0, false), |r| (r.epoch, r.retired));
    Err(Fenced { partition: key, mine: epoch, current, retired }.into())
}

fn row_of(row: &tokio_postgres::Row) -> CheckpointRow {
    CheckpointRow {
        partition: row.get(0),
        resolved: hlc_of(row.get(1), row.get(2)),
        epoch: row.get::<_, i64>(3) as u64,
        tables: row.get(4),
        floors: Floors::of(row.get(5), row.get(6), row.get(7)),
        retired: row.get(8),
    }
}

fn hlc_of(wall: i64, logical: i32) -> Hlc {
    Hlc::new(wall as u64, logical as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, tables: Option<&[&str]>, at: u64, floors: &[(&str, u64)], retired: bool) -> CheckpointRow {
        CheckpointRow {
            partition: name.into(),
            resolved: Hlc::new(at, 0),
            epoch: 1,
            tables: tables.map(|t| t.iter().map(|s| s.to_string()).collect()),
            floors: Floors(floors.iter().map(|(t, w)| (t.to_string(), Hlc::new(*w, 0))).collect()),
            retired,
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_merged_group_starts_at_the_slower_and_keeps_the_faster_as_a_floor() {
        let rows = [row("d.s/a", Some(&["a"]), 30, &[], false), row("d.s/b", Some(&["b", "c"]), 10, &[], false)];
        let tables = names(&["a", "b", "c"]);
        let claimed = seeded(&rows, Unit::Group(&tables));
        assert_eq!(claimed.checkpoint, Hlc::new(10, 0));
        assert_eq!(claimed.floors, Floors([("a".to_string(), Hlc::new(30, 0))].into()));
        assert!(claimed.floors.covers("a", Hlc::new(30, 0)) && !claimed.floors.covers("a", Hlc::new(31, 0)));
        assert!(!claimed.floors.covers("b", Hlc::new(11, 0)));
    }

    #[test]
    fn a_split_group_starts_where_the_retired_one_stopped_and_a_schema_row_covers_every_table() {
        let rows = [
            row("d.s", None, 5, &[], true),
            row("d.s/a", Some(&["a", "b"]), 20, &[("b", 25)], true),
            row("d.s/c", Some(&["c"]), 12, &[], false),
        ];
        assert_eq!(seeded(&rows, Unit::Group(&names(&["b"]))).checkpoint, Hlc::new(25, 0));
        assert_eq!(seeded(&rows, Unit::Group(&names(&["new"]))).checkpoint, Hlc::new(5, 0));
        let back = seeded(&rows, Unit::Schema { catalog: &names(&["a", "b", "c", "new"]) });
        assert_eq!(back.checkpoint, Hlc::new(5, 0), "the new table was only ever covered by the schema's row");
        let floors = [("a", 20), ("b", 25), ("c", 12)].map(|(t, w)| (t.to_string(), Hlc::new(w, 0)));
        assert_eq!(back.floors, Floors(floors.into()));
    }

    #[test]
    fn a_table_no_row_covers_starts_from_zero() {
        let rows = [row("d.s/a", Some(&["a"]), 30, &[], false)];
        assert_eq!(seeded(&rows, Unit::Group(&names(&["z"]))).checkpoint, Hlc::ZERO);
    }
}
