//! Throwaway certificates for tests, benchmarks and local clusters (feature `certgen`):
//! a self-signed CA and node certificates that follow the naming rule
//! ([`crate::tls::naming`]), generated with rcgen (ECDSA P-256).
//!
//! Not a way to run a production CA: keys are generated in memory and written in the
//! clear, and the CA's key is never kept beyond the [`Authority`] value.

use std::path::Path;

use raft_core::NodeId;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::CertificateDer;

use crate::handshake::ClusterId;
use crate::tls::naming::node_dns_name;
use crate::tls::TlsIdentity;

/// When an issued certificate is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// rcgen's default window, 1975 to 4096.
    Current,
    /// Valid only during the year 2000: refused as expired.
    Expired,
}

/// A certificate and its private key, in PEM (and the certificate in DER).
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: CertificateDer<'static>,
}

/// A self-signed CA that issues node certificates.
pub struct Authority {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Authority {
    /// A new CA named `common_name`, with a fresh key.
    ///
    /// # Errors
    /// rcgen's, if key generation or signing fails.
    pub fn new(common_name: &str) -> Result<Authority, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Authority { cert, key })
    }

    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// A certificate for node `node` of `cluster`, usable by both ends of a connection.
    ///
    /// # Errors
    /// rcgen's.
    pub fn issue(
        &self,
        cluster: ClusterId,
        node: NodeId,
        validity: Validity,
    ) -> Result<Issued, rcgen::Error> {
        self.issue_names(vec![node_dns_name(cluster, node)], validity)
    }

    /// A ready TLS identity for node `node` of `cluster`: a fresh certificate, its key and
    /// this CA.
    ///
    /// # Errors
    /// rcgen's.
    ///
    /// # Panics
    /// If raft-net refuses a certificate this CA just issued by its own rule (a bug).
    pub fn identity(&self, cluster: ClusterId, node: NodeId) -> Result<TlsIdentity, rcgen::Error> {
        let issued = self.issue(cluster, node, Validity::Current)?;
        let identity = TlsIdentity::from_pem(
            issued.cert_pem.as_bytes(),
            issued.key_pem.as_bytes(),
            self.cert_pem().as_bytes(),
            cluster,
            node,
        )
        .expect("a certificate certgen issues passes TlsIdentity's checks");
        Ok(identity)
    }

    /// A certificate carrying exactly the names `names`: DNS names, or IP addresses for
    /// those that parse as one (tests use this for certificates that break the naming
    /// rule; the client port's certificates carry the hosts clients connect to).
    ///
    /// # Errors
    /// rcgen's (say, a name that is not a valid DNS name).
    pub fn issue_names(
        &self,
        names: Vec<String>,
        validity: Validity,
    ) -> Result<Issued, rcgen::Error> {
        let common_name = names.first().cloned().unwrap_or_default();
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if validity == Validity::Expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
        })
    }
}

/// The client hosts of a cluster on one machine: what `kvcerts` puts in client port
/// certificates unless told otherwise.
pub const LOCAL_CLIENT_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The file names [`write_cluster_certificates`] uses, relative to its directory.
pub mod files {
    use raft_core::NodeId;

    /// The CA certificate every other file chains to.
    pub const CA: &str = "ca.pem";
    /// A certificate for tools connecting to a client port that requires client
    /// certificates (`client_tls_auth_clients`), and its key.
    pub const CLIENT_CERT: &str = "client.pem";
    pub const CLIENT_KEY: &str = "client.key";

    /// Node `node`'s peer certificate (named by the peer naming rule) and its key.
    pub fn peer(node: NodeId) -> (String, String) {
        (format!("node-{node}.pem"), format!("node-{node}.key"))
    }

    /// Node `node`'s client port certificate (carrying the client hosts) and its key.
    pub fn client_port(node: NodeId) -> (String, String) {
        (
            format!("client-port-{node}.pem"),
            format!("client-port-{node}.key"),
        )
    }
}

/// Writes into `dir` (created if missing) a fresh CA and what a TLS cluster needs from it
/// (names in [`files`]): for each of `nodes` a peer certificate and a client port
/// certificate carrying `client_hosts` (the host names and addresses clients, and
/// forwarding nodes, connect to), and one client certificate for tools. Keys are written
/// readable by the owner only.
///
/// # Errors
/// Generation or writing failed (a client host that is no DNS name nor IP address among
/// them); the message names the file.
pub fn write_cluster_certificates(
    dir: &Path,
    cluster: ClusterId,
    nodes: &[NodeId],
    client_hosts: &[String],
) -> std::io::Result<()> {
    let io_error = |error: rcgen::Error| std::io::Error::other(error.to_string());
    std::fs::create_dir_all(dir)?;
    let ca = Authority::new(&format!("raftkv cluster {cluster} CA")).map_err(io_error)?;
    write_file(&dir.join(files::CA), ca.cert_pem().as_bytes(), 0o644)?;
    let write_pair = |issued: Issued, (cert, key): (String, String)| -> std::io::Result<()> {
        write_file(&dir.join(cert), issued.cert_pem.as_bytes(), 0o644)?;
        write_file(&dir.join(key), issued.key_pem.as_bytes(), 0o600)
    };
    for &node in nodes {
        let peer = ca
            .issue(cluster, node, Validity::Current)
            .map_err(io_error)?;
        write_pair(peer, files::peer(node))?;
        let client_port = ca
            .issue_names(client_hosts.to_vec(), Validity::Current)
            .map_err(io_error)?;
        write_pair(client_port, files::client_port(node))?;
    }
    let client = ca
        .issue_names(vec!["raftkv-client".to_owned()], Validity::Current)
        .map_err(io_error)?;
    write_pair(
        client,
        (files::CLIENT_CERT.to_owned(), files::CLIENT_KEY.to_owned()),
    )
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|error| {
            std::io::Error::new(error.kind(), format!("{}: {error}", path.display()))
        })?;
    file.write_all(bytes)
}
