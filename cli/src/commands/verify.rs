//! `warden verify`: recompute hash chains and name the first record that does not check
//! out.

use std::io::Write;
use std::path::Path;

use crate::output::{self, Usage, escape};

/// Arguments of `warden verify`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The run id.
    run_id: Option<String>,
    /// Verify every run.
    #[arg(long, conflicts_with = "run_id")]
    all: bool,
    /// Print JSON (an array of verifications: `run_id`, `records`, `head`, `problem`,
    /// `record`).
    #[arg(long)]
    json: bool,
}

/// Runs `warden verify`.
pub fn run(db: &Path, args: &Args) -> anyhow::Result<u8> {
    let journal = output::open_read_only(db)?;
    let results = match (&args.run_id, args.all) {
        (Some(id), _) => vec![journal.verify(id).map_err(warden::Error::from)?],
        (None, true) => journal.verify_all().map_err(warden::Error::from)?,
        (None, false) => return Err(Usage("name a run id, or pass --all".into()).into()),
    };
    let broken = results.iter().filter(|v| v.problem.is_some()).count();
    if args.json {
        output::print_json(&results)?;
    } else {
        let mut out = std::io::stdout().lock();
        for v in &results {
            match &v.problem {
                None => writeln!(
                    out,
                    "ok      {}  {} records, head {}",
                    escape(&v.run_id),
                    v.records,
                    v.head.short()
                )?,
                Some(problem) => {
                    writeln!(out, "BROKEN  {}  {}", escape(&v.run_id), escape(problem))?
                }
            }
        }
        writeln!(out, "{} runs verified, {} broken", results.len(), broken)?;
    }
    Ok(if broken > 0 {
        output::exit::DIVERGED
    } else {
        output::exit::COMPLETED
    })
}
