//! The staging schema (`--stagingSchema`, default `_replicator`): wharf's own tables in the target.
//!
//! - `checkpoints`: one row per partition (a schema, or a foreign-key group of its tables), the
//!   applied resolved timestamp and the lease epoch of the worker allowed to move it, and for a
//!   group its tables (see [`crate::checkpoint`]).
//! - `quarantine`: row versions the target refused under `--onApplyError quarantine`, and the
//!   later versions of their keys held behind them (see `wharf_applier::quarantine`).
//! - `jwt_public_keys (id, public_key, active)` and `jwt_revoked_ids (id)`: as MOLT Replicator
//!   names them, so its documentation's SQL works as written.

use tokio_postgres::Client;

use crate::catalog::quote_ident;

pub async fn create_checkpoints(client: &Client, staging_schema: &str) -> Result<(), tokio_postgres::Error> {
    let schema = quote_ident(staging_schema);
    ensure_schema(client, staging_schema).await?;
    ensure_table(
        client,
        staging_schema,
        "checkpoints",
        &format!(
            "CREATE TABLE IF NOT EXISTS {schema}.checkpoints (
                 partition text PRIMARY KEY,
                 resolved text NOT NULL DEFAULT '0.0000000000',
                 resolved_wall bigint NOT NULL DEFAULT 0,
                 resolved_logical integer NOT NULL DEFAULT 0,
                 lease_epoch bigint NOT NULL DEFAULT 0,
                 applied_at timestamptz,
                 parent text,
                 tables text[],
                 floor_tables text[],
                 floor_walls bigint[],
                 floor_logicals integer[],
                 retired boolean NOT NULL DEFAULT false
             );
             CREATE INDEX IF NOT EXISTS checkpoints_by_parent ON {schema}.checkpoints (parent)"
        ),
    )
    .await?;
    add_group_columns(client, staging_schema).await
}

/// The columns foreign-key groups need (see [`crate::checkpoint`]): added to a table an earlier
/// version created, whose rows are all schemas' (their `parent` is themselves). A table this
/// version creates has them from the start, so no reader sees it without them.
async fn add_group_columns(client: &Client, staging_schema: &str) -> Result<(), tokio_postgres::Error> {
    let present = client
        .query_opt(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'checkpoints' AND column_name = 'retired'",
            &[&staging_schema],
        )
        .await?;
    if present.is_some() {
        return Ok(());
    }
    let schema = quote_ident(staging_schema);
    client
        .batch_execute(&format!(
            "ALTER TABLE {schema}.checkpoints
                 ADD COLUMN IF NOT EXISTS parent text,
                 ADD COLUMN IF NOT EXISTS tables text[],
                 ADD COLUMN IF NOT EXISTS floor_tables text[],
                 ADD COLUMN IF NOT EXISTS floor_walls bigint[],
                 ADD COLUMN IF NOT EXISTS floor_logicals integer[],
                 ADD COLUMN IF NOT EXISTS retired boolean NOT NULL DEFAULT false;
             UPDATE {schema}.checkpoints SET parent = partition WHERE parent IS NULL;
             CREATE INDEX IF NOT EXISTS checkpoints_by_parent ON {schema}.checkpoints (parent)"
        ))
        .await
}

/// One row per quarantined row version: which partition, table and key (the changefeed's key
/// array as JSON text), its timestamp, its `after` (the changefeed's JSON text, NULL for a delete;
/// text rather than `jsonb`, which refuses some strings the feed may carry), and why: the
/// target's SQLSTATE and message, or NULL and a note for a version held behind an earlier one.
pub async fn create_quarantine(client: &Client, staging_schema: &str) -> Result<(), tokio_postgres::Error> {
    let schema = quote_ident(staging_schema);
    ensure_schema(client, staging_schema).await?;
    ensure_table(
        client,
        staging_schema,
        "quarantine",
        &format!(
            "CREATE TABLE IF NOT EXISTS {schema}.quarantine (
                 id bigserial PRIMARY KEY,
                 partition text NOT NULL,
                 table_name text NOT NULL,
                 key text NOT NULL,
                 version text NOT NULL,
                 version_wall bigint NOT NULL,
                 version_logical integer NOT NULL,
                 after text,
                 sqlstate text,
                 message text NOT NULL,
                 first_seen timestamptz NOT NULL DEFAULT now(),
                 last_tried timestamptz
             );
             CREATE INDEX IF NOT EXISTS quarantine_by_key
                 ON {schema}.quarantine (partition, table_name, key, version_wall, version_logical)"
        ),
    )
    .await
}

/// Row versions in the quarantine table per partition, in partition order (none when the table
/// does not exist yet).
pub async fn quarantine_counts(
    client: &Client,
    staging_schema: &str,
) -> Result<Vec<(String, u64)>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT partition, count(*) FROM {}.quarantine GROUP BY partition ORDER BY partition",
        quote_ident(staging_schema)
    );
    match client.query(&sql, &[]).await {
        Ok(rows) => Ok(rows.iter().map(|row| (row.get(0), row.get::<_, i64>(1) as u64)).collect()),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

pub async fn create_jwt_tables(client: &Client, staging_schema: &str) -> Result<(), tokio_postgres::Error> {
    let schema = quote_ident(staging_schema);
    ensure_schema(client, staging_schema).await?;
    ensure_table(
        client,
        staging_schema,
        "jwt_public_keys",
        &format!(
            "CREATE TABLE IF NOT EXISTS {schema}.jwt_public_keys (
                 id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                 public_key text NOT NULL,
                 active bool NOT NULL DEFAULT true)"
        ),
    )
    .await?;
    let ddl = format!("CREATE TABLE IF NOT EXISTS {schema}.jwt_revoked_ids (id text PRIMARY KEY)");
    ensure_table(client, staging_schema, "jwt_revoked_ids", &ddl).await
}

/// Creates the staging schema unless it exists: a role without `CREATE` on the database (an
/// administrator made the schema for it, see README "The wharf role") then starts as well.
async fn ensure_schema(client: &Client, staging_schema: &str) -> Result<(), tokio_postgres::Error> {
    let exists = client.query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&staging_schema]).await?;
    if exists.is_none() {
        client.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(staging_schema))).await?;
    }
    Ok(())
}

/// Runs `ddl` unless the table exists (a role without `CREATE` on the schema then starts too).
async fn ensure_table(
    client: &Client,
    staging_schema: &str,
    table: &str,
    ddl: &str,
) -> Result<(), tokio_postgres::Error> {
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
            &[&staging_schema, &table],
        )
        .await?;
    if exists.is_none() {
        client.batch_execute(ddl).await?;
    }
    Ok(())
}
