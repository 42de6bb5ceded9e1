//! The insurance claim-triage example (`examples/insurance-claims`,
//! `policies/insurance-claims.toml`) through the real `warden` binary (issue #17).
//!
//! With the offline bindings (the classifier's stand-in scorecard) every sample claim
//! reaches the outcome its `.expect.toml` documents. With the deployment's own
//! `bindings.toml`, the claim classifier is a language model behind an OpenAI-compatible
//! server, here a local test server speaking `/v1/chat/completions` with token
//! log-probabilities: Warden computes P(routine) from them, the gate on `approved` pays a
//! confidently routine claim and sends a low-confidence one to an adjuster, the gate on
//! `classification` sends a high-value claim to an adjuster before the model is ever
//! asked, the model is shown the claim's reconciled indicators and never the claimant's
//! name or narrative, the API key never reaches the journal, and every run replays with
//! the server gone. And a crafted agent (the scripted test agent, under the shipped
//! policy) cannot go around either gate.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::support::http_server::{Reply, Request, Server};
use crate::support::{Sandbox, insurance_example, output_text, policy_path, warden_test_meets};
use warden_test_guests as guests;

/// (claim file, status, final state) under the offline bindings. Kept here as well as in
/// the `.expect.toml` files, so an edit of an expectation cannot quietly change what the
/// example promises.
const CLAIMS: &[(&str, &str, &str)] = &[
    ("01-glass-fast-track.json", "completed", "approved"),
    (
        "02-gate-escalates.json",
        "awaiting_review",
        "adjuster_review",
    ),
    (
        "03-high-value-adjuster.json",
        "awaiting_review",
        "adjuster_review",
    ),
    (
        "04-injury-complex.json",
        "awaiting_review",
        "adjuster_review",
    ),
    ("05-lapsed-declined.json", "completed", "declined"),
    ("06-flood-not-covered.json", "completed", "declined"),
    (
        "07-unknown-policy.json",
        "awaiting_review",
        "adjuster_review",
    ),
    ("08-early-claim-siu.json", "awaiting_review", "siu_review"),
    ("09-invalid-amount.json", "failed", "intake"),
    ("10-late-notice-declined.json", "completed", "declined"),
];

/// The key the deployment's bindings read from the environment.
const KEY_ENV: &str = "CLAIMS_LLM_API_KEY";
const KEY: &str = "sk-claims-TEST-4f0c9a7e21d35b86";

