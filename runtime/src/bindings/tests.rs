//! Tests of bindings loading, hashing and coverage.

use super::*;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(&path, text).expect("write");
    path
}

const SCORECARD: &str = r#"
name = "pd_scorecard"
version = "1"
intercept = -1.0
positive_label = "default"
negative_label = "repay"
[[features]]
name = "dti"
weight = 2.0
"#;

fn deployment(dir: &Path) -> PathBuf {
    write(
        dir,
        "fixtures/bureau.json",
        r#"{"A-1": {"credit_score": 700}}"#,
    );
    write(dir, "models/pd.toml", SCORECARD);
    write(
        dir,
        "bindings.toml",
        r#"
[tools.credit_bureau]
provider = "fixture"
file = "fixtures/bureau.json"
key = "applicant_id"

[tools.disbursement]
provider = "ledger"
file = "ledger.jsonl"

[models.pd_scorecard]
provider = "scorecard"
file = "models/pd.toml"
"#,
    )
}

/// A policy declaring `tools` and `models`, each allowed in its one state, with a gate on
/// `done` needing label `label` of the first model, if given.
fn policy(tools: &[&str], models: &[&str], label: Option<&str>) -> crate::policy::Policy {
    let list = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let gate = match (label, models.first()) {
        (Some(label), Some(model)) => format!(
            "[states.review]\nreview = true\ntransitions = [\"done\"]\n[states.review.decisions.done]\nroles = [\"r\"]\n\n[[gates]]\nto = \"done\"\nmodel = {model:?}\nlabel = {label:?}\nmin_confidence = 0.5\notherwise = \"review\"\nrequire_reconciled = false\n"
        ),
        _ => String::new(),
    };
    let text = format!(
        "[policy]\nname = \"p\"\nversion = \"1\"\ninitial = \"start\"\n[capabilities]\ntools = [{}]\nmodels = [{}]\n[states.start]\ntools = [{}]\nmodels = [{}]\ntransitions = [\"done\"]\n[states.done]\nterminal = true\n{gate}",
        list(tools),
        list(models),
        list(tools),
        list(models)
    );
    match crate::policy::Policy::parse(&text, "test") {
        Ok(policy) => policy,
        Err(e) => panic!("{e}\n{text}"),
    }
}

#[test]
fn loads_every_provider_relative_to_the_bindings_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bindings = Bindings::from_file(&deployment(dir.path())).expect("load");
    let key = IdempotencyKey {
        run_id: "r".into(),
        call_seq: 1,
    };
    let record = bindings
        .call_tool("credit_bureau", r#"{"applicant_id":"A-1"}"#, &key)
        .expect("fixture");
    assert_eq!(record, r#"{"credit_score":700}"#);
    assert!(dir.path().join("ledger.jsonl").exists());
    let answer = bindings
        .infer("pd_scorecard", r#"{"dti":0.5}"#)
        .expect("infer");
    assert_eq!(answer.confidence, 0.5);
    assert_eq!(
        bindings.source(),
        Some(dir.path().join("bindings.toml").as_path())
    );
}

#[test]
fn covers_names_the_missing_capability_and_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bindings = Bindings::from_file(&deployment(dir.path())).expect("load");
    bindings
        .covers(&policy(&["credit_bureau"], &["pd_scorecard"], None))
        .expect("covered");
    let error = bindings
        .covers(&policy(&["credit_bureau", "payments"], &[], None))
        .expect_err("payments is unbound");
    let message = error.to_string();
    assert!(message.contains("tool \"payments\""), "{message}");
    assert!(message.contains("bindings.toml"), "{message}");
    let error = Bindings::empty()
        .covers(&policy(&[], &["pd_scorecard"], None))
        .expect_err("empty bindings bind nothing");
    assert!(error.to_string().contains("model \"pd_scorecard\""));
    Bindings::empty()
        .covers(&policy(&[], &[], None))
        .expect("nothing to cover");
}

/// Regression (gates held on any label): a gate must name a label its model's card gives
/// a probability for, checked before a run starts.
#[test]
fn covers_refuses_a_gate_on_a_label_the_card_does_not_know() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bindings = Bindings::from_file(&deployment(dir.path())).expect("load");
    let labels = bindings.labels("pd_scorecard");
    assert_eq!(labels.len(), 2, "{labels:?}");
    bindings
        .covers(&policy(&[], &["pd_scorecard"], Some(&labels[1])))
        .expect("a known label");
    let error = bindings
        .covers(&policy(&[], &["pd_scorecard"], Some("approve")))
        .expect_err("an unknown label");
    let message = error.to_string();
    assert!(
        message.contains("\"approve\"") && message.contains(&labels[0]),
        "{message}"
    );
}

