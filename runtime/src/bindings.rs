//! Bindings: how the tools and models a policy names are provided in one deployment.
//! `docs/bindings.md` documents every field of a bindings file, of a model card and of a
//! fixture, and what each provider answers.
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
//! Where files may be: every file an entry names is opened inside the bindings file's
//! own directory (see [`crate::confine`]); a path that leaves it (absolute, `..`, a
//! symlink leading out) is [`BindingsError::PathOutside`], unless the operator loads with
//! [`LoadOptions::allow_outside`]. Never a field of the file: a bindings file may come
//! from someone else, and a ledger is a file Warden creates and appends to with content
//! the agent chooses. `docs/bindings.md` states the rule for people.
//!
//! A file is checked whole: every problem of the bindings file, its cards and its
//! fixtures is reported at once, each with its file, line and field path
//! ([`BindingsError::Several`]); [`Bindings::inspect`] returns them with what did load,
//! for `warden check`, and creates nothing.
//!
//! ```toml
//! [tools.credit_bureau]
//! provider = "fixture"                  # a JSON object file: key value -> result object
//! file = "fixtures/credit_bureau.json"  # relative to the bindings file's directory
//! key = "applicant_id"                  # the argument whose string value is looked up
//!
//! [tools.disbursement]
//! provider = "ledger"                   # an effect, applied once per idempotency key
//! file = "ledger.jsonl"                 # created if missing (see LedgerMode)
//!
//! [models.pd_scorecard]
//! provider = "scorecard"                # a logistic-regression scorecard
//! file = "models/pd_scorecard.toml"
//!
//! [models.pd_classifier]
//! provider = "onnx"                     # a classifier in an ONNX file, run by tract
//! file = "models/pd.onnx"
//! card = "models/pd.toml"               # labels, features, provenance, model_sha256
//!
//! [tools.payout]
//! provider = "http"                     # a JSON endpoint, behind an allowlist
//! url = "https://payments.example/v1/payouts"
//! allow = ["https://payments.example:443/v1/"]
//! headers = { Authorization = { env = "PAYMENTS_TOKEN", prefix = "Bearer " } }
//! effect = true                         # sends Idempotency-Key: <run_id>/<call_seq>
//!
//! [tools.documents]
//! provider = "files"                    # a directory, through a cap-std capability
//! dir = "documents"                     # inside the bindings file's directory
//! write = true                          # default false; a write is an effect
//! file = "documents.writes.jsonl"       # the write log (a ledger), with write = true
//!
//! [models.claim_classifier]
//! provider = "chat"                     # an OpenAI-compatible /v1/chat/completions
//! base_url = "https://api.example/v1"
//! model = "gpt-4o-mini"
//! api_key = { env = "OPENAI_API_KEY" }  # the variable's name; its value never recorded
//! labels = ["pay", "investigate"]       # probabilities from token log-probabilities
//! ```
//!
//! Credentials are named, never written: an `http` or `chat` binding names the
//! environment variable that holds one, read when the bindings load; its value is in no
//! digest, record, message or answer (`http::secret`).

mod card;
mod chat;
mod decode;
mod error;
mod files;
mod fixture;
mod http;
mod ledger;
mod load;
mod onnx;
mod scorecard;
mod settings;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use warden_guest::{CallError, CallErrorKind};

use chat::ChatModel;
pub use error::{BindingsError, CardNameMismatch, EntryOutside};
use files::FilesTool;
use fixture::Fixture;
use http::HttpTool;
use ledger::Ledger;
use onnx::OnnxModel;
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

#[derive(Debug)]
enum Tool {
    Fixture(Fixture),
    Ledger(Ledger),
    /// A JSON endpoint over HTTP (`http`).
    Http(Box<HttpTool>),
    /// A directory, read (and written, if granted) through a capability (`files`).
    Files(Box<FilesTool>),
    /// A ledger that an inspection ([`LedgerMode::Inspect`]) found missing and did not
    /// create: a run creates it. Never answers a call.
    Unopened {
        path: PathBuf,
    },
}

