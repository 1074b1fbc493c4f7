//! Request paths, as CockroachDB's webhook and cloud-storage sinks build them.
//!
//! - `/{db}/{schema}`: a table feed's webhook bodies (rows or resolved).
//! - `/{db}/{schema}/{table}`: a CDC-query feed's webhook bodies, all for `table`.
//! - `/{db}/{schema}/{YYYY-MM-DD}/{TS33-…-TOPIC-SCHEMAID}.ndjson`: a cloud-storage data file
//!   (`.ndjson.gz` and `.ndjson.zst` when the changefeed compresses).
//! - `/{db}/{schema}/{YYYY-MM-DD}/{TS33}.RESOLVED`: a cloud-storage resolved marker (body ignored).
//! - The same files under `/{YYYY-MM-DD}/{HH}/` (`partition_format = 'hourly'`) or directly under
//!   `/{db}/{schema}/` (`partition_format = 'flat'`; a file name starts with 33 digits, which no
//!   table name of a query feed's `/{db}/{schema}/{table}` does).
//! - A query feed's files: the same under `/{db}/{schema}/{table}/` (a table named like a date or
//!   a file is taken for one).
//! - `/_/livez`, `/_/readyz`, `/_/healthz` (as readyz) and `/_/varz` (metrics): [`Ops`]; anything
//!   else under `/_/` is reserved.
//!
//! Empty segments are ignored (`/db//schema/` is `/db/schema`); segments are percent-decoded.

use wharf_queue::{Hlc, Partition};

use crate::decode::compressed::Encoding;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Ops(Ops),
    /// Webhook bodies; `query` is the table of a CDC-query feed.
    Webhook {
        partition: Partition,
        query: Option<String>,
    },
    /// A data file for `table`; `query` says the path named it (a query feed), not the file.
    NdjsonFile {
        partition: Partition,
        table: String,
        query: bool,
        encoding: Encoding,
    },
    ResolvedFile {
        partition: Partition,
        hlc: Hlc,
    },
}

/// The operator's endpoints (no token needed; nothing secret in them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ops {
    /// The process runs and a restart would not help (the journal has no fatal fault).
    Live,
    /// Ready for changefeed traffic: journal writable, target answering, nothing stalled.
    Ready,
    /// The MOLT-compatible name of [`Ops::Ready`].
    Health,
    Metrics,
}

impl Ops {
    pub fn parse(path: &str) -> Option<Ops> {
        match path {
            "/_/livez" => Some(Ops::Live),
            "/_/readyz" => Some(Ops::Ready),
            "/_/healthz" => Some(Ops::Health),
            "/_/varz" => Some(Ops::Metrics),
            _ => None,
        }
    }
}

/// Why a path matches no route (HTTP 404).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoRoute(pub &'static str);

pub fn parse_route(path: &str) -> Result<Route, NoRoute> {
    if let Some(ops) = Ops::parse(path) {
        return Ok(Route::Ops(ops));
    }
    if path.starts_with("/_/") {
        return Err(NoRoute("the /_/ namespace is reserved"));
    }
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect::<Option<_>>()
        .ok_or(NoRoute("path is not valid percent-encoded UTF-8"))?;
    let p = |db: &str, schema: &str| Partition::new(db, schema);
    match segments.as_slice() {
        [db, schema] => Ok(Route::Webhook { partition: p(db, schema), query: None }),
        [db, schema, file] if is_file_name(file) => file_route(p(db, schema), None, file),
        [db, schema, table] => Ok(Route::Webhook { partition: p(db, schema), query: Some(table.clone()) }),
        [db, schema, day, file] if is_date(day) => file_route(p(db, schema), None, file),
        [db, schema, day, hour, file] if is_date(day) && is_hour(hour) => file_route(p(db, schema), None, file),
        [db, schema, table, file] if is_file_name(file) => file_route(p(db, schema), Some(table), file),
        [db, schema, table, day, file] if is_date(day) => file_route(p(db, schema), Some(table), file),
        [db, schema, table, day, hour, file] if is_date(day) && is_hour(hour) => {
            file_route(p(db, schema), Some(table), file)
        }
        _ => Err(NoRoute(
            "expected /{database}/{schema} (table feeds), /{database}/{schema}/{table} (query feeds) or a cloud-storage file path under either",
        )),
    }
}

