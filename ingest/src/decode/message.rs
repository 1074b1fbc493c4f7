//! One message of a webhook body or line of a file, in the envelopes CockroachDB sends:
//! `wrapped` (`after`, `key`, `topic`, `updated`, …) and `enriched` (`after`, `key` as an object,
//! `op`, `source.ts_hlc`, … optionally inside `{"payload": …, "schema": …}`). `bare` is refused:
//! its deletes cannot be told from updates that set the projected columns to NULL.

use std::borrow::Cow;

use serde_json::value::RawValue;
use wharf_base::json::{Props, string_of};
use wharf_queue::Hlc;

use super::{DecodeError, Feed, Key, Message};

/// Decodes one message; `Ok(None)` for a query feed's phantom delete, which is dropped.
/// Fields nobody needs (`mvcc_timestamp`, `ts_ns`, …) are ignored.
pub(super) fn decode_message<'a>(
    index: usize,
    fields: &Props<'a>,
    feed: Feed<'_>,
) -> Result<Option<Message<'a>>, DecodeError> {
    if fields.get("__crdb__").is_some() {
        return Err(DecodeError::BareEnvelope);
    }
    if let Some(payload) = fields.get("payload") {
        let inner = object(index, "payload", payload)?;
        return enriched(index, &inner, fields.get("schema"), feed).map(Some);
    }
    if fields.get("op").is_some() {
        return enriched(index, fields, None, feed).map(Some);
    }
    wrapped(index, fields, feed)
}

fn wrapped<'a>(index: usize, fields: &Props<'a>, feed: Feed<'_>) -> Result<Option<Message<'a>>, DecodeError> {
    let hlc = timestamp(index, "updated", fields.get("updated"), "create the changefeed WITH updated")?;
    let after = after(index, fields.get("after"))?;
    let (table, key, before) = match feed {
        Feed::Query(table) => {
            let Some((key, before)) = query_key(index, fields, after.is_some())? else { return Ok(None) };
            (Cow::Owned(table.to_owned()), key, before)
        }
        Feed::File(table) => (Cow::Owned(table.to_owned()), key_array(index, fields.get("key"))?, None),
        Feed::Tables => (table_of_topic(index, fields.get("topic"))?, key_array(index, fields.get("key"))?, None),
    };
    Ok(Some(Message { hlc, table, key, after, before, schema: None }))
}

/// A query feed's key: the row's primary-key columns, of `before` for a delete; the `key` array
/// (`key_in_value`) for a delete without `before`. `None` for a phantom delete (`before` null).
fn query_key<'a>(
    index: usize,
    fields: &Props<'a>,
    has_after: bool,
) -> Result<Option<(Key<'a>, Option<Props<'a>>)>, DecodeError> {
    if has_after {
        return Ok(Some((Key::Row, None)));
    }
    match fields.get("before") {
        Some(before) if before.get() == "null" => Ok(None),
        Some(before) => Ok(Some((Key::Row, Some(object(index, "before", before)?)))),
        None => match fields.get("key") {
            Some(key) => Ok(Some((key_array(index, Some(key))?, None))),
            None => Err(DecodeError::message(
                index,
                "a delete with neither \"before\" nor \"key\": create the query feed WITH diff (or key_in_value) so a delete names its row",
            )),
        },
    }
}

/// An enriched message (CockroachDB 25.2+): the commit time is `source.ts_hlc`, the table
/// `source.table_name`, the key an object of primary-key columns.
fn enriched<'a>(
    index: usize,
    fields: &Props<'a>,
    schema: Option<&'a RawValue>,
    feed: Feed<'_>,
) -> Result<Message<'a>, DecodeError> {
    const NEEDS: &str = "create the changefeed WITH updated, enriched_properties='source'";
    if let Feed::Query(_) = feed {
        return Err(DecodeError::message(index, "a query feed's messages cannot be enriched; use envelope='wrapped'"));
    }
    let source = match fields.get("source") {
        Some(source) if source.get() != "null" => object(index, "source", source)?,
        _ => return Err(DecodeError::message(index, format!("enriched message without \"source\": {NEEDS}"))),
    };
    let hlc = timestamp(index, "source.ts_hlc", source.get("ts_hlc"), NEEDS)?;
    let after = after(index, fields.get("after"))?;
    check_op(index, fields.get("op"), after.is_some())?;
    let table = match feed {
        Feed::File(table) => Cow::Owned(table.to_owned()),
        _ => match source.get("table_name").and_then(string_of) {
            Some(table) if !table.is_empty() => table,
            _ => return Err(DecodeError::message(index, "\"source.table_name\" must be a table name")),
        },
    };
    let key = match fields.get("key") {
        Some(key) if key.get().starts_with('{') => Key::Columns(object(index, "key", key)?),
        key => key_array(index, key)?,
    };
    let schema = schema.filter(|s| s.get() != "null");
    Ok(Message { hlc, table, key, after, before: None, schema })
}

