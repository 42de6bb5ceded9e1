//! The `onnx` model provider: a classifier in an ONNX file, run by tract (pure Rust), with
//! a TOML card that says what it reads and answers and where it comes from.
//!
//! Invariant: a loaded [`OnnxModel`] is the file its card pins (the SHA-256 of the bytes
//! that were read equals the card's `model_sha256`), takes one float32 row of exactly the
//! card's features in the card's order, and answers one probability per card label, in
//! the card's label order (each in [0, 1], together 1). A file that is not such a model
//! is refused when the bindings load, naming the file and what is wrong; an answer that
//! is not such a row at run time is a call error, never a probability a gate would use.
//!
//! Answers are not re-computed on replay: like every model's, they are journaled with
//! the card that answered and a replay answers from the journal. tract's kernels may
//! differ in the last bits between CPU families, which is why nothing downstream needs
//! the model to be re-run to check a decision.
//!
//! ```toml
//! [models.pd_scorecard]
//! provider = "onnx"
//! file = "models/pd_german_credit.onnx"   # the model
//! card = "models/pd_german_credit.toml"   # labels, features, provenance, model_sha256
//! ```

mod card;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid as _;
use warden_guest::{CallError, CallErrorKind};

use toml::Spanned;

use super::card::Places;
use super::decode::Entry;
use super::load::Loader;
use super::settings::Settings;
use super::{BindingsError, EntryOutside, Model, ModelAnswer, call_error, line_column};
use crate::confine::Refused;
use card::OnnxCard;

/// The settings an `onnx` binding takes besides `file`.
pub(super) const FIELDS: &[&str] = &["card"];

/// How far from 1 the probabilities of one answer may add up (float32 rounding).
const SUM_TOLERANCE: f32 = 1e-4;

/// A validated ONNX classifier and its card.
pub(super) struct OnnxModel {
    card: OnnxCard,
    plan: Arc<TypedRunnableModel>,
}

impl fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnnxModel")
            .field("card", &self.card)
            .finish_non_exhaustive()
    }
}

/// The value of an answer, serialized in this field order.
#[derive(Serialize)]
struct Classified<'a> {
    /// The probability of the card's `positive_label`, when it names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    probability: Option<f64>,
    label: &'a str,
    probabilities: Probabilities<'a>,
}

/// Every label's probability, as a JSON object in the card's label order.
struct Probabilities<'a>(&'a [(String, f64)]);

impl Serialize for Probabilities<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (label, p) in self.0 {
            map.serialize_entry(label, p)?;
        }
        map.end()
    }
}

impl OnnxModel {
    /// Loads the model `model_bytes` (the content of `model_path`) described by the card
    /// `card_bytes` (of `card_path`); every problem of the card at once, then the first
    /// problem of the model, each naming its file.
    pub(super) fn load(
        model_path: &Path,
        model_bytes: &[u8],
        card_path: &Path,
        card_bytes: &[u8],
    ) -> Result<OnnxModel, Vec<BindingsError>> {
        let card = card::parse(card_path, card_bytes)?;
        let digest = hex(&Sha256::digest(model_bytes));
        if digest != card.model_sha256 {
            let (line, column) = card.model_sha256_at;
            return Err(vec![BindingsError::Field {
                path: card_path.to_path_buf(),
                line,
                column,
                field: "model_sha256".into(),
                problem: format!(
                    "{} has SHA-256 {digest}, not the {} this card pins: the model file is not the one the card describes (changed since the card was written?); bind the card written with this model, or the model this card describes",
                    model_path.display(),
                    card.model_sha256
                ),
            }]);
        }
        let fail = |problem: String| {
            vec![BindingsError::OnnxModel {
                path: model_path.to_path_buf(),
                problem,
            }]
        };
        let plan = guarded("loading the model", || plan(&card, model_bytes)).map_err(fail)?;
        let model = OnnxModel { card, plan };
        // A model whose output is scores or logits would pass every shape check: ask it
        // once, on a row of zeros, whether it answers probabilities.
        let zeros = vec![0.0; model.card.features.len()];
        model.run(&zeros).map_err(fail)?;
        Ok(model)
    }

