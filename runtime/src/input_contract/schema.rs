//! Compiling a schema: every keyword is one Warden enforces, or an annotation, or the
//! schema is refused naming it.

use std::collections::BTreeMap;

use serde_json::{Map, Number, Value};

use super::SchemaProblem;
use super::json::{compare, escape};

/// A compiled (sub)schema.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Schema {
    /// `true` (anything) or `false` (nothing).
    Bool(bool),
    /// An object schema: the keywords it uses.
    Rules(Box<Rules>),
}

/// The keywords of one object schema. An absent keyword asserts nothing.
#[derive(Clone, Debug, PartialEq, Default)]
pub(super) struct Rules {
    pub types: Option<Vec<Type>>,
    pub enumeration: Option<Vec<Value>>,
    pub constant: Option<Value>,
    pub minimum: Option<Number>,
    pub maximum: Option<Number>,
    pub exclusive_minimum: Option<Number>,
    pub exclusive_maximum: Option<Number>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub min_items: Option<u64>,
    pub max_items: Option<u64>,
    pub items: Option<Schema>,
    /// In the order written.
    pub required: Vec<String>,
    /// Sorted by name, so that violations come in the same order whatever the map type.
    pub properties: BTreeMap<String, Schema>,
    pub additional_properties: Option<Schema>,
}

/// A JSON Schema type name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Type {
    Null,
    Boolean,
    Object,
    Array,
    Number,
    String,
    Integer,
}

impl Type {
    const ALL: [(&'static str, Type); 7] = [
        ("null", Type::Null),
        ("boolean", Type::Boolean),
        ("object", Type::Object),
        ("array", Type::Array),
        ("number", Type::Number),
        ("string", Type::String),
        ("integer", Type::Integer),
    ];

    fn parse(name: &str) -> Option<Type> {
        Type::ALL.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
    }

    /// The type as a message names what it expects: `a string`, `an integer`.
    pub(super) fn expected(self) -> &'static str {
        match self {
            Type::Null => "null",
            Type::Boolean => "a boolean",
            Type::Object => "an object",
            Type::Array => "an array",
            Type::Number => "a number",
            Type::String => "a string",
            Type::Integer => "an integer",
        }
    }
}

/// The keywords Warden enforces, as `policies/README.md` lists them.
pub(super) const ENFORCED: &[&str] = &[
    "type",
    "enum",
    "const",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "items",
    "minItems",
    "maxItems",
    "required",
    "properties",
    "additionalProperties",
];

/// Annotations: keywords that never change whether a value is valid.
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$comment",
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// Keywords of JSON Schema (draft 2020-12 and earlier drafts) that Warden does not
/// enforce: a schema using one is refused rather than half-checked.
const NOT_ENFORCED: &[&str] = &[
    "$id",
    "$ref",
    "$defs",
    "$anchor",
    "$dynamicRef",
    "$dynamicAnchor",
    "$vocabulary",
    "$recursiveRef",
    "$recursiveAnchor",
    "definitions",
    "dependencies",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "dependentSchemas",
    "dependentRequired",
    "prefixItems",
    "additionalItems",
    "contains",
    "minContains",
    "maxContains",
    "uniqueItems",
    "unevaluatedItems",
    "unevaluatedProperties",
    "patternProperties",
    "propertyNames",
    "minProperties",
    "maxProperties",
    "multipleOf",
    "pattern",
    "format",
    "contentEncoding",
    "contentMediaType",
    "contentSchema",
];

/// The dialect a schema may declare with `$schema` (with or without the empty fragment).
const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// Compiles the (sub)schema at `pointer`, adding every problem to `problems`.
pub(super) fn compile(
    value: &Value,
    pointer: &mut String,
    root: bool,
    problems: &mut Vec<SchemaProblem>,
) -> Schema {
    match value {
        Value::Bool(b) => Schema::Bool(*b),
        Value::Object(fields) => Schema::Rules(Box::new(rules(fields, pointer, root, problems))),
        other => {
            problem(
                problems,
                pointer,
                format!(
                    "a schema is an object or true/false, found {}",
                    kind_of(other)
                ),
            );
            Schema::Bool(true)
        }
    }
}