/// `op` is `c`, `u` or `d`, and `d` exactly when `after` is null.
fn check_op(index: usize, op: Option<&RawValue>, has_after: bool) -> Result<(), DecodeError> {
    match (op.and_then(string_of).as_deref(), has_after) {
        (Some("c" | "u"), true) | (Some("d"), false) => Ok(()),
        (Some("c" | "u"), false) => {
            Err(DecodeError::message(index, "\"op\" is an insert or update but \"after\" is null"))
        }
        (Some("d"), true) => Err(DecodeError::message(index, "\"op\" is \"d\" but \"after\" is not null")),
        _ => Err(DecodeError::message(index, "\"op\" must be \"c\", \"u\" or \"d\"")),
    }
}

fn timestamp(index: usize, name: &str, raw: Option<&RawValue>, needs: &str) -> Result<Hlc, DecodeError> {
    let Some(raw) = raw else {
        return Err(DecodeError::message(index, format!("no \"{name}\" timestamp; {needs}")));
    };
    let Some(text) = string_of(raw) else {
        return Err(DecodeError::message(index, format!("\"{name}\" must be a string HLC timestamp")));
    };
    let hlc = Hlc::parse(&text).map_err(|e| DecodeError::message(index, format!("\"{name}\": {e}")))?;
    if hlc == Hlc::ZERO {
        return Err(DecodeError::message(index, format!("\"{name}\" is the zero timestamp")));
    }
    Ok(hlc)
}

fn key_array<'a>(index: usize, raw: Option<&'a RawValue>) -> Result<Key<'a>, DecodeError> {
    match raw {
        None => Err(DecodeError::message(index, "no \"key\"; the primary key is required")),
        Some(raw) if raw.get().starts_with('[') => {
            let values: Vec<&RawValue> =
                serde_json::from_str(raw.get()).map_err(|e| DecodeError::message(index, e.to_string()))?;
            if values.is_empty() {
                return Err(DecodeError::message(index, "\"key\" is an empty array"));
            }
            Ok(Key::Array { text: raw.get(), values })
        }
        Some(_) => Err(DecodeError::message(index, "\"key\" must be an array of primary-key values")),
    }
}

fn after<'a>(index: usize, raw: Option<&'a RawValue>) -> Result<Option<(&'a RawValue, Props<'a>)>, DecodeError> {
    match raw {
        None => Ok(None),
        Some(raw) if raw.get() == "null" => Ok(None),
        Some(raw) => match Props::parse(raw.get()) {
            Ok(Some(props)) => Ok(Some((raw, props))),
            _ => Err(DecodeError::message(index, "\"after\" must be an object or null")),
        },
    }
}

fn object<'a>(index: usize, name: &str, raw: &'a RawValue) -> Result<Props<'a>, DecodeError> {
    match Props::parse(raw.get()) {
        Ok(Some(props)) => Ok(props),
        _ => Err(DecodeError::message(index, format!("\"{name}\" must be an object"))),
    }
}