    /// Classifies a JSON object holding exactly the card's features, as finite numbers.
    pub(super) fn infer(&self, features_json: &str) -> Result<ModelAnswer, CallError> {
        let invalid = |message: String| {
            call_error(
                CallErrorKind::InvalidArguments,
                format!("onnx model {:?}: {message}", self.card.name),
            )
        };
        let given = match serde_json::from_str::<Value>(features_json) {
            Ok(Value::Object(given)) => given,
            Ok(other) => {
                return Err(invalid(format!(
                    "features must be a JSON object, got {other}"
                )));
            }
            Err(e) => return Err(invalid(format!("features are not valid JSON: {e}"))),
        };
        let extra: Vec<&str> = given
            .keys()
            .map(String::as_str)
            .filter(|name| !self.card.features.iter().any(|f| f == name))
            .collect();
        if !extra.is_empty() {
            return Err(invalid(format!("unknown features: {}", extra.join(", "))));
        }
        let mut row = Vec::with_capacity(self.card.features.len());
        for name in &self.card.features {
            let value = given
                .get(name)
                .ok_or_else(|| invalid(format!("missing feature {name:?}")))?;
            // The model reads float32: a number beyond its range is refused, not rounded
            // to infinity.
            match value.as_f64() {
                Some(x) if x.is_finite() && (x as f32).is_finite() => row.push(x as f32),
                _ => {
                    return Err(invalid(format!(
                        "feature {name:?} must be a finite number within float32 range, got {value}"
                    )));
                }
            }
        }
        let probabilities = self.run(&row).map_err(|problem| {
            call_error(
                CallErrorKind::Unavailable,
                format!("onnx model {:?}: {problem}", self.card.name),
            )
        })?;
        // The first label of highest probability.
        let (label, confidence) = probabilities.iter().fold(
            (&probabilities[0].0, probabilities[0].1),
            |best, (label, p)| if *p > best.1 { (label, *p) } else { best },
        );
        let value = serde_json::to_string(&Classified {
            probability: self
                .card
                .positive_label
                .as_ref()
                .and_then(|positive| probabilities.iter().find(|(l, _)| l == positive))
                .map(|(_, p)| *p),
            label,
            probabilities: Probabilities(&probabilities),
        })
        .map_err(|e| call_error(CallErrorKind::Unavailable, e.to_string()))?;
        Ok(ModelAnswer {
            value,
            confidence,
            label: label.clone(),
            probabilities: probabilities.clone(),
        })
    }

    /// Runs the model on one row; the probability of each label, in the card's order, or
    /// why the output is not that.
    fn run(&self, row: &[f32]) -> Result<Vec<(String, f64)>, String> {
        guarded("running the model", || self.run_unguarded(row))
    }

    fn run_unguarded(&self, row: &[f32]) -> Result<Vec<(String, f64)>, String> {
        let input = Tensor::from_shape(&[1, row.len()], row).map_err(|e| format!("{e:#}"))?;
        let outputs = self
            .plan
            .run(tvec!(input.into()))
            .map_err(|e| format!("the model failed to run: {e:#}"))?;
        let output = outputs
            .first()
            .ok_or_else(|| "the model gave no output".to_string())?;
        let values: Vec<f32> = output
            .cast_to::<f32>()
            .and_then(|t| Ok(t.to_plain_array_view::<f32>()?.iter().copied().collect()))
            .map_err(|e| format!("{e:#}"))?;
        let labels = &self.card.labels;
        let sum: f32 = values.iter().sum();
        if values.len() != labels.len()
            || values.iter().any(|p| !(0.0..=1.0).contains(p))
            || (sum - 1.0).abs() > SUM_TOLERANCE
        {
            return Err(format!(
                "output is not probabilities: it gave {values:?}, and the card needs one probability per label ({}), each in [0, 1], together 1; a model that outputs scores or logits needs a Softmax (or a Sigmoid and its complement) at its end",
                labels.join(", ")
            ));
        }
        Ok(labels
            .iter()
            .zip(values)
            .map(|(label, p)| (label.clone(), f64::from(p)))
            .collect())
    }

