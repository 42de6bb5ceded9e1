//! Generates the `State` enum of the policy this agent runs under
//! (`policies/aml-triage.toml`), so that a state name the policy does not declare fails
//! to compile, and so does a `match` that forgets one.

fn main() {
    warden_guest_build::states("../../../policies/aml-triage.toml");
}
