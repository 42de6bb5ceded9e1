//! Tests of the policy format: the reference example, its canonical hash, one test per
//! rule that pins the position, field and problem a governance engineer would see, and
//! property tests that the parser never panics and accepts a family of valid policies.

use super::*;

mod input;
mod properties;
mod rules;
mod wasi;

/// The reference example of the format (also in `policies/README.md`).
const EXAMPLE: &str = r#"[policy]
name = "consumer-loan-underwriting"     # required, non-empty
version = "1.0.0"                        # required, non-empty
initial = "intake"                       # required: a declared state
description = "free text"                # optional

[capabilities]                           # the tools and models this policy knows
tools = ["credit_bureau"]                # optional, default []
models = ["pd_scorecard"]                # optional, default []

[budgets]                                # whole table optional; every field optional
fuel_per_step = 500_000_000              # wasmtime fuel units per step
memory_bytes = 67_108_864                # guest linear memory ceiling
max_steps = 100
max_host_calls = 1_000                   # per run
max_request_bytes = 1_048_576            # one encoded host-call request
max_response_bytes = 1_048_576           # one encoded host-call response
wall_clock_ms = 30_000                   # per step safety stop
max_journal_bytes = 67_108_864           # all journal records of one run
checkpoint_every = 1                     # take a checkpoint every N steps

[states.intake]
transitions = ["bureau_check", "declined"]

[states.bureau_check]
tools = ["credit_bureau"]                # capabilities allowed in this state
transitions = ["scoring", "manual_review", "declined"]

[states.scoring]
models = ["pd_scorecard"]
transitions = ["approved", "declined", "manual_review"]

[states.approved]
terminal = true

[states.declined]
terminal = true

[states.manual_review]
review = true                            # a human-review state: a run that enters it stops as awaiting_review
transitions = ["approved", "declined"]   # what a reviewer may decide

[states.manual_review.decisions.approved]   # who may decide each outcome
roles = ["underwriter"]
dual_control = true                      # two distinct reviewers must approve

[states.manual_review.decisions.declined]
roles = ["underwriter"]

[states.manual_review.timeout]           # undecided for 72 hours: declined (never an approval)
after = "72h"
outcome = "declined"

[[gates]]                                # confidence gates
to = "approved"                          # guards every transition into this state
model = "pd_scorecard"                   # the confidence must come from an inference of this model
label = "repay"                          # ... and is its probability of this label
min_confidence = 0.90                    # in [0, 1]
otherwise = "manual_review"              # where the run goes when the gate is not met: must be a review state

[models.pd_scorecard]                    # rules of one model (optional)
max_calls_per_state = 1                  # no shopping: one inference per visit of a state

[models.pd_scorecard.sources]            # recorded tool answers features may come from
bureau = { tool = "credit_bureau", args = { "/applicant_id" = "/applicant_id" } }

[models.pd_scorecard.features]           # where each feature comes from; reconciled before scoring
credit_score_scaled = "(bureau:/credit_score - 700) / 100"
"#;

/// The same contract as [`EXAMPLE`]: tables and lists reordered, inline tables, other
/// comments and spacing, defaulted budgets left out, a whole-number-looking float.
const EXAMPLE_REFORMATTED: &str = r#"
# Consumer lending, reviewed by the credit committee.
[models.pd_scorecard.features]
credit_score_scaled = "(bureau:/credit_score - 700)/100"

[models.pd_scorecard.sources.bureau]
args = { "/applicant_id" = "/applicant_id" }
tool = "credit_bureau"

[models.pd_scorecard]
max_calls_per_state = 1

[[gates]]
otherwise="manual_review"
min_confidence=0.9
label = "repay"
model="pd_scorecard"
to="approved"

[states]
declined = { terminal = true }
approved = { terminal = true }
manual_review = { transitions = [ "declined", "approved" ], review = true, decisions = { declined = { roles = ["underwriter"] }, approved = { dual_control = true, roles = ["underwriter"] } }, timeout = { outcome = "declined", after = "3days" } }

[states.scoring]
transitions = [
    "manual_review",
    "declined",
    "approved",
]
models = ['pd_scorecard']

[states.bureau_check]
transitions = ["declined", "manual_review", "scoring"]
tools = ["credit_bureau"]

[states.intake]
transitions = ["declined", "bureau_check"]

[capabilities]
models = ["pd_scorecard"]
tools = ["credit_bureau"]

[budgets]
max_steps = 0x64

[policy]
description = "free text"
initial = "intake"
version = "1.0.0"
name = "consumer-loan-underwriting"
"#;

