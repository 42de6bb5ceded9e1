//! Verification: recompute a run's hash chain and check its checkpoints and pages
//! (invariant 5, tamper evidence). A broken chain is not an error: it is the `problem`
//! of the returned [`Verification`], naming the first record that does not check out.

use std::collections::HashSet;
use std::sync::Mutex;

use serde::Serialize;

use super::audit::{LogCheck, log_problem};
use super::record::Link;
use super::{Journal, JournalError, Record, RecordBody, Rows, RunMeta};
use crate::digest::{Digest, domain};
use crate::seal::signing::KeyId;

/// What one operation over many runs (an audit, `warden replay --all`) has already read
/// and found to match its digest: a memory page or an agent module that a thousand runs
/// share is read and hashed once per operation, not once per run. It belongs to one
/// operation: a page altered in the file afterwards is found by the next one.
#[derive(Debug, Default)]
pub struct Checked {
    /// Pages found stored and matching their digest.
    pages: Mutex<HashSet<Digest>>,
    /// Blobs found stored and matching their digest, with the domain they were hashed in.
    blobs: Mutex<HashSet<(&'static str, Digest)>>,
}

impl Checked {
    /// Whether the blob `digest` (hashed in `domain`) was found intact.
    pub(crate) fn blob(&self, domain: &'static str, digest: &Digest) -> bool {
        self.blobs
            .lock()
            .is_ok_and(|blobs| blobs.contains(&(domain, *digest)))
    }

    /// Notes that the blob `digest` (hashed in `domain`) was found intact.
    pub(crate) fn blob_intact(&self, domain: &'static str, digest: Digest) {
        if let Ok(mut blobs) = self.blobs.lock() {
            blobs.insert((domain, digest));
        }
    }

    fn page(&self, digest: &Digest) -> bool {
        self.pages.lock().is_ok_and(|pages| pages.contains(digest))
    }

    fn page_intact(&self, digest: Digest) {
        if let Ok(mut pages) = self.pages.lock() {
            pages.insert(digest);
        }
    }
}

/// The result of checking one run's hash chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verification {
    /// The run verified.
    pub run_id: String,
    /// Records the run's summary says it has.
    pub records: u64,
    /// The run's head (`docs/journal.md`, "Records"): its last commit's digest.
    pub head: Digest,
    /// The first problem found, or `None` when every record checks out.
    pub problem: Option<String>,
    /// The index of the first record that does not check out, where one can be named.
    pub record: Option<u64>,
    /// The index of the run's latest entry in the transparency log, when the log was
    /// consulted in full ([`Journal::verify_run`], [`Journal::audit`]).
    pub log_entry: Option<u64>,
    /// The key every head of the run was found signed by, when one was given and the run
    /// checks out.
    pub signed_by: Option<KeyId>,
}

impl Journal {
    /// Recomputes a run's hash chain, checks its summary, blobs and checkpoints, and
    /// holds its records to every head the transparency log holds for it (an evidence
    /// pack: the heads its manifest carries), naming the first record that does not check
    /// out. A run of edition 2 or later must be in the log. When the journal has a
    /// signing key ([`Journal::set_signer`]), every head must carry its signature:
    /// writers check what they build on against their own key.
    ///
    /// # Errors
    /// redb errors, or [`JournalError::NoSuchRun`]. A broken chain is not an error: it is
    /// the `problem` of the returned [`Verification`].
    pub fn verify(&self, run_id: &str) -> Result<Verification, JournalError> {
        self.verify_checked(run_id, &Checked::default())
    }

    /// [`Journal::verify`], skipping the pages and blobs `checked` holds (found intact
    /// earlier in the same operation) and adding those it finds intact.
    ///
    /// # Errors
    /// As [`Journal::verify`].
    pub fn verify_checked(
        &self,
        run_id: &str,
        checked: &Checked,
    ) -> Result<Verification, JournalError> {
        let meta = self.run(run_id)?;
        let index = self.log_index()?;
        let entries = index.entries_of(self, run_id)?;
        let key = self
            .signer
            .as_ref()
            .map(|k| k.public_key())
            .or(self.readers_key);
        let mut verification = self.verify_logged(&meta, &entries, key.as_ref(), checked)?;
        if verification.problem.is_none()
            && let Some(problem) = index.sealed()
        {
            verification.problem = Some(format!(
                "the journal's transparency log does not check out: {problem}"
            ));
        }
        Ok(verification)
    }

