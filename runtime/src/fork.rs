//! Fork: a new run from a checkpoint of an old one (time travel), linked to its parent
//! in the journal.
//!
//! Upholds invariant 5: the parent's journal is verified first, so a fork never starts
//! from a checkpoint that does not check out; the fork records its parent and step in its
//! own first record.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::bindings::Bindings;
use crate::decision::Rule;
use crate::error::Error;
use crate::journal::{Journal, Parent, Record, RecordBody};
use crate::policy::Policy;
use crate::resolve::NewRun;
use crate::run::{self, ForkPoint, RunReport};
use crate::stored_run::StoredRun;

/// A fork as a caller asks for it: which run and checkpoint, and what to change.
#[derive(Debug, Clone)]
pub struct ForkRequest<'a> {
    /// The run to fork.
    pub parent: &'a str,
    /// The checkpoint (step) to start from.
    pub step: u32,
    /// A JSON merge patch (RFC 7386) applied to the parent's recorded input.
    pub input_patch: Option<serde_json::Value>,
    /// Bindings for the new run; by default the file the parent recorded.
    pub bindings: Option<&'a Path>,
    /// Who submits the fork.
    pub submitted_by: Option<String>,
    /// Another policy (and its file's text) to run the fork under; by default the
    /// parent's.
    pub policy: Option<(Arc<Policy>, String)>,
    /// Let the fork's effectful tools act on the world. Off by default: a fork is a
    /// what-if, and its effects answer from the parent's recording where the request is
    /// identical, or are not performed.
    pub live_effects: bool,
}

/// A fork as it went, and what its operator should know about it. JSON (`warden fork
/// --json`): the fields of [`RunReport`], and `warnings`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForkReport {
    /// The fork's run.
    #[serde(flatten)]
    pub run: RunReport,
    /// Why the fork may not show what was asked of it; empty when nothing is suspect.
    pub warnings: Vec<ForkWarning>,
}

/// Something about a fork its operator should know: it ran, but may not show what was
/// asked of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ForkWarning {
    /// The input was patched, but the agent had read its input before the fork point: it
    /// holds the recorded values in its memory, and the patch changes only what a later
    /// read of the input would return.
    InputAlreadyRead {
        /// The patched fields (the patch's top-level keys).
        fields: Vec<String>,
        /// The run whose records show the read (the parent, or an ancestor of a fork).
        run_id: String,
        /// The step that read the input.
        step: u32,
        /// The call that read it.
        call: u64,
        /// The record of that call.
        record: u64,
        /// The fork point: the checkpoint after this step.
        fork_step: u32,
    },
}

impl fmt::Display for ForkWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForkWarning::InputAlreadyRead {
                fields,
                run_id,
                step,
                call,
                record,
                fork_step,
            } => write!(
                f,
                "the input patch changes {}, but the agent already read its input in step {step} of run {run_id} (call {call}, record {record}), before the fork point (the checkpoint after step {fork_step}); it keeps the values it read, so the patch matters only if the agent reads the input again. Fork from an earlier checkpoint (--at-step {}) to run on the patched input",
                fields
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                step.saturating_sub(1)
            ),
        }
    }
}

/// Starts a new run from checkpoint `step` of run `parent` (time travel), with the
/// parent's stored agent and policy, its recorded input patched as asked, and its
/// bindings unless others are given.
///
/// # Errors
/// A parent whose journal does not verify, a missing checkpoint, a patch that is not an
/// object, bindings that cannot be loaded; as [`crate::start`] otherwise.
pub fn fork(journal: &Journal, request: ForkRequest<'_>) -> Result<RunReport, Error> {
    fork_report(journal, request).map(|report| report.run)
}

