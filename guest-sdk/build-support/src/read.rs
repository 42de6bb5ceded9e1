//! Reads the states of a policy: `[policy] initial`, and the name, `terminal` and
//! `review` flags of each `[states.<name>]`, in the order the file declares them.
//!
//! Invariant: every state read has a variant name that is a Rust identifier, distinct
//! from every other state's and from the enum's own items; anything else is an [`Error`]
//! naming the file, the line and the state. Everything else in the policy is Warden's to
//! check when it loads the policy, and is not read here.

use std::path::Path;

use toml::de::{DeTable, DeValue};

use crate::Error;

/// The states of one policy, as the generated enum declares them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct States {
    /// `[policy] name`, if the file gives one.
    pub(crate) policy: Option<String>,
    /// Every state, in the order the file declares them.
    pub(crate) states: Vec<StateDecl>,
    /// The index in `states` of `[policy] initial`.
    pub(crate) initial: usize,
}

/// One `[states.<name>]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StateDecl {
    /// The name in the policy (and on the wire).
    pub(crate) name: String,
    /// Its variant of `State`.
    pub(crate) variant: String,
    /// The line of its name in the file, from 1.
    pub(crate) line: usize,
    pub(crate) terminal: bool,
    pub(crate) review: bool,
}

/// Names of the generated enum's own items, which no variant may take.
const RESERVED: &[&str] = &["ALL", "INITIAL", "Self"];

/// Reads the states of the policy `text`, read from `file` (named in errors). Returns
/// every problem found, not just the first.
pub(crate) fn read(text: &str, file: &Path) -> Result<States, Vec<Error>> {
    let root = DeTable::parse(text).map_err(|e| {
        let at = e.span().map_or(0, |span| span.start);
        let (line, column) = line_column(text, at);
        vec![Error::Toml {
            file: file.to_path_buf(),
            line,
            column,
            message: e.message().trim().to_string(),
        }]
    })?;
    let root = root.get_ref();
    let mut problems = Vec::new();
    let problem = |line: usize, message: String| Error::Policy {
        file: file.to_path_buf(),
        line,
        message,
    };

    let policy = match root.get("policy").map(|v| (v.get_ref(), v.span())) {
        Some((DeValue::Table(table), _)) => Some(table),
        Some((_, span)) => {
            let line = line_column(text, span.start).0;
            problems.push(problem(line, "`policy` must be a table".into()));
            None
        }
        None => {
            problems.push(problem(1, "no `[policy]` table".into()));
            None
        }
    };
    let name = policy
        .and_then(|p| p.get("name"))
        .and_then(|v| v.get_ref().as_str())
        .map(str::to_string);
    let initial = match policy.and_then(|p| p.get("initial")) {
        Some(value) => match value.get_ref().as_str() {
            Some(initial) => Some((initial.to_string(), line_column(text, value.span().start).0)),
            None => {
                let line = line_column(text, value.span().start).0;
                problems.push(problem(
                    line,
                    "`[policy] initial` must be a state name".into(),
                ));
                None
            }
        },
        None if policy.is_some() => {
            problems.push(problem(1, "`[policy] initial` is missing".into()));
            None
        }
        None => None,
    };

    let states = match root.get("states").map(|v| (v.get_ref(), v.span())) {
        Some((DeValue::Table(states), _)) => {
            let mut entries: Vec<_> = states.iter().collect();
            entries.sort_by_key(|(key, _)| key.span().start);
            entries
        }
        Some((_, span)) => {
            let line = line_column(text, span.start).0;
            problems.push(problem(line, "`states` must be a table of states".into()));
            Vec::new()
        }
        None => {
            problems.push(problem(
                1,
                "no `[states.<name>]` table: a policy declares at least one state".into(),
            ));
            Vec::new()
        }
    };

    let mut decls: Vec<StateDecl> = Vec::new();
    for (key, value) in states {
        let name = key.get_ref().to_string();
        let line = line_column(text, key.span().start).0;
        let Some(table) = value.get_ref().as_table() else {
            problems.push(problem(line, format!("state `{name}` must be a table")));
            continue;
        };
        let mut flag = |field: &str| match table.get(field) {
            None => false,
            Some(value) => value.get_ref().as_bool().unwrap_or_else(|| {
                let line = line_column(text, value.span().start).0;
                problems.push(problem(
                    line,
                    format!("state `{name}`: `{field}` must be true or false"),
                ));
                false
            }),
        };
        let terminal = flag("terminal");
        let review = flag("review");
        let variant = match variant_name(&name) {
            Ok(variant) => variant,
            Err(reason) => {
                problems.push(Error::InvalidName {
                    file: file.to_path_buf(),
                    line,
                    state: name,
                    reason,
                });
                continue;
            }
        };
        if let Some(other) = decls.iter().find(|d| d.variant == variant) {
            problems.push(Error::Collision {
                file: file.to_path_buf(),
                line,
                state: name,
                other: other.name.clone(),
                other_line: other.line,
                variant,
            });
            continue;
        }
        decls.push(StateDecl {
            name,
            variant,
            line,
            terminal,
            review,
        });
    }

    let initial = initial.and_then(|(initial, line)| {
        let index = decls.iter().position(|d| d.name == initial);
        if index.is_none() && problems.is_empty() {
            problems.push(problem(
                line,
                format!("`[policy] initial` is `{initial}`, which is not a declared state"),
            ));
        }
        index
    });
    match initial {
        Some(initial) if problems.is_empty() => Ok(States {
            policy: name,
            states: decls,
            initial,
        }),
        _ => Err(problems),
    }
}

