//! WASI guests: agents built for `wasm32-wasip1` with the standard library
//! (`tests/guests/wasi`), under a policy with `[wasi] enabled = true`. Every WASI call is
//! enforced, numbered with the host calls and journaled with its answer; the clocks and
//! randomness a run saw come back from the journal when it is replayed, resumed or
//! forked, so no two live runs agree and each replays bit for bit. A guest whose policy
//! does not allow WASI, or that imports a WASI function Warden does not answer (files,
//! sockets, polling), is refused at load, named.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use warden::{
    Agent, Bindings, ErrorKind, FailureReason, GuestFault, Journal, Limit, LoadError, NewRun,
    Policy, Record, RecordBody, ReplayOptions, ReplayVerdict, Rule, RunReport, Status, Verdict,
    WasiAnswer, WasiCall, WasiImports, WasiRequest,
};
use warden_test_guests as guests;

use crate::support::{Sandbox, output_text, policy_path};

/// `policies/test-basic.toml` with WASI guests allowed.
fn wasi_policy_text() -> String {
    let text = std::fs::read_to_string(policy_path("test-basic.toml")).expect("policy");
    format!("{text}\n[wasi]\nenabled = true\n")
}

/// The WASI policy, written into the sandbox for the command line.
fn wasi_policy_file(sandbox: &Sandbox) -> PathBuf {
    let path = sandbox.path("wasi-policy.toml");
    std::fs::write(&path, wasi_policy_text()).expect("write the policy");
    path
}

/// The WASI policy with a checkpoint every three steps, written into the sandbox: a
/// resume restores an older checkpoint and re-executes the committed steps after it.
fn sparse_checkpoints_policy_file(sandbox: &Sandbox) -> PathBuf {
    let path = sandbox.path("wasi-policy-sparse.toml");
    let text = wasi_policy_text().replace("checkpoint_every = 1\n", "checkpoint_every = 3\n");
    assert!(text.contains("checkpoint_every = 3"));
    std::fs::write(&path, text).expect("write the policy");
    path
}

