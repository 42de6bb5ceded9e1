//! Bindings: how the tools and models a policy names are provided in one deployment.
//!
//! A policy says *which* tools and models an agent may use; bindings say *how* each is
//! provided here (a fixture file, a ledger, a scorecard). They are operations, not
//! governance, so they live in their own file beside the deployment.
//!
//! Invariant: a loaded [`Bindings`] is fully resolved. Every file it references was read
//! and parsed at load time (a broken fixture or scorecard is a [`BindingsError`] naming
//! the file and the place, never a failed call later), and [`Bindings::hash`] covers
//! exactly the bytes that decide what providers answer: the bindings text and every
//! fixture and scorecard file. Ledger files are left out: they are the record of effects
//! already applied, not configuration.
//!
//! ```toml
//! [tools.credit_bureau]
//! provider = "fixture"                  # a JSON object file: key value -> result object
//! file = "fixtures/credit_bureau.json"  # relative to the bindings file's directory
//! key = "applicant_id"                  # the argument whose string value is looked up
//!
//! [tools.disbursement]
//! provider = "ledger"                   # an effect, applied once per idempotency key
//! file = "ledger.jsonl"                 # created if missing
//!
//! [models.pd_scorecard]
//! provider = "scorecard"                # a logistic-regression scorecard
//! file = "models/pd_scorecard.toml"
//! ```

mod fixture;
mod ledger;
mod scorecard;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;
use warden_guest::{CallError, CallErrorKind};

use fixture::Fixture;
use ledger::Ledger;
use scorecard::Scorecard;

/// Domain tag of [`Bindings::hash`]; change it if the hashed layout ever changes.
const HASH_DOMAIN: &[u8] = crate::digest::domain::BINDINGS.as_bytes();

/// The providers of one deployment, keyed by the names a policy uses.
#[derive(Debug)]
pub struct Bindings {
    source: Option<PathBuf>,
    hash: BindingsHash,
    tools: BTreeMap<String, Tool>,
    models: BTreeMap<String, Model>,
}

/// The blake3 hash of a bindings file and the files it references (see [`Bindings::hash`]).
/// Recorded in every run so that a journal says which deployment answered its calls.
pub type BindingsHash = crate::digest::Digest;

/// Identifies one effectful call across crashes and re-runs: the run and the call's
/// sequence number in it. A provider that sees a key twice applies the effect once.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct IdempotencyKey {
    /// The run the call belongs to.
    pub run_id: String,
    /// The call's sequence number within the run.
    pub call_seq: u64,
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.run_id, self.call_seq)
    }
}

/// A model's answer before the host records it as an inference.
#[derive(Clone, PartialEq, Debug)]
pub struct ModelAnswer {
    /// The model's value, JSON text.
    pub value: String,
    /// The probability of the label it predicts (in `[0.5, 1]` for a two-label
    /// scorecard). Shown to the agent; gates use `probabilities`.
    pub confidence: f64,
    /// The label it predicts.
    pub label: String,
    /// The probability of every label the model knows, computed by the host's provider.
    /// A gate compares the probability of the label it names.
    pub probabilities: Vec<(String, f64)>,
}

/// What a model's provider said beyond the response the agent reads: the label
/// probabilities a gate compares, and which card answered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ModelOutput {
    /// The predicted label.
    pub label: String,
    /// The probability of every label.
    pub probabilities: Vec<(String, f64)>,
    /// The card that answered.
    pub card: Option<ModelCard>,
}

/// A model as a run's bindings provide it: which card, which version. Recorded when a
/// run starts, and named by every inference, so that years later anyone can say which
/// model version scored a case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelCard {
    /// The model's name in the policy.
    pub name: String,
    /// The provider (`scorecard`, ...).
    pub provider: String,
    /// The card's own version.
    pub version: String,
    /// Digest of the card file (`blake3("warden-blob-v1" 0 bytes)`), stored as a blob.
    pub card: crate::digest::Digest,
}

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
    /// A ledger file holds a line that is not a ledger record (other than a torn last line,
    /// which is the trace of a crash and is ignored).
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

