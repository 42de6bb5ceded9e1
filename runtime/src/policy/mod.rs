//! The policy: the governance contract an agent runs under.
//!
//! A policy file (TOML, see `policies/README.md`) declares the agent's states and
//! transitions, the tools and models each state may use, confidence gates, review states
//! and budgets. This module upholds one invariant: **a [`Policy`] value exists only if its
//! file passed every rule**, so enforcement never has to ask whether a state, capability
//! or gate it finds in the policy is coherent. Every problem found in a file is reported
//! at once, each with its file, line, column and field, by [`PolicyError::Invalid`].
//!
//! [`Policy::hash`] names the contract: the same rules give the same hash whatever the
//! formatting, comments or order of the file, and any change of meaning changes it.

mod canonical;
mod decode;
mod decode_rules;
mod diagnostic;
mod input;
mod validate;
mod validate_rules;
mod wasi;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::edition::Edition;
use crate::input_contract::InputContract;
use crate::provenance::Provenance;

pub use diagnostic::{CapabilityKind, Diagnostic, Problem};

/// A validated policy. Built only by [`Policy::parse`], [`Policy::parse_with_caps`] or
/// [`Policy::from_file`], so every reference in it (initial state, transition targets,
/// capabilities, gate states and models) resolves, and every budget is within the caps.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Name of the policy, e.g. `consumer-loan-underwriting`. Never empty.
    pub name: String,
    /// Version chosen by its authors, e.g. `1.0.0`. Never empty.
    pub version: String,
    /// Free text for people.
    pub description: Option<String>,
    /// The state every run starts in: declared, and not terminal.
    pub initial: String,
    /// Every tool any state may call.
    pub tools: BTreeSet<String>,
    /// Every model any state may run an inference of.
    pub models: BTreeSet<String>,
    /// The states, by name.
    pub states: BTreeMap<String, State>,
    /// Confidence gates, sorted by `to`, at most one per target state.
    pub gates: Vec<ConfidenceGate>,
    /// Limits of a run: the file's budgets, defaults for those it omits.
    pub budgets: Budgets,
    /// Per-tool rules (`[tools.<name>]`), for tools that have any.
    pub tool_rules: BTreeMap<String, ToolRules>,
    /// Per-model rules (`[models.<name>]`): call caps and feature provenance.
    pub model_rules: BTreeMap<String, ModelRules>,
    /// The contract the run input must meet (`[input] schema`), checked before the first
    /// step of a run or a fork; `None` when the policy declares none.
    pub input_contract: Option<InputContract>,
    /// Whether the agent may be a WASI guest (`[wasi] enabled = true`): a module built
    /// for `wasm32-wasip1` whose clocks, randomness and output Warden answers and
    /// journals. `false` unless the policy says so.
    pub wasi: bool,
}

/// Rules of one tool beyond the states that may call it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ToolRules {
    /// Calls of the tool allowed in one visit of a state (from entering it to leaving
    /// it); more are denied.
    pub max_calls_per_state: Option<u32>,
}

/// Rules of one model beyond the states that may call it.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ModelRules {
    /// Inferences of the model allowed in one visit of a state; more are denied, so an
    /// agent cannot shop for the answer it wants.
    pub max_calls_per_state: Option<u32>,
    /// Where each feature of a request must come from; the host reconciles every
    /// request against it before the model is asked.
    pub provenance: Option<Provenance>,
}

/// What the output of a run finishing in a terminal state must hold: a field must equal a
/// value, be of a JSON type, or be a number within bounds computed from the run's input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputConstraint {
    /// The field must equal this JSON value.
    Equals(serde_json::Value),
    /// The field must be present with this JSON type.
    Type(JsonType),
    /// The field must be a number at least `min` and at most `max` (either may be
    /// absent), each an expression over the run's input (`input:/amount`).
    Number {
        /// The least it may be.
        min: Option<Bound>,
        /// The most it may be.
        max: Option<Bound>,
    },
}

