//! Reading the TOML of a bindings file or a model card: every field with its position,
//! and every problem of shape (a syntax error, an unknown or misspelt field, a missing
//! field, a value of the wrong type) reported at once with its line and field path.
//!
//! Walks toml's spanned document rather than deriving `Deserialize`, as the policy parser
//! does, so that a file with three mistakes gets three errors, not the first one.

use std::ops::Range;
use std::path::Path;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{BindingsError, line_column};

/// The fields of a `[tools.<name>]` or `[models.<name>]` entry.
pub(super) const ENTRY_FIELDS: &[&str] = &["provider", "file", "key"];

/// The providers whose settings are written in the entry itself, with no `file`.
pub(super) const FILELESS_PROVIDERS: &[&str] = &["http", "chat", "files"];

/// One `[tools.<name>]` or `[models.<name>]` table as written, with its positions.
#[derive(Debug)]
pub(super) struct Entry<'i> {
    /// `tools` or `models`.
    pub section: &'static str,
    /// The tool or model name.
    pub name: String,
    /// Where the name is written (the entry's header).
    pub at: Range<usize>,
    pub provider: Option<Spanned<String>>,
    pub file: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    /// The provider's own settings (`url`, `model`, ...; `super::settings` reads them),
    /// each with where its name is written.
    pub settings: Vec<(Spanned<String>, Spanned<DeValue<'i>>)>,
    /// The unknown fields written in it (already reported), to tell a misspelt field
    /// from a missing one.
    pub unknown: Vec<String>,
}

impl Entry<'_> {
    /// Whether an unknown field of the entry is a misspelling of `field`.
    pub(super) fn misspelt(&self, field: &str) -> bool {
        self.unknown.iter().any(|u| closest(u, &[field]).is_some())
    }
}

/// Problems found in one TOML file, each with its line, column and field path.
#[derive(Debug)]
pub(super) struct Problems<'a> {
    pub path: &'a Path,
    pub text: &'a str,
    pub list: Vec<BindingsError>,
}

impl<'a> Problems<'a> {
    pub(super) fn new(path: &'a Path, text: &'a str) -> Self {
        Problems {
            path,
            text,
            list: Vec::new(),
        }
    }

    /// A problem with field `field` (a dotted path) of the file, at byte `span`.
    pub(super) fn field(&mut self, span: &Range<usize>, field: impl Into<String>, problem: String) {
        let (line, column) = line_column(self.text, span.start);
        self.list.push(BindingsError::Field {
            path: self.path.to_path_buf(),
            line,
            column,
            field: field.into(),
            problem,
        });
    }

    /// A problem with field `field` of entry `section.name` of a bindings file.
    pub(super) fn entry(
        &mut self,
        section: &'static str,
        name: &str,
        field: &'static str,
        span: &Range<usize>,
        problem: String,
    ) {
        let (line, column) = line_column(self.text, span.start);
        self.list.push(BindingsError::Entry {
            path: self.path.to_path_buf(),
            line,
            column,
            section,
            name: name.to_string(),
            field,
            problem,
        });
    }
}

/// Parses `text`; every syntax error when it is not TOML (then nothing else is checked).
pub(super) fn parse<'i>(
    path: &Path,
    text: &'i str,
) -> Result<Spanned<DeTable<'i>>, Vec<BindingsError>> {
    let (document, errors) = DeTable::parse_recoverable(text);
    if errors.is_empty() {
        return Ok(document);
    }
    Err(errors
        .iter()
        .map(|error| {
            let (line, column) = error
                .span()
                .map_or((1, 1), |span| line_column(text, span.start));
            BindingsError::Syntax {
                path: path.to_path_buf(),
                line,
                column,
                message: error.message().trim_end().to_string(),
            }
        })
        .collect())
}

/// The entries of a bindings file, and every problem of shape in it.
pub(super) fn entries<'i>(document: &DeTable<'i>, problems: &mut Problems<'_>) -> Vec<Entry<'i>> {
    let mut entries = Vec::new();
    for (key, value) in document.iter() {
        let section = match key.get_ref().as_ref() {
            "tools" => "tools",
            "models" => "models",
            other => {
                problems.field(
                    &key.span(),
                    other,
                    unknown_field(
                        other,
                        &["tools", "models"],
                        "a bindings file has only [tools.<name>] and [models.<name>] tables",
                    ),
                );
                continue;
            }
        };
        let DeValue::Table(table) = value.get_ref() else {
            problems.field(
                &value.span(),
                section,
                format!(
                    "expected a table of {section}, found {}; write one [{section}.<name>] table per binding",
                    describe(value.get_ref())
                ),
            );
            continue;
        };
        for (name, value) in table.iter() {
            entries.push(entry(section, name, value, problems));
        }
    }
    entries
}