#[derive(Debug)]
enum Model {
    Scorecard {
        scorecard: Scorecard,
        card: ModelCard,
        bytes: Vec<u8>,
        /// The card file, as the bindings name it.
        path: PathBuf,
    },
    /// A language model behind an OpenAI-compatible server (`chat`); its card is its
    /// settings.
    Chat {
        chat: Box<ChatModel>,
        card: ModelCard,
    },
    /// A classifier in an ONNX file (`onnx`), described by its card.
    Onnx {
        onnx: Box<OnnxModel>,
        card: ModelCard,
        /// The card's bytes (they pin the model file's SHA-256).
        bytes: Vec<u8>,
        /// The card file, as the bindings name it.
        path: PathBuf,
    },
}

/// A bindings file checked whole (what `warden check` reads): the providers that loaded,
/// where each entry is written, and every problem found. [`Bindings::from_file_with`]
/// refuses a file with any problem.
#[derive(Debug)]
pub struct BindingsInspection {
    /// The providers of the entries that loaded without a problem.
    pub bindings: Bindings,
    /// Every entry as written, in file order, whether it loaded or not.
    pub entries: Vec<BindingEntry>,
    /// Every problem found, in the order found: the file's own (syntax, fields), then each
    /// model's and tool's, in name order.
    pub problems: Vec<BindingsError>,
}

/// One `[tools.<name>]` or `[models.<name>]` entry, where it is written and what it says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BindingEntry {
    /// `tools` or `models`.
    pub section: &'static str,
    /// The tool or model name (the policy's).
    pub name: String,
    /// 1-based line of the name in the entry's header.
    pub line: usize,
    /// 1-based column of the name.
    pub column: usize,
    /// `provider`, as written.
    pub provider: Option<String>,
    /// `file`, as written (relative to the bindings file's directory).
    pub file: Option<String>,
    /// `key`, as written (fixtures).
    pub key: Option<String>,
    /// 1-based line and column of the `key` value, if written.
    pub key_at: Option<(usize, usize)>,
    /// `card`, as written (an `onnx` model's card, relative to the bindings file's
    /// directory).
    pub card: Option<String>,
}

/// Where a model card's fields are written: 1-based (line, column) pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CardPlaces {
    /// The card's `name` value.
    pub name: (usize, usize),
    /// Its first `[[features]]` table.
    pub features: (usize, usize),
    /// Each feature's `name`, in the card's order.
    pub feature_names: Vec<(usize, usize)>,
}

/// A fixture tool as loaded: the argument it looks up and its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FixtureView<'a> {
    /// The argument whose string value is looked up.
    pub key: &'a str,
    /// Every record: id, compact JSON, line of the id in the fixture file.
    pub records: Vec<(&'a str, &'a str, usize)>,
}

/// How a bindings file is loaded: the operator's choices, never the file's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Let entries name files outside the bindings file's directory (an absolute path,
    /// `..`, a symlink leading out). Default `false`: such an entry is
    /// [`BindingsError::PathOutside`]. Turn it on only for a bindings file the operator
    /// wrote: with it, a crafted file can point a ledger, which Warden creates and
    /// appends to with content the agent chooses, at any file the process may write
    /// (though never one that is not already a ledger: see [`BindingsError::NotALedger`]).
    pub allow_outside: bool,
    /// Whether missing ledger files are created.
    pub ledgers: LedgerMode,
}

/// What loading does about a ledger file that does not exist.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LedgerMode {
    /// Create it (empty): a new deployment, or a run that starts.
    #[default]
    CreateIfMissing,
    /// Refuse with [`BindingsError::LedgerMissing`]: the run being continued created its
    /// ledgers when it started, so a missing one is an effect log that was lost, and
    /// creating a new one would let the run apply its effects again.
    MustExist,
    /// Check only (`warden check`): create nothing and write nothing. A missing ledger is
    /// fine (a run creates it); an existing one is opened to read and must be a ledger.
    /// The bindings loaded this way cannot perform an effect.
    Inspect,
}

impl Bindings {
    /// Loads a bindings file and every file it references, with the safe defaults of
    /// [`LoadOptions`]: every referenced file inside the bindings file's directory, ledger
    /// files created if missing.
    pub fn from_file(path: &Path) -> Result<Bindings, BindingsError> {
        Bindings::from_file_with(path, &LoadOptions::default())
    }

