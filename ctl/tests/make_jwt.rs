//! `wharfctl make-jwt` as a user runs it: key files in each format, the output file's mode, and a
//! token that the server's verifier accepts for exactly the schemas given.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use wharf_ingest::auth::jwt::{Alg, PublicKey, verify};

fn wharfctl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wharfctl")).args(args).output().unwrap()
}

#[test]
fn tokens_from_each_key_type_verify_and_the_output_file_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (&rcgen::PKCS_ECDSA_P256_SHA256, Alg::Es256),
        (&rcgen::PKCS_ECDSA_P384_SHA384, Alg::Es384),
        (&rcgen::PKCS_RSA_SHA256, Alg::Rs256),
    ];
    for (i, (algorithm, alg)) in cases.into_iter().enumerate() {
        let key = rcgen::KeyPair::generate_for(algorithm).unwrap();
        let key_path = dir.path().join(format!("k{i}.pem"));
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let out = dir.path().join(format!("t{i}.jwt"));
        let status = wharfctl(&[
            "make-jwt",
            "-k",
            key_path.to_str().unwrap(),
            "-a",
            "app.public",
            "-a",
            "other.*",
            "-o",
            out.to_str().unwrap(),
            "--ttl",
            "1h",
        ]);
        assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
        assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
        let token = std::fs::read_to_string(&out).unwrap();
        assert!(!token.ends_with('\n'));
        let header: serde_json::Value = serde_json::from_slice(&base64_url(token.split('.').next().unwrap())).unwrap();
        assert_eq!(header["alg"], alg.name());
        let public = PublicKey::from_pem("k", &key.public_key_pem()).unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let grant = verify(&token, &[public], &HashSet::new(), now, 0).unwrap();
        assert!(grant.allows("app", "public") && grant.allows("other", "x") && !grant.allows("app", "private"));
        assert!(grant.exp.is_some_and(|exp| exp > now + 3000 && exp <= now + 3601));
    }
}

#[test]
fn the_claim_is_printed_for_external_providers() {
    let out = wharfctl(&["make-jwt", "-a", "database.schema", "--claim"]);
    assert!(out.status.success());
    let claim: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(claim["iss"], "replicator");
    assert_eq!(
        claim["https://github.com/cockroachdb/replicator"]["schemas"],
        serde_json::json!([["database", "schema"]])
    );
    assert_eq!(claim["jti"].as_str().unwrap().len(), 36);
    let none = wharfctl(&["make-jwt", "--claim"]);
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("no schemas specified"));
}

#[test]
fn lifetimes_take_units_and_nonsense_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("k.pem");
    std::fs::write(&key_path, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let key = key_path.to_str().unwrap();
    let ok = wharfctl(&["make-jwt", "-k", key, "-a", "app.public", "--ttl", "1h30m"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    // Without --ttl a token expires in 30 days; `never` leaves exp out, as MOLT's make-jwt does.
    let public = PublicKey::from_pem(
        "k",
        &rcgen::KeyPair::from_pem(&std::fs::read_to_string(&key_path).unwrap()).unwrap().public_key_pem(),
    )
    .unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let exp_of = |args: &[&str]| {
        let out = wharfctl(&[&["make-jwt", "-k", key, "-a", "app.public"], args].concat());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let token = String::from_utf8(out.stdout).unwrap();
        (verify(token.trim(), std::slice::from_ref(&public), &HashSet::new(), now, 0).unwrap().exp, out.stderr)
    };
    let (exp, said) = exp_of(&[]);
    assert!(exp.is_some_and(|exp| exp >= now + 30 * 86_400 && exp <= now + 30 * 86_400 + 60), "{exp:?}");
    assert!(String::from_utf8_lossy(&said).contains("expires in 30 days"));
    let (exp, said) = exp_of(&["--ttl", "never"]);
    assert_eq!(exp, None);
    assert!(String::from_utf8_lossy(&said).contains("never expires"));
    for (ttl, says) in [("0s", "at least 1s"), ("18446744073709551h", "ttl"), ("soon", "not a duration")] {
        let out = wharfctl(&["make-jwt", "-k", key, "-a", "app.public", "--ttl", ttl]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && out.stdout.is_empty(), "--ttl {ttl} made a token");
        assert!(stderr.contains(says), "--ttl {ttl}: {stderr}");
    }
}

fn base64_url(part: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()
}

#[test]
fn the_output_file_is_private_and_a_link_there_is_replaced_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let key_path = dir.path().join("k.pem");
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"not a token").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    let link = dir.path().join("link.jwt");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let existing = dir.path().join("existing.jwt");
    std::fs::write(&existing, b"old").unwrap();
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o644)).unwrap();
    for out in [&link, &existing] {
        let run =
            wharfctl(&["make-jwt", "-k", key_path.to_str().unwrap(), "-a", "app.public", "-o", out.to_str().unwrap()]);
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        let meta = std::fs::symlink_metadata(out).unwrap();
        assert!(meta.file_type().is_file(), "{} is a plain file now", out.display());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{}", out.display());
    }
    assert_eq!(std::fs::read(&victim).unwrap(), b"not a token", "the link's target was written");
}
