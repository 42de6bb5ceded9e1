//! Checks a [`Draft`] against every rule of the format and builds the [`Policy`].
//!
//! Every rule is checked and every violation reported; a rule whose premises are already
//! broken (a graph with an undeclared initial state, say) is skipped rather than allowed
//! to report consequences of a mistake already reported.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Range;

use super::decode::{Draft, DraftGate, DraftState, Located};
use super::diagnostic::{CapabilityKind, Problem, Report};
use super::validate_rules;
use super::{
    BUDGET_FIELDS, Budgets, ConfidenceGate, HostCaps, ModelRules, Policy, State, StateKind,
};
use crate::edition::Edition;

/// Validates `draft` under the rules of `edition`, reporting every problem. The returned
/// policy is meaningful only if nothing was reported.
pub(super) fn validate(
    draft: Draft,
    caps: &HostCaps,
    edition: Edition,
    report: &mut Report<'_>,
) -> Policy {
    for (field, text) in [
        ("policy.name", &draft.name),
        ("policy.version", &draft.version),
    ] {
        if let Some(text) = text
            && text.get_ref().trim().is_empty()
        {
            report.push(text.span(), field, Problem::Empty);
        }
    }
    let tools = declared(report, "capabilities.tools", &draft.tools);
    let models = declared(report, "capabilities.models", &draft.models);
    let states: BTreeMap<String, State> = draft
        .states
        .iter()
        .map(|state| {
            (
                state.name.get_ref().clone(),
                check_state(report, state, &tools, &models),
            )
        })
        .collect();
    check_state_set(report, &draft, &states);
    let tool_rules = validate_rules::check_tool_rules(report, &draft.tool_rules, &tools);
    let model_rules =
        validate_rules::check_model_rules(report, &draft.model_rules, &models, &tools);
    // Models whose provenance was written (if it is not in `model_rules`, its mistakes
    // were reported where they are).
    let written: BTreeSet<String> = draft
        .model_rules
        .iter()
        .filter(|r| !(r.features.is_empty() && r.sources.is_empty() && r.lets.is_empty()))
        .map(|r| r.name.get_ref().clone())
        .collect();
    let gates = check_gates(
        report,
        &draft.gates,
        &states,
        &models,
        &model_rules,
        &written,
        edition,
    );
    let mut states = states;
    validate_rules::check_reviews(report, &draft.states, &mut states, &gates, edition);
    if let (Some(initial), true) = (check_initial(report, &draft, &states), draft.graph_complete) {
        check_graph(report, initial, &draft.states, &states, &gates);
    }
    Policy {
        name: draft.name.map(Located::into_inner).unwrap_or_default(),
        version: draft.version.map(Located::into_inner).unwrap_or_default(),
        description: draft.description,
        initial: draft.initial.map(Located::into_inner).unwrap_or_default(),
        tools,
        models,
        states,
        gates,
        budgets: budgets(report, &draft.budgets, caps),
        tool_rules,
        model_rules,
        input_contract: super::input::validate(report, draft.input.as_ref()),
        wasi: draft.wasi.is_some_and(|enabled| *enabled.get_ref()),
    }
}

/// Rules across states: transition targets exist, review states offer a decision, some
/// state is terminal.
fn check_state_set(report: &mut Report<'_>, draft: &Draft, states: &BTreeMap<String, State>) {
    for state in &draft.states {
        let name = state.name.get_ref();
        let path = format!("states.{name}.transitions");
        for target in state.transitions.iter().flat_map(|list| list.get_ref()) {
            if !states.contains_key(target.get_ref()) {
                let problem = Problem::UnknownState {
                    name: target.get_ref().clone(),
                };
                report.push(target.span(), &path, problem);
            }
        }
        // Only when every transition list was read: one that failed is already reported.
        let undecidable = states
            .get(name)
            .is_some_and(|s| s.kind == StateKind::Review && s.transitions.is_empty());
        if draft.graph_complete && undecidable {
            let problem = Problem::ReviewWithoutDecisions {
                state: name.clone(),
            };
            report.push(state.span.clone(), format!("states.{name}"), problem);
        }
    }
    let has_terminal = states
        .values()
        .any(|state| state.kind == StateKind::Terminal);
    match &draft.states_span {
        None => {
            let problem = Problem::Missing {
                expected: "at least one [states.<name>] table",
            };
            report.push(0..0, "states", problem);
        }
        Some(span) if !has_terminal => {
            report.push(span.clone(), "states", Problem::NoTerminalState)
        }
        Some(_) => {}
    }
}

