//! Confidence gates against a hostile agent: a gate compares the host's probability of
//! the label it names, on the latest inference of its model in this visit of the state,
//! whose features the host reconciled with the run's record; its escalation is final;
//! and a run's output must say what its terminal state says. Each test is an attack that
//! passed before these rules (issue #13) and is now refused, with the reason recorded.

use serde_json::{Value, json};
use warden::{FailureReason, GateShortfall, Journal, RecordBody, Rule, RunReport, Status};
use warden_test_guests as guests;

use crate::support::Sandbox;

/// A gate on `approved` needing P(safe) >= 0.9 from `risk`, whose one feature `x` must be
/// the input's `x`. The `risk` scorecard (tests/fixtures/risk.toml) gives
/// P(risky) = sigmoid(x): x = -5 is safe (P(safe) = 0.993), x = 5 is risky.
pub const GATES: &str = r#"
[policy]
name = "gates"
version = "1"
initial = "start"

[capabilities]
models = ["risk"]

[budgets]
fuel_per_step = 200_000_000
max_steps = 10
wall_clock_ms = 10_000

[states.start]
models = ["risk"]
transitions = ["start", "working", "approved", "done"]

[states.working]
models = ["risk"]
transitions = ["approved", "done"]

[states.approved]
terminal = true

[states.approved.output]
decision = "approved"

[states.done]
terminal = true

[states.review]
review = true
transitions = ["approved", "done"]

[states.review.decisions.approved]
roles = ["approver"]

[states.review.decisions.done]
roles = ["approver"]

[[gates]]
to = "approved"
model = "risk"
label = "safe"
min_confidence = 0.9
otherwise = "review"

[models.risk.features]
x = "input:/x"
"#;

/// Runs the scripted guest with `plan` on a case with feature `x` under [`GATES`] (with
/// `extra` policy text appended).
fn scripted(sandbox: &Sandbox, x: f64, extra: &str, plan: Value) -> (Journal, RunReport) {
    let journal = sandbox.journal();
    let policy = format!("{GATES}{extra}");
    let report = sandbox.run_text(
        &journal,
        guests::SCRIPTED,
        &policy,
        &json!({"x": x, "plan": plan}),
    );
    assert_eq!(
        journal.verify(&report.run_id).expect("verify").problem,
        None
    );
    (journal, report)
}

/// The rule of the decision on the run's transition to `approved`.
fn gate_rule(journal: &Journal, run_id: &str) -> Rule {
    journal
        .records(run_id)
        .expect("records")
        .into_iter()
        .find_map(|r| match r.body {
            RecordBody::HostCall {
                request, decision, ..
            } if warden::describe_request_bytes(&request).contains("transition -> approved") => {
                Some(decision.rule)
            }
            _ => None,
        })
        .expect("the transition to approved is journaled")
}

fn denied(report: &RunReport) -> &Rule {
    match &report.outcome.reason {
        Some(FailureReason::Denied { rule, .. }) => rule,
        other => panic!("the run was not denied: {other:?} {report:#?}"),
    }
}

const APPROVE: &str = r#"{"transition_citing": {"to": "approved", "saved": 0}}"#;

fn action(text: &str) -> Value {
    serde_json::from_str(text).expect("action")
}

fn finish_approved() -> Value {
    json!({"finish": {"output": {"decision": "approved"}}})
}

/// Regression (any label passed): a probability of the *risky* label of 0.993 used to
/// pass the `approved` gate as "confidence 0.993". The gate compares P(safe) = 0.007.
#[test]
fn a_confident_prediction_of_the_wrong_label_does_not_pass_the_gate() {
    let sandbox = Sandbox::new();
    let plan = json!([[{"model_from_input": {"name": "risk", "fields": ["x"]}}, action(APPROVE)]]);
    let (journal, report) = scripted(&sandbox, 5.0, "", plan);
    assert_eq!(report.outcome.status, Status::AwaitingReview, "{report:#?}");
    match gate_rule(&journal, &report.run_id) {
        Rule::GateLabelNotMet {
            label,
            probability: Some(p),
            shortfall,
            ..
        } => {
            assert_eq!(label, "safe");
            assert!(p < 0.01, "P(safe) = {p}");
            assert_eq!(shortfall, GateShortfall::BelowThreshold);
        }
        other => panic!("{other:?}"),
    }
}

