//! The queue protocol's frames: pure encoding and decoding (fuzzed). See `queue/PROTOCOL.md`.
//!
//! A frame is a big-endian `u32` length of what follows, a type byte, then the fields in order.
//! Integers are big-endian; strings and byte strings are a `u32` length and the bytes; an HLC is
//! its 12-byte key form; an optional HLC is a presence byte (0/1) and then the HLC.

use thiserror::Error;

use crate::batch::{RowBatch, Span};
use crate::bytes::{ByteReader, Truncated};
use crate::record::Partition;
use wharf_base::hlc::{HLC_BYTES, Hlc};

/// Version of the protocol spoken here; the peers must agree exactly.
pub const PROTOCOL_VERSION: u32 = 4;
/// ALPN name of the protocol, so a TLS client of another protocol is refused in the handshake.
pub const ALPN: &[u8] = b"wharf-queue";
/// Largest frame accepted: a chunk is bounded by the reader's byte limit, plus one row that may be
/// as large as the ingest's body limit.
pub const MAX_FRAME: usize = 256 << 20;

/// A row's span in a `Rows` frame: timestamp, table number, key and `after` lengths.
const SPAN_BYTES: usize = HLC_BYTES + 12;

/// Error codes carried by [`Message::Error`].
pub mod code {
    pub const VERSION: u16 = 1;
    pub const NOT_HOLDER: u16 = 2;
    pub const SESSION_EXPIRED: u16 = 3;
    pub const JOURNAL: u16 = 4;
    pub const BAD_REQUEST: u16 = 5;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Hello {
        version: u32,
        name: String,
        workers: u32,
    },
    Welcome {
        version: u32,
        session: u64,
        lease_timeout_ms: u64,
    },
    Acquire {
        worker: u32,
        wait_ms: u32,
    },
    Granted {
        partition: Partition,
        epoch: u64,
        upto: Hlc,
        /// A group's tables; empty for a schema.
        tables: Vec<String>,
    },
    NoWork,
    Open {
        worker: u32,
        partition: Partition,
        epoch: u64,
        after: Hlc,
        upto: Hlc,
        tables: Vec<String>,
    },
    Next {
        max_rows: u32,
        max_bytes: u32,
    },
    Rows {
        complete_through: Option<Hlc>,
        last: bool,
        rows: RowBatch,
    },
    Committed {
        worker: u32,
        partition: Partition,
        epoch: u64,
        checkpoint: Hlc,
        rows: u64,
    },
    Keep {
        keep: bool,
    },
    /// `how`: 0 done, 1 paused for `pause_ms` because of `reason`, 2 fenced at `target_epoch`.
    Release {
        worker: u32,
        partition: Partition,
        epoch: u64,
        how: u8,
        pause_ms: u64,
        reason: String,
        target_epoch: u64,
    },
    Heartbeat,
    Ok,
    StatusRequest,
    Status {
        json: String,
    },
    Error {
        code: u16,
        message: String,
    },
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    #[error("frame is truncated")]
    Truncated,
    #[error("frame of {0} bytes is over the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    #[error("a string in the frame is not UTF-8")]
    NotUtf8,
    #[error("frame has {0} bytes after its last field")]
    Trailing(usize),
    #[error("bad field value in frame: {0}")]
    BadValue(&'static str),
}

impl Message {
    /// The message's name, for logs (never its fields, which a peer chose).
    pub fn type_name(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "Hello",
            Message::Welcome { .. } => "Welcome",
            Message::Acquire { .. } => "Acquire",
            Message::Granted { .. } => "Granted",
            Message::NoWork => "NoWork",
            Message::Open { .. } => "Open",
            Message::Next { .. } => "Next",
            Message::Rows { .. } => "Rows",
            Message::Committed { .. } => "Committed",
            Message::Keep { .. } => "Keep",
            Message::Release { .. } => "Release",
            Message::Heartbeat => "Heartbeat",
            Message::Ok => "Ok",
            Message::StatusRequest => "StatusRequest",
            Message::Status { .. } => "Status",
            Message::Error { .. } => "Error",
        }
    }
}

