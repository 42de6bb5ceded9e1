//! Checking a value against a compiled schema. Violations come in the order of the
//! schema: at each value `type` first (a value of the wrong type is reported once, by
//! `type`, and nothing else is checked at it), then `enum`, `const`, the keywords of its
//! type; in an object `required` as written, then each declared property by name, then
//! each other field by name; in an array each item in turn.
//!
//! The messages are recorded in the journal and compared by replay: their wording is part
//! of the format (the tests pin it).

use std::cmp::Ordering;

use serde_json::{Number, Value};

use super::json::{compare, describe, equal, escape, is_integer, quote};
use super::schema::{Rules, Schema, Type};
use super::{InputViolation, Rejection};

/// The violations found so far: the first few kept, all counted.
pub(super) struct Found {
    kept: Vec<InputViolation>,
    total: u32,
    keep: usize,
}

impl Found {
    pub(super) fn new(keep: usize) -> Found {
        Found {
            kept: Vec::new(),
            total: 0,
            keep,
        }
    }

    fn push(&mut self, pointer: &str, keyword: &str, message: String) {
        self.total = self.total.saturating_add(1);
        if self.kept.len() < self.keep {
            self.kept.push(InputViolation {
                pointer: pointer.to_string(),
                keyword: keyword.to_string(),
                message,
            });
        }
    }

    pub(super) fn into_result(self) -> Result<(), Rejection> {
        if self.total == 0 {
            Ok(())
        } else {
            Err(Rejection {
                violations: self.kept,
                total: self.total,
            })
        }
    }
}

/// Checks `value` (at `pointer` in the input) against `schema`, reached through the
/// keyword `via` (empty at the root).
pub(super) fn check(
    schema: &Schema,
    value: &Value,
    pointer: &mut String,
    via: &str,
    found: &mut Found,
) {
    match schema {
        Schema::Bool(true) => {}
        Schema::Bool(false) => {
            let keyword = if via.is_empty() { "false" } else { via };
            found.push(
                pointer,
                keyword,
                "the contract allows no value here".to_string(),
            );
        }
        Schema::Rules(rules) => check_rules(rules, value, pointer, found),
    }
}

fn admits(t: Type, value: &Value) -> bool {
    match (t, value) {
        (Type::Null, Value::Null)
        | (Type::Boolean, Value::Bool(_))
        | (Type::Object, Value::Object(_))
        | (Type::Array, Value::Array(_))
        | (Type::Number, Value::Number(_))
        | (Type::String, Value::String(_)) => true,
        (Type::Integer, Value::Number(n)) => is_integer(n),
        _ => false,
    }
}

fn check_rules(rules: &Rules, value: &Value, pointer: &mut String, found: &mut Found) {
    if let Some(types) = &rules.types
        && !types.iter().any(|t| admits(*t, value))
    {
        let expected: Vec<&str> = types.iter().map(|t| t.expected()).collect();
        let message = format!("expected {}, found {}", or_list(&expected), describe(value));
        found.push(pointer, "type", message);
        return;
    }
    if let Some(allowed) = &rules.enumeration
        && !allowed.iter().any(|a| equal(a, value))
    {
        let listed: Vec<String> = allowed.iter().take(8).map(quote).collect();
        let more = if allowed.len() > 8 { ", ..." } else { "" };
        let message = format!(
            "{} is not one of the values allowed: {}{more}",
            describe(value),
            listed.join(", ")
        );
        found.push(pointer, "enum", message);
    }
    if let Some(constant) = &rules.constant
        && !equal(constant, value)
    {
        let message = format!("must be {}, found {}", quote(constant), describe(value));
        found.push(pointer, "const", message);
    }
    match value {
        Value::Number(n) => numeric(rules, n, pointer, found),
        Value::String(s) => {
            let length = s.chars().count() as u64;
            bound_count(
                length,
                (rules.min_length, rules.max_length),
                ("minLength", "maxLength"),
                "characters",
                pointer,
                found,
            );
        }
        Value::Array(items) => {
            bound_count(
                items.len() as u64,
                (rules.min_items, rules.max_items),
                ("minItems", "maxItems"),
                "items",
                pointer,
                found,
            );
            if let Some(schema) = &rules.items {
                for (i, item) in items.iter().enumerate() {
                    within(pointer, &i.to_string(), |at| {
                        check(schema, item, at, "items", found);
                    });
                }
            }
        }
        Value::Object(fields) => object(rules, fields, pointer, found),
        Value::Null | Value::Bool(_) => {}
    }
}