/// An output bound: an expression of the provenance language (`crate::provenance::expr`)
/// whose references are all into the run's input, so that Warden computes it from what the
/// run was asked, never from what the agent says.
#[derive(Clone, Debug, PartialEq)]
pub struct Bound(pub crate::provenance::expr::Expr);

impl Eq for Bound {}

/// Why a bound has no value for an input.
#[derive(Debug)]
pub enum Unbounded {
    /// It computes to infinity or NaN.
    NotFinite(f64),
    /// It cannot be computed (a reference missing or not a number, bad arithmetic).
    Error(crate::provenance::EvalError),
}

impl Unbounded {
    /// Says why, after the bound's text: "is inf", "cannot be computed: ...", with "for
    /// this input" where one was given.
    pub fn describe(&self, for_input: bool) -> String {
        let input = if for_input { " for this input" } else { "" };
        match self {
            Unbounded::NotFinite(v) => format!("is {v}{input}"),
            Unbounded::Error(error) => format!("cannot be computed{input}: {error}"),
        }
    }
}

impl Bound {
    /// The bound for the run input `input` as a finite number.
    ///
    /// # Errors
    /// [`Unbounded`]: why it is none.
    pub fn value(&self, input: &serde_json::Value) -> Result<f64, Unbounded> {
        match self.compute(input) {
            Ok(value) if value.is_finite() => Ok(value),
            Ok(value) => Err(Unbounded::NotFinite(value)),
            Err(error) => Err(Unbounded::Error(error)),
        }
    }

    /// The bound for the run input `input`: each reference a JSON number found at its
    /// pointer (a boolean, a string or nothing there is an error, as is a result that is
    /// not a finite number).
    ///
    /// # Errors
    /// What keeps it from being computed, naming the reference or the arithmetic.
    pub fn compute(&self, input: &serde_json::Value) -> Result<f64, crate::provenance::EvalError> {
        use crate::provenance::EvalError;
        use crate::provenance::expr::Reference;
        self.0.eval(&mut |reference| match reference {
            Reference::Pointer {
                source: None,
                pointer,
            } => match input.pointer(pointer) {
                Some(serde_json::Value::Bool(_)) => Err(EvalError::NotANumber {
                    reference: reference.to_string(),
                    found: "boolean".into(),
                }),
                value => crate::provenance::reconcile::json_number(value, reference),
            },
            // Validation admits only input pointers.
            other => Err(EvalError::Missing {
                reference: other.to_string(),
            }),
        })
    }
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A JSON type, as an output constraint names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JsonType {
    /// A string.
    String,
    /// A number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// A list.
    Array,
    /// An object.
    Object,
    /// `null`.
    Null,
    /// Any value, as long as the field is present.
    Any,
}

impl JsonType {
    /// The type's name as written in a policy.
    pub fn as_str(self) -> &'static str {
        match self {
            JsonType::String => "string",
            JsonType::Number => "number",
            JsonType::Boolean => "boolean",
            JsonType::Array => "array",
            JsonType::Object => "object",
            JsonType::Null => "null",
            JsonType::Any => "any",
        }
    }

    /// Parses a type's name.
    pub fn parse(name: &str) -> Option<JsonType> {
        [
            JsonType::String,
            JsonType::Number,
            JsonType::Boolean,
            JsonType::Array,
            JsonType::Object,
            JsonType::Null,
            JsonType::Any,
        ]
        .into_iter()
        .find(|t| t.as_str() == name)
    }

    /// Whether `value` is of this type.
    pub fn admits(self, value: &serde_json::Value) -> bool {
        use serde_json::Value;
        matches!(
            (self, value),
            (JsonType::Any, _)
                | (JsonType::String, Value::String(_))
                | (JsonType::Number, Value::Number(_))
                | (JsonType::Boolean, Value::Bool(_))
                | (JsonType::Array, Value::Array(_))
                | (JsonType::Object, Value::Object(_))
                | (JsonType::Null, Value::Null)
        )
    }
}

