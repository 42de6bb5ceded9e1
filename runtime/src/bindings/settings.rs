//! The settings of the providers that are written in the bindings entry itself (an `http`
//! tool, a `chat` model): typed readers that report every problem at once, each at its
//! line with its field, as the rest of a bindings file is checked.
//!
//! Invariant: a setting that names a credential holds the *name* of an environment
//! variable, never its value ([`SecretRef`]); the value is read by the provider when the
//! bindings load and is never part of the bindings text, its digest or any message.

use std::ops::Range;

use serde_json::Value;
use toml::Spanned;
use toml::de::DeValue;

use super::decode::{Entry, closest, describe, number};
use super::load::Loader;

/// Every setting any provider takes; `docs/bindings.md` documents each.
pub(super) const FIELDS: &[&str] = &[
    "url",
    "method",
    "allow",
    "headers",
    "timeout_ms",
    "max_response_bytes",
    "retries",
    "effect",
    "base_url",
    "model",
    "api_key",
    "version",
    "labels",
    "system",
    "prompt",
    "temperature",
    "max_tokens",
    "logprobs",
    "top_logprobs",
    "response_format",
    "seed",
    "dir",
    "write",
    "max_read_bytes",
    "max_write_bytes",
    "card",
];

/// A credential as the bindings name it: an environment variable, and what to put before
/// its value (`"Bearer "`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SecretRef {
    /// The environment variable's name.
    pub env: String,
    /// Written before the value in the header.
    pub prefix: String,
    /// Where the reference is written.
    pub at: Range<usize>,
}

/// A header value: plain text from the bindings, or a credential from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum HeaderSetting {
    /// Written in the bindings.
    Plain(String),
    /// Read from the environment when the bindings load.
    Secret(SecretRef),
}

/// The settings of one entry as one provider reads them; problems are kept until
/// [`Settings::finish`] reports them through the loader.
pub(super) struct Settings<'e, 'i> {
    entry: &'e Entry<'i>,
    provider: &'static str,
    problems: Vec<(&'static str, Range<usize>, String)>,
}

impl<'e, 'i> Settings<'e, 'i> {
    /// The settings of `entry` for `provider`, which takes only `allowed`: any other
    /// setting written is a problem naming the provider.
    pub(super) fn new(entry: &'e Entry<'i>, provider: &'static str, allowed: &[&str]) -> Self {
        let mut settings = Settings {
            entry,
            provider,
            problems: Vec::new(),
        };
        for (name, _) in &entry.settings {
            if !allowed.contains(&name.get_ref().as_str()) {
                let hint = match closest(name.get_ref(), allowed) {
                    Some(near) => format!("; did you mean `{near}`?"),
                    None if allowed.is_empty() => {
                        " (it takes only `file` and, for a fixture, `key`: docs/bindings.md lists each provider's fields)".to_string()
                    }
                    None => format!(" (it takes {})", allowed.join(", ")),
                };
                settings.problem(
                    name.get_ref(),
                    name.span(),
                    format!("provider {provider:?} takes no `{}`{hint}", name.get_ref()),
                );
            }
        }
        settings
    }

    /// Records a problem with setting `field` at `at`.
    pub(super) fn problem(&mut self, field: &str, at: Range<usize>, problem: String) {
        let field = FIELDS.iter().find(|f| **f == field).copied().unwrap_or("");
        self.problems.push((field, at, problem));
    }

    /// Where the entry's header is written (for a missing setting).
    pub(super) fn header(&self) -> Range<usize> {
        self.entry.at.clone()
    }

    /// The value of setting `name`, if written.
    pub(super) fn get(&self, name: &str) -> Option<&'e Spanned<DeValue<'i>>> {
        self.entry
            .settings
            .iter()
            .find(|(n, _)| n.get_ref() == name)
            .map(|(_, v)| v)
    }

    /// Reports that `name` is missing, with how to write it.
    pub(super) fn missing(&mut self, name: &str, example: &str) {
        let at = self.header();
        self.problem(
            name,
            at,
            format!(
                "required field is missing for provider {:?}; add {name} = {example}",
                self.provider
            ),
        );
    }