/// Regression (features were whatever the guest said): an agent that sends the best
/// possible feature instead of the case's is denied before the model is asked, the
/// denial naming the feature, the value sent and the value expected.
#[test]
fn made_up_features_are_denied_naming_the_feature() {
    let sandbox = Sandbox::new();
    let plan = json!([[{"model": {"name": "risk", "features": {"x": -9.0}}}, action(APPROVE)]]);
    let (_, report) = scripted(&sandbox, 5.0, "", plan);
    assert_eq!(report.outcome.status, Status::Failed);
    match denied(&report) {
        Rule::FeatureNotReconciled {
            model,
            feature,
            sent,
            expected,
            ..
        } => {
            assert_eq!((model.as_str(), feature.as_str()), ("risk", "x"));
            assert_eq!((*sent, *expected), (Some(-9.0), Some(5.0)));
        }
        other => panic!("{other:?}"),
    }
    let text = report
        .outcome
        .reason
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        text.contains("`x`") && text.contains("sent -9") && text.contains("expected 5"),
        "{text}"
    );
}

/// A feature the policy does not declare is refused too (it would be a channel for
/// made-up evidence the reconciliation never looks at).
#[test]
fn an_undeclared_feature_is_denied() {
    let sandbox = Sandbox::new();
    let plan = json!([[{"model": {"name": "risk", "features": {"x": -5.0, "bonus": 1}}}]]);
    let (_, report) = scripted(&sandbox, -5.0, "", plan);
    assert!(
        matches!(denied(&report), Rule::FeatureUndeclared { feature, .. } if feature == "bonus")
    );
}

/// Regression (shopping): asking the model twice and citing the answer it liked. The cited
/// inference must be the latest of its model in this visit of the state.
#[test]
fn citing_an_older_answer_of_the_model_is_denied() {
    let sandbox = Sandbox::new();
    let ask = json!({"model_from_input": {"name": "risk", "fields": ["x"]}});
    let plan = json!([[ask, ask, action(APPROVE)]]);
    let (_, report) = scripted(&sandbox, -5.0, "", plan);
    match denied(&report) {
        Rule::EvidenceNotLatest {
            inference,
            latest: Some(latest),
            ..
        } => {
            assert!(inference.0 < latest.0, "{inference:?} {latest:?}");
        }
        other => panic!("{other:?}"),
    }
}

