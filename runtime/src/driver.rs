//! The driver: opens an execution (fresh, or restored from a checkpoint) and runs its step
//! loop, handing each step boundary (the step's records, its checkpoint, its outcome) to
//! the caller. Run, resume, replay and fork are peers above it; each decides what a
//! boundary means (commit it, compare it, or collect it).
//!
//! Upholds invariant 4 (write-ahead): a boundary carries everything a step produced, so a
//! caller that commits commits the whole step in one transaction; and invariant 7: the
//! step budget is enforced here, as a recorded failure.

use std::sync::Arc;

use crate::agent::Agent;
use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::edition::Edition;
use crate::effects::Effects;
use crate::error::Error;
use crate::host_call::HostState;
use crate::journal::{Commit, Journal, Record, RecordBody};
use crate::outcome::{FailureReason, Limit, Outcome, Status};
use crate::policy::Policy;
use crate::recording;
use crate::step::{Execution, NotStarted, StepEnd};

/// What an execution is opened from: the same for a new run, a resume, a replay and a
/// fork.
#[derive(Debug)]
pub(crate) struct Opening<'a> {
    /// The run's id (part of every effect's idempotency key).
    pub run_id: &'a str,
    /// The agent.
    pub agent: &'a Agent,
    /// The policy it runs under.
    pub policy: Arc<Policy>,
    /// The run's input, JSON text.
    pub input: &'a str,
    /// Where tool and model answers come from.
    pub effects: Effects,
    /// The rules the run is recorded under.
    pub edition: Edition,
}

/// Where an execution continues from: a checkpoint, the journal holding its pages, and
/// the records of the run up to it (edition-2 evidence is rebuilt from them).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Restore<'a> {
    /// The journal holding the checkpoint's pages.
    pub journal: &'a Journal,
    /// The checkpoint.
    pub checkpoint: &'a Checkpoint,
    /// The records of the run the checkpoint belongs to (at least up to it).
    pub records: &'a [Record],
    /// Whether the inferences in those records carry over (not into a fork).
    pub inferences: bool,
}

/// An opened execution, or the recorded failure of a guest that could not start.
#[derive(Debug)]
pub(crate) enum Opened {
    /// Ready to step.
    Ready(Box<Execution>),
    /// The module could not be instantiated (a run failure, not a host error).
    Failed(FailureReason),
}

/// The input contract's verdict on a run's input, taken before its first step: `None`
/// when the policy declares no contract or the input meets it, else the failure the run
/// records instead of running. Called where a run or a fork begins, and where a replay or
/// a counterfactual re-executes one from its beginning, never when a run continues from
/// its own checkpoint (its input passed when it began). Deterministic: the policy text
/// and the input come from the journal, so a re-execution reaches the same verdict.
pub(crate) fn admit(policy: &Policy, input: &str) -> Option<FailureReason> {
    let contract = policy.input_contract.as_ref()?;
    let rejection = match serde_json::from_str::<serde_json::Value>(input) {
        Ok(value) => contract.check(&value).err()?,
        // A run's input is checked to be JSON before it starts; should a stored one not
        // be, it meets no contract.
        Err(error) => crate::input_contract::Rejection {
            violations: vec![crate::input_contract::InputViolation {
                pointer: String::new(),
                keyword: "type".to_string(),
                message: format!("the input is not JSON: {error}"),
            }],
            total: 1,
        },
    };
    Some(FailureReason::InputRejected {
        violations: rejection.violations,
        total: rejection.total,
    })
}

/// Opens an execution, restoring `from` (a checkpoint and the journal holding its pages)
/// if given.
///
/// # Errors
/// A checkpoint that cannot be restored (missing or altered pages, another agent's).
pub(crate) fn open(opening: Opening<'_>, from: Option<Restore<'_>>) -> Result<Opened, Error> {
    let run_id = opening.run_id;
    let input = opening.input;
    let host = HostState::new(
        run_id,
        opening.policy,
        opening.input,
        opening.effects,
        opening.edition,
    );
    let mut exec = match Execution::instantiate(opening.agent, host) {
        Ok(exec) => exec,
        Err(NotStarted::Agent(reason)) => return Ok(Opened::Failed(*reason)),
        Err(NotStarted::Host(message)) => {
            return Err(Error::NoResources {
                run_id: run_id.to_string(),
                message,
            });
        }
    };
    if let Some(Restore {
        journal,
        checkpoint,
        records,
        inferences,
    }) = from
    {
        exec.restore(checkpoint, |digest| {
            journal
                .page(digest)
                .map_err(|e| CheckpointError::PageUnreadable {
                    digest: *digest,
                    source: Box::new(e),
                })
        })
        .map_err(|source| Error::Checkpoint {
            run_id: run_id.to_string(),
            step: checkpoint.step,
            source,
        })?;
        let host = exec.host_mut();
        if host.evidence.is_some() {
            let before = recording::until_checkpoint(records, checkpoint.step);
            host.evidence = Some(recording::evidence_of(before, input, inferences));
        }
    }
    Ok(Opened::Ready(Box::new(exec)))
}

