//! Compressed changefeed traffic over a real port: gzip and zstd webhook bodies and cloud-storage
//! files apply exactly as plain ones; encodings we do not speak get 415, damaged data 400, a bomb
//! 413, and none of them journals anything.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{Ingest, QueuePki, Target, journal_only, request_with, strs, wait_for};

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 1).unwrap()
}

fn rows(first: u64, count: u64, at: u64) -> String {
    let messages: Vec<String> = (first..first + count)
        .map(|k| format!(r#"{{"after": {{"k": {k}, "v": "v{k}"}}, "key": [{k}], "topic": "kv_bare", "updated": "{at}.0000000000"}}"#))
        .collect();
    format!(r#"{{"payload":[{}],"length":{count}}}"#, messages.join(","))
}

fn post(port: u16, path: &str, encoding: Option<&str>, body: &[u8]) -> (u16, String) {
    let headers: Vec<(&str, &str)> = encoding.iter().map(|e| ("Content-Encoding", *e)).collect();
    request_with(port, "POST", path, &headers, body).unwrap()
}

const T: u64 = 1_732_615_200_000_000_000;

/// A refused request: what it is, its `Content-Encoding`, its body, the status and what the
/// answer says.
type Case = (&'static str, Option<&'static str>, Vec<u8>, u16, &'static str);

#[test]
fn gzip_and_zstd_bodies_and_files_in_every_layout_apply_exactly_as_plain_ones() {
    let target = Target::start();
    let journal = tempfile::tempdir().unwrap();
    let ingest = Ingest::start(&target.url(), journal.path(), &[]);
    let port = ingest.port;
    assert_eq!(post(port, "/app/public", Some("gzip"), &gzip(rows(1, 3, T).as_bytes())).0, 200);
    assert_eq!(post(port, "/app/public", Some("ZSTD"), &zstd(rows(4, 3, T + 1).as_bytes())).0, 200);
    // Two gzip members in one body, as a parallel encoder may write them.
    let mut members = gzip(br#"{"payload":[{"after": {"k": 7, "v": "v7"}, "key": [7], "topic": "kv_bare", "#);
    members.extend(gzip(format!(r#""updated": "{}.0000000000"}}],"length":1}}"#, T + 2).as_bytes()));
    assert_eq!(post(port, "/app/public", Some("gzip"), &members).0, 200);
    // Cloud-storage files, compressed by name, in the daily, hourly and flat layouts.
    let line = |k: u64, at: u64| {
        format!(r#"{{"after": {{"k": {k}, "v": "v{k}"}}, "key": [{k}], "updated": "{at}.0000000000"}}"#)
    };
    let name = "202411261000000000000000000000000-4f1e2d3c4b5a6978-1-7-00000001-kv_bare-1.ndjson";
    let daily = format!("/app/public/2024-11-26/{name}.gz");
    assert_eq!(post(port, &daily, None, &gzip(format!("{}\n{}\n", line(8, T + 3), line(9, T + 3)).as_bytes())).0, 200);
    let hourly = format!("/app/public/2024-11-26/10/{name}.zst");
    assert_eq!(post(port, &hourly, None, &zstd(format!("{}\n", line(10, T + 4)).as_bytes())).0, 200);
    let flat = format!("/app/public/{name}");
    assert_eq!(post(port, &flat, None, format!("{}\n", line(11, T + 5)).as_bytes()).0, 200);
    // A compressed resolved timestamp.
    let resolved = format!(r#"{{"resolved":"{}.0000000000"}}"#, T + 10);
    assert_eq!(post(port, "/app/public", Some("gzip"), &gzip(resolved.as_bytes())).0, 200);
    wait_for("the rows to be applied", Duration::from_secs(60), || {
        target.query("SELECT count(*)::text FROM public.kv_bare")[0][0].as_deref() == Some("11")
    });
    let applied = target.query("SELECT string_agg(k || '=' || v, ',' ORDER BY k) FROM public.kv_bare");
    assert_eq!(applied[0][0].as_deref(), Some("1=v1,2=v2,3=v3,4=v4,5=v5,6=v6,7=v7,8=v8,9=v9,10=v10,11=v11"));
}

#[test]
fn unknown_encodings_damage_and_bombs_are_refused_and_nothing_is_journaled() {
    let target = Target::start();
    let journal = tempfile::tempdir().unwrap();
    let pki = QueuePki::new();
    let ingest = Ingest::start(
        &target.url(),
        journal.path(),
        &[&["--bodyLimit", "1MiB"][..], &strs(&journal_only(&pki))].concat(),
    );
    let port = ingest.port;
    let body = rows(1, 2, T);
    let plain = body.as_bytes();
    let before = ingest.child.rss_mib().unwrap();
    // A few KiB that inflate to 256 MiB of JSON whitespace.
    let mut bomb_text = vec![b' '; 256 << 20];
    bomb_text.extend_from_slice(plain);
    let bomb = gzip(&bomb_text);
    drop(bomb_text);
    assert!(bomb.len() < 512 << 10, "the bomb is {} bytes", bomb.len());
    let truncated = gzip(plain);
    let cases: Vec<Case> = vec![
        ("brotli", Some("br"), plain.to_vec(), 415, "use one of gzip, zstd"),
        ("deflate", Some("deflate"), plain.to_vec(), 415, "use one of gzip, zstd"),
        ("stacked", Some("gzip, gzip"), gzip(&gzip(plain)), 415, "stacks encodings"),
        ("plain JSON labelled gzip", Some("gzip"), plain.to_vec(), 400, "the gzip body cannot be decoded"),
        (
            "a truncated gzip body",
            Some("gzip"),
            truncated[..truncated.len() - 8].to_vec(),
            400,
            "the gzip body cannot be decoded",
        ),
        (
            "garbage labelled zstd",
            Some("zstd"),
            b"\x28\xb5\x2f\xfd garbage".to_vec(),
            400,
            "the zstd body cannot be decoded",
        ),
        ("a gzip bomb", Some("gzip"), bomb, 413, "decodes to more than the limit of 1048576 bytes"),
        (
            "a zstd bomb",
            Some("zstd"),
            zstd(&vec![b' '; 8 << 20]),
            413,
            "decodes to more than the limit of 1048576 bytes",
        ),
    ];
    for (name, encoding, body, status, says) in &cases {
        let (got, text) = post(port, "/app/public", *encoding, body);
        assert_eq!(got, *status, "{name}: {text}");
        assert!(text.contains(says), "{name}: {text}");
    }
    // A file compressed by its name and by the header.
    let file =
        "/app/public/2024-11-26/202411261000000000000000000000000-4f1e2d3c4b5a6978-1-7-00000001-kv_bare-1.ndjson.gz";
    let (status, text) = post(port, file, Some("gzip"), &gzip(&gzip(b"{}\n")));
    assert_eq!((status, text.contains("stacked encodings")), (415, true), "{text}");
    let grown = ingest.child.rss_mib().unwrap() - before;
    assert!(grown < 64.0, "the ingest grew by {grown:.0} MiB decoding bombs");
    // Nothing was journaled; the connection and the server still take good bodies.
    let refused = ingest_status(port);
    assert!(!refused.contains("mutations_received_total{schema=\"app.public\"}"), "{refused}");
    assert_eq!(post(port, "/app/public", Some("gzip"), &gzip(plain)).0, 200);
    let after = ingest_status(port);
    assert!(after.lines().any(|l| l == "mutations_received_total{schema=\"app.public\"} 2"), "{after}");
}

fn ingest_status(port: u16) -> String {
    request_with(port, "GET", "/_/varz", &[], b"").unwrap().1
}
