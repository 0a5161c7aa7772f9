//! TLS on the client port: the node's client port certificate, loaded and checked at start
//! (and again on SIGHUP), the handshake of each accepted client (`accept`), and the TLS
//! dial of a forwarding node and of the tools (`dial`).
//!
//! Rules:
//! - When `client_tls_cert` is set the client port speaks TLS only (like Redis's
//!   `tls-port` with `port 0`): one port, one protocol, so no client can fall back to clear
//!   text by mistake. A plain RESP client gets one clear-text error line and is closed.
//! - `client_tls_ca` is required with the certificate: it is the trust anchor a follower
//!   verifies the leader's client port against when it forwards (every node's client
//!   certificate must chain to it), and the CA operators give clients (`--cacert`).
//!   With `client_tls_auth_clients`, clients must also present a certificate chaining to
//!   it (Redis's `tls-auth-clients yes`); a forwarding node then presents its own client
//!   port certificate, which therefore needs the clientAuth usage too.
//! - Names: a client port certificate carries the hosts clients connect to (DNS names or
//!   IP addresses, as for any TLS server). A forwarding node verifies the leader's
//!   certificate against the host of the leader's advertised client address, so each
//!   node's certificate must carry the host of its own client address in `member`; start
//!   refuses one that does not.
//! - Loading refuses, naming the key: an unreadable or empty file, a key that does not
//!   match the certificate, a certificate that does not verify against the CA now
//!   (expired, another CA, a missing usage) or does not carry the node's client host.
//! - TLS 1.2 and 1.3 (rustls's safe defaults, aws-lc-rs), so every current Redis client
//!   library connects; session resumption on, as rustls does by default, because clients
//!   reconnect often.

mod accept;
mod dial;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use raft_net::error::{TlsConfigError, TlsFile};
use raft_net::tls::{parse_certificates, provider, read_pem_file};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

pub use accept::{accept, Rejection, RejectionLog};
pub use dial::{connect, dial, endpoint_server_name, tool_config, ClientTlsStream, DialedStream};

/// Where the client port's TLS material lives, and whether clients must show a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientTlsFiles {
    /// PEM: the client port certificate, then any intermediates.
    pub cert: PathBuf,
    /// PEM: its private key.
    pub key: PathBuf,
    /// PEM: the CA certificate(s) every node's client port certificate chains to, and
    /// clients' certificates too when `auth_clients`.
    pub ca: PathBuf,
    /// Clients must present a certificate chaining to `ca` (mutual TLS).
    pub auth_clients: bool,
}

/// The config key naming a client TLS file.
pub fn client_tls_key_name(file: TlsFile) -> &'static str {
    match file {
        TlsFile::Cert => "client_tls_cert",
        TlsFile::Key => "client_tls_key",
        TlsFile::Ca => "client_tls_ca",
    }
}

fn invalid(error: TlsConfigError) -> anyhow::Error {
    let key = client_tls_key_name(error.file());
    anyhow::Error::new(error).context(format!("invalid config: {key}"))
}

/// The checked rustls configurations of the client port. Cheap to clone.
#[derive(Clone)]
pub struct ClientTls {
    /// For accepting clients.
    pub server: Arc<ServerConfig>,
    /// For forwarding to the leader's client port.
    pub forward: Arc<ClientConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

impl ClientTls {
    /// Reads and checks `files` for a node whose advertised client address has the host
    /// `own_host`.
    ///
    /// # Errors
    /// "invalid config: KEY: reason", KEY being the setting at fault (see the module's
    /// list).
    pub fn load(files: &ClientTlsFiles, own_host: &str) -> Result<ClientTls> {
        let cert_pem = read_pem_file(TlsFile::Cert, &files.cert).map_err(invalid)?;
        let key_pem = read_pem_file(TlsFile::Key, &files.key).map_err(invalid)?;
        let ca_pem = read_pem_file(TlsFile::Ca, &files.ca).map_err(invalid)?;
        let chain = parse_certificates(TlsFile::Cert, &cert_pem).map_err(invalid)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|source| {
            invalid(TlsConfigError::Pem {
                file: TlsFile::Key,
                source,
            })
        })?;
        let roots = Arc::new(load_roots(&ca_pem)?);
        let provider = provider();
        CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider).map_err(|source| {
            invalid(TlsConfigError::Rustls {
                file: TlsFile::Key,
                source,
            })
        })?;
        let verifier_error = |source| invalid(TlsConfigError::Verifier { source });
        let server_verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
                .build()
                .map_err(verifier_error)?;
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
                .build()
                .map_err(verifier_error)?;
        check_own_certificate(
            &chain,
            own_host,
            &server_verifier,
            files.auth_clients.then_some(&client_verifier),
        )?;
        let unusable = |source| {
            invalid(TlsConfigError::Rustls {
                file: TlsFile::Cert,
                source,
            })
        };
        let server = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(unusable)?;
        let server = if files.auth_clients {
            server.with_client_cert_verifier(client_verifier)
        } else {
            server.with_no_client_auth()
        }
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(unusable)?;
        let forward = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(unusable)?
            .with_webpki_verifier(server_verifier);
        let forward = if files.auth_clients {
            forward
                .with_client_auth_cert(chain, key)
                .map_err(unusable)?
        } else {
            forward.with_no_client_auth()
        };
        Ok(ClientTls {
            server: Arc::new(server),
            forward: Arc::new(forward),
        })
    }
}

