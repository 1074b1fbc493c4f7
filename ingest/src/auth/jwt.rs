//! JWT verification, pure: parse `header.claims.signature`, check the signature with the public
//! keys whose type matches the header's algorithm (only the key the header's `kid` names, when it
//! names one), then the registered claims and wharf's schema claim. Accepted algorithms: ES256,
//! ES384, ES512, RS256, RS384, RS512. HMAC, `none`, PS*, EdDSA and anything else are refused
//! before any key is tried.
//!
//! Why this is not the `jsonwebtoken` crate: decision 0008.

use std::collections::HashSet;

use aws_lc_rs::signature::{self, ParsedPublicKey, VerificationAlgorithm};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use thiserror::Error;

/// Clock skew always allowed for `nbf` and `iat` (a token minted on a machine whose clock is a few
/// seconds ahead is not refused); `--jwtLeeway` raises it, and is the only slack `exp` gets.
pub const FUTURE_SKEW: u64 = 30;

/// The claim namespace MOLT Replicator uses, and its legacy name.
pub const CLAIM_NAMESPACE: &str = "https://github.com/cockroachdb/replicator";
pub const LEGACY_CLAIM_NAMESPACE: &str = "https://github.com/cockroachdb/cdc-sink";

/// A JWS algorithm wharf accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alg {
    Es256,
    Es384,
    Es512,
    Rs256,
    Rs384,
    Rs512,
}

impl Alg {
    pub fn parse(name: &str) -> Option<Alg> {
        Some(match name {
            "ES256" => Alg::Es256,
            "ES384" => Alg::Es384,
            "ES512" => Alg::Es512,
            "RS256" => Alg::Rs256,
            "RS384" => Alg::Rs384,
            "RS512" => Alg::Rs512,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::Es512 => "ES512",
            Alg::Rs256 => "RS256",
            Alg::Rs384 => "RS384",
            Alg::Rs512 => "RS512",
        }
    }

    fn verification(self) -> &'static dyn VerificationAlgorithm {
        match self {
            Alg::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
            Alg::Es384 => &signature::ECDSA_P384_SHA384_FIXED,
            Alg::Es512 => &signature::ECDSA_P521_SHA512_FIXED,
            Alg::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Alg::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Alg::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        }
    }
}

/// One public key from `jwt_public_keys`, parsed for every algorithm its type allows.
pub struct PublicKey {
    pub id: String,
    parsed: Vec<(Alg, ParsedPublicKey)>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("no PEM public key (-----BEGIN PUBLIC KEY-----) in key {id}")]
    NoPem { id: String },
    #[error("key {id} is not an RSA (2048+ bits) or EC P-256/P-384/P-521 public key")]
    Unsupported { id: String },
}

impl PublicKey {
    /// Parses a PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
    pub fn from_pem(id: &str, pem: &str) -> Result<PublicKey, KeyError> {
        use rustls_pki_types::SubjectPublicKeyInfoDer;
        use rustls_pki_types::pem::PemObject;
        let der = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes())
            .map_err(|_| KeyError::NoPem { id: id.to_owned() })?;
        let families: [&[Alg]; 4] =
            [&[Alg::Es256], &[Alg::Es384], &[Alg::Es512], &[Alg::Rs256, Alg::Rs384, Alg::Rs512]];
        for family in families {
            let parsed: Vec<(Alg, ParsedPublicKey)> = family
                .iter()
                .filter_map(|&alg| ParsedPublicKey::new(alg.verification(), der.as_ref()).ok().map(|k| (alg, k)))
                .collect();
            if parsed.len() == family.len() {
                return Ok(PublicKey { id: id.to_owned(), parsed });
            }
        }
        Err(KeyError::Unsupported { id: id.to_owned() })
    }

    fn verifies(&self, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
        self.parsed.iter().any(|(a, key)| *a == alg && key.verify_sig(message, signature).is_ok())
    }
}