fn describe_source(path: Option<&Path>) -> String {
    match path {
        Some(path) => path.display().to_string(),
        None => "the empty bindings (no bindings file was given)".to_string(),
    }
}

#[derive(Debug)]
enum Tool {
    Fixture(Fixture),
    Ledger(Ledger),
}

#[derive(Debug)]
enum Model {
    Scorecard {
        scorecard: Scorecard,
        card: ModelCard,
        bytes: Vec<u8>,
    },
}

/// The bindings file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BindingsFile {
    #[serde(default)]
    tools: BTreeMap<String, Entry>,
    #[serde(default)]
    models: BTreeMap<String, Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    provider: Spanned<String>,
    file: Spanned<String>,
    #[serde(default)]
    key: Option<Spanned<String>>,
}

/// Resolves the entries of one bindings file, with what errors need to name.
struct Loader<'a> {
    path: &'a Path,
    dir: &'a Path,
    text: &'a str,
    /// (section, name, bytes) of every file the hash covers, in name order.
    hashed: Vec<(&'static str, String, Vec<u8>)>,
}

impl Bindings {
    /// Loads a bindings file and every file it references (paths relative to its
    /// directory). Ledger files are created if missing.
    pub fn from_file(path: &Path) -> Result<Bindings, BindingsError> {
        let text = read_text(path)?;
        let file: BindingsFile = toml::from_str(&text).map_err(|e| toml_error(path, &text, &e))?;
        let mut loader = Loader {
            path,
            dir: path.parent().unwrap_or(Path::new("")),
            text: &text,
            hashed: Vec::new(),
        };
        let mut models = BTreeMap::new();
        for (name, entry) in &file.models {
            models.insert(name.clone(), loader.model(name, entry)?);
        }
        // Ledgers are opened last, so that a broken fixture or scorecard creates no file.
        let mut tools = BTreeMap::new();
        let mut ledgers = Vec::new();
        for (name, entry) in &file.tools {
            match loader.tool(name, entry)? {
                Some(tool) => {
                    tools.insert(name.clone(), tool);
                }
                None => ledgers.push((name, entry)),
            }
        }
        let mut ledger_files: BTreeMap<PathBuf, &String> = BTreeMap::new();
        for (name, entry) in ledgers {
            let ledger = Ledger::open(&loader.resolve(&entry.file))?;
            if let Some(other) = ledger_files.insert(ledger.identity(), name) {
                return Err(loader.entry_error(
                    "tools",
                    name,
                    "file",
                    &entry.file,
                    format!("the same ledger file is already bound to tool {other:?}"),
                ));
            }
            tools.insert(name.clone(), Tool::Ledger(ledger));
        }
        let hash = hash_of(&text, &loader.hashed);
        Ok(Bindings {
            source: Some(path.to_path_buf()),
            hash,
            tools,
            models,
        })
    }

    /// The bindings of `path`, or [`Bindings::empty`] when there is no file.
    pub fn from_optional_file(path: Option<&Path>) -> Result<Bindings, BindingsError> {
        match path {
            Some(path) => Bindings::from_file(path),
            None => Ok(Bindings::empty()),
        }
    }

    /// Bindings that provide nothing: for agents whose policy declares no capabilities.
    pub fn empty() -> Bindings {
        Bindings {
            source: None,
            hash: hash_of("", &[]),
            tools: BTreeMap::new(),
            models: BTreeMap::new(),
        }
    }

    /// blake3 over a domain tag, the bindings text, and the bytes of every referenced
    /// fixture and scorecard file (tools, then models, each in name order), each part
    /// length-prefixed. Computed from the bytes that were loaded, so it describes exactly
    /// what answers this run's calls.
    pub fn hash(&self) -> BindingsHash {
        self.hash
    }

