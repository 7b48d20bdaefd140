//! Accepting appliances: mutual TLS, tenant from the certificate, one reader task, one
//! writer task and one blocking request processor per connection.

use std::net::SocketAddr;
use std::sync::Arc;

use tiervault_tls::tokio_rustls::TlsAcceptor;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::config::{Config, HANDSHAKE_TIMEOUT};
use crate::conn::Conn;

/// Requests queued per connection before the reader waits (back-pressure on the client).
const QUEUE: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("listening on {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tiervault_tls::TlsError),
}

/// A bound server, ready to run.
pub struct Server {
    cfg: Arc<Config>,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    /// One permit per connection being served, handshake included.
    slots: Arc<tokio::sync::Semaphore>,
}

impl Server {
    pub async fn bind(cfg: Config) -> Result<Server, ServeError> {
        let tls = tiervault_tls::server_config(&cfg.ca, &cfg.cert, &cfg.key)?;
        let listener = TcpListener::bind(&cfg.listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: cfg.listen.clone(),
                source,
            })?;
        Ok(Server {
            slots: Arc::new(tokio::sync::Semaphore::new(cfg.max_connections)),
            cfg: Arc::new(cfg),
            listener,
            acceptor: TlsAcceptor::from(tls),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = stop.changed() => {
                    if *stop.borrow() {
                        break;
                    }
                }
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                            // Closed before TLS: a client reads a cut link and retries later.
                            tracing::warn!(
                                "refused {peer}: at the connection limit ({})",
                                self.cfg.max_connections
                            );
                            drop(tcp);
                            continue;
                        };
                        let cfg = self.cfg.clone();
                        let acceptor = self.acceptor.clone();
                        tokio::spawn(async move {
                            serve(cfg, acceptor, tcp, peer).await;
                            drop(slot);
                        });
                    }
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            }
        }
    }
}

async fn serve(cfg: Arc<Config>, acceptor: TlsAcceptor, tcp: TcpStream, peer: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    let idle = cfg.idle_timeout;
    let handshake = HANDSHAKE_TIMEOUT.min(idle);
    let accepted = tokio::time::timeout(handshake, tiervault_tls::accept(&acceptor, tcp)).await;
    let (stream, tenant) = match accepted {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!("refused {peer}: {e}");
            return;
        }
        Err(_) => {
            tracing::warn!("refused {peer}: no TLS handshake within {handshake:?}");
            return;
        }
    };
    let name = tenant.as_str().to_string();
    let Some(policy) = cfg.tenants.get(&name).cloned() else {
        tracing::warn!("refused {peer}: tenant {name} is not configured on this server");
        let (_, mut wr) = tokio::io::split(stream);
        let msg = tiervault_wire::Message::Error {
            code: tiervault_wire::ErrorCode::Unauthorized,
            message: format!("tenant {name} is not configured on this server"),
        };
        let _ = tiervault_wire::write_frame(&mut wr, 0, &msg).await;
        let _ = wr.shutdown().await;
        return;
    };
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (req_tx, req_rx) = mpsc::channel(QUEUE);
    let (rep_tx, mut rep_rx) = mpsc::channel::<(u64, tiervault_wire::Message)>(QUEUE);
    let conn = Conn::new(
        name.clone(),
        policy,
        cfg.tenant_dir(&name),
        peer.to_string(),
    );
    let processor = tokio::task::spawn_blocking(move || conn.run(req_rx, rep_tx));
    let writer = tokio::spawn(async move {
        while let Some((req, msg)) = rep_rx.recv().await {
            if let Err(e) = tiervault_wire::write_frame(&mut wr, req, &msg).await {
                tracing::debug!("writing to {peer}: {e}");
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut buf = Vec::new();
    loop {
        let frame = tokio::select! {
            frame = tokio::time::timeout(idle, tiervault_wire::read_frame(&mut rd, &mut buf)) => frame,
            // The processor ended the session (unsupported protocol version, writer gone).
            () = req_tx.closed() => break,
        };
        let Ok(frame) = frame else {
            tracing::warn!(tenant = %name, "closing {peer}: nothing received for {idle:?}");
            break;
        };
        match frame {
            Ok(Some(frame)) => {
                if req_tx.send(frame).await.is_err() {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                // A malformed frame ends the connection: we cannot find the next frame.
                let cause = std::error::Error::source(&e)
                    .map(|s| format!(": {s}"))
                    .unwrap_or_default();
                tracing::warn!(tenant = %name, "closing {peer}: {e}{cause}");
                break;
            }
        }
    }
    drop(req_tx);
    let _ = processor.await;
    let _ = writer.await;
    tracing::info!(tenant = %name, "{peer} disconnected");
}
