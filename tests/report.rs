//! The audit report (`warden report`): one self-contained HTML page per run that shows
//! every decision of the run, the gate that escalated it and the review that decided it,
//! the digests of what ran, and whether the run verifies; that loads nothing; whose every
//! string from the journal is escaped, so that a hostile agent or reviewer cannot inject
//! markup; and that says so plainly when the journal was tampered with. Where headless
//! Chromium is installed, the page is rendered and its DOM read back.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use warden::RecordBody;
use warden_test_guests as guests;

use crate::support::tamper::{copy_db, tamper};
use crate::support::{Sandbox, loan_example, warden_json_on};
use crate::support::{output_text as text, warden_in as warden};

/// Text as the report writes it into HTML (`=` too, so that no text reads as `src=`).
fn html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
        .replace('=', "&#61;")
}

/// A signed journal in a temporary directory holding one loan application that the
/// confidence gate sent to review, where an intern's decision was refused and an
/// underwriter approved it.
struct Reviewed {
    dir: tempfile::TempDir,
    run_id: String,
    key_id: String,
}

impl Reviewed {
    fn db(&self) -> PathBuf {
        self.dir.path().join("warden.redb")
    }

    /// `warden report RUN -o NAME ARGS` in the directory: the exit code, what it printed
    /// and the page.
    fn report(&self, db: &Path, name: &str, args: &[&str]) -> (i32, String, String) {
        report_on(self.dir.path(), db, &self.run_id, name, args)
    }
}

fn report_on(
    dir: &Path,
    db: &Path,
    run_id: &str,
    name: &str,
    args: &[&str],
) -> (i32, String, String) {
    let db = db.to_str().expect("utf-8");
    let mut all = vec!["--db", db, "report", run_id, "-o", name];
    all.extend(args);
    let out = warden(dir, &all);
    let page = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    (out.status.code().unwrap_or(-1), text(&out), page)
}

const NOTE: &str = "income verified with the employer by phone";

fn reviewed_loan_run() -> Reviewed {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = warden(dir.path(), &["key", "generate", "--out", "deployment"]);
    assert!(out.status.success(), "{}", text(&out));
    let key_id = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("key id").map(|id| id.trim().to_string()))
        .expect("key generate prints the key id");
    let example = loan_example().to_string_lossy().into_owned();
    let application = loan_example()
        .join("applications/05-gate-escalates.json")
        .to_string_lossy()
        .into_owned();
    let signed = ["--db", "warden.redb", "--signing-key", "deployment.key"];
    let mut args = signed.to_vec();
    args.extend([
        "run",
        &example,
        "--input",
        &application,
        "--submitter",
        "loan-officer",
        "--json",
    ]);
    let out = warden(dir.path(), &args);
    assert_eq!(
        out.status.code(),
        Some(10),
        "the gate escalates: {}",
        text(&out)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("run JSON");
    let run_id = report["run_id"].as_str().expect("run id").to_string();
    let (_, case) = warden_json_on(&dir.path().join("warden.redb"), &["review", &run_id]);
    let action = case["action"].as_str().expect("action").to_string();
    for (reviewer, role, note, code) in [
        ("t.intern", "intern", "looks fine to me", 2),
        ("u.schmidt", "underwriter", NOTE, 0),
    ] {
        let mut args = signed.to_vec();
        args.extend([
            "review",
            &run_id,
            "--decide",
            "approved",
            "--reviewer",
            reviewer,
            "--role",
            role,
            "--note",
            note,
            "--action",
            &action,
        ]);
        let out = warden(dir.path(), &args);
        assert_eq!(out.status.code(), Some(code), "{}", text(&out));
    }
    Reviewed {
        dir,
        run_id,
        key_id,
    }
}

/// The page loads nothing and runs nothing.
fn assert_self_contained(page: &str) {
    for forbidden in [
        "http://", "https://", "<script", "<link", "src=", "<img", "<iframe", "url(",
    ] {
        assert!(
            !page.contains(forbidden),
            "the report contains {forbidden:?}"
        );
    }
    assert_eq!(page.matches("<svg").count(), 1, "one diagram");
    assert_eq!(
        page.matches("</svg>").count(),
        1,
        "one diagram, closed once"
    );
}

