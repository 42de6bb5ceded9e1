//! `warden export`: a run's records (or every run's) as JSON lines, for a SIEM or a data
//! warehouse. Field names are stable and documented in `docs/export.md`.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use warden::Timeline;

use crate::output::{self, Usage};

/// The export formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Format {
    /// One JSON object per record: `format`, `run_id`, `index`, `at`, `at_ms`, `prev`,
    /// `digest`, `prev_ok`, `kind`, `text`, `body` (docs/export.md).
    Jsonl,
}

/// Arguments of `warden export`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The run to export.
    #[arg(required_unless_present = "all")]
    run_id: Option<String>,
    /// Export every run, oldest first.
    #[arg(long, conflicts_with = "run_id")]
    all: bool,
    /// The format.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: Format,
    /// Write to this file (must not exist) instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Runs `warden export`.
pub fn run(db: &Path, args: &Args) -> anyhow::Result<u8> {
    let journal = output::open_read_only(db)?;
    let runs: Vec<String> = match &args.run_id {
        Some(id) => vec![id.clone()],
        None => journal
            .runs()
            .map_err(warden::Error::from)?
            .into_iter()
            .map(|m| m.run_id)
            .collect(),
    };
    let sink: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|e| Usage(format!("cannot create {}: {e}", path.display())))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut sink = BufWriter::new(sink);
    let mut lines = 0u64;
    for run_id in &runs {
        let timeline = Timeline::load(&journal, run_id).map_err(warden::Error::from)?;
        match args.format {
            Format::Jsonl => {
                for line in timeline.export_lines() {
                    serde_json::to_writer(&mut sink, &line).map_err(std::io::Error::from)?;
                    sink.write_all(b"\n")?;
                    lines += 1;
                }
            }
        }
    }
    sink.flush()?;
    if let Some(path) = &args.out {
        eprintln!(
            "{}: {lines} records of {} run(s)",
            path.display(),
            runs.len()
        );
    }
    Ok(output::exit::COMPLETED)
}
