//! Which servers a target trusts: Mozilla's roots by default (an appliance's own trust store
//! is whatever the image shipped years ago), or only the CAs of a configured PEM file (an
//! MSP's internal receiver).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

use crate::NotifyError;

/// The CA certificates of the PEM file `path`, for the target `context`.
pub(crate) fn load_ca_file(
    path: &Path,
    context: &str,
) -> Result<Vec<CertificateDer<'static>>, NotifyError> {
    let fail = |reason: String| NotifyError::CaFile {
        context: context.to_owned(),
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(e.to_string()))?;
    if certs.is_empty() {
        return Err(fail("holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// A TLS client configuration trusting `cas`, or Mozilla's roots when `None`; ring is the only
/// crypto provider in the tree.
pub(crate) fn client_config(
    cas: Option<&[CertificateDer<'static>]>,
    context: &str,
    ca_path: Option<&Path>,
) -> Result<Arc<rustls::ClientConfig>, NotifyError> {
    let mut roots = RootCertStore::empty();
    match cas {
        Some(cas) => {
            for cert in cas {
                roots.add(cert.clone()).map_err(|e| NotifyError::CaFile {
                    context: context.to_owned(),
                    path: ca_path.map(Path::to_owned).unwrap_or_default(),
                    reason: e.to_string(),
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| crate::error::config_error(context, "tls", e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
