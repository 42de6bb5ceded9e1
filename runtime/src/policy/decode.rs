//! Reads the TOML document into a [`Draft`]: the fields of the policy with their
//! positions, and nothing checked beyond their shape.
//!
//! Walks toml's spanned document tree rather than deriving `Deserialize`, so that every
//! unknown field, missing field and wrongly typed value is reported, not only the first.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use super::BUDGET_FIELDS;
use super::decode_rules;
use super::diagnostic::{Problem, Report};

/// A string, boolean or number with the span of its token.
pub(super) type Located<T> = Spanned<T>;

/// The policy as written: every field it could read, with positions.
#[derive(Debug, Default)]
pub(super) struct Draft {
    pub name: Option<Located<String>>,
    pub version: Option<Located<String>>,
    pub initial: Option<Located<String>>,
    pub description: Option<String>,
    pub tools: Vec<Located<String>>,
    pub models: Vec<Located<String>>,
    /// Budgets present in the file, by index into [`BUDGET_FIELDS`].
    pub budgets: Vec<(usize, Located<u64>)>,
    pub states: Vec<DraftState>,
    /// Where the `states` key first appears; `None` if it does not.
    pub states_span: Option<Range<usize>>,
    pub gates: Vec<DraftGate>,
    /// `[tools.<name>]` tables.
    pub tool_rules: Vec<DraftRules>,
    /// `[models.<name>]` tables.
    pub model_rules: Vec<DraftRules>,
    /// `[input]`: the input contract.
    pub input: Option<super::input::DraftInput>,
    /// `[wasi] enabled`: whether the agent may be a WASI guest.
    pub wasi: Option<Located<bool>>,
    /// False when a state or gate could not be read in full: the transition graph is then
    /// incomplete, and checking its reachability would only report consequences.
    pub graph_complete: bool,
}

/// A `[tools.<name>]` or `[models.<name>]` table.
#[derive(Debug)]
pub(super) struct DraftRules {
    pub name: Located<String>,
    pub span: Range<usize>,
    pub max_calls: Option<Located<u64>>,
    /// Models only: feature provenance.
    pub tolerance: Option<Located<f64>>,
    pub sources: Vec<DraftSource>,
    pub lets: Vec<(Located<String>, Located<String>)>,
    pub features: Vec<(Located<String>, Located<String>)>,
    /// Where `features` is written, if it is.
    pub features_span: Option<Range<usize>>,
}

/// One `sources.<name>` entry of a model's provenance.
#[derive(Debug)]
pub(super) struct DraftSource {
    pub name: Located<String>,
    pub tool: Option<Located<String>>,
    /// (pointer into the call's args, pointer into the input), as written.
    pub args: Vec<(Located<String>, Located<String>)>,
}

/// An output constraint as written.
#[derive(Debug)]
pub(super) enum DraftConstraint {
    Equals(serde_json::Value),
    Type(Located<String>),
    /// `{ type = "number", min = "...", max = "..." }` (type optional).
    Number {
        kind: Option<Located<String>>,
        min: Option<Located<String>>,
        max: Option<Located<String>>,
    },
}

#[derive(Debug)]
pub(super) struct DraftState {
    pub name: Located<String>,
    /// The state's table (its `[states.name]` header).
    pub span: Range<usize>,
    pub terminal: Option<Located<bool>>,
    pub review: Option<Located<bool>>,
    pub tools: Option<Located<Vec<Located<String>>>>,
    pub models: Option<Located<Vec<Located<String>>>>,
    pub transitions: Option<Located<Vec<Located<String>>>>,
    /// `[states.<name>.output]`: field -> constraint.
    pub output: Vec<(Located<String>, DraftConstraint)>,
    pub output_span: Option<Range<usize>>,
    /// `[states.<name>.decisions.<outcome>]`: who may decide what, in a review state.
    pub decisions: Vec<DraftDecision>,
    pub decisions_span: Option<Range<usize>>,
    /// `[states.<name>.timeout]`.
    pub timeout: Option<DraftTimeout>,
}

/// One `decisions.<outcome>` table of a review state.
#[derive(Debug)]
pub(super) struct DraftDecision {
    pub outcome: Located<String>,
    pub span: Range<usize>,
    pub roles: Option<Located<Vec<Located<String>>>>,
    pub dual_control: Option<Located<bool>>,
}

/// A review state's `timeout` table.
#[derive(Debug)]
pub(super) struct DraftTimeout {
    pub span: Range<usize>,
    pub after: Option<Located<String>>,
    pub outcome: Option<Located<String>>,
}

