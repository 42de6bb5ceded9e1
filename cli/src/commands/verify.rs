//! `warden verify`: check runs against their hash chains, the transparency log and the
//! deployment's signatures, or an evidence pack on its own; name the first record that
//! does not check out.

use std::io::Write;
use std::path::{Path, PathBuf};

use warden::{Audit, PackVerification, Verification};

use crate::output::{self, Usage, escape};

/// Arguments of `warden verify`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The run id.
    run_id: Option<String>,
    /// Verify every run, and the transparency log: runs missing from it, entries naming
    /// runs that are gone, records stored under a run id the journal has no run for, its
    /// signed tree head.
    #[arg(long, conflicts_with = "run_id")]
    all: bool,
    /// The deployment's public key (`warden key generate`): every head of every run and
    /// the log's tree head must carry its signature. Without it, a person who can write
    /// the journal file can re-seal a run so that it checks out.
    #[arg(long, value_name = "PUB")]
    key: Option<PathBuf>,
    /// Verify an evidence pack (`warden evidence`) instead of the journal: the run's
    /// chain, its log entries' inclusion proofs and the tree head's signature.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["run_id", "all"])]
    pack: Option<PathBuf>,
    /// With --pack --key: accept a pack that is not attested (written without the signing
    /// key), checking only what it holds. By default such a pack fails (exit 12): nothing
    /// vouches that it holds the run's last commit, and a pack cut back to before a review
    /// or an outcome, its attestation removed, looks the same.
    #[arg(long, requires = "pack")]
    accept_unattested: bool,
    /// Print JSON: `{runs: [..], log: {..}}` (with --pack: `{run, tree_head, key,
    /// trusted_key, problems}`). Each run: `run_id`, `records`, `head`, `problem`,
    /// `record`, `log_entry`, `signed_by`. A file the storage engine cannot read:
    /// `{damaged}`, the account of the damage.
    #[arg(long)]
    json: bool,
}

impl Args {
    /// The evidence pack read instead of the journal, if one is.
    pub fn pack(&self) -> Option<&Path> {
        self.pack.as_deref()
    }
}

/// Runs `warden verify`. A file the storage engine finds damaged (cut short, not a
/// journal, a page that does not check out) is a failed verification, exit 12, like a
/// broken chain: nothing in it can be vouched for.
pub fn run(db: &Path, args: &Args) -> anyhow::Result<u8> {
    match verify(db, args) {
        Err(error) => match damage(&error) {
            Some(what) => {
                if args.json {
                    output::print_json(&serde_json::json!({ "damaged": what }))?;
                }
                eprintln!(
                    "BROKEN: {}; nothing in it can be vouched for",
                    escape(&what)
                );
                Ok(output::exit::DIVERGED)
            }
            None => Err(error),
        },
        ok => ok,
    }
}

/// The account of the damage, if `error` says the file is damaged.
fn damage(error: &anyhow::Error) -> Option<String> {
    use warden::JournalError::{Corrupt, Damaged};
    let journal = match error.downcast_ref::<warden::Error>()? {
        warden::Error::Journal(e) => e,
        warden::Error::Stored(warden::StoredRunError::Journal(e)) => e,
        _ => return None,
    };
    match journal {
        Damaged { path, message } => Some(format!(
            "the journal file {} is damaged: the storage engine cannot read it ({message})",
            path.display()
        )),
        Corrupt { .. } => Some(journal.to_string()),
        _ => None,
    }
}

fn verify(db: &Path, args: &Args) -> anyhow::Result<u8> {
    let key = args
        .key
        .as_deref()
        .map(output::read_public_key)
        .transpose()?;
    if let Some(pack) = &args.pack {
        let journal = warden::Journal::open_pack(pack).map_err(warden::Error::from)?;
        let mut result = journal
            .verify_pack(key.as_ref())
            .map_err(warden::Error::from)?;
        if let Some(problem) = unattested(&result, args.accept_unattested) {
            result.problems.push(problem);
        }
        if args.json {
            output::print_json(&result)?;
        } else {
            render_pack(&result)?;
        }
        return Ok(exit(result.is_intact()));
    }
    let journal = output::open_read_only(db)?;
    // An evidence pack has no log of its own, only the entries its manifest carries: the
    // audit of a journal would call its run inserted.
    if journal
        .pack_manifest()
        .map_err(warden::Error::from)?
        .is_some()
    {
        return Err(Usage(format!(
            "{} is an evidence pack: verify it with `warden verify --pack {} --key PUB`",
            db.display(),
            db.display()
        ))
        .into());
    }
    let audit = match (&args.run_id, args.all) {
        // The id as given first: a run that was deleted (only the log names it), or
        // records planted under an id no summary has, are what the audit reports under
        // that id, even when it is also the prefix of another run's. Then as a prefix.
        (Some(id), _) => match journal.audit_run(id, key.as_ref()) {
            Err(warden::JournalError::NoSuchRun(_)) => {
                let id = output::run_id(&journal, id)?;
                journal.audit_run(&id, key.as_ref())
            }
            audit => audit,
        },
        (None, true) => journal.audit(key.as_ref()),
        (None, false) => return Err(Usage("name a run id, or pass --all".into()).into()),
    }
    .map_err(warden::Error::from)?;
    if args.json {
        output::print_json(&audit)?;
    } else {
        render(&audit)?;
    }
    Ok(exit(audit.is_intact()))
}

