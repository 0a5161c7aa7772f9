//! `kvctl snapshot save FILE`: a backup of a running cluster.
//!
//! One connection to the first endpoint that will serve it: `RAFTKV.BACKUP` makes the node
//! copy its state at a linearizable point (its read point is the leader's) and answers
//! `[index, term, cluster id, bytes]`; `RAFTKV.BACKUPREAD offset` then reads it in chunks.
//! The file is written as `kvnode::backup` describes, to `FILE.partial`, synced, and
//! renamed over FILE only once whole; a failure leaves FILE as it was.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use kvnode::backup::{self, BackupHeader};
use kvnode::resp::Frame;
use raft_core::{LogIndex, Term};

use super::wire::Stream;
use super::{connect, request, Client};

pub fn save(client: &Client, path: &Path, prepare: Duration) -> Result<()> {
    let mut last_failure = anyhow!("no endpoint was tried");
    for endpoint in &client.endpoints {
        match save_from(client, endpoint, prepare, path) {
            Ok(header) => {
                println!(
                    "saved {} ({} bytes of state at index {}, term {}, cluster {}) from {endpoint}",
                    path.display(),
                    header.data_bytes,
                    header.index.0,
                    header.term.0,
                    header.cluster_id
                );
                return Ok(());
            }
            Err(failure) => last_failure = failure,
        }
    }
    Err(last_failure.context("no endpoint served the backup"))
}

fn save_from(
    client: &Client,
    endpoint: &str,
    prepare: Duration,
    path: &Path,
) -> Result<BackupHeader> {
    let timeout = client.timeout;
    let mut stream = connect(endpoint, prepare.max(timeout), client.tls.as_ref())?;
    let header = match request(&mut stream, endpoint, &["RAFTKV.BACKUP"], prepare)? {
        Frame::Array(fields) => header_from(&fields)?,
        Frame::Error(message) => bail!("{endpoint} replied: {message}"),
        other => bail!("{endpoint} sent an unexpected RAFTKV.BACKUP reply: {other:?}"),
    };
    stream.set_timeouts(timeout)?;
    let partial = path.with_extension("partial");
    let file = File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let written = backup::write(&mut out, &header, |data| {
        copy_chunks(&mut stream, endpoint, header.data_bytes, timeout, data)
            .map_err(std::io::Error::other)
    })
    .and_then(|()| out.flush());
    let synced = written.and_then(|()| out.get_ref().sync_all());
    if let Err(failure) = synced {
        let _ = std::fs::remove_file(&partial); // what failed is reported below
        return Err(failure).with_context(|| format!("writing {}", partial.display()));
    }
    std::fs::rename(&partial, path)
        .with_context(|| format!("renaming {} to {}", partial.display(), path.display()))?;
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        File::open(dir)
            .and_then(|dir| dir.sync_all())
            .with_context(|| format!("syncing {}", dir.display()))?;
    }
    backup::check(path).context("reading the backup back")
}

/// `[index, term, cluster id, bytes]`.
fn header_from(fields: &[Frame]) -> Result<BackupHeader> {
    let numbers: Vec<u64> = fields
        .iter()
        .map(|field| match field {
            Frame::Integer(n) => u64::try_from(*n).map_err(|_| anyhow!("negative field {n}")),
            other => Err(anyhow!("unexpected field {other:?}")),
        })
        .collect::<Result<_>>()?;
    let [index, term, cluster_id, data_bytes] = numbers[..] else {
        bail!("RAFTKV.BACKUP answered {} fields, not 4", numbers.len());
    };
    let taken_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        });
    Ok(BackupHeader {
        cluster_id,
        index: LogIndex(index),
        term: Term(term),
        taken_at_ms,
        data_bytes,
    })
}

/// Reads the backup's bytes chunk by chunk into `out`; exactly `total` bytes.
fn copy_chunks(
    stream: &mut Stream,
    endpoint: &str,
    total: u64,
    timeout: Duration,
    out: &mut dyn Write,
) -> Result<()> {
    let mut offset = 0u64;
    // Bounded: every round moves `offset` forward by a non-empty chunk, up to `total`.
    while offset < total {
        let at = offset.to_string();
        match request(stream, endpoint, &["RAFTKV.BACKUPREAD", &at], timeout)? {
            Frame::Bulk(chunk) if !chunk.is_empty() => {
                out.write_all(&chunk)?;
                offset += chunk.len() as u64;
            }
            Frame::Bulk(_) => bail!("{endpoint} ended the backup at {offset} of {total} bytes"),
            Frame::Error(message) => bail!("{endpoint} replied: {message}"),
            other => bail!("{endpoint} sent an unexpected chunk: {other:?}"),
        }
    }
    if offset != total {
        bail!("{endpoint} sent {offset} bytes, {total} announced");
    }
    Ok(())
}
