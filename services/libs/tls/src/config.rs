//! rustls configurations for both ends: TLS 1.3 only, ring only, mutual
//! authentication against the operator's CA, ALPN `tiervault/1`.
//!
//! Session resumption is off on both sides: a resumed session would skip the
//! certificate checks, so a certificate that expired (or a CA that was replaced)
//! since the first connection would still be let in. Replication connections are
//! long-lived, so the extra full handshakes cost nothing that matters.

use std::path::Path;
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::files;
use crate::verifier::TenantBound;
use crate::TlsError;

/// The one application protocol both sides speak.
pub const ALPN: &[u8] = b"tiervault/1";

/// Server configuration from PEM files: the CA that issues client certificates,
/// and the server's own certificate (chain) and key.
pub fn server_config(
    ca_pem_path: &Path,
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    build_server(
        &Labelled::file(ca_pem_path)?,
        &Labelled::file(cert_path)?,
        &Labelled::file(key_path)?,
    )
}

/// Server configuration from PEM bytes already in memory.
pub fn server_config_from_pem(
    ca_pem: &[u8],
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<ServerConfig>, TlsError> {
    build_server(
        &Labelled::memory("the CA certificate PEM", ca_pem),
        &Labelled::memory("the server certificate PEM", cert_pem),
        &Labelled::memory("the server key PEM", key_pem),
    )
}

/// Client configuration from PEM files: the CA that issued the server's
/// certificate, and the appliance's own certificate (chain) and key.
pub fn client_config(
    ca_pem_path: &Path,
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<ClientConfig>, TlsError> {
    build_client(
        &Labelled::file(ca_pem_path)?,
        &Labelled::file(cert_path)?,
        &Labelled::file(key_path)?,
    )
}

/// Client configuration from PEM bytes already in memory.
pub fn client_config_from_pem(
    ca_pem: &[u8],
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<ClientConfig>, TlsError> {
    build_client(
        &Labelled::memory("the CA certificate PEM", ca_pem),
        &Labelled::memory("the client certificate PEM", cert_pem),
        &Labelled::memory("the client key PEM", key_pem),
    )
}

/// PEM bytes with the name errors should use for them.
struct Labelled<'a> {
    what: String,
    bytes: std::borrow::Cow<'a, [u8]>,
}

impl<'a> Labelled<'a> {
    fn file(path: &Path) -> Result<Labelled<'static>, TlsError> {
        Ok(Labelled {
            what: path.display().to_string(),
            bytes: files::read(path)?.into(),
        })
    }

    fn memory(what: &str, bytes: &'a [u8]) -> Labelled<'a> {
        Labelled {
            what: what.to_owned(),
            bytes: bytes.into(),
        }
    }

    fn certs(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        files::certs(&self.bytes, &self.what)
    }

    fn key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        files::private_key(&self.bytes, &self.what)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &Labelled<'_>) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in ca.certs()? {
        roots
            .add(cert)
            .map_err(|source| TlsError::BadCaCertificate {
                what: ca.what.clone(),
                source: Box::new(source),
            })?;
    }
    Ok(Arc::new(roots))
}

fn build_server(
    ca: &Labelled<'_>,
    cert: &Labelled<'_>,
    key: &Labelled<'_>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let webpki = WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider.clone())
        .build()
        .map_err(|source| TlsError::BadCaCertificate {
            what: ca.what.clone(),
            source: Box::new(source),
        })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Protocol {
            side: "server",
            source,
        })?
        .with_client_cert_verifier(Arc::new(TenantBound { inner: webpki }))
        .with_single_cert(cert.certs()?, key.key()?)
        .map_err(|source| TlsError::CertificateKeyMismatch {
            cert: cert.what.clone(),
            key: key.what.clone(),
            source,
        })?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

fn build_client(
    ca: &Labelled<'_>,
    cert: &Labelled<'_>,
    key: &Labelled<'_>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Protocol {
            side: "client",
            source,
        })?
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(cert.certs()?, key.key()?)
        .map_err(|source| TlsError::CertificateKeyMismatch {
            cert: cert.what.clone(),
            key: key.what.clone(),
            source,
        })?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}
