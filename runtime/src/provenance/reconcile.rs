//! Reconciliation of the features an agent sends against recorded facts.
//!
//! A [`Provenance`] declares *sources* (a tool whose recorded response may be
//! read, selected by argument constraints), *lets* (named intermediate values)
//! and *features* (the model's inputs), the latter two as
//! [`super::expr`] expressions. [`reconcile`] recomputes every feature from [`Facts`] and
//! compares it with what the agent sent.
//!
//! Rules:
//! - a source resolves to the latest [`ToolFact`] of its tool (highest `call`;
//!   on a tie, the later one in the slice) whose `args` satisfy every
//!   constraint: the value at the args pointer equals (serde_json equality,
//!   so `1` and `1.0` differ) the value at the input pointer, both present;
//! - JSON numbers and booleans (`true` = 1, `false` = 0) read as `f64`;
//!   strings, null, arrays and objects are errors naming the reference;
//! - lets and features are computed by the host in dependency order; a
//!   feature that references another feature uses the host's value, never the
//!   agent's;
//! - `sent` must be an object holding each feature as a JSON number; a feature
//!   reconciles iff it is sent, its expected value is `Ok`, and
//!   `|sent - expected| <= tolerance * max(1, |expected|)`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::expr::{self, EvalError, Expr, Reference};

/// Where a source's value comes from: the latest recorded response of `tool`
/// whose call arguments match the run input as constrained by `args`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSpec {
    /// Tool name the response must come from.
    pub tool: String,
    /// JSON pointer into the call's args → JSON pointer into the run input;
    /// the two values must be equal.
    pub args: BTreeMap<String, String>,
}

/// One problem found while validating a provenance declaration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ProvenanceError {
    /// Path of the offending field, e.g. `features.debt_to_income`, `let.payment`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Whether a named value is an intermediate or a model feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Let,
    Feature,
}

impl Kind {
    fn field(self, name: &str) -> String {
        match self {
            Kind::Let => format!("let.{name}"),
            Kind::Feature => format!("features.{name}"),
        }
    }
}

/// A validated provenance declaration, ready for [`reconcile`].
#[derive(Debug, Clone, PartialEq)]
pub struct Provenance {
    sources: BTreeMap<String, SourceSpec>,
    values: BTreeMap<String, (Kind, Expr)>,
    /// Names of `values` in dependency order (ties broken by name).
    order: Vec<String>,
    tolerance: f64,
}

/// One line of a provenance's canonical description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CanonicalEntry {
    /// `tolerance`, `source`, `let` or `feature`.
    pub kind: &'static str,
    /// The declared name (empty for `tolerance`).
    pub name: String,
    /// Canonical text: a number, a canonical JSON object or a canonical expression.
    pub text: String,
}

