//! The rustls client configuration for a connection to the target, from [`SslSettings`], with
//! libpq's rules: a root certificate, when there is one, is always checked (even under prefer and
//! require); verify-ca and verify-full need one; verify-full also checks the host name; and
//! `sslrootcert=system` means the system's trust store and full verification.

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::conninfo::{RootCert, SslMode, SslSettings};

/// The client configuration, or `None` for `sslmode=disable`.
pub fn client_config(ssl: &SslSettings) -> Result<Option<ClientConfig>, String> {
    if ssl.mode == SslMode::Disable {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = verifier(ssl, &provider)?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (&ssl.cert, &ssl.key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(certificates(cert)?, private_key(key)?)
            .map_err(|e| format!("client certificate {} and key {}: {e}", cert.display(), key.display()))?,
        (Some(_), None) => return Err("sslcert is set but sslkey is not".into()),
        (None, Some(_)) => return Err("sslkey is set but sslcert is not".into()),
    };
    Ok(Some(config))
}

fn verifier(ssl: &SslSettings, provider: &Arc<CryptoProvider>) -> Result<Arc<dyn ServerCertVerifier>, String> {
    let algorithms = provider.signature_verification_algorithms;
    let Some(root) = &ssl.root_cert else {
        return match ssl.mode {
            SslMode::VerifyCa | SslMode::VerifyFull => Err(
                "sslmode verify-ca and verify-full need the CA that signed the server's certificate: set sslrootcert=FILE (or PGSSLROOTCERT), or sslrootcert=system".into(),
            ),
            _ => Ok(Arc::new(Lenient { chain: None, algorithms })),
        };
    };
    let (roots, full) = match root {
        RootCert::File(path) => (file_roots(path)?, ssl.mode == SslMode::VerifyFull),
        RootCert::System => (system_roots()?, true),
    };
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("root certificates: {e}"))?;
    Ok(if full { webpki } else { Arc::new(Lenient { chain: Some(webpki), algorithms }) })
}

fn file_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots.add(cert).map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(format!("sslrootcert=system: no certificate in the system trust store ({:?})", found.errors));
    }
    Ok(roots)
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    wharf_base::pem::read_chain(path, "certificates").map_err(|e| e.to_string())
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    wharf_base::pem::read_key(path).map_err(|e| e.to_string())
}

/// The verifier of prefer and require without a root certificate (`chain: None`: encrypted, any
/// certificate accepted, as libpq does) and of verify-ca (`chain: Some`: the chain must reach a
/// root, the name in the certificate is not checked). The handshake signature is always checked.
#[derive(Debug)]
struct Lenient {
    chain: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else { return Ok(ServerCertVerified::assertion()) };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
