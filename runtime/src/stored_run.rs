//! A run as the journal holds it: its summary, its start record, and the agent module,
//! policy and input it ran on, loaded from the journal alone and checked against their
//! digests.
//!
//! Upholds invariant 3's premise: a re-execution (replay, resume, fork) never reads
//! anything from outside the journal that could make it differ from the original, and a
//! stored artifact that does not match its digest is refused, named, before any guest
//! code runs.

use std::fmt;
use std::sync::Arc;

use crate::agent::{Agent, LoadError, WasiImports};
use crate::digest::{Digest, domain};
use crate::edition::Edition;
use crate::journal::{Checked, Journal, JournalError, Record, RunMeta, RunStart};
use crate::policy::{Policy, PolicyError};

/// A stored artifact of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Artifact {
    /// The agent module.
    AgentModule,
    /// The policy file's text.
    PolicyText,
    /// The run's input.
    Input,
}

impl fmt::Display for Artifact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Artifact::AgentModule => "agent module",
            Artifact::PolicyText => "policy text",
            Artifact::Input => "input",
        })
    }
}

/// Why a run's stored artifacts could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoredRunError {
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// An artifact the run needs is not stored.
    #[error("run {run_id}: its {artifact} {} is missing from the journal", digest.short())]
    ArtifactMissing {
        /// The run.
        run_id: String,
        /// Which artifact.
        artifact: Artifact,
        /// The digest it is stored under.
        digest: Digest,
    },
    /// An artifact does not match the digest its run recorded.
    #[error("run {run_id}: its stored {artifact} does not match its digest {} (it was altered)", digest.short())]
    ArtifactAltered {
        /// The run.
        run_id: String,
        /// Which artifact.
        artifact: Artifact,
        /// The recorded digest.
        digest: Digest,
    },
    /// Policy text or input that is not UTF-8.
    #[error("run {run_id}: its stored {artifact} is not UTF-8")]
    NotText {
        /// The run.
        run_id: String,
        /// Which artifact.
        artifact: Artifact,
    },
    /// The stored module no longer loads.
    #[error("run {run_id}: its stored agent module does not load")]
    Load {
        /// The run.
        run_id: String,
        /// The loader's error.
        #[source]
        source: LoadError,
    },
    /// The stored policy no longer parses.
    #[error("run {run_id}: its stored policy does not parse")]
    Policy {
        /// The run.
        run_id: String,
        /// The parser's error.
        #[source]
        source: PolicyError,
    },
    /// The stored policy parses to another canonical digest than the one recorded.
    #[error("run {run_id}: its stored policy parses to digest {}, but the run recorded {}", parsed.short(), recorded.short())]
    PolicyDigest {
        /// The run.
        run_id: String,
        /// What the run recorded.
        recorded: Digest,
        /// What the stored text parses to.
        parsed: Digest,
    },
    /// The run has no start record.
    #[error("run {run_id} has no start record")]
    NoStart {
        /// The run.
        run_id: String,
    },
}

impl StoredRunError {
    /// Whether the error means the journal's content was altered or lost (rather than
    /// that the journal could not be read at all).
    pub fn is_integrity(&self) -> bool {
        !matches!(self, StoredRunError::Journal(_))
            || matches!(
                self,
                StoredRunError::Journal(
                    JournalError::Broken { .. }
                        | JournalError::Corrupt { .. }
                        | JournalError::Damaged { .. }
                )
            )
    }
}

/// A run as stored: everything needed to re-execute it without the outside world.
#[derive(Debug)]
pub(crate) struct StoredRun {
    /// The run's summary.
    pub meta: RunMeta,
    /// What its first record says.
    pub start: RunStart,
    /// Its records, in order.
    pub records: Vec<Record>,
    /// The stored agent module, loaded.
    pub agent: Agent,
    /// The stored policy, parsed.
    pub policy: Arc<Policy>,
    /// The stored policy text.
    pub policy_text: String,
    /// The stored input JSON.
    pub input: String,
}

impl StoredRun {
    /// Loads a run's records, module, policy and input from the journal, checking every
    /// artifact against its digest.
    pub fn load(journal: &Journal, run_id: &str) -> Result<StoredRun, StoredRunError> {
        StoredRun::load_checked(journal, run_id, &Checked::default())
    }

