//! Checks the rules added in edition 2: call caps, feature provenance (built and checked
//! by [`crate::provenance`]) and output rules of terminal states.

use std::collections::{BTreeMap, BTreeSet};

use super::decode::{DraftConstraint, DraftRules, DraftState, Located};
use super::diagnostic::{CapabilityKind, Problem, Report};
use super::{
    Bound, ConfidenceGate, DecisionRule, JsonType, ModelRules, OutputConstraint, ReviewRules,
    ReviewTimeout, State, StateKind, ToolRules,
};
use crate::edition::Edition;
use crate::provenance::{Provenance, SourceSpec};

/// A call cap: a positive number of calls per visit of a state.
fn call_cap(report: &mut Report<'_>, path: &str, rules: &DraftRules) -> Option<u32> {
    let cap = rules.max_calls.as_ref()?;
    match u32::try_from(*cap.get_ref()) {
        Ok(0) => {
            report.push(
                cap.span(),
                format!("{path}.max_calls_per_state"),
                Problem::CallCapZero,
            );
            None
        }
        Ok(n) => Some(n),
        Err(_) => Some(u32::MAX),
    }
}

/// The name of a `[tools.<name>]` or `[models.<name>]` table must be declared.
fn check_declared(
    report: &mut Report<'_>,
    kind: CapabilityKind,
    rules: &DraftRules,
    declared: &BTreeSet<String>,
) {
    let name = rules.name.get_ref();
    if !declared.contains(name) {
        let section = match kind {
            CapabilityKind::Tool => "tools",
            CapabilityKind::Model => "models",
        };
        let problem = Problem::UnknownCapability {
            kind,
            name: name.clone(),
        };
        report.push(rules.name.span(), format!("{section}.{name}"), problem);
    }
}

pub(super) fn check_tool_rules(
    report: &mut Report<'_>,
    drafts: &[DraftRules],
    tools: &BTreeSet<String>,
) -> BTreeMap<String, ToolRules> {
    let mut out = BTreeMap::new();
    for rules in drafts {
        check_declared(report, CapabilityKind::Tool, rules, tools);
        let path = format!("tools.{}", rules.name.get_ref());
        let max_calls_per_state = call_cap(report, &path, rules);
        out.insert(
            rules.name.get_ref().clone(),
            ToolRules {
                max_calls_per_state,
            },
        );
    }
    out
}

pub(super) fn check_model_rules(
    report: &mut Report<'_>,
    drafts: &[DraftRules],
    models: &BTreeSet<String>,
    tools: &BTreeSet<String>,
) -> BTreeMap<String, ModelRules> {
    let mut out = BTreeMap::new();
    for rules in drafts {
        check_declared(report, CapabilityKind::Model, rules, models);
        let path = format!("models.{}", rules.name.get_ref());
        let max_calls_per_state = call_cap(report, &path, rules);
        let provenance = provenance(report, &path, rules, tools);
        out.insert(
            rules.name.get_ref().clone(),
            ModelRules {
                max_calls_per_state,
                provenance,
            },
        );
    }
    out
}

