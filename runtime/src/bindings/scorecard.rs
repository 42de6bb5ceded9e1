//! The scorecard model provider: a logistic-regression scorecard read from TOML.
//!
//! Invariant: an answer is a pure function of the scorecard file and the features, bit
//! for bit: plain `f64` operations in the file's feature order, no fused multiply-add, no
//! parallel sum, so the same request gives the same probability on every host.
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

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use warden_guest::{CallError, CallErrorKind};

use super::{BindingsError, ModelAnswer, call_error, toml_error};

/// A validated scorecard: z = intercept + Σ weightᵢ · clamp(xᵢ), p = 1 / (1 + e⁻ᶻ).
#[derive(Debug)]
pub(super) struct Scorecard {
    name: String,
    version: String,
    intercept: f64,
    positive_label: String,
    negative_label: String,
    features: Vec<Feature>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Feature {
    name: String,
    weight: f64,
    #[serde(default)]
    min: Option<f64>,
    #[serde(default)]
    max: Option<f64>,
    #[serde(default, rename = "description")]
    _description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScorecardFile {
    name: String,
    version: String,
    #[serde(default, rename = "description")]
    _description: Option<String>,
    intercept: f64,
    positive_label: String,
    negative_label: String,
    features: Vec<Feature>,
}

/// The value of an answer, serialized in this field order.
#[derive(Serialize)]
struct Score<'a> {
    probability: f64,
    label: &'a str,
    score: f64,
}

impl Feature {
    fn clamp(&self, x: f64) -> f64 {
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

impl Scorecard {
    /// Parses and validates `bytes`, the content of `path`.
    pub(super) fn parse(path: &Path, bytes: &[u8]) -> Result<Scorecard, BindingsError> {
        let invalid = |field: String, problem: String| BindingsError::Scorecard {
            path: path.to_path_buf(),
            field,
            problem,
        };
        let text = std::str::from_utf8(bytes)
            .map_err(|e| invalid("(file)".into(), format!("not UTF-8: {e}")))?;
        let file: ScorecardFile = toml::from_str(text).map_err(|e| toml_error(path, text, &e))?;
        let finite = |field: String, value: f64| {
            if value.is_finite() {
                Ok(())
            } else {
                Err(invalid(
                    field,
                    format!("must be a finite number, found {value}"),
                ))
            }
        };
        finite("intercept".into(), file.intercept)?;
        for (field, label) in [
            ("positive_label", &file.positive_label),
            ("negative_label", &file.negative_label),
        ] {
            if label.is_empty() {
                return Err(invalid(field.into(), "must not be empty".into()));
            }
        }
        if file.positive_label == file.negative_label {
            return Err(invalid(
                "negative_label".into(),
                format!("must differ from positive_label {:?}", file.positive_label),
            ));
        }
        if file.features.is_empty() {
            return Err(invalid(
                "features".into(),
                "a scorecard needs at least one feature".into(),
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, feature) in file.features.iter().enumerate() {
            let field = |name: &str| format!("features[{i}].{name}");
            if feature.name.is_empty() {
                return Err(invalid(field("name"), "must not be empty".into()));
            }
            if !seen.insert(feature.name.as_str()) {
                return Err(invalid(
                    field("name"),
                    format!("feature {:?} is listed twice", feature.name),
                ));
            }
            finite(field("weight"), feature.weight)?;
            if let Some(min) = feature.min {
                finite(field("min"), min)?;
            }
            if let Some(max) = feature.max {
                finite(field("max"), max)?;
            }
            if let (Some(min), Some(max)) = (feature.min, feature.max)
                && min > max
            {
                return Err(invalid(field("max"), format!("{max} is below min {min}")));
            }
        }
        Ok(Scorecard {
            name: file.name,
            version: file.version,
            intercept: file.intercept,
            positive_label: file.positive_label,
            negative_label: file.negative_label,
            features: file.features,
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
    fn a_broken_scorecard_names_the_field() {
        let cases = [
            (
                PD.replace("weight = 3.0", "weight = nan"),
                "features[0].weight",
            ),
            (PD.replace("max = 1.0", "max = -1.0"), "features[0].max"),
            (
                PD.replace("delinquencies_24m", "debt_to_income"),
                "features[1].name",
            ),
            (
                PD.replace("negative_label = \"repay\"", "negative_label = \"default\""),
                "negative_label",
            ),
        ];
        for (text, field) in cases {
            let error = Scorecard::parse(Path::new("pd.toml"), text.as_bytes()).expect_err(field);
            assert!(
                error.to_string().starts_with(&format!("pd.toml: {field}")),
                "{error}"
            );
        }
        let error = Scorecard::parse(Path::new("pd.toml"), b"name = \"x\"\nintercept = \"a\"\n")
            .expect_err("syntax");
        assert!(error.to_string().starts_with("pd.toml:2:"), "{error}");
    }
}
