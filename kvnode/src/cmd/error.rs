//! Command errors, each worded exactly as Redis words it (where Redis has the case).
//!
//! `Display` is the whole reply line without the leading `-`; [`crate::error::error_reply`]
//! is the one place these become frames.

use bytes::Bytes;
use thiserror::Error;

/// A well-formed request that is not a command this server will run.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CommandError {
    #[error(
        "ERR unknown command '{}', with args beginning with: {}",
        quote_name(name),
        quote_args(args)
    )]
    UnknownCommand { name: Bytes, args: Vec<Bytes> },
    #[error(
        "ERR unknown subcommand '{}'. Try {command} HELP.",
        quote_name(subcommand)
    )]
    UnknownSubcommand {
        command: &'static str,
        subcommand: Bytes,
    },
    /// `command` is Redis' lower-case full name, e.g. `get` or `client|setname`.
    #[error("ERR wrong number of arguments for '{command}' command")]
    WrongArity { command: &'static str },
    #[error("ERR syntax error")]
    Syntax,
    #[error("ERR value is not an integer or out of range")]
    NotInteger,
    #[error("ERR increment or decrement would overflow")]
    IncrementOverflow,
    #[error("ERR decrement would overflow")]
    DecrementOverflow,
    /// APPEND would make a value longer than the state machine's fixed cap.
    #[error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")]
    StringTooLong,
    #[error("ERR invalid cursor")]
    InvalidCursor,
    #[error("ERR DB index is out of range")]
    DbIndexOutOfRange,
    #[error("ERR invalid expire time in '{command}' command")]
    InvalidExpireTime { command: &'static str },
    #[error("ERR NX and XX, GT or LT options at the same time are not compatible")]
    ExpireNxAndOthers,
    #[error("ERR GT and LT options at the same time are not compatible")]
    ExpireGtAndLt,
    #[error("ERR Unsupported option {}", quote_name(option))]
    UnsupportedOption { option: Bytes },
    #[error("ERR no such key")]
    NoSuchKey,
    #[error("ERR source and destination objects are the same")]
    SameObject,
    #[error("ERR offset is out of range")]
    OffsetOutOfRange,
    #[error("ERR value is not a valid float")]
    NotFloat,
    #[error("ERR increment would produce NaN or Infinity")]
    FloatNanOrInfinity,
    #[error("ERR invalid first DB index")]
    InvalidFirstDb,
    #[error("ERR invalid second DB index")]
    InvalidSecondDb,
    #[error("ERR MULTI calls can not be nested")]
    NestedMulti,
    #[error("ERR EXEC without MULTI")]
    ExecWithoutMulti,
    #[error("ERR DISCARD without MULTI")]
    DiscardWithoutMulti,
    #[error("ERR WATCH inside MULTI is not allowed")]
    WatchInsideMulti,
    #[error("EXECABORT Transaction discarded because of previous errors.")]
    ExecAbort,
    /// A command Redis runs in a transaction that raftkv cannot put in one log entry
    /// (connection state, cluster administration).
    #[error("ERR Command not allowed inside a transaction")]
    NotAllowedInTransaction,
    /// Queuing this command would make the transaction's log entry larger than the
    /// largest entry; the transaction is discarded at EXEC (EXECABORT).
    #[error("ERR transaction too large: its log entry would exceed {max} bytes (entry_bytes_max); the transaction will be discarded")]
    TransactionTooLarge { max: usize },
    #[error("ERR key is {len} bytes, over the {max}-byte limit")]
    KeyTooLarge { len: usize, max: usize },
    #[error("ERR value is {len} bytes, over the {max}-byte limit")]
    ValueTooLarge { len: usize, max: usize },
    #[error("NOPROTO unsupported protocol version")]
    UnsupportedProtocol,
    #[error("ERR Protocol version is not an integer or out of range")]
    ProtocolVersionNotInteger,
    #[error("WRONGPASS invalid username-password pair or user is disabled.")]
    WrongPass,
    #[error("NOAUTH Authentication required.")]
    NoAuth,
    #[error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")]
    AuthNotConfigured,
    #[error("ERR Client names cannot contain spaces, newlines or special characters.")]
    InvalidClientName,
    #[error("ERR client-id should be greater than 0")]
    ClientIdNotPositive,
    #[error("ERR Invalid client ID")]
    InvalidClientId,
    #[error("ERR Unknown client type '{}'", quote_name(name))]
    UnknownClientType { name: Bytes },
    #[error("ERR No such user '{}'", quote_name(name))]
    NoSuchUser { name: Bytes },
    #[error("ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.")]
    ObjectFreqNotTracked,
    /// raftkv's own: reads are not replicated, so no node knows a key's last access.
    #[error("ERR idle time is not tracked: raftkv's reads do not touch the replicated state")]
    ObjectIdleTimeNotTracked,
    #[error("ERR No such client")]
    NoSuchClient,
    #[error("ERR Syntax error in HELLO option '{}'", quote_name(option))]
    HelloSyntax { option: Bytes },
    #[error("ERR Unrecognized option '{}'", quote_name(option))]
    UnrecognizedOption { option: Bytes },
    #[error(
        "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
        quote_name(name)
    )]
    ConfigSetUnknown { name: Bytes },
    /// A value other than the current one: raftkv is configured at start-up.
    #[error("ERR CONFIG SET failed (possibly related to argument '{name}') - raftkv is configured at start-up; only the current value is accepted")]
    ConfigSetFixed { name: &'static str },
    #[error(
        "ERR invalid node id '{}': expected an integer from 1 to 18446744073709551615",
        quote_name(text)
    )]
    InvalidNodeId { text: Bytes },
    #[error("ERR invalid address '{}': expected host:port", quote_name(text))]
    InvalidAddress { text: Bytes },
    #[error(
        "NOPERM User {} has no permissions to run the '{command}' command",
        quote_name(user)
    )]
    NoPermCommand { user: Bytes, command: String },
    #[error("NOPERM No permissions to access a key")]
    NoPermKey,
    /// A queued command its user may no longer run when EXEC runs (Redis' wording; the
    /// reason is the NOPERM text without its code).
    #[error("NOPERM ACLs rules changed between the moment the transaction was accumulated and its execution. This command is no longer allowed for the following reason: {}", reason.strip_prefix("NOPERM ").unwrap_or(reason))]
    NoPermChanged { reason: String },
    #[error(
        "ERR Error in ACL SETUSER modifier '{}': {reason}",
        quote_name(modifier)
    )]
    AclSetUser { modifier: Bytes, reason: String },
    #[error("ERR Usernames can't contain spaces or null characters")]
    AclBadUsername,
    #[error("ERR user names are limited to {max} bytes")]
    AclNameTooLong { max: usize },
    #[error("ERR too many ACL users (at most {max})")]
    AclTooManyUsers { max: usize },
    #[error("ERR The 'default' user cannot be removed")]
    AclDeleteDefault,
    #[error("ERR Unknown category '{}'", quote_name(name))]
    AclUnknownCategory { name: Bytes },
    /// A committed entry this build cannot decode (a bug or a version mismatch).
    #[error("ERR internal: {reason}")]
    Internal { reason: String },
}

