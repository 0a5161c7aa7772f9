//! TLS on the peer port: a node's identity (certificate, private key, the CA it trusts),
//! loaded and checked once, and the TLS handshake of a dialled or accepted connection.
//!
//! Mutual TLS 1.3 (rustls with its default aws-lc-rs provider, which offers the hybrid
//! post-quantum key exchange first; no OpenSSL): the acceptor asks for the
//! dialer's certificate, and both verify the other's against the CA. The certificate must
//! name the node (the naming rule is in [`naming`]): the dialer asks for the name of the
//! node it dials, and the acceptor checks the name against the id the dialer's hello
//! claims (`inbound`). So a connection speaks for node N only if it holds a key for a
//! certificate the CA issued to node N.
//!
//! Every node's certificate serves both ends of its connections, so it needs both the
//! `serverAuth` and the `clientAuth` extended key usage. Loading refuses, naming the file,
//! anything a peer would refuse later: an unreadable or empty file, a key that does not
//! match the certificate, a certificate that does not verify against the CA (expired,
//! another CA, a missing usage) or that does not name this node.
//!
//! Session resumption is off (every connection does a full handshake and certificate
//! check); connections are few and long-lived, so it would save nothing that matters.
//!
//! After the handshake the connection's records are handled by `record`, not by
//! tokio-rustls: see there why.

pub mod naming;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use raft_core::NodeId;
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio::net::TcpStream;

use crate::error::{TlsConfigError, TlsFile};
use crate::handshake::ClusterId;
use naming::{check_certificate_names_node, node_server_name};

/// Largest certificate, key or CA file read. Real ones are a few KiB; the bound keeps a
/// mistyped path (say, to a log file) from being read whole.
pub const TLS_FILE_BYTES_MAX: u64 = 1024 * 1024;

/// Where a node's TLS material lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: this node's certificate, then any intermediates.
    pub cert: PathBuf,
    /// PEM: the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM: the CA certificate(s) peers' certificates must chain to.
    pub ca: PathBuf,
}

/// A node's checked TLS identity and the rustls configurations built from it. Cheap to
/// clone.
#[derive(Clone)]
pub struct TlsIdentity {
    cluster_id: ClusterId,
    node_id: NodeId,
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TlsIdentity({})",
            naming::node_dns_name(self.cluster_id, self.node_id)
        )
    }
}

/// The crypto provider every TLS configuration here uses (aws-lc-rs).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads one PEM file, bounded by [`TLS_FILE_BYTES_MAX`].
///
/// # Errors
/// `Read`, naming `file` and the path.
pub fn read_pem_file(file: TlsFile, path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    let read_error = |source| TlsConfigError::Read {
        file,
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(read_error)?.len();
    if len > TLS_FILE_BYTES_MAX {
        return Err(read_error(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{len} bytes is over the {TLS_FILE_BYTES_MAX}-byte limit"),
        )));
    }
    std::fs::read(path).map_err(read_error)
}

/// Every certificate in a PEM file; at least one.
///
/// # Errors
/// `Pem` for text that is not PEM, `Empty` for a file without a certificate.
pub fn parse_certificates(
    file: TlsFile,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsConfigError::Pem { file, source })?;
    if certs.is_empty() {
        return Err(TlsConfigError::Empty { file });
    }
    Ok(certs)
}

impl TlsIdentity {
    /// Reads and checks `files` for node `node_id` of `cluster_id`.
    ///
    /// # Errors
    /// The first problem found, naming the file (see the module's list).
    pub fn load(
        files: &TlsFiles,
        cluster_id: ClusterId,
        node_id: NodeId,
    ) -> Result<TlsIdentity, TlsConfigError> {
        let cert = read_pem_file(TlsFile::Cert, &files.cert)?;
        let key = read_pem_file(TlsFile::Key, &files.key)?;
        let ca = read_pem_file(TlsFile::Ca, &files.ca)?;
        TlsIdentity::from_pem(&cert, &key, &ca, cluster_id, node_id)
    }

