//! Hostile guests, part two: every hostile Rust agent in `tests/guests/agents/examples/`
//! ends exactly as its row or its test says, as a typed outcome recorded in an intact
//! journal (invariant 6: failure is data); the confidence gate holds from a well-behaved
//! agent's side and cannot be overridden; and the host survives every hostile guest, the
//! WAT fixtures of `tests/hostile.rs` included (invariant 7: bounded).

use std::path::Path;

use serde_json::{Value, json};
use warden::{CapabilityKind, FailureReason, Limit, RecordBody, Rule, Status, TrapCode, Verdict};
use warden_guest::InferenceId;
use warden_guest::wire::Request;
use warden_test_guests as guests;

use crate::hostile::{FAIL_AT_RUN, REFUSED_AT_LOAD};
use crate::support::Sandbox;
use crate::support::hostile::{
    FUEL_PER_STEP, MAX_HOST_CALLS, MEMORY_BUDGET, every_row, failure_under, host_calls, load,
    recorded_failure, wat,
};

/// A hostile Rust agent that must fail its run with a recorded reason.
struct Hostile {
    /// The agent module (a `warden_test_guests` path).
    agent: &'static str,
    /// Its input, as JSON.
    input: &'static str,
    /// The reason it must fail with, under `policies/test-basic.toml`.
    is: fn(&FailureReason) -> bool,
}

/// The hostile Rust agents whose run simply fails, and how.
const FAILING_AGENTS: &[Hostile] = &[
    // Fuel: an infinite loop inside a step.
    Hostile {
        agent: guests::SPIN,
        input: "{}",
        is: |r| {
            matches!(
                r,
                FailureReason::FuelExhausted {
                    step: 1,
                    limit: FUEL_PER_STEP
                }
            )
        },
    },
    // The memory budget: growth one MiB at a time until `memory.grow` is refused.
    Hostile {
        agent: guests::MEMORY_BOMB,
        input: "{}",
        is: |r| {
            matches!(
                r,
                FailureReason::MemoryLimit {
                    step: 1,
                    requested_bytes,
                    limit_bytes: MEMORY_BUDGET
                } if *requested_bytes > MEMORY_BUDGET
            )
        },
    },
    // The memory budget: one 1 GiB allocation. Fails while the fixture's
    // `vec![1u8; 1 << 30]` is only used for its `len()`: LLVM elides the allocation, and
    // the agent ends denied `finish` in `start` instead.
    Hostile {
        agent: guests::HUGE_ALLOC,
        input: "{}",
        is: |r| {
            matches!(
                r,
                FailureReason::MemoryLimit {
                    step: 1,
                    requested_bytes,
                    limit_bytes: MEMORY_BUDGET
                } if *requested_bytes >= 1 << 30
            )
        },
    },
    // The host's stack: unbounded recursion traps as stack exhaustion, never a host crash.
    // Fails while the fixture keeps 256 bytes per frame on Rust's shadow stack: that 1 MiB
    // stack at the bottom of linear memory underflows before wasmtime's native stack
    // does, and the guest traps with "out of bounds memory access" instead.
    Hostile {
        agent: guests::RECURSION,
        input: "{}",
        is: |r| {
            matches!(
                r,
                FailureReason::Trapped {
                    step: 1,
                    trap: TrapCode::StackOverflow
                }
            )
        },
    },
    // Capabilities: a tool the policy never declared.
    Hostile {
        agent: guests::UNDECLARED_TOOL,
        input: "{}",
        is: |r| {
            matches!(r, FailureReason::Denied {
                step: 1,
                rule: Rule::CapabilityUndeclared { kind: CapabilityKind::Tool, name }
            } if name == "wire_transfer")
        },
    },
    // The state machine: a second transition in one step.
    Hostile {
        agent: guests::TRANSITION_FLOOD,
        input: "{}",
        is: |r| {
            matches!(r, FailureReason::Denied {
                step: 1,
                rule: Rule::OneTransitionPerStep { from, to }
            } if from == "working" && to == "working")
        },
    },
    // The host-call budget: a log flood.
    Hostile {
        agent: guests::CALL_FLOOD,
        input: "{}",
        is: |r| {
            matches!(
                r,
                FailureReason::LimitExceeded {
                    step: 1,
                    limit: Limit::HostCalls,
                    value,
                    max: MAX_HOST_CALLS
                } if *value == MAX_HOST_CALLS + 1
            )
        },
    },
    // The panic hook: a Rust panic becomes the agent's own abort, with the message.
    Hostile {
        agent: guests::PANICKER,
        input: r#"{"items": []}"#,
        is: |r| {
            matches!(r, FailureReason::AgentAborted { step: 1, reason }
                if reason.contains("panicked") && reason.contains("index out of bounds"))
        },
    },
    // Confidence gates: citing an inference the host never computed.
    Hostile {
        agent: guests::CONFIDENCE_CLAIM,
        input: "{}",
        is: |r| {
            matches!(r, FailureReason::Denied {
                step: 1,
                rule: Rule::EvidenceUnknown { to, inference: InferenceId(9_999) }
            } if to == "approved")
        },
    },
];

