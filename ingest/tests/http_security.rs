//! What a changefeed's token and a stranger can do over HTTP, against a real `wharf-ingest` and a
//! real PostgreSQL: a wildcard token never reaches wharf's own or PostgreSQL's schemas, one schema
//! is one partition however the path spells the database, and a timestamp from the far future
//! is refused instead of becoming a checkpoint.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Ingest, Target, request_with, wait_for};
use serde_json::{Value, json};
use wharf_ingest::auth::jwt::CLAIM_NAMESPACE;
use wharf_ingest::auth::sign::SigningKey;

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn hlc(wall: u64) -> String {
    format!("{wall}.0000000000")
}

fn row(table: &str, after: Value, key: Value, wall: u64) -> String {
    let message = json!({"after": after, "key": key, "topic": table, "updated": hlc(wall)});
    format!(r#"{{"payload":[{message}],"length":1}}"#)
}

fn post(ingest: &Ingest, token: Option<&str>, path: &str, body: &str) -> (u16, String) {
    let header = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = header.iter().map(|h| ("Authorization", h.as_str())).collect();
    request_with(ingest.port, "POST", path, &headers, body.as_bytes()).unwrap()
}

#[test]
fn a_wildcard_token_never_writes_wharfs_or_postgresqls_own_schemas() {
    let target = Target::start();
    let journal = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    // JWT authentication on.
    let ingest = Ingest::start_logged(&target.url(), journal.path(), &[], &logs.path().join("ingest.log"));
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let signer = SigningKey::from_pem(&key.serialize_pem()).unwrap();
    target.execute(
        "app",
        &format!("INSERT INTO _replicator.jwt_public_keys (public_key) VALUES ('{}')", key.public_key_pem()),
    );
    ingest.hangup();
    let claims = json!({"iss": "replicator", "jti": "wild", CLAIM_NAMESPACE: {"schemas": [["app", "*"], ["*", "*"]]}});
    let token = signer.sign(&claims).unwrap();
    let body = row("kv_bare", json!({"k": 1, "v": "x"}), json!([1]), now_ns());
    wait_for("the key picked up", Duration::from_secs(30), || {
        post(&ingest, Some(&token), "/app/public", &body).0 == 200
    });
    let evil = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let id = "11111111-1111-4111-8111-111111111111";
    let injected = row(
        "jwt_public_keys",
        json!({"id": id, "public_key": evil.public_key_pem(), "active": true}),
        json!([id]),
        now_ns(),
    );
    for schema in
        ["_replicator", "_Replicator", "pg_catalog", "information_schema", "pg_toast", "pg_temp_1", "PG_CATALOG"]
    {
        let (status, text) = post(&ingest, Some(&token), &format!("/app/{schema}"), &injected);
        assert_eq!(status, 404, "{schema}: {text}");
        let resolved = format!(r#"{{"resolved":"{}"}}"#, hlc(now_ns()));
        assert_eq!(post(&ingest, Some(&token), &format!("/app/{schema}"), &resolved).0, 404, "{schema}");
    }
    let keys = target.query("SELECT count(*)::text FROM _replicator.jwt_public_keys");
    assert_eq!(keys, vec![vec![Some("1".to_owned())]]);
}

#[test]
fn a_schema_is_one_partition_however_the_path_spells_the_database() {
    let target = Target::start();
    let journal = tempfile::tempdir().unwrap();
    let ingest = Ingest::start(&target.url(), journal.path(), &[]);
    let t0 = now_ns() - 60_000_000_000;
    let old = row("kv_bare", json!({"k": 1, "v": "old"}), json!([1]), t0 + 2_000);
    let new = row("kv_bare", json!({"k": 1, "v": "new"}), json!([1]), t0 + 3_000);
    assert_eq!(post(&ingest, None, "/APP/public", &old).0, 200);
    assert_eq!(post(&ingest, None, "/app/public", &new).0, 200);
    assert_eq!(post(&ingest, None, "/app/public", &format!(r#"{{"resolved":"{}"}}"#, hlc(t0 + 3_000))).0, 200);
    assert_eq!(post(&ingest, None, "/APP/public", &format!(r#"{{"resolved":"{}"}}"#, hlc(t0 + 2_000))).0, 200);
    wait_for("the checkpoint", Duration::from_secs(60), || target.checkpoint() == Some(hlc(t0 + 3_000)));
    assert_eq!(target.query("SELECT v FROM public.kv_bare WHERE k = 1"), vec![vec![Some("new".to_owned())]]);
    let partitions = target.query("SELECT partition FROM _replicator.checkpoints ORDER BY 1");
    assert_eq!(partitions, vec![vec![Some("app.public".to_owned())]]);
}

#[test]
fn a_timestamp_far_ahead_of_the_clock_is_refused_and_changes_nothing() {
    let target = Target::start();
    let journal = tempfile::tempdir().unwrap();
    let ingest = Ingest::start(&target.url(), journal.path(), &["--maxClockSkew", "10m"]);
    let far = 9_223_372_036_854_775_807u64;
    let (status, text) = post(&ingest, None, "/app/public", &format!(r#"{{"resolved":"{}"}}"#, hlc(far)));
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("--maxClockSkew"), "{text}");
    let soon = now_ns() + 3_600_000_000_000;
    let (status, text) =
        post(&ingest, None, "/app/public", &row("kv_bare", json!({"k": 1, "v": "x"}), json!([1]), soon));
    assert_eq!(status, 400, "{text}");
    // Within the skew, and after the refusals, rows and resolved timestamps go through.
    let now = now_ns();
    assert_eq!(post(&ingest, None, "/app/public", &row("kv_bare", json!({"k": 2, "v": "y"}), json!([2]), now)).0, 200);
    assert_eq!(post(&ingest, None, "/app/public", &format!(r#"{{"resolved":"{}"}}"#, hlc(now + 1))).0, 200);
    wait_for("the checkpoint", Duration::from_secs(60), || target.checkpoint() == Some(hlc(now + 1)));
    assert_eq!(
        target.query("SELECT k::text, v FROM public.kv_bare"),
        vec![vec![Some("2".to_owned()), Some("y".to_owned())]]
    );
}

/// A served keep-alive connection from `from` (any loopback address), or `None` if refused.
fn served(port: u16, from: &str) -> Option<std::net::TcpStream> {
    use std::io::{Read, Write};
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    socket.bind(&format!("{from}:0").parse::<std::net::SocketAddr>().ok()?.into()).ok()?;
    socket.connect(&format!("127.0.0.1:{port}").parse::<std::net::SocketAddr>().ok()?.into()).ok()?;
    let mut stream: std::net::TcpStream = socket.into();
    stream.write_all(b"GET /_/livez HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).ok()?;
    buf[..n].starts_with(b"HTTP/1.1 200").then_some(stream)
}

#[test]
fn connections_that_send_nothing_do_not_keep_their_slots() {
    let target = Target::start();
    let journal = tempfile::tempdir().unwrap();
    let ingest = Ingest::start(&target.url(), journal.path(), &["--maxConnections", "4", "--readTimeout", "2s"]);
    // Four connections that never send a byte (no protocol chosen yet) take every slot.
    let silent: Vec<std::net::TcpStream> =
        (0..4).map(|_| std::net::TcpStream::connect(("127.0.0.1", ingest.port)).unwrap()).collect();
    wait_for("a new connection served once the silent ones are closed", Duration::from_secs(20), || {
        served(ingest.port, "127.0.0.1").is_some()
    });
    drop(silent);
}

#[test]
fn one_address_cannot_take_every_connection_and_refusals_are_logged_sparingly() {
    let target = Target::start();
    let journal = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("ingest.log");
    let args = ["--disableAuthentication", "--maxConnectionsPerAddress", "2"];
    let ingest = Ingest::start_logged(&target.url(), journal.path(), &args, &log);
    let mut held = Vec::new();
    wait_for("two served connections from 127.0.0.2", Duration::from_secs(10), || {
        held.extend(served(ingest.port, "127.0.0.2"));
        held.len() == 2
    });
    for _ in 0..20 {
        assert!(served(ingest.port, "127.0.0.2").is_none(), "a third connection from one address");
    }
    assert!(served(ingest.port, "127.0.0.3").is_some(), "another address is served");
    let lines = std::fs::read_to_string(&log).unwrap().matches("connection limit reached").count();
    assert!((1..=2).contains(&lines), "{lines} log lines for 20 refused connections");
}

#[test]
fn a_slow_body_holds_only_the_bytes_that_arrived() {
    use std::io::Write;
    let target = Target::start();
    let journal = tempfile::tempdir().unwrap();
    let ingest = Ingest::start(&target.url(), journal.path(), &[]);
    // One body announcing 20 MiB (over --inflightLimit's 16 MiB) and one chunked, both stalled
    // after a few bytes.
    let mut announced = std::net::TcpStream::connect(("127.0.0.1", ingest.port)).unwrap();
    announced
        .write_all(b"POST /app/public HTTP/1.1\r\nHost: x\r\nContent-Length: 20971520\r\n\r\n{\"payload\":[")
        .unwrap();
    let mut chunked = std::net::TcpStream::connect(("127.0.0.1", ingest.port)).unwrap();
    chunked
        .write_all(b"POST /app/public HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nc\r\n{\"payload\":[\r\n")
        .unwrap();
    // Each later request is taken at once (the first may even come before the stalled ones).
    for k in 1..=3 {
        let body = row("kv_bare", json!({"k": k, "v": "x"}), json!([k]), now_ns());
        let started = std::time::Instant::now();
        let (status, text) = post(&ingest, None, "/app/public", &body);
        assert_eq!(status, 200, "{text}");
        assert!(started.elapsed() < Duration::from_secs(5), "waited {:?} for room", started.elapsed());
    }
    drop((announced, chunked));
}

#[test]
fn health_checks_reach_the_target_at_most_once_a_second_and_silent_metrics_connections_go() {
    use std::io::Read;
    let target = Target::start();
    let journal = tempfile::tempdir().unwrap();
    let metrics_port = common::free_port().unwrap();
    let ingest = Ingest::start(&target.url(), journal.path(), &["--metricsAddr", &format!("127.0.0.1:{metrics_port}")]);
    let checks = || {
        let (_, text) = common::request(metrics_port, "GET", "/_/varz", b"").unwrap();
        assert!(text.contains("wharf_target_health_checks_total"), "health checks are counted");
        common::metric_sum(&text, "wharf_target_health_checks_total")
    };
    let before = checks();
    let started = std::time::Instant::now();
    for _ in 0..300 {
        assert_eq!(common::request(ingest.port, "GET", "/_/healthz", b"").unwrap().0, 200);
    }
    let sent = checks() - before;
    let seconds = started.elapsed().as_secs_f64();
    assert!(sent <= seconds.ceil() + 2.0, "{sent} target queries for 300 health checks in {seconds:.1} s");
    // Connections to the metrics port that never send a byte: refused beyond its limit, closed
    // after its header timeout.
    let silent: Vec<std::net::TcpStream> =
        (0..100).map(|_| std::net::TcpStream::connect(("127.0.0.1", metrics_port)).unwrap()).collect();
    for mut stream in silent {
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = [0u8; 16];
        // Closed: an end of stream, or a reset (a connection refused beyond the limit).
        let read = stream.read(&mut buf);
        let closed = match &read {
            Ok(n) => *n == 0,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        };
        assert!(closed, "a silent connection was kept: {read:?}");
    }
}

#[test]
fn plain_http_with_authentication_on_is_announced() {
    let target = Target::start();
    let journal = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("ingest.log");
    let ingest = Ingest::start_logged(&target.url(), journal.path(), &[], &log);
    let (status, text) = common::request(ingest.port, "GET", "/_/healthz", b"").unwrap();
    assert_eq!(status, 200);
    assert!(text.contains(wharf_ingest::WARN_PLAIN_HTTP), "{text}");
    assert!(std::fs::read_to_string(&log).unwrap().contains(wharf_ingest::WARN_PLAIN_HTTP));
}
