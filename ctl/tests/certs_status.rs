//! `wharfctl certs create` and `wharfctl status` as an operator runs them: the files and their
//! modes, no overwriting, certificates that the queue service and its clients accept (and another
//! set's that they refuse), and the status of a live queue service.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use wharf_queue::quic::{ClientSettings, QuicClient, ServerSettings, TlsFiles};
use wharf_queue::{Hlc, Journal, JournalConfig, Partition, QueueService, Row};

const FILES: [&str; 8] =
    ["ca.crt", "ca.key", "queue.crt", "queue.key", "applier.crt", "applier.key", "observer.crt", "observer.key"];

fn wharfctl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wharfctl")).args(args).output().unwrap()
}

fn create(dir: &Path) {
    let out = wharfctl(&["certs", "create", "--dir", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn client(dir: &Path, queue_addr: &str) -> QuicClient {
    let tls =
        TlsFiles { certificate: dir.join("applier.crt"), private_key: dir.join("applier.key"), ca: dir.join("ca.crt") };
    QuicClient::new(ClientSettings { addr: queue_addr.to_owned(), tls, name: "test".into(), workers: 0 }).unwrap()
}

#[test]
fn certs_are_written_private_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    create(dir.path());
    for file in FILES {
        let mode = std::fs::metadata(dir.path().join(file)).unwrap().permissions().mode() & 0o777;
        let want = if file.ends_with(".key") { 0o600 } else { 0o644 };
        assert_eq!(mode, want, "{file}");
    }
    let before = std::fs::read(dir.path().join("ca.key")).unwrap();
    let again = wharfctl(&["certs", "create", "--dir", dir.path().to_str().unwrap()]);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("refusing to overwrite") && stderr.contains("ca.key"), "{stderr}");
    assert_eq!(std::fs::read(dir.path().join("ca.key")).unwrap(), before);
}

#[test]
fn the_queue_service_accepts_its_own_set_refuses_another_and_reports_status() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    create(ours.path());
    create(theirs.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let journal_dir = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let journal = Journal::open(&JournalConfig::scratch(journal_dir.path())).unwrap();
        let partition = Partition::new("app", "public");
        let rows: Vec<Row> = (0..3)
            .map(|k| Row {
                hlc: Hlc::new(10 + k, 0),
                table: "t".into(),
                key: format!("[{k}]").into_bytes(),
                after: Some(b"{\"v\":1}".to_vec()),
            })
            .collect();
        journal.append_durable(&partition, &rows).await.unwrap();
        journal.resolve_durable(&partition, Hlc::new(11, 0)).await.unwrap();
        journal.wait_written().await;
        let service = QueueService::new(journal, Duration::from_secs(10));
        let tls = TlsFiles {
            certificate: ours.path().join("queue.crt"),
            private_key: ours.path().join("queue.key"),
            ca: ours.path().join("ca.crt"),
        };
        let settings = ServerSettings { addr: "127.0.0.1:0".parse().unwrap(), tls, client_crl: None };
        let endpoint = wharf_queue::quic::server::bind(&settings, Duration::from_secs(10)).unwrap();
        let addr = format!("127.0.0.1:{}", endpoint.local_addr().unwrap().port());
        tokio::spawn(wharf_queue::quic::serve(endpoint, service, std::future::pending()));

        let status = client(ours.path(), &addr).status().await.unwrap();
        assert_eq!(status.partitions.len(), 1);
        let p = &status.partitions[0];
        assert_eq!((p.lease.partition.as_str(), p.resolved.as_deref()), ("app.public", Some("11.0000000000")));
        assert_eq!(p.pending_rows, 3);
        assert!(client(theirs.path(), &addr).status().await.is_err(), "another CA's certificate must be refused");

        // The binary, as an operator runs it, with a target holding two quarantined versions.
        let pg = wharf_testkit::LocalPg::start().unwrap();
        let target_url = pg.url("postgres");
        let target = wharf_targetdb::connect(&target_url).await.unwrap();
        wharf_targetdb::staging::create_checkpoints(&target, "_replicator").await.unwrap();
        wharf_targetdb::staging::create_quarantine(&target, "_replicator").await.unwrap();
        target
            .batch_execute(
                "INSERT INTO _replicator.quarantine (partition, table_name, key, version, version_wall, version_logical, message)
                 VALUES ('app.public', 't', '[1]', '10.0000000000', 10, 0, 'refused'),
                        ('app.public', 't', '[1]', '11.0000000000', 11, 0, 'held')",
            )
            .await
            .unwrap();
        let dir = ours.path().to_owned();
        let out = tokio::task::spawn_blocking(move || {
            let path = |f: &str| dir.join(f).to_str().unwrap().to_owned();
            wharfctl(&[
                "status",
                "--json",
                "--targetConn",
                &target_url,
                "--queueAddr",
                &addr,
                "--queueCA",
                &path("ca.crt"),
                "--queueCertificate",
                &path("applier.crt"),
                "--queuePrivateKey",
                &path("applier.key"),
            ])
        })
        .await
        .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let partition = &json["partitions"][0];
        assert_eq!(partition["partition"], "app.public");
        assert_eq!(partition["resolved"], "11.0000000000");
        assert_eq!(partition["pending_rows"], 3);
        assert_eq!(partition["holder"], serde_json::Value::Null);
        assert_eq!(partition["quarantined"], 2);
        assert_eq!(json["sessions"], serde_json::json!([]));
    });
}
