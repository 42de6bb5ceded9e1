//! One row per run, for model-risk teams who analyse decisions in bulk
//! (`warden export --format parquet`): the versions that decided, the outcome, the last
//! gate's confidence against its threshold, the last inference, the review, and whether
//! the run verifies. Every value comes from the run's records; the columns are documented
//! in `docs/export.md`.

use serde::Serialize;

use crate::decision::{Rule, Verdict};
use crate::journal::{Journal, JournalError, RecordBody};

/// The type of a [`RunRow`] column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    /// UTF-8 text.
    Text,
    /// A 64-bit signed integer.
    Integer,
    /// A 64-bit float.
    Float,
    /// A boolean.
    Boolean,
}

/// The columns of a [`RunRow`], in order, with their types. Every column may be null
/// except `run_id`.
pub const RUN_ROW_COLUMNS: &[(&str, ColumnType)] = &[
    ("run_id", ColumnType::Text),
    ("created_ms", ColumnType::Integer),
    ("updated_ms", ColumnType::Integer),
    ("status", ColumnType::Text),
    ("state", ColumnType::Text),
    ("output", ColumnType::Text),
    ("failure", ColumnType::Text),
    ("steps", ColumnType::Integer),
    ("host_calls", ColumnType::Integer),
    ("fuel", ColumnType::Integer),
    ("policy_name", ColumnType::Text),
    ("policy_version", ColumnType::Text),
    ("policy_digest", ColumnType::Text),
    ("agent_digest", ColumnType::Text),
    ("bindings_digest", ColumnType::Text),
    ("input_digest", ColumnType::Text),
    ("parent_run_id", ColumnType::Text),
    ("edition", ColumnType::Text),
    ("engine", ColumnType::Text),
    ("warden_version", ColumnType::Text),
    ("submitted_by", ColumnType::Text),
    ("models", ColumnType::Text),
    ("inferences", ColumnType::Integer),
    ("last_inference_model", ColumnType::Text),
    ("last_inference_label", ColumnType::Text),
    ("last_inference_probability", ColumnType::Float),
    ("last_inference_reconciled", ColumnType::Boolean),
    ("gates", ColumnType::Integer),
    ("last_gate_to", ColumnType::Text),
    ("last_gate_model", ColumnType::Text),
    ("last_gate_label", ColumnType::Text),
    ("last_gate_confidence", ColumnType::Float),
    ("last_gate_threshold", ColumnType::Float),
    ("last_gate_met", ColumnType::Boolean),
    ("last_gate_shortfall", ColumnType::Text),
    ("denials", ColumnType::Integer),
    ("escalations", ColumnType::Integer),
    ("reviews", ColumnType::Integer),
    ("review_refusals", ColumnType::Integer),
    ("review_outcome", ColumnType::Text),
    ("reviewer", ColumnType::Text),
    ("reviewer_role", ColumnType::Text),
    ("review_note", ColumnType::Text),
    ("review_at_ms", ColumnType::Integer),
    ("verified", ColumnType::Boolean),
    ("verification_problem", ColumnType::Text),
];