/// The table part of a topic: `orders`, or `app.public.orders` with `full_table_name`; the last
/// dotted part is the table, as the peer does.
fn table_of_topic<'a>(index: usize, topic: Option<&'a RawValue>) -> Result<Cow<'a, str>, DecodeError> {
    let topic = match topic.map(string_of) {
        Some(Some(topic)) => topic,
        Some(None) => return Err(DecodeError::message(index, "\"topic\" must be a string")),
        None => return Err(DecodeError::message(index, "no \"topic\"; the table name is required")),
    };
    let last = topic.rsplit('.').next().unwrap_or(&topic);
    let last = last.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(last);
    if last.is_empty() {
        return Err(DecodeError::message(index, "\"topic\" is empty; the table name is required"));
    }
    if last.len() == topic.len() {
        return Ok(topic);
    }
    Ok(Cow::Owned(last.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::super::{Body, decode_ndjson, decode_webhook};
    use super::*;

    fn rows<'a>(body: &'a str, feed: Feed<'_>) -> (Vec<Message<'a>>, usize) {
        match decode_webhook(body.as_bytes(), feed).unwrap() {
            Body::Rows { messages, phantoms } => (messages, phantoms),
            other => panic!("{other:?}"),
        }
    }

    fn err(body: &str, feed: Feed<'_>) -> String {
        decode_webhook(body.as_bytes(), feed).unwrap_err().to_string()
    }

    #[test]
    fn a_query_feed_takes_its_table_from_the_path_and_its_key_from_the_row() {
        let body = r#"{"payload":[{"after": {"k": 2, "v": "a"}, "before": null, "topic": "other", "updated": "1.0000000000"}, {"after": {"k": 2, "v": "b"}, "before": {"k": 2, "v": "a", "w": 10}, "updated": "2.0000000000"}, {"after": null, "before": {"k": 2, "v": "b", "w": 10}, "updated": "3.0000000000"}, {"after": null, "before": null, "updated": "4.0000000000"}],"length":4}"#;
        let (messages, phantoms) = rows(body, Feed::Query("kv"));
        assert_eq!(phantoms, 1);
        assert_eq!(messages.len(), 3);
        assert!(messages.iter().all(|m| m.table == "kv" && matches!(m.key, Key::Row)));
        assert!(messages[0].before.is_none() && messages[1].before.is_none());
        assert_eq!(messages[2].before.as_ref().unwrap().get("w").unwrap().get(), "10");
        // Without diff a delete is keyed by key_in_value's array, or cannot be applied.
        let (messages, _) =
            rows(r#"{"payload":[{"after": null, "key": [2], "updated": "3.0000000000"}]}"#, Feed::Query("kv"));
        assert!(matches!(&messages[0].key, Key::Array { text: "[2]", .. }));
        assert!(
            err(r#"{"payload":[{"after": null, "updated": "3.0000000000"}]}"#, Feed::Query("kv")).contains("WITH diff")
        );
        // A table feed keeps applying a phantom delete by its key, as before.
        let table =
            r#"{"payload":[{"after": null, "before": null, "key": [9], "topic": "kv", "updated": "4.0000000000"}]}"#;
        assert_eq!(rows(table, Feed::Tables).1, 0);
    }

    #[test]
    fn bare_query_messages_are_refused_with_what_to_use() {
        let bare = r#"{"payload":[{"__crdb__": {"updated": "1.0000000000"}, "id": 7, "status": "lost"}],"length":1}"#;
        assert!(err(bare, Feed::Query("vehicles")).contains("envelope='wrapped', diff"));
        let file = decode_ndjson(b"{\"__crdb__\": {\"updated\": \"1.0000000000\"}, \"id\": 7}\n", Feed::Query("v"));
        assert_eq!(file.unwrap_err(), DecodeError::BareEnvelope);
    }

    #[test]
    fn enriched_messages_read_source_and_the_key_object() {
        let body = r#"{"payload":[{"after": {"id": 1, "name": "Mug"}, "before": null, "key": {"id": 1}, "op": "c", "source": {"database_name": "shop", "schema_name": "public", "table_name": "products", "ts_hlc": "1747243394200039000.0000000003", "ts_ns": 1747243394200039000, "primary_keys": ["id"]}, "ts_ns": 1747243394886231000}, {"payload": {"after": null, "key": {"id": 1}, "op": "d", "source": {"table_name": "products", "ts_hlc": "1747243410000000000.0000000000"}, "ts_ns": 1}, "schema": {"type": "struct", "name": "cockroachdb.envelope"}}],"length":2}"#;
        let (messages, _) = rows(body, Feed::Tables);
        assert_eq!(messages[0].hlc, Hlc::new(1747243394200039000, 3));
        assert_eq!(messages[0].table, "products");
        assert!(matches!(&messages[0].key, Key::Columns(p) if p.get("id").unwrap().get() == "1"));
        assert!(messages[0].schema.is_none());
        assert!(messages[1].after.is_none());
        assert!(messages[1].schema.unwrap().get().contains("cockroachdb.envelope"));
    }

    #[test]
    fn enriched_defects_say_what_to_change() {
        let minimal =
            r#"{"payload":[{"after": {"id": 1}, "key": {"id": 1}, "op": "c", "ts_ns": 1745525261013511000}]}"#;
        assert!(err(minimal, Feed::Tables).contains("enriched_properties='source'"));
        let no_updated =
            r#"{"payload":[{"after": {"id": 1}, "key": {"id": 1}, "op": "c", "source": {"table_name": "t"}}]}"#;
        assert!(err(no_updated, Feed::Tables).contains("no \"source.ts_hlc\""));
        let wrong_op = r#"{"payload":[{"after": {"id": 1}, "key": {"id": 1}, "op": "d", "source": {"table_name": "t", "ts_hlc": "1.0000000000"}}]}"#;
        assert!(err(wrong_op, Feed::Tables).contains("\"op\" is \"d\""));
    }
}
