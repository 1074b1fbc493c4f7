//! Applying folded changes inside one target transaction.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Statement, Transaction};

use crate::catalog::{SchemaCatalog, Table};
use crate::error::ApplyError;
use crate::fold::TableChanges;
use crate::sql;
use crate::values::sql_text;

/// Prepared statements of one connection, keyed by their SQL text.
#[derive(Default)]
pub struct StatementCache {
    statements: HashMap<String, Statement>,
}

impl StatementCache {
    async fn get(&mut self, tx: &Transaction<'_>, sql: String) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.statements.get(&sql) {
            return Ok(s.clone());
        }
        let statement = tx.prepare(&sql).await?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    pub fn clear(&mut self) {
        self.statements.clear();
    }
}

/// Counts of what one call wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub upserted: u64,
    pub deleted: u64,
}

/// Applies one chunk's changes: deletes child→parent, then upserts parent→child.
pub async fn apply_changes(
    tx: &Transaction<'_>,
    cache: &mut StatementCache,
    catalog: &SchemaCatalog,
    changes: HashMap<String, TableChanges>,
) -> Result<Applied, ApplyError> {
    let mut ordered: Vec<(&std::sync::Arc<Table>, TableChanges)> = Vec::with_capacity(changes.len());
    for (name, change) in changes {
        let table = catalog.table(&name).ok_or_else(|| ApplyError::UnknownTable(name.clone()))?;
        ordered.push((table, change));
    }
    ordered.sort_by_key(|(t, _)| catalog.rank(&t.name));
    let mut applied = Applied::default();
    for (table, change) in ordered.iter().rev() {
        applied.deleted += delete_rows(tx, cache, table, &change.deletes).await?;
    }
    for (table, change) in &ordered {
        applied.upserted += upsert_rows(tx, cache, table, &change.upserts).await?;
    }
    Ok(applied)
}

async fn delete_rows(
    tx: &Transaction<'_>,
    cache: &mut StatementCache,
    table: &Table,
    deletes: &HashMap<Vec<u8>, Vec<Value>>,
) -> Result<u64, ApplyError> {
    if deletes.is_empty() {
        return Ok(0);
    }
    let mut columns: Vec<Vec<Option<String>>> = vec![Vec::with_capacity(deletes.len()); table.primary_key.len()];
    for key in deletes.values() {
        if key.len() != table.primary_key.len() {
            return Err(ApplyError::KeyArity {
                table: table.name.clone(),
                got: key.len(),
                want: table.primary_key.len(),
            });
        }
        for (i, (value, &c)) in key.iter().zip(&table.primary_key).enumerate() {
            columns[i].push(sql_text(value, table.columns[c].kind));
        }
    }
    let statement = cache.get(tx, sql::delete(table)).await?;
    execute(tx, &statement, &columns).await?;
    Ok(deletes.len() as u64)
}

async fn upsert_rows(
    tx: &Transaction<'_>,
    cache: &mut StatementCache,
    table: &Table,
    upserts: &HashMap<Vec<u8>, Map<String, Value>>,
) -> Result<u64, ApplyError> {
    let mut groups: BTreeMap<Vec<usize>, Vec<&Map<String, Value>>> = BTreeMap::new();
    for row in upserts.values() {
        groups.entry(column_set(table, row)?).or_default().push(row);
    }
    for (set, rows) in &groups {
        let mut columns: Vec<Vec<Option<String>>> = vec![Vec::with_capacity(rows.len()); set.len()];
        for row in rows {
            let mut values: Vec<Option<String>> = vec![None; set.len()];
            for (name, value) in row.iter() {
                let Some(c) = table.column_index(name) else { continue };
                if let Ok(position) = set.binary_search(&c) {
                    values[position] = sql_text(value, table.columns[c].kind);
                }
            }
            for (column, value) in columns.iter_mut().zip(values) {
                column.push(value);
            }
        }
        let statement = cache.get(tx, sql::upsert(table, set)).await?;
        execute(tx, &statement, &columns).await?;
    }
    Ok(upserts.len() as u64)
}

/// The sorted column indexes a row writes; generated columns are skipped.
fn column_set(table: &Table, row: &Map<String, Value>) -> Result<Vec<usize>, ApplyError> {
    let mut set = Vec::with_capacity(row.len());
    for name in row.keys() {
        let c = table
            .column_index(name)
            .ok_or_else(|| ApplyError::UnknownColumn { table: table.name.clone(), column: name.clone() })?;
        if !table.columns[c].generated {
            set.push(c);
        }
    }
    set.sort_unstable();
    set.dedup();
    if let Some(&missing) = table.primary_key.iter().find(|c| set.binary_search(c).is_err()) {
        return Err(ApplyError::MissingKeyColumn {
            table: table.name.clone(),
            column: table.columns[missing].name.clone(),
        });
    }
    Ok(set)
}

async fn execute(
    tx: &Transaction<'_>,
    statement: &Statement,
    columns: &[Vec<Option<String>>],
) -> Result<u64, ApplyError> {
    let params: Vec<&(dyn ToSql + Sync)> = columns.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
    Ok(tx.execute(statement, &params).await?)
}
