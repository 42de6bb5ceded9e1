//! Tamper evidence that survives someone who can write the journal file: ed25519 keys
//! and domain-separated signatures ([`signing`]), and an append-only Merkle tree with the
//! structure and hashing of RFC 9162 ([`merkle`]), whose proofs an auditor checks with
//! nothing but hashes.

pub(crate) mod hex;
pub mod merkle;
pub mod signing;
