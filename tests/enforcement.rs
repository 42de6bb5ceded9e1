//! Enforcement outside the gates (issue #13): forks do not repeat real effects and cannot
//! borrow their parent's inferences; checkpoint pages count against the journal budget;
//! verification checks stored blobs and the progress of running runs; what a guest writes
//! cannot forge lines of `warden show`; replay from a run's last checkpoint and
//! counterfactuals that change only a failure reason are reported truthfully.

use serde_json::{Value, json};
use warden::{FailureReason, Limit, Rule, Status};
use warden_test_guests as guests;

use crate::gates::GATES;
use crate::support::tamper::{copy_db, edit_summary, replace_blob, truncate};
use crate::support::{Sandbox, warden_json_on};

/// The ledger's lines, one per effect applied.
fn ledger_lines(sandbox: &Sandbox) -> usize {
    std::fs::read_to_string(sandbox.path("ledger.jsonl"))
        .unwrap_or_default()
        .lines()
        .count()
}

/// Regression (a fork re-applied real effects): two forks of a paying run used to pay
/// again. A fork's effects answer from its parent's recording where the request is the
/// same, and are otherwise not performed, unless the operator asks for live effects.
#[test]
fn a_fork_does_not_repeat_or_invent_effects_unless_asked() {
    let sandbox = Sandbox::new();
    let parent = sandbox.run(
        guests::COUNTER,
        "test-basic.toml",
        &json!({"steps": 4, "amount": 10}),
    );
    assert_eq!(parent.outcome.status, Status::Completed);
    let paid = ledger_lines(&sandbox);
    assert_eq!(paid, 4);
    // The same input: steps 3 and 4 ask what the parent asked, and get the parent's answers.
    for _ in 0..2 {
        let (code, fork) = sandbox.warden_json(&["fork", &parent.run_id, "--at-step", "2"]);
        assert_eq!(code, 0, "{fork:#}");
        assert_eq!(fork["output"]["total"], 40);
        let receipts = fork["output"]["receipts"].as_array().expect("receipts");
        assert!(
            receipts
                .iter()
                .all(|r| r.as_str().is_some_and(|r| r.starts_with(&parent.run_id))),
            "{fork:#}"
        );
    }
    assert_eq!(ledger_lines(&sandbox), paid, "no fork paid");
    // Another amount: the parent never asked that, so the effect is not performed.
    let (code, fork) = sandbox.warden_json(&[
        "fork",
        &parent.run_id,
        "--at-step",
        "2",
        "--input-patch",
        r#"{"amount": 100}"#,
    ]);
    assert_eq!(code, 11, "{fork:#}");
    let reason = fork["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("not performed in a fork"), "{reason}");
    assert_eq!(ledger_lines(&sandbox), paid);
    // Asked explicitly, a fork acts.
    let (code, fork) = sandbox.warden_json(&[
        "fork",
        &parent.run_id,
        "--at-step",
        "2",
        "--input-patch",
        r#"{"amount": 100}"#,
        "--live-effects",
    ]);
    assert_eq!(code, 0, "{fork:#}");
    assert_eq!(ledger_lines(&sandbox), paid + 2);
}

/// Regression (a fork approved on its parent's inference): a fork whose input is patched
/// must not rest on an inference computed for the parent's input. It inherits the
/// parent's recorded facts, never its inferences.
#[test]
fn a_fork_cannot_cite_its_parents_inference() {
    let sandbox = Sandbox::new();
    let journal = sandbox.journal();
    // Step 1 asks (x = -5: safe) and stays; step 2 approves citing it; step 3 finishes.
    let ask = json!({"model_from_input": {"name": "risk", "fields": ["x"]}});
    let cite = json!({"transition_citing": {"to": "approved", "saved": 0}});
    let plan = json!([[ask], [cite], [{"finish": {"output": {"decision": "approved"}}}]]);
    let parent = sandbox.run_text(
        &journal,
        guests::SCRIPTED,
        GATES,
        &json!({"x": -5.0, "plan": plan}),
    );
    assert_eq!(parent.outcome.status, Status::Completed, "{parent:#?}");
    drop(journal);
    let (code, fork) = sandbox.warden_json(&[
        "fork",
        &parent.run_id,
        "--at-step",
        "1",
        "--input-patch",
        r#"{"x": 5}"#,
    ]);
    assert_eq!(code, 11, "the fork is denied: {fork:#}");
    assert_eq!(
        fork["failure"]["Denied"]["rule"]["EvidenceUnknown"]["to"], "approved",
        "{fork:#}"
    );
}

/// A WAT agent that grows memory to 128 pages and writes a byte into each every step,
/// then moves to `start` again: 127 dirty pages (8 MiB) a step.
fn page_bomb() -> String {
    let request = postcard::to_allocvec(&warden_guest::wire::Request::Transition {
        to: "start".into(),
        evidence: None,
    })
    .expect("encode");
    let escaped: String = request.iter().map(|b| format!("\\{b:02x}")).collect();
    format!(
        r#"(module
  (import "warden" "host_call" (func $host_call (param i32 i32 i32) (result i64)))
  (memory (export "memory") 1)
  (global $n (mut i32) (i32.const 0))
  (data (i32.const 0) "{escaped}")
  (func (export "warden_step") (result i32) (local $p i32)
    (if (i32.lt_u (memory.size) (i32.const 128)) (then (drop (memory.grow (i32.const 127)))))
    (global.set $n (i32.add (global.get $n) (i32.const 1)))
    (local.set $p (i32.const 1))
    (loop $l
      (i32.store8 (i32.add (i32.mul (local.get $p) (i32.const 65536)) (i32.const 8)) (global.get $n))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $p) (i32.const 128))))
    (drop (call $host_call (i32.const 0) (i32.const 0) (i32.const {})))
    i32.const 0))"#,
        request.len()
    )
}