/// The variant of the state `name`: each run of letters and digits between `_` or `-`
/// with its first letter in upper case (`bureau_check` -> `BureauCheck`). The reason it
/// cannot be one otherwise.
pub(crate) fn variant_name(name: &str) -> Result<String, String> {
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "{bad:?} is not allowed in a state name (letters, digits, `_` and `-`)"
        ));
    }
    let variant: String = name
        .split(['_', '-'])
        .flat_map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase())
                .into_iter()
                .chain(chars)
        })
        .collect();
    if !variant.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(if variant.is_empty() {
            "it has no letter or digit".to_string()
        } else {
            format!("the variant `{variant}` would not start with a letter")
        });
    }
    if RESERVED.contains(&variant.as_str()) {
        return Err(format!(
            "the variant `{variant}` is taken by `State::{variant}` itself"
        ));
    }
    Ok(variant)
}

/// The line and column (from 1, in characters) of byte `at` of `text`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        read(text, Path::new("policy.toml"))
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn snake_and_kebab_case_names_become_upper_camel_case_variants() {
        for (name, variant) in [
            ("intake", "Intake"),
            ("bureau_check", "BureauCheck"),
            ("manual-review", "ManualReview"),
            ("Approved", "Approved"),
            ("step_2", "Step2"),
            ("kyc_AML_check", "KycAMLCheck"),
            ("done_", "Done"),
            ("x", "X"),
        ] {
            assert_eq!(variant_name(name).as_deref(), Ok(variant), "{name}");
        }
    }

    #[test]
    fn names_that_are_no_identifier_are_refused_with_the_reason() {
        for (name, reason) in [
            ("bureau check", "' ' is not allowed"),
            ("prüfung", "'ü' is not allowed"),
            ("", "no letter or digit"),
            ("__", "no letter or digit"),
            ("2nd_look", "would not start with a letter"),
            ("_2nd", "would not start with a letter"),
            ("self", "`Self` is taken"),
            ("ALL", "`ALL` is taken"),
            ("INITIAL", "`INITIAL` is taken"),
        ] {
            let error = variant_name(name).unwrap_err();
            assert!(error.contains(reason), "{name:?}: {error}");
        }
    }

    #[test]
    fn states_are_read_in_the_order_of_the_file_with_their_flags_and_lines() {
        let text = "\
[policy]
name = \"triage\"
initial = \"intake\"

[states.intake]
transitions = [\"manual_review\", \"approved\"]

[states.manual_review]
review = true

[states.approved]
terminal = true

[states.manual_review.decisions.approved]
roles = [\"handler\"]
";
        let read = read(text, Path::new("policy.toml")).unwrap();
        assert_eq!(read.policy.as_deref(), Some("triage"));
        let got: Vec<_> = read
            .states
            .iter()
            .map(|s| {
                (
                    s.name.as_str(),
                    s.variant.as_str(),
                    s.line,
                    s.terminal,
                    s.review,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("intake", "Intake", 5, false, false),
                ("manual_review", "ManualReview", 8, false, true),
                ("approved", "Approved", 11, true, false),
            ]
        );
        assert_eq!(read.initial, 0);
    }

    #[test]
    fn colliding_and_invalid_names_are_each_named_with_file_and_line() {
        let text = "\
[policy]
initial = \"intake\"
[states.intake]
[states.bureau_check]
[states.bureau-check]
[states.\"in take\"]
[states.Intake]
";
        assert_eq!(
            problems(text),
            [
                "policy.toml:5: states `bureau-check` and `bureau_check` (line 4) would both be \
                 the variant `State::BureauCheck`: rename one in the policy",
                "policy.toml:6: state `in take` cannot be a variant of `State`: ' ' is not \
                 allowed in a state name (letters, digits, `_` and `-`)",
                "policy.toml:7: states `Intake` and `intake` (line 3) would both be the variant \
                 `State::Intake`: rename one in the policy",
            ]
        );
    }

    #[test]
    fn a_policy_without_what_the_enum_needs_is_refused_saying_what_is_missing() {
        assert_eq!(
            problems("[states.a]\n"),
            ["policy.toml:1: no `[policy]` table"]
        );
        assert_eq!(
            problems("[policy]\nname = \"p\"\n[states.a]\n"),
            ["policy.toml:1: `[policy] initial` is missing"]
        );
        assert_eq!(
            problems("[policy]\ninitial = \"a\"\n"),
            ["policy.toml:1: no `[states.<name>]` table: a policy declares at least one state"]
        );
        assert_eq!(
            problems("[policy]\ninitial = \"intkae\"\n[states.intake]\n"),
            ["policy.toml:2: `[policy] initial` is `intkae`, which is not a declared state"]
        );
        assert_eq!(
            problems("[policy]\ninitial = \"a\"\n[states.a]\nterminal = \"yes\"\n"),
            ["policy.toml:4: state `a`: `terminal` must be true or false"]
        );
        let toml = problems("[policy]\ninitial = \"a\"\n[states.a\n");
        assert_eq!(toml.len(), 1);
        assert!(toml[0].starts_with("policy.toml:3:"), "{toml:?}");
    }
}