fn parse(text: &str) -> Result<Policy, PolicyError> {
    Policy::parse(text, "test.toml")
}

fn diagnostics(text: &str) -> Vec<Diagnostic> {
    match parse(text) {
        Err(PolicyError::Invalid { diagnostics }) => diagnostics,
        other => panic!("expected an invalid policy, got {other:?}"),
    }
}

/// The one diagnostic of `text`.
fn only(text: &str) -> Diagnostic {
    let mut all = diagnostics(text);
    assert_eq!(
        all.len(),
        1,
        "expected one diagnostic, got:\n{}",
        diagnostic::render_all(&all)
    );
    all.remove(0)
}

/// [`EXAMPLE`] with the single occurrence of `from` replaced by `to`.
fn edit(from: &str, to: &str) -> String {
    assert_eq!(
        EXAMPLE.matches(from).count(),
        1,
        "`{from}` must occur once in the example"
    );
    EXAMPLE.replace(from, to)
}

/// 1-based line of the first line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    let index = text.lines().position(|line| line.contains(needle));
    index.unwrap_or_else(|| panic!("`{needle}` not in text")) + 1
}

#[test]
fn example_parses() {
    let policy = parse(EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(policy.name, "consumer-loan-underwriting");
    assert_eq!(policy.version, "1.0.0");
    assert_eq!(policy.description.as_deref(), Some("free text"));
    assert_eq!(policy.initial, "intake");
    assert_eq!(policy.tools, BTreeSet::from(["credit_bureau".to_string()]));
    assert_eq!(policy.budgets, Budgets::DEFAULT);
    assert_eq!(policy.states.len(), 6);
    let kind = |name: &str| policy.state(name).map(|s| s.kind);
    assert_eq!(kind("intake"), Some(StateKind::Working));
    assert_eq!(kind("approved"), Some(StateKind::Terminal));
    assert_eq!(kind("manual_review"), Some(StateKind::Review));
    assert_eq!(kind("nowhere"), None);
    let bureau = policy.state("bureau_check").map(|s| &s.tools);
    assert_eq!(bureau, Some(&BTreeSet::from(["credit_bureau".to_string()])));
    let gate = policy.gate("approved").cloned();
    let expected = ConfidenceGate {
        to: "approved".into(),
        model: "pd_scorecard".into(),
        min_confidence: 0.90,
        otherwise: "manual_review".into(),
        label: Some("repay".into()),
        require_reconciled: true,
    };
    assert_eq!(gate, Some(expected));
    assert!(policy.gate("declined").is_none());
}

#[test]
fn omitted_budgets_take_the_defaults() {
    let start = EXAMPLE.find("[budgets]").unwrap_or_default();
    let end = EXAMPLE.find("[states.intake]").unwrap_or_default();
    let text = format!("{}{}", &EXAMPLE[..start], &EXAMPLE[end..]);
    let policy = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(policy.budgets, Budgets::DEFAULT);
}

#[test]
fn hash_ignores_formatting_comments_and_order() {
    let a = parse(EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
    let b = parse(EXAMPLE_REFORMATTED).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a, b);
    assert_eq!(a.hash(), b.hash());
    let shown = a.hash().to_string();
    assert_eq!(shown.len(), 64);
    assert!(
        shown
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
}

#[test]
fn hash_changes_with_any_change_of_meaning() {
    let base = parse(EXAMPLE).unwrap_or_else(|e| panic!("{e}")).hash();
    let edits = [
        ("min_confidence = 0.90", "min_confidence = 0.95"),
        ("max_steps = 100", "max_steps = 101"),
        (
            "description = \"free text\"",
            "description = \"other text\"",
        ),
        ("version = \"1.0.0\"", "version = \"1.0.1\""),
        (
            "tools = [\"credit_bureau\"]                # optional",
            "tools = [\"credit_bureau\", \"fraud\"] #",
        ),
        (
            "[\"scoring\", \"manual_review\", \"declined\"]",
            "[\"scoring\", \"manual_review\"]",
        ),
        ("models = [\"pd_scorecard\"]\ntransitions", "transitions"),
    ];
    let mut seen = BTreeSet::from([base]);
    for (from, to) in edits {
        let edited = parse(&edit(from, to)).unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
        assert!(
            seen.insert(edited.hash()),
            "editing `{from}` to `{to}` left the hash unchanged"
        );
    }
}

#[test]
fn transition_to_an_unknown_state() {
    let text = edit(
        "[\"approved\", \"declined\", \"manual_review\"]",
        "[\"approved\", \"declined\", \"manual_reveiw\"]",
    );
    let d = only(&text);
    let line = line_of(&text, "manual_reveiw");
    assert_eq!(
        (d.line, d.field.as_str()),
        (line, "states.scoring.transitions")
    );
    let column = text
        .lines()
        .nth(line - 1)
        .and_then(|l| l.find("\"manual_reveiw"))
        .unwrap_or_default()
        + 1;
    assert_eq!(d.column, column);
    assert!(matches!(&d.problem, Problem::UnknownState { name } if name == "manual_reveiw"));
}

#[test]
fn unreachable_state() {
    let text = format!("{EXAMPLE}\n[states.withdrawn]\nterminal = true\n");
    let d = only(&text);
    assert_eq!(
        (d.line, d.column),
        (line_of(&text, "[states.withdrawn]"), 1)
    );
    assert_eq!(d.field, "states.withdrawn");
    assert!(
        matches!(&d.problem, Problem::UnreachableState { state, initial } if state == "withdrawn" && initial == "intake")
    );
}

#[test]
fn gate_on_an_undeclared_model() {
    let text = edit("model = \"pd_scorecard\"  ", "model = \"pd_scorecard_v2\"");
    let d = only(&text);
    assert_eq!(
        (d.line, d.field.as_str()),
        (line_of(&text, "pd_scorecard_v2"), "gates[0].model")
    );
    assert!(
        matches!(&d.problem, Problem::GateUnknownModel { model } if model == "pd_scorecard_v2")
    );
}

#[test]
fn no_terminal_state() {
    let text = "[policy]\nname = \"n\"\nversion = \"1\"\ninitial = \"work\"\n\n\
                [states.work]\ntransitions = [\"review\"]\n\n\
                [states.review]\nreview = true\ntransitions = [\"work\"]\n\
                [states.review.decisions.work]\nroles = [\"r\"]\n";
    let d = only(text);
    assert_eq!((d.line, d.field.as_str()), (6, "states"));
    assert!(matches!(d.problem, Problem::NoTerminalState));
}

#[test]
fn syntax_error() {
    let text = edit("version = \"1.0.0\"", "version = \"1.0.0");
    let d = diagnostics(&text).remove(0);
    assert_eq!(d.line, line_of(&text, "version ="));
    assert!(matches!(d.problem, Problem::Syntax(_)), "{d}");
}

#[test]
fn unknown_field() {
    let text = edit(
        "models = [\"pd_scorecard\"]\ntransitions",
        "models = [\"pd_scorecard\"]\ntransitons",
    );
    let d = only(&text);
    assert_eq!((d.line, d.column), (line_of(&text, "transitons"), 1));
    assert_eq!(d.field, "states.scoring.transitons");
    assert!(matches!(&d.problem, Problem::UnknownField { name, .. } if name == "transitons"));
}

#[test]
fn budget_over_cap() {
    let text = edit("max_steps = 100", "max_steps = 1_000_000");
    let d = only(&text);
    assert_eq!(
        (d.line, d.column, d.field.as_str()),
        (line_of(&text, "max_steps"), 13, "budgets.max_steps")
    );
    assert!(matches!(
        d.problem,
        Problem::BudgetOverCap {
            field: "max_steps",
            value: 1_000_000,
            cap: 100_000
        }
    ));
    assert!(d.problem.to_string().contains("100000"), "{d}");
}

#[test]
fn budget_zero() {
    let text = edit("checkpoint_every = 1 ", "checkpoint_every = 0 ");
    let d = only(&text);
    assert_eq!(
        (d.line, d.field.as_str()),
        (
            line_of(&text, "checkpoint_every"),
            "budgets.checkpoint_every"
        )
    );
    assert!(matches!(
        d.problem,
        Problem::BudgetZero {
            field: "checkpoint_every"
        }
    ));
}

#[test]
fn gate_otherwise_not_a_review_state() {
    let text = edit("otherwise = \"manual_review\"", "otherwise = \"declined\"");
    let d = only(&text);
    assert_eq!(
        (d.line, d.field.as_str()),
        (line_of(&text, "otherwise ="), "gates[0].otherwise")
    );
    assert!(matches!(&d.problem, Problem::GateOtherwiseNotReview { state } if state == "declined"));
}

#[test]
fn undeclared_tool_in_a_state() {
    let text = edit(
        "tools = [\"credit_bureau\"]                # capabilities",
        "tools = [\"credit_bureau\", \"fraud_check\"] #",
    );
    let d = only(&text);
    assert_eq!((d.line, d.column), (line_of(&text, "fraud_check"), 27));
    assert_eq!(d.field, "states.bureau_check.tools");
    assert!(
        matches!(&d.problem, Problem::UnknownCapability { kind: CapabilityKind::Tool, name } if name == "fraud_check")
    );
}

#[test]
fn missing_initial() {
    let text = edit(
        "initial = \"intake\"                       # required: a declared state\n",
        "",
    );
    let d = only(&text);
    assert_eq!(
        (d.line, d.column, d.field.as_str()),
        (1, 1, "policy.initial")
    );
    assert!(matches!(d.problem, Problem::Missing { .. }));
    assert!(
        d.to_string()
            .starts_with("test.toml:1:1: policy.initial: required field is missing"),
        "{d}"
    );
}

#[test]
fn dead_end_working_state() {
    let text = edit(
        "[\"bureau_check\", \"declined\"]",
        "[\"bureau_check\", \"declined\", \"limbo\"]",
    ) + "\n[states.limbo]\ntransitions = [\"limbo\"]\n";
    let d = only(&text);
    assert_eq!(
        (d.line, d.field.as_str()),
        (line_of(&text, "[states.limbo]"), "states.limbo")
    );
    assert!(matches!(&d.problem, Problem::NoWayOut { state } if state == "limbo"));
}

#[test]
fn confidence_out_of_range() {
    for value in ["1.5", "-0.1", "nan", "inf"] {
        let text = edit(
            "min_confidence = 0.90",
            &format!("min_confidence = {value}"),
        );
        let d = only(&text);
        assert_eq!(
            (d.line, d.field.as_str()),
            (line_of(&text, "min_confidence"), "gates[0].min_confidence")
        );
        assert!(
            matches!(d.problem, Problem::ConfidenceOutOfRange { .. }),
            "{value}: {d}"
        );
    }
    assert!(parse(&edit("min_confidence = 0.90", "min_confidence = 1")).is_ok());
}

#[test]
fn duplicate_gate() {
    let second = "\n[[gates]]\nto = \"approved\"\nmodel = \"pd_scorecard\"\nlabel = \"repay\"\nmin_confidence = 0.5\notherwise = \"manual_review\"\n";
    let text = format!("{EXAMPLE}{second}");
    let d = only(&text);
    assert_eq!(
        (d.line, d.field.as_str()),
        (EXAMPLE.lines().count() + 3, "gates[1].to")
    );
    let first_line = line_of(&text, "to = \"approved\"");
    assert!(
        matches!(&d.problem, Problem::DuplicateGate { to, first_line: f } if to == "approved" && *f == first_line)
    );
}

#[test]
fn terminal_state_rules() {
    let text = edit(
        "[states.approved]\nterminal = true",
        "[states.approved]\nterminal = true\nreview = true\ntools = [\"credit_bureau\"]",
    );
    let all = diagnostics(&text);
    assert_eq!(all.len(), 2, "{}", diagnostic::render_all(&all));
    assert_eq!(all[0].field, "states.approved.review");
    assert!(matches!(all[0].problem, Problem::TerminalAndReview { .. }));
    assert_eq!(all[1].field, "states.approved.tools");
    assert!(matches!(
        all[1].problem,
        Problem::TerminalWithTransitionsOrCapabilities { .. }
    ));

    let d = only(&edit("initial = \"intake\"", "initial = \"declined\""));
    assert_eq!(
        (d.line, d.field.as_str()),
        (line_of(EXAMPLE, "initial ="), "policy.initial")
    );
    assert!(matches!(d.problem, Problem::InitialIsTerminal { .. }));
}

#[test]
fn names_and_types() {
    let text = EXAMPLE.replace("[\"credit_bureau\"]", "[\"credit_bureau\", \"9lives\"]");
    let d = only(&text);
    assert_eq!((d.line, d.column), (line_of(&text, "9lives"), 27));
    assert_eq!(d.field, "capabilities.tools");
    assert!(matches!(&d.problem, Problem::BadName { name } if name == "9lives"));

    let d = only(&edit(
        "name = \"consumer-loan-underwriting\"",
        "name = \"  \"",
    ));
    assert!(matches!(
        (d.line, d.field.as_str(), &d.problem),
        (2, "policy.name", Problem::Empty)
    ));

    // An empty list of roles: the line of the list, not of its table.
    let text = EXAMPLE.replacen(
        "roles = [\"underwriter\"]\ndual_control",
        "roles = []\ndual_control",
        1,
    );
    let d = only(&text);
    assert_eq!(d.line, line_of(&text, "roles = []"));
    assert_eq!(d.field, "states.manual_review.decisions.approved.roles");
    assert!(matches!(d.problem, Problem::EmptyList { .. }), "{d}");
    assert!(d.to_string().contains("is an empty list"), "{d}");

    let d = only(&edit("max_steps = 100", "max_steps = \"100\""));
    assert_eq!(d.field, "budgets.max_steps");
    assert!(matches!(
        d.problem,
        Problem::WrongType {
            found: "a string",
            ..
        }
    ));

    let d = only(&edit("max_steps = 100", "max_steps = -1"));
    assert!(matches!(
        d.problem,
        Problem::WrongType {
            found: "a negative number",
            ..
        }
    ));
}

#[test]
fn review_state_without_decisions() {
    let text = edit("transitions = [\"approved\", \"declined\"]   #", "#");
    // The decisions named for outcomes it no longer offers are reported too.
    let d = diagnostics(&text).remove(0);
    assert_eq!(
        (d.line, d.field.as_str()),
        (
            line_of(&text, "[states.manual_review]"),
            "states.manual_review"
        )
    );
    assert!(matches!(d.problem, Problem::ReviewWithoutDecisions { .. }));
}

#[test]
fn several_mistakes_are_all_reported_in_order() {
    let text = EXAMPLE
        .replace("description = ", "descripton = ")
        .replace("max_steps = 100", "max_steps = 1_000_000")
        .replace(
            "tools = [\"credit_bureau\"]                # capabilities",
            "tools = [\"fraud_check\"] # capabilities",
        )
        .replace("model = \"pd_scorecard\"  ", "model = \"gbm\"")
        .replace("otherwise = \"manual_review\"", "otherwise = \"declined\"");
    let all = diagnostics(&text);
    let summary: Vec<(usize, &str)> = all.iter().map(|d| (d.line, d.field.as_str())).collect();
    let expected = [
        (line_of(&text, "descripton"), "policy.descripton"),
        (line_of(&text, "max_steps"), "budgets.max_steps"),
        (line_of(&text, "fraud_check"), "states.bureau_check.tools"),
        (line_of(&text, "\"gbm\""), "gates[0].model"),
        (line_of(&text, "otherwise ="), "gates[0].otherwise"),
    ];
    assert_eq!(summary, expected);
    assert!(matches!(all[0].problem, Problem::UnknownField { .. }));
    assert!(matches!(all[1].problem, Problem::BudgetOverCap { .. }));
    assert!(matches!(all[2].problem, Problem::UnknownCapability { .. }));
    assert!(matches!(all[3].problem, Problem::GateUnknownModel { .. }));
    assert!(matches!(
        all[4].problem,
        Problem::GateOtherwiseNotReview { .. }
    ));
    let shown = PolicyError::Invalid { diagnostics: all }.to_string();
    assert_eq!(shown.lines().count(), 5);
    assert!(
        shown.lines().all(|line| line.starts_with("test.toml:")),
        "{shown}"
    );
}

#[test]
fn missing_tables_and_empty_input() {
    let all = diagnostics("");
    let fields: Vec<&str> = all.iter().map(|d| d.field.as_str()).collect();
    assert_eq!(fields, ["policy", "states"]);
    assert!(
        all.iter()
            .all(|d| matches!(d.problem, Problem::Missing { .. }) && d.line == 1)
    );
}

fn policies_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

#[test]
fn shipped_policies_are_valid() {
    let entries = std::fs::read_dir(policies_dir()).unwrap_or_else(|e| panic!("{e}"));
    let mut checked = 0;
    for entry in entries {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            Policy::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
            checked += 1;
        }
    }
    assert!(
        checked > 0,
        "no policy found in {}",
        policies_dir().display()
    );
}

#[test]
fn readme_example_is_the_reference_example() {
    let readme =
        std::fs::read_to_string(policies_dir().join("README.md")).unwrap_or_else(|e| panic!("{e}"));
    let start = readme.find("```toml\n").map(|i| i + "```toml\n".len());
    let block = start.and_then(|start| Some(&readme[start..start + readme[start..].find("```")?]));
    let example = parse(block.unwrap_or_else(|| panic!("no ```toml block in the README")));
    let example = example.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        example.hash(),
        parse(EXAMPLE)
            .map(|p| p.hash())
            .unwrap_or_else(|e| panic!("{e}"))
    );
}