/// Whether a recorded failure is the one a row expects.
pub type FailsWith = fn(&FailureReason) -> bool;

/// The input and the expected failure of the hostile Rust agent of [`FAILING_AGENTS`]
/// named `name` (`tests/guests/agents/examples/{name}.rs`): shared with its C twin of the
/// same name (`tests/c_guest/hostile.rs`).
pub fn failing_agent(name: &str) -> Option<(&'static str, FailsWith)> {
    FAILING_AGENTS
        .iter()
        .find(|row| {
            Path::new(row.agent)
                .file_stem()
                .is_some_and(|stem| stem == name)
        })
        .map(|row| (row.input, row.is))
}

/// Every hostile Rust agent: the table's, and those with a test of their own.
fn hostile_agents() -> Vec<&'static str> {
    FAILING_AGENTS
        .iter()
        .map(|row| row.agent)
        .chain([guests::TRAP_AFTER_CALLS])
        .collect()
}

/// Every agent of [`FAILING_AGENTS`] fails its run with its reason, recorded as the run's
/// outcome in a journal that verifies.
#[test]
fn hostile_agents_fail_with_a_recorded_reason() {
    every_row(
        FAILING_AGENTS,
        |row| {
            let stem = Path::new(row.agent).file_stem().unwrap_or_default();
            stem.to_string_lossy().into_owned()
        },
        |row| {
            let input: Value = serde_json::from_str(row.input).expect("the row's input is JSON");
            let reason = failure_under(row.agent, "test-basic.toml", &input);
            if (row.is)(&reason) {
                Ok(())
            } else {
                Err(format!("failed with the wrong reason: {reason:?}"))
            }
        },
    );
}

// ---------------------------------------------------------------------------------------
// Hostile Rust agents with more to check than their failure reason.

/// The wall-clock safety stop: with fuel too plentiful to bind, the deadline ends the loop.
#[test]
fn spin_hits_the_deadline_when_fuel_does_not_bind() {
    let started = std::time::Instant::now();
    let reason = failure_under(guests::SPIN, "test-deadline.toml", &json!({}));
    assert!(
        matches!(
            reason,
            FailureReason::DeadlineExceeded {
                step: 1,
                limit_ms: 300
            }
        ),
        "{reason:?}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "the deadline stopped the step late: {:?}",
        started.elapsed()
    );
}