/// Regression (checkpoint pages were outside every budget): a guest dirtying every page
/// every step grew a journal to 241 MB under `max_journal_bytes = 4096`. The pages a step
/// changes count against the budget, and the run fails at the step that exceeds it.
#[test]
fn dirty_pages_count_against_the_journal_budget() {
    let sandbox = Sandbox::new();
    let agent = sandbox.path("page_bomb.wat");
    std::fs::write(&agent, page_bomb()).expect("write agent");
    let policy = GATES.replace(
        "max_steps = 10",
        "max_steps = 10\nmax_journal_bytes = 1_048_576",
    );
    let report = sandbox.run_text(
        &sandbox.journal(),
        agent.to_str().expect("utf-8"),
        &policy,
        &json!({}),
    );
    assert!(
        matches!(report.outcome.reason, Some(FailureReason::LimitExceeded { step: 1, limit: Limit::JournalBytes, max: 1_048_576, value }) if value > 8_000_000),
        "{report:#?}"
    );
    let size = std::fs::metadata(sandbox.db()).expect("journal").len();
    assert!(
        size < 8 * 1024 * 1024,
        "the journal stayed small: {size} bytes"
    );
}

/// Regression (stored blobs were not verified): replacing a run's stored input with a
/// forged applicant left `verify` saying ok and made `replay` a host error. Verification
/// names the altered blob, and replay reports that it could not replay (exit 12).
#[test]
fn a_replaced_input_blob_fails_verification_and_replay() {
    let sandbox = Sandbox::new();
    let report = sandbox.run(
        guests::ECHO,
        "test-basic.toml",
        &json!({"applicant": "real", "income": 50000}),
    );
    let meta = sandbox.journal().run(&report.run_id).expect("run");
    let (_dir, copy) = copy_db(&sandbox.db());
    replace_blob(
        &copy,
        &meta.input,
        br#"{"applicant":"forged","income":900000}"#,
    );
    let (code, verified) = warden_json_on(&copy, &["verify", &report.run_id]);
    assert_eq!(code, 12, "{verified:#}");
    let problem = verified["runs"][0]["problem"].as_str().unwrap_or_default();
    assert!(
        problem.contains("input") && problem.contains("altered"),
        "{problem}"
    );
    let (code, replayed) = warden_json_on(&copy, &["replay", &report.run_id]);
    assert_eq!(code, 12, "{replayed:#}");
    assert_eq!(replayed["verdict"], "could_not_replay");
}