/// One run, flattened. Field names are the column names of [`RUN_ROW_COLUMNS`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RunRow {
    /// The run.
    pub run_id: String,
    /// When it started, ms since the Unix epoch.
    pub created_ms: Option<i64>,
    /// Its last commit, ms since the Unix epoch.
    pub updated_ms: Option<i64>,
    /// `completed`, `awaiting_review`, `failed` or `running`.
    pub status: Option<String>,
    /// The state it ended (or stands) in.
    pub state: Option<String>,
    /// The output it finished with (JSON text).
    pub output: Option<String>,
    /// Why it failed, in words.
    pub failure: Option<String>,
    /// Steps run.
    pub steps: Option<i64>,
    /// Host calls made.
    pub host_calls: Option<i64>,
    /// Fuel used.
    pub fuel: Option<i64>,
    /// The policy's name.
    pub policy_name: Option<String>,
    /// The policy's version.
    pub policy_version: Option<String>,
    /// The policy's canonical digest.
    pub policy_digest: Option<String>,
    /// The agent module's digest.
    pub agent_digest: Option<String>,
    /// The bindings' digest.
    pub bindings_digest: Option<String>,
    /// The input's digest.
    pub input_digest: Option<String>,
    /// The run a fork was started from.
    pub parent_run_id: Option<String>,
    /// The edition it was recorded under.
    pub edition: Option<String>,
    /// The engine whose fuel accounting its figures follow.
    pub engine: Option<String>,
    /// The Warden version that started it.
    pub warden_version: Option<String>,
    /// Who submitted it.
    pub submitted_by: Option<String>,
    /// The models available, `name version` separated by `; `.
    pub models: Option<String>,
    /// Inferences made.
    pub inferences: Option<i64>,
    /// The last inference's model.
    pub last_inference_model: Option<String>,
    /// The label it predicted.
    pub last_inference_label: Option<String>,
    /// The probability of that label.
    pub last_inference_probability: Option<f64>,
    /// Whether its features reconciled with their declared sources (null: none declared).
    pub last_inference_reconciled: Option<bool>,
    /// Gate decisions made (met or not).
    pub gates: Option<i64>,
    /// The state the last gate guarded.
    pub last_gate_to: Option<String>,
    /// Its model.
    pub last_gate_model: Option<String>,
    /// The label whose probability it judged (null: a gate of edition 1, on the
    /// predicted label's confidence).
    pub last_gate_label: Option<String>,
    /// The confidence it judged (null: no usable inference).
    pub last_gate_confidence: Option<f64>,
    /// Its threshold.
    pub last_gate_threshold: Option<f64>,
    /// Whether it was met.
    pub last_gate_met: Option<bool>,
    /// Why it was not met, in words.
    pub last_gate_shortfall: Option<String>,
    /// Requests denied.
    pub denials: Option<i64>,
    /// Requests escalated to review.
    pub escalations: Option<i64>,
    /// Review decisions recorded (including the first of two under dual control).
    pub reviews: Option<i64>,
    /// Review decisions refused.
    pub review_refusals: Option<i64>,
    /// The last review's outcome.
    pub review_outcome: Option<String>,
    /// Who gave it.
    pub reviewer: Option<String>,
    /// In which role.
    pub reviewer_role: Option<String>,
    /// Their note.
    pub review_note: Option<String>,
    /// When, ms since the Unix epoch.
    pub review_at_ms: Option<i64>,
    /// Whether the run verifies (chain, summary, blobs, checkpoints, its log entries).
    pub verified: Option<bool>,
    /// The first problem, when it does not.
    pub verification_problem: Option<String>,
}

fn int(value: u64) -> Option<i64> {
    i64::try_from(value).ok()
}

