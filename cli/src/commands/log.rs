//! `warden log`: the journal's transparency log, for auditors who keep its signed heads.

use std::io::Write;
use std::path::{Path, PathBuf};

use warden::seal::merkle;
use warden::seal::signing::SignedTreeHead;

use crate::output::{self, Usage};

/// Arguments of `warden log`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Print the log's latest signed tree head (size, root, time, key, signature) on one
    /// line. Keep it anywhere the journal's writers cannot reach (a ticket, an email to
    /// the auditor): later, `warden log prove --from` shows the log still extends it, so
    /// no run committed before it was removed or rewritten.
    Head {
        /// Print JSON: `size`, `root`, `time_ms`, `key_id`, `signature`, `text`.
        #[arg(long)]
        json: bool,
    },
    /// Prove that the log today extends a signed tree head you kept (RFC 9162 consistency
    /// proof), so that nothing committed before that head was removed or changed.
    Prove {
        /// The head you kept: its one-line text, or a file holding it.
        #[arg(long, value_name = "HEAD")]
        from: String,
        /// The deployment's public key: check both heads' signatures.
        #[arg(long, value_name = "PUB")]
        key: Option<PathBuf>,
    },
}

/// Runs `warden log`.
pub fn run(db: &Path, args: &Args) -> anyhow::Result<u8> {
    let journal = output::open_read_only(db)?;
    match &args.command {
        Command::Head { json } => head(&journal, *json),
        Command::Prove { from, key } => prove(&journal, from, key.as_deref()),
    }
}

fn head(journal: &warden::Journal, json: bool) -> anyhow::Result<u8> {
    let size = journal.log_size().map_err(warden::Error::from)?;
    let Some(sth) = journal.log_head().map_err(warden::Error::from)? else {
        return Err(Usage(format!(
            "journal {} has no signed tree head ({size} log entries, none signed): give writers a key from `warden key generate` (--signing-key)",
            journal.path().display()
        ))
        .into());
    };
    if json {
        output::print_json(&serde_json::json!({
            "size": sth.head.size,
            "root": merkle_hex(&sth.head.root),
            "time_ms": sth.head.time_ms,
            "key_id": sth.key_id,
            "signature": sth.signature,
            "text": sth.to_string(),
        }))?;
    } else {
        println!("{sth}");
    }
    Ok(output::exit::COMPLETED)
}

fn merkle_hex(hash: &merkle::Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

fn prove(journal: &warden::Journal, from: &str, key: Option<&Path>) -> anyhow::Result<u8> {
    let text = if from
        .trim_start()
        .starts_with(warden::seal::signing::STH_HEADER)
    {
        from.to_string()
    } else {
        std::fs::read_to_string(from).map_err(|e| {
            Usage(format!(
                "--from {from}: not a head and not a readable file: {e}"
            ))
        })?
    };
    let old: SignedTreeHead = text
        .trim()
        .parse()
        .map_err(|e| Usage(format!("--from: not a signed tree head: {e}")))?;
    let key = key.map(output::read_public_key).transpose()?;
    let mut out = std::io::stdout().lock();
    if let Some(key) = &key
        && !old.verify(key)
    {
        writeln!(
            out,
            "INCONSISTENT  the head you hold is not signed by key {} (it names key {})",
            key.key_id(),
            old.key_id
        )?;
        return Ok(output::exit::DIVERGED);
    }
    let size = journal.log_size().map_err(warden::Error::from)?;
    if old.head.size > size {
        writeln!(
            out,
            "INCONSISTENT  the log has {size} entries, fewer than the {} of the head you hold: entries were removed",
            old.head.size
        )?;
        return Ok(output::exit::DIVERGED);
    }
    let root = journal.log_root(size).map_err(warden::Error::from)?;
    let proof = journal
        .log_consistency(old.head.size, size)
        .map_err(warden::Error::from)?;
    if !merkle::verify_consistency(old.head.size, size, &old.head.root, &root, &proof) {
        writeln!(
            out,
            "INCONSISTENT  the log today does not extend the head you hold (size {}, {}): entries before it were changed or removed",
            old.head.size,
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(old.head.time_ms)
            )
        )?;
        return Ok(output::exit::DIVERGED);
    }
    let current = journal.log_head().map_err(warden::Error::from)?;
    match (&current, &key) {
        (Some(sth), _) if sth.head.size != size || sth.head.root != root => {
            writeln!(
                out,
                "INCONSISTENT  the journal's own signed tree head (size {}) does not match its log (size {size}): the log was altered",
                sth.head.size
            )?;
            return Ok(output::exit::DIVERGED);
        }
        (Some(sth), Some(key)) if !sth.verify(key) => {
            writeln!(
                out,
                "INCONSISTENT  the journal's signed tree head is not signed by key {}",
                key.key_id()
            )?;
            return Ok(output::exit::DIVERGED);
        }
        _ => {}
    }
    writeln!(
        out,
        "consistent  the log at {size} entries extends the head you hold ({} entries, {}): the consistency proof ({} hashes) checks out",
        old.head.size,
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(old.head.time_ms)
        ),
        proof.len()
    )?;
    if key.is_none() {
        writeln!(
            out,
            "note        signatures not checked: pass --key PUB (the deployment's public key)"
        )?;
    }
    if let Some(sth) = current {
        writeln!(out, "keep        {sth}")?;
    }
    Ok(output::exit::COMPLETED)
}
