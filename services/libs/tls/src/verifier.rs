//! The server's client-certificate verifier: webpki chain verification against the
//! operator's CA, plus the tenant binding.
//!
//! Checking the tenant URI inside verification (not only after the handshake) makes
//! rustls abort with an alert, so an appliance holding a tenantless certificate is
//! told its certificate was refused instead of seeing the connection drop.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError};
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::tenant::tenant_of;

#[derive(Debug)]
pub(crate) struct TenantBound {
    pub(crate) inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for TenantBound {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
            .map_err(|err| match err {
                // A same-named foreign CA shows up as a bad signature (webpki matches
                // issuers by name); tell the client "unknown CA", which is what it is.
                rustls::Error::InvalidCertificate(CertificateError::BadSignature) => {
                    rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
                }
                other => other,
            })?;
        tenant_of(end_entity).map_err(|binding| {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
                binding,
            ))))
        })?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
