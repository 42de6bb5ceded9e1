//! `warden test`: run every sample input of an agent project under its policy and compare
//! each run with the expectations written beside the input.
//!
//! Parse, then run: every input and expectation file is read and checked before the
//! first run, so a typo is reported (file, line, field) without waiting for runs. Runs go
//! to a throwaway journal unless the operator asks to keep them, and a project whose
//! bindings perform effects is refused unless the operator allows them: testing must not
//! append to a deployment's ledgers by surprise.

mod expect;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;
use warden::{InputSource, NewRun, RunReport, RunSpec};

use self::expect::{Difference, Expectation};
use crate::output::{self, Usage, escape};

/// The suffix of an expectation file: `inputs/01-approve.json` is checked against
/// `inputs/01-approve.expect.toml`.
const EXPECT_SUFFIX: &str = ".expect.toml";

/// Arguments of `warden test`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Runs each sample input of an agent project (a directory with a warden.toml) under its
policy, and compares the run with the expectations in the file beside the input:
inputs/01-approve.json is checked against inputs/01-approve.expect.toml.

  status = \"completed\"                 # completed | awaiting_review | failed
  state = \"approved\"                   # the state the run ends in
  path = [\"intake\", \"assess\", \"approved\"]   # optional: every state, in order
  reason = \"amount must be positive\"   # optional: text the failure reason contains

  [output]                             # optional (completed runs): fields of the output
  decision = \"approved\"                # a top-level field, compared as JSON
  \"/reasons/0\" = \"...\"                 # or a JSON pointer
  risk = { approx = 0.0445, tolerance = 0.0005 }   # a number within a tolerance

The inputs are the .json files in the directory of the manifest's `input` (for
`warden new` projects, inputs/), or in --inputs DIR. An input without expectations is
run and reported, and fails nothing; --write-missing records what it came to as its
expectations, for you to read before you keep them. Every file is checked before the
first run: a problem names its file, line, column and field.

The runs go to a temporary journal, deleted afterwards; with --keep-journal they go to
the journal of --db (WARDEN_DB), to inspect with `warden show`. Bindings that perform
effects (a ledger) are refused unless --allow-effects: test with fixture bindings
(--bindings) instead.

Exit codes: 0 every expectation met; 12 an expectation not met; 2 a usage or file
problem (no inputs, an expectation file that does not parse, a missing agent module:
the message says how to build it).

JSON (--json): {dir, inputs, journal (the kept journal, or null), passed, failed,
without_expectations, written, results: [{input, expectations (file or null), verdict
(pass | fail | no_expectations | written), run_id, status, state, reason, output,
differences: [{line, field, expected, actual}]}]}.

Examples:
  warden test                              # the project in the current directory
  warden test examples/loan-underwriting   # its inputs are applications/*.json
  warden test --policy policy-strict.toml  # would the samples still pass under a new policy?")]
