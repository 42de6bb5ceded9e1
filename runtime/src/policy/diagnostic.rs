//! Diagnostics: what is wrong with a policy file, where, and how to fix it.
//!
//! Every [`Diagnostic`] carries a 1-based line and column computed from the byte span of
//! the offending token, and the dotted path of the field, so a governance engineer can go
//! straight to the mistake.

use std::fmt;
use std::ops::Range;

use serde::Serialize;

use super::PolicyError;

/// One problem in a policy file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Diagnostic {
    /// The file (or other origin) the policy text came from.
    pub file: String,
    /// 1-based line of the offending token.
    pub line: usize,
    /// 1-based column (in characters) of the offending token.
    pub column: usize,
    /// Dotted path of the field, e.g. `states.scoring.transitions`, `gates[0].model`,
    /// `budgets.memory_bytes`. Empty for a syntax error outside any field.
    pub field: String,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Diagnostic {
            file,
            line,
            column,
            field,
            problem,
        } = self;
        if field.is_empty() {
            write!(f, "{file}:{line}:{column}: {problem}")
        } else {
            write!(f, "{file}:{line}:{column}: {field}: {problem}")
        }
    }
}

/// A tool or a model: the two kinds of capability a policy declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
pub enum CapabilityKind {
    /// A tool, declared in `capabilities.tools`.
    Tool,
    /// A model, declared in `capabilities.models`.
    Model,
}

impl CapabilityKind {
    fn list(self) -> &'static str {
        match self {
            CapabilityKind::Tool => "capabilities.tools",
            CapabilityKind::Model => "capabilities.models",
        }
    }
}

impl fmt::Display for CapabilityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CapabilityKind::Tool => "tool",
            CapabilityKind::Model => "model",
        })
    }
}

