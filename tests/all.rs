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

mod aml_example;
mod attack_caches;
mod authoring;
mod batch;
mod bindings_paths;
mod c_guest;
mod chat_model;
mod check;
mod cli;
mod cli_small;
pub mod compat;
mod crash;
mod enforcement;
mod evidence;
mod evidence_attacks;
mod file_tools;
mod gates;
mod hostile;
mod hostile_agents;
mod http_tools;
mod input_contract;
mod insurance_example;
mod loan_example;
mod module_cache;
mod onnx_model;
mod otlp;
mod redteam;
mod replay;
mod report;
mod review;
mod secrets;
mod wasi;
