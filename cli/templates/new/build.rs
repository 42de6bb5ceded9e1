//! Generates the `State` enum of `policy.toml` (`$OUT_DIR/states.rs`, included by
//! `src/lib.rs`): one variant per state, so that a state name the policy does not declare
//! fails to compile, and cargo regenerates it when the policy changes.

fn main() {
    warden_guest_build::states("policy.toml");
}
