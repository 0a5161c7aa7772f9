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
    let length = libc::off_t::try_from(bytes).expect("preallocation fits in off_t");
    // SAFETY: a plain system call on a descriptor this function owns.
    let code = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, length) };
    assert_eq!(code, 0, "posix_fallocate {}", path.display());
    file
}
