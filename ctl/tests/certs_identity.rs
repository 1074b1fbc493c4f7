//! What the certificates `wharfctl certs` issues let a queue client do: an observer certificate
//! reads status and takes no lease, a scoped applier certificate leases only its schemas, every
//! certificate expires and the CA signs end-entity certificates only, and a revoked certificate
//! is refused in the handshake.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use wharf_queue::quic::{ClientSettings, QuicClient, ServerSettings, TlsFiles};
use wharf_queue::{Hlc, Journal, JournalConfig, Partition, QueueClient, QueueService, Row};
use x509_cert::der::Decode;

fn wharfctl(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_wharfctl")).args(args).output().unwrap();
    assert!(out.status.success(), "wharfctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn client(dir: &Path, name: &str, addr: &str, workers: u32) -> QuicClient {
    let tls = TlsFiles {
        certificate: dir.join(format!("{name}.crt")),
        private_key: dir.join(format!("{name}.key")),
        ca: dir.join("ca.crt"),
    };
    QuicClient::new(ClientSettings { addr: addr.to_owned(), tls, name: name.into(), workers }).unwrap()
}

/// A queue service over a journal with resolved work in `app.public` and `app.s1`.
async fn service(dir: &Path, journal_dir: &Path, crl: Option<&Path>) -> String {
    let journal = Journal::open(&JournalConfig::scratch(journal_dir)).unwrap();
    for schema in ["public", "s1"] {
        let partition = Partition::new("app", schema);
        let row = Row { hlc: Hlc::new(10, 0), table: "t".into(), key: b"[1]".to_vec(), after: Some(b"{}".to_vec()) };
        journal.append_durable(&partition, &[row]).await.unwrap();
        journal.resolve_durable(&partition, Hlc::new(10, 0)).await.unwrap();
    }
    let service = QueueService::new(journal, Duration::from_secs(10));
    let tls =
        TlsFiles { certificate: dir.join("queue.crt"), private_key: dir.join("queue.key"), ca: dir.join("ca.crt") };
    let settings = ServerSettings { addr: "127.0.0.1:0".parse().unwrap(), tls, client_crl: crl.map(Path::to_owned) };
    let endpoint = wharf_queue::quic::server::bind(&settings, Duration::from_secs(10)).unwrap();
    let addr = format!("localhost:{}", endpoint.local_addr().unwrap().port());
    tokio::spawn(wharf_queue::quic::serve(endpoint, service, std::future::pending()));
    addr
}

#[test]
fn observers_read_status_only_and_scoped_appliers_lease_only_their_schemas() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    wharfctl(&["certs", "create", "--dir", d]);
    wharfctl(&["certs", "issue", "--dir", d, "--name", "scoped", "--scope", "app.s1"]);
    let journal = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let addr = service(dir.path(), journal.path(), None).await;
        let observer = client(dir.path(), "observer", &addr, 0);
        assert_eq!(observer.status().await.unwrap().partitions.len(), 2);
        let refused = client(dir.path(), "observer", &addr, 1).connect().await.unwrap_err().to_string();
        assert!(refused.contains("observer"), "{refused}");
        let scoped = client(dir.path(), "scoped", &addr, 1);
        let grant = scoped.acquire(0, Duration::from_secs(2)).await.unwrap().expect("its own schema");
        assert_eq!(grant.partition, Partition::new("app", "s1"));
        scoped.release(0, &grant, wharf_queue::Release::Done).await.unwrap();
        let again = scoped.acquire(0, Duration::from_millis(200)).await.unwrap();
        assert_eq!(again.map(|g| g.partition), Some(Partition::new("app", "s1")), "never app.public");
        let everything = client(dir.path(), "applier", &addr, 1);
        let grant = everything.acquire(0, Duration::from_secs(2)).await.unwrap().expect("any schema");
        assert_eq!(grant.partition, Partition::new("app", "public"));
    });
}

#[test]
fn certificates_expire_and_the_ca_signs_end_entities_only() {
    let dir = tempfile::tempdir().unwrap();
    wharfctl(&["certs", "create", "--dir", dir.path().to_str().unwrap()]);
    let read = |name: &str| {
        let der = CertificateDer::from_pem_file(dir.path().join(name)).unwrap();
        x509_cert::Certificate::from_der(der.as_ref()).unwrap()
    };
    let days = |c: &x509_cert::Certificate| {
        let v = &c.tbs_certificate.validity;
        (v.not_after.to_unix_duration().as_secs() - v.not_before.to_unix_duration().as_secs()) / 86_400
    };
    let ca = read("ca.crt");
    assert!((3649..=3651).contains(&days(&ca)), "CA valid {} days", days(&ca));
    for leaf in ["queue.crt", "applier.crt", "observer.crt"] {
        assert!((364..=366).contains(&days(&read(leaf))), "{leaf} valid {} days", days(&read(leaf)));
    }
    let constraints = ca
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id.to_string() == "2.5.29.19")
        .expect("basic constraints");
    let constraints = x509_cert::ext::pkix::BasicConstraints::from_der(constraints.extn_value.as_bytes()).unwrap();
    assert!(constraints.ca);
    assert_eq!(constraints.path_len_constraint, Some(0));
}

#[test]
fn a_revoked_certificate_is_refused_in_the_handshake() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    wharfctl(&["certs", "create", "--dir", d]);
    wharfctl(&["certs", "issue", "--dir", d, "--name", "leaked"]);
    let revoked = wharfctl(&["certs", "revoke", "--dir", d, "--certificate", &format!("{d}/leaked.crt")]);
    assert!(revoked.contains("now lists 1 certificates"), "{revoked}");
    let journal = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let addr = service(dir.path(), journal.path(), Some(&dir.path().join("ca.crl"))).await;
        assert!(client(dir.path(), "leaked", &addr, 0).status().await.is_err(), "a revoked certificate got in");
        client(dir.path(), "applier", &addr, 0).status().await.expect("the others still get in");
    });
}
