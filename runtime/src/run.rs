//! A run: one execution of one agent on one input under one policy, from start (or a
//! fork's checkpoint) to its outcome, committing each step to the journal.
//!
//! Upholds invariant 4 (write-ahead): a step's records, its checkpoint and the run's
//! summary are committed in one transaction at the step boundary, so a crash loses at
//! most the step in flight, which `resume` re-runs with the same call numbers, hence the
//! same idempotency keys.

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::checkpoint::Checkpoint;
use crate::digest::{Digest, domain};
use crate::driver::{self, Opened, Opening, Restore};
use crate::edition::Edition;
use crate::effects::Effects;
use crate::error::Error;
use crate::journal::{
    Bodies, Commit, InheritedEvidence, Journal, Parent, Progress, Record, RecordBody, RunMeta,
    RunStart, kind, now_ms,
};
use crate::outcome::{Outcome, Status};
use crate::recording::{self, Answering, Recording};
use crate::resolve::NewRun;
use crate::step::Execution;

/// What a run came to, as the CLI and an embedding service show it.
///
/// JSON (`warden run --json`): `run_id`, `status`, `state`, `output` (the agent's output
/// as JSON, or null), `reason` (why it failed, in words, or null), `failure` (the typed
/// reason, or null), `steps`, `host_calls`, `fuel`, `path` (the states in order).
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    /// The run id.
    pub run_id: String,
    /// Where the run stands and what it came to.
    pub outcome: Outcome,
    /// The states the run went through, in order.
    pub path: Vec<String>,
}

impl Serialize for RunReport {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let outcome = &self.outcome;
        let output = outcome
            .output
            .as_deref()
            .and_then(|o| serde_json::from_str::<serde_json::Value>(o).ok());
        let mut s = serializer.serialize_struct("RunReport", 10)?;
        s.serialize_field("run_id", &self.run_id)?;
        s.serialize_field("status", &outcome.status)?;
        s.serialize_field("state", &outcome.state)?;
        s.serialize_field("output", &output)?;
        s.serialize_field("reason", &outcome.reason.as_ref().map(ToString::to_string))?;
        s.serialize_field("failure", &outcome.reason)?;
        s.serialize_field("steps", &outcome.steps)?;
        s.serialize_field("host_calls", &outcome.host_calls)?;
        s.serialize_field("fuel", &outcome.fuel)?;
        s.serialize_field("path", &self.path)?;
        s.end()
    }
}

impl RunReport {
    /// The report of a run from its summary and records.
    pub fn from_records(meta: &RunMeta, records: &[Record]) -> RunReport {
        let mut path = Vec::new();
        extend_path(&mut path, records.iter().map(|record| &record.body));
        RunReport {
            run_id: meta.run_id.clone(),
            outcome: meta.outcome.clone(),
            path,
        }
    }

    /// The report of a run as the journal has it.
    ///
    /// # Errors
    /// Journal errors, or no such run.
    pub fn load(journal: &Journal, run_id: &str) -> Result<RunReport, Error> {
        let meta = journal.run(run_id)?;
        let records = journal.records(run_id)?;
        Ok(RunReport::from_records(&meta, &records))
    }
}

/// Adds the states `bodies` enter (a run's start, then each transition) to `path`.
fn extend_path<'a>(path: &mut Vec<String>, bodies: impl Iterator<Item = &'a RecordBody>) {
    path.extend(bodies.filter_map(|body| match body {
        RecordBody::Transition { to, .. } => Some(to.clone()),
        body => body.run_start().map(|start| start.state),
    }));
}

/// [`extend_path`] from encoded bodies, decoding only those that can enter a state.
fn extend_path_encoded(path: &mut Vec<String>, bodies: &Bodies) {
    let kinds = [kind::RUN_STARTED, kind::STARTED, kind::TRANSITION];
    let entering: Vec<RecordBody> = bodies.of_kinds(&kinds).collect();
    extend_path(path, entering.iter());
}

