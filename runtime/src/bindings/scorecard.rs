//! The scorecard model provider: a logistic-regression scorecard read from TOML.
//!
//! Invariant: an answer is a pure function of the scorecard file and the features, bit
//! for bit: plain `f64` operations in the file's feature order, no fused multiply-add, no
//! parallel sum, so the same request gives the same probability on every host.
//!
//! The answer's value is `{"probability": p, "label": ..., "score": z}`: p the
//! probability of `positive_label`, `label` the predicted one (positive if p >= 0.5), z
//! the log-odds before the logistic function. The confidence beside it is the probability
//! of the predicted label; gates compare the probability of their own label
//! (`docs/bindings.md`, "scorecard"). The card is read by `card`.
//!
//! ```toml
//! name = "pd_scorecard"
//! version = "2024.1"
//! intercept = -3.1
//! positive_label = "default"
//! negative_label = "repay"
//!
//! [[features]]
//! name = "debt_to_income"
//! weight = 4.0
//! min = 0.0          # optional clamps, applied to the input before weighting
//! max = 1.0
//! ```

use std::path::Path;

use serde::Serialize;
use serde_json::Value;
use warden_guest::{CallError, CallErrorKind};

use super::card::{self, Card, Feature, Places};
use super::{BindingsError, ModelAnswer, call_error};

/// A validated scorecard: z = intercept + Σ weightᵢ · clamp(xᵢ), p = 1 / (1 + e⁻ᶻ).
#[derive(Debug)]
pub(super) struct Scorecard {
    name: String,
    version: String,
    intercept: f64,
    positive_label: String,
    negative_label: String,
    features: Vec<Feature>,
    /// Where things are written in the card, for messages that point into it.
    places: Places,
}

/// The value of an answer, serialized in this field order.
#[derive(Serialize)]
struct Score<'a> {
    probability: f64,
    label: &'a str,
    score: f64,
}

impl Scorecard {
    /// Parses and validates `bytes`, the content of `path`; every problem at once, each
    /// with its line and field.
    pub(super) fn parse(path: &Path, bytes: &[u8]) -> Result<Scorecard, Vec<BindingsError>> {
        let Card {
            name,
            version,
            intercept,
            positive_label,
            negative_label,
            features,
            places,
        } = card::parse(path, bytes)?;
        Ok(Scorecard {
            name,
            version,
            intercept,
            positive_label,
            negative_label,
            features,
            places,
        })
    }

