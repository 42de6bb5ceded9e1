//! `warden`: the command line over the Warden library. Parses arguments, calls the
//! library, renders; no logic a service embedding the library would need.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use warden::agent::Agent;
use warden::bindings::Bindings;
use warden::journal::Journal;
use warden::manifest::Manifest;
use warden::outcome::Status;
use warden::policy::Policy;
use warden::replay::{ReplayOptions, ReplayReport};
use warden::run::{self, NewRun, RunReport};
use warden::timeline::Timeline;

/// Exit codes, documented in `--help` and the README.
mod exit {
    pub const COMPLETED: u8 = 0;
    pub const HOST_ERROR: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const AWAITING_REVIEW: u8 = 10;
    pub const FAILED: u8 = 11;
    pub const DIVERGED: u8 = 12;
}

const AFTER_HELP: &str = "\
Exit codes:
   0  completed (or: the command succeeded; replay identical; verification passed)
   1  Warden itself failed (journal I/O, database in use, corrupt storage)
   2  usage or configuration error (bad arguments, policy, bindings, agent or input)
  10  the run stopped awaiting human review
  11  the run failed (the reason is recorded in the journal)
  12  replay diverged, could not replay, or verification found a broken chain

Examples:
  warden run examples/loan-underwriting
  warden run examples/loan-underwriting --input examples/loan-underwriting/applications/05-gate-escalates.json
  warden runs --status awaiting_review
  warden show <RUN_ID>
  warden replay <RUN_ID>
  warden replay --all --policy policies/loan-underwriting-strict.toml
  warden verify --all";

