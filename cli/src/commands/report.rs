//! `warden report`: one run as a self-contained HTML page an auditor can read, print and
//! file: the run's path through the policy's state machine, every host call with its
//! decision and rule, every gate and inference, every review, the digests of what ran and
//! the verification of the run against its chain, the transparency log and (with `--key`)
//! the deployment's signatures.
//!
//! The page is a rendering, never the record: everything on it is read from the journal
//! and checked there. It loads nothing (no script, no style sheet, font or image from
//! anywhere; a Content-Security-Policy that forbids them all), and every string that
//! comes from the journal is HTML-escaped, so that a guest's log line or a reviewer's note
//! cannot add markup to it.

mod gates;
mod html;
mod reviews;
mod steps;
mod svg;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use warden::seal::merkle;
use warden::seal::signing::{KeyId, PublicKey, SignedTreeHead};
use warden::{
    CaseFile, Entry, Journal, JournalError, Policy, Record, RunMeta, RunStart, Status, Timeline,
    Verification,
};

use crate::output::{self, Usage, escape};

/// Arguments of `warden report`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
The page is self-contained (no script, style sheet, font or image is loaded) and prints on A4.
Exit codes: 0 the report is written and the run verifies; 12 the report is written but the run
does not verify (the page names the first record that does not check out); 2 no such run, an
existing file without --force, or an unreadable key.")]
pub struct Args {
    /// The run id (see `warden runs`).
    run_id: String,
    /// The HTML file to write, or `-` for standard output. An existing file is kept
    /// unless --force.
    #[arg(short, long, value_name = "FILE")]
    out: PathBuf,
    /// Replace the file if it exists.
    #[arg(long)]
    force: bool,
    /// The deployment's public key (`warden key generate`): the report states whether
    /// every head of the run and the log's tree head are signed by it. Without it, the
    /// public key of `--signing-key` (or `WARDEN_SIGNING_KEY`) if one is given; else the
    /// report says that signatures were not checked.
    #[arg(long, value_name = "PUB")]
    key: Option<PathBuf>,
}

/// Runs `warden report`: exit 0 when the report is written and the run verifies, 12 when
/// the report is written but the run does not verify (the report says why).
pub fn run(db: &Path, keys: output::Keys<'_>, args: &Args) -> anyhow::Result<u8> {
    // The auditor's public key, or the one the deployment's signing key implies.
    let key = match (args.key.as_deref().or(keys.public), keys.signing) {
        (Some(path), _) => Some((output::read_public_key(path)?, path.to_path_buf())),
        (None, Some(path)) => Some((
            output::read_signing_key(path)?.public_key(),
            path.to_path_buf(),
        )),
        (None, None) => None,
    };
    let to_stdout = args.out.as_os_str() == "-";
    if !to_stdout && !args.force && args.out.exists() {
        return Err(exists(&args.out).into());
    }
    let journal = output::open_to_read(db, keys)?;
    let run_id = output::run_id(&journal, &args.run_id)?;
    let material = Material::read(&journal, db, &run_id, key)?;
    let page = html::page(&material)?;
    if to_stdout {
        std::io::stdout().lock().write_all(page.as_bytes())?;
    } else {
        write_atomically(&args.out, page.as_bytes(), args.force)?;
        let verdict = match &material.verification.problem {
            None => "verified".to_string(),
            Some(problem) => format!("DOES NOT VERIFY: {}", escape(problem)),
        };
        writeln!(
            std::io::stdout().lock(),
            "report {}: run {}, {} records, {verdict}",
            args.out.display(),
            escape(&material.meta.run_id),
            material.meta.records,
        )?;
    }
    Ok(if material.verification.problem.is_none() {
        output::exit::COMPLETED
    } else {
        output::exit::DIVERGED
    })
}

fn exists(path: &Path) -> Usage {
    Usage(format!(
        "{} exists; pass --force to replace it, or choose another -o",
        path.display()
    ))
}