/// One state of the agent's state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    /// Working, terminal or review.
    pub kind: StateKind,
    /// Tools a run may call while in this state (all declared in [`Policy::tools`]).
    pub tools: BTreeSet<String>,
    /// Models a run may infer with while in this state (all in [`Policy::models`]).
    pub models: BTreeSet<String>,
    /// States this one may move to. Empty for a terminal state. For a review state: what
    /// a reviewer may decide.
    pub transitions: BTreeSet<String>,
    /// A terminal state: what the output of a run finishing here must hold, by field.
    pub output: BTreeMap<String, OutputConstraint>,
    /// A review state: who may decide what, and what a timeout decides.
    pub review: Option<ReviewRules>,
}

/// The rules of a review state (edition 2): every outcome it offers (each a declared
/// transition) names the roles that may give it, optionally under dual control; an
/// optional timeout decides a declared outcome that never approves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReviewRules {
    /// Who may decide each outcome, by outcome.
    pub decisions: BTreeMap<String, DecisionRule>,
    /// What happens when no one decides in time.
    pub timeout: Option<ReviewTimeout>,
}

/// Who may send a run to one outcome of a review state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecisionRule {
    /// The roles that may give it.
    pub roles: BTreeSet<String>,
    /// Whether two distinct reviewers must give it.
    pub dual_control: bool,
}

/// A review state's timeout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReviewTimeout {
    /// How long after the run entered review, in milliseconds.
    pub after_ms: u64,
    /// The outcome applied (never a gated, approving state).
    pub outcome: String,
}

/// What a state is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateKind {
    /// The agent works here: calls tools and models, then moves on.
    Working,
    /// The run ends here with an outcome. No transitions, no capabilities.
    Terminal,
    /// A human decides: a run that enters it stops as awaiting review.
    Review,
}

/// A confidence gate: guards every transition into `to`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfidenceGate {
    /// The guarded state.
    pub to: String,
    /// The model whose inference must carry the confidence (declared in
    /// [`Policy::models`]).
    pub model: String,
    /// The lowest confidence that lets the transition through: finite, in `[0, 1]`.
    pub min_confidence: f64,
    /// The review state the run goes to instead when the gate is not met.
    pub otherwise: String,
    /// The label the model must predict: the confidence compared is the model's
    /// probability of this label. `None` only in policies recorded by edition-1 runs,
    /// whose gates compared the model's confidence in whatever it predicted.
    pub label: Option<String>,
    /// Whether every feature of the inference must have been reconciled with its
    /// declared source (`[models.<model>.features]`). Default: true.
    pub require_reconciled: bool,
}

/// Limits of one run under a policy. See `policies/README.md` for what each stops and
/// does not stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budgets {
    /// Wasmtime fuel units one step may consume.
    pub fuel_per_step: u64,
    /// Ceiling of the guest's linear memory, in bytes.
    pub memory_bytes: u64,
    /// Steps in one run.
    pub max_steps: u32,
    /// Host calls in one run.
    pub max_host_calls: u32,
    /// Size of one encoded host-call request.
    pub max_request_bytes: u32,
    /// Size of one encoded host-call response.
    pub max_response_bytes: u32,
    /// Wall-clock safety stop for one step, in milliseconds.
    pub wall_clock_ms: u64,
    /// Size of all journal records of one run.
    pub max_journal_bytes: u64,
    /// A checkpoint is taken every this many steps.
    pub checkpoint_every: u32,
}

impl Budgets {
    /// The budgets of a policy that sets none.
    pub const DEFAULT: Budgets = Budgets {
        fuel_per_step: 500_000_000,
        memory_bytes: 64 * 1024 * 1024,
        max_steps: 100,
        max_host_calls: 1_000,
        max_request_bytes: 1024 * 1024,
        max_response_bytes: 1024 * 1024,
        wall_clock_ms: 30_000,
        max_journal_bytes: 64 * 1024 * 1024,
        checkpoint_every: 1,
    };
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets::DEFAULT
    }
}