fn entry<'i>(
    section: &'static str,
    name: &Spanned<std::borrow::Cow<'_, str>>,
    value: &Spanned<DeValue<'i>>,
    problems: &mut Problems<'_>,
) -> Entry<'i> {
    let mut entry = Entry {
        section,
        name: name.get_ref().to_string(),
        at: name.span(),
        provider: None,
        file: None,
        key: None,
        settings: Vec::new(),
        unknown: Vec::new(),
    };
    let DeValue::Table(table) = value.get_ref() else {
        problems.entry(
            section,
            &entry.name,
            "",
            &value.span(),
            format!(
                "expected a table with `provider` and `file`, found {}; write [{section}.{}] and its fields on the lines below",
                describe(value.get_ref()),
                entry.name
            ),
        );
        return entry;
    };
    for (key, value) in table.iter() {
        let (field, slot): (&'static str, _) = match key.get_ref().as_ref() {
            "provider" => ("provider", &mut entry.provider),
            "file" => ("file", &mut entry.file),
            "key" => ("key", &mut entry.key),
            other if super::settings::FIELDS.contains(&other) => {
                entry
                    .settings
                    .push((Spanned::new(key.span(), other.to_string()), value.clone()));
                continue;
            }
            other => {
                entry.unknown.push(other.to_string());
                let allowed: Vec<&str> = ENTRY_FIELDS
                    .iter()
                    .chain(super::settings::FIELDS)
                    .copied()
                    .collect();
                problems.field(
                    &key.span(),
                    format!("{section}.{}.{other}", entry.name),
                    unknown_field(
                        other,
                        &allowed,
                        "a binding has `provider`, `file` and, for a fixture, `key`; an http tool or a chat model has the fields docs/bindings.md lists",
                    ),
                );
                continue;
            }
        };
        match value.get_ref() {
            DeValue::String(text) => *slot = Some(Spanned::new(value.span(), text.to_string())),
            other => problems.entry(
                section,
                &entry.name,
                field,
                &value.span(),
                format!("expected a string in quotes, found {}", describe(other)),
            ),
        }
    }
    let wrote = |field: &str| table.get(field).is_some();
    // A misspelt field was reported as such; saying that the right one is missing too
    // would report one mistake twice.
    let misspelt = |field: &str| entry.misspelt(field);
    let providers = if section == "tools" {
        "\"fixture\", \"ledger\", \"http\" or \"files\""
    } else {
        "\"scorecard\", \"chat\" or \"onnx\""
    };
    let fileless = entry
        .provider
        .as_ref()
        .is_some_and(|p| FILELESS_PROVIDERS.contains(&p.get_ref().as_str()));
    if !wrote("provider") && !misspelt("provider") {
        problems.entry(
            section,
            &entry.name,
            "provider",
            &entry.at,
            format!("required field is missing; add provider = {providers}"),
        );
    }
    if !wrote("file") && !misspelt("file") && !fileless {
        problems.entry(
            section,
            &entry.name,
            "file",
            &entry.at,
            "required field is missing; add file = \"...\", a path relative to the bindings file's directory".to_string(),
        );
    }
    entry
}

/// The message for an unknown field: what is allowed, and the likely intended one.
pub(super) fn unknown_field(name: &str, allowed: &[&str], what: &str) -> String {
    match closest(name, allowed) {
        Some(near) => format!("unknown field `{name}`; did you mean `{near}`? ({what})"),
        None => format!(
            "unknown field `{name}`; remove it or correct its spelling (allowed here: {})",
            allowed.join(", ")
        ),
    }
}

/// The candidate within two edits of `name` (case-insensitive), if one is.
pub(crate) fn closest<'c>(name: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let name = name.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (edit_distance(&name, &c.to_ascii_lowercase()), *c))
        .filter(|(distance, c)| *distance <= 2 && *distance < c.len())
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// Levenshtein distance, with a transposition counted as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![(0..=b.len()).collect::<Vec<usize>>()];
    for i in 1..=a.len() {
        let mut row = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            row[j] = (rows[i - 1][j] + 1)
                .min(row[j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                row[j] = row[j].min(rows[i - 2][j - 2] + 1);
            }
        }
        rows.push(row);
    }
    rows[a.len()][b.len()]
}

/// A TOML value's kind, for "expected ..., found ..." messages.
pub(super) fn describe(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "a whole number",
        DeValue::Float(_) => "a decimal number",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "a list",
        DeValue::Table(_) => "a table",
    }
}

/// A decimal or whole number.
pub(super) fn number(value: &DeValue<'_>) -> Option<f64> {
    match value {
        DeValue::Float(number) => number.as_str().parse::<f64>().ok(),
        DeValue::Integer(number) => i64::from_str_radix(number.as_str(), number.radix())
            .ok()
            .map(|n| n as f64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_are_suggested_and_far_ones_are_not() {
        assert_eq!(closest("kye", ENTRY_FIELDS), Some("key"));
        assert_eq!(closest("Provder", ENTRY_FIELDS), Some("provider"));
        assert_eq!(closest("files", ENTRY_FIELDS), Some("file"));
        assert_eq!(closest("timeout", ENTRY_FIELDS), None);
        assert_eq!(closest("x", &["k"]), None);
    }
}
