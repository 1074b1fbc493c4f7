//! Mutual TLS for the queue service: TLS 1.3 (QUIC requires it), one CA for both sides.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::CertificateRevocationListDer;
use rustls_pki_types::pem::PemObject;
use thiserror::Error;
use wharf_base::pem::{PemError, read_chain, read_key};

use super::datagrams::MAX_UDP_PAYLOAD;
use crate::wire::ALPN;

/// Flow-control window for one window stream: a chunk of up to 8 MiB plus its largest rows.
const CHUNK_WINDOW: u64 = 16 << 20;

/// Transport settings both ends share: path MTU discovery up to [`MAX_UDP_PAYLOAD`].
fn transport() -> quinn::TransportConfig {
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MAX_UDP_PAYLOAD);
    let mut transport = quinn::TransportConfig::default();
    transport.mtu_discovery_config(Some(mtu));
    transport
}

/// A certificate chain, its key, and the CA the peer's certificate must chain to.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub certificate: PathBuf,
    pub private_key: PathBuf,
    pub ca: PathBuf,
}

#[derive(Debug, Error)]
pub enum TlsError {
    #[error(transparent)]
    Pem(#[from] PemError),
    #[error("CA bundle {path} refused: {reason}")]
    Ca { path: PathBuf, reason: String },
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("QUIC refused the TLS configuration: {0}")]
    Quic(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_chain(path, "CA certificate")? {
        roots.add(cert).map_err(|e| TlsError::Ca { path: path.to_owned(), reason: e.to_string() })?;
    }
    Ok(Arc::new(roots))
}

/// The server side: only clients with a certificate signed by `files.ca`, and not revoked by a
/// list in `crl`, get through.
pub fn server_config(
    files: &TlsFiles,
    crl: Option<&Path>,
    idle_timeout: Duration,
) -> Result<quinn::ServerConfig, TlsError> {
    let mut verifier = WebPkiClientVerifier::builder_with_provider(roots(&files.ca)?, provider());
    if let Some(path) = crl {
        let unreadable =
            |reason: String| PemError::Unreadable { what: "revocation list", path: path.to_owned(), reason };
        let lists: Vec<CertificateRevocationListDer<'static>> = CertificateRevocationListDer::pem_file_iter(path)
            .map_err(|e| unreadable(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| unreadable(e.to_string()))?;
        if lists.is_empty() {
            return Err(unreadable("it holds no revocation list".into()).into());
        }
        // Only the client's own certificate is checked (the CA issues no intermediates).
        verifier = verifier.with_crls(lists).only_check_end_entity_revocation();
    }
    let verifier = verifier.build().map_err(|e| TlsError::Ca { path: files.ca.clone(), reason: e.to_string() })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(read_chain(&files.certificate, "certificate")?, read_key(&files.private_key)?)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    let crypto =
        quinn::crypto::rustls::QuicServerConfig::try_from(config).map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = transport();
    transport.max_idle_timeout(Some(idle_timeout.try_into().map_err(|_| TlsError::Quic("idle timeout".into()))?));
    // One chunk (up to 8 MiB) goes out at once; the protocol never has more than one in flight
    // per window, so this does not let a slow applier make the service buffer more.
    transport.send_window(CHUNK_WINDOW * 4);
    // What a client can make the service buffer: requests of at most 1 MiB, on bidirectional
    // streams only (their number is raised after the hello to what the session's workers need).
    transport.max_concurrent_uni_streams(0u32.into());
    transport.max_concurrent_bidi_streams(8u32.into());
    transport.stream_receive_window(quinn::VarInt::from_u32((super::frames::MAX_REQUEST + (64 << 10)) as u32));
    transport.receive_window(quinn::VarInt::from_u32(16 << 20));
    server.transport_config(Arc::new(transport));
    Ok(server)
}

/// The client side: verifies the server against `files.ca` and presents its own certificate.
pub fn client_config(files: &TlsFiles) -> Result<quinn::ClientConfig, TlsError> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(&files.ca)?)
        .with_client_auth_cert(read_chain(&files.certificate, "certificate")?, read_key(&files.private_key)?)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(config).map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = transport();
    // Keeps an idle but healthy connection open; the server's idle timeout (the lease timeout)
    // then only ends connections whose peer is gone.
    transport.keep_alive_interval(Some(Duration::from_secs(1)));
    // Room for a whole chunk per window stream, so a chunk never waits on flow-control updates.
    transport.stream_receive_window(quinn::VarInt::from_u32(CHUNK_WINDOW as u32));
    client.transport_config(Arc::new(transport));
    Ok(client)
}
