//! The command line as a new user meets it: configuration mistakes are refused with the
//! file, line and field named and exit code 2; `--help` teaches; listing filters work.

use crate::support::{Sandbox, policy_path};
use serde_json::json;

const VALID_POLICY: &str = r#"[policy]
name = "cli-test"
version = "1"
initial = "start"

[states.start]
transitions = ["done"]

[states.done]
terminal = true
"#;

fn run_with_policy(sandbox: &Sandbox, text: &str) -> (i32, String) {
    let policy = sandbox.path("policy.toml");
    std::fs::write(&policy, text).expect("write policy");
    let input = sandbox.input("in.json", &json!({"a": 1}));
    let output = sandbox.warden(&[
        "run",
        warden_test_guests::ECHO,
        "--policy",
        policy.to_str().expect("utf-8"),
        "--input",
        input.to_str().expect("utf-8"),
    ]);
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_valid_policy_written_by_hand_runs() {
    let sandbox = Sandbox::new();
    let (code, stderr) = run_with_policy(&sandbox, VALID_POLICY);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn malformed_policies_are_refused_naming_file_line_and_field() {
    let sandbox = Sandbox::new();
    let cases = [
        // (edit, line, field, words the message must contain)
        (
            VALID_POLICY.replace(r#"transitions = ["done"]"#, r#"transitions = ["finished"]"#),
            7,
            "states.start.transitions",
            "finished",
        ),
        (
            VALID_POLICY.replace("terminal = true", "terminal = false"),
            6,
            "states",
            "terminal",
        ),
        (
            format!("{VALID_POLICY}\n[states.orphan]\ntransitions = [\"done\"]\n"),
            12,
            "states.orphan",
            "reached",
        ),
        (
            format!(
                "{VALID_POLICY}\n[[gates]]\nto = \"done\"\nmodel = \"oracle\"\nmin_confidence = 0.9\notherwise = \"done\"\n"
            ),
            14,
            "gates[0].model",
            "oracle",
        ),
        (
            VALID_POLICY.replace("[states.start]", "[states.start]\ncolour = \"blue\""),
            7,
            "states.start.colour",
            "colour",
        ),
        (
            format!("{VALID_POLICY}\n[budgets]\nmemory_bytes = 99_999_999_999\n"),
            13,
            "budgets.memory_bytes",
            "99999999999",
        ),
        (
            VALID_POLICY.replace("initial = \"start\"\n", ""),
            1,
            "policy.initial",
            "initial",
        ),
        (
            VALID_POLICY.replace("name = \"cli-test\"", "name = \"cli-test"),
            2,
            "",
            "not valid TOML",
        ),
    ];
    for (text, line, field, words) in cases {
        let (code, stderr) = run_with_policy(&sandbox, &text);
        assert_eq!(code, 2, "{stderr}");
        let location = format!("policy.toml:{line}:");
        assert!(
            stderr.contains(&location),
            "expected {location} in: {stderr}"
        );
        assert!(
            stderr.contains(field),
            "expected field {field} in: {stderr}"
        );
        assert!(stderr.contains(words), "expected {words:?} in: {stderr}");
    }
}

#[test]
fn configuration_mistakes_exit_with_code_2_and_say_what_to_do() {
    let sandbox = Sandbox::new();
    let policy = policy_path("test-basic.toml");
    let policy = policy.to_str().expect("utf-8");
    let bindings = sandbox.bindings();
    let bindings = bindings.to_str().expect("utf-8");
    let not_json = sandbox.path("bad.json");
    std::fs::write(&not_json, "{ nope").expect("write");
    let good_json = sandbox.input("good.json", &json!({"fine": true}));
    let wasi = format!("{}/wasi_import.wat", warden_test_guests::HOSTILE_WAT_DIR);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "run",
                warden_test_guests::ECHO,
                "--policy",
                policy,
                "--bindings",
                bindings,
                "--input",
                not_json.to_str().expect("utf-8"),
            ],
            "not valid JSON",
        ),
        (
            vec![
                "run",
                warden_test_guests::ECHO,
                "--input",
                not_json.to_str().expect("utf-8"),
            ],
            "--policy is required",
        ),
        (
            vec![
                "run",
                &wasi,
                "--policy",
                policy,
                "--bindings",
                bindings,
                "--input",
                not_json.to_str().expect("utf-8"),
            ],
            "wasi_snapshot_preview1.fd_write",
        ),
        (
            vec![
                "run",
                warden_test_guests::ECHO,
                "--policy",
                policy,
                "--input",
                good_json.to_str().expect("utf-8"),
            ],
            "disbursement",
        ),
        (vec!["show", "no-such-run"], "no run `no-such-run`"),
        (vec!["replay", "no-such-run"], "no run `no-such-run`"),
        (vec!["runs", "--status", "sleeping"], "unknown status"),
    ];
    for (args, words) in cases {
        let output = sandbox.warden(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(words),
            "{args:?}: expected {words:?} in {stderr}"
        );
    }
}

