//! Who a queue client is, read from its certificate: its role and the partitions it may lease.
//! `wharfctl certs issue` writes them as URIs among the certificate's subject alternative names:
//!
//! - [`OBSERVER_URI`]: a read-only identity (`wharfctl status`): its hello must declare no
//!   workers, so it can never hold a lease;
//! - [`SCOPE_PREFIX`]`db.schema` (repeatable; `db.*` for every schema of a database): an applier
//!   that leases only those partitions.
//!
//! A certificate with neither may lease every partition (what `wharfctl certs create` has always
//! issued). A certificate the service cannot read is an observer: it fails closed.

use x509_cert::Certificate;
use x509_cert::der::Decode;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

use crate::lease::Scope;

pub const OBSERVER_URI: &str = "urn:wharf:role:observer";
pub const SCOPE_PREFIX: &str = "urn:wharf:scope:";
/// The subject alternative name extension.
const SAN_OID: &str = "2.5.29.17";

/// What a client certificate allows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// Read-only: no workers, no leases.
    pub observer: bool,
    /// The partitions it may lease; `None`: every one.
    pub scope: Option<Scope>,
}

impl Identity {
    /// The identity of the leaf certificate `der` (DER).
    pub fn of(der: &[u8]) -> Identity {
        let Some(uris) = uris(der) else {
            return Identity { observer: true, scope: None };
        };
        let observer = uris.iter().any(|u| u == OBSERVER_URI);
        let scopes: Vec<&str> = uris.iter().filter_map(|u| u.strip_prefix(SCOPE_PREFIX)).collect();
        let scope = (!scopes.is_empty()).then(|| Scope::parse(&scopes));
        Identity { observer, scope }
    }
}

/// The URIs among the certificate's subject alternative names; `None` if it cannot be read.
fn uris(der: &[u8]) -> Option<Vec<String>> {
    let certificate = Certificate::from_der(der).ok()?;
    let mut out = Vec::new();
    for extension in certificate.tbs_certificate.extensions.iter().flatten() {
        if extension.extn_id.to_string() != SAN_OID {
            continue;
        }
        let names = SubjectAltName::from_der(extension.extn_value.as_bytes()).ok()?;
        for name in names.0 {
            if let GeneralName::UniformResourceIdentifier(uri) = name {
                out.push(uri.to_string());
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Partition;

    fn certificate(uris: &[&str]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        for uri in uris {
            params.subject_alt_names.push(rcgen::SanType::URI(rcgen::string::Ia5String::try_from(*uri).unwrap()));
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn role_and_scope_come_from_the_certificates_uris() {
        assert_eq!(Identity::of(&certificate(&[])), Identity::default());
        assert!(Identity::of(&certificate(&[OBSERVER_URI])).observer);
        let scoped = Identity::of(&certificate(&["urn:wharf:scope:app.public", "urn:wharf:scope:crm.*"]));
        let scope = scoped.scope.unwrap();
        assert!(scope.allows(&Partition::new("app", "public")));
        assert!(scope.allows(&Partition::new("crm", "sales")));
        assert!(!scope.allows(&Partition::new("app", "private")));
        assert!(!scope.allows(&Partition::new("App", "public")), "names are matched exactly");
        assert!(Identity::of(b"not a certificate").observer, "unreadable: read-only");
    }
}