    pub(super) fn name(&self) -> &str {
        &self.card.name
    }

    pub(super) fn version(&self) -> &str {
        &self.card.version
    }

    pub(super) fn labels(&self) -> Vec<String> {
        self.card.labels.clone()
    }

    pub(super) fn features(&self) -> Vec<String> {
        self.card.features.clone()
    }

    pub(super) fn places(&self) -> &Places {
        &self.card.places
    }
}

/// Runs `work`, a panic of tract in it (a crafted model can divide by zero, index out of
/// range or ask for an impossible allocation, at load or on one input) turned into the
/// model's error: the host does not panic on a model file, which may come with a crafted
/// example directory, nor on the features an input leads to. The plan is immutable and
/// every run has its own state, so nothing is left half-changed by the unwinding.
fn guarded<T>(doing: &str, work: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|panic| {
        let cause = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Err(format!(
            "tract failed while {doing} ({cause}): the model is not one Warden can run"
        ))
    })
}

/// The runnable plan of `bytes` for one float32 row of the card's features, with the
/// card's output selected; what is wrong otherwise, in words.
fn plan(card: &OnnxCard, bytes: &[u8]) -> Result<Arc<TypedRunnableModel>, String> {
    let mut model = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .map_err(|e| format!("not an ONNX model Warden can read: {e:#}"))?;
    let width = card.features.len();
    let sending =
        format!("Warden sends one row of the card's {width} features, float32 [1, {width}]");
    let inputs = model
        .input_outlets()
        .map_err(|e| format!("{e:#}"))?
        .to_vec();
    let [input] = inputs.as_slice() else {
        let names: Vec<&str> = inputs
            .iter()
            .map(|o| model.node(o.node).name.as_str())
            .collect();
        return Err(format!(
            "wrong inputs: the model takes {} inputs ({}); {sending}",
            inputs.len(),
            names.join(", ")
        ));
    };
    let input_name = model.node(input.node).name.clone();
    if let Some(expected) = &card.input
        && *expected != input_name
    {
        return Err(format!(
            "the model's input is named {input_name:?}, but its card says {expected:?}; correct the card's `input`"
        ));
    }
    let fact = model.input_fact(0).map_err(|e| format!("{e:#}"))?;
    if let Some(datum) = fact.datum_type.concretize()
        && datum != f32::datum_type()
    {
        return Err(format!(
            "wrong input type: the model's input {input_name:?} is {datum:?}; {sending}"
        ));
    }
    if let Some(rank) = fact.shape.rank().concretize()
        && rank != 2
    {
        return Err(format!(
            "wrong input shape: the model's input {input_name:?} has {rank} dimensions ({:?}); {sending}",
            fact.shape
        ));
    }
    if let Some(columns) = fact.shape.dim(1).and_then(|d| d.concretize())
        && let Some(columns) = columns.as_i64()
        && usize::try_from(columns).ok() != Some(width)
    {
        return Err(format!(
            "feature count mismatch: the model's input {input_name:?} takes {columns} values per row, but its card lists {width} features ({}); the card must list the model's input columns, in order",
            card.features.join(", ")
        ));
    }
    let outputs = model
        .output_outlets()
        .map_err(|e| format!("{e:#}"))?
        .to_vec();
    let label = |outlet: &OutletId| model.outlet_label(*outlet).unwrap_or("").to_string();
    let chosen = match (&card.output, outputs.as_slice()) {
        (None, [only]) => *only,
        (Some(name), _) => *outputs.iter().find(|o| label(o) == *name).ok_or_else(|| {
            let names: Vec<String> = outputs.iter().map(label).collect();
            format!(
                "the card's output {name:?} is not an output of the model (it has {})",
                names.join(", ")
            )
        })?,
        (None, _) => {
            let names: Vec<String> = outputs.iter().map(label).collect();
            return Err(format!(
                "the model has {} outputs ({}): name the one that holds the probabilities in the card's `output`",
                outputs.len(),
                names.join(", ")
            ));
        }
    };
    model
        .select_output_outlets(&[chosen])
        .map_err(|e| format!("{e:#}"))?;
    let typed = model
        .with_input_fact(0, f32::fact([1, width]).into())
        .and_then(|model| model.into_optimized())
        .map_err(|e| {
            format!(
                "wrong input shape: the model cannot take float32 [1, {width}] ({sending}): {e:#}"
            )
        })?;
    let output = typed.output_fact(0).map_err(|e| format!("{e:#}"))?;
    let labels = card.labels.len();
    if !matches!(output.datum_type, DatumType::F32 | DatumType::F64)
        || output.shape.as_concrete() != Some(&[1, labels][..])
    {
        return Err(format!(
            "output is not probabilities: it is {:?} of shape {:?}, and the card needs float [1, {labels}], one probability per label ({})",
            output.datum_type,
            output.shape,
            card.labels.join(", ")
        ));
    }
    typed.into_runnable().map_err(|e| format!("{e:#}"))
}

