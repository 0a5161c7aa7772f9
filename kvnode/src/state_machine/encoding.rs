//! The log-entry encoding of [`WriteCommand`]: compact, versioned, hand-rolled.
//!
//! ```text
//! entry   = version:u8 (=1) tag:u8 body
//! bytes   = len:u32le data[len]
//! Set     tag 1: flags:u8 key:bytes value:bytes
//!                flags bits 0-1 condition (0 always, 1 NX, 2 XX), bit 2 GET, others 0
//! GetSet  tag 2: key:bytes value:bytes
//! Del     tag 3: count:u32le key:bytes * count
//! IncrBy  tag 4: key:bytes delta:i64le
//! Append  tag 5: key:bytes value:bytes
//! MSet    tag 6: count:u32le (key:bytes value:bytes) * count
//! ```
//!
//! Version rule: a node refuses an entry whose version it does not know rather than
//! guess; a new version must be rolled out to every node before any leader proposes it.
//! Decoding never panics and never allocates for a count the input cannot hold.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use super::command::{SetCondition, WriteCommand};
use super::wire::{put_bytes, put_count, Reader, Truncated};

/// The encoding version this build writes and reads.
pub const ENTRY_VERSION: u8 = 1;

const TAG_SET: u8 = 1;
const TAG_GETSET: u8 = 2;
const TAG_DEL: u8 = 3;
const TAG_INCRBY: u8 = 4;
const TAG_APPEND: u8 = 5;
const TAG_MSET: u8 = 6;

const FLAG_NX: u8 = 1;
const FLAG_XX: u8 = 2;
const FLAG_GET: u8 = 4;

/// Bytes that are not a write command of a version this build knows.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("empty log entry")]
    Empty,
    #[error(
        "log entry version {version} is not supported (this build reads version {ENTRY_VERSION})"
    )]
    UnsupportedVersion { version: u8 },
    #[error("unknown command tag {tag}")]
    UnknownTag { tag: u8 },
    #[error("log entry truncated: {needed} bytes needed at offset {offset}")]
    Truncated { offset: usize, needed: usize },
    #[error("invalid SET flags {flags:#04x}")]
    InvalidFlags { flags: u8 },
    #[error("element count {count} cannot fit in the {remaining} bytes left")]
    CountTooLarge { count: u32, remaining: usize },
    #[error("member address at offset {offset} is not UTF-8 or is too long")]
    InvalidAddress { offset: usize },
    #[error("{count} unexpected bytes after the command")]
    TrailingBytes { count: usize },
}

impl From<Truncated> for DecodeError {
    fn from(truncated: Truncated) -> DecodeError {
        DecodeError::Truncated {
            offset: truncated.offset,
            needed: truncated.needed,
        }
    }
}

impl WriteCommand {
    /// The log-entry bytes for this command.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encode_size_hint());
        out.put_u8(ENTRY_VERSION);
        match self {
            WriteCommand::Set {
                key,
                value,
                condition,
                get,
            } => {
                out.put_u8(TAG_SET);
                out.put_u8(encode_set_flags(*condition, *get));
                put_bytes(&mut out, key);
                put_bytes(&mut out, value);
            }
            WriteCommand::GetSet { key, value } => {
                encode_key_value(&mut out, TAG_GETSET, key, value)
            }
            WriteCommand::Append { key, value } => {
                encode_key_value(&mut out, TAG_APPEND, key, value)
            }
            WriteCommand::Del { keys } => {
                out.put_u8(TAG_DEL);
                put_count(&mut out, keys.len());
                keys.iter().for_each(|key| put_bytes(&mut out, key));
            }
            WriteCommand::IncrBy { key, delta } => {
                out.put_u8(TAG_INCRBY);
                put_bytes(&mut out, key);
                out.put_i64_le(*delta);
            }
            WriteCommand::MSet { pairs } => {
                out.put_u8(TAG_MSET);
                put_count(&mut out, pairs.len());
                for (key, value) in pairs {
                    put_bytes(&mut out, key);
                    put_bytes(&mut out, value);
                }
            }
        }
        out.freeze()
    }

    fn encode_size_hint(&self) -> usize {
        let framed = |data: &Bytes| data.len() + 4;
        16 + match self {
            WriteCommand::Set { key, value, .. }
            | WriteCommand::GetSet { key, value }
            | WriteCommand::Append { key, value } => framed(key) + framed(value),
            WriteCommand::Del { keys } => keys.iter().map(framed).sum(),
            WriteCommand::IncrBy { key, .. } => framed(key),
            WriteCommand::MSet { pairs } => pairs.iter().map(|(k, v)| framed(k) + framed(v)).sum(),
        }
    }

    /// Decodes log-entry bytes written by [`WriteCommand::encode`].
    ///
    /// # Errors
    /// [`DecodeError`] saying what is wrong; never panics on any input.
    pub fn decode(bytes: &[u8]) -> Result<WriteCommand, DecodeError> {
        let mut reader = Reader::new(bytes);
        let version = reader.u8().map_err(|_| DecodeError::Empty)?;
        if version != ENTRY_VERSION {
            return Err(DecodeError::UnsupportedVersion { version });
        }
        let command = match reader.u8()? {
            TAG_SET => decode_set(&mut reader)?,
            TAG_GETSET => WriteCommand::GetSet {
                key: reader.bytes()?,
                value: reader.bytes()?,
            },
            TAG_DEL => {
                let count = decode_count(&mut reader, 4)?;
                let keys = (0..count)
                    .map(|_| reader.bytes())
                    .collect::<Result<_, _>>()?;
                WriteCommand::Del { keys }
            }
            TAG_INCRBY => WriteCommand::IncrBy {
                key: reader.bytes()?,
                delta: reader.i64()?,
            },
            TAG_APPEND => WriteCommand::Append {
                key: reader.bytes()?,
                value: reader.bytes()?,
            },
            TAG_MSET => {
                let count = decode_count(&mut reader, 8)?;
                let pairs = (0..count)
                    .map(|_| Ok((reader.bytes()?, reader.bytes()?)))
                    .collect::<Result<_, Truncated>>()?;
                WriteCommand::MSet { pairs }
            }
            tag => return Err(DecodeError::UnknownTag { tag }),
        };
        match reader.remaining() {
            0 => Ok(command),
            count => Err(DecodeError::TrailingBytes { count }),
        }
    }
}

