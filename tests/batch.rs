//! `warden batch` (issue #16): many runs in one process with grouped commits. Killed with
//! SIGKILL part-way and started again, it completes every input exactly once, and every
//! run ends as a lone `warden run` of the same input does, verifies, and replays.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::{loan_example, output_text, warden_in};

/// `count` loan applications, each a sample application with its amounts varied, one per
/// line.
fn applications(count: usize) -> String {
    let mut samples: Vec<Value> = std::fs::read_dir(loan_example().join("applications"))
        .expect("applications")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).expect("read")).expect("json"))
        .collect();
    samples.sort_by_key(|v| v["applicant_id"].to_string());
    (0..count)
        .map(|i| {
            let mut app = samples[i % samples.len()].clone();
            if let Some(amount) = app["requested_amount"].as_f64() {
                app["requested_amount"] = (amount + (i as f64) * 10.0).into();
            }
            app["batch_seq"] = i.into();
            app.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What a run came to; its output as JSON whether a report gives it parsed or as text.
fn outcome(report: &Value) -> Value {
    let output = match &report["output"] {
        Value::String(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        other => other.clone(),
    };
    serde_json::json!([
        report["status"],
        report["state"],
        output,
        report["steps"],
        report["host_calls"],
        report["fuel"]
    ])
}

#[test]
fn a_batch_killed_and_started_again_completes_every_input_exactly_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    let inputs = root.join("apps.jsonl");
    let count = 40;
    std::fs::write(&inputs, applications(count)).expect("inputs");
    let example = loan_example();
    let args = [
        "--db",
        "batch.redb",
        "batch",
        example.to_str().expect("utf-8"),
        "--inputs",
        "apps.jsonl",
        "--workers",
        "6",
        "--json",
    ];
    // Killed once a few runs have finished (others are in flight).
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .current_dir(root)
        .env_remove("WARDEN_DB")
        .env_remove("WARDEN_SIGNING_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the batch");
    let stdout = child.stdout.take().expect("stdout");
    let mut finished_before_kill = 0;
    for line in BufReader::new(stdout).lines() {
        if line.is_err() {
            break;
        }
        finished_before_kill += 1;
        if finished_before_kill == 7 {
            break;
        }
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert!(
        finished_before_kill >= 7,
        "the batch made progress before the kill"
    );

    // Started again: completes, resuming what was interrupted, skipping what ended.
    let again = warden_in(root, &args);
    assert!(again.status.success(), "{}", output_text(&again));
    let lines: Vec<Value> = String::from_utf8_lossy(&again.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), count);
    let skipped = lines.iter().filter(|l| l["action"] == "skipped").count();
    assert!(
        skipped >= 7,
        "runs that ended before the kill are skipped: {skipped}"
    );
    assert!(lines.iter().all(|l| l["action"] != "error"), "{lines:#?}");

    // Exactly one run per input, every one ended.
    let db = root.join("batch.redb");
    let (_, runs) = crate::support::warden_json_on(&db, &["runs"]);
    let runs = runs.as_array().expect("runs").clone();
    let mut per_input: HashMap<String, usize> = HashMap::new();
    for run in &runs {
        *per_input.entry(run["input"].to_string()).or_default() += 1;
        assert_ne!(run["status"], "running", "{run}");
    }
    assert_eq!(per_input.len(), count, "every input has a run");
    assert!(per_input.values().all(|n| *n == 1), "{per_input:?}");

    // Each ends as a lone run of its input does.
    let lone_db = root.join("lone.redb");
    for (index, line) in std::fs::read_to_string(&inputs)
        .expect("inputs")
        .lines()
        .enumerate()
        .step_by(3)
    {
        let input = root.join(format!("one-{index}.json"));
        std::fs::write(&input, line).expect("input");
        let (_, lone) = crate::support::warden_json_on(
            &lone_db,
            &[
                "run",
                example.to_str().expect("utf-8"),
                "--input",
                input.to_str().expect("utf-8"),
            ],
        );
        // Lines are printed as runs finish; inputs are named FILE:LINE.
        let name = format!("apps.jsonl:{}", index + 1);
        let batch_line = lines
            .iter()
            .find(|l| l["input"] == name.as_str())
            .expect("a line for every input");
        let run_id = batch_line["run_id"].as_str().expect("run id");
        let (_, shown) = crate::support::warden_json_on(&db, &["show", run_id]);
        assert_eq!(outcome(&lone), outcome(&shown["run"]), "input {index}");
    }
    let (code, audit) = crate::support::warden_json_on(&db, &["verify", "--all"]);
    assert_eq!(code, 0, "{audit:#}");
    let replay = warden_in(root, &["--db", "batch.redb", "replay", "--all"]);
    assert!(replay.status.success(), "{}", output_text(&replay));
    assert!(output_text(&replay).contains(&format!("{count} runs: {count} identical")));
}

/// With the default number of workers (more than there are inputs), an input repeated in
/// the file runs once, a line that is not JSON is an error line naming `FILE:LINE` while
/// the others run, and the batch started again skips every run that ended. Run ids carry
/// the time to the millisecond.
#[test]
fn a_batch_runs_repeated_inputs_once_and_names_a_broken_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    let apps: Vec<String> = applications(6).lines().map(str::to_string).collect();
    let mut lines = apps.clone();
    lines.extend([
        apps[1].clone(),
        apps[3].clone(),
        r#"{"not closed": "#.to_string(),
    ]);
    std::fs::write(root.join("mix.jsonl"), lines.join("\n")).expect("inputs");
    let example = loan_example();
    let args = [
        "--db",
        "batch.redb",
        "batch",
        example.to_str().expect("utf-8"),
        "--inputs",
        "mix.jsonl",
    ];
    let first = warden_in(root, &args);
    let text = output_text(&first);
    // A bad input is the user's mistake (exit 2), not Warden failing (exit 1).
    assert_eq!(first.status.code(), Some(2), "an input failed: {text}");
    assert!(
        text.contains(
            "9 inputs: 6 ran (0 resumed), 0 skipped (already run), 2 duplicates, 1 errors"
        ),
        "{text}"
    );
    assert!(
        text.contains("mix.jsonl:9") && text.contains("not valid JSON"),
        "{text}"
    );

    let again = warden_in(root, &[&args[..], &["--json"]].concat());
    let lines: Vec<Value> = String::from_utf8_lossy(&again.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let actions: Vec<&str> = lines
        .iter()
        .map(|l| l["action"].as_str().expect("action"))
        .collect();
    assert_eq!(
        actions,
        [
            "skipped",
            "skipped",
            "skipped",
            "skipped",
            "skipped",
            "skipped",
            "duplicate",
            "duplicate",
            "error"
        ],
        "{lines:#?}"
    );
    assert_eq!(lines[6]["error"], "the same input as mix.jsonl:2");

    let (_, runs) = crate::support::warden_json_on(&root.join("batch.redb"), &["runs"]);
    let runs = runs.as_array().expect("runs");
    assert_eq!(runs.len(), 6, "{runs:#?}");
    for run in runs {
        let id = run["run_id"].as_str().expect("run id");
        let shape: String = id
            .chars()
            .map(|c| if c.is_ascii_hexdigit() { 'x' } else { c })
            .collect();
        assert_eq!(shape, "xxxxxxxx-xxxxxx.xxx-xxxxxxxxxxxx", "{id}");
    }
}

/// `replay --all` over more runs than the replay keeps in flight ahead of the oldest
/// unreported one (`replay_each` holds a bounded window of reports, whatever the
/// population): every run is reported once, in the order of the runs, and a consumer that
/// stops early stops the replay.
#[test]
fn a_population_larger_than_the_replay_window_is_reported_once_each_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    let count = 300;
    std::fs::write(root.join("apps.jsonl"), applications(count)).expect("inputs");
    let example = loan_example();
    let batch = warden_in(
        root,
        &[
            "--db",
            "batch.redb",
            "batch",
            example.to_str().expect("utf-8"),
            "--inputs",
            "apps.jsonl",
        ],
    );
    assert!(batch.status.success(), "{}", output_text(&batch));
    let journal = warden::Journal::open(&root.join("batch.redb")).expect("journal");
    let ids = journal.run_ids().expect("run ids");
    assert_eq!(ids.len(), count);
    let mut seen = Vec::new();
    warden::replay_each(&journal, &warden::ReplayOptions::default(), &mut |report| {
        assert_eq!(
            report.verdict,
            warden::ReplayVerdict::Identical,
            "{report:?}"
        );
        seen.push(report.run_id);
        std::ops::ControlFlow::Continue(())
    })
    .expect("replay");
    assert_eq!(seen, ids);
    let mut first = Vec::new();
    warden::replay_each(&journal, &warden::ReplayOptions::default(), &mut |report| {
        first.push(report.run_id);
        if first.len() == 5 {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    })
    .expect("replay");
    assert_eq!(first, ids[..5]);
    // A consumer that panics ends the replay with its panic: the workers, by then waiting
    // for room (the first report is taken slowly, while they run ahead), are told to
    // stop, not left waiting for it.
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        warden::replay_each(&journal, &warden::ReplayOptions::default(), &mut |_| {
            std::thread::sleep(std::time::Duration::from_secs(6));
            panic!("the consumer fails")
        })
        .is_ok()
    }));
    assert!(panicked.is_err());
    drop(journal);
    let (code, replays) =
        crate::support::warden_json_on(&root.join("batch.redb"), &["replay", "--all"]);
    assert_eq!(code, 0, "{replays:#}");
    let replayed: Vec<&str> = replays
        .as_array()
        .expect("an array")
        .iter()
        .map(|r| r["run_id"].as_str().expect("run id"))
        .collect();
    assert_eq!(replayed, ids);
}
