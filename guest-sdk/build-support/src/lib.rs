//! Typed states for a Warden agent: generates, from its policy, a `State` enum with one
//! variant per state, so that a state name the policy does not declare fails to compile.
//!
//! A build-dependency of the agent crate, called from its `build.rs`:
//!
//! ```ignore
//! // build.rs (as `warden new` writes it)
//! fn main() {
//!     warden_guest_build::states("policy.toml");
//! }
//! ```
//!
//! ```ignore
//! // src/lib.rs
//! mod states {
//!     include!(concat!(env!("OUT_DIR"), "/states.rs"));
//! }
//! use states::State;
//!
//! match warden.state_as::<State>()? {
//!     State::Intake => warden.transition(State::CoverageCheck).map(|_| ()),
//!     // ... every state: a `match` that misses one does not compile
//! }
//! ```
//!
//! The generated `states.rs` declares:
//!
//! - `enum State`, one variant per `[states.<name>]` of the policy, in the file's order,
//!   named in UpperCamelCase (`bureau_check` and `bureau-check` are `BureauCheck`);
//! - `State::ALL` (every state), `State::INITIAL` (`[policy] initial`), and the methods
//!   `as_str` (the name in the policy), `is_terminal`, `is_review` and `from_name`;
//! - `AsRef<str>` and `Display` (the name), `FromStr` and `TryFrom<&str>` (with the error
//!   `UnknownState`, naming the state and the policy), and `==` with `str`, `&str` and
//!   `String` both ways.
//!
//! The SDK takes the enum wherever it takes a state name: `Warden::transition` and
//! `transition_citing` take any `AsRef<str>`, `Warden::state_as::<State>()` reads the
//! current state into it, and the stub host's `StubHost::new`, `escalate` and
//! `review_state` take it too. On the wire a state is still its name: a module built
//! with the enum sends exactly the requests one built with strings sends.
//!
//! Only what the enum needs is read (`[policy] name` and `initial`, each state's name and
//! its `terminal` and `review` flags); the rest of the policy is Warden's to check when
//! it loads it (`warden check`). A state whose name cannot be a variant (it has a
//! character other than letters, digits, `_` and `-`, would not start with a letter, or
//! would be `Self`, `ALL` or `INITIAL`), two states that would be the same variant
//! (`bureau_check` and `bureau-check`, `Approved` and `approved`), an `initial` that is not
//! declared: each fails the build with an error naming the policy file, the line and the
//! state.
//!
//! The generated code depends on the policy's states and name only (and names the file
//! in comments), never on the directory it is built in, so the agent module it goes into
//! builds the same everywhere. It uses `core` and `std::string::String` (an agent crate
//! has std, as `warden_guest::agent!` needs it) and nothing of `warden-guest`, and it
//! allows `dead_code`, so that an agent may use any part of it.

use std::path::{Path, PathBuf};

mod read;
mod render;

/// Why the states of a policy could not become an enum. Each names the policy file (as
/// the build script gave it) and, where it can, the line and the state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The policy file could not be read.
    #[error("cannot read the policy {}: {source}", file.display())]
    Read {
        /// The policy file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The policy is not TOML.
    #[error("{}:{line}:{column}: not a TOML policy: {message}", file.display())]
    Toml {
        /// The policy file.
        file: PathBuf,
        /// Where (from 1).
        line: usize,
        /// Where in the line (from 1, in characters).
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// Something the enum needs is missing or of the wrong type: no `[policy] initial`, an
    /// `initial` that is not a declared state, a `terminal` that is not a boolean...
    #[error("{}:{line}: {message}", file.display())]
    Policy {
        /// The policy file.
        file: PathBuf,
        /// Where (from 1).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A state's name cannot be a variant of the enum.
    #[error("{}:{line}: state `{state}` cannot be a variant of `State`: {reason}", file.display())]
    InvalidName {
        /// The policy file.
        file: PathBuf,
        /// The line of the state's name.
        line: usize,
        /// The state's name.
        state: String,
        /// Why not.
        reason: String,
    },
    /// Two states would be the same variant.
    #[error(
        "{}:{line}: states `{state}` and `{other}` (line {other_line}) would both be the variant `State::{variant}`: rename one in the policy",
        file.display()
    )]
    Collision {
        /// The policy file.
        file: PathBuf,
        /// The line of the second state's name.
        line: usize,
        /// The second state.
        state: String,
        /// The state declared first.
        other: String,
        /// Its line.
        other_line: usize,
        /// The variant both would be.
        variant: String,
    },
    /// Not run by cargo as a build script: `OUT_DIR` is not set.
    #[error(
        "OUT_DIR is not set: call warden_guest_build::states from a build script (build.rs), or write_states with a path"
    )]
    NoOutDir,
    /// The generated file could not be written.
    #[error("cannot write {}: {source}", file.display())]
    Write {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// For `build.rs`: generates `$OUT_DIR/states.rs` from the policy at `policy` (relative
/// to the crate's directory, where cargo runs build scripts), and has cargo run the
/// build script again when the policy changes.
///
/// On a problem it fails the build the way a build script should (`cargo::error`, one per
/// problem), each naming the policy file, the line and the state; it does not panic.
/// [`write_states`] returns the problems instead.
pub fn states(policy: impl AsRef<Path>) {
    let policy = policy.as_ref();
    println!("cargo::rerun-if-changed={}", policy.display());
    let Some(out_dir) = std::env::var_os("OUT_DIR") else {
        println!("cargo::error={}", Error::NoOutDir);
        return;
    };
    if let Err(problems) = write_states(policy, &Path::new(&out_dir).join("states.rs")) {
        for problem in problems {
            // One line each: cargo reads its directives line by line.
            let message = problem.to_string().replace(['\n', '\r'], " ");
            println!("cargo::error={message}");
        }
    }
}

/// Writes the `State` enum of the policy at `policy` to `out`, or returns every problem
/// that prevents it (and writes nothing).
pub fn write_states(policy: &Path, out: &Path) -> Result<(), Vec<Error>> {
    let text = std::fs::read_to_string(policy).map_err(|source| {
        vec![Error::Read {
            file: policy.to_path_buf(),
            source,
        }]
    })?;
    let source = render_states(&text, policy)?;
    std::fs::write(out, source).map_err(|source| {
        vec![Error::Write {
            file: out.to_path_buf(),
            source,
        }]
    })
}

/// The Rust source of the `State` enum of the policy `text`, read from `file` (named in
/// errors and in the generated comments), or every problem that prevents it.
pub fn render_states(text: &str, file: &Path) -> Result<String, Vec<Error>> {
    let states = read::read(text, file)?;
    Ok(render::render(&states, &file.display().to_string()))
}