/// Why a token is not accepted (401). Messages never contain token text.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token is not three base64url parts")]
    Shape,
    #[error("token header is not valid JSON with an \"alg\"")]
    Header,
    #[error("token algorithm is not one of ES256, ES384, ES512, RS256, RS384, RS512")]
    Algorithm,
    #[error("token signature does not verify with any active key of its type")]
    Signature,
    #[error("token's kid names no active key")]
    UnknownKid,
    #[error("token claims are not a JSON object")]
    Claims,
    #[error("token has no \"jti\"")]
    NoJti,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token was issued in the future")]
    IssuedInFuture,
    #[error("token's {0} claim is not a number")]
    TimeClaim(&'static str),
    #[error("token's schemas claim is malformed")]
    Schemas,
    #[error("token grants no schemas")]
    NoSchemas,
    #[error("token has been revoked")]
    Revoked,
}

/// The verified claims that matter here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub jti: String,
    /// `exp`, if the token has one (re-checked when a verified token is reused).
    pub exp: Option<u64>,
    /// Allowed `[database, schema]` (or one-part) patterns; `*` is a wildcard.
    pub schemas: Vec<Vec<String>>,
}

impl Grant {
    /// Whether the grant allows writing to `database.schema` (`*` wildcards): the database in
    /// any case (a target has one), the schema exactly as the target's catalog spells it, so a
    /// grant of `public` never reaches a schema named `Public`.
    pub fn allows(&self, database: &str, schema: &str) -> bool {
        self.schemas.iter().any(|allowed| match allowed.as_slice() {
            [db, s] => (db == "*" || db.eq_ignore_ascii_case(database)) && (s == "*" || s == schema),
            _ => false,
        })
    }
}

/// Verifies `token` against `keys` at time `now` (Unix seconds) with `leeway` seconds of clock
/// skew, and checks revocation.
pub fn verify(
    token: &str,
    keys: &[PublicKey],
    revoked: &HashSet<String>,
    now: u64,
    leeway: u64,
) -> Result<Grant, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Shape);
    };
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| TokenError::Shape);
    let header: Value = serde_json::from_slice(&decode(header)?).map_err(|_| TokenError::Header)?;
    let alg = header.get("alg").and_then(Value::as_str).ok_or(TokenError::Header)?;
    let alg = Alg::parse(alg).ok_or(TokenError::Algorithm)?;
    let kid = match header.get("kid") {
        None => None,
        Some(kid) => Some(kid.as_str().ok_or(TokenError::Header)?),
    };
    // A `kid` names the one key to try (ids are those of `jwt_public_keys`, the table's UUIDs).
    let candidates: Vec<&PublicKey> = keys.iter().filter(|k| kid.is_none_or(|kid| k.id == kid)).collect();
    if candidates.is_empty() && kid.is_some() {
        return Err(TokenError::UnknownKid);
    }
    let signing_input = &token.as_bytes()[..token.rfind('.').expect("three parts")];
    let signature = decode(signature)?;
    if !candidates.iter().any(|k| k.verifies(alg, signing_input, &signature)) {
        return Err(TokenError::Signature);
    }
    let claims: Value = serde_json::from_slice(&decode(claims)?).map_err(|_| TokenError::Claims)?;
    let grant = check_claims(&claims, now, leeway)?;
    if revoked.contains(&grant.jti) {
        return Err(TokenError::Revoked);
    }
    Ok(grant)
}

