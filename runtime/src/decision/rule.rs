//! The rules behind decisions: journaled with every decision, so their variants and
//! fields are the journal format (append, never change).

use std::fmt;

use serde::{Deserialize, Serialize};
use warden_guest::InferenceId;

use super::CapabilityKind;
use crate::provenance::EvalError;

/// The rule behind a [`Decision`]. Journaled, so its fields are owned and stable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Rule {
    /// Reading the run's own input or state, logging, or giving up: always allowed.
    RunProtocol,
    /// The state lists the capability.
    CapabilityAllowed {
        /// Tool or model.
        kind: CapabilityKind,
        /// The capability's name.
        name: String,
        /// The state the run was in.
        state: String,
    },
    /// The policy declares the capability, but not for this state.
    CapabilityNotInState {
        /// Tool or model.
        kind: CapabilityKind,
        /// The capability's name.
        name: String,
        /// The state the run was in.
        state: String,
    },
    /// The policy does not declare the capability at all.
    CapabilityUndeclared {
        /// Tool or model.
        kind: CapabilityKind,
        /// The capability's name.
        name: String,
    },
    /// The transition is declared.
    TransitionAllowed {
        /// The state the run was in.
        from: String,
        /// The state asked for.
        to: String,
    },
    /// The target is not a state of the policy.
    TransitionUnknownState {
        /// The state the run was in.
        from: String,
        /// The state asked for.
        to: String,
    },
    /// The target is a state, but not one this state may move to.
    TransitionNotDeclared {
        /// The state the run was in.
        from: String,
        /// The state asked for.
        to: String,
    },
    /// A second transition in one step.
    OneTransitionPerStep {
        /// The state the run was in.
        from: String,
        /// The state asked for.
        to: String,
    },
    /// Only a reviewer moves a run out of a review state.
    ReviewStateIsHumanOnly {
        /// The state the run was in.
        state: String,
        /// The state asked for.
        to: String,
    },
    /// A confidence gate is met by a host-computed inference.
    GateMet {
        /// The state asked for.
        to: String,
        /// The gate's model.
        model: String,
        /// The inference the gate judged.
        inference: InferenceId,
        /// Its host-computed confidence.
        confidence: f64,
        /// The gate's `min_confidence`.
        threshold: f64,
    },
    /// A confidence gate is not met: the run goes to the gate's review state.
    GateNotMet {
        /// The state asked for.
        to: String,
        /// The gate's model.
        model: String,
        /// The inference the gate judged.
        inference: Option<InferenceId>,
        /// Its host-computed confidence.
        confidence: Option<f64>,
        /// The gate's `min_confidence`.
        threshold: f64,
        /// The review state the run went to.
        otherwise: String,
    },
    /// The agent cites an inference the host never computed in this run.
    EvidenceUnknown {
        /// The state asked for.
        to: String,
        /// The inference the gate judged.
        inference: InferenceId,
    },
    /// The agent cites an inference of another model than the gate's.
    EvidenceWrongModel {
        /// The state asked for.
        to: String,
        /// The inference the gate judged.
        inference: InferenceId,
        /// The gate's model.
        model: String,
        /// The model the gate needs.
        expected: String,
    },
    /// `finish` in a terminal state.
    FinishInTerminal {
        /// The state the run was in.
        state: String,
    },
    /// `finish` is allowed only in a terminal state.
    FinishOutsideTerminal {
        /// The state the run was in.
        state: String,
    },
    /// The run already finished; only reads and logs remain possible.
    AlreadyFinished,
    /// The run is held for review: a gate sent it to review in this step, or (edition 3)
    /// it is in a review state. The agent may read but not act.
    AwaitingReview {
        /// The state the run was in.
        state: String,
    },
    /// Every feature of a model request reconciled with its declared source.
    FeaturesReconciled {
        /// The model.
        model: String,
        /// The state the run was in.
        state: String,
        /// Features checked (all reconciled).
        features: u32,
        /// Each source, its tool, and the call whose recorded response it read.
        sources: Vec<(String, String, Option<u64>)>,
    },
    /// A feature of a model request does not reconcile with its declared source.
    FeatureNotReconciled {
        /// The model.
        model: String,
        /// The state the run was in.
        state: String,
        /// The feature.
        feature: String,
        /// What the agent sent, if a number.
        sent: Option<f64>,
        /// What the host computed from the record, if it could.
        expected: Option<f64>,
        /// Why the host could not compute it, if it could not.
        error: Option<EvalError>,
    },
    /// A model request carries a feature the policy does not declare.
    FeatureUndeclared {
        /// The model.
        model: String,
        /// The state the run was in.
        state: String,
        /// The undeclared feature.
        feature: String,
    },
    /// More calls of a capability in one visit of a state than the policy allows.
    CallCapExceeded {
        /// Tool or model.
        kind: CapabilityKind,
        /// The capability's name.
        name: String,
        /// The state the run was in.
        state: String,
        /// The policy's `max_calls_per_state`.
        max: u32,
    },
    /// A label-bound confidence gate is met.
    GateLabelMet {
        /// The gated state.
        to: String,
        /// The gate's model.
        model: String,
        /// The inference judged.
        inference: InferenceId,
        /// The label the gate requires.
        label: String,
        /// The model's probability of that label, as the host computed it.
        probability: f64,
        /// The gate's `min_confidence`.
        threshold: f64,
        /// Features of the inference reconciled with their sources (0: none declared).
        reconciled: u32,
    },
    /// A label-bound confidence gate is not met: the run goes to review.
    GateLabelNotMet {
        /// The gated state.
        to: String,
        /// The gate's model.
        model: String,
        /// The inference judged, if there was one.
        inference: Option<InferenceId>,
        /// The label the gate requires.
        label: String,
        /// The model's probability of that label, if known.
        probability: Option<f64>,
        /// The gate's `min_confidence`.
        threshold: f64,
        /// The review state the run went to.
        otherwise: String,
        /// What was missing.
        shortfall: GateShortfall,
    },
    /// The cited inference is not the latest of its model made in this visit of the
    /// current state (an older answer, or one from another state).
    EvidenceNotLatest {
        /// The state asked for.
        to: String,
        /// The inference cited.
        inference: InferenceId,
        /// The latest inference of the model in this visit of the state, if any.
        latest: Option<InferenceId>,
        /// The model.
        model: String,
        /// The state the run is in.
        state: String,
    },
    /// `finish`'s output breaks an output rule of the terminal state.
    OutputRuleBroken {
        /// The terminal state.
        state: String,
        /// The field.
        field: String,
        /// The rule, in words.
        rule: String,
        /// What the output holds there.
        found: String,
    },
    /// A WASI call of a WASI guest under a policy that allows WASI guests: answered by the
    /// host (a clock, random bytes, a line of output) and journaled with its answer.
    WasiAnswered,
    /// A WASI call under a policy that does not allow WASI guests (`[wasi] enabled`).
    WasiNotAllowed {
        /// The WASI function, e.g. `clock_time_get`.
        function: String,
    },
}

