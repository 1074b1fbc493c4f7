//! HTTPS: certificates from PEM files or a generated self-signed one, optional client
//! certificates (mTLS), TLS 1.2 and 1.3 only, HTTP/2 and HTTP/1.1 by ALPN. One crypto provider
//! (aws-lc-rs) for everything.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

/// Where the server certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertSource {
    Files {
        certificate: PathBuf,
        private_key: PathBuf,
    },
    /// A fresh P-256 certificate for `localhost`, `127.0.0.1` and `::1`. For testing only.
    SelfSigned,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    pub source: CertSource,
    /// PEM bundle of CAs that client certificates must chain to; `None` accepts any client.
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Error)]
pub enum TlsError {
    #[error(transparent)]
    Pem(#[from] wharf_base::pem::PemError),
    #[error("cannot encode the generated key: {0}")]
    GeneratedKey(String),
    #[error("cannot generate the self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client CA bundle {path} refused: {reason}")]
    ClientCa { path: PathBuf, reason: String },
}

/// A ready server configuration and, for a self-signed certificate, its SHA-256 fingerprint.
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    pub self_signed_sha256: Option<String>,
}

pub fn server_config(settings: &TlsSettings) -> Result<ServerTls, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let (chain, key, fingerprint) = match &settings.source {
        CertSource::Files { certificate, private_key } => (read_chain(certificate)?, read_key(private_key)?, None),
        CertSource::SelfSigned => {
            let (chain, key) = self_signed()?;
            let fingerprint = sha256_hex(&chain[0]);
            (chain, key, Some(fingerprint))
        }
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match &settings.client_ca {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_chain(path)? {
                roots.add(cert).map_err(|e| TlsError::ClientCa { path: path.clone(), reason: e.to_string() })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::ClientCa { path: path.clone(), reason: e.to_string() })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(ServerTls { config: Arc::new(config), self_signed_sha256: fingerprint })
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    Ok(wharf_base::pem::read_chain(path, "certificate")?)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    Ok(wharf_base::pem::read_key(path)?)
}

fn self_signed() -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()])?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "wharf self-signed (testing only)");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.self_signed(&key)?;
    let key = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| TlsError::GeneratedKey(e.to_string()))?;
    Ok((vec![cert.der().clone()], key))
}

fn sha256_hex(cert: &CertificateDer<'_>) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert.as_ref());
    digest.as_ref().iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_configuration_offers_h2_and_http1() {
        let tls = server_config(&TlsSettings { source: CertSource::SelfSigned, client_ca: None }).unwrap();
        assert_eq!(tls.config.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert_eq!(tls.self_signed_sha256.unwrap().len(), 32 * 3 - 1);
    }

    #[test]
    fn a_missing_certificate_file_is_named() {
        let settings = TlsSettings {
            source: CertSource::Files {
                certificate: "/nonexistent/cert.pem".into(),
                private_key: "/nonexistent/key.pem".into(),
            },
            client_ca: None,
        };
        let error = server_config(&settings).err().unwrap().to_string();
        assert!(error.contains("/nonexistent/cert.pem"), "{error}");
    }
}
