use std::collections::HashMap;
use std::sync::Arc;

use wharf_targetdb::catalog::{Column, ColumnKind, Table};

use super::*;
use crate::decode::{Body, Feed, decode_webhook};

fn catalog() -> SchemaCatalog {
    let column =
        |name: &str| Column { name: name.into(), sql_type: "text".into(), kind: ColumnKind::Scalar, generated: false };
    let table = Table::new("public", "t", vec![column("id"), column("v")], vec![0]);
    SchemaCatalog {
        tables: HashMap::from([("t".to_owned(), Arc::new(table))]),
        fk_order: Vec::new(),
        groups: Vec::new(),
    }
}

fn messages(body: &str) -> Vec<Message<'_>> {
    match decode_webhook(body.as_bytes(), Feed::Tables).unwrap() {
        Body::Rows { messages, .. } => messages,
        other => panic!("{other:?}"),
    }
}

const BODY: &str = r#"{"payload":[
    {"after": {"id": 1, "v": "a", "c": 5}, "key": [1], "topic": "t", "updated": "1.0000000000"},
    {"after": {"id": 2, "v": "b", "c": 6, "d": "x\"y"}, "key": [2], "topic": "t", "updated": "1.0000000000"},
    {"after": {"id": 3}, "key": [3, 4], "topic": "t", "updated": "1.0000000000"},
    {"after": {"k": 1}, "key": [1], "topic": "gone", "updated": "1.0000000000"},
    {"after": null, "key": [1], "topic": "gone", "updated": "1.0000000000"}]}"#;

#[test]
fn scan_names_each_table_column_and_kind_once_with_its_rows() {
    let found = scan(&messages(BODY), &catalog());
    let summary: Vec<(usize, &str, Option<&str>, Kind, u64)> =
        found.iter().map(|f| (f.index, f.table.as_str(), f.column.as_deref(), f.kind, f.rows)).collect();
    assert_eq!(
        summary,
        [
            (0, "t", Some("c"), Kind::UnknownColumn, 2),
            (1, "t", Some("d"), Kind::UnknownColumn, 1),
            (2, "t", None, Kind::KeyArity, 1),
            (3, "gone", None, Kind::UnknownTable, 2),
        ]
    );
    assert_eq!(found[2].arity, Some((2, 1)));
}

#[test]
fn edits_drop_unknown_tables_and_columns_and_keep_the_rest_exactly() {
    let messages = messages(BODY);
    let edits = edits(&messages, &catalog());
    assert_eq!(edits.skip, [false, false, false, true, true]);
    assert_eq!(edits.after[0].as_deref(), Some(r#"{"id":1,"v":"a"}"#));
    assert_eq!(edits.after[1].as_deref(), Some(r#"{"id":2,"v":"b"}"#));
    assert_eq!(edits.after[2], None);
}

#[test]
fn policies_read_a_default_and_per_schema_values() {
    let values = vec!["ignore".to_owned(), "app.public=halt,app.other=ignore".to_owned()];
    let policies = Policies::parse(&values, "--onUnknownColumn").unwrap();
    assert_eq!(policies.of(&Partition::new("app", "public")), Policy::Halt);
    assert_eq!(policies.of(&Partition::new("app", "other")), Policy::Ignore);
    assert_eq!(policies.of(&Partition::new("app", "third")), Policy::Ignore);
    assert_eq!(Policies::parse(&[], "--x").unwrap().of(&Partition::new("a", "b")), Policy::Halt);
    assert!(Policies::parse(&["drop".into()], "--onUnknownColumn").unwrap_err().contains("expected halt, ignore"));
    assert!(Policies::parse(&["public=ignore".into()], "--onUnknownTable").unwrap_err().contains("db.schema="));
}

#[test]
fn a_halted_drift_lasts_until_its_table_is_accepted_and_an_ignored_one_until_forgotten() {
    let watch = DriftWatch::default();
    let p = Partition::new("app", "public");
    let found = scan(&messages(BODY), &catalog());
    let now = Instant::now();
    assert!(watch.record(&p, &found[0], Policy::Halt, now));
    assert!(watch.record(&p, &found[0], Policy::Halt, now));
    assert!(watch.record(&p, &found[3], Policy::Ignore, now));
    let (halted, ignored) = watch.lines(now);
    assert_eq!(halted, [r#"app.public: table "t" has no column "c": 2 requests refused"#]);
    assert_eq!(ignored, [r#"app.public: no table "gone": ignored in 2 rows"#]);
    let status = watch.status(now);
    assert_eq!((status[1].table.as_str(), status[1].refused, status[1].policy.as_str()), ("t", 2, "halt"));
    watch.accepted(&p, ["t"]);
    assert!(watch.lines(now).0.is_empty());
    assert_eq!(watch.lines(now + FORGET_AFTER).1, Vec::<String>::new());
}
