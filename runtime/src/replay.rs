//! Replay: re-execute a run from its journal alone, answering every tool and model call
//! from the recording, and report the first place where anything differs.
//!
//! Upholds invariant 3 (determinism): exact replay compares every record the re-execution
//! produces (request bytes, fuel at every call, decisions, responses, transitions,
//! checkpoint digests of memory and globals, the outcome) with the recorded one, and stops
//! at the first difference. Counterfactual replay runs a new agent or policy against the
//! recorded answers and reports where its behaviour departs and how the outcome changes.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::Serialize;
use warden_guest::wire::Request;

use crate::agent::Agent;
use crate::digest::Digest;
use crate::effects::{Effects, Recording};
use crate::engine;
use crate::journal::{Journal, Record, RecordBody, RunMeta};
use crate::outcome::Status;
use crate::policy::Policy;
use crate::run::{RunError, RunReport, drive, report_from};
use crate::step::{Execution, StepEnd};

/// Where and how a re-execution departed from its recording.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Divergence {
    /// Index of the first recorded record that was not reproduced (if any).
    pub record: Option<u64>,
    /// The step it belongs to.
    pub step: Option<u32>,
    /// The host call it belongs to.
    pub call: Option<u64>,
    /// What the recording says, decoded.
    pub expected: String,
    /// What the re-execution did, decoded.
    pub actual: String,
    /// `true` when the re-execution asked a tool or model something the recording cannot
    /// answer (counterfactual replay never invents an answer).
    pub unanswerable: bool,
}

impl ReplayReport {
    /// A run that could not be replayed at all (its stored artifacts are missing or do
    /// not match their digests), as a row of `warden replay --all`.
    pub fn could_not_load(meta: &RunMeta, error: &RunError) -> ReplayReport {
        ReplayReport {
            run_id: meta.run_id.clone(),
            mode: "exact",
            from_checkpoint: None,
            identical: false,
            steps: 0,
            records_compared: 0,
            checkpoints_compared: 0,
            divergence: Some(Divergence {
                record: None,
                step: None,
                call: None,
                expected: "a run whose module, policy and input load from the journal".into(),
                actual: error.to_string(),
                unanswerable: false,
            }),
            original: OutcomeSummary {
                status: meta.status,
                state: meta.state.clone(),
                output: meta.output.clone(),
                reason: meta.reason.as_ref().map(ToString::to_string),
            },
            replayed: None,
            outcome_changed: false,
            could_not_replay: true,
        }
    }
}

impl Divergence {
    /// A request the recording has no answer for.
    pub fn unanswerable(call: u64, request: &Request) -> Divergence {
        Divergence {
            record: None,
            step: None,
            call: Some(call),
            expected: "a request the recording can answer".into(),
            actual: format!(
                "call {call}: {}",
                crate::timeline::describe_request(request)
            ),
            unanswerable: true,
        }
    }
}

/// The recorded bodies a re-execution must reproduce, consumed in order.
#[derive(Debug, Default)]
pub struct Expected {
    bodies: VecDeque<(u64, RecordBody)>,
    /// Records compared so far.
    pub compared: u64,
    /// The first divergence, kept even where the caller could not stop at once.
    pub diverged: Option<Divergence>,
}

impl Expected {
    /// Expects `bodies` (record index, body) in order.
    pub fn new(bodies: Vec<(u64, RecordBody)>) -> Expected {
        Expected {
            bodies: bodies.into(),
            ..Expected::default()
        }
    }

    /// Records not yet reproduced.
    pub fn remaining(&self) -> usize {
        self.bodies.len()
    }