fn problem(problems: &mut Vec<SchemaProblem>, pointer: &str, message: String) {
    problems.push(SchemaProblem {
        pointer: pointer.to_string(),
        message,
    });
}

/// Runs `f` with `pointer` extended by `token`.
fn within<T>(pointer: &mut String, token: &str, f: impl FnOnce(&mut String) -> T) -> T {
    let len = pointer.len();
    pointer.push('/');
    pointer.push_str(&escape(token));
    let out = f(pointer);
    pointer.truncate(len);
    out
}

fn rules(
    fields: &Map<String, Value>,
    pointer: &mut String,
    root: bool,
    problems: &mut Vec<SchemaProblem>,
) -> Rules {
    let mut rules = Rules::default();
    for (keyword, value) in fields {
        within(pointer, keyword, |at| {
            keyword_into(&mut rules, keyword, value, at, root, problems);
        });
    }
    rules
}

fn keyword_into(
    rules: &mut Rules,
    keyword: &str,
    value: &Value,
    at: &mut String,
    root: bool,
    problems: &mut Vec<SchemaProblem>,
) {
    let mut wrong = |expected: &str| {
        let message = format!("`{keyword}` must be {expected}, found {}", kind_of(value));
        problem(problems, at, message);
    };
    match keyword {
        "type" => rules.types = types(value, at, problems),
        "enum" => match value {
            Value::Array(items) if !items.is_empty() => rules.enumeration = Some(items.clone()),
            _ => wrong("a non-empty array of the values allowed"),
        },
        "const" => rules.constant = Some(value.clone()),
        "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" => {
            let Value::Number(n) = value else {
                return wrong("a number");
            };
            let slot = match keyword {
                "minimum" => &mut rules.minimum,
                "maximum" => &mut rules.maximum,
                "exclusiveMinimum" => &mut rules.exclusive_minimum,
                _ => &mut rules.exclusive_maximum,
            };
            *slot = Some(n.clone());
        }
        "minLength" | "maxLength" | "minItems" | "maxItems" => {
            let Some(count) = count(value) else {
                return wrong("a whole number, 0 or more");
            };
            let slot = match keyword {
                "minLength" => &mut rules.min_length,
                "maxLength" => &mut rules.max_length,
                "minItems" => &mut rules.min_items,
                _ => &mut rules.max_items,
            };
            *slot = Some(count);
        }
        "items" => match value {
            Value::Array(_) => problem(
                problems,
                at,
                "in draft 2020-12 `items` is one schema for every item; a list of schemas \
                 (one per position) is `prefixItems`, which Warden does not enforce"
                    .to_string(),
            ),
            _ => rules.items = Some(compile(value, at, false, problems)),
        },
        "required" => rules.required = names(value, at, problems),
        "properties" => match value {
            Value::Object(properties) => {
                for (name, schema) in properties {
                    let compiled = within(at, name, |at| compile(schema, at, false, problems));
                    rules.properties.insert(name.clone(), compiled);
                }
            }
            _ => wrong("an object: each field's name and its schema"),
        },
        "additionalProperties" => {
            rules.additional_properties = Some(compile(value, at, false, problems));
        }
        "$schema" => annotation_schema(value, at, root, problems),
        "title" | "description" | "$comment" if !value.is_string() => wrong("a string"),
        "deprecated" | "readOnly" | "writeOnly" if !value.is_boolean() => wrong("true or false"),
        "examples" if !value.is_array() => wrong("an array of examples"),
        _ if ANNOTATIONS.contains(&keyword) => {}
        _ if NOT_ENFORCED.contains(&keyword) => problem(
            problems,
            at,
            format!(
                "`{keyword}` is a JSON Schema keyword Warden does not enforce, and a contract \
                 never ignores a keyword; remove it, or express the rule with: {}",
                ENFORCED.join(", ")
            ),
        ),
        _ => problem(
            problems,
            at,
            format!(
                "`{keyword}` is not a JSON Schema keyword Warden knows; remove it or correct \
                 its spelling (enforced: {})",
                ENFORCED.join(", ")
            ),
        ),
    }
}

