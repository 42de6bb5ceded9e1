//! Hostile guests, part one: every WAT fixture in `tests/hostile/` ends exactly as its
//! row below says. Each fixture is a row of one of two tables: refused at load time with a
//! typed `LoadError` that names what is wrong, or loaded and then failed with a typed
//! `FailureReason` recorded in an intact journal (invariant 6: failure is data). Each row's
//! comment says what the fixture attacks.
//!
//! The hostile Rust agents, the gate, and the host surviving them all (invariant 7:
//! bounded) are in `tests/hostile_agents.rs`.

use std::collections::BTreeSet;

use serde_json::json;
use warden::{FailureReason, GuestFault, Limit, LoadError};
use warden_guest::wire::Response;
use warden_test_guests as guests;

use crate::support::hostile::{
    MAX_REQUEST_BYTES, MEMORY_BUDGET, ONE_PAGE, every_row, failure, load, wat,
};
use crate::support::{Sandbox, policy_path};

/// A WAT fixture Warden must refuse at load time.
pub struct Refused {
    /// `tests/hostile/{fixture}.wat`.
    pub fixture: &'static str,
    /// The refusal it must get.
    is: fn(&LoadError) -> bool,
    /// What the refusal's message must name.
    says: &'static [&'static str],
}

/// The WAT fixtures Warden refuses at load time.
pub const REFUSED_AT_LOAD: &[Refused] = &[
    // Ambient authority: a function imported from a module Warden does not provide.
    Refused {
        fixture: "unknown_module_import",
        is: |e| {
            matches!(e, LoadError::ForbiddenImport { module, name, kind: "func", .. }
                if module == "env" && name == "getrandom")
        },
        says: &["`env.getrandom`"],
    },
    // Ambient authority: WASI's fd_write would write outside the journal (with advice).
    Refused {
        fixture: "wasi_import",
        is: |e| {
            matches!(e, LoadError::ForbiddenImport { module, name, kind: "func", hint }
                if module == "wasi_snapshot_preview1" && name == "fd_write" && hint.contains("WASI"))
        },
        says: &[
            "`wasi_snapshot_preview1.fd_write`",
            "wasm32-unknown-unknown",
        ],
    },
    // Shared state: a memory imported instead of defined (even from the `warden` module).
    Refused {
        fixture: "memory_import",
        is: |e| {
            matches!(e, LoadError::ForbiddenImport { module, name, kind: "memory", .. }
                if module == "warden" && name == "memory")
        },
        says: &["`warden.memory` (memory)"],
    },
    // Shared state: an imported table.
    Refused {
        fixture: "table_import",
        is: |e| {
            matches!(e, LoadError::ForbiddenImport { module, name, kind: "table", .. }
                if module == "warden" && name == "table")
        },
        says: &["`warden.table` (table)"],
    },
    // Checkpoint completeness: a mutable funcref global, which no checkpoint can hold.
    Refused {
        fixture: "mutable_funcref_global",
        is: |e| matches!(e, LoadError::UncheckpointableGlobal { global: 0 }),
        says: &["mutable reference global (global 0)"],
    },
    // The ABI: `warden.host_call` imported with the wrong type.
    Refused {
        fixture: "bad_signature",
        is: |e| matches!(e, LoadError::ImportSignature { .. }),
        says: &["`warden.host_call`", "(i32, i32, i32) -> i64"],
    },
    // The ABI: no `warden_step` export.
    Refused {
        fixture: "missing_step",
        is: |e| {
            matches!(e, LoadError::Export { expected, found }
                if expected.contains("warden_step") && found.contains("no export"))
        },
        says: &["`warden_step`"],
    },
    // The ABI: `warden_step` with a parameter.
    Refused {
        fixture: "step_wrong_type",
        is: |e| {
            matches!(e, LoadError::Export { expected, found }
                if expected.contains("() -> i32") && found.contains("warden_step"))
        },
        says: &["`warden_step`"],
    },
    // The ABI: memory defined but not exported, so no bytes can be exchanged.
    Refused {
        fixture: "no_memory_export",
        is: |e| matches!(e, LoadError::Export { expected, .. } if expected.contains("`memory`")),
        says: &["`memory`"],
    },
    // Unenforced execution: a start function would run outside any step.
    Refused {
        fixture: "start_function",
        is: |e| matches!(e, LoadError::StartFunction(0)),
        says: &["start function (function 0)"],
    },
    // Checkpoint completeness: `table.set` mutates state a checkpoint cannot capture.
    Refused {
        fixture: "table_mutation",
        is: |e| {
            matches!(
                e,
                LoadError::UncheckpointableInstruction {
                    instruction: "table.set",
                    function: 1
                }
            )
        },
        says: &["`table.set`"],
    },
];

