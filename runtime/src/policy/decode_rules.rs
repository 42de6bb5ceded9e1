//! Reads the rules added in edition 2: `[tools.<name>]` and `[models.<name>]` tables (call
//! caps, feature provenance) and `[states.<name>.output]` rules, into the [`Draft`].
//!
//! [`Draft`]: super::decode::Draft

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::decode::{
    self, DraftConstraint, DraftDecision, DraftRules, DraftSource, DraftTimeout, Located, boolean,
    integer, names, number, string, unknown,
};
use super::diagnostic::{Problem, Report};

const SOURCE: &[&str] = &["tool", "args"];

/// The `[tools.<name>]` or `[models.<name>]` tables of `section`.
pub(super) fn rules(
    report: &mut Report<'_>,
    section: &str,
    table: &DeTable<'_>,
    allowed: &'static [&'static str],
) -> Vec<DraftRules> {
    let mut out = Vec::new();
    for (key, value) in table.iter() {
        let name = key.get_ref().to_string();
        let path = format!("{section}.{name}");
        let Some(fields) = decode::table(report, &path, value) else {
            continue;
        };
        let mut rules = DraftRules {
            name: Spanned::new(key.span(), name),
            span: value.span(),
            max_calls: None,
            tolerance: None,
            sources: Vec::new(),
            lets: Vec::new(),
            features: Vec::new(),
            features_span: None,
        };
        for (key, value) in fields.iter() {
            let field = format!("{path}.{}", key.get_ref());
            match key.get_ref().as_ref() {
                "max_calls_per_state" if allowed.contains(&"max_calls_per_state") => {
                    rules.max_calls = integer(report, &field, value)
                }
                "tolerance" if allowed.contains(&"tolerance") => {
                    rules.tolerance = number(report, &field, value, "a small number such as 1e-9")
                }
                "sources" if allowed.contains(&"sources") => {
                    if let Some(table) = decode::table(report, &field, value) {
                        rules.sources = sources(report, &field, table);
                    }
                }
                "let" if allowed.contains(&"let") => {
                    if let Some(table) = decode::table(report, &field, value) {
                        rules.lets = expressions(report, &field, table);
                    }
                }
                "features" if allowed.contains(&"features") => {
                    rules.features_span = Some(key.span());
                    if let Some(table) = decode::table(report, &field, value) {
                        rules.features = expressions(report, &field, table);
                    }
                }
                _ => unknown(report, key, &path, allowed),
            }
        }
        out.push(rules);
    }
    out
}

/// `sources.<name> = { tool = "...", args = { "/arg" = "/input" } }`.
fn sources(report: &mut Report<'_>, path: &str, table: &DeTable<'_>) -> Vec<DraftSource> {
    let mut out = Vec::new();
    for (key, value) in table.iter() {
        let field = format!("{path}.{}", key.get_ref());
        let Some(fields) = decode::table(report, &field, value) else {
            continue;
        };
        let mut source = DraftSource {
            name: Spanned::new(key.span(), key.get_ref().to_string()),
            tool: None,
            args: Vec::new(),
        };
        for (key, value) in fields.iter() {
            let inner = format!("{field}.{}", key.get_ref());
            match key.get_ref().as_ref() {
                "tool" => source.tool = string(report, &inner, value, "the name of a tool"),
                "args" => {
                    if let Some(args) = decode::table(report, &inner, value) {
                        for (arg, input) in args.iter() {
                            let at = format!("{inner}.{}", arg.get_ref());
                            if let Some(input) =
                                string(report, &at, input, "a JSON pointer into the run input")
                            {
                                let arg = Spanned::new(arg.span(), arg.get_ref().to_string());
                                source.args.push((arg, input));
                            }
                        }
                    }
                }
                _ => unknown(report, key, &field, SOURCE),
            }
        }
        if source.tool.is_none() && !fields.contains_key("tool") {
            report.push(
                value.span(),
                format!("{field}.tool"),
                Problem::Missing {
                    expected: "tool = \"<tool name>\"",
                },
            );
        }
        out.push(source);
    }
    out
}

/// `name = "expression"` entries.
fn expressions(
    report: &mut Report<'_>,
    path: &str,
    table: &DeTable<'_>,
) -> Vec<(Located<String>, Located<String>)> {
    let mut out = Vec::new();
    for (key, value) in table.iter() {
        let field = format!("{path}.{}", key.get_ref());
        let expected = "an expression in quotes, such as \"input:/amount / 12\"";
        if let Some(text) = string(report, &field, value, expected) {
            out.push((Spanned::new(key.span(), key.get_ref().to_string()), text));
        }
    }
    out
}