    /// Compares the next produced record with the next recorded one.
    pub fn check(&mut self, actual: &RecordBody) -> Result<(), Divergence> {
        if let Some(divergence) = &self.diverged {
            return Err(divergence.clone());
        }
        let result = match self.bodies.pop_front() {
            Some((_, expected)) if expected == *actual => {
                self.compared += 1;
                return Ok(());
            }
            Some((index, expected)) => Divergence {
                record: Some(index),
                step: step_of(&expected),
                call: call_of(&expected),
                expected: expected.describe(),
                actual: actual.describe(),
                unanswerable: false,
            },
            None => Divergence {
                record: None,
                step: step_of(actual),
                call: call_of(actual),
                expected: "the end of the recording".into(),
                actual: actual.describe(),
                unanswerable: false,
            },
        };
        self.diverged = Some(result.clone());
        Err(result)
    }
}

fn step_of(body: &RecordBody) -> Option<u32> {
    match body {
        RecordBody::StepStarted { step, .. }
        | RecordBody::HostCall { step, .. }
        | RecordBody::Transition { step, .. }
        | RecordBody::Checkpoint { step, .. }
        | RecordBody::StepCommitted { step, .. } => Some(*step),
        _ => None,
    }
}

fn call_of(body: &RecordBody) -> Option<u64> {
    match body {
        RecordBody::HostCall { call, .. } | RecordBody::HostResponse { call, .. } => Some(*call),
        _ => None,
    }
}

/// A run as stored: everything needed to re-execute it without the outside world.
#[derive(Debug)]
pub struct StoredRun {
    /// The run's summary.
    pub meta: RunMeta,
    /// The stored agent module, loaded.
    pub agent: Agent,
    /// The stored policy, parsed.
    pub policy: Arc<Policy>,
    /// The stored policy text.
    pub policy_text: String,
    /// The stored input JSON.
    pub input: String,
}

impl StoredRun {
    /// Loads a run's module, policy and input from the journal, checking their digests.
    ///
    /// # Errors
    /// A missing or altered artifact; journal errors.
    pub fn load(journal: &Journal, run_id: &str) -> Result<StoredRun, RunError> {
        let meta = journal.run(run_id)?;
        let stored = |what: String| RunError::Stored {
            run_id: run_id.to_string(),
            what,
        };
        let module = journal.blob(&meta.agent)?.ok_or_else(|| {
            stored(format!(
                "agent module {} is missing from the journal",
                meta.agent.short()
            ))
        })?;
        let engine = engine::engine().map_err(|e| RunError::Engine(format!("{e:#}")))?;
        let agent = Agent::from_bytes(engine, &module)?;
        if agent.hash != meta.agent {
            return Err(stored(format!(
                "stored agent module does not match digest {}",
                meta.agent.short()
            )));
        }
        let text = |digest: &Digest, what: &str| -> Result<String, RunError> {
            let bytes = journal.blob(digest)?.ok_or_else(|| {
                stored(format!(
                    "{what} {} is missing from the journal",
                    digest.short()
                ))
            })?;
            if Digest::of("warden-blob-v1", &bytes) != *digest {
                return Err(stored(format!(
                    "{what} does not match its digest {}",
                    digest.short()
                )));
            }
            String::from_utf8(bytes).map_err(|_| stored(format!("{what} is not UTF-8")))
        };
        let policy_text = text(&meta.policy_text, "policy text")?;
        let input = text(&meta.input, "input")?;
        let policy = Policy::parse(&policy_text, &format!("<policy of run {run_id}>"))?;
        if policy.hash() != meta.policy {
            return Err(stored(format!(
                "stored policy parses to digest {}, recorded {}",
                policy.hash().short(),
                meta.policy.short()
            )));
        }
        Ok(StoredRun {
            meta,
            agent,
            policy: Arc::new(policy),
            policy_text,
            input,
        })
    }
}

/// The records after checkpoint `step` (what a re-execution from it must reproduce), and
/// the recorded responses by call.
pub fn after_checkpoint(records: &[Record], step: u32) -> (Vec<(u64, RecordBody)>, Recording) {
    let start = records
        .iter()
        .position(|r| matches!(r.body, RecordBody::Checkpoint { step: s, .. } if s == step))
        .map_or(records.len(), |i| i + 1);
    let expected = records
        .iter()
        .skip(start)
        .map(|r| (r.index, r.body.clone()))
        .collect();
    (expected, recording(records, true))
}

