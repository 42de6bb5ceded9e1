//! The loan-underwriting example end to end, through the real `warden` binary: every
//! sample application reaches its documented outcome, the journal shows every host call
//! with its decision, every run replays bit for bit in a fresh process on a copied
//! database, and a stricter policy changes exactly the applications it should.

use crate::support::{Sandbox, loan_example, policy_path, workspace};
use serde_json::Value;

/// (application file, status, final state, decision in the output or failure text).
const SAMPLES: &[(&str, &str, &str, &str)] = &[
    ("01-prime-approve.json", "completed", "approved", "approved"),
    (
        "02-affordability-decline.json",
        "completed",
        "declined",
        "declined",
    ),
    (
        "03-high-pd-decline.json",
        "completed",
        "declined",
        "declined",
    ),
    (
        "04-mid-pd-review.json",
        "awaiting_review",
        "manual_review",
        "",
    ),
    (
        "05-gate-escalates.json",
        "awaiting_review",
        "manual_review",
        "",
    ),
    ("06-thin-file.json", "awaiting_review", "manual_review", ""),
    (
        "07-co-applicant-denied.json",
        "failed",
        "scoring",
        "tool `credit_bureau` is not allowed in state `scoring`",
    ),
    (
        "08-invalid-income.json",
        "failed",
        "intake",
        "/annual_income: exclusiveMinimum: 0 is not greater than 0",
    ),
    (
        "09-bankruptcy-decline.json",
        "completed",
        "declined",
        "declined",
    ),
    (
        "10-near-prime-approve.json",
        "completed",
        "approved",
        "approved",
    ),
    (
        "11-amount-out-of-range.json",
        "completed",
        "declined",
        "declined",
    ),
];

fn expected_exit(status: &str) -> i32 {
    match status {
        "completed" => 0,
        "awaiting_review" => 10,
        _ => 11,
    }
}

/// Runs one application through the binary with the loan agent built from source.
fn run_application(sandbox: &Sandbox, file: &str, policy: &str) -> (i32, Value) {
    let agent = warden_test_guests::LOAN_AGENT;
    let policy = policy_path(policy);
    let bindings = loan_example().join("bindings.toml");
    let input = loan_example().join("applications").join(file);
    sandbox.warden_json(&[
        "run",
        agent,
        "--policy",
        policy.to_str().expect("utf-8 path"),
        "--bindings",
        bindings.to_str().expect("utf-8 path"),
        "--input",
        input.to_str().expect("utf-8 path"),
    ])
}

fn run_all(sandbox: &Sandbox) -> Vec<Value> {
    SAMPLES
        .iter()
        .map(|(file, status, state, detail)| {
            let (code, report) = run_application(sandbox, file, "loan-underwriting.toml");
            assert_eq!(report["status"], *status, "{file}: {report:#}");
            assert_eq!(report["state"], *state, "{file}: {report:#}");
            assert_eq!(code, expected_exit(status), "{file}: exit code");
            match *status {
                "completed" => {
                    assert_eq!(report["output"]["decision"], *detail, "{file}: {report:#}");
                    assert!(report["reason"].is_null());
                }
                "failed" => {
                    let reason = report["reason"]
                        .as_str()
                        .expect("a failed run has a reason");
                    assert!(
                        reason.contains(detail),
                        "{file}: reason {reason:?} lacks {detail:?}"
                    );
                }
                _ => assert!(
                    report["output"].is_null(),
                    "{file}: review runs have no output yet"
                ),
            }
            // An application the input contract refuses never reaches the agent.
            let ran = report["failure"]["InputRejected"].is_null();
            assert_eq!(ran, report["host_calls"].as_u64().expect("host_calls") > 0);
            assert_eq!(ran, report["fuel"].as_u64().expect("fuel") > 0);
            report
        })
        .collect()
}

#[test]
fn every_sample_application_reaches_its_documented_outcome() {
    let sandbox = Sandbox::new();
    let reports = run_all(&sandbox);
    let approved = &reports[0];
    assert_eq!(
        approved["path"],
        serde_json::json!([
            "intake",
            "bureau_check",
            "affordability",
            "scoring",
            "approved"
        ])
    );
    let pd = approved["output"]["probability_of_default"]
        .as_f64()
        .expect("pd");
    assert!(pd > 0.0 && pd < 0.05, "prime applicant PD {pd}");
    // The denied call is a recorded failure naming the capability and the state, typed.
    let failure = &reports[6]["failure"]["Denied"]["rule"]["CapabilityNotInState"];
    assert_eq!(failure["name"], "credit_bureau");
    assert_eq!(failure["state"], "scoring");
    // The invalid income is refused by the policy's input contract before step 1, typed.
    let refused = &reports[7]["failure"]["InputRejected"];
    assert_eq!(refused["violations"][0]["pointer"], "/annual_income");
    assert_eq!(refused["violations"][0]["keyword"], "exclusiveMinimum");
    assert_eq!(reports[7]["steps"], 0);
}

