//! `wharfctl certs revoke`: revocation of queue certificates. The serial numbers revoked so far
//! are kept in `DIR/revoked.txt` (one hex serial per line); each revocation writes `DIR/ca.crl`
//! anew, signed by the CA, listing them all. `wharf-ingest --queueClientCRL DIR/ca.crl` refuses
//! their handshakes from its next start.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use x509_cert::der::Decode;

/// How long a CRL is valid; `revoke` writes a new one every time.
const CRL_DAYS: i64 = 365;

#[derive(Args, Debug)]
pub struct RevokeArgs {
    /// Directory holding ca.crt and ca.key; ca.crl and revoked.txt are written there.
    #[arg(long)]
    pub dir: PathBuf,
    /// The certificate to revoke (PEM), for example DIR/applier.crt.
    #[arg(long)]
    pub certificate: PathBuf,
}

pub fn run(args: &RevokeArgs) -> anyhow::Result<()> {
    let serial = serial_of(&args.certificate)?;
    let list = args.dir.join("revoked.txt");
    let mut serials: Vec<String> = match std::fs::read_to_string(&list) {
        Ok(text) => text.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", list.display())),
    };
    let hex: String = serial.iter().map(|b| format!("{b:02x}")).collect();
    if serials.contains(&hex) {
        println!("{} (serial {hex}) was already revoked", args.certificate.display());
    } else {
        serials.push(hex.clone());
    }
    let issuer = super::load_issuer(&args.dir)?;
    let now = time::OffsetDateTime::now_utc();
    let revoked = serials
        .iter()
        .map(|hex| {
            Ok(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&from_hex(hex)?),
                revocation_time: now,
                reason_code: None,
                invalidity_date: None,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let crl = CertificateRevocationListParams {
        this_update: now,
        next_update: now + time::Duration::days(CRL_DAYS),
        crl_number: SerialNumber::from(serials.len() as u64),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)?;
    replace(&args.dir.join("ca.crl"), &crl.pem()?)?;
    replace(&list, &(serials.join("\n") + "\n"))?;
    println!(
        "revoked {} (serial {hex}); {} now lists {} certificates: start wharf-ingest with --queueClientCRL {} (restart it to take the new list)",
        args.certificate.display(),
        args.dir.join("ca.crl").display(),
        serials.len(),
        args.dir.join("ca.crl").display()
    );
    Ok(())
}

/// The serial number of the certificate in the PEM file `path`.
fn serial_of(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let chain = wharf_base::pem::read_chain(path, "certificate")?;
    let certificate = x509_cert::Certificate::from_der(chain[0].as_ref())
        .map_err(|e| anyhow::anyhow!("{} is not a certificate: {e}", path.display()))?;
    Ok(certificate.tbs_certificate.serial_number.as_bytes().to_vec())
}

fn from_hex(hex: &str) -> anyhow::Result<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        bail!("revoked.txt holds {hex:?}, not a hex serial number");
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).with_context(|| format!("revoked.txt holds {hex:?}")))
        .collect()
}

/// Writes `path` anew: a temporary file, synced, renamed over it.
fn replace(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, contents).with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::File::open(&temporary)?.sync_all()?;
    std::fs::rename(&temporary, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}
