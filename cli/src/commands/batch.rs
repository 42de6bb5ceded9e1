//! `warden batch`: one agent over many inputs in one process, resumable after a crash.

use std::io::Write;
use std::path::{Path, PathBuf};

use warden::{BatchAction, BatchInput, BatchLine, ErrorKind, InputSource, RunSpec, Status};

use crate::output::{self, Usage, escape};

/// Arguments of `warden batch`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Exit codes: 0 every input ran (whatever it came to: each line says completed, awaiting
review or failed); 2 an input could not run (each is named, and the others still ran);
1 Warden itself failed on one; 12 a run already in the journal did not check out.")]
pub struct Args {
    /// A `.wasm`/`.wat` agent module, or an example directory with a `warden.toml`.
    agent: PathBuf,
    /// The inputs: a directory of `.json` files (each one input, in name order), or a
    /// `.jsonl` file (one input per line; blank lines are skipped).
    #[arg(long, value_name = "DIR|FILE.jsonl")]
    inputs: PathBuf,
    /// The policy (TOML). Required for a bare module; overrides the manifest's.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// The bindings (TOML). Overrides the manifest's.
    #[arg(long)]
    bindings: Option<PathBuf>,
    /// Runs at a time (worker threads). Default: 32 per processor, at most 256, and no
    /// more than half the available memory (the system's, or the container's memory limit
    /// if less) holds if every run used its policy's whole memory budget. Runs wait on
    /// their commits' fsync far longer than they compute; the more runs commit at once,
    /// the more of them share each fsync.
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Who submits the runs, recorded in each (default: $USER).
    #[arg(long, env = "WARDEN_SUBMITTER")]
    submitter: Option<String>,
    /// Print one JSON object per input, as each finishes: `input`, `input_digest`,
    /// `action` (ran, resumed, skipped, duplicate, error), `run_id`, `status`, `state`,
    /// `error`.
    #[arg(long)]
    json: bool,
    /// As for `warden run`: let the bindings and the manifest name files outside their
    /// directories.
    #[arg(long)]
    allow_paths_outside_bindings_dir: bool,
}

/// Reads the inputs: every `.json` file of a directory, or every line of a `.jsonl` file.
fn read_inputs(path: &Path) -> anyhow::Result<Vec<BatchInput>> {
    let unreadable = |e: std::io::Error| Usage(format!("cannot read {}: {e}", path.display()));
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(unreadable)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        return files
            .into_iter()
            .map(|file| {
                let input = warden::read_file_to_string(&file)
                    .map_err(|e| Usage(format!("cannot read {}: {e}", file.display())))?;
                Ok(BatchInput {
                    name: file.display().to_string(),
                    input,
                })
            })
            .collect();
    }
    let bytes = warden::read_file(path).map_err(unreadable)?;
    // Each line is text of its own: one that is not UTF-8 is named before anything runs.
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let line = 1 + e.as_bytes()[..at].iter().filter(|b| **b == b'\n').count();
            return Err(Usage(format!(
                "{}:{line}: the line is not UTF-8 text; nothing was run",
                path.display()
            ))
            .into());
        }
    };
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| BatchInput {
            name: format!("{}:{}", path.display(), index + 1),
            input: line.to_string(),
        })
        .collect())
}

/// Runs `warden batch`.
pub fn run(db: &Path, signing_key: Option<&Path>, args: &Args) -> anyhow::Result<u8> {
    let inputs = read_inputs(&args.inputs)?;
    if inputs.is_empty() {
        return Err(Usage(format!("{}: no inputs", args.inputs.display())).into());
    }
    let spec = RunSpec {
        target: args.agent.clone(),
        policy: args.policy.clone(),
        bindings: args.bindings.clone(),
        // Resolves (and checks) the agent, policy and bindings; each input is checked as
        // its run starts (a bad first input is that input's error, like any other's).
        input: Some(InputSource::Text("{}".into())),
        submitted_by: output::submitter(args.submitter.as_deref())?,
        allow_paths_outside: args.allow_paths_outside_bindings_dir,
    };
    let template = spec.resolve().map_err(warden::Error::from)?;
    let journal = output::open(db, signing_key)?;
    let workers = args
        .workers
        .unwrap_or_else(|| warden::default_workers(&template));
    let progress =
        (!args.json && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
            let bar = indicatif::ProgressBar::new(inputs.len() as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} runs  {per_sec}  eta {eta}  {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
    let started = std::time::Instant::now();
    let printer = std::sync::Mutex::new(std::io::stdout());
    let done = |line: &BatchLine| {
        if let Some(bar) = &progress {
            bar.inc(1);
        }
        if args.json
            && let Ok(text) = serde_json::to_string(line)
            && let Ok(mut out) = printer.lock()
        {
            let _ = writeln!(out, "{text}");
        }
    };
    let lines = warden::batch(&journal, &template, &inputs, workers, &done)?;
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    let seconds = started.elapsed().as_secs_f64();
    let (commits, transactions) = journal.commit_stats();
    let count = |action: BatchAction| lines.iter().filter(|l| l.action == action).count();
    let status = |status: Status| lines.iter().filter(|l| l.status == Some(status)).count();
    let errors = count(BatchAction::Error);
    if !args.json {
        let mut out = std::io::stdout().lock();
        for line in lines.iter().filter(|l| l.action == BatchAction::Error) {
            writeln!(
                out,
                "error  {}  {}",
                escape(&line.input),
                escape(line.error.as_deref().unwrap_or_default())
            )?;
        }
        let ran = count(BatchAction::Ran) + count(BatchAction::Resumed);
        writeln!(
            out,
            "{} inputs: {} ran ({} resumed), {} skipped (already run), {} duplicates, {} errors",
            lines.len(),
            ran,
            count(BatchAction::Resumed),
            count(BatchAction::Skipped),
            count(BatchAction::Duplicate),
            errors
        )?;
        writeln!(
            out,
            "outcomes: {} completed, {} awaiting review, {} failed, {} running",
            status(Status::Completed),
            status(Status::AwaitingReview),
            status(Status::Failed),
            status(Status::Running)
        )?;
        // The batch starts no more workers than it has runs to make.
        writeln!(
            out,
            "{:.2} s, {:.0} runs/s on {} workers; {commits} commits in {transactions} durable transactions",
            seconds,
            ran as f64 / seconds.max(1e-9),
            workers.min(ran)
        )?;
    }
    // An input of the user's that could not run is a usage error (exit 2); Warden's own
    // failure (exit 1) or a journal that does not check out (12) outranks it.
    let kinds: Vec<_> = lines.iter().filter_map(|l| l.error_kind).collect();
    Ok(if kinds.contains(&ErrorKind::Host) {
        output::exit::HOST_ERROR
    } else if kinds.contains(&ErrorKind::Integrity) {
        output::exit::DIVERGED
    } else if errors > 0 {
        output::exit::USAGE
    } else {
        output::exit::COMPLETED
    })
}
