//! A throwaway local PostgreSQL: `initdb` + `pg_ctl` on a temporary directory and a free port.
//!
//! Used by the test suites, `wharfctl demo` and `wharfctl bench`. PostgreSQL refuses to run as
//! root, so as root the server runs as the `postgres` user through `runuser`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::ports::free_port;
use thiserror::Error;

const DEFAULT_BIN_DIRS: &[&str] =
    &["/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin"];

#[derive(Debug, Error)]
pub enum LocalPgError {
    #[error(
        "PostgreSQL server binaries not found (looked in $WHARF_PG_BIN and {DEFAULT_BIN_DIRS:?}); install postgresql-15"
    )]
    NoBinaries,
    #[error("{step} failed: {detail}")]
    Step { step: &'static str, detail: String },
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// How a test wants the server set up beyond the defaults (trust authentication, no TLS).
#[derive(Clone, Debug, Default)]
pub struct PgOptions {
    /// The `postgres` user's password; TCP connections then need it (scram-sha-256).
    pub password: Option<String>,
    /// Serve TLS with these PEM files.
    pub tls: Option<ServerTls>,
    /// Replaces `pg_hba.conf` (Unix-socket connections should stay `trust` for the harness).
    pub hba: Option<String>,
}

#[derive(Clone, Debug)]
pub struct ServerTls {
    pub cert_pem: String,
    pub key_pem: String,
    /// CA for client certificates (`ssl_ca_file`).
    pub client_ca_pem: Option<String>,
}

pub struct LocalPg {
    _dir: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
    pub port: u16,
}

impl LocalPg {
    /// Initialises and starts a fresh cluster; it is stopped and deleted on drop.
    pub fn start() -> Result<LocalPg, LocalPgError> {
        LocalPg::start_with(&PgOptions::default())
    }

    /// As [`LocalPg::start`], with a password, TLS or a `pg_hba.conf` of the test's choosing.
    pub fn start_with(options: &PgOptions) -> Result<LocalPg, LocalPgError> {
        let bin = find_bin_dir().ok_or(LocalPgError::NoBinaries)?;
        let as_postgres = is_root();
        let dir = tempfile::Builder::new().prefix("wharf-pg-").tempdir()?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data)?;
        if as_postgres {
            set_mode(dir.path(), 0o755)?;
            run("chown", Command::new("chown").arg("-R").arg("postgres:postgres").arg(&data))?;
        }
        set_mode(&data, 0o700)?;
        let port = free_port()?;
        let pg = LocalPg { _dir: dir, data, bin, as_postgres, port };
        let pwfile = pg.data.parent().expect("data has a parent").join("pwfile");
        let mut initdb: Vec<String> =
            ["-D", pg.data_str(), "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]
                .map(str::to_owned)
                .into();
        match &options.password {
            Some(password) => {
                std::fs::write(&pwfile, password)?;
                set_mode(&pwfile, 0o644)?;
                initdb.extend(["--auth-local=trust".into(), "--auth-host=scram-sha-256".into()]);
                initdb.push(format!("--pwfile={}", pwfile.display()));
            }
            None => initdb.push("--auth=trust".into()),
        }
        pg.run_pg("initdb", &initdb.iter().map(String::as_str).collect::<Vec<_>>())?;
        let _ = std::fs::remove_file(&pwfile);
        let mut settings =
            format!("-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200", pg.data_str());
        if let Some(tls) = &options.tls {
            settings.push_str(&pg.write_tls(tls)?);
        }
        if let Some(hba) = &options.hba {
            pg.write_owned("pg_hba.conf", hba)?;
        }
        let options = settings;
        let log = pg.data.join("server.log");
        pg.run_pg(
            "pg_ctl",
            &["-D", pg.data_str(), "-l", log.to_str().unwrap_or("server.log"), "-w", "-o", &options, "start"],
        )?;
        pg.spawn_reaper()?;
        Ok(pg)
    }

    /// Stops the server once this process is gone, however it ends (a panic in a test that holds
    /// the server in a static, a SIGKILL): a detached shell polls for the process and then stops
    /// the cluster and removes its directory.
    fn spawn_reaper(&self) -> Result<(), LocalPgError> {
        let pg_ctl = self.bin.join("pg_ctl");
        let stop = if self.as_postgres {
            format!("runuser -u postgres -- {} -D {} -m immediate stop", pg_ctl.display(), self.data_str())
        } else {
            format!("{} -D {} -m immediate stop", pg_ctl.display(), self.data_str())
        };
        let parent = self.data.parent().expect("data has a parent").display().to_string();
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; if [ -d {data} ]; then {stop} >/dev/null 2>&1; rm -rf {parent}; fi",
            pid = std::process::id(),
            data = self.data_str(),
        );
        Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        Ok(())
    }

    /// Writes the server's TLS files into the data directory; returns the `-c` settings naming them.
    fn write_tls(&self, tls: &ServerTls) -> Result<String, LocalPgError> {
        self.write_owned("server.crt", &tls.cert_pem)?;
        self.write_owned("server.key", &tls.key_pem)?;
        let mut settings = " -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key".to_owned();
        if let Some(ca) = &tls.client_ca_pem {
            self.write_owned("client-ca.crt", ca)?;
            settings.push_str(" -c ssl_ca_file=client-ca.crt");
        }
        Ok(settings)
    }

    /// Writes a file into the data directory, readable only by the server's user.
    fn write_owned(&self, name: &str, contents: &str) -> Result<(), LocalPgError> {
        let path = self.data.join(name);
        std::fs::write(&path, contents)?;
        set_mode(&path, 0o600)?;
        if self.as_postgres {
            run("chown", Command::new("chown").arg("postgres:postgres").arg(&path))?;
        }
        Ok(())
    }

    /// Directory of the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.data
    }

    /// Connection URL for `database`.
    pub fn url(&self, database: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn data_str(&self) -> &str {
        self.data.to_str().expect("temporary paths are UTF-8")
    }

    fn run_pg(&self, tool: &'static str, args: &[&str]) -> Result<Output, LocalPgError> {
        let path = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.arg("-u").arg("postgres").arg("--").arg(path);
            c
        } else {
            Command::new(path)
        };
        command.args(args).current_dir("/");
        run(tool, &mut command)
    }
}

impl Drop for LocalPg {
    fn drop(&mut self) {
        let _ = self.run_pg("pg_ctl", &["-D", self.data_str(), "-m", "immediate", "-w", "stop"]);
    }
}

fn run(step: &'static str, command: &mut Command) -> Result<Output, LocalPgError> {
    let output = command.output()?;
    if output.status.success() {
        return Ok(output);
    }
    let detail = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    Err(LocalPgError::Step { step, detail: detail.trim().to_owned() })
}

fn find_bin_dir() -> Option<PathBuf> {
    let from_env = std::env::var_os("WHARF_PG_BIN").map(PathBuf::from);
    from_env.into_iter().chain(DEFAULT_BIN_DIRS.iter().map(PathBuf::from)).find(|d| d.join("pg_ctl").exists())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}
