//! What a reviewer reads before deciding: the case file of one run awaiting review, and
//! the queue of all of them, oldest first.

use serde::Serialize;
use warden_guest::wire::{Request, Response};

use super::awaiting;
use crate::decision::{Decision, ModelInference, ReviewRecord, ReviewRefusal};
use crate::digest::Digest;
use crate::error::Error;
use crate::journal::{Journal, Record, RecordBody};
use crate::outcome::Status;
use crate::stored_run::StoredRun;

/// A tool answer the case rests on.
#[derive(Debug, Clone, Serialize)]
pub struct ToolAnswer {
    /// The call number.
    pub call: u64,
    /// The tool.
    pub tool: String,
    /// Its arguments (JSON).
    pub args: String,
    /// Its answer (JSON), or the error it gave.
    pub response: String,
}

/// One outcome a review state offers.
#[derive(Debug, Clone, Serialize)]
pub struct ReviewOption {
    /// The state the run would go to.
    pub outcome: String,
    /// The roles that may give it.
    pub roles: Vec<String>,
    /// Whether two distinct reviewers must give it.
    pub dual_control: bool,
    /// Who has given it already, under dual control: (reviewer, role).
    pub given_by: Vec<(String, String)>,
}

/// Everything a reviewer needs to decide a run awaiting review. Serialized as
/// `warden review RUN --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct CaseFile {
    /// The run.
    pub run_id: String,
    /// The review state it waits in.
    pub state: String,
    /// When it entered review, ms since the Unix epoch.
    pub entered_ms: u64,
    /// Who submitted the run (who may not review it).
    pub submitted_by: Option<String>,
    /// The policy, name and version.
    pub policy: String,
    /// The digest of the action under review: pass it with `--action` to decide.
    pub action: Digest,
    /// The request that brought the run here, decoded.
    pub request: Option<String>,
    /// The state the agent asked for, if a gate sent the run here instead.
    pub requested: Option<String>,
    /// The decision on that request, with the gate's rule.
    pub decision: Option<Decision>,
    /// The decision in words.
    pub explanation: Option<String>,
    /// The run's input (JSON), as recorded: the case itself, not the agent's account of it.
    pub input: String,
    /// The inference the gate judged.
    pub inference: Option<ModelInference>,
    /// The features (JSON) the agent sent the model for that inference, as recorded.
    pub features: Option<String>,
    /// The tool answers the inference's features rest on (or all of the run's).
    pub evidence: Vec<ToolAnswer>,
    /// The agent's own log lines, in order: its reasons.
    pub agent_log: Vec<String>,
    /// The outcomes the review state offers, and who may give each.
    pub options: Vec<ReviewOption>,
    /// The timeout: (when it applies, ms since the Unix epoch; its outcome).
    pub timeout: Option<(u64, String)>,
    /// Decisions recorded so far on this action (under dual control).
    pub pending: Vec<ReviewRecord>,
    /// Refused decisions so far.
    pub refused: Vec<ReviewRefusal>,
    /// What people (and timeouts) decided earlier: on this run (a reviewer who sent the
    /// case on to this review state, and why), then on the runs it was forked from,
    /// nearest first (a fork re-asks a case, and its reviewer sees how it was answered).
    pub earlier: Vec<EarlierDecision>,
}

/// A decision recorded earlier on this run or on a run this one was forked from.
#[derive(Debug, Clone, Serialize)]
pub struct EarlierDecision {
    /// The run it was recorded on.
    pub run_id: String,
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// The decision.
    pub review: ReviewRecord,
}

/// The most forks the case file follows back for earlier decisions.
const MAX_ANCESTORS: usize = 1024;

/// Every decision recorded on `stored`, then on the runs it was forked from, nearest run
/// first.
fn earlier_decisions(journal: &Journal, stored: &StoredRun) -> Result<Vec<EarlierDecision>, Error> {
    let mut earlier = Vec::new();
    let ancestors = super::forked_from(journal, stored, MAX_ANCESTORS)?;
    let own = (&stored.meta.run_id, stored.records.as_slice());
    let runs = ancestors
        .iter()
        .map(|(id, records)| (id, records.as_slice()));
    for (run_id, records) in std::iter::once(own).chain(runs) {
        earlier.extend(records.iter().filter_map(|r| match &r.body {
            RecordBody::Review(review) => Some(EarlierDecision {
                run_id: run_id.clone(),
                at_ms: r.at_ms,
                review: (**review).clone(),
            }),
            _ => None,
        }));
    }
    Ok(earlier)
}

