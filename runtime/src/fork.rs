//! Fork: a new run from a checkpoint of an old one (time travel), linked to its parent
//! in the journal. The parent's journal is verified first, so a fork never starts from a
//! checkpoint that does not check out.

use std::path::Path;
use std::sync::Arc;

use crate::bindings::Bindings;
use crate::journal::{Journal, Parent};
use crate::run::{NewRun, RunError, RunReport, begin};

/// Starts a new run from checkpoint `step` of run `parent` (time travel), with `input`.
///
/// # Errors
/// As [`start`], plus a missing checkpoint.
pub fn fork(
    journal: &Journal,
    new: NewRun<'_>,
    parent: &str,
    step: u32,
) -> Result<RunReport, RunError> {
    let stored = |what: String| RunError::Stored {
        run_id: parent.to_string(),
        what,
    };
    // The checkpoint is only as trustworthy as the parent's journal.
    if let Some(problem) = journal.verify(parent)?.problem {
        return Err(stored(format!(
            "its journal does not verify, so it cannot be forked: {problem}"
        )));
    }
    if journal.run(parent)?.agent != new.agent.hash {
        return Err(stored(
            "a fork must run the parent's agent: its checkpoint is that module's memory (use `warden replay --agent` to try another agent)".into(),
        ));
    }
    let checkpoint = journal
        .checkpoint(parent, step)?
        .ok_or_else(|| RunError::NoCheckpoint {
            run_id: parent.to_string(),
            step,
        })?;
    if new.policy.state(&checkpoint.state).is_none() {
        return Err(stored(format!(
            "checkpoint {step} is in state `{}`, which the fork's policy does not declare",
            checkpoint.state
        )));
    }
    begin(
        journal,
        new,
        Some((
            Parent {
                run_id: parent.to_string(),
                step,
            },
            checkpoint,
        )),
    )
}

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
}

/// Forks a run with the parent's stored agent and policy, its recorded input patched as
/// asked, and its bindings unless others are given.
///
/// # Errors
/// As [`fork`], plus bindings that cannot be loaded.
pub fn fork_from(journal: &Journal, request: ForkRequest<'_>) -> Result<RunReport, RunError> {
    let stored = crate::replay::StoredRun::load(journal, request.parent)?;
    let mut input: serde_json::Value =
        serde_json::from_str(&stored.input).map_err(|e| RunError::Input(e.to_string()))?;
    if let Some(patch) = request.input_patch {
        merge_patch(&mut input, patch);
    }
    let path = request
        .bindings
        .map(Path::to_path_buf)
        .or_else(|| stored.meta.bindings_path.as_ref().map(Into::into));
    let bindings = match path {
        Some(path) => Bindings::from_file(&path)?,
        None => Bindings::empty(),
    };
    let new = NewRun {
        agent: &stored.agent,
        policy: stored.policy.clone(),
        policy_text: stored.policy_text.clone(),
        bindings: Arc::new(bindings),
        input: input.to_string(),
    };
    fork(journal, new, request.parent, request.step)
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