fn check_claims(claims: &Value, now: u64, leeway: u64) -> Result<Grant, TokenError> {
    let claims = claims.as_object().ok_or(TokenError::Claims)?;
    let jti = claims.get("jti").and_then(Value::as_str).filter(|j| !j.is_empty()).ok_or(TokenError::NoJti)?;
    let time = |name: &'static str| -> Result<Option<u64>, TokenError> {
        match claims.get(name) {
            None => Ok(None),
            Some(v) => v.as_f64().filter(|t| *t >= 0.0).map(|t| Some(t as u64)).ok_or(TokenError::TimeClaim(name)),
        }
    };
    if time("exp")?.is_some_and(|exp| now >= exp.saturating_add(leeway)) {
        return Err(TokenError::Expired);
    }
    let skew = leeway.max(FUTURE_SKEW);
    if time("nbf")?.is_some_and(|nbf| now.saturating_add(skew) < nbf) {
        return Err(TokenError::NotYetValid);
    }
    if time("iat")?.is_some_and(|iat| now.saturating_add(skew) < iat) {
        return Err(TokenError::IssuedInFuture);
    }
    let mut schemas = Vec::new();
    for namespace in [CLAIM_NAMESPACE, LEGACY_CLAIM_NAMESPACE] {
        let Some(section) = claims.get(namespace) else { continue };
        let Some(list) = section.get("schemas") else { continue };
        for entry in list.as_array().ok_or(TokenError::Schemas)? {
            let parts: Vec<String> = entry
                .as_array()
                .ok_or(TokenError::Schemas)?
                .iter()
                .map(|p| p.as_str().map(str::to_owned).ok_or(TokenError::Schemas))
                .collect::<Result<_, _>>()?;
            if parts.is_empty() || parts.len() > 2 {
                return Err(TokenError::Schemas);
            }
            schemas.push(parts);
        }
    }
    if schemas.is_empty() {
        return Err(TokenError::NoSchemas);
    }
    Ok(Grant { jti: jti.to_owned(), exp: time("exp")?, schemas })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wildcards_match_whole_parts_the_database_in_any_case_and_the_schema_exactly() {
        let grant = |s: &[&[&str]]| Grant {
            jti: "j".into(),
            exp: None,
            schemas: s.iter().map(|p| p.iter().map(|x| x.to_string()).collect()).collect(),
        };
        assert!(grant(&[&["App", "public"]]).allows("app", "public"));
        assert!(!grant(&[&["app", "PUBLIC"]]).allows("app", "public"), "a schema is matched exactly");
        assert!(!grant(&[&["app", "public"]]).allows("app", "Public"));
        assert!(grant(&[&["app", "*"]]).allows("app", "other"));
        assert!(grant(&[&["*", "public"]]).allows("x", "public"));
        assert!(!grant(&[&["*"]]).allows("app", "public"));
        assert!(!grant(&[&["app", "public"]]).allows("app", "private"));
    }

    #[test]
    fn registered_claims_are_enforced_with_leeway() {
        let base = json!({"jti": "a", CLAIM_NAMESPACE: {"schemas": [["app", "public"]]}});
        let with = |k: &str, v: u64| {
            let mut c = base.clone();
            c[k] = json!(v);
            c
        };
        assert!(check_claims(&base, 100, 0).is_ok());
        assert_eq!(check_claims(&with("exp", 100), 100, 0), Err(TokenError::Expired));
        assert!(check_claims(&with("exp", 100), 100, 5).is_ok());
        // nbf and iat get FUTURE_SKEW seconds at least, --jwtLeeway if it is more.
        assert!(check_claims(&with("nbf", 130), 100, 0).is_ok());
        assert_eq!(check_claims(&with("nbf", 131), 100, 0), Err(TokenError::NotYetValid));
        assert!(check_claims(&with("nbf", 160), 100, 60).is_ok());
        assert!(check_claims(&with("iat", 130), 100, 0).is_ok());
        assert_eq!(check_claims(&with("iat", 131), 100, 0), Err(TokenError::IssuedInFuture));
        // A numeric date must be a number; a huge one never expires (as in MOLT).
        let mut text_exp = base.clone();
        text_exp["exp"] = json!("123");
        assert_eq!(check_claims(&text_exp, 100, 0), Err(TokenError::TimeClaim("exp")));
        let mut huge_exp = base.clone();
        huge_exp["exp"] = json!(1e300);
        assert_eq!(check_claims(&huge_exp, u64::MAX - 1, 0).map(|g| g.exp), Ok(Some(u64::MAX)));
        assert_eq!(check_claims(&json!({CLAIM_NAMESPACE: {"schemas": [["a", "b"]]}}), 1, 0), Err(TokenError::NoJti));
        assert_eq!(check_claims(&json!({"jti": "a"}), 1, 0), Err(TokenError::NoSchemas));
        assert_eq!(
            check_claims(&json!({"jti": "a", CLAIM_NAMESPACE: {"schemas": [["a", "b", "c"]]}}), 1, 0),
            Err(TokenError::Schemas)
        );
        assert!(check_claims(&json!({"jti": "a", LEGACY_CLAIM_NAMESPACE: {"schemas": [["a", "b"]]}}), 1, 0).is_ok());
    }
}
