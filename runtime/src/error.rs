//! The errors of Warden's operations (run, resume, replay, fork, verify, show), and who
//! must act on them.
//!
//! Guest misbehaviour is never one of these: it is a recorded `FailureReason`
//! (invariant 6). An [`Error`] is something a person must fix: a file of theirs
//! ([`ErrorKind::Usage`]), a journal whose content does not check out
//! ([`ErrorKind::Integrity`]), or Warden's own environment ([`ErrorKind::Host`]).
//! [`Error::kind`] says which, so that a caller never has to read an error's text.

use crate::agent::LoadError;
use crate::bindings::BindingsError;
use crate::checkpoint::CheckpointError;
use crate::digest::Digest;
use crate::journal::{JournalError, Verification};
use crate::outcome::Status;
use crate::policy::PolicyError;
use crate::recording::Divergence;
use crate::resolve::ResolveError;
use crate::stored_run::StoredRunError;

/// Who must act on an [`Error`]; the CLI maps each to an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The user's arguments or files (policy, bindings, agent, input, run id; a ledger a
    /// resumed run needs that is gone): exit 2.
    Usage,
    /// The journal's content does not check out (a broken chain, an altered artifact, a
    /// re-execution that departs from what was committed): exit 12.
    Integrity,
    /// Warden or its environment failed (journal I/O, database in use, engine): exit 1.
    Host,
}

/// Why Warden could not run, resume, replay, fork or inspect a run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The agent module was refused.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The policy was refused.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The bindings were refused.
    #[error(transparent)]
    Bindings(#[from] BindingsError),
    /// The arguments could not be resolved into a run.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// A run's stored artifacts could not be loaded.
    #[error(transparent)]
    Stored(#[from] StoredRunError),
    /// The run's input is not JSON.
    #[error("the run's input is not valid JSON: {message}")]
    Input {
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// serde_json's message, which names the line and column.
        message: String,
    },
    /// The run's input has an object with a key twice.
    #[error(
        "the run's input has key `{key}` twice in one object; the agent, the gates and a person reading the journal could each take a different value: keep one"
    )]
    InputDuplicateKey {
        /// The key.
        key: String,
    },
    /// A fork's parent recorded an input with a key twice (accepted before such inputs
    /// were refused).
    #[error(
        "the input recorded by run {parent} has key `{key}` twice in one object (accepted before such inputs were refused): a fork would take one of its values without saying which; start a new run with the input you mean"
    )]
    ForkInputAmbiguous {
        /// The parent run.
        parent: String,
        /// The key.
        key: String,
    },
    /// An `--input-patch` is not a JSON object.
    #[error("the input patch is not a JSON object (RFC 7386 merge patch), found {found}")]
    InputPatch {
        /// The JSON type found.
        found: &'static str,
    },
    /// A checkpoint could not be taken or restored.
    #[error("run {run_id}: checkpoint after step {step}")]
    Checkpoint {
        /// The run.
        run_id: String,
        /// The checkpoint's step.
        step: u32,
        /// What went wrong.
        #[source]
        source: CheckpointError,
    },
    /// The operating system refused the memory or address space an agent's instance
    /// needs. Nothing was recorded for it: the run (or its next step) can be tried again.
    #[error(
        "run {run_id}: the machine could not give the agent its memory ({message}); nothing was recorded, so try again when memory is free (check `ulimit -v` and the container's memory limit)"
    )]
    NoResources {
        /// The run.
        run_id: String,
        /// What the operating system said.
        message: String,
    },
    /// The run has no checkpoint at the step asked for.
    #[error("run {run_id} has no checkpoint at step {step} (see `warden show {run_id}`)")]
    NoCheckpoint {
        /// The run.
        run_id: String,
        /// The step asked for.
        step: u32,
    },
    /// An id (of a submitter, a reviewer, a role) or a note that a run or a decision
    /// cannot be recorded with.
    #[error("{field} {problem}")]
    Argument {
        /// `--submitter`, `--reviewer`, `--role` or `--note`.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The run is not in a state this operation applies to.
    #[error("run {run_id} is {status}; {needed}")]
    WrongStatus {
        /// The run.
        run_id: String,
        /// Its status.
        status: Status,
        /// What the operation needs.
        needed: &'static str,
    },
    /// The run's journal does not verify, so the operation refuses to build on it.
    #[error("run {}: its journal does not verify, so it cannot be {operation}: {}", verification.run_id, verification.problem.as_deref().unwrap_or("unknown problem"))]
    Unverified {
        /// What was refused: `resumed`, `forked`, ...
        operation: &'static str,
        /// What verification found.
        verification: Box<Verification>,
    },
    /// The bindings file changed since the run started.
    #[error("run {run_id}: its bindings changed since it started (recorded {}, now {}); resuming needs the same tools and models", recorded.short(), present.short())]
    BindingsChanged {
        /// The run.
        run_id: String,
        /// The digest the run recorded.
        recorded: Digest,
        /// The digest of the file now.
        present: Digest,
    },
    /// Re-executing committed steps did not reproduce them.
    #[error("run {run_id}: re-executing committed step {step} did not reproduce it: expected {}, got {} (run `warden replay {run_id}` to see where it departs)", divergence.expected, divergence.actual)]
    CatchUpDiverged {
        /// The run.
        run_id: String,
        /// The step that departed.
        step: u32,
        /// Where and how.
        divergence: Box<Divergence>,
    },
    /// The run's review state declares no review rules (an edition-1 run).
    #[error(
        "run {run_id} waits in `{state}`, whose policy names no reviewer roles (it was recorded before reviews existed); it cannot be reviewed with this warden"
    )]
    NoReviewRules {
        /// The run.
        run_id: String,
        /// The review state.
        state: String,
    },
    /// A fork that changes the parent's input, policy or bindings may not start after a
    /// decision made on the parent's.
    #[error(
        "run {parent}'s checkpoint {step} comes after a decision made on its own input, policy and bindings (record {record} of run {decided_in}: {decision}); fork a changed case from a checkpoint before that decision"
    )]
    ForkPastDecision {
        /// The parent run.
        parent: String,
        /// The checkpoint asked for.
        step: u32,
        /// The run whose record it is: the parent, or (for a fork of a fork) the ancestor
        /// whose memory the parent started from.
        decided_in: String,
        /// The record of the decision.
        record: u64,
        /// The decision in words.
        decision: String,
    },
    /// The parent's policy does not validate under the current rules.
    #[error(
        "run {parent}'s policy was recorded under older rules and does not validate under the current ones; give the fork a current policy"
    )]
    ForkPolicy {
        /// The parent run.
        parent: String,
        /// Why it does not validate.
        #[source]
        source: PolicyError,
    },
    /// The fork's checkpoint is in a state the fork's policy does not declare.
    #[error(
        "checkpoint {step} of run {parent} is in state `{state}`, which the fork's policy does not declare"
    )]
    ForkState {
        /// The parent run.
        parent: String,
        /// The checkpoint's step.
        step: u32,
        /// Its state.
        state: String,
    },
    /// A fork from a checkpoint taken in a review state: it would open a second case for
    /// the parent's action, without the gate's evidence, that could be decided otherwise.
    #[error(
        "checkpoint {step} of run {parent} is in review state `{state}`: a fork from it would be a second case for the same action, without the decision that sent it there; decide the case in the run itself (warden review {parent}){}",
        before.map_or_else(|| ", as no earlier checkpoint of it is outside review".to_string(), |b| format!(", or fork from checkpoint {b} (--at-step {b}), the last before it outside review, to run again the steps that went to review"))
    )]
    ForkInReview {
        /// The parent run.
        parent: String,
        /// The checkpoint's step.
        step: u32,
        /// Its state.
        state: String,
        /// The last checkpoint before it in a state that is not a review state, if any.
        before: Option<u32>,
    },
}

