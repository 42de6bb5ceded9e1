//! The `chat` model provider: a language model behind the OpenAI-compatible
//! `/v1/chat/completions` API (vLLM, llama.cpp's server, Ollama, hosted services).
//!
//! Upholds invariant 1 for gates: a classifying model's confidence is computed by the
//! host from the token log-probabilities the server returns ([`logprobs`]), never taken
//! from the model's words. A server that returns none gives an inference with no
//! per-label probability, and a gate on it escalates; a binding that does not ask for
//! them (`logprobs = false`) gives no labels a gate could name, so a policy gating on it
//! is refused before a run starts. And the promises of every HTTP provider (`super::http`):
//! allowlist, timeouts within the step's budget, size cap, bounded retries, the key from
//! the environment and never in anything written.
//!
//! The settings of the binding are the model's card: the canonical JSON of every setting
//! that decides an answer (the environment variable's *name*, never its value) is what a
//! run stores and what every inference names, with the card's `version`.

mod logprobs;

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};
use warden_guest::{CallError, CallErrorKind};

use super::http::endpoint::{AllowRule, Allowlist, Url};
use super::http::secret::{self, Headers};
use super::http::transport::{Exchange, Failed, Method, Transport};
use super::http::{after, allowlist, excerpt, headers, no_plain_secrets, status_text};
use super::settings::Settings;
use super::{ModelAnswer, call_error};
use logprobs::{LabelProbabilities, Token};

/// The settings of a `chat` model.
pub(super) const FIELDS: &[&str] = &[
    "base_url",
    "model",
    "api_key",
    "allow",
    "headers",
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
    "timeout_ms",
    "max_response_bytes",
    "retries",
];

const DEFAULT_TIMEOUT_MS: u64 = 30_000;
const DEFAULT_MAX_RESPONSE_BYTES: u64 = 1 << 20;
const DEFAULT_RETRIES: u64 = 2;

/// A language model served by an OpenAI-compatible server.
#[derive(Debug)]
pub(super) struct ChatModel {
    name: String,
    endpoint: Url,
    allow: Allowlist,
    headers: Headers,
    model: String,
    version: String,
    labels: Vec<String>,
    system: Option<String>,
    prompt: String,
    temperature: f64,
    max_tokens: u64,
    logprobs: bool,
    top_logprobs: u64,
    response_format: Option<Value>,
    seed: Option<f64>,
    timeout: Duration,
    max_response_bytes: u64,
    retries: u32,
    transport: Transport,
    /// The card: canonical JSON of the settings above.
    card: Vec<u8>,
}

