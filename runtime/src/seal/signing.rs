//! Ed25519 keys, domain-separated signatures and signed tree heads.
//!
//! # What is signed
//!
//! [`SigningKey::sign`] signs the bytes `domain || 0x00 || message`, where
//! `domain` is 1 to 128 printable ASCII characters (no space, no NUL), so the
//! first zero byte always ends the domain and a signature made for one
//! purpose (say a run head) can never be replayed as one for another (a tree
//! head). Verification uses ed25519 `verify_strict` (no small-order keys or
//! malleable signatures).
//!
//! A [`TreeHead`] is signed under [`TREE_HEAD_DOMAIN`] over its 48-byte
//! [`TreeHead::to_bytes`] encoding, so the exact signed bytes are
//!
//! ```text
//! "warden-tree-head-v1" || 0x00 || size (u64 big-endian) || root (32 bytes) || time_ms (u64 big-endian)
//! ```
//!
//! # Text forms
//!
//! * secret key file: `warden-signing-key-v1 <64 hex digits of the seed>\n`
//! * public key file: `warden-public-key-v1 <64 hex digits>\n`
//! * signed tree head, one line for a ticket:
//!   `warden-sth-v1 size=<n> root=<hex> time=<ms> key=<key id> sig=<hex>`
//!
//! Parse errors name what is wrong and never repeat secret material.

use std::fmt;
use std::hint::black_box;
use std::str::FromStr;

use ed25519_dalek::Signer as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _};
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::hex::{self, HexError};
use super::merkle::Hash;

/// Header of the secret key file format.
pub const SIGNING_KEY_HEADER: &str = "warden-signing-key-v1";
/// Header of the public key file format.
pub const PUBLIC_KEY_HEADER: &str = "warden-public-key-v1";
/// Header of the signed tree head text form.
pub const STH_HEADER: &str = "warden-sth-v1";
/// Signature domain for tree heads.
pub const TREE_HEAD_DOMAIN: &str = "warden-tree-head-v1";
/// Longest accepted signature domain, in bytes.
pub const MAX_DOMAIN_LEN: usize = 128;

/// Errors creating, reading or writing keys.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    /// The operating system could not supply randomness.
    #[error("could not read operating-system randomness: {0}")]
    Randomness(String),
    /// The key text is empty or only whitespace.
    #[error("key text is empty")]
    Empty,
    /// The text does not start with the expected header.
    #[error("key text does not start with `{expected}`")]
    WrongHeader {
        /// The header that was required.
        expected: &'static str,
    },
    /// The text is the other kind of key file.
    #[error("this is a `{found}` file, but a `{expected}` file is needed")]
    WrongKind {
        /// The header that was required.
        expected: &'static str,
        /// The (known) header that was found.
        found: &'static str,
    },
    /// The text is not `<header> <hex>` on one line.
    #[error("key text must be `<header> <hex>` on a single line")]
    Malformed,
    /// The key material is not the right amount of hex.
    #[error("key material: {0}")]
    Hex(#[from] HexError),
    /// The public key bytes are not a usable ed25519 point.
    #[error("public key is not a valid, non-weak ed25519 point")]
    InvalidPublicKey,
}

/// Errors signing a message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignError {
    /// The domain is empty, too long, or has a byte outside printable ASCII
    /// (`0x21..=0x7e`); a NUL in it would make domain separation ambiguous.
    #[error(
        "signature domain must be 1 to {MAX_DOMAIN_LEN} printable ASCII characters without spaces"
    )]
    InvalidDomain,
}

/// Errors parsing the one-line signed tree head text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SthParseError {
    /// The text does not start with `warden-sth-v1`.
    #[error("not a signed tree head: the text must start with `{STH_HEADER}`")]
    WrongHeader,
    /// A field is missing.
    #[error("field `{field}` is missing")]
    MissingField {
        /// The missing field's name.
        field: &'static str,
    },
    /// A different field (or a token without `=`) stands where `expected` should.
    #[error("expected field `{expected}=...` but found `{found}`")]
    UnexpectedField {
        /// The field that belongs at this position.
        expected: &'static str,
        /// What was there (at most 40 characters of it).
        found: String,
    },
    /// A field's value does not parse.
    #[error("field `{field}`: {reason}")]
    BadValue {
        /// The field's name.
        field: &'static str,
        /// Why the value was rejected.
        reason: String,
    },
    /// Something follows the `sig` field.
    #[error("unexpected text after the `sig` field")]
    TrailingData,
}

