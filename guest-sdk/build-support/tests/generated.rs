//! The generated enum compiles without a warning and behaves as documented, and a state
//! name the policy does not declare fails to compile, naming it. Each case is one small
//! program compiled with `rustc` (the generated code needs nothing but std), so no crate
//! is built.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot set itself up should stop at once, saying where"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const POLICY: &str = r#"
[policy]
name = "loan \"underwriting\" {v1}"
version = "1"
initial = "intake"

[states.intake]
transitions = ["bureau-check", "declined"]

[states.bureau-check]
transitions = ["scoring", "manual_review", "declined"]

[states.scoring]
transitions = ["approved", "declined", "manual_review"]

[states.manual_review]
review = true
transitions = ["approved", "declined"]

[states.approved]
terminal = true

[states.declined]
terminal = true
"#;

/// A directory of its own for the case `name`, with the generated `states.rs` in it.
fn case(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("warden-guest-build")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let source = warden_guest_build::render_states(POLICY, Path::new("policy.toml")).unwrap();
    std::fs::write(dir.join("states.rs"), source).unwrap();
    dir
}

/// Compiles `main` (which includes `states.rs`) in `dir`, warnings denied.
fn rustc(dir: &Path, main: &str) -> Output {
    std::fs::write(dir.join("main.rs"), main).unwrap();
    Command::new("rustc")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "--edition",
            "2024",
            "-D",
            "warnings",
            "--crate-name",
            "agent",
        ])
        .arg(dir.join("main.rs"))
        .arg("-o")
        .arg(dir.join("agent"))
        .output()
        .expect("run rustc")
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_enum_compiles_without_warnings_and_converts_both_ways() {
    let dir = case("behaves");
    let main = r#"
mod states {
    include!("states.rs");
}
use states::{State, UnknownState};

fn main() {
    assert_eq!(State::INITIAL, State::Intake);
    assert_eq!(
        State::ALL,
        [State::Intake, State::BureauCheck, State::Scoring, State::ManualReview, State::Approved, State::Declined]
    );
    assert_eq!(State::BureauCheck.as_str(), "bureau-check");
    assert_eq!(State::ManualReview.to_string(), "manual_review");
    assert_eq!("scoring".parse::<State>(), Ok(State::Scoring));
    assert_eq!(State::try_from("approved"), Ok(State::Approved));
    assert_eq!(State::from_name("Approved"), None);
    let unknown: UnknownState = "aproved".parse::<State>().unwrap_err();
    assert_eq!(
        unknown.to_string(),
        "state \"aproved\" is not a state of policy `loan \"underwriting\" {v1}` as this agent was built with it"
    );
    let terminal: Vec<State> = State::ALL.into_iter().filter(|s| s.is_terminal()).collect();
    assert_eq!(terminal, [State::Approved, State::Declined]);
    let review: Vec<State> = State::ALL.into_iter().filter(|s| s.is_review()).collect();
    assert_eq!(review, [State::ManualReview]);
    assert!(State::Approved == "approved" && "approved" == State::Approved);
    assert!(State::Declined == *"declined" && String::from("declined") == State::Declined);
    let name: &str = State::Scoring.as_ref();
    assert_eq!(name, "scoring");
    println!("ok");
}
"#;
    let output = rustc(&dir, main);
    assert!(output.status.success(), "{}", text(&output));
    let run = Command::new(dir.join("agent")).output().expect("run it");
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!(String::from_utf8_lossy(&run.stdout), "ok\n");
}

#[test]
fn a_misspelt_state_fails_to_compile_naming_it() {
    let dir = case("misspelt");
    let main = r#"
mod states {
    include!("states.rs");
}
use states::State;

fn main() {
    println!("{}", State::Intkae);
}
"#;
    let output = rustc(&dir, main);
    assert!(!output.status.success(), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no variant or associated item named `Intkae` found for enum `State`"),
        "{stderr}"
    );
}

#[test]
fn a_match_that_forgets_a_state_fails_to_compile_naming_it() {
    let dir = case("forgotten");
    let main = r#"
mod states {
    include!("states.rs");
}
use states::State;

fn main() {
    let next = match State::INITIAL {
        State::Intake => State::BureauCheck,
        State::BureauCheck => State::Scoring,
        State::Scoring => State::Approved,
        State::Approved | State::Declined => State::INITIAL,
    };
    println!("{next}");
}
"#;
    let output = rustc(&dir, main);
    assert!(!output.status.success(), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("pattern `State::ManualReview` not covered"),
        "{stderr}"
    );
}
