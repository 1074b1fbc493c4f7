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

/// `COPY … FROM STDIN` (text format) of the columns `columns`, when every one of them takes its
/// input text as it is (no PostGIS conversion): the fastest way to insert rows that are new.
pub fn copy(table: &Table, columns: &[usize]) -> Option<String> {
    let plain = columns.iter().all(|&c| !matches!(table.columns[c].kind, ColumnKind::Geometry | ColumnKind::Geography));
    let names: Vec<String> = columns.iter().map(|&c| quote_ident(&table.columns[c].name)).collect();
    plain.then(|| format!("COPY {} ({}) FROM STDIN", table.qualified(), names.join(", ")))
}

/// The rows of `columns` (one text array per column, as for the other statements) in `COPY`'s
/// text format: tab-separated fields, `\N` for NULL, backslash escapes for backslash, tab,
/// newline and carriage return.
pub fn copy_text(columns: &[Vec<Option<String>>], rows: usize) -> Vec<u8> {
    let size: usize = columns.iter().flatten().map(|v| v.as_ref().map_or(2, |s| s.len() + 1)).sum();
    let mut out = Vec::with_capacity(size + rows);
    for row in 0..rows {
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                out.push(b'\t');
            }
            match &column[row] {
                None => out.extend_from_slice(b"\\N"),
                Some(text) => push_copy_escaped(&mut out, text),
            }
        }
        out.push(b'\n');
    }
    out
}

fn push_copy_escaped(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    let mut plain_from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain_from..i]);
        out.extend_from_slice(escaped);
        plain_from = i + 1;
    }
    out.extend_from_slice(&bytes[plain_from..]);
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

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_targetdb::catalog::Column;

    fn column(name: &str, kind: ColumnKind) -> Column {
        Column { name: name.into(), sql_type: "text".into(), kind, generated: false }
    }

    #[test]
    fn copy_is_offered_only_without_postgis_columns_and_escapes_its_text() {
        let plain = Table::new(
            "public",
            "t",
            vec![column("id", ColumnKind::Scalar), column("Doc", ColumnKind::Json), column("g", ColumnKind::Geometry)],
            vec![0],
        );
        assert_eq!(copy(&plain, &[0, 1]).as_deref(), Some(r#"COPY "public"."t" ("id", "Doc") FROM STDIN"#));
        assert_eq!(copy(&plain, &[0, 2]), None);
        let columns =
            vec![vec![Some("1".to_owned()), Some("2".to_owned())], vec![Some("a\tb\nc\\d\re".to_owned()), None]];
        assert_eq!(copy_text(&columns, 2), b"1\ta\\tb\\nc\\\\d\\re\n2\t\\N\n".to_vec());
    }
}
