//! `warden check` (issue #18): one pass over a deployment that reports every problem at
//! once, each with its file and field, through the real binary. The deployment is a copy
//! of the loan example, its agent the one the test guests build.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::support::warden_in as warden;
use crate::support::workspace;

/// A copy of the loan example in `root/loan`, its manifest naming the agent the test
/// guests build and a copy of the loan policy inside the directory (so that a test may
/// plant a mistake in it).
fn example(root: &Path) -> PathBuf {
    let example = root.join("loan");
    // The shipped example, with its manifest's comments and `build` line.
    let source = workspace().join("examples/loan-underwriting");
    for sub in ["fixtures", "models", "applications"] {
        std::fs::create_dir_all(example.join(sub)).expect("dir");
        for entry in std::fs::read_dir(source.join(sub)).expect("read") {
            let entry = entry.expect("entry");
            std::fs::copy(entry.path(), example.join(sub).join(entry.file_name())).expect("copy");
        }
    }
    std::fs::copy(source.join("bindings.toml"), example.join("bindings.toml")).expect("copy");
    std::fs::copy(
        workspace().join("policies/loan-underwriting.toml"),
        example.join("policy.toml"),
    )
    .expect("copy");
    let manifest = std::fs::read_to_string(source.join("warden.toml")).expect("manifest");
    let manifest = manifest
        .lines()
        .map(|line| match line.split_once('=').map(|(f, _)| f.trim()) {
            Some("agent") => format!("agent = {:?}", warden_test_guests::LOAN_AGENT),
            Some("policy") => "policy = \"policy.toml\"".to_string(),
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(example.join("warden.toml"), manifest + "\n").expect("manifest");
    example
}

/// Replaces `from` by `to` in `file`, which must hold it.
fn plant(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).expect("read");
    assert!(text.contains(from), "{} has no {from:?}", file.display());
    std::fs::write(file, text.replacen(from, to, 1)).expect("write");
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_loan_example_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let example = example(dir.path());
    let output = warden(dir.path(), &["check", example.to_str().expect("utf-8")]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("result   no problems"), "{text}");
    assert!(
        text.contains(
            "build    cargo build --release --target wasm32-unknown-unknown -p loan-agent (advisory"
        ),
        "{text}"
    );
}

/// Issue #18: "`warden check` on a directory with five planted mistakes (one in each file
/// kind) reports all five at once with file and field" (six: the agent too).
#[test]
fn one_mistake_in_each_file_kind_is_reported_at_once_with_file_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let example = example(dir.path());
    // warden.toml: a misspelt field.
    let manifest = example.join("warden.toml");
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    std::fs::write(
        &manifest,
        format!("{text}inptu = \"applications/05-gate-escalates.json\"\n"),
    )
    .expect("write");
    // The policy: a threshold written as a percentage.
    plant(
        &example.join("policy.toml"),
        "min_confidence = 0.90",
        "min_confidence = 90",
    );
    // bindings.toml: a misspelt `key`.
    plant(
        &example.join("bindings.toml"),
        "key = \"applicant_id\"",
        "kye = \"applicant_id\"",
    );
    // The model card: another model's name.
    plant(
        &example.join("models/pd_scorecard.toml"),
        "name = \"pd_scorecard\"",
        "name = \"pd_score\"",
    );
    // A fixture: a record that is a number, not an object.
    plant(
        &example.join("fixtures/credit_bureau.json"),
        "\"A-10003\": {",
        "\"A-10003\": 641, \"A-10003-old\": {",
    );
    // The agent: a module that imports a function Warden never provides. (A WASI import
    // would not do: whether one is allowed is the policy's to say, and this policy does
    // not read.)
    let foreign = Path::new(warden_test_guests::HOSTILE_WAT_DIR).join("unknown_module_import.wat");
    plant(
        &manifest,
        &format!("agent = {:?}", warden_test_guests::LOAN_AGENT),
        &format!("agent = {:?}", foreign.to_str().expect("utf-8")),
    );

    let target = example.to_str().expect("utf-8");
    let output = warden(dir.path(), &["check", target]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("error: ")).collect();
    let expected = [
        ("loan/warden.toml:", "inptu: unknown field `inptu`"),
        (
            "loan/policy.toml:",
            "gates[0].min_confidence: 90 is not a confidence",
        ),
        (
            "loan/bindings.toml:9:1:",
            "tools.credit_bureau.kye: unknown field `kye`; did you mean `key`?",
        ),
        (
            "loan/fixtures/credit_bureau.json:",
            "\"A-10003\": a record must be a JSON object",
        ),
        (
            "loan/models/pd_scorecard.toml:",
            "name: the card is named \"pd_score\"",
        ),
        (
            "unknown_module_import.wat:",
            "imports.env.getrandom: agent module imports",
        ),
    ];
    assert_eq!(errors.len(), expected.len(), "{text}");
    for (file, field) in expected {
        assert!(
            errors.iter().any(|l| l.contains(file) && l.contains(field)),
            "no error in {file} at {field:?}:\n{text}"
        );
    }
    assert!(text.contains("result   6 errors, 0 warnings"), "{text}");

    // The same, as JSON: a kind, a file, a line and a field for each.
    let output = warden(dir.path(), &["check", target, "--json"]);
    assert_eq!(output.status.code(), Some(2));
    let report: Value = serde_json::from_slice(&output.stdout).expect("json");
    let findings: Vec<(String, String, bool)> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().expect("kind").to_string(),
                f["field"].as_str().expect("field").to_string(),
                f["line"].as_u64().expect("line") > 0 || f["kind"] == "agent",
            )
        })
        .collect();
    let kinds: Vec<&str> = findings.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        ["manifest", "policy", "bindings", "fixture", "card", "agent"],
        "{report:#}"
    );
    assert!(
        findings
            .iter()
            .all(|(_, field, line)| !field.is_empty() && *line),
        "{report:#}"
    );

    // `warden run` refuses it too, naming a problem with its field.
    let output = warden(dir.path(), &["--db", "j.redb", "run", target]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("inptu"));
}

