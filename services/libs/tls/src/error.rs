//! The crate's one error type.
//!
//! Handshake variants carry the [`Peer`] they concern, so a server can log
//! `refused {err}` and an operator reads who was refused and why in one line.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use time::OffsetDateTime;

/// The other end of a connection, as named in handshake errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// An appliance connecting to the vault server (address unknown if the socket
    /// was already gone when we asked).
    Client(Option<SocketAddr>),
    /// The vault server an appliance connects to, by the name it was asked for.
    Server {
        /// The DNS name or IP address the certificate must be valid for.
        name: String,
        /// The socket address actually connected to.
        addr: Option<SocketAddr>,
    },
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Client(Some(addr)) => write!(f, "client {addr}"),
            Peer::Client(None) => f.write_str("client (address unknown)"),
            Peer::Server {
                name,
                addr: Some(addr),
            } => write!(f, "server {name} ({addr})"),
            Peer::Server { name, addr: None } => write!(f, "server {name}"),
        }
    }
}

/// Everything that can go wrong issuing certificates, loading them, or shaking hands.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A tenant name outside `[a-z0-9][a-z0-9-]{0,62}`.
    #[error("invalid tenant name {name:?}: {reason}")]
    InvalidTenant {
        /// The rejected input.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// A certificate, key or CA file could not be read.
    #[error("cannot read {}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: io::Error,
    },

    /// A certificate or key file could not be written durably.
    #[error("cannot write {}", path.display())]
    WriteFile {
        /// The file (or its directory, for the final fsync).
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: io::Error,
    },

    /// `Ca::save` found a CA already there.
    #[error("{} already exists; refusing to replace a CA (every certificate it issued would stop working)", path.display())]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },

    /// PEM text that does not parse.
    #[error("{what} is not valid PEM")]
    BadPem {
        /// The file, or a description of the in-memory input.
        what: String,
        /// The parser's complaint.
        #[source]
        source: rustls_pki_types::pem::Error,
    },

    /// PEM input without any `CERTIFICATE` block.
    #[error("{what} contains no certificate")]
    NoCertificate {
        /// The file, or a description of the in-memory input.
        what: String,
    },

    /// PEM input without any private key block.
    #[error("{what} contains no private key")]
    NoPrivateKey {
        /// The file, or a description of the in-memory input.
        what: String,
    },

    /// The CA certificate cannot serve as a trust anchor.
    #[error("the CA certificate {what} cannot be used as a trust anchor")]
    BadCaCertificate {
        /// The file, or a description of the in-memory input.
        what: String,
        /// Why rustls refused it.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A certificate and key that rustls refuses to use together (usually: the key
    /// belongs to another certificate).
    #[error("the certificate {cert} and the key {key} cannot be used together")]
    CertificateKeyMismatch {
        /// The certificate file or description.
        cert: String,
        /// The key file or description.
        key: String,
        /// rustls's reason.
        #[source]
        source: rustls::Error,
    },

    /// The ring provider refused a TLS 1.3-only configuration (would be a build mistake).
    #[error("the {side} TLS 1.3 configuration was rejected")]
    Protocol {
        /// "server" or "client".
        side: &'static str,
        /// rustls's reason.
        #[source]
        source: rustls::Error,
    },

    /// The saved CA does not parse.
    #[error("cannot load the CA from {}", path.display())]
    BadCa {
        /// `ca.pem` or `ca.key`.
        path: PathBuf,
        /// The parser's complaint.
        #[source]
        source: rcgen::Error,
    },

    /// `ca.key` is not the key of `ca.pem`.
    #[error("the CA key {} does not belong to the CA certificate {}", key.display(), cert.display())]
    CaKeyMismatch {
        /// `ca.pem`.
        cert: PathBuf,
        /// `ca.key`.
        key: PathBuf,
    },

    /// Key generation or signing failed.
    #[error("cannot issue {what}")]
    Issue {
        /// E.g. "the client certificate for tenant acme".
        what: String,
        /// rcgen's reason.
        #[source]
        source: rcgen::Error,
    },

    /// A validity period or name list that cannot produce a usable certificate.
    #[error("cannot issue {what}: {reason}")]
    BadRequest {
        /// The certificate asked for.
        what: String,
        /// What is wrong with the request.
        reason: String,
    },

    /// `connect` was given something that is neither a DNS name nor an IP address.
    #[error("{name:?} is not a valid server DNS name or IP address")]
    BadServerName {
        /// The rejected name.
        name: String,
    },

    /// The client completed no certificate (it has none configured).
    #[error("{peer} presented no client certificate")]
    NoClientCertificate {
        /// Who.
        peer: Peer,
    },

    /// The certificate was not issued by the CA we trust.
    #[error("{peer} presented a certificate not issued by the trusted CA")]
    UnknownIssuer {
        /// Who.
        peer: Peer,
    },

    /// The certificate's validity has ended.
    #[error("{peer} presented a certificate that expired{}", at(.not_after))]
    Expired {
        /// Who.
        peer: Peer,
        /// The certificate's notAfter, when the verifier reported it.
        not_after: Option<OffsetDateTime>,
    },

    /// The certificate's validity has not started (or a clock is wrong).
    #[error("{peer} presented a certificate that is not valid yet{}; is a clock wrong?", from(.not_before))]
    NotYetValid {
        /// Who.
        peer: Peer,
        /// The certificate's notBefore, when the verifier reported it.
        not_before: Option<OffsetDateTime>,
    },

    /// The server's certificate is for other names than the one we connected to.
    #[error("{peer} presented a certificate for {}, not for {expected}", names(.presented))]
    NameMismatch {
        /// Who.
        peer: Peer,
        /// The name we asked for.
        expected: String,
        /// The names in the certificate (empty if the verifier did not say).
        presented: Vec<String>,
    },

    /// Any other reason the certificate was unacceptable.
    #[error("{peer} presented an unacceptable certificate: {reason}")]
    BadCertificate {
        /// Who.
        peer: Peer,
        /// Why, in words.
        reason: String,
    },

    /// The client certificate is valid but binds no tenant.
    #[error(
        "{peer} presented a certificate without a urn:tiervault:tenant: URI, so it names no tenant"
    )]
    NoTenant {
        /// Who.
        peer: Peer,
    },

    /// The client certificate's tenant binding is unusable.
    #[error("{peer} presented a certificate with an unusable tenant binding: {reason}")]
    BadTenant {
        /// Who.
        peer: Peer,
        /// Several tenant URIs, or an invalid name.
        reason: String,
    },

    /// The other side aborted the handshake because it rejected our certificate.
    #[error("{peer} refused our certificate (alert: {alert})")]
    RefusedOurCertificate {
        /// Who refused.
        peer: Peer,
        /// The TLS alert it sent, e.g. `CertificateExpired`.
        alert: String,
    },

    /// A handshake failure not about certificates (protocol version, ALPN, garbage).
    #[error("TLS handshake with {peer} failed: {reason}")]
    Handshake {
        /// Who.
        peer: Peer,
        /// Why, in words.
        reason: String,
    },

    /// The peer did not finish the handshake in time.
    #[error("{peer} did not complete the TLS handshake within {}s", after.as_secs_f32())]
    Timeout {
        /// Who.
        peer: Peer,
        /// The limit that passed.
        after: Duration,
    },

    /// The connection failed underneath TLS.
    #[error("connection to {peer} failed during the TLS handshake")]
    Io {
        /// Who.
        peer: Peer,
        /// The socket error.
        #[source]
        source: io::Error,
    },
}

