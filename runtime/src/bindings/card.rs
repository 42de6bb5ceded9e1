//! Reading a model card (TOML): every field with its position, every problem of the card
//! reported at once with its line and field, and the values checked together (finite
//! numbers, distinct labels, features named once, `min` not above `max`). The fields are
//! documented in `docs/bindings.md`, "Model cards".

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::Path;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::decode::{self, Problems};
use super::{BindingsError, line_column};

/// A card whose every field was read and checked.
#[derive(Debug)]
pub(super) struct Card {
    pub name: String,
    pub version: String,
    pub intercept: f64,
    pub positive_label: String,
    pub negative_label: String,
    pub features: Vec<Feature>,
    pub places: Places,
}

/// One feature of a card.
#[derive(Debug)]
pub(super) struct Feature {
    pub name: String,
    pub weight: f64,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Feature {
    /// The value held to the feature's `min` and `max`.
    pub(super) fn clamp(&self, x: f64) -> f64 {
        let x = match self.min {
            Some(min) if x < min => min,
            _ => x,
        };
        match self.max {
            Some(max) if x > max => max,
            _ => x,
        }
    }
}

/// Lines and columns (1-based) of a card's fields.
#[derive(Debug, Clone, Default)]
pub(super) struct Places {
    /// The `name` value.
    pub name: (usize, usize),
    /// The first `[[features]]` table (or the start of the file).
    pub features: (usize, usize),
    /// Each feature's `name` value, in the card's order.
    pub feature_names: Vec<(usize, usize)>,
}

/// The fields of a card, and of one of its features.
const CARD_FIELDS: &[&str] = &[
    "name",
    "version",
    "description",
    "intercept",
    "positive_label",
    "negative_label",
    "features",
];
const FEATURE_FIELDS: &[&str] = &["name", "weight", "min", "max", "description"];

/// A card as read, before its values are checked together.
#[derive(Default)]
struct Draft {
    name: Option<Spanned<String>>,
    version: Option<Spanned<String>>,
    intercept: Option<Spanned<f64>>,
    positive_label: Option<Spanned<String>>,
    negative_label: Option<Spanned<String>>,
    features: Vec<DraftFeature>,
    features_at: Option<Range<usize>>,
}

struct DraftFeature {
    at: Range<usize>,
    name: Option<Spanned<String>>,
    weight: Option<Spanned<f64>>,
    min: Option<Spanned<f64>>,
    max: Option<Spanned<f64>>,
}

/// Parses and checks `bytes`, the content of `path`; every problem at once, each with its
/// line and field.
pub(super) fn parse(path: &Path, bytes: &[u8]) -> Result<Card, Vec<BindingsError>> {
    let text = text(path, bytes)?;
    let document = decode::parse(path, text)?;
    let mut problems = Problems::new(path, text);
    let draft = read(document.get_ref(), &mut problems);
    let card = validate(draft, &mut problems);
    match card {
        Some(card) if problems.list.is_empty() => Ok(card),
        _ => Err(problems.list),
    }
}

/// The text of a model card (any provider's), or the problem that it is not UTF-8.
pub(super) fn text<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a str, Vec<BindingsError>> {
    std::str::from_utf8(bytes).map_err(|e| {
        vec![BindingsError::Field {
            path: path.to_path_buf(),
            line: 1,
            column: 1,
            field: String::new(),
            problem: format!("a model card is TOML text, and this file is not UTF-8: {e}"),
        }]
    })
}

/// Reads the card's fields, reporting unknown, missing and wrongly typed ones.
fn read(document: &DeTable<'_>, problems: &mut Problems<'_>) -> Draft {
    let mut draft = Draft::default();
    for (key, value) in document.iter() {
        let field = key.get_ref().as_ref();
        match field {
            "name" => draft.name = string(problems, field, value),
            "version" => draft.version = string(problems, field, value),
            "description" => {
                string(problems, field, value);
            }
            "positive_label" => draft.positive_label = string(problems, field, value),
            "negative_label" => draft.negative_label = string(problems, field, value),
            "intercept" => draft.intercept = number(problems, field, value),
            "features" => {
                draft.features_at = Some(value.span());
                match value.get_ref() {
                    DeValue::Array(list) => {
                        for (i, item) in list.iter().enumerate() {
                            if let Some(feature) = feature(problems, i, item) {
                                draft.features.push(feature);
                            }
                        }
                    }
                    other => problems.field(
                        &value.span(),
                        field,
                        format!(
                            "expected a list of [[features]] tables, found {}",
                            decode::describe(other)
                        ),
                    ),
                }
            }
            other => problems.field(
                &key.span(),
                other,
                decode::unknown_field(other, CARD_FIELDS, "see docs/bindings.md, \"Model cards\""),
            ),
        }
    }
    let missing = [
        (
            "name",
            draft.name.is_none(),
            "name = \"<the model's name in the policy>\"",
        ),
        ("version", draft.version.is_none(), "version = \"2024.1\""),
        (
            "intercept",
            draft.intercept.is_none(),
            "intercept = <a number>",
        ),
        (
            "positive_label",
            draft.positive_label.is_none(),
            "positive_label = \"default\"",
        ),
        (
            "negative_label",
            draft.negative_label.is_none(),
            "negative_label = \"repay\"",
        ),
        (
            "features",
            draft.features_at.is_none(),
            "one [[features]] table per feature, with name and weight",
        ),
    ];
    for (field, absent, example) in missing {
        if absent && document.get(field).is_none() {
            problems.field(
                &(0..0),
                field,
                format!("required field is missing; add {example}"),
            );
        }
    }
    draft
}

fn feature(
    problems: &mut Problems<'_>,
    i: usize,
    item: &Spanned<DeValue<'_>>,
) -> Option<DraftFeature> {
    let path = |name: &str| format!("features[{i}].{name}");
    let DeValue::Table(table) = item.get_ref() else {
        problems.field(
            &item.span(),
            format!("features[{i}]"),
            format!(
                "expected a table with name and weight, found {}",
                decode::describe(item.get_ref())
            ),
        );
        return None;
    };
    let mut feature = DraftFeature {
        at: item.span(),
        name: None,
        weight: None,
        min: None,
        max: None,
    };
    for (key, value) in table.iter() {
        let field = key.get_ref().as_ref();
        match field {
            "name" => feature.name = string(problems, &path(field), value),
            "weight" => feature.weight = number(problems, &path(field), value),
            "min" => feature.min = number(problems, &path(field), value),
            "max" => feature.max = number(problems, &path(field), value),
            "description" => {
                string(problems, &path(field), value);
            }
            other => problems.field(
                &key.span(),
                path(other),
                decode::unknown_field(
                    other,
                    FEATURE_FIELDS,
                    "a feature has name, weight, and optionally min, max and description",
                ),
            ),
        }
    }
    for (field, absent, example) in [
        (
            "name",
            feature.name.is_none() && table.get("name").is_none(),
            "name = \"debt_to_income\"",
        ),
        (
            "weight",
            feature.weight.is_none() && table.get("weight").is_none(),
            "weight = <a number>",
        ),
    ] {
        if absent {
            problems.field(
                &item.span(),
                path(field),
                format!("required field is missing; add {example}"),
            );
        }
    }
    Some(feature)
}

/// Checks the values together: finite numbers, labels, features; `None` if a required
/// field could not be read.
fn validate(draft: Draft, problems: &mut Problems<'_>) -> Option<Card> {
    let finite = |problems: &mut Problems<'_>, field: String, value: &Spanned<f64>| {
        if !value.get_ref().is_finite() {
            problems.field(
                &value.span(),
                field,
                format!("must be a finite number, found {}", value.get_ref()),
            );
        }
    };
    if let Some(intercept) = &draft.intercept {
        finite(problems, "intercept".into(), intercept);
    }
    for (field, label) in [
        ("positive_label", &draft.positive_label),
        ("negative_label", &draft.negative_label),
    ] {
        if let Some(label) = label
            && label.get_ref().is_empty()
        {
            problems.field(
                &label.span(),
                field,
                "must not be empty; name the label, such as \"repay\"".into(),
            );
        }
    }
    if let (Some(positive), Some(negative)) = (&draft.positive_label, &draft.negative_label)
        && positive.get_ref() == negative.get_ref()
        && !positive.get_ref().is_empty()
    {
        problems.field(
            &negative.span(),
            "negative_label",
            format!("must differ from positive_label {:?}", positive.get_ref()),
        );
    }
    if draft.features_at.is_some() && draft.features.is_empty() {
        let at = draft.features_at.clone().unwrap_or(0..0);
        problems.field(
            &at,
            "features",
            "a scorecard needs at least one feature".into(),
        );
    }
    let mut seen = BTreeSet::new();
    for (i, feature) in draft.features.iter().enumerate() {
        let field = |name: &str| format!("features[{i}].{name}");
        if let Some(name) = &feature.name {
            if name.get_ref().is_empty() {
                problems.field(
                    &name.span(),
                    field("name"),
                    "must not be empty; name the feature the model is sent".into(),
                );
            } else if !seen.insert(name.get_ref().as_str()) {
                problems.field(
                    &name.span(),
                    field("name"),
                    format!("feature {:?} is listed twice; remove one", name.get_ref()),
                );
            }
        }
        for (bound, value) in [
            ("weight", &feature.weight),
            ("min", &feature.min),
            ("max", &feature.max),
        ] {
            if let Some(value) = value {
                finite(problems, field(bound), value);
            }
        }
        if let (Some(min), Some(max)) = (&feature.min, &feature.max)
            && min.get_ref() > max.get_ref()
        {
            problems.field(
                &max.span(),
                field("max"),
                format!(
                    "{} is below min {}; swap them",
                    max.get_ref(),
                    min.get_ref()
                ),
            );
        }
    }
    let text = problems.text;
    let place = |span: &Range<usize>| line_column(text, span.start);
    let places = Places {
        name: draft.name.as_ref().map_or((1, 1), |n| place(&n.span())),
        features: draft
            .features
            .first()
            .map(|f| place(&f.at))
            .or_else(|| draft.features_at.as_ref().map(place))
            .unwrap_or((1, 1)),
        feature_names: draft
            .features
            .iter()
            .map(|f| place(&f.name.as_ref().map_or(f.at.clone(), Spanned::span)))
            .collect(),
    };
    let mut features = Vec::new();
    for feature in draft.features {
        features.push(Feature {
            name: feature.name?.into_inner(),
            weight: feature.weight?.into_inner(),
            min: feature.min.map(Spanned::into_inner),
            max: feature.max.map(Spanned::into_inner),
        });
    }
    Some(Card {
        name: draft.name?.into_inner(),
        version: draft.version?.into_inner(),
        intercept: draft.intercept?.into_inner(),
        positive_label: draft.positive_label?.into_inner(),
        negative_label: draft.negative_label?.into_inner(),
        features,
        places,
    })
}

/// A string field of a card, or a problem naming the field.
pub(super) fn string(
    problems: &mut Problems<'_>,
    field: &str,
    value: &Spanned<DeValue<'_>>,
) -> Option<Spanned<String>> {
    match value.get_ref() {
        DeValue::String(text) => Some(Spanned::new(value.span(), text.to_string())),
        other => {
            problems.field(
                &value.span(),
                field,
                format!(
                    "expected a string in quotes, found {}",
                    decode::describe(other)
                ),
            );
            None
        }
    }
}

fn number(
    problems: &mut Problems<'_>,
    field: &str,
    value: &Spanned<DeValue<'_>>,
) -> Option<Spanned<f64>> {
    match decode::number(value.get_ref()) {
        Some(number) => Some(Spanned::new(value.span(), number)),
        None => {
            problems.field(
                &value.span(),
                field,
                format!(
                    "expected a number, found {}",
                    decode::describe(value.get_ref())
                ),
            );
            None
        }
    }
}