impl Provenance {
    /// Validates and orders a declaration. Returns every problem found, each
    /// with a field path (`tolerance`, `sources.NAME…`, `let.NAME`,
    /// `features.NAME`): parse errors (with column), unknown sources or names,
    /// cycles (named), lets shadowing features, names equal to a source,
    /// invalid source declarations, no features, a tolerance that is not
    /// finite or is negative.
    pub fn build(
        sources: BTreeMap<String, SourceSpec>,
        lets: BTreeMap<String, String>,
        features: BTreeMap<String, String>,
        tolerance: f64,
    ) -> Result<Provenance, Vec<ProvenanceError>> {
        let mut errors = Vec::new();
        let mut err =
            |field: String, message: String| errors.push(ProvenanceError { field, message });
        if !tolerance.is_finite() || tolerance < 0.0 {
            err(
                "tolerance".into(),
                format!("must be finite and >= 0, got {tolerance}"),
            );
        }
        for (name, spec) in &sources {
            if !expr::is_identifier(name) || name == "input" {
                err(
                    format!("sources.{name}"),
                    "source name must be an identifier other than `input`".into(),
                );
            }
            if spec.tool.is_empty() {
                err(format!("sources.{name}.tool"), "tool name is empty".into());
            }
            for (arg, input) in &spec.args {
                for pointer in [arg, input] {
                    if let Err(m) = expr::validate_pointer(pointer) {
                        err(format!("sources.{name}.args.{arg}"), m);
                    }
                }
            }
        }
        if features.is_empty() {
            err(
                "features".into(),
                "at least one feature must be declared".into(),
            );
        }
        let mut values = BTreeMap::new();
        for (kind, map) in [(Kind::Let, &lets), (Kind::Feature, &features)] {
            for (name, text) in map {
                let field = kind.field(name);
                if kind == Kind::Let && (!expr::is_identifier(name) || expr::is_reserved(name)) {
                    err(
                        field.clone(),
                        "let name must be an identifier other than `input` or a function".into(),
                    );
                }
                if name.is_empty() {
                    err(field.clone(), "name is empty".into());
                }
                if kind == Kind::Let && features.contains_key(name) {
                    err(
                        field.clone(),
                        format!("let `{name}` shadows feature `{name}`"),
                    );
                }
                if sources.contains_key(name) {
                    err(
                        field.clone(),
                        format!("`{name}` is also the name of a source"),
                    );
                }
                match expr::parse(text) {
                    Ok(e) => {
                        if !(kind == Kind::Let && features.contains_key(name)) {
                            values.insert(name.clone(), (kind, e));
                        }
                    }
                    Err(e) => err(
                        field,
                        format!("parse error at column {}: {}", e.column, e.message),
                    ),
                }
            }
        }
        let mut deps: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (name, (kind, e)) in &values {
            let entry = deps.entry(name.as_str()).or_default();
            for r in e.references() {
                match r {
                    Reference::Pointer {
                        source: Some(s), ..
                    } if !sources.contains_key(s) => {
                        err(kind.field(name), format!("unknown source `{s}` in `{r}`"));
                    }
                    Reference::Name(n) if values.contains_key(n) => {
                        entry.insert(n.as_str());
                    }
                    Reference::Name(n) if !lets.contains_key(n) && !features.contains_key(n) => {
                        err(kind.field(name), format!("unknown name `{n}`"));
                    }
                    _ => {}
                }
            }
        }
        let order = topological_order(&deps);
        if order.len() < values.len() {
            let placed: BTreeSet<&str> = order.iter().copied().collect();
            for (start, _) in deps.iter().filter(|(n, _)| !placed.contains(*n)) {
                if let Some(cycle) = shortest_cycle(start, &deps)
                    && cycle.iter().all(|n| n >= start)
                {
                    let kind = values.get(*start).map_or(Kind::Let, |(k, _)| *k);
                    err(kind.field(start), format!("cycle: {}", cycle.join(" -> ")));
                }
            }
        }
        let order: Vec<String> = order.into_iter().map(str::to_string).collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Provenance {
            sources,
            values,
            order,
            tolerance,
        })
    }

    /// Names of the model's features, in name order.
    pub fn features(&self) -> impl Iterator<Item = &str> {
        self.values
            .iter()
            .filter(|(_, (k, _))| *k == Kind::Feature)
            .map(|(n, _)| n.as_str())
    }

    /// Names of the intermediate values, in name order.
    pub fn lets(&self) -> impl Iterator<Item = &str> {
        self.values
            .iter()
            .filter(|(_, (k, _))| *k == Kind::Let)
            .map(|(n, _)| n.as_str())
    }

    /// The parsed expression of a let or feature.
    pub fn expr(&self, name: &str) -> Option<&Expr> {
        self.values.get(name).map(|(_, e)| e)
    }

    /// The declared sources, by name.
    pub fn sources(&self) -> &BTreeMap<String, SourceSpec> {
        &self.sources
    }

    /// The relative tolerance.
    pub fn tolerance(&self) -> f64 {
        self.tolerance
    }

    /// Canonical description for hashing: the tolerance, then sources, lets
    /// and features, each in name order. Equal declarations (up to formatting
    /// of their expressions) give equal descriptions.
    pub fn canonical(&self) -> Vec<CanonicalEntry> {
        let mut out = vec![CanonicalEntry {
            kind: "tolerance",
            name: String::new(),
            text: format!("{:e}", self.tolerance),
        }];
        for (name, spec) in &self.sources {
            let args = spec
                .args
                .iter()
                .map(|(a, i)| (a.clone(), Value::String(i.clone())))
                .collect();
            let mut object = serde_json::Map::new();
            object.insert("args".into(), Value::Object(args));
            object.insert("tool".into(), Value::String(spec.tool.clone()));
            out.push(CanonicalEntry {
                kind: "source",
                name: name.clone(),
                text: Value::Object(object).to_string(),
            });
        }
        for (wanted, label) in [(Kind::Let, "let"), (Kind::Feature, "feature")] {
            for (name, (kind, e)) in &self.values {
                if *kind == wanted {
                    out.push(CanonicalEntry {
                        kind: label,
                        name: name.clone(),
                        text: e.to_string(),
                    });
                }
            }
        }
        out
    }

    /// The canonical description as one unambiguous JSON text
    /// (`[[kind, name, text], ...]`), ready to hash.
    pub fn canonical_string(&self) -> String {
        let rows = self.canonical().into_iter().map(|c| {
            Value::Array(vec![
                Value::String(c.kind.into()),
                Value::String(c.name),
                Value::String(c.text),
            ])
        });
        Value::Array(rows.collect()).to_string()
    }
}