/// Why a label-bound gate was not met.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GateShortfall {
    /// No inference of the gate's model in this visit of the state.
    NoInference,
    /// The probability of the label is below the threshold.
    BelowThreshold,
    /// The inference gives no probability for the gate's label.
    LabelUnknown,
    /// The gate requires reconciled features and the inference's were not.
    FeaturesNotReconciled,
}

impl fmt::Display for GateShortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GateShortfall::NoInference => "no inference of the model in this visit of the state",
            GateShortfall::BelowThreshold => "probability below the threshold",
            GateShortfall::LabelUnknown => "the inference gives no probability for the label",
            GateShortfall::FeaturesNotReconciled => {
                "the inference's features were not reconciled with their sources"
            }
        })
    }
}

impl Rule {
    /// The rule's name in snake case (`capability_allowed`, `gate_not_met`): a label of
    /// few values for metrics and spans, without the rule's particulars.
    pub fn name(&self) -> &'static str {
        match self {
            Rule::RunProtocol => "run_protocol",
            Rule::CapabilityAllowed { .. } => "capability_allowed",
            Rule::CapabilityNotInState { .. } => "capability_not_in_state",
            Rule::CapabilityUndeclared { .. } => "capability_undeclared",
            Rule::TransitionAllowed { .. } => "transition_allowed",
            Rule::TransitionUnknownState { .. } => "transition_unknown_state",
            Rule::TransitionNotDeclared { .. } => "transition_not_declared",
            Rule::OneTransitionPerStep { .. } => "one_transition_per_step",
            Rule::ReviewStateIsHumanOnly { .. } => "review_state_is_human_only",
            Rule::GateMet { .. } => "gate_met",
            Rule::GateNotMet { .. } => "gate_not_met",
            Rule::EvidenceUnknown { .. } => "evidence_unknown",
            Rule::EvidenceWrongModel { .. } => "evidence_wrong_model",
            Rule::FinishInTerminal { .. } => "finish_in_terminal",
            Rule::FinishOutsideTerminal { .. } => "finish_outside_terminal",
            Rule::AlreadyFinished => "already_finished",
            Rule::AwaitingReview { .. } => "awaiting_review",
            Rule::FeaturesReconciled { .. } => "features_reconciled",
            Rule::FeatureNotReconciled { .. } => "feature_not_reconciled",
            Rule::FeatureUndeclared { .. } => "feature_undeclared",
            Rule::CallCapExceeded { .. } => "call_cap_exceeded",
            Rule::GateLabelMet { .. } => "gate_label_met",
            Rule::GateLabelNotMet { .. } => "gate_label_not_met",
            Rule::EvidenceNotLatest { .. } => "evidence_not_latest",
            Rule::OutputRuleBroken { .. } => "output_rule_broken",
            Rule::WasiAnswered => "wasi_answered",
            Rule::WasiNotAllowed { .. } => "wasi_not_allowed",
        }
    }
}