/// A module: a file path, or WAT text.
enum Module<'a> {
    File(&'a str),
    Wat(&'a str),
}

/// Runs `agent` on `input` under `policy_text` through the library, loading it as the
/// policy admits it.
fn run(
    sandbox: &Sandbox,
    journal: &Journal,
    agent: Module<'_>,
    policy_text: &str,
    input: &Value,
) -> RunReport {
    let policy = Policy::parse(policy_text, "wasi policy").expect("policy parses");
    let agent = match agent {
        Module::File(path) => Agent::from_file_with(Path::new(path), WasiImports::of(&policy)),
        Module::Wat(wat) => Agent::from_bytes_with(wat.as_bytes(), WasiImports::of(&policy)),
    }
    .expect("the WASI guest loads under a policy that allows WASI");
    warden::start(
        journal,
        &NewRun {
            agent,
            policy: Arc::new(policy),
            policy_text: policy_text.to_string(),
            bindings: Arc::new(Bindings::from_file(&sandbox.bindings()).expect("bindings")),
            input: input.to_string(),
            submitted_by: Some("tester".into()),
        },
    )
    .expect("warden runs the agent")
}

/// The WASI calls among `records`.
fn wasi_calls(records: &[Record]) -> Vec<&WasiCall> {
    records
        .iter()
        .filter_map(|r| match &r.body {
            RecordBody::Wasi(call) => Some(&**call),
            _ => None,
        })
        .collect()
}

/// What the guest wrote to `stream` (`stdout`, `stderr`), in order, joined.
fn output_of(calls: &[&WasiCall], stream: &str) -> String {
    calls
        .iter()
        .filter_map(|c| match &c.request {
            WasiRequest::FdWrite { fd, bytes } if (*fd == 1) == (stream == "stdout") => {
                Some(String::from_utf8_lossy(bytes).into_owned())
            }
            _ => None,
        })
        .collect()
}

fn output(report: &RunReport) -> Value {
    serde_json::from_str(report.outcome.output.as_deref().expect("an output")).expect("JSON")
}

fn assert_replays_identically(journal: &Journal, run_id: &str, from_checkpoint: Option<u32>) {
    let options = ReplayOptions {
        from_checkpoint,
        ..ReplayOptions::default()
    };
    let replay = warden::replay(journal, run_id, &options).expect("replay");
    assert_eq!(
        replay.verdict,
        ReplayVerdict::Identical,
        "{:#?}",
        replay.divergence
    );
    assert!(replay.records_compared > 0);
    assert_eq!(journal.verify(run_id).expect("verify").problem, None);
}

/// The issue's demonstration: a guest using `std::time`, random numbers (`getrandom` and
/// a `HashMap`'s own seed), `println!`/`eprintln!` and serde_json runs twice, seeing other
/// clocks and other random numbers each time, and each run replays bit for bit: every
/// answer it got is in its journal, and replay gives it back.
#[test]
fn a_wasi_guest_sees_the_world_live_and_replays_bit_for_bit() {
    let sandbox = Sandbox::new();
    let journal = sandbox.journal();
    let policy = wasi_policy_text();
    let input = json!({"case": "C-1"});
    let first = run(
        &sandbox,
        &journal,
        Module::File(guests::WASI_CLOCK),
        &policy,
        &input,
    );
    let second = run(
        &sandbox,
        &journal,
        Module::File(guests::WASI_CLOCK),
        &policy,
        &input,
    );
    for report in [&first, &second] {
        assert_eq!(report.outcome.status, Status::Completed, "{report:#?}");
        assert_eq!(output(report)["echo"], input);
    }
    assert_ne!(
        output(&first)["nonce"],
        output(&second)["nonce"],
        "two live runs draw other random numbers"
    );

    let records = journal.records(&first.run_id).expect("records");
    let calls = wasi_calls(&records);
    // Every call was allowed by the policy's grant, and numbered with the host calls.
    assert!(
        calls
            .iter()
            .all(|c| c.decision.verdict == Verdict::Allow && c.decision.rule == Rule::WasiAnswered)
    );
    let mut numbers: Vec<u64> = records.iter().filter_map(|r| r.body.call()).collect();
    numbers.dedup();
    assert!(numbers.windows(2).all(|w| w[0] + 1 == w[1]), "{numbers:?}");
    assert_eq!(
        u64::from(first.outcome.host_calls),
        numbers.last().map_or(0, |n| n + 1),
        "the run's host calls count its WASI calls"
    );
    // What the agent reported is what the journal answered it.
    let wall = calls
        .iter()
        .find_map(|c| match (&c.request, &c.answer) {
            (WasiRequest::ClockTimeGet { clock: 0, .. }, WasiAnswer::Time(ns)) => Some(*ns),
            _ => None,
        })
        .expect("a realtime clock reading");
    assert_eq!(
        output(&first)["wall_ms"],
        json!((wall / 1_000_000).to_string())
    );
    let nonce = calls
        .iter()
        .find_map(|c| match (&c.request, &c.answer) {
            (WasiRequest::RandomGet { len: 8 }, WasiAnswer::Random(bytes)) => {
                Some(u64::from_le_bytes(bytes.as_slice().try_into().ok()?))
            }
            _ => None,
        })
        .expect("eight random bytes from getrandom");
    assert_eq!(output(&first)["nonce"], json!(format!("{nonce:016x}")));
    assert!(
        calls
            .iter()
            .any(|c| matches!(c.request, WasiRequest::RandomGet { len: 16 })),
        "the HashMap's seed"
    );
    assert!(
        calls
            .iter()
            .any(|c| matches!(c.request, WasiRequest::ClockTimeGet { clock: 1, .. })),
        "Instant reads the monotonic clock"
    );
    // Standard output and error are journaled lines.
    assert!(
        output_of(&calls, "stdout").starts_with(&format!("wall clock {} ms\n", wall / 1_000_000)),
        "{}",
        output_of(&calls, "stdout")
    );
    assert!(output_of(&calls, "stdout").contains("elapsed "));
    assert_eq!(output_of(&calls, "stderr"), format!("nonce {nonce:016x}\n"));

    for report in [&first, &second] {
        assert_replays_identically(&journal, &report.run_id, None);
        assert_replays_identically(&journal, &report.run_id, Some(1));
    }
}

/// The real binary runs, shows, replays and verifies a WASI guest, and `show` prints
/// its clock readings and its output lines.
#[test]
fn the_command_line_runs_shows_and_replays_a_wasi_guest() {
    let sandbox = Sandbox::new();
    let policy = wasi_policy_file(&sandbox);
    let input = sandbox.input("input.json", &json!({"case": "C-2"}));
    let bindings = sandbox.bindings();
    let (code, report) = sandbox.warden_json(&[
        "run",
        guests::WASI_CLOCK,
        "--policy",
        policy.to_str().expect("utf-8"),
        "--bindings",
        bindings.to_str().expect("utf-8"),
        "--input",
        input.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{report}");
    let run_id = report["run_id"].as_str().expect("run id");
    let shown = output_text(&sandbox.warden(&["show", run_id]));
    for line in [
        "wasi clock_time_get(realtime, precision 1 ns)",
        "wasi random_get(8 bytes)",
        "wasi fd_write(stdout) \"wall clock ",
        "wasi fd_write(stderr)",
        "=> Allow: answered by the host ([wasi] enabled); answer: ",
    ] {
        assert!(shown.contains(line), "`{line}` not in:\n{shown}");
    }
    let (code, exported) = sandbox.warden_json(&["show", run_id]);
    assert_eq!(code, 0);
    let kinds: Vec<&str> = exported["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| r["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"wasi_call"), "{kinds:?}");
    let output = sandbox.warden(&["replay", run_id]);
    assert_eq!(output.status.code(), Some(0), "{}", output_text(&output));
    assert!(output_text(&output).contains("identical"));
    let output = sandbox.warden(&["verify", run_id]);
    assert_eq!(output.status.code(), Some(0), "{}", output_text(&output));
}

/// A fork restores a checkpoint of a WASI run: the readings of the steps before it are
/// in the restored memory, the clocks after it are read live, and the fork replays.
#[test]
fn a_fork_of_a_wasi_run_keeps_what_it_saw_and_reads_on_live() {
    let sandbox = Sandbox::new();
    let journal = sandbox.journal();
    let parent = run(
        &sandbox,
        &journal,
        Module::File(guests::WASI_CLOCK),
        &wasi_policy_text(),
        &json!({}),
    );
    assert_eq!(parent.outcome.status, Status::Completed, "{parent:#?}");
    let fork = warden::fork(
        &journal,
        warden::ForkRequest {
            parent: &parent.run_id,
            step: 1,
            input_patch: None,
            bindings: None,
            submitted_by: None,
            policy: None,
            live_effects: false,
        },
    )
    .expect("fork runs");
    assert_eq!(fork.outcome.status, Status::Completed, "{fork:#?}");
    for field in ["wall_ms", "nonce", "order"] {
        assert_eq!(output(&fork)[field], output(&parent)[field], "{field}");
    }
    // The fork numbers its calls on from the checkpoint and reads the clock itself.
    let records = journal.records(&fork.run_id).expect("records");
    let calls = wasi_calls(&records);
    assert!(
        calls.iter().any(
            |c| matches!(c.request, WasiRequest::ClockTimeGet { clock: 1, .. }) && c.step == 2
        )
    );
    assert_replays_identically(&journal, &fork.run_id, None);
}

/// A WASI run killed mid-way (SIGKILL to the real binary) resumes from its last
/// checkpoint (one every three steps): the committed steps after it are re-executed
/// against their journaled clocks and random bytes, then the run goes on live; each
/// disbursement is paid once, and the resumed run replays bit for bit.
#[test]
fn a_killed_wasi_run_resumes_and_replays() {
    let sandbox = Sandbox::new();
    let policy = sparse_checkpoints_policy_file(&sandbox);
    let bindings = sandbox.bindings();
    let ledger = sandbox.path("ledger.jsonl");
    let lines = || {
        std::fs::read_to_string(&ledger)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let steps = 8;
    let mut spin = 2_000_000u64;
    let run_id = loop {
        let input = sandbox.input("ticker.json", &json!({"steps": steps, "spin": spin}));
        let before = lines();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
            .arg("--db")
            .arg(sandbox.db())
            .args(["run", guests::WASI_TICKER, "--policy"])
            .arg(&policy)
            .arg("--bindings")
            .arg(&bindings)
            .arg("--input")
            .arg(&input)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start warden");
        let started = Instant::now();
        while lines() < before + 3 && started.elapsed() < Duration::from_secs(60) {
            if child.try_wait().expect("wait").is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let killed = child.try_wait().expect("wait").is_none();
        let _ = child.kill();
        let _ = child.wait();
        let (code, runs) = sandbox.warden_json(&["runs"]);
        assert_eq!(code, 0, "{runs}");
        let last = runs
            .as_array()
            .and_then(|runs| runs.last())
            .cloned()
            .expect("the run was created");
        if killed && last["status"] == "running" {
            break last["run_id"].as_str().expect("run id").to_string();
        }
        // It finished before the kill: give the next attempt more to do.
        assert!(spin < 200_000_000, "could not kill a run mid-way: {runs}");
        spin *= 4;
    };
    let journal = sandbox.journal();
    let committed: Vec<u64> = wasi_calls(&journal.records(&run_id).expect("records"))
        .iter()
        .filter_map(|c| match (&c.request, &c.answer) {
            (WasiRequest::ClockTimeGet { clock: 0, .. }, WasiAnswer::Time(ns)) => Some(*ns),
            _ => None,
        })
        .collect();
    assert!(
        !committed.is_empty(),
        "the run committed a step before the kill"
    );
    drop(journal);
    let (code, resumed) = sandbox.warden_json(&["resume", &run_id]);
    assert_eq!(code, 0, "{resumed}");
    assert_eq!(resumed["status"], "completed", "{resumed}");
    let readings = resumed["output"]["readings"].as_array().expect("readings");
    assert_eq!(readings.len(), steps);
    // The steps committed before the kill kept the clock they read, even those re-executed
    // from an older checkpoint: the journal answered them.
    for (reading, ns) in readings.iter().zip(&committed) {
        let reading = reading.as_str().expect("a reading");
        assert!(reading.starts_with(&format!("{ns}:")), "{reading} vs {ns}");
    }
    // Each step paid once: the ledger holds one line per step of this run.
    let paid = std::fs::read_to_string(&ledger)
        .expect("ledger")
        .lines()
        .filter(|l| l.contains(&format!("{run_id}/")))
        .count();
    assert_eq!(paid, steps, "each disbursement is paid exactly once");
    let output = sandbox.warden(&["replay", &run_id]);
    assert_eq!(output.status.code(), Some(0), "{}", output_text(&output));
    assert!(output_text(&output).contains("identical"));
}

/// Under a policy without `[wasi]`, a WASI guest is refused at load, naming its first
/// WASI import and saying how to allow it; one loaded for another policy is refused
/// when a run starts under this one.
#[test]
fn a_wasi_guest_is_refused_under_a_policy_that_does_not_allow_wasi() {
    let refused = Agent::from_file(Path::new(guests::WASI_CLOCK)).expect_err("refused");
    match &refused {
        LoadError::ForbiddenImport {
            module, kind, hint, ..
        } => {
            assert_eq!(module, "wasi_snapshot_preview1");
            assert_eq!(*kind, "func");
            assert!(hint.contains("[wasi] enabled = true"), "{hint}");
            assert!(hint.contains("wasm32-unknown-unknown"), "{hint}");
        }
        other => panic!("{other:?}"),
    }
    assert!(refused.to_string().contains("wasi_snapshot_preview1."));

    let sandbox = Sandbox::new();
    let input = sandbox.input("input.json", &json!({}));
    let output = sandbox.warden(&[
        "run",
        guests::WASI_CLOCK,
        "--policy",
        policy_path("test-basic.toml").to_str().expect("utf-8"),
        "--bindings",
        sandbox.bindings().to_str().expect("utf-8"),
        "--input",
        input.to_str().expect("utf-8"),
    ]);
    let text = output_text(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("imports `wasi_snapshot_preview1."), "{text}");
    assert!(text.contains("[wasi] enabled = true"), "{text}");
    // `warden check` says the same, at the import.
    let output = sandbox.warden(&[
        "check",
        "--agent",
        guests::WASI_CLOCK,
        "--policy",
        policy_path("test-basic.toml").to_str().expect("utf-8"),
    ]);
    let text = output_text(&output);
    assert!(text.contains("imports.wasi_snapshot_preview1."), "{text}");

    // Loaded for a WASI policy, started under one without WASI: refused, nothing runs.
    let journal = sandbox.journal();
    let agent = Agent::from_file_with(Path::new(guests::WASI_CLOCK), WasiImports::Admitted)
        .expect("admitted");
    let text = std::fs::read_to_string(policy_path("test-basic.toml")).expect("policy");
    let error = warden::start(
        &journal,
        &NewRun {
            agent,
            policy: Arc::new(Policy::parse(&text, "plain").expect("policy")),
            policy_text: text,
            bindings: Arc::new(Bindings::empty()),
            input: "{}".into(),
            submitted_by: None,
        },
    )
    .expect_err("refused");
    assert_eq!(error.kind(), ErrorKind::Usage, "{error}");
    assert!(journal.runs().expect("runs").is_empty());
}

/// A module importing `name` from WASI with type `ty`, and an agent's exports.
fn importing(name: &str, ty: &str) -> String {
    format!(
        r#"(module
            (import "wasi_snapshot_preview1" "{name}" (func {ty}))
            (memory (export "memory") 1)
            (func (export "warden_step") (result i32) i32.const 0))"#
    )
}

/// WASI functions Warden does not answer (files, sockets, polling), a WASI function with
/// another type than WASI's, another WASI than preview 1 and a WASI entry point are
/// refused at load even for a policy that allows WASI guests, each named.
#[test]
fn what_warden_does_not_answer_is_refused_at_load_named() {
    let admitted = |wat: &str| Agent::from_bytes_with(wat.as_bytes(), WasiImports::Admitted);
    for (name, ty) in [
        ("sock_accept", "(param i32 i32 i32) (result i32)"),
        (
            "path_open",
            "(param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)",
        ),
        ("poll_oneoff", "(param i32 i32 i32 i32) (result i32)"),
    ] {
        let error = admitted(&importing(name, ty)).expect_err(name);
        match &error {
            LoadError::ForbiddenImport {
                module,
                name: found,
                hint,
                ..
            } => {
                assert_eq!(
                    (module.as_str(), found.as_str()),
                    ("wasi_snapshot_preview1", name)
                );
                assert!(hint.contains("no files, sockets"), "{hint}");
            }
            other => panic!("{name}: {other:?}"),
        }
        assert!(
            error
                .to_string()
                .contains(&format!("`wasi_snapshot_preview1.{name}`")),
            "{error}"
        );
    }
    let error = admitted(&importing(
        "clock_time_get",
        "(param i32 i32 i32) (result i32)",
    ))
    .expect_err("wrong type");
    assert!(
        matches!(&error, LoadError::WasiSignature { name, found, expected }
            if name == "clock_time_get" && found == "iii>i" && *expected == "iIi>i"),
        "{error:?}"
    );
    let other = r#"(module
        (import "wasi_unstable" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "warden_step") (result i32) i32.const 0))"#;
    let error = admitted(other).expect_err("wasi_unstable");
    assert!(
        error.to_string().contains("wasi_snapshot_preview1"),
        "{error}"
    );
    let command = r#"(module
        (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
        (memory (export "memory") 1)
        (func (export "_start"))
        (func (export "warden_step") (result i32) i32.const 0))"#;
    let error = admitted(command).expect_err("_start");
    assert!(
        matches!(&error, LoadError::EntryPoint(name) if name == "_start"),
        "{error:?}"
    );
    // Every function Warden names, with its type, loads and links.
    let mut imports = String::new();
    for (name, signature) in warden::WASI_FUNCTIONS {
        let (params, results) = signature.split_once('>').expect("params>results");
        let ty = |letters: &str| {
            letters
                .chars()
                .map(|c| if c == 'I' { " i64" } else { " i32" })
                .collect::<String>()
        };
        imports.push_str(&format!(
            "(import \"wasi_snapshot_preview1\" \"{name}\" (func (param{}) (result{})))\n",
            ty(params),
            ty(results)
        ));
    }
    let all = format!(
        "(module {imports} (memory (export \"memory\") 1) (func (export \"warden_step\") (result i32) i32.const 7))"
    );
    let sandbox = Sandbox::new();
    let journal = sandbox.journal();
    let report = run(
        &sandbox,
        &journal,
        Module::Wat(&all),
        &wasi_policy_text(),
        &json!({}),
    );
    assert_eq!(
        report.outcome.reason,
        Some(FailureReason::BadStepResult { step: 1, value: 7 }),
        "it ran: {report:#?}"
    );
}

/// What is not a clock, randomness or output gets the same answer every time: no such
/// file descriptor, no such clock, no arguments, no environment, an empty standard input.
#[test]
fn everything_else_is_answered_the_same_every_time() {
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
      (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $fdstat (param i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 64) "hi\n")
      (func (export "warden_step") (result i32)
        (i32.store (i32.const 0) (i32.const 64))
        (i32.store (i32.const 4) (i32.const 3))
        ;; no descriptor 5
        (if (i32.ne (call $write (i32.const 5) (i32.const 0) (i32.const 1) (i32.const 8)) (i32.const 8))
          (then (return (i32.const 1))))
        ;; standard output: three bytes written
        (if (i32.ne (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)) (i32.const 0))
          (then (return (i32.const 2))))
        (if (i32.ne (i32.load (i32.const 8)) (i32.const 3)) (then (return (i32.const 3))))
        ;; standard input is empty
        (i32.store (i32.const 8) (i32.const 99))
        (if (i32.ne (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)) (i32.const 0))
          (then (return (i32.const 4))))
        (if (i32.ne (i32.load (i32.const 8)) (i32.const 0)) (then (return (i32.const 5))))
        ;; no clock 7
        (if (i32.ne (call $clock (i32.const 7) (i64.const 1) (i32.const 16)) (i32.const 28))
          (then (return (i32.const 6))))
        ;; an empty environment
        (i32.store (i32.const 16) (i32.const 99))
        (if (i32.ne (call $env (i32.const 16) (i32.const 20)) (i32.const 0)) (then (return (i32.const 7))))
        (if (i32.ne (i32.load (i32.const 16)) (i32.const 0)) (then (return (i32.const 8))))
        ;; no preopened directory
        (if (i32.ne (call $prestat (i32.const 3) (i32.const 16)) (i32.const 8)) (then (return (i32.const 9))))
        ;; standard error is a character device one may write to
        (if (i32.ne (call $fdstat (i32.const 2) (i32.const 32)) (i32.const 0)) (then (return (i32.const 10))))
        (if (i32.ne (i32.load8_u (i32.const 32)) (i32.const 2)) (then (return (i32.const 11))))
        (if (i64.ne (i64.load (i32.const 40)) (i64.const 64)) (then (return (i32.const 12))))
        (i32.const 99)))"#;
    let sandbox = Sandbox::new();
    let journal = sandbox.journal();
    let report = run(
        &sandbox,
        &journal,
        Module::Wat(wat),
        &wasi_policy_text(),
        &json!({}),
    );
    assert_eq!(
        report.outcome.reason,
        Some(FailureReason::BadStepResult { step: 1, value: 99 }),
        "every answer as expected (else the value says which was not): {report:#?}"
    );
    let records = journal.records(&report.run_id).expect("records");
    let answers: Vec<(&str, &WasiAnswer)> = wasi_calls(&records)
        .iter()
        .map(|c| (c.request.function(), &c.answer))
        .collect();
    assert_eq!(
        answers,
        [
            ("fd_write", &WasiAnswer::Errno(8)),
            ("fd_write", &WasiAnswer::Count(3)),
            ("fd_read", &WasiAnswer::Count(0)),
            ("clock_time_get", &WasiAnswer::Errno(28)),
            (
                "environ_sizes_get",
                &WasiAnswer::Sizes { count: 0, bytes: 0 }
            ),
            ("fd_prestat_get", &WasiAnswer::Errno(8)),
            (
                "fd_fdstat_get",
                &WasiAnswer::Fdstat {
                    filetype: 2,
                    flags: 0,
                    rights_base: 64,
                    rights_inheriting: 0
                }
            ),
        ]
    );
    assert_replays_identically(&journal, &report.run_id, None);
}

