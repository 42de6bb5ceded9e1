//! Regressions from an adversarial review of the gates and review (by a reviewer who had
//! not seen these tests): each test is an attack that worked, now refused.

use serde_json::json;
use warden::{FailureReason, GuestFault, Limit, Status};
use warden_guest::wire::Request;
use warden_test_guests as guests;

use crate::gates::GATES;
use crate::support::{Sandbox, warden_json_on};

/// F1: a fork from a checkpoint past the gate (the parent was approved), with another
/// applicant patched in, completed `approved` with no gate or review. A fork that changes
/// the case may not start after a decision made on the parent's.
#[test]
fn a_changed_fork_may_not_start_after_its_parents_approval() {
    let sandbox = Sandbox::new();
    let journal = sandbox.journal();
    let ask = json!({"model_from_input": {"name": "risk", "fields": ["x"]}});
    let cite = json!({"transition_citing": {"to": "approved", "saved": 0}});
    let finish = json!({"finish": {"output": {"decision": "approved"}}});
    let plan = json!([[ask, cite], [finish]]);
    let parent = sandbox.run_text(
        &journal,
        guests::SCRIPTED,
        GATES,
        &json!({"x": -5.0, "plan": plan}),
    );
    assert_eq!(parent.outcome.state, "approved");
    drop(journal);
    let output = sandbox.warden(&[
        "fork",
        &parent.run_id,
        "--at-step",
        "1",
        "--input-patch",
        r#"{"x": 5}"#,
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("comes after a decision") && stderr.contains("gate on `approved` met"),
        "{stderr}"
    );
    // The same case may be forked there: nothing it inherits was decided on other facts.
    let (code, fork) = sandbox.warden_json(&["fork", &parent.run_id, "--at-step", "1"]);
    assert_eq!(
        (code, fork["state"].as_str()),
        (0, Some("approved")),
        "{fork:#}"
    );
    // One fork removed (a second review): a fork of that unchanged fork starts from the
    // parent's memory, past the same gate, and may not change the case either.
    let unchanged = fork["run_id"].as_str().expect("run id");
    let output = sandbox.warden(&[
        "fork",
        unchanged,
        "--at-step",
        "1",
        "--input-patch",
        r#"{"x": 5}"#,
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("comes after a decision")
            && stderr.contains(&format!("of run {}", parent.run_id)),
        "{stderr}"
    );
}

/// F2: an agent dirtied enough memory after its gate escalated that the end-of-step
/// checkpoint went over the journal budget, and the run ended `failed`, out of the review
/// queue. It stays awaiting review, the budget's failure recorded beside it.
#[test]
fn a_checkpoint_over_budget_after_an_escalation_leaves_the_run_awaiting_review() {
    let requests = [
        Request::Model {
            name: "risk".into(),
            features: json!({"x": 2.0}).to_string(),
        },
        Request::Transition {
            to: "approved".into(),
            evidence: None,
        },
    ];
    let mut data = String::new();
    let mut calls = String::new();
    for (i, request) in requests.iter().enumerate() {
        let bytes = postcard::to_allocvec(request).expect("encode");
        let escaped: String = bytes.iter().map(|b| format!("\\{b:02x}")).collect();
        data.push_str(&format!(
            "  (data (i32.const {}) \"{escaped}\")\n",
            i * 1024
        ));
        calls.push_str(&format!(
            "    (drop (call $host_call (i32.const 0) (i32.const {}) (i32.const {})))\n",
            i * 1024,
            bytes.len()
        ));
    }
    let wat = format!(
        r#"(module
  (import "warden" "host_call" (func $host_call (param i32 i32 i32) (result i64)))
  (memory (export "memory") 1)
{data}  (func (export "warden_step") (result i32) (local $p i32)
{calls}    (drop (memory.grow (i32.const 127)))
    (local.set $p (i32.const 1))
    (loop $l
      (i32.store8 (i32.add (i32.mul (local.get $p) (i32.const 65536)) (i32.const 8)) (i32.const 7))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $p) (i32.const 128))))
    i32.const 0))"#
    );
    let sandbox = Sandbox::new();
    let agent = sandbox.path("dodge.wat");
    std::fs::write(&agent, wat).expect("write agent");
    let policy = GATES.replace(
        "max_steps = 10",
        "max_steps = 10\nmax_journal_bytes = 1_048_576",
    );
    let report = sandbox.run_text(
        &sandbox.journal(),
        agent.to_str().expect("utf-8"),
        &policy,
        &json!({"x": 2.0}),
    );
    assert_eq!(
        (report.outcome.status, report.outcome.state.as_str()),
        (Status::AwaitingReview, "review"),
        "{report:#?}"
    );
    assert!(
        matches!(
            report.outcome.reason,
            Some(FailureReason::LimitExceeded {
                limit: Limit::JournalBytes,
                ..
            })
        ),
        "{report:#?}"
    );
}