fn file_route(partition: Partition, query: Option<&String>, file: &str) -> Result<Route, NoRoute> {
    if let Some(stamp) = file.strip_suffix(".RESOLVED") {
        let hlc = Hlc::parse_file_name(stamp).map_err(|_| NoRoute("RESOLVED file name is not a 33-digit timestamp"))?;
        return Ok(Route::ResolvedFile { partition, hlc });
    }
    let (file, encoding) = Encoding::from_file_name(file);
    let stem = file
        .strip_suffix(".ndjson")
        .ok_or(NoRoute("only .ndjson files (also .ndjson.gz and .ndjson.zst) and .RESOLVED files are accepted"))?;
    let topic = topic_of_file_stem(stem)
        .ok_or(NoRoute("ndjson file name is not TS-SESSION-NODE-SINK-FILEID-TOPIC-SCHEMAID"))?;
    Ok(match query {
        Some(table) => Route::NdjsonFile { partition, table: table.clone(), query: true, encoding },
        None => Route::NdjsonFile { partition, table: topic, query: false, encoding },
    })
}

/// `TS33-SESSION-NODE-SINK-FILEID-TOPIC-SCHEMAID`: the topic may itself contain dashes.
fn topic_of_file_stem(stem: &str) -> Option<String> {
    let mut parts = stem.splitn(6, '-');
    let stamp = parts.next()?;
    if stamp.len() != 33 || !stamp.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    for _ in 0..4 {
        parts.next().filter(|p| !p.is_empty())?;
    }
    let (topic, schema_id) = parts.next()?.rsplit_once('-')?;
    if topic.is_empty() || schema_id.is_empty() {
        return None;
    }
    let topic = topic.rsplit('.').next().unwrap_or(topic);
    // Column families are written as `table+family`.
    Some(topic.split('+').next().unwrap_or(topic).to_owned())
}

/// A cloud-storage file name: its 33-digit timestamp, then `-` (a data file) or `.` (`.RESOLVED`).
fn is_file_name(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() > 34 && b[..33].iter().all(u8::is_ascii_digit) && (b[33] == b'-' || b[33] == b'.')
}

/// `00` to `23`, the hour directory of `partition_format = 'hourly'`.
fn is_hour(text: &str) -> bool {
    text.len() == 2 && text.parse::<u8>().is_ok_and(|h| h < 24)
}

