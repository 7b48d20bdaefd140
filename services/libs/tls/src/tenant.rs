//! Tenant names and their binding into certificates.

use std::fmt;
use std::str::FromStr;

use crate::TlsError;

/// The SAN URI prefix that binds a client certificate to a tenant.
pub const TENANT_URI_PREFIX: &str = "urn:tiervault:tenant:";

const MAX_LEN: usize = 63;

/// A tenant of the remote vault: `[a-z0-9][a-z0-9-]{0,62}`.
///
/// The alphabet is kept to what is safe as a directory name, a DNS label and a
/// URI path segment, so the name can be used unescaped wherever the vault needs it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tenant(String);

impl Tenant {
    /// Checks `name` and wraps it.
    pub fn parse(name: &str) -> Result<Tenant, TlsError> {
        let reject = |reason| TlsError::InvalidTenant {
            name: name.to_owned(),
            reason,
        };
        let Some(first) = name.bytes().next() else {
            return Err(reject("it is empty"));
        };
        if name.len() > MAX_LEN {
            return Err(reject("it is longer than 63 characters"));
        }
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            return Err(reject("it must start with a lowercase letter or a digit"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(reject("only lowercase letters, digits and '-' are allowed"));
        }
        Ok(Tenant(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The SAN URI that binds a certificate to this tenant.
    pub fn uri(&self) -> String {
        format!("{TENANT_URI_PREFIX}{}", self.0)
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Tenant {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tenant {
    type Err = TlsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tenant::parse(s)
    }
}

/// Why a certificate does not bind exactly one valid tenant.
///
/// Travels inside rustls's `CertificateError::Other` out of the client verifier, so
/// the server can turn it back into `NoTenant`/`BadTenant` after a failed handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BindingError {
    Unparsable(String),
    Missing,
    Several(Vec<String>),
    Invalid(String),
}

impl fmt::Display for BindingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindingError::Unparsable(why) => {
                write!(f, "the certificate cannot be parsed ({why})")
            }
            BindingError::Missing => write!(f, "the certificate has no {TENANT_URI_PREFIX} URI"),
            BindingError::Several(uris) => {
                write!(
                    f,
                    "the certificate names several tenants: {}",
                    uris.join(", ")
                )
            }
            BindingError::Invalid(name) => {
                write!(
                    f,
                    "the certificate names tenant {name:?}, which is not a valid tenant name"
                )
            }
        }
    }
}

impl std::error::Error for BindingError {}

/// The tenant a DER certificate is bound to: exactly one `urn:tiervault:tenant:` SAN URI.
pub(crate) fn tenant_of(der: &[u8]) -> Result<Tenant, BindingError> {
    use x509_parser::extensions::GeneralName;

    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| BindingError::Unparsable(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| BindingError::Unparsable(e.to_string()))?;
    let uris: Vec<&str> = san
        .iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) if uri.starts_with(TENANT_URI_PREFIX) => Some(*uri),
            _ => None,
        })
        .collect();
    match uris.as_slice() {
        [] => Err(BindingError::Missing),
        [uri] => {
            let name = &uri[TENANT_URI_PREFIX.len()..];
            Tenant::parse(name).map_err(|_| BindingError::Invalid(name.to_owned()))
        }
        several => Err(BindingError::Several(
            several.iter().map(|u| (*u).to_owned()).collect(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_names() {
        let longest = format!("a{}", "-".repeat(62));
        for name in [
            "a",
            "0",
            "acme",
            "acme-corp",
            "1st-tenant",
            "a-",
            longest.as_str(),
        ] {
            let tenant = Tenant::parse(name).expect(name);
            assert_eq!(tenant.as_str(), name);
            assert_eq!(tenant.uri(), format!("urn:tiervault:tenant:{name}"));
        }
    }

    #[test]
    fn rejects_invalid_names_and_names_them() {
        let too_long = "a".repeat(64);
        for name in [
            "",
            "-acme",
            "Acme",
            "acme_corp",
            "acme.corp",
            "acme corp",
            "acme/..",
            "ténant",
            too_long.as_str(),
        ] {
            match Tenant::parse(name) {
                Err(TlsError::InvalidTenant { name: bad, .. }) => assert_eq!(bad, name),
                other => panic!("{name:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn error_text_names_the_input() {
        let err = Tenant::parse("Bad").expect_err("uppercase");
        assert!(err.to_string().contains("\"Bad\""), "{err}");
    }
}