/// A run in the review queue.
#[derive(Debug, Clone, Serialize)]
pub struct QueueEntry {
    /// The run.
    pub run_id: String,
    /// The review state.
    pub state: String,
    /// When it entered review, ms since the Unix epoch.
    pub entered_ms: u64,
    /// The gated state the agent asked for, if a gate sent it here.
    pub requested: Option<String>,
    /// The gate's model and label, if a gate sent it here.
    pub gate: Option<String>,
    /// The probability the gate compared, if any.
    pub probability: Option<f64>,
    /// The threshold it was compared with.
    pub threshold: Option<f64>,
    /// Who submitted the run.
    pub submitted_by: Option<String>,
    /// Why the run does not verify, if it does not: its case cannot be opened.
    pub problem: Option<String>,
}

/// The case file of a run awaiting review.
///
/// # Errors
/// No such run, a run not awaiting review, journal errors.
pub fn case_file(journal: &Journal, run_id: &str) -> Result<CaseFile, Error> {
    // A reviewer never reads a case assembled from records that do not check out.
    let verification = journal.verify(run_id)?;
    if verification.problem.is_some() {
        return Err(Error::Unverified {
            operation: "shown for review",
            verification: Box::new(verification),
        });
    }
    let stored = StoredRun::load(journal, run_id)?;
    let case = awaiting(&stored.records).filter(|_| stored.meta.status() == Status::AwaitingReview);
    let Some(case) = case else {
        return Err(super::not_awaiting(&stored));
    };
    let records = &stored.records;
    let entered_ms = records[case.outcome.0 as usize].at_ms;
    // The request that brought the run into review and its decision, as the case binds them.
    let request = match case.request.map(|r| &r.body) {
        Some(RecordBody::HostCall { request, .. }) => {
            Some(crate::journal::describe_request_bytes(request))
        }
        _ => None,
    };
    let decision = case.decision().cloned();
    let requested = decision.as_ref().and_then(gated_target);
    let cited = decision.as_ref().and_then(cited_inference).and_then(|id| {
        records
            .iter()
            .position(|r| matches!(&r.body, RecordBody::Inference(i) if i.id.0 == id))
    });
    let inference = cited.and_then(|at| match &records[at].body {
        RecordBody::Inference(i) => Some((**i).clone()),
        _ => None,
    });
    let features = cited.and_then(|at| model_features(&records[..at]));
    let rested_on: Vec<u64> = inference
        .as_ref()
        .and_then(|i| i.features.as_ref())
        .map(|f| f.sources.iter().filter_map(|(_, _, call)| *call).collect())
        .unwrap_or_default();
    let rules = stored
        .policy
        .state(&case.state)
        .and_then(|s| s.review.as_ref());
    let options = rules
        .map(|rules| {
            rules
                .decisions
                .iter()
                .map(|(outcome, rule)| ReviewOption {
                    outcome: outcome.clone(),
                    roles: rule.roles.iter().cloned().collect(),
                    dual_control: rule.dual_control,
                    given_by: case
                        .pending
                        .iter()
                        .filter(|p| &p.outcome == outcome)
                        .map(|p| (p.reviewer.clone(), p.role.clone()))
                        .collect(),
                })
                .collect()
        })
        .unwrap_or_default();
    let timeout = rules
        .and_then(|r| r.timeout.as_ref())
        .map(|t| (entered_ms.saturating_add(t.after_ms), t.outcome.clone()));
    let refused = records[case.outcome.0 as usize..]
        .iter()
        .filter_map(|r| match &r.body {
            RecordBody::ReviewRefused(refusal) => Some((**refusal).clone()),
            _ => None,
        })
        .collect();
    Ok(CaseFile {
        run_id: run_id.to_string(),
        state: case.state.clone(),
        entered_ms,
        submitted_by: stored.start.submitted_by.clone(),
        policy: format!(
            "{} {}",
            stored.start.policy_name, stored.start.policy_version
        ),
        action: case.action,
        explanation: decision.as_ref().map(|d| d.rule.to_string()),
        request,
        requested,
        decision,
        input: stored.input.clone(),
        inference,
        features,
        evidence: tool_answers(records, &rested_on),
        agent_log: agent_log(records),
        options,
        timeout,
        pending: case.pending.iter().map(|p| (*p).clone()).collect(),
        refused,
        earlier: earlier_decisions(journal, &stored)?,
    })
}

