//! `wharfctl changefeed` against a started `wharf-ingest` with TLS and JWT on: the printed
//! statement parses, its sink URL carries the CA as CockroachDB wants it, the request it describes
//! (URL, CA, `webhook_auth_header`, compression) is accepted and applied, and `--check` tells a
//! good token from one for another schema and a wrong CA, journaling nothing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rustls_pki_types::pem::PemObject;
use wharf_testkit::{LocalPg, Process, tlspg, wait_for};

fn wharfctl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wharfctl")).args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

struct Setup {
    pg: LocalPg,
    dir: tempfile::TempDir,
    _ingest: Process,
    port: u16,
}

impl Setup {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_owned()
    }

    fn query(&self, sql: &str) -> Vec<String> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let client = wharf_targetdb::connect(&self.pg.url("app")).await.unwrap();
            let rows = client.simple_query(sql).await.unwrap();
            rows.iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("NULL").to_owned()),
                    _ => None,
                })
                .collect()
        })
    }
}

/// A target with `app.public.customers` and `vehicles`, a CA and the ingest's certificate, a JWT
/// key registered in the target, tokens for `app.public` and for `app.other`, and a TLS ingest.
fn start() -> Setup {
    let pg = LocalPg::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let admin = wharf_targetdb::connect(&pg.url("postgres")).await.unwrap();
        admin.batch_execute("CREATE DATABASE app").await.unwrap();
        let app = wharf_targetdb::connect(&pg.url("app")).await.unwrap();
        app.batch_execute(
            "CREATE TABLE public.customers (id bigint PRIMARY KEY, name text);
             CREATE TABLE public.vehicles (id bigint PRIMARY KEY, status text, city text DEFAULT 'unknown');",
        )
        .await
        .unwrap();
    });
    let ca = tlspg::new_ca("changefeed test CA");
    let (cert, key) = tlspg::issue(&ca, &["localhost"], "localhost");
    tlspg::write(dir.path(), "ca.crt", &ca.pem()).unwrap();
    tlspg::write(dir.path(), "server.crt", &cert).unwrap();
    tlspg::write(dir.path(), "server.key", &key).unwrap();
    let other_ca = tlspg::new_ca("another CA");
    tlspg::write(dir.path(), "other-ca.crt", &other_ca.pem()).unwrap();
    let d = dir.path().to_str().unwrap();
    let url = pg.url("app");
    assert!(wharfctl(&["keys", "create", "--dir", d]).0);
    let (ok, _, err) = wharfctl(&["keys", "add", "--targetConn", &url, &format!("{d}/jwt.pub")]);
    assert!(ok, "{err}");
    for (schemas, file) in [("app.public", "token"), ("app.other", "other-token")] {
        let (ok, _, err) =
            wharfctl(&["make-jwt", "-k", &format!("{d}/jwt.key"), "-a", schemas, "-o", &format!("{d}/{file}")]);
        assert!(ok, "{err}");
    }
    let port = wharf_testkit::free_port().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_wharfctl")).with_file_name("wharf-ingest");
    let ingest = Process::spawn(
        Command::new(bin)
            .args(["start", "--bindAddr", &format!("127.0.0.1:{port}"), "--targetConn", &url])
            .args(["--journalDir", &format!("{d}/journal")])
            .args(["--tlsCertificate", &format!("{d}/server.crt"), "--tlsPrivateKey", &format!("{d}/server.key")])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap();
    let health = format!("https://localhost:{port}/_/healthz");
    let ca_file = format!("{d}/ca.crt");
    wait_for("the ingest to answer over TLS", Duration::from_secs(30), || {
        wharfctl(&["health", &health, "--caCert", &ca_file]).0
    });
    Setup { pg, dir, _ingest: ingest, port }
}