/// F3: counterfactual answers were found by request bytes in a hash map, so a run that
/// asked the same thing twice got either answer, and the verdict changed between
/// invocations. Each recorded answer is now given once, in order.
#[test]
fn a_counterfactual_gives_the_same_verdict_every_time() {
    let sandbox = Sandbox::new();
    let ask = json!({"model_from_input": {"name": "risk", "fields": ["x"]}});
    let cite = json!({"transition_citing": {"to": "approved", "saved": 1}});
    let plan = json!([[ask, ask, cite], [{"finish": {"output": {"decision": "approved"}}}]]);
    let report = sandbox.run_text(
        &sandbox.journal(),
        guests::SCRIPTED,
        GATES,
        &json!({"x": -5.0, "plan": plan}),
    );
    assert_eq!(report.outcome.status, Status::Completed, "{report:#?}");
    let policy = sandbox.path("same.toml");
    std::fs::write(&policy, GATES).expect("write");
    for _ in 0..6 {
        let (code, replayed) = sandbox.warden_json(&[
            "replay",
            &report.run_id,
            "--policy",
            policy.to_str().expect("utf-8"),
        ]);
        assert_eq!(
            (code, replayed["verdict"].as_str()),
            (0, Some("unchanged")),
            "{replayed:#}"
        );
    }
}

/// F4: a fork of a run recorded by edition 1 (whose policy's gates have no label) used the
/// old gate rule and its parent's inference. A fork is a new run: its policy must validate
/// under the current rules.
#[test]
fn a_fork_of_an_edition_1_run_needs_a_current_policy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = crate::compat::fixture(dir.path());
    let (_, runs) = warden_json_on(&db, &["runs"]);
    let loan = runs
        .as_array()
        .expect("runs")
        .iter()
        .find(|r| r["policy_name"] == "loan-underwriting")
        .expect("the v1 loan run");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("--db")
        .arg(&db)
        .args([
            "fork",
            loan["run_id"].as_str().expect("id"),
            "--at-step",
            "4",
            "--input-patch",
            r#"{"applicant_id": "A-10003"}"#,
        ])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("older rules") && stderr.contains("label"),
        "{stderr}"
    );
}

/// F5: an output with `decision` twice passed the output rule (the last one counts) while
/// the journal and `warden show` read the first. JSON an agent sends must mean one thing.
#[test]
fn json_with_a_key_twice_is_refused() {
    let requests = [
        Request::Transition {
            to: "done".into(),
            evidence: None,
        },
        Request::Finish {
            output: r#"{"decision":"approved","decision":"declined"}"#.into(),
        },
    ];
    let mut data = String::new();
    let mut calls = String::new();
    for (i, request) in requests.iter().enumerate() {
        let bytes = postcard::to_allocvec(request).expect("encode");
        let escaped: String = bytes.iter().map(|b| format!("\\{b:02x}")).collect();
        data.push_str(&format!(
            "  (data (i32.const {}) \"{escaped}\")\n",
            i * 1024
        ));
        calls.push_str(&format!(
            "    (drop (call $host_call (i32.const 0) (i32.const {}) (i32.const {})))\n",
            i * 1024,
            bytes.len()
        ));
    }
    let wat = format!(
        "(module\n  (import \"warden\" \"host_call\" (func $host_call (param i32 i32 i32) (result i64)))\n  (memory (export \"memory\") 1)\n{data}  (func (export \"warden_step\") (result i32)\n{calls}    i32.const 0))\n"
    );
    let sandbox = Sandbox::new();
    let agent = sandbox.path("twice.wat");
    std::fs::write(&agent, wat).expect("write agent");
    let report = sandbox.run(
        agent.to_str().expect("utf-8"),
        "test-basic.toml",
        &json!({}),
    );
    assert!(
        matches!(&report.outcome.reason, Some(FailureReason::Fault { fault: GuestFault::MalformedRequest { error, .. }, .. }) if error.contains("`decision` appears twice")),
        "{report:#?}"
    );
}
