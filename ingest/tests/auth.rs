//! JWT authorization over a real port: each attack with its exact status, keys inserted with plain
//! SQL and picked up on SIGHUP, revocation, deactivation, the `access_token` form, and no token
//! text in the logs.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Ingest, Target, request_with, wait_for};
use serde_json::{Value, json};
use wharf_ingest::auth::jwt::CLAIM_NAMESPACE;
use wharf_ingest::auth::sign::SigningKey;

const ROW: &[u8] = br#"{"payload":[{"after": {"k": 1, "v": "x"}, "key": [1], "topic": "kv_bare", "updated": "1732615200000000000.0000000000"}],"length":1}"#;

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn claims(jti: &str, schemas: Value) -> Value {
    json!({"iss": "replicator", "jti": jti, CLAIM_NAMESPACE: {"schemas": schemas}})
}

fn post(port: u16, token: Option<&str>) -> (u16, String) {
    let header = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = header.iter().map(|h| ("Authorization", h.as_str())).collect();
    request_with(port, "POST", "/app/public", &headers, ROW).unwrap()
}

fn hs256_with_public_pem(pem: &str, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, pem.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(aws_lc_rs::hmac::sign(&key, input.as_bytes())))
}

#[test]
fn every_attack_gets_its_exact_status_and_no_token_reaches_the_logs() {
    let target = Target::start();
    let journal = tempfile::tempdir().unwrap();
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("ingest.log");
    let ingest = Ingest::start_logged(&target.url(), journal.path(), &[], &log);
    let port = ingest.port;

    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let signer = SigningKey::from_pem(&key.serialize_pem()).unwrap();
    let public_pem = key.public_key_pem();
    let good = signer.sign(&claims("good", json!([["app", "public"]]))).unwrap();
    // Until the key is inserted and SIGHUP sent, even a well-signed token is refused.
    assert_eq!(post(port, Some(&good)).0, 401);
    target.execute("app", &format!("INSERT INTO _replicator.jwt_public_keys (public_key) VALUES ('{public_pem}')"));
    ingest.hangup();
    wait_for("the key to be picked up on SIGHUP", Duration::from_secs(30), || post(port, Some(&good)).0 == 200);

    let other =
        SigningKey::from_pem(&rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap().serialize_pem())
            .unwrap();
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims("n", json!([["app", "public"]])).to_string())
    );
    let mut tampered: Vec<String> = good.split('.').map(str::to_owned).collect();
    tampered[1] = URL_SAFE_NO_PAD.encode(claims("good", json!([["*", "*"]])).to_string());
    let tampered = tampered.join(".");
    let with = |extra: Value| {
        let mut c = claims("t", json!([["app", "public"]]));
        c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        signer.sign(&c).unwrap()
    };
    let cases: Vec<(&str, Option<String>, u16)> = vec![
        ("no token", None, 401),
        ("garbage", Some("not-a-token".into()), 401),
        ("alg none", Some(none), 401),
        (
            "HS256 keyed with the public key's PEM",
            Some(hs256_with_public_pem(&public_pem, &claims("h", json!([["app", "public"]])))),
            401,
        ),
        ("a key not in the table", Some(other.sign(&claims("o", json!([["app", "public"]]))).unwrap()), 401),
        ("expired", Some(with(json!({"exp": now() - 10}))), 401),
        ("not yet valid", Some(with(json!({"nbf": now() + 3600}))), 401),
        ("no jti", Some(signer.sign(&json!({CLAIM_NAMESPACE: {"schemas": [["app", "public"]]}})).unwrap()), 401),
        ("no schemas", Some(signer.sign(&json!({"jti": "s"})).unwrap()), 401),
        ("tampered claims", Some(tampered), 401),
        ("another schema", Some(signer.sign(&claims("a", json!([["app", "other"]]))).unwrap()), 403),
        ("wildcard schema", Some(signer.sign(&claims("w", json!([["APP", "*"]]))).unwrap()), 200),
        ("valid with a future exp", Some(with(json!({"exp": now() + 3600, "iat": now()}))), 200),
    ];
    for (name, token, status) in &cases {
        let (got, body) = post(port, token.as_deref());
        assert_eq!(got, *status, "{name}: {body}");
        if let Some(token) = token {
            assert!(!body.contains(token.as_str()), "{name}: the response echoes the token");
        }
    }
    // The access_token query parameter works too, and health needs no token.
    let (status, _) = request_with(port, "POST", &format!("/app/public?access_token={good}"), &[], ROW).unwrap();
    assert_eq!(status, 200);
    assert_eq!(request_with(port, "GET", "/_/healthz", &[], b"").unwrap().0, 200);

    // Revocation by jti, picked up on SIGHUP.
    target.execute("app", "INSERT INTO _replicator.jwt_revoked_ids (id) VALUES ('good')");
    ingest.hangup();
    wait_for("revocation on SIGHUP", Duration::from_secs(30), || post(port, Some(&good)).0 == 401);
    // Deactivating the key refuses every token it signed.
    let fresh = signer.sign(&claims("fresh", json!([["app", "public"]]))).unwrap();
    assert_eq!(post(port, Some(&fresh)).0, 200);
    target.execute("app", "UPDATE _replicator.jwt_public_keys SET active = false");
    ingest.hangup();
    wait_for("deactivation on SIGHUP", Duration::from_secs(30), || post(port, Some(&fresh)).0 == 401);

    drop(ingest);
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("JWT keys refreshed"), "{logs}");
    // Refused callers are logged, rate-limited (one line per kind every 10 s), with the peer.
    let refused_401: Vec<&str> = logs.lines().filter(|l| l.contains("refused a caller: 401")).collect();
    let refused_403 = logs.lines().filter(|l| l.contains("refused a caller: 403")).count();
    assert!(!refused_401.is_empty() && refused_401.len() < 11, "{logs}");
    assert!(refused_401.iter().all(|l| l.contains("peer=127.0.0.1:") && l.contains("left_out=")), "{logs}");
    assert_eq!(refused_403, 1, "{logs}");
    for (name, token, _) in &cases {
        if let Some(token) = token {
            assert!(!logs.contains(token.as_str()), "{name}: token text in the logs");
            if let Some(signature) = token.rsplit('.').next().filter(|s| s.len() > 8) {
                assert!(!logs.contains(signature), "{name}: token signature in the logs");
            }
        }
    }
}

#[test]
fn a_malformed_key_row_stops_startup_naming_its_id() {
    let target = Target::start();
    target.execute(
        "app",
        "CREATE SCHEMA _replicator;
         CREATE TABLE _replicator.jwt_public_keys (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), public_key text NOT NULL, active bool NOT NULL DEFAULT true);
         INSERT INTO _replicator.jwt_public_keys (id, public_key) VALUES ('00000000-0000-0000-0000-00000000abcd', 'not a key');",
    );
    let journal = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wharf-ingest"))
        .args(["start", "--bindAddr", "127.0.0.1:0", "--targetConn", &target.url()])
        .arg("--journalDir")
        .arg(journal.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("00000000-0000-0000-0000-00000000abcd"), "{stderr}");
}
