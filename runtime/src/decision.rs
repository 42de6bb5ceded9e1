//! The choke point: [`enforce`] decides every host call and every transition.
//!
//! Upholds invariant 1 (one choke point). No capability is reachable except through a
//! request that this function allowed; confidence gates are judged only on inferences the
//! host itself computed and recorded in this run, never on a number the guest supplies.

use std::fmt;

use serde::{Deserialize, Serialize};
use warden_guest::InferenceId;
use warden_guest::wire::Request;

pub use crate::policy::CapabilityKind;
use crate::policy::{Policy, StateKind};

/// What enforcement says of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// The request goes ahead.
    Allow,
    /// The request is refused and the run ends as failed.
    Deny,
    /// The request is replaced by a move to a review state; the run stops for a human.
    Escalate,
}

/// A verdict and the rule that decided it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Allow, deny or escalate.
    pub verdict: Verdict,
    /// The rule of the policy (or of the run protocol) that decided.
    pub rule: Rule,
}

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
    /// A gate sent the run to review in this step; the agent may not act further.
    AwaitingReview {
        /// The state the run was in.
        state: String,
    },
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
                "a confidence gate sent the run to review in `{state}` in this step; the agent may not act further"
            ),
        }
    }
}

/// An inference the host computed and recorded in this run: the only source of
/// confidence a gate accepts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InferenceRecord {
    /// Its id, as returned to the agent.
    pub id: InferenceId,
    /// The model that made it.
    pub model: String,
    /// The confidence the host computed.
    pub confidence: f64,
}

/// What enforcement needs to know of the run besides the policy.
#[derive(Debug, Clone, Copy)]
pub struct RunView<'a> {
    /// The current state.
    pub state: &'a str,
    /// Whether this step already made a transition.
    pub transitioned_this_step: bool,
    /// Whether a gate sent the run to review in this step.
    pub escalated: bool,
    /// Whether the agent already called `finish`.
    pub finished: bool,
    /// Every inference the host computed in this run, in order.
    pub inferences: &'a [InferenceRecord],
}

fn decide(verdict: Verdict, rule: Rule) -> Decision {
    Decision { verdict, rule }
}

/// Decides one request. The only function that grants authority.
pub fn enforce(policy: &Policy, run: &RunView<'_>, request: &Request) -> Decision {
    use Verdict::{Allow, Deny};
    let finished_guard = || decide(Deny, Rule::AlreadyFinished);
    // After an escalation, nothing the agent does may change the run's course: not an
    // act, and not an abort either (that would take the run out of the review queue).
    let acts = !matches!(
        request,
        Request::Input | Request::State | Request::Log { .. }
    );
    if run.escalated && acts {
        return decide(
            Deny,
            Rule::AwaitingReview {
                state: run.state.to_string(),
            },
        );
    }
    match request {
        Request::Input | Request::State | Request::Log { .. } | Request::Abort { .. } => {
            decide(Allow, Rule::RunProtocol)
        }
        Request::Tool { name, .. } if !run.finished => {
            capability(policy, run.state, CapabilityKind::Tool, name)
        }
        Request::Model { name, .. } if !run.finished => {
            capability(policy, run.state, CapabilityKind::Model, name)
        }
        Request::Transition { to, evidence } if !run.finished => {
            transition(policy, run, to, *evidence)
        }
        Request::Finish { .. } if !run.finished => match policy.state(run.state).map(|s| s.kind) {
            Some(StateKind::Terminal) => decide(
                Allow,
                Rule::FinishInTerminal {
                    state: run.state.to_string(),
                },
            ),
            _ => decide(
                Deny,
                Rule::FinishOutsideTerminal {
                    state: run.state.to_string(),
                },
            ),
        },
        Request::Tool { .. }
        | Request::Model { .. }
        | Request::Transition { .. }
        | Request::Finish { .. } => finished_guard(),
    }
}

fn capability(policy: &Policy, state: &str, kind: CapabilityKind, name: &str) -> Decision {
    let (declared, allowed) = match kind {
        CapabilityKind::Tool => (
            policy.tools.contains(name),
            policy.state(state).is_some_and(|s| s.tools.contains(name)),
        ),
        CapabilityKind::Model => (
            policy.models.contains(name),
            policy.state(state).is_some_and(|s| s.models.contains(name)),
        ),
    };
    let name = name.to_string();
    let state = state.to_string();
    match (declared, allowed) {
        (true, true) => decide(
            Verdict::Allow,
            Rule::CapabilityAllowed { kind, name, state },
        ),
        (true, false) => decide(
            Verdict::Deny,
            Rule::CapabilityNotInState { kind, name, state },
        ),
        (false, _) => decide(Verdict::Deny, Rule::CapabilityUndeclared { kind, name }),
    }
}

fn transition(
    policy: &Policy,
    run: &RunView<'_>,
    to: &str,
    evidence: Option<InferenceId>,
) -> Decision {
    use Verdict::{Allow, Deny, Escalate};
    let from = run.state.to_string();
    let to_owned = to.to_string();
    let Some(current) = policy.state(run.state) else {
        // The run's state always comes from the policy; a mismatch is a host bug, refused.
        return decide(Deny, Rule::TransitionUnknownState { from, to: to_owned });
    };
    if current.kind == StateKind::Review {
        return decide(
            Deny,
            Rule::ReviewStateIsHumanOnly {
                state: from,
                to: to_owned,
            },
        );
    }
    if run.transitioned_this_step {
        return decide(Deny, Rule::OneTransitionPerStep { from, to: to_owned });
    }
    if policy.state(to).is_none() {
        return decide(Deny, Rule::TransitionUnknownState { from, to: to_owned });
    }
    if !current.transitions.contains(to) {
        return decide(Deny, Rule::TransitionNotDeclared { from, to: to_owned });
    }
    let Some(gate) = policy.gate(to) else {
        return decide(Allow, Rule::TransitionAllowed { from, to: to_owned });
    };
    let inference = match evidence {
        Some(id) => match run.inferences.iter().find(|i| i.id == id) {
            None => {
                return decide(
                    Deny,
                    Rule::EvidenceUnknown {
                        to: to_owned,
                        inference: id,
                    },
                );
            }
            Some(found) if found.model != gate.model => {
                return decide(
                    Deny,
                    Rule::EvidenceWrongModel {
                        to: to_owned,
                        inference: id,
                        model: found.model.clone(),
                        expected: gate.model.clone(),
                    },
                );
            }
            Some(found) => Some(found),
        },
        None => run.inferences.iter().rev().find(|i| i.model == gate.model),
    };
    match inference {
        Some(i) if i.confidence >= gate.min_confidence => decide(
            Allow,
            Rule::GateMet {
                to: to_owned,
                model: gate.model.clone(),
                inference: i.id,
                confidence: i.confidence,
                threshold: gate.min_confidence,
            },
        ),
        _ => decide(
            Escalate,
            Rule::GateNotMet {
                to: to_owned,
                model: gate.model.clone(),
                inference: inference.map(|i| i.id),
                confidence: inference.map(|i| i.confidence),
                threshold: gate.min_confidence,
                otherwise: gate.otherwise.clone(),
            },
        ),
    }
}

#[cfg(test)]
mod tests;
