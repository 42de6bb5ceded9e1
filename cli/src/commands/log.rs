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
        /// The deployment's public key: check the head's signature before printing it.
        #[arg(long, value_name = "PUB")]
        key: Option<PathBuf>,
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
        Command::Head { key, json } => head(&journal, key.as_deref(), *json),
        Command::Prove { from, key } => prove(&journal, from, key.as_deref()),
    }
}

fn head(journal: &warden::Journal, key: Option<&Path>, json: bool) -> anyhow::Result<u8> {
    let tree = journal.log_tree().map_err(warden::Error::from)?;
    let size = tree.len();
    let Some(sth) = journal.log_head().map_err(warden::Error::from)? else {
        return Err(Usage(format!(
            "journal {} has no signed tree head ({size} log entries, none signed): give writers a key from `warden key generate` (--signing-key)",
            journal.path().display()
        ))
        .into());
    };
    // The head an auditor keeps must be the head of this log, signed by the deployment:
    // a stale or planted head kept today would hide later history.
    let mut problems = Vec::new();
    if sth.head.size != size || tree.root(size).ok() != Some(sth.head.root) {
        problems.push(format!(
            "the stored tree head (size {}) is not the head of the log's {size} entries: the journal was altered",
            sth.head.size
        ));
    }
    if let Some(key) = key.map(output::read_public_key).transpose()?
        && !sth.verify(&key)
    {
        problems.push(format!(
            "the stored tree head is not signed by key {}: {}",
            key.key_id(),
            sth.why_unverified(&key)
        ));
    }
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("BROKEN  {problem}");
        }
        eprintln!("do not keep this head; run `warden verify --all --key PUB`");
        return Ok(output::exit::DIVERGED);
    }
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

/// The longest text a `--from` head file may hold.
const MAX_HEAD_FILE: u64 = 4096;

fn read_head(from: &str) -> anyhow::Result<SignedTreeHead> {
    let text = if from
        .trim_start()
        .starts_with(warden::seal::signing::STH_HEADER)
    {
        from.to_string()
    } else {
        use std::io::Read;
        let file = std::fs::File::open(from).map_err(|e| {
            Usage(format!(
                "--from {from}: not a head and not a readable file: {e}"
            ))
        })?;
        let mut text = String::new();
        file.take(MAX_HEAD_FILE)
            .read_to_string(&mut text)
            .map_err(|e| Usage(format!("--from {from}: {e}")))?;
        text
    };
    let head: SignedTreeHead = text
        .trim()
        .parse()
        .map_err(|e| Usage(format!("--from: not a signed tree head: {e}")))?;
    if head.head.size == 0 {
        return Err(Usage("--from: a head of an empty log proves nothing".into()).into());
    }
    Ok(head)
}

fn when(ms: u64) -> String {
    warden::timestamp_seconds(ms)
}

fn prove(journal: &warden::Journal, from: &str, key: Option<&Path>) -> anyhow::Result<u8> {
    let old = read_head(from)?;
    let key = key.map(output::read_public_key).transpose()?;
    let mut out = std::io::stdout().lock();
    let inconsistent = |out: &mut std::io::StdoutLock<'_>, why: String| -> anyhow::Result<u8> {
        writeln!(out, "INCONSISTENT  {why}")?;
        Ok(output::exit::DIVERGED)
    };
    if let Some(key) = &key
        && !old.verify(key)
    {
        return inconsistent(
            &mut out,
            format!(
                "the head you hold is not signed by key {}: {}",
                key.key_id(),
                old.why_unverified(key)
            ),
        );
    }
    // Roots and proofs from the leaves themselves, never from the stored cache.
    let tree = journal.log_tree().map_err(warden::Error::from)?;
    let size = tree.len();
    if old.head.size > size {
        return inconsistent(
            &mut out,
            format!(
                "the log has {size} entries, fewer than the {} of the head you hold: entries were removed",
                old.head.size
            ),
        );
    }
    let root = tree
        .root(size)
        .map_err(|e| anyhow::anyhow!("the log's root: {e}"))?;
    let proof = tree
        .consistency_proof(old.head.size, size)
        .map_err(|e| anyhow::anyhow!("the consistency proof: {e}"))?;
    if !merkle::verify_consistency(old.head.size, size, &old.head.root, &root, &proof) {
        return inconsistent(
            &mut out,
            format!(
                "the log today does not extend the head you hold (size {}, {}): entries before it were changed or removed",
                old.head.size,
                when(old.head.time_ms)
            ),
        );
    }
    // Every entry and the log's own head, as the audit checks them.
    let audit = journal.audit(key.as_ref()).map_err(warden::Error::from)?;
    if let Some(problem) = audit.log.problems.first() {
        return inconsistent(&mut out, problem.clone());
    }
    let current = journal.log_head().map_err(warden::Error::from)?;
    writeln!(
        out,
        "consistent  the log at {size} entries extends the head you hold ({} entries, {}): the consistency proof ({} hashes) checks out",
        old.head.size,
        when(old.head.time_ms),
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