#[derive(Debug)]
pub(super) struct DraftGate {
    /// Position in the file's `[[gates]]` list.
    pub index: usize,
    pub span: Range<usize>,
    pub to: Option<Located<String>>,
    pub model: Option<Located<String>>,
    pub min_confidence: Option<Located<f64>>,
    pub otherwise: Option<Located<String>>,
    pub label: Option<Located<String>>,
    pub require_reconciled: Option<Located<bool>>,
}

const TOP: &[&str] = &[
    "policy",
    "capabilities",
    "budgets",
    "states",
    "gates",
    "tools",
    "models",
    "input",
    "wasi",
];
const POLICY: &[&str] = &["name", "version", "initial", "description"];
const CAPABILITIES: &[&str] = &["tools", "models"];
const STATE: &[&str] = &[
    "terminal",
    "review",
    "tools",
    "models",
    "transitions",
    "output",
];
const GATE: &[&str] = &[
    "to",
    "model",
    "label",
    "min_confidence",
    "otherwise",
    "require_reconciled",
];
const TOOL_RULES: &[&str] = &["max_calls_per_state"];
const MODEL_RULES: &[&str] = &[
    "max_calls_per_state",
    "tolerance",
    "sources",
    "let",
    "features",
];

const NAME: &str = "a name in quotes";
const NAMES: &str = "a list of names, such as [\"a\", \"b\"]";
const BOOLEAN: &str = "true or false";
const COUNT: &str = "a positive whole number";

/// Decodes `text`; `None` after a syntax error, which is then in `report`.
pub(super) fn decode(text: &str, report: &mut Report<'_>) -> Option<Draft> {
    let (document, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        for error in errors {
            let span = error.span().unwrap_or(0..0);
            report.push(span, "", Problem::Syntax(error.message().to_string()));
        }
        return None;
    }
    let mut draft = Draft {
        graph_complete: true,
        ..Draft::default()
    };
    let root = document.get_ref();
    let mut saw_policy = false;
    for (key, value) in root.iter() {
        let field = key.get_ref().as_ref();
        match field {
            "policy" => {
                saw_policy = true;
                if let Some(table) = table(report, field, value) {
                    policy_table(report, table, value.span(), &mut draft);
                }
            }
            "capabilities" => {
                if let Some(table) = table(report, field, value) {
                    capabilities(report, table, &mut draft);
                }
            }
            "budgets" => {
                if let Some(table) = table(report, field, value) {
                    budgets(report, table, &mut draft);
                }
            }
            "states" => {
                draft.states_span = Some(key.span());
                match table(report, field, value) {
                    Some(table) => states(report, table, &mut draft),
                    None => draft.graph_complete = false,
                }
            }
            "gates" => gates(report, value, &mut draft),
            "tools" => {
                if let Some(table) = table(report, field, value) {
                    draft.tool_rules = decode_rules::rules(report, "tools", table, TOOL_RULES);
                }
            }
            "models" => {
                if let Some(table) = table(report, field, value) {
                    draft.model_rules = decode_rules::rules(report, "models", table, MODEL_RULES);
                }
            }
            "input" => {
                if let Some(table) = table(report, field, value) {
                    draft.input = Some(super::input::decode(report, table, value.span()));
                }
            }
            "wasi" => {
                if let Some(table) = table(report, field, value) {
                    draft.wasi = super::wasi::decode(report, table, value.span());
                }
            }
            _ => unknown(report, key, "", TOP),
        }
    }
    if !saw_policy {
        report.push(
            0..0,
            "policy",
            Problem::Missing {
                expected: "a [policy] table with name, version and initial",
            },
        );
        draft.graph_complete = false;
    }
    Some(draft)
}

fn policy_table(
    report: &mut Report<'_>,
    table: &DeTable<'_>,
    span: Range<usize>,
    draft: &mut Draft,
) {
    for (key, value) in table.iter() {
        let path = format!("policy.{}", key.get_ref());
        match key.get_ref().as_ref() {
            "name" => draft.name = string(report, &path, value, "the policy's name in quotes"),
            "version" => {
                draft.version = string(report, &path, value, "the policy's version in quotes")
            }
            "initial" => {
                draft.initial = string(report, &path, value, "the name of the state runs start in")
            }
            "description" => {
                draft.description =
                    string(report, &path, value, "free text in quotes").map(Spanned::into_inner)
            }
            _ => unknown(report, key, "policy", POLICY),
        }
    }
    let required = [
        ("name", "name = \"...\""),
        ("version", "version = \"...\""),
        ("initial", "initial = \"<state name>\""),
    ];
    for (name, expected) in required {
        // A field present with the wrong type was already reported as such.
        if !table.contains_key(name) {
            report.push(
                span.clone(),
                format!("policy.{name}"),
                Problem::Missing { expected },
            );
        }
    }
    if draft.initial.is_none() {
        draft.graph_complete = false;
    }
}

