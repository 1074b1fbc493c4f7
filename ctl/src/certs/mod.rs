//! `wharfctl certs`: a private CA and the certificates of the queue service (server), of
//! applier processes and of status observers (clients), for the mutual TLS between
//! `wharf-ingest` and `wharf-applier`; more client certificates later (`issue`), limited to
//! schemas or read-only, and revocation (`revoke`, a CRL the ingest reads).
//!
//! The CA may sign end-entity certificates only (path length 0) and lives 10 years; the other
//! certificates live `--days` (365 by default). Roles and scopes are URIs among a client
//! certificate's subject alternative names, read by the service (`wharf_queue::quic::identity`).

mod revoke;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use wharf_queue::quic::identity::{OBSERVER_URI, SCOPE_PREFIX};

/// How long the CA is valid: rotating it means new certificates everywhere.
const CA_DAYS: i64 = 3650;
/// How long the other certificates are valid by default.
const DEFAULT_DAYS: u32 = 365;
const CA_NAME: &str = "wharf queue CA";

#[derive(Subcommand, Debug)]
pub enum CertsCommand {
    /// Write ca.crt, ca.key, queue.crt, queue.key, applier.crt, applier.key, observer.crt and
    /// observer.key into DIR.
    Create(CreateArgs),
    /// Issue one more client certificate with DIR's CA: NAME.crt and NAME.key in DIR.
    Issue(IssueArgs),
    /// Revoke a certificate: add it to DIR/ca.crl, which wharf-ingest reads with
    /// --queueClientCRL (restart it to take a new list).
    Revoke(revoke::RevokeArgs),
}

#[derive(Args, Debug)]
pub struct IssueArgs {
    /// Directory holding ca.crt and ca.key; NAME.crt and NAME.key are written there.
    #[arg(long)]
    pub dir: PathBuf,
    /// File name (and common name) of the certificate.
    #[arg(long)]
    pub name: String,
    /// Limit an applier to partitions `db.schema` (`db.*` for every schema of a database);
    /// repeatable. Without it the applier may lease every partition.
    #[arg(long = "scope", conflicts_with = "observer")]
    pub scopes: Vec<String>,
    /// A read-only identity for `wharfctl status`: it may not take leases.
    #[arg(long)]
    pub observer: bool,
    /// Days the certificate is valid.
    #[arg(long, default_value_t = DEFAULT_DAYS)]
    pub days: u32,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Directory to write into (created if missing); existing files are never overwritten.
    #[arg(long)]
    pub dir: PathBuf,
    /// Host names and addresses the queue service's certificate is valid for (repeatable;
    /// default localhost, 127.0.0.1, ::1). Appliers must reach it by one of them.
    #[arg(long = "host")]
    pub hosts: Vec<String>,
}

const FILES: [&str; 8] =
    ["ca.crt", "ca.key", "queue.crt", "queue.key", "applier.crt", "applier.key", "observer.crt", "observer.key"];

pub fn run(command: CertsCommand) -> anyhow::Result<()> {
    match command {
        CertsCommand::Create(args) => create(&args),
        CertsCommand::Issue(args) => issue_more(&args),
        CertsCommand::Revoke(args) => revoke::run(&args),
    }
}

fn create(args: &CreateArgs) -> anyhow::Result<()> {
    let hosts = if args.hosts.is_empty() {
        vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()]
    } else {
        args.hosts.clone()
    };
    write_set(&args.dir, &hosts)?;
    let dir = args.dir.display();
    println!("wrote {} in {dir} (queue service valid for {})", FILES.join(", "), hosts.join(", "));
    println!("ingest:  --queueCertificate queue.crt --queuePrivateKey queue.key --queueClientCA ca.crt");
    println!("applier: --queueCA ca.crt --queueCertificate applier.crt --queuePrivateKey applier.key");
    println!("status:  --caCert ca.crt --certificate observer.crt --privateKey observer.key (read-only)");
    println!(
        "certificates expire in {DEFAULT_DAYS} days, the CA in {CA_DAYS} days; keep ca.key offline: it can sign certificates that both sides trust"
    );
    Ok(())
}

