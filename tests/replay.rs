//! Replay from the journal alone: tampering is caught at exactly the record it touches,
//! replays from a checkpoint, determinism across processes and many varied runs,
//! counterfactual replay that never invents an answer, and page sharing in storage.

use crate::support::tamper::{CHECKPOINTS, RUNS, decode, decode_meta, encode, encode_meta, tamper};
use crate::support::{Sandbox, loan_example, policy_path, warden_json_on as warden_on};
use redb::{Database, ReadableTable};
use serde_json::{Value, json};
use warden::{Journal, RecordBody};
use warden::{ReplayOptions, ReplayVerdict, replay};
use warden_guest::wire::{Request, Response};

fn run_loan(sandbox: &Sandbox, file: &str) -> String {
    let bindings = loan_example().join("bindings.toml");
    let input = loan_example().join("applications").join(file);
    let (_, report) = sandbox.warden_json(&[
        "run",
        warden_test_guests::LOAN_AGENT,
        "--policy",
        policy_path("loan-underwriting.toml")
            .to_str()
            .expect("utf-8"),
        "--bindings",
        bindings.to_str().expect("utf-8"),
        "--input",
        input.to_str().expect("utf-8"),
    ]);
    report["run_id"].as_str().expect("run id").to_string()
}

#[test]
fn an_edited_tool_response_fails_replay_at_its_commit() {
    let sandbox = Sandbox::new();
    let run_id = run_loan(&sandbox, "01-prime-approve.json");
    let (_dir, copy) = crate::support::tamper::copy_db(&sandbox.db());
    let mut bureau_call = None;
    let edited = tamper(&copy, &run_id, false, |record| match &mut record.body {
        RecordBody::HostCall { call, request, .. } => {
            if matches!(postcard::from_bytes(request), Ok(Request::Tool { name, .. }) if name == "credit_bureau")
            {
                bureau_call = Some(*call);
            }
            false
        }
        RecordBody::HostResponse { call, response } if Some(*call) == bureau_call => {
            let Ok(Response::Tool(Ok(json))) = postcard::from_bytes::<Response>(response) else {
                return false;
            };
            let mut value: Value = serde_json::from_str(&json).expect("json");
            value["credit_score"] = json!(812);
            *response = postcard::to_allocvec(&Response::Tool(Ok(value.to_string())))
                .expect("encode")
                .into();
            true
        }
        _ => false,
    });
    let (code, report) = warden_on(&copy, &["replay", &run_id]);
    assert_eq!(code, 12, "{report:#}");
    assert_eq!(
        report["verdict"], "could_not_replay",
        "a broken chain is no recording"
    );
    // The commit that holds the edited response is named, at its first record.
    let commit = crate::support::tamper::commit_of(&copy, &run_id, edited);
    assert_eq!(report["divergence"]["record"], commit, "{report:#}");
    let actual = report["divergence"]["actual"].as_str().expect("actual");
    assert!(
        actual.contains("altered") && actual.contains(&format!("records {commit} to ")),
        "{actual}"
    );
    // Replay from the record names the forged answer exactly: `show` of the commit reads
    // it as it now is.
    let records = Journal::open_read_only(&copy)
        .expect("journal")
        .records(&run_id)
        .expect("records");
    assert!(
        records[edited as usize].body.describe().contains("812")
            && matches!(records[edited as usize].body, RecordBody::HostResponse { call, .. } if Some(call) == bureau_call),
        "{:?}",
        records[edited as usize]
    );
    // The original database is untouched and still replays.
    let (code, _) = sandbox.warden_json(&["replay", &run_id]);
    assert_eq!(code, 0);
}

#[test]
fn a_resealed_forgery_of_a_host_answer_is_refused_by_verify_and_replay_at_its_commit() {
    let sandbox = Sandbox::new();
    let run_id = run_loan(&sandbox, "01-prime-approve.json");
    let (_dir, copy) = crate::support::tamper::copy_db(&sandbox.db());
    let edited = tamper(&copy, &run_id, true, |record| match &mut record.body {
        RecordBody::HostResponse { response, .. } => {
            if matches!(postcard::from_bytes(response), Ok(Response::State(s)) if s == "affordability")
            {
                *response = postcard::to_allocvec(&Response::State("approved".into()))
                    .expect("encode")
                    .into();
                true
            } else {
                false
            }
        }
        _ => false,
    });
    // The chain checks out, but the transparency log holds the record as committed.
    let (code, verification) = warden_on(&copy, &["verify", &run_id]);
    assert_eq!(code, 12, "a resealed chain is caught: {verification:#}");
    let commit = crate::support::tamper::commit_of(&copy, &run_id, edited);
    assert!(commit <= edited);
    assert_eq!(
        verification["runs"][0]["record"], commit,
        "{verification:#}"
    );
    // Replay holds the journal to the log first: no recording is taken from a forgery.
    let (code, report) = warden_on(&copy, &["replay", &run_id]);
    assert_eq!(code, 12, "{report:#}");
    assert_eq!(report["verdict"], "could_not_replay", "{report:#}");
    let divergence = &report["divergence"];
    assert_eq!(divergence["record"], commit, "{report:#}");
    assert!(
        divergence["actual"]
            .as_str()
            .expect("actual")
            .contains(&format!("records {commit} to ")),
        "{report:#}"
    );
    let text = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("--db")
        .arg(&copy)
        .args(["replay", &run_id])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("COULD NOT REPLAY") && text.contains(&format!("record {commit}")),
        "{text}"
    );
}