fn load_roots(ca_pem: &[u8]) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for ca in parse_certificates(TlsFile::Ca, ca_pem).map_err(invalid)? {
        roots.add(ca).map_err(|source| {
            invalid(TlsConfigError::Rustls {
                file: TlsFile::Ca,
                source,
            })
        })?;
    }
    Ok(roots)
}

/// The node's own certificate must pass what clients and forwarding nodes check: the
/// chain to the CA now, for the host of its client address, and for client use when it
/// must show it as a client.
fn check_own_certificate(
    chain: &[CertificateDer<'static>],
    own_host: &str,
    server_verifier: &WebPkiServerVerifier,
    client_verifier: Option<&Arc<dyn ClientCertVerifier>>,
) -> Result<()> {
    let (end_entity, intermediates) = chain.split_first().expect("parse_certificates: non-empty");
    let now = UnixTime::now();
    let name = host_server_name(own_host)
        .context("invalid config: client_addr: its host is no DNS name nor IP address")?;
    server_verifier
        .verify_server_cert(end_entity, intermediates, &name, &[], now)
        .map_err(|error| {
            anyhow!(
                "invalid config: client_tls_cert: does not verify against client_tls_ca for {own_host} \
                 (the host of this node's client address, which forwarding nodes check; it needs the serverAuth usage): {error}"
            )
        })?;
    if let Some(verifier) = client_verifier {
        verifier
            .verify_client_cert(end_entity, intermediates, now)
            .map_err(|error| {
                anyhow!(
                    "invalid config: client_tls_cert: does not verify against client_tls_ca for client use \
                     (with client_tls_auth_clients a forwarding node shows it to the leader; it needs the clientAuth usage): {error}"
                )
            })?;
    }
    Ok(())
}

/// The TLS server name of `host` (a DNS name or an IP address, without brackets).
///
/// # Errors
/// `host` is neither.
pub fn host_server_name(host: &str) -> Result<ServerName<'static>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).map_err(|error| anyhow!("{host:?}: {error}"))
}

/// The host part of `host:port` (an IPv6 address keeps no brackets).
pub fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// The client port's TLS, shared by the accept loop and every forwarder; replaced whole on
/// SIGHUP, so a connection uses the material current when it started.
pub struct ClientTlsState {
    files: ClientTlsFiles,
    own_host: String,
    current: RwLock<ClientTls>,
    /// How long a client may take to complete its handshake.
    pub handshake_timeout: Duration,
    /// Refused handshakes: counted, and logged at a bounded rate.
    pub rejections: RejectionLog,
}

impl ClientTlsState {
    pub fn new(
        files: ClientTlsFiles,
        own_host: String,
        tls: ClientTls,
        handshake_timeout: Duration,
    ) -> ClientTlsState {
        ClientTlsState {
            files,
            own_host,
            current: RwLock::new(tls),
            handshake_timeout,
            rejections: RejectionLog::default(),
        }
    }

    /// The configurations new connections use.
    pub fn current(&self) -> ClientTls {
        // A poisoned lock only means a reload panicked between two whole values; the value
        // inside is still one of them.
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads the files again; on success new connections use them.
    ///
    /// # Errors
    /// As for [`ClientTls::load`]; the current material stays.
    pub fn reload(&self) -> Result<()> {
        let tls = ClientTls::load(&self.files, &self.own_host)?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = tls;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_handles_names_and_both_address_families() {
        for (address, host) in [
            ("127.0.0.1:6001", "127.0.0.1"),
            ("db-1.example.com:6379", "db-1.example.com"),
            ("[::1]:6001", "::1"),
            ("localhost", "localhost"),
        ] {
            assert_eq!(host_of(address), host, "{address}");
            host_server_name(host_of(address)).expect(address);
        }
    }
}
