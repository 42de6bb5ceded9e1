//! The hostile C fixtures (`tests/guests/c/hostile/NAME.c`, built with the C SDK): each
//! ends exactly as its twin of the same name, judged by the twin's own row, so a new
//! C fixture cannot pass on a weaker check than the fixture it copies. Its twin is a WAT
//! fixture of `tests/hostile.rs` (refused at load naming what is wrong, or failed at run
//! with its recorded reason) or a hostile Rust agent of `tests/hostile_agents.rs` (failed
//! at run on the row's input). What the C toolchain does differently (the stack in linear
//! memory, the SDK's own allocator, no panics) changes no verdict of the host.

use std::collections::BTreeSet;

use serde_json::Value;
use warden_test_guests::{self as guests, c_guest};

use crate::hostile::{FAIL_AT_RUN, Fails, REFUSED_AT_LOAD, Refused};
use crate::hostile_agents::{FailsWith, failing_agent};
use crate::support::hostile::{every_row, failure, failure_under, load};

/// The row a C fixture is judged by.
enum Twin {
    /// A WAT fixture Warden refuses at load time.
    Refused(&'static Refused),
    /// A WAT fixture that loads and then fails its run on `{}`.
    Fails(&'static Fails),
    /// A hostile Rust agent: its input, and the reason it must fail with.
    Rust(&'static str, FailsWith),
}

/// The twin of the C fixture `name`: the row of the WAT fixture or Rust agent of that
/// name, or why there is none (no row, or rows in two tables).
fn twin(name: &str) -> Result<Twin, String> {
    let mut found = Vec::new();
    if let Some(row) = REFUSED_AT_LOAD.iter().find(|row| row.fixture == name) {
        found.push(("tests/hostile.rs (REFUSED_AT_LOAD)", Twin::Refused(row)));
    }
    if let Some(row) = FAIL_AT_RUN.iter().find(|row| row.fixture == name) {
        found.push(("tests/hostile.rs (FAIL_AT_RUN)", Twin::Fails(row)));
    }
    if let Some((input, is)) = failing_agent(name) {
        found.push((
            "tests/hostile_agents.rs (FAILING_AGENTS)",
            Twin::Rust(input, is),
        ));
    }
    match found.len() {
        1 => Ok(found.remove(0).1),
        0 => Err(format!(
            "no twin: name it after a row of tests/hostile.rs or tests/hostile_agents.rs \
             (`tests/hostile/{name}.wat` or `tests/guests/agents/examples/{name}.rs`)"
        )),
        _ => {
            let tables: Vec<&str> = found.iter().map(|(table, _)| *table).collect();
            Err(format!(
                "a twin in more than one table: {}",
                tables.join(", ")
            ))
        }
    }
}

/// The names of the C fixtures in `tests/guests/c/hostile/`, sorted.
fn c_fixtures() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(guests::HOSTILE_C_DIR)
        .unwrap_or_else(|e| panic!("{}: {e}", guests::HOSTILE_C_DIR))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "c"))
        .map(|path| {
            let stem = path.file_stem().expect("a C file has a stem");
            stem.to_string_lossy().into_owned()
        })
        .collect();
    names.sort();
    names
}

/// Whether the C fixture `name` ends as its twin's row says.
fn ends_as_its_twin(name: &str) -> Result<(), String> {
    let module = c_guest(&format!("hostile/{name}"));
    match twin(name)? {
        Twin::Refused(row) => match load(module) {
            Ok(_) => Err(format!("loaded, but its twin {name}.wat is refused")),
            Err(error) => row.check(&error),
        },
        Twin::Fails(row) => {
            if let Err(error) = load(module) {
                return Err(format!(
                    "refused at load ({error}), but its twin {name}.wat loads and fails its run"
                ));
            }
            let reason = failure(module);
            if row.expects(&reason) {
                Ok(())
            } else {
                Err(format!(
                    "failed with a reason its twin {name}.wat's row rejects: {reason:?}"
                ))
            }
        }
        Twin::Rust(input, is) => {
            let input: Value = serde_json::from_str(input).expect("the row's input is JSON");
            let reason = failure_under(module, "test-basic.toml", &input);
            if is(&reason) {
                Ok(())
            } else {
                Err(format!(
                    "failed with a reason its twin {name}.rs's row rejects: {reason:?}"
                ))
            }
        }
    }
}

/// Every hostile C fixture ends as its twin does: refused at load with the same typed
/// `LoadError` naming the same thing, or failed at run with the same recorded reason in a
/// journal that verifies.
#[test]
fn c_fixtures_end_as_their_twins() {
    let names = c_fixtures();
    assert!(
        !names.is_empty(),
        "no C fixtures in {}",
        guests::HOSTILE_C_DIR
    );
    every_row(&names, Clone::clone, |name| ends_as_its_twin(name));
}

/// Every C fixture says what it attacks, has exactly one twin, and was built; every
/// hostile Rust agent whose attack C can express has a C twin.
#[test]
fn every_c_fixture_is_covered() {
    let mut problems = Vec::new();
    let names = c_fixtures();
    for name in &names {
        let path = format!("{}/{name}.c", guests::HOSTILE_C_DIR);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        if !text.starts_with("// Attacks:") {
            problems.push(format!("{path} does not start with `// Attacks:`"));
        }
        if let Err(why) = twin(name) {
            problems.push(format!("{path}: {why}"));
        }
        let module = c_guest(&format!("hostile/{name}"));
        if !std::path::Path::new(module).exists() {
            problems.push(format!("{path} was not built: {module} is missing"));
        }
    }
    // The panic hook is Rust's: a C agent aborts with `wd_fail`, which the claims
    // example's invalid claim covers (tests/c_guest.rs).
    let without_twin: BTreeSet<&str> = [
        "spin",
        "memory_bomb",
        "huge_alloc",
        "recursion",
        "undeclared_tool",
        "transition_flood",
        "call_flood",
        "confidence_claim",
    ]
    .into_iter()
    .filter(|rust| !names.iter().any(|name| name == rust))
    .collect();
    if !without_twin.is_empty() {
        problems.push(format!(
            "hostile Rust agents without a C twin: {without_twin:?}"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
