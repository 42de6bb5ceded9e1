//! Authoring an agent, as a new user does it: `warden new` makes a project that builds
//! for wasm32 and passes its own `warden test` and `cargo test` (the stub host); breaking
//! one expectation makes `warden test` fail, naming the line; and every command of
//! `docs/authoring.md` runs as written, with the exit code the page gives it.
//!
//! The generated crates build in one shared target directory
//! (`target/authoring-test`, linked as each project's `target/`), so only the first run
//! compiles serde and the SDK. Cargo runs offline: the project needs no crate the
//! workspace does not already use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::{loan_example, policy_path, workspace};

/// The target directory every generated project builds into.
fn shared_target() -> PathBuf {
    workspace().join("target/authoring-test")
}

/// The environment of a new user's shell: `warden` on the PATH, no journal, key or SDK
/// chosen, and cargo offline, building into the shared target directory.
fn user_command(program: &str, dir: &Path) -> Command {
    let warden = Path::new(env!("CARGO_BIN_EXE_warden"));
    let bin_dir = warden.parent().expect("the binary's directory");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![bin_dir.to_path_buf()];
    paths.extend(std::env::split_paths(&path));
    let mut command = Command::new(program);
    command
        .current_dir(dir)
        .env("PATH", std::env::join_paths(paths).expect("PATH"))
        .env("CARGO_NET_OFFLINE", "true")
        .env("USER", "author")
        .env("WARDEN_MODULE_CACHE", shared_target().join("module-cache"));
    for var in [
        "WARDEN_DB",
        "WARDEN_SIGNING_KEY",
        "WARDEN_SUBMITTER",
        "WARDEN_REVIEWER",
        "WARDEN_GUEST_SDK",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        command.env_remove(var);
    }
    command
}

/// Links `project/target` to the shared target directory, so that `cargo build` in the
/// project leaves the module where its warden.toml says, without a build of its own.
fn share_target(project: &Path) {
    let link = project.join("target");
    if project.join("Cargo.toml").exists() && std::fs::symlink_metadata(&link).is_err() {
        std::fs::create_dir_all(shared_target()).expect("shared target directory");
        std::os::unix::fs::symlink(shared_target(), &link).expect("link target/");
    }
}

