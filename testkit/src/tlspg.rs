//! A [`LocalPg`] that serves TLS with a certificate for `localhost` only, signed by a CA made here,
//! refuses plain TCP, wants a password (scram-sha-256) from everyone but `certuser`, who logs in
//! with a client certificate. For tests of TLS and passwords to the target.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

use crate::localpg::{LocalPg, LocalPgError, PgOptions, ServerTls};

/// The `postgres` user's password.
pub const PASSWORD: &str = "s3cret-pw";

pub struct TlsPg {
    pub pg: LocalPg,
    files: tempfile::TempDir,
}

impl TlsPg {
    /// Writes `ca.crt`, `other-ca.crt` (a CA that signed nothing here), `client.crt` and
    /// `client.key` (for `certuser`), then starts the server.
    pub fn start() -> Result<TlsPg, LocalPgError> {
        let files = tempfile::tempdir()?;
        let ca = new_ca("test CA");
        let (cert_pem, key_pem) = issue(&ca, &["localhost"], "localhost");
        let (client_pem, client_key) = issue(&ca, &[], "certuser");
        write(files.path(), "ca.crt", &ca.pem())?;
        write(files.path(), "other-ca.crt", &new_ca("some other CA").pem())?;
        write(files.path(), "client.crt", &client_pem)?;
        write(files.path(), "client.key", &client_key)?;
        let hba = "local all all trust\n\
                   hostssl all certuser 127.0.0.1/32 cert\n\
                   hostssl all all 127.0.0.1/32 scram-sha-256\n\
                   host all all 127.0.0.1/32 reject\n";
        let options = PgOptions {
            password: Some(PASSWORD.into()),
            tls: Some(ServerTls { cert_pem, key_pem, client_ca_pem: Some(ca.pem()) }),
            hba: Some(hba.into()),
        };
        Ok(TlsPg { pg: LocalPg::start_with(&options)?, files })
    }

    /// Path of one of the files written at start.
    pub fn file(&self, name: &str) -> PathBuf {
        self.files.path().join(name)
    }

    /// `postgresql://USER[:PASSWORD]@HOST:PORT/postgres?QUERY`
    pub fn url(&self, host: &str, user: &str, password: Option<&str>, query: &str) -> String {
        let auth = password.map_or(user.to_owned(), |p| format!("{user}:{p}"));
        format!("postgresql://{auth}@{host}:{}/postgres?{query}", self.pg.port)
    }

    /// A connection string over the Unix socket, where everyone is trusted (for test set-up).
    pub fn admin_conn(&self) -> String {
        format!("host={} port={} user=postgres dbname=postgres", self.pg.socket_dir().display(), self.pg.port)
    }
}

/// A self-signed CA named `name`.
pub fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA certificate")
}

/// A certificate for `names` (and common name `cn`) signed by `ca`, and its key, both as PEM.
pub fn issue(ca: &CertifiedIssuer<'_, KeyPair>, names: &[&str], cn: &str) -> (String, String) {
    let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("names");
    params.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate().expect("key");
    (params.signed_by(&key, ca).expect("certificate").pem(), key.serialize_pem())
}

/// Writes a file only its owner can read (PostgreSQL and libpq want that of keys and password files).
pub fn write(dir: &Path, name: &str, contents: &str) -> std::io::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, contents)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(path)
}