/// Takes a checkpoint of `exec` and adds it, its record and its new pages to `commit`.
/// Returns the failure of a run whose changed pages took it past its journal budget; then
/// nothing is added.
///
/// # Errors
/// A checkpoint that cannot be captured (a global that is not a number).
pub(crate) fn capture(
    exec: &mut Execution,
    commit: &mut Commit,
) -> Result<Option<FailureReason>, Error> {
    let step = exec.host().step;
    let (checkpoint, capture) = exec.checkpoint().map_err(|source| Error::Checkpoint {
        run_id: exec.host().run_id.clone(),
        step,
        source,
    })?;
    let host = exec.host();
    let max = host.policy.budgets.max_journal_bytes;
    if host.journal.bytes > max {
        return Ok(Some(FailureReason::LimitExceeded {
            step,
            limit: Limit::JournalBytes,
            value: host.journal.bytes,
            max,
        }));
    }
    // The checkpoint record is never over budget (it counts 0 bytes); a replay mismatch
    // here surfaces at the next record.
    let _ = exec.push(RecordBody::Checkpoint {
        step: checkpoint.step,
        digest: checkpoint.digest(),
    });
    commit.pages = capture.changed;
    commit.checkpoint = Some(checkpoint);
    Ok(None)
}

/// What happens at one step boundary.
#[derive(Debug)]
pub(crate) struct Boundary {
    /// The steps run so far (the step that just ended, or the step budget if exceeded).
    pub step: u32,
    /// How the run stands after it.
    pub end: StepEnd,
    /// Records to commit (the step's records, its checkpoint, and the outcome if any).
    pub commit: Commit,
}

/// The outcome of a run that stands as `exec` does after a step that ended in `end`.
pub(crate) fn outcome_of(exec: &Execution, end: &StepEnd, steps: u32) -> Outcome {
    let host = exec.host();
    Outcome {
        status: end.status(),
        state: host.state.to_string(),
        output: host.finished.clone(),
        reason: match end {
            StepEnd::Failed(reason) => Some(reason.clone()),
            StepEnd::AwaitingReview => host.after_escalation.clone(),
            _ => None,
        },
        steps,
        host_calls: host.host_calls,
        fuel: host.fuel,
    }
}

/// Where a re-execution has departed from its recording, if it has.
fn diverged(exec: &Execution) -> Option<recording::Divergence> {
    exec.host()
        .journal
        .expected
        .as_ref()
        .and_then(|e| e.diverged.clone())
}

/// Runs steps after `from` until the run ends or `at_boundary` returns `false`, calling
/// `at_boundary` after each step. Returns how the last step ended.
///
/// # Errors
/// What `at_boundary` returns, or a checkpoint that cannot be taken.
pub(crate) fn drive(
    exec: &mut Execution,
    from: u32,
    mut at_boundary: impl FnMut(&Execution, Boundary) -> Result<bool, Error>,
) -> Result<StepEnd, Error> {
    let mut step = from;
    loop {
        // A run held in a review state (edition 3: a reviewer sent the case on to another
        // review state, or its policy starts in one) waits for a person: its agent takes
        // no step there, so no budget of steps can take the run out of the queue.
        if exec.host().held_for_review() {
            let end = StepEnd::AwaitingReview;
            let outcome = outcome_of(exec, &end, step);
            let _ = exec.push(RecordBody::Outcome(Box::new(outcome)));
            let end = diverged(exec).map_or(end, |d| StepEnd::Diverged(Box::new(d)));
            let commit = Commit {
                records: exec.take_records(),
                ..Commit::default()
            };
            at_boundary(
                exec,
                Boundary {
                    step,
                    end: end.clone(),
                    commit,
                },
            )?;
            return Ok(end);
        }
        step += 1;
        let budgets = exec.host().policy.budgets;
        let mut end = if step > budgets.max_steps {
            StepEnd::Failed(FailureReason::LimitExceeded {
                step,
                limit: Limit::Steps,
                value: u64::from(step),
                max: u64::from(budgets.max_steps),
            })
        } else {
            exec.run_step(step)
        };
        let mut commit = Commit::default();
        let steps = step.min(budgets.max_steps);
        // A guest stopped inside a host call has live frames: its memory is no state to
        // continue from, so the last clean checkpoint stays the one to resume from.
        let clean_end = matches!(end, StepEnd::Completed | StepEnd::AwaitingReview)
            && !exec.host().stopped_mid_step;
        // A checkpoint at the end of a completed or reviewed run lets a review resume it.
        let ended = end.status() != Status::Running;
        let due = clean_end || (!ended && step.is_multiple_of(budgets.checkpoint_every.max(1)));
        if due && let Some(over) = capture(exec, &mut commit)? {
            // A run that entered a review state stays in the review queue (edition 2): the
            // budget's failure is recorded beside it, and a review resumes from the last
            // checkpoint that fit.
            let host = exec.host_mut();
            end = if matches!(end, StepEnd::AwaitingReview) && host.edition >= Edition::V2 {
                host.after_escalation.get_or_insert(over);
                host.stopped_mid_step = true;
                StepEnd::AwaitingReview
            } else {
                StepEnd::Failed(over)
            };
        }
        let ended = end.status() != Status::Running;
        if ended && !matches!(end, StepEnd::Diverged(_)) {
            let outcome = outcome_of(exec, &end, steps);
            // The outcome is always recorded, even past the journal budget.
            let _ = exec.push(RecordBody::Outcome(Box::new(outcome)));
        }
        if let Some(divergence) = diverged(exec) {
            end = StepEnd::Diverged(Box::new(divergence));
        }
        commit.records = exec.take_records();
        let done = !matches!(end, StepEnd::Continue);
        let go_on = at_boundary(
            exec,
            Boundary {
                step: steps,
                end: end.clone(),
                commit,
            },
        )?;
        if done || !go_on {
            return Ok(end);
        }
    }
}

