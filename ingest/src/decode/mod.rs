//! Request-body decoders: pure functions from bytes to validated messages, no I/O.
//!
//! These are what the fuzz targets and the malformed-input tests call.

mod ndjson;
mod webhook;

pub use ndjson::decode_ndjson;
pub use webhook::decode_webhook;

use serde_json::{Map, Value};
use thiserror::Error;
use wharf_queue::{Hlc, HlcError};

/// One row version as the changefeed sent it, before it is checked against the target catalog.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub hlc: Hlc,
    /// The unqualified table name (the last part of `topic`).
    pub table: String,
    /// The `key` array.
    pub key: Vec<Value>,
    /// The `after` object; `None` for a delete.
    pub after: Option<Map<String, Value>>,
}

/// What a body asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    /// An empty body: CockroachDB never sends one, MOLT Replicator answers 200; so do we.
    Empty,
    Rows(Vec<Message>),
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
fn decode_message(index: usize, mut fields: Map<String, Value>, table: String) -> Result<Message, DecodeError> {
    if fields.contains_key("__crdb__") {
        return Err(DecodeError::BareEnvelope);
    }
    let hlc = match fields.get("updated") {
        None => {
            return Err(DecodeError::message(index, "no \"updated\" timestamp; create the changefeed WITH updated"));
        }
        Some(Value::String(text)) => {
            Hlc::parse(text).map_err(|e| DecodeError::message(index, format!("\"updated\": {e}")))?
        }
        Some(_) => return Err(DecodeError::message(index, "\"updated\" must be a string HLC timestamp")),
    };
    if hlc == Hlc::ZERO {
        return Err(DecodeError::message(index, "\"updated\" is the zero timestamp"));
    }
    let key = match fields.remove("key") {
        Some(Value::Array(key)) if !key.is_empty() => key,
        Some(Value::Array(_)) => return Err(DecodeError::message(index, "\"key\" is an empty array")),
        Some(_) => return Err(DecodeError::message(index, "\"key\" must be an array of primary-key values")),
        None => return Err(DecodeError::message(index, "no \"key\"; the primary key is required")),
    };
    let after = match fields.remove("after") {
        None | Some(Value::Null) => None,
        Some(Value::Object(after)) => Some(after),
        Some(_) => return Err(DecodeError::message(index, "\"after\" must be an object or null")),
    };
    Ok(Message { hlc, table, key, after })
}

fn parse_json(bytes: &[u8]) -> Result<Value, DecodeError> {
    serde_json::from_slice(bytes).map_err(|e| DecodeError::Json(e.to_string()))
}
