//! HTTPS for the listener (`[server] tls`): the certificate chain and private key read from PEM
//! files ([`Certificate`], which a reload can replace for the next handshakes), a rustls server
//! configuration (ring provider, TLS 1.2 and 1.3, ALPN `http/1.1`), and [`TlsListener`], which
//! accepts TCP connections, runs each handshake in a task of its own under
//! [`HANDSHAKE_TIMEOUT`], and hands the serving loop only the connections whose handshake
//! finished. The serving code (access log, limits, timeouts, drain) is the same for HTTP and
//! HTTPS: a TLS stream is only another IO type.
//!
//! Not for client certificates or HTTP/2.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use secrecy::zeroize::Zeroizing;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::{self, TlsFiles};

/// How long a client has to finish the handshake before its connection is dropped, so that a
/// slow or silent client holds nothing for long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections whose handshake finished, waiting for the serving loop to take them.
const READY_QUEUE: usize = 64;

const CERT_KEY: &str = "server.tls.cert";
const KEY_KEY: &str = "server.tls.key";

/// The certificate chain and key in force; every handshake asks it, so a [`reload`] applies to
/// the connections that come after it.
///
/// [`reload`]: Certificate::reload
#[derive(Clone, Debug)]
pub struct Certificate(Arc<InForce>);

#[derive(Debug)]
struct InForce(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for InForce {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

impl Certificate {
    /// Reads `files` (relative paths against `base_dir`, as secret files are). Errors name the
    /// key (`server.tls.cert` / `server.tls.key`), the path and what is wrong; none quotes the
    /// files' contents.
    pub fn load(files: &TlsFiles, base_dir: &Path) -> Result<Certificate, config::Error> {
        let key = load(files, base_dir)?;
        Ok(Certificate(Arc::new(InForce(RwLock::new(Arc::new(key))))))
    }

    /// Reads `files` again and puts what they hold in force for the next handshakes; on an
    /// error the one in force stays. True when the certificate chain differs from before.
    pub fn reload(&self, files: &TlsFiles, base_dir: &Path) -> Result<bool, config::Error> {
        let new = Arc::new(load(files, base_dir)?);
        let mut in_force = self.0 .0.write().unwrap_or_else(PoisonError::into_inner);
        let changed = in_force.cert != new.cert;
        *in_force = new;
        Ok(changed)
    }

    /// The rustls configuration that serves this certificate.
    fn server_config(&self) -> std::io::Result<Arc<rustls::ServerConfig>> {
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .with_no_client_auth()
            .with_cert_resolver(self.0.clone());
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The chain and key from `files`, the key parsed and checked against the certificate.
fn load(files: &TlsFiles, base_dir: &Path) -> Result<CertifiedKey, config::Error> {
    let cert_path = base_dir.join(&files.cert);
    let key_path = base_dir.join(&files.key);
    let certs = read_certs(&cert_path)?;
    let key = read_key(&key_path)?;
    CertifiedKey::from_der(certs, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => config::Error::invalid(
            KEY_KEY,
            format!(
                "the private key in {} does not match the certificate in {}",
                key_path.display(),
                cert_path.display()
            ),
        ),
        rustls::Error::InvalidCertificate(e) => config::Error::invalid(
            CERT_KEY,
            format!(
                "{}: the first certificate cannot be used: {e}",
                cert_path.display()
            ),
        ),
        // rustls's messages here are fixed texts ("failed to parse private key as RSA, ECDSA,
        // or EdDSA"), never key material.
        e => config::Error::invalid(
            KEY_KEY,
            format!(
                "{}: the private key cannot be used: {e}",
                key_path.display()
            ),
        ),
    })
}

fn read(key: &str, path: &Path) -> Result<Zeroizing<Vec<u8>>, config::Error> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|e| config::Error::invalid(key, format!("cannot read {}: {e}", path.display())))
}

/// What is wrong with a PEM file, without the line or bytes the parser quotes.
fn pem_problem(e: &pem::Error) -> &'static str {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a PEM block has no END line",
        pem::Error::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a PEM block is not valid base64",
        pem::Error::SectionTooLarge => "a PEM block is too large",
        _ => "it is not a PEM file",
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, config::Error> {
    let bytes = read(CERT_KEY, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            config::Error::invalid(CERT_KEY, format!("{}: {}", path.display(), pem_problem(&e)))
        })?;
    if certs.is_empty() {
        return Err(config::Error::invalid(
            CERT_KEY,
            format!(
                "{} holds no certificate (no \"BEGIN CERTIFICATE\" block)",
                path.display()
            ),
        ));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, config::Error> {
    let bytes = read(KEY_KEY, path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        let why = match e {
            pem::Error::NoItemsFound => format!(
                "{} holds no private key (a \"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\" block; an encrypted key must be decrypted first)",
                path.display()
            ),
            e => format!("{}: {}", path.display(), pem_problem(&e)),
        };
        config::Error::invalid(KEY_KEY, why)
    })
}

/// A listener that yields TLS streams: an accept task takes TCP connections and runs each
/// handshake in a task of its own, so a slow handshake never holds up the next connection.
/// Dropping it (axum does once the drain begins) stops accepting and ends the handshakes.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
    accepting: AbortHandle,
}