    /// Loads a bindings file and every file it references (paths relative to its
    /// directory), as `options` say.
    ///
    /// # Errors
    /// [`BindingsError`] naming the file and the place: among others
    /// [`BindingsError::PathOutside`] for a path that leaves the directory,
    /// [`BindingsError::NotALedger`] for an existing file that is not a ledger, and
    /// [`BindingsError::LedgerMissing`] under [`LedgerMode::MustExist`].
    pub fn from_file_with(path: &Path, options: &LoadOptions) -> Result<Bindings, BindingsError> {
        let inspection = Bindings::inspect(path, options);
        match BindingsError::from_all(inspection.problems) {
            None => Ok(inspection.bindings),
            Some(error) => Err(error),
        }
    }

    /// The bindings of `path` loaded with the safe defaults, or [`Bindings::empty`] when
    /// there is no file.
    pub fn from_optional_file(path: Option<&Path>) -> Result<Bindings, BindingsError> {
        Bindings::from_optional_file_with(path, &LoadOptions::default())
    }

    /// The bindings of `path` loaded as `options` say, or [`Bindings::empty`] when there
    /// is no file.
    pub fn from_optional_file_with(
        path: Option<&Path>,
        options: &LoadOptions,
    ) -> Result<Bindings, BindingsError> {
        match path {
            Some(path) => Bindings::from_file_with(path, options),
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

    /// Checks that every tool and model a policy declares is bound here, that each model
    /// whose features the policy reconciles scores exactly those, and that the model of
    /// every labelled gate gives the probability of the gate's label; the error names the
    /// first problem and the bindings file.
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
        for (model, rules) in &policy.model_rules {
            let Some(provenance) = &rules.provenance else {
                continue;
            };
            let (policy_only, card_only) = self.feature_difference(model, provenance);
            if !policy_only.is_empty() || !card_only.is_empty() {
                return Err(BindingsError::FeaturesDiffer {
                    model: model.clone(),
                    policy_only,
                    card_only,
                });
            }
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

    /// How the features `provenance` reconciles for `model` differ from those its card
    /// scores: (declared and not scored, in name order; scored and not declared, in the
    /// card's order). Both empty for a model whose card lists no features (a chat model).
    pub(crate) fn feature_difference(
        &self,
        model: &str,
        provenance: &crate::provenance::Provenance,
    ) -> (Vec<String>, Vec<String>) {
        let card = self.features(model);
        if card.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let declared: Vec<&str> = provenance.features().collect();
        let policy_only = declared
            .iter()
            .filter(|name| !card.iter().any(|c| c == *name))
            .map(|name| (*name).to_string())
            .collect();
        let card_only = card
            .into_iter()
            .filter(|name| !declared.contains(&name.as_str()))
            .collect();
        (policy_only, card_only)
    }

    /// The labels the named model gives a probability for.
    pub fn labels(&self, model: &str) -> Vec<String> {
        match self.models.get(model) {
            Some(Model::Scorecard { scorecard, .. }) => scorecard.labels(),
            Some(Model::Chat { chat, .. }) => chat.labels(),
            Some(Model::Onnx { onnx, .. }) => onnx.labels(),
            None => Vec::new(),
        }
    }

    /// The features the named model's card lists, in the card's order (empty for a model
    /// not bound here).
    pub fn features(&self, model: &str) -> Vec<String> {
        match self.models.get(model) {
            Some(Model::Scorecard { scorecard, .. }) => scorecard.features(),
            Some(Model::Onnx { onnx, .. }) => onnx.features(),
            Some(Model::Chat { .. }) | None => Vec::new(),
        }
    }

    /// The named model's card file, with the line and column of its `name`, of its
    /// first feature, and of each feature's name (for messages that point into it).
    pub(crate) fn card_places(&self, model: &str) -> Option<(&Path, CardPlaces)> {
        match self.models.get(model)? {
            Model::Scorecard {
                scorecard, path, ..
            } => {
                let places = scorecard.places();
                Some((
                    path.as_path(),
                    CardPlaces {
                        name: places.name,
                        features: places.features,
                        feature_names: places.feature_names.clone(),
                    },
                ))
            }
            Model::Onnx { onnx, path, .. } => {
                let places = onnx.places();
                Some((
                    path.as_path(),
                    CardPlaces {
                        name: places.name,
                        features: places.features,
                        feature_names: places.feature_names.clone(),
                    },
                ))
            }
            Model::Chat { .. } => None,
        }
    }

    /// The named fixture tool: its file, its `key`, and every record (id, compact JSON,
    /// line of the id in the file).
    pub(crate) fn fixture(&self, tool: &str) -> Option<FixtureView<'_>> {
        match self.tools.get(tool)? {
            Tool::Fixture(fixture) => Some(FixtureView {
                key: fixture.key(),
                records: fixture.records().collect(),
            }),
            _ => None,
        }
    }

    /// The cards of the bound models, in name order, with their bytes (stored by a run so
    /// that its models' lineage can be read from the journal alone).
    pub fn cards(&self) -> Vec<(ModelCard, &[u8])> {
        self.models
            .values()
            .map(|model| match model {
                Model::Scorecard { card, bytes, .. } | Model::Onnx { card, bytes, .. } => {
                    (card.clone(), bytes.as_slice())
                }
                Model::Chat { chat, card } => (card.clone(), chat.card()),
            })
            .collect()
    }

    /// The card of the named model.
    pub fn card(&self, model: &str) -> Option<&ModelCard> {
        match self.models.get(model)? {
            Model::Scorecard { card, .. } | Model::Chat { card, .. } | Model::Onnx { card, .. } => {
                Some(card)
            }
        }
    }

    /// Whether the named tool acts on the world (a ledger, an `http` tool with `effect =
    /// true`, a `files` tool with `write = true`), rather than only reading.
    pub fn is_effect(&self, tool: &str) -> bool {
        match self.tools.get(tool) {
            Some(Tool::Ledger(_) | Tool::Unopened { .. }) => true,
            Some(Tool::Http(http)) => http.is_effect(),
            Some(Tool::Files(files)) => files.is_effect(),
            _ => false,
        }
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
        self.call_tool_until(name, args_json, key, None)
    }

    /// [`Bindings::call_tool`] within a deadline (the step's wall-clock budget): a
    /// provider that talks to a server never waits past it.
    pub fn call_tool_until(
        &self,
        name: &str,
        args_json: &str,
        key: &IdempotencyKey,
        deadline: Option<Instant>,
    ) -> Result<String, CallError> {
        match self.tools.get(name) {
            Some(Tool::Fixture(fixture)) => fixture.call(args_json),
            Some(Tool::Ledger(ledger)) => ledger.call(args_json, key),
            Some(Tool::Http(http)) => http.call(args_json, key, deadline),
            Some(Tool::Files(files)) => files.call(args_json, key),
            Some(Tool::Unopened { path }) => Err(call_error(
                CallErrorKind::Unavailable,
                format!(
                    "ledger {} was only inspected, not opened: load the bindings to run",
                    path.display()
                ),
            )),
            None => Err(call_error(
                CallErrorKind::Unavailable,
                format!("no binding for tool {name:?}"),
            )),
        }
    }

    /// Asks the named model for an inference on JSON features.
    pub fn infer(&self, name: &str, features_json: &str) -> Result<ModelAnswer, CallError> {
        self.infer_until(name, features_json, None)
    }

    /// [`Bindings::infer`] within a deadline (the step's wall-clock budget).
    pub fn infer_until(
        &self,
        name: &str,
        features_json: &str,
        deadline: Option<Instant>,
    ) -> Result<ModelAnswer, CallError> {
        match self.models.get(name) {
            Some(Model::Scorecard { scorecard, .. }) => scorecard.infer(features_json),
            Some(Model::Chat { chat, .. }) => chat.infer(features_json, deadline),
            Some(Model::Onnx { onnx, .. }) => onnx.infer(features_json),
            None => Err(call_error(
                CallErrorKind::Unavailable,
                format!("no binding for model {name:?}"),
            )),
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

fn read_text(path: &Path) -> Result<String, BindingsError> {
    crate::confine::read_file_to_string(path).map_err(|source| BindingsError::Read {
        path: path.to_path_buf(),
        source,
    })
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