    /// [`TlsIdentity::load`] from PEM text already in memory.
    ///
    /// # Errors
    /// As for [`TlsIdentity::load`].
    pub fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        ca_pem: &[u8],
        cluster_id: ClusterId,
        node_id: NodeId,
    ) -> Result<TlsIdentity, TlsConfigError> {
        let chain = parse_certificates(TlsFile::Cert, cert_pem)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|source| TlsConfigError::Pem {
            file: TlsFile::Key,
            source,
        })?;
        let mut roots = RootCertStore::empty();
        for ca in parse_certificates(TlsFile::Ca, ca_pem)? {
            roots.add(ca).map_err(|source| TlsConfigError::Rustls {
                file: TlsFile::Ca,
                source,
            })?;
        }
        let roots = Arc::new(roots);
        let provider = provider();
        CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider).map_err(|source| {
            TlsConfigError::Rustls {
                file: TlsFile::Key,
                source,
            }
        })?;
        let verifier_error = |source| TlsConfigError::Verifier { source };
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
                .build()
                .map_err(verifier_error)?;
        let server_verifier =
            WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                .build()
                .map_err(verifier_error)?;
        check_own_certificate(
            &chain,
            &client_verifier,
            &server_verifier,
            cluster_id,
            node_id,
        )?;
        let server = server_config(&provider, client_verifier, chain.clone(), key.clone_key())?;
        let client = client_config(&provider, server_verifier, chain, key)?;
        Ok(TlsIdentity {
            cluster_id,
            node_id,
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }

    pub fn cluster_id(&self) -> ClusterId {
        self.cluster_id
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    pub(crate) fn server_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.server)
    }

    pub(crate) fn client_config(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.client)
    }

    /// The acceptor's TLS handshake. Returns the socket and the session, whose peer
    /// certificate has been verified against the CA (but not yet against a node id).
    ///
    /// # Errors
    /// The handshake failed: an `InvalidData` error wrapping the `rustls::Error`, or the
    /// socket's error.
    pub(crate) async fn accept(
        &self,
        stream: TcpStream,
    ) -> io::Result<(TcpStream, ServerConnection)> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.server_config());
        Ok(acceptor.accept(stream).await?.into_inner())
    }

    /// The dialer's TLS handshake with node `peer`, whose certificate must name it.
    ///
    /// # Errors
    /// As for [`TlsIdentity::accept`].
    pub(crate) async fn connect(
        &self,
        stream: TcpStream,
        peer: NodeId,
    ) -> io::Result<(TcpStream, ClientConnection)> {
        let connector = tokio_rustls::TlsConnector::from(self.client_config());
        let name = node_server_name(self.cluster_id, peer);
        Ok(connector.connect(name, stream).await?.into_inner())
    }
}

