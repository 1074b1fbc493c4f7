//! Reading the operator's PEM files: certificate chains, CA bundles and private keys, with errors
//! that name the file.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

/// A PEM file that cannot be used.
#[derive(Debug, Error)]
pub enum PemError {
    #[error("cannot read {what} {path}: {reason}")]
    Unreadable { what: &'static str, path: PathBuf, reason: String },
    #[error("{0} holds no certificate")]
    NoCertificate(PathBuf),
}

/// Every certificate of a PEM file (a chain or a CA bundle); none is an error.
pub fn read_chain(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let pem_err = |reason: String| PemError::Unreadable { what, path: path.to_owned(), reason };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(PemError::NoCertificate(path.to_owned()));
    }
    Ok(chain)
}

/// The first private key of a PEM file: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| PemError::Unreadable {
        what: "private key",
        path: path.to_owned(),
        reason: e.to_string(),
    })
}
