//! Resume: continue an interrupted run from its last committed checkpoint.
//!
//! Upholds invariant 4: steps committed after that checkpoint are re-executed against
//! their recorded responses (checked record for record, not committed again); the step in
//! flight at the crash is then re-run live with the same call numbers, so an effectful
//! provider sees the same idempotency keys and does not act twice.

use std::path::Path;
use std::sync::Arc;

use crate::bindings::{Bindings, LedgerMode, LoadOptions};
use crate::driver::{self, Opened, Opening, Restore};
use crate::effects::Effects;
use crate::error::Error;
use crate::journal::Journal;
use crate::outcome::Status;
use crate::recording::{self, Answering, Expected, Recording};
use crate::run::{self, RunReport};
use crate::stored_run::StoredRun;

/// Continues an interrupted run from its last committed checkpoint, with the bindings
/// file recorded when it started.
///
/// # Errors
/// [`Error::WrongStatus`] unless the run is `running` (interrupted); a journal that does
/// not verify; changed bindings; committed steps that do not re-execute identically.
pub fn resume(journal: &Journal, run_id: &str) -> Result<RunReport, Error> {
    let span = tracing::info_span!("resume", run_id).entered();
    let verification = journal.verify(run_id)?;
    if verification.problem.is_some() {
        return Err(Error::Unverified {
            operation: "resumed",
            verification: Box::new(verification),
        });
    }
    let stored = StoredRun::load(journal, run_id)?;
    let meta = &stored.meta;
    if meta.status() != Status::Running {
        return Err(Error::WrongStatus {
            run_id: run_id.to_string(),
            status: meta.status(),
            needed: "only an interrupted (running) run can be resumed",
        });
    }
    // Always the recorded bindings file: a copy elsewhere with the same digest could point
    // its effects at another ledger, where the step in flight would act a second time.
    // Its ledgers must exist: the run created them when it started, and a new empty one
    // would let the step in flight (and every effect it forgot) act a second time.
    let bindings = Bindings::from_optional_file_with(
        meta.bindings_path.as_deref().map(Path::new),
        &LoadOptions {
            allow_outside: false,
            ledgers: LedgerMode::MustExist,
        },
    )?;
    if bindings.hash() != meta.bindings {
        return Err(Error::BindingsChanged {
            run_id: run_id.to_string(),
            recorded: meta.bindings,
            present: bindings.hash(),
        });
    }
    let from = meta.last_checkpoint.ok_or_else(|| Error::NoCheckpoint {
        run_id: run_id.to_string(),
        step: 0,
    })?;
    let checkpoint =
        journal
            .recorded_checkpoint(run_id, from)?
            .ok_or_else(|| Error::NoCheckpoint {
                run_id: run_id.to_string(),
                step: from,
            })?;
    let opening = Opening {
        run_id,
        agent: &stored.agent,
        policy: stored.policy.clone(),
        input: &stored.input,
        effects: Effects::Recorded(Recording::of(&stored.records, Answering::ByCall)),
        edition: stored.start.edition,
    };
    let restore = Restore {
        journal,
        checkpoint: &checkpoint,
        records: &stored.records,
        inferences: true,
    };
    let mut exec = match driver::open(opening, Some(restore))? {
        Opened::Ready(exec) => exec,
        // The same module instantiated before it was checkpointed: it cannot fail now
        // unless the stored module is not the one that ran.
        Opened::Failed(reason) => {
            return Err(Error::CatchUpDiverged {
                run_id: run_id.to_string(),
                step: from,
                divergence: Box::new(recording::Divergence::at_end(
                    "the agent instantiates as it did when the run started",
                    format!("instantiation failed: {reason}"),
                )),
            });
        }
    };
    exec.host_mut().journal.expected = Some(Expected::new(recording::after_checkpoint(
        &stored.records,
        from,
    )));
    // Catch up on committed steps (after the last checkpoint) without committing them
    // again: each must reproduce its records exactly, against its recorded answers.
    driver::catch_up(&mut exec, run_id, from, meta.outcome.steps)?;
    let step = meta.outcome.steps.max(from);
    exec.host_mut().journal.expected = None;
    let bindings = Arc::new(bindings);
    exec.host_mut().effects = match &stored.start.parent {
        // A fork started without live effects continues without them.
        Some(parent) if !stored.start.live_effects => Effects::Fork {
            bindings,
            parent: Recording::of(&journal.records(&parent.run_id)?, Answering::ByRequest),
        },
        _ => Effects::Live(bindings),
    };
    // A step re-running the logic of a step stopped in review answers what that step
    // performed from its record, after a crash as in the review's own process.
    let last_review = stored.records.iter().rev().find_map(|r| match &r.body {
        crate::journal::RecordBody::Review(review) => Some(review.as_ref()),
        _ => None,
    });
    exec.host_mut().performed =
        last_review.and_then(|review| driver::performed_before(&stored.records, review));
    run::commit_steps(journal, &mut exec, step, &mut |_| {})?;
    drop(span);
    RunReport::load(journal, run_id)
}
