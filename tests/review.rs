//! Human review (issue #14): a run a gate sent to review is decided by a person in a role
//! the policy names, bound to the action digest of the case file they read, and continues
//! from the checkpoint at the gate. Every refusal is recorded; dual control needs two
//! distinct reviewers; a timeout applies its declared, non-approving outcome; a reviewed
//! run verifies and replays bit for bit; and a crash right after the review resumes
//! without a second review or a repeated effect.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use warden_test_guests as guests;

use crate::support::Sandbox;
use crate::support::crash::{Moment, Site, kill_at, ledger_lines};

/// A gate on `approved` (P(safe) >= 0.9) whose review state offers `approved` to an
/// approver under dual control, `done` to a clerk or an approver, and `working` (where a
/// payment is made) to an approver; undecided after 24 hours it is `done`.
const REVIEWED: &str = r#"
[policy]
name = "reviewed"
version = "1"
initial = "start"

[budgets]
max_response_bytes = 65536

[capabilities]
tools = ["disbursement"]
models = ["risk"]

[states.start]
models = ["risk"]
transitions = ["approved", "done"]

[states.working]
tools = ["disbursement"]
transitions = ["done"]

[states.approved]
terminal = true

[states.done]
terminal = true

[states.review]
review = true
transitions = ["approved", "done", "working"]

[states.review.decisions.approved]
roles = ["approver"]
dual_control = true

[states.review.decisions.done]
roles = ["approver", "clerk"]

[states.review.decisions.working]
roles = ["approver"]

[states.review.timeout]
after = "24h"
outcome = "done"

[[gates]]
to = "approved"
model = "risk"
label = "safe"
min_confidence = 0.9
otherwise = "review"

[models.risk.features]
x = "input:/x"
"#;

/// Starts a scripted run that asks the model (x = 2: P(safe) = 0.12) and proposes
/// `approved`, so the gate sends it to review; after review it pays once if sent to
/// `working`, and finishes, citing the review. Returns the run id (submitted by `tester`).
fn escalated(sandbox: &Sandbox) -> String {
    escalated_then(
        sandbox,
        json!([
            [{"tool": {"name": "disbursement", "args": {"amount": 5}}}, {"transition": {"to": "done"}}],
            [{"finish": {"output": {"paid": true}}}]
        ]),
    )
}

/// As [`escalated`], with `after` the steps the agent takes after the review.
fn escalated_then(sandbox: &Sandbox, after: Value) -> String {
    escalated_under(sandbox, REVIEWED, after)
}

/// As [`escalated_then`], under the policy `text`.
fn escalated_under(sandbox: &Sandbox, text: &str, after: Value) -> String {
    let mut plan = vec![json!([
        {"model_from_input": {"name": "risk", "fields": ["x"]}},
        {"transition_citing": {"to": "approved", "saved": 0}}
    ])];
    plan.extend(after.as_array().cloned().unwrap_or_default());
    let policy = sandbox.path("reviewed.toml");
    std::fs::write(&policy, text).expect("write policy");
    let input = sandbox.input("case.json", &json!({"x": 2.0, "plan": plan}));
    let (code, report) = sandbox.warden_json(&[
        "run",
        guests::SCRIPTED,
        "--policy",
        policy.to_str().expect("utf-8"),
        "--bindings",
        sandbox.bindings().to_str().expect("utf-8"),
        "--input",
        input.to_str().expect("utf-8"),
        "--submitter",
        "tester",
    ]);
    assert_eq!(code, 10, "the gate sends it to review: {report:#}");
    report["run_id"].as_str().expect("run id").to_string()
}

/// `REVIEWED` with a timeout of one second instead of a day, for the tests of expiry
/// (`--expire` applies only what is due by the machine's clock).
fn short_timeout() -> String {
    let text = REVIEWED.replace("after = \"24h\"", "after = \"1s\"");
    assert_ne!(text, REVIEWED);
    text
}

/// Waits until a run that entered review now is past `short_timeout`'s timeout.
fn past_the_timeout() {
    std::thread::sleep(Duration::from_millis(1_100));
}

/// The case file's action digest.
fn action(sandbox: &Sandbox, run_id: &str) -> String {
    let (code, case) = sandbox.warden_json(&["review", run_id]);
    assert_eq!(code, 10, "{case:#}");
    case["action"]
        .as_str()
        .expect("the action digest")
        .to_string()
}

fn decide(
    sandbox: &Sandbox,
    run_id: &str,
    outcome: &str,
    reviewer: &str,
    role: &str,
    digest: &str,
) -> (i32, Value) {
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
        "checked the file",
        "--action",
        digest,
    ])
}

