//! The remote operator's small PKI: one CA that issues tenant-bound client
//! certificates for appliances and server certificates for the vault server.
//!
//! Keys are ECDSA P-256 (fast to verify, supported by every TLS 1.3 stack).

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::files::{self, CERT_MODE, KEY_MODE};
use crate::{Tenant, TlsError};

/// File name of the CA certificate inside a CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key inside a CA directory.
pub const CA_KEY_FILE: &str = "ca.key";

/// How far back a new certificate's validity starts, so an appliance whose clock
/// runs a little behind the operator's still accepts a certificate issued just now.
const BACKDATE: Duration = Duration::hours(1);

/// The operator's certificate authority.
pub struct Ca {
    cert_pem: String,
    /// What rcgen needs to sign as this CA (subject name, key identifier).
    issuer: rcgen::Certificate,
    key: KeyPair,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("subject", &self.issuer.params().distinguished_name)
            .finish_non_exhaustive()
    }
}

/// A freshly issued certificate and its private key, both PEM.
#[derive(Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8). Secret: written 0600 by [`Issued::save`].
    pub key_pem: String,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl Issued {
    /// Writes the certificate (0644) and the key (0600), each atomically.
    pub fn save(&self, cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
        // Key first: a certificate on disk without its key would look usable but is not.
        files::write_atomic(key_path, self.key_pem.as_bytes(), KEY_MODE)?;
        files::write_atomic(cert_path, self.cert_pem.as_bytes(), CERT_MODE)
    }
}

impl Ca {
    /// Creates a new CA, valid for `valid_days` from now, that may sign end-entity
    /// certificates only (path length 0).
    pub fn create(common_name: &str, valid_days: u32) -> Result<Ca, TlsError> {
        let what = || format!("the CA certificate {common_name:?}");
        if common_name.trim().is_empty() {
            return Err(TlsError::BadRequest {
                what: what(),
                reason: "the common name is empty".to_owned(),
            });
        }
        let (not_before, not_after) = span(valid_days, &what)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = not_before;
        params.not_after = not_after;
        let issue = |source| TlsError::Issue {
            what: what(),
            source,
        };
        let key = KeyPair::generate().map_err(issue)?;
        let issuer = params.self_signed(&key).map_err(issue)?;
        Ok(Ca {
            cert_pem: issuer.pem(),
            issuer,
            key,
        })
    }

