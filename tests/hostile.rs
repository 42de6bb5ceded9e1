mod support;

// Hostile guests: every WAT fixture in `tests/hostile/` and every hostile Rust agent in
// `tests/guests/agents/examples/` ends exactly as its comment says, as a typed outcome
// recorded in an intact journal (invariant 6: failure is data), and the host survives
// all of them (invariant 7: bounded).

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::{Value, json};
use support::Sandbox;
use warden::agent::{Agent, LoadError};
use warden::decision::{CapabilityKind, Rule, Verdict};
use warden::journal::{Journal, Record, RecordBody};
use warden::outcome::{FailureReason, GuestFault, Limit, Status};
use warden::run::RunReport;
use warden_guest::InferenceId;
use warden_guest::wire::{Request, Response};
use warden_test_guests as guests;

/// `budgets.memory_bytes` of `policies/test-basic.toml`.
const MEMORY_BUDGET: u64 = 16_777_216;
/// `budgets.fuel_per_step` of `policies/test-basic.toml`.
const FUEL_PER_STEP: u64 = 200_000_000;
/// `budgets.max_host_calls` of `policies/test-basic.toml`.
const MAX_HOST_CALLS: u64 = 500;
/// `budgets.max_request_bytes` of `policies/test-basic.toml`.
const MAX_REQUEST_BYTES: u64 = 65_536;
/// One 64 KiB WebAssembly page: the memory of every WAT fixture that runs.
const ONE_PAGE: u64 = 65_536;

/// The WAT fixtures Warden refuses at load time. Each has a test below.
const REFUSED_AT_LOAD: &[&str] = &[
    "bad_signature",
    "memory_import",
    "missing_step",
    "no_memory_export",
    "start_function",
    "step_wrong_type",
    "table_import",
    "table_mutation",
    "unknown_module_import",
    "wasi_import",
];

/// The WAT fixtures that load and then fail their run. Each has a test below.
const FAIL_AT_RUN: &[&str] = &[
    "garbage_request",
    "initial_memory_over_budget",
    "max_length",
    "out_of_bounds",
    "read_twice",
    "read_without_call",
    "short_buffer",
    "step_returns_nonzero",
    "truncated_request",
    "unknown_op",
    "wrapping_pointer",
    "zero_length",
];

/// The hostile Rust agents. Each has a test below.
const HOSTILE_AGENTS: &[&str] = &[
    guests::SPIN,
    guests::MEMORY_BOMB,
    guests::HUGE_ALLOC,
    guests::RECURSION,
    guests::UNDECLARED_TOOL,
    guests::TRANSITION_FLOOD,
    guests::CALL_FLOOD,
    guests::TRAP_AFTER_CALLS,
    guests::PANICKER,
    guests::CONFIDENCE_CLAIM,
];

fn wat(name: &str) -> String {
    PathBuf::from(guests::HOSTILE_WAT_DIR)
        .join(format!("{name}.wat"))
        .display()
        .to_string()
}

fn load(path: &str) -> Result<Agent, LoadError> {
    let engine = warden::engine::engine().expect("engine");
    Agent::from_file(engine, path.as_ref())
}

/// Loads the WAT fixture `name`, which Warden must refuse; returns the refusal.
fn refusal(name: &str) -> LoadError {
    match load(&wat(name)) {
        Ok(_) => panic!("{name}.wat loaded, but Warden must refuse it"),
        Err(error) => error,
    }
}

/// Asserts `report` is a failure whose reason is the journal's recorded outcome, in a
/// journal whose hash chain verifies; returns the reason.
fn recorded_failure(journal: &Journal, report: &RunReport) -> FailureReason {
    assert_eq!(report.status, Status::Failed, "{report:#?}");
    let reason = report.reason.clone().expect("a failed run has a reason");
    let verification = journal.verify(&report.run_id).expect("verify the journal");
    assert_eq!(
        verification.problem, None,
        "the journal of a failed run must verify"
    );
    let records = journal.records(&report.run_id).expect("read records");
    match records.last().map(|r| &r.body) {
        Some(RecordBody::Outcome {
            status: Status::Failed,
            reason: Some(recorded),
            ..
        }) => assert_eq!(recorded, &reason, "the journal records the reason"),
        other => panic!("the last record is not a failed outcome: {other:?}"),
    }
    reason
}