#[test]
fn hash_changes_when_a_fixture_changes_but_not_when_the_ledger_grows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = deployment(dir.path());
    let first = Bindings::from_file(&path).expect("load");
    assert_eq!(
        first.hash(),
        Bindings::from_file(&path).expect("load").hash()
    );
    let key = IdempotencyKey {
        run_id: "r".into(),
        call_seq: 7,
    };
    first.call_tool("disbursement", "{}", &key).expect("effect");
    assert_eq!(
        first.hash(),
        Bindings::from_file(&path).expect("load").hash()
    );

    write(
        dir.path(),
        "fixtures/bureau.json",
        r#"{"A-1": {"credit_score": 701}}"#,
    );
    let changed = Bindings::from_file(&path).expect("load");
    assert_ne!(first.hash(), changed.hash());
    assert_ne!(first.hash(), Bindings::empty().hash());
    assert_eq!(first.hash().to_string().len(), 64);
}

#[test]
fn toml_errors_carry_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "b.toml",
        "[tools.x]\nprovider = \"fixture\"\nfile = 3\n",
    );
    let message = Bindings::from_file(&path)
        .expect_err("bad type")
        .to_string();
    assert!(message.contains("b.toml:3:8"), "{message}");
}

#[test]
fn entry_errors_name_the_entry_and_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "b.toml",
        "[models.pd]\nprovider = \"neural\"\nfile = \"m.toml\"\n",
    );
    let message = Bindings::from_file(&path).expect_err("unknown").to_string();
    assert!(
        message.contains("b.toml:2:12: models.pd.provider"),
        "{message}"
    );
    assert!(message.contains("\"neural\""), "{message}");

    let path = write(
        dir.path(),
        "c.toml",
        "[tools.bureau]\nprovider = \"fixture\"\nfile = \"f.json\"\n",
    );
    let message = Bindings::from_file(&path).expect_err("no key").to_string();
    assert!(message.contains("tools.bureau.key"), "{message}");
}

#[test]
fn a_missing_referenced_file_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "b.toml",
        "[models.pd]\nprovider = \"scorecard\"\nfile = \"nowhere.toml\"\n",
    );
    let message = Bindings::from_file(&path).expect_err("missing").to_string();
    assert!(message.contains("nowhere.toml"), "{message}");
}

#[test]
fn two_tools_cannot_share_a_ledger() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "b.toml",
        "[tools.a]\nprovider = \"ledger\"\nfile = \"l.jsonl\"\n\
         [tools.b]\nprovider = \"ledger\"\nfile = \"./l.jsonl\"\n",
    );
    let message = Bindings::from_file(&path).expect_err("shared").to_string();
    assert!(message.contains("already bound to tool \"a\""), "{message}");
}

#[test]
fn an_unbound_call_is_unavailable_not_a_panic() {
    let key = IdempotencyKey {
        run_id: "r".into(),
        call_seq: 0,
    };
    let error = Bindings::empty()
        .call_tool("x", "{}", &key)
        .expect_err("unbound");
    assert_eq!(error.kind, CallErrorKind::Unavailable);
    let error = Bindings::empty().infer("m", "{}").expect_err("unbound");
    assert_eq!(error.kind, CallErrorKind::Unavailable);
}

