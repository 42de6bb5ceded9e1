//! The rules that rest on the run's record (edition 2): call caps per visit of a state,
//! feature provenance of model requests, label-bound gates with recency, and the output
//! rules of terminal states. Called only from [`super::enforce`].

use serde_json::Value;
use warden_guest::InferenceId;

use super::{CapabilityKind, Decision, Evidence, GateShortfall, Rule, Verdict, decide};
use crate::policy::{ConfidenceGate, OutputConstraint, Policy};
use crate::provenance::{Facts, reconcile};

/// The call cap of a capability, once its state allows it.
pub(super) fn cap(
    policy: &Policy,
    evidence: &Evidence,
    state: &str,
    kind: CapabilityKind,
    name: &str,
) -> Option<Decision> {
    let max = policy.call_cap(kind, name)?;
    (evidence.calls_this_visit(kind, name) >= max).then(|| {
        decide(
            Verdict::Deny,
            Rule::CallCapExceeded {
                kind,
                name: name.to_string(),
                state: state.to_string(),
                max,
            },
        )
    })
}

/// Reconciles a model request's features with their declared sources, before the model
/// is asked; `None` when the model declares no provenance.
pub(super) fn features(
    policy: &Policy,
    evidence: &Evidence,
    state: &str,
    model: &str,
    features: &str,
) -> Option<Decision> {
    let provenance = policy.model_rules(model)?.provenance.as_ref()?;
    let sent: Value = serde_json::from_str(features).unwrap_or(Value::Null);
    let facts = Facts {
        input: &evidence.input,
        tools: &evidence.facts,
    };
    let result = reconcile(provenance, &facts, &sent);
    if result.all_reconciled() {
        return Some(decide(
            Verdict::Allow,
            Rule::FeaturesReconciled {
                model: model.to_string(),
                state: state.to_string(),
                features: result.reconciled_count() as u32,
                sources: result
                    .sources
                    .into_iter()
                    .map(|(name, call)| {
                        let tool = provenance
                            .sources()
                            .get(&name)
                            .map_or_else(String::new, |s| s.tool.clone());
                        (name, tool, call)
                    })
                    .collect(),
            },
        ));
    }
    if let Some(feature) = result.unexpected.first() {
        return Some(decide(
            Verdict::Deny,
            Rule::FeatureUndeclared {
                model: model.to_string(),
                state: state.to_string(),
                feature: feature.clone(),
            },
        ));
    }
    // Not all reconciled and nothing unexpected: at least one declared feature failed
    // (a provenance always declares one).
    let failure = result.failures().next();
    Some(decide(
        Verdict::Deny,
        Rule::FeatureNotReconciled {
            model: model.to_string(),
            state: state.to_string(),
            feature: failure.map_or_else(String::new, |f| f.name.clone()),
            sent: failure.and_then(|f| f.sent),
            expected: failure.and_then(|f| f.expected.as_ref().ok().copied()),
            error: failure.and_then(|f| f.expected.as_ref().err().cloned()),
        },
    ))
}

/// Judges a label-bound gate on the latest inference of its model in this visit of the
/// state (or the one cited, which must be that one).
pub(super) fn gate(
    gate: &ConfidenceGate,
    label: &str,
    evidence: &Evidence,
    state: &str,
    to: &str,
    cited: Option<InferenceId>,
) -> Decision {
    let latest = evidence.latest(&gate.model);
    if let Some(id) = cited {
        let Some(found) = evidence.inferences.iter().find(|i| i.id == id) else {
            return decide(
                Verdict::Deny,
                Rule::EvidenceUnknown {
                    to: to.to_string(),
                    inference: id,
                },
            );
        };
        if found.model != gate.model {
            return decide(
                Verdict::Deny,
                Rule::EvidenceWrongModel {
                    to: to.to_string(),
                    inference: id,
                    model: found.model.clone(),
                    expected: gate.model.clone(),
                },
            );
        }
        if latest.map(|l| l.id) != Some(id) {
            return decide(
                Verdict::Deny,
                Rule::EvidenceNotLatest {
                    to: to.to_string(),
                    inference: id,
                    latest: latest.map(|l| l.id),
                    model: gate.model.clone(),
                    state: state.to_string(),
                },
            );
        }
    }
    let not_met = |inference: Option<InferenceId>, probability, shortfall| {
        decide(
            Verdict::Escalate,
            Rule::GateLabelNotMet {
                to: to.to_string(),
                model: gate.model.clone(),
                inference,
                label: label.to_string(),
                probability,
                threshold: gate.min_confidence,
                otherwise: gate.otherwise.clone(),
                shortfall,
            },
        )
    };
    let Some(inference) = latest else {
        return not_met(None, None, GateShortfall::NoInference);
    };
    let probability = inference.probability_of(label);
    let reconciled = inference.features.as_ref().map_or(0, |f| f.reconciled);
    match probability {
        None => not_met(Some(inference.id), None, GateShortfall::LabelUnknown),
        Some(_) if gate.require_reconciled && inference.features.is_none() => not_met(
            Some(inference.id),
            probability,
            GateShortfall::FeaturesNotReconciled,
        ),
        Some(p) if p >= gate.min_confidence => decide(
            Verdict::Allow,
            Rule::GateLabelMet {
                to: to.to_string(),
                model: gate.model.clone(),
                inference: inference.id,
                label: label.to_string(),
                probability: p,
                threshold: gate.min_confidence,
                reconciled,
            },
        ),
        Some(_) => not_met(
            Some(inference.id),
            probability,
            GateShortfall::BelowThreshold,
        ),
    }
}

/// Checks `finish`'s output against the terminal state's output rules.
pub(super) fn output(policy: &Policy, state: &str, output: &str) -> Option<Decision> {
    let rules = &policy.state(state)?.output;
    if rules.is_empty() {
        return None;
    }
    let value: Value = serde_json::from_str(output).unwrap_or(Value::Null);
    for (field, rule) in rules {
        let found = value.get(field);
        let broken = match rule {
            OutputConstraint::Equals(expected) => found != Some(expected),
            OutputConstraint::Type(t) => !found.is_some_and(|v| t.admits(v)),
        };
        if broken {
            let rule = match rule {
                OutputConstraint::Equals(expected) => format!("equal {expected}"),
                OutputConstraint::Type(t) => format!("be present as a {}", t.as_str()),
            };
            let found = found.map_or_else(|| "nothing".to_string(), short);
            return Some(decide(
                Verdict::Deny,
                Rule::OutputRuleBroken {
                    state: state.to_string(),
                    field: field.clone(),
                    rule,
                    found,
                },
            ));
        }
    }
    None
}

/// A JSON value as text, cut to a length a decision can carry.
fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 80 {
        let cut: String = text.chars().take(77).collect();
        format!("{cut}...")
    } else {
        text
    }
}
