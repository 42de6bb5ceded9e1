//! What to run: an agent, its policy, its bindings and an input, resolved from files (an
//! example directory's `warden.toml`, or explicit paths) and loaded.
//!
//! Parse, then resolve: the CLI fills a plain [`RunSpec`]; [`RunSpec::resolve`] reads and
//! checks every file, so that a [`NewRun`] exists only when the agent loads, the policy
//! validates, the bindings resolve and the input is JSON. Every error names the file.
//!
//! Files named by a bindings file or an example manifest stay inside its directory
//! unless [`RunSpec::allow_paths_outside`] says otherwise (`docs/bindings.md`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::agent::{Agent, LoadError, WasiImports};
use crate::bindings::{Bindings, BindingsError, LedgerMode, LoadOptions};
use crate::manifest::{Manifest, ManifestError};
use crate::policy::{Policy, PolicyError};

/// A run, resolved and loaded: what [`crate::start`] runs.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// The agent to run.
    pub agent: Agent,
    /// The policy it runs under.
    pub policy: Arc<Policy>,
    /// The policy file's text, stored so the run can be replayed from the journal alone.
    pub policy_text: String,
    /// The providers of the policy's tools and models.
    pub bindings: Arc<Bindings>,
    /// The run's input, JSON text.
    pub input: String,
    /// Who submits the run (recorded; a reviewer may not review their own submission).
    pub submitted_by: Option<String>,
}

/// Where a run's input comes from.
#[derive(Debug, Clone)]
pub enum InputSource {
    /// A JSON file.
    File(PathBuf),
    /// JSON text already read (for example from standard input).
    Text(String),
}

/// What to run, as a caller names it: paths, not yet read.
#[derive(Debug, Clone, Default)]
pub struct RunSpec {
    /// A `.wasm`/`.wat` agent module, or an example directory holding a `warden.toml`.
    pub target: PathBuf,
    /// The policy file; required for a bare module, overrides the manifest's.
    pub policy: Option<PathBuf>,
    /// The bindings file; overrides the manifest's.
    pub bindings: Option<PathBuf>,
    /// The input; overrides the manifest's default input.
    pub input: Option<InputSource>,
    /// Who submits the run.
    pub submitted_by: Option<String>,
    /// The operator lets the bindings file name files outside its own directory, and the
    /// example manifest name bindings and input outside the example directory (an
    /// absolute path, `..`, a symlink leading out). Default `false`: a bindings file or
    /// an example may come from someone else, and a ledger binding makes Warden create
    /// and append to a file with content the agent chooses (see
    /// [`crate::LoadOptions::allow_outside`] and `docs/bindings.md`). Paths given here
    /// (`policy`, `bindings`, `input`) are the caller's own and never confined.
    pub allow_paths_outside: bool,
}

/// Why a [`RunSpec`] could not be resolved into a run. Every variant names its file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// The example directory's manifest is unusable.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A bare module needs `--policy`.
    #[error("--policy is required when the agent is a module, not an example directory")]
    PolicyRequired,
    /// No input was given and the manifest names none.
    #[error("--input is required (a JSON file, or - for standard input)")]
    InputRequired,
    /// The input file could not be read.
    #[error("cannot read input {}", path.display())]
    ReadInput {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The input is not JSON.
    #[error("input {origin} is not valid JSON: {source}")]
    InputNotJson {
        /// The file, or `standard input`.
        origin: String,
        /// serde_json's error, naming line and column.
        #[source]
        source: serde_json::Error,
    },
    /// The input starts with a byte-order mark, which JSON does not allow.
    #[error(
        "input {origin} starts with a byte-order mark (U+FEFF), which JSON does not allow: save it as UTF-8 without one"
    )]
    InputByteOrderMark {
        /// The file, or `standard input`.
        origin: String,
    },
    /// The input has an object with a key twice: readers disagree on which value counts.
    #[error(
        "input {origin}: key `{key}` appears twice in one object; the agent, the gates and a person reading the journal could each take a different value: keep one"
    )]
    InputDuplicateKey {
        /// The file, or `standard input`.
        origin: String,
        /// The key.
        key: String,
    },
    /// The agent module was refused.
    #[error("agent {}", path.display())]
    Load {
        /// The module file.
        path: PathBuf,
        /// Why.
        #[source]
        source: LoadError,
    },
    /// The policy was refused.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The bindings were refused.
    #[error(transparent)]
    Bindings(#[from] BindingsError),
}