    /// The file these bindings were loaded from; `None` for [`Bindings::empty`].
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// Checks that every tool and model a policy declares is bound here, and that the
    /// model of every labelled gate gives the probability of the gate's label; the error
    /// names the first problem and the bindings file.
    pub fn covers(&self, policy: &crate::policy::Policy) -> Result<(), BindingsError> {
        let unbound = |kind, name: &String| BindingsError::Unbound {
            kind,
            name: name.clone(),
            bindings: self.source.clone(),
        };
        if let Some(name) = policy
            .tools
            .iter()
            .find(|name| !self.tools.contains_key(*name))
        {
            return Err(unbound("tool", name));
        }
        if let Some(name) = policy
            .models
            .iter()
            .find(|name| !self.models.contains_key(*name))
        {
            return Err(unbound("model", name));
        }
        for gate in &policy.gates {
            let Some(label) = &gate.label else { continue };
            let labels = self.labels(&gate.model);
            if !labels.contains(label) {
                return Err(BindingsError::GateLabel {
                    to: gate.to.clone(),
                    model: gate.model.clone(),
                    label: label.clone(),
                    labels,
                });
            }
        }
        Ok(())
    }

    /// The labels the named model gives a probability for.
    pub fn labels(&self, model: &str) -> Vec<String> {
        match self.models.get(model) {
            Some(Model::Scorecard { scorecard, .. }) => scorecard.labels(),
            None => Vec::new(),
        }
    }

    /// The cards of the bound models, in name order, with their bytes (stored by a run so
    /// that its models' lineage can be read from the journal alone).
    pub fn cards(&self) -> Vec<(ModelCard, &[u8])> {
        self.models
            .values()
            .map(|model| match model {
                Model::Scorecard { card, bytes, .. } => (card.clone(), bytes.as_slice()),
            })
            .collect()
    }

    /// The card of the named model.
    pub fn card(&self, model: &str) -> Option<&ModelCard> {
        match self.models.get(model)? {
            Model::Scorecard { card, .. } => Some(card),
        }
    }

    /// Whether the named tool acts on the world (a ledger), rather than only reading.
    pub fn is_effect(&self, tool: &str) -> bool {
        matches!(self.tools.get(tool), Some(Tool::Ledger(_)))
    }

    /// Calls the named tool with JSON arguments; returns its JSON result. `key` makes
    /// effects idempotent: an effect already applied under `key` is not applied again,
    /// its recorded result is returned.
    pub fn call_tool(
        &self,
        name: &str,
        args_json: &str,
        key: &IdempotencyKey,
    ) -> Result<String, CallError> {
        match self.tools.get(name) {
            Some(Tool::Fixture(fixture)) => fixture.call(args_json),
            Some(Tool::Ledger(ledger)) => ledger.call(args_json, key),
            None => Err(call_error(
                CallErrorKind::Unavailable,
                format!("no binding for tool {name:?}"),
            )),
        }
    }

    /// Asks the named model for an inference on JSON features.
    pub fn infer(&self, name: &str, features_json: &str) -> Result<ModelAnswer, CallError> {
        match self.models.get(name) {
            Some(Model::Scorecard { scorecard, .. }) => scorecard.infer(features_json),
            None => Err(call_error(
                CallErrorKind::Unavailable,
                format!("no binding for model {name:?}"),
            )),
        }
    }
}