/// What is wrong with a field. Each message says how to fix it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub enum Problem {
    /// The text is not valid TOML (or not UTF-8).
    Syntax(String),
    /// A field this format does not have (often a misspelling).
    UnknownField {
        /// The key as written.
        name: String,
        /// The keys allowed where it appears.
        expected: &'static [&'static str],
    },
    /// A required field is absent.
    Missing {
        /// What the field should hold.
        expected: &'static str,
    },
    /// A field holds the wrong kind of value.
    WrongType {
        /// What the field should hold.
        expected: &'static str,
        /// What it holds.
        found: &'static str,
    },
    /// A name or version is empty.
    Empty,
    /// A list that must name at least one thing is empty.
    EmptyList {
        /// What it should hold.
        expected: &'static str,
    },
    /// A state, tool or model name breaks the naming rule.
    BadName {
        /// The name as written.
        name: String,
    },
    /// A name appears twice in one list.
    Duplicate {
        /// The repeated name.
        name: String,
    },
    /// A reference to a state that is not declared.
    UnknownState {
        /// The name referred to.
        name: String,
    },
    /// A state allows a tool or model not declared in `[capabilities]`.
    UnknownCapability {
        /// Tool or model.
        kind: CapabilityKind,
        /// The name referred to.
        name: String,
    },
    /// No state is terminal.
    NoTerminalState,
    /// The initial state is terminal.
    InitialIsTerminal {
        /// The initial state.
        state: String,
    },
    /// No path of transitions leads from the initial state to this state.
    UnreachableState {
        /// The unreachable state.
        state: String,
        /// The initial state.
        initial: String,
    },
    /// A working state from which no terminal or review state can be reached.
    NoWayOut {
        /// The trapped state.
        state: String,
    },
    /// A review state lists no decisions a reviewer could take.
    ReviewWithoutDecisions {
        /// The review state.
        state: String,
    },
    /// A state is marked both terminal and review.
    TerminalAndReview {
        /// The state.
        state: String,
    },
    /// A terminal state lists transitions, tools or models.
    TerminalWithTransitionsOrCapabilities {
        /// The terminal state.
        state: String,
    },
    /// A gate's model is not declared in `capabilities.models`.
    GateUnknownModel {
        /// The model named by the gate.
        model: String,
    },
    /// A gate's `otherwise` is a declared state but not a review state.
    GateOtherwiseNotReview {
        /// The state named by `otherwise`.
        state: String,
    },
    /// A second gate guards the same state.
    DuplicateGate {
        /// The guarded state.
        to: String,
        /// Line of the first gate on it.
        first_line: usize,
    },
    /// A gate's threshold is not a finite number in `[0, 1]`.
    ConfidenceOutOfRange {
        /// The threshold as read.
        value: f64,
    },
    /// A budget is zero.
    BudgetZero {
        /// The budget.
        field: &'static str,
    },
    /// A budget exceeds the host's cap.
    BudgetOverCap {
        /// The budget.
        field: &'static str,
        /// The value in the file.
        value: u64,
        /// The host's ceiling.
        cap: u64,
    },
    /// A gate demands reconciled features of a model whose features have no declared
    /// sources, so it could never be met.
    GateNeedsProvenance {
        /// The gate's model.
        model: String,
    },
    /// A feature provenance declaration is wrong (an expression, a name, a cycle).
    Provenance {
        /// What is wrong, as the provenance checker says it.
        message: String,
    },
    /// An output rule on a state that is not terminal.
    OutputNotTerminal {
        /// The state.
        state: String,
    },
    /// An output bound on a field whose declared type is not `number`.
    BoundNotNumber {
        /// The type as written.
        kind: String,
    },
    /// An output bound that does not parse, or reads something other than the run input.
    BadBound {
        /// What is wrong.
        message: String,
    },
    /// An output rule names a JSON type that does not exist.
    UnknownJsonType {
        /// The type as written.
        name: String,
    },
    /// A call cap of zero.
    CallCapZero,
    /// A tolerance that is negative or not a number.
    ToleranceInvalid {
        /// The value as read.
        value: f64,
    },
    /// Review rules on a state that is not a review state.
    ReviewRulesOutsideReview {
        /// The state.
        state: String,
    },
    /// A review decision names an outcome the state does not offer.
    NotAnOutcome {
        /// The review state.
        state: String,
        /// The outcome named.
        outcome: String,
    },
    /// An outcome of a review state names no roles that may give it.
    OutcomeWithoutRoles {
        /// The review state.
        state: String,
        /// The outcome.
        outcome: String,
    },
    /// A duration that does not parse.
    BadDuration {
        /// The text as written.
        value: String,
    },
    /// A review timeout longer than a hundred years.
    TimeoutTooLong {
        /// The text as written.
        value: String,
    },
    /// A timeout whose outcome is a gated state: it would approve without anyone.
    TimeoutApproves {
        /// The outcome.
        outcome: String,
    },
    /// The input contract's schema is not JSON, or uses a keyword Warden does not
    /// enforce, or uses one wrongly (the field names the place in the schema).
    InputSchema {
        /// What is wrong and how to fix it.
        message: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Syntax(message) => write!(f, "not valid TOML: {message}; fix the syntax here"),
            Problem::UnknownField { name, expected } => write!(
                f,
                "unknown field `{name}`; remove it or correct its spelling (allowed here: {})",
                expected.join(", ")
            ),
            Problem::Missing { expected } => {
                write!(f, "required field is missing; add it ({expected})")
            }
            Problem::WrongType { expected, found } => {
                write!(f, "expected {expected}, found {found}")
            }
            Problem::Empty => f.write_str("must not be empty; write a value between the quotes"),
            Problem::EmptyList { expected } => write!(f, "is an empty list; write {expected}"),
            Problem::BadName { name } => write!(
                f,
                "`{name}` is not a valid name: a name starts with a letter and continues with \
                 letters, digits, `_` or `-`, 64 characters at most"
            ),
            Problem::Duplicate { name } => write!(f, "`{name}` is listed twice; remove one"),
            Problem::UnknownState { name } => write!(
                f,
                "`{name}` is not a declared state; declare it with [states.{name}] or correct the name"
            ),
            Problem::UnknownCapability { kind, name } => write!(
                f,
                "{kind} `{name}` is not declared; add it to {} or remove it here",
                kind.list()
            ),
            Problem::NoTerminalState => f.write_str(
                "no state is terminal, so no run could ever finish; mark at least one state \
                 with `terminal = true`",
            ),
            Problem::InitialIsTerminal { state } => write!(
                f,
                "the initial state `{state}` is terminal, so a run would end before its first \
                 step; start from a working state"
            ),
            Problem::UnreachableState { state, initial } => write!(
                f,
                "state `{state}` cannot be reached from the initial state `{initial}`; add a \
                 transition into it or remove it"
            ),
            Problem::NoWayOut { state } => write!(
                f,
                "no terminal or review state can be reached from working state `{state}`, so a \
                 run entering it could never finish; add a transition that leads to one"
            ),
            Problem::ReviewWithoutDecisions { state } => write!(
                f,
                "review state `{state}` lists no transitions, so a reviewer could decide \
                 nothing; list the states a reviewer may send the run to"
            ),
            Problem::TerminalAndReview { state } => write!(
                f,
                "state `{state}` is marked both terminal and review; a state is one or the \
                 other, remove one of the two flags"
            ),
            Problem::TerminalWithTransitionsOrCapabilities { state } => write!(
                f,
                "terminal state `{state}` ends the run, so it can have no transitions, tools \
                 or models; remove them or remove `terminal = true`"
            ),
            Problem::GateUnknownModel { model } => write!(
                f,
                "model `{model}` is not declared; add it to capabilities.models or correct the name"
            ),
            Problem::GateOtherwiseNotReview { state } => write!(
                f,
                "`{state}` is not a review state, so a decision below the threshold would \
                 escape human review; name a state with `review = true`"
            ),
            Problem::DuplicateGate { to, first_line } => write!(
                f,
                "state `{to}` already has a gate (line {first_line}); keep one gate per \
                 state and delete or merge the other"
            ),
            Problem::ConfidenceOutOfRange { value } => write!(
                f,
                "{value} is not a confidence: use a number from 0 to 1, such as 0.90"
            ),
            Problem::BudgetZero { field } => write!(
                f,
                "budget `{field}` is 0, which would stop every run at once; set a positive \
                 value or remove the line to get the default"
            ),
            Problem::BudgetOverCap { field, value, cap } => write!(
                f,
                "budget `{field}` = {value} exceeds this host's cap of {cap}; lower it to \
                 {cap} or less"
            ),
            Problem::GateNeedsProvenance { model } => write!(
                f,
                "the gate requires every feature of `{model}` to be reconciled, but \
                 [models.{model}.features] declares none; declare where each feature comes \
                 from, or set `require_reconciled = false`"
            ),
            Problem::Provenance { message } => write!(f, "{message}"),
            Problem::OutputNotTerminal { state } => write!(
                f,
                "state `{state}` is not terminal, and only a run finishing in a terminal \
                 state has an output; move the rule to a terminal state"
            ),
            Problem::BoundNotNumber { kind } => write!(
                f,
                "`min` and `max` bound a number, and this field is declared `{kind}`; declare it \
                 `number` (or leave `type` out)"
            ),
            Problem::BadBound { message } => write!(f, "{message}"),
            Problem::UnknownJsonType { name } => write!(
                f,
                "`{name}` is not a JSON type; use string, number, boolean, array, object, \
                 null or any"
            ),
            Problem::CallCapZero => f.write_str(
                "a cap of 0 calls would deny every call; set a positive number or remove the \
                 line (no cap)",
            ),
            Problem::ToleranceInvalid { value } => write!(
                f,
                "{value} is not a tolerance: use a small positive number such as 1e-9"
            ),
            Problem::ReviewRulesOutsideReview { state } => write!(
                f,
                "`{state}` is not a review state; decisions and timeouts belong to a state with `review = true`"
            ),
            Problem::NotAnOutcome { state, outcome } => write!(
                f,
                "review state `{state}` does not offer `{outcome}`; list it in its transitions or correct the name"
            ),
            Problem::OutcomeWithoutRoles { state, outcome } => write!(
                f,
                "review state `{state}` offers `{outcome}` but names no roles that may decide it; add [states.{state}.decisions.{outcome}] with roles = [...]"
            ),
            Problem::BadDuration { value } => write!(
                f,
                "`{value}` is not a duration; write one such as \"72h\", \"30m\" or \"2days\""
            ),
            Problem::TimeoutTooLong { value } => write!(
                f,
                "`{value}` is longer than a review timeout may be (a hundred years); a case nobody decides in that long needs no timer: leave `timeout` out"
            ),
            Problem::TimeoutApproves { outcome } => write!(
                f,
                "`{outcome}` is guarded by a confidence gate: a timeout must never pass a gate (nobody decided, and no model was confident); send it to a state no gate guards, one that declines or holds the case"
            ),
            Problem::InputSchema { message } => f.write_str(message),
        }
    }
}

