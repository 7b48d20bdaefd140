//! Handshakes that end in a tenant (server side) or a confirmed session (client
//! side), with failures translated into words an operator can act on.
//!
//! In TLS 1.3 the client's handshake is complete before the server has judged the
//! client certificate, so a refusal would only surface at the client's first read.
//! To report it from [`connect`] instead, the server confirms an accepted session
//! with one byte ([`accept`] writes it, [`connect`] consumes it); a refused client
//! reads the server's alert in its place. Both ends must therefore use this module.

use std::io;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{AlertDescription, CertificateError, PeerIncompatible};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::ALPN;
use crate::tenant::{tenant_of, BindingError};
use crate::{Peer, Tenant, TlsError};

/// How long either side waits for the other to finish the handshake (and, for the
/// client, the server's confirmation), so a silent peer cannot hold a connection.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's end of an accepted session.
pub type ServerTlsStream = tokio_rustls::server::TlsStream<TcpStream>;
/// The client's end of a confirmed session.
pub type ClientTlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// Sent by the server once the client's certificate and tenant are accepted.
const SESSION_ACCEPTED: u8 = 0x06;

/// Server side: handshake within [`HANDSHAKE_TIMEOUT`], then the tenant the
/// client certificate is bound to. Errors name the client's address.
pub async fn accept(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
) -> Result<(ServerTlsStream, Tenant), TlsError> {
    accept_within(acceptor, tcp, HANDSHAKE_TIMEOUT).await
}

/// [`accept`] with another time limit.
pub async fn accept_within(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    limit: Duration,
) -> Result<(ServerTlsStream, Tenant), TlsError> {
    let peer = Peer::Client(tcp.peer_addr().ok());
    match tokio::time::timeout(limit, server_handshake(acceptor, tcp, &peer)).await {
        Ok(result) => result,
        Err(_) => Err(TlsError::Timeout { peer, after: limit }),
    }
}

async fn server_handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    peer: &Peer,
) -> Result<(ServerTlsStream, Tenant), TlsError> {
    let mut stream = acceptor
        .accept(tcp)
        .await
        .map_err(|err| explain(err, peer))?;
    let (_, conn) = stream.get_ref();
    if conn.alpn_protocol() != Some(ALPN) {
        return Err(no_alpn(peer));
    }
    // The verifier already insisted on a certificate and a tenant; this re-reads the
    // tenant from the certificate the handshake actually verified.
    let Some(leaf) = conn.peer_certificates().and_then(|chain| chain.first()) else {
        return Err(TlsError::NoClientCertificate { peer: peer.clone() });
    };
    let tenant = tenant_of(leaf).map_err(|binding| from_binding(binding, peer))?;
    let io = |source| TlsError::Io {
        peer: peer.clone(),
        source,
    };
    stream.write_all(&[SESSION_ACCEPTED]).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    Ok((stream, tenant))
}

/// Client side: handshake with the server named `server_name` (DNS name or IP
/// address its certificate must be valid for) and wait for it to accept our
/// certificate, all within [`HANDSHAKE_TIMEOUT`].
pub async fn connect(
    connector: &TlsConnector,
    server_name: &str,
    tcp: TcpStream,
) -> Result<ClientTlsStream, TlsError> {
    connect_within(connector, server_name, tcp, HANDSHAKE_TIMEOUT).await
}

/// [`connect`] with another time limit.
pub async fn connect_within(
    connector: &TlsConnector,
    server_name: &str,
    tcp: TcpStream,
    limit: Duration,
) -> Result<ClientTlsStream, TlsError> {
    let name =
        ServerName::try_from(server_name.to_owned()).map_err(|_| TlsError::BadServerName {
            name: server_name.to_owned(),
        })?;
    let peer = Peer::Server {
        name: server_name.to_owned(),
        addr: tcp.peer_addr().ok(),
    };
    match tokio::time::timeout(limit, client_handshake(connector, name, tcp, &peer)).await {
        Ok(result) => result,
        Err(_) => Err(TlsError::Timeout { peer, after: limit }),
    }
}

async fn client_handshake(
    connector: &TlsConnector,
    name: ServerName<'static>,
    tcp: TcpStream,
    peer: &Peer,
) -> Result<ClientTlsStream, TlsError> {
    let mut stream = connector
        .connect(name, tcp)
        .await
        .map_err(|err| explain(err, peer))?;
    if stream.get_ref().1.alpn_protocol() != Some(ALPN) {
        return Err(no_alpn(peer));
    }
    let mut confirmation = [0u8; 1];
    match stream.read_exact(&mut confirmation).await {
        Ok(_) if confirmation[0] == SESSION_ACCEPTED => Ok(stream),
        Ok(_) => Err(handshake(
            peer,
            "it sent data instead of confirming the session (not a tiervault server?)",
        )),
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => Err(handshake(
            peer,
            "it closed the connection instead of confirming the session",
        )),
        Err(err) => Err(explain(err, peer)),
    }
}

fn handshake(peer: &Peer, reason: &str) -> TlsError {
    TlsError::Handshake {
        peer: peer.clone(),
        reason: reason.to_owned(),
    }
}

fn no_alpn(peer: &Peer) -> TlsError {
    handshake(
        peer,
        "it does not speak the tiervault/1 protocol (no ALPN agreement)",
    )
}

