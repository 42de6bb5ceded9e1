//! `warden`: the command line over the Warden library. Parses arguments, calls the
//! library, renders; one module per command, no logic a service embedding the library
//! would need.

mod commands;
mod output;
mod telemetry;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

const AFTER_HELP: &str = "\
Exit codes:
   0  completed (or: the command succeeded; replay identical; verification passed)
   1  Warden itself failed (journal I/O, database in use, a damaged journal file)
   2  usage or configuration error (bad arguments, policy, bindings, agent or input)
  10  the run stopped awaiting human review
  11  the run failed (the reason is recorded in the journal)
  12  replay diverged, could not replay, or verification found a broken chain or a
      damaged file
      (warden test: a sample input's expectation was not met)

Examples:
  warden check examples/loan-underwriting
  warden run examples/loan-underwriting
  warden run examples/loan-underwriting --input examples/loan-underwriting/applications/05-gate-escalates.json
  warden runs --status awaiting_review
  warden review <RUN_ID>
  warden show <RUN_ID>
  warden replay <RUN_ID>
  warden replay --all --policy policies/loan-underwriting-strict.toml
  warden report <RUN_ID> -o report.html
  warden verify --all
  warden new claims-triage
  warden test examples/loan-underwriting

Run ids may be shortened to any unique prefix (warden show 20261201-0442).

Logging: -v (info), -vv (debug: every step and host call as tracing spans), or RUST_LOG.
OpenTelemetry: --otlp URL or OTEL_EXPORTER_OTLP_ENDPOINT exports the spans and the
decision metrics over OTLP/HTTP (README, \"Observability\").";

/// Run AI agents compiled to WebAssembly under runtime enforcement: every host call and
/// transition is checked against a policy, journaled in a hash-chained redb database, and
/// can be replayed bit for bit.
#[derive(Parser, Debug)]
#[command(name = "warden", version, after_help = AFTER_HELP)]
struct Cli {
    /// The journal database (created if missing).
    #[arg(long, global = true, env = "WARDEN_DB", default_value = "warden.redb")]
    db: PathBuf,
    /// The deployment's signing key (from `warden key generate`): every commit of run,
    /// resume, fork and review signs the run's new head and the transparency log's tree
    /// head with it. Once a journal is signed, every write must be. With it, `show`,
    /// `replay`, `report`, `review` and `runs` refuse a journal whose
    /// log is not what the key last sealed, and hold every run they verify to the key's
    /// signatures, as writers do (a run re-sealed without the key does not verify).
    /// Keep the key off the journal's machine's backups; auditors hold the public key.
    #[arg(long, global = true, env = "WARDEN_SIGNING_KEY", value_name = "FILE")]
    signing_key: Option<PathBuf>,
    /// The deployment's public key (from `warden key generate`), for readers who hold no
    /// secret: `show`, `replay`, `report`, `review` and `runs` refuse
    /// a journal whose log the key did not seal (its signed tree head missing, another
    /// key's, or not covering every entry) and hold every run they verify to the key's
    /// signatures. (`--signing-key` does the same and also checks the heads recorded
    /// beside the secret key, which catches a journal put back whole to an earlier copy.)
    #[arg(long, global = true, env = "WARDEN_PUBLIC_KEY", value_name = "PUB")]
    public_key: Option<PathBuf>,
    /// Where compiled agents are kept between processes, so that only the first run of
    /// an agent pays for compiling it. Compiled code is trusted native code: the directory
    /// must be yours alone (it is created with mode 700; one others may write is not used).
    /// `off`: compile in every process. Default: $XDG_CACHE_HOME/warden/modules, else
    /// ~/.cache/warden/modules.
    #[arg(
        long,
        global = true,
        env = "WARDEN_MODULE_CACHE",
        value_name = "DIR|off"
    )]
    module_cache: Option<PathBuf>,
    /// Log to standard error: -v for runs, -vv for every step and host call.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Export the run, step and host-call spans and the decision metrics to an
    /// OpenTelemetry receiver, OTLP over HTTP (protobuf), at this base URL
    /// (http://127.0.0.1:4318). Default: OTEL_EXPORTER_OTLP_ENDPOINT if set, else off.
    #[arg(long, global = true, value_name = "URL")]
    otlp: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a deployment before running it: the example's warden.toml, policy, bindings,
    /// model cards, fixtures, agent and input, every problem at once (changes nothing).
    Check(commands::check::Args),
    /// Run an agent on one input under a policy, journaling every step.
    Run(commands::run::Args),
    /// Run one agent over many inputs in one process, on a pool of workers whose step
    /// commits share transactions; started again after a crash, it completes every input
    /// exactly once (ended runs are skipped, interrupted ones resumed).
    Batch(commands::batch::Args),
    /// List runs, oldest first.
    Runs(commands::runs::Args),
    /// Print a run's timeline: every step, host call with its decision, transition and outcome.
    Show(commands::show::Args),
    /// Re-execute a run from the journal alone and compare it bit for bit; or, with
    /// --agent/--policy, show what a new agent or policy would have done.
    Replay(commands::replay::Args),
    /// Continue an interrupted run from its last committed checkpoint, with the bindings
    /// file recorded when it started (the same effects, so the same idempotency records).
    Resume(commands::resume::Args),
    /// Start a new run from a checkpoint of an old one (time travel).
    Fork(commands::fork::Args),
    /// Read the case file of a run awaiting review, decide it, or expire overdue cases.
    Review(commands::review::Args),
    /// Check runs against their hash chains, the transparency log and (with --key) the
    /// deployment's signatures, or an evidence pack; name the first record that does
    /// not check out.
    Verify(commands::verify::Args),
    /// Write a self-contained HTML audit report of one run: its path through the state
    /// machine, every host call with its decision and rule, gates, reviews, digests and
    /// the verification of its chain, log entry and signatures.
    Report(commands::report::Args),
    /// Write one run's self-contained evidence pack: records, module, policy, input,
    /// checkpoints, log entries with inclusion proofs, signed tree head.
    Evidence(commands::evidence::Args),
    /// Write records as JSON lines with stable field names (docs/export.md), for a SIEM or
    /// a data warehouse.
    Export(commands::export::Args),
    /// The transparency log: print its signed head, prove it extends one you kept.
    Log(commands::log::Args),
    /// Generate or show the deployment's ed25519 signing key.
    Key(commands::key::Args),
    /// Return the journal file's free space to the file system (nothing recorded changes).
    Compact,
    /// Create a working agent project (crate, policy, bindings, model card, fixture,
    /// sample inputs with their expected outcomes, warden.toml); docs/authoring.md.
    New(commands::new::Args),
    /// Run every sample input of an agent project under its policy and compare each run
    /// with the expectations beside it (status, state, output fields); exit 12 if one is
    /// not met.
    Test(commands::test::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let telemetry = match telemetry::install(cli.verbose, cli.otlp.as_deref()) {
        Ok(telemetry) => telemetry,
        Err(error) => return output::report_error(&error),
    };
    install_module_cache(cli.module_cache.as_deref());
    std::panic::set_hook(Box::new(keep_panic));
    let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dispatch(&cli))) {
        Ok(Ok(code)) => ExitCode::from(code),
        Ok(Err(error)) => output::report_error(&error),
        Err(_) => {
            let file = match &cli.command {
                Command::Verify(args) => args.pack().or(Some(&cli.db)),
                Command::Replay(args) => args.pack().or(Some(&cli.db)),
                // Its runs go to a temporary journal unless it keeps them.
                Command::Test(args) if !args.keeps_journal() => None,
                _ => Some(cli.db.as_path()),
            };
            report_panic(matches!(cli.command, Command::Verify(_)), file)
        }
    };
    telemetry.shutdown();
    code
}