/// Renders diagnostics one per line, for [`PolicyError::Invalid`].
pub(super) fn render_all(diagnostics: &[Diagnostic]) -> String {
    let lines: Vec<String> = diagnostics.iter().map(Diagnostic::to_string).collect();
    lines.join("\n")
}

/// The error for a policy file that is not UTF-8, pointing at the first bad byte.
pub(super) fn not_utf8(bytes: &[u8], error: std::str::Utf8Error, origin: &str) -> PolicyError {
    let valid = bytes.get(..error.valid_up_to()).unwrap_or_default();
    // The prefix is valid UTF-8 by definition of `valid_up_to`.
    let text = std::str::from_utf8(valid).unwrap_or_default();
    let mut report = Report::new(text, origin);
    report.push(
        text.len()..text.len(),
        "",
        Problem::Syntax("the file is not UTF-8 text".to_string()),
    );
    report.into_error()
}

/// Collects diagnostics for one policy text.
#[derive(Debug)]
pub(super) struct Report<'a> {
    text: &'a str,
    origin: &'a str,
    diagnostics: Vec<Diagnostic>,
}

impl<'a> Report<'a> {
    pub(super) fn new(text: &'a str, origin: &'a str) -> Self {
        Report {
            text,
            origin,
            diagnostics: Vec::new(),
        }
    }

