//! `kvnode --restore BACKUP`: a new cluster's data directory from a backup, and the cluster
//! identity every data directory records.
//!
//! A restored node starts from the backup's state as a snapshot at the backup's index and
//! term, with the new cluster's members (the `member` setting, the same on every restored
//! node) as its configuration and address book, under a new cluster id: its peers refuse
//! every node of the old cluster at the handshake, and the data directory records the id
//! so a node started with another is refused at start. The directory is built beside the
//! target and renamed into place only when whole: a failure restores nothing.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use raft_core::{HardState, LogStoreMut, Membership, NodeId, Snapshot, SnapshotMeta};
use raft_wal::{WalConfig, WalStore};

use crate::backup::{self, BackupHeader};
use crate::config::{NodeConfig, StorageKind};
use crate::state_machine::StateMachine;

/// The file in a data directory that names its cluster.
const CLUSTER_ID_FILE: &str = "cluster_id";

/// What a restore built.
pub struct Restored {
    pub header: BackupHeader,
    pub keys: usize,
    pub data_dir: PathBuf,
}

/// Builds `config.data_dir` from the backup at `path` (see the module documentation).
///
/// # Errors
/// The settings do not allow a restore (memory storage, the backup's own cluster id, a
/// data directory in use), the backup is damaged (named with what is wrong), or writing
/// the directory failed.
pub fn restore(config: &NodeConfig, path: &Path) -> Result<Restored> {
    if config.storage != StorageKind::Wal {
        bail!("invalid config: storage: a restore builds a WAL; memory storage has nothing to restore into");
    }
    if !config.members.contains_key(&config.node_id) {
        bail!("invalid config: member: list the new cluster's members, this node among them");
    }
    let header = backup::check(path)?;
    if !config.cluster_id_given || config.cluster_id == header.cluster_id {
        bail!(
            "invalid config: cluster_id: a restored cluster needs a new cluster id, the same on \
             each of its nodes (the backup is of cluster {}); pass --cluster-id",
            header.cluster_id
        );
    }
    let target = &config.data_dir;
    if fs::read_dir(target).is_ok_and(|mut entries| entries.next().is_some()) {
        bail!(
            "invalid config: data_dir: {} is not empty; a restore builds a new node's data \
             directory",
            target.display()
        );
    }
    let data = backup::data(path, &header)?;
    let mut machine = StateMachine::restore(&data)
        .with_context(|| format!("{}: the state it holds does not restore", path.display()))?;
    drop(data);
    machine.reset_members(&config.members);
    let keys = machine.len();
    let building = sibling(target, "restoring")?;
    let _ = fs::remove_dir_all(&building); // a leftover of an interrupted restore, if any
    build(config, &header, &machine, &building)?;
    if target.exists() {
        fs::remove_dir(target).with_context(|| format!("removing empty {}", target.display()))?;
    }
    fs::rename(&building, target)
        .with_context(|| format!("renaming {} to {}", building.display(), target.display()))?;
    sync_parent(target)?;
    Ok(Restored {
        header,
        keys,
        data_dir: target.clone(),
    })
}

fn build(
    config: &NodeConfig,
    header: &BackupHeader,
    machine: &StateMachine,
    dir: &Path,
) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let wal_config = WalConfig {
        segment_bytes: config.wal_segment_bytes,
        sync_policy: raft_wal::SyncPolicy::Always,
        spare_segments_max: config.wal_spare_segments,
    };
    let wal_dir = dir.join("wal");
    let mut store = WalStore::open(&wal_dir, wal_config)
        .with_context(|| format!("creating the WAL in {}", wal_dir.display()))?;
    let meta = SnapshotMeta {
        index: header.index,
        term: header.term,
        membership: Membership::with_voters(config.members.keys().copied()),
    };
    let snapshot = Snapshot {
        meta,
        data: machine.snapshot(),
    };
    let hard_state = HardState {
        term: header.term,
        vote: NodeId::NONE,
        commit: header.index,
    };
    store
        .apply_snapshot(snapshot)
        .and_then(|()| store.set_hard_state(hard_state))
        .and_then(|()| store.sync())
        .with_context(|| format!("writing the restored state to {}", wal_dir.display()))?;
    write_cluster_id(dir, config.cluster_id)
}

/// Records `cluster_id` in a data directory (written, synced, renamed into place).
///
/// # Errors
/// Writing failed.
pub fn write_cluster_id(dir: &Path, cluster_id: u64) -> Result<()> {
    let path = dir.join(CLUSTER_ID_FILE);
    let temporary = dir.join(format!("{CLUSTER_ID_FILE}.tmp"));
    let mut file =
        File::create(&temporary).with_context(|| format!("creating {}", temporary.display()))?;
    writeln!(file, "{cluster_id}")
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", temporary.display()))?;
    fs::rename(&temporary, &path).with_context(|| format!("renaming to {}", path.display()))?;
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// Refuses a data directory that belongs to another cluster; records the id in one that
/// records none yet (a new node, or one from before the record existed).
///
/// # Errors
/// `invalid config: cluster_id: ...` on a mismatch, or the record cannot be read or written.
pub fn check_cluster_id(config: &NodeConfig) -> Result<()> {
    let path = config.data_dir.join(CLUSTER_ID_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let recorded: u64 = text
                .trim()
                .parse()
                .with_context(|| format!("{} does not hold a cluster id", path.display()))?;
            if recorded != config.cluster_id {
                bail!(
                    "invalid config: cluster_id: {} belongs to cluster {recorded}, not {}; \
                     nodes of different clusters must never share data",
                    config.data_dir.display(),
                    config.cluster_id
                );
            }
            Ok(())
        }
        Err(missing) if missing.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("creating {}", config.data_dir.display()))?;
            write_cluster_id(&config.data_dir, config.cluster_id)
        }
        Err(failure) => Err(failure).with_context(|| format!("reading {}", path.display())),
    }
}

fn sibling(dir: &Path, suffix: &str) -> Result<PathBuf> {
    let name = dir
        .file_name()
        .with_context(|| format!("{} has no directory name", dir.display()))?;
    Ok(dir.with_file_name(format!("{}.{suffix}", name.to_string_lossy())))
}

fn sync_parent(dir: &Path) -> Result<()> {
    let parent = dir.parent().filter(|parent| !parent.as_os_str().is_empty());
    let parent = parent.unwrap_or(Path::new("."));
    File::open(parent)
        .and_then(|parent| parent.sync_all())
        .with_context(|| format!("syncing {}", parent.display()))
}