fn is_date(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// Decodes `%XX` escapes (and, for query strings, `+` as a space); `None` if the result is not
/// UTF-8 or an escape is broken.
pub(crate) fn percent_decode_with(text: &str, plus_is_space: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Path segments keep `+` (a column-family topic is `table+family`).
fn percent_decode(segment: &str) -> Option<String> {
    percent_decode_with(segment, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_paths_ignore_empty_segments() {
        for path in ["/db/sch", "/db/sch/", "/db///sch/"] {
            assert_eq!(parse_route(path), Ok(Route::Webhook { partition: Partition::new("db", "sch"), query: None }));
        }
        assert_eq!(
            parse_route("/d%C3%A9j%C3%A0/s"),
            Ok(Route::Webhook { partition: Partition::new("déjà", "s"), query: None })
        );
    }

    #[test]
    fn cloud_storage_files_route_by_name() {
        let p = Partition::new("db", "sch");
        assert_eq!(
            parse_route(
                "/db/sch/2020-04-02/202004022058072107140000000000000-56087568dba1e6b8-1-72-00000000-REAL-42-1.ndjson"
            ),
            Ok(Route::NdjsonFile {
                partition: p.clone(),
                table: "REAL-42".into(),
                query: false,
                encoding: Encoding::Identity
            })
        );
        assert_eq!(
            parse_route(
                "/db/sch/2024-11-26/202411261000000000000000000000000-4f1e2d3c4b5a6978-1-7-00000001-orders-1.ndjson"
            ),
            Ok(Route::NdjsonFile {
                partition: p.clone(),
                table: "orders".into(),
                query: false,
                encoding: Encoding::Identity
            })
        );
        // Hourly and flat layouts name the same files.
        let name = "202411261000040000000000000000000-8f3c2a1b4d5e6f70-1-3-0000000a-orders-2.ndjson";
        for path in [format!("/db/sch/2024-11-26/10/{name}"), format!("/db/sch/{name}")] {
            assert_eq!(
                parse_route(&path),
                Ok(Route::NdjsonFile {
                    partition: p.clone(),
                    table: "orders".into(),
                    query: false,
                    encoding: Encoding::Identity
                }),
                "{path}"
            );
        }
        let resolved = Hlc::parse_file_name("202411261000300000000000000000000").unwrap();
        for path in [
            "/db/sch/2024-11-26/10/202411261000300000000000000000000.RESOLVED",
            "/db/sch/202411261000300000000000000000000.RESOLVED",
        ] {
            assert_eq!(parse_route(path), Ok(Route::ResolvedFile { partition: p.clone(), hlc: resolved }), "{path}");
        }
        for (suffix, encoding) in [("gz", Encoding::Gzip), ("zst", Encoding::Zstd)] {
            assert_eq!(
                parse_route(&format!(
                    "/db/sch/2024-11-26/202411261000000000000000000000000-4f1e2d3c4b5a6978-1-7-00000001-orders-1.ndjson.{suffix}"
                )),
                Ok(Route::NdjsonFile { partition: p.clone(), table: "orders".into(), query: false, encoding })
            );
        }
        assert_eq!(
            parse_route("/db/sch/2020-04-04/202004042351304139680000000000000.RESOLVED"),
            Ok(Route::ResolvedFile { partition: p, hlc: Hlc::parse("1586044290413968000.0000000000").unwrap() })
        );
    }

    #[test]
    fn query_feeds_name_their_table_in_the_path() {
        let p = Partition::new("db", "sch");
        assert_eq!(
            parse_route("/db/sch/vehicles"),
            Ok(Route::Webhook { partition: p.clone(), query: Some("vehicles".into()) })
        );
        let name = "202411261000040000000000000000000-8f3c2a1b4d5e6f70-1-3-0000000a-other-2.ndjson.gz";
        for path in [
            format!("/db/sch/vehicles/{name}"),
            format!("/db/sch/vehicles/2024-11-26/{name}"),
            format!("/db/sch/vehicles/2024-11-26/10/{name}"),
        ] {
            assert_eq!(
                parse_route(&path),
                Ok(Route::NdjsonFile {
                    partition: p.clone(),
                    table: "vehicles".into(),
                    query: true,
                    encoding: Encoding::Gzip
                }),
                "{path}"
            );
        }
        let resolved = Hlc::parse_file_name("202411261000300000000000000000000").unwrap();
        assert_eq!(
            parse_route("/db/sch/vehicles/2024-11-26/202411261000300000000000000000000.RESOLVED"),
            Ok(Route::ResolvedFile { partition: p, hlc: resolved })
        );
    }

    #[test]
    fn other_paths_match_nothing() {
        for path in [
            "/",
            "/sch",
            "/db/sch/too/much/x",
            "/_/diag",
            "/db/sch/2020-04-04/x.ndjson.gz",
            "/db/sch/2020-04-04/202004022058072107140000000000000-56087568dba1e6b8-1-72-00000000-REAL-42-1.csv.gz",
            "/db/sch/2020-04-04/1.RESOLVED",
            "/db/sch/2024-11-26/24/202411261000300000000000000000000.RESOLVED",
            "/db/sch/2024-11-26/1/202411261000300000000000000000000.RESOLVED",
            "/db/sch/2024-11-26/10/extra/202411261000300000000000000000000.RESOLVED",
        ] {
            assert!(parse_route(path).is_err(), "{path}");
        }
    }
}