/// Writes `bytes` under a temporary name beside `out` and moves it into place whole, so
/// that a reader never sees half a report. Without `force` an existing file is never
/// replaced, even one created meanwhile (a hard link does not replace).
fn write_atomically(out: &Path, bytes: &[u8], force: bool) -> anyhow::Result<()> {
    let name = out
        .file_name()
        .ok_or_else(|| Usage(format!("{} is not a file name", out.display())))?;
    let temp = out.with_file_name(format!(
        ".{}.{}.new",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&temp);
    let written = std::fs::File::create(&temp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(Usage(format!("cannot write {}: {e}", temp.display())).into());
    }
    let placed = if force {
        std::fs::rename(&temp, out)
    } else {
        match std::fs::hard_link(&temp, out) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let _ = std::fs::remove_file(&temp);
                return Err(exists(out).into());
            }
            // A file system without hard links: check, then rename.
            Err(_) if out.exists() => {
                let _ = std::fs::remove_file(&temp);
                return Err(exists(out).into());
            }
            Err(_) => std::fs::rename(&temp, out),
            Ok(()) => std::fs::remove_file(&temp),
        }
    };
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&temp);
        return Err(Usage(format!("cannot write {}: {e}", out.display())).into());
    }
    Ok(())
}

/// Everything the page shows, read from the journal.
#[derive(Debug)]
pub(crate) struct Material {
    /// The journal, as named on the command line.
    pub db: String,
    /// The run's summary.
    pub meta: RunMeta,
    /// What the run is (its first record), if its records could be read.
    pub start: Option<RunStart>,
    /// Every record, in order.
    pub records: Vec<Record>,
    /// The same records decoded (`warden show`), in the same order.
    pub entries: Vec<Entry>,
    /// The records to mark: the first that does not check out, and any that does not
    /// carry its predecessor's digest.
    pub flagged: BTreeSet<u64>,
    /// Why the records could not be read, if they could not.
    pub unreadable: Option<String>,
    /// The policy the run was recorded under, parsed from its stored text.
    pub policy: Result<Policy, String>,
    /// The stored policy text.
    pub policy_text: Option<String>,
    /// The stored input.
    pub input_text: Option<String>,
    /// The run against its chain, the transparency log and, with a key, the signatures.
    pub verification: Verification,
    /// The key given with --key, and its file.
    pub key: Option<(KeyId, PathBuf)>,
    /// What the transparency log says of the run.
    pub log: LogStatus,
    /// The case file, for a run awaiting review.
    pub case: Option<CaseFile>,
    /// When the report was made, ms since the Unix epoch.
    pub generated_ms: u64,
}

/// What the transparency log says of the run.
#[derive(Debug, Default)]
pub(crate) struct LogStatus {
    /// The latest signed tree head the journal holds.
    pub head: Option<SignedTreeHead>,
    /// With --key: whether that head is signed by the key.
    pub head_signed: Option<bool>,
    /// Whether the run's latest log entry is in the signed tree head.
    pub inclusion: Option<Inclusion>,
    /// The keys the run's log entries say signed them (not checked without --key).
    pub claimed_keys: Vec<KeyId>,
    /// Log entries of the run that carry no signature.
    pub unsigned_entries: usize,
    /// The run's log entries.
    pub entries: usize,
}

/// The run's latest log entry against the signed tree head.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Inclusion {
    /// Its inclusion proof leads to the head's root.
    Proven {
        index: u64,
        size: u64,
        hashes: usize,
    },
    /// The entry came after the head: no signed head covers it yet.
    AfterHead { index: u64, size: u64 },
    /// The proof does not lead to the head's root.
    Failed { index: u64, size: u64 },
}