    /// Verifies a run whose records were read as `rows`, consulting the log as `log`
    /// says.
    pub(super) fn verify_with(
        &self,
        meta: &RunMeta,
        rows: Rows,
        log: LogCheck<'_>,
        checked: &Checked,
    ) -> Result<Verification, JournalError> {
        let run_id = meta.run_id.as_str();
        let mut verification = Verification {
            run_id: run_id.to_string(),
            records: meta.records,
            head: meta.head,
            problem: None,
            record: None,
            log_entry: None,
            signed_by: None,
        };
        let (records, links) = (rows.records, rows.links);
        let logged = |records: &[(Record, Digest)], links: &[Link]| {
            if log.entries.is_empty() && log.required {
                Some((
                    Some(0),
                    "the run is not in the transparency log: it did not come from a commit (it was inserted into the file, or its log entries removed)".to_string(),
                ))
            } else {
                log_problem(records, links, log.entries, log.key)
            }
        };
        let found = match (
            earlier(
                chain_problem(meta, &records, &links),
                logged(&records, &links),
            ),
            rows.broken,
        ) {
            // A row that does not decode ends what can be read; what the rows before it
            // hold is still checked, so that an altered record is not hidden behind a
            // row broken after it.
            (found, Some((index, message))) => Some(
                found
                    .filter(|(record, _)| record.is_some_and(|record| record < index))
                    .unwrap_or_else(|| {
                        (
                            Some(index),
                            format!(
                                "the records of run {run_id} from record {index} do not decode: {message}"
                            ),
                        )
                    }),
            ),
            (Some(found), None) => Some(found),
            (None, None) => match summary_problem(meta, &records) {
                Some(found) => Some(found),
                None => match self.blob_problem(&records, checked)? {
                    Some(found) => Some(found),
                    None => match self.checkpoint_problem(run_id, &records, checked)? {
                        Some(found) => Some(found),
                        None => self.progress_problem(run_id, meta, &records)?,
                    },
                },
            },
        };
        if let Some((record, problem)) = found {
            verification.record = record;
            verification.problem = Some(problem);
        }
        Ok(verification)
    }
}

/// Of the chain's problem and the log's, the one that names the earlier record (the
/// chain's when they name the same, or none): a format-5 row implies its own chain, so a
/// byte changed in it breaks the chain only where the next row begins, while the log,
/// which holds every committed digest, names the record itself.
fn earlier(
    chain: Option<(Option<u64>, String)>,
    log: Option<(Option<u64>, String)>,
) -> Option<(Option<u64>, String)> {
    match (chain, log) {
        (Some(chain), Some(log)) if log.0.unwrap_or(u64::MAX) < chain.0.unwrap_or(u64::MAX) => {
            Some(log)
        }
        (chain, log) => chain.or(log),
    }
}

impl Journal {
    /// Verifies every run of the journal, oldest first.
    ///
    /// # Errors
    /// redb errors reading the list of runs or a run's records.
    pub fn verify_all(&self) -> Result<Vec<Verification>, JournalError> {
        Ok(self.audit(None)?.runs)
    }