pub struct Args {
    /// The agent project: a directory with a warden.toml naming agent, policy, bindings
    /// and a default input.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// The directory of sample inputs (default: the directory of the manifest's `input`).
    #[arg(long, value_name = "DIR")]
    inputs: Option<PathBuf>,
    /// Run under this policy instead of the manifest's.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Use these bindings instead of the manifest's.
    #[arg(long, value_name = "FILE")]
    bindings: Option<PathBuf>,
    /// Keep the runs in the journal of --db (WARDEN_DB) instead of a temporary one.
    #[arg(long)]
    keep_journal: bool,
    /// For inputs without expectations, write NAME.expect.toml from what the run came to.
    #[arg(long)]
    write_missing: bool,
    /// Let tools bound to effects (ledgers) act: every sample's effects are applied.
    #[arg(long)]
    allow_effects: bool,
    /// As for `warden run`: let the bindings and the manifest name files outside their
    /// directories, and inputs be symlinks leading out of the project. Only for files you
    /// wrote.
    #[arg(long)]
    allow_paths_outside_bindings_dir: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// One sample: an input and, if written, its expectations.
struct Sample {
    input: PathBuf,
    text: String,
    expect_file: PathBuf,
    expectation: Option<Expectation>,
}

/// What `warden test --json` prints.
#[derive(Serialize)]
struct Report {
    dir: String,
    inputs: String,
    journal: Option<String>,
    passed: usize,
    failed: usize,
    without_expectations: usize,
    written: usize,
    results: Vec<SampleResult>,
}

#[derive(Serialize)]
struct SampleResult {
    input: String,
    expectations: Option<String>,
    verdict: &'static str,
    run_id: String,
    status: String,
    state: String,
    reason: Option<String>,
    output: Option<Value>,
    differences: Vec<Difference>,
}

/// Where the runs of `warden test` go. Fields drop in order: the journal closes before
/// its temporary directory is removed.
struct TestJournal {
    journal: warden::Journal,
    /// The kept journal's path; `None` for a temporary one.
    kept: Option<String>,
    _scratch: Option<tempfile::TempDir>,
}

impl Args {
    /// Whether the runs go to the journal of --db (else to a temporary one).
    pub fn keeps_journal(&self) -> bool {
        self.keep_journal
    }
}

/// Runs `warden test`.
pub fn run(db: &Path, signing_key: Option<&Path>, args: &Args) -> anyhow::Result<u8> {
    let manifest =
        warden::Manifest::from_dir_with(&args.dir, args.allow_paths_outside_bindings_dir)
            .map_err(|e| warden::Error::from(warden::ResolveError::from(e)))?;
    let inputs_dir = inputs_dir(args, &manifest)?;
    let confine = args.inputs.is_none() && !args.allow_paths_outside_bindings_dir;
    let samples = samples(&args.dir, &inputs_dir, confine)?;
    let Some(first) = samples.first() else {
        return Err(Usage(format!(
            "no sample inputs (*.json) in {}",
            inputs_dir.display()
        ))
        .into());
    };
    if !args.write_missing && samples.iter().all(|s| s.expectation.is_none()) {
        return Err(Usage(format!(
            "no input in {} has expectations: write NAME{EXPECT_SUFFIX} beside NAME.json (docs/authoring.md), or run with --write-missing to record what each run comes to",
            inputs_dir.display()
        ))
        .into());
    }
    let spec = RunSpec {
        target: args.dir.clone(),
        policy: args.policy.clone(),
        bindings: args.bindings.clone(),
        input: Some(InputSource::File(first.input.clone())),
        submitted_by: Some("warden-test".into()),
        allow_paths_outside: args.allow_paths_outside_bindings_dir,
    };
    let new = spec.resolve().map_err(warden::Error::from)?;
    refuse_effects(&new, args.allow_effects)?;
    let journal = open_journal(db, signing_key, args.keep_journal)?;

    let mut results = Vec::with_capacity(samples.len());
    for sample in &samples {
        let run = NewRun {
            input: sample.text.clone(),
            ..new.clone()
        };
        let report = warden::start(&journal.journal, &run)?;
        results.push(judge(sample, &report, args.write_missing)?);
    }
    let count = |verdict: &str| results.iter().filter(|r| r.verdict == verdict).count();
    let report = Report {
        dir: args.dir.display().to_string(),
        inputs: tidy(&inputs_dir),
        journal: journal.kept.clone(),
        passed: count("pass"),
        failed: count("fail"),
        without_expectations: count("no_expectations"),
        written: count("written"),
        results,
    };
    if args.json {
        output::print_json(&report)?;
    } else {
        render(db, &report)?;
    }
    Ok(if report.failed == 0 {
        output::exit::COMPLETED
    } else {
        output::exit::DIVERGED
    })
}

/// `--inputs`, or the directory of the manifest's default input.
fn inputs_dir(args: &Args, manifest: &warden::Manifest) -> anyhow::Result<PathBuf> {
    match (&args.inputs, &manifest.input) {
        (Some(dir), _) => Ok(dir.clone()),
        (None, Some(input)) => Ok(input.parent().map(Path::to_path_buf).unwrap_or_default()),
        (None, None) => Err(Usage(format!(
            "{} names no `input`, so there is no directory of sample inputs: pass --inputs DIR",
            args.dir.join("warden.toml").display()
        ))
        .into()),
    }
}

/// The journal of --db with --keep-journal (signed as every write to it is), else a
/// temporary one.
fn open_journal(db: &Path, signing_key: Option<&Path>, keep: bool) -> anyhow::Result<TestJournal> {
    if keep {
        return Ok(TestJournal {
            journal: output::open(db, signing_key)?,
            kept: Some(db.display().to_string()),
            _scratch: None,
        });
    }
    let scratch =
        tempfile::tempdir().context("cannot create a temporary directory for the journal")?;
    let journal = warden::Journal::open(&scratch.path().join("warden-test.redb"))
        .map_err(warden::Error::from)?;
    Ok(TestJournal {
        journal,
        kept: None,
        _scratch: Some(scratch),
    })
}

/// Every `*.json` of `dir` (sorted by name) with its expectation file, read and checked.
fn samples(project: &Path, dir: &Path, confine: bool) -> anyhow::Result<Vec<Sample>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Usage(format!(
            "cannot read the inputs directory {}: {e}",
            dir.display()
        ))
    })?;
    let mut inputs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| {
            let path = e.path();
            path.strip_prefix(".")
                .map(Path::to_path_buf)
                .unwrap_or(path)
        })
        .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
        .collect();
    inputs.sort();
    let root = if confine {
        Some(
            project
                .canonicalize()
                .with_context(|| format!("cannot open {}", project.display()))?,
        )
    } else {
        None
    };
    let mut samples = Vec::with_capacity(inputs.len());
    for input in inputs {
        let stem = input
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let expect_file = input.with_file_name(format!("{stem}{EXPECT_SUFFIX}"));
        for file in [&input, &expect_file] {
            if let Some(root) = &root {
                inside(root, file)?;
            }
        }
        let text = warden::read_file_to_string(&input)
            .map_err(|e| Usage(format!("cannot read input {}: {e}", input.display())))?;
        // Checked as a run checks it, so that a bad sample is named here rather than
        // stopping the runs halfway.
        warden::check_input(&text, &input.display().to_string())
            .map_err(|e| Usage(e.to_string()))?;
        let expectation = if expect_file.exists() {
            Some(Expectation::read(&expect_file).map_err(|e| Usage(e.to_string()))?)
        } else {
            None
        };
        samples.push(Sample {
            input,
            text,
            expect_file,
            expectation,
        });
    }
    Ok(samples)
}