/// A WASI guest calling `body` in its first step, under the WASI policy with `edit`
/// applied to its text; returns the recorded failure.
fn failure_of(imports: &str, body: &str, edit: (&str, &str)) -> FailureReason {
    let wat = format!(
        r#"(module {imports}
          (memory (export "memory") 1)
          (func (export "warden_step") (result i32) {body} (i32.const 0)))"#
    );
    let sandbox = Sandbox::new();
    let journal = sandbox.journal();
    let policy = wasi_policy_text().replace(edit.0, edit.1);
    let report = run(&sandbox, &journal, Module::Wat(&wat), &policy, &json!({}));
    assert_eq!(report.outcome.status, Status::Failed, "{report:#?}");
    assert_eq!(
        journal.verify(&report.run_id).expect("verify").problem,
        None
    );
    assert_replays_identically(&journal, &report.run_id, None);
    report.outcome.reason.expect("a reason")
}

/// WASI calls count against the policy's budgets, a bad pointer is a recorded fault, and
/// an exit is a recorded failure (a run ends with `finish`, not an exit code).
#[test]
fn wasi_calls_are_bounded_and_misuse_is_recorded() {
    let clock = r#"(import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))"#;
    let calls = failure_of(
        clock,
        "(loop $again (drop (call $clock (i32.const 0) (i64.const 1) (i32.const 0))) (br $again))",
        ("max_host_calls = 500", "max_host_calls = 5"),
    );
    assert_eq!(
        calls,
        FailureReason::LimitExceeded {
            step: 1,
            limit: Limit::HostCalls,
            value: 6,
            max: 5
        }
    );
    let fault = failure_of(
        clock,
        "(drop (call $clock (i32.const 1) (i64.const 1) (i32.const 65532)))",
        ("", ""),
    );
    assert!(
        matches!(
            fault,
            FailureReason::Fault {
                step: 1,
                fault: GuestFault::OutOfBounds {
                    ptr: 65532,
                    len: 8,
                    ..
                }
            }
        ),
        "{fault:?}"
    );
    let random = failure_of(
        r#"(import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))"#,
        "(drop (call $random (i32.const 0) (i32.const 65537)))",
        ("", ""),
    );
    assert!(
        matches!(
            random,
            FailureReason::LimitExceeded {
                limit: Limit::ResponseBytes,
                value: 65537,
                ..
            }
        ),
        "{random:?}"
    );
    let write = failure_of(
        r#"(import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))"#,
        "(i32.store (i32.const 4) (i32.const 65537)) (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))",
        ("", ""),
    );
    assert!(
        matches!(
            write,
            FailureReason::LimitExceeded {
                limit: Limit::RequestBytes,
                value: 65537,
                ..
            }
        ),
        "{write:?}"
    );
    let exit = failure_of(
        r#"(import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))"#,
        "(call $exit (i32.const 3))",
        ("", ""),
    );
    assert!(
        matches!(&exit, FailureReason::AgentAborted { step: 1, reason } if reason.contains("proc_exit(3)")),
        "{exit:?}"
    );
}

