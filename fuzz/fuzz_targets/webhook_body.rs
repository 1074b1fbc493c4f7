#![no_main]
//! The webhook body decoder never panics, whatever it accepts is well-formed, and validation
//! against a catalog (canonical keys, nesting limits) never panics either: an accepted row's key
//! is a JSON array with one element per primary-key column. A body that starts with gzip's or
//! zstd's magic bytes is decompressed first (as the server does for `Content-Encoding`), so that
//! is fuzzed too, and never yields more than its limit.

use std::collections::HashMap;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use wharf_ingest::decode::compressed::{Encoding, decode};
use wharf_ingest::decode::{Body, Feed, Key, Message, decode_webhook};
use wharf_ingest::validate::to_rows;
use wharf_targetdb::catalog::{Column, ColumnKind, SchemaCatalog, Table};

/// A catalog with every table the body names, keyed by the first message of each table.
fn catalog_for(messages: &[Message<'_>]) -> SchemaCatalog {
    let mut tables: HashMap<String, Arc<Table>> = HashMap::new();
    for m in messages {
        tables.entry(m.table.to_string()).or_insert_with(|| {
            let mut names = key_names(m);
            let keys = names.len();
            if let Some((_, props)) = &m.after {
                for (name, _) in &props.0 {
                    if !names.iter().any(|n| n == name) {
                        names.push(name.to_string());
                    }
                }
            }
            let columns = names
                .into_iter()
                .map(|name| Column { name, sql_type: "text".into(), kind: ColumnKind::Scalar, generated: false })
                .collect();
            Arc::new(Table::new("s", &m.table, columns, (0..keys).collect()))
        });
    }
    SchemaCatalog { tables, fk_order: Vec::new(), groups: Vec::new() }
}

/// The primary-key column names a catalog needs for `m`'s key (distinct).
fn key_names(m: &Message<'_>) -> Vec<String> {
    match &m.key {
        Key::Array { values, .. } => (0..values.len()).map(|i| format!("k{i}")).collect(),
        Key::Columns(props) => {
            let mut names: Vec<String> = Vec::new();
            for (name, _) in &props.0 {
                if !names.iter().any(|n| n == name) {
                    names.push(name.to_string());
                }
            }
            names
        }
        Key::Row => vec!["k0".into()],
    }
}

/// Decoded bytes allowed (the server's `--bodyLimit`).
const LIMIT: u64 = 1 << 20;

fuzz_target!(|body: &[u8]| {
    let encoding = match body {
        [0x1f, 0x8b, ..] => Encoding::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Encoding::Zstd,
        _ => Encoding::Identity,
    };
    let Ok(data) = decode(encoding, body, LIMIT) else { return };
    assert!(data.len() as u64 <= LIMIT, "decoded past the limit");
    for feed in [Feed::Tables, Feed::Query("q")] {
        check(&data, feed);
    }
});

fn check(data: &[u8], feed: Feed<'_>) {
    if let Ok(Body::Rows { messages, .. }) = decode_webhook(data, feed) {
        for row in &messages {
            assert!(!key_names(row).is_empty(), "accepted an empty key");
            assert!(!row.table.is_empty(), "accepted an empty table");
            assert!(row.hlc > wharf_queue::Hlc::ZERO, "accepted the zero timestamp");
        }
        let catalog = catalog_for(&messages);
        let edits = wharf_ingest::drift::edits(&messages, &catalog);
        if let Ok(rows) = to_rows(&messages, "s", &catalog, &edits) {
            for (row, message) in rows.iter().zip(&messages) {
                let key: Vec<serde_json::Value> = serde_json::from_slice(&row.key).expect("canonical key is JSON");
                assert_eq!(key.len(), key_names(message).len());
            }
        }
    }
}