/// A policy may cap the calls of a model per visit of a state: the second is denied.
#[test]
fn a_call_cap_per_state_denies_the_next_call() {
    let sandbox = Sandbox::new();
    let ask = json!({"model_from_input": {"name": "risk", "fields": ["x"]}});
    let cap = "\n[models.risk]\nmax_calls_per_state = 1\n";
    let (_, report) = scripted(&sandbox, -5.0, cap, json!([[ask, ask]]));
    assert!(
        matches!(denied(&report), Rule::CallCapExceeded { name, max: 1, .. } if name == "risk"),
        "{report:#?}"
    );
    // One call per visit: a new visit of the state may ask again.
    let plan = json!([[ask, {"transition": {"to": "working"}}], [ask, action(r#"{"transition_citing": {"to": "approved", "saved": 1}}"#)], [finish_approved()]]);
    let (_, report) = scripted(&sandbox, -5.0, cap, plan);
    assert_eq!(report.outcome.status, Status::Completed, "{report:#?}");
}

/// Regression (stale evidence): an inference made in an earlier state is not evidence for
/// a transition from this one.
#[test]
fn citing_an_inference_made_in_an_earlier_state_is_denied() {
    let sandbox = Sandbox::new();
    let ask = json!({"model_from_input": {"name": "risk", "fields": ["x"]}});
    let plan = json!([[ask, {"transition": {"to": "working"}}], [action(APPROVE)]]);
    let (_, report) = scripted(&sandbox, -5.0, "", plan);
    assert!(
        matches!(denied(&report), Rule::EvidenceNotLatest { latest: None, state, .. } if state == "working"),
        "{report:#?}"
    );
    // Not citing, the gate looks for an inference in this visit and finds none: review.
    let plan =
        json!([[ask, {"transition": {"to": "working"}}], [{"transition": {"to": "approved"}}]]);
    let (journal, report) = scripted(&sandbox, -5.0, "", plan);
    assert_eq!(report.outcome.status, Status::AwaitingReview);
    assert!(matches!(
        gate_rule(&journal, &report.run_id),
        Rule::GateLabelNotMet {
            shortfall: GateShortfall::NoInference,
            ..
        }
    ));
}

/// The honest path still works: a confident, reconciled, latest inference of the label
/// the gate names passes it, and the decision says so.
#[test]
fn a_confident_reconciled_latest_inference_passes() {
    let sandbox = Sandbox::new();
    let plan = json!([[{"model_from_input": {"name": "risk", "fields": ["x"]}}, action(APPROVE)], [finish_approved()]]);
    let (journal, report) = scripted(&sandbox, -5.0, "", plan);
    assert_eq!(report.outcome.status, Status::Completed, "{report:#?}");
    match gate_rule(&journal, &report.run_id) {
        Rule::GateLabelMet {
            label,
            probability,
            reconciled,
            ..
        } => {
            assert_eq!((label.as_str(), reconciled), ("safe", 1));
            assert!(probability > 0.99);
        }
        other => panic!("{other:?}"),
    }
    let inference = journal
        .records(&report.run_id)
        .expect("records")
        .into_iter()
        .find_map(|r| match r.body {
            RecordBody::Inference(i) => Some(i),
            _ => None,
        })
        .expect("the inference is recorded");
    assert_eq!(
        inference.card.as_ref().map(|c| c.version.as_str()),
        Some("test-1")
    );
    assert_eq!(inference.features.as_ref().map(|f| f.reconciled), Some(1));
}

/// Regression (output not bound to the state): a run ending in `approved` must announce
/// an approval; anything else is denied at `finish`.
#[test]
fn the_output_must_say_what_the_terminal_state_says() {
    let sandbox = Sandbox::new();
    let plan = json!([[{"model_from_input": {"name": "risk", "fields": ["x"]}}, action(APPROVE)], [{"finish": {"output": {"decision": "declined"}}}]]);
    let (_, report) = scripted(&sandbox, -5.0, "", plan);
    match denied(&report) {
        Rule::OutputRuleBroken {
            state,
            field,
            found,
            ..
        } => {
            assert_eq!((state.as_str(), field.as_str()), ("approved", "decision"));
            assert_eq!(found, "\"declined\"");
        }
        other => panic!("{other:?}"),
    }
}

/// Regression (an escalation could be escaped): after a gate sends the run to review,
/// a trap in the rest of the step used to take it out of the review queue as `failed`.
/// It stays awaiting review, the trap recorded in its outcome.
#[test]
fn a_trap_after_an_escalation_leaves_the_run_awaiting_review() {
    let sandbox = Sandbox::new();
    let plan =
        json!([[{"model_from_input": {"name": "risk", "fields": ["x"]}}, action(APPROVE), "trap"]]);
    let (_, report) = scripted(&sandbox, 5.0, "", plan);
    assert_eq!(
        (report.outcome.status, report.outcome.state.as_str()),
        (Status::AwaitingReview, "review"),
        "{report:#?}"
    );
    assert!(
        matches!(report.outcome.reason, Some(FailureReason::Trapped { .. })),
        "the trap is recorded beside the escalation: {report:#?}"
    );
}

/// An inference id the host never gave is still refused under the new gates.
#[test]
fn a_forged_inference_id_is_still_denied() {
    let sandbox = Sandbox::new();
    let plan = json!([[{"transition_citing_id": {"to": "approved", "id": 424242}}]]);
    let (_, report) = scripted(&sandbox, -5.0, "", plan);
    assert!(
        matches!(denied(&report), Rule::EvidenceUnknown { .. }),
        "{report:#?}"
    );
    assert!(
        report
            .outcome
            .reason
            .as_ref()
            .is_some_and(|r| matches!(r, FailureReason::Denied { rule, .. } if rule.to_string().contains("never computed"))),
    );
}
