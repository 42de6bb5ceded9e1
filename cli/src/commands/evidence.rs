//! `warden evidence`: write one run's self-contained evidence pack.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::output::{self, escape};

/// Arguments of `warden evidence`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The run.
    run_id: String,
    /// The pack file to write (must not exist).
    #[arg(short, long, value_name = "FILE")]
    out: PathBuf,
    /// The deployment's public key, stored in the pack to say which key signed it
    /// (taken from --signing-key when that is given). Auditors check against their own
    /// copy. With --signing-key (or WARDEN_SIGNING_KEY) the pack also carries the
    /// deployment's attestation that it holds the run's last commit, so a pack cut back
    /// to an earlier commit does not verify.
    #[arg(long, value_name = "PUB")]
    key: Option<PathBuf>,
    /// Print JSON: `run_id`, `records`, `checkpoints`, `pages`, `entries`, `tree_size`,
    /// `signed`.
    #[arg(long)]
    json: bool,
}

/// Runs `warden evidence`.
pub fn run(db: &Path, signing_key: Option<&Path>, args: &Args) -> anyhow::Result<u8> {
    let public_key = args
        .key
        .as_deref()
        .map(output::read_public_key)
        .transpose()?;
    let signer = signing_key.map(output::read_signing_key).transpose()?;
    let journal = output::open_read_only(db)?;
    let summary = journal
        .write_pack(
            &output::run_id(&journal, &args.run_id)?,
            &args.out,
            public_key,
            signer.as_ref(),
        )
        .map_err(warden::Error::from)?;
    if args.json {
        output::print_json(&summary)?;
        return Ok(output::exit::COMPLETED);
    }
    let mut out = std::io::stdout().lock();
    let pack = args.out.display();
    writeln!(
        out,
        "evidence pack {pack}: run {}, {} records, {} checkpoints, {} memory pages, {} log entries with inclusion proofs in a tree of {} ({})",
        escape(&summary.run_id),
        summary.records,
        summary.checkpoints,
        summary.pages,
        summary.entries,
        summary.tree_size,
        if summary.signed {
            "signed"
        } else {
            "UNSIGNED: the journal has no signing key, so the pack proves integrity, not origin"
        }
    )?;
    let accept = if summary.attested {
        ""
    } else {
        writeln!(
            out,
            "NOT attested (no --signing-key): nothing vouches that the pack holds the run's last commit, so `verify --pack --key` refuses it unless told --accept-unattested; write it with the signing key to attest it"
        )?;
        " --accept-unattested"
    };
    writeln!(
        out,
        "on any machine, with only the pack and the public key:"
    )?;
    writeln!(
        out,
        "  warden verify --pack {pack} --key deployment.pub{accept}"
    )?;
    writeln!(out, "  warden replay --pack {pack}")?;
    writeln!(out, "  warden --db {pack} show {}", escape(&summary.run_id))?;
    Ok(output::exit::COMPLETED)
}
