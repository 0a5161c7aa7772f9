//! `chaos`: a Jepsen-style fault suite. Real kvnode processes, each in its own network
//! namespace, are driven by concurrent Redis-protocol clients while a seeded nemesis kills,
//! pauses, partitions, reconfigures, skews and slows them; afterwards the checkers judge what
//! the clients saw, and a report says what happened.

pub mod brute;
pub mod checker;
pub mod history;
pub mod linear;
