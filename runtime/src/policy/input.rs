//! `[input]`: the contract the run input must meet, a JSON Schema written inline in the
//! policy (`schema = '''{ ... }'''`), compiled by [`crate::input_contract`].
//!
//! The schema is JSON text inside the policy rather than a file beside it, so that the
//! policy text a run stores in the journal is the whole contract: replay, a counterfactual
//! and an evidence pack re-check the input from the journal alone, and the policy hash
//! covers the schema. Every problem of the schema is placed at its line in the policy
//! file: the JSON's own position when the TOML string holds it verbatim (a literal string,
//! `'''...'''`, or a basic one without escapes), the string's start otherwise.

use std::ops::Range;

use toml::de::DeTable;

use super::decode::{string, unknown};
use super::diagnostic::{Problem, Report};
use crate::input_contract::{InputContract, positions};

/// The fields of `[input]`.
const INPUT: &[&str] = &["schema"];

/// `[input]` as written.
#[derive(Debug)]
pub(super) struct DraftInput {
    /// The table's span.
    span: Range<usize>,
    schema: Option<DraftSchema>,
}

/// The schema's text and where it is.
#[derive(Debug)]
struct DraftSchema {
    text: String,
    /// The TOML string's span.
    span: Range<usize>,
    /// Where the JSON text starts in the file, when the TOML string holds it verbatim.
    start: Option<usize>,
}

/// Reads the `[input]` table.
pub(super) fn decode(
    report: &mut Report<'_>,
    table: &DeTable<'_>,
    span: Range<usize>,
) -> DraftInput {
    let mut input = DraftInput { span, schema: None };
    for (key, value) in table.iter() {
        match key.get_ref().as_ref() {
            "schema" => {
                let expected =
                    "a JSON Schema as JSON text, such as schema = '''{ \"type\": \"object\" }'''";
                if let Some(text) = string(report, "input.schema", value, expected) {
                    let span = text.span();
                    let text = text.into_inner();
                    let start = verbatim_start(report.text(), &span, &text);
                    input.schema = Some(DraftSchema { text, span, start });
                }
            }
            _ => unknown(report, key, "input", INPUT),
        }
    }
    if !table.contains_key("schema") {
        report.push(
            input.span.clone(),
            "input.schema",
            Problem::Missing {
                expected: "schema = '''{ ... }''', the JSON Schema of the run input",
            },
        );
    }
    input
}

/// Where the content of the TOML string at `span` starts in `file`, if the string holds
/// `value` byte for byte (so that offsets into the JSON are offsets into the file).
fn verbatim_start(file: &str, span: &Range<usize>, value: &str) -> Option<usize> {
    let raw = file.get(span.clone())?;
    let delimiter = ["'''", "\"\"\"", "'", "\""]
        .into_iter()
        .find(|d| raw.len() >= 2 * d.len() && raw.starts_with(d) && raw.ends_with(d))?;
    let inner = raw.get(delimiter.len()..raw.len() - delimiter.len())?;
    // TOML drops a newline right after the opening delimiter of a multi-line string.
    let trimmed = match delimiter.len() {
        3 => inner
            .strip_prefix("\r\n")
            .or_else(|| inner.strip_prefix('\n'))
            .unwrap_or(inner),
        _ => inner,
    };
    (trimmed == value).then(|| span.start + delimiter.len() + (inner.len() - trimmed.len()))
}

/// Compiles the schema, reporting every problem at its place.
pub(super) fn validate(
    report: &mut Report<'_>,
    draft: Option<&DraftInput>,
) -> Option<InputContract> {
    let schema = draft?.schema.as_ref()?;
    let at = |offset: usize| -> Range<usize> {
        match schema.start {
            Some(start) => start + offset..start + offset,
            None => schema.span.clone(),
        }
    };
    let value: serde_json::Value = match serde_json::from_str(&schema.text) {
        Ok(value) => value,
        Err(error) => {
            let offset = offset_of(&schema.text, error.line(), error.column());
            let message = error.to_string();
            let message = message.split(" at line ").next().unwrap_or(&message);
            let problem = Problem::InputSchema {
                message: format!("the schema is not JSON: {message}"),
            };
            report.push(at(offset), "input.schema", problem);
            return None;
        }
    };
    let written = positions(&schema.text);
    let mut clean = true;
    for (pointer, offset) in &written.duplicates {
        clean = false;
        let problem = Problem::InputSchema {
            message: "this key is written twice in its object; keep one".to_string(),
        };
        report.push(at(*offset), field(pointer), problem);
    }
    // With a key written twice, the schema does not say one thing: fix that first.
    if !clean {
        return None;
    }
    match InputContract::compile(&value) {
        Ok(contract) => Some(contract),
        Err(problems) => {
            for problem in problems {
                let offset = written.offset(&problem.pointer);
                let field = field(&problem.pointer);
                let problem = Problem::InputSchema {
                    message: problem.message,
                };
                report.push(at(offset), field, problem);
            }
            None
        }
    }
}

/// The field a diagnostic names: `input.schema`, then a JSON pointer into the schema as a
/// URI fragment (`input.schema#/properties/age/pattern`).
fn field(pointer: &str) -> String {
    if pointer.is_empty() {
        "input.schema".to_string()
    } else {
        format!("input.schema#{pointer}")
    }
}

/// The byte offset of serde_json's 1-based line and column in `text`.
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    (line_start + column.saturating_sub(1)).min(text.len())
}