    /// Checks the blobs the run's start record names (agent module, policy text, input,
    /// model cards) against their digests, naming the first missing or altered one.
    fn blob_problem(
        &self,
        records: &[(Record, Digest)],
        checked: &Checked,
    ) -> Result<Option<(Option<u64>, String)>, JournalError> {
        let Some(start) = records.first().and_then(|(r, _)| r.body.run_start()) else {
            return Ok(None);
        };
        let mut blobs = vec![
            ("agent module", domain::AGENT, start.agent),
            ("policy text", domain::BLOB, start.policy_text),
            ("input", domain::BLOB, start.input),
        ];
        for card in &start.models {
            blobs.push(("model card", domain::BLOB, card.card));
        }
        for (what, tag, digest) in blobs {
            if checked.blob(tag, &digest) {
                continue;
            }
            match self.blob(&digest)? {
                Some(bytes) if Digest::of(tag, &bytes) == digest => {
                    checked.blob_intact(tag, digest);
                }
                Some(_) => {
                    return Ok(Some((
                        Some(0),
                        format!(
                            "the stored {what} does not match its digest {} (the blob was altered)",
                            digest.short()
                        ),
                    )));
                }
                None => {
                    return Ok(Some((
                        Some(0),
                        format!("the {what} {} is missing from the journal", digest.short()),
                    )));
                }
            }
        }
        Ok(None)
    }

    /// For a run still running (or interrupted), the summary's progress (state, steps,
    /// host calls, fuel), which `resume` starts from, must be what its records say.
    fn progress_problem(
        &self,
        run_id: &str,
        meta: &RunMeta,
        records: &[(Record, Digest)],
    ) -> Result<Option<(Option<u64>, String)>, JournalError> {
        if meta.status() != crate::outcome::Status::Running {
            return Ok(None);
        }
        let Some(start) = records.first().and_then(|(r, _)| r.body.run_start()) else {
            return Ok(None);
        };
        let mut state = start.state.clone();
        let mut steps = start.parent.as_ref().map_or(0, |p| p.step);
        let mut fuel = 0u64;
        let mut calls: Option<u64> = None;
        let mut first_checkpoint = None;
        for (record, _) in records {
            match &record.body {
                RecordBody::StepCommitted {
                    step,
                    fuel: used,
                    state: s,
                } => {
                    steps = *step;
                    fuel = fuel.saturating_add(*used);
                    state.clone_from(s);
                }
                RecordBody::HostCall { call, .. } => calls = Some(call.saturating_add(1)),
                // A WASI call takes a number in the same sequence.
                RecordBody::Wasi(wasi) => calls = Some(wasi.call.saturating_add(1)),
                RecordBody::Checkpoint { step, .. } if first_checkpoint.is_none() => {
                    first_checkpoint = Some(*step);
                }
                _ => {}
            }
        }
        // A fork continues its parent's call numbering from its first checkpoint.
        let host_calls = match (calls, first_checkpoint) {
            (Some(calls), _) => calls,
            (None, Some(step)) => self
                .checkpoint(run_id, step)?
                .map_or(0, |c| u64::from(c.host_calls)),
            (None, None) => 0,
        };
        let derived = (state, steps, host_calls, fuel, None::<String>, false);
        let summary = (
            meta.outcome.state.clone(),
            meta.outcome.steps,
            u64::from(meta.outcome.host_calls),
            meta.outcome.fuel,
            meta.outcome.output.clone(),
            meta.outcome.reason.is_some(),
        );
        if derived == summary {
            return Ok(None);
        }
        Ok(Some((
            None,
            format!(
                "the run's summary says (state, steps, host calls, fuel, output, failed) = {summary:?} but its records say {derived:?} (the summary was altered)"
            ),
        )))
    }

