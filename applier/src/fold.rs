//! Folding a chunk of journal rows into one final action per key. Pure.

use std::collections::HashMap;

use indexmap::IndexMap;
use serde_json::value::RawValue;
use wharf_queue::BatchRow;

use wharf_base::json::Props;

/// The net effect of a chunk on one table, borrowed from the chunk's rows.
///
/// Keys keep the order in which the journal first gave them (a key that moves from one map to the
/// other leaves its place to the map's last key): an initial scan arrives in primary-key order,
/// and writing it in that order appends at the right edge of the target's index instead of
/// splitting its pages everywhere. In hash order the bench's 1,000,000 rows
/// took 2.5–2.8 s in the target; in journal order, 2.0–2.3 s.
#[derive(Debug, Default)]
pub struct TableChanges<'a> {
    /// Key JSON → the merged row to upsert.
    pub upserts: IndexMap<&'a [u8], Props<'a>>,
    /// Key JSON → the key's elements, for keys whose last version is a delete.
    pub deletes: IndexMap<&'a [u8], Vec<&'a RawValue>>,
}

#[derive(Debug, thiserror::Error)]
#[error("journal row for {table} holds invalid JSON: {reason}")]
pub struct FoldError {
    table: String,
    reason: String,
}

/// Folds rows given in HLC order: later properties override earlier ones (a sparse update keeps the
/// columns it does not mention), a delete discards what came before, an upsert after a delete
/// starts afresh.
pub fn fold<'a>(rows: &[BatchRow<'a>]) -> Result<HashMap<&'a str, TableChanges<'a>>, FoldError> {
    let mut tables: HashMap<&str, TableChanges<'_>> = HashMap::new();
    for row in rows {
        let bad = |reason: String| FoldError { table: row.table.to_owned(), reason };
        let changes = tables.entry(row.table).or_default();
        let key = row.key;
        match row.after {
            Some(after) => {
                let text = std::str::from_utf8(after).map_err(|e| bad(e.to_string()))?;
                let after =
                    Props::parse(text).map_err(|e| bad(e.to_string()))?.ok_or_else(|| bad("not an object".into()))?;
                changes.deletes.swap_remove(key);
                match changes.upserts.get_mut(key) {
                    Some(merged) => after.0.into_iter().for_each(|(name, value)| merged.set(name, value)),
                    None => {
                        changes.upserts.insert(key, after);
                    }
                }
            }
            None => {
                let text = std::str::from_utf8(key).map_err(|e| bad(e.to_string()))?;
                let elements: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
                changes.upserts.swap_remove(key);
                changes.deletes.insert(key, elements);
            }
        }
    }
    Ok(tables)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_queue::Hlc;

    fn row<'a>(t: u64, key: &'a str, after: Option<&'a str>) -> BatchRow<'a> {
        BatchRow { hlc: Hlc::new(t, 0), table: "t", key: key.as_bytes(), after: after.map(str::as_bytes) }
    }

    #[test]
    fn later_properties_win_and_missing_ones_are_kept() {
        let rows = vec![
            row(1, "[1]", Some(r#"{"k":1,"a":-999}"#)),
            row(2, "[1]", Some(r#"{"k":1,"b":2}"#)),
            row(3, "[1]", Some(r#"{"k":1,"a":1,"c":3}"#)),
        ];
        let out = fold(&rows).unwrap();
        let merged = &out["t"].upserts[b"[1]".as_slice()];
        let text: Vec<(String, String)> = merged.0.iter().map(|(n, v)| (n.to_string(), v.get().to_owned())).collect();
        assert_eq!(text, [("k", "1"), ("a", "1"), ("b", "2"), ("c", "3")].map(|(a, b)| (a.to_owned(), b.to_owned())));
    }

    #[test]
    fn delete_then_insert_is_an_upsert_and_insert_then_delete_is_a_delete() {
        let rows = vec![
            row(1, "[1]", None),
            row(2, "[1]", Some(r#"{"k":1}"#)),
            row(1, "[2]", Some(r#"{"k":2}"#)),
            row(2, "[2]", None),
        ];
        let out = fold(&rows).unwrap();
        assert!(out["t"].upserts.contains_key(b"[1]".as_slice()) && !out["t"].deletes.contains_key(b"[1]".as_slice()));
        assert!(out["t"].deletes.contains_key(b"[2]".as_slice()) && !out["t"].upserts.contains_key(b"[2]".as_slice()));
    }

    #[test]
    fn keys_keep_the_journal_order() {
        let keys: Vec<String> = (0..500).map(|k| format!("[{k}]")).collect();
        let rows: Vec<BatchRow> = keys.iter().map(|k| row(1, k, Some(r#"{"k":0}"#))).collect();
        let out = fold(&rows).unwrap();
        let order: Vec<&[u8]> = out["t"].upserts.keys().copied().collect();
        assert_eq!(order, keys.iter().map(|k| k.as_bytes()).collect::<Vec<_>>());
    }
}
