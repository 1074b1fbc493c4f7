//! Set-based statements: one `INSERT … SELECT FROM unnest(…) ON CONFLICT` (and the same without
//! `ON CONFLICT`, tried first while a table's rows are new) or one
//! `DELETE … WHERE (pk) IN (SELECT … unnest(…))` per table and column set. Pure.

use wharf_targetdb::catalog::{Column, ColumnKind, Table, quote_ident};

/// The expression that turns the text parameter column `u.cN` into the column's type.
fn cast(column: &Column, position: usize) -> String {
    match column.kind {
        ColumnKind::Geometry => format!("ST_GeomFromGeoJSON(u.c{position})"),
        ColumnKind::Geography => format!("ST_GeomFromGeoJSON(u.c{position})::geography"),
        _ => format!("u.c{position}::{}", column.sql_type),
    }
}

fn unnest(count: usize) -> String {
    let params: Vec<String> = (1..=count).map(|i| format!("${i}::text[]")).collect();
    let aliases: Vec<String> = (0..count).map(|i| format!("c{i}")).collect();
    format!("unnest({}) AS u({})", params.join(", "), aliases.join(", "))
}

/// Plain insert of the columns `columns`: the upsert's rows when none of them exists yet (about
/// twice as fast in PostgreSQL 15 as `ON CONFLICT`, which probes the index before each insert).
pub fn insert(table: &Table, columns: &[usize]) -> String {
    let names: Vec<String> = columns.iter().map(|&c| quote_ident(&table.columns[c].name)).collect();
    let casts: Vec<String> = columns.iter().enumerate().map(|(i, &c)| cast(&table.columns[c], i)).collect();
    format!(
        "INSERT INTO {} ({}) SELECT {} FROM {}",
        table.qualified(),
        names.join(", "),
        casts.join(", "),
        unnest(columns.len())
    )
}

/// Upsert of the columns `columns` (indexes into `table.columns`, primary key included).
pub fn upsert(table: &Table, columns: &[usize]) -> String {
    let names: Vec<String> = columns.iter().map(|&c| quote_ident(&table.columns[c].name)).collect();
    let pk: Vec<String> = table.primary_key.iter().map(|&c| quote_ident(&table.columns[c].name)).collect();
    let updates: Vec<&String> =
        columns.iter().zip(&names).filter(|(c, _)| !table.primary_key.contains(c)).map(|(_, n)| n).collect();
    let conflict = if updates.is_empty() {
        "DO NOTHING".to_owned()
    } else {
        let set: Vec<String> = updates.iter().map(|n| n.to_string()).collect();
        let excluded: Vec<String> = updates.iter().map(|n| format!("excluded.{n}")).collect();
        format!("DO UPDATE SET ({}) = ROW({})", set.join(", "), excluded.join(", "))
    };
    format!("{} ON CONFLICT ({}) {}", insert(table, columns), pk.join(", "), conflict)
}

/// Delete by primary key; parameters are the key columns in primary-key order.
pub fn delete(table: &Table) -> String {
    let pk: Vec<String> = table.primary_key.iter().map(|&c| quote_ident(&table.columns[c].name)).collect();
    let casts: Vec<String> = table.primary_key.iter().enumerate().map(|(i, &c)| cast(&table.columns[c], i)).collect();
    format!(
        "DELETE FROM {} WHERE ({}) IN (SELECT {} FROM {})",
        table.qualified(),
        pk.join(", "),
        casts.join(", "),
        unnest(pk.len())
    )
}
