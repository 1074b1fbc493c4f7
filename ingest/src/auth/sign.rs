//! Signing tokens (for `wharfctl make-jwt` and tests): PEM private keys in PKCS#8, SEC1
//! (`EC PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`); P-256 → ES256, P-384 → ES384,
//! P-521 → ES512, RSA → RS256.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, EcdsaSigningAlgorithm, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use thiserror::Error;

use super::jwt::Alg;

#[derive(Debug, Error)]
pub enum SignError {
    #[error("no PEM private key (PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY) found")]
    NoKey,
    #[error("the private key is not an RSA or EC P-256/P-384/P-521 key")]
    Unsupported,
    #[error("signing failed")]
    Sign,
}

enum Pair {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

pub struct SigningKey {
    pub alg: Alg,
    pair: Pair,
}

const CURVES: [(Alg, &EcdsaSigningAlgorithm); 3] = [
    (Alg::Es256, &signature::ECDSA_P256_SHA256_FIXED_SIGNING),
    (Alg::Es384, &signature::ECDSA_P384_SHA384_FIXED_SIGNING),
    (Alg::Es512, &signature::ECDSA_P521_SHA512_FIXED_SIGNING),
];

impl SigningKey {
    pub fn from_pem(pem: &str) -> Result<SigningKey, SignError> {
        let key = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| SignError::NoKey)?;
        let der = key.secret_der();
        let ec = |parse: &dyn Fn(&'static EcdsaSigningAlgorithm) -> Option<EcdsaKeyPair>| {
            CURVES
                .iter()
                .find_map(|(alg, curve)| parse(curve).map(|pair| SigningKey { alg: *alg, pair: Pair::Ec(pair) }))
        };
        let found = match &key {
            PrivateKeyDer::Pkcs8(_) => ec(&|c| EcdsaKeyPair::from_pkcs8(c, der).ok()).or_else(|| {
                RsaKeyPair::from_pkcs8(der).ok().map(|p| SigningKey { alg: Alg::Rs256, pair: Pair::Rsa(p) })
            }),
            PrivateKeyDer::Sec1(_) => ec(&|c| EcdsaKeyPair::from_private_key_der(c, der).ok()),
            PrivateKeyDer::Pkcs1(_) => {
                RsaKeyPair::from_der(der).ok().map(|p| SigningKey { alg: Alg::Rs256, pair: Pair::Rsa(p) })
            }
            _ => None,
        };
        found.ok_or(SignError::Unsupported)
    }

    /// A compact JWS of `claims` with header `{"alg":…,"typ":"JWT"}`.
    pub fn sign(&self, claims: &serde_json::Value) -> Result<String, SignError> {
        let header = serde_json::json!({"alg": self.alg.name(), "typ": "JWT"});
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let rng = SystemRandom::new();
        let signature = match &self.pair {
            Pair::Ec(pair) => pair.sign(&rng, input.as_bytes()).map_err(|_| SignError::Sign)?.as_ref().to_vec(),
            Pair::Rsa(pair) => {
                let mut out = vec![0; pair.public_modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut out)
                    .map_err(|_| SignError::Sign)?;
                out
            }
        };
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}