    fn wrong_type(&mut self, name: &str, value: &Spanned<DeValue<'_>>, expected: &str) {
        self.problem(
            name,
            value.span(),
            format!("expected {expected}, found {}", describe(value.get_ref())),
        );
    }

    /// A string setting.
    pub(super) fn string(&mut self, name: &str) -> Option<Spanned<String>> {
        let value = self.get(name)?;
        match value.get_ref() {
            DeValue::String(text) => Some(Spanned::new(value.span(), text.to_string())),
            _ => {
                self.wrong_type(name, value, "a string in quotes");
                None
            }
        }
    }

    /// A required string setting.
    pub(super) fn required_string(&mut self, name: &str, example: &str) -> Option<Spanned<String>> {
        if self.get(name).is_none() {
            self.missing(name, example);
            return None;
        }
        self.string(name)
    }

    /// A whole number in `min..=max`, or `default` when not written.
    pub(super) fn integer(&mut self, name: &str, min: u64, max: u64, default: u64) -> u64 {
        let Some(value) = self.get(name) else {
            return default;
        };
        let parsed = match value.get_ref() {
            DeValue::Integer(n) => i64::from_str_radix(n.as_str(), n.radix()).ok(),
            _ => {
                self.wrong_type(name, value, "a whole number");
                return default;
            }
        };
        match parsed.and_then(|n| u64::try_from(n).ok()) {
            Some(n) if (min..=max).contains(&n) => n,
            _ => {
                self.problem(
                    name,
                    value.span(),
                    format!("must be a whole number from {min} to {max}"),
                );
                default
            }
        }
    }

    /// A finite number in `min..=max`, if written.
    pub(super) fn number(&mut self, name: &str, min: f64, max: f64) -> Option<f64> {
        let value = self.get(name)?;
        match number(value.get_ref()) {
            Some(n) if n.is_finite() && (min..=max).contains(&n) => Some(n),
            Some(_) => {
                self.problem(
                    name,
                    value.span(),
                    format!("must be a number from {min} to {max}"),
                );
                None
            }
            None => {
                self.wrong_type(name, value, "a number");
                None
            }
        }
    }

    /// A boolean, or `default` when not written.
    pub(super) fn boolean(&mut self, name: &str, default: bool) -> bool {
        let Some(value) = self.get(name) else {
            return default;
        };
        match value.get_ref() {
            DeValue::Boolean(b) => *b,
            _ => {
                self.wrong_type(name, value, "true or false");
                default
            }
        }
    }

