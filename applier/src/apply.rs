//! Turning folded changes into set-based statements (pure) and running them in a transaction.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::value::RawValue;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Statement, Transaction};

use crate::error::ApplyError;
use crate::fold::TableChanges;
use crate::insert_first::Plain;
use crate::sql;
use crate::values::sql_text;
use wharf_queue::json::Props;
use wharf_targetdb::catalog::{SchemaCatalog, Table};

/// One statement ready to run: its SQL and its parameters, one text array per column.
#[derive(Debug)]
pub struct Prepared {
    pub sql: String,
    pub columns: Vec<Vec<Option<String>>>,
    pub rows: usize,
    /// A delete (else an upsert), for the apply metrics.
    pub delete: bool,
    /// For an upsert: the same rows as a plain `INSERT`, tried first (see [`crate::insert_first`]).
    pub insert_sql: Option<String>,
    /// For an upsert whose columns all take their text as it is: the `COPY` that is tried first
    /// instead of `insert_sql`, with its data (built with the statement, ahead of the target).
    pub copy: Option<CopyIn>,
}

/// A `COPY … FROM STDIN` and its data (binary or text format, as its SQL says).
#[derive(Debug)]
pub struct CopyIn {
    pub sql: String,
    pub data: bytes::Bytes,
}

/// Prepared statements of one connection, keyed by their SQL text, and when to try plain inserts.
#[derive(Default)]
pub struct StatementCache {
    statements: HashMap<String, Statement>,
    pub(crate) insert_first: crate::insert_first::InsertFirst,
}

impl StatementCache {
    pub(crate) async fn get(&mut self, tx: &Transaction<'_>, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let statement = tx.prepare(sql).await?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    pub fn clear(&mut self) {
        self.statements.clear();
        self.insert_first = Default::default();
    }
}

/// The statements of one chunk, in order: deletes child→parent, then upserts parent→child.
pub fn prepare(catalog: &SchemaCatalog, changes: HashMap<&str, TableChanges<'_>>) -> Result<Vec<Prepared>, ApplyError> {
    let mut ordered: Vec<(&Arc<Table>, TableChanges<'_>)> = Vec::with_capacity(changes.len());
    for (name, change) in changes {
        let table = catalog.table(name).ok_or_else(|| ApplyError::UnknownTable(name.to_owned()))?;
        ordered.push((table, change));
    }
    ordered.sort_by_key(|(t, _)| catalog.rank(&t.name));
    let mut out = Vec::new();
    for (table, change) in ordered.iter().rev() {
        if !change.deletes.is_empty() {
            out.push(prepare_deletes(table, &change.deletes)?);
        }
    }
    for (table, change) in &ordered {
        prepare_upserts(table, &change.upserts, &mut out)?;
    }
    Ok(out)
}

fn prepare_deletes(table: &Table, deletes: &IndexMap<&[u8], Vec<&RawValue>>) -> Result<Prepared, ApplyError> {
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
    Ok(Prepared { sql: sql::delete(table), columns, rows: deletes.len(), delete: true, insert_sql: None, copy: None })
}

fn prepare_upserts(
    table: &Table,
    upserts: &IndexMap<&[u8], Props<'_>>,
    out: &mut Vec<Prepared>,
) -> Result<(), ApplyError> {
    // Rows grouped by the columns they write; each row's values in the group's column order.
    let mut groups: BTreeMap<Vec<usize>, Vec<Vec<&RawValue>>> = BTreeMap::new();
    for row in upserts.values() {
        let (set, values) = cells(table, row)?;
        groups.entry(set).or_default().push(values);
    }
    for (set, rows) in groups {
        let mut columns: Vec<Vec<Option<String>>> = vec![Vec::with_capacity(rows.len()); set.len()];
        for row in &rows {
            for ((column, value), &c) in columns.iter_mut().zip(row).zip(&set) {
                column.push(sql_text(value, table.columns[c].kind));
            }
        }
        // Binary where every value has an exact binary form, else text.
        let copy = match crate::copy_binary::copy(table, &set, &columns, rows.len()) {
            Some((sql, data)) => Some(CopyIn { sql, data: data.into() }),
            None => sql::copy(table, &set).map(|sql| CopyIn { sql, data: sql::copy_text(&columns, rows.len()).into() }),
        };
        out.push(Prepared {
            sql: sql::upsert(table, &set),
            columns,
            rows: rows.len(),
            delete: false,
            insert_sql: Some(sql::insert(table, &set)),
            copy,
        });
    }
    Ok(())
}

/// The sorted column indexes a row writes (generated columns are skipped) and its value for
/// each; a column given twice takes its last value.
fn cells<'a>(table: &Table, row: &Props<'a>) -> Result<(Vec<usize>, Vec<&'a RawValue>), ApplyError> {
    let mut cells: Vec<(usize, &RawValue)> = Vec::with_capacity(row.0.len());
    for (name, value) in &row.0 {
        let c = table
            .column_index(name)
            .ok_or_else(|| ApplyError::UnknownColumn { table: table.name.clone(), column: name.to_string() })?;
        if !table.columns[c].generated {
            cells.push((c, *value));
        }
    }
    // Stable, so the copies of a column stay in the row's order and the last one is kept.
    cells.sort_by_key(|(c, _)| *c);
    cells.reverse();
    cells.dedup_by_key(|(c, _)| *c);
    cells.reverse();
    let (set, values): (Vec<usize>, Vec<&RawValue>) = cells.into_iter().unzip();
    if let Some(&missing) = table.primary_key.iter().find(|c| set.binary_search(c).is_err()) {
        return Err(ApplyError::MissingKeyColumn {
            table: table.name.clone(),
            column: table.columns[missing].name.clone(),
        });
    }
    Ok((set, values))
}

/// Runs prepared statements in order inside `tx`.
pub async fn execute(
    tx: &Transaction<'_>,
    cache: &mut StatementCache,
    savepoint: &mut crate::insert_first::Savepoint,
    prepared: &[Prepared],
) -> Result<(), ApplyError> {
    for p in prepared {
        let params: Vec<&(dyn ToSql + Sync)> = p.columns.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
        let plain = match (&p.copy, &p.insert_sql) {
            (Some(copy), _) => Some(Plain::Copy { sql: &copy.sql, data: copy.data.clone() }),
            (None, Some(insert)) => Some(Plain::Insert { sql: insert, params: &params }),
            (None, None) => None,
        };
        if let Some(plain) = plain
            && crate::insert_first::insert(tx, cache, savepoint, &p.sql, plain).await?
        {
            continue;
        }
        let statement = cache.get(tx, &p.sql).await?;
        tx.execute(&statement, &params).await?;
    }
    Ok(())
}
