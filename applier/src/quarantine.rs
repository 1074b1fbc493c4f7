//! Quarantined keys (`--onApplyError quarantine`).
//!
//! A row version the target refuses for good (see [`crate::error::ApplyError::is_rejection`]) is
//! written to `<staging>.quarantine` in the transaction that commits the rest of its window
//! ([`crate::careful`] finds it). From then on its key is quarantined: every later version of the
//! key is written there too, behind it, in the transaction of its own window, so a key never
//! applies out of order. `wharfctl dlq replay` applies a key's versions in order and deletes them
//! in one transaction ([`crate::dlq`]); `wharfctl dlq discard` deletes them, and newer versions of
//! the key apply again.
//!
//! The quarantined keys of a partition are read at the start of each window, after its
//! checkpoint: the transaction that committed that checkpoint committed its quarantine rows too,
//! so a new holder sees every key its predecessor quarantined.
//!
//! Keys are read for the whole schema, whichever unit (the schema, or a foreign-key group)
//! quarantined them: a key belongs to its table, and after a regrouping the table's new group must
//! keep holding the versions its old group quarantined (`--quarantineMaxKeys` counts per schema).

use std::collections::{HashMap, HashSet};

use tokio_postgres::{GenericClient, Transaction};
use wharf_base::{Hlc, Partition};
use wharf_queue::BatchRow;
use wharf_targetdb::catalog::quote_ident;

/// The keys of one schema with versions in quarantine, per table.
#[derive(Debug, Default)]
pub struct Keys {
    tables: HashMap<String, HashSet<Vec<u8>>>,
    len: usize,
}

impl Keys {
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn contains(&self, row: &BatchRow<'_>) -> bool {
        self.tables.get(row.table).is_some_and(|keys| keys.contains(row.key))
    }

    pub fn insert(&mut self, row: &BatchRow<'_>) {
        if self.tables.entry(row.table.to_owned()).or_default().insert(row.key.to_vec()) {
            self.len += 1;
        }
    }

    /// The quarantined keys of the partition's schema as the target holds them.
    pub async fn load(
        client: &impl GenericClient,
        staging_schema: &str,
        partition: &Partition,
    ) -> Result<Keys, tokio_postgres::Error> {
        let sql = format!(
            "SELECT DISTINCT table_name, key FROM {}.quarantine WHERE split_part(partition, '/', 1) = $1",
            quote_ident(staging_schema)
        );
        let mut keys = Keys::default();
        for row in client.query(&sql, &[&partition.schema_level().to_string()]).await? {
            let key: String = row.get(1);
            keys.tables.entry(row.get(0)).or_default().insert(key.into_bytes());
            keys.len += 1;
        }
        Ok(keys)
    }
}

/// One row version bound for the quarantine table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub table: String,
    pub key: String,
    pub version: Hlc,
    pub after: Option<String>,
    /// The target's SQLSTATE; `None` for a version held behind an earlier one of its key.
    pub sqlstate: Option<String>,
    pub message: String,
}

impl Entry {
    /// A version the target refused.
    pub fn refused(row: &BatchRow<'_>, sqlstate: Option<String>, message: String) -> Entry {
        Entry { sqlstate, message, ..Entry::held(row) }
    }

    /// A version of a key already quarantined.
    pub fn held(row: &BatchRow<'_>) -> Entry {
        Entry {
            table: row.table.to_owned(),
            key: String::from_utf8_lossy(row.key).into_owned(),
            version: row.hlc,
            after: row.after.map(|after| String::from_utf8_lossy(after).into_owned()),
            sqlstate: None,
            message: "held behind an earlier quarantined version of its key".into(),
        }
    }
}

/// Writes `entries` in the window's transaction: one statement whatever their number.
pub async fn write(
    tx: &Transaction<'_>,
    staging_schema: &str,
    partition: &Partition,
    entries: &[Entry],
) -> Result<(), tokio_postgres::Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO {}.quarantine (partition, table_name, key, version, version_wall, version_logical, after, sqlstate, message)
         SELECT $1, t, k, v, w, l, a, s, m
         FROM unnest($2::text[], $3::text[], $4::text[], $5::int8[], $6::int4[], $7::text[], $8::text[], $9::text[])
             AS e(t, k, v, w, l, a, s, m)",
        quote_ident(staging_schema)
    );
    let tables: Vec<&str> = entries.iter().map(|e| e.table.as_str()).collect();
    let keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
    let versions: Vec<String> = entries.iter().map(|e| e.version.to_string()).collect();
    let walls: Vec<i64> = entries.iter().map(|e| e.version.wall as i64).collect();
    let logicals: Vec<i32> = entries.iter().map(|e| e.version.logical as i32).collect();
    let afters: Vec<Option<&str>> = entries.iter().map(|e| e.after.as_deref()).collect();
    let states: Vec<Option<&str>> = entries.iter().map(|e| e.sqlstate.as_deref()).collect();
    let messages: Vec<&str> = entries.iter().map(|e| e.message.as_str()).collect();
    tx.execute(
        &sql,
        &[&partition.to_string(), &tables, &keys, &versions, &walls, &logicals, &afters, &states, &messages],
    )
    .await?;
    Ok(())
}
