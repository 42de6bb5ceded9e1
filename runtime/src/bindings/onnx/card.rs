//! Reading the card of an ONNX model (TOML): what the model answers (its labels, in the
//! order of its output), what it reads (its features, in the order of its input), which
//! file it is (the SHA-256 it pins) and where it comes from (provenance, metrics). Every
//! problem of the card is reported at once, with its line and field, as a scorecard's
//! card is (`super::super::card`). The fields are documented in `docs/bindings.md`,
//! "onnx".

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::Path;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::super::card::{self, Places, string};
use super::super::decode::{self, Problems};
use super::super::{BindingsError, line_column};

/// A card whose every field was read and checked.
#[derive(Debug)]
pub(super) struct OnnxCard {
    pub name: String,
    pub version: String,
    /// The labels, in the order of the model's output columns.
    pub labels: Vec<String>,
    /// The label whose probability the answer's `probability` is, if any.
    pub positive_label: Option<String>,
    /// The name the model's input must have, if the card says.
    pub input: Option<String>,
    /// The name of the output that holds the probabilities, if the card says.
    pub output: Option<String>,
    /// The SHA-256 of the model file, lowercase hex.
    pub model_sha256: String,
    /// Where `model_sha256` is written, for the message when the file differs.
    pub model_sha256_at: (usize, usize),
    /// The features' names, in the order of the model's input columns.
    pub features: Vec<String>,
    pub places: Places,
}

const CARD_FIELDS: &[&str] = &[
    "name",
    "version",
    "description",
    "labels",
    "positive_label",
    "input",
    "output",
    "model_sha256",
    "features",
    "provenance",
    "metrics",
];
const FEATURE_FIELDS: &[&str] = &["name", "description", "source"];
/// What `[provenance]` may say; the first three are required.
const PROVENANCE_FIELDS: &[&str] = &[
    "data",
    "licence",
    "trained",
    "data_source",
    "package",
    "script",
    "method",
    "software",
    "notes",
];

/// Parses and checks `bytes`, the content of `path`; every problem at once.
pub(super) fn parse(path: &Path, bytes: &[u8]) -> Result<OnnxCard, Vec<BindingsError>> {
    let text = card::text(path, bytes)?;
    let document = decode::parse(path, text)?;
    let mut problems = Problems::new(path, text);
    let card = read(document.get_ref(), &mut problems);
    match card {
        Some(card) if problems.list.is_empty() => Ok(card),
        _ => Err(problems.list),
    }
}

