//! `warden run`: resolve an agent, policy, bindings and input, run it, report.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use warden::{InputSource, RunReport, RunSpec};

use crate::output::{self, escape};

/// Arguments of `warden run`.
#[derive(clap::Args, Debug)]
pub struct Args {
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
    /// Who submits the run, recorded in it (default: $USER).
    #[arg(long, env = "WARDEN_SUBMITTER")]
    submitter: Option<String>,
    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    json: bool,
    /// Let the bindings file name files outside its own directory, and an example's
    /// warden.toml name bindings and input outside the example directory (absolute paths,
    /// `..`, symlinks leading out). Off by default because a bindings file or an example
    /// may come from someone else, and a ledger binding makes Warden create and append to
    /// a file with content the agent chooses: confined, a crafted file cannot point it at
    /// your shell profile or another deployment's ledger. Give it only for files you wrote.
    /// `warden resume` always keeps a run's bindings confined.
    #[arg(long)]
    allow_paths_outside_bindings_dir: bool,
}

/// Runs `warden run`.
pub fn run(db: &Path, signing_key: Option<&Path>, args: &Args) -> anyhow::Result<u8> {
    let input = match args.input.as_deref() {
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the input from standard input")?;
            Some(InputSource::Text(text))
        }
        Some(path) => Some(InputSource::File(path.into())),
        None => None,
    };
    let spec = RunSpec {
        target: args.agent.clone(),
        policy: args.policy.clone(),
        bindings: args.bindings.clone(),
        input,
        submitted_by: output::submitter(args.submitter.as_deref())?,
        allow_paths_outside: args.allow_paths_outside_bindings_dir,
    };
    let new = spec.resolve().map_err(warden::Error::from)?;
    let journal = output::open(db, signing_key)?;
    let report = warden::start(&journal, &new)?;
    render(db, &report, args.json)
}

/// Prints a run report (human or JSON) and returns the run's exit code.
pub fn render(db: &Path, report: &RunReport, json: bool) -> anyhow::Result<u8> {
    if json {
        output::print_json(report)?;
        return Ok(output::status_code(report.outcome.status));
    }
    let outcome = &report.outcome;
    let (on, off) = if std::io::stdout().is_terminal() {
        ("\x1b[1m", "\x1b[0m")
    } else {
        ("", "")
    };
    let steps = plural(outcome.steps, "step");
    let calls = plural(outcome.host_calls, "host call");
    let db_arg = db_argument(db);
    let mut out = std::io::stdout().lock();
    writeln!(out, "run      {}", report.run_id)?;
    writeln!(out, "path     {}", escape(&report.path.join(" -> ")))?;
    writeln!(
        out,
        "status   {on}{}{off} in `{}` after {steps}, {calls}, {} fuel",
        outcome.status,
        escape(&outcome.state),
        outcome.fuel
    )?;
    if let Some(output) = &outcome.output {
        writeln!(out, "output   {}", escape(output))?;
    }
    if let Some(reason) = &outcome.reason {
        writeln!(out, "reason   {}", escape(&reason.to_string()))?;
    }
    writeln!(out, "inspect  warden{db_arg} show {}", report.run_id)?;
    writeln!(out, "replay   warden{db_arg} replay {}", report.run_id)?;
    Ok(output::status_code(outcome.status))
}

/// `n thing` or `n things`.
pub fn plural(n: u32, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

/// ` --db PATH` when the journal is not the default one, so a printed command works.
pub fn db_argument(db: &Path) -> String {
    let default = std::env::var_os("WARDEN_DB").is_none() && db == Path::new("warden.redb");
    if default {
        String::new()
    } else {
        format!(" --db {}", escape(&db.display().to_string()))
    }
}
