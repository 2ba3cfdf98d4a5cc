//! HTTPS for `aslctl serve`: a certificate chain and key in PEM files, and,
//! optionally, a CA whose client certificates alone may connect (mutual
//! TLS). rustls with the aws-lc-rs provider, the one the workspace's HTTP
//! client already uses.
//!
//! Handshakes run on tasks of their own, each bounded by the server's idle
//! timeout, so a client that stalls mid-handshake holds only its own task,
//! never the accept loop; finished connections are handed to the server
//! through a bounded queue.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use asl_core::{Error, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A server's TLS settings, loaded and checked.
#[derive(Clone)]
pub struct Tls {
    config: Arc<ServerConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

fn invalid(what: &Path, e: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("{}: {e}", what.display()))
}

impl Tls {
    /// Loads the certificate chain (`cert`, PEM, the server's first) and its
    /// private key (`key`, PEM); with `client_ca`, only clients presenting a
    /// certificate that CA signed may connect.
    pub fn load(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Tls> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| invalid(cert, e))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| invalid(cert, e))?;
        if chain.is_empty() {
            return Err(invalid(cert, "no certificate in the file"));
        }
        let private = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid(key, e))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::InvalidArgument(format!("TLS: {e}")))?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for c in CertificateDer::pem_file_iter(ca).map_err(|e| invalid(ca, e))? {
                    roots.add(c.map_err(|e| invalid(ca, e))?).map_err(|e| invalid(ca, e))?;
                }
                if roots.is_empty() {
                    return Err(invalid(ca, "no certificate in the file"));
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| invalid(ca, e))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(chain, private)
            .map_err(|e| Error::InvalidArgument(format!("{} with {}: {e}", cert.display(), key.display())))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls {
            config: Arc::new(config),
        })
    }
}

/// Connections that finished their handshake, for `axum::serve`.
pub(crate) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `tcp`; each handshake gets `timeout`.
    pub(crate) fn new(tcp: TcpListener, tls: &Tls, timeout: Duration) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(tls.config.clone());
        let (tx, ready) = mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                let (tcp_stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    // Out of descriptors, say: wait a moment, as axum does.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp_stream.set_nodelay(true);
                if tx.is_closed() {
                    return;
                }
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    // A failed or stalled handshake just drops the connection.
                    if let Ok(Ok(s)) = tokio::time::timeout(timeout, acceptor.accept(tcp_stream)).await {
                        let _ = tx.send((s, peer)).await;
                    }
                });
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept loop ended: no connection will come again.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
