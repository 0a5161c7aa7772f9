//! How peers prove who they are: the peer TLS files and the cluster secret, loaded and
//! checked at start (and the TLS files again on SIGHUP); and the client port's TLS.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use raft_core::NodeId;
use raft_net::secret::SECRET_BYTES_MAX;
use raft_net::{ClusterId, ClusterSecret, PeerSecurity, TlsFile, TlsFiles, TlsIdentity};

use super::Settings;
use crate::client_tls::{host_of, ClientTls, ClientTlsFiles};

/// The client port's TLS, checked at start.
#[derive(Clone, Debug)]
pub struct ClientTlsConfig {
    pub files: ClientTlsFiles,
    pub tls: ClientTls,
    /// The host of this node's client address, which its certificate must carry.
    pub own_host: String,
    pub handshake_timeout: Duration,
}

/// The client TLS settings as given.
pub(super) struct ClientTlsSettings<'a> {
    pub cert: Option<&'a PathBuf>,
    pub key: Option<&'a PathBuf>,
    pub ca: Option<&'a PathBuf>,
    pub auth_clients: bool,
    pub handshake_ms: Option<u64>,
}

/// Loads and checks the client port's TLS for a node advertising the client address
/// `advertised` (`host:port`).
pub(super) fn resolve_client_tls(
    settings: ClientTlsSettings,
    advertised: &str,
) -> Result<Option<ClientTlsConfig>> {
    let handshake_timeout = match settings.handshake_ms.unwrap_or(10_000) {
        0 => bail!("invalid config: client_tls_handshake_ms: must be at least 1"),
        ms => Duration::from_millis(ms),
    };
    let files = match (settings.cert, settings.key, settings.ca) {
        (None, None, None) => {
            if settings.auth_clients {
                bail!("invalid config: client_tls_auth_clients: needs client TLS (client_tls_cert, client_tls_key, client_tls_ca)");
            }
            return Ok(None);
        }
        (Some(cert), Some(key), Some(ca)) => ClientTlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: ca.clone(),
            auth_clients: settings.auth_clients,
        },
        (cert, key, _) => {
            let missing = if cert.is_none() {
                "client_tls_cert"
            } else if key.is_none() {
                "client_tls_key"
            } else {
                "client_tls_ca"
            };
            bail!("invalid config: {missing}: required with the other client_tls_* settings (client TLS needs a certificate, its key and the CA forwarding nodes verify it against)")
        }
    };
    let own_host = host_of(advertised).to_owned();
    let tls = ClientTls::load(&files, &own_host)?;
    Ok(Some(ClientTlsConfig {
        files,
        tls,
        own_host,
        handshake_timeout,
    }))
}

impl Settings {
    /// Loads and checks how peers prove who they are; returns it and the TLS files (for
    /// reloading).
    pub(super) fn resolve_peer_security(
        &self,
        cluster_id: u64,
        node_id: NodeId,
    ) -> Result<(PeerSecurity, Option<TlsFiles>)> {
        let files = peer_tls_files(
            self.peer_tls_cert.clone(),
            self.peer_tls_key.clone(),
            self.peer_tls_ca.clone(),
        )?;
        let security = PeerSecurity {
            tls: files
                .as_ref()
                .map(|files| load_peer_tls(files, cluster_id, node_id))
                .transpose()?,
            secret: self
                .cluster_secret_file
                .as_deref()
                .map(load_cluster_secret)
                .transpose()?,
        };
        Ok((security, files))
    }
}

/// The three peer TLS files, which come together or not at all.
fn peer_tls_files(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
) -> Result<Option<TlsFiles>> {
    match (cert, key, ca) {
        (None, None, None) => Ok(None),
        (Some(cert), Some(key), Some(ca)) => Ok(Some(TlsFiles { cert, key, ca })),
        (cert, key, _) => {
            let missing = if cert.is_none() {
                "peer_tls_cert"
            } else if key.is_none() {
                "peer_tls_key"
            } else {
                "peer_tls_ca"
            };
            bail!("invalid config: {missing}: required with the other peer_tls_* settings (peer TLS needs a certificate, its key and the CA)")
        }
    }
}

/// The config key naming a peer TLS file.
pub fn peer_tls_key_name(file: TlsFile) -> &'static str {
    match file {
        TlsFile::Cert => "peer_tls_cert",
        TlsFile::Key => "peer_tls_key",
        TlsFile::Ca => "peer_tls_ca",
    }
}

/// Loads and checks the peer TLS identity (also on SIGHUP).
///
/// # Errors
/// "invalid config: KEY: reason", KEY being the file at fault.
pub fn load_peer_tls(files: &TlsFiles, cluster_id: u64, node_id: NodeId) -> Result<TlsIdentity> {
    TlsIdentity::load(files, ClusterId(cluster_id), node_id).map_err(|error| {
        let key = peer_tls_key_name(error.file());
        anyhow::Error::new(error).context(format!("invalid config: {key}"))
    })
}

/// Reads the cluster secret: the file's bytes without trailing line breaks and spaces.
fn load_cluster_secret(path: &Path) -> Result<ClusterSecret> {
    let key = "invalid config: cluster_secret_file";
    let len = std::fs::metadata(path)
        .with_context(|| format!("{key}: cannot read {}", path.display()))?
        .len();
    // Room for the longest secret and a line break; a larger file is not a secret file.
    if len > u64::try_from(SECRET_BYTES_MAX + 2).expect("small") {
        bail!(
            "{key}: {} has {len} bytes; a secret has at most {SECRET_BYTES_MAX}",
            path.display()
        );
    }
    let bytes =
        std::fs::read(path).with_context(|| format!("{key}: cannot read {}", path.display()))?;
    let trimmed = bytes.trim_ascii_end();
    ClusterSecret::new(trimmed).with_context(|| format!("{key}: {}", path.display()))
}
