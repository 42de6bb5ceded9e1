//! The input against the policy's input contract: every violation a run would be refused
//! for before its first step, each at its line in the input file. (The schema itself is
//! checked with the policy: a keyword Warden does not enforce is a policy diagnostic.)

use std::path::Path;

use serde_json::Value;

use super::{CheckKind, Finding, Severity, display};
use crate::input_contract::positions;
use crate::policy::{OutputConstraint, Policy};

/// The violations of `input` (read from `path`, whose text is `text`), all of them.
pub(super) fn check(policy: &Policy, input: &Value, text: &str, path: &Path) -> Vec<Finding> {
    let Some(contract) = policy.input_contract.as_ref() else {
        return Vec::new();
    };
    let Err(rejection) = contract.check(input) else {
        return Vec::new();
    };
    let written = positions(text);
    let mut findings: Vec<Finding> = rejection
        .violations
        .iter()
        .map(|violation| {
            let (line, column) = line_column(text, written.offset(&violation.pointer));
            Finding {
                severity: Severity::Error,
                kind: CheckKind::InputContract,
                file: display(path),
                line,
                column,
                field: violation.pointer.clone(),
                message: format!(
                    "{}: {}; a run on this input is refused before its first step",
                    violation.keyword, violation.message
                ),
            }
        })
        .collect();
    let shown = rejection.violations.len() as u64;
    let more = u64::from(rejection.total).saturating_sub(shown);
    if more > 0 {
        findings.push(Finding {
            severity: Severity::Error,
            kind: CheckKind::InputContract,
            file: display(path),
            line: 0,
            column: 0,
            field: String::new(),
            message: format!("and {more} more violations of the input contract"),
        });
    }
    findings
}

/// The output bounds of the policy's terminal states that cannot be computed for `input`
/// (read from `path`), or whose least is above their most for it: a run on this input
/// could not finish in that state, its output would be denied whatever it held.
pub(super) fn bounds(policy: &Policy, input: &Value, path: &Path) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (state, rules) in policy.states.iter().map(|(name, s)| (name, &s.output)) {
        for (field, rule) in rules {
            let OutputConstraint::Number { min, max } = rule else {
                continue;
            };
            let computed = |bound: &Option<crate::policy::Bound>| {
                bound.as_ref().map(|b| (b.to_string(), b.value(input)))
            };
            let (low, high) = (computed(min), computed(max));
            let mut say = |key: &str, message: String| {
                findings.push(Finding {
                    severity: Severity::Warning,
                    kind: CheckKind::Input,
                    file: display(path),
                    line: 0,
                    column: 0,
                    field: format!("states.{state}.output.{field}.{key}"),
                    message: format!(
                        "{message}: a run on this input could not finish in `{state}` (its output would be denied whatever `{field}` held)"
                    ),
                });
            };
            for (key, bound) in [("min", &low), ("max", &high)] {
                if let Some((text, Err(why))) = bound {
                    say(key, format!("`{text}` {}", why.describe(true)));
                }
            }
            if let (Some((_, Ok(l))), Some((_, Ok(h)))) = (&low, &high)
                && l > h
            {
                say(
                    "max",
                    format!("for this input the least, {l}, is above the most, {h}"),
                );
            }
        }
    }
    findings
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}
