//! raft-wal: segmented, memory-mapped, checksummed write-ahead log (under construction, issue 3).