    /// Checks every checkpoint a chained `Checkpoint` record names: the stored checkpoint
    /// must match the digest in the record, and each of its pages must be present and
    /// match its own digest.
    fn checkpoint_problem(
        &self,
        run_id: &str,
        records: &[(Record, Digest)],
        checked: &Checked,
    ) -> Result<Option<(Option<u64>, String)>, JournalError> {
        let recorded: std::collections::BTreeSet<u32> = records
            .iter()
            .filter_map(|(r, _)| match r.body {
                RecordBody::Checkpoint { step, .. } => Some(step),
                _ => None,
            })
            .collect();
        if let Some(step) = self
            .checkpoint_steps(run_id)?
            .into_iter()
            .find(|step| !recorded.contains(step))
        {
            return Ok(Some((
                None,
                format!(
                    "a checkpoint for step {step} is stored that no record of the run names (it was planted; it is never restored)"
                ),
            )));
        }
        for (record, _) in records {
            let RecordBody::Checkpoint { step, digest } = &record.body else {
                continue;
            };
            let checkpoint = match self.checkpoint(run_id, *step) {
                Ok(Some(checkpoint)) => checkpoint,
                Ok(None) => {
                    return Ok(Some((
                        Some(record.index),
                        format!("checkpoint {step} is missing"),
                    )));
                }
                Err(JournalError::Corrupt { message, .. }) => {
                    return Ok(Some((
                        Some(record.index),
                        format!("checkpoint {step} does not decode: {message}"),
                    )));
                }
                Err(e) => return Err(e),
            };
            if checkpoint.digest() != *digest {
                return Ok(Some((
                    Some(record.index),
                    format!(
                        "checkpoint {step} does not match the digest {} in record {} (the checkpoint was altered)",
                        digest.short(),
                        record.index
                    ),
                )));
            }
            for page in &checkpoint.pages {
                if checked.page(page) {
                    continue;
                }
                match self.page(page) {
                    Ok(Some(bytes)) if Digest::of(domain::PAGE, &bytes) == *page => {
                        checked.page_intact(*page);
                    }
                    Err(JournalError::Corrupt { message, .. }) => {
                        return Ok(Some((
                            Some(record.index),
                            format!(
                                "memory page {} of checkpoint {step} does not decode: {message} (the page was altered)",
                                page.short()
                            ),
                        )));
                    }
                    Err(e) => return Err(e),
                    Ok(Some(_)) => {
                        return Ok(Some((
                            Some(record.index),
                            format!(
                                "memory page {} of checkpoint {step} does not match its digest (the page was altered)",
                                page.short()
                            ),
                        )));
                    }
                    Ok(None) => {
                        return Ok(Some((
                            Some(record.index),
                            format!(
                                "memory page {} of checkpoint {step} is missing",
                                page.short()
                            ),
                        )));
                    }
                }
            }
        }
        Ok(None)
    }
}

/// The first way in which `records` fail to form the chain `meta` describes, with the
/// index of the record at fault where one can be named. `links` are the commits of the
/// format-6 rows among them (`Rows::links`): such a commit is chained as a whole (its
/// digest is the run's head after it); every record of an older row is chained on its own
/// (its digest is the run's head after it).
pub(super) fn chain_problem(
    meta: &RunMeta,
    records: &[(Record, Digest)],
    links: &[Link],
) -> Option<(Option<u64>, String)> {
    let mut head = Digest::ZERO;
    let mut links = links.iter().peekable();
    let mut commit: Option<&Link> = None;
    for (position, (record, stored)) in records.iter().enumerate() {
        let position = position as u64;
        if record.index != position {
            return Some((
                Some(position),
                format!(
                    "record at position {position} says it is record {} (a record was deleted, inserted or reordered)",
                    record.index
                ),
            ));
        }
        if commit.is_none()
            && let Some(link) = links.next_if(|link| link.first == position)
        {
            if link.prev != head {
                return Some((
                    Some(position),
                    format!(
                        "the commit of records {position} to {} follows head {}, not the run's head {} after record {} (a commit was altered, deleted, inserted or reordered)",
                        link.end - 1,
                        link.prev.short(),
                        head.short(),
                        position.wrapping_sub(1)
                    ),
                ));
            }
            commit = Some(link);
        }
        if let Some(link) = commit {
            // A format-6 record's digest and predecessor are computed from the row: the
            // commit's digest covers it.
            if position + 1 == link.end {
                head = link.head;
                commit = None;
            }
            continue;
        }
        let digest = record.digest();
        if digest != *stored {
            return Some((
                Some(position),
                format!(
                    "record {position}: content does not match its digest {} (the record was altered)",
                    stored.short()
                ),
            ));
        }
        if record.prev != head {
            return Some((
                Some(position),
                format!(
                    "record {position}: predecessor digest {} is not the run's head {} after record {} (a record was altered, deleted, inserted or reordered)",
                    record.prev.short(),
                    head.short(),
                    position.wrapping_sub(1)
                ),
            ));
        }
        head = digest;
    }
    if records.len() as u64 != meta.records {
        return Some((
            Some(records.len() as u64),
            format!(
                "the run has {} records but its metadata says {} (records were deleted or appended)",
                records.len(),
                meta.records
            ),
        ));
    }
    if head != meta.head {
        return Some((
            None,
            format!(
                "the run's head {} after its last record is not the head {} its summary holds (the journal was truncated or extended)",
                head.short(),
                meta.head.short()
            ),
        ));
    }
    None
}

