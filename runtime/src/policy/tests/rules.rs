//! Tests of the rules added in edition 2 (labels, feature provenance, call caps, output
//! rules), of reading a policy under the rules of the edition a run was recorded in, and
//! of host caps and file errors.

use super::*;

#[test]
fn host_caps_bound_budgets_and_lower_defaults() {
    let caps = HostCaps {
        max_steps: 50,
        fuel_per_step: 1_000,
        ..HostCaps::DEFAULT
    };
    let text = edit("max_steps = 100\n", "");
    let policy = Policy::parse_with_caps(&text, "t", &caps);
    let Err(PolicyError::Invalid { diagnostics }) = policy else {
        panic!("fuel is over the cap")
    };
    assert_eq!(diagnostics.len(), 1);
    assert!(matches!(
        diagnostics[0].problem,
        Problem::BudgetOverCap {
            field: "fuel_per_step",
            cap: 1_000,
            ..
        }
    ));

    let text = text.replace("fuel_per_step = 500_000_000", "fuel_per_step = 900");
    let policy = Policy::parse_with_caps(&text, "t", &caps).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (policy.budgets.fuel_per_step, policy.budgets.max_steps),
        (900, 50)
    );
}

#[test]
fn from_file_names_the_file_and_reports_io_and_encoding_errors() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("loan.toml");
    std::fs::write(&path, EXAMPLE.replace("max_steps = 100", "max_steps = 0"))
        .unwrap_or_else(|e| panic!("{e}"));
    let Err(error) = Policy::from_file(&path) else {
        panic!("max_steps = 0 must be refused")
    };
    let line = line_of(EXAMPLE, "max_steps");
    let prefix = format!("{}:{line}:13: budgets.max_steps:", path.display());
    assert!(error.to_string().starts_with(&prefix), "{error}");

    let mut bytes = b"[policy]\nname = \"".to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe]);
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{e}"));
    let Err(PolicyError::Invalid { diagnostics }) = Policy::from_file(&path) else {
        panic!("not UTF-8")
    };
    assert!(matches!(
        (
            diagnostics[0].line,
            diagnostics[0].column,
            &diagnostics[0].problem
        ),
        (2, 9, Problem::Syntax(_))
    ));

    let missing = dir.path().join("absent.toml");
    let error = Policy::from_file(&missing).err();
    assert!(
        matches!(&error, Some(PolicyError::Io { path, .. }) if path == &missing),
        "{error:?}"
    );
}

/// `policies/` beside the `runtime` crate.
/// A gate without a label is refused for new runs (it would compare the model's
/// confidence in any label), and read as it was for runs recorded by edition 1.
#[test]
fn a_gate_needs_a_label_except_in_edition_1_runs() {
    let text = edit("label = \"repay\"                          # ... and is its probability of this label\n", "")
        .replace("credit_score_scaled = \"(bureau:/credit_score - 700) / 100\"\n", "")
        .replace("[models.pd_scorecard.features]           # where each feature comes from; reconciled before scoring\n", "")
        .replace("[models.pd_scorecard.sources]            # recorded tool answers features may come from\n", "")
        .replace("bureau = { tool = \"credit_bureau\", args = { \"/applicant_id\" = \"/applicant_id\" } }\n", "")
        .replace("[models.pd_scorecard]                    # rules of one model (optional)\n", "")
        .replace("max_calls_per_state = 1                  # no shopping: one inference per visit of a state\n", "");
    let d = only(&text);
    assert_eq!(d.field, "gates[0].label");
    assert!(d.to_string().contains("label = "), "{d}");
    let v1 = Policy::parse_recorded(&text, "recorded", crate::edition::Edition::V1)
        .unwrap_or_else(|e| panic!("{e}"));
    let gate = v1
        .gate("approved")
        .cloned()
        .unwrap_or_else(|| panic!("gate"));
    assert_eq!((gate.label, gate.require_reconciled), (None, false));
}

