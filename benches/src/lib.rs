//! Shared helpers for the criterion benches and the load tool.
