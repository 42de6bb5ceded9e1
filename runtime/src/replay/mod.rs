//! Replay: re-execute a run from its journal alone, answering every tool and model call
//! from the recording, and report the first place where anything differs.
//!
//! Upholds invariant 3 (determinism): exact replay compares every record the re-execution
//! produces (request bytes, fuel at every call, decisions, responses, transitions,
//! checkpoint digests of memory and globals, the outcome) with the recorded one, and stops
//! at the first difference. Counterfactual replay (`counterfactual`) runs a new agent or
//! policy against the recorded answers and reports where its behaviour departs and how
//! the outcome changes.

mod counterfactual;

use std::fmt;
use std::ops::ControlFlow;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use serde::Serialize;

use crate::agent::Agent;
use crate::driver::{self, Opened, Opening, Restore};
use crate::effects::Effects;
use crate::error::Error;
use crate::journal::{Checked, Journal, Record, RecordBody, RunMeta};
use crate::outcome::{Outcome, Status};
use crate::policy::Policy;
use crate::recording::{self, Answering, Divergence, Expected, Recording};
use crate::step::StepEnd;
use crate::stored_run::StoredRun;

/// What to replay against.
#[derive(Debug, Default, Clone)]
pub struct ReplayOptions {
    /// Start from this checkpoint instead of the beginning (exact replay only).
    pub from_checkpoint: Option<u32>,
    /// A new agent (counterfactual).
    pub agent: Option<Agent>,
    /// A new policy (counterfactual).
    pub policy: Option<Arc<Policy>>,
}

impl ReplayOptions {
    fn mode(&self) -> ReplayMode {
        if self.agent.is_some() || self.policy.is_some() {
            ReplayMode::Counterfactual
        } else {
            ReplayMode::Exact
        }
    }
}

/// Exact (the recorded agent and policy) or counterfactual (a new one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayMode {
    /// Re-execute the recorded agent under the recorded policy; compare bit for bit.
    Exact,
    /// Run a new agent or policy against the recorded answers; compare behaviour.
    Counterfactual,
}

/// What a replay concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayVerdict {
    /// Exact: every record reproduced bit for bit, to the recorded outcome.
    Identical,
    /// Exact: the re-execution departed from the recording (see the divergence).
    Diverged,
    /// Exact: every recorded record reproduced, but the run has not ended, so there is no
    /// outcome to confirm.
    Incomplete,
    /// The run could not be re-executed: its journal does not verify, a stored artifact
    /// is missing or altered, or (counterfactual) the new agent asked something the
    /// recording cannot answer.
    CouldNotReplay,
    /// Counterfactual: the new agent or policy reaches the same outcome.
    Unchanged,
    /// Counterfactual: the status, state or failure reason differs: the run ends
    /// otherwise.
    DifferentOutcome,
    /// Counterfactual: the run ends with the same status in the same state, but its output
    /// differs (the decision's reasons, say). Not a confirmation: what the run hands on
    /// changed, so it counts as a change (exit code 12) as a different outcome does.
    DifferentOutput,
    /// Counterfactual: the new agent or policy would have sent the run to human review,
    /// where the recording has no reviewer's answer for it (none is invented).
    NeedsReview,
}

impl ReplayVerdict {
    /// Whether the replay confirms the recording (identical, or a counterfactual that
    /// changes nothing).
    pub fn confirms(self) -> bool {
        matches!(self, ReplayVerdict::Identical | ReplayVerdict::Unchanged)
    }

    /// The verdict in words, as the CLI's tables print it.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplayVerdict::Identical => "identical",
            ReplayVerdict::Diverged => "diverged",
            ReplayVerdict::Incomplete => "incomplete",
            ReplayVerdict::CouldNotReplay => "could not replay",
            ReplayVerdict::Unchanged => "unchanged",
            ReplayVerdict::DifferentOutcome => "different outcome",
            ReplayVerdict::DifferentOutput => "different output",
            ReplayVerdict::NeedsReview => "would need review",
        }
    }
}

