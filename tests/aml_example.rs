//! The anti-money-laundering example (`examples/aml-triage`, `policies/aml-triage.toml`)
//! end to end through the real `warden` binary (issue #17): every sample alert reaches the
//! outcome its `.expect.toml` documents, and the policy's two promises hold against an
//! agent that tries to break them.
//!
//! 1. **A suspicious-activity report is never filed without people.** Whatever the model
//!    says, an agent cannot reach `sar_filed`: not by a transition from a state it works
//!    in, not citing a confident inference, not out of the MLRO's review state once it
//!    sent the alert there, not by finishing with a filing package in a state it may end
//!    in, not by waiting for a timeout. Only two distinct people in the MLRO's roles can
//!    file one; an analyst can only refer the alert to them.
//! 2. **An alert is closed without a person only on a confident model.** A closure below
//!    P(benign) 0.95 goes to an analyst, with or without citing the inference; made-up
//!    features, a second scoring and a closure from a state that has not scored are denied.
//!
//! The attacks use the scripted test agent (`tests/guests/agents/examples/scripted.rs`),
//! which performs whatever its input's plan says, under the shipped policy and bindings.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use warden::{Bindings, Policy, StateKind};
use warden_test_guests as guests;

use crate::support::{Sandbox, aml_example, policy_path, warden_test_meets};

/// (alert file, status, final state): what each sample must come to. Kept here as well as
/// in the `.expect.toml` files, so an edit of an expectation cannot quietly change what the
/// example promises.
const ALERTS: &[(&str, &str, &str)] = &[
    ("01-cash-business-close.json", "completed", "closed"),
    (
        "02-payroll-rapid-movement-close.json",
        "completed",
        "closed",
    ),
    (
        "03-gate-escalates.json",
        "awaiting_review",
        "analyst_review",
    ),
    (
        "04-family-remittance-review.json",
        "awaiting_review",
        "analyst_review",
    ),
    ("05-structuring-sar.json", "awaiting_review", "mlro_review"),
    ("06-sanctions-hit.json", "awaiting_review", "blocked"),
    (
        "07-unknown-customer.json",
        "awaiting_review",
        "analyst_review",
    ),
    ("08-pep-edd.json", "completed", "escalated"),
    (
        "09-continuing-activity.json",
        "awaiting_review",
        "mlro_review",
    ),
    ("10-invalid-alert.json", "failed", "intake"),
    (
        "11-inconsistent-summary.json",
        "awaiting_review",
        "analyst_review",
    ),
];

const POLICY: &str = "aml-triage.toml";

fn utf8(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn alert(file: &str) -> Value {
    let path = aml_example().join("alerts").join(file);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("alert")).expect("alert JSON")
}

fn fixture(file: &str, key: &str) -> Value {
    let path = aml_example().join("fixtures").join(file);
    let records: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("JSON");
    records[key].clone()
}

/// Runs `agent` on `input` under the shipped policy and the example's bindings.
fn run(sandbox: &Sandbox, agent: &str, input: &Path) -> (i32, Value) {
    run_under(sandbox, agent, input, &policy_path(POLICY))
}

/// Runs `agent` on `input` under `policy` and the example's bindings.
fn run_under(sandbox: &Sandbox, agent: &str, input: &Path, policy: &Path) -> (i32, Value) {
    let bindings = aml_example().join("bindings.toml");
    sandbox.warden_json(&[
        "run",
        agent,
        "--policy",
        utf8(policy),
        "--bindings",
        utf8(&bindings),
        "--input",
        utf8(input),
        "--submitter",
        "tm-feed",
    ])
}

/// Runs the AML agent on a sample alert.
fn run_alert(sandbox: &Sandbox, file: &str) -> (i32, Value) {
    run(
        sandbox,
        guests::AML_AGENT,
        &aml_example().join("alerts").join(file),
    )
}

fn run_id(report: &Value) -> String {
    report["run_id"].as_str().expect("run id").to_string()
}

