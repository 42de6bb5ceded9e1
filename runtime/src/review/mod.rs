//! Human review: a run that a gate (or its agent) sent to a review state is decided by a
//! person, bound to the exact action they were shown, and continues from the checkpoint
//! taken at the gate.
//!
//! Upholds invariants 1, 4 and 5 for the other half of a gate: only a role the policy
//! names may give an outcome the review state offers, never the run's own submitter;
//! dual control needs two distinct reviewers; a decision on an action digest other than
//! the one awaiting review is refused; every decision and every refusal is a chained
//! record; and the review is a step of its own (record `Review`, the transition, a
//! checkpoint), committed in one transaction, so a crash after it resumes from the
//! review's checkpoint: no step before the gate runs again, no effect is repeated, and no
//! second review is needed. A timeout (`expire`) applies only the declared outcome, which
//! validation guarantees is never an approval.

mod case;

pub use case::{CaseFile, EarlierDecision, QueueEntry, ReviewOption, ToolAnswer, case_file, queue};

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::bindings::Bindings;
use crate::decision::{RefusalReason, ReviewKind, ReviewRecord, ReviewRefusal};
use crate::digest::Digest;
use crate::driver::{self, Opened, Opening, Restore};
use crate::effects::Effects;
use crate::error::Error;
use crate::identity;
use crate::journal::{Commit, Edition, Journal, Progress, Record, RecordBody};
use crate::outcome::{Outcome, Status};
use crate::recording;
use crate::run::{self, RunReport};
use crate::step::Execution;
use crate::stored_run::StoredRun;

/// A reviewer's decision, as they submit it.
#[derive(Debug, Clone)]
pub struct ReviewRequest<'a> {
    /// The run.
    pub run_id: &'a str,
    /// The state to send the run to (one the review state offers).
    pub outcome: &'a str,
    /// Who decides.
    pub reviewer: &'a str,
    /// In which role.
    pub role: &'a str,
    /// Why.
    pub note: &'a str,
    /// The action digest of the case file the reviewer read.
    pub action: Digest,
}

/// What became of a review decision.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ReviewOutcome {
    /// Refused (and the refusal recorded); the run still awaits review.
    Refused {
        /// The run.
        run_id: String,
        /// Why.
        reason: RefusalReason,
        /// The reason in words.
        explanation: String,
    },
    /// The first of two decisions under dual control is recorded; the run awaits a
    /// second, distinct reviewer.
    Pending {
        /// The run.
        run_id: String,
        /// The outcome decided so far.
        outcome: String,
    },
    /// The run was decided and continued; this is what it came to.
    Decided(RunReport),
    /// A timeout was due but the run could not be continued (its bindings changed since,
    /// say): nothing was recorded, the run still awaits review, and the other runs due
    /// were still expired.
    NotContinued {
        /// The run.
        run_id: String,
        /// Why, in words.
        explanation: String,
    },
}

/// Where a run awaiting review stands: its state, the outcome record that stopped it,
/// and the records of the case since.
pub(crate) struct Awaiting<'r> {
    /// The review state.
    pub state: String,
    /// The `Outcome` (awaiting_review) record's index and body.
    pub outcome: (u64, &'r Outcome),
    /// The digest of the action awaiting review.
    pub action: Digest,
    /// The checkpoint the run continues from.
    pub checkpoint: u32,
    /// The decisions recorded for this action since, pending dual control.
    pub pending: Vec<&'r ReviewRecord>,
    /// The request that brought the run into review (a `HostCall` record), if one did.
    pub request: Option<&'r Record>,
}

impl Awaiting<'_> {
    /// The decision on the request that brought the run into review, if one did.
    pub fn decision(&self) -> Option<&crate::decision::Decision> {
        match self.request.map(|r| &r.body) {
            Some(RecordBody::HostCall { decision, .. }) => Some(decision),
            _ => None,
        }
    }
}

