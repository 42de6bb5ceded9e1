//! Shared by the end-to-end tests: a sandbox directory with its own journal and a copy of
//! the test bindings (so each test has its own ledger), and helpers to run the real
//! `warden` binary or the library.

pub mod crash;
pub mod hostile;
pub mod http_server;
pub mod tamper;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};

use serde_json::Value;
use warden::{Agent, Bindings, Journal, NewRun, Policy, RunReport};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A file under `policies/`.
pub fn policy_path(name: &str) -> PathBuf {
    workspace().join("policies").join(name)
}

/// The loan example directory, as the tests run it: a copy of `examples/loan-underwriting`
/// (bindings, fixtures, model card, applications) whose `warden.toml` names the loan agent
/// the test guests' build script compiled from source (the shipped manifest names the one
/// `./x demo` builds, which a fresh checkout does not have) and the shipped policy. Made
/// once per test process under `target/tests/`.
pub fn loan_example() -> PathBuf {
    static COPY: OnceLock<PathBuf> = OnceLock::new();
    COPY.get_or_init(|| {
        example_copy(
            "loan-underwriting",
            &["fixtures", "models", "applications"],
            warden_test_guests::LOAN_AGENT,
            "loan-underwriting.toml",
            "bindings.toml",
            "applications/01-prime-approve.json",
        )
    })
    .clone()
}

/// The anti-money-laundering example directory, as the tests run it: a copy of
/// `examples/aml-triage` (bindings, fixtures, model card, alerts with their expectations)
/// whose `warden.toml` names the AML agent the test guests' build script compiled from
/// source and the shipped policy, as [`loan_example`] does for the loan example.
pub fn aml_example() -> PathBuf {
    static COPY: OnceLock<PathBuf> = OnceLock::new();
    COPY.get_or_init(|| {
        example_copy(
            "aml-triage",
            &["fixtures", "models", "alerts"],
            warden_test_guests::AML_AGENT,
            "aml-triage.toml",
            "bindings.toml",
            "alerts/01-cash-business-close.json",
        )
    })
    .clone()
}

/// The insurance claim-triage example directory, as the tests run it: a copy of
/// `examples/insurance-claims` (both bindings files, fixtures, model cards, claims with
/// their expectations) whose `warden.toml` names the insurance agent the test guests'
/// build script compiled from source, the shipped policy and the offline bindings, as
/// [`loan_example`] does for the loan example.
pub fn insurance_example() -> PathBuf {
    static COPY: OnceLock<PathBuf> = OnceLock::new();
    COPY.get_or_init(|| {
        example_copy(
            "insurance-claims",
            &["fixtures", "models", "claims"],
            warden_test_guests::INSURANCE_AGENT,
            "insurance-claims.toml",
            "bindings.offline.toml",
            "claims/01-glass-fast-track.json",
        )
    })
    .clone()
}

/// A copy of `examples/<name>` under `target/tests/<name>-<pid>`: the directories `subs`,
/// every bindings file (`bindings*.toml`), and a `warden.toml` naming `agent`, the shipped
/// policy `policy`, the bindings file `bindings` and the input `input`.
fn example_copy(
    name: &str,
    subs: &[&str],
    agent: &str,
    policy: &str,
    bindings: &str,
    input: &str,
) -> PathBuf {
    let source = workspace().join("examples").join(name);
    let copy = workspace()
        .join("target/tests")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&copy);
    for sub in subs {
        std::fs::create_dir_all(copy.join(sub)).expect("example copy");
        for entry in std::fs::read_dir(source.join(sub)).expect("example files") {
            let entry = entry.expect("entry");
            std::fs::copy(entry.path(), copy.join(sub).join(entry.file_name())).expect("copy");
        }
    }
    for entry in std::fs::read_dir(&source).expect("example directory") {
        let file = entry.expect("entry").file_name();
        let file = file.to_string_lossy();
        if file.starts_with("bindings") && file.ends_with(".toml") {
            std::fs::copy(source.join(&*file), copy.join(&*file)).expect("copy");
        }
    }
    let policy = policy_path(policy)
        .canonicalize()
        .expect("the shipped policy");
    std::fs::write(
        copy.join("warden.toml"),
        format!(
            "agent = {agent:?}\npolicy = {policy:?}\nbindings = {bindings:?}\ninput = {input:?}\n"
        ),
    )
    .expect("manifest");
    copy
}

/// Runs the real `warden` binary in `dir`, with none of the settings a developer's shell
/// may carry (`WARDEN_DB`, `WARDEN_SIGNING_KEY`, `WARDEN_SUBMITTER`).
pub fn warden_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .current_dir(dir)
        .env_remove("WARDEN_DB")
        .env_remove("WARDEN_SIGNING_KEY")
        .env_remove("WARDEN_SUBMITTER")
        .output()
        .expect("run warden")
}

