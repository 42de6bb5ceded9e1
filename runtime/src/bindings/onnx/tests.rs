//! The onnx provider against the model the loan example ships, and against small models
//! built here (protobuf, from source) that are wrong in one way each.

use std::path::Path;

use prost::Message as _;
use tract_onnx::pb;

use super::*;

const SHIPPED: &[u8] =
    include_bytes!("../../../../examples/loan-underwriting/models/pd_german_credit.onnx");
const SHIPPED_CARD: &str =
    include_str!("../../../../examples/loan-underwriting/models/pd_german_credit.toml");
const REFERENCE: &str =
    include_str!("../../../../examples/loan-underwriting/models/pd_german_credit.reference.json");

fn shipped() -> OnnxModel {
    OnnxModel::load(
        Path::new("models/pd.onnx"),
        SHIPPED,
        Path::new("models/pd.toml"),
        SHIPPED_CARD.as_bytes(),
    )
    .expect("the shipped model loads")
}

/// What a small test model is like.
struct Shape {
    /// Columns of the input, `None` for a symbolic width.
    width: Option<i64>,
    /// Columns of the output.
    classes: usize,
    /// Ends in Softmax (probabilities) or not (logits).
    softmax: bool,
    /// An extra leading dimension on the input (rank 3).
    rank3: bool,
    /// A second input.
    two_inputs: bool,
    /// The input's element type (ONNX code: 1 float, 7 int64).
    elem_type: i32,
}

const GOOD: Shape = Shape {
    width: Some(2),
    classes: 2,
    softmax: true,
    rank3: false,
    two_inputs: false,
    elem_type: 1,
};

fn value_info(name: &str, elem_type: i32, dims: &[Option<i64>]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension::Value as Dim};
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type,
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| Dimension {
                            value: Some(match d {
                                Some(n) => Dim::DimValue(*n),
                                None => Dim::DimParam("N".into()),
                            }),
                            ..Dimension::default()
                        })
                        .collect(),
                }),
            })),
            ..pb::TypeProto::default()
        }),
        ..pb::ValueInfoProto::default()
    }
}

fn floats(name: &str, dims: &[i64], values: Vec<f32>) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: 1,
        float_data: values,
        ..pb::TensorProto::default()
    }
}

fn node(op: &str, inputs: &[&str], output: &str) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.into(),
        input: inputs.iter().map(|i| (*i).into()).collect(),
        output: vec![output.into()],
        ..pb::NodeProto::default()
    }
}

/// features [N, width] -> MatMul -> Add -> (Softmax) -> probabilities [N, classes].
fn build(shape: &Shape) -> Vec<u8> {
    let width = shape.width.unwrap_or(2);
    let classes = shape.classes as i64;
    let weights: Vec<f32> = (0..width * classes)
        .map(|i| (i as f32 - 1.5) * 0.7)
        .collect();
    let mut input_dims = vec![None, shape.width];
    if shape.rank3 {
        input_dims.insert(0, Some(1));
    }
    let mut inputs = vec![value_info("features", shape.elem_type, &input_dims)];
    if shape.two_inputs {
        inputs.push(value_info("extra", 1, &[None, Some(1)]));
    }
    let mut nodes = vec![
        node("MatMul", &["features", "weights"], "product"),
        node("Add", &["product", "bias"], "logits"),
    ];
    let mut out = "logits";
    if shape.softmax {
        let mut softmax = node("Softmax", &["logits"], "probabilities");
        softmax.attribute.push(pb::AttributeProto {
            name: "axis".into(),
            r#type: 2,
            i: 1,
            ..pb::AttributeProto::default()
        });
        nodes.push(softmax);
        out = "probabilities";
    }
    let graph = pb::GraphProto {
        name: "test".into(),
        node: nodes,
        initializer: vec![
            floats("weights", &[width, classes], weights),
            floats("bias", &[classes], vec![0.25; shape.classes]),
        ],
        input: inputs,
        output: vec![value_info(out, 1, &[None, Some(classes)])],
        ..pb::GraphProto::default()
    };
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(graph),
        ..pb::ModelProto::default()
    }
    .encode_to_vec()
}