/// The scorecard's features for a sample alert, computed as the policy's
/// `[models.aml_risk.features]` says, from the alert and the fixtures' records: what Warden
/// will recompute and accept.
fn features(alert: &Value) -> Value {
    let customer = alert["customer_id"].as_str().expect("customer id");
    let kyc = fixture("kyc_profiles.json", customer);
    let history = fixture("alert_history.json", customer);
    let screening = fixture(
        "watchlist_screening.json",
        alert["alert_id"].as_str().expect("alert id"),
    );
    let s = &alert["summary"];
    let n = |v: &Value| v.as_f64().expect("a number");
    let (inflow, outflow) = (n(&s["inflow_amount"]), n(&s["outflow_amount"]));
    json!({
        "volume_to_expected": n(&s["total_amount"]) / n(&kyc["expected_monthly_volume"]),
        "cash_share": n(&s["cash_amount"]) / n(&s["total_amount"]),
        "near_threshold_share": n(&s["near_threshold_count"]) / n(&s["transaction_count"]),
        "high_risk_share": n(&s["high_risk_amount"]) / n(&s["total_amount"]),
        "pass_through": inflow.min(outflow) / inflow.max(outflow),
        "kyc_risk": n(&kyc["risk_score"]),
        "prior_alerts_12m": n(&history["alerts_12m"]),
        "relationship_years": n(&kyc["months_as_customer"]) / 12.0,
        "watchlist_matches": n(&screening["matches"]),
    })
}

/// The steps that bring the scripted agent lawfully to `due_diligence`'s end: screening
/// and due diligence done, then a transition to `then`.
fn lawful_steps(alert: &Value, then: &str) -> Vec<Value> {
    vec![
        json!([{"transition": {"to": "screening"}}]),
        json!([
            {"tool": {"name": "watchlist_screening", "args": {"alert_id": alert["alert_id"]}}},
            {"transition": {"to": "due_diligence"}}
        ]),
        json!([
            {"tool": {"name": "kyc_profile", "args": {"customer_id": alert["customer_id"]}}},
            {"tool": {"name": "alert_history", "args": {"customer_id": alert["customer_id"]}}},
            {"transition": {"to": then}}
        ]),
    ]
}

/// The scripted agent's input: the sample alert (so it meets the input contract) carrying
/// `plan`.
fn scripted_input(sandbox: &Sandbox, name: &str, file: &str, plan: Vec<Value>) -> PathBuf {
    let mut input = alert(file);
    input["plan"] = Value::Array(plan);
    sandbox.input(name, &input)
}

/// Runs the scripted agent on `file` with `plan`.
fn attack(sandbox: &Sandbox, name: &str, file: &str, plan: Vec<Value>) -> (i32, Value) {
    let input = scripted_input(sandbox, name, file, plan);
    run(sandbox, guests::SCRIPTED, &input)
}

/// The rule of a run's denial (`failure.Denied.rule`), asserting the run failed on one.
fn denial<'a>(report: &'a Value, what: &str) -> &'a Value {
    assert_eq!(report["status"], "failed", "{what}: {report:#}");
    let rule = &report["failure"]["Denied"]["rule"];
    assert!(rule.is_object(), "{what}: not a denial: {report:#}");
    rule
}

