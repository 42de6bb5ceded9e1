//! Content addresses: the blake3 digests that name agents, policies, bindings, blobs,
//! memory pages and journal records.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The domain tags hashed before content, one per purpose, so that equal bytes used for
/// different purposes never share a digest. They are part of the journal format
/// (`docs/journal.md`): a tag never changes; a new layout gets a new tag.
pub mod domain {
    /// A journal record: `Record::digest`.
    pub const RECORD: &str = "warden-record-v1";
    /// A commit of records (journal format 6): `blake3(tag 0 varint(first index) row)`,
    /// the run's head after it.
    pub const COMMIT: &str = "warden-commit-v1";
    /// A 64 KiB page of guest memory.
    pub const PAGE: &str = "warden-page-v1";
    /// A stored blob: policy text, input.
    pub const BLOB: &str = "warden-blob-v1";
    /// An agent module as supplied.
    pub const AGENT: &str = "warden-agent-v1";
    /// A checkpoint (page list, globals and host counters).
    pub const CHECKPOINT: &str = "warden-checkpoint-v1";
    /// A policy's canonical form.
    pub const POLICY: &str = "warden-policy-v1";
    /// A policy's canonical form when it uses rules added since edition 1.
    pub const POLICY_V2: &str = "warden-policy-v2";
    /// A policy's canonical form when it declares an input contract (`[input] schema`).
    pub const POLICY_V3: &str = "warden-policy-v3";
    /// A policy's canonical form when it allows WASI guests (`[wasi] enabled = true`).
    pub const POLICY_V4: &str = "warden-policy-v4";
    /// A bindings file and the files it references. Its dotted spelling predates the
    /// others and is kept: it is hashed into every recorded run.
    pub const BINDINGS: &str = "warden.bindings.v1";
    /// The random part of a run id (not a content address).
    pub const RUN_ID: &str = "warden-run-id";
    /// The action a reviewer decides on: the escalated request, the inference it rested
    /// on and the checkpoint at the gate.
    pub const ACTION: &str = "warden-action-v1";
    /// The action of a run of edition 3 or later: its run id first, then as `ACTION`.
    pub const ACTION_V2: &str = "warden-action-v2";
}

/// A 32-byte blake3 digest. Displays as lowercase hex, and is hex text in JSON; in the
/// journal (postcard) it is its 32 bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(pub [u8; 32]);

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_newtype_struct("Digest", &self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            /// The binary form, as a derived newtype would read it.
            #[derive(Deserialize)]
            #[serde(rename = "Digest")]
            struct Bytes([u8; 32]);
            Bytes::deserialize(deserializer).map(|b| Digest(b.0))
        }
    }
}

impl Digest {
    /// The digest of nothing, used as the predecessor of a journal's first record.
    pub const ZERO: Digest = Digest([0; 32]);

    /// Digest of `bytes` under a domain tag, so that equal bytes used for different
    /// purposes never share a digest.
    pub fn of(domain: &str, bytes: &[u8]) -> Digest {
        let mut hasher = blake3::Hasher::new();
        hasher.update(domain.as_bytes());
        hasher.update(&[0]);
        hasher.update(bytes);
        Digest(*hasher.finalize().as_bytes())
    }

    /// The first 12 hex digits: enough for a person to tell digests apart on screen.
    pub fn short(&self) -> String {
        self.to_string()[..12].to_string()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// Why text is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestParseError {
    /// Not 64 characters long.
    #[error("a digest is 64 hex digits, got {0} characters")]
    Length(usize),
    /// A character that is not a hex digit, near this position.
    #[error("not a hex digit near position {0}")]
    NotHex(usize),
}

impl FromStr for Digest {
    type Err = DigestParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return Err(DigestParseError::Length(bytes.len()));
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks(2).enumerate() {
            let digit = |b: u8| {
                (b as char)
                    .to_digit(16)
                    .ok_or(DigestParseError::NotHex(2 * i))
            };
            out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
        }
        Ok(Digest(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_domains_separate() {
        let a = Digest::of("a", b"x");
        assert_eq!(a.to_string().parse::<Digest>(), Ok(a));
        assert_ne!(a, Digest::of("b", b"x"));
        assert!("zz".parse::<Digest>().is_err());
    }
}