/// The feature provenance of a model, if it declares features.
fn provenance(
    report: &mut Report<'_>,
    path: &str,
    rules: &DraftRules,
    tools: &BTreeSet<String>,
) -> Option<Provenance> {
    let tolerance = match &rules.tolerance {
        Some(t) if !(t.get_ref().is_finite() && *t.get_ref() >= 0.0) => {
            let problem = Problem::ToleranceInvalid {
                value: *t.get_ref(),
            };
            report.push(t.span(), format!("{path}.tolerance"), problem);
            return None;
        }
        Some(t) => *t.get_ref(),
        None => DEFAULT_TOLERANCE,
    };
    let mut sources = BTreeMap::new();
    for source in &rules.sources {
        let Some(tool) = &source.tool else { continue };
        if !tools.contains(tool.get_ref()) {
            let problem = Problem::UnknownCapability {
                kind: CapabilityKind::Tool,
                name: tool.get_ref().clone(),
            };
            let field = format!("{path}.sources.{}.tool", source.name.get_ref());
            report.push(tool.span(), field, problem);
        }
        let args = source
            .args
            .iter()
            .map(|(arg, input)| (pointer(arg.get_ref()), pointer(input.get_ref())))
            .collect();
        let spec = SourceSpec {
            tool: tool.get_ref().clone(),
            args,
        };
        sources.insert(source.name.get_ref().clone(), spec);
    }
    if rules.features.is_empty() && rules.sources.is_empty() && rules.lets.is_empty() {
        return None;
    }
    let texts = |list: &[(Located<String>, Located<String>)]| -> BTreeMap<String, String> {
        list.iter()
            .map(|(name, text)| (name.get_ref().clone(), text.get_ref().clone()))
            .collect()
    };
    match Provenance::build(
        sources,
        texts(&rules.lets),
        texts(&rules.features),
        tolerance,
    ) {
        Ok(provenance) => Some(provenance),
        Err(errors) => {
            for error in errors {
                // Point at the expression (or name) the error is about, if it names one.
                let (section, name) = error.field.split_once('.').unwrap_or((&error.field, ""));
                let list = match section {
                    "let" => &rules.lets,
                    _ => &rules.features,
                };
                let span = list
                    .iter()
                    .find(|(n, _)| n.get_ref() == name)
                    .map(|(_, text)| text.span())
                    .or_else(|| rules.features_span.clone())
                    .unwrap_or_else(|| rules.span.clone());
                let problem = Problem::Provenance {
                    message: error.message,
                };
                report.push(span, format!("{path}.{}", error.field), problem);
            }
            None
        }
    }
}

/// The relative tolerance of feature reconciliation when a policy sets none.
pub(super) const DEFAULT_TOLERANCE: f64 = 1e-9;

/// An argument or input pointer as written: `"/a/b"`, or a plain field name `"a"`.
fn pointer(text: &str) -> String {
    if text.starts_with('/') || text.is_empty() {
        text.to_string()
    } else {
        format!("/{}", text.replace('~', "~0").replace('/', "~1"))
    }
}

