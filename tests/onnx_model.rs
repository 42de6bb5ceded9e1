//! The `onnx` model provider end to end (issue #17): the loan example's probability of
//! default answered by the ONNX model that `scripts/train-credit-model.py` trained on the
//! Statlog German Credit data, through the real `warden` binary, under the unchanged
//! policy and agent. The model gives the probabilities training recorded, a run under it
//! escalates or completes and replays bit for bit from the journal alone, a model file
//! changed after the run stops the run from being continued (saying why), and a file
//! that is not the model its card describes is refused, naming it.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{Sandbox, policy_path, workspace};

const MODEL: &str = "models/pd_german_credit.onnx";
const CARD: &str = "models/pd_german_credit.toml";

fn example() -> PathBuf {
    workspace().join("examples/loan-underwriting")
}

/// A copy of the loan example's ONNX deployment (bindings, fixture, model, card) in the
/// sandbox; returns its bindings file.
fn deployment(sandbox: &Sandbox) -> PathBuf {
    let dir = sandbox.path("loan");
    for sub in ["models", "fixtures"] {
        std::fs::create_dir_all(dir.join(sub)).expect("dir");
        for entry in std::fs::read_dir(example().join(sub)).expect("files") {
            let entry = entry.expect("entry");
            std::fs::copy(entry.path(), dir.join(sub).join(entry.file_name())).expect("copy");
        }
    }
    let bindings = dir.join("bindings.onnx.toml");
    std::fs::copy(example().join("bindings.onnx.toml"), &bindings).expect("bindings");
    bindings
}

fn run(sandbox: &Sandbox, bindings: &Path, application: &str) -> (i32, Value) {
    let input = example().join("applications").join(application);
    let policy = policy_path("loan-underwriting.toml");
    sandbox.warden_json(&[
        "run",
        warden_test_guests::LOAN_AGENT,
        "--policy",
        policy.to_str().expect("utf-8"),
        "--bindings",
        bindings.to_str().expect("utf-8"),
        "--input",
        input.to_str().expect("utf-8"),
    ])
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Replaces the model file with `bytes` and makes the card pin them.
fn replace_model(dir: &Path, bytes: &[u8]) {
    let card_path = dir.join(CARD);
    let card = std::fs::read_to_string(&card_path).expect("card");
    let pin = card
        .lines()
        .find(|line| line.starts_with("model_sha256 = "))
        .expect("the card pins its model");
    std::fs::write(dir.join(MODEL), bytes).expect("model");
    let repinned = card.replace(pin, &format!("model_sha256 = \"{}\"", sha256_hex(bytes)));
    std::fs::write(&card_path, repinned).expect("card");
}

#[test]
fn the_shipped_model_gives_the_probabilities_its_training_recorded() {
    let bindings =
        warden::Bindings::from_file(&example().join("bindings.onnx.toml")).expect("bindings");
    let reference =
        std::fs::read_to_string(example().join("models/pd_german_credit.reference.json"))
            .expect("reference rows written by the training script");
    let rows: Vec<Value> = serde_json::from_str(&reference).expect("JSON");
    assert!(rows.len() >= 5, "{rows:?}");
    for row in rows {
        let answer = bindings
            .infer("pd_scorecard", &row["features"].to_string())
            .expect("infer");
        let labels: Vec<&str> = answer
            .probabilities
            .iter()
            .map(|(l, _)| l.as_str())
            .collect();
        assert_eq!(labels, ["repay", "default"]);
        for (label, p) in &answer.probabilities {
            let recorded = row["probabilities"][label]
                .as_f64()
                .expect("recorded probability");
            assert!(
                (p - recorded).abs() < 1e-6,
                "{label}: Warden {p}, training (onnxruntime) {recorded}, for {}",
                row["features"]
            );
        }
        let value: Value = serde_json::from_str(&answer.value).expect("value");
        // The loan agent reads `probability`: the card's positive label, `default`.
        assert_eq!(
            value["probability"].as_f64(),
            Some(answer.probabilities[1].1)
        );
    }
}

#[test]
fn a_run_under_the_onnx_model_escalates_or_completes_and_replays_exactly() {
    let sandbox = Sandbox::new();
    let bindings = deployment(&sandbox);
    let card_bytes = std::fs::read(sandbox.path("loan").join(CARD)).expect("card");
    let card_digest = warden::Digest::of("warden-blob-v1", &card_bytes).to_string();

    // The prime applicant: the agent proposes approval (PD about 0.10, under its 0.12
    // cut-off), but the gate needs P(repay) >= 0.90 from this model, which gives 0.899.
    let (code, report) = run(&sandbox, &bindings, "01-prime-approve.json");
    assert_eq!(code, 10, "{report:#}");
    assert_eq!(report["status"], "awaiting_review");
    assert_eq!(report["state"], "manual_review");
    let escalated = report["run_id"].as_str().expect("run id").to_string();

    let (code, report) = run(&sandbox, &bindings, "03-high-pd-decline.json");
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["state"], "declined");
    assert!(
        report["output"]["probability_of_default"]
            .as_f64()
            .expect("pd")
            > 0.30,
        "{report:#}"
    );
    let declined = report["run_id"].as_str().expect("run id").to_string();

    let (code, shown) = sandbox.warden_json(&["show", &escalated]);
    assert_eq!(code, 0);
    let records = shown["records"].as_array().expect("records");
    let model = &records[0]["body"]["Started"]["models"][0];
    assert_eq!(model["provider"], "onnx", "{model:#}");
    assert_eq!(model["card"], card_digest.as_str());
    let inference = records
        .iter()
        .find(|r| r["kind"] == "inference")
        .expect("an inference record");
    let body = &inference["body"]["Inference"];
    assert_eq!(body["card"]["card"], card_digest.as_str(), "{body:#}");
    let text = body.to_string();
    assert!(text.contains("repay") && text.contains("default"), "{text}");

    for run_id in [&escalated, &declined] {
        let (code, replayed) = sandbox.warden_json(&["replay", run_id]);
        assert_eq!(code, 0, "{replayed:#}");
        assert_eq!(replayed["verdict"], "identical", "{replayed:#}");
    }
    // From the journal alone: the model is not run again.
    std::fs::remove_file(sandbox.path("loan").join(MODEL)).expect("remove the model");
    let (code, replayed) = sandbox.warden_json(&["replay", &escalated]);
    assert_eq!(code, 0, "{replayed:#}");
    assert_eq!(replayed["verdict"], "identical");
}