/// Host-wide ceilings: no policy may set a budget above them. A deployment chooses
/// them; [`HostCaps::DEFAULT`] is what [`Policy::parse`] applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCaps {
    /// Ceiling of [`Budgets::fuel_per_step`].
    pub fuel_per_step: u64,
    /// Ceiling of [`Budgets::memory_bytes`].
    pub memory_bytes: u64,
    /// Ceiling of [`Budgets::max_steps`].
    pub max_steps: u32,
    /// Ceiling of [`Budgets::max_host_calls`].
    pub max_host_calls: u32,
    /// Ceiling of [`Budgets::max_request_bytes`].
    pub max_request_bytes: u32,
    /// Ceiling of [`Budgets::max_response_bytes`].
    pub max_response_bytes: u32,
    /// Ceiling of [`Budgets::wall_clock_ms`].
    pub wall_clock_ms: u64,
    /// Ceiling of [`Budgets::max_journal_bytes`].
    pub max_journal_bytes: u64,
    /// Ceiling of [`Budgets::checkpoint_every`].
    pub checkpoint_every: u32,
}

impl HostCaps {
    /// The ceilings of a host that configures none.
    pub const DEFAULT: HostCaps = HostCaps {
        fuel_per_step: 10_000_000_000,
        memory_bytes: 4 * 1024 * 1024 * 1024,
        max_steps: 100_000,
        max_host_calls: 1_000_000,
        max_request_bytes: 16 * 1024 * 1024,
        max_response_bytes: 16 * 1024 * 1024,
        wall_clock_ms: 3_600_000,
        max_journal_bytes: 1024 * 1024 * 1024,
        checkpoint_every: 100_000,
    };
}

impl Default for HostCaps {
    fn default() -> Self {
        HostCaps::DEFAULT
    }
}

/// The names of the budget fields, in the order of [`Budgets`]; the order is part of the
/// canonical form hashed by [`Policy::hash`].
const BUDGET_FIELDS: [&str; 9] = [
    "fuel_per_step",
    "memory_bytes",
    "max_steps",
    "max_host_calls",
    "max_request_bytes",
    "max_response_bytes",
    "wall_clock_ms",
    "max_journal_bytes",
    "checkpoint_every",
];

impl Budgets {
    fn to_array(self) -> [u64; 9] {
        [
            self.fuel_per_step,
            self.memory_bytes,
            self.max_steps.into(),
            self.max_host_calls.into(),
            self.max_request_bytes.into(),
            self.max_response_bytes.into(),
            self.wall_clock_ms,
            self.max_journal_bytes,
            self.checkpoint_every.into(),
        ]
    }

    /// Values of the `u32` fields saturate; validation keeps them within [`HostCaps`],
    /// whose matching fields are `u32`, so nothing saturates in practice.
    fn from_array(values: [u64; 9]) -> Budgets {
        let small = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        Budgets {
            fuel_per_step: values[0],
            memory_bytes: values[1],
            max_steps: small(values[2]),
            max_host_calls: small(values[3]),
            max_request_bytes: small(values[4]),
            max_response_bytes: small(values[5]),
            wall_clock_ms: values[6],
            max_journal_bytes: values[7],
            checkpoint_every: small(values[8]),
        }
    }
}

impl HostCaps {
    fn to_array(self) -> [u64; 9] {
        [
            self.fuel_per_step,
            self.memory_bytes,
            self.max_steps.into(),
            self.max_host_calls.into(),
            self.max_request_bytes.into(),
            self.max_response_bytes.into(),
            self.wall_clock_ms,
            self.max_journal_bytes,
            self.checkpoint_every.into(),
        ]
    }
}