/// Finds the case a run awaiting review stands on, from its records: none unless its
/// latest outcome is awaiting review (a decided run, even one that went on to wait again
/// and then ended, has no case).
pub(crate) fn awaiting(records: &[Record]) -> Option<Awaiting<'_>> {
    let (at, outcome) = records
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, r)| match &r.body {
            RecordBody::Outcome(o) => Some((i, o)),
            _ => None,
        })
        .filter(|(_, o)| o.status == Status::AwaitingReview)?;
    // A decision continues the run: once the step after the case has started, the case is
    // closed even before the run's next outcome.
    if records[at..]
        .iter()
        .any(|r| matches!(&r.body, RecordBody::Review(_)))
    {
        return None;
    }
    let before = &records[..at];
    // The request that brought the run into review: the call whose transition (by the
    // agent, or by a gate's escalation) entered the review state last.
    let entered = before.iter().rposition(
        |r| matches!(&r.body, RecordBody::Transition { to, .. } if *to == outcome.state),
    );
    // Record 0 of a run started since format version 2 (edition 1 runs have none).
    let started = match records.first().map(|r| &r.body) {
        Some(RecordBody::Started(start)) => Some(start.as_ref()),
        _ => None,
    };
    let edition = started.map_or(Edition::V1, |start| start.edition);
    // A case a reviewer sent on (edition 3) rests on that decision, not on a request of
    // the agent's: none is shown or bound.
    let by_review = edition >= Edition::V3
        && entered.is_some_and(|i| i > 0 && matches!(before[i - 1].body, RecordBody::Review(_)));
    let entering = entered.filter(|_| !by_review).and_then(|i| {
        before[..i]
            .iter()
            .rev()
            .find(|r| matches!(r.body, RecordBody::HostCall { .. }))
    });
    let call = entering.and_then(|r| match &r.body {
        RecordBody::HostCall {
            request, decision, ..
        } => Some((request, decision)),
        _ => None,
    });
    let inference = call.and_then(|(_, decision)| match &decision.rule {
        crate::decision::Rule::GateLabelNotMet { inference, .. }
        | crate::decision::Rule::GateNotMet { inference, .. } => *inference,
        _ => None,
    });
    let inference = inference.and_then(|id| {
        before.iter().find_map(|r| match &r.body {
            RecordBody::Inference(i) if i.id == id => Some(i.as_ref()),
            _ => None,
        })
    });
    let checkpoint = before.iter().rev().find_map(|r| match &r.body {
        RecordBody::Checkpoint { step, digest } => Some((*step, *digest)),
        _ => None,
    })?;
    let request = call.map(|(request, _)| request);
    // Since edition 3 the action names its run: a decision on one run's case cannot be
    // replayed on another's, however alike the two applications are.
    let action = match started {
        Some(start) if edition >= Edition::V3 => Digest::of(
            crate::digest::domain::ACTION_V2,
            &crate::journal::encode(&(&start.run_id, request, inference, checkpoint.1)),
        ),
        _ => Digest::of(
            crate::digest::domain::ACTION,
            &crate::journal::encode(&(request, inference, checkpoint.1)),
        ),
    };
    let pending = records[at..]
        .iter()
        .filter_map(|r| match &r.body {
            RecordBody::ReviewPending(p) if p.action == action => Some(p.as_ref()),
            _ => None,
        })
        .collect();
    Some(Awaiting {
        state: outcome.state.clone(),
        outcome: (records[at].index, outcome),
        action,
        checkpoint: checkpoint.0,
        pending,
        request: entering,
    })
}