/// This node's own certificate must pass what its peers will check: the chain to the CA
/// for both usages, now, and the naming rule for this node.
fn check_own_certificate(
    chain: &[CertificateDer<'static>],
    client_verifier: &Arc<dyn rustls::server::danger::ClientCertVerifier>,
    server_verifier: &Arc<WebPkiServerVerifier>,
    cluster_id: ClusterId,
    node_id: NodeId,
) -> Result<(), TlsConfigError> {
    use rustls::client::danger::ServerCertVerifier;
    let (end_entity, intermediates) = chain.split_first().expect("parse_certificates: non-empty");
    let now = UnixTime::now();
    let own_error = |usage, source| TlsConfigError::OwnCertificate { usage, source };
    client_verifier
        .verify_client_cert(end_entity, intermediates, now)
        .map_err(|source| own_error("client", source))?;
    server_verifier
        .verify_server_cert(
            end_entity,
            intermediates,
            &node_server_name(cluster_id, node_id),
            &[],
            now,
        )
        .map_err(|source| own_error("server", source))?;
    check_certificate_names_node(end_entity, cluster_id, node_id)
        .map_err(|source| TlsConfigError::OwnName { source })
}

/// rustls refused the certificate (chain) while building a configuration.
fn certificate_unusable(source: rustls::Error) -> TlsConfigError {
    TlsConfigError::Rustls {
        file: TlsFile::Cert,
        source,
    }
}

fn server_config(
    provider: &Arc<CryptoProvider>,
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, TlsConfigError> {
    let mut config = ServerConfig::builder_with_provider(Arc::clone(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(certificate_unusable)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(certificate_unusable)?;
    // No resumption: nothing to remember, and no tickets to send after the handshake.
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

fn client_config(
    provider: &Arc<CryptoProvider>,
    verifier: Arc<WebPkiServerVerifier>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ClientConfig, TlsConfigError> {
    let mut config = ClientConfig::builder_with_provider(Arc::clone(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(certificate_unusable)?
        .with_webpki_verifier(verifier)
        .with_client_auth_cert(chain, key)
        .map_err(certificate_unusable)?;
    config.resumption = Resumption::disabled();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certgen::{Authority, Validity};

    const CLUSTER: ClusterId = ClusterId(5);

    /// Loading refuses, naming the file, what peers would refuse later.
    #[test]
    fn bad_material_is_refused_naming_the_file() {
        let ca = Authority::new("test CA").expect("CA");
        let other_ca = Authority::new("other CA").expect("CA");
        let issue = |id, validity| ca.issue(CLUSTER, NodeId(id), validity).expect("issue");
        let (node, other) = (issue(1, Validity::Current), issue(2, Validity::Current));
        let expired = issue(1, Validity::Expired);
        let (cert, key, ca_pem) = (
            node.cert_pem.as_bytes(),
            node.key_pem.as_bytes(),
            ca.cert_pem(),
        );
        let ca_pem = ca_pem.as_bytes();
        TlsIdentity::from_pem(cert, key, ca_pem, CLUSTER, NodeId(1)).expect("valid");
        let other_ca_pem = other_ca.cert_pem();
        /// Name, certificate, key, CA, node id, what the error must say.
        type Case<'a> = (&'a str, &'a [u8], &'a [u8], &'a [u8], NodeId, &'a str);
        let cases: Vec<Case> = vec![
            ("empty cert", b"", key, ca_pem, NodeId(1), "certificate"),
            (
                "garbage key",
                cert,
                b"-----BEGIN PRIVATE KEY-----\nzz\n-----END PRIVATE KEY-----\n",
                ca_pem,
                NodeId(1),
                "private key",
            ),
            (
                "key of another cert",
                cert,
                other.key_pem.as_bytes(),
                ca_pem,
                NodeId(1),
                "private key",
            ),
            ("empty CA", cert, key, b"", NodeId(1), "CA"),
            (
                "another CA",
                cert,
                key,
                other_ca_pem.as_bytes(),
                NodeId(1),
                "does not verify",
            ),
            (
                "expired",
                expired.cert_pem.as_bytes(),
                expired.key_pem.as_bytes(),
                ca_pem,
                NodeId(1),
                "expired",
            ),
            (
                "another node's id",
                cert,
                key,
                ca_pem,
                NodeId(3),
                "does not verify",
            ),
        ];
        for (name, cert, key, ca, id, want) in cases {
            let error = TlsIdentity::from_pem(cert, key, ca, CLUSTER, id).expect_err(name);
            let chain = crate::error::display_chain(&error);
            assert!(chain.contains(want), "{name}: {chain}");
        }
    }

    #[test]
    fn unreadable_files_are_named() {
        let files = TlsFiles {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
            ca: "/nonexistent/ca.pem".into(),
        };
        let error = TlsIdentity::load(&files, CLUSTER, NodeId(1)).expect_err("missing");
        assert!(
            matches!(
                error,
                TlsConfigError::Read {
                    file: TlsFile::Cert,
                    ..
                }
            ),
            "{error}"
        );
        assert!(
            error.to_string().contains("/nonexistent/cert.pem"),
            "{error}"
        );
    }
}