impl ChatModel {
    /// Reads a `chat` model's settings; `None` after a problem (kept in `settings`).
    pub(super) fn load(
        name: &str,
        settings: &mut Settings<'_, '_>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<ChatModel> {
        let base_url = settings.required_string("base_url", "\"https://api.example/v1\"");
        let base = base_url
            .as_ref()
            .and_then(|written| match Url::parse(written.get_ref()) {
                Ok(url) if url.query.is_none() => Some(url),
                Ok(_) => {
                    settings.problem(
                        "base_url",
                        written.span(),
                        "remove the query: the base URL is what `/chat/completions` is appended to"
                            .into(),
                    );
                    None
                }
                Err(problem) => {
                    settings.problem("base_url", written.span(), problem);
                    None
                }
            });
        let model = settings.required_string("model", "\"the server's model name\"");
        let version = settings.string("version");
        let labels = labels(settings);
        let system = settings.string("system").map(|s| s.get_ref().clone());
        let response_format = settings.json("response_format");
        let json_answer = response_format.is_some();
        let prompt = prompt(settings, !labels.is_empty(), json_answer);
        let temperature = settings.number("temperature", 0.0, 2.0).unwrap_or(0.0);
        let default_tokens = match (labels.is_empty(), json_answer) {
            (true, _) => 1024,
            (false, false) => 16,
            (false, true) => 256,
        };
        let max_tokens = settings.integer("max_tokens", 1, 1_000_000, default_tokens);
        let logprobs = settings.boolean("logprobs", true);
        let top_logprobs = settings.integer("top_logprobs", 1, 20, 20);
        let seed = settings.number("seed", -9.0e15, 9.0e15);
        let timeout_ms = settings.integer("timeout_ms", 1, 600_000, DEFAULT_TIMEOUT_MS);
        let max_response_bytes = settings.integer(
            "max_response_bytes",
            1,
            64 << 20,
            DEFAULT_MAX_RESPONSE_BYTES,
        );
        let retries = settings.integer("retries", 0, 5, DEFAULT_RETRIES) as u32;
        let mut headers = headers(settings, env);
        let api_key = settings.secret("api_key");
        if let (Some(reference), Some(headers)) = (&api_key, headers.as_mut()) {
            match secret::secret(reference, env) {
                Ok(value) => {
                    let prefix = if reference.prefix.is_empty() {
                        "Bearer "
                    } else {
                        reference.prefix.as_str()
                    };
                    headers.add_secret("Authorization", prefix, value);
                }
                Err(problem) => settings.problem("api_key", reference.at.clone(), problem),
            }
        }
        if let (Some(format), false) = (&response_format, labels.is_empty())
            && format.get_ref().pointer("/properties/label").is_none()
        {
            settings.problem(
                "response_format",
                format.span(),
                "a classifying model answers with its label: the schema needs a `label` property (\"properties\": {\"label\": {\"enum\": [...]}})".into(),
            );
        }
        let (base, model, headers, prompt) = (base?, model?, headers?, prompt?);
        let endpoint = Url {
            path: format!("{}/chat/completions", base.path.trim_end_matches('/')),
            ..base.clone()
        };
        let allow = match settings.get("allow") {
            Some(_) => allowlist(settings, false)?,
            None => {
                let mut prefix = base.clone();
                if !prefix.path.ends_with('/') {
                    prefix.path.push('/');
                }
                Allowlist::new(vec![AllowRule::parse(&prefix.to_string()).ok()?])
            }
        };
        if let Err(problem) = allow.check(&endpoint) {
            let at = base_url.map_or_else(|| settings.header(), |b| b.span());
            settings.problem("base_url", at, format!("{problem}: add it to `allow`"));
            return None;
        }
        no_plain_secrets(settings, &headers, &allow);
        let version = version.map_or_else(|| model.get_ref().clone(), |v| v.get_ref().clone());
        let card = json!({
            "name": name,
            "provider": "chat",
            "version": version,
            "base_url": base.to_string(),
            "model": model.get_ref(),
            "api_key_env": api_key.as_ref().map(|r| r.env.clone()),
            "labels": labels,
            "system": system,
            "prompt": prompt,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "logprobs": logprobs,
            "top_logprobs": top_logprobs,
            "response_format": response_format.as_ref().map(|f| f.get_ref().clone()),
            "seed": seed,
        });
        Some(ChatModel {
            name: name.to_string(),
            endpoint,
            allow,
            headers,
            model: model.get_ref().clone(),
            version,
            labels,
            system,
            prompt,
            temperature,
            max_tokens,
            logprobs,
            top_logprobs,
            response_format: response_format.map(|f| f.get_ref().clone()),
            seed,
            timeout: Duration::from_millis(timeout_ms),
            max_response_bytes,
            retries,
            transport: Transport::new(),
            card: serde_json::to_vec_pretty(&card).unwrap_or_default(),
        })
    }

    /// The card's bytes (canonical JSON of the settings).
    pub(super) fn card(&self) -> &[u8] {
        &self.card
    }

    /// The card's version (`version`, or the model's name).
    pub(super) fn version(&self) -> &str {
        &self.version
    }

    /// The labels a gate may name: those the host computes a probability for.
    pub(super) fn labels(&self) -> Vec<String> {
        if self.logprobs {
            self.labels.clone()
        } else {
            Vec::new()
        }
    }

    /// Asks the model; the answer with each label's probability where it can be computed.
    pub(super) fn infer(
        &self,
        features_json: &str,
        deadline: Option<Instant>,
    ) -> Result<ModelAnswer, CallError> {
        let features: Value = serde_json::from_str(features_json).map_err(|e| {
            self.error(
                CallErrorKind::InvalidArguments,
                format!("features are not JSON: {e}"),
            )
        })?;
        let body = self.request_body(&features);
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let mut headers: Vec<(&str, String)> = vec![
            ("Accept", "application/json".into()),
            ("Content-Type", "application/json".into()),
        ];
        headers.extend(self.headers.pairs());
        let exchange = Exchange {
            method: Method::Post,
            url: self.endpoint.clone(),
            headers,
            credentials: self.headers.secret_names(),
            body: Some(&body),
            allow: &self.allow,
            timeout: self.timeout,
            deadline,
            max_response_bytes: self.max_response_bytes,
            retries: self.retries,
        };
        let request = format!("POST {}", self.endpoint);
        let reply = self
            .transport
            .send(&exchange)
            .map_err(|Failed { failure, attempts }| {
                self.error(
                    CallErrorKind::Unavailable,
                    format!("{request}: {failure}{}", after(attempts)),
                )
            })?;
        let text = self
            .headers
            .redact_body(&String::from_utf8_lossy(&reply.body));
        if !(200..300).contains(&reply.status) {
            let kind = match reply.status {
                400 | 422 => CallErrorKind::InvalidArguments,
                _ => CallErrorKind::Unavailable,
            };
            return Err(self.error(
                kind,
                format!(
                    "{request} answered {}{}{}",
                    status_text(reply.status),
                    after(reply.attempts),
                    excerpt(&text)
                ),
            ));
        }
        let completion: Completion = serde_json::from_str(&text).map_err(|e| {
            self.error(
                CallErrorKind::Unavailable,
                format!(
                    "{request}: the answer is not a chat completion ({e}){}",
                    excerpt(&text)
                ),
            )
        })?;
        self.answer(completion)
    }

    fn request_body(&self, features: &Value) -> Value {
        let case = features.to_string();
        let user = self
            .prompt
            .replace("{{labels}}", &self.labels.join(", "))
            .replace("{{features}}", &case);
        let mut messages = Vec::new();
        if let Some(system) = &self.system {
            messages.push(json!({"role": "system", "content": system}));
        }
        messages.push(json!({"role": "user", "content": user}));
        let mut body = json!({
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        });
        if self.logprobs && !self.labels.is_empty() {
            body["logprobs"] = json!(true);
            body["top_logprobs"] = json!(self.top_logprobs);
        }
        if let Some(schema) = &self.response_format {
            body["response_format"] = json!({
                "type": "json_schema",
                "json_schema": {"name": self.name, "schema": schema, "strict": true},
            });
        }
        if let Some(seed) = self.seed {
            body["seed"] = json!(seed as i64);
        }
        body
    }

    fn answer(&self, completion: Completion) -> Result<ModelAnswer, CallError> {
        let served_by = completion.model.clone();
        let Some(choice) = completion.choices.into_iter().next() else {
            return Err(self.error(
                CallErrorKind::Unavailable,
                "the completion has no choice".into(),
            ));
        };
        let content = match (choice.message.content, choice.message.refusal) {
            (Some(content), _) if !content.trim().is_empty() => self.headers.redact_body(&content),
            (_, Some(refusal)) => {
                return Err(self.error(
                    CallErrorKind::Unavailable,
                    format!(
                        "the model refused{}",
                        excerpt(&self.headers.redact(&refusal))
                    ),
                ));
            }
            _ => {
                return Err(self.error(
                    CallErrorKind::Unavailable,
                    "the model answered nothing".into(),
                ));
            }
        };
        let json_answer = self.response_format.is_some();
        if self.labels.is_empty() {
            let value = if json_answer {
                serde_json::from_str::<Value>(&content).map_err(|e| {
                    self.error(
                        CallErrorKind::Unavailable,
                        format!(
                            "the answer is not the JSON the response_format asks for ({e}){}",
                            excerpt(&content)
                        ),
                    )
                })?
            } else {
                json!({"text": content, "served_by": served_by})
            };
            return Ok(ModelAnswer {
                value: value.to_string(),
                confidence: 0.0,
                label: String::new(),
                probabilities: Vec::new(),
            });
        }
        let label = self.predicted(&content, json_answer)?;
        let tokens: Vec<Token> = choice
            .logprobs
            .and_then(|l| l.content)
            .unwrap_or_default()
            .into_iter()
            .map(|t| Token {
                text: t.token,
                logprob: t.logprob,
                top: t
                    .top_logprobs
                    .into_iter()
                    .map(|a| (a.token, a.logprob))
                    .collect(),
            })
            .collect();
        let computed = if self.logprobs {
            logprobs::label_probabilities(&self.labels, &tokens, json_answer, &label)
        } else {
            Err(logprobs::NoProbability::Missing)
        };
        let (probabilities, label_mass, missing) = match computed {
            Ok(LabelProbabilities {
                probabilities,
                label_mass,
            }) => (probabilities, Some(label_mass), None),
            Err(reason) => (Vec::new(), None, Some(reason.to_string())),
        };
        let confidence = probabilities
            .iter()
            .find(|(l, _)| *l == label)
            .map_or(0.0, |(_, p)| *p);
        let value = json!({
            "label": label,
            "probabilities": (!probabilities.is_empty()).then(|| {
                probabilities.iter().map(|(l, p)| (l.clone(), json!(p))).collect::<serde_json::Map<_, _>>()
            }),
            "label_mass": label_mass,
            "no_probability": missing,
            "answer": content,
            "served_by": served_by,
        });
        Ok(ModelAnswer {
            value: value.to_string(),
            confidence,
            label,
            probabilities,
        })
    }

    /// The label the answer names, as the card spells it.
    fn predicted(&self, content: &str, json_answer: bool) -> Result<String, CallError> {
        let said = if json_answer {
            serde_json::from_str::<Value>(content)
                .ok()
                .and_then(|v| v.get("label")?.as_str().map(str::to_string))
                .unwrap_or_default()
        } else {
            content
                .trim()
                .trim_matches(|c: char| c == '"' || c == '\'' || c == '`' || c == '.')
                .trim()
                .to_string()
        };
        self.labels
            .iter()
            .find(|l| l.to_lowercase() == said.to_lowercase())
            .cloned()
            .ok_or_else(|| {
                self.error(
                    CallErrorKind::Unavailable,
                    format!(
                        "the answer is none of the labels ({}){}",
                        self.labels.join(", "),
                        excerpt(content)
                    ),
                )
            })
    }

    fn error(&self, kind: CallErrorKind, problem: String) -> CallError {
        call_error(
            kind,
            self.headers
                .redact(&format!("model `{}`: {problem}", self.name)),
        )
    }
}

/// The labels of a classifying model, checked: at least two, distinct, none beginning
/// another (case-insensitively), none holding a quote, a backslash or a control character.
fn labels(settings: &mut Settings<'_, '_>) -> Vec<String> {
    let Some(items) = settings.strings("labels") else {
        return Vec::new();
    };
    let mut labels: Vec<String> = Vec::new();
    for item in &items {
        let label = item.get_ref();
        let problem = if label.trim().is_empty() || label.trim() != label {
            Some("a label is not empty and has no blank at either end".to_string())
        } else if label
            .chars()
            .any(|c| c == '"' || c == '\\' || c.is_control())
        {
            Some(format!(
                "{label:?}: a label holds no quote, backslash or control character"
            ))
        } else {
            labels
                .iter()
                .find(|l| {
                    let (a, b) = (l.to_lowercase(), label.to_lowercase());
                    a.starts_with(&b) || b.starts_with(&a)
                })
                .map(|other| format!(
                    "labels {other:?} and {label:?}: one begins the other, so the first token of an answer cannot tell them apart; rename one"
                ))
        };
        match problem {
            Some(problem) => settings.problem("labels", item.span(), problem),
            None => labels.push(label.clone()),
        }
    }
    if labels.len() == 1 && items.len() == 1 {
        let at = settings
            .get("labels")
            .map_or_else(|| settings.header(), |v| v.span());
        settings.problem(
            "labels",
            at,
            "a classification needs at least two labels".into(),
        );
    }
    labels
}

/// The user message template, checked to show the model the case.
fn prompt(settings: &mut Settings<'_, '_>, classifies: bool, json_answer: bool) -> Option<String> {
    let Some(written) = settings.string("prompt") else {
        return Some(
            match (classifies, json_answer) {
                (false, _) => "{{features}}",
                (true, false) => "Classify the case below. Answer with exactly one of these labels and nothing else: {{labels}}.\n\nCase:\n{{features}}",
                (true, true) => "Classify the case below. Answer with a JSON object whose \"label\" is exactly one of: {{labels}}.\n\nCase:\n{{features}}",
            }
            .to_string(),
        );
    };
    if !written.get_ref().contains("{{features}}") {
        settings.problem(
            "prompt",
            written.span(),
            "the prompt must contain {{features}}, where the case (the request's features, as JSON) goes".into(),
        );
        return None;
    }
    Some(written.get_ref().clone())
}

/// A chat completion, as much of it as Warden reads.
#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    model: Option<String>,
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    message: Message,
    #[serde(default)]
    logprobs: Option<Logprobs>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Deserialize)]
struct Logprobs {
    #[serde(default)]
    content: Option<Vec<TokenLogprob>>,
}

#[derive(Deserialize)]
struct TokenLogprob {
    token: String,
    logprob: f64,
    #[serde(default)]
    top_logprobs: Vec<TopLogprob>,
}

#[derive(Deserialize)]
struct TopLogprob {
    token: String,
    logprob: f64,
}