/// Decides a run awaiting review, if the policy allows this reviewer, role and outcome
/// on this action; refusals are recorded too.
///
/// # Errors
/// A run that does not verify, is not awaiting review, or whose review state declares no
/// review rules (an edition-1 run); journal errors. A refusal is not an error.
pub fn decide(journal: &Journal, request: &ReviewRequest<'_>) -> Result<ReviewOutcome, Error> {
    let _span = tracing::info_span!("review", run_id = request.run_id).entered();
    check_identity("--reviewer", request.reviewer)?;
    check_identity("--role", request.role)?;
    if request.note.len() > MAX_NOTE_BYTES {
        return Err(Error::Argument {
            field: "--note",
            problem: format!(
                "is {} bytes, longer than {MAX_NOTE_BYTES}: write the reason, and refer to documents by name",
                request.note.len()
            ),
        });
    }
    let stored = load(journal, request.run_id, "reviewed")?;
    let case = awaiting(&stored.records).ok_or_else(|| not_awaiting(&stored))?;
    let rules = stored
        .policy
        .state(&case.state)
        .and_then(|s| s.review.as_ref())
        .ok_or_else(|| Error::NoReviewRules {
            run_id: request.run_id.to_string(),
            state: case.state.clone(),
        })?;
    let refuse = |reason: RefusalReason| -> Result<ReviewOutcome, Error> {
        let refusal = ReviewRefusal {
            reviewer: request.reviewer.to_string(),
            role: request.role.to_string(),
            outcome: request.outcome.to_string(),
            action: request.action,
            reason: reason.clone(),
        };
        append(
            journal,
            request.run_id,
            RecordBody::ReviewRefused(Box::new(refusal)),
        )?;
        Ok(ReviewOutcome::Refused {
            run_id: request.run_id.to_string(),
            explanation: reason.to_string(),
            reason,
        })
    };
    if request.action != case.action {
        return refuse(RefusalReason::StaleAction {
            current: case.action,
        });
    }
    let Some(rule) = rules.decisions.get(request.outcome) else {
        return refuse(RefusalReason::OutcomeNotOffered {
            offered: rules.decisions.keys().cloned().collect(),
        });
    };
    if !rule.roles.contains(request.role) {
        return refuse(RefusalReason::RoleNotAllowed {
            allowed: rule.roles.iter().cloned().collect(),
        });
    }
    if submitters(journal, &stored)?
        .iter()
        .any(|submitter| identity::same_person(submitter, request.reviewer))
    {
        return refuse(RefusalReason::SelfReview);
    }
    let earlier = case.pending.iter().find(|p| p.outcome == request.outcome);
    if rule.dual_control
        && earlier.is_some_and(|p| identity::same_person(&p.reviewer, request.reviewer))
    {
        return refuse(RefusalReason::SameReviewerTwice);
    }
    // Four eyes means two people who have not decided on the case before: the one who
    // sent it on to this review state is not one of them, nor anyone who gave a decision
    // (or the first of two) in an earlier case of this run or of a run it was forked from.
    if rule.dual_control
        && let Some(review) = decided_before(journal, &stored, case.action, request.reviewer)?
    {
        return refuse(RefusalReason::DecidedBefore {
            state: review.state,
            outcome: review.outcome,
        });
    }
    let mut record = ReviewRecord {
        kind: ReviewKind::Decision,
        step: case.outcome.1.steps + 1,
        state: case.state.clone(),
        outcome: request.outcome.to_string(),
        reviewer: request.reviewer.to_string(),
        role: request.role.to_string(),
        note: request.note.to_string(),
        action: case.action,
        resumed_from: case.checkpoint,
    };
    // The agent reads the decision as a host response: one it could not read would fail
    // the run the reviewer decided, so it is refused here, before anything is recorded.
    let max = stored.policy.budgets.max_response_bytes;
    let size = postcard::experimental::serialized_size(&warden_guest::wire::Response::Review(
        Some(record.info()),
    ))
    .unwrap_or(usize::MAX);
    if size as u64 > u64::from(max) {
        return Err(Error::Argument {
            field: "--note",
            problem: format!(
                "is too long: the agent reads the decision as a response of {size} bytes, over \
                 the policy's budgets.max_response_bytes = {max}; shorten the note"
            ),
        });
    }
    if rule.dual_control && earlier.is_none() {
        record.kind = ReviewKind::FirstOfTwo;
        append(
            journal,
            request.run_id,
            RecordBody::ReviewPending(Box::new(record)),
        )?;
        return Ok(ReviewOutcome::Pending {
            run_id: request.run_id.to_string(),
            outcome: request.outcome.to_string(),
        });
    }
    continue_run(journal, &stored, &case, record).map(ReviewOutcome::Decided)
}