impl Loader<'_> {
    /// Resolves an `onnx` model entry: its `file` (the model) and its `card`, both read
    /// inside the bindings file's directory; both are covered by the bindings digest, and
    /// the card (which pins the model's SHA-256) is what a run records. `None` after a
    /// problem (recorded).
    pub(super) fn onnx(&mut self, entry: &Entry, provider: &Spanned<String>) -> Option<Model> {
        if let Some(key) = &entry.key {
            self.entry_error(
                entry,
                "key",
                &key.span(),
                format!(
                    "provider {:?} takes no `key` (only a fixture looks records up); remove it",
                    provider.get_ref()
                ),
            );
        }
        let mut settings = Settings::new(entry, "onnx", FIELDS);
        // A misspelt `card` was reported as an unknown field already.
        let card_file = if settings.get("card").is_none() && entry.misspelt("card") {
            None
        } else {
            settings.required_string("card", "\"models/<name>.toml\", the model's card")
        };
        settings.finish(self);
        let model_file = entry.file.as_ref()?;
        let model = self.read_named(entry, "file", model_file);
        let card = self.read_named(entry, "card", card_file.as_ref()?);
        let ((model_path, model_bytes), (card_path, card_bytes)) = (model?, card?);
        let onnx = match OnnxModel::load(&model_path, &model_bytes, &card_path, &card_bytes) {
            Ok(onnx) => onnx,
            Err(errors) => {
                self.problems.extend(errors);
                return None;
            }
        };
        let card = self.model_card(
            entry,
            "onnx",
            (onnx.name(), onnx.places().name, onnx.version()),
            &card_path,
            &card_bytes,
        )?;
        self.hashed
            .push(("models", entry.name.clone(), card_bytes.clone()));
        self.hashed
            .push(("models", entry.name.clone(), model_bytes));
        Some(Model::Onnx {
            onnx: Box::new(onnx),
            card,
            bytes: card_bytes,
            path: card_path,
        })
    }

    /// Reads the file that `field` of `entry` names, confined as every file of a bindings
    /// file is; its path and bytes, or `None` after a problem (recorded, naming the field).
    fn read_named(
        &mut self,
        entry: &Entry,
        field: &'static str,
        file: &Spanned<String>,
    ) -> Option<(PathBuf, Vec<u8>)> {
        let path = self.files.path(file.get_ref());
        match self.files.read(file.get_ref()) {
            Ok(bytes) => Some((path, bytes)),
            Err(Refused::Io(cause)) => {
                self.entry_error(
                    entry,
                    field,
                    &file.span(),
                    format!(
                        "cannot read {}: {cause}; the path is relative to the bindings file's directory",
                        path.display()
                    ),
                );
                None
            }
            Err(Refused::Outside(reason)) => {
                let (line, column) = line_column(self.text, file.span().start);
                self.problems
                    .push(BindingsError::PathOutside(Box::new(EntryOutside {
                        path: self.path.to_path_buf(),
                        line,
                        column,
                        section: entry.section,
                        name: entry.name.clone(),
                        field,
                        file: file.get_ref().clone(),
                        dir: self.files.dir().to_path_buf(),
                        reason,
                    })));
                None
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
