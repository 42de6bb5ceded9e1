//! `warden fork`: a new run from a checkpoint of an old one (time travel).

use std::path::{Path, PathBuf};

use warden::ForkRequest;

use crate::output::{self, Usage, escape};

/// Arguments of `warden fork`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The run to fork.
    run_id: String,
    /// The checkpoint (step) to start from.
    #[arg(long)]
    at_step: u32,
    /// A JSON object merged into the recorded input (RFC 7386 merge patch).
    #[arg(long)]
    input_patch: Option<String>,
    /// Bindings for the new run (default: the file recorded by the parent, which must
    /// still have the digest the parent recorded).
    #[arg(long)]
    bindings: Option<PathBuf>,
    /// Run the fork under another policy (default: the parent's, which must validate
    /// under the current rules).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Let the fork's effectful tools (ledgers, payments) act on the world. Off by
    /// default: a fork is a what-if, so an effect answers from the parent's recording
    /// where the request is identical and is otherwise not performed.
    #[arg(long)]
    live_effects: bool,
    /// Who submits the fork, recorded in it (default: $USER).
    #[arg(long, env = "WARDEN_SUBMITTER")]
    submitter: Option<String>,
    /// Print JSON: the run report's fields (as `warden run --json`) and `warnings`, each
    /// with its `kind` (`input_already_read`: the patched `fields`, and the `run_id`,
    /// `step`, `call` and `record` where the agent read its input before the fork point).
    #[arg(long)]
    json: bool,
}

/// Runs `warden fork`.
pub fn run(db: &Path, signing_key: Option<&Path>, args: &Args) -> anyhow::Result<u8> {
    let input_patch = match &args.input_patch {
        Some(text) => {
            let patch = serde_json::from_str(text)
                .map_err(|e| Usage(format!("--input-patch is not JSON: {e}")))?;
            if let Some(key) = warden::duplicate_key(text) {
                return Err(Usage(format!(
                    "--input-patch: key `{}` appears twice in one object; keep one",
                    output::escape(&key)
                ))
                .into());
            }
            Some(patch)
        }
        None => None,
    };
    let parent = output::run_id_in(db, &args.run_id)?;
    let request = ForkRequest {
        parent: &parent,
        step: args.at_step,
        input_patch,
        bindings: args.bindings.as_deref(),
        submitted_by: output::submitter(args.submitter.as_deref())?,
        policy: match &args.policy {
            Some(path) => {
                let (policy, text) =
                    warden::Policy::from_file_with_text(path).map_err(warden::Error::from)?;
                Some((std::sync::Arc::new(policy), text))
            }
            None => None,
        },
        live_effects: args.live_effects,
    };
    let report = warden::fork_report(&output::open(db, signing_key)?, request)?;
    for warning in &report.warnings {
        eprintln!("warning: {}", escape(&warning.to_string()));
    }
    if args.json {
        output::print_json(&report)?;
        return Ok(output::status_code(report.run.outcome.status));
    }
    super::run::render(db, &report.run, false)
}