impl fmt::Display for ReplayVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// What a replay found. Serialized as `warden replay --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    /// The run replayed.
    pub run_id: String,
    /// Exact or counterfactual.
    pub mode: ReplayMode,
    /// What the replay concluded.
    pub verdict: ReplayVerdict,
    /// The checkpoint the replay started from.
    pub from_checkpoint: Option<u32>,
    /// Steps re-executed.
    pub steps: u32,
    /// Records compared with the recording.
    pub records_compared: u64,
    /// Checkpoints whose digests were compared.
    pub checkpoints_compared: u32,
    /// The first difference (exact), or the first departure in behaviour
    /// (counterfactual), or why the run could not be replayed.
    pub divergence: Option<Divergence>,
    /// The recorded outcome.
    pub original: Outcome,
    /// What the re-execution came to (counterfactual).
    pub replayed: Option<Outcome>,
    /// Counterfactual: the request the recording could not answer, which stopped the
    /// re-execution (a counterfactual never invents an answer).
    pub unanswered: Option<Divergence>,
}

impl ReplayReport {
    fn new(meta: &RunMeta, mode: ReplayMode) -> ReplayReport {
        ReplayReport {
            run_id: meta.run_id.clone(),
            mode,
            verdict: ReplayVerdict::CouldNotReplay,
            from_checkpoint: None,
            steps: 0,
            records_compared: 0,
            checkpoints_compared: 0,
            divergence: None,
            original: meta.outcome.clone(),
            replayed: None,
            unanswered: None,
        }
    }

    /// A run that could not be re-executed at all, and why.
    fn could_not_replay(meta: &RunMeta, mode: ReplayMode, why: Divergence) -> ReplayReport {
        ReplayReport {
            divergence: Some(why),
            ..ReplayReport::new(meta, mode)
        }
    }
}

/// Replays run `run_id` (exact unless `options` carries a new agent or policy).
///
/// # Errors
/// Journal errors, or no such run. A divergence, a broken chain or an altered artifact is
/// not an error: it is the report's verdict.
pub fn replay(
    journal: &Journal,
    run_id: &str,
    options: &ReplayOptions,
) -> Result<ReplayReport, Error> {
    replay_checked(journal, run_id, options, &Checked::default())
}

/// [`replay`] within an operation over many runs, which verifies each page and blob the
/// runs share once (`checked`).
fn replay_checked(
    journal: &Journal,
    run_id: &str,
    options: &ReplayOptions,
    checked: &Checked,
) -> Result<ReplayReport, Error> {
    let _span = tracing::info_span!("replay", run_id).entered();
    let meta = journal.run(run_id)?;
    let mode = options.mode();
    // A journal that fails its own chain cannot be trusted as a recording.
    let verification = journal.verify_checked(run_id, checked)?;
    if let Some(problem) = &verification.problem {
        let records = journal.records(run_id).unwrap_or_default();
        let record = verification.record.and_then(|i| records.get(i as usize));
        let why = Divergence {
            record: verification.record,
            step: record.and_then(|r| r.body.step()),
            call: record.and_then(|r| r.body.call()),
            expected: "a journal whose hash chain checks out".into(),
            actual: match record {
                Some(r) => format!("{problem}; the record now reads: {}", r.body.describe()),
                None => problem.clone(),
            },
            unanswerable: false,
        };
        return Ok(ReplayReport::could_not_replay(&meta, mode, why));
    }
    let stored = match StoredRun::load_checked(journal, run_id, checked) {
        Ok(stored) => stored,
        Err(e) if e.is_integrity() => {
            let why = Divergence::at_end(
                "a run whose module, policy and input load from the journal",
                crate::error::chain(&e),
            );
            return Ok(ReplayReport::could_not_replay(&meta, mode, why));
        }
        Err(e) => return Err(e.into()),
    };
    match mode {
        ReplayMode::Exact => exact(journal, stored, options.from_checkpoint),
        ReplayMode::Counterfactual => counterfactual::run(stored, options),
    }
}

/// Replays every run of the journal, oldest first, on one thread per processor (replays
/// only read). A run that cannot be replayed is a report with that verdict, never the end
/// of the list. `progress` sees each report as it is made, in order. Holds every report:
/// over a large population, [`replay_each`] hands each on instead.
///
/// # Errors
/// As [`replay_each`].
pub fn replay_all(
    journal: &Journal,
    options: &ReplayOptions,
    progress: &(dyn Fn(&ReplayReport) + Sync),
) -> Result<Vec<ReplayReport>, Error> {
    let mut reports = Vec::new();
    replay_each(journal, options, &mut |report| {
        progress(&report);
        reports.push(report);
        ControlFlow::Continue(())
    })?;
    Ok(reports)
}

