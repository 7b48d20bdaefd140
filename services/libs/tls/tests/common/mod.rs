//! Shared fixtures: a PKI, a one-shot server on 127.0.0.1, raw rustls client configs
//! for the clients the library itself would never build.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use tiervault_tls::tokio_rustls::{TlsAcceptor, TlsConnector};
use tiervault_tls::{Ca, Issued, ServerTlsStream, Tenant, TlsError};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub const SERVER_NAME: &str = "vault.example";

pub struct Pki {
    pub ca: Ca,
    pub server: Issued,
}

impl Pki {
    pub fn new() -> Pki {
        Pki::named("Test MSP CA")
    }

    pub fn named(ca_name: &str) -> Pki {
        let ca = Ca::create(ca_name, 30).unwrap();
        let server = ca
            .issue_server(&[SERVER_NAME.to_owned(), "127.0.0.1".to_owned()], 30)
            .unwrap();
        Pki { ca, server }
    }

    pub fn client(&self, tenant: &str) -> Issued {
        self.ca
            .issue_client(&Tenant::parse(tenant).unwrap(), 30)
            .unwrap()
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            tiervault_tls::server_config_from_pem(
                self.ca.cert_pem().as_bytes(),
                self.server.cert_pem.as_bytes(),
                self.server.key_pem.as_bytes(),
            )
            .unwrap(),
        )
    }

    pub fn connector(&self, client: &Issued) -> TlsConnector {
        TlsConnector::from(
            tiervault_tls::client_config_from_pem(
                self.ca.cert_pem().as_bytes(),
                client.cert_pem.as_bytes(),
                client.key_pem.as_bytes(),
            )
            .unwrap(),
        )
    }

    pub fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.ca.cert_pem().as_bytes()).unwrap())
            .unwrap();
        Arc::new(roots)
    }

    /// The CA as rcgen sees it, to sign certificates the library refuses to make.
    pub fn rcgen_issuer(&self) -> (rcgen::Certificate, rcgen::KeyPair) {
        let dir = tempfile::tempdir().unwrap();
        self.ca.save(dir.path()).unwrap();
        let key_pem = std::fs::read_to_string(dir.path().join("ca.key")).unwrap();
        let key = rcgen::KeyPair::from_pem(&key_pem).unwrap();
        let params = rcgen::CertificateParams::from_ca_cert_pem(self.ca.cert_pem()).unwrap();
        (params.self_signed(&key).unwrap(), key)
    }

    /// A client certificate from the right CA with arbitrary SAN URIs.
    pub fn client_with_uris(&self, uris: &[&str]) -> Issued {
        let (issuer, issuer_key) = self.rcgen_issuer();
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = uris
            .iter()
            .map(|u| rcgen::SanType::URI((*u).try_into().unwrap()))
            .collect();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer, &issuer_key).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A raw rustls client config trusting the test CA, for clients the library would
/// not build (no certificate, TLS 1.2, no ALPN).
pub fn raw_client(
    pki: &Pki,
    versions: &[&'static rustls::SupportedProtocolVersion],
    client: Option<&Issued>,
    alpn: bool,
) -> TlsConnector {
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(pki.roots());
    let mut config = match client {
        Some(issued) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    if alpn {
        config.alpn_protocols = vec![tiervault_tls::ALPN.to_vec()];
    }
    TlsConnector::from(Arc::new(config))
}

/// Listens on 127.0.0.1:0 and runs `accept` on the first connection.
pub async fn serve_once(
    acceptor: TlsAcceptor,
    limit: Duration,
) -> (
    SocketAddr,
    JoinHandle<Result<(ServerTlsStream, Tenant), TlsError>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        tiervault_tls::accept_within(&acceptor, tcp, limit).await
    });
    (addr, task)
}

pub async fn tcp(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

/// Runs a handshake where the client is `connector` and returns both outcomes.
pub async fn both_sides(
    pki: &Pki,
    connector: &TlsConnector,
    server_name: &str,
) -> (
    Result<(ServerTlsStream, Tenant), TlsError>,
    Result<tiervault_tls::ClientTlsStream, TlsError>,
) {
    let (addr, server) = serve_once(pki.acceptor(), Duration::from_secs(5)).await;
    let client = tiervault_tls::connect_within(
        connector,
        server_name,
        tcp(addr).await,
        Duration::from_secs(5),
    )
    .await;
    let server = server.await.unwrap();
    (server, client)
}