/// As [`fork`], with the warnings an operator should see (an input patch the agent had
/// already read, say).
///
/// # Errors
/// As [`fork`].
pub fn fork_report(journal: &Journal, request: ForkRequest<'_>) -> Result<ForkReport, Error> {
    let parent = request.parent;
    // The checkpoint is only as trustworthy as the parent's journal.
    let verification = journal.verify(parent)?;
    if verification.problem.is_some() {
        return Err(Error::Unverified {
            operation: "forked",
            verification: Box::new(verification),
        });
    }
    let stored = StoredRun::load(journal, parent)?;
    let mut input: serde_json::Value =
        serde_json::from_str(&stored.input).map_err(|e| Error::input(&e))?;
    // An old run's input with a key twice (accepted before such inputs were refused) would
    // be resolved here, silently, to one of its meanings.
    if let Some(key) = crate::host_call::duplicate_key(&stored.input) {
        return Err(Error::ForkInputAmbiguous {
            parent: parent.to_string(),
            key,
        });
    }
    let mut patched = Vec::new();
    if let Some(patch) = request.input_patch {
        let serde_json::Value::Object(fields) = &patch else {
            return Err(Error::InputPatch {
                found: json_type(&patch),
            });
        };
        patched = fields.keys().cloned().collect();
        merge_patch(&mut input, patch);
    }
    let bindings = match request.bindings {
        Some(path) => Bindings::from_file(path)?,
        None => {
            // The parent's own bindings must still be what the parent ran with.
            let path = stored.meta.bindings_path.as_deref().map(Path::new);
            let bindings = Bindings::from_optional_file(path)?;
            if bindings.hash() != stored.meta.bindings {
                return Err(Error::BindingsChanged {
                    run_id: parent.to_string(),
                    recorded: stored.meta.bindings,
                    present: bindings.hash(),
                });
            }
            bindings
        }
    };
    let checkpoint = journal
        .recorded_checkpoint(parent, request.step)?
        .ok_or_else(|| Error::NoCheckpoint {
            run_id: parent.to_string(),
            step: request.step,
        })?;
    // A fork is a new run under today's rules: a policy recorded by an older edition
    // must still validate, or the fork must be given one that does.
    let (policy, policy_text) = match request.policy {
        Some(given) => given,
        None => match Policy::parse(&stored.policy_text, "the parent's policy") {
            Ok(policy) => (Arc::new(policy), stored.policy_text.clone()),
            Err(source) => {
                return Err(Error::ForkPolicy {
                    parent: parent.to_string(),
                    source,
                });
            }
        },
    };
    // The decisions before the checkpoint (a gate passed, a person's review) were made on
    // the parent's input, policy and bindings; a fork that changes any of them may not
    // start after one, or it would inherit an approval made for another case.
    let recorded: serde_json::Value =
        serde_json::from_str(&stored.input).map_err(|e| Error::input(&e))?;
    let changed = input != recorded
        || policy.hash() != stored.start.policy
        || bindings.hash() != stored.meta.bindings;
    // A fork of a fork starts from its ancestors' memory too: their decisions count.
    if changed
        && let Some((decided_in, index, what)) = find_in_chain(
            journal,
            parent,
            &stored.records,
            request.step,
            |run, records| decision_in(records).map(|(index, what)| (run.to_string(), index, what)),
        )?
    {
        return Err(Error::ForkPastDecision {
            parent: parent.to_string(),
            step: request.step,
            decided_in,
            record: index,
            decision: what,
        });
    }
    match policy.state(&checkpoint.state).map(|s| s.kind) {
        None => {
            return Err(Error::ForkState {
                parent: parent.to_string(),
                step: request.step,
                state: checkpoint.state,
            });
        }
        Some(crate::policy::StateKind::Review) => {
            // The state at each earlier checkpoint: the policy's initial one at 0, then
            // the state its step was committed in.
            let reviewing = |state: &str| {
                policy
                    .state(state)
                    .is_none_or(|s| s.kind == crate::policy::StateKind::Review)
            };
            let checkpoints: std::collections::BTreeSet<u32> = stored
                .records
                .iter()
                .filter_map(|r| match r.body {
                    RecordBody::Checkpoint { step, .. } if step < request.step => Some(step),
                    _ => None,
                })
                .collect();
            let before = stored
                .records
                .iter()
                .rev()
                .find_map(|r| match &r.body {
                    RecordBody::StepCommitted { step, state, .. }
                        if checkpoints.contains(step) && !reviewing(state) =>
                    {
                        Some(*step)
                    }
                    _ => None,
                })
                .or_else(|| (checkpoints.contains(&0) && !reviewing(&policy.initial)).then_some(0));
            return Err(Error::ForkInReview {
                parent: parent.to_string(),
                step: request.step,
                state: checkpoint.state,
                before,
            });
        }
        Some(_) => {}
    }
    let new = NewRun {
        agent: stored.agent,
        policy,
        policy_text,
        bindings: Arc::new(bindings),
        input: input.to_string(),
        submitted_by: request.submitted_by,
    };
    let mut warnings = Vec::new();
    if input != recorded
        && let Some((run_id, record)) = input_read(journal, parent, &stored.records, request.step)?
        && let Some(step) = record.body.step()
    {
        warnings.push(ForkWarning::InputAlreadyRead {
            fields: patched,
            run_id,
            step,
            call: record.body.call().unwrap_or(0),
            record: record.index,
            fork_step: request.step,
        });
    }
    let point = ForkPoint {
        parent: Parent {
            run_id: parent.to_string(),
            step: request.step,
        },
        checkpoint,
        records: stored.records,
        live_effects: request.live_effects,
    };
    let run = run::begin(journal, &new, Some(point))?;
    Ok(ForkReport { run, warnings })
}

