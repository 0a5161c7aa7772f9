//! The baseline the WAL is compared with: a plain file, preallocated as the WAL's segments
//! are, written with `pwrite` and synced with `fdatasync`.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Creates (or truncates) `path` and preallocates `bytes` of it, so that the raw loop pays
/// no block allocation the WAL does not pay either.
///
/// # Panics
/// If the file cannot be created or preallocated (a bench has nothing to measure then).
pub fn preallocated(path: &Path, bytes: u64) -> File {
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    preallocate(&file, bytes).unwrap_or_else(|e| panic!("preallocate {}: {e}", path.display()));
    file
}

/// Preallocates the first `bytes` of `file` (`posix_fallocate`: unwritten extents, as a
/// WAL segment has), so later writes allocate no blocks.
///
/// # Errors
/// The system call's error, e.g. `ENOSPC`.
pub fn preallocate(file: &File, bytes: u64) -> std::io::Result<()> {
    let length = libc::off_t::try_from(bytes)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: a plain system call on a descriptor the caller owns.
    let code = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, length) };
    if code == 0 {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(code))
    }
}