#[test]
fn a_model_file_changed_after_the_run_stops_it_from_being_continued() {
    let sandbox = Sandbox::new();
    let bindings = deployment(&sandbox);
    let dir = sandbox.path("loan");
    let (code, report) = run(&sandbox, &bindings, "05-gate-escalates.json");
    assert_eq!(code, 10, "{report:#}");
    let run_id = report["run_id"].as_str().expect("run id").to_string();
    let (_, case) = sandbox.warden_json(&["review", &run_id]);
    let action = case["action"].as_str().expect("action digest").to_string();
    let decide = |sandbox: &Sandbox| {
        sandbox.warden(&[
            "review",
            &run_id,
            "--decide",
            "approved",
            "--reviewer",
            "u.schmidt",
            "--role",
            "underwriter",
            "--note",
            "checked",
            "--action",
            &action,
        ])
    };
    let original = std::fs::read(dir.join(MODEL)).expect("model");

    // One bit of the model changed: the card no longer describes it.
    let mut flipped = original.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    std::fs::write(dir.join(MODEL), &flipped).expect("alter");
    let (code, replayed) = sandbox.warden_json(&["replay", &run_id]);
    assert_eq!(
        (code, replayed["verdict"].as_str()),
        (0, Some("identical")),
        "{replayed:#}"
    );
    let (code, verified) = sandbox.warden_json(&["verify", &run_id]);
    assert_eq!(code, 0, "the journal itself is intact: {verified:#}");
    let refused = decide(&sandbox);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("pd_german_credit.toml:12:16: model_sha256: "),
        "{stderr}"
    );
    assert!(
        stderr.contains("pd_german_credit.onnx has SHA-256 ")
            && stderr.contains("not the one the card describes"),
        "{stderr}"
    );

    // Other bytes with the card re-pinned to them (an unknown protobuf field appended:
    // the same arithmetic, another file): the deployment is not the run's any more.
    let mut repinned = original.clone();
    repinned.extend_from_slice(&[0xa0, 0x06, 0x01]);
    replace_model(&dir, &repinned);
    warden::Bindings::from_file(&bindings).expect("the re-pinned model loads");
    let refused = decide(&sandbox);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("its bindings changed since it started"),
        "{stderr}"
    );

    // The model the run was scored with: the review goes through.
    replace_model(&dir, &original);
    let decided = decide(&sandbox);
    assert_eq!(
        decided.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&decided.stderr)
    );
}

