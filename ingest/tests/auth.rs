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
fn a_malformed_key_row_is_skipped_naming_its_id_and_the_good_keys_still_work() {
    let target = Target::start();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    target.execute(
        "app",
        &format!(
            "CREATE SCHEMA _replicator;
             CREATE TABLE _replicator.jwt_public_keys (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), public_key text NOT NULL, active bool NOT NULL DEFAULT true);
             INSERT INTO _replicator.jwt_public_keys (id, public_key) VALUES ('00000000-0000-0000-0000-00000000abcd', 'not a key');
             INSERT INTO _replicator.jwt_public_keys (public_key) VALUES ('{}');",
            key.public_key_pem()
        ),
    );
    let journal = tempfile::tempdir().unwrap();
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("ingest.log");
    let ingest = Ingest::start_logged(&target.url(), journal.path(), &[], &log);
    let token =
        SigningKey::from_pem(&key.serialize_pem()).unwrap().sign(&claims("g", json!([["app", "public"]]))).unwrap();
    assert_eq!(post(ingest.port, Some(&token)).0, 200);
    let (_, metrics) = request_with(ingest.port, "GET", "/_/varz", &[], b"").unwrap();
    assert_eq!(common::metric_sum(&metrics, "wharf_jwt_malformed_keys"), 1.0, "{metrics}");
    // A refresh skips it again instead of failing (and keeping stale keys).
    ingest.hangup();
    wait_for("the refresh", Duration::from_secs(30), || {
        std::fs::read_to_string(&log).unwrap().matches("skipped a malformed JWT key").count() == 2
    });
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("00000000-0000-0000-0000-00000000abcd"), "{logs}");
    assert!(!logs.contains("JWT key refresh failed"), "{logs}");
}

/// A compact JWS with the given header, signed by `key` with `signing` whatever the header says.
fn sign_raw(header: &Value, claims: &Value, key: &rcgen::KeyPair) -> String {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
    let input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let der = key.serialize_der();
    let signature = match RsaKeyPair::from_pkcs8(&der) {
        Ok(rsa) => {
            let mut out = vec![0; rsa.public_modulus_len()];
            rsa.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut out).unwrap();
            out
        }
        Err(_) => EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
            .unwrap()
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec(),
    };
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

#[test]
fn algorithm_confusion_kid_and_shared_jti_cases_get_their_exact_status() {
    let target = Target::start();
    let journal = tempfile::tempdir().unwrap();
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("ingest.log");
    let ingest = Ingest::start_logged(&target.url(), journal.path(), &[], &log);
    let (ec, rsa, retired) = (
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
        rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap(),
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
    );
    target.execute(
        "app",
        &format!(
            "INSERT INTO _replicator.jwt_public_keys (id, public_key) VALUES
               ('00000000-0000-0000-0000-0000000000ec', '{}'), ('00000000-0000-0000-0000-000000000125', '{}');
             INSERT INTO _replicator.jwt_public_keys (id, public_key, active) VALUES
               ('00000000-0000-0000-0000-0000000000ff', '{}', false);",
            ec.public_key_pem(),
            rsa.public_key_pem(),
            retired.public_key_pem()
        ),
    );
    ingest.hangup();
    let good = sign_raw(&json!({"alg": "ES256"}), &claims("ec", json!([["app", "public"]])), &ec);
    wait_for("the keys", Duration::from_secs(30), || post(ingest.port, Some(&good)).0 == 200);
    let c = |jti: &str| claims(jti, json!([["app", "public"]]));
    let kid = |alg: &str, kid: &str| json!({"alg": alg, "kid": kid});
    let cases: Vec<(&str, String, u16)> = vec![
        ("RS256 as the header says", sign_raw(&json!({"alg": "RS256"}), &c("rs"), &rsa), 200),
        ("ES256 in the header, an RSA signature", sign_raw(&json!({"alg": "ES256"}), &c("x1"), &rsa), 401),
        ("RS256 in the header, an EC signature", sign_raw(&json!({"alg": "RS256"}), &c("x2"), &ec), 401),
        ("kid of the signing key", sign_raw(&kid("ES256", "00000000-0000-0000-0000-0000000000ec"), &c("k1"), &ec), 200),
        ("kid of another key", sign_raw(&kid("ES256", "00000000-0000-0000-0000-000000000125"), &c("k2"), &ec), 401),
        (
            "kid of an inactive key",
            sign_raw(&kid("ES256", "00000000-0000-0000-0000-0000000000ff"), &c("k3"), &retired),
            401,
        ),
        ("kid of no key", sign_raw(&kid("ES256", "nobody"), &c("k4"), &ec), 401),
        ("kid not a string", sign_raw(&json!({"alg": "ES256", "kid": 7}), &c("k5"), &ec), 401),
        (
            "exp as text",
            sign_raw(
                &json!({"alg": "ES256"}),
                &json!({"jti": "t", "exp": "99999999999", CLAIM_NAMESPACE: {"schemas": [["app", "public"]]}}),
                &ec,
            ),
            401,
        ),
        (
            "iat 10 s ahead (clock skew)",
            sign_raw(
                &json!({"alg": "ES256"}),
                &json!({"jti": "s", "iat": now() + 10, CLAIM_NAMESPACE: {"schemas": [["app", "public"]]}}),
                &ec,
            ),
            200,
        ),
        (
            "iat an hour ahead",
            sign_raw(
                &json!({"alg": "ES256"}),
                &json!({"jti": "f", "iat": now() + 3600, CLAIM_NAMESPACE: {"schemas": [["app", "public"]]}}),
                &ec,
            ),
            401,
        ),
    ];
    for (name, token, status) in &cases {
        let (got, body) = post(ingest.port, Some(token));
        assert_eq!(got, *status, "{name}: {body}");
        if got == 401 {
            // The body never says why: that would tell a thief whether a stolen token was revoked.
            assert_eq!(body.trim(), "missing or invalid access token", "{name}");
        }
    }
    // Two tokens sharing a jti: revoking it ends both.
    let twin = sign_raw(&json!({"alg": "RS256"}), &c("ec"), &rsa);
    assert_eq!(post(ingest.port, Some(&twin)).0, 200);
    target.execute("app", "INSERT INTO _replicator.jwt_revoked_ids (id) VALUES ('ec')");
    ingest.hangup();
    wait_for("revocation", Duration::from_secs(30), || post(ingest.port, Some(&good)).0 == 401);
    let (status, body) = post(ingest.port, Some(&twin));
    assert_eq!((status, body.trim()), (401, "missing or invalid access token"));
}
