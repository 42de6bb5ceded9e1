//! The realistic loan example: an honest agent's features reconcile bit for
//! bit; a faked feature is denied by name with sent and expected values.
use std::collections::BTreeMap;

use super::{Facts, Provenance, SourceSpec, ToolFact, reconcile};
use serde_json::json;

fn strings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn loan_policy(tolerance: f64) -> Provenance {
    let sources = BTreeMap::from([(
        "bureau".to_string(),
        SourceSpec {
            tool: "credit_bureau".into(),
            args: strings(&[("/applicant_id", "/applicant_id")]),
        },
    )]);
    let lets = strings(&[
        ("monthly_income", "input:/annual_income / 12"),
        ("rate", "0.119 / 12"),
        ("growth", "pow(1 + rate, input:/term_months)"),
        (
            "payment",
            "input:/requested_amount * rate * growth / (growth - 1)",
        ),
    ]);
    let features = strings(&[
        (
            "debt_to_income",
            "(bureau:/monthly_debt_payments + payment) / monthly_income",
        ),
        ("payment_to_income", "payment / monthly_income"),
        ("credit_score_scaled", "(bureau:/credit_score - 700) / 100"),
        ("revolving_utilization", "bureau:/revolving_utilization"),
        ("delinquencies_24m", "bureau:/delinquencies_24m"),
        ("employment_years", "input:/employment_years"),
    ]);
    match Provenance::build(sources, lets, features, tolerance) {
        Ok(p) => p,
        Err(e) => panic!("{e:?}"),
    }
}

/// What an agent written in Rust computes.
fn agent_features() -> serde_json::Value {
    let monthly_income = 85000.0 / 12.0;
    let rate = 0.119 / 12.0;
    let mut growth = 1.0_f64;
    for _ in 0..60 {
        growth *= 1.0 + rate;
    }
    let payment = 25000.0 * rate * growth / (growth - 1.0);
    json!({
        "debt_to_income": (650.0 + payment) / monthly_income,
        "payment_to_income": payment / monthly_income,
        "credit_score_scaled": (742.0 - 700.0) / 100.0,
        "revolving_utilization": 0.21,
        "delinquencies_24m": 0,
        "employment_years": 6,
    })
}

fn facts() -> (serde_json::Value, Vec<ToolFact>) {
    let input = json!({
        "applicant_id": "APP-20931",
        "requested_amount": 25000,
        "term_months": 60,
        "annual_income": 85000,
        "employment_years": 6,
    });
    let tools = vec![
        ToolFact {
            call: 1,
            tool: "credit_bureau".into(),
            args: json!({"applicant_id": "APP-00001"}),
            response: json!({"credit_score": 810, "monthly_debt_payments": 0.0,
                             "revolving_utilization": 0.01, "delinquencies_24m": 0}),
        },
        ToolFact {
            call: 2,
            tool: "kyc".into(),
            args: json!({"applicant_id": "APP-20931"}),
            response: json!({"ok": true}),
        },
        ToolFact {
            call: 3,
            tool: "credit_bureau".into(),
            args: json!({"applicant_id": "APP-20931"}),
            response: json!({"credit_score": 742, "monthly_debt_payments": 650.0,
                             "revolving_utilization": 0.21, "delinquencies_24m": 0}),
        },
    ];
    (input, tools)
}

#[test]
fn honest_agent_reconciles() {
    let (input, tools) = facts();
    let facts = Facts {
        input: &input,
        tools: &tools,
    };
    let sent = agent_features();
    let r = reconcile(&loan_policy(1e-9), &facts, &sent);
    assert!(r.all_reconciled(), "{r:#?}");
    assert_eq!(r.reconciled_count(), 6);
    assert_eq!(r.sources.get("bureau"), Some(&Some(3)));
    let names: Vec<&str> = r.features.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "credit_score_scaled",
            "debt_to_income",
            "delinquencies_24m",
            "employment_years",
            "payment_to_income",
            "revolving_utilization"
        ]
    );
    // Same operations in the same order: the host's values are bit-identical,
    // so even a zero tolerance reconciles.
    assert!(reconcile(&loan_policy(0.0), &facts, &sent).all_reconciled());
    let dti = r
        .features
        .iter()
        .find(|f| f.name == "debt_to_income")
        .and_then(|f| f.expected.clone().ok());
    assert!(dti.is_some_and(|v| (v - 0.1698).abs() < 1e-3), "{dti:?}");
}

#[test]
fn faked_credit_score_is_denied_by_name() {
    let (input, tools) = facts();
    let facts = Facts {
        input: &input,
        tools: &tools,
    };
    let mut sent = agent_features();
    sent["credit_score_scaled"] = json!(2.0);
    let r = reconcile(&loan_policy(1e-9), &facts, &sent);
    assert!(!r.all_reconciled());
    assert_eq!(r.reconciled_count(), 5);
    let failures: Vec<_> = r.failures().collect();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].name, "credit_score_scaled");
    assert_eq!(failures[0].sent, Some(2.0));
    assert_eq!(failures[0].expected, Ok((742.0 - 700.0) / 100.0));
    assert_eq!(
        failures[0].to_string(),
        "feature `credit_score_scaled`: sent 2, expected 0.42: does not reconcile"
    );
}

#[test]
fn bureau_response_for_another_applicant_is_not_used() {
    let (input, mut tools) = facts();
    tools.truncate(2); // only the other applicant's bureau response remains
    let r = reconcile(
        &loan_policy(1e-9),
        &Facts {
            input: &input,
            tools: &tools,
        },
        &agent_features(),
    );
    assert_eq!(r.sources.get("bureau"), Some(&None));
    assert_eq!(r.reconciled_count(), 2); // only the input-only features
}