/// The recorded tool and model responses of a run.
pub fn recording(records: &[Record], exact: bool) -> Recording {
    let mut recording = Recording {
        exact,
        ..Recording::default()
    };
    let mut requests = std::collections::HashMap::new();
    for record in records {
        match &record.body {
            RecordBody::HostCall { call, request, .. } => {
                requests.insert(*call, request.clone());
            }
            RecordBody::HostResponse { call, response } => {
                recording.by_call.insert(*call, response.clone());
                if let Some(request) = requests.remove(call) {
                    recording.by_request.insert(request, response.clone());
                }
            }
            _ => {}
        }
    }
    recording
}

/// What to replay against.
#[derive(Debug, Default)]
pub struct ReplayOptions {
    /// Start from this checkpoint instead of the beginning (exact replay only).
    pub from_checkpoint: Option<u32>,
    /// A new agent (counterfactual).
    pub agent: Option<Agent>,
    /// A new policy and its text (counterfactual).
    pub policy: Option<Arc<Policy>>,
}

/// The outcome part of a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutcomeSummary {
    /// Where the run ended.
    pub status: Status,
    /// The state it ended in.
    pub state: String,
    /// Its output (JSON text).
    pub output: Option<String>,
    /// Why it failed, in words.
    pub reason: Option<String>,
}

/// What a replay found.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    /// The run replayed.
    pub run_id: String,
    /// `exact` or `counterfactual`.
    pub mode: &'static str,
    /// The checkpoint the replay started from.
    pub from_checkpoint: Option<u32>,
    /// Exact replay: every record reproduced bit for bit.
    pub identical: bool,
    /// Steps re-executed.
    pub steps: u32,
    /// Records compared with the recording.
    pub records_compared: u64,
    /// Checkpoints whose digests were compared.
    pub checkpoints_compared: u32,
    /// The first difference (exact), or the first departure in behaviour (counterfactual).
    pub divergence: Option<Divergence>,
    /// The recorded outcome.
    pub original: OutcomeSummary,
    /// What the re-execution came to (counterfactual, or an exact replay that diverged).
    pub replayed: Option<OutcomeSummary>,
    /// Counterfactual: the outcome (status, state or output) differs.
    pub outcome_changed: bool,
    /// Counterfactual: the new agent asked something the recording cannot answer.
    pub could_not_replay: bool,
}

fn summary(report: &RunReport) -> OutcomeSummary {
    OutcomeSummary {
        status: report.status,
        state: report.state.clone(),
        output: report.output.clone(),
        reason: report.reason.as_ref().map(ToString::to_string),
    }
}