#[test]
fn replay_from_a_checkpoint_restores_it_and_compares_the_rest() {
    let sandbox = Sandbox::new();
    let report = sandbox.run(
        warden_test_guests::COUNTER,
        "test-basic.toml",
        &json!({"steps": 6, "amount": 3}),
    );
    let journal = sandbox.journal();
    let full = replay(&journal, &report.run_id, &ReplayOptions::default()).expect("replay");
    assert!((full.verdict == ReplayVerdict::Identical), "{full:#?}");
    let tail = replay(
        &journal,
        &report.run_id,
        &ReplayOptions {
            from_checkpoint: Some(4),
            ..ReplayOptions::default()
        },
    )
    .expect("replay from checkpoint");
    assert!((tail.verdict == ReplayVerdict::Identical), "{tail:#?}");
    assert!(tail.records_compared < full.records_compared);
    assert_eq!(
        tail.checkpoints_compared, 3,
        "checkpoints after steps 5, 6 and 7"
    );
}

/// Records of a run as text, with its run id replaced, for comparing runs.
fn normalized(journal: &Journal, run_id: &str) -> Vec<String> {
    journal
        .records(run_id)
        .expect("records")
        .iter()
        .map(|r| r.body.describe().replace(run_id, "RUN"))
        .collect()
}

#[test]
fn the_same_run_in_different_processes_journals_identically() {
    let sandbox = Sandbox::new();
    let input = sandbox.input("floats.json", &json!({"seed": 0.25}));
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (code, report) = sandbox.warden_json(&[
            "run",
            warden_test_guests::FLOATS,
            "--policy",
            policy_path("test-basic.toml").to_str().expect("utf-8"),
            "--bindings",
            sandbox.bindings().to_str().expect("utf-8"),
            "--input",
            input.to_str().expect("utf-8"),
        ]);
        assert_eq!(code, 0, "{report:#}");
        ids.push(report["run_id"].as_str().expect("id").to_string());
    }
    let journal = sandbox.journal();
    let (a, b) = (normalized(&journal, &ids[0]), normalized(&journal, &ids[1]));
    assert!(
        a.iter()
            .any(|line| line.starts_with("checkpoint after step 4"))
    );
    assert_eq!(a, b, "journals differ beyond run id and timestamps");
    let (ra, rb) = (
        journal.run(&ids[0]).expect("a"),
        journal.run(&ids[1]).expect("b"),
    );
    assert_eq!(ra.outcome.output, rb.outcome.output);
    for step in 0..=ra.outcome.steps {
        let ca = journal
            .checkpoint(&ids[0], step)
            .expect("read")
            .expect("checkpoint");
        let cb = journal
            .checkpoint(&ids[1], step)
            .expect("read")
            .expect("checkpoint");
        assert_eq!(ca.pages, cb.pages, "page digests of checkpoint {step}");
        assert_eq!(ca.globals, cb.globals);
    }
}

#[test]
fn many_varied_runs_replay_bit_for_bit() {
    let sandbox = Sandbox::new();
    let journal = sandbox.journal();
    let mut ids = Vec::new();
    for steps in 1..=6 {
        let input = json!({"steps": steps, "amount": steps * 7});
        ids.push(
            sandbox
                .run_in(
                    &journal,
                    warden_test_guests::COUNTER,
                    "test-basic.toml",
                    &input,
                )
                .run_id,
        );
    }
    for seed in [0.0, 1.5, -3.0, 1e300] {
        ids.push(
            sandbox
                .run_in(
                    &journal,
                    warden_test_guests::FLOATS,
                    "test-basic.toml",
                    &json!({"seed": seed}),
                )
                .run_id,
        );
    }
    for x in [-4.0, 0.2, 2.5, 9.0] {
        ids.push(
            sandbox
                .run_in(
                    &journal,
                    warden_test_guests::GATED,
                    "test-basic.toml",
                    &json!({"x": x}),
                )
                .run_id,
        );
    }
    for agent in [
        warden_test_guests::SPIN,
        warden_test_guests::PANICKER,
        warden_test_guests::TRAP_AFTER_CALLS,
    ] {
        ids.push(
            sandbox
                .run_in(&journal, agent, "test-basic.toml", &json!({"items": [1]}))
                .run_id,
        );
    }
    for id in &ids {
        let report = replay(&journal, id, &ReplayOptions::default()).expect("replay");
        assert!(
            (report.verdict == ReplayVerdict::Identical),
            "run {id} did not replay identically: {report:#?}"
        );
    }
}

