//! JSON values from a changefeed turned into PostgreSQL input text, by column kind. Pure.
//!
//! Every value travels as text and is cast in SQL (`u.c0::numeric(12,2)`), so PostgreSQL's own
//! input functions parse it: exact numerics beyond f64, `NaN`/`Infinity`, `\x…` bytea, intervals,
//! inet, enums, bit strings and timestamps all round-trip without a Rust-side model of each type.

use std::borrow::Cow;

use serde_json::Value;
use serde_json::value::RawValue;

use wharf_base::json::string_of;
use wharf_targetdb::catalog::ColumnKind;

/// The SQL input text of a raw JSON value for a column of `kind`; `None` is SQL NULL.
pub fn sql_text(raw: &RawValue, kind: ColumnKind) -> Option<String> {
    let text = raw.get();
    match (text.as_bytes().first(), kind) {
        (Some(b'n'), _) => None,
        (_, ColumnKind::Json) => Some(text.to_owned()),
        (Some(b'['), ColumnKind::Array) => match serde_json::from_str::<Vec<Value>>(text) {
            Ok(items) => Some(array_literal(&items)),
            Err(_) => Some(text.to_owned()),
        },
        _ => scalar_text(raw).map(Cow::into_owned),
    }
}

/// The input text of a raw JSON value for a scalar column (what [`sql_text`] gives for
/// [`ColumnKind::Scalar`]), borrowed unless the string has escapes; `None` is SQL NULL.
pub fn scalar_text(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'n') => None,
        Some(b'"') => string_of(raw),
        _ => Some(Cow::Borrowed(text)),
    }
}

/// A PostgreSQL array literal: `{1,NULL,"b,c"}`. Strings are always quoted and escaped.
pub fn array_literal(items: &[Value]) -> String {
    let mut out = String::from("{");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match item {
            Value::Null => out.push_str("NULL"),
            Value::Array(inner) => out.push_str(&array_literal(inner)),
            Value::String(s) => push_quoted(&mut out, s),
            Value::Object(_) => push_quoted(&mut out, &item.to_string()),
            Value::Number(n) => out.push_str(&n.to_string()),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        }
    }
    out.push('}');
    out
}

fn push_quoted(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(json: &str, kind: ColumnKind) -> Option<String> {
        sql_text(serde_json::from_str::<&RawValue>(json).unwrap(), kind)
    }

    #[test]
    fn arrays_become_literals_with_nulls_and_quotes() {
        assert_eq!(
            text(r#"["a", "b,c", "", null, "q\"\\"]"#, ColumnKind::Array).unwrap(),
            r#"{"a","b,c","",NULL,"q\"\\"}"#
        );
        assert_eq!(text("[]", ColumnKind::Array).unwrap(), "{}");
        assert_eq!(text("[[1, 2], [3, null]]", ColumnKind::Array).unwrap(), "{{1,2},{3,NULL}}");
    }

    #[test]
    fn numbers_keep_their_digits_and_strings_are_unescaped() {
        assert_eq!(
            text("3.141592653589793238462643383279", ColumnKind::Scalar).unwrap(),
            "3.141592653589793238462643383279"
        );
        assert_eq!(text("5E-324", ColumnKind::Scalar).unwrap(), "5E-324");
        assert_eq!(text(r#""\\x00ff10""#, ColumnKind::Scalar).unwrap(), "\\x00ff10");
        assert_eq!(text(r#""tab\there""#, ColumnKind::Scalar).unwrap(), "tab\there");
    }

    #[test]
    fn json_columns_keep_json_and_null_is_sql_null() {
        assert_eq!(text(r#""x""#, ColumnKind::Json).unwrap(), r#""x""#);
        assert_eq!(text(r#"{"a": [1]}"#, ColumnKind::Json).unwrap(), r#"{"a": [1]}"#);
        assert_eq!(text("null", ColumnKind::Json), None);
    }
}
