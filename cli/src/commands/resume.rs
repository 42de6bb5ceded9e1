//! `warden resume`: continue an interrupted run from its last checkpoint.

use std::path::Path;

use crate::output;

/// Arguments of `warden resume`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The run id.
    run_id: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `warden resume`.
pub fn run(db: &Path, signing_key: Option<&Path>, args: &Args) -> anyhow::Result<u8> {
    let run_id = output::run_id_in(db, &args.run_id)?;
    let report = warden::resume(&output::open(db, signing_key)?, &run_id)?;
    super::run::render(db, &report, args.json)
}