fn issue_more(args: &IssueArgs) -> anyhow::Result<()> {
    if args.name.is_empty() || args.name.contains(['/', '.']) {
        bail!("--name {:?} must be a plain file name without dots", args.name);
    }
    for scope in &args.scopes {
        if scope.split_once('.').is_none_or(|(db, schema)| db.is_empty() || schema.is_empty()) {
            bail!("--scope {scope:?} is not db.schema or db.*");
        }
    }
    let issuer = load_issuer(&args.dir)?;
    let uris: Vec<String> = match args.observer {
        true => vec![OBSERVER_URI.to_owned()],
        false => args.scopes.iter().map(|s| format!("{SCOPE_PREFIX}{s}")).collect(),
    };
    let (crt, key) = issue(&issuer, Vec::new(), &uris, &args.name, ExtendedKeyUsagePurpose::ClientAuth, args.days)?;
    let (crt_name, key_name) = (format!("{}.crt", args.name), format!("{}.key", args.name));
    for name in [&crt_name, &key_name] {
        if args.dir.join(name).exists() {
            bail!("{} already exists; refusing to overwrite", args.dir.join(name).display());
        }
    }
    write(&args.dir, &crt_name, &crt, 0o644)?;
    write(&args.dir, &key_name, &key, 0o600)?;
    let what = match (args.observer, args.scopes.is_empty()) {
        (true, _) => "read-only (status)".to_owned(),
        (false, true) => "an applier of every partition".to_owned(),
        (false, false) => format!("an applier of {}", args.scopes.join(", ")),
    };
    println!("wrote {crt_name} and {key_name} in {}: {what}, valid {} days", args.dir.display(), args.days);
    Ok(())
}

/// The CA of `dir` (its `ca.key`; the name is the one [`write_set`] gives it) as an issuer.
fn load_issuer(dir: &Path) -> anyhow::Result<Issuer<'static, KeyPair>> {
    let path = dir.join("ca.key");
    let pem = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let key = KeyPair::from_pem(&pem).with_context(|| format!("{} is not a private key", path.display()))?;
    Ok(Issuer::new(ca_params()?, key))
}

/// The CA's parameters: what it signs and for how long.
fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    // End-entity certificates only: a leaked applier key cannot be made into another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(CA_DAYS);
    Ok(params)
}

/// Writes the six files into `dir` (created if missing), refusing if any of them exists.
pub fn write_set(dir: &Path, hosts: &[String]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let existing: Vec<&str> = FILES.iter().copied().filter(|f| dir.join(f).exists()).collect();
    if !existing.is_empty() {
        bail!(
            "{} already holds {}; refusing to overwrite (remove them or choose another --dir)",
            dir.display(),
            existing.join(", ")
        );
    }
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let ca_key_pem = ca_key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(ca_params()?, ca_key)?;
    let server = ExtendedKeyUsagePurpose::ServerAuth;
    let client = ExtendedKeyUsagePurpose::ClientAuth;
    let (queue_crt, queue_key) = issue(&ca, hosts.to_vec(), &[], "wharf queue service", server, DEFAULT_DAYS)?;
    let (applier_crt, applier_key) = issue(&ca, Vec::new(), &[], "wharf applier", client.clone(), DEFAULT_DAYS)?;
    let observer = [OBSERVER_URI.to_owned()];
    let (observer_crt, observer_key) = issue(&ca, Vec::new(), &observer, "wharf observer", client, DEFAULT_DAYS)?;
    write(dir, "ca.crt", &ca.pem(), 0o644)?;
    write(dir, "ca.key", &ca_key_pem, 0o600)?;
    write(dir, "queue.crt", &queue_crt, 0o644)?;
    write(dir, "queue.key", &queue_key, 0o600)?;
    write(dir, "applier.crt", &applier_crt, 0o644)?;
    write(dir, "applier.key", &applier_key, 0o600)?;
    write(dir, "observer.crt", &observer_crt, 0o644)?;
    write(dir, "observer.key", &observer_key, 0o600)?;
    Ok(())
}

/// A certificate for `names` (host names or addresses) and `uris` (roles and scopes), signed by
/// `ca`, valid for `days`; its PEM and its key's PEM.
fn issue(
    ca: &Issuer<'_, KeyPair>,
    names: Vec<String>,
    uris: &[String],
    common_name: &str,
    usage: ExtendedKeyUsagePurpose,
    days: u32,
) -> anyhow::Result<(String, String)> {
    let mut params = CertificateParams::new(names)?;
    for uri in uris {
        params.subject_alt_names.push(SanType::URI(uri.as_str().try_into()?));
    }
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![usage];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days.into());
    // A random serial number, so each certificate can be revoked on its own.
    params.serial_number = Some(rand::random::<[u8; 16]>().map(|b| b & 0x7f).to_vec().into());
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let cert = params.signed_by(&key, ca)?;
    Ok((cert.pem(), key.serialize_pem()))
}

pub(crate) fn write(dir: &Path, name: &str, contents: &str, mode: u32) -> anyhow::Result<()> {
    let path = dir.join(name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(())
}