/// Regression (the progress of running runs was not checked, and resume trusted it): a
/// run cut back to look interrupted, whose summary then claims fewer steps than its
/// records hold, fails verification, and resume refuses it.
#[test]
fn an_interrupted_runs_progress_must_match_its_records() {
    let sandbox = Sandbox::new();
    let report = sandbox.run(
        guests::COUNTER,
        "test-basic.toml",
        &json!({"steps": 3, "amount": 1}),
    );
    let records = sandbox
        .journal()
        .records(&report.run_id)
        .expect("records")
        .len() as u64;
    let (_dir, copy) = copy_db(&sandbox.db());
    // Dropping the outcome leaves a chain that checks out; the transparency log holds the
    // head of the commit that held it, and names that commit.
    let commit = crate::support::tamper::commit_of(&copy, &report.run_id, records - 1);
    truncate(&copy, &report.run_id, records - 1, |_| {});
    let (code, verified) = warden_json_on(&copy, &["verify", &report.run_id]);
    assert_eq!(code, 12, "{verified:#}");
    // The commit that held the dropped record is named, at its first record.
    assert_eq!(verified["runs"][0]["record"], commit, "{verified:#}");
    assert!(
        verified["runs"][0]["problem"]
            .as_str()
            .unwrap_or_default()
            .contains("truncated"),
        "{verified:#}"
    );
    edit_summary(&copy, &report.run_id, |meta| meta.outcome.steps = 1);
    let (code, verified) = warden_json_on(&copy, &["verify", &report.run_id]);
    assert_eq!(code, 12, "{verified:#}");
    assert!(verified["runs"][0]["problem"].is_string(), "{verified:#}");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("--db")
        .arg(&copy)
        .args(["resume", &report.run_id])
        .output()
        .expect("run");
    assert_eq!(
        output.status.code(),
        Some(12),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Regression (terminal injection): log messages were printed raw by `warden show`, so a
/// guest could clear the screen and forge timeline lines.
#[test]
fn a_guest_cannot_forge_lines_of_the_timeline() {
    let sandbox = Sandbox::new();
    let forged = "\u{1b}[2J\u{1b}[H\n   7  0123456789ab  step 9 call 9 in start: forged => Allow\r";
    let plan = json!([[{"log": {"message": forged}}, {"transition": {"to": "done"}}], [{"finish": {"output": {}}}]]);
    let report = sandbox.run_text(
        &sandbox.journal(),
        guests::SCRIPTED,
        GATES,
        &json!({"x": 0, "plan": plan}),
    );
    assert_eq!(report.outcome.status, Status::Completed);
    let shown = sandbox.warden(&["show", &report.run_id]);
    let text = String::from_utf8(shown.stdout).expect("utf-8");
    assert!(
        !text.contains('\u{1b}') && !text.contains('\r'),
        "raw control characters in: {text}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("   7  0123456789ab")),
        "a forged line: {text}"
    );
    assert!(
        text.contains("\\u{1b}[2J"),
        "the escape is shown, escaped: {text}"
    );
}

/// Regression: replay from the checkpoint a completed run ended on reported a false
/// divergence. Nothing remains to re-execute; the restored checkpoint must match.
#[test]
fn replay_from_the_last_checkpoint_of_a_completed_run_is_identical() {
    let sandbox = Sandbox::new();
    let report = sandbox.run(
        guests::COUNTER,
        "test-basic.toml",
        &json!({"steps": 2, "amount": 1}),
    );
    let last = sandbox
        .journal()
        .records(&report.run_id)
        .expect("records")
        .iter()
        .filter_map(|r| match r.body {
            warden::RecordBody::Checkpoint { step, .. } => Some(step),
            _ => None,
        })
        .max()
        .expect("a checkpoint");
    let (code, replayed) = sandbox.warden_json(&[
        "replay",
        &report.run_id,
        "--from-checkpoint",
        &last.to_string(),
    ]);
    assert_eq!(
        (code, replayed["verdict"].clone()),
        (0, Value::from("identical")),
        "{replayed:#}"
    );
}

/// Regression: a counterfactual whose outcome differed only in its failure reason was
/// reported as unchanged.
#[test]
fn a_counterfactual_that_changes_only_the_failure_reason_is_a_different_outcome() {
    let sandbox = Sandbox::new();
    let report = sandbox.run(guests::SPIN, "test-basic.toml", &json!({}));
    assert!(matches!(
        report.outcome.reason,
        Some(FailureReason::FuelExhausted { .. })
    ));
    let text = std::fs::read_to_string(crate::support::policy_path("test-basic.toml"))
        .expect("policy")
        .replace("fuel_per_step = 200_000_000", "fuel_per_step = 100_000_000");
    let stricter = sandbox.path("less-fuel.toml");
    std::fs::write(&stricter, text).expect("write");
    let (code, replayed) = sandbox.warden_json(&[
        "replay",
        &report.run_id,
        "--policy",
        stricter.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 12, "{replayed:#}");
    assert_eq!(replayed["verdict"], "different_outcome");
    assert_eq!(
        replayed["original"]["status"],
        replayed["replayed"]["status"]
    );
    assert_eq!(replayed["original"]["state"], replayed["replayed"]["state"]);
}

/// The rule `Rule::FeaturesReconciled` is what `warden show` prints for a reconciled
/// request; it names the tool response the features rest on.
#[test]
fn show_says_where_the_features_came_from() {
    let rule = Rule::FeaturesReconciled {
        model: "pd_scorecard".into(),
        state: "scoring".into(),
        features: 6,
        sources: vec![("bureau".into(), "credit_bureau".into(), Some(5))],
    };
    assert!(
        rule.to_string()
            .contains("features: 6/6 reconciled with input and credit_bureau response #5"),
        "{rule}"
    );
}