/// `[states.<name>.output]`: `field = <value>` (must equal) or `field = { type = "..." }`.
pub(super) fn output(
    report: &mut Report<'_>,
    path: &str,
    table: &DeTable<'_>,
) -> Vec<(Located<String>, DraftConstraint)> {
    let mut out = Vec::new();
    for (key, value) in table.iter() {
        let field = format!("{path}.{}", key.get_ref());
        let name = Spanned::new(key.span(), key.get_ref().to_string());
        let constraint = match value.get_ref() {
            DeValue::Table(fields) => {
                let (mut kind, mut min, mut max) = (None, None, None);
                for (inner, v) in fields.iter() {
                    match inner.get_ref().as_ref() {
                        "type" => kind = string(report, &format!("{field}.type"), v, JSON_TYPES),
                        "min" => min = bound(report, &format!("{field}.min"), v),
                        "max" => max = bound(report, &format!("{field}.max"), v),
                        _ => unknown(report, inner, &field, &["type", "min", "max"]),
                    }
                }
                // A bound written wrongly is reported where it is; no `type` is then asked.
                if fields.contains_key("min") || fields.contains_key("max") {
                    out.push((name, DraftConstraint::Number { kind, min, max }));
                    continue;
                }
                match kind {
                    Some(kind) => DraftConstraint::Type(kind),
                    None => {
                        if !fields.contains_key("type") {
                            report.push(
                                value.span(),
                                format!("{field}.type"),
                                Problem::Missing {
                                    expected: JSON_TYPES,
                                },
                            );
                        }
                        continue;
                    }
                }
            }
            other => DraftConstraint::Equals(json(other)),
        };
        out.push((name, constraint));
    }
    out
}

/// An output bound as written: an expression in a string, or a plain number.
fn bound(
    report: &mut Report<'_>,
    field: &str,
    value: &Spanned<DeValue<'_>>,
) -> Option<Located<String>> {
    match value.get_ref() {
        DeValue::Integer(_) | DeValue::Float(_) => match json(value.get_ref()) {
            serde_json::Value::Number(n) => Some(Spanned::new(value.span(), n.to_string())),
            _ => {
                let message =
                    "a bound must be a finite number that fits in 64 bits (or an expression)"
                        .to_string();
                report.push(value.span(), field, Problem::BadBound { message });
                None
            }
        },
        _ => string(report, field, value, BOUND),
    }
}

const BOUND: &str =
    "an expression over the run's input, such as max = \"input:/amount\" or min = \"0\"";

const JSON_TYPES: &str =
    "type = \"string\", \"number\", \"boolean\", \"array\", \"object\", \"null\" or \"any\"";

/// A TOML value as JSON (a date becomes its text).
fn json(value: &DeValue<'_>) -> serde_json::Value {
    use serde_json::Value;
    match value {
        DeValue::String(text) => Value::String(text.to_string()),
        DeValue::Integer(n) => i64::from_str_radix(n.as_str(), n.radix())
            .map_or(Value::Null, |n| Value::Number(n.into())),
        DeValue::Float(n) => n
            .as_str()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::String(d.to_string()),
        DeValue::Array(items) => Value::Array(items.iter().map(|v| json(v.get_ref())).collect()),
        DeValue::Table(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.get_ref().to_string(), json(v.get_ref())))
                .collect(),
        ),
    }
}

/// A review state's `decisions.<outcome> = { roles = [...], dual_control = true }` tables.
pub(super) fn decisions(
    report: &mut Report<'_>,
    path: &str,
    table: &DeTable<'_>,
) -> Vec<DraftDecision> {
    let mut out = Vec::new();
    for (key, value) in table.iter() {
        let field = format!("{path}.{}", key.get_ref());
        let Some(fields) = decode::table(report, &field, value) else {
            continue;
        };
        let mut decision = DraftDecision {
            outcome: Spanned::new(key.span(), key.get_ref().to_string()),
            span: value.span(),
            roles: None,
            dual_control: None,
        };
        for (key, value) in fields.iter() {
            let inner = format!("{field}.{}", key.get_ref());
            match key.get_ref().as_ref() {
                "roles" => decision.roles = names(report, &inner, value),
                "dual_control" => decision.dual_control = boolean(report, &inner, value),
                _ => unknown(report, key, &field, &["roles", "dual_control"]),
            }
        }
        out.push(decision);
    }
    out
}

/// A review state's `timeout = { after = "72h", outcome = "declined" }`.
pub(super) fn timeout(
    report: &mut Report<'_>,
    path: &str,
    table: &DeTable<'_>,
    span: std::ops::Range<usize>,
) -> DraftTimeout {
    let mut timeout = DraftTimeout {
        span,
        after: None,
        outcome: None,
    };
    for (key, value) in table.iter() {
        let field = format!("{path}.{}", key.get_ref());
        match key.get_ref().as_ref() {
            "after" => {
                timeout.after = string(
                    report,
                    &field,
                    value,
                    "a duration such as \"72h\" or \"30m\"",
                )
            }
            "outcome" => {
                timeout.outcome = string(
                    report,
                    &field,
                    value,
                    "the state a timeout sends the run to",
                )
            }
            _ => unknown(report, key, path, &["after", "outcome"]),
        }
    }
    timeout
}
