//! Secrets never leave the deployment (issue #15): the signing key, a credential in the
//! environment of the writing process, and a credential in the bindings file (a comment,
//! and a fixture record the agent never asks for) are planted; then every byte of the
//! journal file, of a JSON-lines export, of an evidence pack and of the HTML report is
//! searched for each, raw and hex-encoded.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::loan_example;

const ENV_SECRET: &str = "sk-live-ENVIRONMENT-7f3a9c1e5b2d4680";
const COMMENT_SECRET: &str = "tok-COMMENT-19d2b7c4e8a6f035";
const FIXTURE_SECRET: &str = "pin-UNREAD-FIXTURE-52c8e1a7d3b9";

fn warden(dir: &Path, args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .current_dir(dir)
        .env_remove("WARDEN_DB")
        .env_remove("WARDEN_SIGNING_KEY")
        .env("CREDIT_BUREAU_API_TOKEN", ENV_SECRET)
        .output()
        .expect("run warden");
    assert!(
        output.status.code().is_some_and(|c| c == 0 || c == 10),
        "warden {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Copies the loan example into `dir`, planting secrets in its bindings.
fn planted_example(dir: &Path) -> std::path::PathBuf {
    let example = dir.join("loan");
    let source = loan_example();
    for sub in ["fixtures", "models", "applications"] {
        std::fs::create_dir_all(example.join(sub)).expect("dir");
        for entry in std::fs::read_dir(source.join(sub)).expect("read") {
            let entry = entry.expect("entry");
            std::fs::copy(entry.path(), example.join(sub).join(entry.file_name())).expect("copy");
        }
    }
    let manifest = std::fs::read_to_string(source.join("warden.toml")).expect("manifest");
    // The agent and policy may be anywhere: point them at the originals.
    let manifest = manifest
        .lines()
        .map(|line| {
            let (field, value) = line.split_once('=').unwrap_or(("", ""));
            let field = field.trim();
            if field == "agent" || field == "policy" {
                let value = value.trim().trim_matches('"');
                format!(
                    "{field} = {:?}",
                    source.join(value).to_string_lossy().into_owned()
                )
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(example.join("warden.toml"), manifest).expect("manifest");
    let bindings = std::fs::read_to_string(source.join("bindings.toml")).expect("bindings");
    std::fs::write(
        example.join("bindings.toml"),
        format!("# bureau API token (kept here by mistake): {COMMENT_SECRET}\n{bindings}"),
    )
    .expect("bindings");
    // A bureau record no application asks for.
    let path = example.join("fixtures/credit_bureau.json");
    let mut records: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("json");
    let unread = serde_json::json!({"applicant_id": "A-UNREAD", "pin": FIXTURE_SECRET});
    match &mut records {
        serde_json::Value::Array(list) => list.push(unread),
        serde_json::Value::Object(map) => {
            map.insert("A-UNREAD".into(), unread);
        }
        other => panic!("unexpected fixture shape: {other}"),
    }
    std::fs::write(&path, records.to_string()).expect("fixture");
    example
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn no_secret_reaches_the_journal_an_export_a_pack_or_a_report() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    warden(root, &["key", "generate", "--out", "deployment"]);
    let key_text = std::fs::read_to_string(root.join("deployment.key")).expect("key");
    let seed_hex = key_text
        .split_whitespace()
        .nth(1)
        .expect("seed")
        .to_string();
    let seed: Vec<u8> = (0..seed_hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&seed_hex[i..i + 2], 16).expect("hex"))
        .collect();
    let example = planted_example(root);
    let example = example.to_str().expect("utf-8");
    let signed = ["--db", "warden.redb", "--signing-key", "deployment.key"];
    let mut run_ids = Vec::new();
    for application in ["01-prime-approve.json", "05-gate-escalates.json"] {
        let input = format!("{example}/applications/{application}");
        let mut args = signed.to_vec();
        args.extend(["run", example, "--input", &input, "--json"]);
        let out = warden(root, &args);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        run_ids.push(report["run_id"].as_str().expect("run id").to_string());
    }
    let export = warden(root, &["--db", "warden.redb", "export", "--all"]).stdout;
    assert!(
        String::from_utf8_lossy(&export).contains("A-10001"),
        "the export holds the runs"
    );
    warden(
        root,
        &[
            "--db",
            "warden.redb",
            "evidence",
            &run_ids[1],
            "-o",
            "case.pack",
            "--key",
            "deployment.pub",
        ],
    );
    let mut artifacts: Vec<(&str, Vec<u8>)> = vec![
        (
            "the journal",
            std::fs::read(root.join("warden.redb")).expect("journal"),
        ),
        ("the export", export),
        (
            "the evidence pack",
            std::fs::read(root.join("case.pack")).expect("pack"),
        ),
    ];
    for run_id in &run_ids {
        let show = warden(root, &["--db", "warden.redb", "show", run_id, "--json"]).stdout;
        artifacts.push(("show --json", show));
    }
    for (index, run_id) in run_ids.iter().enumerate() {
        let name = format!("report-{index}.html");
        warden(
            root,
            &[
                "--db",
                "warden.redb",
                "report",
                run_id,
                "-o",
                &name,
                "--key",
                "deployment.pub",
            ],
        );
        artifacts.push((
            "the HTML report",
            std::fs::read(root.join(&name)).expect("report"),
        ));
    }
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        (
            "the environment's API token",
            ENV_SECRET.as_bytes().to_vec(),
        ),
        (
            "the token in a bindings comment",
            COMMENT_SECRET.as_bytes().to_vec(),
        ),
        (
            "an unread fixture record",
            FIXTURE_SECRET.as_bytes().to_vec(),
        ),
        ("the signing key (hex)", seed_hex.as_bytes().to_vec()),
        ("the signing key (raw)", seed.clone()),
        ("the signing key (hex of raw)", hex(&seed).into_bytes()),
    ];
    for (what, bytes) in &artifacts {
        for (secret, needle) in &secrets {
            assert!(!contains(bytes, needle), "{secret} was found in {what}");
        }
    }
}
