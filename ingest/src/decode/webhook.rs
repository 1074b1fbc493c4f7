//! The webhook body: `{"payload":[…],"length":N}` or `{"resolved":"…"}`.

use std::borrow::Cow;

use serde_json::value::RawValue;
use wharf_queue::Hlc;
use wharf_queue::json::{Props, string_of};

use super::{Body, DecodeError, Message, decode_message, parse_object, utf8};

/// Decodes a webhook body completely; any defect rejects the whole body.
pub fn decode_webhook(bytes: &[u8]) -> Result<Body<'_>, DecodeError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Body::Empty);
    }
    let Some(top) = parse_object(utf8(bytes)?)? else { return Ok(Body::Empty) };
    if top.get("__crdb__").is_some() {
        return Err(DecodeError::BareEnvelope);
    }
    if let Some((field, _)) = top.0.iter().find(|(k, _)| !matches!(k.as_ref(), "payload" | "length" | "resolved")) {
        return Err(DecodeError::UnknownField(field.to_string()));
    }
    match (top.get("payload"), top.get("resolved")) {
        (Some(_), Some(_)) => Err(DecodeError::PayloadAndResolved),
        (None, Some(resolved)) => decode_resolved(resolved),
        (Some(payload), None) => decode_payload(payload, top.get("length")),
        (None, None) => Err(DecodeError::NotObject),
    }
}

/// Decodes the value of `"resolved"`.
fn decode_resolved(resolved: &RawValue) -> Result<Body<'static>, DecodeError> {
    let text = string_of(resolved).ok_or(DecodeError::ResolvedNotString)?;
    Hlc::parse(&text).map(Body::Resolved).map_err(DecodeError::ResolvedHlc)
}

fn decode_payload<'a>(payload: &'a RawValue, length: Option<&'a RawValue>) -> Result<Body<'a>, DecodeError> {
    if !payload.get().starts_with('[') {
        return Err(DecodeError::PayloadNotArray);
    }
    let messages: Vec<&RawValue> = serde_json::from_str(payload.get()).map_err(|e| DecodeError::Json(e.to_string()))?;
    if let Some(length) = length {
        let length: u64 = length.get().parse().map_err(|_| DecodeError::LengthNotInteger)?;
        if length != messages.len() as u64 {
            return Err(DecodeError::LengthMismatch { length, actual: messages.len() });
        }
    }
    let rows = messages.into_iter().enumerate().map(|(i, m)| decode_one(i, m)).collect::<Result<_, _>>()?;
    Ok(Body::Rows(rows))
}

fn decode_one(index: usize, message: &RawValue) -> Result<Message<'_>, DecodeError> {
    let fields = match Props::parse(message.get()) {
        Ok(Some(fields)) => fields,
        _ => return Err(DecodeError::message(index, "message must be a JSON object")),
    };
    let table = match fields.get("topic") {
        Some(raw) => match string_of(raw) {
            Some(topic) => table_of_topic(topic),
            None => return Err(DecodeError::message(index, "\"topic\" must be a string")),
        },
        None if fields.get("__crdb__").is_some() => return Err(DecodeError::BareEnvelope),
        None => return Err(DecodeError::message(index, "no \"topic\"; the table name is required")),
    };
    if table.is_empty() {
        return Err(DecodeError::message(index, "\"topic\" is empty; the table name is required"));
    }
    decode_message(index, &fields, table)
}

/// The table part of a topic: `orders`, or `app.public.orders` with `full_table_name`; the last
/// dotted part is the table, as the peer does.
fn table_of_topic(topic: Cow<'_, str>) -> Cow<'_, str> {
    let last = topic.rsplit('.').next().unwrap_or(&topic);
    let last = last.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(last);
    if last.len() == topic.len() {
        return topic;
    }
    Cow::Owned(last.to_owned())
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
        let (raw, props) = rows[0].after.as_ref().unwrap();
        assert_eq!(raw.get(), r#"{"id": 9223372036854775807, "d": 3.141592653589793238462643383279}"#);
        assert_eq!(props.get("d").unwrap().get(), "3.141592653589793238462643383279");
    }

    #[test]
    fn deletes_have_no_after() {
        let body = r#"{"payload":[{"after": null, "before": null, "key": [99], "topic": "customers", "updated": "1.0000000000"}],"length":1}"#;
        let Body::Rows(rows) = decode_webhook(body.as_bytes()).unwrap() else { panic!("rows") };
        assert!(rows[0].after.is_none());
    }

    #[test]
    fn resolved_and_empty_bodies() {
        assert!(
            matches!(decode_webhook(br#"{"resolved":"5.0000000000"}"#).unwrap(), Body::Resolved(h) if h == Hlc::new(5, 0))
        );
        assert!(matches!(decode_webhook(b"").unwrap(), Body::Empty));
        assert!(matches!(decode_webhook(b"null").unwrap(), Body::Empty));
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