#[test]
fn the_confidence_gate_sends_a_low_confidence_approval_to_review() {
    let sandbox = Sandbox::new();
    let (_, report) = run_application(&sandbox, "05-gate-escalates.json", "loan-underwriting.toml");
    let run_id = report["run_id"].as_str().expect("run id");
    let (_, timeline) = sandbox.warden_json(&["show", run_id]);
    let gate = timeline["records"]
        .as_array()
        .expect("records")
        .iter()
        .find(|r| r["body"]["decision"]["verdict"] == "Escalate")
        .expect("an escalated decision is journaled");
    let rule = &gate["body"]["decision"]["rule"]["GateLabelNotMet"];
    assert_eq!(rule["to"], "approved");
    assert_eq!(rule["model"], "pd_scorecard");
    assert_eq!(rule["label"], "repay", "the gate compares P(repay)");
    assert_eq!(rule["otherwise"], "manual_review");
    assert_eq!(rule["shortfall"], "BelowThreshold");
    let probability = rule["probability"].as_f64().expect("the host's P(repay)");
    assert!(probability < 0.90, "P(repay) {probability}");
}

#[test]
fn show_lists_every_host_call_with_its_decision_and_the_chain_checks_out() {
    let sandbox = Sandbox::new();
    let (_, report) = run_application(&sandbox, "01-prime-approve.json", "loan-underwriting.toml");
    let run_id = report["run_id"].as_str().expect("run id");
    let (code, timeline) = sandbox.warden_json(&["show", run_id]);
    assert_eq!(code, 0);
    let records = timeline["records"].as_array().expect("records");
    let calls: Vec<&Value> = records
        .iter()
        .filter(|r| r["kind"] == "host_call")
        .collect();
    assert_eq!(
        calls.len() as u64,
        report["host_calls"].as_u64().expect("host_calls")
    );
    for call in &calls {
        assert_eq!(call["body"]["decision"]["verdict"], "Allow", "{call:#}");
        assert!(
            call["body"]["decision"]["explanation"]
                .as_str()
                .is_some_and(|e| !e.is_empty())
        );
    }
    let responses = records
        .iter()
        .filter(|r| r["kind"] == "host_response")
        .count();
    assert_eq!(
        responses,
        calls.len(),
        "every allowed call has its response recorded"
    );
    assert!(
        records.iter().all(|r| r["prev_ok"] == true),
        "every predecessor digest checks out"
    );
    for pair in records.windows(2) {
        assert_eq!(pair[1]["prev"], pair[0]["digest"]);
    }
    assert!(timeline["verification"]["problem"].is_null());
    let text = String::from_utf8(sandbox.warden(&["show", run_id]).stdout).expect("utf-8");
    assert!(text.contains("tool credit_bureau"), "{text}");
    assert!(
        text.contains("every predecessor digest checks out"),
        "{text}"
    );
}

#[test]
fn every_sample_replays_bit_for_bit_in_a_fresh_process_on_a_copied_database() {
    let sandbox = Sandbox::new();
    run_all(&sandbox);
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let copy = elsewhere.path().join("copied.redb");
    std::fs::copy(sandbox.db(), &copy).expect("copy the journal");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args([
            "--db",
            copy.to_str().expect("utf-8"),
            "replay",
            "--all",
            "--json",
        ])
        .current_dir(elsewhere.path())
        .output()
        .expect("run warden replay");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reports: Vec<Value> = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(reports.len(), SAMPLES.len());
    for report in &reports {
        assert_eq!(report["verdict"], "identical", "{report:#}");
        assert!(report["divergence"].is_null());
        // A run refused before its first step has one record to compare: its outcome.
        let refused = report["original"]["reason"]["InputRejected"].is_object();
        let compared = report["records_compared"].as_u64().expect("count");
        assert!(
            if refused { compared == 1 } else { compared > 5 },
            "{report:#}"
        );
    }
}

#[test]
fn a_stricter_policy_changes_exactly_the_borderline_approval() {
    let sandbox = Sandbox::new();
    run_all(&sandbox);
    let strict = policy_path("loan-underwriting-strict.toml");
    let (code, reports) = sandbox.warden_json(&[
        "replay",
        "--all",
        "--policy",
        strict.to_str().expect("utf-8"),
    ]);
    assert_eq!(
        code, 12,
        "a changed outcome is reported with the divergence exit code"
    );
    let changed: Vec<&Value> = reports
        .as_array()
        .expect("reports")
        .iter()
        .filter(|r| r["verdict"] == "needs_review")
        .collect();
    assert_eq!(changed.len(), 1, "{reports:#}");
    let change = changed[0];
    assert_eq!(change["original"]["status"], "completed");
    assert_eq!(change["original"]["state"], "approved");
    assert_eq!(change["replayed"]["status"], "awaiting_review");
    assert_eq!(change["replayed"]["state"], "manual_review");
    assert!(
        change["divergence"]["actual"]
            .as_str()
            .is_some_and(|a| a.contains("Escalate")),
        "the departure is the gate's decision: {change:#}"
    );
    for report in reports.as_array().expect("reports") {
        assert_ne!(report["verdict"], "could_not_replay", "{report:#}");
    }
    let table = String::from_utf8(
        sandbox
            .warden(&[
                "replay",
                "--all",
                "--policy",
                strict.to_str().expect("utf-8"),
            ])
            .stdout,
    )
    .expect("utf-8");
    assert!(
        table.contains("10 unchanged, 1 would need review"),
        "{table}"
    );
}