    /// Scores a JSON object holding exactly the scorecard's features, as finite numbers.
    pub(super) fn infer(&self, features_json: &str) -> Result<ModelAnswer, CallError> {
        let invalid = |message: String| {
            call_error(
                CallErrorKind::InvalidArguments,
                format!("scorecard {:?}: {message}", self.name),
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
            .filter(|name| !self.features.iter().any(|f| f.name == *name))
            .collect();
        if !extra.is_empty() {
            return Err(invalid(format!("unknown features: {}", extra.join(", "))));
        }
        let mut z = self.intercept;
        for feature in &self.features {
            let x = match given.get(&feature.name) {
                None => return Err(invalid(format!("missing feature {:?}", feature.name))),
                Some(value) => match value.as_f64() {
                    Some(x) if x.is_finite() => x,
                    _ => {
                        return Err(invalid(format!(
                            "feature {:?} must be a finite number, got {value}",
                            feature.name
                        )));
                    }
                },
            };
            z += feature.weight * feature.clamp(x);
        }
        if !z.is_finite() {
            return Err(invalid(format!(
                "the features drive the score out of range ({z})"
            )));
        }
        let p = 1.0 / (1.0 + (-z).exp());
        let (label, confidence) = if p >= 0.5 {
            (&self.positive_label, p)
        } else {
            (&self.negative_label, 1.0 - p)
        };
        let value = serde_json::to_string(&Score {
            probability: p,
            label,
            score: z,
        })
        .map_err(|e| call_error(CallErrorKind::Unavailable, e.to_string()))?;
        Ok(ModelAnswer {
            value,
            confidence,
            label: label.clone(),
            probabilities: vec![
                (self.positive_label.clone(), p),
                (self.negative_label.clone(), 1.0 - p),
            ],
        })
    }

    /// The card's version.
    pub(super) fn version(&self) -> &str {
        &self.version
    }

    /// The labels it gives a probability for: positive, then negative.
    pub(super) fn labels(&self) -> Vec<String> {
        vec![self.positive_label.clone(), self.negative_label.clone()]
    }

    /// The card's own `name`.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// The names of its features, in the card's order.
    pub(super) fn features(&self) -> Vec<String> {
        self.features.iter().map(|f| f.name.clone()).collect()
    }

    /// Where its fields are written.
    pub(super) fn places(&self) -> &Places {
        &self.places
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PD: &str = r#"
name = "pd_scorecard"
version = "test"
intercept = -2.0
positive_label = "default"
negative_label = "repay"

[[features]]
name = "debt_to_income"
weight = 3.0
min = 0.0
max = 1.0

[[features]]
name = "delinquencies_24m"
weight = 0.5
max = 4.0
"#;

    fn scorecard() -> Scorecard {
        Scorecard::parse(Path::new("pd.toml"), PD.as_bytes()).expect("parse")
    }

    fn value(answer: &ModelAnswer) -> Value {
        serde_json::from_str(&answer.value).expect("value is JSON")
    }

    #[test]
    fn scores_a_known_case() {
        // z = -2 + 3 * 0.4 + 0.5 * 1 = -0.3; p = 1 / (1 + e^0.3) = 0.425557483188341...
        let answer = scorecard()
            .infer(r#"{"debt_to_income": 0.4, "delinquencies_24m": 1}"#)
            .expect("infer");
        let z = -2.0 + 3.0 * 0.4 + 0.5 * 1.0;
        let p = 1.0 / (1.0 + f64::exp(0.3));
        assert!((p - 0.425_557_483_188_341).abs() < 1e-12);
        let value = value(&answer);
        assert_eq!(value["score"].as_f64(), Some(z));
        assert_eq!(
            value["probability"].as_f64(),
            Some(1.0 / (1.0 + (-z).exp()))
        );
        assert_eq!(value["label"], "repay");
        assert!((answer.confidence - (1.0 - p)).abs() < 1e-15);
        assert!(
            answer.value.starts_with(r#"{"probability":0.4255"#),
            "{}",
            answer.value
        );
    }

    #[test]
    fn the_positive_label_carries_its_own_probability_as_confidence() {
        // z = -2 + 3 * 1 + 0.5 * 2 = 2; p = 0.8807970779778823.
        let answer = scorecard()
            .infer(r#"{"debt_to_income": 1.0, "delinquencies_24m": 2}"#)
            .expect("infer");
        assert_eq!(value(&answer)["label"], "default");
        assert!((answer.confidence - 0.880_797_077_977_882_3).abs() < 1e-15);
    }

    #[test]
    fn inputs_are_clamped_before_weighting() {
        let clamped = scorecard()
            .infer(r#"{"debt_to_income": 7.5, "delinquencies_24m": 40}"#)
            .expect("infer");
        let at_bounds = scorecard()
            .infer(r#"{"debt_to_income": 1.0, "delinquencies_24m": 4}"#)
            .expect("infer");
        assert_eq!(clamped, at_bounds);
        assert_eq!(value(&clamped)["score"].as_f64(), Some(3.0));
        let below = scorecard()
            .infer(r#"{"debt_to_income": -3, "delinquencies_24m": 0}"#)
            .expect("infer");
        assert_eq!(value(&below)["score"].as_f64(), Some(-2.0));
    }

    #[test]
    fn answers_are_deterministic() {
        let features = r#"{"debt_to_income": 0.337, "delinquencies_24m": 1}"#;
        assert_eq!(scorecard().infer(features), scorecard().infer(features));
    }

    #[test]
    fn missing_extra_and_non_finite_features_are_invalid_and_named() {
        let cases = [
            (
                r#"{"debt_to_income": 0.4}"#,
                "missing feature \"delinquencies_24m\"",
            ),
            (
                r#"{"debt_to_income": 0.4, "delinquencies_24m": 0, "zip": 1, "age": 3}"#,
                "unknown features: age, zip",
            ),
            (
                r#"{"debt_to_income": null, "delinquencies_24m": 0}"#,
                "feature \"debt_to_income\" must be a finite number, got null",
            ),
            (
                r#"{"debt_to_income": "0.4", "delinquencies_24m": 0}"#,
                "feature \"debt_to_income\" must be a finite number",
            ),
            (
                r#"{"debt_to_income": 1e999, "delinquencies_24m": 0}"#,
                "not valid JSON",
            ),
            ("[0.4, 1]", "must be a JSON object"),
        ];
        for (features, expected) in cases {
            let error = scorecard().infer(features).expect_err(features);
            assert_eq!(error.kind, CallErrorKind::InvalidArguments, "{features}");
            assert!(error.message.contains(expected), "{}", error.message);
        }
    }

    #[test]
    fn a_broken_scorecard_names_the_field_and_line() {
        let cases = [
            (
                PD.replace("weight = 3.0", "weight = nan"),
                "pd.toml:10:10: features[0].weight",
            ),
            (
                PD.replace("max = 1.0", "max = -1.0"),
                "pd.toml:12:7: features[0].max",
            ),
            (
                PD.replace("delinquencies_24m", "debt_to_income"),
                "pd.toml:15:8: features[1].name",
            ),
            (
                PD.replace("negative_label = \"repay\"", "negative_label = \"default\""),
                "pd.toml:6:18: negative_label",
            ),
            (
                PD.replace("weight = 0.5", "wieght = 0.5"),
                "pd.toml:16:1: features[1].wieght",
            ),
        ];
        for (text, place) in cases {
            let errors = Scorecard::parse(Path::new("pd.toml"), text.as_bytes()).expect_err(place);
            assert!(
                errors.iter().any(|e| e.to_string().starts_with(place)),
                "{place}: {errors:?}"
            );
        }
        let errors = Scorecard::parse(Path::new("pd.toml"), b"name = \"x\"\nintercept = \"a\"\n")
            .expect_err("types");
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            messages
                .iter()
                .any(|m| m.starts_with("pd.toml:2:13: intercept: expected a number")),
            "{messages:?}"
        );
    }

    /// Issue #18: a card stopped at its first mistake; now every one is listed.
    #[test]
    fn every_problem_of_a_card_is_reported_at_once() {
        let text = PD
            .replace("version = \"test\"\n", "")
            .replace("weight = 3.0", "weight = \"high\"")
            .replace("max = 4.0", "max = 4.0\nunit = \"count\"");
        let errors = Scorecard::parse(Path::new("pd.toml"), text.as_bytes()).expect_err("broken");
        let fields: Vec<String> = errors
            .iter()
            .map(|e| match e {
                BindingsError::Field { field, .. } => field.clone(),
                other => panic!("{other}"),
            })
            .collect();
        assert_eq!(
            fields,
            ["features[0].weight", "features[1].unit", "version"]
        );
        assert!(
            errors[1]
                .to_string()
                .contains("remove it or correct its spelling"),
            "{}",
            errors[1]
        );
    }
}
