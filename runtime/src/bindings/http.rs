//! The `http` tool provider: a JSON-over-HTTP endpoint, behind an allowlist.
//!
//! Upholds invariant 4 for tools that act on the world: an effectful tool (`effect =
//! true`) sends `Idempotency-Key: <run_id>/<call_seq>`, the key the ledger uses, so a
//! step re-run after a crash (`warden resume`) or a retried attempt repeats the same
//! request with the same key, and the server applies it once. And the promises every
//! provider keeps: nothing is sent outside the allowlist; every attempt is bounded by
//! `timeout_ms` and by what remains of the step's wall-clock budget; a response is cut
//! at `max_response_bytes`; credentials come from the environment and never reach an
//! answer or an error ([`secret`]). Every failure is an answer the agent receives and the
//! journal records (a [`CallError`] naming the tool, the request and the cause), never a
//! host error.
//!
//! ```toml
//! [tools.credit_bureau]
//! provider = "http"
//! url = "https://bureau.example/v1/report"
//! method = "POST"                               # arguments as the JSON body (GET: query)
//! allow = ["https://bureau.example:443/v1/"]    # scheme, host, port, path prefix
//! headers = { Authorization = { env = "BUREAU_TOKEN", prefix = "Bearer " } }
//! timeout_ms = 5000
//! max_response_bytes = 262144
//! retries = 1
//! effect = false
//! ```

pub(crate) mod endpoint;
pub(crate) mod secret;
pub(crate) mod transport;

use std::time::{Duration, Instant};

use serde_json::Value;
use warden_guest::{CallError, CallErrorKind};

use super::settings::Settings;
use super::{IdempotencyKey, call_error};
use endpoint::{AllowRule, Allowlist, Url};
use secret::Headers;
use transport::{Exchange, Failed, Method, Reply, Transport};

/// The settings of an `http` tool.
pub(super) const FIELDS: &[&str] = &[
    "url",
    "method",
    "allow",
    "headers",
    "timeout_ms",
    "max_response_bytes",
    "retries",
    "effect",
];

/// Default `timeout_ms`.
const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Default `max_response_bytes`: 1 MiB.
const DEFAULT_MAX_RESPONSE_BYTES: u64 = 1 << 20;
/// The most of a failed response's body quoted in its error.
const EXCERPT_CHARS: usize = 200;

/// A JSON tool at one URL.
#[derive(Debug)]
pub(super) struct HttpTool {
    name: String,
    method: Method,
    url: Url,
    allow: Allowlist,
    headers: Headers,
    timeout: Duration,
    max_response_bytes: u64,
    retries: u32,
    effect: bool,
    transport: Transport,
}

/// Reads the allowlist of `settings`, each entry checked; `None` after a problem.
pub(super) fn allowlist(settings: &mut Settings<'_, '_>, required: bool) -> Option<Allowlist> {
    let Some(items) = settings.strings("allow") else {
        if required {
            settings.missing(
                "allow",
                "[\"https://host:443/path/\"], where this tool may send requests",
            );
        }
        return None;
    };
    let mut rules = Vec::new();
    let mut clean = true;
    for item in items {
        match AllowRule::parse(item.get_ref()) {
            Ok(rule) => rules.push(rule),
            Err(problem) => {
                clean = false;
                settings.problem(
                    "allow",
                    item.span(),
                    format!("{:?}: {problem}", item.get_ref()),
                );
            }
        }
    }
    if rules.is_empty() && clean {
        let at = settings
            .get("allow")
            .map_or_else(|| settings.header(), |v| v.span());
        settings.problem(
            "allow",
            at,
            "the allowlist is empty: name where requests may go".into(),
        );
        return None;
    }
    clean.then(|| Allowlist::new(rules))
}

