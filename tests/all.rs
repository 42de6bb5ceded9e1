//! Warden's end-to-end tests, in one test binary (so wasmtime is linked once): they drive
//! real guests, built from source by `tests/guests`, through the `warden` library and the
//! real `warden` binary, against real redb files in temporary directories.
//!
//! `cargo test -p warden-cli --test all` runs them; `./x test` runs them with the rest.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot set itself up should stop at once, saying where"
)]

mod support;

mod authoring;
mod batch;
mod bindings_paths;
mod check;
mod cli;
mod cli_small;
pub mod compat;
mod crash;
mod enforcement;
mod evidence;
mod evidence_attacks;
mod gates;
mod hostile;
mod hostile_agents;
mod input_contract;
mod loan_example;
mod module_cache;
mod redteam;
mod replay;
mod report;
mod review;
mod secrets;