/// A deployment directory `deployment/` inside `root`, whose bindings bind tool
/// `disbursement` to a ledger at `ledger` (as written in the file); and a victim file
/// beside the directory, outside it.
fn crafted(root: &Path, ledger: &str) -> (PathBuf, PathBuf) {
    let victim = write(root, "victim.txt", "export PATH=/usr/bin\n");
    let bindings = write(
        root,
        "deployment/bindings.toml",
        &format!("[tools.disbursement]\nprovider = \"ledger\"\nfile = {ledger:?}\n"),
    );
    (bindings, victim)
}

/// Regression (paths escape): `file = "../victim.txt"`, an absolute path or a symlink
/// leading out made a ledger of any file the process could write.
#[test]
fn a_ledger_outside_the_bindings_directory_is_refused_and_the_file_untouched() {
    let root = tempfile::tempdir().expect("tempdir");
    let absolute = root.path().join("victim.txt");
    let mut cases = vec![
        ("../victim.txt".to_string(), "climbs out"),
        (absolute.display().to_string(), "absolute"),
        ("../elsewhere/new.jsonl".to_string(), "climbs out"),
    ];
    #[cfg(unix)]
    {
        std::fs::create_dir_all(root.path().join("deployment")).expect("mkdir");
        std::os::unix::fs::symlink("../victim.txt", root.path().join("deployment/link"))
            .expect("symlink");
        cases.push(("link".to_string(), "symlink"));
    }
    for (ledger, why) in cases {
        let (bindings, victim) = crafted(root.path(), &ledger);
        let error = Bindings::from_file(&bindings).expect_err("outside");
        match &error {
            BindingsError::PathOutside(outside) => {
                let EntryOutside {
                    line,
                    column,
                    section,
                    name,
                    field,
                    file,
                    ..
                } = outside.as_ref();
                assert_eq!(
                    (*line, *column, *section, name.as_str(), *field, file),
                    (3, 8, "tools", "disbursement", "file", &ledger)
                );
            }
            other => panic!("{ledger}: {other:?}"),
        }
        let message = error.to_string();
        assert!(
            message.contains("bindings.toml:3:8: tools.disbursement.file")
                && message.contains(why)
                && message.contains("--allow-paths-outside-bindings-dir"),
            "{message}"
        );
        assert_eq!(
            std::fs::read_to_string(&victim).expect("victim"),
            "export PATH=/usr/bin\n"
        );
    }
    assert!(!root.path().join("elsewhere").exists());
}