fn read(document: &DeTable<'_>, problems: &mut Problems<'_>) -> Option<OnnxCard> {
    let mut name = None;
    let mut version = None;
    let mut labels: Option<Vec<Spanned<String>>> = None;
    let mut positive_label = None;
    let mut input = None;
    let mut output = None;
    let mut sha = None;
    let mut features: Option<(Range<usize>, Vec<Feature>)> = None;
    for (key, value) in document.iter() {
        let field = key.get_ref().as_ref();
        match field {
            "name" => name = string(problems, field, value),
            "version" => version = string(problems, field, value),
            "description" => {
                string(problems, field, value);
            }
            "positive_label" => positive_label = string(problems, field, value),
            "input" => input = string(problems, field, value),
            "output" => output = string(problems, field, value),
            "model_sha256" => sha = string(problems, field, value),
            "labels" => labels = strings(problems, field, value),
            "features" => features = Some((value.span(), feature_list(problems, value))),
            "provenance" => provenance(problems, value),
            "metrics" => metrics(problems, value),
            other => problems.field(
                &key.span(),
                other,
                decode::unknown_field(
                    other,
                    CARD_FIELDS,
                    "see docs/bindings.md, \"onnx\", for an ONNX model's card",
                ),
            ),
        }
    }
    for (field, example) in [
        ("name", "name = \"<the model's name in the policy>\""),
        ("version", "version = \"2024.1\""),
        (
            "labels",
            "labels = [\"repay\", \"default\"], in the order of the model's output",
        ),
        (
            "model_sha256",
            "model_sha256 = \"<the SHA-256 of the .onnx file, hex>\"",
        ),
        (
            "features",
            "one [[features]] table per input column, in order, each with a name",
        ),
        (
            "provenance",
            "a [provenance] table with data, licence and trained",
        ),
    ] {
        if document.get(field).is_none() {
            problems.field(
                &(0..0),
                field,
                format!("required field is missing; add {example}"),
            );
        }
    }
    let labels = labels.map(|labels| check_labels(problems, labels));
    if let (Some(positive), Some(labels)) = (&positive_label, &labels)
        && !labels.contains(positive.get_ref())
    {
        problems.field(
            &positive.span(),
            "positive_label",
            format!(
                "{:?} is not one of the labels ({}); name one of them",
                positive.get_ref(),
                labels.join(", ")
            ),
        );
    }
    if let Some(sha) = &sha {
        let hex = sha.get_ref();
        if hex.len() != 64 || !hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) {
            problems.field(
                &sha.span(),
                "model_sha256",
                format!("{hex:?} is not a SHA-256: write the 64 lowercase hex digits of the model file's digest (sha256sum)"),
            );
        }
    }
    let text = problems.text;
    let place = |span: &Range<usize>| line_column(text, span.start);
    let (features_at, features) = features?;
    if features.is_empty() {
        problems.field(
            &features_at,
            "features",
            "an ONNX model needs at least one feature".into(),
        );
    }
    let places = Places {
        name: name
            .as_ref()
            .map_or((1, 1), |n: &Spanned<String>| place(&n.span())),
        features: features
            .first()
            .map_or_else(|| place(&features_at), |f| place(&f.at)),
        feature_names: features
            .iter()
            .map(|f| place(&f.name.as_ref().map_or(f.at.clone(), Spanned::span)))
            .collect(),
    };
    let sha = sha?;
    Some(OnnxCard {
        name: name?.into_inner(),
        version: version?.into_inner(),
        labels: labels?,
        positive_label: positive_label.map(Spanned::into_inner),
        input: input.map(Spanned::into_inner),
        output: output.map(Spanned::into_inner),
        model_sha256_at: place(&sha.span()),
        model_sha256: sha.into_inner(),
        features: features
            .into_iter()
            .map(|f| f.name.map(Spanned::into_inner))
            .collect::<Option<Vec<String>>>()?,
        places,
    })
}

/// Labels: at least two, none empty, none twice.
fn check_labels(problems: &mut Problems<'_>, labels: Vec<Spanned<String>>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    for (i, label) in labels.iter().enumerate() {
        if label.get_ref().is_empty() {
            problems.field(
                &label.span(),
                format!("labels[{i}]"),
                "must not be empty; name the class, such as \"repay\"".into(),
            );
        } else if !seen.insert(label.get_ref().as_str()) {
            problems.field(
                &label.span(),
                format!("labels[{i}]"),
                format!("label {:?} is listed twice; remove one", label.get_ref()),
            );
        }
    }
    if labels.len() < 2 {
        let at = labels.first().map_or(0..0, Spanned::span);
        problems.field(
            &at,
            "labels",
            "a classifier needs at least two labels, one per output column".into(),
        );
    }
    labels.into_iter().map(Spanned::into_inner).collect()
}

struct Feature {
    at: Range<usize>,
    name: Option<Spanned<String>>,
}