/// A fresh run id: UTC time to the millisecond (`20261201-204823.123`) plus twelve hex
/// digits of a digest of the time to the nanosecond, the process id and a count of the ids
/// this process made: runs started at the same instant on many threads (a batch) hash
/// different text, and 48 bits make two ids of the same millisecond alike about once in
/// 10^14 pairs. (Six digits of the time and process id alone gave a batch two runs with
/// one id.) Ids sort by time to the millisecond, so the runs in progress at any moment
/// sit together in the journal's tables, and a commit rewrites fewer of their pages than
/// with ids scattered across the second (a batch's fsyncs wrote 22% fewer pages).
pub(crate) fn new_run_id() -> String {
    static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let made = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    run_id_at(std::time::SystemTime::now(), made)
}

/// The run id made at `now` by this process's `made`-th call.
fn run_id_at(now: std::time::SystemTime, made: u64) -> String {
    let stamp = humantime::format_rfc3339_millis(now).to_string();
    let digits: String = stamp.chars().filter(char::is_ascii_digit).collect();
    let nonce = Digest::of(
        domain::RUN_ID,
        format!("{:?} {} {made}", now, std::process::id()).as_bytes(),
    );
    let (date, time) = digits.split_at(digits.len().min(8));
    let (time, millis) = time.split_at(time.len().min(6));
    format!("{date}-{time}.{millis}-{}", &nonce.to_string()[..12])
}

/// Starts a new run and drives it to its outcome.
///
/// # Errors
/// [`Error`] for problems of Warden's own (journal, bindings); everything the guest does
/// ends in the returned report.
pub fn start(journal: &Journal, new: &NewRun) -> Result<RunReport, Error> {
    begin(journal, new, None)
}

/// Where a fork starts: its parent's checkpoint, and the parent's records up to it.
#[derive(Debug)]
pub(crate) struct ForkPoint {
    /// The parent run and step.
    pub parent: Parent,
    /// The parent's checkpoint at that step.
    pub checkpoint: Checkpoint,
    /// The parent's records (at least up to the checkpoint).
    pub records: Vec<Record>,
    /// Whether the fork's effectful tools act on the world (the operator's explicit
    /// choice); otherwise they answer from the parent's recording or are not performed.
    pub live_effects: bool,
}