#[test]
fn the_report_of_a_reviewed_loan_run_shows_every_decision_the_gate_the_review_and_the_digests() {
    let run = reviewed_loan_run();
    let db = run.db();
    let public = run.dir.path().join("deployment.pub");
    let (code, printed, page) = run.report(
        &db,
        "report.html",
        &["--key", public.to_str().expect("utf-8")],
    );
    assert_eq!(code, 0, "{printed}");
    assert!(printed.contains("verified"), "{printed}");
    assert_self_contained(&page);

    let (_, shown) = warden_json_on(&db, &["show", &run.run_id]);
    let summary = &shown["run"];
    assert!(page.contains(&run.run_id));
    // Every host call's decision and the rule behind it.
    let mut calls = 0;
    for record in shown["records"].as_array().expect("records") {
        if record["kind"] != "host_call" {
            continue;
        }
        calls += 1;
        let decision = &record["body"]["decision"];
        let explanation = decision["explanation"].as_str().expect("explanation");
        assert!(
            page.contains(&html(explanation)),
            "call {}: {explanation}",
            record["body"]["call"]
        );
        let rule = match &decision["rule"] {
            Value::String(name) => name.clone(),
            Value::Object(fields) => fields.keys().next().expect("rule name").clone(),
            other => panic!("rule {other}"),
        };
        assert!(
            page.contains(&format!("<code class=\"rule\">{rule}</code>")),
            "{rule}"
        );
    }
    assert_eq!(calls, 20, "every host call of the run");
    for verdict in ["allowed", "escalated"] {
        assert!(page.contains(&format!(
            "<span class=\"verdict {verdict}\">{verdict}</span>"
        )));
    }
    // The gate: its label, the probability and the threshold.
    assert!(
        page.contains("P(repay) = <strong>0.8899</strong> &lt; 0.9"),
        "the gate's comparison"
    );
    assert!(page.contains("GateLabelNotMet"));
    for feature in [
        "debt_to_income",
        "credit_score_scaled",
        "(bureau:/credit_score - 700) / 100",
    ] {
        assert!(page.contains(feature), "{feature}");
    }
    assert!(page.contains("6 declared features were recomputed"));
    // The review: who, in which role, why; and the refused intern.
    for text in [
        "u.schmidt",
        "underwriter",
        NOTE,
        "t.intern",
        "refused because the role may not give that outcome",
    ] {
        assert!(page.contains(&html(text)), "{text}");
    }
    assert!(page.contains("loan-officer"), "who submitted it");
    // The path through the state machine, numbered.
    for (n, (from, to)) in [
        ("intake", "bureau_check"),
        ("bureau_check", "affordability"),
        ("affordability", "scoring"),
        ("scoring", "manual_review"),
        ("manual_review", "approved"),
    ]
    .iter()
    .enumerate()
    {
        assert!(
            page.contains(&format!("<code>{from}</code> \u{2192} <code>{to}</code>")),
            "move {n}"
        );
        let badge = format!("text-anchor=\"middle\">{}</text>", n + 1);
        assert!(page.contains(&badge), "the diagram numbers move {}", n + 1);
    }
    // The digests, in full.
    for field in [
        "agent",
        "policy",
        "policy_text",
        "bindings",
        "input",
        "head",
    ] {
        let digest = summary[field].as_str().expect("digest");
        assert_eq!(digest.len(), 64);
        assert!(page.contains(digest), "{field} digest");
    }
    // Verified against the key, with the log entry and the tree head.
    assert!(page.contains("<strong>Verified.</strong>"));
    assert!(page.contains(&format!(
        "every head of the run is signed by key <code>{}</code>",
        run.key_id
    )));
    assert!(page.contains("inclusion proof"));
    assert!(page.contains("warden-sth-v1"));
    assert!(!page.contains("signatures not checked"));
    assert!(page.contains("This report is a rendering; the journal is the record."));

    // Without the key it says plainly that signatures were not checked.
    let (code, printed, page) = run.report(&db, "unchecked.html", &[]);
    assert_eq!(code, 0, "{printed}");
    assert!(page.contains("signatures not checked (no --key)"));
    assert!(page.contains(&run.key_id), "the key the log entries name");

    // An existing report is kept unless --force; an unknown run is a usage error.
    let before = std::fs::read_to_string(run.dir.path().join("report.html")).expect("report");
    let (code, printed, _) = run.report(&db, "report.html", &[]);
    assert_eq!(code, 2, "{printed}");
    assert!(printed.contains("--force"), "{printed}");
    let after = std::fs::read_to_string(run.dir.path().join("report.html")).expect("report");
    assert_eq!(before, after, "the existing report is untouched");
    let (code, printed, _) = run.report(&db, "report.html", &["--force"]);
    assert_eq!(code, 0, "{printed}");
    let (code, printed, _) = report_on(run.dir.path(), &db, "no-such-run", "other.html", &[]);
    assert_eq!(code, 2, "{printed}");
    assert!(printed.contains("no run `no-such-run`"), "{printed}");
    assert!(!run.dir.path().join("other.html").exists());
    let leftovers: Vec<_> = std::fs::read_dir(run.dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".new"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary file is left: {leftovers:?}"
    );
}

