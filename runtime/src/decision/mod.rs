//! The choke point: [`enforce`] decides every host call and every transition, and
//! [`enforce_wasi`] every WASI call of a WASI guest.
//!
//! Upholds invariant 1 (one choke point). No capability is reachable except through a
//! request that this function allowed; confidence gates are judged only on inferences the
//! host itself computed and recorded in this run, never on a number the guest supplies.

use serde::{Deserialize, Serialize};
use warden_guest::InferenceId;
use warden_guest::wire::Request;

pub use crate::policy::CapabilityKind;

mod evidence;
mod grounded;
mod review;
mod rule;

use crate::policy::{Policy, StateKind};
pub use evidence::{Evidence, FeatureRecord, ModelInference};
pub use review::{RefusalReason, ReviewKind, ReviewRecord, ReviewRefusal};
pub use rule::{GateShortfall, Rule};

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

impl Verdict {
    /// `allow`, `deny` or `escalate`, as spans and metrics say it.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::Escalate => "escalate",
        }
    }
}

/// A verdict and the rule that decided it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Allow, deny or escalate.
    pub verdict: Verdict,
    /// The rule of the policy (or of the run protocol) that decided.
    pub rule: Rule,
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
    /// Every inference the host computed in this run, in order (edition 1).
    pub inferences: &'a [InferenceRecord],
    /// The run's record as the rules of edition 2 rest on it; `None` for edition 1 runs,
    /// which are judged by the rules they were recorded under.
    pub evidence: Option<&'a Evidence>,
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
        Request::Input | Request::State | Request::Log { .. } | Request::Review
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
        Request::Input
        | Request::State
        | Request::Log { .. }
        | Request::Abort { .. }
        | Request::Review => decide(Allow, Rule::RunProtocol),
        Request::Tool { name, .. } if !run.finished => {
            let decision = capability(policy, run.state, CapabilityKind::Tool, name);
            match (decision.verdict, run.evidence) {
                (Allow, Some(evidence)) => {
                    grounded::cap(policy, evidence, run.state, CapabilityKind::Tool, name)
                        .unwrap_or(decision)
                }
                _ => decision,
            }
        }
        Request::Model { name, features } if !run.finished => {
            let decision = capability(policy, run.state, CapabilityKind::Model, name);
            match (decision.verdict, run.evidence) {
                (Allow, Some(evidence)) => {
                    grounded::cap(policy, evidence, run.state, CapabilityKind::Model, name)
                        .or_else(|| grounded::features(policy, evidence, run.state, name, features))
                        .unwrap_or(decision)
                }
                _ => decision,
            }
        }
        Request::Transition { to, evidence } if !run.finished => {
            transition(policy, run, to, *evidence)
        }
        Request::Finish { output } if !run.finished => {
            match policy.state(run.state).map(|s| s.kind) {
                Some(StateKind::Terminal) => run
                    .evidence
                    .and_then(|e| grounded::output(policy, run.state, output, &e.input))
                    .unwrap_or_else(|| {
                        decide(
                            Allow,
                            Rule::FinishInTerminal {
                                state: run.state.to_string(),
                            },
                        )
                    }),
                _ => decide(
                    Deny,
                    Rule::FinishOutsideTerminal {
                        state: run.state.to_string(),
                    },
                ),
            }
        }
        Request::Tool { .. }
        | Request::Model { .. }
        | Request::Transition { .. }
        | Request::Finish { .. } => finished_guard(),
    }
}

/// The one WASI function that acts on the run's course: `proc_exit` ends it.
pub const WASI_EXIT: &str = "proc_exit";

/// Decides one call of a WASI guest (`function`, a `wasi_snapshot_preview1` import that
/// loading admitted): the choke point's door for WASI, beside [`enforce`] for the host
/// call. Allowed when the policy allows WASI guests, which then answers it from the host
/// (its clock, its randomness, a journaled line of output), never from the world the
/// guest would reach itself. After a gate's escalation a WASI guest may still read a
/// clock or write a line, as it may still log, but it may not exit: that would take the
/// run out of the review queue, as an abort would.
pub fn enforce_wasi(policy: &Policy, run: &RunView<'_>, function: &str) -> Decision {
    if !policy.wasi {
        return decide(
            Verdict::Deny,
            Rule::WasiNotAllowed {
                function: function.to_string(),
            },
        );
    }
    if run.escalated && function == WASI_EXIT {
        return decide(
            Verdict::Deny,
            Rule::AwaitingReview {
                state: run.state.to_string(),
            },
        );
    }
    decide(Verdict::Allow, Rule::WasiAnswered)
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
    match (&gate.label, run.evidence) {
        (Some(label), Some(grounds)) => {
            return grounded::gate(gate, label, grounds, run.state, to, evidence);
        }
        // Under edition 2 a gate without a label can never be met (its policy was
        // recorded by edition 1): the run goes to review.
        (None, Some(_)) => {
            return decide(
                Escalate,
                Rule::GateLabelNotMet {
                    to: to_owned,
                    model: gate.model.clone(),
                    inference: None,
                    label: String::new(),
                    probability: None,
                    threshold: gate.min_confidence,
                    otherwise: gate.otherwise.clone(),
                    shortfall: GateShortfall::LabelUnknown,
                },
            );
        }
        _ => {}
    }
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