/// A counterfactual under a policy without WASI: the guest's first WASI call is denied,
/// by the rule that names it, and the outcome changes.
#[test]
fn a_counterfactual_policy_without_wasi_denies_the_first_wasi_call() {
    let sandbox = Sandbox::new();
    let journal = sandbox.journal();
    let report = run(
        &sandbox,
        &journal,
        Module::File(guests::WASI_CLOCK),
        &wasi_policy_text(),
        &json!({}),
    );
    assert_eq!(report.outcome.status, Status::Completed);
    let text = std::fs::read_to_string(policy_path("test-basic.toml")).expect("policy");
    let options = ReplayOptions {
        policy: Some(Arc::new(Policy::parse(&text, "plain").expect("policy"))),
        ..ReplayOptions::default()
    };
    let replay = warden::replay(&journal, &report.run_id, &options).expect("replay");
    assert_eq!(
        replay.verdict,
        ReplayVerdict::DifferentOutcome,
        "{replay:#?}"
    );
    let reason = replay.replayed.and_then(|o| o.reason).expect("a failure");
    assert!(
        matches!(&reason, FailureReason::Denied { rule: Rule::WasiNotAllowed { function }, .. }
            if function == "random_get" || function == "clock_time_get"),
        "{reason:?}"
    );
}