/// Encodes `message` as one frame, length prefix included.
pub fn encode(message: &Message) -> Vec<u8> {
    let mut w = Writer(vec![0, 0, 0, 0]);
    match message {
        Message::Hello { version, name, workers } => {
            w.u8(1);
            w.u32(*version);
            w.str(name);
            w.u32(*workers);
        }
        Message::Welcome { version, session, lease_timeout_ms } => {
            w.u8(2);
            w.u32(*version);
            w.u64(*session);
            w.u64(*lease_timeout_ms);
        }
        Message::Acquire { worker, wait_ms } => {
            w.u8(3);
            w.u32(*worker);
            w.u32(*wait_ms);
        }
        Message::Granted { partition, epoch, upto, tables } => {
            w.u8(4);
            w.partition(partition);
            w.u64(*epoch);
            w.hlc(*upto);
            w.u32(tables.len() as u32);
            tables.iter().for_each(|t| w.str(t));
        }
        Message::NoWork => w.u8(5),
        Message::Open { worker, partition, epoch, after, upto, tables } => {
            w.u8(6);
            w.u32(*worker);
            w.partition(partition);
            w.u64(*epoch);
            w.hlc(*after);
            w.hlc(*upto);
            w.u32(tables.len() as u32);
            tables.iter().for_each(|t| w.str(t));
        }
        Message::Next { max_rows, max_bytes } => {
            w.u8(7);
            w.u32(*max_rows);
            w.u32(*max_bytes);
        }
        Message::Rows { complete_through, last, rows } => {
            w.u8(8);
            w.opt_hlc(*complete_through);
            w.u8(*last as u8);
            w.rows(rows);
        }
        Message::Committed { worker, partition, epoch, checkpoint, rows } => {
            w.u8(9);
            w.u32(*worker);
            w.partition(partition);
            w.u64(*epoch);
            w.hlc(*checkpoint);
            w.u64(*rows);
        }
        Message::Keep { keep } => {
            w.u8(10);
            w.u8(*keep as u8);
        }
        Message::Release { worker, partition, epoch, how, pause_ms, reason, target_epoch } => {
            w.u8(11);
            w.u32(*worker);
            w.partition(partition);
            w.u64(*epoch);
            w.u8(*how);
            w.u64(*pause_ms);
            w.str(reason);
            w.u64(*target_epoch);
        }
        Message::Heartbeat => w.u8(12),
        Message::Ok => w.u8(13),
        Message::StatusRequest => w.u8(14),
        Message::Status { json } => {
            w.u8(15);
            w.str(json);
        }
        Message::Error { code, message } => {
            w.u8(16);
            w.u16(*code);
            w.str(message);
        }
    }
    let len = (w.0.len() - 4) as u32;
    w.0[..4].copy_from_slice(&len.to_be_bytes());
    w.0
}

/// [`encode`] in two parts, the second being a `Rows` frame's keys and rows: they are handed over
/// as the batch holds them instead of copied behind the rest. Other messages have one part.
pub fn encode_owned(message: Message) -> (Vec<u8>, Option<Vec<u8>>) {
    let Message::Rows { complete_through, last, rows } = message else {
        return (encode(&message), None);
    };
    let (tables, spans, bytes) = rows.into_parts();
    let mut w = Writer(vec![0, 0, 0, 0]);
    w.u8(8);
    w.opt_hlc(complete_through);
    w.u8(last as u8);
    w.rows_head(&tables, &spans, bytes.len());
    let len = (w.0.len() - 4 + bytes.len()) as u32;
    w.0[..4].copy_from_slice(&len.to_be_bytes());
    (w.0, Some(bytes))
}

/// The frame length announced by a 4-byte prefix, checked against [`MAX_FRAME`].
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, WireError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME {
        return Err(WireError::TooLarge(len));
    }
    if len == 0 {
        return Err(WireError::Truncated);
    }
    Ok(len)
}