/// Kahn's algorithm, always taking the smallest ready name. Names on or
/// behind a cycle are left out.
fn topological_order<'a>(deps: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Vec<&'a str> {
    let mut pending: BTreeMap<&str, usize> = deps.iter().map(|(n, d)| (*n, d.len())).collect();
    let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, ds) in deps {
        for d in ds {
            dependents.entry(*d).or_default().push(*name);
        }
    }
    let mut ready: BTreeSet<&str> = pending
        .iter()
        .filter(|(_, c)| **c == 0)
        .map(|(n, _)| *n)
        .collect();
    let mut order = Vec::new();
    while let Some(name) = ready.pop_first() {
        order.push(name);
        for dependent in dependents.get(name).into_iter().flatten() {
            if let Some(count) = pending.get_mut(dependent) {
                *count -= 1;
                if *count == 0 {
                    ready.insert(dependent);
                }
            }
        }
    }
    order
}

/// Shortest dependency cycle through `start` (breadth-first, smallest names
/// first), as `[start, …, start]`.
fn shortest_cycle<'a>(
    start: &'a str,
    deps: &BTreeMap<&'a str, BTreeSet<&'a str>>,
) -> Option<Vec<&'a str>> {
    let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for next in deps.get(node).into_iter().flatten() {
            if *next == start {
                let mut path = vec![start, node];
                let mut at = node;
                while at != start {
                    at = parent.get(at).copied()?;
                    path.push(at);
                }
                path.reverse();
                return Some(path);
            }
            if !parent.contains_key(next) {
                parent.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    None
}

/// A successful tool response recorded earlier in this run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolFact {
    /// Call number within the run (later calls have higher numbers).
    pub call: u64,
    /// Tool name.
    pub tool: String,
    /// Arguments the tool was called with.
    pub args: Value,
    /// The tool's response.
    pub response: Value,
}

/// The recorded facts of a run that features are computed from.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The run's input.
    pub input: &'a Value,
    /// Successful tool responses, in call order.
    pub tools: &'a [ToolFact],
}

/// The outcome of checking one declared feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureCheck {
    /// Feature name.
    pub name: String,
    /// What the agent sent, if it sent a JSON number.
    pub sent: Option<f64>,
    /// What the host computed from the recorded facts.
    pub expected: Result<f64, EvalError>,
    /// Whether `sent` matches `expected` within tolerance.
    pub reconciled: bool,
}

impl fmt::Display for FeatureCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "feature `{}`: sent ", self.name)?;
        match self.sent {
            Some(v) => write!(f, "{v}")?,
            None => f.write_str("nothing numeric")?,
        }
        match &self.expected {
            Ok(v) => write!(f, ", expected {v}")?,
            Err(e) => write!(f, ", expected value unavailable ({e})")?,
        }
        f.write_str(if self.reconciled {
            ": reconciled"
        } else {
            ": does not reconcile"
        })
    }
}

/// The outcome of reconciling a sent feature vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reconciliation {
    /// One check per declared feature, in name order.
    pub features: Vec<FeatureCheck>,
    /// Keys sent that are not declared features, in name order.
    pub unexpected: Vec<String>,
    /// Source name → call number of the response used (`None`: no match).
    pub sources: BTreeMap<String, Option<u64>>,
}

impl Reconciliation {
    /// True iff at least one feature was checked, every feature reconciled
    /// and nothing undeclared was sent.
    pub fn all_reconciled(&self) -> bool {
        !self.features.is_empty()
            && self.unexpected.is_empty()
            && self.features.iter().all(|f| f.reconciled)
    }

