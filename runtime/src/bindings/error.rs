//! The errors of loading bindings: each names the file, the place in it and what is
//! wrong, and, where the fix is not obvious, what to do.

use std::io;
use std::path::{Path, PathBuf};

use crate::confine::{OutsideReason, describe_dir};

/// Why bindings could not be loaded, or do not cover a policy. Every variant names the
/// file, the place in it, and what is wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindingsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A TOML or JSON file does not parse, or does not have the expected shape.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column (in characters) of the problem.
        column: usize,
        /// What the parser said.
        message: String,
    },
    /// An entry of the bindings file is well-formed TOML but makes no sense.
    #[error("{}:{line}:{column}: {section}.{name}.{field}: {problem}", path.display())]
    Entry {
        /// The bindings file.
        path: PathBuf,
        /// 1-based line of the offending value.
        line: usize,
        /// 1-based column of the offending value.
        column: usize,
        /// `tools` or `models`.
        section: &'static str,
        /// The tool or model name.
        name: String,
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// A fixture file parses but a record is not usable.
    #[error("{}: record {record:?}: {problem}", path.display())]
    Fixture {
        /// The fixture file.
        path: PathBuf,
        /// The key of the offending record.
        record: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A scorecard file parses but is not a usable scorecard.
    #[error("{}: {field}: {problem}", path.display())]
    Scorecard {
        /// The scorecard file.
        path: PathBuf,
        /// The offending field, e.g. `features[2].weight`.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A ledger file holds a line that is not a ledger record (other than an unterminated
    /// last line, the trace of a crash mid-append, which is ignored), or a key twice.
    #[error("{}:{line}: {problem}", path.display())]
    Ledger {
        /// The ledger file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// A ledger file could not be created or opened for appending.
    #[error("cannot open ledger {}: {source}", path.display())]
    LedgerOpen {
        /// The ledger file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// An existing file bound as a ledger is not one: Warden refuses it rather than
    /// append to (or cut the "torn last line" of) a file it did not write.
    #[error("{}:{line}: not a ledger: {problem}; Warden appends only to ledgers it wrote and never changes another file: bind the tool to a new file, or move this one away", path.display())]
    NotALedger {
        /// The file.
        path: PathBuf,
        /// 1-based line that shows it is not a ledger.
        line: usize,
        /// Why.
        problem: String,
    },
    /// A ledger of a run being continued (resumed) does not exist: it was created when the
    /// run started, so it was moved or deleted since.
    #[error("{}:{line}:{column}: tools.{tool}.file: ledger {} does not exist. It is the record of the effects this run applied: resuming without it would apply them again (the step in flight may already have acted). Restore it from a backup and resume; only if you are sure that no effect of this run reached the world, create it empty and resume", bindings.display(), path.display())]
    LedgerMissing {
        /// The missing ledger.
        path: PathBuf,
        /// The bindings file that binds it.
        bindings: PathBuf,
        /// 1-based line of its `file` field.
        line: usize,
        /// 1-based column of its `file` field.
        column: usize,
        /// The tool.
        tool: String,
    },
    /// An entry names a file outside the bindings file's directory, and the operator did
    /// not allow that (see [`super::LoadOptions::allow_outside`]).
    #[error(transparent)]
    PathOutside(Box<EntryOutside>),
    /// A gate names a label its model's card does not give a probability for.
    #[error("the policy's gate on `{to}` needs the probability of label {label:?} from model {model:?}, but its card gives {}; correct the gate's label or bind a model that knows it", if labels.is_empty() { "no per-label probabilities".to_string() } else { format!("only {}", labels.join(", ")) })]
    GateLabel {
        /// The gated state.
        to: String,
        /// The gate's model.
        model: String,
        /// The label the gate names.
        label: String,
        /// The labels the card knows.
        labels: Vec<String>,
    },
    /// The policy names a tool or model the bindings do not provide.
    #[error("the policy's {kind} {name:?} is not bound in {}", describe_source(.bindings.as_deref()))]
    Unbound {
        /// `tool` or `model`.
        kind: &'static str,
        /// The name the policy uses.
        name: String,
        /// The bindings file, if the bindings came from one.
        bindings: Option<PathBuf>,
    },
}

/// An entry of a bindings file that names a file outside the bindings file's directory:
/// where it is written, and how the path leaves the directory.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}:{column}: {section}.{name}.{field}: {file:?} {reason}, outside {}; a bindings file may name only files inside its own directory, unless the operator allows others (`warden run --allow-paths-outside-bindings-dir`, or `LoadOptions::allow_outside` in the library)", path.display(), describe_dir(dir))]
#[non_exhaustive]
pub struct EntryOutside {
    /// The bindings file.
    pub path: PathBuf,
    /// 1-based line of the offending value.
    pub line: usize,
    /// 1-based column of the offending value.
    pub column: usize,
    /// `tools` or `models`.
    pub section: &'static str,
    /// The tool or model name.
    pub name: String,
    /// The offending field (`file`).
    pub field: &'static str,
    /// The path as written.
    pub file: String,
    /// The directory it must stay in.
    pub dir: PathBuf,
    /// How it leaves it.
    pub reason: OutsideReason,
}

fn describe_source(path: Option<&Path>) -> String {
    match path {
        Some(path) => path.display().to_string(),
        None => "the empty bindings (no bindings file was given)".to_string(),
    }
}