fn capabilities(report: &mut Report<'_>, table: &DeTable<'_>, draft: &mut Draft) {
    for (key, value) in table.iter() {
        let path = format!("capabilities.{}", key.get_ref());
        match key.get_ref().as_ref() {
            "tools" => {
                draft.tools = names(report, &path, value).map_or_else(Vec::new, Spanned::into_inner)
            }
            "models" => {
                draft.models =
                    names(report, &path, value).map_or_else(Vec::new, Spanned::into_inner)
            }
            _ => unknown(report, key, "capabilities", CAPABILITIES),
        }
    }
}

fn budgets(report: &mut Report<'_>, table: &DeTable<'_>, draft: &mut Draft) {
    for (key, value) in table.iter() {
        let name = key.get_ref().as_ref();
        match BUDGET_FIELDS.iter().position(|field| *field == name) {
            Some(index) => {
                if let Some(count) = integer(report, &format!("budgets.{name}"), value) {
                    draft.budgets.push((index, count));
                }
            }
            None => unknown(report, key, "budgets", &BUDGET_FIELDS),
        }
    }
}

fn states(report: &mut Report<'_>, table: &DeTable<'_>, draft: &mut Draft) {
    for (key, value) in table.iter() {
        let name = key.get_ref().to_string();
        let path = format!("states.{name}");
        let Some(fields) = self::table(report, &path, value) else {
            draft.graph_complete = false;
            continue;
        };
        let mut state = DraftState {
            name: Spanned::new(key.span(), name),
            span: value.span(),
            terminal: None,
            review: None,
            tools: None,
            models: None,
            transitions: None,
            output: Vec::new(),
            output_span: None,
            decisions: Vec::new(),
            decisions_span: None,
            timeout: None,
        };
        for (key, value) in fields.iter() {
            let field = format!("{path}.{}", key.get_ref());
            let before = report.len();
            match key.get_ref().as_ref() {
                "output" => {
                    state.output_span = Some(key.span());
                    if let Some(table) = self::table(report, &field, value) {
                        state.output = decode_rules::output(report, &field, table);
                    }
                    // An output rule does not change the transition graph.
                    continue;
                }
                "decisions" => {
                    state.decisions_span = Some(key.span());
                    if let Some(table) = self::table(report, &field, value) {
                        state.decisions = decode_rules::decisions(report, &field, table);
                    }
                    continue;
                }
                "timeout" => {
                    if let Some(table) = self::table(report, &field, value) {
                        state.timeout =
                            Some(decode_rules::timeout(report, &field, table, value.span()));
                    }
                    continue;
                }
                "terminal" => state.terminal = boolean(report, &field, value),
                "review" => state.review = boolean(report, &field, value),
                "tools" => state.tools = names(report, &field, value),
                "models" => state.models = names(report, &field, value),
                "transitions" => state.transitions = names(report, &field, value),
                _ => unknown(report, key, &path, STATE),
            }
            if report.len() > before {
                draft.graph_complete = false;
            }
        }
        draft.states.push(state);
    }
}

fn gates(report: &mut Report<'_>, value: &Spanned<DeValue<'_>>, draft: &mut Draft) {
    let Some(list) = array(report, "gates", value, "a list of [[gates]] tables") else {
        draft.graph_complete = false;
        return;
    };
    for (index, value) in list.iter().enumerate() {
        let path = format!("gates[{index}]");
        let Some(fields) = table(report, &path, value) else {
            draft.graph_complete = false;
            continue;
        };
        let mut gate = DraftGate {
            index,
            span: value.span(),
            to: None,
            model: None,
            min_confidence: None,
            otherwise: None,
            label: None,
            require_reconciled: None,
        };
        for (key, value) in fields.iter() {
            let field = format!("{path}.{}", key.get_ref());
            match key.get_ref().as_ref() {
                "to" => gate.to = string(report, &field, value, "the name of the guarded state"),
                "model" => gate.model = string(report, &field, value, "the name of a model"),
                "min_confidence" => gate.min_confidence = float(report, &field, value),
                "otherwise" => {
                    gate.otherwise = string(report, &field, value, "the name of a review state")
                }
                "label" => {
                    gate.label = string(report, &field, value, "the label the model must predict")
                }
                "require_reconciled" => gate.require_reconciled = boolean(report, &field, value),
                _ => unknown(report, key, &path, GATE),
            }
        }
        let required = [
            ("to", "to = \"<state name>\""),
            ("model", "model = \"<model name>\""),
            ("min_confidence", "min_confidence = <number from 0 to 1>"),
            ("otherwise", "otherwise = \"<review state name>\""),
        ];
        for (name, expected) in required {
            if !fields.contains_key(name) {
                report.push(
                    gate.span.clone(),
                    format!("{path}.{name}"),
                    Problem::Missing { expected },
                );
            }
        }
        if gate.to.is_none() || gate.otherwise.is_none() {
            draft.graph_complete = false;
        }
        draft.gates.push(gate);
    }
}

