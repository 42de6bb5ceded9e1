//! `[wasi]`: whether the agent may be a WASI guest, a module built for `wasm32-wasip1`
//! that imports the WASI preview 1 functions Warden answers (`crate::wasi`): clocks and
//! randomness taken by the host and journaled, standard output and error as journaled
//! lines, nothing else (no files, no network, no environment).
//!
//! Governance, not operations: whether an agent may read a clock or draw random numbers
//! at all is the contract's to say, so it is part of the policy and of its hash. Off by
//! default, and a policy that does not turn it on hashes exactly as before `[wasi]`
//! existed.

use std::ops::Range;

use toml::de::DeTable;

use super::decode::{Located, boolean, unknown};
use super::diagnostic::{Problem, Report};

/// The fields of `[wasi]`.
const WASI: &[&str] = &["enabled"];

/// Reads the `[wasi]` table: `enabled`, which it must set.
pub(super) fn decode(
    report: &mut Report<'_>,
    table: &DeTable<'_>,
    span: Range<usize>,
) -> Option<Located<bool>> {
    let mut enabled = None;
    for (key, value) in table.iter() {
        match key.get_ref().as_ref() {
            "enabled" => enabled = boolean(report, "wasi.enabled", value),
            _ => unknown(report, key, "wasi", WASI),
        }
    }
    if !table.contains_key("enabled") {
        report.push(
            span,
            "wasi.enabled",
            Problem::Missing {
                expected: "enabled = true, to let WASI guests (wasm32-wasip1) run under this policy",
            },
        );
    }
    enabled
}