/// Decodes a frame's body (what follows the length prefix).
pub fn decode(body: &[u8]) -> Result<Message, WireError> {
    if body.len() > MAX_FRAME {
        return Err(WireError::TooLarge(body.len()));
    }
    let mut r = Reader(ByteReader(body));
    let message = match r.u8()? {
        1 => Message::Hello { version: r.u32()?, name: r.session_name()?, workers: r.u32()? },
        2 => Message::Welcome { version: r.u32()?, session: r.u64()?, lease_timeout_ms: r.u64()? },
        3 => Message::Acquire { worker: r.u32()?, wait_ms: r.u32()? },
        4 => {
            let (partition, epoch, upto) = (r.partition()?, r.u64()?, r.hlc()?);
            let count = r.count(2)?;
            let tables = (0..count).map(|_| r.name()).collect::<Result<_, _>>()?;
            Message::Granted { partition, epoch, upto, tables }
        }
        5 => Message::NoWork,
        6 => {
            let (worker, partition, epoch, after, upto) = (r.u32()?, r.partition()?, r.u64()?, r.hlc()?, r.hlc()?);
            let count = r.count(2)?;
            let tables = (0..count).map(|_| r.name()).collect::<Result<_, _>>()?;
            Message::Open { worker, partition, epoch, after, upto, tables }
        }
        7 => Message::Next { max_rows: r.u32()?, max_bytes: r.u32()? },
        8 => {
            let (complete_through, last) = (r.opt_hlc()?, r.bool()?);
            Message::Rows { complete_through, last, rows: r.rows()? }
        }
        9 => Message::Committed {
            worker: r.u32()?,
            partition: r.partition()?,
            epoch: r.u64()?,
            checkpoint: r.hlc()?,
            rows: r.u64()?,
        },
        10 => Message::Keep { keep: r.bool()? },
        11 => Message::Release {
            worker: r.u32()?,
            partition: r.partition()?,
            epoch: r.u64()?,
            how: r.u8()?,
            pause_ms: r.u64()?,
            reason: r.str()?,
            target_epoch: r.u64()?,
        },
        12 => Message::Heartbeat,
        13 => Message::Ok,
        14 => Message::StatusRequest,
        15 => Message::Status { json: r.str()? },
        16 => Message::Error { code: r.u16()?, message: r.str()? },
        other => return Err(WireError::UnknownType(other)),
    };
    if r.0.remaining() > 0 {
        return Err(WireError::Trailing(r.0.remaining()));
    }
    Ok(message)
}

/// [`decode`], except that a `Rows` frame's keys and rows keep `body`'s buffer (moved to its
/// start) instead of being copied out of it; `body` is then left empty.
pub fn decode_owned(body: &mut Vec<u8>) -> Result<Message, WireError> {
    if body.first() != Some(&8) || body.len() > MAX_FRAME {
        return decode(body);
    }
    let (complete_through, last, tables, spans, rows_at, trailing) = {
        let mut r = Reader(ByteReader(&body[1..]));
        let (complete_through, last) = (r.opt_hlc()?, r.bool()?);
        let (tables, spans, bytes) = r.rows_parts()?;
        let trailing = r.0.remaining();
        (complete_through, last, tables, spans, body.len() - trailing - bytes.len()..body.len() - trailing, trailing)
    };
    let mut bytes = std::mem::take(body);
    let len = rows_at.len();
    bytes.copy_within(rows_at, 0);
    bytes.truncate(len);
    // In `decode`'s order: the rows are checked before what follows them.
    let rows = batch(tables, spans, bytes)?;
    if trailing > 0 {
        return Err(WireError::Trailing(trailing));
    }
    Ok(Message::Rows { complete_through, last, rows })
}

const BAD_ROWS: WireError = WireError::BadValue("rows that do not fit their bytes");

fn batch(tables: Vec<String>, spans: Vec<Span>, bytes: Vec<u8>) -> Result<RowBatch, WireError> {
    RowBatch::from_parts(tables, spans, bytes).map_err(|_| BAD_ROWS)
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
    }
    fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    fn hlc(&mut self, v: Hlc) {
        self.0.extend_from_slice(&v.to_bytes());
    }
    fn opt_hlc(&mut self, v: Option<Hlc>) {
        match v {
            Some(h) => {
                self.u8(1);
                self.hlc(h);
            }
            None => self.u8(0),
        }
    }
    fn partition(&mut self, p: &Partition) {
        self.str(&p.database);
        self.str(&p.schema);
        match &p.group {
            Some(group) => {
                self.u8(1);
                self.str(group);
            }
            None => self.u8(0),
        }
    }
    /// Table names, then each row's span, then the bytes of every key and `after`.
    fn rows(&mut self, rows: &RowBatch) {
        let (tables, spans, bytes) = rows.parts();
        self.rows_head(tables, spans, bytes.len());
        self.0.extend_from_slice(bytes);
    }
    /// All of [`Writer::rows`] but the bytes themselves.
    fn rows_head(&mut self, tables: &[String], spans: &[Span], bytes: usize) {
        self.u32(tables.len() as u32);
        tables.iter().for_each(|t| self.str(t));
        self.u32(spans.len() as u32);
        self.0.reserve(spans.len() * SPAN_BYTES);
        for span in spans {
            self.hlc(span.hlc);
            self.u32(span.table);
            self.u32(span.key_len);
            self.u32(span.after_len);
        }
        self.u32(bytes as u32);
    }
}