fn utf8(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[test]
fn warden_test_meets_every_claims_expectation_with_the_offline_bindings() {
    let results = warden_test_meets(&insurance_example(), CLAIMS);
    // The fast-tracked claim is paid less its deductible; declines pay nothing.
    let paid = &results[0]["output"];
    assert_eq!(
        (paid["decision"].as_str(), paid["payout"].as_f64()),
        (Some("approved"), Some(1590.0))
    );
    assert_eq!(results[4]["output"]["payout"].as_f64(), Some(0.0));
}

/// A deployment of the example whose `claim_classifier` is the shipped `bindings.toml`
/// aimed at `server`: the fixtures and cards copied beside it (a bindings file names only
/// files in its own directory), and a journal.
struct ChatDeployment {
    dir: tempfile::TempDir,
}

impl ChatDeployment {
    fn new(server: &Server) -> ChatDeployment {
        let example = insurance_example();
        let dir = tempfile::tempdir().expect("temp dir");
        for sub in ["fixtures", "models"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("dir");
            for entry in std::fs::read_dir(example.join(sub)).expect("files") {
                let entry = entry.expect("entry");
                std::fs::copy(entry.path(), dir.path().join(sub).join(entry.file_name()))
                    .expect("copy");
            }
        }
        let shipped =
            std::fs::read_to_string(example.join("bindings.toml")).expect("shipped bindings");
        let default = "base_url = \"http://127.0.0.1:8080/v1\"";
        assert!(shipped.contains(default), "the shipped base_url changed");
        let aimed = shipped.replace(default, &format!("base_url = {:?}", server.url("/v1")));
        std::fs::write(dir.path().join("bindings.toml"), aimed).expect("bindings");
        ChatDeployment { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn warden(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_warden"))
            .arg("--db")
            .arg(self.path("warden.redb"))
            .args(args)
            .env_remove("WARDEN_DB")
            .env_remove("WARDEN_SIGNING_KEY")
            .env_remove("WARDEN_SUBMITTER")
            .env(KEY_ENV, KEY)
            .output()
            .expect("run warden")
    }

    fn json(&self, args: &[&str]) -> (i32, Value) {
        let mut args = args.to_vec();
        args.push("--json");
        let output = self.warden(&args);
        let value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|_| panic!("warden {args:?}: no JSON: {}", output_text(&output)));
        (output.status.code().unwrap_or(-1), value)
    }

    /// `warden run` of the example with these bindings on one of its claims.
    fn run(&self, claim: &str) -> (i32, Value) {
        let example = insurance_example();
        // A file of the example's, or any other path.
        let input = example.join("claims").join(claim);
        let bindings = self.path("bindings.toml");
        self.json(&[
            "run",
            utf8(&example),
            "--bindings",
            utf8(&bindings),
            "--input",
            utf8(&input),
            "--submitter",
            "fnol-intake",
        ])
    }

    /// The run's journaled records.
    fn records(&self, run_id: &str) -> Vec<Value> {
        let (code, timeline) = self.json(&["show", run_id]);
        assert_eq!(code, 0, "{timeline:#}");
        timeline["records"].as_array().expect("records").clone()
    }
}

/// A chat completion answering `content`, with one token carrying `top` as its
/// alternatives (label, probability).
fn completion(content: &str, top: &[(&str, f64)]) -> String {
    let logprob = |p: f64| p.ln();
    let chosen = top
        .iter()
        .find(|(t, _)| *t == content)
        .map_or(0.0, |(_, p)| logprob(*p));
    json!({
        "id": "chatcmpl-claims",
        "object": "chat.completion",
        "model": "qwen2.5-7b-instruct-q4_k_m.gguf",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "logprobs": {"content": [{
                "token": content,
                "logprob": chosen,
                "bytes": content.as_bytes(),
                "top_logprobs": top.iter().map(|(t, p)| json!({"token": t, "logprob": logprob(*p)})).collect::<Vec<_>>(),
            }]},
            "finish_reason": "stop",
        }],
        "usage": {"prompt_tokens": 180, "completion_tokens": 1, "total_tokens": 181},
    })
    .to_string()
}

/// The indicators the model was shown: the JSON object in the user message.
fn indicators(request: &Request) -> Value {
    let body = request.json();
    let user = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string();
    user.lines()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null)
}