/// Turns what tokio-rustls reports (rustls errors wrapped in `io::Error`) into an
/// operator-facing error about `peer`.
fn explain(err: io::Error, peer: &Peer) -> TlsError {
    let Some(tls) = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return match err.kind() {
            io::ErrorKind::UnexpectedEof => {
                handshake(peer, "the connection was closed during the handshake")
            }
            _ => TlsError::Io {
                peer: peer.clone(),
                source: err,
            },
        };
    };
    match tls {
        rustls::Error::NoCertificatesPresented => {
            TlsError::NoClientCertificate { peer: peer.clone() }
        }
        rustls::Error::InvalidCertificate(cert) => from_certificate(cert, peer),
        rustls::Error::AlertReceived(alert) => from_alert(*alert, peer),
        rustls::Error::PeerIncompatible(why) => from_incompatible(why, peer),
        rustls::Error::NoApplicationProtocol => no_alpn(peer),
        rustls::Error::InvalidMessage(_) => handshake(
            peer,
            &format!("it sent something that is not TLS 1.3 ({tls})"),
        ),
        other => handshake(peer, &other.to_string()),
    }
}

fn from_certificate(cert: &CertificateError, peer: &Peer) -> TlsError {
    let peer = peer.clone();
    match cert {
        // webpki finds issuers by name, so a certificate from another CA that happens
        // to share our CA's name fails on its signature rather than as unknown.
        CertificateError::UnknownIssuer | CertificateError::BadSignature => {
            TlsError::UnknownIssuer { peer }
        }
        CertificateError::Expired => TlsError::Expired {
            peer,
            not_after: None,
        },
        CertificateError::ExpiredContext { not_after, .. } => TlsError::Expired {
            peer,
            not_after: datetime(*not_after),
        },
        CertificateError::NotValidYet => TlsError::NotYetValid {
            peer,
            not_before: None,
        },
        CertificateError::NotValidYetContext { not_before, .. } => TlsError::NotYetValid {
            peer,
            not_before: datetime(*not_before),
        },
        CertificateError::NotValidForName => name_mismatch(peer, Vec::new()),
        CertificateError::NotValidForNameContext { presented, .. } => {
            name_mismatch(peer, presented.iter().map(|n| plain_name(n)).collect())
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            let role = match peer {
                Peer::Client(_) => "client",
                Peer::Server { .. } => "server",
            };
            TlsError::BadCertificate {
                peer,
                reason: format!("it is not issued for {role} authentication"),
            }
        }
        CertificateError::Other(other) => match other.0.downcast_ref::<BindingError>() {
            Some(binding) => from_binding(binding.clone(), &peer),
            None => TlsError::BadCertificate {
                peer,
                reason: other.to_string(),
            },
        },
        other => TlsError::BadCertificate {
            peer,
            reason: other.to_string(),
        },
    }
}

fn name_mismatch(peer: Peer, presented: Vec<String>) -> TlsError {
    let expected = match &peer {
        Peer::Server { name, .. } => name.clone(),
        Peer::Client(_) => String::new(),
    };
    TlsError::NameMismatch {
        peer,
        expected,
        presented,
    }
}

/// webpki reports names as `DnsName("a.example")` / `IpAddress(192.0.2.1)`;
/// an operator wants just the name.
fn plain_name(debug: &str) -> String {
    for kind in ["DnsName", "IpAddress"] {
        if let Some(inner) = debug
            .strip_prefix(kind)
            .and_then(|rest| rest.strip_prefix('('))
            .and_then(|rest| rest.strip_suffix(')'))
        {
            return inner.trim_matches('"').to_owned();
        }
    }
    debug.to_owned()
}

fn from_binding(binding: BindingError, peer: &Peer) -> TlsError {
    match binding {
        BindingError::Missing => TlsError::NoTenant { peer: peer.clone() },
        other => TlsError::BadTenant {
            peer: peer.clone(),
            reason: other.to_string(),
        },
    }
}

fn from_alert(alert: AlertDescription, peer: &Peer) -> TlsError {
    use AlertDescription as A;
    match alert {
        A::BadCertificate
        | A::UnsupportedCertificate
        | A::CertificateRevoked
        | A::CertificateExpired
        | A::CertificateUnknown
        | A::UnknownCA
        | A::CertificateRequired
        | A::AccessDenied
        // Sent when our certificate's or handshake's signature did not verify.
        | A::DecryptError => TlsError::RefusedOurCertificate {
            peer: peer.clone(),
            alert: format!("{alert:?}"),
        },
        A::ProtocolVersion => handshake(
            peer,
            &format!("it does not support TLS 1.3 (alert: {alert:?})"),
        ),
        A::NoApplicationProtocol => handshake(
            peer,
            &format!("it does not speak the tiervault/1 protocol (alert: {alert:?})"),
        ),
        other => handshake(peer, &format!("it aborted the handshake (alert: {other:?})")),
    }
}

fn from_incompatible(why: &PeerIncompatible, peer: &Peer) -> TlsError {
    use PeerIncompatible as P;
    match why {
        P::SupportedVersionsExtensionRequired
        | P::Tls12NotOffered
        | P::Tls12NotOfferedOrEnabled
        | P::ServerDoesNotSupportTls12Or13
        | P::ServerTlsVersionIsDisabledByOurConfig => {
            handshake(peer, "it does not support TLS 1.3, which is required")
        }
        other => handshake(
            peer,
            &format!("it offers no TLS parameters in common with ours ({other:?})"),
        ),
    }
}

fn datetime(at: rustls::pki_types::UnixTime) -> Option<OffsetDateTime> {
    let secs = i64::try_from(at.as_secs()).ok()?;
    OffsetDateTime::from_unix_timestamp(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::plain_name;

    #[test]
    fn presented_names_lose_their_debug_wrapping() {
        assert_eq!(plain_name("DnsName(\"vault.example\")"), "vault.example");
        assert_eq!(plain_name("IpAddress(192.0.2.1)"), "192.0.2.1");
        assert_eq!(plain_name("URI(x)"), "URI(x)");
    }
}
