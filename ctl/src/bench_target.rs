//! `bench --targetConn`: the benchmark works in schemas of its own (`bench`, `bench_…`), refuses
//! to start when such a schema already exists (it would drop it), and leaves the database as it
//! found it: its schemas, its JWT key, its checkpoint rows, and `_replicator` itself if the
//! benchmark created it.

use tokio_postgres::Client;

const OWN_SCHEMAS: &str =
    r"SELECT nspname::text FROM pg_namespace WHERE nspname = 'bench' OR nspname LIKE 'bench\_%' ORDER BY 1";

/// What was there before the benchmark.
pub struct Before {
    replicator_existed: bool,
}

/// Refuses a database that already holds a schema the benchmark would drop.
pub async fn check(client: &Client) -> anyhow::Result<Before> {
    let present: Vec<String> = client.query(OWN_SCHEMAS, &[]).await?.iter().map(|r| r.get(0)).collect();
    anyhow::ensure!(
        present.is_empty(),
        "the target already has schema(s) {} that the benchmark would drop; drop them yourself or point --targetConn at another database",
        present.join(", ")
    );
    let replicator_existed =
        client.query_one("SELECT to_regnamespace('_replicator') IS NOT NULL", &[]).await?.get::<_, bool>(0);
    Ok(Before { replicator_existed })
}

/// Drops what the benchmark created; `jwt_key` is the id of the key it inserted.
pub async fn clean(client: &Client, before: &Before, jwt_key: Option<&str>) -> anyhow::Result<()> {
    let database: String = client.query_one("SELECT current_database()", &[]).await?.get(0);
    let schemas: Vec<String> = client.query(OWN_SCHEMAS, &[]).await?.iter().map(|r| r.get(0)).collect();
    for schema in &schemas {
        client.batch_execute(&format!("DROP SCHEMA {} CASCADE", wharf_targetdb::quote_ident(schema))).await?;
    }
    if !before.replicator_existed {
        client.batch_execute("DROP SCHEMA IF EXISTS _replicator CASCADE").await?;
        return Ok(());
    }
    let partitions: Vec<String> = schemas.iter().map(|s| format!("{database}.{s}")).collect();
    if client.query_one("SELECT to_regclass('_replicator.checkpoints') IS NOT NULL", &[]).await?.get::<_, bool>(0) {
        let sql = "DELETE FROM _replicator.checkpoints WHERE split_part(partition, '/', 1) = ANY($1)";
        client.execute(sql, &[&partitions]).await?;
    }
    if let Some(id) = jwt_key {
        client.execute("DELETE FROM _replicator.jwt_public_keys WHERE id::text = $1", &[&id]).await?;
    }
    Ok(())
}
