//! Tests of `enforce`, the one function that grants authority, under the rules of
//! edition 1 (gates on the model's confidence in its own label), by which edition-1 runs
//! keep replaying. The rules of edition 2 are tested in `tests_grounded.rs`.

use super::*;

/// Two working states, two terminal states, a review state, a gate on `approved`.
const POLICY: &str = r#"
[policy]
name = "decision-tests"
version = "1"
initial = "intake"

[capabilities]
tools = ["bureau", "ledger"]
models = ["pd", "fraud"]

[states.intake]
tools = ["bureau"]
models = ["pd", "fraud"]
transitions = ["assess", "approved", "declined", "review"]

[states.assess]
tools = ["ledger"]
transitions = ["approved", "declined"]

[states.approved]
terminal = true

[states.declined]
terminal = true

[states.review]
review = true
transitions = ["approved", "declined"]

[[gates]]
to = "approved"
model = "pd"
min_confidence = 0.9
otherwise = "review"
"#;

fn policy() -> Policy {
    match Policy::parse_recorded(POLICY, "decision-tests.toml", crate::edition::Edition::V1) {
        Ok(policy) => policy,
        Err(e) => panic!("test policy does not parse: {e}"),
    }
}

fn inference(id: u64, model: &str, confidence: f64) -> InferenceRecord {
    InferenceRecord {
        id: InferenceId(id),
        model: model.into(),
        confidence,
    }
}

/// Decides `request` in `state`, no transition yet this step, not finished.
fn decide_in(state: &str, inferences: &[InferenceRecord], request: &Request) -> Decision {
    let run = RunView {
        state,
        escalated: false,
        transitioned_this_step: false,
        finished: false,
        inferences,
        evidence: None,
    };
    enforce(&policy(), &run, request)
}

fn tool(name: &str) -> Request {
    Request::Tool {
        name: name.into(),
        args: "{}".into(),
    }
}

fn model(name: &str) -> Request {
    Request::Model {
        name: name.into(),
        features: "{}".into(),
    }
}

fn to(state: &str) -> Request {
    Request::Transition {
        to: state.into(),
        evidence: None,
    }
}

fn citing(state: &str, id: u64) -> Request {
    Request::Transition {
        to: state.into(),
        evidence: Some(InferenceId(id)),
    }
}

fn finish() -> Request {
    Request::Finish {
        output: "{}".into(),
    }
}

fn protocol_requests() -> [Request; 4] {
    [
        Request::Input,
        Request::State,
        Request::Log {
            level: warden_guest::LogLevel::Info,
            message: "hi".into(),
        },
        Request::Abort {
            reason: "no".into(),
        },
    ]
}

#[test]
fn run_protocol_is_always_allowed() {
    for state in ["intake", "assess", "approved", "review"] {
        for request in protocol_requests() {
            assert_eq!(
                decide_in(state, &[], &request),
                decide(Verdict::Allow, Rule::RunProtocol),
                "{request:?} in {state}"
            );
        }
    }
}

#[test]
fn capabilities_are_allowed_only_in_the_states_that_list_them() {
    let allowed = |kind, name: &str, state: &str| {
        decide(
            Verdict::Allow,
            Rule::CapabilityAllowed {
                kind,
                name: name.into(),
                state: state.into(),
            },
        )
    };
    let not_in_state = |kind, name: &str, state: &str| {
        decide(
            Verdict::Deny,
            Rule::CapabilityNotInState {
                kind,
                name: name.into(),
                state: state.into(),
            },
        )
    };
    let (tool_kind, model_kind) = (CapabilityKind::Tool, CapabilityKind::Model);
    assert_eq!(
        decide_in("intake", &[], &tool("bureau")),
        allowed(tool_kind, "bureau", "intake")
    );
    assert_eq!(
        decide_in("intake", &[], &tool("ledger")),
        not_in_state(tool_kind, "ledger", "intake")
    );
    assert_eq!(
        decide_in("assess", &[], &tool("ledger")),
        allowed(tool_kind, "ledger", "assess")
    );
    assert_eq!(
        decide_in("assess", &[], &tool("bureau")),
        not_in_state(tool_kind, "bureau", "assess")
    );
    assert_eq!(
        decide_in("intake", &[], &model("pd")),
        allowed(model_kind, "pd", "intake")
    );
    assert_eq!(
        decide_in("assess", &[], &model("pd")),
        not_in_state(model_kind, "pd", "assess")
    );
    // Terminal and review states list nothing: nothing is allowed there.
    for state in ["approved", "review"] {
        assert_eq!(
            decide_in(state, &[], &tool("bureau")),
            not_in_state(tool_kind, "bureau", state)
        );
        assert_eq!(
            decide_in(state, &[], &model("fraud")),
            not_in_state(model_kind, "fraud", state)
        );
    }
}

