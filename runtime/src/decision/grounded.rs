//! The rules that rest on the run's record (edition 2): call caps per visit of a state,
//! feature provenance of model requests, label-bound gates with recency, and the output
//! rules of terminal states. Called only from [`super::enforce`].

use serde_json::Value;
use warden_guest::InferenceId;

use super::{CapabilityKind, Decision, Evidence, GateShortfall, Rule, Verdict, decide};
use crate::policy::{Bound, ConfidenceGate, OutputConstraint, Policy};
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

/// Checks `finish`'s output against the terminal state's output rules; bounds are
/// computed from the run's input (`input`).
pub(super) fn output(
    policy: &Policy,
    state: &str,
    output: &str,
    input: &Value,
) -> Option<Decision> {
    let rules = &policy.state(state)?.output;
    if rules.is_empty() {
        return None;
    }
    let value: Value = serde_json::from_str(output).unwrap_or(Value::Null);
    for (field, rule) in rules {
        let found = value.get(field);
        let broken = match rule {
            OutputConstraint::Equals(expected) => (found != Some(expected)).then(String::new),
            OutputConstraint::Type(t) => (!found.is_some_and(|v| t.admits(v))).then(String::new),
            OutputConstraint::Number { min, max } => {
                out_of_bounds(found, min.as_ref(), max.as_ref(), input)
            }
        };
        if let Some(why) = broken {
            let rule = match rule {
                OutputConstraint::Equals(expected) => format!("equal {expected}"),
                OutputConstraint::Type(t) => format!("be present as a {}", t.as_str()),
                OutputConstraint::Number { .. } => why,
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

/// What is wrong with `found` under bounds `min` and `max` computed from `input`, if
/// anything: a number must be there, each bound must be computable, and the number within
/// them (to a relative 1e-9 of the bound, so that the same arithmetic done by the agent in
/// another order is not refused for its last bit; a bound of 0 is exact).
fn out_of_bounds(
    found: Option<&Value>,
    min: Option<&Bound>,
    max: Option<&Bound>,
    input: &Value,
) -> Option<String> {
    let described = || {
        let mut parts = Vec::new();
        if let Some(min) = min {
            parts.push(format!("at least {min}"));
        }
        if let Some(max) = max {
            parts.push(format!("at most {max}"));
        }
        parts.join(" and ")
    };
    let Some(number) = found.and_then(Value::as_f64) else {
        return Some(format!("be a number {}", described()));
    };
    let slack = |limit: f64| 1e-9 * limit.abs();
    for (bound, below) in [(min, true), (max, false)] {
        let Some(bound) = bound else { continue };
        let limit = match bound.value(input) {
            Ok(limit) => limit,
            Err(why) => {
                return Some(format!(
                    "be a number {}, and `{bound}` {}",
                    described(),
                    why.describe(true)
                ));
            }
        };
        let outside = if below {
            number < limit - slack(limit)
        } else {
            number > limit + slack(limit)
        };
        if outside {
            return Some(format!(
                "be a number {} (`{bound}` is {limit} for this input)",
                described()
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

#[cfg(test)]
mod bound_tests {
    use serde_json::json;

    use super::output;
    use crate::decision::{Rule, Verdict};
    use crate::policy::Policy;

    const POLICY: &str = r#"
[policy]
name = "bounds"
version = "1"
initial = "start"
[states.start]
transitions = ["approved"]
[states.approved]
terminal = true
[states.approved.output]
payout = { min = 0, max = "min(input:/amount, input:/limit) - input:/deductible" }
"#;

    /// What the output rule says of `payout` for the input `input`: `None` if it holds.
    fn judged(payout: serde_json::Value, input: serde_json::Value) -> Option<String> {
        let policy = Policy::parse(POLICY, "bounds.toml").unwrap_or_else(|e| panic!("{e}"));
        let output_text = json!({ "payout": payout }).to_string();
        output(&policy, "approved", &output_text, &input).map(|d| {
            assert_eq!(d.verdict, Verdict::Deny);
            match d.rule {
                Rule::OutputRuleBroken { rule, .. } => rule,
                other => panic!("{other:?}"),
            }
        })
    }

    #[test]
    fn a_bound_is_computed_from_the_input_and_holds_to_the_last_bit() {
        let input = json!({"amount": 1840.0, "limit": 1500.0, "deductible": 100.5});
        assert_eq!(judged(json!(1399.5), input.clone()), None);
        assert_eq!(judged(json!(0), input.clone()), None);
        // The agent's own arithmetic in another order, off in the last bit.
        assert_eq!(judged(json!(1399.5 + 1e-10), input.clone()), None);
        let above = judged(json!(1399.51), input.clone()).expect("refused");
        assert!(above.contains("is 1399.5 for this input"), "{above}");
        assert!(
            judged(json!(-0.01), input.clone())
                .expect("refused")
                .contains("at least 0")
        );
        let text = judged(json!("1399.5"), input.clone()).expect("a string is no number");
        assert!(
            text.starts_with("be a number at least 0 and at most"),
            "{text}"
        );
        // A bound that cannot be computed refuses the output, naming why.
        let missing =
            judged(json!(10), json!({"amount": 1840.0, "limit": 1500.0})).expect("refused");
        assert!(
            missing.contains("cannot be computed for this input"),
            "{missing}"
        );
        let text = judged(
            json!(10),
            json!({"amount": "1840", "limit": 1500.0, "deductible": 0}),
        )
        .expect("refused");
        assert!(text.contains("cannot be computed"), "{text}");
        // A boolean is not a number here (the feature language reads it as 1 or 0).
        let text = judged(
            json!(0),
            json!({"amount": true, "limit": 1500.0, "deductible": 0}),
        )
        .expect("refused");
        assert!(text.contains("cannot be computed"), "{text}");
        // A bound of 0 is exact: not a billionth over, nor under.
        let zero = json!({"amount": 100.0, "limit": 1500.0, "deductible": 100.0});
        assert_eq!(judged(json!(0), zero.clone()), None);
        assert!(judged(json!(1e-9), zero.clone()).is_some());
        assert!(judged(json!(-1e-9), zero).is_some());
    }
}