/// Write-ahead: a trap mid-step after an effect. The calls the step made before the trap,
/// the effect included, are committed with the failing step's outcome, in order.
#[test]
fn trap_after_calls_keeps_its_calls_in_the_journal() {
    let sandbox = Sandbox::new();
    let report = sandbox.run(guests::TRAP_AFTER_CALLS, "test-basic.toml", &json!({}));
    let journal = sandbox.journal();
    let reason = recorded_failure(&journal, &report);
    assert!(
        matches!(
            &reason,
            FailureReason::Trapped {
                step: 1,
                trap: TrapCode::UnreachableCodeReached
            }
        ),
        "{reason:?}"
    );
    let records = journal.records(&report.run_id).expect("records");
    let calls = host_calls(&records);
    assert!(
        matches!(
            calls.as_slice(),
            [
                (Request::Input, input),
                (Request::Log { .. }, log),
                (Request::Tool { name, .. }, tool),
            ] if name == "disbursement"
                && [input, log, tool].iter().all(|d| d.verdict == Verdict::Allow)
        ),
        "{calls:?}"
    );
    let tail: Vec<&RecordBody> = records
        .iter()
        .map(|r| &r.body)
        .skip_while(|b| !matches!(b, RecordBody::StepStarted { step: 1, .. }))
        .collect();
    assert!(
        matches!(
            tail.as_slice(),
            [
                RecordBody::StepStarted { step: 1, .. },
                RecordBody::HostCall { call: 0, .. },
                RecordBody::HostResponse { call: 0, .. },
                RecordBody::HostCall { call: 1, .. },
                RecordBody::HostResponse { call: 1, .. },
                RecordBody::HostCall { call: 2, .. },
                RecordBody::HostResponse { call: 2, .. },
                RecordBody::Outcome(outcome),
            ] if outcome.status == Status::Failed
        ),
        "the failing step's records: {tail:#?}"
    );
    assert_eq!(report.outcome.host_calls, 3);
    let ledger = std::fs::read_to_string(sandbox.path("ledger.jsonl")).expect("ledger");
    assert_eq!(ledger.lines().count(), 1, "the effect ran once: {ledger}");
    assert!(
        ledger.contains(&format!("{}/2", report.run_id)),
        "keyed by run and call: {ledger}"
    );
}

// ---------------------------------------------------------------------------------------
// The gate, from a well-behaved agent's side.

/// A confident inference of the gate's label (P(safe) = 1 - sigmoid(-5) = 0.993 >= 0.9),
/// on a feature that reconciles with the input, meets the gate on `approved`.
#[test]
fn gate_met_approves_autonomously() {
    let sandbox = Sandbox::new();
    let report = sandbox.run(guests::GATED, "test-basic.toml", &json!({"x": -5}));
    assert_eq!(report.outcome.status, Status::Completed, "{report:#?}");
    assert_eq!(report.outcome.state, "approved");
    assert_eq!(report.path, ["start", "approved"]);
    assert_eq!(report.outcome.output.as_deref(), Some("\"approved\""));
    let journal = sandbox.journal();
    let records = journal.records(&report.run_id).expect("records");
    assert!(
        host_calls(&records)
            .iter()
            .any(|(_, d)| d.verdict == Verdict::Allow
                && matches!(&d.rule, Rule::GateLabelMet { to, model, label, threshold, probability, reconciled, .. }
                if to == "approved" && model == "risk" && label == "safe" && *threshold == 0.9
                    && *probability > 0.99 && *reconciled == 1)),
        "no GateLabelMet decision in {records:#?}"
    );
    assert_eq!(
        journal.verify(&report.run_id).expect("verify").problem,
        None
    );
}

/// An unsure inference (P(safe) = 1 - sigmoid(-0.5) = 0.62 < 0.9) sends the run to
/// `review` for a human.
#[test]
fn gate_not_met_escalates_to_review() {
    let sandbox = Sandbox::new();
    let report = sandbox.run(guests::GATED, "test-basic.toml", &json!({"x": -0.5}));
    assert_eq!(report.outcome.status, Status::AwaitingReview, "{report:#?}");
    assert_eq!(report.outcome.state, "review");
    assert_eq!(report.path, ["start", "review"]);
    assert_eq!(report.outcome.output, None);
    let journal = sandbox.journal();
    let records = journal.records(&report.run_id).expect("records");
    let calls = host_calls(&records);
    let gate = calls
        .iter()
        .find(|(request, _)| matches!(request, Request::Transition { .. }))
        .expect("the transition is journaled");
    assert!(
        matches!(gate, (
            Request::Transition { to, evidence: Some(_) },
            warden::Decision {
                verdict: Verdict::Escalate,
                rule: Rule::GateLabelNotMet {
                    model,
                    inference: Some(_),
                    probability: Some(probability),
                    threshold,
                    otherwise,
                    ..
                },
            },
        ) if to == "approved" && model == "risk" && otherwise == "review"
            && *threshold == 0.9 && (0.6..0.65).contains(probability)),
        "{gate:?}"
    );
    assert!(
        records.iter().any(|r| matches!(&r.body,
            RecordBody::Transition { from, to, .. } if from == "start" && to == "review")),
        "the move to review is journaled"
    );
    assert_eq!(
        journal.verify(&report.run_id).expect("verify").problem,
        None
    );
}