macro_rules! hex_bytes_type {
    ($name:ident, $len:expr, $what:literal) => {
        impl $name {
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            /// Lower-case hex.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(&self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        impl FromStr for $name {
            type Err = HexError;

            /// Parses exactly the right number of hex digits (either case).
            fn from_str(text: &str) -> Result<Self, HexError> {
                hex::decode_array(text).map(Self)
            }
        }

        /// Serialized as a lower-case hex string.
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.to_string())
            }
        }

        /// Deserialized from a hex string.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse()
                    .map_err(|e| D::Error::custom(format_args!(concat!($what, ": {}"), e)))
            }
        }
    };
}

/// An ed25519 public key (32 bytes). Hex in text and serde.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);
hex_bytes_type!(PublicKey, 32, "public key");

/// An ed25519 signature (64 bytes). Hex in text and serde.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);
hex_bytes_type!(Signature, 64, "signature");

/// A short key identifier: the first 8 bytes of SHA-256 of the public key.
/// Hex in text and serde.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 8]);
hex_bytes_type!(KeyId, 8, "key id");

impl PublicKey {
    /// The key's identifier, so an auditor can tell keys apart.
    pub fn key_id(&self) -> KeyId {
        let digest = Sha256::digest(self.0);
        let mut id = [0u8; 8];
        id.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
        KeyId(id)
    }

    /// `warden-public-key-v1 <hex>\n`.
    pub fn to_file_text(&self) -> String {
        format!("{PUBLIC_KEY_HEADER} {self}\n")
    }

    /// Parses [`Self::to_file_text`] output, rejecting invalid or weak points.
    pub fn from_file_text(text: &str) -> Result<Self, KeyError> {
        let bytes = parse_key_text::<32>(text, PUBLIC_KEY_HEADER, SIGNING_KEY_HEADER)?;
        match ed25519_dalek::VerifyingKey::from_bytes(&bytes) {
            Ok(key) if !key.is_weak() => Ok(Self(bytes)),
            _ => Err(KeyError::InvalidPublicKey),
        }
    }

    /// Same as the free function [`verify`].
    #[must_use]
    pub fn verify(&self, domain: &str, message: &[u8], signature: &Signature) -> bool {
        verify(self, domain, message, signature)
    }
}

/// Splits `<header> <hex>` and decodes the hex, never echoing the text.
fn parse_key_text<const N: usize>(
    text: &str,
    expected: &'static str,
    other: &'static str,
) -> Result<[u8; N], KeyError> {
    let text = text.trim_ascii();
    if text.is_empty() {
        return Err(KeyError::Empty);
    }
    let (header, material) = text.split_once(' ').unwrap_or((text, ""));
    if header == other {
        return Err(KeyError::WrongKind {
            expected,
            found: other,
        });
    }
    if header != expected {
        return Err(KeyError::WrongHeader { expected });
    }
    if material.is_empty() || material.contains(|c: char| c.is_ascii_whitespace()) {
        return Err(KeyError::Malformed);
    }
    Ok(hex::decode_array(material)?)
}

fn domain_is_valid(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= MAX_DOMAIN_LEN
        && domain.bytes().all(|b| b.is_ascii_graphic())
}

/// `domain || 0x00 || message`; the domain must already be valid.
fn domain_separated(domain: &str, message: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(domain.len() + 1 + message.len());
    bytes.extend_from_slice(domain.as_bytes());
    bytes.push(0x00);
    bytes.extend_from_slice(message);
    bytes
}