/// Reads `headers` of `settings`, credentials from `env`; problems at the field.
pub(super) fn headers(
    settings: &mut Settings<'_, '_>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Headers> {
    let written = settings.headers("headers");
    match Headers::resolve(written, env) {
        Ok(headers) => Some(headers),
        Err(problems) => {
            let at = settings
                .get("headers")
                .map_or_else(|| settings.header(), |v| v.span());
            for problem in problems {
                settings.problem("headers", at.clone(), problem);
            }
            None
        }
    }
}

/// Refuses credentials sent in the clear to another machine.
pub(super) fn no_plain_secrets(
    settings: &mut Settings<'_, '_>,
    headers: &Headers,
    allow: &Allowlist,
) {
    if let (true, Some(rule)) = (headers.has_secret(), allow.plain_remote()) {
        let at = settings
            .get("allow")
            .map_or_else(|| settings.header(), |v| v.span());
        settings.problem(
            "allow",
            at,
            format!("{rule} is plain http to another machine, and this binding sends a credential: use https (plain http is for servers on this machine)"),
        );
    }
}

impl HttpTool {
    /// Reads an `http` tool's settings; `None` after a problem (kept in `settings`).
    pub(super) fn load(
        name: &str,
        settings: &mut Settings<'_, '_>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<HttpTool> {
        let url = settings.required_string("url", "\"https://host/path\"");
        let url = url.and_then(|url| match Url::parse(url.get_ref()) {
            Ok(parsed) => Some((parsed, url.span())),
            Err(problem) => {
                settings.problem("url", url.span(), problem);
                None
            }
        });
        let method = match settings.string("method") {
            None => Some(Method::Post),
            Some(text) => {
                let method = Method::parse(&text.get_ref().to_ascii_uppercase());
                if method.is_none() {
                    settings.problem(
                        "method",
                        text.span(),
                        format!(
                            "{:?} is not GET, POST, PUT, PATCH or DELETE",
                            text.get_ref()
                        ),
                    );
                }
                method
            }
        };
        let allow = allowlist(settings, true);
        let headers = headers(settings, env);
        let timeout_ms = settings.integer("timeout_ms", 1, 600_000, DEFAULT_TIMEOUT_MS);
        let max_response_bytes = settings.integer(
            "max_response_bytes",
            1,
            64 << 20,
            DEFAULT_MAX_RESPONSE_BYTES,
        );
        let retries = settings.integer("retries", 0, 5, 0) as u32;
        let effect = settings.boolean("effect", false);
        let ((url, url_at), method, allow, headers) = (url?, method?, allow?, headers?);
        if let Err(problem) = allow.check(&url) {
            settings.problem(
                "url",
                url_at,
                format!("{problem}: add it to `allow`, or correct the url"),
            );
            return None;
        }
        no_plain_secrets(settings, &headers, &allow);
        Some(HttpTool {
            name: name.to_string(),
            method,
            url,
            allow,
            headers,
            timeout: Duration::from_millis(timeout_ms),
            max_response_bytes,
            retries,
            effect,
            transport: Transport::new(),
        })
    }

    /// Whether the tool acts on the world (`effect = true`).
    pub(super) fn is_effect(&self) -> bool {
        self.effect
    }

    /// Sends the arguments; the response's JSON, or why there is none.
    pub(super) fn call(
        &self,
        args_json: &str,
        key: &IdempotencyKey,
        deadline: Option<Instant>,
    ) -> Result<String, CallError> {
        let args: Value = serde_json::from_str(args_json).map_err(|e| {
            self.error(
                CallErrorKind::InvalidArguments,
                format!("arguments are not JSON: {e}"),
            )
        })?;
        let url = if self.method.has_body() {
            self.url.clone()
        } else {
            let query = query(&args)
                .map_err(|problem| self.error(CallErrorKind::InvalidArguments, problem))?;
            self.url.with_query(&query)
        };
        let mut headers: Vec<(&str, String)> = vec![("Accept", "application/json".into())];
        if self.method.has_body() {
            headers.push(("Content-Type", "application/json".into()));
        }
        if self.effect {
            headers.push(("Idempotency-Key", key.to_string()));
        }
        headers.extend(self.headers.pairs());
        let exchange = Exchange {
            method: self.method,
            url: url.clone(),
            headers,
            credentials: self.headers.secret_names(),
            body: self.method.has_body().then_some(args_json.as_bytes()),
            allow: &self.allow,
            timeout: self.timeout,
            deadline,
            max_response_bytes: self.max_response_bytes,
            retries: self.retries,
        };
        let request = format!("{} {url}", self.method.as_str());
        match self.transport.send(&exchange) {
            Ok(reply) => self.answer(&request, reply),
            Err(Failed { failure, attempts }) => Err(self.error(
                CallErrorKind::Unavailable,
                format!("{request}: {failure}{}", after(attempts)),
            )),
        }
    }

    fn answer(&self, request: &str, reply: Reply) -> Result<String, CallError> {
        let status = reply.status;
        if !(200..300).contains(&status) {
            let kind = match status {
                404 | 410 => CallErrorKind::NotFound,
                400 | 409 | 422 => CallErrorKind::InvalidArguments,
                _ => CallErrorKind::Unavailable,
            };
            return Err(self.error(
                kind,
                format!(
                    "{request} answered {}{}{}",
                    status_text(status),
                    after(reply.attempts),
                    excerpt(
                        &self
                            .headers
                            .redact_body(&String::from_utf8_lossy(&reply.body))
                    )
                ),
            ));
        }
        if reply.body.iter().all(u8::is_ascii_whitespace) {
            return Ok("null".into());
        }
        let text = std::str::from_utf8(&reply.body).map_err(|_| {
            self.error(
                CallErrorKind::Unavailable,
                format!("{request} answered {status} with a body that is not UTF-8 text"),
            )
        })?;
        let text = self.headers.redact_body(text);
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&text) {
            return Err(self.error(
                CallErrorKind::Unavailable,
                format!(
                    "{request} answered {status} with a body that is not JSON ({e}){}",
                    excerpt(&text)
                ),
            ));
        }
        Ok(text)
    }

    fn error(&self, kind: CallErrorKind, problem: String) -> CallError {
        call_error(
            kind,
            self.headers
                .redact(&format!("tool `{}`: {problem}", self.name)),
        )
    }
}

/// ` after N attempts`, when there was more than one.
pub(super) fn after(attempts: u32) -> String {
    if attempts > 1 {
        format!(" (after {attempts} attempts)")
    } else {
        String::new()
    }
}

/// `503 Service Unavailable`.
pub(super) fn status_text(status: u16) -> String {
    let reason = ureq::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason());
    match reason {
        Some(reason) => format!("{status} {reason}"),
        None => status.to_string(),
    }
}

/// `: <the start of the body>`, printable, or nothing for an empty body.
pub(super) fn excerpt(text: &str) -> String {
    let text: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.is_empty() {
        return String::new();
    }
    let cut: String = text.chars().take(EXCERPT_CHARS).collect();
    let more = if cut.len() < text.len() { "..." } else { "" };
    format!(": {cut}{more}")
}

/// The arguments of a GET or DELETE as a query: a JSON object of strings, numbers and
/// booleans, in key order, percent-encoded.
fn query(args: &Value) -> Result<String, String> {
    let Value::Object(map) = args else {
        return Err("a GET or DELETE tool takes a JSON object of strings, numbers and booleans (sent as the query)".into());
    };
    let mut pairs: Vec<(&String, &Value)> = map.iter().collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let mut parts = Vec::new();
    for (name, value) in pairs {
        let text = match value {
            Value::String(text) => text.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => continue,
            _ => {
                return Err(format!(
                    "argument `{name}` is a list or an object, which a query cannot carry; use POST"
                ));
            }
        };
        parts.push(format!("{}={}", encode(name), encode(&text)));
    }
    Ok(parts.join("&"))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
