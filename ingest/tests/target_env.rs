//! Configuration from the environment, against a PostgreSQL that wants TLS and a password:
//! every flag from a `WHARF_…` variable, the password from libpq's `PGPASSWORD`, and errors that
//! say where and why without showing the password.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use wharf_testkit::TlsPg;
use wharf_testkit::tlspg::PASSWORD;

fn ingest_from_env(pg: &TlsPg, port: u16, journal: &std::path::Path, password: &str) -> Command {
    let conn = pg.url(
        "localhost",
        "postgres",
        None,
        &format!("sslmode=verify-full&sslrootcert={}", pg.file("ca.crt").display()),
    );
    let mut command = Command::new(env!("CARGO_BIN_EXE_wharf-ingest"));
    command
        .arg("start")
        .env("WHARF_TARGET_CONN", conn)
        .env("PGPASSWORD", password)
        .env("WHARF_BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("WHARF_JOURNAL_DIR", journal)
        .env("WHARF_DISABLE_AUTHENTICATION", "true")
        .env("WHARF_QUEUE_ADDR", format!("127.0.0.1:{}", common::free_port().unwrap()))
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::null());
    command
}

async fn wharf_sessions(pg: &TlsPg) -> Vec<bool> {
    let admin = wharf_targetdb::connect(&pg.admin_conn()).await.unwrap();
    let rows = admin
        .query(
            "SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'wharf' AND a.pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

#[tokio::test]
async fn every_setting_can_come_from_the_environment() {
    let pg = TlsPg::start().unwrap();
    let journal = tempfile::tempdir().unwrap();
    let port = common::free_port().unwrap();
    let mut child =
        wharf_testkit::Process::spawn(ingest_from_env(&pg, port, journal.path(), PASSWORD).stderr(Stdio::null()))
            .unwrap();
    let healthy = move || common::request(port, "GET", "/_/healthz", b"").is_ok_and(|(status, _)| status == 200);
    let up = tokio::task::spawn_blocking(move || wharf_testkit::wait_until(Duration::from_secs(30), healthy));
    assert!(up.await.unwrap(), "wharf-ingest did not become healthy from its environment");
    let sessions = wharf_sessions(&pg).await;
    assert!(!sessions.is_empty() && sessions.iter().all(|ssl| *ssl), "wharf's sessions over TLS: {sessions:?}");
    child.kill().unwrap();
}

#[tokio::test]
async fn a_wrong_password_stops_start_with_where_and_why() {
    let pg = TlsPg::start().unwrap();
    let journal = tempfile::tempdir().unwrap();
    let port = common::free_port().unwrap();
    let output = ingest_from_env(&pg, port, journal.path(), "not-the-password").output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = format!(
        "cannot connect to the target (host localhost, port {}, database postgres, user postgres): password authentication failed for user \"postgres\" (SQLSTATE 28P01)",
        pg.pg.port
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert_eq!(stderr.matches("password authentication failed").count(), 1, "the cause once: {stderr}");
    assert!(!stderr.contains("not-the-password"), "{stderr}");
}