fn card_for(model: &[u8], labels: &str, features: &[&str]) -> String {
    let mut card = format!(
        "name = \"risk\"\nversion = \"t1\"\nlabels = {labels}\nmodel_sha256 = \"{}\"\n",
        hex(&Sha256::digest(model))
    );
    for feature in features {
        card.push_str(&format!("\n[[features]]\nname = \"{feature}\"\n"));
    }
    card.push_str(
        "\n[provenance]\ndata = \"made up\"\nlicence = \"CC0\"\ntrained = \"2024-01-01\"\n",
    );
    card
}

fn load(model: &[u8], card: &str) -> Result<OnnxModel, Vec<BindingsError>> {
    OnnxModel::load(
        Path::new("m/risk.onnx"),
        model,
        Path::new("m/risk.toml"),
        card.as_bytes(),
    )
}

fn refusal(model: &[u8], card: &str) -> String {
    let errors = load(model, card).expect_err("refused");
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_shipped_model_gives_the_probabilities_training_recorded() {
    let model = shipped();
    let references: Vec<Value> = serde_json::from_str(REFERENCE).expect("reference JSON");
    assert!(references.len() >= 5);
    for reference in references {
        let answer = model
            .infer(&reference["features"].to_string())
            .expect("infer");
        for (label, p) in &answer.probabilities {
            let recorded = reference["probabilities"][label]
                .as_f64()
                .expect("recorded");
            assert!(
                (p - recorded).abs() < 1e-6,
                "{label}: tract {p}, onnxruntime {recorded}, features {}",
                reference["features"]
            );
        }
    }
}

#[test]
fn the_answer_gives_every_label_in_card_order_and_the_positive_probability() {
    let answer = shipped()
        .infer(
            r#"{"debt_to_income": 0.9, "payment_to_income": 0.4, "revolving_utilization": 1.0,
                "delinquencies_24m": 1, "credit_score_scaled": 0, "employment_years": 0}"#,
        )
        .expect("infer");
    let labels: Vec<&str> = answer
        .probabilities
        .iter()
        .map(|(l, _)| l.as_str())
        .collect();
    assert_eq!(labels, ["repay", "default"]);
    let sum: f64 = answer.probabilities.iter().map(|(_, p)| p).sum();
    assert!((sum - 1.0).abs() < 1e-6, "{sum}");
    let default = answer.probabilities[1].1;
    assert!(default > 0.5, "a risky row: {default}");
    assert_eq!(answer.label, "default");
    assert_eq!(answer.confidence, default);
    assert!(
        answer.value.starts_with(&format!(
            "{{\"probability\":{default},\"label\":\"default\",\"probabilities\":{{\"repay\":"
        )),
        "{}",
        answer.value
    );
    let value: Value = serde_json::from_str(&answer.value).expect("JSON");
    assert_eq!(value["probabilities"]["default"].as_f64(), Some(default));
}

#[test]
fn answers_are_deterministic() {
    let features = r#"{"debt_to_income": 0.3, "payment_to_income": 0.1, "revolving_utilization": 0.4,
        "delinquencies_24m": 0, "credit_score_scaled": 0.5, "employment_years": 3}"#;
    assert_eq!(shipped().infer(features), shipped().infer(features));
}

