//! The webhook body: `{"payload":[…],"length":N}` or `{"resolved":"…"}`.

use serde_json::Value;

use super::{Body, DecodeError, decode_message, parse_json};
use wharf_queue::Hlc;

/// Decodes a webhook body completely; any defect rejects the whole body.
pub fn decode_webhook(bytes: &[u8]) -> Result<Body, DecodeError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Body::Empty);
    }
    let mut top = match parse_json(bytes)? {
        Value::Object(top) => top,
        Value::Null => return Ok(Body::Empty),
        _ => return Err(DecodeError::NotObject),
    };
    if top.contains_key("__crdb__") {
        return Err(DecodeError::BareEnvelope);
    }
    if let Some(field) = top.keys().find(|k| !matches!(k.as_str(), "payload" | "length" | "resolved")) {
        return Err(DecodeError::UnknownField(field.clone()));
    }
    match (top.remove("payload"), top.remove("resolved")) {
        (Some(_), Some(_)) => Err(DecodeError::PayloadAndResolved),
        (None, Some(resolved)) => decode_resolved(&resolved),
        (Some(payload), None) => decode_payload(payload, top.remove("length")),
        (None, None) => Err(DecodeError::NotObject),
    }
}

/// Decodes `{"resolved":"…"}` as a value already parsed.
pub(super) fn decode_resolved(resolved: &Value) -> Result<Body, DecodeError> {
    let text = resolved.as_str().ok_or(DecodeError::ResolvedNotString)?;
    Hlc::parse(text).map(Body::Resolved).map_err(DecodeError::ResolvedHlc)
}

fn decode_payload(payload: Value, length: Option<Value>) -> Result<Body, DecodeError> {
    let Value::Array(messages) = payload else { return Err(DecodeError::PayloadNotArray) };
    if let Some(length) = length {
        let length = length.as_u64().ok_or(DecodeError::LengthNotInteger)?;
        if length != messages.len() as u64 {
            return Err(DecodeError::LengthMismatch { length, actual: messages.len() });
        }
    }
    let rows = messages.into_iter().enumerate().map(|(i, m)| decode_one(i, m)).collect::<Result<_, _>>()?;
    Ok(Body::Rows(rows))
}

fn decode_one(index: usize, message: Value) -> Result<super::Message, DecodeError> {
    let Value::Object(mut fields) = message else {
        return Err(DecodeError::message(index, "message must be a JSON object"));
    };
    let table = match fields.remove("topic") {
        Some(Value::String(topic)) => table_of_topic(&topic),
        Some(_) => return Err(DecodeError::message(index, "\"topic\" must be a string")),
        None if fields.contains_key("__crdb__") => return Err(DecodeError::BareEnvelope),
        None => return Err(DecodeError::message(index, "no \"topic\"; the table name is required")),
    };
    if table.is_empty() {
        return Err(DecodeError::message(index, "\"topic\" is empty; the table name is required"));
    }
    decode_message(index, fields, table)
}

/// The table part of a topic: `orders`, `app.public.orders` (full_table_name) or `orders.family`
/// is not distinguishable from a qualified name, so the last dotted part is the table, as the peer does.
fn table_of_topic(topic: &str) -> String {
    let last = topic.rsplit('.').next().unwrap_or(topic);
    last.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(last).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> String {
        decode_webhook(body.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn rows_decode_with_exact_numbers() {
        let body = r#"{"payload":[{"after": {"id": 9223372036854775807, "d": 3.141592653589793238462643383279}, "key": [9223372036854775807], "topic": "app.public.t", "updated": "10.0000000001", "mvcc_timestamp": "10.0000000001"}],"length":1}"#;
        let Body::Rows(rows) = decode_webhook(body.as_bytes()).unwrap() else { panic!("rows") };
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].table, "t");
        assert_eq!(rows[0].hlc, Hlc::new(10, 1));
        assert_eq!(
            serde_json::to_string(&rows[0].after).unwrap(),
            r#"{"d":3.141592653589793238462643383279,"id":9223372036854775807}"#
        );
    }

    #[test]
    fn deletes_have_no_after() {
        let body = r#"{"payload":[{"after": null, "before": null, "key": [99], "topic": "customers", "updated": "1.0000000000"}],"length":1}"#;
        let Body::Rows(rows) = decode_webhook(body.as_bytes()).unwrap() else { panic!("rows") };
        assert_eq!(rows[0].after, None);
    }

    #[test]
    fn resolved_and_empty_bodies() {
        assert_eq!(decode_webhook(br#"{"resolved":"5.0000000000"}"#).unwrap(), Body::Resolved(Hlc::new(5, 0)));
        assert_eq!(decode_webhook(b"").unwrap(), Body::Empty);
        assert_eq!(decode_webhook(b"null").unwrap(), Body::Empty);
    }

    #[test]
    fn defects_are_named() {
        assert!(err(r#"{"payload":[{"after": {"#).contains("not valid JSON"));
        assert!(err(r#"{"payload":[],"length":3}"#).contains("\"length\" is 3"));
        assert!(err(r#"{"payload":[],"length":0,"schema_version":2}"#).contains("schema_version"));
        assert!(err(r#"{"payload":[],"resolved":"1.0"}"#).contains("both"));
        assert!(err(r#"{"resolved":1}"#).contains("must be a string"));
        assert!(err(r#"{"__crdb__":{"resolved":"1.0"}}"#).contains("bare envelope"));
        assert!(
            err(r#"{"payload":[{"after":[],"key":[1],"topic":"t","updated":"1.0"}]}"#).contains("\"after\" must be")
        );
        assert!(err(r#"{"payload":[{"after":{},"key":[1],"topic":"t"}]}"#).contains("WITH updated"));
        assert!(err(r#"{"payload":[{"after":{},"topic":"t","updated":"1.0"}]}"#).contains("no \"key\""));
        assert!(err(r#"{"payload":[{"after":{},"key":[1],"updated":"1.0"}]}"#).contains("no \"topic\""));
        assert!(err(r#"{"payload":[{"after":{},"key":[1],"topic":"t","updated":"1.12"}]}"#).contains("logical"));
    }
}
