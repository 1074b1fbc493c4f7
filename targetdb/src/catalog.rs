//! Target catalog discovery: tables, columns and types, primary keys, foreign-key order.

use std::collections::HashMap;
use std::sync::Arc;

use thiserror::Error;
use tokio_postgres::Client;

/// How a column's JSON value becomes SQL text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    /// Strings as their text, numbers and booleans as written; cast with `::type`.
    Scalar,
    /// JSON/JSONB: the value's JSON text.
    Json,
    /// A PostgreSQL array: a JSON array becomes an array literal `{…}`.
    Array,
    /// PostGIS geometry/geography: GeoJSON through `ST_GeomFromGeoJSON`.
    Geometry,
    Geography,
}

#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    /// `format_type` output, e.g. `numeric(12,2)`, `public.mood`, `text[]`.
    pub sql_type: String,
    pub kind: ColumnKind,
    /// Generated columns are never written.
    pub generated: bool,
}

#[derive(Clone, Debug)]
pub struct Table {
    pub schema: String,
    pub name: String,
    pub columns: Vec<Column>,
    /// Indexes into `columns`, in primary-key order.
    pub primary_key: Vec<usize>,
    by_name: HashMap<String, usize>,
}

impl Table {
    /// Builds a table description; `primary_key` holds indexes into `columns`.
    pub fn new(schema: &str, name: &str, columns: Vec<Column>, primary_key: Vec<usize>) -> Table {
        let mut by_name = HashMap::new();
        for (i, c) in columns.iter().enumerate() {
            by_name.insert(c.name.clone(), i);
        }
        for (i, c) in columns.iter().enumerate() {
            by_name.entry(c.name.to_lowercase()).or_insert(i);
        }
        Table { schema: schema.to_owned(), name: name.to_owned(), columns, primary_key, by_name }
    }

    /// Looks a payload property up: exact spelling first, then case-insensitively.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).or_else(|| self.by_name.get(&name.to_lowercase())).copied()
    }

    pub fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

/// The tables of one target schema, with an apply order (parents before children).
#[derive(Clone, Debug, Default)]
pub struct SchemaCatalog {
    pub tables: HashMap<String, Arc<Table>>,
    /// Table names, parents before children.
    pub fk_order: Vec<String>,
    /// The tables linked by foreign keys (either way), each group sorted, groups in the order of
    /// their first names; a table without foreign keys is a group of its own.
    pub groups: Vec<Vec<String>>,
}

impl SchemaCatalog {
    /// Looks a changefeed table name up: exact spelling first, then case-insensitively.
    pub fn table(&self, name: &str) -> Option<&Arc<Table>> {
        self.tables.get(name).or_else(|| self.tables.values().find(|t| t.name.eq_ignore_ascii_case(name)))
    }

    /// Position of a table in parent→child order.
    pub fn rank(&self, name: &str) -> usize {
        self.fk_order.iter().position(|t| t == name).unwrap_or(usize::MAX)
    }
}

#[derive(Debug, Error)]
pub enum CatalogError {
    #[error("schema {0:?} does not exist in the target database")]
    NoSuchSchema(String),
    #[error("reading the target catalog failed: {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Connect(#[from] crate::ConnectError),
}

const COLUMNS: &str = "
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), t.typname, t.typcategory, a.attgenerated <> ''
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid
JOIN pg_type t ON t.oid = a.atttypid
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum";

const PRIMARY_KEYS: &str = "
SELECT c.relname, a.attname
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE n.nspname = $1 AND i.indisprimary
ORDER BY c.relname, k.ord";

const FOREIGN_KEYS: &str = "
SELECT child.relname, parent.relname
FROM pg_constraint con
JOIN pg_class child ON child.oid = con.conrelid
JOIN pg_class parent ON parent.oid = con.confrelid
JOIN pg_namespace n ON n.oid = child.relnamespace
JOIN pg_namespace pn ON pn.oid = parent.relnamespace
WHERE con.contype = 'f' AND n.nspname = $1 AND pn.nspname = $1";

/// Reads one schema's catalog from the target.
pub async fn discover(client: &Client, schema: &str) -> Result<SchemaCatalog, CatalogError> {
    let exists = client.query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema]).await?;
    if exists.is_none() {
        return Err(CatalogError::NoSuchSchema(schema.to_owned()));
    }
    let mut tables: HashMap<String, Table> = HashMap::new();
    for row in client.query(COLUMNS, &[&schema]).await? {
        let table: String = row.get(0);
        let entry = tables.entry(table.clone()).or_insert_with(|| Table {
            schema: schema.to_owned(),
            name: table,
            columns: Vec::new(),
            primary_key: Vec::new(),
            by_name: HashMap::new(),
        });
        let name: String = row.get(1);
        let kind = column_kind(row.get(3), row.get::<_, i8>(4) as u8 as char);
        entry.by_name.insert(name.clone(), entry.columns.len());
        entry.by_name.entry(name.to_lowercase()).or_insert(entry.columns.len());
        entry.columns.push(Column { name, sql_type: row.get(2), kind, generated: row.get(5) });
    }
    for row in client.query(PRIMARY_KEYS, &[&schema]).await? {
        let (table, column): (String, String) = (row.get(0), row.get(1));
        if let Some(t) = tables.get_mut(&table)
            && let Some(i) = t.by_name.get(&column).copied()
        {
            t.primary_key.push(i);
        }
    }
    let edges: Vec<(String, String)> =
        client.query(FOREIGN_KEYS, &[&schema]).await?.iter().map(|r| (r.get(0), r.get(1))).collect();
    let names: Vec<String> = tables.keys().cloned().collect();
    let fk_order = parent_first_order(&names, &edges);
    let groups = fk_groups(&names, &edges);
    let tables = tables.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
    Ok(SchemaCatalog { tables, fk_order, groups })
}

