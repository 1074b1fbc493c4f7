//! Borrowed views of changefeed JSON: an object as its properties in order, with raw values, so
//! rows are validated and converted without building a tree of owned values.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A JSON object's properties, in document order, values unparsed.
#[derive(Debug, Default)]
pub struct Props<'a>(pub Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Props<'a> {
    /// Parses `text` as an object; `None` if it is valid JSON but not an object.
    pub fn parse(text: &'a str) -> Result<Option<Props<'a>>, serde_json::Error> {
        if !text.trim_start().starts_with('{') {
            return serde_json::from_str::<&RawValue>(text).map(|_| None);
        }
        serde_json::from_str(text).map(Some)
    }

    pub fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    /// How deeply the object nests arrays and objects: [`nesting_depth`] of its text, counted
    /// from its values so that only the nested ones are scanned again.
    pub fn nesting_depth(&self) -> usize {
        let nested = self.0.iter().map(|(_, v)| v.get()).filter(|text| text.starts_with(['[', '{']));
        1 + nested.map(nesting_depth).max().unwrap_or(0)
    }

    /// Sets `name`, replacing an earlier value of the same name.
    pub fn set(&mut self, name: Cow<'a, str>, value: &'a RawValue) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Props<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PropsVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for PropsVisitor<'a> {
            type Value = Props<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Props<'a>, M::Error> {
                let mut props = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((name, value)) = map.next_entry::<Cow<'a, str>, &'a RawValue>()? {
                    props.push((name, value));
                }
                Ok(Props(props))
            }
        }
        deserializer.deserialize_map(PropsVisitor(std::marker::PhantomData))
    }
}

/// A JSON string's text (unescaped), borrowed when it has no escapes.
pub fn string_of(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    if !text.starts_with('"') {
        return None;
    }
    if !text.contains('\\') {
        return Some(Cow::Borrowed(&text[1..text.len() - 1]));
    }
    serde_json::from_str::<String>(text).ok().map(Cow::Owned)
}

/// Deepest nesting of arrays and objects accepted in a key element or a row's `after` value.
/// serde_json refuses to build values nested deeper than 128, and the applier builds them for
/// keys and rows, so ingest refuses anything deeper than this with a 400 before journaling it;
/// no SQL column type needs more.
pub const MAX_NESTING: usize = 64;

/// How deeply valid JSON `text` nests arrays and objects (0 for a scalar). Iterative: a hostile
/// document cannot exhaust the stack.
pub fn nesting_depth(text: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in text.as_bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// A key element nested deeper than [`MAX_NESTING`].
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("key element nested {depth} levels deep; at most {MAX_NESTING} are accepted")]
pub struct TooDeep {
    pub depth: usize,
}

/// Longest primary key accepted, as canonical JSON. A window's merge holds one key per run it
/// reads and compares keys per row; 4 KiB is far above any real primary key and keeps that small.
pub const MAX_KEY_BYTES: usize = 4096;

/// The canonical bytes of a key array, so the same key always has the same journal identity
/// whatever spacing or string escaping the sending CockroachDB version used. `text` is the array
/// as sent and `elements` its elements; a compact array without escapes is its own canonical form
/// and is borrowed.
pub fn canonical_key<'a>(text: &'a str, elements: &[&RawValue]) -> Result<Cow<'a, [u8]>, TooDeep> {
    for element in elements.iter().map(|e| e.get()).filter(|e| e.starts_with(['[', '{'])) {
        let depth = nesting_depth(element);
        if depth > MAX_NESTING {
            return Err(TooDeep { depth });
        }
    }
    let needs_rewrite = |text: &str| text.contains(['\\', ' ', '\n', '\t', '\r']);
    if !needs_rewrite(text) {
        return Ok(Cow::Borrowed(text.as_bytes()));
    }
    let mut out = Vec::with_capacity(text.len());
    out.push(b'[');
    for (i, element) in elements.iter().map(|e| e.get()).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if needs_rewrite(element) {
            // Within the nesting limit a RawValue always parses and prints; the error arms are
            // never taken, and a request handler must not panic if they were.
            let too_deep = |_| TooDeep { depth: nesting_depth(element) };
            let value: serde_json::Value = serde_json::from_str(element).map_err(too_deep)?;
            serde_json::to_writer(&mut out, &value).map_err(too_deep)?;
        } else {
            out.extend_from_slice(element.as_bytes());
        }
    }
    out.push(b']');
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_keep_order_and_raw_values() {
        let props = Props::parse(r#"{"b": 1.50, "a\u0041": "x\ny", "c": [1, null]}"#).unwrap().unwrap();
        let names: Vec<&str> = props.0.iter().map(|(n, _)| n.as_ref()).collect();
        assert_eq!(names, ["b", "aA", "c"]);
        assert_eq!(props.get("b").unwrap().get(), "1.50");
        assert_eq!(string_of(props.get("aA").unwrap()).unwrap(), "x\ny");
        assert!(Props::parse("[1]").unwrap().is_none());
    }

    #[test]
    fn an_objects_depth_counted_from_its_values_is_its_texts_depth() {
        for text in [
            r#"{}"#,
            r#"{"a": 1, "b": "[{"}"#,
            r#"{"a": [1, {"b": [[]]}], "c": {"d": {}}}"#,
            r#"{"a": "}", "b": [[["\"]"]]]}"#,
        ] {
            let props = Props::parse(text).unwrap().unwrap();
            assert_eq!(props.nesting_depth(), nesting_depth(text), "{text}");
        }
    }

    #[test]
    fn keys_are_canonical_across_sender_formats() {
        let key = |text: &'static str| {
            let elements: Vec<&RawValue> = serde_json::from_str(text).unwrap();
            canonical_key(text, &elements).map(Cow::into_owned)
        };
        assert_eq!(key(r#"[1, "a<b", 2.50]"#), key(r#"[1,"a\u003cb",2.50]"#));
        assert_eq!(key(r#"[1, "a<b", 2.50]"#).unwrap(), br#"[1,"a<b",2.50]"#);
        let compact = r#"[1,"a<b",{"c":[2]}]"#;
        let elements: Vec<&RawValue> = serde_json::from_str(compact).unwrap();
        assert!(matches!(canonical_key(compact, &elements), Ok(Cow::Borrowed(b)) if b == compact.as_bytes()));
    }

    #[test]
    fn nesting_is_counted_outside_strings_and_deep_keys_are_refused_not_panicked_on() {
        assert_eq!(nesting_depth("1"), 0);
        assert_eq!(nesting_depth(r#"{"a": [1, {"b": "[[[\"]]]"}]}"#), 3);
        for spacing in ["", " "] {
            let deep = format!("[{}1{spacing}{}]", "[".repeat(200), "]".repeat(200));
            let elements: Vec<&RawValue> = serde_json::from_str(&deep).unwrap();
            assert_eq!(canonical_key(&deep, &elements), Err(TooDeep { depth: 200 }));
            let ok = format!("[{}1{spacing}{}]", "[".repeat(MAX_NESTING), "]".repeat(MAX_NESTING));
            let elements: Vec<&RawValue> = serde_json::from_str(&ok).unwrap();
            assert_eq!(canonical_key(&ok, &elements).unwrap().len(), 2 * MAX_NESTING + 3);
        }
    }
}