/// The message and place of the last panic, kept by [`keep_panic`] for [`report_panic`].
static PANIC: std::sync::Mutex<Option<(String, String)>> = std::sync::Mutex::new(None);

/// The panic hook: keeps the first panic's message and place instead of printing a
/// backtrace; a panic on another thread than the main one is also printed at once.
fn keep_panic(info: &std::panic::PanicHookInfo<'_>) {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    let place = info
        .location()
        .map(|l| format!("{}:{}", l.file(), l.line()))
        .unwrap_or_default();
    if std::thread::current().name() != Some("main") {
        eprintln!(
            "warden: a worker thread stopped at {place}: {}",
            output::escape(&message)
        );
    }
    // The first is the cause: a worker's panic comes back to the main thread as another.
    if let Ok(mut kept) = PANIC.lock()
        && kept.is_none()
    {
        *kept = Some((message, place));
    }
}

/// Reports a panic that ended the command. One inside the storage engine means the journal
/// file or evidence pack is damaged where the engine read it (its own checksums do not
/// cover every byte): for `verify` that is a failed verification (exit 12); elsewhere it
/// is a damaged journal file (exit 1). Any other panic is a bug in Warden (exit 1).
fn report_panic(verifying: bool, file: Option<&std::path::Path>) -> ExitCode {
    let (message, place) = PANIC
        .lock()
        .ok()
        .and_then(|mut kept| kept.take())
        .unwrap_or_default();
    let message = output::escape(&message);
    if place.contains("/redb-") {
        let what = match file {
            Some(file) => format!(
                "the journal file {} is damaged: the storage engine cannot read it",
                output::escape(&file.display().to_string())
            ),
            None => "the journal file is damaged: the storage engine cannot read it".into(),
        };
        if verifying {
            eprintln!("BROKEN: {what} ({message}, at {place}); nothing in it can be vouched for");
            return ExitCode::from(output::exit::DIVERGED);
        }
        eprintln!(
            "error: {what} ({message}, at {place}); `warden verify` says what can be trusted; \
             restore the file from a copy"
        );
    } else {
        eprintln!(
            "error: internal error at {place}: {message}; this is a bug in warden, please \
             report it with the command that caused it"
        );
    }
    ExitCode::from(output::exit::HOST_ERROR)
}

