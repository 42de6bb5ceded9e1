//! `warden runs`: the runs of a journal, for example the reviewers' queue.

use std::io::Write;
use std::path::Path;

use warden::Status;

use crate::output::{self, Usage, escape};

/// Arguments of `warden runs`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only runs with this status: running, completed, awaiting_review, failed.
    #[arg(long)]
    status: Option<String>,
    /// Print JSON (one array of run summaries).
    #[arg(long)]
    json: bool,
}

/// Runs `warden runs`.
pub fn run(db: &Path, keys: output::Keys<'_>, args: &Args) -> anyhow::Result<u8> {
    let status = match &args.status {
        Some(text) => Some(Status::parse(text).ok_or_else(|| {
            Usage(format!(
                "unknown status `{text}`: use running, completed, awaiting_review or failed"
            ))
        })?),
        None => None,
    };
    let journal = output::open_to_read(db, keys)?;
    if status == Some(Status::AwaitingReview) {
        return review_queue(&journal, args.json);
    }
    // A summary that does not decode (the file was altered) is named, not the end of
    // the listing: the others are still shown, and the exit code says it (12).
    let mut runs = Vec::new();
    let mut broken = Vec::new();
    for (run_id, meta) in journal.run_rows().map_err(warden::Error::from)? {
        match meta {
            Ok(meta) => runs.push(meta),
            Err(e) => broken.push((run_id, e)),
        }
    }
    runs.sort_by(|a, b| (a.created_ms, &a.run_id).cmp(&(b.created_ms, &b.run_id)));
    runs.retain(|r| status.is_none_or(|s| r.status() == s));
    for (run_id, e) in &broken {
        eprintln!(
            "BROKEN  {}: {}; `warden verify --all --key PUB` says what can be trusted",
            escape(run_id),
            escape(&e.to_string())
        );
    }
    let code = if broken.is_empty() {
        output::exit::COMPLETED
    } else {
        output::exit::DIVERGED
    };
    if args.json {
        output::print_json(&runs)?;
        return Ok(code);
    }
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
            escape(&r.run_id),
            r.status(),
            escape(&r.outcome.state),
            r.outcome.steps,
            r.outcome.host_calls,
            escape(&r.policy_name),
            escape(&r.policy_version)
        )?;
    }
    Ok(code)
}

/// The reviewers' queue: runs awaiting review, oldest first, with the gate that sent each.
fn review_queue(journal: &warden::Journal, json: bool) -> anyhow::Result<u8> {
    let queue = warden::queue(journal)?;
    if json {
        output::print_json(&queue)?;
        return Ok(output::exit::COMPLETED);
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<24} {:<20} {:<16} {:<12} {:<24} {:>7} {:>6}  SUBMITTED BY",
        "RUN", "WAITING SINCE", "STATE", "ASKED FOR", "GATE", "P", "NEEDS"
    )?;
    for entry in &queue {
        let since = warden::timestamp_seconds(entry.entered_ms);
        let number = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"));
        writeln!(
            out,
            "{:<24} {:<20} {:<16} {:<12} {:<24} {:>7} {:>6}  {}",
            escape(&entry.run_id),
            since,
            escape(&entry.state),
            escape(entry.requested.as_deref().unwrap_or("-")),
            escape(entry.gate.as_deref().unwrap_or("(the agent's own)")),
            number(entry.probability),
            number(entry.threshold),
            escape(entry.submitted_by.as_deref().unwrap_or("-")),
        )?;
        if let Some(problem) = &entry.problem {
            writeln!(
                out,
                "{:<24} BROKEN: does not verify, cannot be reviewed: {}",
                "",
                escape(problem)
            )?;
        }
    }
    Ok(output::exit::COMPLETED)
}