/// Runs `agent` on `input` under `policy` in a fresh sandbox; it must fail.
fn failure_under(agent: &str, policy: &str, input: &Value) -> FailureReason {
    let sandbox = Sandbox::new();
    let report = sandbox.run(agent, policy, input);
    recorded_failure(&sandbox.journal(), &report)
}

/// Runs `agent` on `{}` under `policies/test-basic.toml`; it must fail.
fn failure(agent: &str) -> FailureReason {
    failure_under(agent, "test-basic.toml", &json!({}))
}

fn host_calls(records: &[Record]) -> Vec<(Request, &warden::decision::Decision)> {
    records
        .iter()
        .filter_map(|r| match &r.body {
            RecordBody::HostCall {
                request, decision, ..
            } => Some((
                postcard::from_bytes(request).expect("a journaled request decodes"),
                decision,
            )),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// WAT fixtures refused at load time.

/// Ambient authority: a function imported from a module Warden does not provide.
#[test]
fn import_from_unknown_module_is_refused_naming_it() {
    let error = refusal("unknown_module_import");
    assert!(
        matches!(&error, LoadError::ForbiddenImport { module, name, kind: "func", .. }
            if module == "env" && name == "getrandom"),
        "{error:?}"
    );
    assert!(error.to_string().contains("`env.getrandom`"), "{error}");
}

/// Ambient authority: WASI's fd_write would write outside the journal.
#[test]
fn wasi_import_is_refused_naming_it_with_advice() {
    let error = refusal("wasi_import");
    assert!(
        matches!(&error, LoadError::ForbiddenImport { module, name, kind: "func", hint }
            if module == "wasi_snapshot_preview1" && name == "fd_write" && hint.contains("WASI")),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(text.contains("`wasi_snapshot_preview1.fd_write`"), "{text}");
    assert!(text.contains("wasm32-unknown-unknown"), "{text}");
}

/// Shared state: a memory imported instead of defined (even from the `warden` module).
#[test]
fn memory_import_is_refused_naming_it() {
    let error = refusal("memory_import");
    assert!(
        matches!(&error, LoadError::ForbiddenImport { module, name, kind: "memory", .. }
            if module == "warden" && name == "memory"),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("`warden.memory` (memory)"),
        "{error}"
    );
}

/// Shared state: an imported table.
#[test]
fn table_import_is_refused_naming_it() {
    let error = refusal("table_import");
    assert!(
        matches!(&error, LoadError::ForbiddenImport { module, name, kind: "table", .. }
            if module == "warden" && name == "table"),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("`warden.table` (table)"),
        "{error}"
    );
}

/// The ABI: `warden.host_call` imported with the wrong type.
#[test]
fn host_call_import_with_wrong_signature_is_refused() {
    let error = refusal("bad_signature");
    assert!(
        matches!(&error, LoadError::ImportSignature { .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(text.contains("`warden.host_call`"), "{text}");
    assert!(text.contains("(i32, i32, i32) -> i64"), "{text}");
}

/// The ABI: no `warden_step` export.
#[test]
fn missing_step_export_is_refused_naming_it() {
    let error = refusal("missing_step");
    assert!(
        matches!(&error, LoadError::Export { expected, found }
            if expected.contains("warden_step") && found.contains("no export")),
        "{error:?}"
    );
    assert!(error.to_string().contains("`warden_step`"), "{error}");
}

/// The ABI: `warden_step` with a parameter.
#[test]
fn step_export_with_wrong_type_is_refused_naming_it() {
    let error = refusal("step_wrong_type");
    assert!(
        matches!(&error, LoadError::Export { expected, found }
            if expected.contains("() -> i32") && found.contains("warden_step")),
        "{error:?}"
    );
    assert!(error.to_string().contains("`warden_step`"), "{error}");
}

/// The ABI: memory defined but not exported, so no bytes can be exchanged.
#[test]
fn unexported_memory_is_refused_naming_it() {
    let error = refusal("no_memory_export");
    assert!(
        matches!(&error, LoadError::Export { expected, .. } if expected.contains("`memory`")),
        "{error:?}"
    );
    assert!(error.to_string().contains("`memory`"), "{error}");
}

/// Unenforced execution: a start function would run outside any step.
#[test]
fn start_function_is_refused_naming_it() {
    let error = refusal("start_function");
    assert!(matches!(error, LoadError::StartFunction(0)), "{error:?}");
    assert!(
        error.to_string().contains("start function (function 0)"),
        "{error}"
    );
}

/// Checkpoint completeness: `table.set` mutates state a checkpoint cannot capture.
#[test]
fn table_mutation_is_refused_naming_the_instruction() {
    let error = refusal("table_mutation");
    assert!(
        matches!(
            error,
            LoadError::UncheckpointableInstruction {
                instruction: "table.set",
                function: 1
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("`table.set`"), "{error}");
}

// ---------------------------------------------------------------------------------------
// WAT fixtures that load and then fail their run.

/// The memory budget at instantiation: 1000 initial pages against a 16 MiB budget.
#[test]
fn initial_memory_over_budget_fails_at_instantiation() {
    let reason = failure(&wat("initial_memory_over_budget"));
    assert!(
        matches!(
            reason,
            FailureReason::MemoryLimit {
                step: 0,
                requested_bytes: 65_536_000,
                limit_bytes: MEMORY_BUDGET
            }
        ),
        "{reason:?}"
    );
}

/// The decoder: sixteen bytes of garbage.
#[test]
fn garbage_request_is_a_malformed_request() {
    let reason = failure(&wat("garbage_request"));
    assert!(
        matches!(&reason, FailureReason::Fault {
            step: 1,
            fault: GuestFault::MalformedRequest { len: 16, error }
        } if !error.is_empty()),
        "{reason:?}"
    );
}

/// The decoder: a Tool request whose name claims more bytes than it has.
#[test]
fn truncated_request_is_a_malformed_request() {
    let reason = failure(&wat("truncated_request"));
    assert!(
        matches!(
            reason,
            FailureReason::Fault {
                step: 1,
                fault: GuestFault::MalformedRequest { len: 5, .. }
            }
        ),
        "{reason:?}"
    );
}

/// The decoder: zero bytes.
#[test]
fn zero_length_request_is_a_malformed_request() {
    let reason = failure(&wat("zero_length"));
    assert!(
        matches!(
            reason,
            FailureReason::Fault {
                step: 1,
                fault: GuestFault::MalformedRequest { len: 0, .. }
            }
        ),
        "{reason:?}"
    );
}

/// The request budget: a 2^31-1-byte request is refused before any memory is read.
#[test]
fn oversized_request_exceeds_the_request_budget() {
    let reason = failure(&wat("max_length"));
    assert!(
        matches!(
            reason,
            FailureReason::LimitExceeded {
                step: 1,
                limit: Limit::RequestBytes,
                value: 0x7fff_ffff,
                max: MAX_REQUEST_BYTES
            }
        ),
        "{reason:?}"
    );
}

/// Guest memory bounds: a request pointer far past the end of a one-page memory.
#[test]
fn request_outside_memory_is_out_of_bounds() {
    let reason = failure(&wat("out_of_bounds"));
    assert!(
        matches!(
            reason,
            FailureReason::Fault {
                step: 1,
                fault: GuestFault::OutOfBounds {
                    ptr: 0x7fff_0000,
                    len: 100,
                    memory_bytes: ONE_PAGE
                }
            }
        ),
        "{reason:?}"
    );
}

/// Integer overflow: `ptr + len` wraps past 2^32 and must not wrap into memory.
#[test]
fn wrapping_pointer_is_out_of_bounds() {
    let reason = failure(&wat("wrapping_pointer"));
    assert!(
        matches!(
            reason,
            FailureReason::Fault {
                step: 1,
                fault: GuestFault::OutOfBounds {
                    ptr: 0xffff_fff0,
                    len: 0x20,
                    memory_bytes: ONE_PAGE
                }
            }
        ),
        "{reason:?}"
    );
}

/// The ABI: an op that is neither call nor read.
#[test]
fn unknown_op_is_a_fault_naming_the_op() {
    let reason = failure(&wat("unknown_op"));
    assert!(
        matches!(
            reason,
            FailureReason::Fault {
                step: 1,
                fault: GuestFault::UnknownOp { op: 7 }
            }
        ),
        "{reason:?}"
    );
}

/// The response buffer: a read before any call.
#[test]
fn read_without_call_has_no_pending_response() {
    let reason = failure(&wat("read_without_call"));
    assert!(
        matches!(
            reason,
            FailureReason::Fault {
                step: 1,
                fault: GuestFault::NoPendingResponse
            }
        ),
        "{reason:?}"
    );
}

/// The response buffer: a response can be read once.
#[test]
fn second_read_of_a_response_has_no_pending_response() {
    let reason = failure(&wat("read_twice"));
    assert!(
        matches!(
            reason,
            FailureReason::Fault {
                step: 1,
                fault: GuestFault::NoPendingResponse
            }
        ),
        "{reason:?}"
    );
}

/// The response buffer: a 1-byte buffer for the input response.
#[test]
fn short_read_buffer_is_a_fault_naming_both_sizes() {
    let input = json!({});
    let needed = postcard::to_allocvec(&Response::Input(input.to_string()))
        .expect("encode")
        .len() as u32;
    let reason = failure_under(&wat("short_buffer"), "test-basic.toml", &input);
    assert!(
        matches!(
            reason,
            FailureReason::Fault {
                step: 1,
                fault: GuestFault::ShortBuffer { needed: n, given: 1 }
            } if n == needed
        ),
        "{reason:?}"
    );
}

/// The step protocol: `warden_step` returns 7.
#[test]
fn nonzero_step_result_is_a_bad_step_result() {
    let reason = failure(&wat("step_returns_nonzero"));
    assert!(
        matches!(reason, FailureReason::BadStepResult { step: 1, value: 7 }),
        "{reason:?}"
    );
}

/// Every fixture in `tests/hostile/` says what it attacks and is covered by a test here.
#[test]
fn every_wat_fixture_is_covered() {
    let mut on_disk = BTreeSet::new();
    for entry in std::fs::read_dir(guests::HOSTILE_WAT_DIR).expect("hostile dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "wat") {
            let text = std::fs::read_to_string(&path).expect("read fixture");
            assert!(
                text.starts_with(";; Attacks:"),
                "{} does not start with `;; Attacks:`",
                path.display()
            );
            let stem = path.file_stem().expect("stem").to_string_lossy();
            on_disk.insert(stem.into_owned());
        }
    }
    let covered: BTreeSet<String> = REFUSED_AT_LOAD
        .iter()
        .chain(FAIL_AT_RUN)
        .map(ToString::to_string)
        .collect();
    assert_eq!(on_disk, covered, "add a test for each new hostile fixture");
}

// ---------------------------------------------------------------------------------------
// Hostile Rust agents.

/// Fuel: an infinite loop inside a step.
#[test]
fn spin_exhausts_fuel() {
    let reason = failure(guests::SPIN);
    assert!(
        matches!(
            reason,
            FailureReason::FuelExhausted {
                step: 1,
                limit: FUEL_PER_STEP
            }
        ),
        "{reason:?}"
    );
}

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

/// The memory budget: growth one MiB at a time until `memory.grow` is refused.
#[test]
fn memory_bomb_hits_the_memory_budget() {
    let reason = failure(guests::MEMORY_BOMB);
    assert!(
        matches!(
            reason,
            FailureReason::MemoryLimit {
                step: 1,
                requested_bytes,
                limit_bytes: MEMORY_BUDGET
            } if requested_bytes > MEMORY_BUDGET
        ),
        "{reason:?}"
    );
}

/// The memory budget: one 1 GiB allocation.
#[test]
fn huge_allocation_hits_the_memory_budget() {
    // Fails while the fixture's `vec![1u8; 1 << 30]` is only used for its `len()`: LLVM
    // elides the allocation, and the agent ends denied `finish` in `start` instead.
    let reason = failure(guests::HUGE_ALLOC);
    assert!(
        matches!(
            reason,
            FailureReason::MemoryLimit {
                step: 1,
                requested_bytes,
                limit_bytes: MEMORY_BUDGET
            } if requested_bytes >= 1 << 30
        ),
        "{reason:?}"
    );
}

/// The host's stack: unbounded recursion traps as stack exhaustion, never a host crash.
#[test]
fn unbounded_recursion_traps_with_stack_exhaustion() {
    // Fails while the fixture keeps 256 bytes per frame on Rust's shadow stack: that
    // 1 MiB stack at the bottom of linear memory underflows before wasmtime's native
    // stack does, and the guest traps with "out of bounds memory access" instead.
    let reason = failure(guests::RECURSION);
    assert!(
        matches!(&reason, FailureReason::Trap { step: 1, trap } if trap.contains("stack")),
        "{reason:?}"
    );
}

/// Capabilities: a tool the policy never declared.
#[test]
fn undeclared_tool_is_denied() {
    let reason = failure(guests::UNDECLARED_TOOL);
    assert!(
        matches!(&reason, FailureReason::Denied {
            step: 1,
            rule: Rule::CapabilityUndeclared { kind: CapabilityKind::Tool, name }
        } if name == "wire_transfer"),
        "{reason:?}"
    );
}

/// The state machine: a second transition in one step.
#[test]
fn second_transition_in_a_step_is_denied() {
    let reason = failure(guests::TRANSITION_FLOOD);
    assert!(
        matches!(&reason, FailureReason::Denied {
            step: 1,
            rule: Rule::OneTransitionPerStep { from, to }
        } if from == "working" && to == "working"),
        "{reason:?}"
    );
}

/// The host-call budget: a log flood.
#[test]
fn call_flood_exceeds_the_host_call_budget() {
    let reason = failure(guests::CALL_FLOOD);
    assert!(
        matches!(
            reason,
            FailureReason::LimitExceeded {
                step: 1,
                limit: Limit::HostCalls,
                value,
                max: MAX_HOST_CALLS
            } if value == MAX_HOST_CALLS + 1
        ),
        "{reason:?}"
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
        matches!(&reason, FailureReason::Trap { step: 1, trap } if trap.contains("unreachable")),
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
                RecordBody::Outcome {
                    status: Status::Failed,
                    ..
                },
            ]
        ),
        "the failing step's records: {tail:#?}"
    );
    assert_eq!(report.host_calls, 3);
    let ledger = std::fs::read_to_string(sandbox.path("ledger.jsonl")).expect("ledger");
    assert_eq!(ledger.lines().count(), 1, "the effect ran once: {ledger}");
    assert!(
        ledger.contains(&format!("{}/2", report.run_id)),
        "keyed by run and call: {ledger}"
    );
}

/// The panic hook: a Rust panic becomes the agent's own abort, with the message.
#[test]
fn panic_is_recorded_as_an_abort_with_its_message() {
    let reason = failure_under(guests::PANICKER, "test-basic.toml", &json!({"items": []}));
    assert!(
        matches!(&reason, FailureReason::AgentAborted { step: 1, reason }
            if reason.contains("panicked") && reason.contains("index out of bounds")),
        "{reason:?}"
    );
}

/// Confidence gates: citing an inference the host never computed.
#[test]
fn claimed_confidence_without_an_inference_is_denied() {
    let reason = failure(guests::CONFIDENCE_CLAIM);
    assert!(
        matches!(&reason, FailureReason::Denied {
            step: 1,
            rule: Rule::EvidenceUnknown { to, inference: InferenceId(9_999) }
        } if to == "approved"),
        "{reason:?}"
    );
}

// ---------------------------------------------------------------------------------------
// The gate, from a well-behaved agent's side.

/// A confident inference (sigmoid(5) = 0.993 >= 0.9) meets the gate on `approved`.
#[test]
fn gate_met_approves_autonomously() {
    let sandbox = Sandbox::new();
    let report = sandbox.run(guests::GATED, "test-basic.toml", &json!({"x": 5}));
    assert_eq!(report.status, Status::Completed, "{report:#?}");
    assert_eq!(report.state, "approved");
    assert_eq!(report.path, ["start", "approved"]);
    assert_eq!(report.output.as_deref(), Some("\"approved\""));
    let journal = sandbox.journal();
    let records = journal.records(&report.run_id).expect("records");
    assert!(
        host_calls(&records)
            .iter()
            .any(|(_, d)| d.verdict == Verdict::Allow
                && matches!(&d.rule, Rule::GateMet { to, model, threshold, confidence, .. }
                if to == "approved" && model == "risk" && *threshold == 0.9 && *confidence > 0.99)),
        "no GateMet decision in {records:#?}"
    );
    assert_eq!(
        journal.verify(&report.run_id).expect("verify").problem,
        None
    );
}

/// An unsure inference (sigmoid(0.5) = 0.62 < 0.9) sends the run to `review` for a human.
#[test]
fn gate_not_met_escalates_to_review() {
    let sandbox = Sandbox::new();
    let report = sandbox.run(guests::GATED, "test-basic.toml", &json!({"x": 0.5}));
    assert_eq!(report.status, Status::AwaitingReview, "{report:#?}");
    assert_eq!(report.state, "review");
    assert_eq!(report.path, ["start", "review"]);
    assert_eq!(report.output, None);
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
            warden::decision::Decision {
                verdict: Verdict::Escalate,
                rule: Rule::GateNotMet {
                    model,
                    inference: Some(_),
                    confidence: Some(confidence),
                    threshold,
                    otherwise,
                    ..
                },
            },
        ) if to == "approved" && model == "risk" && otherwise == "review"
            && *threshold == 0.9 && (0.6..0.65).contains(confidence)),
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
            features: json!({"x": 0.5}).to_string(),
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
    let report = sandbox.run(&agent.display().to_string(), "test-basic.toml", &json!({}));
    assert_eq!(
        (report.status, report.state.as_str()),
        (Status::AwaitingReview, "review"),
        "{report:#?}"
    );
    assert_eq!(report.output, None);
    let journal = sandbox.journal();
    assert_eq!(
        journal.verify(&report.run_id).expect("verify").problem,
        None
    );
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
        .chain(FAIL_AT_RUN)
        .map(|name| wat(name))
        .chain(HOSTILE_AGENTS.iter().map(ToString::to_string));
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
    assert_eq!(failed, FAIL_AT_RUN.len() + HOSTILE_AGENTS.len());
    let input = json!({"after": "all of them"});
    let report = sandbox.run_in(&journal, guests::ECHO, "test-basic.toml", &input);
    assert_eq!(report.status, Status::Completed, "{report:#?}");
    assert_eq!(report.output.as_deref(), Some(input.to_string().as_str()));
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
    let policy = support::policy_path("test-basic.toml");
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
        assert_eq!(run.status, Status::Failed);
        assert_eq!(journal.verify(&run.run_id).expect("verify").problem, None);
    }
}