/// A classifier that behaves like a small instruction-tuned model: a late report makes a
/// claim `suspicious`; an injury makes it `complex` (sure of it); a young policy with a prior claim is `routine`, but
/// hesitantly; anything else is confidently `routine`.
fn classifier(request: &Request) -> Reply {
    if !request.path().ends_with("/v1/chat/completions") {
        return Reply::Json(404, r#"{"error": {"message": "no such route"}}"#.into());
    }
    let seen = indicators(request);
    let n = |name: &str| seen[name].as_f64().unwrap_or(-1.0);
    let body = if n("days_to_report") >= 30.0 {
        completion(
            "suspicious",
            &[("suspicious", 0.71), ("complex", 0.22), ("routine", 0.05)],
        )
    } else if n("injury") == 1.0 {
        completion(
            "complex",
            &[("complex", 0.90), ("routine", 0.08), ("suspicious", 0.01)],
        )
    } else if n("prior_claims_3y") >= 1.0 && n("months_in_force") < 12.0 {
        completion(
            "routine",
            &[
                ("routine", 0.62),
                ("complex", 0.30),
                ("suspicious", 0.05),
                ("The", 0.02),
            ],
        )
    } else {
        completion(
            "routine",
            &[("routine", 0.97), ("complex", 0.02), ("suspicious", 0.005)],
        )
    };
    Reply::Json(200, body)
}

/// P(label) of the run's inference of `model`, as Warden recorded it.
fn recorded_probability(records: &[Value], model: &str, label: &str) -> Option<f64> {
    let inference = records
        .iter()
        .filter(|r| r["kind"] == "inference")
        .map(|r| r["body"].get("Inference").unwrap_or(&r["body"]).clone())
        .find(|b| b.to_string().contains(model))?;
    inference["probabilities"]
        .as_array()?
        .iter()
        .find(|p| p[0] == label)
        .and_then(|p| p[1].as_f64())
}

/// The rule of the run's one escalated decision.
fn escalation(records: &[Value]) -> Value {
    let escalated: Vec<&Value> = records
        .iter()
        .filter(|r| r["body"]["decision"]["verdict"] == "Escalate")
        .collect();
    assert_eq!(escalated.len(), 1, "{escalated:#?}");
    escalated[0]["body"]["decision"]["rule"]["GateLabelNotMet"].clone()
}

#[test]
fn under_the_chat_bindings_the_gates_send_a_hesitant_classification_and_a_high_value_claim_to_an_adjuster()
 {
    let mut server = Server::start(classifier);
    let deployment = ChatDeployment::new(&server);
    let run_id = |report: &Value| report["run_id"].as_str().expect("run id").to_string();

    // Confidently routine: P(routine) = 0.97 / (0.995 + the 0.005 the server did not
    // list, which may be another label's), computed by Warden from the
    // log-probabilities, clears 0.90; paid less the deductible.
    let (code, report) = deployment.run("01-glass-fast-track.json");
    assert_eq!(
        (code, &report["state"]),
        (0, &json!("approved")),
        "{report:#}"
    );
    assert_eq!(report["output"]["payout"].as_f64(), Some(1590.0));
    let paid = run_id(&report);
    let records = deployment.records(&paid);
    let p = recorded_probability(&records, "claim_classifier", "routine").expect("P(routine)");
    assert!((p - 0.97 / 1.0).abs() < 1e-9, "P(routine) {p}");
    let journal_view = serde_json::to_string(&records).expect("JSON");
    assert!(
        journal_view.contains("qwen2.5-7b-instruct-q4_k_m") && journal_view.contains("\"chat\""),
        "the inference names the language model's card: {journal_view}"
    );

    // Routine, says the model, but hesitantly: P(routine) = 0.62 (its share of the whole
    // token: the labels' 0.97, "The" 0.02 and 0.01 unlisted) < 0.90, so the gate sends the claim to an adjuster although the agent proposed
    // payment.
    let (code, report) = deployment.run("02-gate-escalates.json");
    assert_eq!(
        (code, &report["status"], &report["state"]),
        (10, &json!("awaiting_review"), &json!("adjuster_review")),
        "{report:#}"
    );
    let hesitant = run_id(&report);
    let rule = escalation(&deployment.records(&hesitant));
    assert_eq!(
        (
            &rule["to"],
            &rule["model"],
            &rule["label"],
            &rule["otherwise"]
        ),
        (
            &json!("approved"),
            &json!("claim_classifier"),
            &json!("routine"),
            &json!("adjuster_review")
        ),
        "{rule:#}"
    );
    let p = rule["probability"].as_f64().expect("P(routine)");
    assert!((p - 0.62).abs() < 1e-9, "P(routine) {p}");

    // 36,000 is above the handlers' authority: the gate on `classification` sends the
    // claim to an adjuster, and the language model is never asked.
    let asked_before = server.requests().len();
    let (code, report) = deployment.run("03-high-value-adjuster.json");
    assert_eq!(
        (code, &report["state"]),
        (10, &json!("adjuster_review")),
        "{report:#}"
    );
    let large = run_id(&report);
    let rule = escalation(&deployment.records(&large));
    assert_eq!(
        (&rule["to"], &rule["model"], &rule["label"]),
        (
            &json!("classification"),
            &json!("claim_value"),
            &json!("within_authority")
        ),
        "{rule:#}"
    );
    assert!(rule["probability"].as_f64().expect("P") < 0.5, "{rule:#}");
    assert_eq!(
        server.requests().len(),
        asked_before,
        "the model was not asked"
    );

    // An injury: the model says `complex` and the agent refers the claim itself.
    let (code, report) = deployment.run("04-injury-complex.json");
    assert_eq!(
        (code, &report["state"]),
        (10, &json!("adjuster_review")),
        "{report:#}"
    );
    let complex = run_id(&report);
    assert!(
        deployment
            .records(&complex)
            .iter()
            .all(|r| r["body"]["decision"]["verdict"] != "Escalate"),
        "no gate was needed"
    );

    // Reported six weeks late: the model says `suspicious`, and the agent refers the claim
    // to the SIU (it may not decline it).
    let mut late: Value = serde_json::from_str(
        &std::fs::read_to_string(insurance_example().join("claims/01-glass-fast-track.json"))
            .expect("claim"),
    )
    .expect("JSON");
    late["reported_date"] = json!("2024-11-18");
    late["days_to_report"] = json!(42);
    std::fs::write(deployment.path("late.json"), late.to_string()).expect("claim");
    let (code, report) = deployment.run(utf8(&deployment.path("late.json")));
    assert_eq!(
        (code, &report["state"]),
        (10, &json!("siu_review")),
        "{report:#}"
    );
    let suspicious = run_id(&report);

    // What the server was sent: the shipped settings, the key from the environment, the
    // reconciled indicators, and nothing that identifies the claimant.
    let sent = server.requests();
    assert_eq!(
        sent.len(),
        4,
        "claims 01, 02, 04 and the late one were classified"
    );
    for request in &sent {
        assert_eq!(request.method, "POST");
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
        let body = request.json();
        assert_eq!(body["model"], "qwen2.5-7b-instruct");
        assert_eq!(
            (&body["logprobs"], &body["top_logprobs"]),
            (&json!(true), &json!(20))
        );
        assert_eq!(body["temperature"], json!(0.0));
        let user = body["messages"][1]["content"]
            .as_str()
            .expect("user message");
        assert!(user.contains("routine, complex, suspicious"), "{user}");
        for private in [
            "Whitfield",
            "Raman",
            "Ellery",
            "windscreen",
            "washing machine",
        ] {
            assert!(
                !body.to_string().contains(private),
                "{private} was sent: {body:#}"
            );
        }
    }
    let shown = indicators(&sent[0]);
    assert_eq!(
        shown["amount_to_limit"].as_f64(),
        Some(1840.0 / 50000.0),
        "{shown:#}"
    );
    assert_eq!(shown["months_in_force"].as_f64(), Some(66.0), "{shown:#}");

    // An adjuster approves the hesitant claim; the run pays from the gate's checkpoint.
    let (code, case) = deployment.json(&["review", &hesitant]);
    assert_eq!(code, 10, "{case:#}");
    let action = case["action"].as_str().expect("action digest").to_string();
    let (code, decided) = deployment.json(&[
        "review",
        &hesitant,
        "--decide",
        "approved",
        "--reviewer",
        "c.nakamura",
        "--role",
        "claims_adjuster",
        "--note",
        "plumber's report confirms a sudden burst; covered",
        "--action",
        &action,
    ]);
    assert_eq!(
        (code, &decided["state"]),
        (0, &json!("approved")),
        "{decided:#}"
    );
    assert_eq!(
        decided["output"]["payout"].as_f64(),
        Some(11000.0),
        "{decided:#}"
    );

    let journal = std::fs::read(deployment.path("warden.redb")).expect("journal");
    let hex: String = KEY.bytes().map(|b| format!("{b:02x}")).collect();
    for needle in [KEY.as_bytes(), hex.as_bytes()] {
        assert!(
            !journal.windows(needle.len()).any(|w| w == needle),
            "the API key reached the journal"
        );
    }

    // With the server gone, every run replays from the journal alone.
    server.stop();
    for run in [&paid, &hesitant, &large, &complex, &suspicious] {
        let (code, replayed) = deployment.json(&["replay", run]);
        assert_eq!(code, 0, "{run}: {replayed:#}");
        assert_eq!(replayed["verdict"], "identical", "{replayed:#}");
    }
}

/// A sample claim with the scripted agent's `plan`, and the indicators the policy will
/// recompute for it (from the claim and its register record).
fn scripted(file: &str) -> (Value, Value) {
    let example = insurance_example();
    let read = |path: PathBuf| -> Value {
        serde_json::from_str(&std::fs::read_to_string(&path).expect("file")).expect("JSON")
    };
    let claim = read(example.join("claims").join(file));
    let register = read(example.join("fixtures/policy_register.json"));
    let record = &register[claim["policy_number"].as_str().expect("policy number")];
    let n = |v: &Value| v.as_f64().expect("a number");
    let flag = |v: &Value| if v == &json!(true) { 1.0 } else { 0.0 };
    let indicators = json!({
        "amount_to_limit": n(&claim["amount"]) / n(&record["coverage_limit"]),
        "days_to_report": n(&claim["days_to_report"]),
        "months_in_force": n(&record["months_in_force"]),
        "prior_claims_3y": n(&record["prior_claims_3y"]),
        "injury": flag(&claim["injury_reported"]),
        "police_report": flag(&claim["police_report"]),
        "third_party": flag(&claim["third_party_involved"]),
    });
    (claim, indicators)
}

/// Runs the scripted agent on `claim` carrying `plan`, under the shipped policy and the
/// offline bindings.
fn attack(sandbox: &Sandbox, name: &str, claim: &Value, plan: Value) -> (i32, Value) {
    let mut input = claim.clone();
    input["plan"] = plan;
    let input = sandbox.input(name, &input);
    let policy = policy_path("insurance-claims.toml");
    let bindings = insurance_example().join("bindings.offline.toml");
    sandbox.warden_json(&[
        "run",
        guests::SCRIPTED,
        "--policy",
        utf8(&policy),
        "--bindings",
        utf8(&bindings),
        "--input",
        utf8(&input),
    ])
}

/// A plan through both gates lawfully for the claim in `file`: coverage checked, the
/// claim's value and class asked of the models with the features Warden recomputes, then
/// `then` after the classification, and a finish approving `payout`.
fn classified(file: &str, then: Value, payout: f64) -> (Value, Value) {
    let (claim, indicators) = scripted(file);
    let plan = json!([
        [{"transition": {"to": "coverage_check"}}],
        [{"tool": {"name": "policy_register", "args": {"policy_number": claim["policy_number"]}}},
         {"model": {"name": "claim_value", "features": {"amount": claim["amount"]}}},
         {"transition_citing": {"to": "classification", "saved": 0}}],
        std::iter::once(json!({"model": {"name": "claim_classifier", "features": indicators}}))
            .chain(then.as_array().cloned().unwrap_or_default())
            .collect::<Vec<_>>(),
        [{"finish": {"output": {"decision": "approved", "claim_id": claim["claim_id"],
                                "payout": payout, "reasons": ["routine"]}}}]
    ]);
    (claim, plan)
}

/// The payout is bounded by the claim, computed by Warden from the run's input: an agent
/// through every gate lawfully still cannot pay more than was claimed, nor a negative sum,
/// nor leave the payout out.
#[test]
fn a_crafted_agent_cannot_pay_more_than_was_claimed() {
    let sandbox = Sandbox::new();
    let approve = json!([{"transition_citing": {"to": "approved", "saved": 1}}]);
    for (payout, says) in [
        (
            1_000_000.0,
            "at most input:/amount (`input:/amount` is 1840 for this input)",
        ),
        (1840.01, "at most input:/amount"),
        (-5.0, "at least 0"),
    ] {
        let (claim, plan) = classified("01-glass-fast-track.json", approve.clone(), payout);
        let (code, report) = attack(&sandbox, "greedy.json", &claim, plan);
        assert_eq!(code, 11, "{payout}: {report:#}");
        let broken = &denial(&report)["OutputRuleBroken"];
        assert_eq!(
            (&broken["state"], &broken["field"]),
            (&json!("approved"), &json!("payout")),
            "{report:#}"
        );
        assert!(
            broken["rule"].as_str().is_some_and(|r| r.contains(says)),
            "{payout}: {report:#}"
        );
    }
    // The whole claim, to the cent, is within the bound.
    let (claim, plan) = classified("01-glass-fast-track.json", approve, 1840.0);
    let (code, report) = attack(&sandbox, "whole.json", &claim, plan);
    assert_eq!(
        (code, &report["state"]),
        (0, &json!("approved")),
        "{report:#}"
    );
}

/// The rule of a run's denial, asserting the run failed on one.
fn denial(report: &Value) -> Value {
    assert_eq!(report["status"], "failed", "{report:#}");
    let rule = report["failure"]["Denied"]["rule"].clone();
    assert!(rule.is_object(), "not a denial: {report:#}");
    rule
}

#[test]
fn a_crafted_agent_cannot_go_around_the_authority_limit_or_the_classifier() {
    let sandbox = Sandbox::new();
    let (large, _) = scripted("03-high-value-adjuster.json");
    let lookup = json!({"tool": {"name": "policy_register", "args": {"policy_number": large["policy_number"]}}});
    let plan = |coverage: Value| json!([[{"transition": {"to": "coverage_check"}}], coverage]);

    // Understating the 36,000 claim to the authority model: denied, naming the feature.
    let (_, report) = attack(
        &sandbox,
        "understated.json",
        &large,
        plan(
            json!([lookup, {"model": {"name": "claim_value", "features": {"amount": 20000.0}}},
                    {"transition_citing": {"to": "classification", "saved": 0}}]),
        ),
    );
    let rule = denial(&report);
    assert_eq!(
        rule["FeatureNotReconciled"]["feature"], "amount",
        "{report:#}"
    );
    assert_eq!(
        rule["FeatureNotReconciled"]["expected"].as_f64(),
        Some(36000.0)
    );

    // Not asking the authority model at all: nothing for the gate to rest on, an adjuster.
    let (code, report) = attack(
        &sandbox,
        "unvalued.json",
        &large,
        plan(json!([lookup, {"transition": {"to": "classification"}}])),
    );
    assert_eq!(
        (code, &report["state"]),
        (10, &json!("adjuster_review")),
        "{report:#}"
    );

    // Paying straight from the coverage check: not a transition of the policy.
    let (_, report) = attack(
        &sandbox,
        "shortcut.json",
        &large,
        plan(json!([lookup, {"transition": {"to": "approved"}}])),
    );
    assert_eq!(
        denial(&report)["TransitionNotDeclared"],
        json!({"from": "coverage_check", "to": "approved"})
    );

    // Through both gates lawfully, then: declining once the classifier has spoken is not
    // the agent's to do; paying a hesitant classification stops at the gate, and what the
    // agent does after that in the step changes nothing.
    let classified = |file: &str, then: Value| classified(file, then, 1590.0);
    let (claim, plan) = classified(
        "04-injury-complex.json",
        json!([{"transition": {"to": "declined"}}]),
    );
    let (_, report) = attack(&sandbox, "decline.json", &claim, plan);
    assert_eq!(
        denial(&report)["TransitionNotDeclared"],
        json!({"from": "classification", "to": "declined"})
    );
    let (claim, plan) = classified(
        "02-gate-escalates.json",
        json!([{"transition_citing": {"to": "approved", "saved": 1}},
               {"transition": {"to": "approved"}}]),
    );
    let (code, report) = attack(&sandbox, "insist.json", &claim, plan);
    assert_eq!(
        (code, &report["status"], &report["state"]),
        (10, &json!("awaiting_review"), &json!("adjuster_review")),
        "{report:#}"
    );

    // The same agent is paid on a confident routine claim: the refusals above are the
    // policy's, not the agent's inability.
    let (claim, plan) = classified(
        "01-glass-fast-track.json",
        json!([{"transition_citing": {"to": "approved", "saved": 1}}]),
    );
    let (code, report) = attack(&sandbox, "lawful.json", &claim, plan);
    assert_eq!(
        (code, &report["state"]),
        (0, &json!("approved")),
        "{report:#}"
    );
}