/// The canonical hash of a policy, recorded in every run.
pub type PolicyHash = crate::digest::Digest;

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read policy {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file was read but breaks one or more rules. Never empty; sorted by position.
    #[error("{}", diagnostic::render_all(diagnostics))]
    Invalid {
        /// Every problem found, each with its position and field.
        diagnostics: Vec<Diagnostic>,
    },
}

impl Policy {
    /// Reads and validates the policy file at `path` against [`HostCaps::DEFAULT`].
    /// Diagnostics name the file as `path.display()`.
    pub fn from_file(path: &Path) -> Result<Policy, PolicyError> {
        Policy::from_file_with_text(path).map(|(policy, _)| policy)
    }

    /// As [`Policy::from_file`], also returning the file's text (which a run stores).
    pub fn from_file_with_text(path: &Path) -> Result<(Policy, String), PolicyError> {
        let bytes = crate::confine::read_file(path).map_err(|source| PolicyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let origin = path.display().to_string();
        match String::from_utf8(bytes) {
            Ok(text) => Policy::parse(&text, &origin).map(|policy| (policy, text)),
            Err(error) => Err(diagnostic::not_utf8(
                error.as_bytes(),
                error.utf8_error(),
                &origin,
            )),
        }
    }

    /// Parses the stored policy text of a run recorded under `edition`, with the rules of
    /// that edition, so that old runs keep replaying.
    pub fn parse_recorded(
        text: &str,
        origin: &str,
        edition: Edition,
    ) -> Result<Policy, PolicyError> {
        Policy::parse_under(text, origin, &HostCaps::DEFAULT, edition)
    }

    /// Parses and validates policy text against [`HostCaps::DEFAULT`]. `origin` names the
    /// text in diagnostics (usually its path).
    pub fn parse(text: &str, origin: &str) -> Result<Policy, PolicyError> {
        Policy::parse_with_caps(text, origin, &HostCaps::DEFAULT)
    }

    /// Parses and validates policy text; every budget must be at most `caps`. A budget
    /// the file omits takes its default from [`Budgets::DEFAULT`], lowered to the cap
    /// when the cap is smaller.
    pub fn parse_with_caps(
        text: &str,
        origin: &str,
        caps: &HostCaps,
    ) -> Result<Policy, PolicyError> {
        Policy::parse_under(text, origin, caps, Edition::CURRENT)
    }

    fn parse_under(
        text: &str,
        origin: &str,
        caps: &HostCaps,
        edition: Edition,
    ) -> Result<Policy, PolicyError> {
        let mut report = diagnostic::Report::new(text, origin);
        // A syntax error leaves no trustworthy document to check the rules against.
        if let Some(draft) = decode::decode(text, &mut report) {
            let policy = validate::validate(draft, caps, edition, &mut report);
            if report.is_clean() {
                return Ok(policy);
            }
        }
        Err(report.into_error())
    }

    /// The rules of the named model, if the policy has any.
    pub fn model_rules(&self, name: &str) -> Option<&ModelRules> {
        self.model_rules.get(name)
    }

    /// Calls of a tool or model allowed in one visit of a state, if capped.
    pub fn call_cap(&self, kind: CapabilityKind, name: &str) -> Option<u32> {
        match kind {
            CapabilityKind::Tool => self.tool_rules.get(name)?.max_calls_per_state,
            CapabilityKind::Model => self.model_rules.get(name)?.max_calls_per_state,
        }
    }

    /// The state called `name`, if declared.
    pub fn state(&self, name: &str) -> Option<&State> {
        self.states.get(name)
    }

    /// The confidence gate guarding transitions into `to`, if any.
    pub fn gate(&self, to: &str) -> Option<&ConfidenceGate> {
        self.gates
            .binary_search_by(|gate| gate.to.as_str().cmp(to))
            .ok()
            .map(|index| &self.gates[index])
    }
}