/// Redis prints at most 128 bytes of a name (`%.128s`).
fn quote_name(name: &[u8]) -> String {
    String::from_utf8_lossy(&name[..name.len().min(128)]).into_owned()
}

/// Redis' "args beginning with" list: `'a' 'b' `, stopping once 128 bytes are written and
/// cutting the last argument to fit.
fn quote_args(args: &[Bytes]) -> String {
    let mut out: Vec<u8> = Vec::new();
    for arg in args {
        if out.len() >= 128 {
            break;
        }
        let room = 128 - out.len();
        out.push(b'\'');
        out.extend_from_slice(&arg[..arg.len().min(room)]);
        out.extend_from_slice(b"' ");
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_command_lists_arguments_like_redis() {
        let cases: &[(&str, &[&str], &str)] = &[
            (
                "foo",
                &[],
                "ERR unknown command 'foo', with args beginning with: ",
            ),
            (
                "foo",
                &["a", "b"],
                "ERR unknown command 'foo', with args beginning with: 'a' 'b' ",
            ),
        ];
        for (name, args, expected) in cases {
            let error = CommandError::UnknownCommand {
                name: Bytes::copy_from_slice(name.as_bytes()),
                args: args
                    .iter()
                    .map(|a| Bytes::copy_from_slice(a.as_bytes()))
                    .collect(),
            };
            assert_eq!(error.to_string(), *expected);
        }
    }

    #[test]
    fn unknown_command_truncates_long_arguments_at_128_bytes() {
        let long = Bytes::from(vec![b'x'; 300]);
        let error = CommandError::UnknownCommand {
            name: long.clone(),
            args: vec![long.clone(), long],
        };
        let text = error.to_string();
        let expected_args = format!("'{}' ", "x".repeat(128));
        assert_eq!(
            text,
            format!(
                "ERR unknown command '{}', with args beginning with: {expected_args}",
                "x".repeat(128)
            )
        );
    }
}