impl Loader<'_> {
    /// Resolves a fixture tool now; returns `None` for a ledger, opened by the caller.
    fn tool(&mut self, name: &str, entry: &Entry) -> Result<Option<Tool>, BindingsError> {
        match entry.provider.get_ref().as_str() {
            "fixture" => {
                let Some(key) = &entry.key else {
                    return Err(self.entry_error(
                        "tools",
                        name,
                        "key",
                        &entry.provider,
                        "a fixture needs `key`, the argument whose value is looked up".into(),
                    ));
                };
                let path = self.resolve(&entry.file);
                let bytes = read_bytes(&path)?;
                let fixture = Fixture::parse(&path, &bytes, key.get_ref().clone())?;
                self.hashed.push(("tools", name.to_string(), bytes));
                Ok(Some(Tool::Fixture(fixture)))
            }
            "ledger" => {
                self.no_key("tools", name, entry)?;
                Ok(None)
            }
            other => Err(self.entry_error(
                "tools",
                name,
                "provider",
                &entry.provider,
                format!("unknown tool provider {other:?} (expected \"fixture\" or \"ledger\")"),
            )),
        }
    }

    fn model(&mut self, name: &str, entry: &Entry) -> Result<Model, BindingsError> {
        match entry.provider.get_ref().as_str() {
            "scorecard" => {
                self.no_key("models", name, entry)?;
                let path = self.resolve(&entry.file);
                let bytes = read_bytes(&path)?;
                let scorecard = Scorecard::parse(&path, &bytes)?;
                let card = ModelCard {
                    name: name.to_string(),
                    provider: "scorecard".into(),
                    version: scorecard.version().to_string(),
                    card: crate::digest::Digest::of(crate::digest::domain::BLOB, &bytes),
                };
                self.hashed
                    .push(("models", name.to_string(), bytes.clone()));
                Ok(Model::Scorecard {
                    scorecard,
                    card,
                    bytes,
                })
            }
            other => Err(self.entry_error(
                "models",
                name,
                "provider",
                &entry.provider,
                format!("unknown model provider {other:?} (expected \"scorecard\")"),
            )),
        }
    }

    fn no_key(
        &self,
        section: &'static str,
        name: &str,
        entry: &Entry,
    ) -> Result<(), BindingsError> {
        match &entry.key {
            Some(key) => Err(self.entry_error(
                section,
                name,
                "key",
                key,
                format!("provider {:?} takes no `key`", entry.provider.get_ref()),
            )),
            None => Ok(()),
        }
    }

    fn resolve(&self, file: &Spanned<String>) -> PathBuf {
        self.dir.join(file.get_ref())
    }

    fn entry_error<T>(
        &self,
        section: &'static str,
        name: &str,
        field: &'static str,
        at: &Spanned<T>,
        problem: String,
    ) -> BindingsError {
        let (line, column) = line_column(self.text, at.span().start);
        BindingsError::Entry {
            path: self.path.to_path_buf(),
            line,
            column,
            section,
            name: name.to_string(),
            field,
            problem,
        }
    }
}

fn hash_of(text: &str, hashed: &[(&'static str, String, Vec<u8>)]) -> BindingsHash {
    fn part(hasher: &mut blake3::Hasher, bytes: &[u8]) {
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }
    let mut hasher = blake3::Hasher::new();
    part(&mut hasher, HASH_DOMAIN);
    part(&mut hasher, text.as_bytes());
    for (section, name, bytes) in hashed {
        part(&mut hasher, section.as_bytes());
        part(&mut hasher, name.as_bytes());
        part(&mut hasher, bytes);
    }
    crate::digest::Digest(*hasher.finalize().as_bytes())
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, BindingsError> {
    std::fs::read(path).map_err(|source| BindingsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_text(path: &Path) -> Result<String, BindingsError> {
    std::fs::read_to_string(path).map_err(|source| BindingsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// A TOML error with its line and column, computed from toml's span.
fn toml_error(path: &Path, text: &str, error: &toml::de::Error) -> BindingsError {
    let (line, column) = error
        .span()
        .map_or((1, 1), |span| line_column(text, span.start));
    BindingsError::Syntax {
        path: path.to_path_buf(),
        line,
        column,
        message: error.message().trim_end().to_string(),
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn call_error(kind: CallErrorKind, message: String) -> CallError {
    CallError { kind, message }
}

#[cfg(test)]
mod tests;