/// The frame decoder's reads: a short one is a truncated frame.
struct Reader<'a>(ByteReader<'a>);

impl From<Truncated> for WireError {
    fn from(_: Truncated) -> Self {
        WireError::Truncated
    }
}

/// A `Rows` frame's tables, spans and bytes, the bytes still in the frame.
type RowsParts<'a> = (Vec<String>, Vec<Span>, &'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        Ok(self.0.take(n)?)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.0.u8()?)
    }
    fn bool(&mut self) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(WireError::BadValue("boolean")),
        }
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(self.0.u16()?)
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(self.0.u32()?)
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(self.0.u64()?)
    }
    /// A count of items that each take at least `min_item` bytes: refused if it cannot fit, so a
    /// forged count never makes the reader allocate.
    fn count(&mut self, min_item: usize) -> Result<usize, WireError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item) > self.0.remaining() {
            return Err(WireError::Truncated);
        }
        Ok(n)
    }
    fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn str(&mut self) -> Result<String, WireError> {
        std::str::from_utf8(self.bytes()?).map(str::to_owned).map_err(|_| WireError::NotUtf8)
    }
    fn hlc(&mut self) -> Result<Hlc, WireError> {
        Hlc::from_bytes(self.take(HLC_BYTES)?).ok_or(WireError::Truncated)
    }
    fn opt_hlc(&mut self) -> Result<Option<Hlc>, WireError> {
        Ok(if self.bool()? { Some(self.hlc()?) } else { None })
    }
    fn partition(&mut self) -> Result<Partition, WireError> {
        let schema = Partition::new(self.name()?, self.name()?);
        Ok(if self.bool()? { schema.group(self.name()?) } else { schema })
    }
    /// A session's name (logged and shown by status): at most 255 bytes.
    fn session_name(&mut self) -> Result<String, WireError> {
        let name = self.str()?;
        if name.len() > 255 {
            return Err(WireError::BadValue("a session name longer than 255 bytes"));
        }
        Ok(name)
    }
    /// A database, schema or table name: no longer than PostgreSQL allows.
    fn name(&mut self) -> Result<String, WireError> {
        let name = self.str()?;
        if name.len() > crate::record::MAX_NAME_BYTES {
            return Err(WireError::BadValue("a name longer than 63 bytes"));
        }
        Ok(name)
    }
    fn rows(&mut self) -> Result<RowBatch, WireError> {
        let (tables, spans, bytes) = self.rows_parts()?;
        batch(tables, spans, bytes.to_vec())
    }
    /// A `Rows` frame's tables, spans and (still borrowed) bytes.
    fn rows_parts(&mut self) -> Result<RowsParts<'a>, WireError> {
        let count = self.count(4)?;
        let tables = (0..count).map(|_| self.name()).collect::<Result<_, _>>()?;
        let count = self.count(SPAN_BYTES)?;
        // Sized up front: collecting through `Result` would grow it by doubling.
        let mut spans = Vec::with_capacity(count);
        for _ in 0..count {
            spans.push(Span { hlc: self.hlc()?, table: self.u32()?, key_len: self.u32()?, after_len: self.u32()? });
        }
        Ok((tables, spans, self.bytes()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Row;

    fn p() -> Partition {
        Partition::new("app", "public")
    }

    fn every_message() -> Vec<Message> {
        let row = Row { hlc: Hlc::new(5, 1), table: "t".into(), key: b"[1]".to_vec(), after: Some(b"{}".to_vec()) };
        let gone = Row { after: None, table: "u".into(), ..row.clone() };
        vec![
            Message::Hello { version: 1, name: "w".into(), workers: 4 },
            Message::Welcome { version: 1, session: 9, lease_timeout_ms: 10_000 },
            Message::Acquire { worker: 2, wait_ms: 1000 },
            Message::Granted { partition: p(), epoch: 3, upto: Hlc::new(9, 0), tables: vec![] },
            Message::Granted {
                partition: p().group("orders"),
                epoch: 3,
                upto: Hlc::new(9, 0),
                tables: vec!["customers".into(), "orders".into()],
            },
            Message::NoWork,
            Message::Open {
                worker: 1,
                partition: p(),
                epoch: 3,
                after: Hlc::ZERO,
                upto: Hlc::new(9, 0),
                tables: vec!["a".into(), "b".into()],
            },
            Message::Next { max_rows: 10, max_bytes: 100 },
            Message::Rows {
                complete_through: Some(Hlc::new(5, 1)),
                last: false,
                rows: [row, gone].into_iter().collect(),
            },
            Message::Rows { complete_through: None, last: true, rows: RowBatch::new() },
            Message::Committed { worker: 1, partition: p(), epoch: 3, checkpoint: Hlc::new(9, 0), rows: 2 },
            Message::Keep { keep: true },
            Message::Release {
                worker: 1,
                partition: p(),
                epoch: 3,
                how: 1,
                pause_ms: 60_000,
                reason: "x".into(),
                target_epoch: 0,
            },
            Message::Heartbeat,
            Message::Ok,
            Message::StatusRequest,
            Message::Status { json: "{}".into() },
            Message::Error { code: code::VERSION, message: "no".into() },
        ]
    }

    /// [`decode`], checked to agree with [`decode_owned`].
    fn both(body: &[u8]) -> Result<Message, WireError> {
        let mut owned = body.to_vec();
        let decoded = decode(body);
        assert_eq!(decode_owned(&mut owned), decoded, "decode_owned disagrees on {body:?}");
        if let Ok(Message::Rows { .. }) = decoded {
            assert!(owned.is_empty(), "the rows took the buffer");
        }
        decoded
    }

    #[test]
    fn every_message_round_trips() {
        for message in every_message() {
            let frame = encode(&message);
            let len = frame_len(frame[..4].try_into().unwrap()).unwrap();
            assert_eq!(len, frame.len() - 4);
            assert_eq!(both(&frame[4..]), Ok(message.clone()));
            let (mut head, tail) = encode_owned(message);
            head.extend(tail.unwrap_or_default());
            assert_eq!(head, frame);
        }
    }

    #[test]
    fn truncated_and_padded_frames_are_refused() {
        for message in every_message() {
            let frame = encode(&message);
            for cut in 4..frame.len() {
                assert!(both(&frame[4..cut]).is_err(), "{message:?} cut at {cut}");
            }
            let mut padded = frame[4..].to_vec();
            padded.push(0);
            assert_eq!(both(&padded), Err(WireError::Trailing(1)));
        }
    }

    #[test]
    fn forged_counts_and_lengths_do_not_allocate() {
        let mut body = vec![8, 0, 0];
        body.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(both(&body), Err(WireError::Truncated));
        assert_eq!(frame_len((MAX_FRAME as u32 + 1).to_be_bytes()), Err(WireError::TooLarge(MAX_FRAME + 1)));
    }

    #[test]
    fn the_fuzz_seed_of_a_rows_frame_is_one() {
        let seed = include_bytes!("../../fuzz/seeds/queue_frame/rows");
        let Ok(Message::Rows { complete_through, last, rows }) = decode(seed) else { panic!("not a Rows frame") };
        let wall = 0x180b_7c58_3871_4000;
        assert_eq!((complete_through, last), (Some(Hlc::new(wall, 0)), false));
        let child = Row {
            hlc: Hlc::new(wall, 0),
            table: "child".into(),
            key: b"[1]".to_vec(),
            after: Some(br#"{"id":1}"#.to_vec()),
        };
        let parent = Row { table: "parent".into(), key: b"[2]".to_vec(), after: None, ..child.clone() };
        assert_eq!(rows.to_rows(), [child, parent]);
    }

    #[test]
    fn rows_that_do_not_fit_their_bytes_are_refused() {
        let row = Row { hlc: Hlc::new(5, 1), table: "t".into(), key: b"[1]".to_vec(), after: Some(b"{}".to_vec()) };
        let frame = encode(&Message::Rows { complete_through: None, last: true, rows: [row].into_iter().collect() });
        // The key length, 3, is the last span field but one: say 4 instead.
        let mut body = frame[4..].to_vec();
        let key_len_at = body.len() - 4 - 5 - 4 - 4;
        assert_eq!(body[key_len_at..key_len_at + 4], 3u32.to_be_bytes());
        body[key_len_at + 3] = 4;
        assert_eq!(both(&body), Err(WireError::BadValue("rows that do not fit their bytes")));
        // With bytes after it too, both decoders name the rows first (found by fuzzing).
        body.extend([0, 0]);
        assert_eq!(both(&body), Err(WireError::BadValue("rows that do not fit their bytes")));
        // A table number past the table list.
        let mut body = frame[4..].to_vec();
        body[key_len_at - 1] = 1;
        assert_eq!(both(&body), Err(WireError::BadValue("rows that do not fit their bytes")));
    }
}