#[test]
fn an_example_directory_manifest_names_agent_policy_bindings_and_input() {
    let sandbox = Sandbox::new();
    let dir = sandbox.path("example");
    std::fs::create_dir(&dir).expect("example dir");
    let example = loan_example();
    std::fs::write(
        dir.join("warden.toml"),
        format!(
            "agent = {:?}\npolicy = {:?}\nbindings = {:?}\ninput = {:?}\n",
            warden_test_guests::LOAN_AGENT,
            workspace().join("policies/loan-underwriting.toml"),
            example.join("bindings.toml"),
            example.join("applications/01-prime-approve.json"),
        ),
    )
    .expect("manifest");
    // Its bindings and input are outside the example directory: only the operator may
    // allow that (docs/bindings.md); its agent and policy may be anywhere.
    let refused = sandbox.warden(&["run", dir.to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("warden.toml:3:12: bindings"), "{stderr}");
    let (code, report) = sandbox.warden_json(&[
        "run",
        dir.to_str().expect("utf-8"),
        "--allow-paths-outside-bindings-dir",
    ]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["state"], "approved");
}

/// Model lineage (issue #18): `show --json` names the model, its version and the digest
/// of its card; the card is in the journal, so replay and a counterfactual still work
/// after the card file is gone.
#[test]
fn show_names_the_model_version_and_card_and_replay_needs_no_card_file() {
    let sandbox = Sandbox::new();
    let copy = sandbox.path("loan");
    for sub in ["models", "fixtures"] {
        std::fs::create_dir_all(copy.join(sub)).expect("dir");
        for entry in std::fs::read_dir(loan_example().join(sub)).expect("files") {
            let entry = entry.expect("entry");
            std::fs::copy(entry.path(), copy.join(sub).join(entry.file_name())).expect("copy");
        }
    }
    std::fs::copy(
        loan_example().join("bindings.toml"),
        copy.join("bindings.toml"),
    )
    .expect("bindings");
    let input = loan_example().join("applications/05-gate-escalates.json");
    let policy = policy_path("loan-underwriting.toml");
    let bindings = copy.join("bindings.toml");
    let (_, report) = sandbox.warden_json(&[
        "run",
        warden_test_guests::LOAN_AGENT,
        "--policy",
        policy.to_str().expect("utf-8"),
        "--bindings",
        bindings.to_str().expect("utf-8"),
        "--input",
        input.to_str().expect("utf-8"),
    ]);
    let run_id = report["run_id"].as_str().expect("run id").to_string();
    let card_text = std::fs::read(copy.join("models/pd_scorecard.toml")).expect("card");
    let card_digest = warden::Digest::of("warden-blob-v1", &card_text).to_string();
    let (code, shown) = sandbox.warden_json(&["show", &run_id]);
    assert_eq!(code, 0);
    let records = shown["records"].as_array().expect("records");
    let started = &records[0]["body"]["Started"];
    let model = &started["models"][0];
    assert_eq!(model["name"], "pd_scorecard", "{started:#}");
    assert!(model["version"].is_string(), "{model:#}");
    assert_eq!(model["card"], card_digest.as_str(), "{model:#}");
    let inference = records
        .iter()
        .find(|r| r["kind"] == "inference")
        .expect("an inference record");
    let card = &inference["body"]["Inference"]["card"];
    assert_eq!(card["name"], "pd_scorecard", "{inference:#}");
    assert_eq!(card["version"], model["version"]);
    assert_eq!(card["card"], card_digest.as_str());

    std::fs::remove_file(copy.join("models/pd_scorecard.toml")).expect("delete the card");
    let (code, replayed) = sandbox.warden_json(&["replay", &run_id]);
    assert_eq!(code, 0, "{replayed:#}");
    assert_eq!(replayed["verdict"], "identical");
    let strict = policy_path("loan-underwriting-strict.toml");
    let (_, counterfactual) = sandbox.warden_json(&[
        "replay",
        &run_id,
        "--policy",
        strict.to_str().expect("utf-8"),
    ]);
    assert_ne!(
        counterfactual["verdict"], "could_not_replay",
        "{counterfactual:#}"
    );
}
