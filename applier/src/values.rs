//! JSON values from a changefeed turned into PostgreSQL input text, by column kind. Pure.
//!
//! Every value travels as text and is cast in SQL (`u.c0::numeric(12,2)`), so PostgreSQL's own
//! input functions parse it: exact numerics beyond f64, `NaN`/`Infinity`, `\x…` bytea, intervals,
//! inet, enums, bit strings and timestamps all round-trip without a Rust-side model of each type.

use serde_json::Value;

use crate::catalog::ColumnKind;

/// The SQL input text of `value` for a column of `kind`; `None` is SQL NULL.
pub fn sql_text(value: &Value, kind: ColumnKind) -> Option<String> {
    match (value, kind) {
        (Value::Null, _) => None,
        (_, ColumnKind::Json) => Some(value.to_string()),
        (Value::Array(items), ColumnKind::Array) => Some(array_literal(items)),
        (Value::String(s), _) => Some(s.clone()),
        (Value::Number(n), _) => Some(n.to_string()),
        (Value::Bool(b), _) => Some(b.to_string()),
        (Value::Array(_) | Value::Object(_), _) => Some(value.to_string()),
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
    use serde_json::json;

    #[test]
    fn arrays_become_literals_with_nulls_and_quotes() {
        let v: Value = serde_json::from_str(r#"["a", "b,c", "", null, "q\"\\"]"#).unwrap();
        assert_eq!(sql_text(&v, ColumnKind::Array).unwrap(), r#"{"a","b,c","",NULL,"q\"\\"}"#);
        assert_eq!(sql_text(&json!([]), ColumnKind::Array).unwrap(), "{}");
        assert_eq!(sql_text(&json!([[1, 2], [3, null]]), ColumnKind::Array).unwrap(), "{{1,2},{3,NULL}}");
    }

    #[test]
    fn numbers_keep_their_digits() {
        let v: Value = serde_json::from_str("3.141592653589793238462643383279").unwrap();
        assert_eq!(sql_text(&v, ColumnKind::Scalar).unwrap(), "3.141592653589793238462643383279");
        let v: Value = serde_json::from_str("5E-324").unwrap();
        assert_eq!(sql_text(&v, ColumnKind::Scalar).unwrap(), "5E-324");
    }

    #[test]
    fn json_columns_keep_json_and_null_is_sql_null() {
        assert_eq!(sql_text(&json!("x"), ColumnKind::Json).unwrap(), r#""x""#);
        assert_eq!(sql_text(&json!({"a": [1]}), ColumnKind::Json).unwrap(), r#"{"a":[1]}"#);
        assert_eq!(sql_text(&Value::Null, ColumnKind::Json), None);
    }
}
