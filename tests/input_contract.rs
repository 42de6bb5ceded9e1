//! The input contract (issue #18) through the real binary: an application that breaks the
//! loan policy's `[input] schema` is refused before the first step, a recorded failure
//! naming each field and rule, that `warden show` prints and replay reproduces from the
//! journal alone; a fork whose patched input breaks it is refused the same way; a
//! counterfactual under a policy with a contract reports the refusal; and `warden check`
//! places a schema's mistake at its line in the policy and an input's at its line in the
//! input file.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::{Sandbox, loan_example, output_text, policy_path, warden_in};

/// Runs the loan agent on `input` under the policy file `policy`.
fn run(sandbox: &Sandbox, policy: &Path, input: &Value) -> (i32, Value) {
    let input = sandbox.input("application.json", input);
    let bindings = loan_example().join("bindings.toml");
    sandbox.warden_json(&[
        "run",
        warden_test_guests::LOAN_AGENT,
        "--policy",
        policy.to_str().expect("utf-8"),
        "--bindings",
        bindings.to_str().expect("utf-8"),
        "--input",
        input.to_str().expect("utf-8"),
    ])
}

fn application() -> Value {
    json!({
        "applicant_id": "A-10001",
        "requested_amount": 15000,
        "term_months": 36,
        "annual_income": 120000,
        "employment_years": 9,
        "purpose": "home improvement"
    })
}

/// The loan policy without its `[input]` table: the contract before contracts existed.
fn policy_without_contract(sandbox: &Sandbox) -> PathBuf {
    let text = std::fs::read_to_string(policy_path("loan-underwriting.toml")).expect("policy");
    let start = text
        .find("\n[input]\n")
        .expect("the loan policy has a contract");
    let end = start + text[start..].find("\n'''\n").expect("its schema ends") + "\n'''\n".len();
    let path = sandbox.path("no-contract.toml");
    std::fs::write(&path, format!("{}{}", &text[..start], &text[end..])).expect("write");
    path
}

fn violations(report: &Value) -> Vec<(String, String)> {
    report["failure"]["InputRejected"]["violations"]
        .as_array()
        .unwrap_or_else(|| panic!("not an input rejection: {report:#}"))
        .iter()
        .map(|v| {
            (
                v["pointer"].as_str().expect("pointer").to_string(),
                v["keyword"].as_str().expect("keyword").to_string(),
            )
        })
        .collect()
}

#[test]
fn an_application_that_breaks_the_contract_fails_before_step_1_and_replays() {
    let sandbox = Sandbox::new();
    let mut input = application();
    input["requested_amount"] = json!("15000");
    input["annual_income"] = json!(0);
    input["term_months"] = json!(36.5);
    input.as_object_mut().expect("object").remove("purpose");
    let (code, report) = run(&sandbox, &policy_path("loan-underwriting.toml"), &input);
    assert_eq!(code, 11, "a refused input is a failed run: {report:#}");
    assert_eq!(report["status"], "failed");
    assert_eq!(report["state"], "intake");
    assert_eq!(report["path"], json!(["intake"]));
    assert_eq!(
        (&report["steps"], &report["host_calls"], &report["fuel"]),
        (&json!(0), &json!(0), &json!(0)),
        "the agent never ran: {report:#}"
    );
    assert_eq!(
        violations(&report),
        [
            ("/purpose", "required"),
            ("/annual_income", "exclusiveMinimum"),
            ("/requested_amount", "type"),
            ("/term_months", "type"),
        ]
        .map(|(p, k)| (p.to_string(), k.to_string()))
    );
    assert_eq!(report["failure"]["InputRejected"]["total"], 4);
    let reason = report["reason"].as_str().expect("reason");
    assert!(
        reason.starts_with("input rejected by the policy's input contract, before the first step: /purpose: required: required field `purpose` is missing;"),
        "{reason}"
    );
    assert!(
        reason.contains("/requested_amount: type: expected a number, found a string (\"15000\")"),
        "{reason}"
    );

    let run_id = report["run_id"].as_str().expect("run id");
    let shown = sandbox.warden(&["show", run_id]);
    let text = output_text(&shown);
    assert_eq!(shown.status.code(), Some(0), "{text}");
    assert!(
        text.contains("/annual_income: exclusiveMinimum: 0 is not greater than 0"),
        "{text}"
    );

    // Replayed from the journal alone, in a fresh process with no policy file at hand.
    let (code, replayed) = sandbox.warden_json(&["replay", run_id]);
    assert_eq!(code, 0, "{replayed:#}");
    assert_eq!(replayed["verdict"], "identical", "{replayed:#}");
    let (code, verified) = sandbox.warden_json(&["verify", run_id]);
    assert_eq!(code, 0, "{verified:#}");
}