impl TlsListener {
    /// Serves handshakes on `tcp` with `certificate`.
    pub fn new(tcp: TcpListener, certificate: &Certificate) -> std::io::Result<Self> {
        let local_addr = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(certificate.server_config()?);
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let accepting = tokio::spawn(accept_loop(tcp, acceptor, tx));
        Ok(TlsListener {
            ready,
            local_addr,
            accepting: accepting.abort_handle(),
        })
    }
}

impl fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsListener")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept task ends only when this listener is dropped, or by a panic: then no
            // connection comes any more.
            None => {
                tracing::error!("the TLS accept task stopped; no new connections are taken");
                std::future::pending().await
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

/// Accepts TCP connections (accept errors handled as axum handles them for plain TCP) and
/// spawns a handshake for each; the handshake tasks end with this one.
async fn accept_loop(
    mut tcp: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let mut handshakes = JoinSet::new();
    loop {
        tokio::select! {
            (stream, peer) = axum::serve::Listener::accept(&mut tcp) => {
                handshakes.spawn(handshake(acceptor.clone(), stream, peer, ready.clone()));
            }
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {}
            () = ready.closed() => return,
        }
    }
}

/// One handshake under [`HANDSHAKE_TIMEOUT`]; a failure is the client's and is logged at debug.
async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            // Fails only when the listener is gone (shutting down): the connection is dropped.
            let _ = ready.send((tls, peer)).await;
        }
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(
            %peer,
            timeout_s = HANDSHAKE_TIMEOUT.as_secs(),
            "TLS handshake timed out"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn files(dir: &Path, cert: &str, key: &str) -> TlsFiles {
        std::fs::write(dir.join("cert.pem"), cert).unwrap();
        std::fs::write(dir.join("key.pem"), key).unwrap();
        TlsFiles {
            cert: PathBuf::from("cert.pem"),
            key: PathBuf::from("key.pem"),
        }
    }

    fn error(files: &TlsFiles, dir: &Path) -> String {
        Certificate::load(files, dir).unwrap_err().to_string()
    }

    #[test]
    fn each_unusable_file_is_named_by_key_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let f = TlsFiles {
            cert: PathBuf::from("missing.pem"),
            key: PathBuf::from("key.pem"),
        };
        let msg = error(&f, d);
        assert!(
            msg.contains("server.tls.cert: cannot read ") && msg.contains("missing.pem"),
            "{msg}"
        );
        let msg = error(&files(d, "not pem at all\n", ""), d);
        assert!(
            msg.contains("server.tls.cert: ") && msg.contains("holds no certificate"),
            "{msg}"
        );
        let msg = error(&files(d, "-----BEGIN CERTIFICATE-----\nAAAA\n", "x"), d);
        assert!(
            msg.contains("server.tls.cert: ") && msg.contains("no END line"),
            "{msg}"
        );
        let cert = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
        let secret_looking = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==@@\n-----END PRIVATE KEY-----\n";
        let msg = error(&files(d, cert, secret_looking), d);
        assert!(
            msg.contains("server.tls.key: ") && msg.contains("not valid base64"),
            "{msg}"
        );
        assert!(!msg.contains("c2Vj") && !msg.contains("@@"), "{msg}");
        let msg = error(&files(d, cert, cert), d);
        assert!(
            msg.contains("server.tls.key: ") && msg.contains("holds no private key"),
            "{msg}"
        );
    }
}
