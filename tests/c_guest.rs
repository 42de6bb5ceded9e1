//! A second guest language (issue #17): agents written in C against `guest-sdk-c`, built
//! from source by `tests/guests/build_c.rs` with clang, run the same ABI as Rust agents
//! and pass the same tests. The C claims-triage agent meets, under the same policy, the
//! expectations `warden new`'s Rust agent meets, and a run a person reviewed continues and
//! replays; the C counter makes the Rust counter's requests byte for byte, replays from
//! the journal and from a checkpoint, resumes after `warden` is killed with every effect
//! applied once, and forks; the SDK's JSON and numbers agree with serde_json; and every
//! hostile C fixture ends as its Rust or WAT twin does, judged by the twin's own row
//! (`tests/c_guest/hostile.rs`).

mod hostile;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{Value, json};
use warden::{Journal, RecordBody, ReplayOptions, ReplayVerdict, Status, replay};
use warden_test_guests::{self as guests, c_guest};

use crate::support::crash::{Moment, Site, check_ledger, effects_of, kill_at};
use crate::support::{Sandbox, output_text, policy_path, warden_in, workspace};

/// The C SDK's example: `guest-sdk-c/examples/claims-triage`.
fn claims_source() -> PathBuf {
    workspace().join("guest-sdk-c/examples/claims-triage")
}

/// The files of the claims example that are `warden new`'s: everything but the agent's
/// source and the manifest (and `.gitignore`), relative to the example.
fn contract_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for name in ["policy.toml", "bindings.toml"] {
        files.push(PathBuf::from(name));
    }
    for sub in ["fixtures", "models", "inputs"] {
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir.join(sub))
            .unwrap_or_else(|e| panic!("{}/{sub}: {e}", dir.display()))
            .map(|e| Path::new(sub).join(e.expect("entry").file_name()))
            .collect();
        names.sort();
        files.extend(names);
    }
    files
}

/// A copy of the claims example in `dir` whose `warden.toml` names the C agent `build.rs`
/// compiled (the shipped manifest names the module its build command writes beside
/// `agent.c`, which a fresh checkout does not have).
fn claims_example(dir: &Path) -> PathBuf {
    let source = claims_source();
    for file in contract_files(&source) {
        let to = dir.join(&file);
        std::fs::create_dir_all(to.parent().expect("a parent")).expect("example copy");
        std::fs::copy(source.join(&file), &to).expect("copy");
    }
    std::fs::write(
        dir.join("warden.toml"),
        format!(
            "agent = {:?}\npolicy = \"policy.toml\"\nbindings = \"bindings.toml\"\ninput = \"inputs/01-approve.json\"\n",
            c_guest("claims_triage")
        ),
    )
    .expect("manifest");
    dir.to_path_buf()
}

/// Every run in `journal` replays bit for bit from the journal alone.
fn all_replay(journal: &Journal) {
    for run in journal.runs().expect("runs") {
        let report = replay(journal, &run.run_id, &ReplayOptions::default()).expect("replay");
        assert!(
            report.verdict == ReplayVerdict::Identical,
            "run {} did not replay identically: {report:#?}",
            run.run_id
        );
    }
}

// ---------------------------------------------------------------------------------------
// The claims-triage agent: tools, a model, a gate, a review, transitions, logs, finish.

