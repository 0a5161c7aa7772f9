//! The client side of the client port's TLS: a forwarding node dialling the leader, and
//! the tools (kvctl, kvbench) dialling any node. Either verifies the server's certificate
//! against a CA for the host it dials (the rule in the module above).

use std::io;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use raft_net::error::TlsFile;
use raft_net::tls::{parse_certificates, provider, read_pem_file};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, ServerName};
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
