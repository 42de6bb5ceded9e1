//! Tests of `warden check`'s library: the documented example deployment passes, and each
//! check between files finds the mistake it is for, naming file, line and field.

use std::path::{Path, PathBuf};

use super::*;

/// The smallest module `Agent` loads.
const AGENT: &str = r#"(module
  (import "warden" "host_call" (func (param i32 i32 i32) (result i64)))
  (memory (export "memory") 1)
  (func (export "warden_step") (result i32) i32.const 0))"#;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The fenced blocks of `docs/bindings.md`: (the file named by the `<!-- file: ... -->`
/// line before it, if any; the info string; the text).
fn doc_blocks() -> Vec<(Option<String>, String, String)> {
    let text = std::fs::read_to_string(workspace().join("docs/bindings.md")).expect("docs");
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    let mut file = None;
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if let Some(name) = trimmed
            .strip_prefix("<!-- file: ")
            .and_then(|rest| rest.strip_suffix(" -->"))
        {
            file = Some(name.to_string());
            continue;
        }
        if let Some(info) = trimmed.strip_prefix("```") {
            let indent = line.len() - line.trim_start().len();
            let mut body = String::new();
            for line in lines.by_ref() {
                if line.trim() == "```" {
                    break;
                }
                body.push_str(line.get(indent..).unwrap_or(line.trim_start()));
                body.push('\n');
            }
            blocks.push((file.take(), info.to_string(), body));
            continue;
        }
        if !trimmed.is_empty() {
            file = None;
        }
    }
    blocks
}

/// The example deployment of `docs/bindings.md`, written to `dir`, with the agent a WAT
/// module beside it.
fn documented_deployment(dir: &Path) -> CheckSpec {
    let mut written = 0;
    for (file, _, body) in doc_blocks() {
        let Some(file) = file else { continue };
        let path = dir.join(&file);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, body).expect("write");
        written += 1;
    }
    assert!(
        written >= 5,
        "the docs name the files of their example: {written}"
    );
    std::fs::write(dir.join("agent.wat"), AGENT).expect("agent");
    CheckSpec {
        target: Some(dir.to_path_buf()),
        agent: Some(dir.join("agent.wat")),
        policy: Some(workspace().join("policies/loan-underwriting.toml")),
        ..CheckSpec::default()
    }
}

fn errors(report: &CheckReport) -> Vec<String> {
    report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(ToString::to_string)
        .collect()
}

