//! A run: one execution of one agent on one input under one policy, from start (or a
//! checkpoint) to its outcome, committing each step to the journal.
//!
//! Upholds invariant 4 (write-ahead): a step's records, its checkpoint and the run's
//! metadata are committed in one transaction at the step boundary, so a crash loses at
//! most the step in flight, and [`resume`] re-runs that step from the last checkpoint
//! with the same call sequence numbers, hence the same idempotency keys.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::agent::{Agent, LoadError};
use crate::bindings::{Bindings, BindingsError};
use crate::checkpoint::Checkpoint;
use crate::digest::Digest;
use crate::effects::{Effects, Recording};
use crate::host_call::HostState;
use crate::journal::{Commit, Journal, JournalError, Parent, RecordBody, RunMeta, now_ms};
use crate::outcome::{FailureReason, Limit, Status};
use crate::policy::{Policy, PolicyError};
use crate::replay::Expected;
use crate::step::{Execution, StepEnd};

/// Why Warden itself could not run, resume or replay a run. Guest misbehaviour is never
/// one of these: it is a recorded [`FailureReason`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
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
    /// The input is not JSON.
    #[error("run input is not valid JSON: {0}")]
    Input(String),
    /// The wasmtime engine could not start.
    #[error("wasmtime engine: {0}")]
    Engine(String),
    /// A stored artifact the run needs is missing or does not match its digest.
    #[error("run {run_id}: {what}")]
    Stored {
        /// The run.
        run_id: String,
        /// What is missing or wrong.
        what: String,
    },
    /// The run has no checkpoint at the step asked for.
    #[error("run {run_id} has no checkpoint at step {step} (see `warden show {run_id}`)")]
    NoCheckpoint {
        /// The run.
        run_id: String,
        /// The step asked for.
        step: u32,
    },
    /// The run is not in a state this operation applies to.
    #[error("run {run_id} is {status}; {what}")]
    WrongStatus {
        /// The run.
        run_id: String,
        /// Its status.
        status: Status,
        /// What would be needed.
        what: &'static str,
    },
}

/// What a run came to, as the CLI and an embedding service show it.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The run id.
    pub run_id: String,
    /// Where the run stands.
    pub status: Status,
    /// The state it ended in.
    pub state: String,
    /// The agent's output (JSON text) if it finished.
    pub output: Option<String>,
    /// Why it failed, if it did.
    pub reason: Option<FailureReason>,
    /// Steps run.
    pub steps: u32,
    /// Host calls made.
    pub host_calls: u32,
    /// Fuel used.
    pub fuel: u64,
    /// The states the run went through, in order.
    pub path: Vec<String>,
}

/// What to run.
#[derive(Debug)]
pub struct NewRun<'a> {
    /// The agent to run.
    pub agent: &'a Agent,
    /// The policy it runs under.
    pub policy: Arc<Policy>,
    /// The policy file's text, stored so the run can be replayed from the journal alone.
    pub policy_text: String,
    /// The providers of the policy's tools and models.
    pub bindings: Arc<Bindings>,
    /// The run's input, JSON text.
    pub input: String,
}

/// A fresh run id: UTC time to the second plus six hex digits.
pub fn new_run_id() -> String {
    let now = std::time::SystemTime::now();
    let stamp = humantime::format_rfc3339_seconds(now).to_string();
    let digits: String = stamp.chars().filter(char::is_ascii_digit).collect();
    let nonce = Digest::of(
        "warden-run-id",
        format!("{:?}{}", now, std::process::id()).as_bytes(),
    );
    let (date, time) = digits.split_at(digits.len().min(8));
    format!("{date}-{time}-{}", &nonce.to_string()[..6])
}

/// Starts a new run and drives it to its outcome.
///
/// # Errors
/// [`RunError`] for problems of Warden's own (journal, bindings, input); everything the
/// guest does ends in the returned report.
pub fn start(journal: &Journal, new: NewRun<'_>) -> Result<RunReport, RunError> {
    begin(journal, new, None)
}