/// A review state the agent may enter itself, decided by a clerk; its comment tries to
/// close the policy appendix.
const HOSTILE_POLICY: &str = r#"
# </pre><script>alert('policy')</script>
[policy]
name = "hostile-report"
version = "1"
initial = "start"

[states.start]
transitions = ["check", "done"]

[states.check]
review = true
transitions = ["done"]

[states.check.decisions.done]
roles = ["clerk"]

[states.done]
terminal = true
"#;

const SCRIPT: &str = "<script>alert(1)</script>";
const SVG_BREAKOUT: &str = "</svg><img src=x onerror=alert(1)>";

#[test]
fn hostile_text_from_the_agent_and_the_reviewer_is_escaped_never_markup() {
    let sandbox = Sandbox::new();
    let policy = sandbox.path("hostile.toml");
    std::fs::write(&policy, HOSTILE_POLICY).expect("policy");
    let plan = json!([
        [
            {"log": {"message": SCRIPT}},
            {"log": {"message": SVG_BREAKOUT}},
            {"log": {"message": "see https://exfil.example/x \u{202e}txt.exe"}},
            {"transition": {"to": "check"}}
        ],
        [
            "read_review",
            {"finish": {"output": {"note": SCRIPT, "svg": SVG_BREAKOUT}}}
        ]
    ]);
    let input = sandbox.input("case.json", &json!({"plan": plan}));
    let (code, run) = sandbox.warden_json(&[
        "run",
        guests::SCRIPTED,
        "--policy",
        policy.to_str().expect("utf-8"),
        "--bindings",
        sandbox.bindings().to_str().expect("utf-8"),
        "--input",
        input.to_str().expect("utf-8"),
        "--submitter",
        "tester",
    ]);
    assert_eq!(code, 10, "the agent sends itself to review: {run:#}");
    let run_id = run["run_id"].as_str().expect("run id").to_string();

    // While it awaits review, the report shows the open case.
    let (code, printed, page) =
        report_on(sandbox.dir.path(), &sandbox.db(), &run_id, "open.html", &[]);
    assert_eq!(code, 0, "{printed}");
    assert!(
        page.contains("<strong>Awaiting review</strong>"),
        "the open case"
    );

    let (_, case) = sandbox.warden_json(&["review", &run_id]);
    let action = case["action"].as_str().expect("action").to_string();
    // Markup cannot be a reviewer's id (refused, exit 2), but a note is free text.
    let reviewer = "<b>mallory</b>";
    let refused = sandbox.warden(&[
        "review",
        &run_id,
        "--decide",
        "done",
        "--reviewer",
        reviewer,
        "--role",
        "clerk",
        "--note",
        "n",
        "--action",
        &action,
    ]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let note = "<b>mallory</b></td></tr></table><script>alert(3)</script>";
    let (code, decided) = sandbox.warden_json(&[
        "review",
        &run_id,
        "--decide",
        "done",
        "--reviewer",
        "mallory",
        "--role",
        "clerk",
        "--note",
        note,
        "--action",
        &action,
    ]);
    assert_eq!(code, 0, "{decided:#}");

    let (code, printed, page) = report_on(
        sandbox.dir.path(),
        &sandbox.db(),
        &run_id,
        "report.html",
        &[],
    );
    assert_eq!(code, 0, "{printed}");
    assert_self_contained(&page);
    for raw in [
        "<b>",
        "</td></tr></table><script",
        "</pre><script",
        "onerror=alert(1)>",
        "\u{202e}",
    ] {
        assert!(!page.contains(raw), "{raw:?} reached the page raw");
    }
    for escaped in [
        html(SCRIPT),
        html(SVG_BREAKOUT),
        html(reviewer),
        html(note),
        html("</pre><script>alert('policy')</script>"),
        "https&#58;//exfil.example/x \\u{202e}txt.exe".to_string(),
    ] {
        assert!(page.contains(&escaped), "{escaped} is shown, escaped");
    }
    // The output's JSON, pretty-printed, escaped too.
    assert!(page.contains(&html(&format!("\"note\": \"{SCRIPT}\""))));
    if let Some(dom) = chromium_dom(&sandbox.path("report.html")) {
        for element in ["<script", "<img", "<b>"] {
            assert!(
                !dom.contains(element),
                "the rendered page has a {element} element"
            );
        }
        assert!(
            dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "shown as text"
        );
    }
}

#[test]
fn a_tampered_journal_is_reported_as_not_verifying_naming_the_record() {
    let run = reviewed_loan_run();
    let (_copy_dir, copy) = copy_db(&run.db());
    // A forger rewrites the reviewer's justification and re-seals the chain.
    let edited = tamper(&copy, &run.run_id, true, |record| match &mut record.body {
        RecordBody::Review(review) => {
            review.note = "approved on instruction of the CEO".into();
            true
        }
        _ => false,
    });
    let (code, printed, page) = run.report(&copy, "tampered.html", &[]);
    assert_eq!(code, 12, "written, but the run does not verify: {printed}");
    assert!(printed.contains("DOES NOT VERIFY"), "{printed}");
    assert!(
        page.contains(&format!("The run does NOT verify at record {edited}.")),
        "the banner names the record"
    );
    assert!(
        page.contains("does NOT verify</strong>"),
        "the verification section"
    );
    assert!(page.contains(&format!("record {edited}: ")));
    assert!(
        page.contains("does not check out</strong>"),
        "the record's row is marked"
    );
    assert!(!page.contains("<strong>Verified.</strong>"));
    assert_self_contained(&page);
}

/// Renders `file` in headless Chromium and returns its DOM, or `None` (with a note)
/// where Chromium is not installed (`scripts/report-screenshot.sh` installs it).
fn chromium_dom(file: &Path) -> Option<String> {
    let found = Command::new("sh")
        .args(["-c", "command -v chromium"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!(
            "note: chromium is not installed; the report is not rendered (run scripts/report-screenshot.sh to install it)"
        );
        return None;
    }
    let profile = tempfile::tempdir().expect("profile dir");
    let out = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("file://{}", file.display()))
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium: {}", text(&out));
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn the_report_renders_in_headless_chromium_with_the_run_s_decisions() {
    let run = reviewed_loan_run();
    let (code, printed, _) = run.report(&run.db(), "report.html", &[]);
    assert_eq!(code, 0, "{printed}");
    let Some(dom) = chromium_dom(&run.dir.path().join("report.html")) else {
        return;
    };
    assert!(dom.contains("<svg"), "the diagram is in the DOM");
    assert!(!dom.contains("<script"), "no script element");
    for text in [
        run.run_id.as_str(),
        "escalated",
        "GateLabelNotMet",
        "CapabilityAllowed",
        "FeaturesReconciled",
        "FinishInTerminal",
        "u.schmidt",
        NOTE,
        "Verified.",
    ] {
        assert!(dom.contains(text), "the rendered page shows {text}");
    }
}
