//! Counterfactual replay: what a new agent or policy would have done with a recorded run.
//!
//! Tool and model calls are answered by their exact request bytes, so a new agent may ask
//! in another order but only gets answers that were really recorded; a request the
//! recording cannot answer stops the re-execution as "could not replay" rather than
//! inventing one. Behaviour (requests, decisions, responses, transitions, outcome; not
//! fuel or memory) is compared record by record.

use super::{ReplayMode, ReplayOptions, ReplayReport, ReplayVerdict, recorded_outcome};
use crate::driver::{self, Opened, Opening};
use crate::effects::Effects;
use crate::error::Error;
use crate::journal::RecordBody;
use crate::outcome::Outcome;
use crate::recording::{Answering, Divergence, Recording};
use crate::step::StepEnd;
use crate::stored_run::StoredRun;

/// The parts of a record that are behaviour: fuel, memory and step bookkeeping differ
/// between agent builds without meaning anything.
fn behaviour(body: &RecordBody) -> Option<RecordBody> {
    match body {
        RecordBody::HostCall {
            step,
            call,
            state,
            request,
            decision,
            ..
        } => Some(RecordBody::HostCall {
            step: *step,
            call: *call,
            state: state.clone(),
            fuel: 0,
            request: request.clone(),
            decision: decision.clone(),
        }),
        RecordBody::HostResponse { .. } | RecordBody::Transition { .. } => Some(body.clone()),
        RecordBody::Outcome(outcome) => Some(RecordBody::Outcome(Box::new(Outcome {
            fuel: 0,
            ..(**outcome).clone()
        }))),
        _ => None,
    }
}

/// Runs the stored run's input through `options`' agent and policy (the stored ones where
/// not given) against the recorded answers.
pub(super) fn run(stored: StoredRun, options: &ReplayOptions) -> Result<ReplayReport, Error> {
    let run_id = stored.meta.run_id.clone();
    let mut report = ReplayReport::new(&stored.meta, ReplayMode::Counterfactual);
    let agent = options.agent.as_ref().unwrap_or(&stored.agent);
    let policy = options
        .policy
        .clone()
        .unwrap_or_else(|| stored.policy.clone());
    // The new policy's input contract, if any, judges the recorded input first.
    let rejected = driver::admit(&policy, &stored.input);
    let opening = Opening {
        run_id: &run_id,
        agent,
        policy,
        input: &stored.input,
        effects: Effects::Recorded(Recording::of(&stored.records, Answering::ByRequest)),
        edition: stored.start.edition,
    };
    let mut produced: Vec<RecordBody> = Vec::new();
    let mut unanswered = None;
    let opened = match rejected {
        Some(reason) => Opened::Failed(reason),
        None => driver::open(opening, None)?,
    };
    let replayed = match opened {
        Opened::Ready(mut exec) => {
            let end = driver::drive(&mut exec, 0, |_, boundary| {
                produced.extend(boundary.commit.records.decode());
                Ok(true)
            })?;
            let mut outcome = driver::outcome_of(&exec, &end, exec.host().step);
            if let StepEnd::Diverged(d) = &end {
                unanswered = Some((**d).clone());
                outcome.reason = None;
            }
            report.steps = exec.host().step;
            // The outcome record, where the run ended, is what the run came to.
            recorded_outcome_of(&produced).unwrap_or(outcome)
        }
        Opened::Failed(reason) => {
            let outcome = Outcome {
                status: crate::outcome::Status::Failed,
                state: stored.start.state.clone(),
                output: None,
                reason: Some(reason),
                steps: 0,
                host_calls: 0,
                fuel: 0,
            };
            // What a run that fails before its first step records: its outcome, which
            // is then where the behaviour departs.
            produced.push(RecordBody::Outcome(Box::new(outcome.clone())));
            outcome
        }
    };
    // Compared without fuel; described as recorded and as produced, fuel and all (a
    // departure that printed the compared form read "fuel 0" on every line).
    let old: Vec<(u64, RecordBody, &RecordBody)> = stored
        .records
        .iter()
        .filter_map(|r| behaviour(&r.body).map(|b| (r.index, b, &r.body)))
        .collect();
    let new: Vec<(RecordBody, &RecordBody)> = produced
        .iter()
        .filter_map(|body| behaviour(body).map(|b| (b, body)))
        .collect();
    let departure = old.iter().zip(&new).find(|((_, a, _), (b, _))| a != b).map(
        |((index, _, recorded), (_, produced))| {
            Divergence::between(Some(*index), recorded, produced)
        },
    );
    if let Some(unanswered) = unanswered {
        // The first departure says where the new behaviour begins; without one, the
        // request the recording could not answer is the departure.
        report.verdict = ReplayVerdict::CouldNotReplay;
        report.divergence = departure.or_else(|| Some(unanswered.clone()));
        report.unanswered = Some(unanswered);
    } else {
        let original = recorded_outcome(&stored.records).unwrap_or(&stored.meta.outcome);
        let same_end = replayed.status == original.status
            && replayed.state == original.state
            && replayed.reason == original.reason;
        report.verdict = if same_end && replayed.output == original.output {
            ReplayVerdict::Unchanged
        } else if replayed.status == crate::outcome::Status::AwaitingReview {
            ReplayVerdict::NeedsReview
        } else if same_end {
            ReplayVerdict::DifferentOutput
        } else {
            ReplayVerdict::DifferentOutcome
        };
        report.divergence = departure;
    }
    report.records_compared = new.len().min(old.len()) as u64;
    report.replayed = Some(replayed);
    Ok(report)
}

fn recorded_outcome_of(bodies: &[RecordBody]) -> Option<Outcome> {
    bodies.iter().rev().find_map(|b| match b {
        RecordBody::Outcome(outcome) => Some((**outcome).clone()),
        _ => None,
    })
}