/// The initial state, if it is one a run can start from.
fn check_initial<'d>(
    report: &mut Report<'_>,
    draft: &'d Draft,
    states: &BTreeMap<String, State>,
) -> Option<&'d str> {
    let initial = draft.initial.as_ref()?;
    let name = initial.get_ref();
    let field = "policy.initial";
    match states.get(name).map(|state| state.kind) {
        None => report.push(
            initial.span(),
            field,
            Problem::UnknownState { name: name.clone() },
        ),
        Some(StateKind::Terminal) => report.push(
            initial.span(),
            field,
            Problem::InitialIsTerminal {
                state: name.clone(),
            },
        ),
        Some(StateKind::Working | StateKind::Review) => return Some(name),
    }
    None
}

/// A state, tool or model name: `[A-Za-z][A-Za-z0-9_-]{0,63}`.
fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The names of `[capabilities]`, each checked for form and repetition.
fn declared(report: &mut Report<'_>, field: &str, names: &[Located<String>]) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for name in names {
        if !is_valid_name(name.get_ref()) {
            report.push(
                name.span(),
                field,
                Problem::BadName {
                    name: name.get_ref().clone(),
                },
            );
        }
        if !set.insert(name.get_ref().clone()) {
            report.push(
                name.span(),
                field,
                Problem::Duplicate {
                    name: name.get_ref().clone(),
                },
            );
        }
    }
    set
}

/// Names in a state's list: no repetition and, for capabilities, declared ones only.
fn listed(
    report: &mut Report<'_>,
    field: &str,
    list: Option<&Located<Vec<Located<String>>>>,
    declared: Option<(CapabilityKind, &BTreeSet<String>)>,
) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for name in list.iter().flat_map(|list| list.get_ref()) {
        let text = name.get_ref();
        if !set.insert(text.clone()) {
            report.push(
                name.span(),
                field,
                Problem::Duplicate { name: text.clone() },
            );
        }
        if let Some((kind, declared)) = declared
            && !declared.contains(text)
        {
            report.push(
                name.span(),
                field,
                Problem::UnknownCapability {
                    kind,
                    name: text.clone(),
                },
            );
        }
    }
    set
}

fn check_state(
    report: &mut Report<'_>,
    draft: &DraftState,
    tools: &BTreeSet<String>,
    models: &BTreeSet<String>,
) -> State {
    let name = draft.name.get_ref();
    let path = format!("states.{name}");
    if !is_valid_name(name) {
        report.push(
            draft.name.span(),
            &path,
            Problem::BadName { name: name.clone() },
        );
    }
    let terminal = draft.terminal.as_ref().is_some_and(|flag| *flag.get_ref());
    let review = draft.review.as_ref().filter(|flag| *flag.get_ref());
    if let (true, Some(review)) = (terminal, review) {
        report.push(
            review.span(),
            format!("{path}.review"),
            Problem::TerminalAndReview {
                state: name.clone(),
            },
        );
    }
    let kind = match (terminal, review.is_some()) {
        (true, _) => StateKind::Terminal,
        (false, true) => StateKind::Review,
        (false, false) => StateKind::Working,
    };
    let lists = [
        ("tools", &draft.tools, Some((CapabilityKind::Tool, tools))),
        (
            "models",
            &draft.models,
            Some((CapabilityKind::Model, models)),
        ),
        ("transitions", &draft.transitions, None),
    ];
    let [tools, models, transitions] = lists.map(|(key, list, declared)| {
        let field = format!("{path}.{key}");
        if let (StateKind::Terminal, Some(list)) = (kind, list)
            && !list.get_ref().is_empty()
        {
            let problem = Problem::TerminalWithTransitionsOrCapabilities {
                state: name.clone(),
            };
            report.push(list.span(), &field, problem);
        }
        listed(report, &field, list.as_ref(), declared)
    });
    State {
        kind,
        tools,
        models,
        transitions,
        output: validate_rules::check_output(report, draft, kind),
        review: None,
    }
}

