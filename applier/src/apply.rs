//! Turning folded changes into set-based statements (pure) and running them in a transaction.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::value::RawValue;
use tokio_postgres::Transaction;
use tokio_postgres::types::ToSql;

use crate::copy_binary::Binary;
use crate::error::ApplyError;
use crate::fold::TableChanges;
use crate::insert_first::{InsertFirst, Plain, Savepoint, insert};
use crate::sql;
use crate::statements::StatementCache;
use crate::values::sql_text;
use wharf_base::json::Props;
use wharf_targetdb::catalog::{SchemaCatalog, Table};

/// One statement ready to run: its SQL and its parameters, one text array per column.
#[derive(Debug)]
pub struct Prepared {
    pub sql: String,
    /// The parameters; `None` when they are only written in the binary `COPY`'s data, from which
    /// [`Prepared::columns`] reads them back if the statement itself has to run.
    pub columns: Option<Vec<Vec<Option<String>>>>,
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
    /// For the binary format: each column's binary form.
    pub binary: Option<Vec<Binary>>,
}

impl Prepared {
    /// The statement's parameters, one text array per column.
    pub fn columns(&self) -> Cow<'_, [Vec<Option<String>>]> {
        match (&self.columns, &self.copy) {
            (Some(columns), _) => Cow::Borrowed(columns),
            (None, Some(CopyIn { data, binary: Some(kinds), .. })) => {
                Cow::Owned(crate::copy_binary::text_columns(kinds, data, self.rows))
            }
            (None, _) => unreachable!("a statement without parameters is prepared with its binary COPY"),
        }
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
    Ok(Prepared {
        sql: sql::delete(table),
        columns: Some(columns),
        rows: deletes.len(),
        delete: true,
        insert_sql: None,
        copy: None,
    })
}

fn prepare_upserts(
    table: &Table,
    upserts: &IndexMap<&[u8], Props<'_>>,
    out: &mut Vec<Prepared>,
) -> Result<(), ApplyError> {
    // Rows grouped by the columns they write, each row's values in its group's column order.
    // Rows mostly name the same columns in the same order as the row before them, so the shape
    // is worked out again only when the names change.
    let mut groups: IndexMap<Vec<usize>, Vec<Vec<&RawValue>>> = IndexMap::new();
    // The last shape: the row that had it, where its values are, and its group.
    let mut last: Option<(&Props<'_>, Vec<usize>, usize)> = None;
    for row in upserts.values() {
        if !last.as_ref().is_some_and(|(before, _, _)| same_names(before, row)) {
            let Shape { set, at } = Shape::of(table, row)?;
            let entry = groups.entry(set);
            let group = entry.index();
            entry.or_default();
            last = Some((row, at, group));
        }
        let (_, at, group) = last.as_ref().expect("set above");
        groups[*group].push(at.iter().map(|&i| row.0[i].1).collect());
    }
    for (set, rows) in groups {
        // Binary where every value has an exact binary form, else text.
        let (columns, copy) = match crate::copy_binary::copy(table, &set, &rows) {
            Some(binary) => {
                (None, Some(CopyIn { sql: binary.sql, data: binary.data.into(), binary: Some(binary.kinds) }))
            }
            None => {
                let columns = text_columns(table, &set, &rows);
                let copy = sql::copy(table, &set).map(|sql| CopyIn {
                    sql,
                    data: sql::copy_text(&columns, rows.len()).into(),
                    binary: None,
                });
                (Some(columns), copy)
            }
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

fn text_columns(table: &Table, set: &[usize], rows: &[Vec<&RawValue>]) -> Vec<Vec<Option<String>>> {
    let mut columns: Vec<Vec<Option<String>>> = vec![Vec::with_capacity(rows.len()); set.len()];
    for row in rows {
        for ((column, value), &c) in columns.iter_mut().zip(row).zip(set) {
            column.push(sql_text(value, table.columns[c].kind));
        }
    }
    columns
}

fn same_names(a: &Props<'_>, b: &Props<'_>) -> bool {
    a.0.len() == b.0.len() && a.0.iter().zip(&b.0).all(|((x, _), (y, _))| x == y)
}

/// The columns a row writes and where their values are in it.
struct Shape {
    /// Sorted column indexes (generated columns are skipped).
    set: Vec<usize>,
    /// For each column of `set`, the index of its value among the row's properties; a column
    /// given twice takes its last value.
    at: Vec<usize>,
}

impl Shape {
    fn of(table: &Table, row: &Props<'_>) -> Result<Shape, ApplyError> {
        let mut cells: Vec<(usize, usize)> = Vec::with_capacity(row.0.len());
        for (i, (name, _)) in row.0.iter().enumerate() {
            let c = table
                .column_index(name)
                .ok_or_else(|| ApplyError::UnknownColumn { table: table.name.clone(), column: name.to_string() })?;
            if !table.columns[c].generated {
                cells.push((c, i));
            }
        }
        // Stable, so the copies of a column stay in the row's order and the last one is kept.
        cells.sort_by_key(|(c, _)| *c);
        cells.reverse();
        cells.dedup_by_key(|(c, _)| *c);
        cells.reverse();
        let (set, at): (Vec<usize>, Vec<usize>) = cells.into_iter().unzip();
        if let Some(&missing) = table.primary_key.iter().find(|c| set.binary_search(c).is_err()) {
            return Err(ApplyError::MissingKeyColumn {
                table: table.name.clone(),
                column: table.columns[missing].name.clone(),
            });
        }
        Ok(Shape { set, at })
    }
}

/// Runs prepared statements in order inside `tx`, each upsert tried as a plain write first
/// (see [`crate::insert_first`]).
pub async fn execute(
    tx: &Transaction<'_>,
    cache: &mut StatementCache,
    first: &mut InsertFirst,
    savepoint: &mut Savepoint,
    prepared: &[Prepared],
) -> Result<(), ApplyError> {
    for p in prepared {
        if let Some(copy) = &p.copy
            && insert(tx, (cache, first, savepoint), &p.sql, Plain::Copy { sql: &copy.sql, data: copy.data.clone() })
                .await?
        {
            continue;
        }
        // Read back from a binary `COPY` only now that the statement has to run.
        let columns = p.columns();
        let params: Vec<&(dyn ToSql + Sync)> = columns.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
        if p.copy.is_none()
            && let Some(sql) = &p.insert_sql
            && insert(tx, (cache, first, savepoint), &p.sql, Plain::Insert { sql, params: &params }).await?
        {
            continue;
        }
        let statement = cache.get(tx, &p.sql).await?;
        tx.execute(&statement, &params).await?;
    }
    Ok(())
}