/// A gate requiring reconciled features of a model whose features have no declared
/// sources could never be met: refused, saying how to fix it.
#[test]
fn a_gate_requiring_reconciliation_needs_declared_features() {
    let text = edit("credit_score_scaled = \"(bureau:/credit_score - 700) / 100\"\n", "")
        .replace("[models.pd_scorecard.features]           # where each feature comes from; reconciled before scoring\n", "")
        .replace("[models.pd_scorecard.sources]            # recorded tool answers features may come from\n", "")
        .replace("bureau = { tool = \"credit_bureau\", args = { \"/applicant_id\" = \"/applicant_id\" } }\n", "");
    let d = only(&text);
    assert_eq!(d.field, "gates[0].require_reconciled");
    assert!(
        matches!(&d.problem, Problem::GateNeedsProvenance { model } if model == "pd_scorecard")
    );
    let relaxed = text.replace("otherwise = \"manual_review\"              # where the run goes when the gate is not met: must be a review state\n",
        "otherwise = \"manual_review\"\nrequire_reconciled = false\n");
    assert!(parse(&relaxed).is_ok());
}

/// Provenance mistakes are reported with the field path and the line of the expression.
#[test]
fn provenance_mistakes_name_the_field() {
    let cases = [
        (
            "\"(bureau:/credit_score - 700) / 100\"",
            "\"(bureau:/credit_score - ) / 100\"",
            "features.credit_score_scaled",
        ),
        (
            "\"(bureau:/credit_score - 700) / 100\"",
            "\"(agency:/credit_score - 700) / 100\"",
            "features.credit_score_scaled",
        ),
        (
            "\"(bureau:/credit_score - 700) / 100\"",
            "\"(bureau:/credit_score - 700) / nowhere\"",
            "features.credit_score_scaled",
        ),
    ];
    for (from, to, field) in cases {
        let text = edit(from, to);
        let d = only(&text);
        assert_eq!(d.field, format!("models.pd_scorecard.{field}"), "{d}");
        assert_eq!(d.line, line_of(&text, "credit_score_scaled"), "{d}");
    }
    let d = only(&edit("tool = \"credit_bureau\"", "tool = \"payments\""));
    assert_eq!(d.field, "models.pd_scorecard.sources.bureau.tool");
    assert!(matches!(d.problem, Problem::UnknownCapability { .. }));
}

