//! Splitting a connection string into the parameters wharf handles itself (TLS files, the
//! password file) and the rest, which goes to tokio-postgres unchanged.
//!
//! Both of libpq's forms are read: `postgresql://user@host:port/db?key=value&…` and
//! `host=… port=… key='quoted value'`.

use super::ConnInfoError;

/// Parameters tokio-postgres does not know; wharf reads them itself.
pub const OURS: &[&str] = &["sslmode", "sslrootcert", "sslcert", "sslkey", "passfile"];

/// The connection string without [`OURS`], and the values of those that were present.
#[derive(Debug, PartialEq, Eq)]
pub struct Split {
    pub rest: String,
    pub ours: Vec<(String, String)>,
}

impl Split {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.ours.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

pub fn split(conn: &str) -> Result<Split, ConnInfoError> {
    let trimmed = conn.trim();
    if trimmed.starts_with("postgresql://") || trimmed.starts_with("postgres://") {
        split_url(trimmed)
    } else {
        split_pairs(trimmed)
    }
}

fn split_url(url: &str) -> Result<Split, ConnInfoError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok(Split { rest: url.to_owned(), ours: Vec::new() });
    };
    let mut kept = Vec::new();
    let mut ours = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').ok_or_else(|| ConnInfoError::Syntax(format!("{pair:?} has no '='")))?;
        let key = percent_decode(key)?;
        if OURS.contains(&key.as_str()) {
            ours.push((key, percent_decode(value)?));
        } else {
            kept.push(pair);
        }
    }
    let rest = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    Ok(Split { rest, ours })
}

fn percent_decode(text: &str) -> Result<String, ConnInfoError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            out.push(hex.ok_or_else(|| ConnInfoError::Syntax("a '%' is not followed by two hex digits".into()))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ConnInfoError::Syntax("a percent-encoded value is not UTF-8".into()))
}

fn split_pairs(text: &str) -> Result<Split, ConnInfoError> {
    let mut rest = Vec::new();
    let mut ours = Vec::new();
    for (key, value) in pairs(text)? {
        if OURS.contains(&key.as_str()) {
            ours.push((key, value));
        } else {
            rest.push(format!("{key}='{}'", value.replace('\\', "\\\\").replace('\'', "\\'")));
        }
    }
    Ok(Split { rest: rest.join(" "), ours })
}

/// `key = value` pairs as libpq reads them: values may be single-quoted, `\` escapes one character.
fn pairs(text: &str) -> Result<Vec<(String, String)>, ConnInfoError> {
    let mut chars = text.chars().peekable();
    let mut out = Vec::new();
    loop {
        skip_spaces(&mut chars);
        let Some(_) = chars.peek() else { return Ok(out) };
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        skip_spaces(&mut chars);
        if chars.next() != Some('=') {
            return Err(ConnInfoError::Syntax(format!("{key:?} is not followed by '='")));
        }
        skip_spaces(&mut chars);
        out.push((key.clone(), value(&mut chars, &key)?));
    }
}

fn value(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, key: &str) -> Result<String, ConnInfoError> {
    let quoted = chars.next_if_eq(&'\'').is_some();
    let mut value = String::new();
    loop {
        match chars.next() {
            None if quoted => return Err(ConnInfoError::Syntax(format!("the value of {key:?} has no closing quote"))),
            None => return Ok(value),
            Some('\'') if quoted => return Ok(value),
            Some(c) if c.is_whitespace() && !quoted => return Ok(value),
            Some('\\') => value.extend(chars.next()),
            Some(c) => value.push(c),
        }
    }
}

fn skip_spaces(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while chars.next_if(|c| c.is_whitespace()).is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn url_parameters_of_ours_are_taken_out_and_decoded() {
        let split =
            split("postgresql://u@h:5/db?sslmode=verify-full&connect_timeout=3&sslrootcert=%2Ftmp%2Fca%20x.crt")
                .unwrap();
        assert_eq!(split.rest, "postgresql://u@h:5/db?connect_timeout=3");
        assert_eq!(split.ours, ours(&[("sslmode", "verify-full"), ("sslrootcert", "/tmp/ca x.crt")]));
    }

    #[test]
    fn a_url_with_only_our_parameters_loses_its_question_mark() {
        let split = split("postgres://h/db?sslmode=require").unwrap();
        assert_eq!(split.rest, "postgres://h/db");
        assert_eq!(split.get("sslmode"), Some("require"));
    }

    #[test]
    fn key_value_pairs_keep_quotes_and_escapes() {
        let split = split(r"host=h  port = 5 password='it\'s a \\ secret' sslcert=/c.crt dbname=d").unwrap();
        assert_eq!(split.rest, r"host='h' port='5' password='it\'s a \\ secret' dbname='d'");
        assert_eq!(split.ours, ours(&[("sslcert", "/c.crt")]));
        let parsed: tokio_postgres::Config = split.rest.parse().unwrap();
        assert_eq!(parsed.get_password(), Some(&b"it's a \\ secret"[..]));
    }

    #[test]
    fn syntax_errors_name_the_key_and_never_a_value() {
        let err = split("host=h password='secret").unwrap_err().to_string();
        assert!(err.contains("\"password\"") && !err.contains("secret"), "{err}");
        assert!(split("host").is_err());
        assert!(split("postgresql://h/d?sslmode=%zz").is_err());
    }
}