fn run(program: &str, dir: &Path, args: &[&str]) -> Output {
    if program == "cargo" {
        share_target(dir);
    }
    let program = if program == "warden" {
        env!("CARGO_BIN_EXE_warden")
    } else {
        program
    };
    user_command(program, dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `warden new NAME` in `root`, built for wasm32.
fn new_project(root: &Path, name: &str) -> PathBuf {
    let output = run("warden", root, &["new", name]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let project = root.join(name);
    let output = run(
        "cargo",
        &project,
        &["build", "--release", "--target", "wasm32-unknown-unknown"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    project
}

#[test]
fn a_new_project_passes_its_own_tests_and_a_broken_expectation_fails_naming_its_line() {
    let root = tempfile::tempdir().expect("temp dir");
    let project = new_project(root.path(), "triage-under-test");

    let output = run("warden", &project, &["test", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(
        (report["passed"].as_u64(), report["failed"].as_u64()),
        (Some(4), Some(0))
    );
    let verdicts: BTreeMap<String, (String, String)> = report["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            let input = r["input"].as_str().expect("input").to_string();
            let status = r["status"].as_str().expect("status").to_string();
            let state = r["state"].as_str().expect("state").to_string();
            (input, (status, state))
        })
        .collect();
    let expected = [
        ("inputs/01-approve.json", "completed", "approved"),
        ("inputs/02-lapsed-decline.json", "completed", "declined"),
        (
            "inputs/03-gate-escalates.json",
            "awaiting_review",
            "manual_review",
        ),
        ("inputs/04-invalid-amount.json", "failed", "intake"),
    ];
    for (input, status, state) in expected {
        assert_eq!(
            verdicts.get(input),
            Some(&(status.to_string(), state.to_string())),
            "{report:#}"
        );
    }

    // The project's own unit tests, on the stub host.
    let output = run("cargo", &project, &["test"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("test result: ok. 4 passed"),
        "{}",
        text(&output)
    );

    // Break one expectation: the gate's escalation expected to be an approval.
    let file = project.join("inputs/03-gate-escalates.expect.toml");
    let original = std::fs::read_to_string(&file).expect("read");
    let broken = original.replace("state = \"manual_review\"", "state = \"approved\"");
    assert_ne!(broken, original);
    std::fs::write(&file, &broken).expect("write");
    let line = broken
        .lines()
        .position(|l| l == "state = \"approved\"")
        .expect("the broken line")
        + 1;
    let output = run("warden", &project, &["test"]);
    assert_eq!(output.status.code(), Some(12), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("PASS  01-approve.json"), "{stdout}");
    assert!(stdout.contains("FAIL  03-gate-escalates.json"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "inputs/03-gate-escalates.expect.toml:{line}: state: expected \"approved\", got \"manual_review\""
        )),
        "{stdout}"
    );
    assert!(stdout.contains("FAILED: 3 passed, 1 failed"), "{stdout}");

    // A typo in an expectation file is a usage error naming file, line and field, before
    // anything runs.
    std::fs::write(
        &file,
        "status = \"awaiting_review\"\nsate = \"manual_review\"\n",
    )
    .expect("write");
    let output = run("warden", &project, &["test"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("inputs/03-gate-escalates.expect.toml:2:1: unknown field `sate`"),
        "{stderr}"
    );

    // An input without expectations is run and reported; --write-missing records it, and
    // the recorded expectations pass.
    std::fs::remove_file(&file).expect("remove");
    let output = run("warden", &project, &["test"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("1 without expectations"),
        "{}",
        text(&output)
    );
    let output = run("warden", &project, &["test", "--write-missing"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let written = std::fs::read_to_string(&file).expect("written");
    assert!(written.contains("state = \"manual_review\""), "{written}");
    let output = run("warden", &project, &["test"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));

    // Bindings that perform an effect are refused, naming the tool: a test must not pay.
    let policy = std::fs::read_to_string(project.join("policy.toml")).expect("policy");
    let paying = policy.replace(
        "[capabilities]\ntools = [\"policy_register\"]",
        "[capabilities]\ntools = [\"policy_register\", \"payout\"]",
    );
    assert_ne!(paying, policy);
    std::fs::write(project.join("policy-pay.toml"), paying).expect("write");
    let bindings = std::fs::read_to_string(project.join("bindings.toml")).expect("bindings");
    std::fs::write(
        project.join("bindings-pay.toml"),
        bindings + "\n[tools.payout]\nprovider = \"ledger\"\nfile = \"payouts.jsonl\"\n",
    )
    .expect("write");
    let args = [
        "test",
        "--policy",
        "policy-pay.toml",
        "--bindings",
        "bindings-pay.toml",
    ];
    let output = run("warden", &project, &args);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("binds tool `payout` to an effect (a ledger)"),
        "{}",
        text(&output)
    );
}

/// The project's `State` enum is generated from its policy by `build.rs`: a misspelt
/// state fails to compile naming it, a state added to the policy fails the `match` that
/// does not handle it (cargo regenerates the enum when the policy changes), and two states
/// that would be the same variant fail the build naming the policy file, line and states.
#[test]
fn a_state_the_policy_does_not_declare_fails_to_build_naming_it() {
    let root = tempfile::tempdir().expect("temp dir");
    let project = new_project(root.path(), "typed-states");
    let build = ["build", "--release", "--target", "wasm32-unknown-unknown"];
    let edit = |file: &str, from: &str, to: &str| {
        let path = project.join(file);
        let original = std::fs::read_to_string(&path).expect("read");
        let edited = original.replacen(from, to, 1);
        assert_ne!(edited, original, "{file}: no {from:?}");
        std::fs::write(&path, edited).expect("write");
        original
    };

    let agent = edit(
        "src/lib.rs",
        "self.propose(warden, State::CoverageCheck, None)",
        "self.propose(warden, State::CoverageChek, None)",
    );
    let output = run("cargo", &project, &build);
    assert_ne!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        text(&output).contains(
            "no variant or associated item named `CoverageChek` found for enum `states::State`"
        ),
        "{}",
        text(&output)
    );
    std::fs::write(project.join("src/lib.rs"), agent).expect("restore");

    let policy = edit(
        "policy.toml",
        "[states.approved]\n",
        "[states.fraud_check]\ntransitions = [\"declined\"]\n\n[states.approved]\n",
    );
    let output = run("cargo", &project, &build);
    assert_ne!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        text(&output).contains("pattern `states::State::FraudCheck` not covered"),
        "{}",
        text(&output)
    );
    std::fs::write(project.join("policy.toml"), &policy).expect("restore");

    edit(
        "policy.toml",
        "[states.approved]\n",
        "[states.coverage-check]\n\n[states.approved]\n",
    );
    let line = |name: &str| {
        let policy = std::fs::read_to_string(project.join("policy.toml")).expect("read");
        policy.lines().position(|l| l == name).expect(name) + 1
    };
    let (first, second) = (
        line("[states.coverage_check]"),
        line("[states.coverage-check]"),
    );
    let output = run("cargo", &project, &build);
    assert_ne!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        text(&output).contains(&format!(
            "policy.toml:{second}: states `coverage-check` and `coverage_check` (line {first}) would both be the variant `State::CoverageCheck`: rename one in the policy"
        )),
        "{}",
        text(&output)
    );
}

#[test]
fn new_refuses_a_non_empty_directory_a_bad_name_and_a_missing_sdk() {
    let root = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(root.path().join("taken")).expect("mkdir");
    std::fs::write(root.path().join("taken/notes.txt"), "mine").expect("write");
    let output = run("warden", root.path(), &["new", "taken"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("exists and is not empty"),
        "{}",
        text(&output)
    );
    assert_eq!(
        std::fs::read_to_string(root.path().join("taken/notes.txt")).expect("kept"),
        "mine"
    );

    let output = run("warden", root.path(), &["new", "Claims Triage"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("use lowercase letters"),
        "{}",
        text(&output)
    );

    let output = run(
        "warden",
        root.path(),
        &[
            "new",
            "elsewhere",
            "--sdk",
            root.path().to_str().expect("utf-8"),
        ],
    );
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("is not Warden's guest SDK"),
        "{}",
        text(&output)
    );
    assert!(!root.path().join("elsewhere").exists(), "nothing written");

    // An empty directory is fine, and --dir chooses it.
    std::fs::create_dir(root.path().join("empty")).expect("mkdir");
    let output = run("warden", root.path(), &["new", "claims", "--dir", "empty"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let cargo = std::fs::read_to_string(root.path().join("empty/Cargo.toml")).expect("Cargo.toml");
    let sdk = workspace().join("guest-sdk").canonicalize().expect("sdk");
    assert!(
        cargo.contains(&format!(
            "warden-guest = {{ path = {:?} }}",
            sdk.display().to_string()
        )),
        "{cargo}"
    );

    // Not built yet: `warden test` says how to build it.
    let output = run("warden", &root.path().join("empty"), &["test"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains(
            "does not exist; build it with: cargo build --release --target wasm32-unknown-unknown"
        ),
        "{}",
        text(&output)
    );
}

/// `warden test` on the loan example's applications and their expectations, with the
/// loan agent the tests build (the example's warden.toml names the one `./x demo`
/// builds). Under the stricter policy, exactly the near-prime approval fails.
#[test]
fn the_loan_example_meets_the_expectations_beside_its_applications() {
    let root = tempfile::tempdir().expect("temp dir");
    let example = root.path().join("loan");
    let applications = example.join("applications");
    std::fs::create_dir_all(&applications).expect("mkdir");
    for dir in ["fixtures", "models"] {
        std::fs::create_dir_all(example.join(dir)).expect("mkdir");
        for entry in std::fs::read_dir(loan_example().join(dir)).expect(dir) {
            let entry = entry.expect("entry");
            std::fs::copy(entry.path(), example.join(dir).join(entry.file_name())).expect("copy");
        }
    }
    for entry in std::fs::read_dir(loan_example().join("applications")).expect("applications") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), applications.join(entry.file_name())).expect("copy");
    }
    std::fs::copy(
        loan_example().join("bindings.toml"),
        example.join("bindings.toml"),
    )
    .expect("copy");
    let manifest = std::fs::read_to_string(loan_example().join("warden.toml")).expect("manifest");
    let manifest: String = manifest
        .lines()
        .map(|line| {
            if line.starts_with("agent = ") {
                format!("agent = {:?}", warden_test_guests::LOAN_AGENT)
            } else if line.starts_with("policy = ") {
                format!(
                    "policy = {:?}",
                    policy_path("loan-underwriting.toml").display().to_string()
                )
            } else {
                line.to_string()
            }
        })
        .map(|line| line + "\n")
        .collect();
    std::fs::write(example.join("warden.toml"), manifest).expect("write");

    let output = run("warden", root.path(), &["test", "loan", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["passed"], 11, "{report:#}");

    let strict = policy_path("loan-underwriting-strict.toml");
    let output = run(
        "warden",
        root.path(),
        &[
            "test",
            "loan",
            "--json",
            "--policy",
            strict.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(output.status.code(), Some(12), "{}", text(&output));
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let failed: Vec<&str> = report["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|r| r["verdict"] == "fail")
        .map(|r| r["input"].as_str().expect("input"))
        .collect();
    assert_eq!(failed, ["loan/applications/10-near-prime-approve.json"]);

    // A sample a run would refuse (a key twice) is named before any sample runs.
    let sample = std::fs::read_to_string(applications.join("01-prime-approve.json")).expect("read");
    let ambiguous = sample.replacen('{', r#"{"purpose": "car", "#, 1);
    std::fs::write(applications.join("99-ambiguous.json"), ambiguous).expect("write");
    let output = run("warden", root.path(), &["test", "loan"]);
    let said = text(&output);
    assert_eq!(output.status.code(), Some(2), "{said}");
    assert!(
        said.contains("99-ambiguous.json: key `purpose` appears twice"),
        "{said}"
    );
}

// ---------------------------------------------------------------------------------------
// docs/authoring.md, run as written

/// One command of the guide: its line in the page, the command, the exit code it must
/// end with.
#[derive(Debug)]
struct Step {
    line: usize,
    command: String,
    exit: i32,
}

/// Every command of every ```sh block of the page, in order.
fn guide_steps(page: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut in_sh = false;
    let mut pending: Option<(usize, String)> = None;
    for (index, line) in page.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_sh = trimmed == "```sh";
            continue;
        }
        if !in_sh || trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (start, mut command) = pending.take().unwrap_or((index + 1, String::new()));
        if let Some(continued) = trimmed.strip_suffix('\\') {
            command.push_str(continued);
            pending = Some((start, command));
            continue;
        }
        command.push_str(trimmed);
        let (command, exit) = match command.rsplit_once("# exit ") {
            Some((command, code)) => (
                command.trim().to_string(),
                code.trim().parse().expect("`# exit N` takes a number"),
            ),
            None => (command, 0),
        };
        steps.push(Step {
            line: start,
            command,
            exit,
        });
    }
    steps
}

/// The value after `label` at the start of a line of `stdout` (`run      ID`).
fn printed(stdout: &str, label: &str) -> Option<String> {
    stdout
        .lines()
        .filter_map(|line| line.strip_prefix(label))
        .filter(|rest| rest.starts_with(' '))
        .filter_map(|rest| rest.split_whitespace().next())
        .next_back()
        .map(str::to_string)
}

#[test]
fn the_authoring_guide_runs_as_written() {
    let page = std::fs::read_to_string(workspace().join("docs/authoring.md")).expect("the guide");
    let steps = guide_steps(&page);
    let commands: Vec<&str> = steps.iter().map(|s| s.command.as_str()).collect();
    for needed in [
        "warden new",
        "cargo build",
        "warden test",
        "cargo test",
        "warden review",
        "warden replay <RUN_ID>",
        "--policy",
        "warden fork",
    ] {
        assert!(
            commands.iter().any(|c| c.contains(needed)),
            "the guide runs no `{needed}`: {commands:#?}"
        );
    }
    let root = tempfile::tempdir().expect("temp dir");
    let mut cwd = root.path().to_path_buf();
    let mut placeholders: BTreeMap<&str, String> = BTreeMap::new();
    for step in &steps {
        if let Some(dir) = step.command.strip_prefix("cd ") {
            cwd = cwd.join(dir.trim());
            assert!(
                cwd.is_dir(),
                "docs/authoring.md:{}: no directory {}",
                step.line,
                cwd.display()
            );
            continue;
        }
        let mut command = step.command.clone();
        for (placeholder, value) in &placeholders {
            command = command.replace(placeholder, value);
        }
        assert!(
            !command.contains("<RUN_ID>") && !command.contains("<ACTION>"),
            "docs/authoring.md:{}: {command}: nothing printed a value for its placeholder yet",
            step.line
        );
        if command.starts_with("cargo ") {
            share_target(&cwd);
        }
        eprintln!("docs/authoring.md:{}: $ {command}", step.line);
        let output = user_command("bash", &cwd)
            .args(["-c", &command])
            .output()
            .expect("run bash");
        assert_eq!(
            output.status.code(),
            Some(step.exit),
            "docs/authoring.md:{}: `{command}` should exit {}\n{}",
            step.line,
            step.exit,
            text(&output)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        if let Some(run_id) = printed(&stdout, "run") {
            placeholders.insert("<RUN_ID>", run_id);
        }
        if let Some(action) = printed(&stdout, "digest") {
            placeholders.insert("<ACTION>", action);
        }
    }
}