/// Applies the timeout of every run that has waited in review longer than its review
/// state allows, as of `now_ms`: the declared outcome (never an approval), recorded as
/// decided by `warden` in the role `timeout`.
///
/// # Errors
/// Journal errors; a run that does not verify is skipped (it is in the list as an
/// error-free refusal to act is not possible: it is reported by `warden verify`).
pub fn expire(journal: &Journal, now_ms: u64) -> Result<Vec<ReviewOutcome>, Error> {
    let mut outcomes = Vec::new();
    for meta in journal.runs_where(|meta| meta.status() == Status::AwaitingReview)? {
        let Ok(stored) = load(journal, &meta.run_id, "expired") else {
            continue;
        };
        let Some(case) = awaiting(&stored.records) else {
            continue;
        };
        let timeout = stored
            .policy
            .state(&case.state)
            .and_then(|s| s.review.as_ref())
            .and_then(|r| r.timeout.clone());
        let entered = stored.records[case.outcome.0 as usize].at_ms;
        let Some(timeout) = timeout.filter(|t| now_ms >= entered.saturating_add(t.after_ms)) else {
            continue;
        };
        let record = ReviewRecord {
            kind: ReviewKind::Expiry,
            step: case.outcome.1.steps + 1,
            state: case.state.clone(),
            outcome: timeout.outcome.clone(),
            reviewer: "warden".into(),
            role: "timeout".into(),
            note: format!(
                "no decision within {} of entering review",
                humantime::format_duration(std::time::Duration::from_millis(timeout.after_ms))
            ),
            action: case.action,
            resumed_from: case.checkpoint,
        };
        // One run that cannot go on must not hold back every other run whose time is up.
        outcomes.push(match continue_run(journal, &stored, &case, record) {
            Ok(report) => ReviewOutcome::Decided(report),
            Err(error @ Error::Journal(_)) => return Err(error),
            Err(error) => ReviewOutcome::NotContinued {
                run_id: meta.run_id.clone(),
                explanation: error.to_string(),
            },
        });
    }
    Ok(outcomes)
}

/// Refuses an id (of a reviewer or a role) that [`identity::problem`] finds wrong: what is
/// recorded is exactly what was meant, and shows as it is.
fn check_identity(field: &'static str, id: &str) -> Result<(), Error> {
    match identity::problem(id) {
        Some(problem) => Err(Error::Argument { field, problem }),
        None => Ok(()),
    }
}

/// The longest note a decision is recorded with, in bytes: the agent reads it (and may
/// quote it in its own requests, which have their budget), so it is a reason, not a file.
const MAX_NOTE_BYTES: usize = 4096;

/// The most forks followed back for the people a reviewer may not be (its submitters, and
/// under dual control whoever decided before).
const MAX_SUBMITTER_ANCESTORS: usize = 64;

/// Who submitted the run and, for a fork, each run it was forked from: the case is about
/// their application, so none of them may decide it.
fn submitters(journal: &Journal, stored: &StoredRun) -> Result<Vec<String>, Error> {
    let mut submitters: Vec<String> = stored.start.submitted_by.iter().cloned().collect();
    for (_, records) in forked_from(journal, stored, MAX_SUBMITTER_ANCESTORS)? {
        let start = records.first().and_then(|r| r.body.run_start());
        submitters.extend(start.and_then(|s| s.submitted_by));
    }
    Ok(submitters)
}

/// The runs `stored` was forked from, nearest first, each with its records: at most
/// `max` of them (a chain of forks ends at a run that started fresh; the bound stops a
/// cycle a damaged journal could hold).
pub(super) fn forked_from(
    journal: &Journal,
    stored: &StoredRun,
    max: usize,
) -> Result<Vec<(String, Vec<crate::journal::Record>)>, Error> {
    let mut runs = Vec::new();
    let mut parent = stored.start.parent.clone();
    while runs.len() < max {
        let Some(p) = parent else { break };
        let records = journal.records(&p.run_id)?;
        parent = records
            .first()
            .and_then(|r| r.body.run_start())
            .and_then(|s| s.parent);
        runs.push((p.run_id, records));
    }
    Ok(runs)
}

