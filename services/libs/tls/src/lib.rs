//! Mutual TLS 1.3 between Tiervault appliances and the MSP's remote vault server.
//!
//! Trust model: the remote operator runs one small CA ([`Ca`]). It issues
//! - a server certificate for the vault server's DNS names or IP addresses, and
//! - one client certificate per appliance, bound to a tenant by a single SAN URI
//!   `urn:tiervault:tenant:<name>` ([`Tenant::uri`]).
//!
//! Appliances trust only that CA for the server; the server trusts only that CA for
//! clients and takes the tenant from the verified certificate ([`accept`]), never
//! from anything the client says afterwards. A certificate without exactly one valid
//! tenant URI is refused during the handshake.
//!
//! Both ends offer TLS 1.3 only, with the ring provider, ALPN [`ALPN`], and no session
//! resumption (a resumed session would skip the certificate checks). [`accept`] and [`connect`]
//! bound the handshake by [`HANDSHAKE_TIMEOUT`] and translate rustls failures into
//! [`TlsError`] variants that name the peer and the reason (expired, wrong CA, no
//! tenant, ...). They are a pair: the server confirms an accepted session with one
//! byte so the client learns of a refusal inside [`connect`].
//!
//! ```no_run
//! # async fn demo(listener: tokio::net::TcpListener) -> Result<(), tiervault_tls::TlsError> {
//! use std::path::Path;
//! let config = tiervault_tls::server_config(
//!     Path::new("ca/ca.pem"),
//!     Path::new("server.pem"),
//!     Path::new("server.key"),
//! )?;
//! let acceptor = tiervault_tls::tokio_rustls::TlsAcceptor::from(config);
//! while let Ok((tcp, _)) = listener.accept().await {
//!     match tiervault_tls::accept(&acceptor, tcp).await {
//!         Ok((_stream, tenant)) => tracing::info!(%tenant, "session accepted"),
//!         Err(err) => tracing::warn!("refused: {err}"),
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod config;
mod error;
mod files;
mod handshake;
mod pki;
mod tenant;
mod verifier;

pub use config::{
    client_config, client_config_from_pem, server_config, server_config_from_pem, ALPN,
};
pub use error::{Peer, TlsError};
pub use handshake::{
    accept, accept_within, connect, connect_within, ClientTlsStream, ServerTlsStream,
    HANDSHAKE_TIMEOUT,
};
pub use pki::{Ca, Issued, CA_CERT_FILE, CA_KEY_FILE};
pub use tenant::{Tenant, TENANT_URI_PREFIX};

/// Re-exported so callers build acceptors and connectors from the same versions.
pub use tokio_rustls;
