use std::path::Path;

use warden::{Outcome, RunReport, Status};

use super::{Expectation, record};

fn parse(text: &str) -> Result<Expectation, String> {
    Expectation::parse(Path::new("inputs/01.expect.toml"), text).map_err(|e| e.to_string())
}

fn report(status: Status, state: &str, output: Option<&str>) -> RunReport {
    RunReport {
        run_id: "r".into(),
        outcome: Outcome {
            status,
            state: state.into(),
            output: output.map(Into::into),
            reason: None,
            steps: 3,
            host_calls: 9,
            fuel: 100,
        },
        path: vec!["intake".into(), state.into()],
    }
}

const APPROVED: &str = r#"{"decision":"approved","risk":0.0446,"count":2,"reasons":["low risk"]}"#;

#[test]
fn a_run_that_meets_every_expectation_has_no_differences() {
    let expectation = parse(
        r#"
status = "completed"
state = "approved"
path = ["intake", "approved"]

[output]
decision = "approved"
count = 2.0
"/reasons/0" = "low risk"
risk = { approx = 0.045, tolerance = 0.001 }
"#,
    )
    .unwrap();
    let report = report(Status::Completed, "approved", Some(APPROVED));
    assert_eq!(expectation.compare(&report), []);
}

#[test]
fn each_unmet_expectation_names_its_line_field_and_both_values_in_file_order() {
    let expectation = parse(
        "status = \"completed\"\nstate = \"approved\"\n\n[output]\nrisk = { approx = 0.01, tolerance = 0.001 }\ndecision = \"approved\"\nmissing = 1\n",
    )
    .unwrap();
    let report = report(Status::Completed, "declined", Some(APPROVED));
    let differences: Vec<(usize, String, String, String)> = expectation
        .compare(&report)
        .into_iter()
        .map(|d| (d.line, d.field, d.expected, d.actual))
        .collect();
    assert_eq!(
        differences,
        [
            (
                2,
                "state".into(),
                "\"approved\"".into(),
                "\"declined\"".into()
            ),
            (
                5,
                "output.risk".into(),
                "0.01 ± 0.001".into(),
                "0.0446".into()
            ),
            (
                7,
                "output.missing".into(),
                "1".into(),
                "no /missing in the output".into()
            ),
        ]
    );
}

#[test]
fn problems_in_the_file_name_its_line_column_and_field() {
    let cases = [
        (
            "status = \"complete\"\nstate = \"x\"\n",
            "inputs/01.expect.toml:1:10: status: \"complete\" is not how a run ends",
        ),
        (
            "status = \"failed\"\nstat = \"x\"\n",
            "inputs/01.expect.toml:2:1: unknown field `stat`",
        ),
        (
            "status = \"completed\"\n",
            "inputs/01.expect.toml:1:1: state: missing",
        ),
        // A wrong status is named even when the state is missing too.
        (
            "status = \"done\"\n",
            "inputs/01.expect.toml:1:10: status: \"done\" is not how a run ends",
        ),
        (
            "status = \"completed\"\nstate = \"x\"\n[output]\n\"/a~2\" = 1\n",
            "inputs/01.expect.toml:4:1: output.\"/a~2\": not a JSON pointer",
        ),
        (
            "status = \"failed\"\nstate = \"x\"\n[output]\ndecision = \"no\"\n",
            "inputs/01.expect.toml:4:1: output.decision: only a completed run has an output",
        ),
        (
            "status = \"completed\"\nstate = \"x\"\n[output]\nrisk = { approx = \"low\" }\n",
            "inputs/01.expect.toml:4:8: output.risk: write a number within a tolerance",
        ),
        (
            "status = \"completed\"\nstate = \"x\"\n[output]\n\"a/b\" = 1\n",
            "inputs/01.expect.toml:4:1: output.\"a/b\": name a top-level field",
        ),
        (
            "status = \"completed\"\nstate = \"x\"\n[output]\nwhen = 2024-01-01\n",
            "inputs/01.expect.toml:4:8: output.when: a TOML date or time is not a JSON value",
        ),
    ];
    for (text, expected) in cases {
        let error = parse(text).unwrap_err();
        assert!(error.contains(expected), "{text:?}: {error}");
    }
}

#[test]
fn a_failure_reason_is_matched_by_the_text_it_contains() {
    let expectation =
        parse("status = \"failed\"\nstate = \"intake\"\nreason = \"must be positive\"\n").unwrap();
    let mut failed = report(Status::Failed, "intake", None);
    assert_eq!(expectation.compare(&failed).len(), 1, "no reason at all");
    failed.outcome.reason = Some(warden::FailureReason::AgentAborted {
        step: 1,
        reason: "amount must be positive, got 0".into(),
    });
    assert_eq!(expectation.compare(&failed), []);
}

#[test]
fn recorded_expectations_parse_back_and_are_met_by_the_run_they_record() {
    let report = report(Status::Completed, "approved", Some(APPROVED));
    let text = record("01.json", &report);
    let expectation = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(expectation.compare(&report), []);
    assert!(text.contains("decision = \"approved\"\n"), "{text}");
    assert!(text.contains("risk = 0.0446\n"), "{text}");
}
