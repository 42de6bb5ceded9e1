//! Warden: runs AI-agent logic compiled to WebAssembly under runtime enforcement.
//!
//! An agent (a Wasm module built against `warden-guest`) runs under a [`Policy`] (the
//! governance contract) with [`Bindings`] (how the policy's tools and models are provided
//! here). Every host call and transition is decided by one enforcement function and
//! recorded in a hash-chained [`Journal`]; guest memory is checkpointed at step
//! boundaries, so any run can be [`replay`]ed bit for bit, [`resume`]d after a crash, or
//! [`fork`]ed from a checkpoint. `docs/design.md` maps each module to the invariant it
//! upholds; `docs/journal.md` documents the file format.
//!
//! # Embedding
//!
//! ```no_run
//! use warden::{Journal, ReplayOptions, RunSpec, InputSource};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let journal = Journal::open("warden.redb".as_ref())?;
//! // An example directory names its agent, policy, bindings and default input.
//! let spec = RunSpec {
//!     target: "examples/loan-underwriting".into(),
//!     input: Some(InputSource::Text(r#"{"applicant_id": "A-1001"}"#.into())),
//!     ..RunSpec::default()
//! };
//! let report = warden::start(&journal, &spec.resolve()?)?;
//! println!("{} ended {} in {}", report.run_id, report.outcome.status, report.outcome.state);
//! let replayed = warden::replay(&journal, &report.run_id, &ReplayOptions::default())?;
//! assert!(replayed.verdict.confirms());
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod agent;
mod analysis;
mod batch;
mod bindings;
mod check;
mod checkpoint;
mod confine;
mod decision;
mod digest;
mod driver;
mod edition;
mod effects;
mod engine;
mod error;
mod fork;
mod host_call;
mod identity;
mod input_contract;
mod journal;
mod manifest;
mod module_cache;
mod outcome;
mod policy;
mod provenance;
mod recording;
mod replay;
mod resolve;
mod resume;
mod review;
mod run;
pub mod seal;
mod step;
mod stored_run;
mod timeline;
mod wasi;

#[cfg(test)]
mod architecture;
#[cfg(feature = "bench")]
#[doc(hidden)]
pub mod internals;

pub use agent::{Agent, LoadError, WASI_FUNCTIONS, WASI_MODULE, WasiImports};
pub use analysis::{ColumnType, RUN_ROW_COLUMNS, RunRow};
pub use batch::{BatchAction, BatchInput, BatchLine, batch, default_workers};
pub use bindings::{
    BindingEntry, Bindings, BindingsError, BindingsInspection, CardNameMismatch, EntryOutside,
    LedgerMode, LoadOptions, ModelCard,
};
pub use check::{CheckKind, CheckReport, CheckSpec, CheckedFiles, Finding, Severity, check};
pub use checkpoint::{Checkpoint, CheckpointError, GlobalValue};
pub use confine::{MAX_FILE_BYTES, OutsideReason, read_file, read_file_to_string};
pub use decision::{
    CapabilityKind, Decision, FeatureRecord, GateShortfall, ModelInference, RefusalReason,
    ReviewKind, ReviewRecord, ReviewRefusal, Rule, Verdict,
};
pub use digest::{Digest, DigestParseError};
pub use edition::Edition;
pub use engine::ENGINE_VERSION;
pub use error::{Error, ErrorKind};
pub use fork::{ForkReport, ForkRequest, ForkWarning, fork, fork_report};
pub use host_call::duplicate_key;
pub use input_contract::{
    InputContract, InputViolation, MAX_RECORDED_VIOLATIONS, Rejection, SchemaProblem,
};
pub use journal::{
    Audit, Journal, JournalError, LogAudit, LogEntry, PackEntry, PackManifest, PackSummary,
    PackVerification, Parent, RUN_HEAD_DOMAIN, Record, RecordBody, RunMeta, RunStart, RunStartedV1,
    Storage, Verification, WasiAnswer, WasiCall, WasiRequest, describe_request_bytes,
    describe_response_bytes, timestamp, timestamp_seconds,
};
pub use manifest::{Manifest, ManifestError, ManifestInspection};
pub use module_cache::{CacheError, default_module_cache_dir, set_module_cache_dir};
pub use outcome::{FailureReason, GuestFault, HostFault, Limit, Outcome, Status, TrapCode};
pub use policy::{
    Budgets, ConfidenceGate, DecisionRule, Diagnostic, HostCaps, Policy, PolicyError, Problem,
    ReviewRules, ReviewTimeout, State, StateKind,
};
pub use recording::Divergence;
pub use replay::{
    ReplayMode, ReplayOptions, ReplayReport, ReplayVerdict, replay, replay_all, replay_each,
};
pub use resolve::{InputSource, NewRun, ResolveError, RunSpec, check_input};
pub use resume::resume;
pub use review::{
    CaseFile, EarlierDecision, QueueEntry, ReviewOption, ReviewOutcome, ReviewRequest, ToolAnswer,
    case_file, decide, expire, queue,
};
pub use run::{RunReport, start};
pub use stored_run::{Artifact, StoredRunError};
pub use timeline::{EXPORT_FORMAT, Entry, ExportLine, Timeline};

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