/// Points the library at the on-disk module cache; a cache that cannot be used is only
/// a warning (runs compile instead).
fn install_module_cache(choice: Option<&std::path::Path>) {
    let dir = match choice {
        Some(path) if path.as_os_str() == "off" => return,
        Some(path) => Some(path.to_path_buf()),
        None => warden::default_module_cache_dir(),
    };
    if let Err(e) = warden::set_module_cache_dir(dir.as_deref()) {
        eprintln!("warning: {}", output::escape(&e.to_string()));
    }
}

/// Runs the command; its exit code on success (see `AFTER_HELP`).
fn dispatch(cli: &Cli) -> anyhow::Result<u8> {
    let db = &cli.db;
    let signing_key = cli.signing_key.as_deref();
    let keys = output::Keys {
        signing: signing_key,
        public: cli.public_key.as_deref(),
    };
    match &cli.command {
        Command::Check(args) => commands::check::run(args),
        Command::Run(args) => commands::run::run(db, signing_key, args),
        Command::Batch(args) => commands::batch::run(db, signing_key, args),
        Command::Runs(args) => commands::runs::run(db, keys, args),
        Command::Show(args) => commands::show::run(db, keys, args),
        Command::Replay(args) => commands::replay::run(db, keys, args),
        Command::Resume(args) => commands::resume::run(db, signing_key, args),
        Command::Fork(args) => commands::fork::run(db, signing_key, args),
        Command::Review(args) => commands::review::run(db, keys, args),
        Command::Verify(args) => commands::verify::run(db, args),
        Command::Report(args) => commands::report::run(db, keys, args),
        Command::Evidence(args) => commands::evidence::run(db, signing_key, args),
        Command::Export(args) => commands::export::run(db, keys, args),
        Command::Log(args) => commands::log::run(db, args),
        Command::Key(args) => commands::key::run(args),
        Command::Compact => commands::compact::run(db),
        Command::New(args) => commands::new::run(args),
        Command::Test(args) => commands::test::run(db, signing_key, args),
    }
}