pub(crate) fn begin(
    journal: &Journal,
    new: NewRun<'_>,
    parent: Option<(Parent, Checkpoint)>,
) -> Result<RunReport, RunError> {
    serde_json::from_str::<serde::de::IgnoredAny>(&new.input)
        .map_err(|e| RunError::Input(e.to_string()))?;
    new.bindings.covers(&new.policy.tools, &new.policy.models)?;
    let run_id = new_run_id();
    let policy_text = Digest::of("warden-blob-v1", new.policy_text.as_bytes());
    let input = Digest::of("warden-blob-v1", new.input.as_bytes());
    let now = now_ms();
    // A fork starts in the state of its parent's checkpoint.
    let first_state = parent
        .as_ref()
        .map_or_else(|| new.policy.initial.clone(), |(_, c)| c.state.clone());
    let first_step = parent.as_ref().map_or(0, |(p, _)| p.step);
    let meta = RunMeta {
        run_id: run_id.clone(),
        status: Status::Running,
        state: first_state.clone(),
        agent: new.agent.hash,
        policy: new.policy.hash(),
        policy_text,
        policy_name: new.policy.name.clone(),
        policy_version: new.policy.version.clone(),
        bindings: new.bindings.hash(),
        // Absolute: `warden resume` from another directory must load these bindings, hence
        // these ledgers, not another file with the same digest (its effects would repeat).
        bindings_path: new
            .bindings
            .source()
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()))
            .map(|p| p.display().to_string()),
        input,
        created_ms: now,
        updated_ms: now,
        steps: 0,
        host_calls: 0,
        fuel: 0,
        records: 0,
        head: Digest::ZERO,
        last_checkpoint: None,
        output: None,
        reason: None,
        parent: parent.as_ref().map(|(p, _)| p.clone()),
    };
    let started = RecordBody::RunStarted {
        run_id: run_id.clone(),
        agent: meta.agent,
        policy: meta.policy,
        policy_text,
        policy_name: meta.policy_name.clone(),
        policy_version: meta.policy_version.clone(),
        bindings: meta.bindings,
        bindings_path: meta.bindings_path.clone(),
        input,
        state: first_state,
        budgets: new.policy.budgets,
        parent: meta.parent.clone(),
        warden_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let blobs = vec![
        (new.agent.hash, new.agent.bytes.clone()),
        (policy_text, new.policy_text.clone().into_bytes()),
        (input, new.input.clone().into_bytes()),
    ];
    let host = HostState::new(
        &run_id,
        new.policy.clone(),
        &new.input,
        Effects::Live(new.bindings.clone()),
    );
    let mut exec = match Execution::instantiate(new.agent, host) {
        Ok(exec) => exec,
        Err(reason) => {
            let meta_state = meta.state.clone();
            let commit = Commit {
                create: Some(meta),
                records: vec![
                    started,
                    outcome_record(Status::Failed, &meta_state, None, Some(reason), 0, 0, 0),
                ],
                blobs,
                ..Commit::default()
            };
            journal.commit(&run_id, commit, |_| {})?;
            return report(journal, &run_id);
        }
    };
    if let Some((_, checkpoint)) = &parent {
        restore(journal, &mut exec, checkpoint, &run_id)?;
        // A fork continues the parent's step and call numbering (so inference ids in the
        // guest's memory stay unique) but has its own fuel and journal size.
        let host = exec.host_mut();
        host.fuel = 0;
        host.journal.bytes = 0;
    }
    let mut commit = Commit {
        create: Some(meta),
        records: vec![started],
        blobs,
        ..Commit::default()
    };
    checkpoint_into(&mut exec, &mut commit, &run_id)?;
    commit.records.extend(exec.take_records());
    journal.commit(&run_id, commit, |_| {})?;
    drive_live(journal, &run_id, &mut exec, first_step)?;
    report(journal, &run_id)
}