/// The C agent runs under `warden new`'s own policy, bindings, fixture, model card and
/// sample claims, byte for byte, and `warden test` finds every expectation met: approved
/// on a confident scorecard, declined on a lapsed policy, sent to a claims handler by the
/// gate, and failed at intake on an invalid amount (the agent's reason, recorded).
#[test]
fn the_c_claims_agent_meets_the_expectations_of_the_rust_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let made = warden_in(dir.path(), &["new", "claims-triage", "--dir", "rust"]);
    assert!(made.status.success(), "{}", output_text(&made));
    let rust = dir.path().join("rust");
    let ours = claims_source();
    assert_eq!(
        contract_files(&ours),
        contract_files(&rust),
        "the same files"
    );
    for file in contract_files(&ours) {
        assert!(
            std::fs::read(ours.join(&file)).expect("ours")
                == std::fs::read(rust.join(&file)).expect("warden new's"),
            "guest-sdk-c/examples/claims-triage/{} differs from what `warden new` writes: copy it again",
            file.display()
        );
    }

    let example = claims_example(&dir.path().join("c"));
    let output = warden_in(&example, &["test", ".", "--json"]);
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", output_text(&output)));
    assert_eq!(output.status.code(), Some(0), "{report:#}");
    assert_eq!(
        (&report["passed"], &report["failed"]),
        (&json!(4), &json!(0)),
        "{report:#}"
    );
    let results = report["results"].as_array().expect("results");
    let failed = results
        .iter()
        .find(|r| r["status"] == "failed")
        .expect("04-invalid-amount fails");
    assert_eq!(
        failed["reason"],
        "step 1: agent aborted: invalid claim \"C-1004\": amount must be a positive number, got 0",
        "the agent's own reason is the run's"
    );
    let approved = results
        .iter()
        .find(|r| r["state"] == "approved")
        .expect("01-approve is approved");
    assert_eq!(
        approved["output"]["reasons"][0],
        "claim risk 0.0446 is below the approval cut-off 0.15"
    );
}

/// A claim the gate sent to a claims handler: the handler approves it, the run continues
/// from the gate's checkpoint in C, reads the review and cites it, then replays bit for
/// bit through the recorded review and verifies; so do the other sample runs.
#[test]
fn a_c_run_a_person_reviewed_continues_citing_the_review_and_replays() {
    let sandbox = Sandbox::new();
    let example = claims_example(&sandbox.path("claims"));
    let dir = example.to_str().expect("utf-8");
    let input = example.join("inputs/03-gate-escalates.json");
    let (code, report) = sandbox.warden_json(&[
        "run",
        dir,
        "--input",
        input.to_str().expect("utf-8"),
        "--submitter",
        "tester",
    ]);
    assert_eq!(
        (code, &report["state"]),
        (10, &json!("manual_review")),
        "{report:#}"
    );
    let run_id = report["run_id"].as_str().expect("run id");
    let (_, case) = sandbox.warden_json(&["review", run_id]);
    let action = case["action"].as_str().expect("the action digest");
    let (code, decided) = sandbox.warden_json(&[
        "review",
        run_id,
        "--decide",
        "approved",
        "--reviewer",
        "a.handler",
        "--role",
        "claims_handler",
        "--note",
        "photos match the plumber's invoice",
        "--action",
        action,
    ]);
    assert_eq!(code, 0, "{decided:#}");
    let output = &decided["output"];
    assert_eq!(output["decision"], "approved", "{decided:#}");
    assert_eq!(
        output["reasons"][1],
        "decided by a.handler (claims_handler): photos match the plumber's invoice"
    );
    assert_eq!(output["review"]["role"], "claims_handler");
    assert_eq!(output["review"]["by_timeout"], false);
    assert_eq!(
        decided["path"],
        json!([
            "intake",
            "coverage_check",
            "assess",
            "manual_review",
            "approved"
        ])
    );

    for sample in ["01-approve", "02-lapsed-decline", "04-invalid-amount"] {
        let input = example.join(format!("inputs/{sample}.json"));
        sandbox.warden_json(&["run", dir, "--input", input.to_str().expect("utf-8")]);
    }
    let (code, verified) = sandbox.warden_json(&["verify", "--all"]);
    assert_eq!(code, 0, "{verified:#}");
    all_replay(&sandbox.journal());
}