/// How many runs the workers may replay ahead of the oldest whose report is not yet
/// handed on: what bounds the reports held at once, whatever the population.
const AHEAD: usize = 256;

/// Replays every run of the journal on one thread per processor, as [`replay_all`] does,
/// and hands each report to `each` in the order of the runs (oldest first) as soon as the
/// runs before it are done, holding at most a few hundred reports at once. `each` returns
/// [`ControlFlow::Break`] to stop (a closed output, say): the runs in flight end, no
/// others start.
///
/// # Errors
/// Journal errors reading the list of runs, or a run's summary that could be read when
/// the runs were listed and no longer can.
pub fn replay_each(
    journal: &Journal,
    options: &ReplayOptions,
    each: &mut dyn FnMut(ReplayReport) -> ControlFlow<()>,
) -> Result<(), Error> {
    // The ids only (and the key each summary is under): each summary is read when its
    // run is replayed.
    let runs = journal.run_keys()?;
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(runs.len().max(1));
    let checked = Checked::default();
    // (the next run to take, the number of reports handed on, whether to stop)
    let window = Mutex::new((0usize, 0usize, false));
    let moved = Condvar::new();
    let lock = || window.lock().unwrap_or_else(PoisonError::into_inner);
    let (done, reports) = std::sync::mpsc::channel::<(usize, Result<ReplayReport, Error>)>();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let done = done.clone();
            let (runs, checked, window, moved) = (&runs, &checked, &window, &moved);
            scope.spawn(move || {
                // A worker that panics stops the others, which would otherwise wait
                // for its report forever.
                let _stop = StopOnDrop {
                    window,
                    moved,
                    panicking_only: true,
                };
                loop {
                    let at = {
                        let mut window = lock();
                        while !window.2 && window.0 < runs.len() && window.0 >= window.1 + AHEAD {
                            window = moved.wait(window).unwrap_or_else(PoisonError::into_inner);
                        }
                        if window.2 || window.0 >= runs.len() {
                            break;
                        }
                        window.0 += 1;
                        window.0 - 1
                    };
                    let (key, run_id) = &runs[at];
                    let report = replay_checked(journal, run_id, options, checked).or_else(|e| {
                        let why = Divergence::at_end(
                            "a run that can be read from the journal",
                            crate::error::chain(&e),
                        );
                        // Its summary was read a moment ago, listing the runs, under its
                        // key (a summary moved to another key names a run not found).
                        let meta = journal.run(key)?;
                        Ok(ReplayReport::could_not_replay(&meta, options.mode(), why))
                    });
                    if done.send((at, report)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done);
        // However this ends (`each` stopped, an error, a panic in `each`), the workers
        // waiting for room are woken and stop.
        let _stop = StopOnDrop {
            window: &window,
            moved: &moved,
            panicking_only: false,
        };
        let mut waiting = std::collections::BTreeMap::new();
        let mut next = 0;
        let mut result = Ok(());
        'handing: for (at, report) in reports {
            waiting.insert(at, report);
            while let Some(report) = waiting.remove(&next) {
                next += 1;
                lock().1 = next;
                moved.notify_all();
                let stop = match report {
                    Ok(report) => each(report).is_break(),
                    Err(e) => {
                        result = Err(e);
                        true
                    }
                };
                if stop {
                    break 'handing;
                }
            }
        }
        result
    })
}

/// Tells the workers of [`replay_each`] to stop when dropped (with `panicking_only`, only
/// when dropped by a panic).
struct StopOnDrop<'a> {
    window: &'a Mutex<(usize, usize, bool)>,
    moved: &'a Condvar,
    panicking_only: bool,
}

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        if !self.panicking_only || std::thread::panicking() {
            self.window.lock().unwrap_or_else(PoisonError::into_inner).2 = true;
            self.moved.notify_all();
        }
    }
}

