//! The small points of issue #18, each pinned through the real binary: the printed hint
//! names a journal that is not the default, a missing journal is an error, run ids may be
//! shortened to a unique prefix in every command, counts are pluralised, a counterfactual
//! that changes only the output says so (and its detail shows the real fuel), and a fork
//! whose input patch the agent had already read warns.

use std::process::{Command, Output};

use serde_json::json;

use crate::support::{Sandbox, loan_example, policy_path};

/// An agent that moves to `done` and finishes with the JSON string `output`, in one step:
/// a transition request, then a finish request, written as postcard bytes.
fn finishing_agent(sb: &Sandbox, name: &str, output: char) -> String {
    let wat = format!(
        r#"(module
  (import "warden" "host_call" (func $call (param i32 i32 i32) (result i64)))
  (memory (export "memory") 1)
  ;; Request::Transition {{ to: "done", evidence: None }}
  (data (i32.const 0) "\04\04done\00")
  ;; Request::Finish {{ output: "\"{output}\"" }}
  (data (i32.const 16) "\06\03\22{output}\22")
  (func (export "warden_step") (result i32)
    (drop (call $call (i32.const 0) (i32.const 0) (i32.const 7)))
    (drop (call $call (i32.const 0) (i32.const 16) (i32.const 5)))
    (i32.const 0)))"#
    );
    let path = sb.path(name);
    std::fs::write(&path, wat).expect("write agent");
    path.to_str().expect("utf-8").to_string()
}

/// `warden ARGS` in the sandbox's directory, with no journal or key from the environment.
fn warden(sb: &Sandbox, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .current_dir(sb.dir.path())
        .env_remove("WARDEN_DB")
        .env_remove("WARDEN_SIGNING_KEY")
        .output()
        .expect("run warden")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the `a` agent under the test policy on journal `db` (relative to the sandbox).
fn run_a(sb: &Sandbox, db: Option<&str>) -> Output {
    let agent = finishing_agent(sb, "a.wat", 'a');
    let input = sb.input("in.json", &json!({"x": 1}));
    let policy = policy_path("test-basic.toml");
    let mut args = Vec::new();
    if let Some(db) = db {
        args.extend(["--db", db]);
    }
    args.extend([
        "run",
        agent.as_str(),
        "--policy",
        policy.to_str().expect("utf-8"),
        "--bindings",
        "bindings.toml",
        "--input",
        input.to_str().expect("utf-8"),
    ]);
    warden(sb, &args)
}

fn run_id_of(output: &Output) -> String {
    text(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("run      "))
        .expect("a run line")
        .trim()
        .to_string()
}

/// Issue #18: the `warden show <id>` hint printed after a run must work as printed: it
/// names the journal when it is not the default, and only then; counts are pluralised.
#[test]
fn the_printed_hints_name_the_journal_when_it_is_not_the_default() {
    let sb = Sandbox::new();
    let output = run_a(&sb, Some("other.redb"));
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        text(&output.stderr)
    );
    let id = run_id_of(&output);
    assert!(
        stdout.contains(&format!("inspect  warden --db other.redb show {id}")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("replay   warden --db other.redb replay {id}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("in `done` after 1 step, 2 host calls,"),
        "one step, not `1 steps`: {stdout}"
    );
    let show = warden(&sb, &["--db", "other.redb", "show", &id]);
    assert_eq!(show.status.code(), Some(0), "the hint works as printed");

    let output = run_a(&sb, None);
    let stdout = text(&output.stdout);
    let id = run_id_of(&output);
    assert!(
        stdout.contains(&format!("inspect  warden show {id}\n")),
        "{stdout}"
    );
    assert!(sb.path("warden.redb").exists());
}

/// Issue #18: `warden runs --db typo.redb` listed an empty table; a journal that does
/// not exist is an error naming it (exit 2), and nothing is created.
#[test]
fn a_journal_that_does_not_exist_is_an_error_naming_it() {
    let sb = Sandbox::new();
    for command in [
        &["runs"][..],
        &["runs", "--json"],
        &["show", "x"],
        &["verify", "--all"],
    ] {
        let mut args = vec!["--db", "typo.redb"];
        args.extend_from_slice(command);
        let output = warden(&sb, &args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{command:?}: {stderr}");
        assert!(stderr.contains("typo.redb"), "{command:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{command:?}: no table, no JSON");
    }
    assert!(!sb.path("typo.redb").exists());
}

/// The shortest prefix of `id` that `other` does not start with.
fn unique_prefix(id: &str, other: &str) -> String {
    let common = id
        .chars()
        .zip(other.chars())
        .take_while(|(a, b)| a == b)
        .count();
    id.chars().take(common + 1).collect()
}

/// Issue #18: run ids may be shortened to a unique prefix in every command that takes one;
/// an ambiguous prefix names the runs it matches.
#[test]
fn a_unique_prefix_of_a_run_id_names_the_run_in_every_command() {
    let sb = Sandbox::new();
    let first = run_id_of(&run_a(&sb, None));
    let second = run_id_of(&run_a(&sb, None));
    let short = unique_prefix(&first, &second);
    assert!(short.len() < first.len());
    let succeeding: [&[&str]; 7] = [
        &["show", &short],
        &["replay", &short],
        &["verify", &short],
        &["export", &short],
        &["evidence", &short, "-o", "case.pack"],
        &["report", &short, "-o", "report.html"],
        &["show", &short, "--json"],
    ];
    for args in succeeding {
        let output = warden(&sb, args);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}{}",
            text(&output.stdout),
            text(&output.stderr)
        );
        let out = text(&output.stdout);
        assert!(out.contains(&first), "{args:?} is about {first}: {out}");
    }
    // Commands whose answer is "not in this state" still find the run.
    for args in [&["review", &short][..], &["resume", &short]] {
        let output = warden(&sb, args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&first) && !stderr.contains("no run"),
            "{args:?}: {stderr}"
        );
    }
    let common: String = first.chars().take(short.len() - 1).collect();
    let output = warden(&sb, &["show", &common]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("run id `{common}` is ambiguous: it matches "))
            && stderr.contains(&first)
            && stderr.contains(&second),
        "{stderr}"
    );
    let output = warden(&sb, &["show", "nothing-like-it"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("no run `nothing-like-it`"));
    // Last: the fork is a third run, whose id may share the prefix.
    let output = warden(&sb, &["fork", &short, "--at-step", "0"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
}

/// Issue #18: a counterfactual whose run ends with the same status in the same state but
/// another output was reported as a "different outcome", and its detail said "fuel 0" on
/// every line.
#[test]
fn a_counterfactual_that_changes_only_the_output_says_different_output() {
    let sb = Sandbox::new();
    let id = run_id_of(&run_a(&sb, None));
    let b = finishing_agent(&sb, "b.wat", 'b');
    let (code, report) = sb.warden_json(&["replay", &id, "--agent", &b]);
    assert_eq!(code, 12, "a changed output is a change: {report:#}");
    assert_eq!(report["verdict"], "different_output", "{report:#}");
    assert_eq!(report["original"]["state"], report["replayed"]["state"]);
    assert_eq!(report["original"]["status"], report["replayed"]["status"]);

    let output = warden(&sb, &["replay", &id, "--agent", &b]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(12), "{stdout}");
    assert!(stdout.contains("result   DIFFERENT OUTPUT"), "{stdout}");
    assert!(
        stdout.contains("output   was \"a\"") && stdout.contains("now \"b\""),
        "{stdout}"
    );
    let detail: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("expected ") || l.starts_with("actual   "))
        .collect();
    assert_eq!(detail.len(), 2, "{stdout}");
    for line in detail {
        assert!(
            line.contains("(fuel ") && !line.contains("(fuel 0)"),
            "{line}"
        );
    }

    let output = warden(&sb, &["replay", "--all", "--agent", &b]);
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("different output") && stdout.contains("1 run: 1 different output"),
        "{stdout}"
    );
}