/// Continues an interrupted run from its last committed checkpoint. Steps committed after
/// that checkpoint are re-executed against their recorded responses (checked, not
/// re-committed); the step in flight is re-run live with the same idempotency keys.
///
/// # Errors
/// [`RunError::WrongStatus`] unless the run is `running` (interrupted); a changed
/// bindings file; journal errors.
pub fn resume(journal: &Journal, run_id: &str) -> Result<RunReport, RunError> {
    let stored = crate::replay::StoredRun::load(journal, run_id)?;
    let meta = &stored.meta;
    if let Some(problem) = journal.verify(run_id)?.problem {
        return Err(RunError::Stored {
            run_id: run_id.to_string(),
            what: format!("its journal does not verify, so it cannot be continued: {problem}"),
        });
    }
    if meta.status != Status::Running {
        return Err(RunError::WrongStatus {
            run_id: run_id.to_string(),
            status: meta.status,
            what: "only an interrupted (running) run can be resumed",
        });
    }
    // Always the recorded bindings file: a copy elsewhere with the same digest could point
    // its effects at another ledger, where the step in flight would act a second time.
    let bindings = match meta.bindings_path.as_ref().map(Path::new) {
        Some(path) => Bindings::from_file(path)?,
        None => Bindings::empty(),
    };
    if bindings.hash() != meta.bindings {
        return Err(RunError::Stored {
            run_id: run_id.to_string(),
            what: format!(
                "bindings changed since the run started (recorded {}, now {}); resume needs the same tools and models",
                meta.bindings.short(),
                bindings.hash().short()
            ),
        });
    }
    let step = meta.last_checkpoint.ok_or_else(|| RunError::Stored {
        run_id: run_id.to_string(),
        what: "has no checkpoint to resume from".into(),
    })?;
    let checkpoint = journal
        .checkpoint(run_id, step)?
        .ok_or_else(|| RunError::Stored {
            run_id: run_id.to_string(),
            what: format!("checkpoint {step} is missing"),
        })?;
    let records = journal.records(run_id)?;
    let (expected, recording) = crate::replay::after_checkpoint(&records, step);
    let committed = meta.steps;
    let effects = Effects::Recorded(Recording {
        exact: true,
        ..recording
    });
    let mut host = HostState::new(run_id, stored.policy.clone(), &stored.input, effects);
    host.journal.expected = Some(Expected::new(expected));
    let mut exec =
        Execution::instantiate(&stored.agent, host).map_err(|reason| RunError::Stored {
            run_id: run_id.to_string(),
            what: format!("cannot re-instantiate the agent: {reason}"),
        })?;
    restore(journal, &mut exec, &checkpoint, run_id)?;
    let mut step = step;
    // Catch up on committed steps (after the last checkpoint) without committing them
    // again: each must reproduce its records exactly, against its recorded answers.
    while step < committed {
        step += 1;
        let end = exec.run_step(step);
        exec.take_records();
        if !matches!(end, StepEnd::Continue) {
            return Err(RunError::Stored {
                run_id: run_id.to_string(),
                what: format!(
                    "re-executing committed step {step} did not reproduce it ({}); run `warden replay {run_id}` to see where it departs",
                    describe_end(&end)
                ),
            });
        }
    }
    let expected = exec.host_mut().journal.expected.take().unwrap_or_default();
    if let Some(divergence) = expected.diverged {
        return Err(RunError::Stored {
            run_id: run_id.to_string(),
            what: format!(
                "re-executing committed steps departed at record {:?}: expected {}, got {}",
                divergence.record, divergence.expected, divergence.actual
            ),
        });
    }
    exec.host_mut().effects = Effects::Live(Arc::new(bindings));
    drive_live(journal, run_id, &mut exec, step)?;
    report(journal, run_id)
}

/// A step end in words, for error messages.
fn describe_end(end: &StepEnd) -> String {
    match end {
        StepEnd::Continue => "the step continued".into(),
        StepEnd::Completed => "the run completed".into(),
        StepEnd::AwaitingReview => "the run stopped for review".into(),
        StepEnd::Failed(reason) => format!("failed: {reason}"),
        StepEnd::Diverged(d) => format!("expected {}, got {}", d.expected, d.actual),
    }
}

/// Restores `checkpoint` into a fresh execution, fetching each page from the journal
/// (each is checked against its digest).
pub(crate) fn restore(
    journal: &Journal,
    exec: &mut Execution,
    checkpoint: &Checkpoint,
    run_id: &str,
) -> Result<(), RunError> {
    exec.restore(checkpoint, |digest| {
        journal
            .page(digest)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("memory page {} is missing from the journal", digest.short()))
    })
    .map_err(|what| RunError::Stored {
        run_id: run_id.to_string(),
        what,
    })
}

/// Takes a checkpoint and pushes its record, discarding the pages (replay).
pub(crate) fn checkpoint_record(exec: &mut Execution, run_id: &str) -> Result<(), RunError> {
    checkpoint_into(exec, &mut Commit::default(), run_id)
}

/// Takes a checkpoint, adds it and its record to `commit`.
fn checkpoint_into(
    exec: &mut Execution,
    commit: &mut Commit,
    run_id: &str,
) -> Result<(), RunError> {
    let (checkpoint, capture) = exec.checkpoint().map_err(|what| RunError::Stored {
        run_id: run_id.to_string(),
        what,
    })?;
    let record = RecordBody::Checkpoint {
        step: checkpoint.step,
        digest: checkpoint.digest(),
    };
    // The checkpoint record is never over budget (it counts 0 bytes); a replay mismatch
    // here surfaces at the next record.
    let _ = exec.push(record);
    commit.pages = capture.changed;
    commit.checkpoint = Some(checkpoint);
    Ok(())
}

