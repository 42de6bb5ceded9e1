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
    /// An entry of the bindings file is well-formed TOML but makes no sense: an unknown or
    /// missing field, a value of the wrong type, an unknown provider.
    #[error("{}:{line}:{column}: {section}.{name}{}{field}: {problem}", path.display(), if field.is_empty() { "" } else { "." })]
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
        /// The offending field (empty when the entry as a whole is wrong).
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// A field of a bindings file outside its entries, or of a model card, is wrong: an
    /// unknown, missing or wrongly typed field, or a value that makes no sense.
    #[error("{}:{line}:{column}: {}{problem}", path.display(), if field.is_empty() { String::new() } else { format!("{field}: ") })]
    Field {
        /// The file (the bindings file, or a model card).
        path: PathBuf,
        /// 1-based line of the offending value (1 for a missing field).
        line: usize,
        /// 1-based column of the offending value.
        column: usize,
        /// Dotted path of the field, e.g. `features[2].weight`.
        field: String,
        /// What is wrong, and how to fix it.
        problem: String,
    },
    /// A fixture file parses but a record is not usable.
    #[error("{}:{line}: record {record:?}: {problem}", path.display())]
    Fixture {
        /// The fixture file.
        path: PathBuf,
        /// 1-based line of the record's key.
        line: usize,
        /// The key of the offending record.
        record: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A model file (`onnx`) that is not a model the card describes: not ONNX, a wrong
    /// input, an output that is not one probability per label.
    #[error("{}: {problem}", path.display())]
    OnnxModel {
        /// The model file.
        path: PathBuf,
        /// What is wrong with it, and how to fix it.
        problem: String,
    },
    /// The file a binding names cannot be read (it is missing, say). Names the binding
    /// that points there and the cause, once.
    #[error("{}:{line}:{column}: {section}.{name}.file: cannot read {}: {cause}{}", bindings.display(), path.display(), if cause.kind() == io::ErrorKind::NotFound { format!("; the path is relative to the bindings file's directory ({})", describe_dir(bindings.parent().unwrap_or(Path::new("")))) } else { String::new() })]
    EntryFile {
        /// The bindings file.
        bindings: PathBuf,
        /// 1-based line of the entry's `file` value.
        line: usize,
        /// 1-based column of the entry's `file` value.
        column: usize,
        /// `tools` or `models`.
        section: &'static str,
        /// The tool or model name.
        name: String,
        /// The file it names.
        path: PathBuf,
        /// The I/O error (part of the message, not a separate cause, so it is said once).
        cause: io::Error,
    },
    /// A model card whose own `name` is not the name it is bound under: the binding most
    /// likely points at another model's card.
    #[error(transparent)]
    CardName(Box<CardNameMismatch>),
    /// Several problems, each one of the other variants, in the order found: a bindings
    /// file is checked whole, not up to its first mistake.
    #[error("{}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Several {
        /// Every problem (at least two).
        errors: Vec<BindingsError>,
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
    /// The features the policy reconciles for a model are not those its card scores:
    /// every inference would be refused, and each run would fail as if the agent erred.
    #[error("the policy reconciles features of model {model:?} that its card does not score ({}), or the card scores features the policy declares no source for ({}); `warden check` points at each", if policy_only.is_empty() { "none".to_string() } else { policy_only.join(", ") }, if card_only.is_empty() { "none".to_string() } else { card_only.join(", ") })]
    FeaturesDiffer {
        /// The model.
        model: String,
        /// Features the policy declares and the card does not score.
        policy_only: Vec<String>,
        /// Features the card scores and the policy does not declare.
        card_only: Vec<String>,
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

/// A model card whose own `name` differs from the name it is bound under.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}:{column}: name: the card is named {found:?}, but {}:{binding_line} binds it as model {model:?}; bind model {model:?} to its own card, or correct the card's name", path.display(), bindings.display())]
#[non_exhaustive]
pub struct CardNameMismatch {
    /// The card.
    pub path: PathBuf,
    /// 1-based line of the card's `name`.
    pub line: usize,
    /// 1-based column of the card's `name`.
    pub column: usize,
    /// The name the card gives itself.
    pub found: String,
    /// The bindings file.
    pub bindings: PathBuf,
    /// 1-based line of the binding in it.
    pub binding_line: usize,
    /// The model name it is bound under (the policy's name).
    pub model: String,
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

impl BindingsError {
    /// One error for `errors`: the error itself when there is one, [`BindingsError::Several`]
    /// otherwise. `None` for none.
    pub(crate) fn from_all(mut errors: Vec<BindingsError>) -> Option<BindingsError> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(BindingsError::Several { errors }),
        }
    }

    /// The file this error is about, and the 1-based line and column in it (0 where the
    /// error has none).
    pub fn place(&self) -> (Option<&Path>, usize, usize) {
        match self {
            BindingsError::Read { path, .. }
            | BindingsError::LedgerOpen { path, .. }
            | BindingsError::OnnxModel { path, .. } => (Some(path), 0, 0),
            BindingsError::Syntax {
                path, line, column, ..
            }
            | BindingsError::Entry {
                path, line, column, ..
            }
            | BindingsError::Field {
                path, line, column, ..
            } => (Some(path), *line, *column),
            BindingsError::CardName(card) => (Some(&card.path), card.line, card.column),
            BindingsError::Fixture { path, line, .. }
            | BindingsError::Ledger { path, line, .. }
            | BindingsError::NotALedger { path, line, .. } => (Some(path), *line, 0),
            BindingsError::EntryFile {
                bindings,
                line,
                column,
                ..
            }
            | BindingsError::LedgerMissing {
                bindings,
                line,
                column,
                ..
            } => (Some(bindings), *line, *column),
            BindingsError::PathOutside(outside) => {
                (Some(&outside.path), outside.line, outside.column)
            }
            BindingsError::Unbound { bindings, .. } => (bindings.as_deref(), 0, 0),
            BindingsError::GateLabel { .. }
            | BindingsError::FeaturesDiffer { .. }
            | BindingsError::Several { .. } => (None, 0, 0),
        }
    }

    /// Every problem this error reports: the list of [`BindingsError::Several`], or itself.
    pub fn problems(&self) -> Vec<&BindingsError> {
        match self {
            BindingsError::Several { errors } => {
                errors.iter().flat_map(BindingsError::problems).collect()
            }
            other => vec![other],
        }
    }
}

fn describe_source(path: Option<&Path>) -> String {
    match path {
        Some(path) => path.display().to_string(),
        None => "the empty bindings (no bindings file was given)".to_string(),
    }
}