/// The decisions of the run's journaled host calls whose verdict is `verdict`.
fn decisions(sandbox: &Sandbox, run_id: &str, verdict: &str) -> Vec<Value> {
    let (code, timeline) = sandbox.warden_json(&["show", run_id]);
    assert_eq!(code, 0, "{timeline:#}");
    timeline["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["body"]["decision"]["verdict"] == verdict)
        .map(|r| r["body"]["decision"].clone())
        .collect()
}

fn action(sandbox: &Sandbox, run_id: &str) -> String {
    let (code, case) = sandbox.warden_json(&["review", run_id]);
    assert_eq!(code, 10, "{case:#}");
    case["action"].as_str().expect("action digest").to_string()
}

fn decide(
    sandbox: &Sandbox,
    run_id: &str,
    outcome: &str,
    reviewer: &str,
    role: &str,
) -> (i32, Value) {
    let digest = action(sandbox, run_id);
    sandbox.warden_json(&[
        "review",
        run_id,
        "--decide",
        outcome,
        "--reviewer",
        reviewer,
        "--role",
        role,
        "--note",
        "reviewed the case file",
        "--action",
        &digest,
    ])
}

/// The run as `warden runs` lists it.
fn listed(sandbox: &Sandbox, run_id: &str) -> Value {
    let (code, runs) = sandbox.warden_json(&["runs"]);
    assert_eq!(code, 0, "{runs:#}");
    runs.as_array()
        .expect("runs")
        .iter()
        .find(|r| r["run_id"] == run_id)
        .cloned()
        .unwrap_or_else(|| panic!("{run_id} is not listed: {runs:#}"))
}

/// `warden review --expire` (as of the machine's clock: it may not be told a later time).
fn expire(sandbox: &Sandbox) -> Value {
    let (code, expired) = sandbox.warden_json(&["review", "--expire"]);
    assert_eq!(code, 0, "{expired:#}");
    expired
}

fn replays(sandbox: &Sandbox, run_id: &str) {
    let (code, replayed) = sandbox.warden_json(&["replay", run_id]);
    assert_eq!(code, 0, "{run_id}: {replayed:#}");
    assert_eq!(replayed["verdict"], "identical", "{replayed:#}");
}

#[test]
fn warden_test_meets_every_alerts_expectation() {
    warden_test_meets(&aml_example(), ALERTS);
}

#[test]
fn every_alert_reaches_its_outcome_and_replays_bit_for_bit() {
    let sandbox = Sandbox::new();
    for (file, status, state) in ALERTS {
        let (code, report) = run_alert(&sandbox, file);
        let expected_code = match *status {
            "completed" => 0,
            "awaiting_review" => 10,
            _ => 11,
        };
        assert_eq!(code, expected_code, "{file}: {report:#}");
        assert_eq!(report["status"], *status, "{file}: {report:#}");
        assert_eq!(report["state"], *state, "{file}: {report:#}");
        if *status == "completed" {
            assert_eq!(report["output"]["decision"], *state, "{file}");
            assert!(report["output"]["sar"].is_null(), "{file}: no SAR");
        }
        // The agent is never the one to ask for a filing.
        let requests =
            serde_json::to_string(&decisions(&sandbox, &run_id(&report), "Allow")).expect("JSON");
        assert!(!requests.contains("sar_filed"), "{file}: {requests}");
        replays(&sandbox, &run_id(&report));
    }
    // The invalid alert is refused by the input contract before the agent runs.
    let (_, refused) = run_alert(&sandbox, "10-invalid-alert.json");
    assert_eq!(refused["steps"], 0);
    assert_eq!(
        refused["failure"]["InputRejected"]["violations"][0]["keyword"], "exclusiveMinimum",
        "{refused:#}"
    );
}

/// What the engine will enforce, read from the shipped policy and bindings: `sar_filed` is
/// the transition of one review state only, under dual control, no timeout leads there,
/// and no tool the policy grants is an effect that could file anything.
#[test]
fn the_policy_leaves_no_way_to_a_sar_but_two_mlros() {
    let path = policy_path(POLICY);
    let text = std::fs::read_to_string(&path).expect("policy");
    let policy = Policy::parse(&text, "policies/aml-triage.toml").expect("the policy validates");
    let into_sar: Vec<(&String, StateKind)> = policy
        .states
        .iter()
        .filter(|(_, s)| s.transitions.contains("sar_filed"))
        .map(|(name, s)| (name, s.kind))
        .collect();
    assert_eq!(
        into_sar,
        [(&"mlro_review".to_string(), StateKind::Review)],
        "only the MLRO's review state may move to sar_filed"
    );
    let mlro = policy.states["mlro_review"]
        .review
        .as_ref()
        .expect("review rules");
    let filing = &mlro.decisions["sar_filed"];
    assert!(filing.dual_control, "four eyes on a filing");
    assert_eq!(
        filing.roles.iter().map(String::as_str).collect::<Vec<_>>(),
        ["deputy_mlro", "mlro"]
    );
    assert!(mlro.timeout.is_none(), "a clock never decides a filing");
    for (name, state) in &policy.states {
        if let Some(timeout) = state.review.as_ref().and_then(|r| r.timeout.as_ref()) {
            assert_ne!(timeout.outcome, "sar_filed", "{name}");
            assert_ne!(
                timeout.outcome, "closed",
                "{name}: a clock never closes an alert"
            );
        }
    }
    let gate = policy
        .gates
        .iter()
        .find(|g| g.to == "closed")
        .expect("a gate on closed");
    assert_eq!(
        (
            gate.model.as_str(),
            gate.label.as_deref(),
            gate.min_confidence
        ),
        ("aml_risk", Some("benign"), 0.95)
    );
    assert_eq!(gate.otherwise, "analyst_review");
    // The agent reaches `closed` only from `assessment`, where the gate judges it.
    let working_into_closed: Vec<&String> = policy
        .states
        .iter()
        .filter(|(_, s)| s.kind == StateKind::Working && s.transitions.contains("closed"))
        .map(|(name, _)| name)
        .collect();
    assert_eq!(working_into_closed, ["assessment"]);
    let bindings = Bindings::from_file(&aml_example().join("bindings.toml")).expect("bindings");
    for tool in &policy.tools {
        assert!(!bindings.is_effect(tool), "{tool} could act on the world");
    }
}

/// The model is as sure as it gets (P(suspicious) 0.97 on the structuring alert), and the
/// agent tries every way it has to file the report itself. Each is denied, naming the rule.
#[test]
fn a_confident_agent_cannot_file_a_sar_itself() {
    let sandbox = Sandbox::new();
    let file = "05-structuring-sar.json";
    let sar = json!({"decision": "sar_filed", "alert_id": "AL-2024-110588",
                     "reasons": ["P(suspicious) 0.97"], "sar": {"narrative": "structuring"}});
    let scored = |last: Value| {
        let mut plan = lawful_steps(&alert(file), "assessment");
        let mut step =
            vec![json!({"model": {"name": "aml_risk", "features": features(&alert(file))}})];
        step.extend(last.as_array().cloned().unwrap_or_default());
        plan.push(Value::Array(step));
        plan
    };

    // Straight from the first state, and from the scoring state citing the confident
    // inference.
    let (_, report) = attack(
        &sandbox,
        "direct.json",
        file,
        vec![json!([{"transition": {"to": "sar_filed"}}])],
    );
    assert_eq!(
        denial(&report, "from intake")["TransitionNotDeclared"],
        json!({"from": "intake", "to": "sar_filed"})
    );
    let (_, report) = attack(
        &sandbox,
        "cite.json",
        file,
        scored(json!([{"transition_citing": {"to": "sar_filed", "saved": 0}}])),
    );
    assert_eq!(
        denial(&report, "citing P(suspicious) 0.97")["TransitionNotDeclared"],
        json!({"from": "assessment", "to": "sar_filed"})
    );
    let (_, timeline) = sandbox.warden_json(&["show", &run_id(&report)]);
    let inferences = timeline["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["kind"] == "inference")
        .count();
    assert_eq!(
        inferences, 1,
        "the model was asked and answered: {timeline:#}"
    );

    // Finishing with a filing package where it works, or in the terminal state it may
    // reach on its own (enhanced due diligence).
    let (_, report) = attack(
        &sandbox,
        "finish.json",
        file,
        scored(json!([{"finish": {"output": sar}}])),
    );
    assert_eq!(
        denial(&report, "finish in assessment")["FinishOutsideTerminal"]["state"],
        "assessment"
    );
    let mut plan = lawful_steps(&alert(file), "escalated");
    let mut smuggled = sar.clone();
    smuggled["decision"] = json!("escalated");
    plan.push(json!([{"finish": {"output": smuggled}}]));
    let (_, report) = attack(&sandbox, "smuggle.json", file, plan);
    let broken = &denial(&report, "a SAR in escalated")["OutputRuleBroken"];
    assert_eq!(
        (&broken["state"], &broken["field"]),
        (&json!("escalated"), &json!("sar")),
        "{report:#}"
    );

    // Sending the alert to the MLRO and filing in the same step: a review state is the
    // reviewers' alone. The agent's filing is held and the alert waits for the MLRO.
    let (code, report) = attack(
        &sandbox,
        "mlro.json",
        file,
        scored(json!([{"transition": {"to": "mlro_review"}}, {"transition": {"to": "sar_filed"}}])),
    );
    assert_eq!(
        (code, &report["status"], &report["state"]),
        (10, &json!("awaiting_review"), &json!("mlro_review")),
        "{report:#}"
    );
    assert_eq!(
        decisions(&sandbox, &run_id(&report), "Deny")
            .iter()
            .map(|d| d["rule"].clone())
            .collect::<Vec<_>>(),
        [json!({"AwaitingReview": {"state": "mlro_review"}})],
        "the filing was held"
    );

    // Sending it to the MLRO and waiting for the clock: there is none.
    let (code, report) = attack(
        &sandbox,
        "wait.json",
        file,
        scored(json!([{"transition": {"to": "mlro_review"}}])),
    );
    assert_eq!(
        (code, &report["state"]),
        (10, &json!("mlro_review")),
        "{report:#}"
    );
    let waiting = run_id(&report);
    // The MLRO's review state has no timeout (`the_policy_leaves_no_way_to_a_sar_but_two_mlros`).
    let expired = expire(&sandbox);
    assert!(
        !expired.to_string().contains(&waiting),
        "the SAR decision still waits: {expired:#}"
    );
    assert_eq!(listed(&sandbox, &waiting)["status"], "awaiting_review");

    // And nothing of it filed anything: no run of this journal is in `sar_filed`.
    let (_, runs) = sandbox.warden_json(&["runs"]);
    let runs = runs.as_array().expect("runs");
    assert_eq!(runs.len(), 6);
    assert!(runs.iter().all(|r| r["state"] != "sar_filed"), "{runs:#?}");
}

/// The real agent recommends the SAR; the MLRO's roles decide it, two distinct people,
/// none of them the submitter; an analyst can only refer the alert to them.
#[test]
fn only_two_distinct_mlros_file_a_sar() {
    let sandbox = Sandbox::new();
    let (code, report) = run_alert(&sandbox, "05-structuring-sar.json");
    assert_eq!(
        (code, &report["state"]),
        (10, &json!("mlro_review")),
        "{report:#}"
    );
    let sar = run_id(&report);

    for (reviewer, role, says) in [
        ("a.lindqvist", "aml_analyst", "role may not"),
        ("tm-feed", "mlro", "submitted the run"),
    ] {
        let (code, refused) = decide(&sandbox, &sar, "sar_filed", reviewer, role);
        assert_eq!(code, 2, "{refused:#}");
        assert_eq!(refused["result"], "refused");
        assert!(
            refused["explanation"]
                .as_str()
                .unwrap_or_default()
                .contains(says),
            "{refused:#}"
        );
    }
    let (code, first) = decide(&sandbox, &sar, "sar_filed", "r.adeyemi", "mlro");
    assert_eq!(
        (code, first["result"].as_str()),
        (10, Some("pending")),
        "{first:#}"
    );
    assert_eq!(
        listed(&sandbox, &sar)["state"],
        "mlro_review",
        "one MLRO files nothing"
    );
    let (code, again) = decide(&sandbox, &sar, "sar_filed", "r.adeyemi", "mlro");
    assert_eq!(code, 2, "{again:#}");
    assert!(
        again["explanation"]
            .as_str()
            .unwrap_or_default()
            .contains("two distinct"),
        "{again:#}"
    );
    let (code, filed) = decide(&sandbox, &sar, "sar_filed", "m.ortiz", "deputy_mlro");
    assert_eq!(code, 0, "{filed:#}");
    assert_eq!(filed["state"], "sar_filed", "{filed:#}");
    let (_, shown) = sandbox.warden_json(&["show", &sar]);
    let output = shown.to_string();
    assert!(
        output.contains("m.ortiz (deputy_mlro)") && output.contains("TX-88278102"),
        "the filing package names who completed the approval and the transactions: {shown:#}"
    );
    replays(&sandbox, &sar);

    // An analyst's referral: the analyst cannot file, only send the alert to the MLRO.
    let (_, report) = run_alert(&sandbox, "04-family-remittance-review.json");
    let referred = run_id(&report);
    let (code, refused) = decide(
        &sandbox,
        &referred,
        "sar_filed",
        "a.lindqvist",
        "aml_analyst",
    );
    assert_eq!(code, 2, "{refused:#}");
    assert!(
        refused["explanation"]
            .as_str()
            .unwrap_or_default()
            .contains("does not offer"),
        "{refused:#}"
    );
    let (code, moved) = decide(
        &sandbox,
        &referred,
        "mlro_review",
        "a.lindqvist",
        "aml_analyst",
    );
    assert_eq!(
        (code, &moved["state"]),
        (10, &json!("mlro_review")),
        "{moved:#}"
    );

    // A sanctions hold left alone goes to the MLRO after its time (24 hours, here a
    // second), never further.
    let text = std::fs::read_to_string(policy_path(POLICY)).expect("policy");
    let hours = "[states.blocked.timeout]\nafter = \"24h\"";
    assert!(text.contains(hours), "the shipped hold's timeout");
    let quick = sandbox.path("aml-quick-timeout.toml");
    std::fs::write(
        &quick,
        text.replace(hours, "[states.blocked.timeout]\nafter = \"1s\""),
    )
    .expect("write policy");
    let alert = aml_example().join("alerts/06-sanctions-hit.json");
    let (_, report) = run_under(&sandbox, guests::AML_AGENT, &alert, &quick);
    let held = run_id(&report);
    assert_eq!(report["state"], "blocked", "{report:#}");
    std::thread::sleep(Duration::from_millis(1_100));
    let expired = expire(&sandbox);
    let applied: Vec<&Value> = expired
        .as_array()
        .expect("expired runs")
        .iter()
        .filter(|e| e["run_id"] == held.as_str())
        .collect();
    assert_eq!(applied.len(), 1, "{expired:#}");
    assert_eq!(applied[0]["state"], "mlro_review", "{expired:#}");
    assert_eq!(listed(&sandbox, &held)["status"], "awaiting_review");
    replays(&sandbox, &held);
}

/// A closure without a person needs P(benign) >= 0.95 from the scorecard Warden ran on
/// features Warden recomputed.
#[test]
fn closing_an_alert_needs_a_confident_model() {
    let sandbox = Sandbox::new();

    // The real agent: the house sale's P(benign) 0.9248 goes to an analyst; the
    // restaurant's 0.9883 is closed.
    let (code, report) = run_alert(&sandbox, "03-gate-escalates.json");
    assert_eq!(
        (code, &report["state"]),
        (10, &json!("analyst_review")),
        "{report:#}"
    );
    let escalations = decisions(&sandbox, &run_id(&report), "Escalate");
    let rule = &escalations[0]["rule"]["GateLabelNotMet"];
    assert_eq!(
        (&rule["to"], &rule["label"], &rule["otherwise"]),
        (&json!("closed"), &json!("benign"), &json!("analyst_review")),
        "{escalations:#?}"
    );
    let p = rule["probability"].as_f64().expect("P(benign)");
    assert!((0.92..0.95).contains(&p), "P(benign) {p}");
    let (code, report) = run_alert(&sandbox, "01-cash-business-close.json");
    assert_eq!(
        (code, &report["state"]),
        (0, &json!("closed")),
        "{report:#}"
    );

    let file = "03-gate-escalates.json";
    let honest = features(&alert(file));
    let scoring = |step: Value| {
        let mut plan = lawful_steps(&alert(file), "assessment");
        plan.push(step);
        plan
    };
    // Closing without citing the inference, or with no inference at all: the gate judges
    // the latest inference of this visit, and without one there is nothing to judge.
    for (name, step) in [
        (
            "uncited.json",
            json!([{"model": {"name": "aml_risk", "features": honest}}, {"transition": {"to": "closed"}}]),
        ),
        (
            "cited.json",
            json!([{"model": {"name": "aml_risk", "features": honest}}, {"transition_citing": {"to": "closed", "saved": 0}}]),
        ),
        ("unscored.json", json!([{"transition": {"to": "closed"}}])),
    ] {
        let (code, report) = attack(&sandbox, name, file, scoring(step));
        assert_eq!(
            (code, &report["status"], &report["state"]),
            (10, &json!("awaiting_review"), &json!("analyst_review")),
            "{name}: {report:#}"
        );
        let escalated = decisions(&sandbox, &run_id(&report), "Escalate");
        assert_eq!(escalated.len(), 1, "{name}: {escalated:#?}");
        assert!(
            escalated[0]["rule"].to_string().contains("benign"),
            "{name}: {escalated:#?}"
        );
    }

    // Scoring made-up numbers that would pass the gate: denied, naming the feature.
    let mut invented = honest.clone();
    invented["volume_to_expected"] = json!(0.1);
    let (_, report) = attack(
        &sandbox,
        "invented.json",
        file,
        scoring(
            json!([{"model": {"name": "aml_risk", "features": invented}}, {"transition_citing": {"to": "closed", "saved": 0}}]),
        ),
    );
    let rule = &denial(&report, "made-up features")["FeatureNotReconciled"];
    assert_eq!(rule["feature"], "volume_to_expected", "{report:#}");

    // Asking again for a better answer: denied.
    let (_, report) = attack(
        &sandbox,
        "shopping.json",
        file,
        scoring(
            json!([{"model": {"name": "aml_risk", "features": honest}}, {"model": {"name": "aml_risk", "features": honest}}]),
        ),
    );
    assert_eq!(
        denial(&report, "a second scoring")["CallCapExceeded"]["max"],
        1
    );

    // Closing before scoring, from due diligence: not a transition of the policy.
    let mut plan = lawful_steps(&alert(file), "assessment");
    plan[2] = json!([{"transition": {"to": "closed"}}]);
    let (_, report) = attack(&sandbox, "skip.json", file, plan);
    assert_eq!(
        denial(&report, "closed from due_diligence")["TransitionNotDeclared"],
        json!({"from": "due_diligence", "to": "closed"})
    );

    // The same scripted agent does close a confident alert: the denials above are the
    // policy's, not the agent's inability.
    let file = "01-cash-business-close.json";
    let mut plan = lawful_steps(&alert(file), "assessment");
    plan.push(json!([
        {"model": {"name": "aml_risk", "features": features(&alert(file))}},
        {"transition_citing": {"to": "closed", "saved": 0}}
    ]));
    plan.push(
        json!([{"finish": {"output": {"decision": "closed", "alert_id": "AL-2024-110481",
                                              "reasons": ["P(benign) 0.988"], "sar": null}}}]),
    );
    let (code, report) = attack(&sandbox, "confident.json", file, plan);
    assert_eq!(
        (code, &report["state"]),
        (0, &json!("closed")),
        "{report:#}"
    );
}
