//! `wharfctl keys` and `tokens` against a real PostgreSQL: a public key is validated before it is
//! stored, listed, deactivated; revocations are stored and listed.

use std::process::Command;

use wharf_testkit::LocalPg;

fn wharfctl(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wharfctl")).args(args).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn keys_and_revocations_are_managed_in_the_staging_schema() {
    let pg = LocalPg::start().unwrap();
    let url = pg.url("postgres");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let c = wharf_targetdb::connect(&url).await.unwrap();
        c.batch_execute(
            "CREATE SCHEMA _replicator;
             CREATE TABLE _replicator.jwt_public_keys (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), public_key text NOT NULL, active bool NOT NULL DEFAULT true);
             CREATE TABLE _replicator.jwt_revoked_ids (id text PRIMARY KEY);",
        )
        .await
        .unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let public = dir.path().join("ec.pub");
    std::fs::write(&public, rcgen::KeyPair::generate().unwrap().public_key_pem()).unwrap();
    let bad = dir.path().join("bad.pub");
    std::fs::write(&bad, "not a key").unwrap();

    let (ok, text) = wharfctl(&["keys", "add", "--targetConn", &url, bad.to_str().unwrap()]);
    assert!(!ok && text.contains("no PEM public key"), "{text}");
    let (ok, text) = wharfctl(&["keys", "add", "--targetConn", &url, public.to_str().unwrap()]);
    assert!(ok && text.contains("killall -HUP wharf-ingest"), "{text}");
    let id = text.split_whitespace().nth(2).unwrap().trim_end_matches(';').to_owned();
    let (ok, text) = wharfctl(&["keys", "list", "--targetConn", &url]);
    assert!(ok);
    assert_eq!(text.trim(), format!("{id}  active  ok"));
    let (ok, _) = wharfctl(&["keys", "deactivate", "--targetConn", &url, &id]);
    assert!(ok);
    let (_, text) = wharfctl(&["keys", "list", "--targetConn", &url]);
    assert_eq!(text.trim(), format!("{id}  inactive  ok"));
    let (ok, text) = wharfctl(&["keys", "deactivate", "--targetConn", &url, "00000000-0000-0000-0000-000000000000"]);
    assert!(!ok && text.contains("no key with id"), "{text}");

    assert!(wharfctl(&["tokens", "revoke", "--targetConn", &url, "jti-1"]).0);
    assert!(wharfctl(&["tokens", "revoke", "--targetConn", &url, "jti-1"]).0);
    assert!(wharfctl(&["tokens", "revoke", "--targetConn", &url, "jti-0"]).0);
    let (ok, text) = wharfctl(&["tokens", "list", "--targetConn", &url]);
    assert!(ok);
    assert_eq!(text.trim(), "jti-0\njti-1");
}

#[test]
fn keys_create_writes_a_key_pair_once_and_add_registers_it_once_on_a_fresh_target() {
    use std::os::unix::fs::PermissionsExt;
    let pg = LocalPg::start().unwrap();
    let url = pg.url("postgres");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (ok, text) = wharfctl(&["keys", "create", "--dir", d]);
    assert!(ok, "{text}");
    let mode = std::fs::metadata(dir.path().join("jwt.key")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let (ok, text) = wharfctl(&["keys", "create", "--dir", d]);
    assert!(!ok && text.contains("jwt.key"), "never overwritten: {text}");
    // No staging schema yet: `keys add` creates its tables; a second add of the same key is a no-op.
    let public = dir.path().join("jwt.pub");
    let (ok, text) = wharfctl(&["keys", "add", "--targetConn", &url, public.to_str().unwrap()]);
    assert!(ok, "{text}");
    let (ok, text) = wharfctl(&["keys", "add", "--targetConn", &url, public.to_str().unwrap()]);
    assert!(ok && text.contains("key already present"), "{text}");
    let (ok, text) = wharfctl(&["keys", "list", "--targetConn", &url]);
    assert!(ok);
    assert_eq!(text.lines().filter(|l| l.contains("active  ok")).count(), 1, "{text}");
    let key = dir.path().join("jwt.key");
    let (ok, token) = wharfctl(&["make-jwt", "-k", key.to_str().unwrap(), "-a", "app.*"]);
    assert!(ok && token.trim().split('.').count() == 3, "{token}");
}