#[test]
fn undeclared_capabilities_are_denied_in_every_state() {
    for state in ["intake", "assess", "approved", "review", "nowhere"] {
        assert_eq!(
            decide_in(state, &[], &tool("wire_transfer")),
            decide(
                Verdict::Deny,
                Rule::CapabilityUndeclared {
                    kind: CapabilityKind::Tool,
                    name: "wire_transfer".into()
                }
            )
        );
        assert_eq!(
            decide_in(state, &[], &model("oracle")),
            decide(
                Verdict::Deny,
                Rule::CapabilityUndeclared {
                    kind: CapabilityKind::Model,
                    name: "oracle".into()
                }
            )
        );
    }
}

#[test]
fn declared_transitions_are_allowed() {
    for (from, target) in [
        ("intake", "assess"),
        ("intake", "declined"),
        ("intake", "review"),
        ("assess", "declined"),
    ] {
        assert_eq!(
            decide_in(from, &[], &to(target)),
            decide(
                Verdict::Allow,
                Rule::TransitionAllowed {
                    from: from.into(),
                    to: target.into()
                }
            )
        );
    }
}

#[test]
fn undeclared_transitions_are_denied() {
    for (from, target) in [
        ("assess", "intake"),
        ("assess", "review"),
        ("assess", "assess"),
    ] {
        assert_eq!(
            decide_in(from, &[], &to(target)),
            decide(
                Verdict::Deny,
                Rule::TransitionNotDeclared {
                    from: from.into(),
                    to: target.into()
                }
            )
        );
    }
    // A terminal state declares no way out.
    assert_eq!(
        decide_in("declined", &[], &to("assess")).rule,
        Rule::TransitionNotDeclared {
            from: "declined".into(),
            to: "assess".into()
        }
    );
}

#[test]
fn transitions_to_or_from_an_unknown_state_are_denied() {
    assert_eq!(
        decide_in("intake", &[], &to("paid_out")),
        decide(
            Verdict::Deny,
            Rule::TransitionUnknownState {
                from: "intake".into(),
                to: "paid_out".into()
            }
        )
    );
    // The run's state always comes from the policy; if it did not, nothing moves it.
    assert_eq!(
        decide_in("nowhere", &[], &to("assess")),
        decide(
            Verdict::Deny,
            Rule::TransitionUnknownState {
                from: "nowhere".into(),
                to: "assess".into()
            }
        )
    );
    assert_eq!(
        decide_in("nowhere", &[], &tool("bureau")).verdict,
        Verdict::Deny
    );
    assert_eq!(
        decide_in("nowhere", &[], &finish()).rule,
        Rule::FinishOutsideTerminal {
            state: "nowhere".into()
        }
    );
}

#[test]
fn only_one_transition_per_step() {
    let run = RunView {
        state: "assess",
        escalated: false,
        transitioned_this_step: true,
        finished: false,
        inferences: &[],
        evidence: None,
    };
    assert_eq!(
        enforce(&policy(), &run, &to("declined")),
        decide(
            Verdict::Deny,
            Rule::OneTransitionPerStep {
                from: "assess".into(),
                to: "declined".into()
            }
        )
    );
    // Even a gated one, with evidence that would meet the gate.
    let confident = [inference(1, "pd", 0.99)];
    let run = RunView {
        state: "intake",
        escalated: false,
        inferences: &confident,
        ..run
    };
    assert_eq!(
        enforce(&policy(), &run, &citing("approved", 1)).rule,
        Rule::OneTransitionPerStep {
            from: "intake".into(),
            to: "approved".into()
        }
    );
    // Capabilities are not transitions.
    assert_eq!(
        enforce(&policy(), &run, &tool("bureau")).verdict,
        Verdict::Allow
    );
}

#[test]
fn a_review_state_is_left_only_by_a_reviewer() {
    let confident = [inference(1, "pd", 0.99)];
    for target in ["approved", "declined", "intake", "paid_out"] {
        assert_eq!(
            decide_in("review", &confident, &to(target)),
            decide(
                Verdict::Deny,
                Rule::ReviewStateIsHumanOnly {
                    state: "review".into(),
                    to: target.into()
                }
            ),
            "review -> {target}"
        );
    }
}

#[test]
fn gate_is_met_by_a_confident_host_inference() {
    let inferences = [inference(1, "pd", 0.95)];
    let met = decide(
        Verdict::Allow,
        Rule::GateMet {
            to: "approved".into(),
            model: "pd".into(),
            inference: InferenceId(1),
            confidence: 0.95,
            threshold: 0.9,
        },
    );
    assert_eq!(
        decide_in("intake", &inferences, &citing("approved", 1)),
        met
    );
    assert_eq!(decide_in("intake", &inferences, &to("approved")), met);
    assert_eq!(decide_in("assess", &inferences, &to("approved")), met);
    // The threshold itself is enough.
    let exact = [inference(4, "pd", 0.9)];
    assert_eq!(
        decide_in("intake", &exact, &to("approved")).verdict,
        Verdict::Allow
    );
}

