//! Warden: runs AI-agent logic compiled to WebAssembly under runtime enforcement.
//!
//! One module per concept of the vocabulary in `docs/design.md`: an [`agent`] is loaded
//! and refused any authority but the host-call import; a [`policy`] is the governance
//! contract and [`bindings`] provide its tools and models; a [`run`] executes the agent
//! [`step`] by step; every [`host_call`] and transition is decided by
//! [`decision::enforce`] and recorded in the [`journal`]; guest memory is captured in a
//! [`checkpoint`] at step boundaries so that a run can be [`replay`]ed, resumed or forked.

pub mod agent;
pub mod bindings;
pub mod checkpoint;
pub mod decision;
pub mod digest;
pub mod effects;
pub mod engine;
pub mod fork;
pub mod host_call;
pub mod journal;
pub mod manifest;
pub mod outcome;
pub mod policy;
pub mod replay;
pub mod run;
pub mod step;
pub mod timeline;

/// Shared by the property tests of every module.
#[cfg(test)]
pub(crate) mod test_support {
    /// The number of generated cases for a property: `default` in the normal test run,
    /// or `WARDEN_FUZZ_CASES` for the long job (`./x long`).
    pub fn cases(default: u32) -> u32 {
        std::env::var("WARDEN_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }
}