/// Attacks: the confidence gate. After its gate sent the run to `review`, the agent tries
/// to act anyway (here: `finish`) in the same step. The gate's answer is final: the act
/// is refused and the run stops awaiting review, not turned into a failure or a finish.
#[test]
fn agent_cannot_override_a_gate_escalation() {
    let requests = [
        Request::Model {
            name: "risk".into(),
            features: json!({"x": -0.5}).to_string(),
        },
        Request::Transition {
            to: "approved".into(),
            evidence: None,
        },
        Request::Finish {
            output: "\"approved anyway\"".into(),
        },
    ];
    let sandbox = Sandbox::new();
    let agent = sandbox.path("override_gate.wat");
    std::fs::write(&agent, wat_sending(&requests)).expect("write agent");
    let input = json!({"x": -0.5});
    let report = sandbox.run(&agent.display().to_string(), "test-basic.toml", &input);
    assert_eq!(
        (report.outcome.status, report.outcome.state.as_str()),
        (Status::AwaitingReview, "review"),
        "{report:#?}"
    );
    assert_eq!(report.outcome.output, None);
    let journal = sandbox.journal();
    assert_eq!(
        journal.verify(&report.run_id).expect("verify").problem,
        None
    );
}

/// Regression (an escalation could be escaped): after its gate sent the run to `review`,
/// the step goes on to fail (returns 1, loops until its fuel runs out, spins past its
/// deadline). Each used to end the run as `failed`, out of the review queue; each now
/// leaves it awaiting review, with the failure recorded in its outcome.
#[test]
fn whatever_a_step_does_after_an_escalation_the_run_awaits_review() {
    let requests = [
        Request::Model {
            name: "risk".into(),
            features: json!({"x": 2.0}).to_string(),
        },
        Request::Transition {
            to: "approved".into(),
            evidence: None,
        },
    ];
    type Row = (
        &'static str,
        &'static str,
        &'static str,
        fn(&FailureReason) -> bool,
    );
    let rows: [Row; 3] = [
        ("returns 1", "i32.const 1", "test-basic.toml", |r| {
            matches!(r, FailureReason::BadStepResult { value: 1, .. })
        }),
        (
            "loops until fuel runs out",
            "(loop $spin (br $spin)) i32.const 0",
            "test-basic.toml",
            |r| matches!(r, FailureReason::FuelExhausted { .. }),
        ),
        (
            "spins past the deadline",
            "(loop $spin (br $spin)) i32.const 0",
            "test-deadline.toml",
            |r| matches!(r, FailureReason::DeadlineExceeded { .. }),
        ),
    ];
    for (what, tail, policy, is) in rows {
        let sandbox = Sandbox::new();
        let agent = sandbox.path("escalate_then_fail.wat");
        let wat = wat_sending(&requests).replace("    i32.const 0))\n", &format!("    {tail}))\n"));
        std::fs::write(&agent, wat).expect("write agent");
        let input = json!({"x": 2.0});
        let report = sandbox.run(&agent.display().to_string(), policy, &input);
        assert_eq!(
            (report.outcome.status, report.outcome.state.as_str()),
            (Status::AwaitingReview, "review"),
            "{what}: {report:#?}"
        );
        assert!(
            report.outcome.reason.as_ref().is_some_and(is),
            "{what}: the failure is recorded beside the escalation: {report:#?}"
        );
        assert_eq!(
            sandbox
                .journal()
                .verify(&report.run_id)
                .expect("verify")
                .problem,
            None
        );
    }
}

/// A WAT agent whose one step sends `requests` in order, reading no response.
fn wat_sending(requests: &[Request]) -> String {
    let mut data = String::new();
    let mut calls = String::new();
    for (i, request) in requests.iter().enumerate() {
        let bytes = postcard::to_allocvec(request).expect("encode");
        let offset = i * 1024;
        let escaped: String = bytes.iter().map(|b| format!("\\{b:02x}")).collect();
        data.push_str(&format!("  (data (i32.const {offset}) \"{escaped}\")\n"));
        calls.push_str(&format!(
            "    (drop (call $host_call (i32.const 0) (i32.const {offset}) (i32.const {})))\n",
            bytes.len()
        ));
    }
    format!(
        "(module\n  (import \"warden\" \"host_call\" (func $host_call (param i32 i32 i32) (result i64)))\n  (memory (export \"memory\") 1)\n{data}  (func (export \"warden_step\") (result i32)\n{calls}    i32.const 0))\n"
    )
}

