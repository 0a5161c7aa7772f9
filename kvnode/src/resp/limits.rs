//! Every cap the RESP decoder enforces, in one place.

use thiserror::Error;

/// Caps checked before anything is allocated for a frame.
///
/// The defaults follow Redis where Redis has a number (512 MiB `proto-max-bulk-len`,
/// 64 KiB inline requests, 1 GiB `client-query-buffer-limit`); the server sets lower ones
/// from its configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest `$n` bulk payload accepted, in bytes.
    pub bulk_bytes_max: usize,
    /// Largest `*n` (or `%n` pairs times two) element count accepted.
    pub array_elements_max: usize,
    /// Longest inline command line, and longest `*n`/`$n` header line, in bytes.
    pub inline_bytes_max: usize,
    /// Deepest nesting of aggregates. A client command is a flat array, so the request
    /// decoder needs none; this applies to the general decoder (replies).
    pub nesting_depth_max: usize,
    /// Largest whole frame, in bytes, counted from the declared lengths so a frame that
    /// would exceed it is refused before its payload arrives.
    pub frame_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            bulk_bytes_max: 512 * 1024 * 1024,
            // Far more than any real command needs (MSET of 32k pairs), and small enough
            // that a hostile `*1048576` is refused on sight.
            array_elements_max: 64 * 1024,
            inline_bytes_max: 64 * 1024,
            nesting_depth_max: 32,
            frame_bytes_max: 1024 * 1024 * 1024,
        }
    }
}

/// A [`Limits`] value that cannot work.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LimitsError {
    /// A cap is zero, which would refuse every frame.
    #[error("limit `{name}` must be greater than zero")]
    Zero { name: &'static str },
    /// The whole-frame cap is smaller than one maximal bulk plus its header.
    #[error("frame_bytes_max ({frame_bytes_max}) must be at least bulk_bytes_max ({bulk_bytes_max}) plus 64 bytes of headers")]
    FrameSmallerThanBulk {
        frame_bytes_max: usize,
        bulk_bytes_max: usize,
    },
}

impl Limits {
    /// Checks the caps fit together; called by the server at start-up.
    ///
    /// # Errors
    /// [`LimitsError`] naming the offending cap.
    pub fn validate(&self) -> Result<(), LimitsError> {
        let caps = [
            ("bulk_bytes_max", self.bulk_bytes_max),
            ("array_elements_max", self.array_elements_max),
            ("inline_bytes_max", self.inline_bytes_max),
            ("nesting_depth_max", self.nesting_depth_max),
            ("frame_bytes_max", self.frame_bytes_max),
        ];
        if let Some((name, _)) = caps.iter().find(|(_, value)| *value == 0) {
            return Err(LimitsError::Zero { name });
        }
        if self.frame_bytes_max < self.bulk_bytes_max.saturating_add(64) {
            return Err(LimitsError::FrameSmallerThanBulk {
                frame_bytes_max: self.frame_bytes_max,
                bulk_bytes_max: self.bulk_bytes_max,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits_are_valid() {
        assert_eq!(Limits::default().validate(), Ok(()));
    }

    #[test]
    fn validate_rejects_unworkable_limits() {
        let cases = [
            (
                Limits {
                    bulk_bytes_max: 0,
                    ..Limits::default()
                },
                LimitsError::Zero {
                    name: "bulk_bytes_max",
                },
            ),
            (
                Limits {
                    nesting_depth_max: 0,
                    ..Limits::default()
                },
                LimitsError::Zero {
                    name: "nesting_depth_max",
                },
            ),
            (
                Limits {
                    frame_bytes_max: 1000,
                    bulk_bytes_max: 1000,
                    ..Limits::default()
                },
                LimitsError::FrameSmallerThanBulk {
                    frame_bytes_max: 1000,
                    bulk_bytes_max: 1000,
                },
            ),
        ];
        for (limits, expected) in cases {
            assert_eq!(limits.validate(), Err(expected), "{limits:?}");
        }
    }
}
