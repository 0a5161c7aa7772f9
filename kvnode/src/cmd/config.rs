//! CONFIG GET and CONFIG SET: the parameters test harnesses and tools read.
//!
//! CONFIG GET takes names or glob patterns (case-insensitive, as Redis matches them) and
//! answers the parameters raftkv can state truthfully: no RDB saving and no AOF (the Raft
//! log is the persistence), no eviction, no idle timeout, the database count, the client
//! port, the data directory, the connection cap and the largest bulk string. Any other
//! name matches nothing (an empty reply, as Redis gives for an unknown name).
//!
//! CONFIG SET accepts a parameter set to the value it already has (a harness that sends
//! `CONFIG SET save ""` or `appendonly no` gets OK: nothing changes); raftkv is configured
//! at start-up, so any other value is refused with Redis' wording, and an unknown name
//! too.

use bytes::Bytes;

use super::args::{is, Context};
use super::error::CommandError;
use super::local::LocalCommand;
use super::Command;
use crate::state_machine::glob::glob_match;

/// What CONFIG answers with, filled in by the connection (the server's settings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigValues {
    pub port: u16,
    pub dir: String,
    pub databases: u32,
    pub maxclients: usize,
    pub proto_max_bulk_len: usize,
}

impl ConfigValues {
    /// Every parameter, by Redis name, with its value.
    fn parameters(&self) -> [(&'static str, String); 14] {
        [
            ("save", String::new()),
            ("appendonly", "no".into()),
            ("databases", self.databases.to_string()),
            ("port", self.port.to_string()),
            ("dir", self.dir.clone()),
            ("timeout", "0".into()),
            ("maxmemory", "0".into()),
            ("maxmemory-policy", "noeviction".into()),
            ("maxclients", self.maxclients.to_string()),
            ("proto-max-bulk-len", self.proto_max_bulk_len.to_string()),
            ("cluster-enabled", "no".into()),
            ("daemonize", "no".into()),
            ("protected-mode", "no".into()),
            // No keyspace notifications are published.
            ("notify-keyspace-events", String::new()),
        ]
    }
}

/// A CONFIG request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigCommand {
    Get { patterns: Vec<Bytes> },
    Set { pairs: Vec<(Bytes, Bytes)> },
}

/// `CONFIG GET pattern ...` or `CONFIG SET parameter value ...`; other subcommands are
/// refused as Redis refuses an unknown one.
pub(super) fn parse_config(args: &[Bytes], _: &Context<'_>) -> Result<Command, CommandError> {
    let (sub, rest) = args
        .split_first()
        .ok_or(CommandError::WrongArity { command: "config" })?;
    let config = if is(sub, "GET") {
        if rest.is_empty() {
            return Err(CommandError::WrongArity {
                command: "config|get",
            });
        }
        ConfigCommand::Get {
            patterns: rest.to_vec(),
        }
    } else if is(sub, "SET") {
        if rest.is_empty() || rest.len() % 2 != 0 {
            return Err(CommandError::WrongArity {
                command: "config|set",
            });
        }
        let pairs = rest
            .chunks_exact(2)
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .collect();
        ConfigCommand::Set { pairs }
    } else {
        return Err(CommandError::UnknownSubcommand {
            command: "CONFIG",
            subcommand: sub.clone(),
        });
    };
    Ok(Command::Local(LocalCommand::Config(config)))
}

/// CONFIG GET's map or CONFIG SET's OK or error.
///
/// # Errors
/// CONFIG SET of an unknown parameter, or of a value other than the current one.
pub fn config_reply(
    config: &ConfigCommand,
    values: &ConfigValues,
) -> Result<Vec<(&'static str, String)>, CommandError> {
    let parameters = values.parameters();
    match config {
        ConfigCommand::Get { patterns } => Ok(parameters
            .into_iter()
            .filter(|(name, _)| {
                patterns
                    .iter()
                    .any(|pattern| glob_match(&pattern.to_ascii_lowercase(), name.as_bytes()))
            })
            .collect()),
        ConfigCommand::Set { pairs } => {
            for (name, value) in pairs {
                let Some((known, current)) = parameters.iter().find(|(known, _)| is(name, known))
                else {
                    return Err(CommandError::ConfigSetUnknown { name: name.clone() });
                };
                if value.as_ref() != current.as_bytes() {
                    return Err(CommandError::ConfigSetFixed { name: known });
                }
            }
            Ok(Vec::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> ConfigValues {
        ConfigValues {
            port: 6379,
            dir: "/data".into(),
            databases: 16,
            maxclients: 10_000,
            proto_max_bulk_len: 512,
        }
    }

    fn get(patterns: &[&str]) -> Vec<&'static str> {
        let patterns = patterns
            .iter()
            .map(|pattern| Bytes::copy_from_slice(pattern.as_bytes()))
            .collect();
        config_reply(&ConfigCommand::Get { patterns }, &values())
            .expect("GET never fails")
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }

    #[test]
    fn get_matches_names_and_globs_in_any_case() {
        assert_eq!(get(&["SAVE", "nosuch"]), ["save"]);
        assert_eq!(get(&["maxmemory*"]), ["maxmemory", "maxmemory-policy"]);
        assert_eq!(get(&["*"]).len(), values().parameters().len());
        assert!(get(&["nosuch*"]).is_empty());
    }

    #[test]
    fn set_accepts_only_the_current_value() {
        let set = |name: &str, value: &str| {
            let pairs = vec![(
                Bytes::copy_from_slice(name.as_bytes()),
                Bytes::copy_from_slice(value.as_bytes()),
            )];
            config_reply(&ConfigCommand::Set { pairs }, &values()).map(|_| ())
        };
        assert_eq!(set("save", ""), Ok(()));
        assert_eq!(set("APPENDONLY", "no"), Ok(()));
        assert_eq!(
            set("appendonly", "yes"),
            Err(CommandError::ConfigSetFixed { name: "appendonly" })
        );
        assert_eq!(
            set("foo", "bar"),
            Err(CommandError::ConfigSetUnknown {
                name: Bytes::from_static(b"foo")
            })
        );
    }
}
