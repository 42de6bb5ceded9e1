//! Shared by `tests/hostile.rs` and `tests/hostile_agents.rs`: the budgets of
//! `policies/test-basic.toml` the hostile guests run into, running a guest that must fail
//! and reading its recorded failure back from the journal, and [`every_row`], which runs a
//! table of cases and names every row that fails.

use std::any::Any;
use std::path::PathBuf;

use serde_json::{Value, json};
use warden::{Agent, Decision, FailureReason, Journal, LoadError, Record, RecordBody};
use warden::{RunReport, Status};
use warden_guest::wire::Request;
use warden_test_guests as guests;

use crate::support::Sandbox;

/// `budgets.memory_bytes` of `policies/test-basic.toml`.
pub const MEMORY_BUDGET: u64 = 16_777_216;
/// `budgets.fuel_per_step` of `policies/test-basic.toml`.
pub const FUEL_PER_STEP: u64 = 200_000_000;
/// `budgets.max_host_calls` of `policies/test-basic.toml`.
pub const MAX_HOST_CALLS: u64 = 500;
/// `budgets.max_request_bytes` of `policies/test-basic.toml`.
pub const MAX_REQUEST_BYTES: u64 = 65_536;
/// One 64 KiB WebAssembly page: the memory of every WAT fixture that runs.
pub const ONE_PAGE: u64 = 65_536;

/// The path of the WAT fixture `tests/hostile/{name}.wat`.
pub fn wat(name: &str) -> String {
    PathBuf::from(guests::HOSTILE_WAT_DIR)
        .join(format!("{name}.wat"))
        .display()
        .to_string()
}

/// Loads an agent (a module path or WAT file).
pub fn load(path: &str) -> Result<Agent, LoadError> {
    Agent::from_file(path.as_ref())
}

/// Asserts `report` is a failure whose reason is the journal's recorded outcome, in a
/// journal whose hash chain verifies; returns the reason.
pub fn recorded_failure(journal: &Journal, report: &RunReport) -> FailureReason {
    assert_eq!(report.outcome.status, Status::Failed, "{report:#?}");
    let reason = report
        .outcome
        .reason
        .clone()
        .expect("a failed run has a reason");
    let verification = journal.verify(&report.run_id).expect("verify the journal");
    assert_eq!(
        verification.problem, None,
        "the journal of a failed run must verify"
    );
    let records = journal.records(&report.run_id).expect("read records");
    match records.last().map(|r| &r.body) {
        Some(RecordBody::Outcome(outcome)) if outcome.status == Status::Failed => assert_eq!(
            outcome.reason.as_ref(),
            Some(&reason),
            "the journal records the reason"
        ),
        other => panic!("the last record is not a failed outcome: {other:?}"),
    }
    reason
}

/// Runs `agent` on `input` under `policy` in a fresh sandbox; it must fail.
pub fn failure_under(agent: &str, policy: &str, input: &Value) -> FailureReason {
    let sandbox = Sandbox::new();
    let report = sandbox.run(agent, policy, input);
    recorded_failure(&sandbox.journal(), &report)
}

/// Runs `agent` on `{}` under `policies/test-basic.toml`; it must fail.
pub fn failure(agent: &str) -> FailureReason {
    failure_under(agent, "test-basic.toml", &json!({}))
}

/// The host calls among `records`, each request decoded, with its decision.
pub fn host_calls(records: &[Record]) -> Vec<(Request, &Decision)> {
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

/// Runs `check` on every row of a table, one after another, each on a thread named after
/// its row (so a panic fails only its row, and says which), then fails once, naming every
/// row that failed and why.
pub fn every_row<R: Sync>(
    rows: &[R],
    name: impl Fn(&R) -> String,
    check: impl Fn(&R) -> Result<(), String> + Sync,
) {
    let check = &check;
    let failed: Vec<String> = std::thread::scope(|scope| {
        rows.iter()
            .filter_map(|row| {
                let name = name(row);
                let outcome = std::thread::Builder::new()
                    .name(name.clone())
                    .spawn_scoped(scope, move || check(row))
                    .expect("spawn the row's thread")
                    .join();
                match outcome {
                    Ok(Ok(())) => None,
                    Ok(Err(why)) => Some(format!("{name}: {why}")),
                    Err(panic) => Some(format!("{name}: panicked: {}", panic_text(&*panic))),
                }
            })
            .collect()
    });
    assert!(
        failed.is_empty(),
        "{} of {} rows failed:\n{}",
        failed.len(),
        rows.len(),
        failed.join("\n")
    );
}

/// The message of a panic.
fn panic_text(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(ToString::to_string))
        .unwrap_or_else(|| "(no message)".into())
}