#[test]
fn an_example_whose_agent_is_not_built_says_how_to_build_it() {
    let sandbox = Sandbox::new();
    let dir = sandbox.path("example");
    std::fs::create_dir(&dir).expect("dir");
    std::fs::write(
        dir.join("warden.toml"),
        "agent = \"missing.wasm\"\nbuild = \"cargo build -p missing\"\npolicy = \"p.toml\"\n",
    )
    .expect("manifest");
    let output = sandbox.warden(&["run", dir.to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("missing.wasm") && stderr.contains("cargo build -p missing"),
        "{stderr}"
    );
}

#[test]
fn help_teaches_the_exit_codes_and_runs_filters_by_status() {
    let sandbox = Sandbox::new();
    let help = String::from_utf8(sandbox.warden(&["--help"]).stdout).expect("utf-8");
    for words in [
        "Exit codes",
        "awaiting human review",
        "warden replay",
        "WARDEN_DB",
    ] {
        assert!(help.contains(words), "--help lacks {words:?}:\n{help}");
    }
    sandbox.run(
        warden_test_guests::ECHO,
        "test-basic.toml",
        &json!({"ok": true}),
    );
    sandbox.run(warden_test_guests::SPIN, "test-basic.toml", &json!({}));
    let (code, failed) = sandbox.warden_json(&["runs", "--status", "failed"]);
    assert_eq!(code, 0);
    let failed = failed.as_array().expect("array");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["status"], "failed");
    let (_, all) = sandbox.warden_json(&["runs"]);
    assert_eq!(all.as_array().expect("array").len(), 2);
}

#[test]
fn inspecting_a_journal_that_does_not_exist_says_so_and_creates_nothing() {
    let sandbox = Sandbox::new();
    for args in [
        &["show", "x"][..],
        &["replay", "x"],
        &["verify", "x"],
        &["runs"],
    ] {
        let output = sandbox.warden(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("there is no journal at"), "{stderr}");
    }
    // A mistyped --db must not look like an empty journal: listing says there is none.
    for args in [&["runs"][..], &["verify", "--all"], &["replay", "--all"]] {
        let output = sandbox.warden(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("there is no journal at"), "{stderr}");
    }
    assert!(
        !sandbox.db().exists(),
        "inspection must not create a journal"
    );
}

#[test]
fn a_closed_pipe_is_not_an_error() {
    use std::io::Read;
    let sandbox = Sandbox::new();
    let report = sandbox.run(
        warden_test_guests::COUNTER,
        "test-basic.toml",
        &json!({"steps": 20, "amount": 1}),
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("--db")
        .arg(sandbox.db())
        .args(["show", &report.run_id, "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut first = [0u8; 16];
    child
        .stdout
        .take()
        .expect("stdout")
        .read_exact(&mut first)
        .expect("read");
    // The reader is gone (like `| head -c 16`): warden must stop quietly with success.
    let output = child.wait_with_output().expect("wait");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