/// The effects the agent performed in steps of its that were stopped in review (it acted
/// again after entering review, so the step has no checkpoint at its end) since the last
/// step whose end its memory holds, for the step after `review`, which runs that logic
/// again ([`crate::host_call::Performed`]). Each stopped step after the first re-ran the
/// same logic, and was itself answered from the ones before it: what it asked that they
/// had performed was answered from their record, the rest was performed live, and is
/// added. `None` when there is nothing to answer (the agent's last step ended cleanly).
/// `records` are the run's, with or without the review itself.
pub(crate) fn performed_before(
    records: &[Record],
    review: &crate::decision::ReviewRecord,
) -> Option<crate::host_call::Performed> {
    let before = records
        .iter()
        .position(|r| matches!(&r.body, RecordBody::Review(rv) if rv.step == review.step))
        .map_or(records, |at| &records[..at]);
    // The agent's steps: each from its `StepStarted` to the next one or to a review step.
    let mut steps: Vec<&[Record]> = Vec::new();
    let mut start = None;
    for (at, record) in before.iter().enumerate() {
        match &record.body {
            RecordBody::StepStarted { .. } => {
                if let Some(from) = start.replace(at) {
                    steps.push(&before[from..at]);
                }
            }
            RecordBody::Review(_) => {
                if let Some(from) = start.take() {
                    steps.push(&before[from..at]);
                }
            }
            _ => {}
        }
    }
    if let Some(from) = start {
        steps.push(&before[from..]);
    }
    let stopped = |records: &&[Record]| {
        let Some(RecordBody::StepStarted { step, .. }) = records.first().map(|r| &r.body) else {
            return false;
        };
        let awaiting = records.iter().any(
            |r| matches!(&r.body, RecordBody::Outcome(o) if o.status == Status::AwaitingReview),
        );
        let checkpointed = records
            .iter()
            .any(|r| matches!(r.body, RecordBody::Checkpoint { step: s, .. } if s == *step));
        awaiting && !checkpointed
    };
    let first = steps.iter().rposition(|s| !stopped(s)).map_or(0, |i| i + 1);
    let mut live: Vec<Record> = Vec::new();
    for step in &steps[first..] {
        let mut known = recording::Recording::of(&live, recording::Answering::ByRequest);
        let responses: std::collections::HashMap<u64, &Record> = step
            .iter()
            .filter_map(|r| match r.body {
                RecordBody::HostResponse { call, .. } => Some((call, r)),
                _ => None,
            })
            .collect();
        let mut performed = Vec::new();
        for record in step.iter() {
            let RecordBody::HostCall { call, request, .. } = &record.body else {
                continue;
            };
            let Some(&response) = responses.get(call) else {
                continue;
            };
            if known.answer(*call, request).is_none() {
                performed.push(record.clone());
                performed.push(response.clone());
            }
        }
        live.extend(performed);
    }
    (!live.is_empty()).then(|| crate::host_call::Performed {
        step: review.step + 1,
        answers: recording::Recording::of(&live, recording::Answering::ByRequest),
    })
}

/// Re-executes the committed steps `from + 1 ..= to` of `exec` (restored at the checkpoint
/// of step `from`, its effects a recording, its expectation the records after that
/// checkpoint) without committing them again: each must reproduce its records exactly,
/// against its recorded answers.
///
/// # Errors
/// [`Error::CatchUpDiverged`] naming the first step that departs from its recording.
pub(crate) fn catch_up(
    exec: &mut Execution,
    run_id: &str,
    from: u32,
    to: u32,
) -> Result<(), Error> {
    let mut step = from;
    while step < to {
        step += 1;
        let end = exec.run_step(step);
        exec.take_records();
        let divergence = match (diverged(exec), end) {
            (Some(d), _) => d,
            (None, StepEnd::Continue) => continue,
            (None, StepEnd::Diverged(d)) => *d,
            (None, other) => recording::Divergence::at_end(
                "the committed step continues the run",
                format!("the step ended the run as {}", other.status()),
            ),
        };
        return Err(Error::CatchUpDiverged {
            run_id: run_id.to_string(),
            step,
            divergence: Box::new(divergence),
        });
    }
    Ok(())
}
