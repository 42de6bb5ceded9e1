//! Expectation files: what `warden test` expects of one sample input, read from the
//! `NAME.expect.toml` beside `NAME.json`, and compared with what the run came to.
//!
//! Every problem in a file is reported with its file, line, column and field, and every
//! unmet expectation with the line it was written on, so a failure points at the line to
//! read (or fix).
//!
//! ```toml
//! status = "completed"                 # completed | awaiting_review | failed
//! state = "approved"                   # the state the run ends in
//! path = ["intake", "assess", "approved"]   # optional: every state, in order
//! reason = "amount must be positive"   # optional: text the failure reason contains
//!
//! [output]                             # optional, completed runs: fields of the output
//! decision = "approved"                # a top-level field, compared as JSON (1 == 1.0)
//! "/reasons/0" = "..."                 # a JSON pointer into the output
//! risk = { approx = 0.0445, tolerance = 0.0005 }   # a number within a tolerance
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use toml::Spanned;
use warden::{RunReport, Status};

/// What a sample's run must come to.
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    /// The file it was read from.
    pub file: PathBuf,
    status: At<Status>,
    state: At<String>,
    path: Option<At<Vec<String>>>,
    reason: Option<At<String>>,
    /// Output fields, in the order they are written in the file.
    output: Vec<(At<String>, Matcher)>,
}

/// A value and the line it was written on.
#[derive(Debug, Clone, PartialEq)]
struct At<T> {
    value: T,
    line: usize,
}

/// How an output field is compared.
#[derive(Debug, Clone, PartialEq)]
enum Matcher {
    /// Equal as JSON, numbers compared by value.
    Equals(Value),
    /// A number within `tolerance` of `approx`.
    Approx { approx: f64, tolerance: f64 },
}

/// A problem in an expectation file.
#[derive(Debug)]
pub struct ExpectError {
    file: PathBuf,
    line: usize,
    column: usize,
    message: String,
}

impl fmt::Display for ExpectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

impl std::error::Error for ExpectError {}

/// One expectation the run did not meet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// The line of the expectation file it was written on.
    pub line: usize,
    /// `status`, `state`, `path`, `reason` or `output.FIELD`.
    pub field: String,
    /// What the file expects, as JSON text.
    pub expected: String,
    /// What the run came to, as JSON text (or a sentence when there is nothing).
    pub actual: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    status: Spanned<String>,
    state: Option<Spanned<String>>,
    path: Option<Spanned<Vec<String>>>,
    reason: Option<Spanned<String>>,
    #[serde(default)]
    output: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
}

/// The statuses a run can end with, as an expectation names them.
const ENDINGS: [Status; 3] = [Status::Completed, Status::AwaitingReview, Status::Failed];

impl Expectation {
    /// Reads and checks an expectation file.
    ///
    /// # Errors
    /// [`ExpectError`] naming the file, line, column and field.
    pub fn read(file: &Path) -> Result<Expectation, ExpectError> {
        let text = warden::read_file_to_string(file).map_err(|e| ExpectError {
            file: file.to_path_buf(),
            line: 1,
            column: 1,
            message: format!("cannot read the expectation file: {e}"),
        })?;
        Expectation::parse(file, &text)
    }

