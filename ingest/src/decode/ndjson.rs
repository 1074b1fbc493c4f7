//! Cloud-storage ndjson files: one message per line, the table taken from the file name (or, for
//! a query feed, from the path).

use super::message::decode_message;
use super::{Body, DecodeError, Feed, Message, parse_object, utf8};

/// Decodes a whole ndjson file of `feed` ([`Feed::File`] or [`Feed::Query`]); the first bad line
/// rejects the file. Blank lines and `\r\n` endings are tolerated; `topic` in a line is ignored.
pub fn decode_ndjson<'a>(bytes: &'a [u8], feed: Feed<'_>) -> Result<Body<'a>, DecodeError> {
    let mut rows: Vec<Message<'a>> = Vec::new();
    let mut phantoms = 0;
    for (index, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let fields = match utf8(line).and_then(parse_object) {
            Ok(Some(fields)) => fields,
            Ok(None) => return Err(DecodeError::message(index, "line must be a JSON object")),
            Err(e) => return Err(DecodeError::message(index, e.to_string())),
        };
        match decode_message(index, &fields, feed)? {
            Some(row) => rows.push(row),
            None => phantoms += 1,
        }
    }
    if rows.is_empty() && phantoms == 0 { Ok(Body::Empty) } else { Ok(Body::Rows { messages: rows, phantoms }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_decode_in_file_order() {
        let file = b"{\"after\": {\"id\": 1}, \"key\": [1], \"updated\": \"2.0000000000\"}\r\n\n{\"after\": null, \"key\": [1], \"updated\": \"3.0000000000\"}\n";
        let Body::Rows { messages: rows, .. } = decode_ndjson(file, Feed::File("t")).unwrap() else { panic!("rows") };
        assert_eq!(rows.len(), 2);
        assert!(rows[0].after.is_some() && rows[1].after.is_none());
    }

    #[test]
    fn a_bad_line_names_its_index() {
        let err = decode_ndjson(b"{\"after\": {}, \"key\": [1]}\n", Feed::File("t")).unwrap_err();
        assert!(err.to_string().starts_with("message 0: no \"updated\""), "{err}");
    }
}
