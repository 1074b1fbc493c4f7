//! `wharfctl certs create`: a private CA and the certificates of the queue service (server) and
//! of applier processes (client), for the mutual TLS between `wharf-ingest` and `wharf-applier`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};

#[derive(Subcommand, Debug)]
pub enum CertsCommand {
    /// Write ca.crt, ca.key, queue.crt, queue.key, applier.crt and applier.key into DIR.
    Create(CreateArgs),
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

const FILES: [&str; 6] = ["ca.crt", "ca.key", "queue.crt", "queue.key", "applier.crt", "applier.key"];

pub fn run(command: CertsCommand) -> anyhow::Result<()> {
    match command {
        CertsCommand::Create(args) => create(&args),
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
    println!("keep ca.key offline: it can sign certificates that both sides trust");
    Ok(())
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
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "wharf queue CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let ca_key_pem = ca_key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;
    let (queue_crt, queue_key) =
        issue(&ca, hosts.to_vec(), "wharf queue service", ExtendedKeyUsagePurpose::ServerAuth)?;
    let (applier_crt, applier_key) = issue(&ca, Vec::new(), "wharf applier", ExtendedKeyUsagePurpose::ClientAuth)?;
    write(dir, "ca.crt", &ca.pem(), 0o644)?;
    write(dir, "ca.key", &ca_key_pem, 0o600)?;
    write(dir, "queue.crt", &queue_crt, 0o644)?;
    write(dir, "queue.key", &queue_key, 0o600)?;
    write(dir, "applier.crt", &applier_crt, 0o644)?;
    write(dir, "applier.key", &applier_key, 0o600)?;
    Ok(())
}

fn issue(
    ca: &CertifiedIssuer<'_, KeyPair>,
    names: Vec<String>,
    common_name: &str,
    usage: ExtendedKeyUsagePurpose,
) -> anyhow::Result<(String, String)> {
    let mut params = CertificateParams::new(names)?;
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![usage];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
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