    /// A list of strings, each with where it is written; `None` when not written.
    pub(super) fn strings(&mut self, name: &str) -> Option<Vec<Spanned<String>>> {
        let value = self.get(name)?;
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(name, value, "a list of strings, [\"...\", ...]");
            return None;
        };
        let mut list = Vec::new();
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(text) => list.push(Spanned::new(item.span(), text.to_string())),
                other => self.problem(
                    name,
                    item.span(),
                    format!("expected a string in quotes, found {}", describe(other)),
                ),
            }
        }
        Some(list)
    }

    /// A credential reference, `{ env = "NAME" }` (with an optional `prefix`).
    pub(super) fn secret(&mut self, name: &str) -> Option<SecretRef> {
        let value = self.get(name)?;
        self.secret_in(name, value)
    }

    fn secret_in(&mut self, name: &str, value: &Spanned<DeValue<'_>>) -> Option<SecretRef> {
        let DeValue::Table(table) = value.get_ref() else {
            self.problem(
                name,
                value.span(),
                format!(
                    "expected {{ env = \"VARIABLE\" }}, found {}: a credential is read from the environment, never written in the bindings",
                    describe(value.get_ref())
                ),
            );
            return None;
        };
        let mut env = None;
        let mut prefix = String::new();
        for (key, item) in table.iter() {
            match (key.get_ref().as_ref(), item.get_ref()) {
                ("env", DeValue::String(text)) => env = Some(text.to_string()),
                ("prefix", DeValue::String(text)) => prefix = text.to_string(),
                ("env" | "prefix", other) => self.problem(
                    name,
                    item.span(),
                    format!(
                        "`{}` must be a string in quotes, found {}",
                        key.get_ref(),
                        describe(other)
                    ),
                ),
                (other, _) => self.problem(
                    name,
                    key.span(),
                    format!("unknown field `{other}` in a credential; it has `env` and, optionally, `prefix`"),
                ),
            }
        }
        let Some(env) = env else {
            self.problem(
                name,
                value.span(),
                "a credential needs `env`, the name of the environment variable that holds it"
                    .into(),
            );
            return None;
        };
        if env.is_empty()
            || !env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || env.starts_with(|c: char| c.is_ascii_digit())
        {
            self.problem(
                name,
                value.span(),
                format!(
                    "{env:?} is not an environment variable name (letters, digits and `_`, not starting with a digit)"
                ),
            );
            return None;
        }
        Some(SecretRef {
            env,
            prefix,
            at: value.span(),
        })
    }

    /// A table of headers: each a plain string or a credential reference.
    pub(super) fn headers(&mut self, name: &str) -> Vec<(String, HeaderSetting)> {
        let Some(value) = self.get(name) else {
            return Vec::new();
        };
        let DeValue::Table(table) = value.get_ref() else {
            self.wrong_type(name, value, "a table of headers, { Name = \"value\" }");
            return Vec::new();
        };
        let mut headers = Vec::new();
        for (key, item) in table.iter() {
            let header = key.get_ref().to_string();
            let setting = match item.get_ref() {
                DeValue::String(text) => HeaderSetting::Plain(text.to_string()),
                DeValue::Table(_) => match self.secret_in(name, item) {
                    Some(secret) => HeaderSetting::Secret(secret),
                    None => continue,
                },
                other => {
                    self.problem(
                        name,
                        item.span(),
                        format!(
                            "header {header:?}: expected a string or {{ env = \"VARIABLE\" }}, found {}",
                            describe(other)
                        ),
                    );
                    continue;
                }
            };
            headers.push((header, setting));
        }
        headers
    }

    /// A JSON value: a TOML table or list converted, or a string holding JSON text.
    pub(super) fn json(&mut self, name: &str) -> Option<Spanned<Value>> {
        let value = self.get(name)?;
        let json = match value.get_ref() {
            DeValue::String(text) => match serde_json::from_str::<Value>(text) {
                Ok(json) => json,
                Err(e) => {
                    self.problem(name, value.span(), format!("not JSON: {e}"));
                    return None;
                }
            },
            other => to_json(other),
        };
        Some(Spanned::new(value.span(), json))
    }

    /// Reports every problem found through `loader`.
    pub(super) fn finish(self, loader: &mut Loader<'_>) -> bool {
        let clean = self.problems.is_empty();
        for (field, at, problem) in self.problems {
            loader.entry_error(self.entry, field, &at, problem);
        }
        clean
    }
}

/// A TOML value as JSON (a date as its text).
fn to_json(value: &DeValue<'_>) -> Value {
    match value {
        DeValue::String(text) => Value::String(text.to_string()),
        DeValue::Integer(_) | DeValue::Float(_) => match value {
            DeValue::Integer(n) => i64::from_str_radix(n.as_str(), n.radix())
                .map_or(Value::Null, |n| Value::Number(n.into())),
            _ => number(value)
                .and_then(serde_json::Number::from_f64)
                .map_or(Value::Null, Value::Number),
        },
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::String(d.to_string()),
        DeValue::Array(items) => Value::Array(items.iter().map(|i| to_json(i.get_ref())).collect()),
        DeValue::Table(table) => Value::Object(
            table
                .iter()
                .map(|(k, v)| (k.get_ref().to_string(), to_json(v.get_ref())))
                .collect(),
        ),
    }
}
