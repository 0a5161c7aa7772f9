//! Request ids for the ReadIndex requests this node makes, unique across restarts.
//!
//! A leader's answer to a follower's forwarded read names the request by id. If ids
//! restarted at 1 with each process, an answer to a read asked before a restart could be
//! taken for a new read's (with an older read point: a stale read). So an id is an
//! *incarnation* in its high bits, counted up and synced in `data_dir/incarnation` before
//! the node asks anything, and a counter in its low bits; when the counter runs out the
//! node takes the next incarnation the same way.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Bits of an id that count reads within one incarnation (about 10^12).
const COUNTER_BITS: u32 = 40;
const COUNTER_MAX: u64 = (1 << COUNTER_BITS) - 1;
const FILE_NAME: &str = "incarnation";

pub struct ReadIds {
    path: PathBuf,
    incarnation: u64,
    /// The last counter value handed out in this incarnation.
    counter: u64,
}

impl ReadIds {
    /// Takes this process's incarnation: one more than the last one recorded in
    /// `data_dir`, durably recorded before it is used.
    ///
    /// # Errors
    /// The file cannot be read, parsed or written.
    pub fn open(data_dir: &Path) -> Result<ReadIds> {
        let path = data_dir.join(FILE_NAME);
        let last = match fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse::<u64>()
                .with_context(|| format!("{} does not hold a number", path.display()))?,
            Err(missing) if missing.kind() == std::io::ErrorKind::NotFound => 0,
            Err(failure) => {
                return Err(failure).with_context(|| format!("reading {}", path.display()))
            }
        };
        let mut ids = ReadIds {
            path,
            incarnation: last,
            counter: 0,
        };
        ids.next_incarnation()?;
        Ok(ids)
    }

    /// The next id.
    ///
    /// # Panics
    /// If a new incarnation cannot be recorded (the disk failed: fail-stop).
    pub fn next(&mut self) -> u64 {
        if self.counter == COUNTER_MAX {
            self.next_incarnation()
                .expect("recording a new read-id incarnation");
        }
        self.counter += 1;
        (self.incarnation << COUNTER_BITS) | self.counter
    }

    fn next_incarnation(&mut self) -> Result<()> {
        let next = self.incarnation + 1;
        assert!(
            next < 1 << (64 - COUNTER_BITS),
            "read-id incarnations exhausted"
        );
        let temporary = self.path.with_extension("tmp");
        let mut file = File::create(&temporary)
            .with_context(|| format!("creating {}", temporary.display()))?;
        writeln!(file, "{next}").with_context(|| format!("writing {}", temporary.display()))?;
        file.sync_all()
            .with_context(|| format!("syncing {}", temporary.display()))?;
        fs::rename(&temporary, &self.path)
            .with_context(|| format!("renaming to {}", self.path.display()))?;
        let dir = self.path.parent().expect("a file in a directory");
        File::open(dir)
            .and_then(|dir| dir.sync_all())
            .with_context(|| format!("syncing {}", dir.display()))?;
        self.incarnation = next;
        self.counter = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_a_restarted_node_never_repeat_those_of_its_earlier_lives() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut first = ReadIds::open(dir.path()).expect("open");
        let a: Vec<u64> = (0..3).map(|_| first.next()).collect();
        let mut second = ReadIds::open(dir.path()).expect("reopen");
        let b: Vec<u64> = (0..3).map(|_| second.next()).collect();
        assert!(a.iter().all(|id| !b.contains(id)), "{a:?} {b:?}");
        assert!(b[0] > a[2], "later lives count up");
        second.counter = COUNTER_MAX;
        let next = second.next();
        assert_eq!(
            next >> COUNTER_BITS,
            3,
            "a spent counter takes a new incarnation"
        );
        let third = ReadIds::open(dir.path()).expect("reopen");
        assert_eq!(third.incarnation, 4);
    }
}
