//! The stub host answers through the SDK's real encode/decode path, records every
//! request, and keeps the run-protocol rules that need no policy.

use alloc::string::String;
use alloc::vec;
use serde_json::{Value, json};

use super::{StubHost, StubStatus};
use crate::{Agent, CallErrorKind, Error, LogLevel, ReviewInfo, Warden};

/// Looks a customer up, scores them, proposes `approved` citing the inference; finishes
/// with what it learned. Refers unknown customers to `review`.
#[derive(Default)]
struct Approver {
    score: Option<f64>,
}

impl Agent for Approver {
    fn step(&mut self, warden: &mut Warden) -> Result<(), Error> {
        match warden.state()?.as_str() {
            "start" => {
                let input: Value = warden.input()?;
                let record: Result<Value, Error> =
                    warden.tool("register", &json!({ "id": input["id"] }));
                match record {
                    Ok(_) => warden.transition("score").map(|_| ()),
                    Err(Error::Call(e)) if e.kind == CallErrorKind::NotFound => {
                        warden.log(LogLevel::Warn, "unknown customer")?;
                        warden.transition("review").map(|_| ())
                    }
                    Err(e) => Err(e),
                }
            }
            "score" => {
                let inference = warden.model::<_, Value>("risk", &json!({ "x": 1.5 }))?;
                self.score = inference.value["probability"].as_f64();
                warden.transition_citing("approved", inference.id)?;
                Ok(())
            }
            "approved" => {
                let review = warden.review()?;
                warden.finish(&json!({ "decision": "approved", "score": self.score, "reviewed": review.is_some() }))
            }
            other => Err(Error::agent(alloc::format!("no such state {other}"))),
        }
    }
}

fn scripted() -> StubHost {
    StubHost::new("start")
        .input(&json!({ "id": "C-1" }))
        .tool_answer("register", &json!({ "status": "active" }))
        .model_answer("risk", &json!({ "probability": 0.02 }), 0.98)
        .review_state("review")
}

#[test]
fn a_run_completes_with_the_scripted_answers_and_records_every_request() {
    let mut host = scripted();
    let mut agent = Approver::default();
    let outcome = host.run(&mut agent);
    assert_eq!(outcome.status, StubStatus::Completed, "{outcome:?}");
    assert_eq!((outcome.state.as_str(), outcome.steps), ("approved", 3));
    let output: Value = host.output().expect("finished");
    assert_eq!(
        output,
        json!({ "decision": "approved", "score": 0.02, "reviewed": false })
    );
    assert_eq!(host.tool_calls("register"), vec![json!({ "id": "C-1" })]);
    assert_eq!(host.model_calls("risk"), vec![json!({ "x": 1.5 })]);
    assert_eq!(host.transitions(), vec!["score", "approved"]);
    assert!(host.unused_answers().is_empty());
    // The cited inference id is the model call's sequence number, as in Warden.
    let cited = host.requests().iter().find_map(|r| match r {
        crate::wire::Request::Transition { evidence, .. } => *evidence,
        _ => None,
    });
    assert_eq!(cited, Some(crate::InferenceId(6)));
}

#[test]
fn one_step_at_a_time_the_agent_keeps_its_fields() {
    let mut host = scripted();
    let mut agent = Approver::default();
    host.step(&mut agent).expect("start");
    assert_eq!(host.state(), "score");
    host.step(&mut agent).expect("score");
    assert_eq!((host.state(), agent.score), ("approved", Some(0.02)));
}

#[test]
fn a_scripted_gate_escalates_and_the_run_awaits_review() {
    let mut host = scripted().escalate("approved", "review");
    let mut agent = Approver::default();
    host.step(&mut agent).expect("start");
    match host.step(&mut agent) {
        Err(Error::Escalated { requested, state }) => {
            assert_eq!((requested.as_str(), state.as_str()), ("approved", "review"));
        }
        other => panic!("expected an escalation, got {other:?}"),
    }
    let outcome = host.run(&mut agent);
    assert_eq!(
        (outcome.status, outcome.state.as_str()),
        (StubStatus::AwaitingReview, "review")
    );
}