/// What a process printed: standard output, then standard error.
pub fn output_text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `warden --db DB ARGS --json` (the real binary) on any journal, parsing its output.
pub fn warden_json_on(db: &Path, args: &[&str]) -> (i32, Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("--db")
        .arg(db)
        .args(args)
        .arg("--json")
        .output()
        .expect("run warden");
    let json = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("no JSON: {}", String::from_utf8_lossy(&output.stderr)));
    (output.status.code().unwrap_or(-1), json)
}

/// A temporary directory with a journal and a private copy of `tests/fixtures`.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("temp dir");
        for entry in std::fs::read_dir(workspace().join("tests/fixtures")).expect("fixtures") {
            let entry = entry.expect("fixture entry");
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy fixture");
        }
        Sandbox { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn db(&self) -> PathBuf {
        self.path("warden.redb")
    }

    pub fn bindings(&self) -> PathBuf {
        self.path("bindings.toml")
    }

    /// Writes `json` to a file in the sandbox and returns its path.
    pub fn input(&self, name: &str, json: &Value) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, json.to_string()).expect("write input");
        path
    }

    /// Runs the real `warden` binary with `--db` set to this sandbox's journal.
    pub fn warden(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_warden"))
            .arg("--db")
            .arg(self.db())
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run warden")
    }

    /// Runs `warden ... --json` and parses its standard output.
    pub fn warden_json(&self, args: &[&str]) -> (i32, Value) {
        let mut args = args.to_vec();
        args.push("--json");
        let output = self.warden(&args);
        let json = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "warden {args:?} printed no JSON ({e}); stdout: {}; stderr: {}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        });
        (output.status.code().unwrap_or(-1), json)
    }

    /// Opens the journal (the binary must not be running).
    pub fn journal(&self) -> Journal {
        Journal::open(&self.db()).expect("open journal")
    }

    /// Runs `agent` (a module path or WAT file) on `input` under policy `policy` (a file
    /// under `policies/`) through the library, with this sandbox's bindings.
    pub fn run(&self, agent: &str, policy: &str, input: &Value) -> RunReport {
        let journal = self.journal();
        self.run_in(&journal, agent, policy, input)
    }

    /// As [`Sandbox::run`], on an already open journal.
    pub fn run_in(&self, journal: &Journal, agent: &str, policy: &str, input: &Value) -> RunReport {
        let policy_text = std::fs::read_to_string(policy_path(policy)).expect("policy file");
        self.run_text(journal, agent, &policy_text, input)
    }

    /// Runs `agent` on `input` under the policy text `policy_text` through the library.
    pub fn run_text(
        &self,
        journal: &Journal,
        agent: &str,
        policy_text: &str,
        input: &Value,
    ) -> RunReport {
        let agent = Agent::from_file(Path::new(agent)).expect("agent loads");
        let policy = Policy::parse(policy_text, "test policy").expect("policy parses");
        let policy_text = policy_text.to_string();
        let bindings = Bindings::from_file(&self.bindings()).expect("bindings");
        let report = warden::start(
            journal,
            &NewRun {
                agent,
                policy: Arc::new(policy),
                policy_text,
                bindings: Arc::new(bindings),
                input: input.to_string(),
                submitted_by: Some("tester".into()),
            },
        )
        .expect("warden runs the agent");
        // The report a run returns is built as it commits; it must be the one the
        // journal gives.
        assert_eq!(
            RunReport::load(journal, &report.run_id).expect("the run's report"),
            report
        );
        report
    }
}

/// Runs `warden test` on the example directory `dir` and checks that every sample passes
/// and comes, in order, to the (file, status, state) of `expected`; returns the results.
pub fn warden_test_meets(dir: &Path, expected: &[(&str, &str, &str)]) -> Vec<Value> {
    let sandbox = Sandbox::new();
    let (code, tested) = sandbox.warden_json(&["test", dir.to_str().expect("utf-8 path")]);
    assert_eq!(code, 0, "{tested:#}");
    assert_eq!(tested["passed"], expected.len(), "{tested:#}");
    assert_eq!(tested["failed"], 0);
    assert_eq!(tested["without_expectations"], 0, "every sample has one");
    let results = tested["results"].as_array().expect("results").clone();
    assert_eq!(results.len(), expected.len());
    for ((file, status, state), result) in expected.iter().zip(&results) {
        assert!(
            result["input"].as_str().unwrap_or_default().ends_with(file),
            "{result:#}"
        );
        assert_eq!(result["verdict"], "pass", "{file}: {result:#}");
        assert_eq!(
            (result["status"].as_str(), result["state"].as_str()),
            (Some(*status), Some(*state)),
            "{file}"
        );
    }
    results
}
