//! The staging schema (`--stagingSchema`, default `_replicator`): wharf's own tables in the target.
//!
//! - `checkpoints`: one row per partition, the applied resolved timestamp and the lease epoch of
//!   the worker allowed to move it (see [`crate::checkpoint`]).
//! - `jwt_public_keys (id, public_key, active)` and `jwt_revoked_ids (id)`: as MOLT Replicator
//!   names them, so its documentation's SQL works as written.

use tokio_postgres::Client;

use crate::catalog::quote_ident;

pub async fn create_checkpoints(client: &Client, staging_schema: &str) -> Result<(), tokio_postgres::Error> {
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

pub async fn create_jwt_tables(client: &Client, staging_schema: &str) -> Result<(), tokio_postgres::Error> {
    let schema = quote_ident(staging_schema);
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {schema}.jwt_public_keys (
                 id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                 public_key text NOT NULL,
                 active bool NOT NULL DEFAULT true);
             CREATE TABLE IF NOT EXISTS {schema}.jwt_revoked_ids (id text PRIMARY KEY);"
        ))
        .await
}