/// The sink URL and `webhook_auth_header` of a printed statement.
fn parse(statement: &str) -> (String, Option<String>) {
    let literal = |after: &str| {
        let at = statement.find(after)? + after.len();
        let rest = statement[at..].strip_prefix('\'')?;
        Some(rest[..rest.find('\'')?].to_owned())
    };
    (literal("INTO ").expect("INTO '<sink>'"), literal("webhook_auth_header = "))
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Sends `body` as CockroachDB would to the sink URL `sink` (`webhook-https://host:port/path?ca_cert=…`):
/// to `https://host:port/path`, trusting only the CA in `ca_cert`.
fn replay(sink: &str, authorization: &str, encoding: Option<&str>, body: &[u8]) -> (u16, String) {
    let url = sink.strip_prefix("webhook-https://").expect("a webhook-https sink");
    let (url, query) = url.split_once('?').expect("the CA in the query");
    let ca = query.split('&').find_map(|p| p.strip_prefix("ca_cert=")).expect("ca_cert");
    let pem = base64::engine::general_purpose::STANDARD.decode(percent_decode(ca)).unwrap();
    let (authority, path) = url.split_at(url.find('/').unwrap());
    let (host, port) = authority.split_once(':').unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(host.to_owned()).unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).unwrap();
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    let encoding = encoding.map(|e| format!("Content-Encoding: {e}\r\n")).unwrap_or_default();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nAuthorization: {authorization}\r\n{encoding}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    (status, response.split_once("\r\n\r\n").map(|(_, b)| b.trim().to_owned()).unwrap_or_default())
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

const T: &str = "1732615200000000000.0000000000";

#[test]
fn the_printed_statement_describes_a_request_the_ingest_accepts_and_check_says_why_not() {
    let s = start();
    let url = format!("https://localhost:{}", s.port);
    let common = ["changefeed", "--ingestUrl", &url, "--db", "app", "--schema", "public"];
    let (ca, token) = (s.arg("ca.crt"), s.arg("token"));
    let args =
        [&common[..], &["customers", "--caCert", &ca, "--tokenFile", &token, "--compression", "gzip", "--check"]]
            .concat();
    let (ok, out, err) = wharfctl(&args);
    assert!(ok, "{out}{err}");
    assert!(out.starts_with("CREATE CHANGEFEED FOR TABLE app.public.customers\n  INTO 'webhook-https://"), "{out}");
    for option in [
        "updated",
        "resolved = '1s'",
        "min_checkpoint_frequency = '1s'",
        "compression = 'gzip'",
        "webhook_client_timeout = '10s'",
        r#"webhook_sink_config = '{"Flush":{"Bytes":1048576,"Frequency":"1s"}}'"#,
    ] {
        assert!(out.contains(option), "{option} in {out}");
    }
    assert!(out.contains(&format!("-- check: {url}/app/public accepts")), "{out}");
    let (sink, authorization) = parse(&out);
    let token_text = std::fs::read_to_string(s.path("token")).unwrap();
    assert_eq!(authorization.as_deref(), Some(format!("Bearer {token_text}").as_str()));
    assert!(sink.starts_with(&format!("webhook-https://localhost:{}/app/public?ca_cert=", s.port)), "{sink}");
    let value = &sink[sink.find("ca_cert=").unwrap() + "ca_cert=".len()..];
    assert!(!value.contains(['+', '/', '=']), "base64 is URL-encoded: {sink}");

    // The request the statement describes: gzip rows, then a resolved timestamp, applied.
    let rows = format!(
        r#"{{"payload":[{{"after": {{"id": 1, "name": "Ada"}}, "key": [1], "topic": "customers", "updated": "{T}"}}],"length":1}}"#
    );
    let authorization = authorization.unwrap();
    assert_eq!(replay(&sink, &authorization, Some("gzip"), &gzip(rows.as_bytes())), (200, "OK".to_owned()));
    let resolved = br#"{"resolved":"1732615201000000000.0000000000"}"#;
    assert_eq!(replay(&sink, &authorization, None, resolved).0, 200);
    wait_for("the row applied", Duration::from_secs(30), || s.query("SELECT name FROM public.customers") == ["Ada"]);

    // A token for another schema, and a CA that did not sign the ingest's certificate.
    let (other_token, other_ca) = (s.arg("other-token"), s.arg("other-ca.crt"));
    let other = [&common[..], &["customers", "--caCert", &ca, "--tokenFile", &other_token, "--check"]].concat();
    let (ok, _, err) = wharfctl(&other);
    assert!(!ok && err.contains("answered 403") && err.contains("does not grant"), "{err}");
    let wrong_ca = [&common[..], &["customers", "--caCert", &other_ca, "--tokenFile", &token, "--check"]].concat();
    let (ok, _, err) = wharfctl(&wrong_ca);
    assert!(!ok && err.contains("could not reach") && err.contains("--caCert"), "{err}");
    let (ok, _, err) = wharfctl(&[&common[..], &["customers", "--caCert", &ca, "--check"]].concat());
    assert!(!ok && err.contains("answered 401"), "{err}");
    // Nothing a check sent was journaled: the one row above is all there is.
    assert_eq!(s.query("SELECT count(*) FROM public.customers"), ["1"]);
}

#[test]
fn a_query_feed_statement_posts_to_its_table_path() {
    let s = start();
    let url = format!("https://localhost:{}", s.port);
    let (ca, token) = (s.arg("ca.crt"), s.arg("token"));
    let query = "SELECT id, status FROM app.public.vehicles WHERE status <> 'scrapped'";
    let (ok, out, err) = wharfctl(&[
        "changefeed",
        "--ingestUrl",
        &url,
        "--db",
        "app",
        "--schema",
        "public",
        "--query",
        query,
        "--caCert",
        &ca,
        "--tokenFile",
        &token,
        "--check",
    ]);
    assert!(ok, "{out}{err}");
    assert!(out.starts_with("CREATE CHANGEFEED INTO 'webhook-https://"), "{out}");
    assert!(out.contains("envelope = 'wrapped',\n       format = 'json',\n       diff,\n       updated"), "{out}");
    assert!(out.contains(&format!("\n  AS {query};\n")), "{out}");
    let (sink, authorization) = parse(&out);
    assert!(sink.starts_with(&format!("webhook-https://localhost:{}/app/public/vehicles?", s.port)), "{sink}");
    let rows = format!(
        r#"{{"payload":[{{"after": {{"id": 7, "status": "new"}}, "before": null, "updated": "{T}"}}],"length":1}}"#
    );
    assert_eq!(replay(&sink, &authorization.clone().unwrap(), None, rows.as_bytes()).0, 200);
    let resolved = br#"{"resolved":"1732615201000000000.0000000000"}"#;
    assert_eq!(replay(&sink, &authorization.unwrap(), None, resolved).0, 200);
    wait_for("the row applied", Duration::from_secs(30), || {
        s.query("SELECT status || ' ' || city FROM public.vehicles") == ["new unknown"]
    });
}