/// Warnings (here a binding the policy does not use) pass unless `--strict`.
#[test]
fn warnings_fail_only_with_strict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let example = example(dir.path());
    let bindings = example.join("bindings.toml");
    let text = std::fs::read_to_string(&bindings).expect("bindings");
    std::fs::write(
        &bindings,
        format!("{text}\n[tools.payments]\nprovider = \"ledger\"\nfile = \"payments.jsonl\"\n"),
    )
    .expect("write");
    let target = example.to_str().expect("utf-8");
    let output = warden(dir.path(), &["check", target]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("warning: ")
            && l.contains("bindings.toml:15:8: tools.payments: the policy")
            && l.contains("declares no tool `payments`")),
        "{text}"
    );
    assert_eq!(
        warden(dir.path(), &["check", target, "--strict"])
            .status
            .code(),
        Some(2)
    );
    assert!(
        !example.join("payments.jsonl").exists(),
        "a check creates no ledger"
    );
}

/// The manifest's `build` is advisory: when the agent is missing, the check says which
/// command makes it, at the manifest's `agent` line.
#[test]
fn a_missing_agent_names_the_command_that_builds_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let example = example(dir.path());
    plant(
        &example.join("warden.toml"),
        &format!("agent = {:?}", warden_test_guests::LOAN_AGENT),
        "agent = \"target/loan_agent.wasm\"",
    );
    let output = warden(dir.path(), &["check", example.to_str().expect("utf-8")]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("warden.toml:3:9: agent: agent module ")
            && text.contains("does not exist; build it with: cargo build --release --target wasm32-unknown-unknown -p loan-agent"),
        "{text}"
    );
}

/// Files given on the command line are checked against each other like a directory's,
/// including the checks between files.
#[test]
fn explicit_files_are_checked_between_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let example = example(dir.path());
    plant(
        &example.join("bindings.toml"),
        "key = \"applicant_id\"",
        "key = \"id\"",
    );
    let path = |p: &str| example.join(p).to_str().expect("utf-8").to_string();
    let output = warden(
        dir.path(),
        &[
            "check",
            "--policy",
            &path("policy.toml"),
            "--bindings",
            &path("bindings.toml"),
            "--agent",
            warden_test_guests::LOAN_AGENT,
            "--input",
            &path("applications/01-prime-approve.json"),
        ],
    );
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("bindings.toml:9:7: tools.credit_bureau.key: the fixture looks records up by argument `id`")
            && text.contains("use key = \"applicant_id\""),
        "{text}"
    );
}

/// Issue #18: `warden run` stopped at the first problem of a bindings file; it lists them
/// all, one per line, each with file, line and field.
#[test]
fn run_lists_every_problem_of_a_bindings_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let example = example(dir.path());
    plant(
        &example.join("bindings.toml"),
        "provider = \"fixture\"",
        "provider = \"fixtures\"",
    );
    plant(
        &example.join("bindings.toml"),
        "file = \"models/pd_scorecard.toml\"",
        "file = \"models/pd.toml\"",
    );
    let output = warden(
        dir.path(),
        &["--db", "j.redb", "run", example.to_str().expect("utf-8")],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].contains(
            "bindings.toml:7:12: tools.credit_bureau.provider: unknown tool provider \"fixtures\""
        ) && lines[0].contains("did you mean \"fixture\"?"),
        "{stderr}"
    );
    // A missing card names the binding that points there, and its cause once.
    assert!(
        lines[1].contains("bindings.toml:13:8: models.pd_scorecard.file: cannot read ")
            && lines[1].matches("No such file").count() == 1,
        "{stderr}"
    );
}

/// An input on which an output bound cannot be computed (its field is missing) could never
/// finish in that state: `warden check --input` warns, naming the bound (beside the
/// insurance contract's own error for the missing amount). A shipped claim raises nothing,
/// even under `--strict`.
#[test]
fn an_input_an_output_bound_cannot_be_computed_on_is_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let example = crate::support::insurance_example();
    let claim = example.join("claims/01-glass-fast-track.json");
    let text = std::fs::read_to_string(&claim).expect("claim");
    let mut value: Value = serde_json::from_str(&text).expect("claim JSON");
    let check = |input: &Path, strict: bool| {
        let mut args = vec![
            "check".to_string(),
            example.to_str().expect("utf-8").to_string(),
            "--input".to_string(),
            input.to_str().expect("utf-8").to_string(),
        ];
        if strict {
            args.push("--strict".into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = warden(dir.path(), &args);
        (output.status.code(), stdout(&output))
    };
    let (code, text) = check(&claim, true);
    assert_eq!(code, Some(0), "{text}");
    // An input without `amount` (the insurance contract requires it, so look past that).
    value.as_object_mut().expect("object").remove("amount");
    let missing = dir.path().join("no-amount.json");
    std::fs::write(&missing, value.to_string()).expect("write");
    let (code, text) = check(&missing, false);
    assert!(
        text.contains("warning: ")
            && text.contains(
                "states.approved.output.payout.max: `input:/amount` cannot be computed for this input"
            )
            && text.contains("could not finish in `approved`"),
        "{text}"
    );
    assert_eq!(code, Some(2), "the contract refuses it too: {text}");
}
