//! File names: a segment is named by its first index (20 decimal digits, so name order is
//! index order), a spare by a number (FORMAT.md, "Directory").

use raft_core::LogIndex;

/// Suffix of a spare file: a compacted segment kept for reuse, never part of the log.
pub const SPARE_SUFFIX: &str = ".spare";

const SEGMENT_SUFFIX: &str = ".seg";

/// The file name of the segment whose first record has `first_index`.
pub fn file_name(first_index: LogIndex) -> String {
    format!("{:020}{SEGMENT_SUFFIX}", first_index.0)
}

/// The first index a segment file name stands for, or `None` if it is not a segment name.
pub fn parse_file_name(name: &str) -> Option<LogIndex> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(LogIndex)
}

/// The file name of the `number`th spare this process made (numbered, not named by index:
/// after a reset to a lower index two spares could come from segments with one name).
pub fn spare_file_name(number: u64) -> String {
    format!("{number:020}{SPARE_SUFFIX}")
}
