//! Tests of the `http` and `chat` bindings: how their entries load, and what each mistake
//! is reported as. (The providers against a real server: `tests/http_tools.rs` and
//! `tests/chat_model.rs`.)

use std::path::{Path, PathBuf};

use super::*;
use crate::bindings::{Bindings, BindingsError};

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("bindings.toml");
    std::fs::write(&path, text).expect("write");
    path
}

fn problems(text: &str) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let error = Bindings::from_file(&write(dir.path(), text)).expect_err("refused");
    error.problems().iter().map(ToString::to_string).collect()
}

fn has(problems: &[String], want: &str) -> bool {
    problems.iter().any(|p| p.contains(want))
}

/// `HOME` is set wherever the tests run: a stand-in for a credential.
const CREDENTIAL_ENV: &str = "HOME";

#[test]
fn get_arguments_become_a_sorted_percent_encoded_query() {
    let args = serde_json::json!({"id": "A 1/&", "n": 3, "ok": true, "skip": null});
    assert_eq!(query(&args).expect("query"), "id=A%201%2F%26&n=3&ok=true");
    assert!(query(&serde_json::json!({"x": [1]})).is_err());
    assert!(query(&serde_json::json!([1])).is_err());
}

#[test]
fn excerpts_are_short_and_printable() {
    assert_eq!(excerpt("  "), "");
    assert_eq!(excerpt("a\nb"), ": a b");
    assert!(excerpt(&"x".repeat(500)).ends_with("..."));
    assert_eq!(status_text(503), "503 Service Unavailable");
}

#[test]
fn an_http_tool_loads_with_its_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        &format!(
            "[tools.bureau]\nprovider = \"http\"\nurl = \"https://bureau.example/v1/report\"\nallow = [\"https://bureau.example:443/v1/\"]\nheaders = {{ Authorization = {{ env = \"{CREDENTIAL_ENV}\", prefix = \"Bearer \" }} }}\n\n[tools.payout]\nprovider = \"http\"\nurl = \"http://127.0.0.1:9/pay\"\nallow = [\"http://127.0.0.1:9/pay\"]\neffect = true\n"
        ),
    );
    let bindings = Bindings::from_file(&path).expect("load");
    assert!(!bindings.is_effect("bureau"));
    assert!(bindings.is_effect("payout"));
    assert!(bindings.cards().is_empty());
    let secret = std::env::var(CREDENTIAL_ENV).expect("HOME");
    assert!(!format!("{bindings:?}").contains(&format!("Bearer {secret}")));
}

#[test]
fn every_mistake_of_an_http_tool_is_reported_at_its_line() {
    let found = problems(
        "[tools.bureau]\n\
         provider = \"http\"\n\
         url = \"https://evil.example/v1/report\"\n\
         method = \"FETCH\"\n\
         allow = [\"https://bureau.example/v1/\", \"https://user:pw@bureau.example/\"]\n\
         headers = { X-Api-Key = \"abc123\", Authorization = { env = \"WARDEN_NO_SUCH_VARIABLE_71\" } }\n\
         timeout_ms = 0\n\
         model = \"gpt\"\n\
         file = \"x.json\"\n",
    );
    for want in [
        "bindings.toml:4:10: tools.bureau.method: \"FETCH\" is not GET, POST, PUT, PATCH or DELETE",
        "bindings.toml:5:40: tools.bureau.allow: \"https://user:pw@bureau.example/\": a user name or password in the URL is refused",
        "tools.bureau.headers: header \"X-Api-Key\" carries a credential: read it from the environment",
        "tools.bureau.headers: header \"Authorization\": environment variable WARDEN_NO_SUCH_VARIABLE_71 is not set",
        "bindings.toml:7:14: tools.bureau.timeout_ms: must be a whole number from 1 to 600000",
        "bindings.toml:8:1: tools.bureau.model: provider \"http\" takes no `model`",
        "bindings.toml:9:8: tools.bureau.file: provider \"http\" takes no `file`",
    ] {
        assert!(
            has(&found, want),
            "{want:?} is not among:\n{}",
            found.join("\n")
        );
    }
    let found = problems(
        "[tools.bureau]\nprovider = \"http\"\nurl = \"https://evil.example/v1/report\"\nallow = [\"https://bureau.example/v1/\"]\n",
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].ends_with("bindings.toml:3:7: tools.bureau.url: https://evil.example/v1/report is not in the allowlist (https://bureau.example:443/v1/): add it to `allow`, or correct the url"),
        "{found:?}"
    );
    let found = problems(&format!(
        "[tools.bureau]\nprovider = \"http\"\nurl = \"http://bureau.example/v1/report\"\nallow = [\"http://bureau.example/v1/\"]\nheaders = {{ Authorization = {{ env = \"{CREDENTIAL_ENV}\" }} }}\n"
    ));
    assert!(
        has(
            &found,
            "is plain http to another machine, and this binding sends a credential"
        ),
        "{found:?}"
    );
    let found = problems("[tools.bureau]\nprovider = \"http\"\n");
    assert!(
        has(&found, "tools.bureau.url: required field is missing"),
        "{found:?}"
    );
    assert!(
        has(&found, "tools.bureau.allow: required field is missing"),
        "{found:?}"
    );
    assert!(!has(&found, ".file"), "{found:?}");
}