fn optional(value: Option<f64>) -> String {
    value.map_or_else(|| "nothing".to_string(), |v| format!("{v}"))
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::RunProtocol => f.write_str("run protocol (input, state, log)"),
            Rule::CapabilityAllowed { kind, name, state } => {
                write!(f, "{kind} `{name}` is allowed in state `{state}`")
            }
            Rule::CapabilityNotInState { kind, name, state } => {
                write!(f, "{kind} `{name}` is not allowed in state `{state}`")
            }
            Rule::CapabilityUndeclared { kind, name } => {
                write!(
                    f,
                    "{kind} `{name}` is not declared in the policy's capabilities"
                )
            }
            Rule::TransitionAllowed { from, to } => {
                write!(f, "transition `{from}` -> `{to}` is declared")
            }
            Rule::TransitionUnknownState { from, to } => {
                write!(
                    f,
                    "transition `{from}` -> `{to}`: `{to}` is not a state of the policy"
                )
            }
            Rule::TransitionNotDeclared { from, to } => {
                write!(
                    f,
                    "transition `{from}` -> `{to}` is not declared in the policy"
                )
            }
            Rule::OneTransitionPerStep { from, to } => {
                write!(
                    f,
                    "transition `{from}` -> `{to}` is a second transition in one step"
                )
            }
            Rule::ReviewStateIsHumanOnly { state, to } => write!(
                f,
                "`{state}` is a review state: only a reviewer moves the run on (agent asked for `{to}`)"
            ),
            Rule::GateMet {
                to,
                model,
                inference,
                confidence,
                threshold,
            } => write!(
                f,
                "gate on `{to}` met: {model} inference #{} confidence {confidence:.4} >= {threshold}",
                inference.0
            ),
            Rule::GateNotMet {
                to,
                model,
                inference,
                confidence,
                threshold,
                otherwise,
            } => match (inference, confidence) {
                (Some(id), Some(c)) => write!(
                    f,
                    "gate on `{to}` not met: {model} inference #{} confidence {c:.4} < {threshold}; sent to `{otherwise}`",
                    id.0
                ),
                _ => write!(
                    f,
                    "gate on `{to}` not met: no {model} inference in this run (needs confidence >= {threshold}); sent to `{otherwise}`"
                ),
            },
            Rule::EvidenceUnknown { to, inference } => write!(
                f,
                "transition to `{to}` cites inference #{} which the host never computed in this run",
                inference.0
            ),
            Rule::EvidenceWrongModel {
                to,
                inference,
                model,
                expected,
            } => write!(
                f,
                "transition to `{to}` cites inference #{} of model `{model}`, but its gate needs `{expected}`",
                inference.0
            ),
            Rule::FinishInTerminal { state } => write!(f, "finish in terminal state `{state}`"),
            Rule::FinishOutsideTerminal { state } => {
                write!(
                    f,
                    "finish is allowed only in a terminal state, and `{state}` is not one"
                )
            }
            Rule::AlreadyFinished => f.write_str("the run already finished"),
            Rule::AwaitingReview { state } => write!(
                f,
                "the run is held for review in `{state}` (a gate sent it there, or it is a review state): the agent may not act until a person decides"
            ),
            Rule::FeaturesReconciled {
                model,
                state,
                features,
                sources,
            } => {
                write!(
                    f,
                    "model `{model}` is allowed in state `{state}`; features: {features}/{features} reconciled with input"
                )?;
                for (_, tool, call) in sources {
                    if let Some(call) = call {
                        write!(f, " and {tool} response #{call}")?;
                    }
                }
                Ok(())
            }
            Rule::FeatureNotReconciled {
                model,
                state,
                feature,
                sent,
                expected,
                error,
            } => {
                write!(
                    f,
                    "model `{model}` in state `{state}`: feature `{feature}` does not reconcile: sent {}, expected {}",
                    optional(*sent),
                    optional(*expected)
                )?;
                if let Some(error) = error {
                    write!(f, " ({error})")?;
                }
                Ok(())
            }
            Rule::FeatureUndeclared {
                model,
                state,
                feature,
            } => write!(
                f,
                "model `{model}` in state `{state}`: feature `{feature}` is not declared in the policy's [models.{model}.features]"
            ),
            Rule::CallCapExceeded {
                kind,
                name,
                state,
                max,
            } => write!(
                f,
                "{kind} `{name}` was already called {max} time(s) in this visit of state `{state}` (max_calls_per_state = {max})"
            ),
            Rule::GateLabelMet {
                to,
                model,
                inference,
                label,
                probability,
                threshold,
                reconciled,
            } => {
                write!(
                    f,
                    "gate on `{to}` met: {model} inference #{} P({label}) = {probability:.4} >= {threshold}",
                    inference.0
                )?;
                if *reconciled > 0 {
                    write!(f, "; features: {reconciled}/{reconciled} reconciled")?;
                }
                Ok(())
            }
            Rule::GateLabelNotMet {
                to,
                model,
                inference,
                label,
                probability,
                threshold,
                otherwise,
                shortfall,
            } => {
                write!(f, "gate on `{to}` not met: ")?;
                match (inference, probability) {
                    (Some(id), Some(p)) => write!(
                        f,
                        "{model} inference #{} P({label}) = {p:.4}, needs >= {threshold}",
                        id.0
                    )?,
                    (Some(id), None) => write!(f, "{model} inference #{}", id.0)?,
                    _ => write!(f, "needs a {model} P({label}) >= {threshold}")?,
                }
                write!(f, " ({shortfall}); sent to `{otherwise}`")
            }
            Rule::EvidenceNotLatest {
                to,
                inference,
                latest,
                model,
                state,
            } => {
                write!(
                    f,
                    "transition to `{to}` cites {model} inference #{}, which is not the latest {model} inference made in this visit of `{state}`",
                    inference.0
                )?;
                match latest {
                    Some(latest) => write!(f, " (#{} is)", latest.0),
                    None => f.write_str(" (there is none)"),
                }
            }
            Rule::OutputRuleBroken {
                state,
                field,
                rule,
                found,
            } => write!(
                f,
                "output of terminal state `{state}` breaks its rule for `{field}`: must {rule}, found {found}"
            ),
            Rule::WasiAnswered => f.write_str("answered by the host ([wasi] enabled)"),
            Rule::WasiNotAllowed { function } => write!(
                f,
                "WASI `{function}`: the policy does not allow WASI guests ([wasi] enabled = true)"
            ),
        }
    }
}