/// An ed25519 secret key. Its `Debug` output shows only the key id; the
/// underlying key is zeroed when dropped.
pub struct SigningKey {
    inner: ed25519_dalek::SigningKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id())
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl SigningKey {
    /// A new key from operating-system randomness.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Randomness(e.to_string()))?;
        let key = Self::from_seed(&seed);
        wipe(&mut seed);
        Ok(key)
    }

    /// The key for a 32-byte ed25519 seed (for keys generated elsewhere).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            inner: ed25519_dalek::SigningKey::from_bytes(seed),
        }
    }

    /// `warden-signing-key-v1 <hex seed>\n`. This is the secret: store it
    /// with owner-only permissions and drop the string promptly.
    pub fn to_file_text(&self) -> String {
        let mut seed = self.inner.to_bytes();
        let text = format!("{SIGNING_KEY_HEADER} {}\n", hex::encode(&seed));
        wipe(&mut seed);
        text
    }

    /// Parses [`Self::to_file_text`] output. Surrounding whitespace is
    /// ignored; errors never contain the key material.
    pub fn from_file_text(text: &str) -> Result<Self, KeyError> {
        let mut seed = parse_key_text::<32>(text, SIGNING_KEY_HEADER, PUBLIC_KEY_HEADER)?;
        let key = Self::from_seed(&seed);
        wipe(&mut seed);
        Ok(key)
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.inner.verifying_key().to_bytes())
    }

    /// The public key's [`KeyId`].
    pub fn key_id(&self) -> KeyId {
        self.public_key().key_id()
    }

    /// Signs `domain || 0x00 || message`. Fails only for an invalid domain
    /// (see [`SignError::InvalidDomain`]).
    pub fn sign(&self, domain: &str, message: &[u8]) -> Result<Signature, SignError> {
        if !domain_is_valid(domain) {
            return Err(SignError::InvalidDomain);
        }
        Ok(self.sign_valid_domain(domain, message))
    }

    fn sign_valid_domain(&self, domain: &str, message: &[u8]) -> Signature {
        let bytes = domain_separated(domain, message);
        Signature(self.inner.sign(&bytes).to_bytes())
    }

    /// Signs a tree head under [`TREE_HEAD_DOMAIN`].
    pub fn sign_tree_head(&self, head: TreeHead) -> SignedTreeHead {
        SignedTreeHead {
            head,
            key_id: self.key_id(),
            signature: self.sign_valid_domain(TREE_HEAD_DOMAIN, &head.to_bytes()),
        }
    }
}

/// Best-effort overwrite of a secret copy before it goes out of scope.
fn wipe(bytes: &mut [u8; 32]) {
    bytes.fill(0);
    black_box(bytes);
}

/// Whether `signature` is `public`'s strict ed25519 signature over
/// `domain || 0x00 || message`. `false` for an invalid domain or key.
#[must_use]
pub fn verify(public: &PublicKey, domain: &str, message: &[u8], signature: &Signature) -> bool {
    if !domain_is_valid(domain) {
        return false;
    }
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&public.0) else {
        return false;
    };
    let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
    key.verify_strict(&domain_separated(domain, message), &signature)
        .is_ok()
}

/// A journal's Merkle tree size and root at a moment in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeHead {
    /// Number of leaves.
    pub size: u64,
    /// RFC 9162 root of those leaves (hex in serde).
    #[serde(with = "super::hex::serde_array")]
    pub root: Hash,
    /// When the head was taken, in milliseconds since the Unix epoch.
    pub time_ms: u64,
}

impl TreeHead {
    /// Length of [`Self::to_bytes`].
    pub const ENCODED_LEN: usize = 48;

    /// The stable encoding that is signed (after the domain):
    /// `size` (u64 big-endian) `|| root || time_ms` (u64 big-endian).
    pub fn to_bytes(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        let (size, rest) = out.split_at_mut(8);
        let (root, time) = rest.split_at_mut(32);
        size.copy_from_slice(&self.size.to_be_bytes());
        root.copy_from_slice(&self.root);
        time.copy_from_slice(&self.time_ms.to_be_bytes());
        out
    }
}