/// The report of an exact replay that failed before the first step (`what`: the input
/// contract refused the input, or the module could not be instantiated): identical if
/// the run recorded that same failure as its outcome.
fn failed_at_start(
    mut report: ReplayReport,
    stored: &StoredRun,
    reason: &crate::outcome::FailureReason,
    what: &str,
) -> ReplayReport {
    let recorded = stored.records.iter().find_map(|r| match &r.body {
        RecordBody::Outcome(outcome) => Some((r.index, outcome.reason.clone())),
        _ => None,
    });
    report.divergence = match recorded {
        Some((_, Some(recorded))) if recorded == *reason => None,
        other => Some(Divergence {
            record: other.as_ref().map(|(index, _)| *index),
            step: Some(0),
            call: None,
            expected: format!("{:?}", other.and_then(|(_, r)| r)),
            actual: format!("{what}: {reason}"),
            unanswerable: false,
        }),
    };
    report.records_compared = u64::from(report.divergence.is_none());
    report.verdict = if report.divergence.is_none() {
        ReplayVerdict::Identical
    } else {
        ReplayVerdict::Diverged
    };
    report
}

fn exact(
    journal: &Journal,
    stored: StoredRun,
    from_checkpoint: Option<u32>,
) -> Result<ReplayReport, Error> {
    let run_id = stored.meta.run_id.clone();
    let mut report = ReplayReport::new(&stored.meta, ReplayMode::Exact);
    // A fork's history starts at the checkpoint it was forked from.
    let from_checkpoint = from_checkpoint.or(stored.start.parent.as_ref().map(|p| p.step));
    report.from_checkpoint = from_checkpoint;
    // Replayed from its beginning, a run (or a fork) meets its input contract first, as
    // it did when it began.
    let at_start = from_checkpoint == stored.start.parent.as_ref().map(|p| p.step);
    if at_start && let Some(reason) = driver::admit(&stored.policy, &stored.input) {
        return Ok(failed_at_start(report, &stored, &reason, "input rejected"));
    }
    let checkpoint = match from_checkpoint {
        Some(step) => Some(journal.recorded_checkpoint(&run_id, step)?.ok_or_else(|| {
            Error::NoCheckpoint {
                run_id: run_id.clone(),
                step,
            }
        })?),
        None => None,
    };
    let opening = Opening {
        run_id: &run_id,
        agent: &stored.agent,
        policy: stored.policy.clone(),
        input: &stored.input,
        effects: Effects::Recorded(Recording::of(&stored.records, Answering::ByCall)),
        edition: stored.start.edition,
    };
    let restore = checkpoint.as_ref().map(|checkpoint| Restore {
        journal,
        checkpoint,
        records: &stored.records,
        inferences: true,
    });
    let opened = match driver::open(opening, restore) {
        Ok(opened) => opened,
        Err(Error::Checkpoint { source, .. }) => {
            let why =
                Divergence::at_end("a checkpoint that restores", crate::error::chain(&source));
            return Ok(ReplayReport::could_not_replay(
                &stored.meta,
                ReplayMode::Exact,
                why,
            ));
        }
        Err(e) => return Err(e),
    };
    let mut exec = match opened {
        Opened::Ready(exec) => exec,
        // A run that failed at instantiation replays as that same failure.
        Opened::Failed(reason) => {
            return Ok(failed_at_start(
                report,
                &stored,
                &reason,
                "instantiation failed",
            ));
        }
    };
    let from = from_checkpoint.unwrap_or(0);
    let rest = recording::after_checkpoint(&stored.records, from);
    if let (Some(checkpoint), false) = (
        &checkpoint,
        rest.iter()
            .any(|r| matches!(r.body, RecordBody::StepStarted { .. })),
    ) {
        // The run ended at this checkpoint: there is no step to re-execute. Restoring it
        // checked every page against its digest; capturing it again must give the
        // checkpoint the run recorded.
        let mut commit = crate::journal::Commit::default();
        driver::capture(&mut exec, &mut commit)?;
        let again = commit
            .checkpoint
            .as_ref()
            .map(crate::checkpoint::Checkpoint::digest);
        report.checkpoints_compared = 1;
        report.verdict = if again != Some(checkpoint.digest()) {
            report.divergence = Some(Divergence::at_end(
                format!(
                    "checkpoint {from} as recorded ({})",
                    checkpoint.digest().short()
                ),
                "a different checkpoint after restoring it",
            ));
            ReplayVerdict::Diverged
        } else if stored.meta.status() == Status::Running {
            ReplayVerdict::Incomplete
        } else {
            ReplayVerdict::Identical
        };
        return Ok(report);
    }
    if from_checkpoint.is_some() {
        exec.host_mut().journal.expected = Some(Expected::new(recording::after_checkpoint(
            &stored.records,
            from,
        )));
    } else {
        // Checkpoint 0 (the freshly instantiated guest) is compared too.
        exec.host_mut().journal.expected = Some(Expected::new(recording::from_checkpoint(
            &stored.records,
            0,
        )));
        driver::capture(&mut exec, &mut Default::default())?;
        report.checkpoints_compared += 1;
        exec.take_records();
    }
    let interrupted = stored.meta.status() == Status::Running;
    let mut from = from;
    let end = loop {
        let end = driver::drive(&mut exec, from, |exec, boundary| {
            if boundary.commit.checkpoint.is_some() {
                report.checkpoints_compared += 1;
            }
            let exhausted = exec
                .host()
                .journal
                .expected
                .as_ref()
                .is_some_and(|e| e.remaining() == 0);
            Ok(!(interrupted && exhausted))
        })?;
        // A reviewed run goes on from its review: re-open it at the review's checkpoint
        // and apply the recorded review, as the live review did.
        let review = match (&end, exec.host_mut().journal.expected.as_mut()) {
            (StepEnd::AwaitingReview, Some(expected)) => next_review(expected),
            _ => None,
        };
        let Some((index, record)) = review else {
            break end;
        };
        let awaiting = stored.records[..index as usize]
            .iter()
            .rev()
            .find_map(|r| match &r.body {
                RecordBody::Outcome(o) => Some((**o).clone()),
                _ => None,
            })
            .unwrap_or_else(|| stored.meta.outcome.clone());
        let effects = Effects::Recorded(Recording::of(&stored.records, Answering::ByCall));
        let mut next = crate::review::reopen(journal, &stored, &record, effects)?;
        next.host_mut().journal.expected = exec.host_mut().journal.expected.take();
        let mut commit = crate::journal::Commit::default();
        crate::review::apply(&mut next, &record, &awaiting, &stored.records, &mut commit)?;
        report.checkpoints_compared += 1;
        exec = next;
        from = record.step;
    };
    let expected = exec.host_mut().journal.expected.take().unwrap_or_default();
    let mut divergence = expected.diverged.clone();
    if let (None, StepEnd::Diverged(d)) = (&divergence, &end) {
        divergence = Some((**d).clone());
    }
    if divergence.is_none() && expected.remaining() > 0 && !interrupted {
        divergence = Some(Divergence::at_end(
            format!("{} more recorded records", expected.remaining()),
            "the re-execution ended",
        ));
    }
    report.steps = exec.host().step;
    report.records_compared = expected.compared;
    report.verdict = match (&divergence, interrupted) {
        (Some(_), _) => ReplayVerdict::Diverged,
        (None, true) => ReplayVerdict::Incomplete,
        (None, false) => ReplayVerdict::Identical,
    };
    report.divergence = divergence;
    Ok(report)
}