    /// How many declared features reconciled.
    pub fn reconciled_count(&self) -> usize {
        self.features.iter().filter(|f| f.reconciled).count()
    }

    /// The checks that failed, in name order.
    pub fn failures(&self) -> impl Iterator<Item = &FeatureCheck> {
        self.features.iter().filter(|f| !f.reconciled)
    }
}

/// The latest fact of the spec's tool whose args satisfy every constraint.
fn select_source<'f>(spec: &SourceSpec, facts: &Facts<'f>) -> Option<&'f ToolFact> {
    let matches = |fact: &ToolFact| {
        fact.tool == spec.tool
            && spec.args.iter().all(|(arg, input)| {
                match (fact.args.pointer(arg), facts.input.pointer(input)) {
                    (Some(a), Some(b)) => a == b,
                    _ => false,
                }
            })
    };
    let mut best: Option<&'f ToolFact> = None;
    for fact in facts.tools.iter().filter(|f| matches(f)) {
        if best.is_none_or(|b| fact.call >= b.call) {
            best = Some(fact);
        }
    }
    best
}

pub(crate) fn json_number(value: Option<&Value>, reference: &Reference) -> Result<f64, EvalError> {
    let found = match value {
        None => {
            return Err(EvalError::Missing {
                reference: reference.to_string(),
            });
        }
        Some(Value::Bool(b)) => return Ok(if *b { 1.0 } else { 0.0 }),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) => return Ok(v),
            None => "number",
        },
        Some(Value::String(_)) => "string",
        Some(Value::Null) => "null",
        Some(Value::Array(_)) => "array",
        Some(Value::Object(_)) => "object",
    };
    Err(EvalError::NotANumber {
        reference: reference.to_string(),
        found: found.into(),
    })
}

/// Recomputes every declared feature from `facts` and checks it against `sent`.
pub fn reconcile(p: &Provenance, facts: &Facts<'_>, sent: &Value) -> Reconciliation {
    let chosen: BTreeMap<&str, Option<&ToolFact>> = p
        .sources
        .iter()
        .map(|(name, spec)| (name.as_str(), select_source(spec, facts)))
        .collect();
    let mut computed: BTreeMap<&str, Result<f64, EvalError>> = BTreeMap::new();
    for name in &p.order {
        let Some((_, e)) = p.values.get(name) else {
            continue;
        };
        let value = e.eval(&mut |r: &Reference| match r {
            Reference::Pointer {
                source: None,
                pointer,
            } => json_number(facts.input.pointer(pointer), r),
            Reference::Pointer {
                source: Some(s),
                pointer,
            } => match chosen.get(s.as_str()) {
                Some(Some(fact)) => json_number(fact.response.pointer(pointer), r),
                _ => Err(EvalError::SourceUnavailable { name: s.clone() }),
            },
            Reference::Name(n) => match computed.get(n.as_str()) {
                Some(v) => v.clone(),
                None => Err(EvalError::UnknownName { name: n.clone() }),
            },
        });
        computed.insert(name, value);
    }
    let object = sent.as_object();
    let features = p
        .features()
        .map(|name| {
            let expected = computed.get(name).cloned().unwrap_or_else(|| {
                Err(EvalError::UnknownName {
                    name: name.to_string(),
                })
            });
            let sent = object.and_then(|o| o.get(name)).and_then(Value::as_f64);
            let reconciled = match (sent, &expected) {
                (Some(s), Ok(e)) if s.is_finite() => {
                    let diff = (s - e).abs();
                    diff.is_finite() && diff <= p.tolerance * e.abs().max(1.0)
                }
                _ => false,
            };
            FeatureCheck {
                name: name.to_string(),
                sent,
                expected,
                reconciled,
            }
        })
        .collect();
    let mut unexpected: Vec<String> = object
        .into_iter()
        .flat_map(|o| o.keys())
        .filter(|k| !matches!(p.values.get(k.as_str()), Some((Kind::Feature, _))))
        .cloned()
        .collect();
    unexpected.sort();
    let sources = chosen
        .into_iter()
        .map(|(n, f)| (n.to_string(), f.map(|f| f.call)))
        .collect();
    Reconciliation {
        features,
        unexpected,
        sources,
    }
}

#[cfg(test)]
mod loan;
#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