/// Run AI agents compiled to WebAssembly under runtime enforcement: every host call and
/// transition is checked against a policy, journaled in a hash-chained redb database, and
/// can be replayed bit for bit.
#[derive(Parser, Debug)]
#[command(name = "warden", version, after_help = AFTER_HELP)]
struct Cli {
    /// The journal database (created if missing).
    #[arg(long, global = true, env = "WARDEN_DB", default_value = "warden.redb")]
    db: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run an agent on one input under a policy, journaling every step.
    Run(RunArgs),
    /// List runs, newest last.
    Runs {
        /// Only runs with this status: running, completed, awaiting_review, failed.
        #[arg(long)]
        status: Option<String>,
        /// Print JSON (one array).
        #[arg(long)]
        json: bool,
    },
    /// Print a run's timeline: every step, host call with its decision, transition and outcome.
    Show {
        /// The run id (see `warden runs`).
        run_id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-execute a run from the journal alone and compare it bit for bit; or, with
    /// --agent/--policy, show what a new agent or policy would have done.
    Replay(ReplayArgs),
    /// Continue an interrupted run from its last committed checkpoint, with the bindings
    /// file recorded when it started (the same effects, so the same idempotency records).
    Resume {
        /// The run id.
        run_id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start a new run from a checkpoint of an old one (time travel).
    Fork {
        /// The run to fork.
        run_id: String,
        /// The checkpoint (step) to start from.
        #[arg(long)]
        at_step: u32,
        /// A JSON object merged into the recorded input (RFC 7386 merge patch).
        #[arg(long)]
        input_patch: Option<String>,
        /// Bindings for the new run (default: the file recorded by the parent).
        #[arg(long)]
        bindings: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Return the journal file's free space to the file system (nothing recorded changes).
    Compact,
    /// Recompute the hash chain of a run's journal (or every run's) and name the first
    /// record that does not check out.
    Verify {
        /// The run id.
        run_id: Option<String>,
        /// Verify every run.
        #[arg(long, conflicts_with = "run_id")]
        all: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
struct RunArgs {
    /// A `.wasm`/`.wat` agent module, or an example directory with a `warden.toml`
    /// manifest naming its agent, policy, bindings and default input.
    agent: PathBuf,
    /// The policy (TOML). Required for a bare module; overrides the manifest's.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// The bindings (TOML) providing the policy's tools and models.
    #[arg(long)]
    bindings: Option<PathBuf>,
    /// The input (a JSON file, or - for standard input). Default: the manifest's.
    #[arg(long)]
    input: Option<String>,
    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct ReplayArgs {
    /// The run to replay.
    #[arg(required_unless_present = "all")]
    run_id: Option<String>,
    /// Replay every finished run and print a table.
    #[arg(long, conflicts_with = "run_id")]
    all: bool,
    /// Restore this checkpoint (step) and replay from there.
    #[arg(long, conflicts_with_all = ["agent", "policy"])]
    from_checkpoint: Option<u32>,
    /// Counterfactual: run this agent instead of the recorded one.
    #[arg(long)]
    agent: Option<PathBuf>,
    /// Counterfactual: judge under this policy instead of the recorded one.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// An error that maps to the usage/configuration exit code.
#[derive(Debug)]
struct Usage(anyhow::Error);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for Usage {}

fn usage<T>(result: Result<T, impl Into<anyhow::Error>>) -> Result<T> {
    result.map_err(|e| anyhow::Error::new(Usage(e.into())))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("WARDEN_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match dispatch(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            if error.chain().any(|e| {
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {}", render_error(&error));
            let missing_journal = error.chain().any(|e| {
                matches!(
                    e.downcast_ref::<warden::journal::JournalError>(),
                    Some(warden::journal::JournalError::Missing { .. })
                )
            });
            let code = if error.downcast_ref::<Usage>().is_some() || missing_journal {
                exit::USAGE
            } else {
                exit::HOST_ERROR
            };
            ExitCode::from(code)
        }
    }
}

/// The error and its causes on one line, leaving out a cause whose text the message
/// before it already contains (many errors quote their source).
fn render_error(error: &anyhow::Error) -> String {
    let mut text = String::new();
    let mut previous = String::new();
    for cause in error.chain() {
        let line = cause.to_string();
        if !previous.contains(&line) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&line);
        }
        previous = line;
    }
    text
}

fn dispatch(cli: &Cli) -> Result<u8> {
    let journal = || Journal::open(&cli.db);
    // Inspection never writes: an archived or write-protected journal can be audited.
    let reader = || Journal::open_read_only(&cli.db);
    match &cli.command {
        Command::Run(args) => run_command(&journal()?, args),
        Command::Runs { status, json } => {
            let status = match status {
                Some(text) => Some(usage(Status::parse(text).ok_or_else(|| {
                    anyhow::anyhow!(
                        "unknown status `{text}`: use running, completed, awaiting_review or failed"
                    )
                }))?),
                None => None,
            };
            // No journal yet means no runs yet; listing creates nothing.
            let all = if cli.db.exists() {
                reader()?.runs()?
            } else {
                Vec::new()
            };
            let runs: Vec<_> = all
                .into_iter()
                .filter(|r| status.is_none_or(|s| r.status == s))
                .collect();
            if *json {
                print_json(&runs)?;
            } else {
                let mut out = std::io::stdout().lock();
                writeln!(
                    out,
                    "{:<24} {:<16} {:<16} {:>5} {:>6}  POLICY",
                    "RUN", "STATUS", "STATE", "STEPS", "CALLS"
                )?;
                for r in &runs {
                    writeln!(
                        out,
                        "{:<24} {:<16} {:<16} {:>5} {:>6}  {} {}",
                        r.run_id,
                        r.status,
                        r.state,
                        r.steps,
                        r.host_calls,
                        r.policy_name,
                        r.policy_version
                    )?;
                }
            }
            Ok(exit::COMPLETED)
        }
        Command::Show { run_id, json } => {
            let timeline = usage_if_missing(Timeline::load(&reader()?, run_id))?;
            if *json {
                print_json(&timeline)?;
            } else {
                render_timeline(&timeline)?;
            }
            Ok(if timeline.verification.problem.is_some() {
                exit::DIVERGED
            } else {
                exit::COMPLETED
            })
        }
        Command::Replay(args) => replay_command(&reader()?, args),
        Command::Compact => {
            let mut journal = journal()?;
            let before = std::fs::metadata(&cli.db).map(|m| m.len()).unwrap_or(0);
            journal.compact()?;
            drop(journal);
            let after = std::fs::metadata(&cli.db).map(|m| m.len()).unwrap_or(0);
            println!("{}: {before} bytes -> {after} bytes", cli.db.display());
            Ok(exit::COMPLETED)
        }
        Command::Resume { run_id, json } => {
            let report = usage_if_missing(run::resume(&journal()?, run_id))?;
            render_report(&report, *json)
        }
        Command::Fork {
            run_id,
            at_step,
            input_patch,
            bindings,
            json,
        } => {
            let input_patch = match input_patch {
                Some(text) => Some(usage(
                    serde_json::from_str(text).context("--input-patch is not JSON"),
                )?),
                None => None,
            };
            let request = warden::fork::ForkRequest {
                parent: run_id,
                step: *at_step,
                input_patch,
                bindings: bindings.as_deref(),
            };
            let report = match warden::fork::fork_from(&journal()?, request) {
                Err(e @ (run::RunError::Bindings(_) | run::RunError::Input(_))) => usage(Err(e))?,
                other => usage_if_missing(other)?,
            };
            render_report(&report, *json)
        }
        Command::Verify { run_id, all, json } => {
            let results = match (run_id, all) {
                (None, false) => usage(Err(anyhow::anyhow!("name a run id, or pass --all")))?,
                // No journal yet means no runs yet: nothing to verify, and nothing created.
                (None, true) if !cli.db.exists() => Vec::new(),
                (Some(id), _) => vec![usage_if_missing(reader()?.verify(id))?],
                (None, true) => {
                    let journal = reader()?;
                    let mut results = Vec::new();
                    for meta in journal.runs()? {
                        results.push(journal.verify(&meta.run_id)?);
                    }
                    results
                }
            };
            let broken = results.iter().filter(|v| v.problem.is_some()).count();
            if *json {
                print_json(&results)?;
            } else {
                let mut out = std::io::stdout().lock();
                for v in &results {
                    match &v.problem {
                        None => writeln!(
                            out,
                            "ok      {}  {} records, head {}",
                            v.run_id,
                            v.records,
                            v.head.short()
                        )?,
                        Some(problem) => writeln!(out, "BROKEN  {}  {problem}", v.run_id)?,
                    }
                }
                writeln!(out, "{} runs verified, {} broken", results.len(), broken)?;
            }
            Ok(if broken > 0 {
                exit::DIVERGED
            } else {
                exit::COMPLETED
            })
        }
    }
}

/// A missing run is the user's mistake, not Warden's.
fn usage_if_missing<T, E: Into<anyhow::Error>>(result: Result<T, E>) -> Result<T> {
    result.map_err(|e| {
        let e = e.into();
        let missing = e.chain().any(|c| {
            matches!(
                c.downcast_ref::<warden::journal::JournalError>(),
                Some(warden::journal::JournalError::NoSuchRun(_))
            ) || matches!(
                c.downcast_ref::<warden::run::RunError>(),
                Some(
                    warden::run::RunError::WrongStatus { .. }
                        | warden::run::RunError::NoCheckpoint { .. }
                        | warden::run::RunError::Journal(warden::journal::JournalError::NoSuchRun(
                            _
                        ))
                )
            )
        });
        if missing {
            anyhow::Error::new(Usage(e))
        } else {
            e
        }
    })
}

fn run_command(journal: &Journal, args: &RunArgs) -> Result<u8> {
    let engine = warden::engine::engine().map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let (agent_path, manifest) = if args.agent.is_dir() {
        let manifest = usage(Manifest::from_dir(&args.agent))?;
        (manifest.agent.clone(), Some(manifest))
    } else {
        (args.agent.clone(), None)
    };
    let policy_path = match (&args.policy, &manifest) {
        (Some(p), _) => p.clone(),
        (None, Some(m)) => m.policy.clone(),
        (None, None) => usage(Err(anyhow::anyhow!(
            "--policy is required when AGENT is a module, not an example directory"
        )))?,
    };
    let bindings_path = args
        .bindings
        .clone()
        .or_else(|| manifest.as_ref().and_then(|m| m.bindings.clone()));
    let input = match (
        &args.input,
        manifest.as_ref().and_then(|m| m.input.as_ref()),
    ) {
        (Some(dash), _) if dash == "-" => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the input from standard input")?;
            text
        }
        (Some(path), _) => read_input(Path::new(path))?,
        (None, Some(path)) => read_input(path)?,
        (None, None) => usage(Err(anyhow::anyhow!(
            "--input is required (a JSON file, or - for standard input)"
        )))?,
    };
    let agent = usage(Agent::from_file(engine, &agent_path))?;
    let policy_text = usage(
        std::fs::read_to_string(&policy_path)
            .with_context(|| format!("cannot read policy {}", policy_path.display())),
    )?;
    let policy = usage(Policy::parse(
        &policy_text,
        &policy_path.display().to_string(),
    ))?;
    let bindings = match &bindings_path {
        Some(path) => usage(Bindings::from_file(path))?,
        None => Bindings::empty(),
    };
    let new = NewRun {
        agent: &agent,
        policy: Arc::new(policy),
        policy_text,
        bindings: Arc::new(bindings),
        input,
    };
    let report = match run::start(journal, new) {
        Err(e @ (run::RunError::Bindings(_) | run::RunError::Input(_))) => usage(Err(e))?,
        other => other?,
    };
    render_report(&report, args.json)
}

fn read_input(path: &Path) -> Result<String> {
    usage(
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read input {}", path.display())),
    )
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    // Serialise first, so that a closed pipe surfaces as the plain I/O error it is.
    let text = serde_json::to_string_pretty(value)?;
    writeln!(std::io::stdout().lock(), "{text}")?;
    Ok(())
}

fn status_code(status: Status) -> u8 {
    match status {
        Status::Completed => exit::COMPLETED,
        Status::AwaitingReview => exit::AWAITING_REVIEW,
        Status::Failed | Status::Running => exit::FAILED,
    }
}

fn render_report(report: &RunReport, json: bool) -> Result<u8> {
    if json {
        let output = report
            .output
            .as_deref()
            .and_then(|o| serde_json::from_str::<serde_json::Value>(o).ok());
        print_json(&serde_json::json!({
            "run_id": report.run_id,
            "status": report.status,
            "state": report.state,
            "output": output,
            "reason": report.reason.as_ref().map(ToString::to_string),
            "failure": report.reason,
            "steps": report.steps,
            "host_calls": report.host_calls,
            "fuel": report.fuel,
            "path": report.path,
        }))?;
    } else {
        let color = std::io::stdout().is_terminal();
        let (on, off) = if color {
            ("\x1b[1m", "\x1b[0m")
        } else {
            ("", "")
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "run      {}", report.run_id)?;
        writeln!(out, "path     {}", report.path.join(" -> "))?;
        writeln!(
            out,
            "status   {on}{}{off} in `{}` after {} steps, {} host calls, {} fuel",
            report.status, report.state, report.steps, report.host_calls, report.fuel
        )?;
        if let Some(output) = &report.output {
            writeln!(out, "output   {output}")?;
        }
        if let Some(reason) = &report.reason {
            writeln!(out, "reason   {reason}")?;
        }
        writeln!(out, "inspect  warden show {}", report.run_id)?;
        writeln!(out, "replay   warden replay {}", report.run_id)?;
    }
    Ok(status_code(report.status))
}

fn render_timeline(timeline: &Timeline) -> Result<()> {
    let run = &timeline.run;
    let mut out = std::io::stdout().lock();
    writeln!(out, "run      {}  ({})", run.run_id, run.status)?;
    writeln!(
        out,
        "policy   {} {}  digest {}",
        run.policy_name,
        run.policy_version,
        run.policy.short()
    )?;
    writeln!(out, "agent    {}", run.agent.short())?;
    writeln!(out, "bindings {}", run.bindings.short())?;
    if let Some(parent) = &run.parent {
        writeln!(
            out,
            "forked   from {} at step {}",
            parent.run_id, parent.step
        )?;
    }
    writeln!(out)?;
    for entry in &timeline.records {
        let mark = if entry.prev_ok { " " } else { "!" };
        writeln!(
            out,
            "{mark}{:>4}  {}  {}",
            entry.index,
            entry.digest.short(),
            entry.text
        )?;
    }
    writeln!(out)?;
    match &timeline.verification.problem {
        None => writeln!(
            out,
            "chain    {} records; every predecessor digest checks out (head {})",
            timeline.verification.records,
            timeline.verification.head.short()
        )?,
        Some(problem) => writeln!(out, "chain    BROKEN: {problem}")?,
    }
    if let Some(reason) = &run.reason {
        writeln!(out, "reason   {reason}")?;
    }
    Ok(())
}

fn replay_command(journal: &Journal, args: &ReplayArgs) -> Result<u8> {
    let engine = warden::engine::engine().map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let agent = match &args.agent {
        Some(path) => Some(usage(Agent::from_file(engine, path))?),
        None => None,
    };
    let policy = match &args.policy {
        Some(path) => Some(Arc::new(usage(Policy::from_file(path))?)),
        None => None,
    };
    let options = || ReplayOptions {
        from_checkpoint: args.from_checkpoint,
        agent: agent.clone(),
        policy: policy.clone(),
    };
    if !args.all {
        let Some(run_id) = &args.run_id else {
            bail!("name a run id, or pass --all")
        };
        let report = usage_if_missing(warden::replay::replay(journal, run_id, options()))?;
        if args.json {
            print_json(&report)?;
        } else {
            render_replay(&report)?;
        }
        return Ok(replay_code(&report));
    }
    let mut reports = Vec::new();
    for meta in journal.runs()? {
        if meta.status == Status::Running {
            continue;
        }
        // One run that cannot be replayed is a row of the table, not the end of it.
        reports.push(
            warden::replay::replay(journal, &meta.run_id, options())
                .unwrap_or_else(|e| ReplayReport::could_not_load(&meta, &e)),
        );
    }
    if args.json {
        print_json(&reports)?;
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "{:<24} {:<20} {:<34} REPLAYED",
            "RUN", "RESULT", "ORIGINAL"
        )?;
        for r in &reports {
            let original = format!("{} {}", r.original.status, r.original.state);
            let replayed = r
                .replayed
                .as_ref()
                .map(|o| format!("{} {}", o.status, o.state))
                .unwrap_or_else(|| original.clone());
            writeln!(
                out,
                "{:<24} {:<20} {:<34} {}",
                r.run_id,
                replay_result(r),
                original,
                replayed
            )?;
        }
        let count = |label: &str| reports.iter().filter(|r| replay_result(r) == label).count();
        writeln!(
            out,
            "{} runs: {} unchanged, {} different outcome, {} diverged, {} could not replay",
            reports.len(),
            count("unchanged"),
            count("different outcome"),
            count("diverged"),
            count("could not replay")
        )?;
    }
    Ok(reports
        .iter()
        .map(replay_code)
        .max()
        .unwrap_or(exit::COMPLETED))
}

fn replay_result(r: &ReplayReport) -> &'static str {
    if r.could_not_replay {
        "could not replay"
    } else if r.outcome_changed {
        "different outcome"
    } else if r.mode == "exact" && !r.identical {
        "diverged"
    } else {
        "unchanged"
    }
}

fn replay_code(r: &ReplayReport) -> u8 {
    if r.could_not_replay || (r.mode == "exact" && !r.identical) || r.outcome_changed {
        exit::DIVERGED
    } else {
        exit::COMPLETED
    }
}

fn render_replay(r: &ReplayReport) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "replay   {} ({})", r.run_id, r.mode)?;
    if let Some(step) = r.from_checkpoint {
        writeln!(out, "from     checkpoint after step {step}")?;
    }
    writeln!(
        out,
        "compared {} records, {} checkpoints, over {} steps",
        r.records_compared, r.checkpoints_compared, r.steps
    )?;
    writeln!(
        out,
        "original {} in `{}`",
        r.original.status, r.original.state
    )?;
    if let Some(replayed) = &r.replayed {
        writeln!(out, "replayed {} in `{}`", replayed.status, replayed.state)?;
        if let Some(reason) = &replayed.reason {
            writeln!(out, "         {reason}")?;
        }
    }
    match &r.divergence {
        None if r.mode == "exact" => writeln!(
            out,
            "result   identical: every record reproduced bit for bit"
        )?,
        None => writeln!(out, "result   no departure from the recorded behaviour")?,
        Some(d) => {
            let place = match (d.record, d.step, d.call) {
                (Some(rec), Some(step), Some(call)) => {
                    format!("record {rec}, step {step}, call {call}")
                }
                (Some(rec), Some(step), None) => format!("record {rec}, step {step}"),
                (Some(rec), None, _) => format!("record {rec}"),
                (None, _, Some(call)) => format!("call {call}"),
                _ => "the end of the run".into(),
            };
            let verb = if d.unanswerable {
                "could not replay at"
            } else if r.mode == "exact" {
                "DIVERGED at"
            } else {
                "departs at"
            };
            writeln!(out, "result   {verb} {place}")?;
            writeln!(out, "expected {}", d.expected)?;
            writeln!(out, "actual   {}", d.actual)?;
        }
    }
    if r.mode == "counterfactual" {
        writeln!(
            out,
            "outcome  {}",
            if r.outcome_changed {
                "CHANGED"
            } else {
                "unchanged"
            }
        )?;
    }
    Ok(())
}