/// A terminal state's output rules.
pub(super) fn check_output(
    report: &mut Report<'_>,
    draft: &DraftState,
    kind: StateKind,
) -> BTreeMap<String, OutputConstraint> {
    let name = draft.name.get_ref();
    let path = format!("states.{name}.output");
    if let (Some(span), false) = (&draft.output_span, kind == StateKind::Terminal) {
        let problem = Problem::OutputNotTerminal {
            state: name.clone(),
        };
        report.push(span.clone(), &path, problem);
    }
    let mut out = BTreeMap::new();
    for (field, constraint) in &draft.output {
        let rule = match constraint {
            DraftConstraint::Equals(value) => OutputConstraint::Equals(value.clone()),
            DraftConstraint::Type(kind) => match JsonType::parse(kind.get_ref()) {
                Some(t) => OutputConstraint::Type(t),
                None => {
                    let problem = Problem::UnknownJsonType {
                        name: kind.get_ref().clone(),
                    };
                    report.push(
                        kind.span(),
                        format!("{path}.{}.type", field.get_ref()),
                        problem,
                    );
                    continue;
                }
            },
            DraftConstraint::Number { kind, min, max } => {
                let path = format!("{path}.{}", field.get_ref());
                if let Some(kind) = kind.as_ref().filter(|k| k.get_ref() != "number") {
                    let problem = Problem::BoundNotNumber {
                        kind: kind.get_ref().clone(),
                    };
                    report.push(kind.span(), format!("{path}.type"), problem);
                    continue;
                }
                let mut bound = |text: &Option<Located<String>>, key: &str| {
                    let text = text.as_ref()?;
                    match parse_bound(text.get_ref()) {
                        Ok(bound) => Some(Ok(bound)),
                        Err(message) => {
                            let problem = Problem::BadBound { message };
                            report.push(text.span(), format!("{path}.{key}"), problem);
                            Some(Err(()))
                        }
                    }
                };
                let spans = (
                    min.as_ref().map(|m| m.span()),
                    max.as_ref().map(|m| m.span()),
                );
                let (min, max) = (bound(min, "min"), bound(max, "max"));
                let (Ok(min), Ok(max)) = (min.transpose(), max.transpose()) else {
                    continue;
                };
                // A bound that reads nothing is the same for every run: one that cannot be
                // computed, or a least above the most, would refuse every output.
                let constant = |b: &Option<Bound>| {
                    b.as_ref()
                        .filter(|b| b.0.references().is_empty())
                        .map(|b| (b.to_string(), b.value(&serde_json::Value::Null)))
                };
                let (low, high) = (constant(&min), constant(&max));
                let mut refuses_all = None;
                for (value, key, span) in [(&low, "min", &spans.0), (&high, "max", &spans.1)] {
                    if let Some((text, Err(why))) = value {
                        let message = format!("`{text}` {}", why.describe(false));
                        refuses_all = Some((key, span.clone(), message));
                    }
                }
                if let (Some((_, Ok(low))), Some((_, Ok(high)))) = (&low, &high)
                    && low > high
                {
                    let message = format!("min {low} is above max {high}");
                    refuses_all = Some(("max", spans.1.clone(), message));
                }
                if let Some((key, span, message)) = refuses_all {
                    let message = format!("{message}: no output could meet this rule");
                    report.push(
                        span.unwrap_or(field.span()),
                        format!("{path}.{key}"),
                        Problem::BadBound { message },
                    );
                    continue;
                }
                OutputConstraint::Number { min, max }
            }
        };
        out.insert(field.get_ref().clone(), rule);
    }
    out
}

/// Parses an output bound: an expression whose every reference is a pointer into the
/// run's input.
fn parse_bound(text: &str) -> Result<Bound, String> {
    let expr = crate::provenance::expr::parse(text).map_err(|e| e.to_string())?;
    for reference in expr.references() {
        if !matches!(
            reference,
            crate::provenance::expr::Reference::Pointer { source: None, .. }
        ) {
            return Err(format!(
                "a bound reads only the run's input (`input:/field`), and this one reads `{reference}`"
            ));
        }
    }
    Ok(Bound(expr))
}

/// What a decision's `roles` must hold.
const ROLES: &str = "roles = [\"<role>\", ...], the roles that may give this outcome";