/// A numeric bound: its value, keyword, when a number breaks it, and the words for it.
type Bound<'a> = (
    &'a Option<Number>,
    &'static str,
    fn(Ordering) -> bool,
    &'static str,
);

fn numeric(rules: &Rules, n: &Number, pointer: &str, found: &mut Found) {
    let bounds: [Bound<'_>; 4] = [
        (
            &rules.minimum,
            "minimum",
            Ordering::is_lt,
            "less than the minimum",
        ),
        (
            &rules.exclusive_minimum,
            "exclusiveMinimum",
            Ordering::is_le,
            "not greater than",
        ),
        (
            &rules.maximum,
            "maximum",
            Ordering::is_gt,
            "greater than the maximum",
        ),
        (
            &rules.exclusive_maximum,
            "exclusiveMaximum",
            Ordering::is_ge,
            "not less than",
        ),
    ];
    for (bound, keyword, breaks, words) in bounds {
        if let Some(bound) = bound
            && breaks(compare(n, bound))
        {
            found.push(pointer, keyword, format!("{n} is {words} {bound}"));
        }
    }
}

fn bound_count(
    count: u64,
    (min, max): (Option<u64>, Option<u64>),
    (min_keyword, max_keyword): (&str, &str),
    unit: &str,
    pointer: &str,
    found: &mut Found,
) {
    if let Some(min) = min
        && count < min
    {
        let message = format!("{count} {unit}, fewer than the minimum of {min}");
        found.push(pointer, min_keyword, message);
    }
    if let Some(max) = max
        && count > max
    {
        let message = format!("{count} {unit}, more than the maximum of {max}");
        found.push(pointer, max_keyword, message);
    }
}

fn object(
    rules: &Rules,
    fields: &serde_json::Map<String, Value>,
    pointer: &mut String,
    found: &mut Found,
) {
    for name in &rules.required {
        if !fields.contains_key(name) {
            within(pointer, name, |at| {
                found.push(
                    at,
                    "required",
                    format!("required field `{name}` is missing"),
                );
            });
        }
    }
    for (name, schema) in &rules.properties {
        if let Some(value) = fields.get(name) {
            within(pointer, name, |at| {
                check(schema, value, at, "properties", found)
            });
        }
    }
    if let Some(schema) = &rules.additional_properties {
        let mut others: Vec<(&String, &Value)> = fields
            .iter()
            .filter(|(name, _)| !rules.properties.contains_key(*name))
            .collect();
        // By name, whatever order the map keeps.
        others.sort_by(|a, b| a.0.cmp(b.0));
        for (name, value) in others {
            within(pointer, name, |at| match schema {
                Schema::Bool(false) => found.push(
                    at,
                    "additionalProperties",
                    // The pointer names the field: its name, which may be long, is
                    // not repeated.
                    "a field the contract does not allow".to_string(),
                ),
                _ => check(schema, value, at, "additionalProperties", found),
            });
        }
    }
}

/// Runs `f` with `pointer` extended by the reference token of `key`.
fn within<T>(pointer: &mut String, key: &str, f: impl FnOnce(&mut String) -> T) -> T {
    let len = pointer.len();
    pointer.push('/');
    pointer.push_str(&escape(key));
    let out = f(pointer);
    pointer.truncate(len);
    out
}

/// `a`, `a or b`, `a, b or c`.
fn or_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}
