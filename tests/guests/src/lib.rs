//! Paths of the guest agents the tests run, built from source by `build.rs`.
//!
//! Hostile fixtures written in WAT live in `tests/hostile/` and are loaded as text.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// The directory of the WAT hostile fixtures.
pub const HOSTILE_WAT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../hostile");

/// The directory of the hostile C fixtures (`tests/guests/c/hostile/NAME.c`, built as the
/// C guest `hostile/NAME`).
pub const HOSTILE_C_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/c/hostile");

/// The module of the C guest `name`, built by `build.rs` with clang: `claims_triage`
/// (`guest-sdk-c/examples/claims-triage`), a test agent of `tests/guests/c/` by its file
/// name (`counter`), or `hostile/NAME`. Panics, saying how to install clang and lld, if
/// they were missing when the guests were built.
pub fn c_guest(name: &str) -> &'static str {
    match C_GUESTS {
        Ok(guests) => guests
            .iter()
            .find(|(guest, _)| *guest == name)
            .map(|(_, module)| *module)
            .unwrap_or_else(|| panic!("there is no C guest `{name}` (tests/guests/build_c.rs)")),
        Err(why) => panic!("{why}"),
    }
}
