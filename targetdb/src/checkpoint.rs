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

use thiserror::Error;
use tokio_postgres::{Client, GenericClient, Transaction};
use wharf_base::{Hlc, Partition};

use crate::catalog::quote_ident;

/// Another worker holds a newer epoch in the target: this worker must give the partition up, and
/// never claims it again on its own (two workers would fence each other forever).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("lease on {partition} was taken over (our epoch {mine}, the target's {current})")]
pub struct Fenced {
    pub partition: String,
    pub mine: u64,
    pub current: u64,
}

#[derive(Debug, Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Fenced(#[from] Fenced),
    #[error(transparent)]
    Target(#[from] tokio_postgres::Error),
}

/// One partition's row, as `wharfctl status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointRow {
    pub partition: String,
    pub resolved: Hlc,
    pub epoch: u64,
}

pub fn partition_key(partition: &Partition) -> String {
    partition.to_string()
}

/// Raises the row's epoch to `epoch` and returns the applied checkpoint, or fails with
/// [`CheckpointError::Fenced`] when the row already has this epoch or a newer one.
pub async fn claim(
    client: &Client,
    staging_schema: &str,
    partition: &Partition,
    epoch: u64,
) -> Result<Hlc, CheckpointError> {
    let schema = quote_ident(staging_schema);
    let sql = format!(
        "INSERT INTO {schema}.checkpoints (partition, lease_epoch) VALUES ($1, $2)
         ON CONFLICT (partition) DO UPDATE SET lease_epoch = excluded.lease_epoch
         WHERE checkpoints.lease_epoch < excluded.lease_epoch
         RETURNING resolved_wall, resolved_logical"
    );
    let key = partition_key(partition);
    match client.query_opt(&sql, &[&key, &(epoch as i64)]).await? {
        Some(row) => Ok(hlc_of(row.get(0), row.get(1))),
        None => {
            let current = read(client, staging_schema, partition).await?.map_or(0, |r| r.epoch);
            Err(Fenced { partition: key, mine: epoch, current }.into())
        }
    }
}

/// The partition's row, if it has one.
pub async fn read(
    client: &impl GenericClient,
    staging_schema: &str,
    partition: &Partition,
) -> Result<Option<CheckpointRow>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT partition, resolved_wall, resolved_logical, lease_epoch FROM {}.checkpoints WHERE partition = $1",
        quote_ident(staging_schema)
    );
    Ok(client.query_opt(&sql, &[&partition_key(partition)]).await?.map(|r| row_of(&r)))
}

/// Every partition's row; none when the staging tables do not exist yet.
pub async fn read_all(client: &Client, staging_schema: &str) -> Result<Vec<CheckpointRow>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT partition, resolved_wall, resolved_logical, lease_epoch FROM {}.checkpoints ORDER BY partition",
        quote_ident(staging_schema)
    );
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
         WHERE partition = $1 AND lease_epoch = $5",
        quote_ident(staging_schema)
    );
    let key = partition_key(partition);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
        [&key, &resolved.to_string(), &(resolved.wall as i64), &(resolved.logical as i32), &(epoch as i64)];
    if tx.execute(&sql, &params).await? == 1 {
        return Ok(());
    }
    let current = read(tx, staging_schema, partition).await?.map_or(0, |r| r.epoch);
    Err(Fenced { partition: key, mine: epoch, current }.into())
}

fn row_of(row: &tokio_postgres::Row) -> CheckpointRow {
    CheckpointRow {
        partition: row.get(0),
        resolved: hlc_of(row.get(1), row.get(2)),
        epoch: row.get::<_, i64>(3) as u64,
    }
}

fn hlc_of(wall: i64, logical: i32) -> Hlc {
    Hlc::new(wall as u64, logical as u32)
}