/// `warden review RUN_ID --decide ...` that must end as an argument error (exit 2):
/// its standard error.
fn decide_refused(
    sandbox: &Sandbox,
    run_id: &str,
    (outcome, reviewer, role): (&str, &str, &str),
    note: &str,
    digest: &str,
) -> String {
    let output = sandbox.warden(&[
        "review",
        run_id,
        "--decide",
        outcome,
        "--reviewer",
        reviewer,
        "--role",
        role,
        "--note",
        note,
        "--action",
        digest,
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{reviewer:?}: {stderr}");
    stderr
}

/// The kinds of the run's records, in order.
fn kinds(sandbox: &Sandbox, run_id: &str) -> Vec<String> {
    let (_, shown) = sandbox.warden_json(&["show", run_id]);
    shown["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["kind"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn verifies_and_replays(sandbox: &Sandbox, run_id: &str) {
    let (code, verified) = sandbox.warden_json(&["verify", run_id]);
    assert_eq!(code, 0, "{verified:#}");
    let (code, replayed) = sandbox.warden_json(&["replay", run_id]);
    assert_eq!(
        (code, replayed["verdict"].as_str()),
        (0, Some("identical")),
        "{replayed:#}"
    );
}

#[test]
fn the_case_file_shows_what_a_reviewer_needs() {
    let sandbox = Sandbox::new();
    let run_id = escalated(&sandbox);
    let (_, case) = sandbox.warden_json(&["review", &run_id]);
    assert_eq!(case["state"], "review");
    assert_eq!(case["requested"], "approved");
    assert_eq!(case["submitted_by"], "tester");
    assert_eq!(case["inference"]["model"], "risk");
    // The case itself and what the model was given, as recorded, not the agent's account.
    let input: Value = serde_json::from_str(case["input"].as_str().expect("input")).expect("json");
    assert_eq!(input["x"], 2.0, "{case:#}");
    let features: Value =
        serde_json::from_str(case["features"].as_str().expect("features")).expect("json");
    assert_eq!(features["x"], 2.0, "{case:#}");
    assert!(
        case["explanation"]
            .as_str()
            .unwrap_or_default()
            .contains("P(safe)"),
        "{case:#}"
    );
    let outcomes: Vec<&str> = case["options"]
        .as_array()
        .expect("options")
        .iter()
        .filter_map(|o| o["outcome"].as_str())
        .collect();
    assert_eq!(outcomes, ["approved", "done", "working"]);
    let (_, queue) = sandbox.warden_json(&["runs", "--status", "awaiting_review"]);
    assert_eq!(queue[0]["run_id"], run_id.as_str());
    assert_eq!(queue[0]["gate"], "risk P(safe)");
    assert!(queue[0]["probability"].as_f64().is_some_and(|p| p < 0.9));
}

/// A decision in an allowed role, on the action shown, continues the run from the gate:
/// the agent reads the review and cites it; nothing before the gate runs again.
#[test]
fn a_decision_continues_the_run_and_the_agent_cites_it() {
    let sandbox = Sandbox::new();
    let run_id = escalated_then(
        &sandbox,
        json!([["read_review", {"finish": {"output": {"closed": true}}}]]),
    );
    let digest = action(&sandbox, &run_id);
    let before = kinds(&sandbox, &run_id)
        .iter()
        .filter(|k| *k == "step_started")
        .count();
    let (code, report) = decide(&sandbox, &run_id, "done", "clerk.meyer", "clerk", &digest);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(
        (report["status"].as_str(), report["state"].as_str()),
        (Some("completed"), Some("done"))
    );
    let kinds = kinds(&sandbox, &run_id);
    assert_eq!(kinds.iter().filter(|k| *k == "review").count(), 1);
    assert_eq!(
        kinds.iter().filter(|k| *k == "step_started").count(),
        before + 1,
        "only the step after the review ran"
    );
    let (_, shown) = sandbox.warden_json(&["show", &run_id]);
    let review = shown["records"]
        .as_array()
        .expect("records")
        .iter()
        .find(|r| r["kind"] == "review")
        .expect("review record");
    assert_eq!(review["body"]["Review"]["reviewer"], "clerk.meyer");
    assert_eq!(review["body"]["Review"]["role"], "clerk");
    assert_eq!(review["body"]["Review"]["action"], digest.as_str());
    let answer = shown["records"]
        .as_array()
        .expect("records")
        .iter()
        .find(|r| {
            r["text"]
                .as_str()
                .is_some_and(|t| t.contains("response: review: done by clerk.meyer"))
        })
        .is_some();
    assert!(answer, "the agent read the review: {shown:#}");
    verifies_and_replays(&sandbox, &run_id);
}

/// Refused: an outcome the state does not offer, a role not allowed, the submitter, an
/// action digest that is not the one shown. Each refusal is recorded; the run still waits.
#[test]
fn refused_decisions_are_recorded_and_the_run_still_waits() {
    let sandbox = Sandbox::new();
    let run_id = escalated(&sandbox);
    let digest = action(&sandbox, &run_id);
    let stale = "0".repeat(64);
    for (outcome, reviewer, role, digest, says) in [
        (
            "start",
            "a.approver",
            "approver",
            digest.as_str(),
            "does not offer",
        ),
        (
            "working",
            "c.clerk",
            "clerk",
            digest.as_str(),
            "role may not",
        ),
        (
            "done",
            "tester",
            "clerk",
            digest.as_str(),
            "submitted the run",
        ),
        (
            "done",
            "c.clerk",
            "clerk",
            stale.as_str(),
            "not the one awaiting review",
        ),
        // The submitter under another case, width or script is the submitter.
        (
            "done",
            "Tester",
            "clerk",
            digest.as_str(),
            "submitted the run",
        ),
        (
            "done",
            "TESTER",
            "clerk",
            digest.as_str(),
            "submitted the run",
        ),
    ] {
        let (code, result) = decide(&sandbox, &run_id, outcome, reviewer, role, digest);
        assert_eq!(code, 2, "{result:#}");
        assert_eq!(result["result"], "refused");
        assert!(
            result["explanation"]
                .as_str()
                .unwrap_or_default()
                .contains(says),
            "{result:#}"
        );
    }
    // Ids with spaces around them, control characters, or too long, and a note the agent
    // could not read within its response budget: argument errors, nothing recorded.
    let long = "r".repeat(300);
    for (reviewer, role, says) in [
        (
            "tester ",
            "clerk",
            "--reviewer has spaces before or after it",
        ),
        (
            " c.clerk",
            "clerk",
            "--reviewer has spaces before or after it",
        ),
        (
            "c.\u{7}clerk",
            "clerk",
            "--reviewer holds a control character",
        ),
        (
            "c.clerk\u{200b}",
            "clerk",
            "--reviewer holds an invisible character (U+200B)",
        ),
        (
            "\u{ff54}ester",
            "clerk",
            "--reviewer holds the character U+FF54",
        ),
        ("c.clerk\u{2800}", "clerk", "U+2800"),
        ("t\u{435}ster", "clerk", "mixes letters of scripts"),
        ("c.clerk", "clerk ", "--role has spaces before or after it"),
        ("", "clerk", "--reviewer is empty"),
        (
            long.as_str(),
            "clerk",
            "--reviewer is longer than 256 bytes",
        ),
    ] {
        let stderr = decide_refused(&sandbox, &run_id, ("done", reviewer, role), "n", &digest);
        assert!(stderr.contains(says), "{reviewer:?}: {stderr}");
    }
    let note = "n".repeat(5_000);
    let stderr = decide_refused(
        &sandbox,
        &run_id,
        ("done", "c.clerk", "clerk"),
        &note,
        &digest,
    );
    assert!(
        stderr.contains("--note is 5000 bytes, longer than 4096"),
        "{stderr}"
    );
    let kinds = kinds(&sandbox, &run_id);
    assert_eq!(kinds.iter().filter(|k| *k == "review_refused").count(), 6);
    let (_, case) = sandbox.warden_json(&["review", &run_id]);
    assert_eq!(case["refused"].as_array().map(Vec::len), Some(6));
    assert_eq!(
        case["action"],
        digest.as_str(),
        "refusals do not change the action"
    );
    verifies_and_replays(&sandbox, &run_id);
}

/// Dual control: an approval needs two distinct approvers; the same one twice is refused.
#[test]
fn dual_control_needs_two_distinct_reviewers() {
    let sandbox = Sandbox::new();
    let run_id = escalated(&sandbox);
    let digest = action(&sandbox, &run_id);
    let (code, first) = decide(&sandbox, &run_id, "approved", "a.one", "approver", &digest);
    assert_eq!(
        (code, first["result"].as_str()),
        (10, Some("pending")),
        "{first:#}"
    );
    for same in ["a.one", "A.One", "a.0ne", "A.ONE"] {
        let (code, again) = decide(&sandbox, &run_id, "approved", same, "approver", &digest);
        assert_eq!(code, 2, "{again:#}");
        assert!(
            again["explanation"]
                .as_str()
                .unwrap_or_default()
                .contains("two distinct"),
            "{same}: {again:#}"
        );
    }
    let (code, second) = decide(&sandbox, &run_id, "approved", "a.two", "approver", &digest);
    assert_eq!(
        code, 11,
        "approved, the scripted agent tries to pay in a terminal state: {second:#}"
    );
    assert_eq!(second["state"], "approved");
    verifies_and_replays(&sandbox, &run_id);
}

/// A decided run has no case left: a second decision, or a late one after the timeout
/// decided it, is refused, records nothing, and the first decision still verifies and
/// replays.
#[test]
fn a_decided_run_cannot_be_decided_again() {
    let sandbox = Sandbox::new();
    let run_id = escalated_then(
        &sandbox,
        json!([["read_review", {"finish": {"output": {"closed": true}}}]]),
    );
    let digest = action(&sandbox, &run_id);
    let (code, report) = decide(&sandbox, &run_id, "done", "clerk.meyer", "clerk", &digest);
    assert_eq!(code, 0, "{report:#}");
    let before = kinds(&sandbox, &run_id);
    for (reviewer, role) in [("clerk.other", "clerk"), ("a.one", "approver")] {
        let outcome = if role == "clerk" { "done" } else { "approved" };
        let stderr = decide_refused(
            &sandbox,
            &run_id,
            (outcome, reviewer, role),
            "again",
            &digest,
        );
        assert!(
            stderr.contains("is completed; only a run awaiting review can be reviewed"),
            "{stderr}"
        );
    }
    assert_eq!(kinds(&sandbox, &run_id), before, "nothing was recorded");
    verifies_and_replays(&sandbox, &run_id);

    // Expired by its timeout, then decided late: refused the same way.
    let closes = json!([[{"finish": {"output": {"closed": true}}}]]);
    let late = escalated_under(&sandbox, &short_timeout(), closes);
    let digest = action(&sandbox, &late);
    past_the_timeout();
    let output = sandbox.warden(&["review", "--expire"]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let before = kinds(&sandbox, &late);
    let output = sandbox.warden(&["review", &late]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "an expired run shows no case"
    );
    let stderr = decide_refused(
        &sandbox,
        &late,
        ("approved", "a.one", "approver"),
        "late",
        &digest,
    );
    assert!(
        stderr.contains("only a run awaiting review can be reviewed"),
        "{stderr}"
    );
    assert_eq!(kinds(&sandbox, &late), before, "nothing was recorded");
    verifies_and_replays(&sandbox, &late);
}

/// A timeout applies its declared outcome, never an approval, once the time has passed,
/// and never before: `--now` may not be later than the machine's clock.
#[test]
fn expiry_applies_the_declared_outcome_after_its_time() {
    let sandbox = Sandbox::new();
    let closes = json!([[{"finish": {"output": {"closed": true}}}]]);
    let run_id = escalated_under(&sandbox, &short_timeout(), closes);
    let (code, none) = sandbox.warden_json(&["review", "--expire"]);
    assert_eq!(
        (code, none.as_array().map(Vec::len)),
        (0, Some(0)),
        "not yet due: {none:#}"
    );
    // An hour from now is refused, whichever way it is written; nothing is recorded.
    let before = kinds(&sandbox, &run_id);
    let hour = std::time::SystemTime::now() + Duration::from_secs(3600);
    for later in [
        humantime::format_rfc3339_seconds(hour).to_string(),
        humantime::format_rfc3339_seconds(hour + Duration::from_secs(5 * 3600))
            .to_string()
            .replace('Z', "-05:00"),
    ] {
        let output = sandbox.warden(&["review", "--expire", "--now", &later]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{later}: {stderr}");
        assert!(
            stderr.contains("later than this machine's clock"),
            "{stderr}"
        );
    }
    assert_eq!(kinds(&sandbox, &run_id), before, "nothing was recorded");
    // An earlier time, written in New York's winter time (UTC-5): the offset counts, and
    // as of a minute ago the run was not yet due.
    past_the_timeout();
    let earlier = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() - Duration::from_secs(60) - Duration::from_secs(5 * 3600),
    )
    .to_string()
    .replace('Z', "-05:00");
    let (code, none) = sandbox.warden_json(&["review", "--expire", "--now", &earlier]);
    assert_eq!(
        (code, none.as_array().map(Vec::len)),
        (0, Some(0)),
        "{none:#}"
    );
    let (code, expired) = sandbox.warden_json(&["review", "--expire"]);
    assert_eq!(code, 0, "{expired:#}");
    assert_eq!(expired[0]["state"], "done", "{expired:#}");
    let (_, shown) = sandbox.warden_json(&["show", &run_id]);
    let review = shown["records"]
        .as_array()
        .expect("records")
        .iter()
        .find(|r| r["kind"] == "review")
        .expect("review");
    assert_eq!(review["body"]["Review"]["kind"], "Expiry");
    assert_eq!(review["body"]["Review"]["reviewer"], "warden");
    verifies_and_replays(&sandbox, &run_id);
}

/// A run whose timeout cannot be applied (its bindings file changed since it ran) is named
/// and left awaiting review, and does not hold back the other runs due.
#[test]
fn expiry_goes_past_a_run_it_cannot_continue() {
    let sandbox = Sandbox::new();
    let closes = || json!([[{"finish": {"output": {"closed": true}}}]]);
    let stuck = escalated_under(&sandbox, &short_timeout(), closes());
    let bindings = sandbox.bindings();
    let mut text = std::fs::read_to_string(&bindings).expect("bindings");
    text.push_str("\n# changed after the first run\n");
    std::fs::write(&bindings, text).expect("change the bindings");
    let due = escalated_under(&sandbox, &short_timeout(), closes());
    past_the_timeout();
    let (code, results) = sandbox.warden_json(&["review", "--expire"]);
    assert_eq!(code, 1, "{results:#}");
    let results = results.as_array().expect("results");
    assert_eq!(results.len(), 2, "{results:#?}");
    let not_continued = results
        .iter()
        .find(|r| r["result"] == "not_continued")
        .expect("the stuck run is named");
    assert_eq!(not_continued["run_id"], stuck.as_str());
    assert!(
        not_continued["explanation"]
            .as_str()
            .is_some_and(|e| e.contains("bindings")),
        "{not_continued:#}"
    );
    let (_, shown) = sandbox.warden_json(&["show", &due]);
    assert_eq!(shown["run"]["status"], "completed", "{shown:#}");
    let (_, shown) = sandbox.warden_json(&["show", &stuck]);
    assert_eq!(shown["run"]["status"], "awaiting_review", "{shown:#}");
}

/// A policy whose timeout would approve (a gated state) is refused at load.
#[test]
fn a_timeout_may_not_approve() {
    let text = REVIEWED.replace(
        "after = \"24h\"\noutcome = \"done\"",
        "after = \"24h\"\noutcome = \"approved\"",
    );
    let error = warden::Policy::parse(&text, "reviewed.toml").expect_err("refused");
    assert!(
        error.to_string().contains("must never pass a gate"),
        "{error}"
    );
}

/// Crash consistency: `warden review --decide` killed after the review step committed (as
/// the payment after it lands) and resumed: one review, one payment, the run completes,
/// verifies and replays identically. What a kill here could lose: the step after the
/// review, which the resume re-runs with the same idempotency key.
#[test]
fn a_crash_right_after_a_review_resumes_without_a_second_review_or_payment() {
    for trial in 0..4u64 {
        let sandbox = Sandbox::new();
        let run_id = escalated(&sandbox);
        let digest = action(&sandbox, &run_id);
        let site = Site::new(&sandbox);
        let args: Vec<std::ffi::OsString> = [
            "review",
            &run_id,
            "--decide",
            "working",
            "--reviewer",
            "a.one",
            "--role",
            "approver",
            "--note",
            "pay",
            "--action",
            &digest,
        ]
        .iter()
        .map(Into::into)
        .collect();
        let child = site
            .command(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let moment = if trial % 2 == 0 {
            Moment::Effects(1)
        } else {
            Moment::After(Duration::from_millis(30 + 40 * trial))
        };
        kill_at(child, Some(moment), &sandbox, Some(&run_id));
        for _ in 0..8 {
            let (_, shown) = sandbox.warden_json(&["show", &run_id]);
            match shown["run"]["status"].as_str() {
                Some("running") => {
                    let output = sandbox.warden(&["resume", &run_id]);
                    assert!(
                        matches!(output.status.code(), Some(0 | 10 | 11)),
                        "trial {trial}: resume: {}",
                        String::from_utf8_lossy(&output.stderr)
                    );
                }
                Some("awaiting_review") => {
                    // Killed before the review committed: decide again (nothing was recorded).
                    decide(&sandbox, &run_id, "working", "a.one", "approver", &digest);
                }
                _ => break,
            }
        }
        let (_, shown) = sandbox.warden_json(&["show", &run_id]);
        assert_eq!(
            shown["run"]["status"], "completed",
            "trial {trial}: {shown:#}"
        );
        let kinds = kinds(&sandbox, &run_id);
        assert_eq!(
            kinds.iter().filter(|k| *k == "review").count(),
            1,
            "trial {trial}: one review"
        );
        assert_eq!(ledger_lines(&sandbox), 1, "trial {trial}: one payment");
        verifies_and_replays(&sandbox, &run_id);
    }
}

/// A stricter policy that would have escalated an autonomous decision says so, rather than
/// inventing a reviewer's answer.
#[test]
fn a_counterfactual_that_escalates_reports_that_it_would_need_review() {
    let sandbox = Sandbox::new();
    let journal = sandbox.journal();
    let plan = json!([[{"model_from_input": {"name": "risk", "fields": ["x"]}}, {"transition_citing": {"to": "approved", "saved": 0}}], [{"finish": {"output": {}}}]]);
    let report = sandbox.run_text(
        &journal,
        guests::SCRIPTED,
        REVIEWED,
        &json!({"x": -3.0, "plan": plan}),
    );
    assert_eq!(
        report.outcome.state, "approved",
        "P(safe) = 0.953: {report:#?}"
    );
    drop(journal);
    let stricter = sandbox.path("stricter.toml");
    std::fs::write(
        &stricter,
        REVIEWED.replace("min_confidence = 0.9", "min_confidence = 0.99"),
    )
    .expect("write");
    let (code, replayed) = sandbox.warden_json(&[
        "replay",
        &report.run_id,
        "--policy",
        stricter.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 12, "{replayed:#}");
    assert_eq!(replayed["verdict"], "needs_review");
    assert_eq!(replayed["replayed"]["status"], "awaiting_review");
}

/// A fork from a checkpoint after a review carries the review its agent reads in its own
/// journal (`inherited_review`), so that it replays from its own records, bit for bit.
#[test]
fn a_fork_after_a_review_reads_the_review_and_replays() {
    let sandbox = Sandbox::new();
    let run_id = escalated_then(
        &sandbox,
        json!([
            ["read_review"],
            ["read_review", {"transition": {"to": "done"}}],
            [{"finish": {"output": {"closed": true}}}]
        ]),
    );
    let digest = action(&sandbox, &run_id);
    let (code, report) = decide(&sandbox, &run_id, "working", "a.boss", "approver", &digest);
    assert_eq!(code, 0, "{report:#}");
    verifies_and_replays(&sandbox, &run_id);
    let (code, fork) = sandbox.warden_json(&["fork", &run_id, "--at-step", "2"]);
    assert_eq!(code, 0, "{fork:#}");
    let fork_id = fork["run_id"].as_str().expect("fork id").to_string();
    let kinds = kinds(&sandbox, &fork_id);
    assert!(kinds.contains(&"inherited_review".to_string()), "{kinds:?}");
    let (_, shown) = sandbox.warden_json(&["show", &fork_id]);
    let read = shown["records"]
        .as_array()
        .expect("records")
        .iter()
        .any(|r| {
            r["text"]
                .as_str()
                .is_some_and(|t| t.contains("reviewed by a.boss (approver): checked the file"))
        });
    assert!(read, "the fork's agent read its parent's review: {shown:#}");
    verifies_and_replays(&sandbox, &fork_id);
    let (code, all) = sandbox.warden_json(&["replay", "--all"]);
    assert_eq!(code, 0, "{all:#}");
}

/// A fork from a checkpoint taken in a review state would be a second case for the same
/// action without the gate's decision: refused. From the checkpoint before, the fork runs
/// the step again, and its own gate sends it to review with its own evidence.
#[test]
fn a_fork_from_a_review_state_is_refused_and_one_from_before_has_its_own_case() {
    let sandbox = Sandbox::new();
    let run_id = escalated(&sandbox);
    let output = sandbox.warden(&["fork", &run_id, "--at-step", "1"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is in review state `review`") && stderr.contains("--at-step 0"),
        "{stderr}"
    );
    let (code, fork) = sandbox.warden_json(&["fork", &run_id, "--at-step", "0"]);
    assert_eq!(code, 10, "the fork's own gate sends it to review: {fork:#}");
    let fork_id = fork["run_id"].as_str().expect("fork id").to_string();
    let (code, case) = sandbox.warden_json(&["review", &fork_id]);
    assert_eq!(code, 10, "{case:#}");
    assert!(
        case["inference"].is_object(),
        "the gate's evidence: {case:#}"
    );
    assert!(
        case["decision"].to_string().contains("GateLabelNotMet"),
        "{case:#}"
    );
}

/// A fork re-asks a case that was decided: its reviewer sees the decision on the run it
/// was forked from (a declined case forked until someone approves it is in plain sight).
#[test]
fn a_forks_case_file_shows_the_decisions_made_on_the_run_it_came_from() {
    let sandbox = Sandbox::new();
    let run_id = escalated_then(
        &sandbox,
        json!([[{"finish": {"output": {"closed": true}}}]]),
    );
    let digest = action(&sandbox, &run_id);
    let (code, report) = decide(&sandbox, &run_id, "done", "clerk.meyer", "clerk", &digest);
    assert_eq!(code, 0, "{report:#}");
    let (code, fork) = sandbox.warden_json(&["fork", &run_id, "--at-step", "0"]);
    assert_eq!(code, 10, "the fork's own gate sends it to review: {fork:#}");
    let fork_id = fork["run_id"].as_str().expect("fork id").to_string();
    let (code, case) = sandbox.warden_json(&["review", &fork_id]);
    assert_eq!(code, 10, "{case:#}");
    let earlier = case["earlier"].as_array().expect("earlier decisions");
    assert_eq!(earlier.len(), 1, "{case:#}");
    assert_eq!(earlier[0]["run_id"], run_id.as_str());
    assert_eq!(earlier[0]["review"]["outcome"], "done");
    assert_eq!(earlier[0]["review"]["reviewer"], "clerk.meyer");
    let output = sandbox.warden(&["review", &fork_id]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains(&format!(
            "earlier  clerk.meyer (clerk) sent run {run_id} (this one was forked from it) to `done`"
        )),
        "{text}"
    );
}

/// A note the agent could not read within the policy's response budget is refused before
/// anything is recorded; a submitter id that would hide a difference is refused; and the
/// submitter of the run a fork was made from may not decide the fork's case either.
#[test]
fn notes_submitters_and_forks_cannot_get_around_the_review() {
    let sandbox = Sandbox::new();
    let tight = REVIEWED.replace("max_response_bytes = 65536", "max_response_bytes = 1024");
    let run_id = escalated_under(&sandbox, &tight, json!([]));
    let digest = action(&sandbox, &run_id);
    let note = "n".repeat(2_000);
    let stderr = decide_refused(
        &sandbox,
        &run_id,
        ("done", "c.clerk", "clerk"),
        &note,
        &digest,
    );
    assert!(
        stderr.contains("--note is too long") && stderr.contains("max_response_bytes = 1024"),
        "{stderr}"
    );
    assert!(
        !kinds(&sandbox, &run_id).contains(&"review_refused".to_string()),
        "nothing was recorded"
    );

    let run_id = escalated(&sandbox);
    let policy = sandbox.path("reviewed.toml");
    let policy = policy.to_str().expect("utf-8");
    let bindings = sandbox.bindings();
    let bindings = bindings.to_str().expect("utf-8");
    let input = sandbox.path("case.json");
    let input = input.to_str().expect("utf-8");
    for submitter in [" tester", "tes\u{200b}ter", ""] {
        let output = sandbox.warden(&[
            "run",
            guests::SCRIPTED,
            "--policy",
            policy,
            "--bindings",
            bindings,
            "--input",
            input,
            "--submitter",
            submitter,
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{submitter:?}: {stderr}");
        assert!(
            stderr.contains("--submitter (by default $USER)"),
            "{stderr}"
        );
    }
    // A $USER that is not UTF-8 is refused, not dropped (no submitter would be barred).
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("--db")
        .arg(sandbox.db())
        .args([
            "run",
            guests::SCRIPTED,
            "--policy",
            policy,
            "--bindings",
            bindings,
            "--input",
            input,
        ])
        .env(
            "USER",
            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"tester\xff"),
        )
        .output()
        .expect("run warden");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("$USER is not UTF-8"), "{stderr}");
    let (code, fork) = sandbox.warden_json(&[
        "fork",
        &run_id,
        "--at-step",
        "0",
        "--submitter",
        "someone.else",
    ]);
    assert_eq!(code, 10, "{fork:#}");
    let fork_id = fork["run_id"].as_str().expect("fork id").to_string();
    let digest = action(&sandbox, &fork_id);
    let (code, result) = decide(&sandbox, &fork_id, "done", "Tester", "clerk", &digest);
    assert_eq!(code, 2, "{result:#}");
    assert!(
        result["explanation"]
            .as_str()
            .unwrap_or_default()
            .contains("submitted the run"),
        "{result:#}"
    );
    let (code, result) = decide(&sandbox, &fork_id, "done", "c.clerk", "clerk", &digest);
    assert_eq!(code, 11, "decided by another person: {result:#}");
}

/// `REVIEWED` with a second review state: the first reviewer may send a case on to a
/// senior, in whose state the policy even grants the payment tool.
fn two_stage() -> String {
    REVIEWED.replace(
        "transitions = [\"approved\", \"done\", \"working\"]\n",
        "transitions = [\"approved\", \"done\", \"working\", \"senior\"]\n\n\
             [states.review.decisions.senior]\nroles = [\"clerk\"]\n\n\
             [states.senior]\nreview = true\ntools = [\"disbursement\"]\n\
             transitions = [\"working\", \"done\"]\n\n\
             [states.senior.decisions.working]\nroles = [\"senior\"]\n\n\
             [states.senior.decisions.done]\nroles = [\"senior\"]\n",
    )
}

/// A reviewer who sends a case on to a second review state leaves it waiting there for
/// the second person: the agent, stepping in that state, may read but not act (not pay,
/// though the state grants the tool, and not move on); then the second decision continues
/// the run, which pays once, completes, verifies and replays.
#[test]
fn a_case_sent_on_to_a_second_review_waits_for_it_and_the_agent_cannot_act_there() {
    let sandbox = Sandbox::new();
    let policy = two_stage();
    assert!(policy.contains("[states.senior]"), "{policy}");
    let run_id = escalated_under(
        &sandbox,
        &policy,
        json!([
            ["read_review", {"tool": {"name": "disbursement", "args": {"amount": 5}}}, {"transition": {"to": "done"}}],
            [{"finish": {"output": {"paid": true}}}]
        ]),
    );
    let first = action(&sandbox, &run_id);
    let (code, report) = decide(&sandbox, &run_id, "senior", "c.lerk", "clerk", &first);
    assert_eq!(code, 10, "the run waits for the senior: {report:#}");
    assert_eq!(
        (report["status"].as_str(), report["state"].as_str()),
        (Some("awaiting_review"), Some("senior")),
        "{report:#}"
    );
    assert_eq!(
        ledger_lines(&sandbox),
        0,
        "no payment while the senior decides"
    );
    let (_, shown) = sandbox.warden_json(&["show", &run_id]);
    let stepped_in_senior = shown["records"]
        .as_array()
        .expect("records")
        .iter()
        .any(|r| r["kind"] == "step_started" && r["body"]["StepStarted"]["state"] == "senior");
    assert!(
        !stepped_in_senior,
        "the agent takes no step in a review state: {shown:#}"
    );
    let second = action(&sandbox, &run_id);
    assert_ne!(first, second, "the second case is a new action");
    // The senior's case file says who sent the case on, and why.
    let (_, case) = sandbox.warden_json(&["review", &run_id]);
    let earlier = &case["earlier"][0];
    assert_eq!(
        (
            &earlier["run_id"],
            &earlier["review"]["reviewer"],
            &earlier["review"]["note"]
        ),
        (&json!(run_id), &json!("c.lerk"), &json!("checked the file")),
        "{case:#}"
    );
    let output = sandbox.warden(&["review", &run_id]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("earlier  c.lerk (clerk) sent this run to `senior`"),
        "{text}"
    );
    // The first case's digest, a clerk, and the submitter are all refused.
    let (code, refused) = decide(&sandbox, &run_id, "working", "s.enior", "senior", &first);
    assert_eq!(code, 2, "{refused:#}");
    let (code, refused) = decide(&sandbox, &run_id, "working", "c.lerk", "clerk", &second);
    assert_eq!(code, 2, "{refused:#}");
    let (code, report) = decide(&sandbox, &run_id, "working", "s.enior", "senior", &second);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(
        (report["status"].as_str(), report["state"].as_str()),
        (Some("completed"), Some("done")),
        "{report:#}"
    );
    assert_eq!(
        ledger_lines(&sandbox),
        1,
        "one payment, after the second decision"
    );
    let kinds = kinds(&sandbox, &run_id);
    assert_eq!(kinds.iter().filter(|k| *k == "review").count(), 2);
    verifies_and_replays(&sandbox, &run_id);
}

/// An agent that moves itself into a review state cannot act after it in that step
/// (its payment is held, not made); the run waits for a person.
#[test]
fn an_agent_that_enters_a_review_state_itself_cannot_act_there() {
    let sandbox = Sandbox::new();
    let policy = two_stage().replace(
        "transitions = [\"approved\", \"done\"]\n\n[states.working]",
        "transitions = [\"approved\", \"done\", \"senior\"]\n\n[states.working]",
    );
    assert!(policy.contains("\"done\", \"senior\"]"), "{policy}");
    std::fs::write(sandbox.path("reviewed.toml"), &policy).expect("write policy");
    let plan = json!([[
        {"transition": {"to": "senior"}},
        {"tool": {"name": "disbursement", "args": {"amount": 5}}}
    ]]);
    let input = sandbox.input("case.json", &json!({"x": 2.0, "plan": plan}));
    let (code, report) = sandbox.warden_json(&[
        "run",
        guests::SCRIPTED,
        "--policy",
        sandbox.path("reviewed.toml").to_str().expect("utf-8"),
        "--bindings",
        sandbox.bindings().to_str().expect("utf-8"),
        "--input",
        input.to_str().expect("utf-8"),
        "--submitter",
        "tester",
    ]);
    assert_eq!(code, 10, "{report:#}");
    assert_eq!(report["state"], "senior", "{report:#}");
    assert_eq!(ledger_lines(&sandbox), 0, "the payment was held");
    verifies_and_replays(&sandbox, &run_id_of(&report));
}

fn run_id_of(report: &Value) -> String {
    report["run_id"].as_str().expect("run id").to_string()
}

/// Two runs of the same application, each awaiting review, have different action
/// digests: a decision made on one run's case is refused on the other.
#[test]
fn an_action_digest_is_bound_to_its_run() {
    let sandbox = Sandbox::new();
    let after = json!([[{"finish": {"output": {}}}]]);
    let one = escalated_then(&sandbox, after.clone());
    let two = escalated_then(&sandbox, after);
    let (digest_one, digest_two) = (action(&sandbox, &one), action(&sandbox, &two));
    assert_ne!(digest_one, digest_two);
    let (code, refused) = decide(&sandbox, &two, "done", "c.lerk", "clerk", &digest_one);
    assert_eq!(code, 2, "{refused:#}");
    let (code, report) = decide(&sandbox, &two, "done", "c.lerk", "clerk", &digest_two);
    assert_eq!(code, 0, "{report:#}");
}

/// No budget of steps takes a run out of the queue: an agent that spent its steps before
/// it escalated still waits for the second reviewer when the first sends the case on.
#[test]
fn a_spent_step_budget_does_not_take_a_case_sent_on_out_of_the_queue() {
    let sandbox = Sandbox::new();
    let policy = two_stage().replace(
        "max_response_bytes = 65536",
        "max_response_bytes = 65536\nmax_steps = 1",
    );
    assert!(policy.contains("max_steps = 1"));
    let run_id = escalated_under(&sandbox, &policy, json!([]));
    let digest = action(&sandbox, &run_id);
    let (code, report) = decide(&sandbox, &run_id, "senior", "c.lerk", "clerk", &digest);
    assert_eq!(
        (code, report["status"].as_str(), report["state"].as_str()),
        (10, Some("awaiting_review"), Some("senior")),
        "{report:#}"
    );
    verifies_and_replays(&sandbox, &run_id);
}

/// `two_stage` where the agent may send the run to review itself, from `start` or
/// `working`, and each step is checkpointed only every `every` steps.
fn self_review(every: u32) -> String {
    let text = two_stage()
        .replace(
            "[states.start]\nmodels = [\"risk\"]\ntransitions = [\"approved\", \"done\"]",
            "[states.start]\nmodels = [\"risk\"]\ntools = [\"disbursement\"]\ntransitions = [\"approved\", \"done\", \"working\", \"review\"]",
        )
        .replace(
            "[states.working]\ntools = [\"disbursement\"]\ntransitions = [\"done\"]",
            "[states.working]\ntools = [\"disbursement\"]\ntransitions = [\"done\", \"review\"]",
        )
        .replace(
            "max_response_bytes = 65536",
            &format!("max_response_bytes = 65536\ncheckpoint_every = {every}"),
        );
    assert!(
        text.contains("\"working\", \"review\"]")
            && text.contains("[\"done\", \"review\"]")
            && text.contains("checkpoint_every"),
        "{text}"
    );
    text
}

/// Runs the scripted agent on `plan` under the policy text `policy`.
fn run_plan(sandbox: &Sandbox, policy: &str, plan: Value) -> (i32, Value) {
    let path = sandbox.path("self-review.toml");
    std::fs::write(&path, policy).expect("write policy");
    let input = sandbox.input("plan.json", &json!({"x": 2.0, "plan": plan}));
    sandbox.warden_json(&[
        "run",
        guests::SCRIPTED,
        "--policy",
        path.to_str().expect("utf-8"),
        "--bindings",
        sandbox.bindings().to_str().expect("utf-8"),
        "--input",
        input.to_str().expect("utf-8"),
        "--submitter",
        "tester",
    ])
}

/// An agent that pays, enters review and then acts again in the same step is stopped in
/// mid-step, so its review continues from the checkpoint before that step and the agent
/// runs the step's logic again after the decision. The payment it made before is not made
/// again: an identical request is answered from its record. With checkpoints every three
/// steps, the committed steps between the checkpoint and that step are re-executed against
/// their recording, never live. Each run verifies and replays.
#[test]
fn a_payment_made_before_a_step_stopped_in_review_is_not_made_again() {
    for (every, via_senior) in [(1, false), (3, false), (1, true), (3, true)] {
        let sandbox = Sandbox::new();
        let pay =
            |amount: u32| json!({"tool": {"name": "disbursement", "args": {"amount": amount}}});
        let plan = json!([
            [pay(10), {"transition": {"to": "working"}}],
            [pay(20)],
            [pay(30), {"transition": {"to": "review"}}, pay(1)],
            [{"transition": {"to": "done"}}],
            [{"finish": {"output": {}}}]
        ]);
        let (code, report) = run_plan(&sandbox, &self_review(every), plan);
        assert_eq!(
            (code, report["state"].as_str()),
            (10, Some("review")),
            "every {every}: {report:#}"
        );
        let run_id = report["run_id"].as_str().expect("run id").to_string();
        assert_eq!(
            ledger_lines(&sandbox),
            3,
            "every {every}: 10, 20 and 30, not 1"
        );
        let mut digest = action(&sandbox, &run_id);
        if via_senior {
            // Sent on to a second review first: the senior's decision continues the run.
            let (code, report) = decide(&sandbox, &run_id, "senior", "c.lerk", "clerk", &digest);
            assert_eq!(code, 10, "every {every}: {report:#}");
            digest = action(&sandbox, &run_id);
        }
        let (code, report) = if via_senior {
            decide(&sandbox, &run_id, "working", "s.enior", "senior", &digest)
        } else {
            decide(&sandbox, &run_id, "working", "a.one", "approver", &digest)
        };
        // The step runs again: its payment of 30 answered from its record, into review
        // again, its payment of 1 held.
        assert_eq!(
            (code, report["state"].as_str()),
            (10, Some("review")),
            "every {every}, via the senior {via_senior}: {report:#}"
        );
        assert_eq!(
            ledger_lines(&sandbox),
            3,
            "every {every}, via the senior {via_senior}: nothing paid twice"
        );
        verifies_and_replays(&sandbox, &run_id);
        let digest = action(&sandbox, &run_id);
        let (code, report) = decide(&sandbox, &run_id, "done", "clerk.meyer", "clerk", &digest);
        assert!(matches!(code, 0 | 11), "every {every}: {report:#}");
        assert_eq!(
            ledger_lines(&sandbox),
            3,
            "every {every}: nothing paid twice"
        );
        verifies_and_replays(&sandbox, &run_id);
    }
}

/// Four eyes at a second review state are two people new to the case: the reviewer who
/// sent it on may not be one of them, even in a role the state allows.
#[test]
fn dual_control_at_a_second_review_excludes_who_sent_the_case_on() {
    let sandbox = Sandbox::new();
    let policy = two_stage().replace(
        "[states.senior.decisions.working]\nroles = [\"senior\"]\n",
        "[states.senior.decisions.working]\nroles = [\"senior\"]\ndual_control = true\n",
    );
    assert!(policy.contains("dual_control = true\n\n[states.senior.decisions.done]"));
    let run_id = escalated_under(
        &sandbox,
        &policy,
        json!([[{"transition": {"to": "done"}}], [{"finish": {"output": {}}}]]),
    );
    let digest = action(&sandbox, &run_id);
    let (code, report) = decide(&sandbox, &run_id, "senior", "c.lerk", "clerk", &digest);
    assert_eq!(code, 10, "{report:#}");
    let digest = action(&sandbox, &run_id);
    let (code, refused) = decide(&sandbox, &run_id, "working", "C.Lerk", "senior", &digest);
    assert_eq!(code, 2, "{refused:#}");
    assert!(
        refused["explanation"].as_str().is_some_and(
            |e| e.contains("already decided on this run (in `review`, sending it to `senior`)")
        ),
        "{refused:#}"
    );
    let (code, pending) = decide(&sandbox, &run_id, "working", "s.one", "senior", &digest);
    assert_eq!(code, 10, "the first of two: {pending:#}");
    let (code, refused) = decide(&sandbox, &run_id, "working", "c.lerk", "senior", &digest);
    assert_eq!(code, 2, "nor the second of two: {refused:#}");
    let (code, report) = decide(&sandbox, &run_id, "working", "s.two", "senior", &digest);
    assert_eq!(code, 0, "{report:#}");
    verifies_and_replays(&sandbox, &run_id);
}

/// Nor is anyone who gave the first of two decisions in an earlier case of the run: a
/// case sent back and forth between two review states does not let them count as new.
#[test]
fn dual_control_excludes_who_gave_the_first_of_two_in_an_earlier_case() {
    let sandbox = Sandbox::new();
    let policy = two_stage()
        .replace(
            "[states.senior.decisions.working]\nroles = [\"senior\"]\n",
            "[states.senior.decisions.working]\nroles = [\"senior\"]\ndual_control = true\n\n\
             [states.senior.decisions.review]\nroles = [\"senior\"]\n",
        )
        .replace(
            "transitions = [\"working\", \"done\"]",
            "transitions = [\"working\", \"done\", \"review\"]",
        );
    assert!(
        policy.contains("[states.senior.decisions.review]"),
        "{policy}"
    );
    let run_id = escalated_under(
        &sandbox,
        &policy,
        json!([[{"transition": {"to": "done"}}], [{"finish": {"output": {}}}]]),
    );
    let step = |outcome: &str, reviewer: &str, role: &str, code: i32| {
        let digest = action(&sandbox, &run_id);
        let (got, report) = decide(&sandbox, &run_id, outcome, reviewer, role, &digest);
        assert_eq!(got, code, "{reviewer} {outcome}: {report:#}");
        report
    };
    step("senior", "c.lerk", "clerk", 10);
    step("working", "s.one", "senior", 10);
    step("review", "s.two", "senior", 10);
    step("senior", "carol", "clerk", 10);
    step("working", "s.three", "senior", 10);
    let refused = step("working", "S.One", "senior", 2);
    assert!(
        refused["explanation"]
            .as_str()
            .is_some_and(|e| e.contains("already decided on this run")),
        "{refused:#}"
    );
    step("working", "s.four", "senior", 0);
    verifies_and_replays(&sandbox, &run_id);
}