/// A WAT fixture that loads and then fails its run (on `{}`, under
/// `policies/test-basic.toml`).
pub struct Fails {
    /// `tests/hostile/{fixture}.wat`.
    pub fixture: &'static str,
    /// The recorded reason it must fail with.
    is: fn(&FailureReason) -> bool,
}

/// The WAT fixtures that load and then fail their run.
pub const FAIL_AT_RUN: &[Fails] = &[
    // The memory budget at instantiation: 1000 initial pages against a 16 MiB budget.
    Fails {
        fixture: "initial_memory_over_budget",
        is: |r| {
            matches!(
                r,
                FailureReason::MemoryLimit {
                    step: 0,
                    requested_bytes: 65_536_000,
                    limit_bytes: MEMORY_BUDGET
                }
            )
        },
    },
    // Instantiation the module makes fail (a data segment out of bounds, a table over the
    // host's limit, two tables): its doing, so recorded, never taken for the machine's.
    Fails {
        fixture: "data_segment_out_of_bounds",
        is: |r| instantiation(r, "out of bounds memory access"),
    },
    Fails {
        fixture: "huge_table",
        is: |r| {
            instantiation(
                r,
                "table minimum size of 2000000 elements exceeds table limits",
            )
        },
    },
    Fails {
        fixture: "two_tables",
        is: |r| instantiation(r, "table count too high"),
    },
    // The decoder: sixteen bytes of garbage.
    Fails {
        fixture: "garbage_request",
        is: |r| {
            matches!(r, FailureReason::Fault {
                step: 1,
                fault: GuestFault::MalformedRequest { len: 16, error }
            } if !error.is_empty())
        },
    },
    // The decoder: a Tool request whose name claims more bytes than it has.
    Fails {
        fixture: "truncated_request",
        is: |r| malformed_request(r, 5),
    },
    // The decoder: zero bytes.
    Fails {
        fixture: "zero_length",
        is: |r| malformed_request(r, 0),
    },
    // The request budget: a 2^31-1-byte request is refused before any memory is read.
    Fails {
        fixture: "max_length",
        is: |r| {
            matches!(
                r,
                FailureReason::LimitExceeded {
                    step: 1,
                    limit: Limit::RequestBytes,
                    value: 0x7fff_ffff,
                    max: MAX_REQUEST_BYTES
                }
            )
        },
    },
    // Guest memory bounds: a request pointer far past the end of a one-page memory.
    Fails {
        fixture: "out_of_bounds",
        is: |r| out_of_bounds(r, 0x7fff_0000, 100),
    },
    // Integer overflow: `ptr + len` wraps past 2^32 and must not wrap into memory.
    Fails {
        fixture: "wrapping_pointer",
        is: |r| out_of_bounds(r, 0xffff_fff0, 0x20),
    },
    // The ABI: an op that is neither call nor read.
    Fails {
        fixture: "unknown_op",
        is: |r| fault(r, &GuestFault::UnknownOp { op: 7 }),
    },
    // The response buffer: a read before any call.
    Fails {
        fixture: "read_without_call",
        is: |r| fault(r, &GuestFault::NoPendingResponse),
    },
    // The response buffer: a response can be read once.
    Fails {
        fixture: "read_twice",
        is: |r| fault(r, &GuestFault::NoPendingResponse),
    },
    // The response buffer: a 1-byte buffer for the input response (naming both sizes).
    Fails {
        fixture: "short_buffer",
        is: |r| {
            matches!(
                r,
                FailureReason::Fault {
                    step: 1,
                    fault: GuestFault::ShortBuffer { needed, given: 1 }
                } if *needed == input_response_len()
            )
        },
    },
    // The step protocol: `warden_step` returns 7.
    Fails {
        fixture: "step_returns_nonzero",
        is: |r| matches!(r, FailureReason::BadStepResult { step: 1, value: 7 }),
    },
];

impl Refused {
    /// Whether `error` is this fixture's refusal, naming what it must: shared with the
    /// fixture's C twin (`tests/c_guest/hostile.rs`).
    pub fn check(&self, error: &LoadError) -> Result<(), String> {
        if !(self.is)(error) {
            return Err(format!("refused with the wrong error: {error:?}"));
        }
        let text = error.to_string();
        match self.says.iter().find(|says| !text.contains(*says)) {
            Some(missing) => Err(format!("the refusal does not name {missing:?}: {text}")),
            None => Ok(()),
        }
    }
}

impl Fails {
    /// Whether `reason` is the one this fixture must fail with: shared with the fixture's
    /// C twin (`tests/c_guest/hostile.rs`).
    pub fn expects(&self, reason: &FailureReason) -> bool {
        (self.is)(reason)
    }
}

