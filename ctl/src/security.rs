//! `make-jwt`, `keys add|list|deactivate`, `tokens revoke|list`.

use std::io::Read as _;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;
use wharf_ingest::auth::jwt::{CLAIM_NAMESPACE, PublicKey};
use wharf_ingest::auth::sign::SigningKey;
use wharf_targetdb::quote_ident;

/// When running wharf-ingest processes see a change to the key tables.
const PICKUP: &str = "running wharf-ingest processes pick this up within --jwtRefresh (default 1m), or at once after `killall -HUP wharf-ingest`";

#[derive(Args, Debug)]
pub struct MakeJwtArgs {
    /// PEM private key (PKCS#8, EC PRIVATE KEY or RSA PRIVATE KEY); not needed with --claim.
    #[arg(short = 'k', long = "key")]
    key: Option<PathBuf>,
    /// Schema the token may write to, `database.schema` (`*` is a wildcard); repeatable, comma-separated.
    #[arg(short = 'a', long = "allow", value_delimiter = ',')]
    allow: Vec<String>,
    /// Write the token to this file (mode 0600) instead of standard output.
    #[arg(short = 'o', long = "out")]
    out: Option<PathBuf>,
    /// Print the claim as JSON, for signing by an external JWT provider.
    #[arg(long)]
    claim: bool,
    /// Lifetime of the token (sets `exp` and `iat`), e.g. 2160h; `never` makes a token that never
    /// expires (revoking its `jti` is then the only way to end it).
    #[arg(long, default_value = "720h", value_parser = parse_ttl)]
    ttl: Ttl,
}

/// A token's lifetime, or none.
#[derive(Clone, Copy, Debug)]
struct Ttl(Option<std::time::Duration>);

fn parse_ttl(text: &str) -> Result<Ttl, String> {
    match text {
        "never" => Ok(Ttl(None)),
        _ => wharf_ingest::config::parse_duration(text).map(|ttl| Ttl(Some(ttl))),
    }
}

pub fn make_jwt(args: MakeJwtArgs) -> anyhow::Result<()> {
    anyhow::ensure!(!args.allow.is_empty(), "no schemas specified: pass -a database.schema");
    let schemas = args.allow.iter().map(|a| split_name(a)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut claims = json!({"iss": "replicator", "jti": uuid_v4()?, CLAIM_NAMESPACE: {"schemas": schemas}});
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    match args.ttl.0 {
        Some(ttl) => {
            anyhow::ensure!(ttl.as_secs() > 0, "--ttl must be at least 1s (a token that expires at once is refused)");
            let exp = now.checked_add(ttl.as_secs()).ok_or_else(|| anyhow::anyhow!("--ttl is too long"))?;
            claims["iat"] = json!(now);
            claims["exp"] = json!(exp);
            eprintln!(
                "make-jwt: the token expires in {} (exp {exp}); mint the next one before then, or pass --ttl",
                humanize(ttl)
            );
        }
        None => eprintln!("make-jwt: the token never expires; only revoking its jti ends it (wharfctl tokens revoke)"),
    }
    if args.claim {
        println!("{}", serde_json::to_string_pretty(&claims)?);
        return Ok(());
    }
    let path = args.key.ok_or_else(|| anyhow::anyhow!("no private key specified: pass -k key.pem (or --claim)"))?;
    let pem = std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let token = SigningKey::from_pem(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?.sign(&claims)?;
    match args.out {
        Some(out) => write_private(&out, token.as_bytes()),
        None => {
            println!("{token}");
            Ok(())
        }
    }
}

/// `2160h` → `90 days`, `90m` → `1h 30m`.
fn humanize(ttl: std::time::Duration) -> String {
    let secs = ttl.as_secs();
    match secs {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{} days", s / 86_400),
        s if s >= 3_600 => format!("{}h {}m", s / 3_600, s % 3_600 / 60),
        s => format!("{s}s"),
    }
}

/// `database.schema` with optional double quotes around each part.
fn split_name(name: &str) -> anyhow::Result<Vec<String>> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in name.chars() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    parts.push(current);
    anyhow::ensure!(
        !quoted && parts.len() == 2 && parts.iter().all(|p| !p.is_empty()),
        "{name:?} is not database.schema"
    );
    Ok(parts)
}

fn uuid_v4() -> anyhow::Result<String> {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| anyhow::anyhow!("no randomness"))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..]))
}

/// Writes `bytes` to `path`, readable by its owner only (0600), also when `path` existed with
/// another mode: a new file beside it, renamed over it, so a symbolic link at `path` is replaced,
/// never written through.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let name = path.file_name().ok_or_else(|| anyhow::anyhow!("{} is not a file name", path.display()))?;
    let temporary = path.with_file_name(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    anyhow::Context::with_context(written, || format!("cannot write {}", path.display()))
}

