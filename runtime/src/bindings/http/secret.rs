//! Credentials of HTTP providers: read from the environment when the bindings load, sent
//! in a header, and kept out of everything Warden writes.
//!
//! Invariant: a [`Secret`]'s value has no `Display`, no `Serialize`, and a `Debug` that
//! prints nothing of it; it is never part of a message, and every text an HTTP provider
//! returns (a response body, an error) passes [`Headers::redact`] first, so even a server
//! that echoes the credential back cannot put it in the journal.

use std::fmt;

use crate::bindings::settings::{HeaderSetting, SecretRef};

/// A credential's value. Only [`Headers::pairs`] reads it, to send it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Headers that only the environment may give (a credential written in a bindings file
/// is a credential in a repository).
const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "api-key",
];

/// Headers Warden writes itself.
const WARDEN_HEADERS: &[&str] = &[
    "idempotency-key",
    "content-type",
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
];

/// The shortest secret that is redacted from text (a shorter one would garble it).
const REDACT_MIN: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Plain(String),
    Secret { prefix: String, secret: Secret },
}

/// The headers a provider sends with every request, credentials resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Headers {
    list: Vec<(String, Value)>,
}

impl Headers {
    /// Resolves `settings`, reading each credential with `env`; every problem is a
    /// sentence that names the header and the variable, never a value.
    pub(crate) fn resolve(
        settings: Vec<(String, HeaderSetting)>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Headers, Vec<String>> {
        let mut headers = Headers::default();
        let mut problems = Vec::new();
        for (name, setting) in settings {
            let lower = name.to_ascii_lowercase();
            if !is_token(&name) {
                problems.push(format!("{name:?} is not a header name"));
                continue;
            }
            if WARDEN_HEADERS.contains(&lower.as_str()) {
                problems.push(format!(
                    "header {name:?} is written by Warden itself; remove it"
                ));
                continue;
            }
            let value = match setting {
                HeaderSetting::Plain(_) if CREDENTIAL_HEADERS.contains(&lower.as_str()) => {
                    problems.push(format!(
                        "header {name:?} carries a credential: read it from the environment, {name} = {{ env = \"VARIABLE\" }}, never write it in the bindings"
                    ));
                    continue;
                }
                HeaderSetting::Plain(text) if !is_value(&text) => {
                    problems.push(format!(
                        "header {name:?}: a value may not hold a line break or a control character"
                    ));
                    continue;
                }
                HeaderSetting::Plain(text) => Value::Plain(text),
                HeaderSetting::Secret(reference) => match secret(&reference, env) {
                    Ok(secret) => Value::Secret {
                        prefix: reference.prefix,
                        secret,
                    },
                    Err(problem) => {
                        problems.push(format!("header {name:?}: {problem}"));
                        continue;
                    }
                },
            };
            headers.list.push((name, value));
        }
        if problems.is_empty() {
            Ok(headers)
        } else {
            Err(problems)
        }
    }

    /// Adds a credential header (`Authorization: Bearer <key>` of a chat model).
    pub(crate) fn add_secret(&mut self, name: &str, prefix: &str, secret: Secret) {
        self.list.push((
            name.to_string(),
            Value::Secret {
                prefix: prefix.to_string(),
                secret,
            },
        ));
    }

    /// Whether any header carries a credential.
    pub(crate) fn has_secret(&self) -> bool {
        self.list
            .iter()
            .any(|(_, value)| matches!(value, Value::Secret { .. }))
    }

    /// The names of the headers that carry a credential.
    pub(crate) fn secret_names(&self) -> Vec<&str> {
        self.list
            .iter()
            .filter(|(name, value)| {
                matches!(value, Value::Secret { .. })
                    || CREDENTIAL_HEADERS.contains(&name.to_ascii_lowercase().as_str())
            })
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// Every header as it is sent, credentials included: for the request only.
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (&str, String)> {
        self.list.iter().map(|(name, value)| {
            let text = match value {
                Value::Plain(text) => text.clone(),
                Value::Secret { prefix, secret } => format!("{prefix}{}", secret.0),
            };
            (name.as_str(), text)
        })
    }

    /// `text` with every credential's value replaced by `[redacted]`.
    pub(crate) fn redact(&self, text: &str) -> String {
        let mut text = text.to_string();
        for (_, value) in &self.list {
            if let Value::Secret { secret, .. } = value
                && secret.0.len() >= REDACT_MIN
                && text.contains(&secret.0)
            {
                text = text.replace(&secret.0, "[redacted]");
            }
        }
        text
    }
}

/// Reads the credential `reference` names.
impl Headers {
    /// [`Headers::redact`], and for a JSON text also every string in it, decoded: a server
    /// that echoes the credential with JSON escapes (`\/`, `\u0061`) writes it in other
    /// bytes, which the agent would read back whole. Such a text is answered re-written,
    /// its strings redacted; any other text is answered as it came.
    pub(crate) fn redact_body(&self, text: &str) -> String {
        let text = self.redact(text);
        if !self.has_secret() {
            return text;
        }
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(mut value) => {
                if self.redact_value(&mut value) {
                    value.to_string()
                } else {
                    text
                }
            }
            Err(_) => text,
        }
    }

    /// Redacts every string (and key) of `value`; whether anything changed.
    fn redact_value(&self, value: &mut serde_json::Value) -> bool {
        use serde_json::Value as Json;
        match value {
            Json::String(text) => {
                let redacted = self.redact(text);
                let changed = redacted != *text;
                *text = redacted;
                changed
            }
            Json::Array(items) => items
                .iter_mut()
                .fold(false, |changed, item| self.redact_value(item) | changed),
            Json::Object(map) => {
                let mut changed = false;
                let entries = std::mem::take(map);
                for (key, mut item) in entries {
                    changed |= self.redact_value(&mut item);
                    let redacted = self.redact(&key);
                    changed |= redacted != key;
                    map.insert(redacted, item);
                }
                changed
            }
            _ => false,
        }
    }
}

pub(crate) fn secret(
    reference: &SecretRef,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Secret, String> {
    let name = &reference.env;
    match env(name) {
        None => Err(format!(
            "environment variable {name} is not set (or is not UTF-8); set it in the environment of the warden process, never in the bindings"
        )),
        Some(value) if value.is_empty() => Err(format!("environment variable {name} is empty")),
        Some(value) if !is_value(&value) || !is_value(&reference.prefix) => Err(format!(
            "environment variable {name} holds a line break or a control character, which no header may"
        )),
        Some(value) => Ok(Secret(value)),
    }
}

/// The process environment, as providers read it.
pub(crate) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_value(text: &str) -> bool {
    !text.chars().any(|c| c.is_control() && c != '\t')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "s3cr3t-value".to_string())
    }