fn check_gates(
    report: &mut Report<'_>,
    drafts: &[DraftGate],
    states: &BTreeMap<String, State>,
    models: &BTreeSet<String>,
    model_rules: &BTreeMap<String, ModelRules>,
    provenance_written: &BTreeSet<String>,
    edition: Edition,
) -> Vec<ConfidenceGate> {
    let mut gates: BTreeMap<String, ConfidenceGate> = BTreeMap::new();
    let mut first_lines: BTreeMap<&str, usize> = BTreeMap::new();
    for draft in drafts {
        let path = format!("gates[{}]", draft.index);
        let mut unique = true;
        if let Some(to) = &draft.to {
            let name = to.get_ref();
            if !states.contains_key(name) {
                let problem = Problem::UnknownState { name: name.clone() };
                report.push(to.span(), format!("{path}.to"), problem);
            } else if let Some(&first_line) = first_lines.get(name.as_str()) {
                let problem = Problem::DuplicateGate {
                    to: name.clone(),
                    first_line,
                };
                report.push(to.span(), format!("{path}.to"), problem);
                unique = false;
            } else {
                first_lines.insert(name, report.line_of(to.span()));
            }
        }
        check_gate_fields(report, &path, draft, states, models);
        // Since edition 2 a gate names the label whose probability it compares.
        if draft.label.is_none() && edition >= Edition::V2 {
            let expected = "label = \"<the label the model must predict, e.g. repay>\"";
            report.push(
                draft.span.clone(),
                format!("{path}.label"),
                Problem::Missing { expected },
            );
        }
        let require_reconciled = draft
            .require_reconciled
            .as_ref()
            .map_or(draft.label.is_some(), |flag| *flag.get_ref());
        if let (true, Some(model)) = (require_reconciled, &draft.model) {
            let declared = model_rules
                .get(model.get_ref())
                .is_some_and(|rules| rules.provenance.is_some());
            // An undeclared model is reported as such; provenance errors are reported
            // where they are.
            let reported = provenance_written.contains(model.get_ref());
            if !declared && !reported && models.contains(model.get_ref()) {
                let span = draft
                    .require_reconciled
                    .as_ref()
                    .map_or_else(|| model.span(), Located::span);
                let problem = Problem::GateNeedsProvenance {
                    model: model.get_ref().clone(),
                };
                report.push(span, format!("{path}.require_reconciled"), problem);
            }
        }
        if let (true, Some(to), Some(model), Some(min_confidence), Some(otherwise)) = (
            unique,
            &draft.to,
            &draft.model,
            &draft.min_confidence,
            &draft.otherwise,
        ) {
            let gate = ConfidenceGate {
                to: to.get_ref().clone(),
                model: model.get_ref().clone(),
                min_confidence: *min_confidence.get_ref(),
                otherwise: otherwise.get_ref().clone(),
                label: draft.label.as_ref().map(|l| l.get_ref().clone()),
                require_reconciled,
            };
            gates.insert(gate.to.clone(), gate);
        }
    }
    gates.into_values().collect()
}

/// A gate's model, threshold and fallback.
fn check_gate_fields(
    report: &mut Report<'_>,
    path: &str,
    draft: &DraftGate,
    states: &BTreeMap<String, State>,
    models: &BTreeSet<String>,
) {
    if let Some(model) = &draft.model
        && !models.contains(model.get_ref())
    {
        let problem = Problem::GateUnknownModel {
            model: model.get_ref().clone(),
        };
        report.push(model.span(), format!("{path}.model"), problem);
    }
    if let Some(confidence) = &draft.min_confidence {
        let value = *confidence.get_ref();
        // Also refuses NaN, which no range contains.
        if !(0.0..=1.0).contains(&value) {
            let problem = Problem::ConfidenceOutOfRange { value };
            report.push(confidence.span(), format!("{path}.min_confidence"), problem);
        }
    }
    if let Some(otherwise) = &draft.otherwise {
        let name = otherwise.get_ref().clone();
        let field = format!("{path}.otherwise");
        match states.get(&name).map(|state| state.kind) {
            None => report.push(otherwise.span(), field, Problem::UnknownState { name }),
            Some(StateKind::Review) => {}
            Some(StateKind::Working | StateKind::Terminal) => report.push(
                otherwise.span(),
                field,
                Problem::GateOtherwiseNotReview { state: name },
            ),
        }
    }
}

