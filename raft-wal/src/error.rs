//! Errors of the write-ahead log.
//!
//! Every variant that concerns disk content names the file and, where it applies, the byte
//! offset, so an operator can look at the damage. Disk content never causes a panic: it is
//! untrusted input and every defect in it becomes one of these variants.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a WAL operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed while doing `action` on `path`.
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Content that was durable is damaged: never silently skipped.
    #[error("corrupt WAL file {path} at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: &'static str,
    },
    /// The directory was written by another, incompatible version of this crate.
    #[error(
        "WAL file {path} has format version {found}; this build reads only version {supported} \
         (migrate the directory or run a matching build)"
    )]
    UnsupportedVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    /// A record larger than the configured maximum was offered.
    #[error("record payload of {size_bytes} bytes exceeds the limit of {limit_bytes}")]
    RecordTooLarge { size_bytes: u64, limit_bytes: u64 },
    /// A configuration value is out of range.
    #[error("invalid WAL config: {field}: {reason}")]
    InvalidConfig {
        field: &'static str,
        reason: &'static str,
    },
    /// A snapshot or state value could not be encoded or decoded.
    #[error("cannot {action} {path}")]
    Encoding {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: postcard::Error,
    },
}

impl Error {
    /// Wraps an I/O error with what was being attempted on which path.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}