// ---------------------------------------------------------------------------------------
// The host survives them all.

/// Every hostile guest, one after another in one process and one journal, then a normal
/// run: hostile guests leave no damage behind (no poisoned engine, linker or journal).
#[test]
fn host_is_unharmed_after_every_hostile_guest() {
    let sandbox = Sandbox::new();
    let journal = sandbox.journal();
    let mut refused = 0;
    let mut failed = 0;
    let agents = REFUSED_AT_LOAD
        .iter()
        .map(|row| row.fixture)
        .chain(FAIL_AT_RUN.iter().map(|row| row.fixture))
        .map(wat)
        .chain(hostile_agents().into_iter().map(ToString::to_string));
    for agent in agents {
        if load(&agent).is_err() {
            refused += 1;
            continue;
        }
        let report = sandbox.run_in(&journal, &agent, "test-basic.toml", &json!({"x": 1}));
        recorded_failure(&journal, &report);
        failed += 1;
    }
    assert_eq!(refused, REFUSED_AT_LOAD.len());
    assert_eq!(failed, FAIL_AT_RUN.len() + hostile_agents().len());
    let input = json!({"after": "all of them"});
    let report = sandbox.run_in(&journal, guests::ECHO, "test-basic.toml", &input);
    assert_eq!(report.outcome.status, Status::Completed, "{report:#?}");
    assert_eq!(
        report.outcome.output.as_deref(),
        Some(input.to_string().as_str())
    );
    for run in journal.runs().expect("runs") {
        assert_eq!(
            journal.verify(&run.run_id).expect("verify").problem,
            None,
            "run {}",
            run.run_id
        );
    }
}

/// The real binary: a failed run exits 11 and prints its reason; a refused module exits 2
/// (a configuration error) and names what is wrong on stderr.
#[test]
fn binary_reports_hostile_guests_with_documented_exit_codes() {
    let sandbox = Sandbox::new();
    let input = sandbox.input("input.json", &json!({}));
    let policy = crate::support::policy_path("test-basic.toml");
    let bindings = sandbox.bindings();
    let cases: &[(String, i32, &str)] = &[
        (guests::SPIN.to_string(), 11, "fuel exhausted"),
        (
            guests::UNDECLARED_TOOL.to_string(),
            11,
            "tool `wire_transfer` is not declared",
        ),
        (
            wat("out_of_bounds"),
            11,
            "is outside guest memory of 65536 bytes",
        ),
        (
            wat("wasi_import"),
            2,
            "imports `wasi_snapshot_preview1.fd_write`",
        ),
        (wat("start_function"), 2, "has a start function"),
    ];
    for (agent, code, says) in cases {
        let output = sandbox.warden(&[
            "run",
            agent,
            "--policy",
            &policy.display().to_string(),
            "--bindings",
            &bindings.display().to_string(),
            "--input",
            &input.display().to_string(),
        ]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(*code),
            "{agent}: stdout {stdout}; stderr {stderr}"
        );
        assert!(
            stdout.contains(says) || stderr.contains(says),
            "{agent} should say {says:?}: stdout {stdout}; stderr {stderr}"
        );
        if *code == 11 {
            assert!(stdout.contains("status   failed"), "{stdout}");
        }
    }
    let (code, json) = sandbox.warden_json(&[
        "run",
        guests::CALL_FLOOD,
        "--policy",
        &policy.display().to_string(),
        "--bindings",
        &bindings.display().to_string(),
        "--input",
        &input.display().to_string(),
    ]);
    assert_eq!(code, 11, "{json}");
    assert_eq!(json["status"], "failed");
    assert!(
        json["reason"]
            .as_str()
            .is_some_and(|r| r.contains("budgets.max_host_calls exceeded: 501 > 500")),
        "{json}"
    );
    let journal = sandbox.journal();
    for run in journal.runs().expect("runs") {
        assert_eq!(run.outcome.status, Status::Failed);
        assert_eq!(journal.verify(&run.run_id).expect("verify").problem, None);
    }
}
