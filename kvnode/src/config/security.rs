//! How peers prove who they are: the peer TLS files and the cluster secret, loaded and
//! checked at start (and the TLS files again on SIGHUP).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use raft_core::NodeId;
use raft_net::secret::SECRET_BYTES_MAX;
use raft_net::{ClusterId, ClusterSecret, PeerSecurity, TlsFile, TlsFiles, TlsIdentity};

use super::Settings;

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