#[test]
fn a_valid_application_runs_and_replays_under_the_contract() {
    let sandbox = Sandbox::new();
    let (code, report) = run(
        &sandbox,
        &policy_path("loan-underwriting.toml"),
        &application(),
    );
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["state"], "approved");
    let run_id = report["run_id"].as_str().expect("run id");
    let (code, replayed) = sandbox.warden_json(&["replay", run_id]);
    assert_eq!((code, &replayed["verdict"]), (0, &json!("identical")));
}

#[test]
fn a_fork_whose_patched_input_breaks_the_contract_is_refused_before_its_first_step() {
    let sandbox = Sandbox::new();
    let (_, report) = run(
        &sandbox,
        &policy_path("loan-underwriting.toml"),
        &application(),
    );
    let parent = report["run_id"].as_str().expect("run id");
    let (code, fork) = sandbox.warden_json(&[
        "fork",
        parent,
        "--at-step",
        "0",
        "--input-patch",
        r#"{"employment_years": -1}"#,
    ]);
    assert_eq!(code, 11, "{fork:#}");
    assert_eq!(fork["status"], "failed");
    assert_eq!(
        violations(&fork),
        [("/employment_years".to_string(), "minimum".to_string())]
    );
    let fork_id = fork["run_id"].as_str().expect("fork id");
    let (code, replayed) = sandbox.warden_json(&["replay", fork_id]);
    assert_eq!(code, 0, "{replayed:#}");
    assert_eq!(replayed["verdict"], "identical", "{replayed:#}");

    // A patch the contract admits runs as before.
    let (code, fork) = sandbox.warden_json(&[
        "fork",
        parent,
        "--at-step",
        "0",
        "--input-patch",
        r#"{"employment_years": 10}"#,
    ]);
    assert_eq!(code, 0, "{fork:#}");
    assert_eq!(fork["state"], "approved");
}

#[test]
fn a_counterfactual_under_a_policy_with_a_contract_reports_the_refusal() {
    let sandbox = Sandbox::new();
    let without = policy_without_contract(&sandbox);
    let mut input = application();
    input["annual_income"] = json!(0);
    // Without the contract, the agent itself stops the run at intake.
    let (code, report) = run(&sandbox, &without, &input);
    assert_eq!(code, 11, "{report:#}");
    assert!(report["failure"]["AgentAborted"].is_object(), "{report:#}");
    let run_id = report["run_id"].as_str().expect("run id");
    let with = policy_path("loan-underwriting.toml");
    let (code, counterfactual) =
        sandbox.warden_json(&["replay", run_id, "--policy", with.to_str().expect("utf-8")]);
    assert_eq!(code, 12, "{counterfactual:#}");
    assert_eq!(
        counterfactual["verdict"], "different_outcome",
        "{counterfactual:#}"
    );
    // The departure is the refusal, where the agent first asked for its input.
    let actual = counterfactual["divergence"]["actual"]
        .as_str()
        .unwrap_or("");
    assert!(actual.contains("input rejected"), "{counterfactual:#}");
    let replayed = &counterfactual["replayed"];
    assert_eq!(replayed["status"], "failed");
    assert_eq!(
        replayed["reason"]["InputRejected"]["violations"][0]["pointer"], "/annual_income",
        "{counterfactual:#}"
    );
}

/// `warden check` with the loan example's files and `policy` and `input` in place of its
/// own; its JSON findings.
fn check(dir: &Path, policy: &Path, input: &Path) -> (i32, Vec<Value>) {
    let example = loan_example();
    let output = warden_in(
        dir,
        &[
            "check",
            "--policy",
            policy.to_str().expect("utf-8"),
            "--bindings",
            example.join("bindings.toml").to_str().expect("utf-8"),
            "--agent",
            warden_test_guests::LOAN_AGENT,
            "--input",
            input.to_str().expect("utf-8"),
            "--json",
        ],
    );
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("no JSON: {}", output_text(&output)));
    let findings = report["findings"].as_array().expect("findings").clone();
    (output.status.code().unwrap_or(-1), findings)
}

