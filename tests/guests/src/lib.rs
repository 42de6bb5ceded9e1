//! Paths of the guest agents the tests run, built from source by `build.rs`.
//!
//! Hostile fixtures written in WAT live in `tests/hostile/` and are loaded as text.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// The directory of the WAT hostile fixtures.
pub const HOSTILE_WAT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../hostile");
