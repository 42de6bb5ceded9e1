//! Authority outside the guest: the files a bindings file (or an example's `warden.toml`)
//! names stay inside its directory, a ledger never takes over a file that is not a ledger,
//! and a run whose ledger went missing is not resumed into a new, empty one.
//!
//! Each test is a reproduced attack, driven through the real `warden` binary: the crafted
//! file is refused with exit code 2 naming the field, and the file it aimed at is byte
//! for byte what it was.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use serde_json::json;

use crate::support::crash::{Moment, Site, Workload, check_ledger, kill_at};
use crate::support::{Sandbox, policy_path};

/// What the victim file holds: a shell profile, which an appended line would run.
const PROFILE: &str = "export PATH=/usr/local/bin:/usr/bin\n";

/// A deployment directory `deploy/` in the sandbox whose bindings bind the counter's
/// `disbursement` to a ledger at `ledger` (as written in the file) and its `risk` model to
/// a copy of the test scorecard; returns the bindings file.
fn deployment(sb: &Sandbox, ledger: &str) -> PathBuf {
    let dir = sb.path("deploy");
    std::fs::create_dir_all(&dir).expect("mkdir deploy");
    std::fs::copy(sb.path("risk.toml"), dir.join("risk.toml")).expect("copy the scorecard");
    let bindings = dir.join("bindings.toml");
    std::fs::write(
        &bindings,
        format!(
            "[tools.disbursement]\nprovider = \"ledger\"\nfile = {ledger:?}\n\n\
             [models.risk]\nprovider = \"scorecard\"\nfile = \"risk.toml\"\n"
        ),
    )
    .expect("write the bindings");
    bindings
}