impl RunRow {
    /// The row of run `run_id`.
    ///
    /// # Errors
    /// Journal errors, or no such run.
    pub fn of(journal: &Journal, run_id: &str) -> Result<RunRow, JournalError> {
        let meta = journal.run(run_id)?;
        let records = journal.records(run_id)?;
        let verification = journal.verify(run_id)?;
        let outcome = &meta.outcome;
        let mut row = RunRow {
            run_id: meta.run_id.clone(),
            created_ms: int(meta.created_ms),
            updated_ms: int(meta.updated_ms),
            status: Some(outcome.status.to_string()),
            state: Some(outcome.state.clone()),
            output: outcome.output.clone(),
            failure: outcome.reason.as_ref().map(ToString::to_string),
            steps: Some(i64::from(outcome.steps)),
            host_calls: Some(i64::from(outcome.host_calls)),
            fuel: int(outcome.fuel),
            policy_name: Some(meta.policy_name.clone()),
            policy_version: Some(meta.policy_version.clone()),
            policy_digest: Some(meta.policy.to_string()),
            agent_digest: Some(meta.agent.to_string()),
            bindings_digest: Some(meta.bindings.to_string()),
            input_digest: Some(meta.input.to_string()),
            parent_run_id: meta.parent.as_ref().map(|p| p.run_id.clone()),
            verified: Some(verification.problem.is_none()),
            verification_problem: verification.problem.clone(),
            ..RunRow::default()
        };
        let (mut inferences, mut gates, mut denials, mut escalations) = (0i64, 0i64, 0i64, 0i64);
        let (mut reviews, mut refusals) = (0i64, 0i64);
        for record in &records {
            match &record.body {
                body @ (RecordBody::Started(_) | RecordBody::RunStarted(_)) => {
                    if let Some(start) = body.run_start() {
                        row.edition = Some(format!("{:?}", start.edition));
                        row.engine = Some(start.engine).filter(|e| !e.is_empty());
                        row.warden_version = Some(start.warden_version);
                        row.submitted_by = start.submitted_by;
                        row.models = Some(
                            start
                                .models
                                .iter()
                                .map(|m| format!("{} {}", m.name, m.version))
                                .collect::<Vec<_>>()
                                .join("; "),
                        )
                        .filter(|m| !m.is_empty());
                    }
                }
                RecordBody::Inference(inference) => {
                    inferences += 1;
                    row.last_inference_model = Some(inference.model.clone());
                    row.last_inference_label = Some(inference.label.clone());
                    row.last_inference_probability = inference.probability_of(&inference.label);
                    // An inference is recorded only when every declared feature reconciled.
                    row.last_inference_reconciled = inference.features.as_ref().map(|_| true);
                }
                RecordBody::HostCall { decision, .. } => {
                    match decision.verdict {
                        Verdict::Deny => denials += 1,
                        Verdict::Escalate => escalations += 1,
                        Verdict::Allow => {}
                    }
                    let gate = match &decision.rule {
                        Rule::GateMet {
                            to,
                            model,
                            confidence,
                            threshold,
                            ..
                        } => Some((to, model, None, Some(*confidence), *threshold, None)),
                        Rule::GateNotMet {
                            to,
                            model,
                            confidence,
                            threshold,
                            ..
                        } => Some((
                            to,
                            model,
                            None,
                            *confidence,
                            *threshold,
                            Some("confidence below the threshold".to_string()),
                        )),
                        Rule::GateLabelMet {
                            to,
                            model,
                            label,
                            probability,
                            threshold,
                            ..
                        } => Some((to, model, Some(label), Some(*probability), *threshold, None)),
                        Rule::GateLabelNotMet {
                            to,
                            model,
                            label,
                            probability,
                            threshold,
                            shortfall,
                            ..
                        } => Some((
                            to,
                            model,
                            Some(label),
                            *probability,
                            *threshold,
                            Some(shortfall.to_string()),
                        )),
                        _ => None,
                    };
                    if let Some((to, model, label, confidence, threshold, shortfall)) = gate {
                        gates += 1;
                        row.last_gate_to = Some(to.clone());
                        row.last_gate_model = Some(model.clone());
                        row.last_gate_label = label.cloned();
                        row.last_gate_confidence = confidence;
                        row.last_gate_threshold = Some(threshold);
                        row.last_gate_met = Some(shortfall.is_none());
                        row.last_gate_shortfall = shortfall;
                    }
                }
                RecordBody::Review(review) | RecordBody::ReviewPending(review) => {
                    reviews += 1;
                    row.review_outcome = Some(review.outcome.clone());
                    row.reviewer = Some(review.reviewer.clone());
                    row.reviewer_role = Some(review.role.clone());
                    row.review_note = Some(review.note.clone());
                    row.review_at_ms = int(record.at_ms);
                }
                RecordBody::ReviewRefused(_) => refusals += 1,
                _ => {}
            }
        }
        row.inferences = Some(inferences);
        row.gates = Some(gates);
        row.denials = Some(denials);
        row.escalations = Some(escalations);
        row.reviews = Some(reviews);
        row.review_refusals = Some(refusals);
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_column_list_names_every_field_in_order() {
        let value = serde_json::to_value(RunRow::default()).unwrap_or_default();
        let fields: Vec<&str> = value
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let mut columns: Vec<&str> = RUN_ROW_COLUMNS.iter().map(|(name, _)| *name).collect();
        let mut sorted = fields.clone();
        sorted.sort_unstable();
        columns.sort_unstable();
        assert_eq!(sorted, columns);
    }
}
