//! A backup served on one connection (`RAFTKV.BACKUP`, then `RAFTKV.BACKUPREAD`): the raft
//! loop hands over a copy-on-write clone of the state at a linearizable point, a blocking
//! task writes it to a file in the data directory that is unlinked at once (so nothing is
//! left behind, whatever happens to the connection), and the client reads it in chunks.
//!
//! Bounded: one backup per connection, chunks of [`CHUNK_BYTES`]; the file lives as long as
//! the connection or until the last chunk is read.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use tokio::sync::oneshot;

use crate::cmd;
use crate::error::{error_reply, ClusterError, Error};
use crate::raft_loop::{Captured, Request};
use crate::resp::Frame;

/// Bytes per `RAFTKV.BACKUPREAD` reply.
pub const CHUNK_BYTES: u64 = 1 << 20;

/// A backup written and waiting to be read.
pub struct BackupFile {
    file: Arc<File>,
    pub bytes: u64,
    pub index: u64,
    pub term: u64,
}

/// Tells backup files of one process apart while they are being created.
static NEXT_FILE: AtomicU64 = AtomicU64::new(1);

impl BackupFile {
    /// Writes `captured`'s state into an unlinked file in `dir` (blocking: run it off the
    /// async threads).
    ///
    /// # Errors
    /// Creating or writing the file failed.
    pub fn write(dir: &Path, captured: Captured) -> std::io::Result<BackupFile> {
        let path = dir.join(format!(
            ".backup-{}-{}",
            std::process::id(),
            NEXT_FILE.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        // Unlinked now: the open handle is the only way to it.
        std::fs::remove_file(&path)?;
        let bytes = captured.machine.snapshot_len();
        let mut writer = BufWriter::with_capacity(1 << 20, &file);
        captured.machine.write_snapshot(&mut writer)?;
        writer.flush()?;
        drop(writer);
        Ok(BackupFile {
            file: Arc::new(file),
            bytes,
            index: captured.index.0,
            term: captured.term.0,
        })
    }

    /// The chunk at `offset` (empty past the end). Blocking: a read of the page cache.
    ///
    /// # Errors
    /// Reading failed.
    pub fn chunk(&self, offset: u64) -> std::io::Result<Bytes> {
        let len = self.bytes.saturating_sub(offset).min(CHUNK_BYTES);
        let mut buffer = vec![0u8; usize::try_from(len).expect("a chunk fits in memory")];
        self.file.read_exact_at(&mut buffer, offset)?;
        Ok(Bytes::from(buffer))
    }

    /// A handle for a blocking task.
    pub fn share(&self) -> BackupFile {
        BackupFile {
            file: Arc::clone(&self.file),
            bytes: self.bytes,
            index: self.index,
            term: self.term,
        }
    }
}

impl super::Connection {
    /// RAFTKV.BACKUP and RAFTKV.BACKUPREAD.
    pub(super) async fn backup(&mut self, step: cmd::internal::BackupCommand) -> Frame {
        use cmd::internal::BackupCommand;
        let failed = |reason: String| Frame::Error(format!("ERR backup failed: {reason}"));
        match step {
            BackupCommand::Begin => {
                let (sender, receiver) = oneshot::channel();
                if let Err(refused) = self.shared.raft.submit(Request::Capture { reply: sender }) {
                    return error_reply(&Error::Cluster(refused));
                }
                let captured = match receiver.await {
                    Ok(Ok(captured)) => captured,
                    Ok(Err(failure)) => return error_reply(&Error::Cluster(failure)),
                    Err(_) => return error_reply(&Error::Cluster(ClusterError::Stopping)),
                };
                let dir = self.shared.backup_dir.clone();
                let written =
                    tokio::task::spawn_blocking(move || BackupFile::write(&dir, captured)).await;
                let file = match written {
                    Ok(Ok(file)) => file,
                    Ok(Err(failure)) => return failed(failure.to_string()),
                    Err(failure) => return failed(failure.to_string()),
                };
                let reply = Frame::Array(
                    [file.index, file.term, self.shared.cluster_id, file.bytes]
                        .into_iter()
                        .map(|n| Frame::Integer(i64::try_from(n).unwrap_or(i64::MAX)))
                        .collect(),
                );
                self.backup = Some(file);
                reply
            }
            BackupCommand::Read { offset } => {
                let Some(file) = self.backup.as_ref().map(BackupFile::share) else {
                    return Frame::Error(
                        "ERR no backup on this connection: send RAFTKV.BACKUP first".into(),
                    );
                };
                if offset >= file.bytes {
                    self.backup = None;
                    return Frame::Bulk(Bytes::new());
                }
                match tokio::task::spawn_blocking(move || file.chunk(offset)).await {
                    Ok(Ok(chunk)) => Frame::Bulk(chunk),
                    Ok(Err(failure)) => failed(failure.to_string()),
                    Err(failure) => failed(failure.to_string()),
                }
            }
        }
    }
}
