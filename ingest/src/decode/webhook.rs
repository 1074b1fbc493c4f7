//! The webhook body: `{"payload":[…],"length":N}` or `{"resolved":"…"}`.
//!
//! A well-formed body is read in one pass: the top-level object, the payload's array and each
//! message's fields at once, each `after` kept raw. A body that does not have that shape is read
//! again, leniently, to name its defect; that costs a second pass only on bodies that are refused.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use wharf_base::json::{Props, string_of};
use wharf_queue::Hlc;

use super::message::decode_message;
use super::{Body, DecodeError, Feed, parse_object, utf8};

/// Decodes a webhook body of `feed` completely; any defect rejects the whole body.
pub fn decode_webhook<'a>(bytes: &'a [u8], feed: Feed<'_>) -> Result<Body<'a>, DecodeError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Body::Empty);
    }
    let text = utf8(bytes)?;
    let envelope = match serde_json::from_str::<Envelope>(text) {
        Ok(envelope) => envelope,
        Err(_) => match parse_object(text)? {
            Some(top) => Envelope::of_props(&top),
            None => return Ok(Body::Empty),
        },
    };
    envelope.decode(feed)
}

/// The top-level fields of a body; the first of each name counts, as in [`Props::get`].
#[derive(Default)]
struct Envelope<'a> {
    payload: Option<Payload<'a>>,
    length: Option<&'a RawValue>,
    resolved: Option<&'a RawValue>,
    /// Whether there is a `__crdb__` field: a bare-envelope changefeed.
    bare: bool,
    /// The first field that is none of the above.
    unknown: Option<Cow<'a, str>>,
}

enum Payload<'a> {
    /// Read in the strict pass: an array of objects.
    Messages(Vec<Props<'a>>),
    /// Read leniently: any JSON value, checked message by message.
    Raw(&'a RawValue),
}

impl<'a> Envelope<'a> {
    fn of_props(top: &Props<'a>) -> Envelope<'a> {
        Envelope {
            payload: top.get("payload").map(Payload::Raw),
            length: top.get("length"),
            resolved: top.get("resolved"),
            bare: top.get("__crdb__").is_some(),
            unknown: top.0.iter().find(|(k, _)| !is_known(k)).map(|(k, _)| k.clone()),
        }
    }

    fn decode(self, feed: Feed<'_>) -> Result<Body<'a>, DecodeError> {
        if self.bare {
            return Err(DecodeError::BareEnvelope);
        }
        if let Some(field) = self.unknown {
            return Err(DecodeError::UnknownField(field.into_owned()));
        }
        match (self.payload, self.resolved) {
            (Some(_), Some(_)) => Err(DecodeError::PayloadAndResolved),
            (None, Some(resolved)) => decode_resolved(resolved),
            (Some(payload), None) => decode_payload(payload, self.length, feed),
            (None, None) => Err(DecodeError::NotObject),
        }
    }
}

fn is_known(field: &str) -> bool {
    matches!(field, "payload" | "length" | "resolved" | "__crdb__")
}

impl<'de: 'a, 'a> Deserialize<'de> for Envelope<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EnvelopeVisitor(std::marker::PhantomData))
    }
}

struct EnvelopeVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for EnvelopeVisitor<'a> {
    type Value = Envelope<'a>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a webhook body")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Envelope<'a>, M::Error> {
        let mut envelope = Envelope::default();
        while let Some(field) = map.next_key::<Cow<'a, str>>()? {
            match field.as_ref() {
                "payload" if envelope.payload.is_none() => {
                    envelope.payload = Some(Payload::Messages(map.next_value()?))
                }
                "length" if envelope.length.is_none() => envelope.length = Some(map.next_value()?),
                "resolved" if envelope.resolved.is_none() => envelope.resolved = Some(map.next_value()?),
                name => {
                    envelope.bare |= name == "__crdb__";
                    if !is_known(name) && envelope.unknown.is_none() {
                        envelope.unknown = Some(field);
                    }
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(envelope)
    }
}

/// Decodes the value of `"resolved"`.
fn decode_resolved(resolved: &RawValue) -> Result<Body<'static>, DecodeError> {
    let text = string_of(resolved).ok_or(DecodeError::ResolvedNotString)?;
    Hlc::parse(&text).map(Body::Resolved).map_err(DecodeError::ResolvedHlc)
}

fn decode_payload<'a>(
    payload: Payload<'a>,
    length: Option<&'a RawValue>,
    feed: Feed<'_>,
) -> Result<Body<'a>, DecodeError> {
    let messages: Vec<Option<Props>> = match payload {
        Payload::Messages(messages) => messages.into_iter().map(Some).collect(),
        Payload::Raw(raw) if raw.get().starts_with('[') => {
            let messages: Vec<&RawValue> =
                serde_json::from_str(raw.get()).map_err(|e| DecodeError::Json(e.to_string()))?;
            messages.into_iter().map(|m| Props::parse(m.get()).ok().flatten()).collect()
        }
        Payload::Raw(_) => return Err(DecodeError::PayloadNotArray),
    };
    check_length(length, &messages)?;
    let sent = messages.len();
    let mut rows = Vec::with_capacity(messages.len());
    for (index, fields) in messages.into_iter().enumerate() {
        let Some(fields) = fields else {
            return Err(DecodeError::message(index, "message must be a JSON object"));
        };
        rows.extend(decode_message(index, &fields, feed)?);
    }
    let phantoms = sent - rows.len();
    Ok(Body::Rows { messages: rows, phantoms })
}

fn check_length<T>(length: Option<&RawValue>, messages: &[T]) -> Result<(), DecodeError> {
    let Some(length) = length else { return Ok(()) };
    let length: u64 = length.get().parse().map_err(|_| DecodeError::LengthNotInteger)?;
    if length != messages.len() as u64 {
        return Err(DecodeError::LengthMismatch { length, actual: messages.len() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> String {
        decode_webhook(body.as_bytes(), Feed::Tables).unwrap_err().to_string()
    }

    #[test]
    fn rows_decode_with_exact_numbers() {
        let body = r#"{"payload":[{"after": {"id": 9223372036854775807, "d": 3.141592653589793238462643383279}, "key": [9223372036854775807], "topic": "app.public.t", "updated": "10.0000000001", "mvcc_timestamp": "10.0000000001"}],"length":1}"#;
        let Body::Rows { messages: rows, .. } = decode_webhook(body.as_bytes(), Feed::Tables).unwrap() else {
            panic!("rows")
        };
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
        let Body::Rows { messages: rows, .. } = decode_webhook(body.as_bytes(), Feed::Tables).unwrap() else {
            panic!("rows")
        };
        assert!(rows[0].after.is_none());
    }

    #[test]
    fn resolved_and_empty_bodies() {
        assert!(
            matches!(decode_webhook(br#"{"resolved":"5.0000000000"}"#, Feed::Tables).unwrap(), Body::Resolved(h) if h == Hlc::new(5, 0))
        );
        assert!(matches!(decode_webhook(b"", Feed::Tables).unwrap(), Body::Empty));
        assert!(matches!(decode_webhook(b"null", Feed::Tables).unwrap(), Body::Empty));
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