fn feature_list(problems: &mut Problems<'_>, value: &Spanned<DeValue<'_>>) -> Vec<Feature> {
    let DeValue::Array(list) = value.get_ref() else {
        problems.field(
            &value.span(),
            "features",
            format!(
                "expected a list of [[features]] tables, found {}",
                decode::describe(value.get_ref())
            ),
        );
        return Vec::new();
    };
    let mut features = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, item) in list.iter().enumerate() {
        let path = |name: &str| format!("features[{i}].{name}");
        let DeValue::Table(table) = item.get_ref() else {
            problems.field(
                &item.span(),
                format!("features[{i}]"),
                format!(
                    "expected a table with a name, found {}",
                    decode::describe(item.get_ref())
                ),
            );
            continue;
        };
        let mut feature = Feature {
            at: item.span(),
            name: None,
        };
        for (key, value) in table.iter() {
            let field = key.get_ref().as_ref();
            match field {
                "name" => feature.name = string(problems, &path(field), value),
                "description" | "source" => {
                    string(problems, &path(field), value);
                }
                other => problems.field(
                    &key.span(),
                    path(other),
                    decode::unknown_field(
                        other,
                        FEATURE_FIELDS,
                        "a feature of an ONNX model has a name, and optionally a description and its source in the training data",
                    ),
                ),
            }
        }
        match &feature.name {
            None if table.get("name").is_none() => problems.field(
                &item.span(),
                path("name"),
                "required field is missing; add name = \"debt_to_income\"".into(),
            ),
            Some(name) if name.get_ref().is_empty() => problems.field(
                &name.span(),
                path("name"),
                "must not be empty; name the feature the model is sent".into(),
            ),
            Some(name) if !seen.insert(name.get_ref().clone()) => problems.field(
                &name.span(),
                path("name"),
                format!("feature {:?} is listed twice; remove one", name.get_ref()),
            ),
            _ => {}
        }
        features.push(feature);
    }
    features
}

/// `[provenance]`: text fields, of which `data`, `licence` and `trained` are required.
fn provenance(problems: &mut Problems<'_>, value: &Spanned<DeValue<'_>>) {
    let DeValue::Table(table) = value.get_ref() else {
        problems.field(
            &value.span(),
            "provenance",
            format!(
                "expected a [provenance] table, found {}",
                decode::describe(value.get_ref())
            ),
        );
        return;
    };
    for (key, item) in table.iter() {
        let field = key.get_ref().as_ref();
        if PROVENANCE_FIELDS.contains(&field) {
            if let Some(text) = string(problems, &format!("provenance.{field}"), item)
                && text.get_ref().trim().is_empty()
            {
                problems.field(
                    &item.span(),
                    format!("provenance.{field}"),
                    "must not be empty".into(),
                );
            }
        } else {
            problems.field(
                &key.span(),
                format!("provenance.{field}"),
                decode::unknown_field(
                    field,
                    PROVENANCE_FIELDS,
                    "provenance says what data trained the model, under which licence, when, and how",
                ),
            );
        }
    }
    for (field, example) in [
        ("data", "data = \"<the data set the model was trained on>\""),
        (
            "licence",
            "licence = \"<the data set's licence, e.g. CC BY 4.0>\"",
        ),
        ("trained", "trained = \"<the training date, 2024-11-18>\""),
    ] {
        if table.get(field).is_none() {
            problems.field(
                &value.span(),
                format!("provenance.{field}"),
                format!("required field is missing; add {example}"),
            );
        }
    }
}

/// `[metrics]`: each a finite number.
fn metrics(problems: &mut Problems<'_>, value: &Spanned<DeValue<'_>>) {
    let DeValue::Table(table) = value.get_ref() else {
        problems.field(
            &value.span(),
            "metrics",
            format!(
                "expected a [metrics] table of numbers, found {}",
                decode::describe(value.get_ref())
            ),
        );
        return;
    };
    for (key, item) in table.iter() {
        match decode::number(item.get_ref()) {
            Some(number) if number.is_finite() => {}
            _ => problems.field(
                &item.span(),
                format!("metrics.{}", key.get_ref()),
                format!(
                    "expected a finite number, found {}",
                    decode::describe(item.get_ref())
                ),
            ),
        }
    }
}

fn strings(
    problems: &mut Problems<'_>,
    field: &str,
    value: &Spanned<DeValue<'_>>,
) -> Option<Vec<Spanned<String>>> {
    let DeValue::Array(items) = value.get_ref() else {
        problems.field(
            &value.span(),
            field,
            format!(
                "expected a list of strings, [\"...\", ...], found {}",
                decode::describe(value.get_ref())
            ),
        );
        return None;
    };
    let mut list = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(text) = string(problems, &format!("{field}[{i}]"), item) {
            list.push(text);
        }
    }
    Some(list)
}
