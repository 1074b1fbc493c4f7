//! Request-body decoders: pure functions from bytes to validated messages, no I/O.
//!
//! These are what the fuzz targets and the malformed-input tests call; [`compressed`] undoes
//! `gzip` and `zstd` before them.

pub mod compressed;
mod message;
mod ndjson;
mod webhook;

pub use ndjson::decode_ndjson;
pub use webhook::decode_webhook;

use std::borrow::Cow;

use serde_json::value::RawValue;
use thiserror::Error;
use wharf_base::json::Props;
use wharf_queue::{Hlc, HlcError};

/// One row version as the changefeed sent it, borrowed from the request body, before it is
/// checked against the target catalog.
#[derive(Debug)]
pub struct Message<'a> {
    pub hlc: Hlc,
    /// The unqualified table name (the last part of `topic`, the file's table or the query's).
    pub table: Cow<'a, str>,
    pub key: Key<'a>,
    /// The `after` object as sent, with its properties; `None` for a delete.
    pub after: Option<(&'a RawValue, Props<'a>)>,
    /// The `before` object of a query feed's delete, which its key is read from.
    pub before: Option<Props<'a>>,
    /// The Kafka Connect schema of an enriched message sent with `enriched_properties='schema'`.
    pub schema: Option<&'a RawValue>,
}

/// Where a message's primary key is.
#[derive(Debug)]
pub enum Key<'a> {
    /// The `key` array as sent (table feeds), and its elements.
    Array { text: &'a str, values: Vec<&'a RawValue> },
    /// The `key` object of the enriched envelope: primary-key column to value.
    Columns(Props<'a>),
    /// In the row: the target's primary-key columns of `after`, or of `before` for a delete
    /// (query feeds, whose messages need not carry a key).
    Row,
}

/// Which changefeed a body comes from, as its path says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed<'t> {
    /// A table feed's webhook on `/{db}/{schema}`: each message names its table (`topic`, or
    /// `source.table_name` in the enriched envelope).
    Tables,
    /// A table feed's cloud-storage file: its name names the table.
    File(&'t str),
    /// A CDC-query feed (`AS SELECT …`) on `/{db}/{schema}/{table}`, webhook or file: every
    /// message is for the path's table, whatever its `topic` says.
    Query(&'t str),
}

/// What a body asks for.
#[derive(Debug)]
pub enum Body<'a> {
    /// An empty body: CockroachDB never sends one, MOLT Replicator answers 200; so do we.
    Empty,
    /// Row versions, and how many phantom deletes of a query feed (`after` and `before` both
    /// null: a delete of a row the sink never saw) were dropped.
    Rows {
        messages: Vec<Message<'a>>,
        phantoms: usize,
    },
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
        "bare envelope is not supported: create the changefeed with envelope='wrapped' (the default for table feeds; for a query feed add WITH envelope='wrapped', diff) so deletes can be told from updates"
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