/// The review that continues a run awaiting review in the recording, if any: refused and
/// first-of-two decisions are passed over (they do not move the run).
fn next_review(expected: &mut Expected) -> Option<(u64, crate::decision::ReviewRecord)> {
    while let Some((_, RecordBody::ReviewRefused(_) | RecordBody::ReviewPending(_))) =
        expected.peek()
    {
        expected.take();
    }
    match expected.peek() {
        Some((index, RecordBody::Review(record))) => Some((index, (**record).clone())),
        _ => None,
    }
}

/// The recorded outcome of a run, from its records.
fn recorded_outcome(records: &[Record]) -> Option<&Outcome> {
    records.iter().rev().find_map(|r| match &r.body {
        RecordBody::Outcome(outcome) => Some(&**outcome),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::ReplayVerdict;

    #[test]
    fn only_identical_and_unchanged_confirm_a_recording() {
        let confirming: Vec<_> = [
            ReplayVerdict::Identical,
            ReplayVerdict::Diverged,
            ReplayVerdict::Incomplete,
            ReplayVerdict::CouldNotReplay,
            ReplayVerdict::Unchanged,
            ReplayVerdict::DifferentOutcome,
            ReplayVerdict::DifferentOutput,
            ReplayVerdict::NeedsReview,
        ]
        .into_iter()
        .filter(|v| v.confirms())
        .collect();
        assert_eq!(
            confirming,
            [ReplayVerdict::Identical, ReplayVerdict::Unchanged]
        );
    }
}
