//! Generates the `State` enum of the policy this agent runs under
//! (`policies/loan-underwriting.toml`; the strict policy has the same states), so that a
//! state name the policy does not declare fails to compile.

fn main() {
    warden_guest_build::states("../../../policies/loan-underwriting.toml");
}