/// The first record, among those up to checkpoint `step` of `run_id` (and, for a fork,
/// its ancestors' up to their fork points), of the agent reading its input; with the run
/// it belongs to.
fn input_read(
    journal: &Journal,
    run_id: &str,
    records: &[Record],
    step: u32,
) -> Result<Option<(String, Record)>, Error> {
    find_in_chain(journal, run_id, records, step, |run, before| {
        before
            .iter()
            .find(|r| match &r.body {
                RecordBody::HostCall { request, .. } => matches!(
                    postcard::from_bytes::<warden_guest::wire::Request>(request),
                    Ok(warden_guest::wire::Request::Input)
                ),
                _ => false,
            })
            .map(|read| (run.to_string(), read.clone()))
    })
}

/// The most forks a chain is followed through; a longer chain (or a cycle a damaged
/// journal could hold) is refused rather than followed for ever or cut short.
const MAX_FORK_DEPTH: usize = 1024;

/// What `find` first finds in the records a fork from checkpoint `step` of `run_id`
/// starts from: the run's records up to that checkpoint, then (the run being a fork) its
/// parent's up to its fork point, and so on to a run that started fresh. `find` is given
/// each run's id and records, nearest first.
fn find_in_chain<T>(
    journal: &Journal,
    run_id: &str,
    records: &[Record],
    step: u32,
    mut find: impl FnMut(&str, &[Record]) -> Option<T>,
) -> Result<Option<T>, Error> {
    let mut run_id = run_id.to_string();
    let mut records = std::borrow::Cow::Borrowed(records);
    let mut step = step;
    for _ in 0..MAX_FORK_DEPTH {
        let before = crate::recording::until_checkpoint(&records, step);
        if let Some(found) = find(&run_id, before) {
            return Ok(Some(found));
        }
        let parent = before
            .iter()
            .find_map(|r| r.body.run_start().and_then(|start| start.parent));
        let Some(parent) = parent else {
            return Ok(None);
        };
        records = std::borrow::Cow::Owned(journal.records(&parent.run_id)?);
        run_id = parent.run_id;
        step = parent.step;
    }
    Err(Error::Argument {
        field: "RUN_ID",
        problem: format!(
            "run {run_id} is more than {MAX_FORK_DEPTH} forks deep (or its journal names a cycle of parents): fork from a run nearer the original"
        ),
    })
}

/// The last decision a fork with other facts may not inherit, among `records`: a passed
/// confidence gate, or a review.
fn decision_in(records: &[Record]) -> Option<(u64, String)> {
    records.iter().rev().find_map(|r| match &r.body {
        RecordBody::HostCall { decision, .. }
            if matches!(
                decision.rule,
                Rule::GateLabelMet { .. } | Rule::GateMet { .. }
            ) =>
        {
            Some((r.index, decision.rule.to_string()))
        }
        RecordBody::Review(review) | RecordBody::InheritedReview(review) => Some((
            r.index,
            format!(
                "a review sent it to `{}` ({})",
                review.outcome, review.reviewer
            ),
        )),
        _ => None,
    })
}

fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// RFC 7386 JSON merge patch: objects merge key by key, `null` removes, anything else
/// replaces.
fn merge_patch(target: &mut serde_json::Value, patch: serde_json::Value) {
    match (target, patch) {
        (serde_json::Value::Object(target), serde_json::Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(&key);
                } else {
                    merge_patch(target.entry(key).or_insert(serde_json::Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::merge_patch;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1]});
        merge_patch(
            &mut doc,
            json!({"a": 9, "b": {"c": null, "x": 4}, "e": {"f": 1}}),
        );
        assert_eq!(doc, json!({"a": 9, "b": {"d": 3, "x": 4}, "e": {"f": 1}}));
        merge_patch(&mut doc, json!("replaced"));
        assert_eq!(doc, json!("replaced"));
    }
}
