//! raft-net: peer transport (under construction, issue 4).
