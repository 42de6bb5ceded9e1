//! `warden replay`: re-execute a run (or every run) from the journal alone, exactly or
//! under a new agent or policy.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use warden::{Agent, Policy, ReplayMode, ReplayOptions, ReplayReport, ReplayVerdict};

use crate::output::{self, Usage, escape};

/// Arguments of `warden replay`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Verdicts: exact replay is identical, diverged, incomplete (the run has not ended) or could
not replay. A counterfactual (--agent, --policy) is unchanged; different outcome (the run
ends with another status, in another state, or fails for another reason); different
output (the same status and state, another output); would need review; or could not
replay (it asked something the recording cannot answer).

Exit codes: 0 identical or unchanged; 12 anything else, a different output included (what
the run hands on changed, even if its status did not).")]
pub struct Args {
    /// The run to replay.
    #[arg(required_unless_present_any = ["all", "pack"])]
    run_id: Option<String>,
    /// Replay the run of an evidence pack (`warden evidence`), with nothing but the pack.
    /// The pack is verified first (with --key, against the deployment's key); one that
    /// does not verify is not replayed.
    #[arg(long, value_name = "FILE", conflicts_with = "all")]
    pack: Option<PathBuf>,
    /// With --pack: the deployment's public key to verify the pack against.
    #[arg(long, value_name = "PUB", requires = "pack")]
    key: Option<PathBuf>,
    /// With --pack --key: replay a pack that is not attested (see `warden verify --help`).
    #[arg(long, requires = "pack")]
    accept_unattested: bool,
    /// Replay every run and print a table.
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
    /// Print JSON (a report, or an array of reports with --all): `run_id`, `mode`,
    /// `verdict`, `from_checkpoint`, `steps`, `records_compared`, `checkpoints_compared`,
    /// `divergence`, `original`, `replayed`.
    #[arg(long)]
    json: bool,
}