/// Replays run `run_id` (exact unless `options` carries a new agent or policy).
///
/// # Errors
/// Missing or altered stored artifacts; journal errors. A divergence is not an error: it
/// is in the report.
pub fn replay(
    journal: &Journal,
    run_id: &str,
    options: ReplayOptions,
) -> Result<ReplayReport, RunError> {
    let stored = StoredRun::load(journal, run_id)?;
    let records = journal.records(run_id)?;
    let original = report_from(&stored.meta, &records);
    // A journal that fails its own chain cannot be trusted as a recording.
    let verification = journal.verify(run_id)?;
    if let Some(problem) = verification.problem {
        let record = verification.record.and_then(|i| records.get(i as usize));
        return Ok(ReplayReport {
            run_id: run_id.to_string(),
            mode: if options.agent.is_some() || options.policy.is_some() {
                "counterfactual"
            } else {
                "exact"
            },
            from_checkpoint: options.from_checkpoint,
            identical: false,
            steps: 0,
            records_compared: 0,
            checkpoints_compared: 0,
            divergence: Some(Divergence {
                record: verification.record,
                step: record.and_then(|r| step_of(&r.body)),
                call: record.and_then(|r| call_of(&r.body)),
                expected: "a journal whose hash chain checks out".into(),
                actual: match record {
                    Some(r) => format!("{problem}; the record now reads: {}", r.body.describe()),
                    None => problem,
                },
                unanswerable: false,
            }),
            original: summary(&original),
            replayed: None,
            outcome_changed: false,
            could_not_replay: true,
        });
    }
    if options.agent.is_some() || options.policy.is_some() {
        return counterfactual(stored, &records, original, options);
    }
    // A fork's history starts at the checkpoint it was forked from.
    let from_checkpoint = options
        .from_checkpoint
        .or(stored.meta.parent.as_ref().map(|p| p.step));
    let from = from_checkpoint.unwrap_or(0);
    let (expected, recording) = after_checkpoint(&records, from);
    let host = crate::host_call::HostState::new(
        run_id,
        stored.policy.clone(),
        &stored.input,
        Effects::Recorded(recording),
    );
    let mut exec = match Execution::instantiate(&stored.agent, host) {
        Ok(exec) => exec,
        // A run that failed at instantiation replays as that same failure.
        Err(reason) => {
            let recorded = records.iter().find_map(|r| match &r.body {
                RecordBody::Outcome { reason, .. } => Some((r.index, reason.clone())),
                _ => None,
            });
            let divergence = match recorded {
                Some((_, Some(recorded))) if recorded == reason => None,
                other => Some(Divergence {
                    record: other.as_ref().map(|(index, _)| *index),
                    step: Some(0),
                    call: None,
                    expected: format!("{:?}", other.and_then(|(_, r)| r)),
                    actual: format!("instantiation failed: {reason}"),
                    unanswerable: false,
                }),
            };
            return Ok(ReplayReport {
                run_id: run_id.to_string(),
                mode: "exact",
                from_checkpoint: None,
                identical: divergence.is_none(),
                steps: 0,
                records_compared: u64::from(divergence.is_none()),
                checkpoints_compared: 0,
                divergence,
                original: summary(&original),
                replayed: None,
                outcome_changed: false,
                could_not_replay: false,
            });
        }
    };
    let mut checkpoints = 0u32;
    if let Some(step) = from_checkpoint {
        let checkpoint =
            journal
                .checkpoint(run_id, step)?
                .ok_or_else(|| RunError::NoCheckpoint {
                    run_id: run_id.to_string(),
                    step,
                })?;
        crate::run::restore(journal, &mut exec, &checkpoint, run_id)?;
        exec.host_mut().journal.expected = Some(Expected::new(expected));
    } else {
        // Checkpoint 0 (the freshly instantiated guest) is compared too.
        let zero = records
            .iter()
            .position(|r| matches!(r.body, RecordBody::Checkpoint { step: 0, .. }));
        let expected = records
            .iter()
            .skip(zero.unwrap_or(0))
            .map(|r| (r.index, r.body.clone()))
            .collect();
        exec.host_mut().journal.expected = Some(Expected::new(expected));
        crate::run::checkpoint_record(&mut exec, run_id)?;
        checkpoints += 1;
        exec.take_records();
    }
    let interrupted = stored.meta.status == Status::Running;
    let end = drive(&mut exec, from, run_id, |exec, boundary| {
        if boundary.commit.checkpoint.is_some() {
            checkpoints += 1;
        }
        let exhausted = exec
            .host()
            .journal
            .expected
            .as_ref()
            .is_some_and(|e| e.remaining() == 0);
        Ok(!(interrupted && exhausted))
    })?;
    let expected = exec.host_mut().journal.expected.take().unwrap_or_default();
    let mut divergence = expected.diverged.clone();
    if let (None, StepEnd::Diverged(d)) = (&divergence, &end) {
        divergence = Some((**d).clone());
    }
    if divergence.is_none() && expected.remaining() > 0 && !interrupted {
        divergence = Some(Divergence {
            record: None,
            step: None,
            call: None,
            expected: format!("{} more recorded records", expected.remaining()),
            actual: "the re-execution ended".into(),
            unanswerable: false,
        });
    }
    let host = exec.host();
    Ok(ReplayReport {
        run_id: run_id.to_string(),
        mode: "exact",
        from_checkpoint,
        identical: divergence.is_none(),
        steps: host.step,
        records_compared: expected.compared,
        checkpoints_compared: checkpoints,
        divergence,
        original: summary(&original),
        replayed: None,
        outcome_changed: false,
        could_not_replay: false,
    })
}