fn outcome_record(
    status: Status,
    state: &str,
    output: Option<String>,
    reason: Option<FailureReason>,
    steps: u32,
    host_calls: u32,
    fuel: u64,
) -> RecordBody {
    RecordBody::Outcome {
        status,
        state: state.to_string(),
        output,
        reason,
        steps,
        host_calls,
        fuel,
    }
}

/// What happens at one step boundary, shared by live runs and replays.
#[derive(Debug)]
pub struct Boundary {
    /// The steps run so far (the step that just ended, or the step budget if exceeded).
    pub step: u32,
    /// How the run stands after it.
    pub end: StepEnd,
    /// Records to commit (the step's records, its checkpoint, and the outcome if any).
    pub commit: Commit,
}

/// Runs steps after `from` until the run ends or `at_boundary` returns `false`, calling
/// `at_boundary` after each step. Returns how the last step ended.
///
/// # Errors
/// What `at_boundary` returns, or a checkpoint that cannot be taken.
pub fn drive(
    exec: &mut Execution,
    from: u32,
    run_id: &str,
    mut at_boundary: impl FnMut(&Execution, Boundary) -> Result<bool, RunError>,
) -> Result<StepEnd, RunError> {
    let mut step = from;
    loop {
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
        let status = Some(end.status()).filter(|s| *s != Status::Running);
        // A guest stopped inside a host call has live frames: its memory is no state to
        // continue from, so the last clean checkpoint stays the one to resume from.
        let ends_in_review_or_completion =
            matches!(end, StepEnd::Completed | StepEnd::AwaitingReview)
                && !exec.host().stopped_mid_step;
        // A checkpoint at the end of a completed or reviewed run lets a review resume it.
        if ends_in_review_or_completion
            || (status.is_none() && step.is_multiple_of(budgets.checkpoint_every.max(1)))
        {
            checkpoint_into(exec, &mut commit, run_id)?;
        }
        if !matches!(end, StepEnd::Diverged(_))
            && let Some(status) = status
        {
            let host = exec.host();
            let reason = match &end {
                StepEnd::Failed(reason) => Some(reason.clone()),
                _ => None,
            };
            let record = outcome_record(
                status,
                &host.state,
                host.finished.clone(),
                reason,
                steps,
                host.host_calls,
                host.fuel,
            );
            // The outcome is always recorded, even past the journal budget.
            let _ = exec.push(record);
        }
        if let Some(divergence) = exec
            .host()
            .journal
            .expected
            .as_ref()
            .and_then(|e| e.diverged.clone())
        {
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

fn drive_live(
    journal: &Journal,
    run_id: &str,
    exec: &mut Execution,
    from: u32,
) -> Result<(), RunError> {
    drive(exec, from, run_id, |exec, boundary| {
        let host = exec.host();
        let (state, host_calls, fuel) = (host.state.clone(), host.host_calls, host.fuel);
        let step = boundary.step;
        // An ended run's summary comes from its Outcome record (see `Journal::commit`).
        journal.commit(run_id, boundary.commit, |meta| {
            meta.state = state;
            meta.steps = step;
            meta.host_calls = host_calls;
            meta.fuel = fuel;
        })?;
        Ok(true)
    })?;
    Ok(())
}

/// The report of a run as the journal has it.
///
/// # Errors
/// Journal errors.
pub fn report(journal: &Journal, run_id: &str) -> Result<RunReport, RunError> {
    let meta = journal.run(run_id)?;
    let records = journal.records(run_id)?;
    Ok(report_from(&meta, &records))
}

/// Builds a report from metadata and records.
pub fn report_from(meta: &RunMeta, records: &[crate::journal::Record]) -> RunReport {
    let mut path = Vec::new();
    for record in records {
        match &record.body {
            RecordBody::RunStarted { state, .. } => path.push(state.clone()),
            RecordBody::Transition { to, .. } => path.push(to.clone()),
            _ => {}
        }
    }
    RunReport {
        run_id: meta.run_id.clone(),
        status: meta.status,
        state: meta.state.clone(),
        output: meta.output.clone(),
        reason: meta.reason.clone(),
        steps: meta.steps,
        host_calls: meta.host_calls,
        fuel: meta.fuel,
        path,
    }
}