/// Issue #18: a fork with `--input-patch` at a step after the agent read its input
/// silently changed nothing; it warns (standard error, and `warnings` in the JSON).
#[test]
fn a_fork_whose_patch_the_agent_had_already_read_warns() {
    let sb = Sandbox::new();
    let example = loan_example();
    let path = |p: &str| example.join(p).to_str().expect("utf-8").to_string();
    let policy = policy_path("loan-underwriting.toml");
    let output = warden(
        &sb,
        &[
            "run",
            warden_test_guests::LOAN_AGENT,
            "--policy",
            policy.to_str().expect("utf-8"),
            "--bindings",
            &path("bindings.toml"),
            "--input",
            &path("applications/01-prime-approve.json"),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let id = run_id_of(&output);
    let patch = r#"{"requested_amount": 9000}"#;

    let output = warden(
        &sb,
        &["fork", &id, "--at-step", "2", "--input-patch", patch],
    );
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("warning: the input patch changes `requested_amount`, but the agent already read its input in step 1")
            && stderr.contains("matters only if the agent reads the input again")
            && stderr.contains("--at-step 0"),
        "{stderr}"
    );
    let (_, report) = sb.warden_json(&["fork", &id, "--at-step", "2", "--input-patch", patch]);
    let warnings = report["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{report:#}");
    assert_eq!(warnings[0]["kind"], "input_already_read");
    assert_eq!(warnings[0]["fields"], json!(["requested_amount"]));
    assert_eq!(
        (
            warnings[0]["step"].clone(),
            warnings[0]["fork_step"].clone()
        ),
        (json!(1), json!(2))
    );
    assert!(
        report["run_id"].is_string(),
        "the run report's fields are there too"
    );

    // Before the agent read its input, the patch is what it reads: no warning.
    let (code, report) = sb.warden_json(&["fork", &id, "--at-step", "0", "--input-patch", patch]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["warnings"], json!([]));
    // Nor without a patch.
    let output = warden(&sb, &["fork", &id, "--at-step", "2"]);
    assert!(
        !text(&output.stderr).contains("warning"),
        "{}",
        text(&output.stderr)
    );
}
