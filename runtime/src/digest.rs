//! Content addresses: the blake3 digests that name agents, policies, bindings, blobs,
//! memory pages and journal records.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A 32-byte blake3 digest. Displays as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Digest(pub [u8; 32]);

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

impl FromStr for Digest {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return Err(format!("a digest is 64 hex digits, got {}", bytes.len()));
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks(2).enumerate() {
            let text = std::str::from_utf8(pair).map_err(|e| e.to_string())?;
            out[i] = u8::from_str_radix(text, 16).map_err(|_| format!("not hex: {text:?}"))?;
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