/// Starts a run, from the beginning or (a fork) from a parent's checkpoint.
pub(crate) fn begin(
    journal: &Journal,
    new: &NewRun,
    fork: Option<ForkPoint>,
) -> Result<RunReport, Error> {
    let parent = fork
        .as_ref()
        .map(|f| (f.parent.clone(), f.checkpoint.clone()));
    // Parsed as the gates and the input contract parse it (nesting deeper than they read,
    // or a lone surrogate in a string, is refused here, not recorded as a failed run).
    serde_json::from_str::<serde_json::Value>(&new.input).map_err(|e| Error::input(&e))?;
    // A new run's input means one thing (replay and resume re-read recorded inputs, which
    // never pass here).
    if let Some(key) = crate::host_call::duplicate_key(&new.input) {
        return Err(Error::InputDuplicateKey { key });
    }
    if let Some(problem) = new
        .submitted_by
        .as_deref()
        .and_then(crate::identity::problem)
    {
        return Err(Error::Argument {
            field: "--submitter (by default $USER)",
            problem,
        });
    }
    new.bindings.covers(&new.policy)?;
    let run_id = new_run_id();
    let span = tracing::info_span!(
        "run",
        run_id = %run_id,
        policy = %new.policy.name,
        status = tracing::field::Empty,
        state = tracing::field::Empty,
    )
    .entered();
    let live_effects = fork.as_ref().is_none_or(|f| f.live_effects);
    let start = run_start(&run_id, new, parent.as_ref(), live_effects);
    let first_step = parent.as_ref().map_or(0, |(p, _)| p.step);
    let effects = match &fork {
        Some(f) if !f.live_effects => Effects::Fork {
            bindings: new.bindings.clone(),
            parent: Recording::of(&f.records, Answering::ByRequest),
        },
        _ => Effects::Live(new.bindings.clone()),
    };
    let opening = Opening {
        run_id: &run_id,
        agent: &new.agent,
        policy: new.policy.clone(),
        input: &new.input,
        effects,
        edition: Edition::CURRENT,
    };
    let restore = fork.as_ref().map(|f| Restore {
        journal,
        checkpoint: &f.checkpoint,
        records: &f.records,
        // A fork's input may differ from its parent's: it may rest on the parent's
        // recorded facts, never on an inference made for the parent's input.
        inferences: false,
    });
    // The input contract is checked before the first step: an input that breaks it is a
    // recorded failure, and the agent never sees it.
    let opened = match driver::admit(&new.policy, &new.input) {
        Some(rejected) => Opened::Failed(rejected),
        None => driver::open(opening, restore)?,
    };
    let mut commit = Commit {
        create: Some(summary(&start)),
        records: vec![RecordBody::Started(Box::new(start.clone()))].into(),
        blobs: [
            (new.agent.hash, new.agent.bytes.clone()),
            (start.policy_text, new.policy_text.as_bytes().into()),
            (start.input, new.input.as_bytes().into()),
        ]
        .into_iter()
        // Each model card, so that which model version answered can be read from the
        // journal alone, years later.
        .chain(
            new.bindings
                .cards()
                .into_iter()
                .map(|(card, bytes)| (card.card, bytes.into())),
        )
        .collect(),
        ..Commit::default()
    };
    let mut exec = match opened {
        Opened::Ready(exec) => exec,
        Opened::Failed(reason) => {
            commit.records.push(&RecordBody::Outcome(Box::new(Outcome {
                status: Status::Failed,
                state: start.state.clone(),
                output: None,
                reason: Some(reason),
                steps: 0,
                host_calls: 0,
                fuel: 0,
            })));
            journal.commit(&run_id, commit)?;
            return RunReport::load(journal, &run_id);
        }
    };
    if parent.is_some() {
        // A fork continues the parent's step and call numbering (so inference ids in the
        // guest's memory stay unique) but has its own fuel and journal size.
        let host = exec.host_mut();
        host.fuel = 0;
        host.journal.bytes = 0;
        // Inferences are never inherited: the fork's gates rest on its own.
        host.inferences.clear();
        // What the fork inherits is written in its own journal, so that it replays and
        // resumes from its own records.
        if let Some(evidence) = &host.evidence {
            let (facts, visit, calls) = evidence.inheritance();
            commit
                .records
                .push(&RecordBody::Inherited(Box::new(InheritedEvidence {
                    facts,
                    visit,
                    calls,
                })));
            // The review the agent reads, as its parent recorded it.
            if let (Some(_), Some(fork)) = (&evidence.review, &fork) {
                let before = recording::until_checkpoint(&fork.records, fork.parent.step);
                let review = before.iter().rev().find_map(|r| match &r.body {
                    RecordBody::Review(review) | RecordBody::InheritedReview(review) => {
                        Some(review.clone())
                    }
                    _ => None,
                });
                if let Some(review) = review {
                    commit.records.push(&RecordBody::InheritedReview(review));
                }
            }
        }
    }
    driver::capture(&mut exec, &mut commit)?;
    commit.records.append(&exec.take_records());
    // The report is built from exactly what is committed, as `RunReport::load` would
    // build it from the journal, without reading the run back.
    let mut path = Vec::new();
    extend_path_encoded(&mut path, &commit.records);
    let mut meta = journal.commit(&run_id, commit)?;
    if let Some(last) = commit_steps(journal, &mut exec, first_step, &mut |records| {
        extend_path_encoded(&mut path, records);
    })? {
        meta = last;
    }
    let report = RunReport {
        run_id: run_id.clone(),
        outcome: meta.outcome,
        path,
    };
    span.record("status", report.outcome.status.as_str());
    span.record("state", report.outcome.state.as_str());
    drop(span);
    Ok(report)
}