#[test]
fn model_files_that_are_not_the_model_the_card_describes_are_refused_naming_them() {
    let sandbox = Sandbox::new();
    let bindings = deployment(&sandbox);
    let dir = sandbox.path("loan");
    let original = std::fs::read(dir.join(MODEL)).expect("model");
    let card = std::fs::read_to_string(dir.join(CARD)).expect("card");
    let refusal = |expected: &[&str]| {
        for command in ["run", "check"] {
            let output = if command == "run" {
                let input = example().join("applications/01-prime-approve.json");
                let policy = policy_path("loan-underwriting.toml");
                sandbox.warden(&[
                    "run",
                    warden_test_guests::LOAN_AGENT,
                    "--policy",
                    policy.to_str().expect("utf-8"),
                    "--bindings",
                    bindings.to_str().expect("utf-8"),
                    "--input",
                    input.to_str().expect("utf-8"),
                ])
            } else {
                let policy = policy_path("loan-underwriting.toml");
                sandbox.warden(&[
                    "check",
                    "--policy",
                    policy.to_str().expect("utf-8"),
                    "--bindings",
                    bindings.to_str().expect("utf-8"),
                ])
            };
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            assert_eq!(output.status.code(), Some(2), "{command}: {text}");
            for part in expected {
                assert!(text.contains(part), "{command}: {part}\n{text}");
            }
        }
    };

    // Not ONNX at all (pinned, so that what is wrong is the file, not the pin).
    replace_model(&dir, b"{\"weights\": [0.1, 0.2]}\n");
    refusal(&["pd_german_credit.onnx: not an ONNX model Warden can read"]);
    let policy = policy_path("loan-underwriting.toml");
    let (code, checked) = sandbox.warden_json(&[
        "check",
        "--policy",
        policy.to_str().expect("utf-8"),
        "--bindings",
        bindings.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 2, "{checked:#}");
    let finding = &checked["findings"][0];
    assert!(
        finding["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("pd_german_credit.onnx")),
        "{finding:#}"
    );
    assert!(
        finding["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("not an ONNX model Warden can read")),
        "{finding:#}"
    );
    replace_model(&dir, &original);

    // A card that lists five features for a model that reads six.
    let block = card
        .find("[[features]]\nname = \"credit_score_scaled\"")
        .expect("the card lists credit_score_scaled");
    let block_end = block + card[block..].find("\n\n").expect("end of the table") + 2;
    let five = format!("{}{}", &card[..block], &card[block_end..]);
    assert_eq!(five.matches("[[features]]").count(), 5);
    std::fs::write(dir.join(CARD), &five).expect("card");
    refusal(&[
        "pd_german_credit.onnx: feature count mismatch: the model's input \"features\" takes 6 values per row, but its card lists 5 features",
    ]);
    std::fs::write(dir.join(CARD), &card).expect("card");

    // A card that does not say under which licence its training data may be used.
    let unlicensed: String = card
        .lines()
        .filter(|line| !line.starts_with("licence = "))
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(dir.join(CARD), &unlicensed).expect("card");
    refusal(&[
        "pd_german_credit.toml:",
        "provenance.licence: required field is missing",
    ]);
    let (_, checked) = sandbox.warden_json(&[
        "check",
        "--policy",
        policy.to_str().expect("utf-8"),
        "--bindings",
        bindings.to_str().expect("utf-8"),
    ]);
    let finding = &checked["findings"][0];
    assert_eq!(finding["kind"], "card", "{finding:#}");
    assert_eq!(finding["field"], "provenance.licence", "{finding:#}");
    std::fs::write(dir.join(CARD), &card).expect("card");

    // A model file swapped for another one: the card's pin names both.
    std::fs::write(dir.join(MODEL), b"\x08\x08").expect("model");
    refusal(&[
        "pd_german_credit.toml:12:16: model_sha256: ",
        "pd_german_credit.onnx has SHA-256 ",
    ]);
}
