//! Lower-case hex encoding and strict fixed-length decoding.

use thiserror::Error;

/// Why a hex string could not be decoded into a fixed number of bytes.
///
/// The messages name lengths and positions only, never the offending text,
/// so decoding a secret key can never leak it into a log.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HexError {
    /// The text has the wrong number of characters.
    #[error("expected {expected} hex digits, found {found} characters")]
    WrongLength {
        /// How many hex digits were required (two per byte).
        expected: usize,
        /// How many characters the text had.
        found: usize,
    },
    /// A character is not one of `0-9`, `a-f`, `A-F`.
    #[error("character {position} (counting from 0) is not a hex digit")]
    NotHex {
        /// Zero-based character position of the first bad character.
        position: usize,
    },
}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Encodes bytes as lower-case hex.
pub(crate) fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes exactly `N` bytes from `2 * N` hex digits (either case).
pub(crate) fn decode_array<const N: usize>(text: &str) -> Result<[u8; N], HexError> {
    let found = text.chars().count();
    if found != 2 * N {
        return Err(HexError::WrongLength {
            expected: 2 * N,
            found,
        });
    }
    if let Some(position) = text.chars().position(|c| !c.is_ascii_hexdigit()) {
        return Err(HexError::NotHex { position });
    }
    // From here on the text is exactly 2 * N ASCII hex digits.
    let mut out = [0u8; N];
    for (i, (slot, pair)) in out
        .iter_mut()
        .zip(text.as_bytes().chunks_exact(2))
        .enumerate()
    {
        let (hi, lo) = match pair {
            [h, l] => (*h, *l),
            _ => return Err(HexError::NotHex { position: 2 * i }),
        };
        let hi = nibble(hi).ok_or(HexError::NotHex { position: 2 * i })?;
        let lo = nibble(lo).ok_or(HexError::NotHex {
            position: 2 * i + 1,
        })?;
        *slot = (hi << 4) | lo;
    }
    Ok(out)
}

/// `#[serde(with = ...)]` helper: a byte array as a hex string.
pub(crate) mod serde_array {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    /// Serializes a byte array as a lower-case hex string.
    pub(crate) fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::encode(bytes))
    }

    /// Deserializes a byte array from a hex string of exactly `2 * N` digits.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        deserializer: D,
    ) -> Result<[u8; N], D::Error> {
        let text = String::deserialize(deserializer)?;
        super::decode_array(&text).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let bytes = [0x00, 0x1f, 0xa0, 0xff];
        assert_eq!(encode(&bytes), "001fa0ff");
        assert_eq!(decode_array::<4>("001fa0ff"), Ok(bytes));
        assert_eq!(decode_array::<4>("001FA0FF"), Ok(bytes));
        assert_eq!(
            decode_array::<4>("001fa0f"),
            Err(HexError::WrongLength {
                expected: 8,
                found: 7
            })
        );
        assert_eq!(
            decode_array::<4>("001fa0fg"),
            Err(HexError::NotHex { position: 7 })
        );
        assert_eq!(
            decode_array::<2>("0é1"),
            Err(HexError::WrongLength {
                expected: 4,
                found: 3
            })
        );
        assert_eq!(
            decode_array::<2>("0é12"),
            Err(HexError::NotHex { position: 1 })
        );
        assert_eq!(decode_array::<0>(""), Ok([]));
    }
}