/// The first field of the run's summary (its `runs` entry, which `warden runs`, `show` and
/// `resume` read) that disagrees with the chained records it summarises.
fn summary_problem(meta: &RunMeta, records: &[(Record, Digest)]) -> Option<(Option<u64>, String)> {
    let differs = |index: u64, field: &str, summary: String, record: String| {
        Some((
            Some(index),
            format!(
                "the run's summary says {field} = {summary} but record {index} says {record} (the summary was altered)"
            ),
        ))
    };
    if let Some((first, _)) = records.first() {
        let Some(start) = first.body.run_start() else {
            return Some((Some(0), "the first record is not the run's start".into()));
        };
        let checks: [(&str, String, String); 10] = [
            ("run_id", meta.run_id.clone(), start.run_id),
            ("agent", meta.agent.to_string(), start.agent.to_string()),
            ("policy", meta.policy.to_string(), start.policy.to_string()),
            (
                "policy_text",
                meta.policy_text.to_string(),
                start.policy_text.to_string(),
            ),
            ("policy_name", meta.policy_name.clone(), start.policy_name),
            (
                "policy_version",
                meta.policy_version.clone(),
                start.policy_version,
            ),
            (
                "bindings",
                meta.bindings.to_string(),
                start.bindings.to_string(),
            ),
            (
                "bindings_path",
                format!("{:?}", meta.bindings_path),
                format!("{:?}", start.bindings_path),
            ),
            ("input", meta.input.to_string(), start.input.to_string()),
            (
                "parent",
                format!("{:?}", meta.parent),
                format!("{:?}", start.parent),
            ),
        ];
        for (field, summary, record) in checks {
            if summary != record {
                return differs(0, field, summary, record);
            }
        }
    }
    let edition = records
        .first()
        .and_then(|(r, _)| r.body.run_start())
        .map(|start| start.edition);
    if edition.is_some_and(|e| e != crate::edition::Edition::V1) {
        if let Some((first, _)) = records.first()
            && first.at_ms != meta.created_ms
        {
            return differs(
                0,
                "created_ms",
                meta.created_ms.to_string(),
                first.at_ms.to_string(),
            );
        }
        if let Some((last, _)) = records.last()
            && last.at_ms != meta.updated_ms
        {
            return differs(
                last.index,
                "updated_ms",
                meta.updated_ms.to_string(),
                last.at_ms.to_string(),
            );
        }
    }
    let last_checkpoint = records.iter().rev().find_map(|(r, _)| match r.body {
        RecordBody::Checkpoint { step, .. } => Some((r.index, step)),
        _ => None,
    });
    if let Some((index, step)) = last_checkpoint
        && meta.last_checkpoint != Some(step)
    {
        return differs(
            index,
            "last_checkpoint",
            format!("{:?}", meta.last_checkpoint),
            format!("Some({step})"),
        );
    }
    // The run's outcome is its last Outcome record, unless a review decision after it
    // moved the run on (it is then in progress again).
    let outcome = records
        .iter()
        .rev()
        .take_while(|(r, _)| !matches!(r.body, RecordBody::Review(_)))
        .find_map(|(r, _)| match &r.body {
            RecordBody::Outcome(outcome) => Some((r.index, outcome)),
            _ => None,
        });
    match outcome {
        None if meta.status() != crate::outcome::Status::Running => differs(
            records.len().saturating_sub(1) as u64,
            "status",
            meta.status().to_string(),
            "no outcome (the run is in progress or was interrupted)".into(),
        ),
        None => None,
        Some((index, recorded)) if **recorded != meta.outcome => differs(
            index,
            "the outcome",
            format!("{:?}", meta.outcome),
            format!("{recorded:?}"),
        ),
        Some(_) => None,
    }
}
