//! The client side of the client port's TLS: a forwarding node dialling the leader, and
//! the tools (kvctl, kvbench) dialling any node. Either verifies the server's certificate
//! against a CA for the host it dials (the rule in the module above).

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use anyhow::{anyhow, Context, Result};
use raft_net::error::TlsFile;
use raft_net::tls::{parse_certificates, provider, read_pem_file};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::{host_of, host_server_name};

/// A TLS connection to a client port.
pub type ClientTlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// The TLS server name to verify for `endpoint` (`host:port`): its host.
///
/// # Errors
/// The host is neither a DNS name nor an IP address.
pub fn endpoint_server_name(endpoint: &str) -> Result<ServerName<'static>> {
    host_server_name(host_of(endpoint))
}

/// The TLS handshake with the client port at `endpoint`, whose certificate must carry its
/// host.
///
/// # Errors
/// The handshake failed (an `InvalidData` error wrapping rustls's reason), or the
/// endpoint's host is no server name (`InvalidInput`).
pub async fn dial(
    stream: TcpStream,
    config: Arc<ClientConfig>,
    endpoint: &str,
) -> io::Result<ClientTlsStream> {
    let name = endpoint_server_name(endpoint)
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, format!("{error:#}")))?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
}

/// Connects to the client port at `endpoint` (`host:port`) with Nagle off, over TLS with
/// `tls` when given.
///
/// # Errors
/// Connecting or the TLS handshake failed (see [`dial`]).
pub async fn connect(endpoint: &str, tls: Option<Arc<ClientConfig>>) -> io::Result<DialedStream> {
    let stream = TcpStream::connect(endpoint).await?;
    // Latency over bandwidth for request/reply traffic; a failure only costs latency.
    let _ = stream.set_nodelay(true);
    Ok(match tls {
        None => DialedStream::Plain(stream),
        Some(config) => DialedStream::Tls(Box::new(dial(stream, config, endpoint).await?)),
    })
}

/// A connection to a client port, in clear or over TLS.
pub enum DialedStream {
    Plain(TcpStream),
    /// Boxed: a TLS session is large, and a forwarder's enum lives in every client
    /// connection.
    Tls(Box<ClientTlsStream>),
}

impl AsyncRead for DialedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            DialedStream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            DialedStream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for DialedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            DialedStream::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            DialedStream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            DialedStream::Plain(stream) => Pin::new(stream).poll_flush(cx),
            DialedStream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            DialedStream::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            DialedStream::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A tool's TLS configuration: trust the CA certificate(s) in `ca_file`, and show the
/// certificate and key in `identity` when given (for a port with client_tls_auth_clients).
///
/// # Errors
/// A file that cannot be read or used, named by its flag (`--cacert`, `--cert`, `--key`).
pub fn tool_config(ca_file: &Path, identity: Option<(&Path, &Path)>) -> Result<Arc<ClientConfig>> {
    let ca_pem = read_pem_file(TlsFile::Ca, ca_file).context("--cacert")?;
    let mut roots = RootCertStore::empty();
    for ca in parse_certificates(TlsFile::Ca, &ca_pem).context("--cacert")? {
        roots.add(ca).context("--cacert")?;
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| anyhow!("no TLS version available: {error}"))?
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert_file, key_file)) => {
            let cert_pem = read_pem_file(TlsFile::Cert, cert_file).context("--cert")?;
            let chain = parse_certificates(TlsFile::Cert, &cert_pem).context("--cert")?;
            let key_pem = read_pem_file(TlsFile::Key, key_file).context("--key")?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|error| anyhow!("--key: not a PEM private key: {error}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .context("--cert/--key: the key does not fit the certificate")?
        }
    };
    Ok(Arc::new(config))
}