#[test]
fn counterfactual_replay_reports_what_the_recording_cannot_answer() {
    let sandbox = Sandbox::new();
    let journal = sandbox.journal();
    // The trapping agent asked the ledger once, for {"amount":5,"n":1}.
    let original = sandbox.run_in(
        &journal,
        warden_test_guests::TRAP_AFTER_CALLS,
        "test-basic.toml",
        &json!({"steps": 2, "amount": 5}),
    );
    let counter =
        warden::Agent::from_file(std::path::Path::new(warden_test_guests::COUNTER)).expect("load");
    let report = replay(
        &journal,
        &original.run_id,
        &ReplayOptions {
            agent: Some(counter),
            ..ReplayOptions::default()
        },
    )
    .expect("counterfactual");
    assert!(
        report.verdict == ReplayVerdict::CouldNotReplay,
        "{report:#?}"
    );
    let replayed = report.replayed.as_ref().expect("replayed outcome");
    let why = &report.unanswered.as_ref().expect("why it stopped").actual;
    assert!(
        replayed.reason.is_none() && why.contains("tool disbursement") && why.contains("\"n\":2"),
        "{why}"
    );
    let departure = report.divergence.expect("the first departure");
    assert_eq!(
        departure.step,
        Some(1),
        "the new agent departs in step 1: {departure:#?}"
    );
    assert_eq!(
        report.verdict,
        ReplayVerdict::CouldNotReplay,
        "an unanswerable run has no outcome to compare"
    );
}

#[test]
fn pages_are_shared_across_runs_and_grow_with_changed_pages_not_steps_times_memory() {
    let sandbox = Sandbox::new();
    let journal = sandbox.journal();
    let first = sandbox.run_in(
        &journal,
        warden_test_guests::COUNTER,
        "test-basic.toml",
        &json!({"steps": 8, "amount": 1}),
    );
    let after_one = journal.page_count().expect("count");
    let mut naive = 0u64;
    for step in 0..=first.outcome.steps {
        naive += journal
            .checkpoint(&first.run_id, step)
            .expect("read")
            .expect("checkpoint")
            .pages
            .len() as u64;
    }
    assert!(
        after_one * 3 < naive,
        "one run stores {after_one} pages; steps x memory would be {naive}"
    );
    for _ in 0..9 {
        sandbox.run_in(
            &journal,
            warden_test_guests::COUNTER,
            "test-basic.toml",
            &json!({"steps": 8, "amount": 1}),
        );
    }
    let after_ten = journal.page_count().expect("count");
    let per_run = (after_ten - after_one) / 9;
    assert!(
        per_run * 4 < after_one,
        "ten runs of one agent share pages: {after_one} pages after one run, {after_ten} after ten"
    );
}