/// A decision `reviewer` made before the case on `action`: on this run or a run it was
/// forked from, a decision, or the first of two in another case.
fn decided_before(
    journal: &Journal,
    stored: &StoredRun,
    action: Digest,
    reviewer: &str,
) -> Result<Option<ReviewRecord>, Error> {
    let ancestors = forked_from(journal, stored, MAX_SUBMITTER_ANCESTORS)?;
    Ok(std::iter::once(stored.records.as_slice())
        .chain(ancestors.iter().map(|(_, records)| records.as_slice()))
        .flatten()
        .find_map(|r| match &r.body {
            RecordBody::Review(review)
                if review.kind == ReviewKind::Decision
                    && identity::same_person(&review.reviewer, reviewer) =>
            {
                Some((**review).clone())
            }
            RecordBody::ReviewPending(pending)
                if pending.action != action
                    && identity::same_person(&pending.reviewer, reviewer) =>
            {
                Some((**pending).clone())
            }
            _ => None,
        }))
}

/// Loads and verifies a run a review acts on.
fn load(journal: &Journal, run_id: &str, operation: &'static str) -> Result<StoredRun, Error> {
    let verification = journal.verify(run_id)?;
    if verification.problem.is_some() {
        return Err(Error::Unverified {
            operation,
            verification: Box::new(verification),
        });
    }
    Ok(StoredRun::load(journal, run_id)?)
}

fn not_awaiting(stored: &StoredRun) -> Error {
    Error::WrongStatus {
        run_id: stored.meta.run_id.clone(),
        status: stored.meta.status(),
        needed: "only a run awaiting review can be reviewed",
    }
}

/// Appends one record to a run awaiting review (a refusal, or a first decision).
fn append(journal: &Journal, run_id: &str, body: RecordBody) -> Result<(), Error> {
    let commit = Commit {
        records: vec![body].into(),
        ..Commit::default()
    };
    journal.commit(run_id, commit)?;
    Ok(())
}

/// Commits the review step and continues the run live from it.
fn continue_run(
    journal: &Journal,
    stored: &StoredRun,
    case: &Awaiting<'_>,
    record: ReviewRecord,
) -> Result<RunReport, Error> {
    let run_id = stored.meta.run_id.as_str();
    let bindings =
        Bindings::from_optional_file(stored.meta.bindings_path.as_deref().map(Path::new))?;
    if bindings.hash() != stored.meta.bindings {
        return Err(Error::BindingsChanged {
            run_id: run_id.to_string(),
            recorded: stored.meta.bindings,
            present: bindings.hash(),
        });
    }
    let effects = match &stored.start.parent {
        Some(parent) if !stored.start.live_effects => Effects::Fork {
            bindings: Arc::new(bindings),
            parent: recording::Recording::of(
                &journal.records(&parent.run_id)?,
                recording::Answering::ByRequest,
            ),
        },
        _ => Effects::Live(Arc::new(bindings)),
    };
    let mut exec = reopen(journal, stored, &record, effects)?;
    let mut commit = Commit::default();
    apply(
        &mut exec,
        &record,
        case.outcome.1,
        &stored.records,
        &mut commit,
    )?;
    exec.host_mut().performed = driver::performed_before(&stored.records, &record);
    let state = exec.host().state.to_string();
    let (steps, host_calls, fuel) = {
        let host = exec.host();
        (host.step, host.host_calls, host.fuel)
    };
    commit.progress = Some(Progress {
        state,
        steps,
        host_calls,
        fuel,
        reopened: true,
    });
    journal.commit(run_id, commit)?;
    run::commit_steps(journal, &mut exec, record.step, &mut |_| {})?;
    RunReport::load(journal, run_id)
}