    /// [`StoredRun::load`] within an operation over many runs: an agent module that
    /// `checked` holds as intact, and that this process has loaded, is not read and
    /// hashed again.
    pub(crate) fn load_checked(
        journal: &Journal,
        run_id: &str,
        checked: &Checked,
    ) -> Result<StoredRun, StoredRunError> {
        let meta = journal.run(run_id)?;
        let records = journal.records(run_id)?;
        let start = records
            .first()
            .and_then(|r| r.body.run_start())
            .ok_or_else(|| StoredRunError::NoStart {
                run_id: run_id.to_string(),
            })?;
        let blob = |artifact: Artifact, digest: &Digest| -> Result<Vec<u8>, StoredRunError> {
            journal
                .blob(digest)?
                .ok_or_else(|| StoredRunError::ArtifactMissing {
                    run_id: run_id.to_string(),
                    artifact,
                    digest: *digest,
                })
        };
        let altered = |artifact: Artifact, digest: &Digest| StoredRunError::ArtifactAltered {
            run_id: run_id.to_string(),
            artifact,
            digest: *digest,
        };
        let module = || {
            let module = blob(Artifact::AgentModule, &start.agent)?;
            if Agent::digest_of(&module) != start.agent {
                return Err(altered(Artifact::AgentModule, &start.agent));
            }
            Ok(module)
        };
        let agent = loaded_agent(run_id, &start.agent, checked, module)?;
        let text = |artifact: Artifact, digest: &Digest| -> Result<String, StoredRunError> {
            let bytes = blob(artifact, digest)?;
            if Digest::of(domain::BLOB, &bytes) != *digest {
                return Err(altered(artifact, digest));
            }
            String::from_utf8(bytes).map_err(|_| StoredRunError::NotText {
                run_id: run_id.to_string(),
                artifact,
            })
        };
        let policy_text = text(Artifact::PolicyText, &start.policy_text)?;
        let input = text(Artifact::Input, &start.input)?;
        let origin = || format!("<policy of run {run_id}>");
        let policy = parsed_policy(&start.policy_text, &policy_text, start.edition, origin)
            .map_err(|source| StoredRunError::Policy {
                run_id: run_id.to_string(),
                source,
            })?;
        if policy.hash() != start.policy {
            return Err(StoredRunError::PolicyDigest {
                run_id: run_id.to_string(),
                recorded: start.policy,
                parsed: policy.hash(),
            });
        }
        agent
            .admitted_by(&policy)
            .map_err(|source| StoredRunError::Load {
                run_id: run_id.to_string(),
                source,
            })?;
        Ok(StoredRun {
            meta,
            start,
            records,
            agent,
            policy,
            policy_text,
            input,
        })
    }
}

/// The stored policy `text` (whose blob digest, already checked, is `digest`) parsed under
/// `edition`, once per process: parsing is a function of the text and the edition alone
/// (a parsed policy keeps no name; `origin` names the text in an error). A text that does
/// not parse is parsed again each time.
fn parsed_policy(
    digest: &Digest,
    text: &str,
    edition: Edition,
    origin: impl FnOnce() -> String,
) -> Result<Arc<Policy>, PolicyError> {
    type Parsed = Vec<((Digest, Edition), Arc<Policy>)>;
    static PARSED: std::sync::Mutex<Parsed> = std::sync::Mutex::new(Vec::new());
    /// Distinct policies kept; beyond it the oldest is dropped.
    const KEPT: usize = 16;
    let key = (*digest, edition);
    if let Ok(parsed) = PARSED.lock()
        && let Some((_, policy)) = parsed.iter().find(|(k, _)| *k == key)
    {
        return Ok(Arc::clone(policy));
    }
    let policy = Arc::new(Policy::parse_recorded(text, &origin(), edition)?);
    if let Ok(mut parsed) = PARSED.lock() {
        if parsed.len() >= KEPT {
            parsed.remove(0);
        }
        parsed.push((key, Arc::clone(&policy)));
    }
    Ok(policy)
}

/// The agent of digest `digest`, loaded once per process: replaying a thousand runs of one
/// agent validates and compiles it once. `module` reads the module and checks it against
/// the digest; it is called unless this operation (`checked`) found the stored module
/// intact already and this process has it loaded.
fn loaded_agent(
    run_id: &str,
    digest: &Digest,
    checked: &Checked,
    module: impl FnOnce() -> Result<Vec<u8>, StoredRunError>,
) -> Result<Agent, StoredRunError> {
    static LOADED: std::sync::Mutex<Vec<(Digest, Agent)>> = std::sync::Mutex::new(Vec::new());
    /// Distinct agents kept; beyond it the oldest is dropped.
    const KEPT: usize = 16;
    let cached = || {
        let loaded = LOADED.lock().ok()?;
        let (_, agent) = loaded.iter().find(|(d, _)| d == digest)?;
        Some(agent.clone())
    };
    if checked.blob(domain::AGENT, digest)
        && let Some(agent) = cached()
    {
        return Ok(agent);
    }
    let module = module()?;
    checked.blob_intact(domain::AGENT, *digest);
    if let Some(agent) = cached() {
        return Ok(agent);
    }
    // Loaded admitting a WASI guest; whether the run's policy allows one is checked
    // once the policy is read (`Agent::admitted_by`).
    let agent = Agent::from_bytes_with(&module, WasiImports::Admitted).map_err(|source| {
        StoredRunError::Load {
            run_id: run_id.to_string(),
            source,
        }
    })?;
    if let Ok(mut loaded) = LOADED.lock() {
        if loaded.len() >= KEPT {
            loaded.remove(0);
        }
        loaded.push((*digest, agent.clone()));
    }
    Ok(agent)
}