#[test]
fn a_provider_that_takes_no_settings_refuses_them() {
    let found = problems(
        "[tools.credit_bureau]\nprovider = \"ledger\"\nfile = \"l.jsonl\"\nurl = \"https://x.example/\"\n",
    );
    assert!(
        has(
            &found,
            "tools.credit_bureau.url: provider \"ledger\" takes no `url`"
        ),
        "{found:?}"
    );
    let found = problems(
        "[tools.x]\nprovider = \"fixture\"\nfile = \"f.json\"\nkey = \"id\"\ntimout_ms = 5\n",
    );
    assert!(
        has(
            &found,
            "unknown field `timout_ms`; did you mean `timeout_ms`?"
        ),
        "{found:?}"
    );
}

fn chat(extra: &str) -> String {
    format!(
        "[models.triage]\nprovider = \"chat\"\nbase_url = \"http://127.0.0.1:8080/v1\"\nmodel = \"llama-3.1-8b\"\n{extra}"
    )
}

#[test]
fn a_chat_models_card_is_its_settings_without_the_credential() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = chat(&format!(
        "api_key = {{ env = \"{CREDENTIAL_ENV}\" }}\nlabels = [\"pay\", \"investigate\"]\nversion = \"2025.1\"\n"
    ));
    let bindings = Bindings::from_file(&write(dir.path(), &text)).expect("load");
    let cards = bindings.cards();
    let (card, bytes) = cards.first().expect("a card");
    assert_eq!(
        (card.provider.as_str(), card.version.as_str()),
        ("chat", "2025.1")
    );
    let card_text = String::from_utf8_lossy(bytes);
    let secret = std::env::var(CREDENTIAL_ENV).expect("HOME");
    assert!(
        card_text.contains("\"api_key_env\": \"HOME\""),
        "{card_text}"
    );
    assert!(!card_text.contains(&format!("\"{secret}\"")), "{card_text}");
    assert!(
        card_text.contains("llama-3.1-8b") && card_text.contains("investigate"),
        "{card_text}"
    );
    assert_eq!(bindings.labels("triage"), ["pay", "investigate"]);
    assert!(bindings.features("triage").is_empty());

    // Without log-probabilities no label has a probability a gate could compare.
    let bindings = Bindings::from_file(&write(
        dir.path(),
        &chat("labels = [\"pay\", \"investigate\"]\nlogprobs = false\n"),
    ))
    .expect("load");
    assert!(bindings.labels("triage").is_empty());
    let other = Bindings::from_file(&write(
        dir.path(),
        &chat("labels = [\"pay\", \"investigate\"]\n"),
    ))
    .expect("load");
    assert_ne!(bindings.hash(), other.hash());
    assert_ne!(bindings.card("triage"), other.card("triage"));
}

#[test]
fn every_mistake_of_a_chat_model_is_reported_at_its_line() {
    let found = problems(&chat(
        "labels = [\"yes\", \"Yes_but\", \"\"]\nprompt = \"Decide.\"\nresponse_format = { type = \"object\" }\ntemperature = 3\ntop_logprobs = 50\napi_key = \"sk-in-the-file\"\nurl = \"x\"\n",
    ));
    for want in [
        "models.triage.labels: labels \"yes\" and \"Yes_but\": one begins the other",
        "models.triage.labels: a label is not empty",
        "models.triage.prompt: the prompt must contain {{features}}",
        "models.triage.response_format: a classifying model answers with its label",
        "models.triage.temperature: must be a number from 0 to 2",
        "models.triage.top_logprobs: must be a whole number from 1 to 20",
        "models.triage.api_key: expected { env = \"VARIABLE\" }, found a string",
        "models.triage.url: provider \"chat\" takes no `url`",
    ] {
        assert!(
            has(&found, want),
            "{want:?} is not among:\n{}",
            found.join("\n")
        );
    }
    assert!(
        !found.iter().any(|p| p.contains("sk-in-the-file")),
        "{found:?}"
    );
    let found = problems("[models.triage]\nprovider = \"chat\"\n");
    assert!(
        has(&found, "models.triage.base_url: required field is missing"),
        "{found:?}"
    );
    assert!(
        has(&found, "models.triage.model: required field is missing"),
        "{found:?}"
    );
    let found = problems(&chat("allow = [\"http://127.0.0.1:8080/other/\"]\n"));
    assert!(
        has(
            &found,
            "models.triage.base_url: http://127.0.0.1:8080/v1/chat/completions is not in the allowlist"
        ),
        "{found:?}"
    );
}

#[test]
fn a_gate_on_a_chat_model_without_probabilities_is_refused_before_a_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bindings = Bindings::from_file(&write(
        dir.path(),
        &chat("labels = [\"pay\", \"investigate\"]\nlogprobs = false\n"),
    ))
    .expect("load");
    let policy = crate::policy::Policy::parse(
        "[policy]\nname = \"p\"\nversion = \"1\"\ninitial = \"start\"\n[capabilities]\nmodels = [\"triage\"]\n[states.start]\nmodels = [\"triage\"]\ntransitions = [\"paid\"]\n[states.paid]\nterminal = true\n[states.review]\nreview = true\ntransitions = [\"paid\"]\n[states.review.decisions.paid]\nroles = [\"r\"]\n[[gates]]\nto = \"paid\"\nmodel = \"triage\"\nlabel = \"pay\"\nmin_confidence = 0.9\notherwise = \"review\"\nrequire_reconciled = false\n",
        "test",
    )
    .expect("policy");
    let error = bindings.covers(&policy).expect_err("no probabilities");
    assert!(matches!(error, BindingsError::GateLabel { .. }), "{error}");
    assert!(
        error.to_string().contains("no per-label probabilities"),
        "{error}"
    );
}