#[test]
fn features_must_be_exactly_the_cards_as_finite_float32_numbers() {
    let model = build(&GOOD);
    let model = load(&model, &card_for(&model, r#"["low", "high"]"#, &["a", "b"])).expect("load");
    assert_eq!(model.features(), ["a", "b"]);
    model.infer(r#"{"a": 1, "b": -2.5}"#).expect("good row");
    for (features, expected) in [
        (r#"{"a": 1}"#, "missing feature \"b\""),
        (r#"{"a": 1, "b": 2, "c": 3}"#, "unknown features: c"),
        (
            r#"{"a": "1", "b": 2}"#,
            "feature \"a\" must be a finite number",
        ),
        (r#"{"a": 1e300, "b": 2}"#, "within float32 range"),
        ("[1, 2]", "must be a JSON object"),
    ] {
        let error = model.infer(features).expect_err(features);
        assert_eq!(error.kind, CallErrorKind::InvalidArguments, "{features}");
        assert!(error.message.contains(expected), "{}", error.message);
    }
}

#[test]
fn a_file_that_is_not_onnx_is_refused_naming_it() {
    let junk = b"name = \"not a model\"\n";
    let text = refusal(junk, &card_for(junk, r#"["low", "high"]"#, &["a", "b"]));
    assert!(
        text.starts_with("m/risk.onnx: not an ONNX model Warden can read"),
        "{text}"
    );
}

#[test]
fn a_model_whose_width_is_not_the_cards_feature_count_is_refused() {
    let model = build(&GOOD);
    let text = refusal(
        &model,
        &card_for(&model, r#"["low", "high"]"#, &["a", "b", "c"]),
    );
    assert!(
        text.starts_with("m/risk.onnx: feature count mismatch: the model's input \"features\" takes 2 values per row, but its card lists 3 features (a, b, c)"),
        "{text}"
    );
}

#[test]
fn a_model_of_symbolic_width_is_held_to_the_cards_width() {
    let model = build(&Shape {
        width: None,
        ..GOOD
    });
    load(&model, &card_for(&model, r#"["low", "high"]"#, &["a", "b"])).expect("width 2 fits");
    let text = refusal(
        &model,
        &card_for(&model, r#"["low", "high"]"#, &["a", "b", "c"]),
    );
    assert!(text.starts_with("m/risk.onnx: wrong input shape"), "{text}");
}

#[test]
fn logits_are_not_probabilities() {
    let model = build(&Shape {
        softmax: false,
        ..GOOD
    });
    let text = refusal(&model, &card_for(&model, r#"["low", "high"]"#, &["a", "b"]));
    assert!(
        text.starts_with("m/risk.onnx: output is not probabilities: it gave ["),
        "{text}"
    );
    assert!(text.contains("needs a Softmax"), "{text}");
}

#[test]
fn an_output_with_another_number_of_classes_is_refused() {
    let model = build(&Shape { classes: 3, ..GOOD });
    let text = refusal(&model, &card_for(&model, r#"["low", "high"]"#, &["a", "b"]));
    assert!(
        text.starts_with("m/risk.onnx: output is not probabilities: it is F32 of shape 1,3"),
        "{text}"
    );
    assert!(
        text.contains("float [1, 2], one probability per label (low, high)"),
        "{text}"
    );
}

#[test]
fn wrong_inputs_are_refused_each_for_what_is_wrong() {
    for (shape, expected) in [
        (
            Shape {
                two_inputs: true,
                ..GOOD
            },
            "wrong inputs: the model takes 2 inputs (features, extra)",
        ),
        (
            Shape {
                rank3: true,
                ..GOOD
            },
            "wrong input shape: the model's input \"features\" has 3 dimensions",
        ),
        (
            Shape {
                elem_type: 7,
                ..GOOD
            },
            "wrong input type: the model's input \"features\" is I64",
        ),
    ] {
        let model = build(&shape);
        let text = refusal(&model, &card_for(&model, r#"["low", "high"]"#, &["a", "b"]));
        assert!(
            text.starts_with(&format!("m/risk.onnx: {expected}")),
            "{text}"
        );
    }
}

#[test]
fn a_model_file_that_is_not_the_one_its_card_pins_is_refused() {
    let model = build(&GOOD);
    let card = card_for(&model, r#"["low", "high"]"#, &["a", "b"]);
    let mut altered = model.clone();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    let text = refusal(&altered, &card);
    assert!(
        text.starts_with("m/risk.toml:4:16: model_sha256: m/risk.onnx has SHA-256 "),
        "{text}"
    );
    assert!(text.contains("not the one the card describes"), "{text}");
}

#[test]
fn the_cards_input_and_output_names_must_be_the_models() {
    let model = build(&GOOD);
    let card = card_for(&model, r#"["low", "high"]"#, &["a", "b"]);
    let text = refusal(&model, &card.replace("labels", "input = \"x\"\nlabels"));
    assert!(
        text.contains("the model's input is named \"features\", but its card says \"x\""),
        "{text}"
    );
    let text = refusal(
        &model,
        &card.replace("labels", "output = \"scores\"\nlabels"),
    );
    assert!(
        text.contains(
            "the card's output \"scores\" is not an output of the model (it has probabilities)"
        ),
        "{text}"
    );
    load(
        &model,
        &card.replace(
            "labels",
            "input = \"features\"\noutput = \"probabilities\"\nlabels",
        ),
    )
    .expect("the right names");
}

#[test]
fn every_problem_of_a_card_is_reported_at_once_with_line_and_field() {
    let model = build(&GOOD);
    let card = card_for(&model, r#"["low", "low"]"#, &["a", "a"])
        .replace("version = \"t1\"\n", "")
        .replace("licence = \"CC0\"\n", "")
        .replace(
            "model_sha256 = \"",
            "positive_label = \"high!\"\nmodel_sha256 = \"Z",
        )
        + "\n[metrics]\nauc = \"good\"\n";
    let text = refusal(&model, &card);
    for expected in [
        "m/risk.toml:2:18: labels[1]: label \"low\" is listed twice",
        "m/risk.toml:3:18: positive_label: \"high!\" is not one of the labels",
        "m/risk.toml:4:16: model_sha256: \"Z",
        "features[1].name: feature \"a\" is listed twice",
        "provenance.licence: required field is missing",
        "metrics.auc: expected a finite number, found a string",
        "m/risk.toml:1:1: version: required field is missing",
    ] {
        assert!(text.contains(expected), "{expected}\n{text}");
    }
    let text = refusal(
        &model,
        &card_for(&model, r#"["low", "high"]"#, &["a", "b"])
            .replace("labels", "lables = 1\nlabels"),
    );
    assert!(
        text.contains("lables: unknown field `lables`; did you mean `labels`?"),
        "{text}"
    );
}

/// A deployment directory with a small model bound as `risk`; returns the bindings file.
fn deployment(dir: &Path, bindings: &str) -> std::path::PathBuf {
    let model = build(&GOOD);
    std::fs::create_dir_all(dir.join("m")).expect("dir");
    std::fs::write(dir.join("m/risk.onnx"), &model).expect("model");
    std::fs::write(
        dir.join("m/risk.toml"),
        card_for(&model, r#"["low", "high"]"#, &["a", "b"]),
    )
    .expect("card");
    let path = dir.join("bindings.toml");
    std::fs::write(&path, bindings).expect("bindings");
    path
}

const BOUND: &str =
    "[models.risk]\nprovider = \"onnx\"\nfile = \"m/risk.onnx\"\ncard = \"m/risk.toml\"\n";

#[test]
fn a_bound_onnx_model_answers_and_records_its_card() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bindings = super::super::Bindings::from_file(&deployment(dir.path(), BOUND)).expect("load");
    assert_eq!(bindings.labels("risk"), ["low", "high"]);
    assert_eq!(bindings.features("risk"), ["a", "b"]);
    let card_bytes = std::fs::read(dir.path().join("m/risk.toml")).expect("card");
    let card = bindings.card("risk").expect("card");
    assert_eq!(card.provider, "onnx");
    assert_eq!(card.version, "t1");
    assert_eq!(
        card.card,
        crate::digest::Digest::of(crate::digest::domain::BLOB, &card_bytes)
    );
    assert_eq!(bindings.cards()[0].1, card_bytes.as_slice());
    let answer = bindings
        .infer("risk", r#"{"a": 0.5, "b": 1}"#)
        .expect("infer");
    assert_eq!(answer.probabilities.len(), 2);
    let (path, places) = bindings.card_places("risk").expect("places");
    assert!(path.ends_with("m/risk.toml"));
    assert_eq!(places.feature_names.len(), 2);
}

#[test]
fn the_bindings_digest_covers_the_card_and_the_model_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = deployment(dir.path(), BOUND);
    let read = |name: &str| std::fs::read(dir.path().join(name)).expect("file");
    let expected = super::super::hash_of(
        BOUND,
        &[
            ("models", "risk".into(), read("m/risk.toml")),
            ("models", "risk".into(), read("m/risk.onnx")),
        ],
    );
    let bindings = super::super::Bindings::from_file(&path).expect("load");
    assert_eq!(bindings.hash(), expected);
    let card_only = super::super::hash_of(BOUND, &[("models", "risk".into(), read("m/risk.toml"))]);
    assert_ne!(bindings.hash(), card_only);
}

#[test]
fn binding_errors_name_the_bindings_file_the_entry_and_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            BOUND.replace("card = \"m/risk.toml\"\n", ""),
            "bindings.toml:1:9: models.risk.card: required field is missing for provider \"onnx\"; add card = ",
        ),
        (
            BOUND.replace("m/risk.toml", "../risk.toml"),
            "bindings.toml:4:8: models.risk.card: \"../risk.toml\" climbs out of the directory",
        ),
        (
            BOUND.replace("m/risk.onnx", "m/gone.onnx"),
            "bindings.toml:3:8: models.risk.file: cannot read ",
        ),
        (
            BOUND.replace("[models.risk]", "[models.pd]"),
            "m/risk.toml:1:8: name: the card is named \"risk\", but ",
        ),
        (
            BOUND.replace("card = ", "key = \"id\"\ncard = "),
            "bindings.toml:4:7: models.risk.key: provider \"onnx\" takes no `key`",
        ),
    ];
    for (text, expected) in cases {
        let path = deployment(dir.path(), &text);
        let error = super::super::Bindings::from_file(&path).expect_err(expected);
        let message = error.to_string();
        let shown = message.replace(&format!("{}/", dir.path().display()), "");
        assert!(shown.contains(expected), "{expected}\n{shown}");
    }
    // A misspelt `card` is one mistake, reported once.
    let path = deployment(dir.path(), &BOUND.replace("card = ", "crad = "));
    let error = super::super::Bindings::from_file(&path).expect_err("misspelt");
    assert_eq!(error.problems().len(), 1, "{error}");
    assert!(
        error
            .to_string()
            .contains("models.risk.crad: unknown field `crad`; did you mean `card`?"),
        "{error}"
    );
}

fn ints(name: &str, dims: &[i64], values: Vec<i64>) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: 7,
        int64_data: values,
        ..pb::TensorProto::default()
    }
}

fn int_attribute(name: &str, value: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: 2,
        i: value,
        ..pb::AttributeProto::default()
    }
}

/// features [1, 2] -> `nodes` -> `probabilities` [1, 2].
fn crafted(nodes: Vec<pb::NodeProto>, initializer: Vec<pb::TensorProto>) -> Vec<u8> {
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(pb::GraphProto {
            name: "crafted".into(),
            node: nodes,
            initializer,
            input: vec![value_info("features", 1, &[Some(1), Some(2)])],
            output: vec![value_info("probabilities", 1, &[Some(1), Some(2)])],
            ..pb::GraphProto::default()
        }),
        ..pb::ModelProto::default()
    }
    .encode_to_vec()
}

#[test]
fn a_model_that_makes_tract_panic_is_an_error_at_load_and_at_a_call() {
    // At load: a Range of step 0 divides by zero while tract analyses the model.
    let range = crafted(
        vec![
            node("Range", &["start", "limit", "delta"], "range"),
            {
                let mut cast = node("Cast", &["range"], "floats");
                cast.attribute.push(int_attribute("to", 1));
                cast
            },
            node("ReduceSum", &["floats"], "sum"),
            node("Add", &["features", "sum"], "probabilities"),
        ],
        vec![
            ints("start", &[], vec![0]),
            ints("limit", &[], vec![10]),
            ints("delta", &[], vec![0]),
        ],
    );
    let problem = refusal(
        &range,
        &card_for(&range, "[\"safe\", \"risky\"]", &["a", "b"]),
    );
    assert!(
        problem.contains("m/risk.onnx") && problem.contains("tract failed while loading"),
        "{problem}"
    );

    // At a call: the first feature picks a row of a table. Row 0 (the load's row of zeros)
    // is probabilities; 7 is out of range, which tract indexes without a check.
    let gather = crafted(
        vec![
            node("Slice", &["features", "starts", "ends", "axes"], "first"),
            {
                let mut cast = node("Cast", &["first"], "index");
                cast.attribute.push(int_attribute("to", 7));
                cast
            },
            node("Reshape", &["index", "one"], "indices"),
            node("Gather", &["table", "indices"], "probabilities"),
        ],
        vec![
            ints("starts", &[1], vec![0]),
            ints("ends", &[1], vec![1]),
            ints("axes", &[1], vec![1]),
            ints("one", &[1], vec![1]),
            floats("table", &[2, 2], vec![0.3, 0.7, 0.5, 0.5]),
        ],
    );
    let model = load(
        &gather,
        &card_for(&gather, "[\"safe\", \"risky\"]", &["a", "b"]),
    )
    .expect("row 0 is probabilities");
    let answer = model.infer(r#"{"a": 0, "b": 0}"#).expect("row 0");
    assert_eq!(answer.label, "risky");
    let error = model
        .infer(r#"{"a": 7, "b": 0}"#)
        .expect_err("row 7 does not exist");
    assert_eq!(error.kind, CallErrorKind::Unavailable);
    assert!(
        error.message.contains("tract failed while running"),
        "{}",
        error.message
    );
    // The plan is intact: the next call answers.
    assert!(model.infer(r#"{"a": 1, "b": 0}"#).is_ok());
}