/// Refuses a sample file that leads out of the project (a symlink to a credentials file
/// would be copied into the journal and read by the agent). Missing files pass.
fn inside(root: &Path, file: &Path) -> anyhow::Result<()> {
    let Ok(real) = file.canonicalize() else {
        return Ok(());
    };
    if real.starts_with(root) {
        return Ok(());
    }
    Err(Usage(format!(
        "{} leads to {}, outside the project {}; sample inputs and expectations must be inside it, unless the operator allows others (--allow-paths-outside-bindings-dir)",
        file.display(),
        real.display(),
        root.display()
    ))
    .into())
}

/// Refuses bindings that would act on the world for every sample, unless allowed.
fn refuse_effects(new: &NewRun, allowed: bool) -> anyhow::Result<()> {
    let effects: Vec<&str> = new
        .policy
        .tools
        .iter()
        .filter(|tool| new.bindings.is_effect(tool))
        .map(String::as_str)
        .collect();
    if effects.is_empty() || allowed {
        return Ok(());
    }
    let bindings = new
        .bindings
        .source()
        .map_or_else(|| "the bindings".to_string(), |p| p.display().to_string());
    Err(Usage(format!(
        "{bindings} binds {} to an effect (a ledger): every sample would apply it; test with fixture bindings (--bindings FILE), or pass --allow-effects",
        effects.iter().map(|t| format!("tool `{t}`")).collect::<Vec<_>>().join(", ")
    ))
    .into())
}

