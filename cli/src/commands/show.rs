//! `warden show`: a run's timeline, every record decoded, and its chain's verification.

use std::io::Write;
use std::path::Path;

use warden::Timeline;

use crate::output::{self, escape};

/// Arguments of `warden show`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The run id (see `warden runs`).
    run_id: String,
    /// Print JSON: the run summary, every record (`index`, `at`, `prev`, `digest`,
    /// `prev_ok`, `kind`, `text`, `body`) and the verification.
    #[arg(long)]
    json: bool,
}

/// Runs `warden show`.
pub fn run(db: &Path, keys: output::Keys<'_>, args: &Args) -> anyhow::Result<u8> {
    let journal = output::open_to_read(db, keys)?;
    let run_id = output::run_id(&journal, &args.run_id)?;
    let timeline = Timeline::load(&journal, &run_id).map_err(warden::Error::from)?;
    if args.json {
        output::print_json(&timeline)?;
    } else {
        render(&timeline)?;
    }
    Ok(if timeline.verification.problem.is_some() {
        output::exit::DIVERGED
    } else {
        output::exit::COMPLETED
    })
}

fn render(timeline: &Timeline) -> anyhow::Result<()> {
    let run = &timeline.run;
    let mut out = std::io::stdout().lock();
    writeln!(out, "run      {}  ({})", escape(&run.run_id), run.status())?;
    writeln!(
        out,
        "policy   {} {}  digest {}",
        escape(&run.policy_name),
        escape(&run.policy_version),
        run.policy.short()
    )?;
    writeln!(out, "agent    {}", run.agent.short())?;
    writeln!(out, "bindings {}", run.bindings.short())?;
    if let Some(parent) = &run.parent {
        writeln!(
            out,
            "forked   from {} at step {}",
            escape(&parent.run_id),
            parent.step
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
            escape(&entry.text)
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
        Some(problem) => writeln!(out, "chain    BROKEN: {}", escape(problem))?,
    }
    if let Some(reason) = &run.outcome.reason {
        writeln!(out, "reason   {}", escape(&reason.to_string()))?;
    }
    Ok(())
}