#[test]
fn check_places_a_schema_mistake_in_the_policy_and_a_violation_in_the_input() {
    let sandbox = Sandbox::new();
    let text = std::fs::read_to_string(policy_path("loan-underwriting.toml")).expect("policy");
    let from = "\"applicant_id\": { \"type\": \"string\", \"minLength\": 1,";
    assert!(text.contains(from), "the loan contract changed");
    let planted = text.replacen(
        from,
        "\"applicant_id\": { \"type\": \"string\", \"pattern\": \"^A-[0-9]+$\", \"minLength\": 1,",
        1,
    );
    let policy = sandbox.path("policy.toml");
    std::fs::write(&policy, &planted).expect("write");
    let good = sandbox.input("good.json", &application());
    let (code, findings) = check(sandbox.dir.path(), &policy, &good);
    assert_eq!(code, 2, "{findings:#?}");
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let finding = &findings[0];
    let line = planted
        .lines()
        .position(|l| l.contains("\"pattern\""))
        .expect("planted")
        + 1;
    assert_eq!(finding["kind"], "policy");
    assert_eq!(finding["line"], line);
    assert_eq!(
        finding["field"],
        "input.schema#/properties/applicant_id/pattern"
    );
    assert!(
        finding["message"]
            .as_str()
            .is_some_and(|m| m.contains("does not enforce")),
        "{finding:#}"
    );
    // The text form: FILE:LINE:COLUMN: FIELD: message.
    let output = warden_in(
        sandbox.dir.path(),
        &["check", "--policy", policy.to_str().expect("utf-8")],
    );
    let text = output_text(&output);
    assert!(
        text.contains(&format!(
            "policy.toml:{line}:{}: input.schema#/properties/applicant_id/pattern: `pattern`",
            finding["column"]
        )),
        "{text}"
    );

    // The shipped policy, and an input that breaks it: each violation at its line.
    let bad = sandbox.path("bad.json");
    std::fs::write(
        &bad,
        "{\n  \"applicant_id\": \"A-1\",\n  \"requested_amount\": 5000,\n  \"term_months\": 0,\n  \"annual_income\": 50000,\n  \"employment_years\": 2\n}\n",
    )
    .expect("write");
    let (code, findings) = check(
        sandbox.dir.path(),
        &policy_path("loan-underwriting.toml"),
        &bad,
    );
    assert_eq!(code, 2, "{findings:#?}");
    let found: Vec<(&str, &str, u64)> = findings
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap_or(""),
                f["field"].as_str().unwrap_or(""),
                f["line"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("input_contract", "/purpose", 1),
            ("input_contract", "/term_months", 4),
        ],
        "{findings:#?}"
    );
    assert!(
        findings[1]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("minimum: 0 is less than the minimum 1")),
        "{findings:#?}"
    );
}