#[test]
fn gate_not_met_escalates_to_its_review_state() {
    let inferences = [inference(1, "pd", 0.62)];
    let not_met = decide(
        Verdict::Escalate,
        Rule::GateNotMet {
            to: "approved".into(),
            model: "pd".into(),
            inference: Some(InferenceId(1)),
            confidence: Some(0.62),
            threshold: 0.9,
            otherwise: "review".into(),
        },
    );
    assert_eq!(
        decide_in("intake", &inferences, &citing("approved", 1)),
        not_met
    );
    assert_eq!(decide_in("intake", &inferences, &to("approved")), not_met);
}

#[test]
fn without_evidence_the_latest_inference_of_the_gate_model_decides() {
    // A confident earlier inference does not rescue a later, unsure one...
    let inferences = [
        inference(1, "pd", 0.99),
        inference(2, "pd", 0.5),
        inference(3, "fraud", 0.99),
    ];
    assert_eq!(
        decide_in("intake", &inferences, &to("approved")).rule,
        Rule::GateNotMet {
            to: "approved".into(),
            model: "pd".into(),
            inference: Some(InferenceId(2)),
            confidence: Some(0.5),
            threshold: 0.9,
            otherwise: "review".into(),
        }
    );
    // ...but the agent may cite it explicitly.
    assert_eq!(
        decide_in("intake", &inferences, &citing("approved", 1)).verdict,
        Verdict::Allow
    );
}

#[test]
fn gate_without_any_inference_escalates() {
    // Another model's inference is no inference for this gate.
    for inferences in [vec![], vec![inference(3, "fraud", 1.0)]] {
        assert_eq!(
            decide_in("intake", &inferences, &to("approved")),
            decide(
                Verdict::Escalate,
                Rule::GateNotMet {
                    to: "approved".into(),
                    model: "pd".into(),
                    inference: None,
                    confidence: None,
                    threshold: 0.9,
                    otherwise: "review".into(),
                }
            )
        );
    }
}

#[test]
fn evidence_the_host_never_computed_is_denied() {
    let inferences = [inference(1, "pd", 0.99)];
    assert_eq!(
        decide_in("intake", &inferences, &citing("approved", 9_999)),
        decide(
            Verdict::Deny,
            Rule::EvidenceUnknown {
                to: "approved".into(),
                inference: InferenceId(9_999)
            }
        )
    );
    assert_eq!(
        decide_in("intake", &[], &citing("approved", 0)).verdict,
        Verdict::Deny
    );
}

#[test]
fn evidence_of_another_model_is_denied() {
    let inferences = [inference(1, "pd", 0.2), inference(2, "fraud", 0.99)];
    assert_eq!(
        decide_in("intake", &inferences, &citing("approved", 2)),
        decide(
            Verdict::Deny,
            Rule::EvidenceWrongModel {
                to: "approved".into(),
                inference: InferenceId(2),
                model: "fraud".into(),
                expected: "pd".into()
            }
        )
    );
}

#[test]
fn evidence_on_an_ungated_transition_is_not_judged() {
    assert_eq!(
        decide_in("intake", &[], &citing("declined", 9_999)).rule,
        Rule::TransitionAllowed {
            from: "intake".into(),
            to: "declined".into()
        }
    );
}

#[test]
fn finish_is_allowed_only_in_a_terminal_state() {
    for state in ["approved", "declined"] {
        assert_eq!(
            decide_in(state, &[], &finish()),
            decide(
                Verdict::Allow,
                Rule::FinishInTerminal {
                    state: state.into()
                }
            )
        );
    }
    for state in ["intake", "assess", "review"] {
        assert_eq!(
            decide_in(state, &[], &finish()),
            decide(
                Verdict::Deny,
                Rule::FinishOutsideTerminal {
                    state: state.into()
                }
            )
        );
    }
}

#[test]
fn after_finish_only_the_run_protocol_remains() {
    let inferences = [inference(1, "pd", 0.99)];
    let run = RunView {
        state: "approved",
        escalated: false,
        transitioned_this_step: false,
        finished: true,
        inferences: &inferences,
        evidence: None,
    };
    for request in [
        tool("bureau"),
        model("pd"),
        to("declined"),
        citing("approved", 1),
        finish(),
    ] {
        assert_eq!(
            enforce(&policy(), &run, &request),
            decide(Verdict::Deny, Rule::AlreadyFinished),
            "{request:?}"
        );
    }
    for request in protocol_requests() {
        assert_eq!(
            enforce(&policy(), &run, &request).verdict,
            Verdict::Allow,
            "{request:?}"
        );
    }
}