    fn secret_ref(env: &str) -> HeaderSetting {
        HeaderSetting::Secret(SecretRef {
            env: env.into(),
            prefix: "Bearer ".into(),
            at: 0..0,
        })
    }

    #[test]
    fn credentials_come_from_the_environment_and_never_show() {
        let headers = Headers::resolve(
            vec![
                ("Authorization".into(), secret_ref("TOKEN")),
                ("Accept-Language".into(), HeaderSetting::Plain("en".into())),
            ],
            &env,
        )
        .expect("resolve");
        assert!(headers.has_secret());
        let sent: Vec<(&str, String)> = headers.pairs().collect();
        assert_eq!(
            sent[0],
            ("Authorization", "Bearer s3cr3t-value".to_string())
        );
        assert!(!format!("{headers:?}").contains("s3cr3t"));
        assert_eq!(
            headers.redact("echo: Bearer s3cr3t-value!"),
            "echo: Bearer [redacted]!"
        );
        // Echoed with JSON escapes, the credential is other bytes: its strings are read.
        for echoed in [
            r#"{"echo":"s3cr3t\u002dvalue","n":1}"#,
            r#"{"echo":["x",{"s3cr3t\u002d\u0076alue":"\u0073\u0033cr3t-value"}]}"#,
        ] {
            let redacted = headers.redact_body(echoed);
            let decoded: serde_json::Value = serde_json::from_str(&redacted).expect("JSON");
            assert!(!decoded.to_string().contains("s3cr3t"), "{redacted}");
            assert!(redacted.contains("[redacted]"), "{redacted}");
        }
        assert_eq!(headers.redact_body(r#"{"a": 1}"#), r#"{"a": 1}"#);
    }

    #[test]
    fn a_missing_variable_a_plain_credential_and_a_warden_header_are_refused() {
        let problems = Headers::resolve(
            vec![
                ("Authorization".into(), secret_ref("MISSING")),
                ("X-Api-Key".into(), HeaderSetting::Plain("abc".into())),
                ("Idempotency-Key".into(), HeaderSetting::Plain("k".into())),
                ("Bad Name".into(), HeaderSetting::Plain("v".into())),
            ],
            &env,
        )
        .expect_err("refused");
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("MISSING is not set"), "{problems:?}");
        assert!(problems[1].contains("from the environment"), "{problems:?}");
        assert!(problems[2].contains("written by Warden"), "{problems:?}");
    }
}