    /// Writes `ca.pem` (0644) and `ca.key` (0600) into `dir`, creating `dir` (0700)
    /// if needed. Refuses to replace an existing CA.
    pub fn save(&self, dir: &Path) -> Result<(), TlsError> {
        let (cert_path, key_path) = (dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE));
        for path in [&cert_path, &key_path] {
            if path.exists() {
                return Err(TlsError::AlreadyExists { path: path.clone() });
            }
        }
        create_private_dir(dir)?;
        files::write_atomic(&key_path, self.key.serialize_pem().as_bytes(), KEY_MODE)?;
        files::write_atomic(&cert_path, self.cert_pem.as_bytes(), CERT_MODE)
    }

    /// Loads a CA written by [`Ca::save`], checking that the key belongs to the certificate.
    pub fn load(dir: &Path) -> Result<Ca, TlsError> {
        let (cert_path, key_path) = (dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE));
        warn_if_exposed(&key_path);
        let cert_pem = text(&cert_path)?;
        let key_pem = text(&key_path)?;
        let bad_cert = |source| TlsError::BadCa {
            path: cert_path.clone(),
            source,
        };
        let key = KeyPair::from_pem(&key_pem).map_err(|source| TlsError::BadCa {
            path: key_path.clone(),
            source,
        })?;

        let der =
            files::certs(cert_pem.as_bytes(), &cert_path.display().to_string())?.swap_remove(0);
        let (_, parsed) = x509_parser::parse_x509_certificate(&der)
            .map_err(|_| bad_cert(rcgen::Error::CouldNotParseCertificate))?;
        if parsed.public_key().raw != key.public_key_der().as_slice() {
            return Err(TlsError::CaKeyMismatch {
                cert: cert_path,
                key: key_path,
            });
        }
        // rcgen panics on an empty RDN; a hand-edited ca.pem must not crash the operator's tool.
        if parsed
            .subject()
            .iter()
            .any(|rdn| rdn.iter().next().is_none())
        {
            return Err(bad_cert(rcgen::Error::CouldNotParseCertificate));
        }

        let params = CertificateParams::from_ca_cert_der(&der).map_err(bad_cert)?;
        // Re-signing yields a throwaway certificate; only its subject and key
        // identifier are used when issuing, and those are the saved CA's.
        let issuer = params.self_signed(&key).map_err(bad_cert)?;
        Ok(Ca {
            cert_pem,
            issuer,
            key,
        })
    }

    /// The CA certificate, PEM: what appliances and the server trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A client certificate for an appliance of `tenant`, valid for `valid_days` from now.
    pub fn issue_client(&self, tenant: &Tenant, valid_days: u32) -> Result<Issued, TlsError> {
        let (not_before, not_after) = span(valid_days, &|| client_what(tenant))?;
        self.issue_client_with_validity(tenant, not_before, not_after)
    }

    /// A client certificate with an explicit validity window; also how tests make
    /// expired and not-yet-valid certificates.
    pub fn issue_client_with_validity(
        &self,
        tenant: &Tenant,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Issued, TlsError> {
        let what = || client_what(tenant);
        check_window(not_before, not_after, &what)?;
        let uri = tenant.uri().try_into().map_err(|source| TlsError::Issue {
            what: what(),
            source,
        })?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(&format!("tenant {tenant}"));
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = not_before;
        params.not_after = not_after;
        self.sign(params, &what)
    }

    /// A server certificate for `names` (DNS names or IP addresses; the first is
    /// also the common name), valid for `valid_days` from now.
    pub fn issue_server(&self, names: &[String], valid_days: u32) -> Result<Issued, TlsError> {
        let (not_before, not_after) = span(valid_days, &|| server_what(names))?;
        self.issue_server_with_validity(names, not_before, not_after)
    }

    /// A server certificate with an explicit validity window.
    pub fn issue_server_with_validity(
        &self,
        names: &[String],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Issued, TlsError> {
        let what = || server_what(names);
        check_window(not_before, not_after, &what)?;
        let Some(first) = names.first() else {
            return Err(TlsError::BadRequest {
                what: what(),
                reason: "no DNS name or IP address given".to_owned(),
            });
        };
        let mut sans = Vec::with_capacity(names.len());
        for name in names {
            sans.push(server_san(name).ok_or_else(|| TlsError::BadRequest {
                what: what(),
                reason: format!("{name:?} is neither a DNS name nor an IP address"),
            })?);
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(first);
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = not_before;
        params.not_after = not_after;
        self.sign(params, &what)
    }

    fn sign(
        &self,
        mut params: CertificateParams,
        what: &dyn Fn() -> String,
    ) -> Result<Issued, TlsError> {
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let issue = |source| TlsError::Issue {
            what: what(),
            source,
        };
        let key = KeyPair::generate().map_err(issue)?;
        let cert = params
            .signed_by(&key, &self.issuer, &self.key)
            .map_err(issue)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn client_what(tenant: &Tenant) -> String {
    format!("the client certificate for tenant {tenant}")
}

fn server_what(names: &[String]) -> String {
    if names.is_empty() {
        "a server certificate".to_owned()
    } else {
        format!("the server certificate for {}", names.join(", "))
    }
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

/// A DNS name in the shape webpki will match, or an IP address.
fn server_san(name: &str) -> Option<SanType> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Some(SanType::IpAddress(ip));
    }
    // Checking with the same parser the client uses means a name that could never
    // match is refused at issue time rather than at the first connection.
    rustls_pki_types::DnsName::try_from(name).ok()?;
    name.try_into().ok().map(SanType::DnsName)
}

fn span(
    valid_days: u32,
    what: &dyn Fn() -> String,
) -> Result<(OffsetDateTime, OffsetDateTime), TlsError> {
    if valid_days == 0 {
        return Err(TlsError::BadRequest {
            what: what(),
            reason: "the validity must be at least one day".to_owned(),
        });
    }
    let now = OffsetDateTime::now_utc();
    Ok((now - BACKDATE, now + Duration::days(i64::from(valid_days))))
}

fn check_window(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    what: &dyn Fn() -> String,
) -> Result<(), TlsError> {
    if not_after <= not_before {
        return Err(TlsError::BadRequest {
            what: what(),
            reason: format!("it would end ({not_after}) before it starts ({not_before})"),
        });
    }
    Ok(())
}

fn text(path: &Path) -> Result<String, TlsError> {
    // Non-UTF-8 bytes cannot be PEM; lossy text lets the PEM parser report it.
    Ok(String::from_utf8_lossy(&files::read(path)?).into_owned())
}

fn create_private_dir(dir: &Path) -> Result<(), TlsError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| TlsError::WriteFile {
            path: dir.to_path_buf(),
            source,
        })
}

/// A CA key others can read has to be assumed stolen; say so, but let the operator
/// decide (the file may sit on a filesystem without Unix modes).
fn warn_if_exposed(key_path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(key_path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %key_path.display(),
                mode = format_args!("{mode:o}"),
                "the CA key is readable by other users; it should be mode 600"
            );
        }
    }
}