#[derive(Args, Debug)]
pub struct StagingArgs {
    /// Target database holding the staging schema.
    #[arg(long = "targetConn", env = "WHARF_TARGET_CONN", hide_env_values = true)]
    pub(crate) target_conn: String,
    #[arg(long = "stagingSchema", env = "WHARF_STAGING_SCHEMA", default_value = "_replicator")]
    pub(crate) staging_schema: String,
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Make an ES256 key pair for signing tokens: DIR/jwt.key (private, PKCS#8, mode 0600) and
    /// DIR/jwt.pub (add it with `keys add`); existing files are never overwritten.
    Create {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Add a PEM public key (`-----BEGIN PUBLIC KEY-----`) from a file, or `-` for standard input.
    Add {
        #[command(flatten)]
        staging: StagingArgs,
        file: PathBuf,
    },
    /// List keys.
    List {
        #[command(flatten)]
        staging: StagingArgs,
    },
    /// Stop accepting tokens signed by a key.
    Deactivate {
        #[command(flatten)]
        staging: StagingArgs,
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokensCommand {
    /// Refuse tokens with this `jti` from now on.
    Revoke {
        #[command(flatten)]
        staging: StagingArgs,
        jti: String,
    },
    /// List revoked token ids.
    List {
        #[command(flatten)]
        staging: StagingArgs,
    },
}

async fn client(staging: &StagingArgs) -> anyhow::Result<(tokio_postgres::Client, String)> {
    let client = wharf_targetdb::connect(&staging.target_conn).await?;
    Ok((client, quote_ident(&staging.staging_schema)))
}

pub async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create { dir } => {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
            std::fs::create_dir_all(&dir)?;
            crate::certs::write(&dir, "jwt.key", &key.serialize_pem(), 0o600)?;
            crate::certs::write(&dir, "jwt.pub", &key.public_key_pem(), 0o644)?;
            println!("wrote jwt.key and jwt.pub in {}", dir.display());
            println!(
                "next: wharfctl keys add --targetConn … {0}/jwt.pub; wharfctl make-jwt -k {0}/jwt.key -a db.schema",
                dir.display()
            );
        }
        KeysCommand::Add { staging, file } => {
            let mut pem = String::new();
            if file.as_os_str() == "-" {
                std::io::stdin().read_to_string(&mut pem)?;
            } else {
                pem = std::fs::read_to_string(&file)?;
            }
            PublicKey::from_pem("(new)", &pem)?;
            let (client, schema) = client(&staging).await?;
            wharf_targetdb::staging::create_jwt_tables(&client, &staging.staging_schema).await?;
            let present = client
                .query_opt(&format!("SELECT id::text FROM {schema}.jwt_public_keys WHERE public_key = $1"), &[&pem])
                .await?;
            if let Some(row) = present {
                let id: String = row.get(0);
                println!("key already present as {id}");
                return Ok(());
            }
            let row = client
                .query_one(
                    &format!("INSERT INTO {schema}.jwt_public_keys (public_key) VALUES ($1) RETURNING id::text"),
                    &[&pem],
                )
                .await?;
            println!("added key {}; {PICKUP}", row.get::<_, String>(0));
        }
        KeysCommand::List { staging } => {
            let (client, schema) = client(&staging).await?;
            for row in client
                .query(&format!("SELECT id::text, active, public_key FROM {schema}.jwt_public_keys ORDER BY id"), &[])
                .await?
            {
                let (id, active, pem): (String, bool, String) = (row.get(0), row.get(1), row.get(2));
                let usable = if PublicKey::from_pem(&id, &pem).is_ok() { "ok" } else { "MALFORMED" };
                println!("{id}  {}  {usable}", if active { "active" } else { "inactive" });
            }
        }
        KeysCommand::Deactivate { staging, id } => {
            let (client, schema) = client(&staging).await?;
            let n = client
                .execute(&format!("UPDATE {schema}.jwt_public_keys SET active = false WHERE id::text = $1"), &[&id])
                .await?;
            anyhow::ensure!(n == 1, "no key with id {id}");
            println!("deactivated key {id}; {PICKUP}");
        }
    }
    Ok(())
}

pub async fn tokens(command: TokensCommand) -> anyhow::Result<()> {
    match command {
        TokensCommand::Revoke { staging, jti } => {
            let (client, schema) = client(&staging).await?;
            client
                .execute(
                    &format!("INSERT INTO {schema}.jwt_revoked_ids (id) VALUES ($1) ON CONFLICT DO NOTHING"),
                    &[&jti],
                )
                .await?;
            println!("revoked {jti}; {PICKUP}");
        }
        TokensCommand::List { staging } => {
            let (client, schema) = client(&staging).await?;
            for row in client.query(&format!("SELECT id FROM {schema}.jwt_revoked_ids ORDER BY id"), &[]).await? {
                println!("{}", row.get::<_, String>(0));
            }
        }
    }
    Ok(())
}