/// A failure to instantiate whose message says `says`.
fn instantiation(reason: &FailureReason, says: &str) -> bool {
    matches!(reason, FailureReason::Instantiation { message } if message.contains(says))
}

/// A fault in step 1 that is exactly `expected`.
fn fault(reason: &FailureReason, expected: &GuestFault) -> bool {
    matches!(reason, FailureReason::Fault { step: 1, fault } if fault == expected)
}

/// A malformed request of `len` bytes in step 1.
fn malformed_request(reason: &FailureReason, len: u32) -> bool {
    matches!(reason, FailureReason::Fault {
        step: 1,
        fault: GuestFault::MalformedRequest { len: l, .. }
    } if *l == len)
}

/// A request at `ptr`, `len` bytes long, outside the one-page memory in step 1.
fn out_of_bounds(reason: &FailureReason, ptr: u32, len: u32) -> bool {
    fault(
        reason,
        &GuestFault::OutOfBounds {
            ptr,
            len,
            memory_bytes: ONE_PAGE,
        },
    )
}

/// The encoded size of the response to `Input` when the input is `{}`.
fn input_response_len() -> u32 {
    postcard::to_allocvec(&Response::Input(json!({}).to_string()))
        .expect("encode")
        .len() as u32
}

/// Every fixture of [`REFUSED_AT_LOAD`] is refused with its `LoadError`, whose message
/// names what is wrong.
#[test]
fn wat_fixtures_are_refused_at_load_naming_what_is_wrong() {
    every_row(
        REFUSED_AT_LOAD,
        |row| format!("{}.wat", row.fixture),
        |row| {
            let error = match load(&wat(row.fixture)) {
                Ok(_) => return Err("loaded, but Warden must refuse it".into()),
                Err(error) => error,
            };
            row.check(&error)
        },
    );
}

/// Every fixture of [`FAIL_AT_RUN`] loads, then fails its run with its reason, recorded
/// as the run's outcome in a journal that verifies.
#[test]
fn wat_fixtures_fail_their_run_with_a_recorded_reason() {
    every_row(
        FAIL_AT_RUN,
        |row| format!("{}.wat", row.fixture),
        |row| {
            let reason = failure(&wat(row.fixture));
            if (row.is)(&reason) {
                Ok(())
            } else {
                Err(format!("failed with the wrong reason: {reason:?}"))
            }
        },
    );
}

/// Every fixture in `tests/hostile/` says what it attacks and is a row of one table here,
/// once.
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
    let rows: Vec<&str> = REFUSED_AT_LOAD
        .iter()
        .map(|row| row.fixture)
        .chain(FAIL_AT_RUN.iter().map(|row| row.fixture))
        .collect();
    let covered: BTreeSet<String> = rows.iter().map(ToString::to_string).collect();
    assert_eq!(
        covered.len(),
        rows.len(),
        "a fixture has two rows: {rows:?}"
    );
    assert_eq!(on_disk, covered, "add a row for each new hostile fixture");
}

/// The machine refusing an agent its memory (here an address-space limit below the
/// reservation every instance makes) is not the run's outcome: `warden run` exits 1
/// saying what the machine refused, records nothing, and the same run succeeds once the
/// memory is there. (Recorded, it would be a failure blamed on the application.)
#[test]
fn a_machine_out_of_memory_is_a_host_error_and_records_nothing() {
    let sandbox = Sandbox::new();
    let input = sandbox.input("in.json", &json!({"steps": 1, "amount": 1}));
    let policy = policy_path("test-basic.toml");
    let bindings = sandbox.bindings();
    let args = [
        "run",
        guests::COUNTER,
        "--policy",
        policy.to_str().expect("utf-8"),
        "--bindings",
        bindings.to_str().expect("utf-8"),
        "--input",
        input.to_str().expect("utf-8"),
    ];
    let limited = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 2000000 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_warden"))
        .arg("--db")
        .arg(sandbox.db())
        .args(args)
        .current_dir(sandbox.path(""))
        .output()
        .expect("run warden under ulimit -v");
    let stderr = String::from_utf8_lossy(&limited.stderr);
    assert_eq!(limited.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("could not give the agent its memory")
            && stderr.contains("nothing was recorded"),
        "{stderr}"
    );
    let (code, runs) = sandbox.warden_json(&["runs"]);
    assert_eq!((code, runs), (0, json!([])), "no run was recorded");
    let (code, report) = sandbox.warden_json(&args);
    assert_eq!(
        (code, &report["status"]),
        (0, &json!("completed")),
        "{report:#}"
    );
}
