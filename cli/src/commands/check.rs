//! `warden check`: one pass over a deployment (an example directory's warden.toml, its
//! policy, bindings, model cards, fixtures, agent module and input) that lists every
//! problem at once, with file, line, field and a fix. Changes nothing.

use std::io::Write;
use std::path::PathBuf;

use warden::{CheckReport, CheckSpec, Severity};

use crate::output::{self, Usage, escape};

/// Arguments of `warden check`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  warden check examples/loan-underwriting
  warden check --policy policies/loan-underwriting.toml --bindings deploy/bindings.toml \\
               --agent agent.wasm --input application.json
  warden check examples/loan-underwriting --json --strict

Exit codes: 0 no problems (warnings allowed unless --strict); 2 problems found, each
printed as FILE:LINE:COLUMN: FIELD: what is wrong and how to fix it.")]
pub struct Args {
    /// An example directory with a `warden.toml` (agent, policy, bindings, input), or an
    /// agent module.
    target: Option<PathBuf>,
    /// The agent module (`.wasm` or `.wat`); overrides the manifest's.
    #[arg(long)]
    agent: Option<PathBuf>,
    /// The policy (TOML); overrides the manifest's.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// The bindings (TOML); overrides the manifest's.
    #[arg(long)]
    bindings: Option<PathBuf>,
    /// The input (a JSON file); overrides the manifest's.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Warnings fail the check too (exit 2).
    #[arg(long)]
    strict: bool,
    /// Print JSON: `files` (manifest, agent, build, policy, bindings, input) and
    /// `findings`, each with `severity`, `kind`, `file`, `line`, `column`, `field` and
    /// `message`.
    #[arg(long)]
    json: bool,
    /// Check as `warden run --allow-paths-outside-bindings-dir` would load: the bindings
    /// and the manifest may name files outside their directories.
    #[arg(long)]
    allow_paths_outside_bindings_dir: bool,
}

/// Runs `warden check`.
pub fn run(args: &Args) -> anyhow::Result<u8> {
    if args.target.is_none() && args.policy.is_none() {
        return Err(Usage(
            "name an example directory (warden check examples/loan-underwriting), or the files: --policy P [--bindings B] [--agent A] [--input I]".into(),
        )
        .into());
    }
    let spec = CheckSpec {
        target: args.target.clone(),
        agent: args.agent.clone(),
        policy: args.policy.clone(),
        bindings: args.bindings.clone(),
        input: args.input.clone(),
        allow_paths_outside: args.allow_paths_outside_bindings_dir,
    };
    let report = warden::check(&spec);
    if args.json {
        output::print_json(&report)?;
    } else {
        render(&report)?;
    }
    Ok(if report.passes(args.strict) {
        output::exit::COMPLETED
    } else {
        output::exit::USAGE
    })
}

fn render(report: &CheckReport) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for finding in &report.findings {
        let severity = match finding.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        writeln!(out, "{severity}: {}", escape(&finding.to_string()))?;
    }
    if !report.findings.is_empty() {
        writeln!(out)?;
    }
    let files = &report.files;
    for (label, file) in [
        ("manifest", &files.manifest),
        ("policy", &files.policy),
        ("bindings", &files.bindings),
        ("agent", &files.agent),
        ("input", &files.input),
    ] {
        if let Some(file) = file {
            writeln!(out, "{label:<8} {}", escape(file))?;
        }
    }
    if let Some(build) = &files.build {
        writeln!(
            out,
            "build    {} (advisory: warden never runs it)",
            escape(build)
        )?;
    }
    let errors = report.count(Severity::Error);
    let warnings = report.count(Severity::Warning);
    let result = match (errors, warnings) {
        (0, 0) => "no problems".to_string(),
        (errors, warnings) => format!(
            "{}, {}",
            super::run::plural(count(errors), "error"),
            super::run::plural(count(warnings), "warning")
        ),
    };
    writeln!(out, "result   {result}")?;
    Ok(())
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
