//! Cloud-storage ndjson files: one wrapped message per line, the table taken from the file name.

use std::borrow::Cow;

use super::{Body, DecodeError, Message, decode_message, parse_object, utf8};

/// Decodes a whole ndjson file for `table`; the first bad line rejects the file.
/// Blank lines and `\r\n` endings are tolerated; `topic` in a line is ignored.
pub fn decode_ndjson<'a>(bytes: &'a [u8], table: &str) -> Result<Body<'a>, DecodeError> {
    let mut rows: Vec<Message<'a>> = Vec::new();
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
        rows.push(decode_message(index, &fields, Cow::Owned(table.to_owned()))?);
    }
    if rows.is_empty() { Ok(Body::Empty) } else { Ok(Body::Rows(rows)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_decode_in_file_order() {
        let file = b"{\"after\": {\"id\": 1}, \"key\": [1], \"updated\": \"2.0000000000\"}\r\n\n{\"after\": null, \"key\": [1], \"updated\": \"3.0000000000\"}\n";
        let Body::Rows(rows) = decode_ndjson(file, "t").unwrap() else { panic!("rows") };
        assert_eq!(rows.len(), 2);
        assert!(rows[0].after.is_some() && rows[1].after.is_none());
    }

    #[test]
    fn a_bad_line_names_its_index() {
        let err = decode_ndjson(b"{\"after\": {}, \"key\": [1]}\n", "t").unwrap_err();
        assert!(err.to_string().starts_with("message 0: no \"updated\""), "{err}");
    }
}
