//! The `chat` model provider against a local server that speaks the OpenAI-compatible
//! `/v1/chat/completions` API, log-probabilities included (issue #17), through the real
//! `warden` binary: the host computes each label's probability from the token
//! log-probabilities and a gate compares it; a server that gives none yields an inference
//! with no probability, which a gate escalates; a binding that cannot give them cannot be
//! gated on; retries, HTTP errors, timeouts and oversize answers are recorded answers; the
//! API key never reaches the journal; replay needs no server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

use crate::http_tools::{Deployment, SECRET, SECRET_ENV, holds, policy};
use crate::support::http_server::{Reply, Request, Server};
use crate::support::output_text;

/// A gate on `paid` that needs P(pay) ≥ 0.9 from `triage`, and a review state.
const GATED: &str = r#"
[states.review]
review = true
transitions = ["paid", "done"]

[states.review.decisions.paid]
roles = ["adjuster"]

[states.review.decisions.done]
roles = ["adjuster"]

[[gates]]
to = "paid"
model = "triage"
label = "pay"
min_confidence = 0.9
otherwise = "review"
require_reconciled = false
"#;

/// One generated token: its text, log-probability, and the alternatives.
type Tok<'a> = (&'a str, f64, &'a [(&'a str, f64)]);

fn completion(content: &str, tokens: Option<&[Tok<'_>]>) -> String {
    let logprobs = tokens.map(|tokens| {
        json!({"content": tokens.iter().map(|(t, p, top)| json!({
            "token": t,
            "logprob": p,
            "bytes": t.as_bytes(),
            "top_logprobs": top.iter().map(|(a, q)| json!({"token": a, "logprob": q})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>()})
    });
    json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": "test-model-2025-01",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "logprobs": logprobs,
            "finish_reason": "stop",
        }],
        "usage": {"prompt_tokens": 50, "completion_tokens": 2, "total_tokens": 52},
    })
    .to_string()
}

/// The classifier's answer to a request: confident `pay` for small amounts, an uncertain
/// `investigate` otherwise.
fn classify(request: &Request, with_logprobs: bool) -> Reply {
    let body = request.json();
    let user = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default();
    let small = user.contains("\"amount\":120");
    let ln = f64::ln;
    let (content, tokens): (&str, Vec<Tok<'_>>) = if small {
        (
            "pay",
            vec![(
                "pay",
                ln(0.97),
                &[
                    ("pay", -0.030_459_207_484_708_574),
                    ("invest", -3.912_023_005_428_146),
                    ("Pay", -5.298_317_366_548_036),
                    ("I", -5.809_142_990_314_028),
                ],
            )],
        )
    } else {
        (
            "investigate",
            vec![
                (
                    "invest",
                    ln(0.6),
                    &[
                        ("invest", -0.510_825_623_765_990_7),
                        ("pay", -1.049_822_124_498_677_6),
                        ("hmm", -2.995_732_273_553_991),
                    ],
                ),
                ("igate", -0.01, &[]),
            ],
        )
    };
    let logprobs = (with_logprobs && body["logprobs"] == true).then_some(tokens.as_slice());
    Reply::Json(200, completion(content, logprobs))
}

fn openai_server() -> Server {
    let flaky = Arc::new(AtomicUsize::new(0));
    Server::start(move |request| {
        let path = request.target.as_str();
        let mode = path.split('/').nth(1).unwrap_or_default();
        if !path.ends_with("/v1/chat/completions") {
            return Reply::Json(404, r#"{"error": {"message": "no such route"}}"#.into());
        }
        match mode {
            "ok" => classify(request, true),
            "nologprobs" => classify(request, false),
            "flaky" if flaky.fetch_add(1, Ordering::SeqCst) == 0 => {
                Reply::Json(503, r#"{"error": {"message": "overloaded"}}"#.into())
            }
            "flaky" => classify(request, true),
            "bad" => Reply::Json(400, r#"{"error": {"message": "unknown model"}}"#.into()),
            "slow" => Reply::Hang,
            "huge" => Reply::Json(200, completion(&"x".repeat(4096), None)),
            "garbage" => Reply::Json(200, "<html>gateway</html>".into()),
            "offlabel" => Reply::Json(200, completion("I would rather not say", None)),
            // `pay` at 0.5, and no alternative listed.
            "alone" => Reply::Json(200, completion("pay", Some(&[("pay", f64::ln(0.5), &[])]))),
            // Two `label`s: sure of the first, the answer is the last.
            "twice" => Reply::Json(
                200,
                completion(
                    r#"{"label":"pay","label":"investigate"}"#,
                    Some(&[
                        (r#"{"label":""#, 0.0, &[]),
                        (
                            "pay",
                            f64::ln(0.99),
                            &[("pay", f64::ln(0.99)), ("invest", f64::ln(0.01))],
                        ),
                        (r#"","label":""#, 0.0, &[]),
                        (
                            "investigate",
                            f64::ln(0.6),
                            &[("investigate", f64::ln(0.6)), ("pay", f64::ln(0.4))],
                        ),
                        (r#""}"#, 0.0, &[]),
                    ]),
                ),
            ),
            "json" => Reply::Json(
                200,
                completion(r#"{"summary": "water damage", "severity": 3}"#, None),
            ),
            _ => Reply::Json(404, "{}".into()),
        }
    })
}

fn chat_binding(server: &Server, mode: &str, extra: &str) -> String {
    format!(
        r#"[models.triage]
provider = "chat"
base_url = "{}"
model = "claims-triage-8b"
version = "2025.1"
api_key = {{ env = "{SECRET_ENV}" }}
labels = ["pay", "investigate"]
system = "You triage insurance claims."
timeout_ms = 5000
{extra}
"#,
        server.url(&format!("/{mode}/v1"))
    )
}

fn ask(amount: u64) -> Value {
    json!([
        [{"model": {"name": "triage", "features": {"amount": amount}}}, {"transition_citing": {"to": "paid", "saved": 0}}],
        [{"finish": {"output": {"paid": true}}}]
    ])
}

/// The body of the run's one `inference` record.
fn inference(deployment: &Deployment, run_id: &str) -> Value {
    let timeline = deployment.show(run_id);
    timeline["records"]
        .as_array()
        .expect("records")
        .iter()
        .find(|r| r["kind"] == "inference")
        .map(|r| r["body"].clone())
        .unwrap_or_else(|| panic!("no inference record: {timeline:#}"))
}

fn probability(inference: &Value, label: &str) -> Option<f64> {
    inference["Inference"]["probabilities"]
        .as_array()
        .or_else(|| inference["probabilities"].as_array())?
        .iter()
        .find(|p| p[0] == label)
        .and_then(|p| p[1].as_f64())
}

#[test]
fn the_host_computes_label_probabilities_from_logprobs_and_the_gate_compares_them() {
    let mut server = openai_server();
    let deployment = Deployment::new(
        &policy(&[], &["triage"], 10_000, GATED),
        &chat_binding(&server, "ok", ""),
    );

    let (code, report) = deployment.run(&ask(120));
    assert_eq!(code, 0, "{report:#}");
    let run_id = report["run_id"].as_str().expect("run id").to_string();
    let recorded = inference(&deployment, &run_id);
    // P(pay) = (0.97 + 0.005 for "Pay") / (0.975 + 0.02 for "invest" + 0.003 for "I",
    // which may begin "investigate": the first-token rule counts it there, + the 0.002
    // the server did not list, which may be another label's).
    let pay = probability(&recorded, "pay").unwrap_or_else(|| panic!("{recorded:#}"));
    assert!(
        (pay - 0.975 / 1.0).abs() < 1e-9,
        "P(pay) = {pay}: {recorded:#}"
    );
    let text = recorded.to_string();
    assert!(
        text.contains("\"chat\"") && text.contains("2025.1"),
        "the card is named: {text}"
    );

    let sent = server.requests();
    assert_eq!(sent.len(), 1);
    let body = sent[0].json();
    assert_eq!(sent[0].target, "/ok/v1/chat/completions");
    assert_eq!(
        sent[0].header("authorization"),
        Some(format!("Bearer {SECRET}").as_str())
    );
    assert_eq!(
        (
            body["model"].clone(),
            body["logprobs"].clone(),
            body["top_logprobs"].clone()
        ),
        (json!("claims-triage-8b"), json!(true), json!(20))
    );
    assert_eq!(body["temperature"], json!(0.0));
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "You triage insurance claims."})
    );
    let user = body["messages"][1]["content"]
        .as_str()
        .expect("user message");
    assert!(
        user.contains("pay, investigate") && user.contains("{\"amount\":120}"),
        "{user}"
    );

    // An uncertain answer: P(pay) = 0.35 < 0.9 (the 0.05 of "hmm", no label, counts against
    // every label), so the run waits for review.
    let (code, report) = deployment.run(&ask(5000));
    assert_eq!(code, 10, "{report:#}");
    let escalated = report["run_id"].as_str().expect("run id").to_string();
    let pay = probability(&inference(&deployment, &escalated), "pay").expect("P(pay)");
    assert!((pay - 0.35).abs() < 1e-9, "{pay}");

    assert!(
        !holds(&deployment.journal_bytes(), SECRET),
        "the API key reached the journal"
    );
    server.stop();
    for run in [&run_id, &escalated] {
        let replay = deployment.warden(&["replay", run]);
        assert_eq!(replay.status.code(), Some(0), "{}", output_text(&replay));
    }
}

#[test]
fn without_logprobs_there_is_no_probability_and_the_gate_escalates() {
    let server = openai_server();
    let deployment = Deployment::new(
        &policy(&[], &["triage"], 10_000, GATED),
        &chat_binding(&server, "nologprobs", ""),
    );
    // The model says "pay" for this case, but Warden cannot know how sure it is.
    let (code, report) = deployment.run(&ask(120));
    assert_eq!(code, 10, "{report:#}");
    let run_id = report["run_id"].as_str().expect("run id");
    let recorded = inference(&deployment, run_id);
    assert_eq!(probability(&recorded, "pay"), None, "{recorded:#}");
    let timeline = deployment.show(run_id).to_string();
    assert!(
        timeline.contains("no token log-probabilities"),
        "{timeline}"
    );
    assert!(
        timeline.contains("LabelUnknown") || timeline.contains("no probability for the label"),
        "{timeline}"
    );
}

#[test]
fn a_gate_on_a_chat_model_that_cannot_give_probabilities_is_refused_before_a_run() {
    let server = openai_server();
    for extra in ["logprobs = false", ""] {
        let binding = if extra.is_empty() {
            // No labels at all: a generator, not a classifier.
            chat_binding(&server, "ok", "").replace("labels = [\"pay\", \"investigate\"]\n", "")
        } else {
            chat_binding(&server, "ok", extra)
        };
        let deployment = Deployment::new(&policy(&[], &["triage"], 10_000, GATED), &binding);
        let input = deployment.input(&ask(120));
        let dir = deployment.dir.path().to_str().expect("utf-8").to_string();
        let run = deployment.warden(&["run", &dir, "--input", input.to_str().expect("utf-8")]);
        assert_eq!(run.status.code(), Some(2), "{}", output_text(&run));
        assert!(
            output_text(&run).contains("no per-label probabilities"),
            "{}",
            output_text(&run)
        );
        let check = deployment.warden(&["check", &dir]);
        assert_eq!(check.status.code(), Some(2), "{}", output_text(&check));
        assert!(
            output_text(&check).contains("gates[0].label"),
            "{}",
            output_text(&check)
        );
    }
    assert!(server.requests().is_empty(), "nothing ran");
}

fn failing(deployment: &Deployment) -> String {
    let (code, report) = deployment.run(&ask(120));
    assert_eq!(code, 11, "{report:#}");
    report["reason"].as_str().unwrap_or_default().to_string()
}

#[test]
fn http_errors_timeouts_and_oversize_answers_are_recorded_and_retries_are_bounded() {
    let server = openai_server();
    let policy = policy(&[], &["triage"], 10_000, GATED);
    // A 503 is retried; the second attempt answers.
    let deployment = Deployment::new(&policy, &chat_binding(&server, "flaky", "retries = 1"));
    let (code, report) = deployment.run(&ask(120));
    assert_eq!(code, 0, "{report:#}");
    let cases = [
        (
            "bad",
            "",
            "InvalidArguments: model `triage`: POST ",
            "answered 400 Bad Request: {\"error\": {\"message\": \"unknown model\"}}",
        ),
        (
            "slow",
            "timeout_ms = 300\nretries = 0",
            "Unavailable: model `triage`",
            "timed out after",
        ),
        (
            "huge",
            "max_response_bytes = 512",
            "Unavailable: model `triage`",
            "larger than max_response_bytes (512 bytes)",
        ),
        (
            "garbage",
            "",
            "Unavailable: model `triage`",
            "is not a chat completion",
        ),
        (
            "offlabel",
            "",
            "Unavailable: model `triage`",
            "none of the labels (pay, investigate): I would rather not say",
        ),
    ];
    for (mode, extra, kind, cause) in cases {
        let binding = chat_binding(&server, mode, extra).replace("timeout_ms = 5000\n", "");
        let deployment = Deployment::new(&policy, &binding);
        let reason = failing(&deployment);
        assert!(
            reason.contains(kind) && reason.contains(cause),
            "{mode}: {reason}"
        );
        assert!(!reason.contains(SECRET));
    }
    let attempts = |mode: &str| {
        server
            .requests()
            .iter()
            .filter(|r| r.target.starts_with(&format!("/{mode}/")))
            .count()
    };
    assert_eq!(attempts("flaky"), 2);
    assert_eq!(attempts("bad"), 1, "a 400 is not retried");
    assert_eq!(attempts("slow"), 1);
}

#[test]
fn structured_output_is_the_models_value() {
    let server = openai_server();
    let schema = r#"{"type": "object", "properties": {"summary": {"type": "string"}, "severity": {"type": "integer"}}, "required": ["summary", "severity"], "additionalProperties": false}"#;
    let binding = chat_binding(&server, "json", &format!("response_format = '{schema}'"))
        .replace("labels = [\"pay\", \"investigate\"]\n", "");
    let deployment = Deployment::new(&policy(&[], &["triage"], 10_000, ""), &binding);
    let plan = json!([
        [{"model": {"name": "triage", "features": {"claim": "the kitchen flooded"}}}, {"transition": {"to": "done"}}],
        [{"finish": {"output": {"ok": true}}}]
    ]);
    let (code, report) = deployment.run(&plan);
    assert_eq!(code, 0, "{report:#}");
    let sent = server.requests();
    let format = &sent[0].json()["response_format"];
    assert_eq!(format["type"], "json_schema");
    assert_eq!(
        format["json_schema"]["schema"]["required"],
        json!(["summary", "severity"])
    );
    assert_eq!(
        sent[0].json().get("logprobs"),
        None,
        "a generator asks for no log-probabilities"
    );
    let timeline = deployment
        .show(report["run_id"].as_str().expect("run id"))
        .to_string();
    assert!(timeline.contains("water damage"), "{timeline}");
}

#[test]
fn a_server_answer_cannot_make_a_label_look_more_certain_than_its_logprobs_say() {
    let server = openai_server();
    // The only token listed is `pay` at 0.5: the rest may be `investigate`'s, so
    // P(pay) = 0.5, not 1, and the gate escalates.
    let deployment = Deployment::new(
        &policy(&[], &["triage"], 10_000, GATED),
        &chat_binding(&server, "alone", ""),
    );
    let (code, report) = deployment.run(&ask(120));
    assert_eq!(code, 10, "{report:#}");
    let run_id = report["run_id"].as_str().expect("run id").to_string();
    let pay = probability(&inference(&deployment, &run_id), "pay").expect("P(pay)");
    assert!((pay - 0.5).abs() < 1e-9, "{pay}");

    // A JSON answer with two `label`s, sure of the first and giving the last: the
    // probabilities of the first token are not the answer's; none, and the gate escalates.
    let deployment = Deployment::new(
        &policy(&[], &["triage"], 10_000, GATED),
        &chat_binding(
            &server,
            "twice",
            r#"response_format = { type = "object", properties = { label = { enum = ["pay", "investigate"] } } }"#,
        ),
    );
    let (code, report) = deployment.run(&ask(120));
    assert_eq!(code, 10, "{report:#}");
    let run_id = report["run_id"].as_str().expect("run id").to_string();
    let recorded = inference(&deployment, &run_id);
    assert_eq!(probability(&recorded, "pay"), None, "{recorded:#}");
}