/// Rules of a capability the policy does not declare, a zero cap, an output rule on a
/// working state and an unknown JSON type are each named.
#[test]
fn rule_tables_are_checked() {
    let d = only(&format!(
        "{EXAMPLE}\n[tools.payments]\nmax_calls_per_state = 2\n"
    ));
    assert_eq!(d.field, "tools.payments");
    let d = only(&edit(
        "max_calls_per_state = 1 ",
        "max_calls_per_state = 0 ",
    ));
    assert!(matches!(d.problem, Problem::CallCapZero), "{d}");
    let d = only(&format!(
        "{EXAMPLE}\n[states.scoring.output]\ndecision = \"x\"\n"
    ));
    assert!(
        matches!(&d.problem, Problem::OutputNotTerminal { state } if state == "scoring"),
        "{d}"
    );
    let d = only(&format!(
        "{EXAMPLE}\n[states.approved.output]\nreasons = {{ type = \"list\" }}\n"
    ));
    assert_eq!(d.field, "states.approved.output.reasons.type");
    let policy = parse(&format!("{EXAMPLE}\n[states.approved.output]\ndecision = \"approved\"\nreasons = {{ type = \"array\" }}\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(policy.state("approved").map(|s| s.output.len()), Some(2));
}

/// The hash covers the new rules: a label, a feature's formula, a cap or an output rule
/// changed is a different contract.
#[test]
fn the_hash_covers_labels_provenance_caps_and_outputs() {
    let base = parse(EXAMPLE)
        .map(|p| p.hash())
        .unwrap_or_else(|e| panic!("{e}"));
    for (from, to) in [
        ("label = \"repay\"", "label = \"default\""),
        ("- 700) / 100\"", "- 650) / 100\""),
        ("max_calls_per_state = 1 ", "max_calls_per_state = 2 "),
    ] {
        let other = parse(&edit(from, to))
            .map(|p| p.hash())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(other, base, "{from} -> {to}");
    }
    let output = parse(&format!(
        "{EXAMPLE}\n[states.approved.output]\ndecision = \"approved\"\n"
    ))
    .map(|p| p.hash())
    .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(output, base);
}

/// Output bounds: expressions over the run's input only, on a number; each mistake is
/// named by its field; bounds count in the hash, and their canonical text does (so
/// `input:/amount` and `input:/amount + 0` differ, but spacing does not).
#[test]
fn output_bounds_read_only_the_input_and_count_in_the_hash() {
    let with = |rule: &str| format!("{EXAMPLE}\n[states.approved.output]\namount = {rule}\n");
    let d = only(&with("{ max = \"bureau:/limit\" }"));
    assert_eq!(d.field, "states.approved.output.amount.max");
    assert!(d.to_string().contains("reads only the run's input"), "{d}");
    let d = only(&with("{ min = \"debt_to_income\" }"));
    assert_eq!(d.field, "states.approved.output.amount.min");
    let d = only(&with("{ type = \"string\", max = 10 }"));
    assert_eq!(d.field, "states.approved.output.amount.type");
    assert!(matches!(d.problem, Problem::BoundNotNumber { .. }), "{d}");
    let d = only(&with("{ max = \"input:/a +\" }"));
    assert_eq!(d.field, "states.approved.output.amount.max");
    let d = only(&with("{ max = true }"));
    assert_eq!(d.field, "states.approved.output.amount.max");
    // Bounds that would refuse every output are refused where they are written.
    for (rule, field, says) in [
        ("{ max = inf }", "max", "finite number"),
        ("{ min = 99999999999999999999 }", "min", "fits in 64 bits"),
        ("{ max = \"sqrt(0 - 1)\" }", "max", "cannot be computed"),
        ("{ max = \"1 / 0\" }", "max", "cannot be computed"),
        ("{ min = 10, max = 5 }", "max", "min 10 is above max 5"),
    ] {
        let d = only(&with(rule));
        assert_eq!(
            d.field,
            format!("states.approved.output.amount.{field}"),
            "{rule}"
        );
        assert!(d.to_string().contains(says), "{rule}: {d}");
    }
    let hash = |rule: &str| {
        parse(&with(rule))
            .map(|p| p.hash())
            .unwrap_or_else(|e| panic!("{rule}: {e}"))
    };
    let bounded = hash("{ type = \"number\", min = 0, max = \"input:/amount\" }");
    assert_eq!(bounded, hash("{ min = \"0\", max = \"input:/amount\" }"));
    assert_eq!(bounded, hash("{ max = \"input:/amount  \", min = 0 }"));
    assert_ne!(bounded, hash("{ type = \"number\" }"));
    assert_ne!(bounded, hash("{ min = 0, max = \"input:/amount + 0\" }"));
    assert_ne!(bounded, hash("{ min = 0 }"));
}

/// A review timeout past a hundred years is refused where it is written (its deadline
/// could not be written as a date, and nobody needs it).
#[test]
fn a_review_timeout_may_not_outlast_a_century() {
    let d = only(&edit("after = \"72h\"", "after = \"3000000days\""));
    assert!(
        matches!(&d.problem, Problem::TimeoutTooLong { value } if value == "3000000days"),
        "{d}"
    );
    assert_eq!(d.field, "states.manual_review.timeout.after");
    parse(&edit("after = \"72h\"", "after = \"36500days\"")).unwrap_or_else(|e| panic!("{e}"));
}

/// A long chain of states checks each edge a bounded number of times: 20 000 states in a
/// row validate (it took minutes when every state was visited once per round).
#[test]
fn a_long_chain_of_states_validates() {
    let n = 20_000;
    let mut text =
        String::from("[policy]\nname = \"chain\"\nversion = \"1\"\ninitial = \"s0\"\n\n");
    for i in 0..n {
        text.push_str(&format!("[states.s{i}]\ntransitions = [\"s{}\"]\n", i + 1));
    }
    text.push_str(&format!("[states.s{n}]\nterminal = true\n"));
    let policy = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(policy.states.len(), n + 1);
}
