//! The staging schema's checkpoints table on a real PostgreSQL: a new table has the group columns
//! from its first statement on, and a table an earlier version created gets them, its rows
//! becoming their own parents.

use wharf_targetdb::{connect, staging::create_checkpoints};
use wharf_testkit::LocalPg;

/// The checkpoints table's columns, in order.
async fn columns(client: &tokio_postgres::Client) -> Vec<String> {
    let rows = client
        .query(
            "SELECT column_name::text FROM information_schema.columns
             WHERE table_schema = '_replicator' AND table_name = 'checkpoints' ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

async fn has_parent_index(client: &tokio_postgres::Client) -> bool {
    client
        .query_opt(
            "SELECT 1 FROM pg_indexes WHERE schemaname = '_replicator' AND indexname = 'checkpoints_by_parent'",
            &[],
        )
        .await
        .unwrap()
        .is_some()
}

const ALL: [&str; 12] = [
    "partition",
    "resolved",
    "resolved_wall",
    "resolved_logical",
    "lease_epoch",
    "applied_at",
    "parent",
    "tables",
    "floor_tables",
    "floor_walls",
    "floor_logicals",
    "retired",
];

#[tokio::test]
async fn a_new_table_has_every_column_and_the_index_and_creating_it_again_changes_nothing() {
    let pg = LocalPg::start().unwrap();
    let client = connect(&pg.url("postgres")).await.unwrap();
    create_checkpoints(&client, "_replicator").await.unwrap();
    assert_eq!(columns(&client).await, ALL);
    assert!(has_parent_index(&client).await);
    create_checkpoints(&client, "_replicator").await.unwrap();
    assert_eq!(columns(&client).await, ALL);
}

#[tokio::test]
async fn a_table_an_earlier_version_made_gets_the_group_columns_and_its_rows_are_their_own_parents() {
    let pg = LocalPg::start().unwrap();
    let client = connect(&pg.url("postgres")).await.unwrap();
    client
        .batch_execute(
            "CREATE SCHEMA _replicator;
             CREATE TABLE _replicator.checkpoints (
                 partition text PRIMARY KEY,
                 resolved text NOT NULL DEFAULT '0.0000000000',
                 resolved_wall bigint NOT NULL DEFAULT 0,
                 resolved_logical integer NOT NULL DEFAULT 0,
                 lease_epoch bigint NOT NULL DEFAULT 0,
                 applied_at timestamptz
             );
             INSERT INTO _replicator.checkpoints (partition, resolved, resolved_wall, lease_epoch)
             VALUES ('app.public', '20.0000000000', 20, 3)",
        )
        .await
        .unwrap();
    create_checkpoints(&client, "_replicator").await.unwrap();
    assert_eq!(columns(&client).await, ALL);
    assert!(has_parent_index(&client).await);
    let row = client
        .query_one(
            "SELECT partition, parent, resolved, lease_epoch, retired, tables IS NULL FROM _replicator.checkpoints",
            &[],
        )
        .await
        .unwrap();
    let got: (String, String, String, i64, bool, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4), row.get(5));
    assert_eq!(got, ("app.public".into(), "app.public".into(), "20.0000000000".into(), 3, false, true));
}