    /// Parses the text of the expectation file `file`.
    ///
    /// # Errors
    /// [`ExpectError`] naming the file, line, column and field.
    pub fn parse(file: &Path, text: &str) -> Result<Expectation, ExpectError> {
        let error = |offset: usize, message: String| {
            let (line, column) = place(text, offset);
            ExpectError {
                file: file.to_path_buf(),
                line,
                column,
                message,
            }
        };
        let at = |offset: usize| place(text, offset).0;
        let raw: Raw = toml::from_str(text).map_err(|e| {
            error(
                e.span().map_or(0, |s| s.start),
                e.message().trim().to_string(),
            )
        })?;
        let status_text = raw.status.get_ref();
        let status = ENDINGS
            .into_iter()
            .find(|s| s.as_str() == status_text)
            .ok_or_else(|| {
                error(
                    raw.status.span().start,
                    format!(
                        "status: {status_text:?} is not how a run ends; expected completed, awaiting_review or failed"
                    ),
                )
            })?;
        // Checked after the status, so that a wrong status is named even when the state is
        // missing too.
        let Some(state) = raw.state.as_ref() else {
            return Err(error(
                0,
                "state: missing; name the state the run must end in (state = \"approved\")".into(),
            ));
        };
        if state.get_ref().is_empty() {
            return Err(error(state.span().start, "state: empty".into()));
        }
        if status != Status::Completed
            && let Some((key, _)) = raw.output.iter().next()
        {
            return Err(error(
                key.span().start,
                format!(
                    "output.{}: only a completed run has an output, and this file expects status {status}",
                    key.get_ref()
                ),
            ));
        }
        let mut output = Vec::new();
        for (key, value) in &raw.output {
            let name = key.get_ref();
            // A pointer's `~` escapes `~` (`~0`) or `/` (`~1`), nothing else (RFC 6901).
            let bad_escape = name.starts_with('/')
                && name
                    .split('~')
                    .skip(1)
                    .any(|after| !after.starts_with(['0', '1']));
            if bad_escape {
                return Err(error(
                    key.span().start,
                    format!(
                        "output.{name:?}: not a JSON pointer: `~` must be followed by 0 (for `~`) or 1 (for `/`)"
                    ),
                ));
            }
            if name.is_empty() || (name.contains('/') && !name.starts_with('/')) {
                return Err(error(
                    key.span().start,
                    format!(
                        "output.{name:?}: name a top-level field (`decision`) or give a JSON pointer (`\"/reasons/0\"`)"
                    ),
                ));
            }
            let matcher = matcher(value.get_ref()).map_err(|problem| {
                error(value.span().start, format!("output.{name}: {problem}"))
            })?;
            output.push((
                At {
                    value: name.clone(),
                    line: at(key.span().start),
                },
                matcher,
            ));
        }
        output.sort_by_key(|(key, _)| key.line);
        Ok(Expectation {
            file: file.to_path_buf(),
            status: At {
                value: status,
                line: at(raw.status.span().start),
            },
            state: At {
                line: at(state.span().start),
                value: state.get_ref().clone(),
            },
            path: raw.path.map(|p| At {
                line: at(p.span().start),
                value: p.into_inner(),
            }),
            reason: raw.reason.map(|r| At {
                line: at(r.span().start),
                value: r.into_inner(),
            }),
            output,
        })
    }

    /// Every expectation `report` does not meet, in the order of the file.
    pub fn compare(&self, report: &RunReport) -> Vec<Difference> {
        let outcome = &report.outcome;
        let mut differences = Vec::new();
        let mut differ = |line: usize, field: &str, expected: String, actual: String| {
            differences.push(Difference {
                line,
                field: field.to_string(),
                expected,
                actual,
            });
        };
        if self.status.value != outcome.status {
            differ(
                self.status.line,
                "status",
                quoted(self.status.value.as_str()),
                quoted(outcome.status.as_str()),
            );
        }
        if self.state.value != outcome.state {
            differ(
                self.state.line,
                "state",
                quoted(&self.state.value),
                quoted(&outcome.state),
            );
        }
        if let Some(path) = &self.path
            && path.value != report.path
        {
            differ(
                path.line,
                "path",
                json_text(&path.value),
                json_text(&report.path),
            );
        }
        if let Some(reason) = &self.reason {
            let actual = outcome.reason.as_ref().map(ToString::to_string);
            if !actual.as_deref().is_some_and(|a| a.contains(&reason.value)) {
                differ(
                    reason.line,
                    "reason",
                    format!("a reason containing {}", quoted(&reason.value)),
                    actual.map_or_else(|| "no failure reason".to_string(), |a| quoted(&a)),
                );
            }
        }
        if self.output.is_empty() {
            return differences;
        }
        let output = outcome
            .output
            .as_deref()
            .map(|text| serde_json::from_str::<Value>(text).unwrap_or(Value::String(text.into())));
        for (key, matcher) in &self.output {
            let field = format!("output.{}", key.value);
            let pointer = pointer(&key.value);
            let actual = output.as_ref().map(|o| o.pointer(&pointer));
            let (met, actual) = match actual {
                None => (false, "no output (the run did not finish)".to_string()),
                Some(None) => (false, format!("no {pointer} in the output")),
                Some(Some(value)) => (matcher.matches(value), json_text(value)),
            };
            if !met {
                differ(key.line, &field, matcher.to_string(), actual);
            }
        }
        differences
    }
}

impl Matcher {
    fn matches(&self, actual: &Value) -> bool {
        match self {
            Matcher::Equals(expected) => same(expected, actual),
            Matcher::Approx { approx, tolerance } => actual
                .as_f64()
                .is_some_and(|a| (a - approx).abs() <= *tolerance),
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Matcher::Equals(value) => f.write_str(&json_text(value)),
            Matcher::Approx { approx, tolerance } => write!(f, "{approx} ± {tolerance}"),
        }
    }
}

