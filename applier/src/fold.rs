//! Folding a chunk of journal rows into one final action per key. Pure.

use std::collections::HashMap;

use serde_json::{Map, Value};
use wharf_queue::Row;

/// The net effect of a chunk on one table.
#[derive(Debug, Default, PartialEq)]
pub struct TableChanges {
    /// Key JSON → the merged row to upsert.
    pub upserts: HashMap<Vec<u8>, Map<String, Value>>,
    /// Key JSON → the decoded key array, for keys whose last version is a delete.
    pub deletes: HashMap<Vec<u8>, Vec<Value>>,
}

#[derive(Debug, thiserror::Error)]
#[error("journal row for {table} holds invalid JSON: {source}")]
pub struct FoldError {
    table: String,
    source: serde_json::Error,
}

/// Folds rows given in HLC order: later properties override earlier ones (a sparse update keeps the
/// columns it does not mention), a delete discards what came before, an upsert after a delete
/// starts afresh.
pub fn fold(rows: Vec<Row>) -> Result<HashMap<String, TableChanges>, FoldError> {
    let mut tables: HashMap<String, TableChanges> = HashMap::new();
    for row in rows {
        let bad = |source| FoldError { table: row.table.clone(), source };
        let changes = tables.entry(row.table.clone()).or_default();
        match row.after {
            Some(after) => {
                let after: Map<String, Value> = serde_json::from_slice(&after).map_err(bad)?;
                changes.deletes.remove(&row.key);
                match changes.upserts.get_mut(&row.key) {
                    Some(merged) => merged.extend(after),
                    None => {
                        changes.upserts.insert(row.key, after);
                    }
                }
            }
            None => {
                let key: Vec<Value> = serde_json::from_slice(&row.key).map_err(bad)?;
                changes.upserts.remove(&row.key);
                changes.deletes.insert(row.key, key);
            }
        }
    }
    Ok(tables)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_queue::Hlc;

    fn row(t: u64, key: &str, after: Option<&str>) -> Row {
        Row {
            hlc: Hlc::new(t, 0),
            table: "t".into(),
            key: key.as_bytes().to_vec(),
            after: after.map(|a| a.as_bytes().to_vec()),
        }
    }

    #[test]
    fn later_properties_win_and_missing_ones_are_kept() {
        let out = fold(vec![
            row(1, "[1]", Some(r#"{"k":1,"a":-999}"#)),
            row(2, "[1]", Some(r#"{"k":1,"b":2}"#)),
            row(3, "[1]", Some(r#"{"k":1,"a":1,"c":3}"#)),
        ])
        .unwrap();
        let merged = &out["t"].upserts[b"[1]".as_slice()];
        assert_eq!(Value::Object(merged.clone()), serde_json::json!({"a":1,"b":2,"c":3,"k":1}));
    }

    #[test]
    fn delete_then_insert_is_an_upsert_and_insert_then_delete_is_a_delete() {
        let out = fold(vec![
            row(1, "[1]", None),
            row(2, "[1]", Some(r#"{"k":1}"#)),
            row(1, "[2]", Some(r#"{"k":2}"#)),
            row(2, "[2]", None),
        ])
        .unwrap();
        assert!(out["t"].upserts.contains_key(b"[1]".as_slice()) && !out["t"].deletes.contains_key(b"[1]".as_slice()));
        assert!(out["t"].deletes.contains_key(b"[2]".as_slice()) && !out["t"].upserts.contains_key(b"[2]".as_slice()));
    }
}