/// Compares one run with its sample's expectations (or records them).
fn judge(sample: &Sample, report: &RunReport, write_missing: bool) -> anyhow::Result<SampleResult> {
    let outcome = &report.outcome;
    let (verdict, differences, expectations) = match &sample.expectation {
        Some(expectation) => {
            let differences = expectation.compare(report);
            let verdict = if differences.is_empty() {
                "pass"
            } else {
                "fail"
            };
            (verdict, differences, Some(&sample.expect_file))
        }
        None if write_missing => {
            let name = sample
                .input
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = expect::record(&name, report);
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&sample.expect_file)
                .and_then(|mut file| file.write_all(text.as_bytes()))
                .with_context(|| format!("cannot write {}", sample.expect_file.display()))?;
            ("written", Vec::new(), Some(&sample.expect_file))
        }
        None => ("no_expectations", Vec::new(), None),
    };
    Ok(SampleResult {
        input: tidy(&sample.input),
        expectations: expectations.map(|p| tidy(p)),
        verdict,
        run_id: report.run_id.clone(),
        status: outcome.status.to_string(),
        state: outcome.state.clone(),
        reason: outcome.reason.as_ref().map(ToString::to_string),
        output: outcome
            .output
            .as_deref()
            .and_then(|o| serde_json::from_str(o).ok()),
        differences,
    })
}

/// A path as printed: without a leading `./`.
fn tidy(path: &Path) -> String {
    path.strip_prefix(".").unwrap_or(path).display().to_string()
}

/// The table: one line per input, the first unmet expectation under a failure.
fn render(db: &Path, report: &Report) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let names: Vec<String> = report
        .results
        .iter()
        .map(|r| {
            Path::new(&r.input)
                .file_name()
                .map_or_else(|| r.input.clone(), |n| n.to_string_lossy().into_owned())
        })
        .collect();
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    writeln!(
        out,
        "testing {} ({} inputs in {})",
        escape(&report.dir),
        report.results.len(),
        escape(&report.inputs)
    )?;
    for (result, name) in report.results.iter().zip(&names) {
        let label = match result.verdict {
            "pass" => "PASS",
            "fail" => "FAIL",
            "written" => "NEW ",
            _ => "----",
        };
        let ended = format!("{} in `{}`", result.status, escape(&result.state));
        let note = match result.verdict {
            "no_expectations" => "  (no expectations; --write-missing records them)".to_string(),
            "written" => format!(
                "  (expectations written to {}: read them)",
                escape(result.expectations.as_deref().unwrap_or(""))
            ),
            _ => String::new(),
        };
        writeln!(out, "{label}  {:<width$}  {ended}{note}", escape(name))?;
        if let (Some(first), Some(file)) = (result.differences.first(), &result.expectations) {
            writeln!(
                out,
                "      {}:{}: {}: expected {}, got {}",
                escape(file),
                first.line,
                escape(&first.field),
                escape(&first.expected),
                escape(&first.actual)
            )?;
            let more = result.differences.len() - 1;
            if more > 0 {
                writeln!(out, "      (and {} more: --json lists them)", more)?;
            }
            if let Some(reason) = &result.reason {
                writeln!(out, "      reason: {}", escape(reason))?;
            }
            if report.journal.is_some() {
                let db_arg = super::run::db_argument(db);
                writeln!(out, "      inspect: warden{db_arg} show {}", result.run_id)?;
            }
        }
    }
    let verdict = if report.failed == 0 { "ok" } else { "FAILED" };
    let mut summary = format!(
        "{verdict}: {} passed, {} failed",
        report.passed, report.failed
    );
    if report.without_expectations > 0 {
        summary.push_str(&format!(
            ", {} without expectations",
            report.without_expectations
        ));
    }
    if report.written > 0 {
        summary.push_str(&format!(", {} written", report.written));
    }
    let journal = match &report.journal {
        Some(db) => format!("runs kept in {}", escape(db)),
        None => "runs in a temporary journal (--keep-journal keeps them)".to_string(),
    };
    writeln!(out, "{summary}; {journal}")?;
    Ok(())
}