/// The matcher an `[output]` value stands for.
fn matcher(value: &toml::Value) -> Result<Matcher, String> {
    if let toml::Value::Table(table) = value
        && table.contains_key("approx")
    {
        let number = |key: &str| match table.get(key) {
            Some(toml::Value::Float(x)) => Some(*x),
            Some(toml::Value::Integer(x)) => Some(*x as f64),
            _ => None,
        };
        let extra: Vec<&String> = table
            .keys()
            .filter(|k| *k != "approx" && *k != "tolerance")
            .collect();
        return match (number("approx"), number("tolerance")) {
            _ if !extra.is_empty() => Err(format!(
                "{{ approx, tolerance }} takes nothing else, found {extra:?}"
            )),
            (Some(approx), Some(tolerance))
                if approx.is_finite() && tolerance.is_finite() && tolerance >= 0.0 =>
            {
                Ok(Matcher::Approx { approx, tolerance })
            }
            _ => Err(
                "write a number within a tolerance as { approx = 0.0445, tolerance = 0.0005 } (two finite numbers, tolerance >= 0)"
                    .into(),
            ),
        };
    }
    if has_datetime(value) {
        return Err("a TOML date or time is not a JSON value; quote it as a string".into());
    }
    serde_json::to_value(value)
        .map(Matcher::Equals)
        .map_err(|e| format!("not a JSON value: {e}"))
}

fn has_datetime(value: &toml::Value) -> bool {
    match value {
        toml::Value::Datetime(_) => true,
        toml::Value::Array(items) => items.iter().any(has_datetime),
        toml::Value::Table(table) => table.values().any(has_datetime),
        _ => false,
    }
}

/// Equal as JSON, with numbers compared by value: an expectation's `1` matches an output's
/// `1.0`.
fn same(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Number(e), Value::Number(a)) => match (e.as_i64(), a.as_i64()) {
            (Some(e), Some(a)) => e == a,
            _ => match (e.as_u64(), a.as_u64()) {
                (Some(e), Some(a)) => e == a,
                _ => e.as_f64() == a.as_f64(),
            },
        },
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(e, a)| same(e, a))
        }
        (Value::Object(e), Value::Object(a)) => {
            e.len() == a.len() && e.iter().all(|(k, e)| a.get(k).is_some_and(|a| same(e, a)))
        }
        _ => expected == actual,
    }
}

/// A field name as a JSON pointer: a pointer stays one, a top-level name is escaped.
fn pointer(name: &str) -> String {
    if name.starts_with('/') {
        name.to_string()
    } else {
        format!("/{}", name.replace('~', "~0"))
    }
}

fn quoted(text: &str) -> String {
    json_text(&text)
}

fn json_text<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// 1-based line and column of a byte offset.
fn place(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or("");
    (
        before.matches('\n').count() + 1,
        before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1,
    )
}

/// The expectation file recording what `report` came to, for an input that has none
/// (`warden test --write-missing`): status, state, path, the failure reason, and the
/// output's top-level strings, numbers and booleans.
pub fn record(input_name: &str, report: &RunReport) -> String {
    let outcome = &report.outcome;
    let mut text = format!(
        "# What `warden test` expects of {input_name}: recorded by `warden test --write-missing`\n\
         # from what the agent did. Read it before you keep it: it says what the agent did,\n\
         # not what it should do. Format: docs/authoring.md, \"Expectations\".\n\
         status = {}\nstate = {}\npath = [{}]\n",
        quoted(outcome.status.as_str()),
        quoted(&outcome.state),
        report
            .path
            .iter()
            .map(|s| quoted(s))
            .collect::<Vec<_>>()
            .join(", "),
    );
    if let Some(reason) = &outcome.reason {
        text.push_str(&format!("reason = {}\n", quoted(&reason.to_string())));
    }
    let output = outcome
        .output
        .as_deref()
        .and_then(|o| serde_json::from_str::<Value>(o).ok());
    if let Some(Value::Object(fields)) = output {
        let scalars: Vec<String> = fields
            .iter()
            .filter(|(_, v)| matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_)))
            .map(|(name, value)| format!("{} = {}", toml_key(name), toml_scalar(value)))
            .collect();
        if !scalars.is_empty() {
            text.push_str("\n[output]\n");
            for line in scalars {
                text.push_str(&line);
                text.push('\n');
            }
        }
    }
    text
}

/// A key as TOML writes it: bare when it can be, else quoted.
fn toml_key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare { name.to_string() } else { quoted(name) }
}

/// A JSON string, number or boolean written as TOML. serde_json writes strings with
/// escapes TOML's basic strings share, and numbers TOML reads back to the same value.
fn toml_scalar(value: &Value) -> String {
    match value {
        Value::Number(n) if n.is_f64() => {
            let text = n.to_string();
            if text.contains(['.', 'e', 'E']) {
                text
            } else {
                format!("{text}.0")
            }
        }
        other => json_text(other),
    }
}

#[cfg(test)]
mod tests;