    /// Records `problem` at the token spanning `span` (byte offsets into the text).
    pub(super) fn push(&mut self, span: Range<usize>, field: impl Into<String>, problem: Problem) {
        let (line, column) = line_column(self.text, span.start);
        self.diagnostics.push(Diagnostic {
            file: self.origin.to_string(),
            line,
            column,
            field: field.into(),
            problem,
        });
    }

    /// The policy text the positions are in.
    pub(super) fn text(&self) -> &'a str {
        self.text
    }

    pub(super) fn is_clean(&self) -> bool {
        self.diagnostics.is_empty()
    }

    /// The 1-based line of byte `offset`.
    pub(super) fn line_of(&self, span: Range<usize>) -> usize {
        line_column(self.text, span.start).0
    }

    /// Number of diagnostics so far, to tell whether a stage added any.
    pub(super) fn len(&self) -> usize {
        self.diagnostics.len()
    }

    /// The diagnostics, sorted by position, as an error.
    pub(super) fn into_error(mut self) -> PolicyError {
        if self.diagnostics.is_empty() {
            // Callers only ask for an error after a problem was pushed; should that ever
            // not hold, an error must still say something.
            self.push(
                0..0,
                "",
                Problem::Syntax("the policy could not be read".to_string()),
            );
        }
        let mut diagnostics = self.diagnostics;
        diagnostics.sort_by_key(|d| (d.line, d.column));
        PolicyError::Invalid { diagnostics }
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`. An offset past the
/// end, or inside a character, is clamped to the nearest earlier character boundary.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}