impl TlsError {
    /// The peer a handshake error concerns (`None` for PKI and configuration errors).
    pub fn peer(&self) -> Option<&Peer> {
        match self {
            TlsError::NoClientCertificate { peer }
            | TlsError::UnknownIssuer { peer }
            | TlsError::Expired { peer, .. }
            | TlsError::NotYetValid { peer, .. }
            | TlsError::NameMismatch { peer, .. }
            | TlsError::BadCertificate { peer, .. }
            | TlsError::NoTenant { peer }
            | TlsError::BadTenant { peer, .. }
            | TlsError::RefusedOurCertificate { peer, .. }
            | TlsError::Handshake { peer, .. }
            | TlsError::Timeout { peer, .. }
            | TlsError::Io { peer, .. } => Some(peer),
            _ => None,
        }
    }
}

fn at(when: &Option<OffsetDateTime>) -> String {
    when.map(|t| format!(" at {}", rfc3339(t)))
        .unwrap_or_default()
}

fn from(when: &Option<OffsetDateTime>) -> String {
    when.map(|t| format!(" (valid from {})", rfc3339(t)))
        .unwrap_or_default()
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.to_string())
}

fn names(presented: &[String]) -> String {
    if presented.is_empty() {
        "other names".to_owned()
    } else {
        presented.join(", ")
    }
}