/// `warden run COUNTER --bindings BINDINGS` for three paying steps, plus `extra` arguments.
fn run_counter(sb: &Sandbox, bindings: &Path, extra: &[&str]) -> Output {
    let input = sb.input("counter.json", &json!({"steps": 3, "amount": 100}));
    let policy = policy_path("test-basic.toml");
    let mut args = vec![
        "run",
        warden_test_guests::COUNTER,
        "--policy",
        policy.to_str().expect("utf-8"),
        "--bindings",
        bindings.to_str().expect("utf-8"),
        "--input",
        input.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    sb.warden(&args)
}

/// The run was refused as a configuration error whose message contains every one of
/// `words`.
fn assert_refused(output: &Output, words: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    for word in words {
        assert!(stderr.contains(word), "{word:?} is not in: {stderr}");
    }
}

/// Regression (paths escape): `file = "../victim.txt"` made the ledger tool append
/// guest-influenced lines to (and maybe cut the "torn last line" of) a file beside the
/// deployment.
#[test]
fn a_ledger_that_climbs_out_of_the_bindings_dir_is_refused_and_the_file_unchanged() {
    let sb = Sandbox::new();
    let victim = sb.path("victim.txt");
    std::fs::write(&victim, PROFILE).expect("write the victim");
    let output = run_counter(&sb, &deployment(&sb, "../victim.txt"), &[]);
    assert_refused(
        &output,
        &[
            "bindings.toml:3:8: tools.disbursement.file",
            "\"../victim.txt\" climbs out",
            "--allow-paths-outside-bindings-dir",
        ],
    );
    assert_eq!(std::fs::read_to_string(&victim).expect("victim"), PROFILE);
    assert_eq!(
        std::fs::read_to_string(sb.path("victim.txt")).expect("victim"),
        PROFILE
    );
}

/// Regression (paths escape): an absolute `file` reached any file the process could write.
#[test]
fn an_absolute_ledger_path_is_refused_and_the_file_unchanged() {
    let sb = Sandbox::new();
    let victim = sb.path("victim.txt");
    std::fs::write(&victim, PROFILE).expect("write the victim");
    let absolute = victim.to_str().expect("utf-8");
    let output = run_counter(&sb, &deployment(&sb, absolute), &[]);
    assert_refused(&output, &["tools.disbursement.file", "is an absolute path"]);
    assert_eq!(std::fs::read_to_string(&victim).expect("victim"), PROFILE);

    // Nor may a new file be created outside.
    let elsewhere = sb.path("elsewhere.jsonl");
    let output = run_counter(
        &sb,
        &deployment(&sb, elsewhere.to_str().expect("utf-8")),
        &[],
    );
    assert_refused(&output, &["tools.disbursement.file"]);
    assert!(!elsewhere.exists(), "a ledger was created outside");
}

/// Regression (paths escape): a symlink inside the deployment directory leading out of it
/// was followed.
#[cfg(unix)]
#[test]
fn a_ledger_through_a_symlink_leading_out_is_refused_and_the_file_unchanged() {
    let sb = Sandbox::new();
    let victim = sb.path("victim.txt");
    std::fs::write(&victim, PROFILE).expect("write the victim");
    let bindings = deployment(&sb, "ledger.jsonl");
    std::os::unix::fs::symlink("../victim.txt", sb.path("deploy/ledger.jsonl")).expect("symlink");
    let output = run_counter(&sb, &bindings, &[]);
    assert_refused(
        &output,
        &[
            "tools.disbursement.file",
            "leads through a symlink",
            "victim.txt",
        ],
    );
    assert_eq!(std::fs::read_to_string(&victim).expect("victim"), PROFILE);

    // A directory symlink leading out, with a ledger to be created under it: not created.
    std::fs::create_dir(sb.path("outside")).expect("mkdir");
    std::os::unix::fs::symlink("../outside", sb.path("deploy/out")).expect("symlink");
    let output = run_counter(&sb, &deployment(&sb, "out/new.jsonl"), &[]);
    assert_refused(&output, &["tools.disbursement.file"]);
    assert!(!sb.path("outside/new.jsonl").exists());
}

/// The operator may allow paths outside, on the command line only; even then a file that
/// is not a ledger is refused and left as it was.
#[test]
fn the_operator_flag_allows_a_ledger_outside_but_never_a_foreign_file() {
    let sb = Sandbox::new();
    let shared = sb.path("shared.jsonl");
    let bindings = deployment(&sb, "../shared.jsonl");
    let output = run_counter(&sb, &bindings, &["--allow-paths-outside-bindings-dir"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let ledger = std::fs::read_to_string(&shared).expect("the ledger outside");
    assert_eq!(ledger.lines().count(), 3, "three payments: {ledger}");

    let victim = sb.path("victim.txt");
    std::fs::write(&victim, PROFILE).expect("write the victim");
    let output = run_counter(
        &sb,
        &deployment(&sb, "../victim.txt"),
        &["--allow-paths-outside-bindings-dir"],
    );
    assert_refused(&output, &["victim.txt:1: not a ledger"]);
    assert_eq!(std::fs::read_to_string(&victim).expect("victim"), PROFILE);
}

/// Regression (a ledger cut a foreign file): a ledger bound to an existing file inside the
/// directory that is not a ledger, here a one-line profile without its newline (which the
/// old ledger took for a torn append and cut off at the first effect), is refused.
#[test]
fn a_ledger_bound_to_a_file_that_is_not_a_ledger_is_refused_and_the_file_unchanged() {
    let sb = Sandbox::new();
    let bindings = deployment(&sb, "profile");
    let profile = sb.path("deploy/profile");
    for text in [PROFILE, PROFILE.trim_end()] {
        std::fs::write(&profile, text).expect("write the profile");
        let output = run_counter(&sb, &bindings, &[]);
        assert_refused(&output, &["profile:1: not a ledger", "move this one away"]);
        assert_eq!(std::fs::read_to_string(&profile).expect("profile"), text);
    }
}

/// An example directory's `warden.toml` may not point its bindings or its input outside
/// the example (another deployment's bindings, so ledgers; a secret JSON file, copied into
/// the journal); its agent and policy may be anywhere.
#[test]
fn an_example_manifest_may_not_point_its_bindings_or_input_outside() {
    let sb = Sandbox::new();
    let bindings = deployment(&sb, "ledger.jsonl");
    let example = sb.path("example");
    std::fs::create_dir(&example).expect("mkdir");
    std::fs::write(example.join("in.json"), r#"{"steps": 1, "amount": 1}"#).expect("input");
    let policy = policy_path("test-basic.toml");
    let manifest = |bindings: &str, input: &str| {
        std::fs::write(
            example.join("warden.toml"),
            format!(
                "agent = {:?}\npolicy = {:?}\nbindings = {bindings:?}\ninput = {input:?}\n",
                warden_test_guests::COUNTER,
                policy.to_str().expect("utf-8")
            ),
        )
        .expect("write the manifest");
    };
    let example_arg = example.to_str().expect("utf-8");

    manifest("../deploy/bindings.toml", "in.json");
    let output = sb.warden(&["run", example_arg]);
    assert_refused(
        &output,
        &[
            "warden.toml:3:12: bindings",
            "outside the example directory",
        ],
    );
    assert!(
        !sb.path("deploy/ledger.jsonl").exists(),
        "no ledger created"
    );

    manifest("bindings.toml", "../counter-secret.json");
    std::fs::write(sb.path("counter-secret.json"), "{}").expect("secret");
    let output = sb.warden(&["run", example_arg]);
    assert_refused(&output, &["warden.toml:4:9: input"]);

    manifest(bindings.to_str().expect("utf-8"), "in.json");
    let output = sb.warden(&["run", example_arg]);
    assert_refused(&output, &["bindings", "is an absolute path"]);
    let output = sb.warden(&["run", example_arg, "--allow-paths-outside-bindings-dir"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Regression (resume recreated a lost ledger): `warden resume` of a run whose ledger was
/// deleted created a new, empty ledger and paid the step in flight (and every later step)
/// into it. It must refuse, naming the ledger, and create nothing; with the ledger
/// restored it resumes to exactly-once effects.
#[test]
fn resuming_a_run_whose_ledger_is_gone_is_refused_and_recreates_nothing() {
    let sb = Sandbox::new();
    let site = Site::new(&sb);
    let work = Workload::new(8);
    let child = site
        .command(&site.counter_args(work))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn warden");
    let (killed, _) = kill_at(child, Some(Moment::Effects(3)), &sb, None);
    assert!(killed, "the run ended before its third effect");
    let runs = site.runs();
    let (run_id, (status, _)) = runs.iter().next().expect("the run was created");
    assert_eq!(status, "running");

    let ledger = sb.path("ledger.jsonl");
    let backup = sb.path("ledger.backup");
    std::fs::rename(&ledger, &backup).expect("the ledger goes missing");
    let output = site.warden(&["resume", run_id]);
    assert_refused(
        &output,
        &[
            "tools.disbursement.file",
            &format!("ledger {} does not exist", ledger.display()),
            "apply them again",
        ],
    );
    assert!(!ledger.exists(), "resume recreated the ledger");
    assert_eq!(site.runs()[run_id].0, "running", "nothing was committed");

    std::fs::rename(&backup, &ledger).expect("restore the ledger");
    let (code, report) = site.json(&["resume", run_id]);
    assert_eq!(code, 0, "{report}");
    check_ledger(&sb, run_id, work.steps, &site.signature(run_id)).expect("exactly-once effects");
}