pub(super) fn unknown(
    report: &mut Report<'_>,
    key: &Spanned<std::borrow::Cow<'_, str>>,
    parent: &str,
    expected: &'static [&'static str],
) {
    let name = key.get_ref().to_string();
    let field = if parent.is_empty() {
        name.clone()
    } else {
        format!("{parent}.{name}")
    };
    report.push(key.span(), field, Problem::UnknownField { name, expected });
}

pub(super) fn wrong(
    report: &mut Report<'_>,
    field: &str,
    value: &Spanned<DeValue<'_>>,
    expected: &'static str,
) {
    let found = describe(value.get_ref());
    report.push(value.span(), field, Problem::WrongType { expected, found });
}

fn describe(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "a whole number",
        DeValue::Float(_) => "a decimal number",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "a list",
        DeValue::Table(_) => "a table",
    }
}

pub(super) fn table<'v, 'i>(
    report: &mut Report<'_>,
    field: &str,
    value: &'v Spanned<DeValue<'i>>,
) -> Option<&'v DeTable<'i>> {
    match value.get_ref() {
        DeValue::Table(table) => Some(table),
        _ => {
            wrong(report, field, value, "a table");
            None
        }
    }
}

fn array<'v, 'i>(
    report: &mut Report<'_>,
    field: &str,
    value: &'v Spanned<DeValue<'i>>,
    expected: &'static str,
) -> Option<&'v DeArray<'i>> {
    match value.get_ref() {
        DeValue::Array(array) => Some(array),
        _ => {
            wrong(report, field, value, expected);
            None
        }
    }
}

pub(super) fn string(
    report: &mut Report<'_>,
    field: &str,
    value: &Spanned<DeValue<'_>>,
    expected: &'static str,
) -> Option<Located<String>> {
    match value.get_ref() {
        DeValue::String(text) => Some(Spanned::new(value.span(), text.to_string())),
        _ => {
            wrong(report, field, value, expected);
            None
        }
    }
}

pub(super) fn boolean(
    report: &mut Report<'_>,
    field: &str,
    value: &Spanned<DeValue<'_>>,
) -> Option<Located<bool>> {
    match value.get_ref() {
        DeValue::Boolean(flag) => Some(Spanned::new(value.span(), *flag)),
        _ => {
            wrong(report, field, value, BOOLEAN);
            None
        }
    }
}

/// A list of names. Elements that are not strings are reported one by one and dropped.
pub(super) fn names(
    report: &mut Report<'_>,
    field: &str,
    value: &Spanned<DeValue<'_>>,
) -> Option<Located<Vec<Located<String>>>> {
    let list = array(report, field, value, NAMES)?;
    let names = list
        .iter()
        .filter_map(|element| string(report, field, element, NAME))
        .collect();
    Some(Spanned::new(value.span(), names))
}

pub(super) fn integer(
    report: &mut Report<'_>,
    field: &str,
    value: &Spanned<DeValue<'_>>,
) -> Option<Located<u64>> {
    let DeValue::Integer(number) = value.get_ref() else {
        wrong(report, field, value, COUNT);
        return None;
    };
    match u64::from_str_radix(number.as_str(), number.radix()) {
        Ok(count) => Some(Spanned::new(value.span(), count)),
        Err(_) => {
            let found = if number.as_str().starts_with('-') {
                "a negative number"
            } else {
                "a number too large to represent"
            };
            report.push(
                value.span(),
                field,
                Problem::WrongType {
                    expected: COUNT,
                    found,
                },
            );
            None
        }
    }
}

/// A decimal number; a whole number is accepted too (`min_confidence = 1`).
fn float(
    report: &mut Report<'_>,
    field: &str,
    value: &Spanned<DeValue<'_>>,
) -> Option<Located<f64>> {
    number(report, field, value, "a number from 0 to 1")
}

/// A decimal or whole number.
pub(super) fn number(
    report: &mut Report<'_>,
    field: &str,
    value: &Spanned<DeValue<'_>>,
    expected: &'static str,
) -> Option<Located<f64>> {
    let parsed = match value.get_ref() {
        DeValue::Float(number) => number.as_str().parse::<f64>().ok(),
        DeValue::Integer(number) => i64::from_str_radix(number.as_str(), number.radix())
            .ok()
            .map(|n| n as f64),
        _ => None,
    };
    match parsed {
        Some(number) => Some(Spanned::new(value.span(), number)),
        None => {
            wrong(report, field, value, expected);
            None
        }
    }
}