/// Reachability from `initial`, and a way out of every working state. A transition into
/// a gated state may also lead to the gate's `otherwise` state.
fn check_graph<'p>(
    report: &mut Report<'_>,
    initial: &'p str,
    drafts: &[DraftState],
    states: &'p BTreeMap<String, State>,
    gates: &'p [ConfidenceGate],
) {
    // The first gate on each state (as `find` would pick it), looked up once per edge.
    let mut gate_on: BTreeMap<&str, &str> = BTreeMap::new();
    for gate in gates {
        gate_on
            .entry(gate.to.as_str())
            .or_insert(gate.otherwise.as_str());
    }
    let successors = |state: &'p State| -> Vec<&'p str> {
        let mut next = Vec::new();
        for target in &state.transitions {
            next.push(target.as_str());
            if let Some(otherwise) = gate_on.get(target.as_str()) {
                next.push(otherwise);
            }
        }
        next.retain(|name| states.contains_key(*name));
        next
    };

    let mut reached: BTreeSet<&str> = BTreeSet::from([initial]);
    let mut queue = VecDeque::from([initial]);
    while let Some(name) = queue.pop_front() {
        for next in states.get(name).map(&successors).unwrap_or_default() {
            if reached.insert(next) {
                queue.push_back(next);
            }
        }
    }

    let is_exit = |state: &State| state.kind != StateKind::Working;
    let mut can_exit: BTreeSet<&str> = states
        .iter()
        .filter(|(_, state)| is_exit(state))
        .map(|(name, _)| name.as_str())
        .collect();
    let any_exit = !can_exit.is_empty();
    // Backwards from the exits, each edge once (a fixpoint over all states per round was
    // quadratic on a long chain of states).
    let mut before: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, state) in states {
        for next in successors(state) {
            before.entry(next).or_default().push(name.as_str());
        }
    }
    let mut queue: VecDeque<&str> = can_exit.iter().copied().collect();
    while let Some(name) = queue.pop_front() {
        for earlier in before.get(name).map(Vec::as_slice).unwrap_or_default() {
            if can_exit.insert(earlier) {
                queue.push_back(earlier);
            }
        }
    }

    for draft in drafts {
        let name = draft.name.get_ref();
        let path = format!("states.{name}");
        let span: Range<usize> = draft.span.clone();
        if !reached.contains(name.as_str()) {
            let problem = Problem::UnreachableState {
                state: name.clone(),
                initial: initial.to_string(),
            };
            report.push(span.clone(), &path, problem);
        }
        // Without any terminal or review state, NoTerminalState already says it all.
        if any_exit && !can_exit.contains(name.as_str()) {
            report.push(
                span,
                &path,
                Problem::NoWayOut {
                    state: name.clone(),
                },
            );
        }
    }
}

/// Defaults (lowered to the caps), overridden by the file's values within the caps.
fn budgets(report: &mut Report<'_>, written: &[(usize, Located<u64>)], caps: &HostCaps) -> Budgets {
    let caps = caps.to_array();
    let mut values = Budgets::DEFAULT.to_array();
    for (value, cap) in values.iter_mut().zip(caps) {
        *value = (*value).min(cap);
    }
    for (index, value) in written {
        let (field, cap, count) = (BUDGET_FIELDS[*index], caps[*index], *value.get_ref());
        let path = format!("budgets.{field}");
        if count == 0 {
            report.push(value.span(), path, Problem::BudgetZero { field });
        } else if count > cap {
            report.push(
                value.span(),
                path,
                Problem::BudgetOverCap {
                    field,
                    value: count,
                    cap,
                },
            );
        } else {
            values[*index] = count;
        }
    }
    Budgets::from_array(values)
}