/// Determinism across processes: the same claim run twice by two `warden` processes
/// journals the same records, and every checkpoint holds the same memory and globals.
#[test]
fn the_same_c_run_in_different_processes_journals_identically() {
    let sandbox = Sandbox::new();
    let example = claims_example(&sandbox.path("claims"));
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (code, report) = sandbox.warden_json(&["run", example.to_str().expect("utf-8")]);
        assert_eq!(code, 0, "{report:#}");
        ids.push(report["run_id"].as_str().expect("id").to_string());
    }
    let journal = sandbox.journal();
    let text = |id: &str| -> Vec<String> {
        let records = journal.records(id).expect("records");
        records
            .iter()
            .map(|r| r.body.describe().replace(id, "RUN"))
            .collect()
    };
    assert_eq!(text(&ids[0]), text(&ids[1]));
    let steps = journal.run(&ids[0]).expect("run").outcome.steps;
    for step in 0..=steps {
        let a = journal
            .checkpoint(&ids[0], step)
            .expect("read")
            .expect("checkpoint");
        let b = journal
            .checkpoint(&ids[1], step)
            .expect("read")
            .expect("checkpoint");
        assert_eq!(
            (a.pages, a.globals),
            (b.pages, b.globals),
            "checkpoint {step}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The counter: effects, many steps, memory that changes every step.

/// The bytes of a run's requests as they were sent and of the responses as they were
/// answered, in order, with the run id replaced.
fn wire(journal: &Journal, run_id: &str) -> Vec<(u64, Vec<u8>)> {
    journal
        .records(run_id)
        .expect("records")
        .into_iter()
        .filter_map(|r| match r.body {
            RecordBody::HostCall { call, request, .. } => Some((call, request)),
            RecordBody::HostResponse { call, response } => Some((call, response)),
            _ => None,
        })
        .map(|(call, bytes)| {
            // A run id is always as long, so replacing it leaves every length prefix right.
            let text = String::from_utf8_lossy(&bytes).replace(run_id, "RUN");
            (call, text.into_bytes())
        })
        .collect()
}

/// The C SDK encodes the wire exactly as the Rust SDK: the C counter's requests (input,
/// state, tool, log, transition, finish) are the Rust counter's, byte for byte, and so
/// are Warden's answers and the output.
#[test]
fn the_c_counter_makes_the_rust_counters_requests_byte_for_byte() {
    let sandbox = Sandbox::new();
    let journal = sandbox.journal();
    let input = json!({"steps": 3, "amount": 5});
    let rust = sandbox.run_in(&journal, guests::COUNTER, "test-basic.toml", &input);
    let c = sandbox.run_in(&journal, c_guest("counter"), "test-basic.toml", &input);
    assert_eq!(c.outcome.status, Status::Completed, "{c:#?}");
    assert_eq!(wire(&journal, &c.run_id), wire(&journal, &rust.run_id));
    let output = |run: &warden::RunReport| {
        run.outcome
            .output
            .clone()
            .unwrap_or_default()
            .replace(&run.run_id, "RUN")
    };
    assert_eq!(output(&c), output(&rust));
    assert_eq!(c.path, rust.path);
}

/// Replay from the journal alone, and from a checkpoint: as the Rust counter's test in
/// `tests/replay.rs`, and over many varied runs.
#[test]
fn c_runs_replay_bit_for_bit_and_from_a_checkpoint() {
    let sandbox = Sandbox::new();
    let journal = sandbox.journal();
    let counter = c_guest("counter");
    let report = sandbox.run_in(
        &journal,
        counter,
        "test-basic.toml",
        &json!({"steps": 6, "amount": 3}),
    );
    let full = replay(&journal, &report.run_id, &ReplayOptions::default()).expect("replay");
    assert!(full.verdict == ReplayVerdict::Identical, "{full:#?}");
    let options = ReplayOptions {
        from_checkpoint: Some(4),
        ..ReplayOptions::default()
    };
    let tail = replay(&journal, &report.run_id, &options).expect("replay from checkpoint");
    assert!(tail.verdict == ReplayVerdict::Identical, "{tail:#?}");
    assert!(tail.records_compared < full.records_compared);
    assert_eq!(
        tail.checkpoints_compared, 3,
        "checkpoints after steps 5, 6 and 7"
    );
    for steps in 1..=4 {
        let input = json!({"steps": steps, "amount": steps * 7});
        sandbox.run_in(&journal, counter, "test-basic.toml", &input);
    }
    all_replay(&journal);
}

/// Crash consistency: `warden` is killed while it runs the C counter, after the first,
/// the fourth and the seventh effect of eight, and `warden resume` finishes each run
/// exactly as an uninterrupted run finishes (every record, the output, the fuel), with
/// every effect in the ledger once, and the run replays bit for bit.
#[test]
fn a_killed_c_run_resumes_to_the_uninterrupted_result() {
    const STEPS: u32 = 8;
    let args = |sb: &Sandbox| -> Vec<std::ffi::OsString> {
        let input = sb.input("counter.json", &json!({"steps": STEPS, "amount": 100}));
        vec![
            "run".into(),
            c_guest("counter").into(),
            "--policy".into(),
            policy_path("test-basic.toml").into(),
            "--bindings".into(),
            sb.bindings().into(),
            "--input".into(),
            input.into(),
        ]
    };
    let reference = Sandbox::new();
    let site = Site::new(&reference);
    let (code, report) = site.json(&args(&reference));
    assert_eq!(code, 0, "{report}");
    let expected = site.signature(report["run_id"].as_str().expect("run id"));

    for effects in [1, 4, 7] {
        let sb = Sandbox::new();
        let site = Site::new(&sb);
        let child = site
            .command(&args(&sb))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn warden");
        let (killed, _) = kill_at(child, Some(Moment::Effects(effects)), &sb, None);
        assert!(killed, "the run ended before its effect {effects}");
        let runs = site.runs();
        let run_id = runs.keys().next().expect("the run was created").clone();
        assert!(effects_of(&sb, &run_id) >= effects);
        let (code, resumed) = site.json(&["resume", &run_id]);
        assert_eq!(code, 0, "{resumed}");
        let signature = site.signature(&run_id);
        signature
            .compare(&expected)
            .unwrap_or_else(|e| panic!("killed after effect {effects}: {e}"));
        check_ledger(&sb, &run_id, STEPS, &signature).expect("every effect once");
        site.replay_identical(&run_id)
            .expect("the resumed run replays");
        site.verify_all().expect("the journal verifies");
    }
}

/// A fork of a C run from a checkpoint, with a patched input: two steps inherited at 10,
/// two run at 100; the fork replays bit for bit.
#[test]
fn a_c_run_forks_from_a_checkpoint_with_a_patched_input_and_replays() {
    let sandbox = Sandbox::new();
    let parent = sandbox.run(
        c_guest("counter"),
        "test-basic.toml",
        &json!({"steps": 4, "amount": 10}),
    );
    let (code, fork) = sandbox.warden_json(&[
        "fork",
        &parent.run_id,
        "--at-step",
        "2",
        "--input-patch",
        r#"{"amount": 100}"#,
        "--live-effects",
    ]);
    assert_eq!(code, 0, "{fork:#}");
    assert_eq!(fork["output"]["total"], 400, "{fork:#}");
    let fork_id = fork["run_id"].as_str().expect("id");
    let receipts = fork["output"]["receipts"].as_array().expect("receipts");
    assert!(
        receipts[0]
            .as_str()
            .expect("receipt")
            .starts_with(&parent.run_id)
    );
    assert!(receipts[3].as_str().expect("receipt").starts_with(fork_id));
    let (code, replayed) = sandbox.warden_json(&["replay", fork_id]);
    assert_eq!(
        (code, &replayed["from_checkpoint"]),
        (0, &json!(2)),
        "{replayed:#}"
    );
}

// ---------------------------------------------------------------------------------------
// The SDK's JSON and numbers, against serde_json.

/// Numbers compared as numbers (the probe writes every number back as a double: 1 as 1.0).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().expect("f64"), y.as_f64().expect("f64"));
            x == y && x.is_sign_negative() == y.is_sign_negative()
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// The C agent reads every value of its input with the SDK and writes it again: the same
/// values (every double exactly, strings with escapes and characters outside the BMP);
/// it formats numbers as serde_json does; lookups by JSON pointer find what RFC 6901
/// says, and name what is wrong otherwise.
#[test]
fn the_c_sdks_json_and_numbers_agree_with_serde_json() {
    let numbers = [
        0.0,
        -0.0,
        1.0,
        0.1,
        0.2,
        0.3,
        1.5,
        8000.0,
        25000.0,
        0.45,
        1.0 / 3.0,
        2.0 / 3.0,
        14.0 / 30.0,
        0.1 + 0.2,
        123.456,
        1e21,
        1e20,
        1e-5,
        1e-6,
        1e-7,
        5e-324,
        2.2250738585072014e-308,
        1.7976931348623157e308,
        9007199254740993.0,
        0.044574280433886476,
        -7.3e-3,
        6.02214076e23,
        std::f64::consts::PI,
        std::f64::consts::E,
        1e300,
        1e-300,
        4.35,
        0.000123,
        // Where serde_json switches between plain and exponent notation.
        1e15,
        9999999999999998.0,
        1e16,
        1.5e16,
        123456789012345680.0,
        0.000012345,
        1.2345e-6,
    ];
    let strings = [
        "",
        "plain",
        "é ü ß",
        "\"quoted\" \\ back",
        "line\nbreak\ttab\r",
        "\u{1}\u{1f}",
        "😀 𝄞",
        "a/b~c",
    ];
    let values = json!([
        &numbers[..], strings, null, true, false, [], {}, {"a/b": {"c~d": [1, [2, [3]]]}, "": "empty key"},
        [[[[[[[[[[["deep"]]]]]]]]]]]
    ]);
    let lookups = [
        (
            "{\"a\": [1, {\"b\": \"x\"}]}",
            "/a/1/b",
            "string",
            Some("\"x\""),
            None,
        ),
        (
            "{\"a/b\": 1, \"c~d\": 2}",
            "/a~1b",
            "number",
            Some("1"),
            None,
        ),
        (
            "{\"a/b\": 1, \"c~d\": 2}",
            "/c~0d",
            "number",
            Some("2"),
            None,
        ),
        ("{\"a\": 1, \"a\": 2}", "/a", "number", Some("2"), None),
        ("{\"\\u0061\": true}", "/a", "bool", Some("true"), None),
        ("[10, 20]", "/1", "number", Some("20"), None),
        (" {\"x\": [ ] } ", "", "object", Some("{\"x\": [ ] }"), None),
        ("[10, 20]", "/01", "missing", None, Some("`/01` is missing")),
        ("[10, 20]", "/2", "missing", None, Some("`/2` is missing")),
        (
            "{\"a\": 1}",
            "/a/b",
            "missing",
            None,
            Some("`/a/b` is missing"),
        ),
        (
            "{\"a\": 1",
            "/a",
            "missing",
            None,
            Some("cannot read `/a`: the text is not JSON"),
        ),
        (
            "{\"a\": 1,}",
            "/a",
            "missing",
            None,
            Some("the text is not JSON"),
        ),
        ("[1 2]", "/0", "missing", None, Some("the text is not JSON")),
        (
            "\"\u{1}\"",
            "",
            "missing",
            None,
            Some("the text is not JSON"),
        ),
        (
            "{\"a\": 1}",
            "a",
            "missing",
            None,
            Some("`a` is not a JSON pointer (it must start with /)"),
        ),
    ];
    let deep = format!("{}1{}", "[".repeat(65), "]".repeat(65));
    let mut lookup_json: Vec<Value> = lookups
        .iter()
        .map(|(text, pointer, ..)| json!({"json": text, "pointer": pointer}))
        .collect();
    lookup_json.push(json!({"json": deep, "pointer": ""}));
    // Number texts that are hard to read right: more digits than 19 or than a double
    // holds, a hair either side of halfway between two doubles, the edges of the
    // subnormals and of overflow.
    let texts = [
        "0.1000000000000000055511151231257827021181583404541015625",
        "9007199254740993",
        "9007199254740993.0000000000000000001",
        "1744774741779858194238",
        "0.205468591928746405229",
        "6614570878272710304362985",
        "123456789012345678901234567890e-30",
        "2.4703282292062327e-324",
        "2.4703282292062328e-324",
        "4.9406564584124654e-324",
        "2.2250738585072011e-308",
        "2.2250738585072012e-308",
        "1.7976931348623158e308",
        "0.000000000000000000000000000000000000001e+40",
        "-0.0",
        "1e-400",
    ];
    let input =
        json!({"values": values, "lookups": lookup_json, "numbers": &numbers[..], "texts": texts});
    let sandbox = Sandbox::new();
    let report = sandbox.run(c_guest("json_probe"), "test-basic.toml", &input);
    assert_eq!(report.outcome.status, Status::Completed, "{report:#?}");
    let text = report.outcome.output.as_deref().expect("output");
    let output: Value = serde_json::from_str(text).expect("JSON");

    assert!(
        same_json(&output["values"], &values),
        "{:#}\n{values:#}",
        output["values"]
    );
    // Byte for byte as serde_json writes them: doubles (8000.0, 1e16, 5e-324), and
    // strings with their escapes.
    for written in [&values[0], &values[1]] {
        let serde = serde_json::to_string(written).expect("serde");
        assert!(text.contains(&serde), "{serde}\nis not in\n{text}");
    }
    for (i, number) in numbers.iter().enumerate() {
        let written = &output["numbers"][i];
        let g = written["g"].as_str().expect("g");
        assert_eq!(
            g.parse::<f64>().ok(),
            Some(*number),
            "{g} reads back as {number:e}"
        );
        let serde = serde_json::to_string(number).expect("serde");
        assert_eq!(g, serde.strip_suffix(".0").unwrap_or(&serde), "{number:e}");
        if number.abs() < 1e15 {
            assert_eq!(written["f2"], format!("{number:.2}"), "{number:e}");
        }
    }
    for (i, (text, pointer, kind, raw, error)) in lookups.iter().enumerate() {
        let got = &output["lookups"][i];
        assert_eq!(got["kind"], *kind, "{text} at {pointer:?}: {got}");
        assert_eq!(got["raw"].as_str(), *raw, "{text} at {pointer:?}: {got}");
        match error {
            Some(error) => assert!(
                got["error"].as_str().is_some_and(|e| e.contains(error)),
                "{got}"
            ),
            None => assert!(got["error"].is_null(), "{got}"),
        }
    }
    for (i, text) in texts.iter().enumerate() {
        let rust: f64 = text.parse().expect("a number");
        let serde = serde_json::to_string(&rust).expect("serde");
        let expected = serde.strip_suffix(".0").unwrap_or(&serde);
        assert_eq!(output["parsed"][i], expected, "{text} reads as {rust:e}");
    }
    let deep = &output["lookups"][lookups.len()];
    assert!(
        deep["error"]
            .as_str()
            .is_some_and(|e| e.contains("not JSON")),
        "nesting deeper than 64: {deep}"
    );
    assert_eq!(
        output["formats"],
        json!([
            "0 -42 2147483647",
            "4294967295 -9223372036854775808 18446744073709551615",
            "65536 ff deadbeefcafe",
            "text|c|%|1.500000",
            "NaN inf -inf",
            "pi=3.141592653589793; trunc"
        ])
    );
}