#[test]
fn fixtures_and_scorecards_outside_the_directory_are_refused_too() {
    let root = tempfile::tempdir().expect("tempdir");
    write(root.path(), "secret.json", r#"{"A-1": {"pin": 1234}}"#);
    write(root.path(), "card.toml", SCORECARD);
    let bindings = write(
        root.path(),
        "deployment/b.toml",
        "[tools.bureau]\nprovider = \"fixture\"\nfile = \"../secret.json\"\nkey = \"id\"\n",
    );
    let error = Bindings::from_file(&bindings).expect_err("fixture outside");
    assert!(
        matches!(&error, BindingsError::PathOutside(o) if o.name == "bureau" && o.line == 3),
        "{error:?}"
    );
    let bindings = write(
        root.path(),
        "deployment/c.toml",
        "[models.pd]\nprovider = \"scorecard\"\nfile = \"sub/../../card.toml\"\n",
    );
    let error = Bindings::from_file(&bindings).expect_err("scorecard outside");
    assert!(
        matches!(&error, BindingsError::PathOutside(o) if o.name == "pd" && o.reason == crate::confine::OutsideReason::ClimbsOut),
        "{error:?}"
    );
}

#[test]
fn the_operator_may_allow_paths_outside_but_never_a_file_that_is_not_a_ledger() {
    let root = tempfile::tempdir().expect("tempdir");
    let allow = LoadOptions {
        allow_outside: true,
        ..LoadOptions::default()
    };
    let (bindings, _) = crafted(root.path(), "../shared/ledger.jsonl");
    std::fs::create_dir_all(root.path().join("shared")).expect("mkdir");
    let loaded = Bindings::from_file_with(&bindings, &allow).expect("allowed");
    let key = IdempotencyKey {
        run_id: "r".into(),
        call_seq: 1,
    };
    loaded
        .call_tool("disbursement", "{}", &key)
        .expect("effect");
    let ledger = std::fs::read_to_string(root.path().join("shared/ledger.jsonl")).expect("read");
    assert!(ledger.contains(r#""key":"r/1""#), "{ledger}");

    // Allowed outside, a foreign file is still no ledger.
    let (bindings, victim) = crafted(root.path(), "../victim.txt");
    let error = Bindings::from_file_with(&bindings, &allow).expect_err("not a ledger");
    assert!(
        matches!(&error, BindingsError::NotALedger { path, line: 1, .. } if path.ends_with("victim.txt")),
        "{error:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "export PATH=/usr/bin\n"
    );
}

#[test]
fn a_ledger_inside_the_directory_that_is_not_a_ledger_is_refused_and_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let profile = write(dir.path(), "profile", "alias ls='rm -rf ~'");
    let bindings = write(
        dir.path(),
        "b.toml",
        "[tools.pay]\nprovider = \"ledger\"\nfile = \"profile\"\n",
    );
    let message = Bindings::from_file(&bindings)
        .expect_err("not a ledger")
        .to_string();
    assert!(message.contains("profile:1: not a ledger"), "{message}");
    assert_eq!(
        std::fs::read_to_string(&profile).expect("read"),
        "alias ls='rm -rf ~'"
    );
}

/// Regression (resume recreated a lost ledger): under `LedgerMode::MustExist` a missing
/// ledger is an error naming it and the entry, and no file is created.
#[test]
fn a_ledger_that_must_exist_and_does_not_is_named_and_not_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = deployment(dir.path());
    let must_exist = LoadOptions {
        ledgers: LedgerMode::MustExist,
        ..LoadOptions::default()
    };
    let error = Bindings::from_file_with(&path, &must_exist).expect_err("missing");
    match &error {
        BindingsError::LedgerMissing {
            path: ledger,
            tool,
            line: 9,
            column: 8,
            ..
        } => {
            assert_eq!(tool, "disbursement");
            assert_eq!(ledger, &dir.path().join("ledger.jsonl"));
        }
        other => panic!("{other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains("tools.disbursement.file") && message.contains("again"),
        "{message}"
    );
    assert!(!dir.path().join("ledger.jsonl").exists());

    Bindings::from_file(&path).expect("created by a run that starts");
    Bindings::from_file_with(&path, &must_exist).expect("exists now");
}

/// Issue #18: a bindings file stopped at its first mistake, without a field path; now
/// every problem of the file, of its cards and of its fixtures is listed at once, each
/// with its line and field.
#[test]
fn every_problem_of_a_bindings_file_is_reported_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "fixtures/bureau.json", "{\n  \"A-1\": 700\n}");
    write(
        dir.path(),
        "models/pd.toml",
        &SCORECARD.replace("weight = 2.0", "weight = \"2\""),
    );
    let path = write(
        dir.path(),
        "bindings.toml",
        "[tools.credit_bureau]\nprovider = \"fixture\"\nfile = \"fixtures/bureau.json\"\nkye = \"applicant_id\"\n\n\
         [tools.payments]\nprovider = \"ledgr\"\nfile = \"ledger.jsonl\"\n\n\
         [models.pd_scorecard]\nprovider = \"scorecard\"\nfile = \"models/pd.toml\"\n\n\
         [modles.x]\n",
    );
    let error = Bindings::from_file(&path).expect_err("broken");
    let messages: Vec<String> = error.problems().iter().map(ToString::to_string).collect();
    let expected = [
        "bindings.toml:4:1: tools.credit_bureau.kye: unknown field `kye`; did you mean `key`?",
        "bindings.toml:7:12: tools.payments.provider: unknown tool provider \"ledgr\" (expected \"fixture\", \"ledger\", \"http\" or \"files\"); did you mean \"ledger\"?",
        "bindings.toml:14:2: modles: unknown field `modles`; did you mean `models`?",
        "bureau.json:2: record \"A-1\": a record must be a JSON object",
        "pd.toml:9:10: features[0].weight: expected a number, found a string",
    ];
    // The bindings file's own problems first, by line; then each other file's.
    for (want, got) in expected.iter().zip(&messages) {
        assert!(got.contains(want), "{want:?} is not {got:?}");
    }
    for want in expected {
        assert!(
            messages.iter().any(|m| m.contains(want)),
            "{want:?} is not among:\n{}",
            messages.join("\n")
        );
    }
    assert_eq!(messages.len(), expected.len(), "{}", messages.join("\n"));
    assert!(
        !dir.path().join("ledger.jsonl").exists(),
        "a broken file creates no ledger"
    );
}