impl RunSpec {
    /// Reads and checks every file the spec names.
    ///
    /// # Errors
    /// [`ResolveError`] naming the file, line and field at fault.
    pub fn resolve(&self) -> Result<NewRun, ResolveError> {
        let manifest = if self.target.is_dir() {
            Some(Manifest::from_dir_with(
                &self.target,
                self.allow_paths_outside,
            )?)
        } else {
            None
        };
        let agent_path = manifest
            .as_ref()
            .map_or_else(|| self.target.clone(), |m| m.agent.clone());
        let policy_path = self
            .policy
            .clone()
            .or_else(|| manifest.as_ref().map(|m| m.policy.clone()))
            .ok_or(ResolveError::PolicyRequired)?;
        let bindings_path = self
            .bindings
            .clone()
            .or_else(|| manifest.as_ref().and_then(|m| m.bindings.clone()));
        // The policy says whether the agent may be a WASI guest, so it is read first.
        let (policy, policy_text) = Policy::from_file_with_text(&policy_path)?;
        let agent =
            Agent::from_file_with(&agent_path, WasiImports::of(&policy)).map_err(|source| {
                ResolveError::Load {
                    path: agent_path.clone(),
                    source,
                }
            })?;
        let options = LoadOptions {
            allow_outside: self.allow_paths_outside,
            ledgers: LedgerMode::CreateIfMissing,
        };
        let bindings = Bindings::from_optional_file_with(bindings_path.as_deref(), &options)?;
        let input = match (&self.input, manifest.as_ref().and_then(|m| m.input.clone())) {
            (Some(InputSource::Text(text)), _) => checked_json(text.clone(), "standard input")?,
            (Some(InputSource::File(path)), _) => read_input(path)?,
            (None, Some(path)) => read_input(&path)?,
            (None, None) => return Err(ResolveError::InputRequired),
        };
        Ok(NewRun {
            agent,
            policy: Arc::new(policy),
            policy_text,
            bindings: Arc::new(bindings),
            input,
            submitted_by: self.submitted_by.clone(),
        })
    }
}

fn read_input(path: &Path) -> Result<String, ResolveError> {
    let text =
        crate::confine::read_file_to_string(path).map_err(|source| ResolveError::ReadInput {
            path: path.to_path_buf(),
            source,
        })?;
    checked_json(text, &path.display().to_string())
}

fn checked_json(text: String, origin: &str) -> Result<String, ResolveError> {
    check_input(&text, origin)?;
    Ok(text)
}

/// Checks a run's input text as a run checks it before anything is recorded: JSON as the
/// gates and the input contract parse it (nesting deeper than they read, or a lone
/// surrogate in a string, is refused), no byte-order mark, no object with a key twice.
/// `origin` names it in the error (a file, or `standard input`).
///
/// # Errors
/// The first of those the text breaks.
pub fn check_input(text: &str, origin: &str) -> Result<(), ResolveError> {
    if text.starts_with('\u{feff}') {
        return Err(ResolveError::InputByteOrderMark {
            origin: origin.to_string(),
        });
    }
    if let Err(source) = serde_json::from_str::<serde_json::Value>(text) {
        return Err(ResolveError::InputNotJson {
            origin: origin.to_string(),
            source,
        });
    }
    match crate::host_call::duplicate_key(text) {
        Some(key) => Err(ResolveError::InputDuplicateKey {
            origin: origin.to_string(),
            key,
        }),
        None => Ok(()),
    }
}