fn encode_key_value(out: &mut BytesMut, tag: u8, key: &[u8], value: &[u8]) {
    out.put_u8(tag);
    put_bytes(out, key);
    put_bytes(out, value);
}

fn encode_set_flags(condition: SetCondition, get: bool) -> u8 {
    let condition = match condition {
        SetCondition::Always => 0,
        SetCondition::IfAbsent => FLAG_NX,
        SetCondition::IfPresent => FLAG_XX,
    };
    condition | if get { FLAG_GET } else { 0 }
}

fn decode_set(reader: &mut Reader<'_>) -> Result<WriteCommand, DecodeError> {
    let flags = reader.u8()?;
    let condition = match flags & (FLAG_NX | FLAG_XX) {
        0 => SetCondition::Always,
        FLAG_NX => SetCondition::IfAbsent,
        FLAG_XX => SetCondition::IfPresent,
        _ => return Err(DecodeError::InvalidFlags { flags }),
    };
    if flags & !(FLAG_NX | FLAG_XX | FLAG_GET) != 0 {
        return Err(DecodeError::InvalidFlags { flags });
    }
    let get = flags & FLAG_GET != 0;
    Ok(WriteCommand::Set {
        key: reader.bytes()?,
        value: reader.bytes()?,
        condition,
        get,
    })
}

/// Reads a count whose elements take at least `element_bytes_min` each, refusing one the
/// rest of the input cannot hold, so a forged count allocates nothing.
fn decode_count(reader: &mut Reader<'_>, element_bytes_min: usize) -> Result<usize, DecodeError> {
    let count = reader.u32()?;
    let remaining = reader.remaining();
    let count_usize = usize::try_from(count).expect("u32 fits in usize on supported targets");
    if count_usize > remaining / element_bytes_min {
        return Err(DecodeError::CountTooLarge { count, remaining });
    }
    Ok(count_usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    fn samples() -> Vec<WriteCommand> {
        vec![
            WriteCommand::Set {
                key: b("k"),
                value: b("v"),
                condition: SetCondition::Always,
                get: false,
            },
            WriteCommand::Set {
                key: b(""),
                value: b(""),
                condition: SetCondition::IfAbsent,
                get: true,
            },
            WriteCommand::Set {
                key: b("k"),
                value: b("v"),
                condition: SetCondition::IfPresent,
                get: false,
            },
            WriteCommand::GetSet {
                key: b("k"),
                value: b("\0\r\n"),
            },
            WriteCommand::Del { keys: vec![] },
            WriteCommand::Del {
                keys: vec![b("a"), b("b")],
            },
            WriteCommand::IncrBy {
                key: b("n"),
                delta: i64::MIN,
            },
            WriteCommand::Append {
                key: b("k"),
                value: b("tail"),
            },
            WriteCommand::MSet {
                pairs: vec![(b("a"), b("1")), (b("b"), b("2"))],
            },
        ]
    }

    #[test]
    fn every_command_round_trips() {
        for command in samples() {
            assert_eq!(WriteCommand::decode(&command.encode()), Ok(command.clone()));
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        for command in samples() {
            let bytes = command.encode();
            for cut in 0..bytes.len() {
                assert!(
                    WriteCommand::decode(&bytes[..cut]).is_err(),
                    "{command:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn malformed_entries_say_what_is_wrong() {
        let cases: &[(&[u8], DecodeError)] = &[
            (b"", DecodeError::Empty),
            (b"\x02\x01", DecodeError::UnsupportedVersion { version: 2 }),
            (b"\x01\x09", DecodeError::UnknownTag { tag: 9 }),
            (
                b"\x01",
                DecodeError::Truncated {
                    offset: 1,
                    needed: 1,
                },
            ),
            (b"\x01\x01\x03", DecodeError::InvalidFlags { flags: 3 }),
            (b"\x01\x01\x08", DecodeError::InvalidFlags { flags: 8 }),
            (
                b"\x01\x03\xff\xff\xff\xff",
                DecodeError::CountTooLarge {
                    count: u32::MAX,
                    remaining: 0,
                },
            ),
            (
                b"\x01\x06\x02\x00\x00\x00\x00\x00\x00\x00",
                DecodeError::CountTooLarge {
                    count: 2,
                    remaining: 4,
                },
            ),
            (
                b"\x01\x05\xff\xff\xff\xff",
                DecodeError::Truncated {
                    offset: 6,
                    needed: u32::MAX as usize,
                },
            ),
            (
                b"\x01\x03\x00\x00\x00\x00!",
                DecodeError::TrailingBytes { count: 1 },
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                WriteCommand::decode(bytes),
                Err(expected.clone()),
                "{bytes:?}"
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2_000))]
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = WriteCommand::decode(&bytes); // only the absence of a panic matters
        }
    }
}