/// An input with a key twice in one object means two things (the gates' evidence takes
/// the last value, a person reading the journal sees the first, the agent's typed input
/// refuses it): `warden run` refuses it before anything is recorded, naming the file (or
/// standard input) and the key, at any depth and however the key is escaped; `warden check`
/// says so; in a batch it is that line's error while the other lines run (the first line
/// too). Inputs nested deeper than the gates read, with a lone surrogate, or starting with
/// a byte-order mark are refused the same way, as not JSON.
#[test]
fn an_input_with_a_key_twice_is_refused_before_anything_is_recorded() {
    let sandbox = Sandbox::new();
    let example = loan_example();
    let example = example.to_str().expect("utf-8");
    let ambiguous = [
        r#"{"applicant_id":"A-1","requested_amount":15000,"term_months":36,"annual_income":12000,"annual_income":120000,"employment_years":9,"purpose":"car"}"#,
        r#"{"applicant_id":"A-1","requested_amount":15000,"term_months":36,"annual_income":120000,"employment_years":9,"purpose":"car","purpos\u0065":"debt"}"#,
        r#"{"applicant_id":"A-1","requested_amount":15000,"term_months":36,"annual_income":120000,"employment_years":9,"purpose":"car","notes":[{"by":"a","by":"b"}]}"#,
    ];
    let keys = ["annual_income", "purpose", "by"];
    for (text, key) in ambiguous.iter().zip(keys) {
        let path = sandbox.path("ambiguous.json");
        std::fs::write(&path, text).expect("write the input");
        let out = sandbox.warden(&["run", example, "--input", "ambiguous.json"]);
        let said = output_text(&out);
        assert_eq!(out.status.code(), Some(2), "{said}");
        assert!(
            said.contains("ambiguous.json") && said.contains(&format!("key `{key}` appears twice")),
            "{said}"
        );
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["--db", sandbox.db().to_str().expect("utf-8")])
            .args(["run", example, "--input", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run warden");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), text.as_bytes())
            .expect("write stdin");
        let out = child.wait_with_output().expect("warden ends");
        let said = output_text(&out);
        assert_eq!(out.status.code(), Some(2), "{said}");
        assert!(
            said.contains("standard input") && said.contains(&format!("`{key}`")),
            "{said}"
        );
    }
    // Nesting deeper than the gates read, before a key twice, and a key that is a lone
    // surrogate (not text), twice: refused as not JSON, not recorded as failed runs.
    let deep = format!(
        r#"{{"applicant_id":"A-1","d":{}{},"k":1,"k":2}}"#,
        "[".repeat(300),
        "]".repeat(300)
    );
    for text in [
        deep.as_str(),
        r#"{"applicant_id":"A-1","\ud800":1,"\ud800":2}"#,
    ] {
        std::fs::write(sandbox.path("odd.json"), text).expect("write the input");
        let out = sandbox.warden(&["run", example, "--input", "odd.json"]);
        let said = output_text(&out);
        assert_eq!(out.status.code(), Some(2), "{said}");
        assert!(said.contains("odd.json is not valid JSON"), "{said}");
    }
    let plain = r#"{"applicant_id":"A-1","requested_amount":15000,"term_months":36,"annual_income":120000,"employment_years":9,"purpose":"car","notes":[{"by":"a"},{"by":"b"}]}"#;
    std::fs::write(sandbox.path("bom.json"), format!("\u{feff}{plain}")).expect("write");
    let out = sandbox.warden(&["run", example, "--input", "bom.json"]);
    let said = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("bom.json starts with a byte-order mark"),
        "{said}"
    );
    assert!(!sandbox.db().exists(), "nothing was recorded");
    let out = sandbox.warden(&["check", example, "--input", "ambiguous.json"]);
    let said = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("ambiguous.json: by: key `by` appears twice"),
        "{said}"
    );

    // The same key in two objects is one meaning each.
    // The first line is the ambiguous one (the batch once checked it for all the others,
    // as standard input), and the last starts with a byte-order mark.
    let lines = [ambiguous[0], plain, &format!("\u{feff}{plain}")].join("\n");
    std::fs::write(sandbox.path("mix.jsonl"), lines).expect("write the inputs");
    let out = sandbox.warden(&["batch", example, "--inputs", "mix.jsonl", "--json"]);
    // Lines are printed as their runs end: in input order once sorted by name.
    let mut results: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    results.sort_by_key(|line| line["input"].as_str().unwrap_or_default().to_string());
    assert_eq!(results.len(), 3, "{}", output_text(&out));
    assert_eq!(results[0]["action"], "error", "{results:#?}");
    assert_eq!(results[1]["action"], "ran", "{results:#?}");
    assert_eq!(results[2]["action"], "error", "{results:#?}");
    let error = results[0]["error"].as_str().expect("error");
    assert!(error.contains("`annual_income` twice"), "{error}");
    let (_, runs) = crate::support::warden_json_on(&sandbox.db(), &["runs"]);
    assert_eq!(runs.as_array().expect("runs").len(), 1, "{runs:#?}");

    // Nor can a fork's patch bring one in (merged, it would keep its last value).
    let parent = results[1]["run_id"].as_str().expect("run id");
    let out = sandbox.warden(&[
        "fork",
        parent,
        "--at-step",
        "1",
        "--input-patch",
        r#"{"purpose":"car","purpose":"debt consolidation"}"#,
    ]);
    let said = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("key `purpose` appears twice"), "{said}");
    let (_, runs) = crate::support::warden_json_on(&sandbox.db(), &["runs"]);
    assert_eq!(runs.as_array().expect("runs").len(), 1, "{runs:#?}");
}