#[test]
fn a_fork_starts_from_a_checkpoint_with_a_patched_input_and_replays() {
    let sandbox = Sandbox::new();
    let parent = sandbox.run(
        warden_test_guests::COUNTER,
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
    let fork_id = fork["run_id"].as_str().expect("id");
    assert_ne!(fork_id, parent.run_id);
    // Two steps were inherited from the parent at 10, two more run at 100.
    assert_eq!(fork["output"]["total"], 400, "{fork:#}");
    let receipts = fork["output"]["receipts"].as_array().expect("receipts");
    assert!(
        receipts[0]
            .as_str()
            .expect("receipt")
            .starts_with(&parent.run_id)
    );
    assert!(receipts[3].as_str().expect("receipt").starts_with(fork_id));
    let (_, shown) = sandbox.warden_json(&["show", fork_id]);
    assert_eq!(shown["run"]["parent"]["run_id"], parent.run_id.as_str());
    assert_eq!(shown["run"]["parent"]["step"], 2);
    let (code, replayed) = sandbox.warden_json(&["replay", fork_id]);
    assert_eq!(code, 0, "{replayed:#}");
    assert_eq!(replayed["from_checkpoint"], 2);
    let missing = sandbox.warden(&["fork", &parent.run_id, "--at-step", "99"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no checkpoint at step 99"));
}

/// Attacks: the run summary that `warden runs` and `show` display. Editing the recorded
/// decision in the `runs` table (not the chained records) must not pass verification.
#[test]
fn an_edited_run_summary_fails_verification() {
    let sandbox = Sandbox::new();
    let run_id = run_loan(&sandbox, "03-high-pd-decline.json");
    let (_dir, copy) = crate::support::tamper::copy_db(&sandbox.db());
    {
        let database = Database::create(&copy).expect("open copy");
        let tx = database.begin_write().expect("write");
        {
            let mut runs = tx.open_table(RUNS).expect("runs");
            let mut meta = decode_meta(
                runs.get(run_id.as_str())
                    .expect("get")
                    .expect("run")
                    .value(),
            );
            meta.outcome.state = "approved".into();
            meta.outcome.output = Some(r#"{"decision":"approved"}"#.into());
            runs.insert(run_id.as_str(), encode_meta(&meta).as_slice())
                .expect("insert");
        }
        tx.commit().expect("commit");
    }
    let (code, verification) = warden_on(&copy, &["verify", &run_id]);
    assert_eq!(code, 12, "{verification:#}");
    let problem = verification["runs"][0]["problem"]
        .as_str()
        .expect("a problem");
    assert!(problem.contains("summary was altered"), "{problem}");
}

/// Attacks: a checkpoint row, e.g. to plant a confident inference before a fork. The
/// chained record holds the checkpoint's digest, so verification names it, and a fork
/// from that journal is refused.
#[test]
fn an_edited_checkpoint_fails_verification_and_cannot_be_forked() {
    let sandbox = Sandbox::new();
    let run_id = run_loan(&sandbox, "05-gate-escalates.json");
    let (_dir, copy) = crate::support::tamper::copy_db(&sandbox.db());
    {
        let database = Database::create(&copy).expect("open copy");
        let tx = database.begin_write().expect("write");
        {
            let mut table = tx.open_table(CHECKPOINTS).expect("checkpoints");
            let mut checkpoint: warden::Checkpoint = decode(
                table
                    .get((run_id.as_str(), 3))
                    .expect("get")
                    .expect("checkpoint 3")
                    .value(),
            );
            checkpoint.state = "scoring".into();
            checkpoint.host_calls += 1;
            table
                .insert((run_id.as_str(), 3), encode(&checkpoint).as_slice())
                .expect("insert");
        }
        tx.commit().expect("commit");
    }
    let (code, verification) = warden_on(&copy, &["verify", &run_id]);
    assert_eq!(code, 12, "{verification:#}");
    assert!(
        verification["runs"][0]["problem"]
            .as_str()
            .expect("problem")
            .contains("checkpoint 3")
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("--db")
        .arg(&copy)
        .args(["fork", &run_id, "--at-step", "3"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(12), "a broken chain");
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not verify"));
}

/// Regression: a fork that fails at instantiation recorded the policy's initial state in
/// its outcome while its summary held the checkpoint's state, so `verify` took the honest
/// run for a tampered one. The summary of an ended run now comes from its Outcome record.
#[test]
fn a_fork_that_fails_at_instantiation_still_verifies() {
    let sandbox = Sandbox::new();
    let journal = sandbox.journal();
    let parent = sandbox.run_in(
        &journal,
        warden_test_guests::COUNTER,
        "test-basic.toml",
        &json!({"steps": 3, "amount": 1}),
    );
    let text = std::fs::read_to_string(policy_path("test-basic.toml"))
        .expect("policy")
        .replace("memory_bytes = 16_777_216", "memory_bytes = 65_536");
    let policy = warden::Policy::parse(&text, "tiny-memory").expect("policy");
    let request = warden::ForkRequest {
        parent: &parent.run_id,
        step: 2,
        input_patch: None,
        bindings: None,
        submitted_by: None,
        policy: Some((std::sync::Arc::new(policy), text.clone())),
        live_effects: false,
    };
    let fork = warden::fork(&journal, request).expect("fork runs");
    assert_eq!(fork.outcome.status, warden::Status::Failed);
    assert!(
        matches!(
            fork.outcome.reason,
            Some(warden::FailureReason::MemoryLimit { .. })
        ),
        "{fork:#?}"
    );
    assert_eq!(
        fork.outcome.state, "working",
        "the fork failed in its checkpoint's state"
    );
    assert_eq!(journal.verify(&fork.run_id).expect("verify").problem, None);
}