/// Replays every run, with a progress bar on a terminal (a population of thousands of
/// runs takes seconds, a counterfactual over it longer), printing each run's report as
/// its turn comes (JSON: the array's elements; otherwise the table's rows, then the
/// count of each verdict): what is held does not grow with the population. Returns the
/// exit code.
fn replay_all(
    journal: &warden::Journal,
    options: &ReplayOptions,
    json: bool,
) -> anyhow::Result<u8> {
    let runs = journal.run_count().map_err(warden::Error::from)?;
    let progress = (!json && runs > 1 && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .then(|| {
            let bar = indicatif::ProgressBar::new(runs);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} runs replayed  {per_sec}  eta {eta}  {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut counts = [0usize; VERDICTS.len()];
    let mut unconfirmed = 0;
    let mut failed: Option<anyhow::Error> = None;
    // Nothing is printed before the first report: a journal whose runs cannot be listed
    // is an error with nothing on standard output.
    let mut printed = 0usize;
    let replayed = warden::replay_each(journal, options, &mut |report| {
        if !report.verdict.confirms() {
            unconfirmed += 1;
        }
        if let Some(bar) = &progress {
            if !report.verdict.confirms() {
                bar.set_message(format!("{unconfirmed} not confirmed"));
            }
            bar.inc(1);
        }
        if let Some(at) = VERDICTS.iter().position(|v| *v == report.verdict) {
            counts[at] += 1;
        }
        match print_report(&mut out, &report, json, printed == 0) {
            Ok(()) => {
                printed += 1;
                std::ops::ControlFlow::Continue(())
            }
            Err(e) => {
                failed = Some(e);
                std::ops::ControlFlow::Break(())
            }
        }
    });
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    replayed?;
    if let Some(e) = failed {
        return Err(e);
    }
    if json {
        writeln!(out, "{}", if printed == 0 { "[]" } else { "\n]" })?;
    } else {
        if printed == 0 {
            table_header(&mut out)?;
        }
        let mut summary = format!(
            "{}:",
            super::run::plural(u32::try_from(printed).unwrap_or(u32::MAX), "run")
        );
        for (verdict, n) in VERDICTS.iter().zip(counts) {
            if n > 0 {
                summary.push_str(&format!(" {n} {verdict},"));
            }
        }
        writeln!(out, "{}", summary.trim_end_matches(','))?;
    }
    out.flush()?;
    Ok(if unconfirmed == 0 {
        output::exit::COMPLETED
    } else {
        output::exit::DIVERGED
    })
}

/// The verdicts in the order the summary counts them.
const VERDICTS: [ReplayVerdict; 8] = [
    ReplayVerdict::Identical,
    ReplayVerdict::Unchanged,
    ReplayVerdict::DifferentOutcome,
    ReplayVerdict::DifferentOutput,
    ReplayVerdict::NeedsReview,
    ReplayVerdict::Diverged,
    ReplayVerdict::Incomplete,
    ReplayVerdict::CouldNotReplay,
];

/// One report of `warden replay --all`: an element of the JSON array `print_json` would
/// print for them all (opening it if `first`), or a row of the table (after its head).
fn print_report(
    out: &mut impl Write,
    report: &ReplayReport,
    json: bool,
    first: bool,
) -> anyhow::Result<()> {
    if json {
        let element = serde_json::to_string_pretty(report)?;
        writeln!(out, "{}", if first { "[" } else { "," })?;
        for (n, line) in element.lines().enumerate() {
            if n > 0 {
                writeln!(out)?;
            }
            write!(out, "  {line}")?;
        }
    } else {
        if first {
            table_header(out)?;
        }
        table_row(out, report)?;
    }
    Ok(())
}

/// The head of the table `warden replay --all` prints.
fn table_header(out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<24} {:<20} {:<34} REPLAYED",
        "RUN", "RESULT", "ORIGINAL"
    )
}

/// One row of the table `warden replay --all` prints.
fn table_row(out: &mut impl Write, r: &ReplayReport) -> std::io::Result<()> {
    let original = format!("{} {}", r.original.status, r.original.state);
    let replayed = r
        .replayed
        .as_ref()
        .map_or_else(|| original.clone(), |o| format!("{} {}", o.status, o.state));
    writeln!(
        out,
        "{:<24} {:<20} {:<34} {}",
        escape(&r.run_id),
        r.verdict,
        escape(&original),
        escape(&replayed)
    )
}

impl Args {
    /// The evidence pack read instead of the journal, if one is.
    pub fn pack(&self) -> Option<&Path> {
        self.pack.as_deref()
    }
}

/// Runs `warden replay`.
pub fn run(db: &Path, keys: output::Keys<'_>, args: &Args) -> anyhow::Result<u8> {
    let options = ReplayOptions {
        from_checkpoint: args.from_checkpoint,
        agent: match &args.agent {
            // A WASI guest is admitted here: each run's policy (or --policy) decides its
            // WASI calls, and one that does not allow them denies the first.
            Some(path) => Some(
                Agent::from_file_with(path, warden::WasiImports::Admitted)
                    .map_err(warden::Error::from)?,
            ),
            None => None,
        },
        policy: match &args.policy {
            Some(path) => Some(Arc::new(
                Policy::from_file(path).map_err(warden::Error::from)?,
            )),
            None => None,
        },
    };
    let journal = match &args.pack {
        Some(pack) => warden::Journal::open_pack(pack).map_err(warden::Error::from)?,
        None => output::open_to_read(db, keys)?,
    };
    let pack_run = match &args.pack {
        Some(pack) => {
            let key = args
                .key
                .as_deref()
                .map(output::read_public_key)
                .transpose()?;
            let mut verified = journal
                .verify_pack(key.as_ref())
                .map_err(warden::Error::from)?;
            if let Some(problem) = super::verify::unattested(&verified, args.accept_unattested) {
                verified.problems.push(problem);
            }
            if !verified.is_intact() {
                let problem = verified
                    .run
                    .problem
                    .iter()
                    .chain(&verified.problems)
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join("; ");
                if args.json {
                    output::print_json(&serde_json::json!({
                        "run_id": verified.run.run_id,
                        "verdict": "could_not_replay",
                        "pack_problem": problem,
                    }))?;
                } else {
                    println!(
                        "COULD NOT REPLAY  the pack {} does not verify: {}",
                        pack.display(),
                        escape(&problem)
                    );
                }
                return Ok(output::exit::DIVERGED);
            }
            Some(verified.run.run_id)
        }
        None => None,
    };
    let report = match args.run_id.as_ref().or(pack_run.as_ref()) {
        Some(run_id) => warden::replay(&journal, &output::run_id(&journal, run_id)?, &options)?,
        None if args.all => return replay_all(&journal, &options, args.json),
        None => return Err(Usage("name a run id, or pass --all".into()).into()),
    };
    if args.json {
        output::print_json(&report)?;
    } else {
        render(&report)?;
    }
    Ok(if report.verdict.confirms() {
        output::exit::COMPLETED
    } else {
        output::exit::DIVERGED
    })
}

fn render(r: &ReplayReport) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let mode = match r.mode {
        ReplayMode::Exact => "exact",
        ReplayMode::Counterfactual => "counterfactual",
    };
    writeln!(out, "replay   {} ({mode})", escape(&r.run_id))?;
    if let Some(step) = r.from_checkpoint {
        writeln!(out, "from     checkpoint after step {step}")?;
    }
    writeln!(
        out,
        "compared {} records, {} checkpoints, over {}",
        r.records_compared,
        r.checkpoints_compared,
        super::run::plural(r.steps, "step")
    )?;
    writeln!(
        out,
        "original {} in `{}`",
        r.original.status,
        escape(&r.original.state)
    )?;
    if let Some(replayed) = &r.replayed {
        writeln!(
            out,
            "replayed {} in `{}`",
            replayed.status,
            escape(&replayed.state)
        )?;
        if let Some(reason) = &replayed.reason {
            writeln!(out, "         {}", escape(&reason.to_string()))?;
        }
        if r.verdict == ReplayVerdict::DifferentOutput {
            let output = |o: &Option<String>| o.as_deref().map_or_else(|| "(none)".into(), escape);
            writeln!(out, "output   was {}", output(&r.original.output))?;
            writeln!(out, "         now {}", output(&replayed.output))?;
        }
    }
    let result = match r.verdict {
        ReplayVerdict::Identical => "identical: every record reproduced bit for bit",
        ReplayVerdict::Incomplete => {
            "incomplete: every recorded record reproduced, but the run has not ended"
        }
        ReplayVerdict::Unchanged => "unchanged: the same outcome",
        ReplayVerdict::DifferentOutcome => "DIFFERENT OUTCOME: the run ends otherwise",
        ReplayVerdict::DifferentOutput => {
            "DIFFERENT OUTPUT: the same status and state, another output"
        }
        ReplayVerdict::NeedsReview => "WOULD NEED REVIEW: the new rules send it to a person",
        ReplayVerdict::Diverged => "DIVERGED",
        ReplayVerdict::CouldNotReplay => "COULD NOT REPLAY",
    };
    writeln!(out, "result   {result}")?;
    if let Some(d) = &r.divergence {
        let place = match (d.record, d.step, d.call) {
            (Some(rec), Some(step), Some(call)) => {
                format!("record {rec}, step {step}, call {call}")
            }
            (Some(rec), Some(step), None) => format!("record {rec}, step {step}"),
            (Some(rec), None, _) => format!("record {rec}"),
            (None, _, Some(call)) => format!("call {call}"),
            _ => "the end of the run".into(),
        };
        let verb = match (d.unanswerable, r.mode) {
            (true, _) => "could not replay at",
            (false, ReplayMode::Exact) => "departs at",
            (false, ReplayMode::Counterfactual) => "first departure at",
        };
        writeln!(out, "         {verb} {place}")?;
        writeln!(out, "expected {}", escape(&d.expected))?;
        writeln!(out, "actual   {}", escape(&d.actual))?;
    }
    if let Some(u) = r
        .unanswered
        .as_ref()
        .filter(|u| Some(*u) != r.divergence.as_ref())
    {
        writeln!(
            out,
            "stopped  the recording cannot answer {}",
            escape(&u.actual)
        )?;
    }
    Ok(())
}