/// A [`TreeHead`] signed by the key with id `key_id`.
///
/// `Display` and `FromStr` use the one-line form
/// `warden-sth-v1 size=<n> root=<hex> time=<ms> key=<key id> sig=<hex>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedTreeHead {
    /// The signed statement.
    pub head: TreeHead,
    /// Which key signed it.
    pub key_id: KeyId,
    /// Signature under [`TREE_HEAD_DOMAIN`] over [`TreeHead::to_bytes`].
    pub signature: Signature,
}

impl SignedTreeHead {
    /// Whether `public` is the key named by `key_id` and its signature over
    /// the head is valid.
    #[must_use]
    pub fn verify(&self, public: &PublicKey) -> bool {
        public.key_id() == self.key_id
            && verify(
                public,
                TREE_HEAD_DOMAIN,
                &self.head.to_bytes(),
                &self.signature,
            )
    }

    /// Why [`SignedTreeHead::verify`] refused it with `public`, in words that end a
    /// sentence like "the head is not signed by key K": another key's head, or a signature
    /// that does not check out under the key it names.
    #[must_use]
    pub fn why_unverified(&self, public: &PublicKey) -> String {
        if public.key_id() == self.key_id {
            format!(
                "its signature does not verify under key {}, the key it names: it was altered after signing, or forged",
                self.key_id
            )
        } else {
            format!(
                "it names key {}: signed by another deployment's key, or forged",
                self.key_id
            )
        }
    }
}

impl fmt::Display for SignedTreeHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{STH_HEADER} size={} root={} time={} key={} sig={}",
            self.head.size,
            hex::encode(&self.head.root),
            self.head.time_ms,
            self.key_id,
            self.signature
        )
    }
}

/// Reads the next `name=value` token of a signed tree head.
fn sth_field<'a>(
    tokens: &mut impl Iterator<Item = &'a str>,
    field: &'static str,
) -> Result<&'a str, SthParseError> {
    let token = tokens.next().ok_or(SthParseError::MissingField { field })?;
    match token.split_once('=') {
        Some((name, value)) if name == field => Ok(value),
        _ => Err(SthParseError::UnexpectedField {
            expected: field,
            found: token.chars().take(40).collect(),
        }),
    }
}

fn sth_number(value: &str, field: &'static str) -> Result<u64, SthParseError> {
    let bad = |reason: &str| SthParseError::BadValue {
        field,
        reason: reason.to_owned(),
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("not a decimal number"));
    }
    value
        .parse()
        .map_err(|_| bad("number too large for 64 bits"))
}

fn sth_hex<T: FromStr<Err = HexError>>(
    value: &str,
    field: &'static str,
) -> Result<T, SthParseError> {
    value
        .parse()
        .map_err(|e: HexError| SthParseError::BadValue {
            field,
            reason: e.to_string(),
        })
}

impl FromStr for SignedTreeHead {
    type Err = SthParseError;

    /// Parses the `Display` form; fields must appear in order, separated by
    /// whitespace; surrounding whitespace is ignored.
    fn from_str(text: &str) -> Result<Self, SthParseError> {
        let mut tokens = text.split_ascii_whitespace();
        if tokens.next() != Some(STH_HEADER) {
            return Err(SthParseError::WrongHeader);
        }
        let size = sth_number(sth_field(&mut tokens, "size")?, "size")?;
        let root: RootHex = sth_hex(sth_field(&mut tokens, "root")?, "root")?;
        let time_ms = sth_number(sth_field(&mut tokens, "time")?, "time")?;
        let key_id = sth_hex(sth_field(&mut tokens, "key")?, "key")?;
        let signature = sth_hex(sth_field(&mut tokens, "sig")?, "sig")?;
        if tokens.next().is_some() {
            return Err(SthParseError::TrailingData);
        }
        Ok(Self {
            head: TreeHead {
                size,
                root: root.0,
                time_ms,
            },
            key_id,
            signature,
        })
    }
}

/// A root hash parsed from hex (only used while parsing).
struct RootHex(Hash);

impl FromStr for RootHex {
    type Err = HexError;

    fn from_str(text: &str) -> Result<Self, HexError> {
        hex::decode_array(text).map(Self)
    }
}