impl Material {
    fn read(
        journal: &Journal,
        db: &Path,
        run_id: &str,
        key: Option<(PublicKey, PathBuf)>,
    ) -> anyhow::Result<Material> {
        let meta = journal.run(run_id).map_err(warden::Error::from)?;
        let public = key.as_ref().map(|(key, _)| key);
        let mut verification = journal
            .verify_run(run_id, public)
            .map_err(warden::Error::from)?;
        // The run's entries vouch for it only as part of a log that checks out (its
        // signed tree head removed, or its entries altered, and they vouch for nothing).
        let log_audit = journal.audit_log(public).map_err(warden::Error::from)?;
        if verification.problem.is_none()
            && let Some(problem) = log_audit.problems.first()
        {
            verification.problem = Some(format!(
                "the journal's transparency log does not check out: {problem}"
            ));
        }
        let (records, entries, unreadable) =
            match (Timeline::load(journal, run_id), journal.records(run_id)) {
                (Ok(timeline), Ok(records)) => (records, timeline.records, None),
                (Err(JournalError::Corrupt { what, message, .. }), _)
                | (_, Err(JournalError::Corrupt { what, message, .. })) => (
                    Vec::new(),
                    Vec::new(),
                    Some(format!("{what} does not decode: {message}")),
                ),
                (Err(e), _) | (_, Err(e)) => return Err(warden::Error::from(e).into()),
            };
        let flagged = entries
            .iter()
            .filter(|e| !e.prev_ok)
            .map(|e| e.index)
            .chain(verification.record)
            .collect();
        let start = records.first().and_then(|r| r.body.run_start());
        let text = |digest| -> anyhow::Result<Option<String>> {
            Ok(journal
                .blob(digest)
                .map_err(warden::Error::from)?
                .and_then(|bytes| String::from_utf8(bytes).ok()))
        };
        let policy_text = text(&meta.policy_text)?;
        let policy = match (&policy_text, &start) {
            (Some(text), start) => {
                let edition = start
                    .as_ref()
                    .map_or(warden::Edition::CURRENT, |s| s.edition);
                let origin = format!("the stored policy text {}", meta.policy_text.short());
                Policy::parse_recorded(text, &origin, edition).map_err(|e| e.to_string())
            }
            (None, _) => Err("the policy text is not stored in the journal".to_string()),
        };
        let input_text = text(&meta.input)?;
        let case = if meta.status() == Status::AwaitingReview {
            warden::case_file(journal, run_id).ok()
        } else {
            None
        };
        let log = log_status(journal, &verification, public)?;
        Ok(Material {
            db: db.display().to_string(),
            meta,
            start,
            records,
            entries,
            flagged,
            unreadable,
            policy,
            policy_text,
            input_text,
            verification,
            key: key.map(|(key, path)| (key.key_id(), path)),
            log,
            case,
            generated_ms: warden_now_ms(),
        })
    }
}

/// The run's entries in the transparency log, and its latest entry against the signed
/// tree head (an RFC 9162 inclusion proof).
fn log_status(
    journal: &Journal,
    verification: &Verification,
    key: Option<&PublicKey>,
) -> anyhow::Result<LogStatus> {
    let head = journal.log_head().map_err(warden::Error::from)?;
    let leaves = journal.log_entries().map_err(warden::Error::from)?;
    let mut status = LogStatus {
        head_signed: key.zip(head.as_ref()).map(|(key, sth)| sth.verify(key)),
        ..LogStatus::default()
    };
    for (entry, _) in leaves
        .iter()
        .filter(|(e, _)| e.run_id == verification.run_id)
    {
        status.entries += 1;
        match &entry.signature {
            Some((id, _)) if !status.claimed_keys.contains(id) => status.claimed_keys.push(*id),
            Some(_) => {}
            None => status.unsigned_entries += 1,
        }
    }
    if let (Some(sth), Some(index)) = (&head, verification.log_entry) {
        let size = sth.head.size;
        status.inclusion = Some(if index >= size {
            Inclusion::AfterHead { index, size }
        } else {
            let leaf = usize::try_from(index)
                .ok()
                .and_then(|i| leaves.get(i))
                .map(|(_, bytes)| merkle::leaf_hash(bytes));
            let proof = journal.log_inclusion(index, size).ok();
            match (leaf, proof) {
                (Some(leaf), Some(proof))
                    if merkle::verify_inclusion(&leaf, index, size, &proof, &sth.head.root) =>
                {
                    Inclusion::Proven {
                        index,
                        size,
                        hashes: proof.len(),
                    }
                }
                _ => Inclusion::Failed { index, size },
            }
        });
    }
    status.head = head;
    Ok(status)
}

/// Milliseconds since the Unix epoch, now.
fn warden_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