/// Every TOML and JSON block of `docs/bindings.md` parses; the files of its example
/// deployment pass `warden check` against the loan policy, whose one complaint is the
/// documented ledger it does not use.
#[test]
fn the_examples_of_docs_bindings_md_pass_warden_check() {
    for (file, info, body) in doc_blocks() {
        match info.as_str() {
            "toml" => {
                if let Err(e) = toml::from_str::<toml::Table>(&body) {
                    panic!(
                        "a toml block of docs/bindings.md ({file:?}) does not parse: {e}\n{body}"
                    );
                }
            }
            "json" => {
                if let Err(e) = serde_json::from_str::<serde_json::Value>(&body) {
                    panic!(
                        "a json block of docs/bindings.md ({file:?}) does not parse: {e}\n{body}"
                    );
                }
            }
            _ => {}
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let report = check(&documented_deployment(dir.path()));
    assert_eq!(errors(&report), Vec::<String>::new());
    let warnings: Vec<(CheckKind, &str)> = report
        .findings
        .iter()
        .map(|f| (f.kind, f.field.as_str()))
        .collect();
    assert_eq!(warnings, [(CheckKind::Unused, "tools.disbursement")]);
    assert!(
        !dir.path().join("ledger.jsonl").exists(),
        "a check creates no ledger"
    );
    assert_eq!(
        report.files.build.as_deref(),
        Some("cargo build --release --target wasm32-unknown-unknown -p loan-agent")
    );
}

/// A policy the documented deployment runs under, with `edit` applied to the loan
/// policy's text.
fn policy(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(workspace().join("policies/loan-underwriting.toml"))
        .expect("policy");
    let path = dir.join("policy.toml");
    std::fs::write(&path, edit(text)).expect("write policy");
    path
}

#[test]
fn a_feature_the_policy_reconciles_and_the_card_lacks_is_named_in_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = documented_deployment(dir.path());
    spec.policy = Some(policy(dir.path(), |t| {
        t.replace(
            "employment_years = \"input:/employment_years\"",
            "employment_yrs = \"input:/employment_years\"",
        )
    }));
    let report = check(&spec);
    let features: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| f.kind == CheckKind::Features)
        .collect();
    assert_eq!(features.len(), 2, "{features:#?}");
    assert!(features[0].file.ends_with("pd_scorecard.toml"));
    assert_eq!(features[0].field, "features");
    assert!(
        features[0]
            .message
            .contains("models.pd_scorecard.features.employment_yrs"),
        "{}",
        features[0].message
    );
    // The card's own feature the policy no longer declares: at its line.
    let card = std::fs::read_to_string(dir.path().join("models/pd_scorecard.toml")).expect("card");
    let line = card
        .lines()
        .position(|l| l == "name = \"employment_years\"")
        .expect("the feature")
        + 1;
    assert_eq!(
        (
            features[1].field.as_str(),
            features[1].line,
            features[1].column
        ),
        ("features[5].name", line, 8)
    );
    // A run refuses the pair before anything is recorded (each inference would be
    // refused, and the run would fail as if its agent erred).
    let policy = crate::Policy::from_file(spec.policy.as_deref().expect("policy")).expect("policy");
    let bindings = crate::Bindings::from_file(&dir.path().join("bindings.toml")).expect("bindings");
    match bindings.covers(&policy) {
        Err(crate::BindingsError::FeaturesDiffer {
            model,
            policy_only,
            card_only,
        }) => {
            assert_eq!(model, "pd_scorecard");
            assert_eq!(policy_only, ["employment_yrs"]);
            assert_eq!(card_only, ["employment_years"]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_capability_nothing_binds_and_a_gate_label_the_card_lacks_point_into_the_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = documented_deployment(dir.path());
    spec.policy = Some(policy(dir.path(), |t| {
        t.replace(
            "tools = [\"credit_bureau\"]\nmodels",
            "tools = [\"credit_bureau\", \"payments\"]\nmodels",
        )
        .replace("label = \"repay\"", "label = \"repays\"")
    }));
    let report = check(&spec);
    let found: Vec<(CheckKind, &str, usize)> = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| (f.kind, f.field.as_str(), f.line))
        .collect();
    let text = std::fs::read_to_string(dir.path().join("policy.toml")).expect("policy");
    let line_of = |needle: &str| {
        text.lines()
            .position(|l| l.starts_with(needle))
            .map(|i| i + 1)
    };
    assert_eq!(
        found,
        [
            (
                CheckKind::Unbound,
                "capabilities.tools",
                line_of("tools = [\"credit_bureau\", \"payments\"]").unwrap_or(0)
            ),
            (
                CheckKind::Label,
                "gates[0].label",
                line_of("label = \"repays\"").unwrap_or(0)
            ),
        ]
    );
}

#[test]
fn a_fixture_key_the_policy_does_not_tie_to_the_input_is_an_error_with_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = documented_deployment(dir.path());
    let bindings = dir.path().join("bindings.toml");
    let text = std::fs::read_to_string(&bindings).expect("bindings");
    std::fs::write(
        &bindings,
        text.replace("key = \"applicant_id\"", "key = \"id\""),
    )
    .expect("write");
    let report = check(&spec);
    let key: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| f.kind == CheckKind::FixtureKey)
        .collect();
    assert_eq!(key.len(), 1, "{:#?}", report.findings);
    assert_eq!(
        (key[0].line, key[0].column, key[0].field.as_str()),
        (4, 7, "tools.credit_bureau.key")
    );
    assert!(
        key[0].message.contains("use key = \"applicant_id\""),
        "{}",
        key[0].message
    );

    // Without sources in the policy, records that carry their id in another field say
    // which field it is.
    let records = dir.path().join("fixtures/credit_bureau.json");
    std::fs::write(
        &records,
        r#"{"A-1": {"applicant_id": "A-1", "credit_score": 700}, "A-2": {"applicant_id": "A-2"}}"#,
    )
    .expect("write");
    let mut spec = spec;
    spec.policy = Some(policy(dir.path(), |t| {
        let cut = t.find("[models.pd_scorecard.sources]").expect("sources");
        t[..cut].replace("require_reconciled = true", "require_reconciled = false")
    }));
    std::fs::write(
        &bindings,
        text.replace("key = \"applicant_id\"", "key = \"id\""),
    )
    .expect("write");
    let report = check(&spec);
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.kind == CheckKind::FixtureKey
                && f.message
                    .contains("every record carries its own id in `applicant_id`")),
        "{:#?}",
        report.findings
    );
}

/// A manifest's problems are all reported, each at its line: an unknown field, a path
/// outside the directory, a missing input, a missing agent with its build command.
#[test]
fn every_problem_of_a_manifest_is_reported_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    documented_deployment(dir.path());
    std::fs::write(
        dir.path().join("warden.toml"),
        format!(
            "agent = \"nowhere.wasm\"\nbuild = \"make agent\"\npolicy = {:?}\nbindings = \"../bindings.toml\"\ninput = \"missing.json\"\ninptu = \"x\"\n",
            workspace().join("policies/loan-underwriting.toml")
        ),
    )
    .expect("write");
    let inspection = crate::manifest::Manifest::inspect(dir.path(), false);
    let messages: Vec<String> = inspection
        .problems
        .iter()
        .map(ToString::to_string)
        .collect();
    let expected = [
        ":1:9: agent: agent module ",
        ":4:12: bindings: \"../bindings.toml\" climbs out",
        ":5:9: input: ",
        ":6:1: inptu: unknown field `inptu`",
    ];
    assert_eq!(messages.len(), expected.len(), "{messages:#?}");
    for (message, want) in messages.iter().zip(expected) {
        assert!(message.contains(want), "{want:?} is not in {message:?}");
    }
    assert!(
        messages[0].ends_with("build it with: make agent"),
        "{}",
        messages[0]
    );
}
