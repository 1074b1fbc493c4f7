//! Request-body decoders: pure functions from bytes to validated messages, no I/O.
//!
//! These are what the fuzz targets and the malformed-input tests call; [`compressed`] undoes
//! `gzip` and `zstd` before them.

pub mod compressed;
mod ndjson;
mod webhook;

pub use ndjson::decode_ndjson;
pub use webhook::decode_webhook;

use std::borrow::Cow;

use serde_json::value::RawValue;
use thiserror::Error;
use wharf_base::json::{Props, string_of};
use wharf_queue::{Hlc, HlcError};

/// One row version as the changefeed sent it, borrowed from the request body, before it is
/// checked against the target catalog.
#[derive(Debug)]
pub struct Message<'a> {
    pub hlc: Hlc,
    /// The unqualified table name (the last part of `topic`).
    pub table: Cow<'a, str>,
    /// The `key` array as sent, and its elements.
    pub key_text: &'a str,
    pub key: Vec<&'a RawValue>,
    /// The `after` object as sent, with its properties; `None` for a delete.
    pub after: Option<(&'a RawValue, Props<'a>)>,
}

/// What a body asks for.
#[derive(Debug)]
pub enum Body<'a> {
    /// An empty body: CockroachDB never sends one, MOLT Replicator answers 200; so do we.
    Empty,
    Rows(Vec<Message<'a>>),
    Resolved(Hlc),
}

/// Why a body can never be accepted (HTTP 400). Messages name the field and the message index.
#[derive(Debug, Error, PartialEq)]
pub enum DecodeError {
    #[error("body is not valid JSON: {0}")]
    Json(String),
    #[error("body must be a JSON object with \"payload\" or \"resolved\"")]
    NotObject,
    #[error(
        "bare envelope is not supported: create the changefeed with envelope='wrapped' (the default) so deletes can be told from updates"
    )]
    BareEnvelope,
    #[error("unknown top-level field {0:?}; expected \"payload\", \"length\" or \"resolved\"")]
    UnknownField(String),
    #[error("body has both \"payload\" and \"resolved\"; CockroachDB sends them separately")]
    PayloadAndResolved,
    #[error("\"resolved\" must be a string HLC timestamp")]
    ResolvedNotString,
    #[error("\"resolved\": {0}")]
    ResolvedHlc(HlcError),
    #[error("\"payload\" must be an array of messages")]
    PayloadNotArray,
    #[error("\"length\" must be a non-negative integer")]
    LengthNotInteger,
    #[error("\"length\" is {length} but \"payload\" has {actual} messages; the body is corrupt")]
    LengthMismatch { length: u64, actual: usize },
    #[error("message {index}: {reason}")]
    Message { index: usize, reason: String },
}

impl DecodeError {
    fn message(index: usize, reason: impl Into<String>) -> Self {
        DecodeError::Message { index, reason: reason.into() }
    }
}

/// Decodes the fields every message format shares; `topic` is handled by the caller.
/// Other fields (`before`, `mvcc_timestamp`, …) are ignored.
fn decode_message<'a>(index: usize, fields: &Props<'a>, table: Cow<'a, str>) -> Result<Message<'a>, DecodeError> {
    if fields.get("__crdb__").is_some() {
        return Err(DecodeError::BareEnvelope);
    }
    let hlc = match fields.get("updated") {
        None => {
            return Err(DecodeError::message(index, "no \"updated\" timestamp; create the changefeed WITH updated"));
        }
        Some(raw) => match string_of(raw) {
            Some(text) => Hlc::parse(&text).map_err(|e| DecodeError::message(index, format!("\"updated\": {e}")))?,
            None => return Err(DecodeError::message(index, "\"updated\" must be a string HLC timestamp")),
        },
    };
    if hlc == Hlc::ZERO {
        return Err(DecodeError::message(index, "\"updated\" is the zero timestamp"));
    }
    let (key_text, key) = match fields.get("key") {
        None => return Err(DecodeError::message(index, "no \"key\"; the primary key is required")),
        Some(raw) if raw.get().starts_with('[') => {
            let key: Vec<&RawValue> =
                serde_json::from_str(raw.get()).map_err(|e| DecodeError::message(index, e.to_string()))?;
            if key.is_empty() {
                return Err(DecodeError::message(index, "\"key\" is an empty array"));
            }
            (raw.get(), key)
        }
        Some(_) => return Err(DecodeError::message(index, "\"key\" must be an array of primary-key values")),
    };
    let after = match fields.get("after") {
        None => None,
        Some(raw) if raw.get() == "null" => None,
        Some(raw) => match Props::parse(raw.get()) {
            Ok(Some(props)) => Some((raw, props)),
            _ => return Err(DecodeError::message(index, "\"after\" must be an object or null")),
        },
    };
    Ok(Message { hlc, table, key_text, key, after })
}

/// Parses a JSON object into its properties; `Ok(None)` for a JSON `null`.
fn parse_object(text: &str) -> Result<Option<Props<'_>>, DecodeError> {
    let raw: &RawValue = serde_json::from_str(text).map_err(|e| DecodeError::Json(e.to_string()))?;
    if raw.get() == "null" {
        return Ok(None);
    }
    Props::parse(raw.get()).map_err(|e| DecodeError::Json(e.to_string()))?.ok_or(DecodeError::NotObject).map(Some)
}

fn utf8(bytes: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(bytes).map_err(|e| DecodeError::Json(format!("body is not UTF-8: {e}")))
}