/// The runs awaiting review, oldest first, with the gate and the probability that sent
/// each there.
///
/// # Errors
/// Journal errors.
pub fn queue(journal: &Journal) -> Result<Vec<QueueEntry>, Error> {
    let mut entries = Vec::new();
    for meta in journal.runs_where(|meta| meta.status() == Status::AwaitingReview)? {
        let records = journal.records(&meta.run_id)?;
        let Some(case) = awaiting(&records) else {
            continue;
        };
        let decision = case.decision();
        let (gate, probability, threshold) = match decision.map(|d| &d.rule) {
            Some(crate::decision::Rule::GateLabelNotMet {
                model,
                label,
                probability,
                threshold,
                ..
            }) => (
                Some(format!("{model} P({label})")),
                *probability,
                Some(*threshold),
            ),
            Some(crate::decision::Rule::GateNotMet {
                model,
                confidence,
                threshold,
                ..
            }) => (Some(model.clone()), *confidence, Some(*threshold)),
            _ => (None, None, None),
        };
        let submitted_by = records
            .first()
            .and_then(|r| r.body.run_start())
            .and_then(|s| s.submitted_by);
        entries.push(QueueEntry {
            run_id: meta.run_id.clone(),
            state: case.state.clone(),
            entered_ms: records[case.outcome.0 as usize].at_ms,
            requested: decision.and_then(gated_target),
            gate,
            probability,
            threshold,
            submitted_by,
            problem: journal.verify(&meta.run_id)?.problem,
        });
    }
    entries.sort_by(|a, b| (a.entered_ms, &a.run_id).cmp(&(b.entered_ms, &b.run_id)));
    Ok(entries)
}

fn gated_target(decision: &Decision) -> Option<String> {
    match &decision.rule {
        crate::decision::Rule::GateLabelNotMet { to, .. }
        | crate::decision::Rule::GateNotMet { to, .. } => Some(to.clone()),
        _ => None,
    }
}

fn cited_inference(decision: &Decision) -> Option<u64> {
    match &decision.rule {
        crate::decision::Rule::GateLabelNotMet { inference, .. }
        | crate::decision::Rule::GateNotMet { inference, .. } => inference.map(|i| i.0),
        _ => None,
    }
}

/// The features of the last model request among `records`: the host records an
/// inference right after the response to the request that asked for it.
fn model_features(records: &[Record]) -> Option<String> {
    records.iter().rev().find_map(|r| match &r.body {
        RecordBody::HostCall { request, .. } => match postcard::from_bytes::<Request>(request) {
            Ok(Request::Model { features, .. }) => Some(features),
            _ => None,
        },
        _ => None,
    })
}

/// The run's tool answers: those at `calls`, or all of them if `calls` is empty.
fn tool_answers(records: &[Record], calls: &[u64]) -> Vec<ToolAnswer> {
    let mut asked = std::collections::HashMap::new();
    let mut answers = Vec::new();
    for record in records {
        match &record.body {
            RecordBody::HostCall { call, request, .. } => {
                if let Ok(Request::Tool { name, args }) = postcard::from_bytes::<Request>(request) {
                    asked.insert(*call, (name, args));
                }
            }
            RecordBody::HostResponse { call, response } => {
                let Some((tool, args)) = asked.remove(call) else {
                    continue;
                };
                if !calls.is_empty() && !calls.contains(call) {
                    continue;
                }
                let response = match postcard::from_bytes::<Response>(response) {
                    Ok(Response::Tool(Ok(json))) => json,
                    Ok(Response::Tool(Err(e))) => format!("error {:?}: {}", e.kind, e.message),
                    _ => continue,
                };
                answers.push(ToolAnswer {
                    call: *call,
                    tool,
                    args,
                    response,
                });
            }
            _ => {}
        }
    }
    answers
}

/// The agent's log lines, in order: what it logged, and what a WASI guest wrote to its
/// standard output and error (`stdout: ...`).
fn agent_log(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| match &r.body {
            RecordBody::HostCall { request, .. } => {
                match postcard::from_bytes::<Request>(request) {
                    Ok(Request::Log { message, .. }) => Some(message),
                    _ => None,
                }
            }
            RecordBody::Wasi(wasi) => wasi
                .request
                .output_line()
                .map(|(stream, text)| format!("{stream}: {text}")),
            _ => None,
        })
        .collect()
}
