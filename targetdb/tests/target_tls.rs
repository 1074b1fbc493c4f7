//! TLS and passwords to a real PostgreSQL started with `ssl = on`, scram-sha-256 and a CA made
//! here: every sslmode, a wrong CA, a wrong host name, client certificates, the password file.

use std::sync::OnceLock;

use wharf_targetdb::{ConnInfo, connect, connect_with};
use wharf_testkit::TlsPg;
use wharf_testkit::tlspg::{PASSWORD, write};

/// One server for the file.
fn server() -> &'static TlsPg {
    static SERVER: OnceLock<TlsPg> = OnceLock::new();
    SERVER.get_or_init(|| TlsPg::start().unwrap())
}

fn file(name: &str) -> String {
    server().file(name).display().to_string()
}

fn url(host: &str, user: &str, password: Option<&str>, query: &str) -> String {
    server().url(host, user, password, query)
}

async fn ssl_in_use(conn: &str) -> bool {
    let client = connect(conn).await.unwrap_or_else(|e| panic!("{conn}: {e}"));
    client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn verify_full_with_the_right_ca_connects_over_tls() {
    let query = format!("sslmode=verify-full&sslrootcert={}", file("ca.crt"));
    assert!(ssl_in_use(&url("localhost", "postgres", Some(PASSWORD), &query)).await);
}

#[tokio::test]
async fn a_wrong_ca_is_refused_with_host_port_and_reason() {
    let port = server().pg.port;
    for mode in ["verify-full", "verify-ca", "require", "prefer"] {
        let query = format!("sslmode={mode}&sslrootcert={}", file("other-ca.crt"));
        let err = connect(&url("localhost", "postgres", Some(PASSWORD), &query)).await.unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("cannot connect to the target (host localhost, port {port}, database postgres, user postgres): error performing TLS handshake: invalid peer certificate: UnknownIssuer")),
            "{mode}: {err}"
        );
        assert!(!err.contains(PASSWORD));
    }
}

#[tokio::test]
async fn verify_full_checks_the_host_name_and_verify_ca_does_not() {
    let query = |mode: &str| format!("sslmode={mode}&sslrootcert={}", file("ca.crt"));
    let err = connect(&url("127.0.0.1", "postgres", Some(PASSWORD), &query("verify-full"))).await.unwrap_err();
    assert!(err.to_string().contains("certificate not valid for name"), "{err}");
    assert!(ssl_in_use(&url("127.0.0.1", "postgres", Some(PASSWORD), &query("verify-ca"))).await);
}

#[tokio::test]
async fn require_and_prefer_without_a_root_certificate_encrypt_without_checking() {
    let home = tempfile::tempdir().unwrap();
    let conn = |mode: &str| {
        format!(
            "host=127.0.0.1 port={} user=postgres password={PASSWORD} dbname=postgres sslmode={mode}",
            server().pg.port
        )
    };
    for mode in ["require", "prefer"] {
        let info =
            ConnInfo::parse_with(&conn(mode), &|k| (k == "HOME").then(|| home.path().display().to_string())).unwrap();
        let client = connect_with(&info).await.unwrap_or_else(|e| panic!("{mode}: {e}"));
        let ssl: bool =
            client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap().get(0);
        assert!(ssl, "{mode}");
    }
}

#[tokio::test]
async fn verify_modes_without_a_root_certificate_say_what_is_missing() {
    let home = tempfile::tempdir().unwrap();
    let conn = url("localhost", "postgres", Some(PASSWORD), "sslmode=verify-full");
    let info = ConnInfo::parse_with(&conn, &|k| (k == "HOME").then(|| home.path().display().to_string())).unwrap();
    let err = connect_with(&info).await.unwrap_err().to_string();
    assert!(err.contains("need the CA that signed the server's certificate: set sslrootcert=FILE"), "{err}");
}

#[tokio::test]
async fn plain_tcp_is_refused_by_the_server_with_its_reason() {
    let err = connect(&url("127.0.0.1", "postgres", Some(PASSWORD), "sslmode=disable")).await.unwrap_err().to_string();
    assert!(err.contains("pg_hba.conf rejects connection") && err.contains("SQLSTATE 28000"), "{err}");
}

#[tokio::test]
async fn a_wrong_password_reads_as_such_and_is_never_shown() {
    let err = connect(&url(
        "localhost",
        "postgres",
        Some("wrong-pw"),
        &format!("sslmode=verify-full&sslrootcert={}", file("ca.crt")),
    ))
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("password authentication failed for user \"postgres\" (SQLSTATE 28P01)"), "{err}");
    assert!(!err.contains("wrong-pw"));
}

#[tokio::test]
async fn the_password_comes_from_the_password_file() {
    let dir = tempfile::tempdir().unwrap();
    let passfile =
        write(dir.path(), "pgpass", &format!("localhost:{}:*:postgres:{PASSWORD}\n", server().pg.port)).unwrap();
    let query = format!("sslmode=verify-full&sslrootcert={}&passfile={}", file("ca.crt"), passfile.display());
    assert!(ssl_in_use(&url("localhost", "postgres", None, &query)).await);
}

#[tokio::test]
async fn a_client_certificate_logs_in_without_a_password() {
    let query = format!(
        "sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
        file("ca.crt"),
        file("client.crt"),
        file("client.key")
    );
    let admin = connect(&server().admin_conn()).await.unwrap();
    admin
        .batch_execute("DO $$ BEGIN CREATE ROLE certuser LOGIN; EXCEPTION WHEN duplicate_object THEN END $$")
        .await
        .unwrap();
    let client = connect(&url("localhost", "certuser", None, &query)).await.unwrap();
    let user: String = client.query_one("SELECT current_user::text", &[]).await.unwrap().get(0);
    assert_eq!(user, "certuser");
    let without = format!("sslmode=verify-full&sslrootcert={}", file("ca.crt"));
    let err = connect(&url("localhost", "certuser", None, &without)).await.unwrap_err().to_string();
    assert!(err.contains("certuser"), "{err}");
}