fn column_kind(type_name: &str, category: char) -> ColumnKind {
    match (type_name, category) {
        ("json" | "jsonb", _) => ColumnKind::Json,
        ("geometry", _) => ColumnKind::Geometry,
        ("geography", _) => ColumnKind::Geography,
        (_, 'A') => ColumnKind::Array,
        _ => ColumnKind::Scalar,
    }
}

/// The connected components of the foreign-key graph over `tables` (edges to tables outside it
/// are ignored): what must commit together. Each group sorted; groups sorted by their first name.
pub fn fk_groups(tables: &[String], child_parent: &[(String, String)]) -> Vec<Vec<String>> {
    let mut sorted: Vec<&str> = tables.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let index: HashMap<&str, usize> = sorted.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    // Union-find over table indexes; the root is the smallest index of its group.
    let mut root: Vec<usize> = (0..sorted.len()).collect();
    fn find(root: &mut [usize], mut i: usize) -> usize {
        while root[i] != i {
            root[i] = root[root[i]];
            i = root[i];
        }
        i
    }
    for (child, parent) in child_parent {
        let (Some(&a), Some(&b)) = (index.get(child.as_str()), index.get(parent.as_str())) else { continue };
        let (a, b) = (find(&mut root, a), find(&mut root, b));
        root[a.max(b)] = a.min(b);
    }
    let mut groups: Vec<Vec<String>> = Vec::new();
    let mut group_of_root: HashMap<usize, usize> = HashMap::new();
    for (i, table) in sorted.iter().enumerate() {
        let r = find(&mut root, i);
        let g = *group_of_root.entry(r).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push((*table).to_owned());
    }
    groups
}

/// Orders tables so every parent comes before its children (Kahn's algorithm, ties by name).
/// Self-references are ignored; tables in a cycle keep name order at the end.
pub fn parent_first_order(tables: &[String], child_parent: &[(String, String)]) -> Vec<String> {
    let mut sorted: Vec<String> = tables.to_vec();
    sorted.sort();
    let mut parents: HashMap<&str, Vec<&str>> = HashMap::new();
    for (child, parent) in child_parent {
        if child != parent {
            parents.entry(child.as_str()).or_default().push(parent.as_str());
        }
    }
    let mut order: Vec<String> = Vec::with_capacity(sorted.len());
    let mut remaining = sorted;
    loop {
        let ready: Vec<String> = remaining
            .iter()
            .filter(|t| {
                parents
                    .get(t.as_str())
                    .is_none_or(|ps| ps.iter().all(|p| order.iter().any(|o| o == p) || !tables.iter().any(|x| x == p)))
            })
            .cloned()
            .collect();
        if ready.is_empty() {
            order.extend(remaining);
            return order;
        }
        remaining.retain(|t| !ready.contains(t));
        order.extend(ready);
        if remaining.is_empty() {
            return order;
        }
    }
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parents_come_before_children() {
        let edges = vec![
            ("a_child".to_string(), "z_parent".to_string()),
            ("grandchild".into(), "a_child".into()),
            ("z_parent".into(), "z_parent".into()),
        ];
        assert_eq!(
            parent_first_order(&s(&["grandchild", "a_child", "z_parent", "other"]), &edges),
            s(&["other", "z_parent", "a_child", "grandchild"])
        );
    }

    #[test]
    fn groups_are_the_connected_components_of_the_foreign_keys_either_way() {
        let edges = vec![
            ("orders".to_string(), "customers".to_string()),
            ("order_lines".into(), "orders".into()),
            ("order_lines".into(), "products".into()),
            ("audit".into(), "audit".into()),
            ("notes".into(), "elsewhere".into()),
        ];
        let tables = s(&["products", "orders", "customers", "order_lines", "audit", "notes", "events"]);
        assert_eq!(
            fk_groups(&tables, &edges),
            vec![s(&["audit"]), s(&["customers", "order_lines", "orders", "products"]), s(&["events"]), s(&["notes"])]
        );
    }

    #[test]
    fn cycles_do_not_lose_tables() {
        let edges = vec![("a".to_string(), "b".to_string()), ("b".into(), "a".into())];
        assert_eq!(parent_first_order(&s(&["b", "a", "c"]), &edges), s(&["c", "a", "b"]));
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident(r#"we"ird"#), r#""we""ird""#);
    }
}