fn annotation_schema(value: &Value, at: &str, root: bool, problems: &mut Vec<SchemaProblem>) {
    let declared = value.as_str().map(|s| s.strip_suffix('#').unwrap_or(s));
    if !root {
        problem(
            problems,
            at,
            "`$schema` belongs at the root of the schema only".to_string(),
        );
    } else if declared != Some(DIALECT) {
        problem(
            problems,
            at,
            format!(
                "Warden enforces JSON Schema draft 2020-12: `$schema` must be \"{DIALECT}\" \
                 (or be left out), found {}",
                super::json::quote(value)
            ),
        );
    }
}

/// `type`: one type name or a list of distinct ones.
fn types(value: &Value, at: &mut String, problems: &mut Vec<SchemaProblem>) -> Option<Vec<Type>> {
    let names: Vec<(Option<usize>, &Value)> = match value {
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, v)| (Some(i), v))
            .collect(),
        Value::String(_) => vec![(None, value)],
        other => {
            let message = format!(
                "`type` must be a type name or a non-empty list of them, found {}",
                kind_of(other)
            );
            problem(problems, at, message);
            return None;
        }
    };
    let mut out = Vec::new();
    let mut ok = true;
    for (index, name) in names {
        let token = index.map(|i| i.to_string());
        let found = name.as_str().and_then(Type::parse);
        let place =
            |at: &mut String, message: String, problems: &mut Vec<SchemaProblem>| match &token {
                Some(token) => within(at, token, |at| problem(problems, at, message)),
                None => problem(problems, at, message),
            };
        match found {
            Some(t) if out.contains(&t) => {
                ok = false;
                place(
                    at,
                    format!("type `{}` is listed twice; remove one", t.name()),
                    problems,
                );
            }
            Some(t) => out.push(t),
            None => {
                ok = false;
                let names: Vec<&str> = Type::ALL.iter().map(|(n, _)| *n).collect();
                place(
                    at,
                    format!(
                        "{} is not a JSON Schema type; use one of {}",
                        super::json::quote(name),
                        names.join(", ")
                    ),
                    problems,
                );
            }
        }
    }
    ok.then_some(out)
}

impl Type {
    fn name(self) -> &'static str {
        Type::ALL
            .iter()
            .find(|(_, t)| *t == self)
            .map_or("", |(n, _)| n)
    }
}

/// `required`: a list of distinct field names.
fn names(value: &Value, at: &mut String, problems: &mut Vec<SchemaProblem>) -> Vec<String> {
    let Value::Array(items) = value else {
        let message = format!(
            "`required` must be an array of field names, found {}",
            kind_of(value)
        );
        problem(problems, at, message);
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        within(at, &i.to_string(), |at| match item {
            Value::String(name) if out.contains(name) => problem(
                problems,
                at,
                format!("field `{name}` is listed twice; remove one"),
            ),
            Value::String(name) => out.push(name.clone()),
            other => problem(
                problems,
                at,
                format!(
                    "a required field is a name in quotes, found {}",
                    kind_of(other)
                ),
            ),
        });
    }
    out
}

/// A non-negative whole number (JSON Schema counts `2.0` as one).
fn count(value: &Value) -> Option<u64> {
    let Value::Number(n) = value else {
        return None;
    };
    if let Some(u) = n.as_u64() {
        return Some(u);
    }
    let zero = Number::from(0u64);
    let x = n.as_f64()?;
    let whole = x.fract() == 0.0 && compare(n, &zero).is_ge() && x < 1.8e19;
    whole.then_some(x as u64)
}

/// A value's kind, for a message about a schema.
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
