//! The input contract: a JSON Schema a policy declares for the run input
//! (`[input] schema`), checked before the first step of a run or a fork.
//!
//! Warden enforces a documented subset of JSON Schema draft 2020-12 (`policies/README.md`,
//! "`[input]`"), and upholds two invariants:
//!
//! - **No keyword is ever ignored.** A schema compiles only if every keyword in it is one
//!   this module enforces, or an annotation that has no effect on validity by definition
//!   (`title`, `description`, ...). Anything else, a misspelling or a keyword of the
//!   standard Warden does not implement (`pattern`, `$ref`, `oneOf`...), is refused when
//!   the policy loads, naming where it is: a contract means exactly what it says.
//! - **Checking is total and deterministic.** Any JSON value against any compiled schema
//!   gives the same violations, in the same order, with the same words, on every machine
//!   and in every re-execution (they are recorded in the journal and replay compares
//!   them); it never panics. Numbers compare by value, exactly (`1` equals `1.0`; a `u64`
//!   above 2^53 is not rounded).

mod json;
mod schema;
mod validate;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub(crate) use json::positions;

/// The most violations a rejection records; the rest are counted.
pub const MAX_RECORDED_VIOLATIONS: usize = 16;

/// A compiled input contract: a JSON Schema every keyword of which Warden enforces.
#[derive(Clone, Debug, PartialEq)]
pub struct InputContract {
    schema: schema::Schema,
    /// The schema as canonical JSON (keys sorted, no spaces, numbers by value), which the
    /// policy hash covers.
    canonical: String,
}

/// One way an input breaks its contract. Recorded in the journal
/// (`FailureReason::InputRejected`): the fields, their order and the wording of each
/// keyword's message are part of the format, and replay compares them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputViolation {
    /// A JSON pointer (RFC 6901) into the input: the value that breaks the rule, or, for
    /// `required`, the field that is missing. Empty for the input as a whole.
    pub pointer: String,
    /// The schema keyword the value breaks: `type`, `required`, `minimum`...
    pub keyword: String,
    /// What is wrong, in words.
    pub message: String,
}

impl std::fmt::Display for InputViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = if self.pointer.is_empty() {
            "(the input)"
        } else {
            &self.pointer
        };
        write!(f, "{at}: {}: {}", self.keyword, self.message)
    }
}

/// An input the contract refuses: its first violations, and how many there are in all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The first [`MAX_RECORDED_VIOLATIONS`] violations, in the order of the schema.
    pub violations: Vec<InputViolation>,
    /// Every violation found, including those not kept.
    pub total: u32,
}

/// What is wrong with a schema, and where in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaProblem {
    /// A JSON pointer into the schema: the keyword (or subschema) at fault.
    pub pointer: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl InputContract {
    /// Compiles a schema. Every problem is returned, each with its place in the schema;
    /// a keyword Warden does not enforce is a problem, never ignored.
    ///
    /// # Errors
    /// Every problem found, in the order met.
    pub fn compile(schema: &serde_json::Value) -> Result<InputContract, Vec<SchemaProblem>> {
        let mut problems = Vec::new();
        let compiled = schema::compile(schema, &mut String::new(), true, &mut problems);
        if problems.is_empty() {
            Ok(InputContract {
                schema: compiled,
                canonical: json::canonical(schema),
            })
        } else {
            Err(problems)
        }
    }

    /// Checks `input` against the contract.
    ///
    /// # Errors
    /// The input's violations, the first [`MAX_RECORDED_VIOLATIONS`] kept.
    pub fn check(&self, input: &serde_json::Value) -> Result<(), Rejection> {
        let mut found = validate::Found::new(MAX_RECORDED_VIOLATIONS);
        validate::check(&self.schema, input, &mut String::new(), "", &mut found);
        found.into_result()
    }

    /// The schema as canonical JSON: object keys sorted, no insignificant space, numbers
    /// by value (`1.0` is written `1`). Two schemas with the same canonical form mean the
    /// same; the policy hash covers it.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }
}