/// What the first record of a new run says.
fn run_start(
    run_id: &str,
    new: &NewRun,
    parent: Option<&(Parent, Checkpoint)>,
    live_effects: bool,
) -> RunStart {
    RunStart {
        run_id: run_id.to_string(),
        agent: new.agent.hash,
        policy: new.policy.hash(),
        policy_text: Digest::of(domain::BLOB, new.policy_text.as_bytes()),
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
        input: Digest::of(domain::BLOB, new.input.as_bytes()),
        // A fork starts in the state of its parent's checkpoint.
        state: parent.map_or_else(|| new.policy.initial.clone(), |(_, c)| c.state.clone()),
        budgets: new.policy.budgets,
        parent: parent.map(|(p, _)| p.clone()),
        warden_version: env!("CARGO_PKG_VERSION").to_string(),
        edition: Edition::CURRENT,
        engine: crate::engine::ENGINE_VERSION.to_string(),
        submitted_by: new.submitted_by.clone(),
        models: new
            .bindings
            .cards()
            .into_iter()
            .map(|(card, _)| card)
            .collect(),
        live_effects,
    }
}

/// The summary of a run that has just started.
fn summary(start: &RunStart) -> RunMeta {
    let now = now_ms();
    RunMeta {
        run_id: start.run_id.clone(),
        agent: start.agent,
        policy: start.policy,
        policy_text: start.policy_text,
        policy_name: start.policy_name.clone(),
        policy_version: start.policy_version.clone(),
        bindings: start.bindings,
        bindings_path: start.bindings_path.clone(),
        input: start.input,
        parent: start.parent.clone(),
        created_ms: now,
        updated_ms: now,
        records: 0,
        head: Digest::ZERO,
        last_checkpoint: None,
        outcome: Outcome {
            status: Status::Running,
            state: start.state.clone(),
            output: None,
            reason: None,
            steps: 0,
            host_calls: 0,
            fuel: 0,
        },
    }
}

/// Drives `exec` live from step `from`, committing every step boundary, and shows
/// `committed` the records of each commit it makes (an error ends it all). Returns the
/// run's summary after the last commit, if there was one.
pub(crate) fn commit_steps(
    journal: &Journal,
    exec: &mut Execution,
    from: u32,
    committed: &mut dyn FnMut(&Bodies),
) -> Result<Option<RunMeta>, Error> {
    let run_id = exec.host().run_id.clone();
    let mut last = None;
    driver::drive(exec, from, |exec, boundary| {
        let progress = driver::outcome_of(exec, &boundary.end, boundary.step);
        // An ended run's summary comes from its Outcome record (see `Journal::commit`).
        let mut commit = boundary.commit;
        commit.progress = Some(Progress {
            state: progress.state,
            steps: progress.steps,
            host_calls: progress.host_calls,
            fuel: progress.fuel,
            reopened: false,
        });
        committed(&commit.records);
        last = Some(journal.commit(&run_id, commit)?);
        Ok(true)
    })?;
    Ok(last)
}

#[cfg(test)]
mod tests {
    /// Ids made at the same instant on many threads are all different (a batch once
    /// failed an input: two workers drew the same id).
    #[test]
    fn run_ids_made_at_once_on_many_threads_are_unique() {
        let ids: Vec<String> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| (0..20_000).map(|_| super::new_run_id()).collect::<Vec<_>>())
                })
                .collect();
            threads
                .into_iter()
                .flat_map(|t| t.join().unwrap_or_default())
                .collect()
        });
        let unique: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(ids.len(), 160_000);
        assert_eq!(unique.len(), ids.len());
        for id in &ids {
            let shape: String = id
                .chars()
                .map(|c| if c.is_ascii_hexdigit() { 'x' } else { c })
                .collect();
            assert_eq!(shape, "xxxxxxxx-xxxxxx.xxx-xxxxxxxxxxxx", "{id}");
        }
        // Ids sort by the time they were made, to the millisecond, whatever their digests.
        let at = |ms: u64| {
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_796_000_000_000 + ms)
        };
        let ids: Vec<String> = (0..3_000)
            .map(|ms| super::run_id_at(at(ms), 3_000 - ms))
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(&ids[1][..19], "20261130-005320.001");
    }
}