/// The parts of a record that are behaviour, for counterfactual comparison: fuel, memory
/// and step bookkeeping differ between agent builds without meaning anything.
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
        RecordBody::Outcome {
            status,
            state,
            output,
            reason,
            steps,
            host_calls,
            ..
        } => Some(RecordBody::Outcome {
            status: *status,
            state: state.clone(),
            output: output.clone(),
            reason: reason.clone(),
            steps: *steps,
            host_calls: *host_calls,
            fuel: 0,
        }),
        _ => None,
    }
}

fn counterfactual(
    stored: StoredRun,
    records: &[Record],
    original: RunReport,
    options: ReplayOptions,
) -> Result<ReplayReport, RunError> {
    let run_id = stored.meta.run_id.clone();
    let agent = options.agent.unwrap_or(stored.agent);
    let policy = options.policy.unwrap_or(stored.policy);
    let host = crate::host_call::HostState::new(
        &run_id,
        policy,
        &stored.input,
        Effects::Recorded(recording(records, false)),
    );
    let mut produced: Vec<RecordBody> = Vec::new();
    let end = match Execution::instantiate(&agent, host) {
        Ok(mut exec) => {
            let end = drive(&mut exec, 0, &run_id, |_, boundary| {
                produced.extend(boundary.commit.records);
                Ok(true)
            })?;
            let host = exec.host();
            (end, host.state.clone(), host.finished.clone(), host.step)
        }
        Err(reason) => (StepEnd::Failed(reason), String::new(), None, 0),
    };
    let (end, state, output, steps) = end;
    let old: Vec<(u64, RecordBody)> = records
        .iter()
        .filter_map(|r| behaviour(&r.body).map(|b| (r.index, b)))
        .collect();
    let new: Vec<RecordBody> = produced.iter().filter_map(behaviour).collect();
    let mut divergence = old
        .iter()
        .zip(&new)
        .find(|((_, a), b)| a != *b)
        .map(|((index, a), b)| Divergence {
            record: Some(*index),
            step: step_of(a),
            call: call_of(a),
            expected: a.describe(),
            actual: b.describe(),
            unanswerable: false,
        });
    let could_not_replay = matches!(&end, StepEnd::Diverged(d) if d.unanswerable);
    if let StepEnd::Diverged(d) = &end {
        divergence.get_or_insert_with(|| (**d).clone());
    }
    let replayed = OutcomeSummary {
        status: end.status(),
        state,
        output,
        reason: match &end {
            StepEnd::Failed(reason) => Some(reason.to_string()),
            StepEnd::Diverged(d) => Some(format!("could not replay: {}", d.actual)),
            _ => None,
        },
    };
    let original = summary(&original);
    let outcome_changed = !could_not_replay
        && (replayed.status != original.status
            || replayed.state != original.state
            || replayed.output != original.output);
    Ok(ReplayReport {
        run_id,
        mode: "counterfactual",
        from_checkpoint: None,
        identical: divergence.is_none() && !outcome_changed,
        steps,
        records_compared: new.len().min(old.len()) as u64,
        checkpoints_compared: 0,
        divergence,
        original,
        replayed: Some(replayed),
        outcome_changed,
        could_not_replay,
    })
}