/// The longest a review timeout may be: a hundred years (a case nobody decides in that
/// long needs no timer, and its deadline must stay a date one can write down).
const MAX_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 24 * 3600);
/// The review rules of review states: every outcome offered names its roles (since
/// edition 2), only offered outcomes are named, and a timeout's outcome is offered and
/// never gated (a timeout must never approve).
pub(super) fn check_reviews(
    report: &mut Report<'_>,
    drafts: &[DraftState],
    states: &mut BTreeMap<String, State>,
    gates: &[ConfidenceGate],
    edition: Edition,
) {
    for draft in drafts {
        let name = draft.name.get_ref();
        let path = format!("states.{name}");
        let Some(state) = states.get_mut(name) else {
            continue;
        };
        if state.kind != StateKind::Review {
            if let Some(span) = &draft.decisions_span {
                let problem = Problem::ReviewRulesOutsideReview {
                    state: name.clone(),
                };
                report.push(span.clone(), format!("{path}.decisions"), problem);
            }
            if let Some(timeout) = &draft.timeout {
                let problem = Problem::ReviewRulesOutsideReview {
                    state: name.clone(),
                };
                report.push(timeout.span.clone(), format!("{path}.timeout"), problem);
            }
            continue;
        }
        let mut decisions = BTreeMap::new();
        for decision in &draft.decisions {
            let outcome = decision.outcome.get_ref();
            let field = format!("{path}.decisions.{outcome}");
            if !state.transitions.contains(outcome) {
                let problem = Problem::NotAnOutcome {
                    state: name.clone(),
                    outcome: outcome.clone(),
                };
                report.push(decision.outcome.span(), &field, problem);
                continue;
            }
            let roles: BTreeSet<String> = decision
                .roles
                .iter()
                .flat_map(|list| list.get_ref())
                .map(|role| role.get_ref().clone())
                .collect();
            match &decision.roles {
                // Written, but empty (or only empty names): point at the list itself.
                Some(list) if roles.is_empty() => {
                    let problem = Problem::EmptyList { expected: ROLES };
                    report.push(list.span(), format!("{field}.roles"), problem);
                }
                None => {
                    let problem = Problem::Missing { expected: ROLES };
                    report.push(decision.span.clone(), format!("{field}.roles"), problem);
                }
                Some(_) => {}
            }
            let dual_control = decision.dual_control.as_ref().is_some_and(|d| *d.get_ref());
            decisions.insert(
                outcome.clone(),
                DecisionRule {
                    roles,
                    dual_control,
                },
            );
        }
        if edition >= Edition::V2 {
            for outcome in &state.transitions {
                if !decisions.contains_key(outcome) {
                    let problem = Problem::OutcomeWithoutRoles {
                        state: name.clone(),
                        outcome: outcome.clone(),
                    };
                    report.push(
                        draft.span.clone(),
                        format!("{path}.decisions.{outcome}"),
                        problem,
                    );
                }
            }
        }
        let timeout = draft
            .timeout
            .as_ref()
            .and_then(|t| check_timeout(report, &path, t, state, gates));
        if edition >= Edition::V2 || !decisions.is_empty() || timeout.is_some() {
            state.review = Some(ReviewRules { decisions, timeout });
        }
    }
}

fn check_timeout(
    report: &mut Report<'_>,
    path: &str,
    timeout: &super::decode::DraftTimeout,
    state: &State,
    gates: &[ConfidenceGate],
) -> Option<ReviewTimeout> {
    let field = format!("{path}.timeout");
    let after = match &timeout.after {
        Some(after) => match humantime::parse_duration(after.get_ref()) {
            Ok(duration) if duration > MAX_TIMEOUT => {
                let problem = Problem::TimeoutTooLong {
                    value: after.get_ref().clone(),
                };
                report.push(after.span(), format!("{field}.after"), problem);
                None
            }
            Ok(duration) if !duration.is_zero() => Some(duration.as_millis() as u64),
            _ => {
                let problem = Problem::BadDuration {
                    value: after.get_ref().clone(),
                };
                report.push(after.span(), format!("{field}.after"), problem);
                None
            }
        },
        None => {
            let problem = Problem::Missing {
                expected: "after = \"72h\", how long a run may wait",
            };
            report.push(timeout.span.clone(), format!("{field}.after"), problem);
            None
        }
    };
    let outcome = match &timeout.outcome {
        Some(outcome) if !state.transitions.contains(outcome.get_ref()) => {
            let problem = Problem::UnknownState {
                name: outcome.get_ref().clone(),
            };
            report.push(outcome.span(), format!("{field}.outcome"), problem);
            None
        }
        Some(outcome) if gates.iter().any(|g| &g.to == outcome.get_ref()) => {
            let problem = Problem::TimeoutApproves {
                outcome: outcome.get_ref().clone(),
            };
            report.push(outcome.span(), format!("{field}.outcome"), problem);
            None
        }
        Some(outcome) => Some(outcome.get_ref().clone()),
        None => {
            let problem = Problem::Missing {
                expected: "outcome = \"<state>\", what a timeout decides (never an approval)",
            };
            report.push(timeout.span.clone(), format!("{field}.outcome"), problem);
            None
        }
    };
    Some(ReviewTimeout {
        after_ms: after?,
        outcome: outcome?,
    })
}