#[test]
fn a_tool_error_reaches_the_agent_and_a_review_decision_can_be_scripted() {
    let mut host = StubHost::new("start")
        .input(&json!({ "id": "C-404" }))
        .tool_error("register", CallErrorKind::NotFound, "no such customer")
        .review_state("review");
    let outcome = host.run(&mut Approver::default());
    assert_eq!(
        (outcome.status, outcome.state.as_str()),
        (StubStatus::AwaitingReview, "review")
    );
    assert_eq!(
        host.logs(),
        [(LogLevel::Warn, String::from("unknown customer"))]
    );

    let mut host = StubHost::new("approved").reviewed(ReviewInfo {
        outcome: "approved".into(),
        reviewer: "a.handler".into(),
        role: "handler".into(),
        note: "checked".into(),
        by_timeout: false,
    });
    host.run(&mut Approver::default());
    assert_eq!(host.output::<Value>().expect("finished")["reviewed"], true);
}

#[test]
fn an_agent_error_fails_the_run_with_its_reason() {
    let mut host = StubHost::new("nowhere");
    let outcome = host.run(&mut Approver::default());
    assert_eq!(outcome.status, StubStatus::Failed);
    assert_eq!(
        outcome.reason.as_deref(),
        Some("step 1: agent aborted: no such state nowhere")
    );
}

#[derive(Default)]
struct TwoMoves;

impl Agent for TwoMoves {
    fn step(&mut self, warden: &mut Warden) -> Result<(), Error> {
        warden.transition("a")?;
        warden.transition("b")?;
        Ok(())
    }
}

#[test]
#[should_panic(expected = "Warden would deny a second transition in one step (to `b`, after `a`)")]
fn a_second_transition_in_one_step_is_denied() {
    let _ = StubHost::new("start").step(&mut TwoMoves);
}

#[test]
#[should_panic(expected = "no answer is left for it: StubHost::tool_answer(\"register\", ...)")]
fn an_unscripted_call_names_the_tool_and_how_to_script_it() {
    let mut host = StubHost::new("start").input(&json!({ "id": "C-1" }));
    let _ = host.step(&mut Approver::default());
}

/// The shape of the enum `warden-guest-build` generates (`AsRef<str>`, `FromStr`), written
/// out: the SDK takes it wherever it takes a state name, and sends the name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Typed {
    Start,
    Review,
    Done,
}

impl AsRef<str> for Typed {
    fn as_ref(&self) -> &str {
        match self {
            Typed::Start => "start",
            Typed::Review => "review",
            Typed::Done => "done",
        }
    }
}

impl core::str::FromStr for Typed {
    type Err = String;

    fn from_str(name: &str) -> Result<Typed, String> {
        [Typed::Start, Typed::Review, Typed::Done]
            .into_iter()
            .find(|s| s.as_ref() == name)
            .ok_or_else(|| alloc::format!("state {name:?} is not a state of policy `typed`"))
    }
}

/// Reads its state as `Typed` and moves with it.
#[derive(Default)]
struct TypedAgent;

impl Agent for TypedAgent {
    fn step(&mut self, warden: &mut Warden) -> Result<(), Error> {
        match warden.state_as::<Typed>()? {
            Typed::Start => warden.transition(Typed::Done).map(|_| ()),
            Typed::Review => Ok(()),
            Typed::Done => warden.finish(&"ok"),
        }
    }
}

#[test]
fn typed_states_go_on_the_wire_as_their_names_and_an_unknown_one_fails_the_run() {
    let mut host = StubHost::new(Typed::Start).review_state(Typed::Review);
    let outcome = host.run(&mut TypedAgent);
    assert_eq!(
        (outcome.status, outcome.state.as_str()),
        (StubStatus::Completed, "done")
    );
    assert_eq!(host.transitions(), ["done"]);

    let mut host = StubHost::new(Typed::Start).escalate(Typed::Done, Typed::Review);
    let outcome = host.run(&mut TypedAgent);
    assert_eq!(
        (outcome.status, outcome.state.as_str()),
        (StubStatus::AwaitingReview, "review")
    );

    let outcome = StubHost::new("elsewhere").run(&mut TypedAgent);
    assert_eq!(outcome.status, StubStatus::Failed);
    assert_eq!(
        outcome.reason.as_deref(),
        Some("step 1: agent aborted: state \"elsewhere\" is not a state of policy `typed`")
    );
}
