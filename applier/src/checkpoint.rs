//! The fenced checkpoint in the target: `<staging schema>.checkpoints`, one row per partition.
//!
//! A worker takes a partition by bumping `lease_epoch`; its commit updates the checkpoint only if
//! the epoch is still its own, inside the same transaction as the rows. A worker whose lease was
//! taken over therefore cannot commit anything.

use tokio_postgres::{Client, Transaction};
use wharf_queue::{Hlc, Partition};

use crate::catalog::quote_ident;
use crate::error::ApplyError;

pub async fn create_tables(client: &Client, staging_schema: &str) -> Result<(), tokio_postgres::Error> {
    let schema = quote_ident(staging_schema);
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {schema}.checkpoints (
                 partition text PRIMARY KEY,
                 resolved text NOT NULL DEFAULT '0.0000000000',
                 resolved_wall bigint NOT NULL DEFAULT 0,
                 resolved_logical integer NOT NULL DEFAULT 0,
                 lease_epoch bigint NOT NULL DEFAULT 0,
                 applied_at timestamptz
             );"
        ))
        .await
}

/// A worker's hold on a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub epoch: i64,
    /// The checkpoint committed on the target when the lease was taken.
    pub checkpoint: Hlc,
}

pub fn partition_key(partition: &Partition) -> String {
    partition.to_string()
}

/// Takes the partition, fencing off any earlier holder.
pub async fn acquire(client: &Client, staging_schema: &str, partition: &Partition) -> Result<Lease, ApplyError> {
    let sql = format!(
        "INSERT INTO {}.checkpoints (partition, lease_epoch) VALUES ($1, 1)
         ON CONFLICT (partition) DO UPDATE SET lease_epoch = checkpoints.lease_epoch + 1
         RETURNING lease_epoch, resolved_wall, resolved_logical",
        quote_ident(staging_schema)
    );
    let row = client.query_one(&sql, &[&partition_key(partition)]).await?;
    let (epoch, wall, logical): (i64, i64, i32) = (row.get(0), row.get(1), row.get(2));
    Ok(Lease { epoch, checkpoint: Hlc::new(wall as u64, logical as u32) })
}

/// Moves the checkpoint to `resolved` in `tx`, or fails with [`ApplyError::Fenced`].
pub async fn commit(
    tx: &Transaction<'_>,
    staging_schema: &str,
    partition: &Partition,
    lease: Lease,
    resolved: Hlc,
) -> Result<(), ApplyError> {
    let sql = format!(
        "UPDATE {}.checkpoints SET resolved = $2, resolved_wall = $3, resolved_logical = $4, applied_at = now()
         WHERE partition = $1 AND lease_epoch = $5",
        quote_ident(staging_schema)
    );
    let n = tx
        .execute(
            &sql,
            &[
                &partition_key(partition),
                &resolved.to_string(),
                &(resolved.wall as i64),
                &(resolved.logical as i32),
                &lease.epoch,
            ],
        )
        .await?;
    if n == 1 { Ok(()) } else { Err(ApplyError::Fenced(lease.epoch)) }
}
