//! kvnode: the replicated key-value server (under construction, issue 5).