/// Issue #18: a missing card printed its cause twice and did not say which binding
/// pointed there.
#[test]
fn a_missing_card_names_its_binding_and_its_cause_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "b.toml",
        "[models.pd]\nprovider = \"scorecard\"\nfile = \"nowhere.toml\"\n",
    );
    let error = Bindings::from_file(&path).expect_err("missing");
    assert!(std::error::Error::source(&error).is_none(), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("b.toml:3:8: models.pd.file: cannot read ")
            && message.contains("nowhere.toml: "),
        "{message}"
    );
    assert_eq!(message.matches("os error 2").count(), 1, "{message}");
}

/// Issue #18: a card whose `name` differs from its binding was accepted.
#[test]
fn a_card_named_otherwise_than_its_binding_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "fraud.toml",
        &SCORECARD.replace("\"pd_scorecard\"", "\"fraud_model\""),
    );
    let path = write(
        dir.path(),
        "b.toml",
        "\n[models.pd_scorecard]\nprovider = \"scorecard\"\nfile = \"fraud.toml\"\n",
    );
    let error = Bindings::from_file(&path).expect_err("another model's card");
    assert!(
        matches!(&error, BindingsError::CardName(card) if card.line == 2 && card.binding_line == 2 && card.found == "fraud_model" && card.model == "pd_scorecard"),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("fraud.toml:2:8: name: the card is named \"fraud_model\""),
        "{error}"
    );
}

#[test]
fn an_inspection_creates_and_writes_nothing_and_describes_every_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = deployment(dir.path());
    let inspect = LoadOptions {
        ledgers: LedgerMode::Inspect,
        ..LoadOptions::default()
    };
    let inspection = Bindings::inspect(&path, &inspect);
    assert!(inspection.problems.is_empty(), "{:?}", inspection.problems);
    assert!(!dir.path().join("ledger.jsonl").exists());
    assert!(inspection.bindings.is_effect("disbursement"));
    let key = IdempotencyKey {
        run_id: "r".into(),
        call_seq: 1,
    };
    let error = inspection
        .bindings
        .call_tool("disbursement", "{}", &key)
        .expect_err("an inspected ledger performs nothing");
    assert_eq!(error.kind, CallErrorKind::Unavailable);
    let names: Vec<(&str, &str, usize)> = inspection
        .entries
        .iter()
        .map(|e| (e.section, e.name.as_str(), e.line))
        .collect();
    assert_eq!(
        names,
        [
            ("tools", "credit_bureau", 2),
            ("tools", "disbursement", 7),
            ("models", "pd_scorecard", 11)
        ]
    );
    assert_eq!(inspection.bindings.features("pd_scorecard"), ["dti"]);
    assert_eq!(
        inspection.bindings.hash(),
        Bindings::from_file(&path).expect("load").hash(),
        "inspecting hashes what loading hashes"
    );
    // A file that exists but is not a ledger is refused by an inspection too.
    write(dir.path(), "ledger.jsonl", "alias ls='rm -rf ~'\n");
    let inspection = Bindings::inspect(&path, &inspect);
    assert!(
        matches!(
            inspection.problems.as_slice(),
            [BindingsError::NotALedger { .. }]
        ),
        "{:?}",
        inspection.problems
    );
}