/// A fresh execution of a reviewed run at the checkpoint its review continues from, and
/// (edition 3) past the committed steps between that checkpoint and the step that
/// entered review, re-executed against their recording: a step stopped in mid-step
/// leaves no checkpoint at its end, and the one before it may be several steps back
/// (`checkpoint_every`); those steps are not run again live.
pub(crate) fn reopen(
    journal: &Journal,
    stored: &StoredRun,
    record: &ReviewRecord,
    effects: Effects,
) -> Result<Box<Execution>, Error> {
    let run_id = stored.meta.run_id.as_str();
    let checkpoint = journal
        .recorded_checkpoint(run_id, record.resumed_from)?
        .ok_or_else(|| Error::NoCheckpoint {
            run_id: run_id.to_string(),
            step: record.resumed_from,
        })?;
    // The step that entered review, whose review step this is.
    let entered = record.step.saturating_sub(1);
    let (first, later) = if stored.start.edition >= Edition::V3 && record.resumed_from + 1 < entered
    {
        let recorded = recording::Recording::of(&stored.records, recording::Answering::ByCall);
        (Effects::Recorded(recorded), Some(effects))
    } else {
        (effects, None)
    };
    let opening = Opening {
        run_id,
        agent: &stored.agent,
        policy: stored.policy.clone(),
        input: &stored.input,
        effects: first,
        edition: stored.start.edition,
    };
    let restore = Restore {
        journal,
        checkpoint: &checkpoint,
        records: &stored.records,
        inferences: true,
    };
    match driver::open(opening, Some(restore))? {
        Opened::Ready(mut exec) => {
            if let Some(effects) = later {
                exec.host_mut().journal.expected = Some(recording::Expected::new(
                    recording::after_checkpoint(&stored.records, record.resumed_from),
                ));
                driver::catch_up(&mut exec, run_id, record.resumed_from, entered - 1)?;
                let host = exec.host_mut();
                host.journal.expected = None;
                host.effects = effects;
            }
            Ok(exec)
        }
        Opened::Failed(reason) => Err(Error::CatchUpDiverged {
            run_id: run_id.to_string(),
            step: record.resumed_from,
            divergence: Box::new(recording::Divergence::at_end(
                "the agent instantiates as it did when the run started",
                format!("instantiation failed: {reason}"),
            )),
        }),
    }
}

/// The review step: the run, restored at the review's checkpoint, takes the counters of
/// the step that escalated, records the review, moves to its outcome and is checkpointed.
/// The same for a live review and for a replay of one.
pub(crate) fn apply(
    exec: &mut Execution,
    record: &ReviewRecord,
    awaiting: &Outcome,
    records: &[Record],
    commit: &mut Commit,
) -> Result<(), Error> {
    let before_review: Vec<Record> = records
        .iter()
        .take_while(|r| !matches!(&r.body, RecordBody::Review(rv) if rv.step == record.step))
        .cloned()
        .collect();
    let host = exec.host_mut();
    host.step = record.step;
    host.host_calls = awaiting.host_calls;
    host.fuel = awaiting.fuel;
    host.state = Arc::from(record.state.as_str());
    host.finished = None;
    if host.evidence.is_some() {
        let input = host.input.clone();
        host.evidence = Some(recording::evidence_of(&before_review, &input, true));
    }
    let _ = exec.push(RecordBody::Review(Box::new(record.clone())));
    let host = exec.host_mut();
    host.state = Arc::from(record.outcome.as_str());
    if let Some(evidence) = &mut host.evidence {
        evidence.on_transition();
        evidence.review = Some(record.info());
    }
    let _ = exec.push(RecordBody::Transition {
        step: record.step,
        from: record.state.clone(),
        to: record.outcome.clone(),
    });
    let _ = exec.push(RecordBody::StepCommitted {
        step: record.step,
        fuel: 0,
        state: record.outcome.clone(),
    });
    driver::capture(exec, commit)?;
    commit.records = exec.take_records();
    Ok(())
}