/// Why a pack checked against the auditor's own key fails for want of its attestation,
/// unless that was accepted: without it nothing vouches that the pack holds the run's last
/// commit (whoever holds an attested pack can cut it back and drop the attestation).
pub fn unattested(result: &PackVerification, accepted: bool) -> Option<String> {
    (result.trusted_key && !result.attested && result.problems.is_empty() && !accepted).then(|| {
        "the pack is not attested: nothing vouches that it holds the run's last commit (a pack cut back to before a review or an outcome, its attestation removed, looks the same); ask for a pack written with the signing key, or pass --accept-unattested to accept what it holds".to_string()
    })
}

fn exit(intact: bool) -> u8 {
    if intact {
        output::exit::COMPLETED
    } else {
        output::exit::DIVERGED
    }
}

fn render_run(out: &mut impl Write, v: &Verification) -> std::io::Result<()> {
    match &v.problem {
        None => {
            write!(
                out,
                "ok      {}  {} records, head {}",
                escape(&v.run_id),
                v.records,
                v.head.short()
            )?;
            if let Some(entry) = v.log_entry {
                write!(out, ", log entry {entry}")?;
            }
            if let Some(key) = &v.signed_by {
                write!(out, ", signed by {key}")?;
            }
            writeln!(out)
        }
        Some(problem) => {
            let at = v
                .record
                .map(|r| format!("record {r}: "))
                .unwrap_or_default();
            writeln!(
                out,
                "BROKEN  {}  {at}{}",
                escape(&v.run_id),
                escape(problem)
            )
        }
    }
}

fn render(audit: &Audit) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for v in &audit.runs {
        render_run(&mut out, v)?;
    }
    let log = &audit.log;
    for problem in &log.problems {
        writeln!(out, "BROKEN  log  {}", escape(problem))?;
    }
    let broken = audit.runs.iter().filter(|v| v.problem.is_some()).count();
    writeln!(
        out,
        "{} verified, {} broken; log: {} entries, {}",
        super::run::plural(u32::try_from(audit.runs.len()).unwrap_or(u32::MAX), "run"),
        broken,
        log.entries,
        if log.problems.is_empty() {
            "intact"
        } else {
            "BROKEN"
        }
    )?;
    match &log.key {
        Some(key) => writeln!(out, "signatures checked against key {key}")?,
        None => writeln!(
            out,
            "signatures NOT checked: pass --key PUB (the deployment's public key); without it a person who can write the file can re-seal a run"
        )?,
    }
    Ok(())
}

fn render_pack(result: &PackVerification) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    render_run(&mut out, &result.run)?;
    for problem in &result.problems {
        writeln!(out, "BROKEN  pack  {}", escape(problem))?;
    }
    writeln!(out, "tree head  {}", escape(&result.tree_head))?;
    if result.attested {
        writeln!(
            out,
            "complete   attested: the pack holds the run's last commit as of its tree head"
        )?;
    } else if !result.problems.is_empty() {
        writeln!(
            out,
            "complete   NOT attested: nothing vouches that the pack holds the run's last commit (above)"
        )?;
    } else {
        writeln!(
            out,
            "complete   NOT attested (written without the signing key): a pack cut back to an earlier commit would look the same; ask for one written with the key"
        )?;
    }
    if !result.ended && !result.status.is_empty() {
        writeln!(
            out,
            "status     the run was {} at the pack's last entry: the pack shows that moment, not an ending",
            escape(&result.status)
        )?;
    }
    match (&result.key, result.trusted_key) {
        (Some(key), true) => writeln!(out, "signatures checked against your key {key}")?,
        (Some(key), false) => writeln!(
            out,
            "signatures checked against the key the pack carries ({key}), which shows the pack is undamaged, not that it is genuine: pass --key PUB (the deployment's public key, from your own records)"
        )?,
        (None, _) => writeln!(
            out,
            "signatures NOT checked: the pack carries no key; pass --key PUB"
        )?,
    }
    writeln!(
        out,
        "{}",
        if result.is_intact() {
            "pack verified"
        } else {
            "pack BROKEN"
        }
    )?;
    Ok(())
}