impl Error {
    /// Who must act on this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Journal(
                JournalError::Missing { .. }
                | JournalError::NoSuchRun(_)
                | JournalError::RunEnded { .. }
                | JournalError::AmbiguousRunId { .. }
                | JournalError::Pack { .. },
            ) => ErrorKind::Usage,
            // The file's content does not check out: a record or summary that does not
            // decode, or bytes the storage engine itself finds damaged.
            Error::Journal(
                JournalError::Broken { .. }
                | JournalError::LogAltered { .. }
                | JournalError::Corrupt { .. }
                | JournalError::Damaged { .. },
            ) => ErrorKind::Integrity,
            Error::Journal(_) => ErrorKind::Host,
            Error::Stored(e) if e.is_integrity() => ErrorKind::Integrity,
            Error::Stored(StoredRunError::Journal(
                JournalError::Missing { .. }
                | JournalError::NoSuchRun(_)
                | JournalError::AmbiguousRunId { .. },
            )) => ErrorKind::Usage,
            Error::Stored(_) => ErrorKind::Host,
            Error::Checkpoint { source, .. } => match source {
                CheckpointError::PageUnreadable { .. } | CheckpointError::Grow { .. } => {
                    ErrorKind::Host
                }
                _ => ErrorKind::Integrity,
            },
            Error::Unverified { .. } | Error::CatchUpDiverged { .. } => ErrorKind::Integrity,
            Error::Load(LoadError::Engine(_)) | Error::NoResources { .. } => ErrorKind::Host,
            // A ledger of a resumed run that went missing is the operator's file, not a
            // failure of Warden: a person restores it (or decides it may start empty),
            // like any other file of theirs. Usage, exit 2, never retried blindly.
            Error::Bindings(BindingsError::LedgerMissing { .. }) => ErrorKind::Usage,
            Error::Load(_)
            | Error::Policy(_)
            | Error::Bindings(_)
            | Error::Resolve(_)
            | Error::Input { .. }
            | Error::InputDuplicateKey { .. }
            | Error::ForkInputAmbiguous { .. }
            | Error::InputPatch { .. }
            | Error::NoCheckpoint { .. }
            | Error::WrongStatus { .. }
            | Error::Argument { .. }
            | Error::BindingsChanged { .. }
            | Error::NoReviewRules { .. }
            | Error::ForkPastDecision { .. }
            | Error::ForkPolicy { .. }
            | Error::ForkState { .. }
            | Error::ForkInReview { .. } => ErrorKind::Usage,
        }
    }

    /// The problems this error lists, one per line, when it lists several (every problem
    /// of a policy or of a bindings file, each naming its file, line and field); `None`
    /// for an error that is one problem. The text comes from the operator's files, not
    /// from a guest.
    pub fn problems(&self) -> Option<Vec<String>> {
        let lines: Vec<String> = match self {
            Error::Policy(PolicyError::Invalid { diagnostics })
            | Error::Resolve(ResolveError::Policy(PolicyError::Invalid { diagnostics })) => {
                diagnostics.iter().map(ToString::to_string).collect()
            }
            Error::Bindings(error) | Error::Resolve(ResolveError::Bindings(error)) => {
                error.problems().iter().map(ToString::to_string).collect()
            }
            _ => return None,
        };
        (lines.len() > 1).then_some(lines)
    }

    /// The error for input text that is not JSON.
    pub(crate) fn input(error: &serde_json::Error) -> Error {
        Error::Input {
            line: error.line(),
            column: error.column(),
            message: error.to_string(),
        }
    }
}

/// An error and its causes on one line.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}
