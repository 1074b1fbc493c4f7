//! HTTPS over real TLS with certificates made here: certificate files, plain HTTP refused on the
//! TLS port, HTTP/2 by ALPN, mutual TLS, and the self-signed mode's warning.

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{Ingest, Target, request, request_on};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

const ROW: &[u8] = br#"{"payload":[{"after": {"k": 1, "v": "x"}, "key": [1], "topic": "kv_bare", "updated": "1732615200000000000.0000000000"}],"length":1}"#;

struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Pki { ca: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
    }

    /// A certificate for `names` signed by the CA: (certificate PEM, key PEM).
    fn issue(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        (params.signed_by(&key, &self.ca).unwrap().pem(), key.serialize_pem())
    }

    fn write(&self, dir: &Path) {
        std::fs::write(dir.join("ca.pem"), self.ca.pem()).unwrap();
        let (cert, key) = self.issue(&["localhost", "127.0.0.1"]);
        std::fs::write(dir.join("server.pem"), cert).unwrap();
        std::fs::write(dir.join("server.key"), key).unwrap();
        let (cert, key) = self.issue(&["changefeed-client"]);
        std::fs::write(dir.join("client.pem"), cert).unwrap();
        std::fs::write(dir.join("client.key"), key).unwrap();
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn client_config(dir: &Path, with_client_cert: bool, alpn: &[&[u8]]) -> ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(dir.join("ca.pem")).unwrap()).unwrap();
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = if with_client_cert {
        let chain = vec![CertificateDer::from_pem_file(dir.join("client.pem")).unwrap()];
        builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(dir.join("client.key")).unwrap()).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

fn connect(port: u16, config: ClientConfig) -> std::io::Result<StreamOwned<ClientConnection, TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let conn = ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap()).unwrap();
    Ok(StreamOwned::new(conn, tcp))
}

fn https(port: u16, config: ClientConfig, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
    request_on(connect(port, config)?, method, path, body)
}

use rustls_pki_types::pem::PemObject;

/// Starts wharf-ingest with `args` and waits until `/_/healthz` answers over TLS with `config`.
fn start_tls(target: &Target, journal: &Path, args: &[&str], config: impl Fn() -> ClientConfig) -> Ingest {
    let port = wharf_testkit::free_port().unwrap();
    Ingest::start_checked(port, &target.url(), journal, args, |port| {
        https(port, config(), "GET", "/_/healthz", b"").is_ok_and(|(s, _)| s == 200)
    })
}

#[test]
fn https_with_certificate_files_serves_h2_and_http1_and_refuses_plain_http() {
    let target = Target::start();
    let dir = tempfile::tempdir().unwrap();
    Pki::new().write(dir.path());
    let journal = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    let args = ["--tlsCertificate", cert.to_str().unwrap(), "--tlsPrivateKey", key.to_str().unwrap()];
    let ingest = start_tls(&target, journal.path(), &args, || client_config(dir.path(), false, &[b"http/1.1"]));
    let (status, text) =
        https(ingest.port, client_config(dir.path(), false, &[b"http/1.1"]), "POST", "/app/public", ROW).unwrap();
    assert_eq!((status, text.as_str()), (200, "OK\n"));
    // CockroachDB's client offers HTTP/2 first; the server picks it.
    let mut stream = connect(ingest.port, client_config(dir.path(), false, &[b"h2", b"http/1.1"])).unwrap();
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).unwrap();
    }
    assert_eq!(stream.conn.alpn_protocol(), Some(&b"h2"[..]));
    // Plain HTTP on the TLS port gets no HTTP answer.
    assert!(request(ingest.port, "POST", "/app/public", ROW).is_err());
}

#[test]
fn mutual_tls_accepts_a_client_certificate_from_the_ca_and_refuses_none() {
    let target = Target::start();
    let dir = tempfile::tempdir().unwrap();
    Pki::new().write(dir.path());
    let journal = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f).to_str().unwrap().to_owned();
    let args = [
        "--tlsCertificate".to_owned(),
        p("server.pem"),
        "--tlsPrivateKey".to_owned(),
        p("server.key"),
        "--tlsClientCA".to_owned(),
        p("ca.pem"),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ingest = start_tls(&target, journal.path(), &args, || client_config(dir.path(), true, &[b"http/1.1"]));
    let (status, _) =
        https(ingest.port, client_config(dir.path(), true, &[b"http/1.1"]), "POST", "/app/public", ROW).unwrap();
    assert_eq!(status, 200);
    assert!(https(ingest.port, client_config(dir.path(), false, &[b"http/1.1"]), "POST", "/app/public", ROW).is_err());
    // A client certificate from another CA is refused too.
    let other = tempfile::tempdir().unwrap();
    Pki::new().write(other.path());
    std::fs::copy(dir.path().join("ca.pem"), other.path().join("ca.pem")).unwrap();
    assert!(https(ingest.port, client_config(other.path(), true, &[b"http/1.1"]), "POST", "/app/public", ROW).is_err());
}

/// Accepts any server certificate: the only way to reach a `--tlsSelfSigned` server, as
/// CockroachDB's `insecure_tls_skip_verify=true` does.
#[derive(Debug)]
struct SkipVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn skip_verify() -> ClientConfig {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SkipVerify(provider())))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

#[test]
fn self_signed_mode_serves_https_and_warns_on_health() {
    let target = Target::start();
    let journal = tempfile::tempdir().unwrap();
    let ingest = start_tls(&target, journal.path(), &["--tlsSelfSigned"], skip_verify);
    let (status, body) = https(ingest.port, skip_verify(), "GET", "/_/healthz", b"").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("warning: --tlsSelfSigned"), "{body}");
    assert!(body.contains("warning: --disableAuthentication"), "{body}");
    assert_eq!(https(ingest.port, skip_verify(), "POST", "/app/public", ROW).unwrap().0, 200);
}
