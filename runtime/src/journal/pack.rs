//! Evidence packs: one run, self-contained, for a complaint, an auditor or a court.
//!
//! A pack is a journal file holding exactly one run (its summary and records byte for
//! byte, the agent module, policy text, input and model cards, every checkpoint of the
//! run and the memory pages they name) and a `pack` table with the run's entries in the
//! transparency log, each with its inclusion proof in a tree head, that tree head's
//! signature and the deployment's public key. So `warden show`, `warden replay` and
//! `warden verify --pack` work on the pack alone, on another machine, years later; and
//! with the deployment's public key, which the auditor holds, the verification shows
//! that these very records were committed and signed by the deployment, not assembled
//! afterwards.
//!
//! What a pack cannot show on its own: that no later commit of the run exists (a pack
//! cut back to an earlier commit of an unfinished run is still a true account of that
//! moment; its status says it had not ended). The full journal's audit shows that.

use std::path::Path;

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::audit::{LogCheck, timestamp};
use super::log::LogEntry;
use super::{
    BLOBS, CHECKPOINTS, Checkpoint, Journal, JournalError, PAGES, RECORDS, RUNS, Stored,
    Verification, now_ms,
};
use crate::digest::Digest;
use crate::seal::merkle::{self, Hash};
use crate::seal::signing::{KeyId, PublicKey, Signature, SignedTreeHead, SigningKey, TreeHead};

/// `manifest` -> the postcard bytes of the [`PackManifest`].
const PACK: TableDefinition<&str, &[u8]> = TableDefinition::new("pack");

/// What a pack says about its run beyond the journal tables it holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PackManifest {
    /// The run the pack holds.
    pub run_id: String,
    /// When the pack was written, ms since the Unix epoch.
    pub created_ms: u64,
    /// The Warden version that wrote it.
    pub warden_version: String,
    /// The journal file it was written from, as that machine named it.
    pub source: String,
    /// The tree head every inclusion proof leads to.
    pub tree_head: TreeHead,
    /// That tree head signed by the deployment's key, when the journal was signed.
    pub signed_head: Option<SignedTreeHead>,
    /// The deployment's public key, as the writer of the pack knew it. An auditor checks
    /// against their own copy (`--key`); this one only says which key to ask for.
    pub public_key: Option<PublicKey>,
    /// Every entry the log holds for the run, oldest first, with inclusion proofs.
    pub entries: Vec<PackEntry>,
    /// The deployment's signature (under [`PACK_DOMAIN`]) over [`PackManifest::attested`]:
    /// that the last entry is the run's last as of the tree head, so a pack cut back to
    /// an earlier commit (hiding, say, a review decision) does not verify. Present when
    /// the pack was written with the signing key.
    pub attestation: Option<(KeyId, Signature)>,
}

/// The domain a pack's attestation is signed under.
pub const PACK_DOMAIN: &str = "warden-pack-v1";

impl PackManifest {
    /// What the attestation signs: postcard of (run id, the last entry's index and bytes,
    /// the tree head).
    pub fn attested(&self) -> Vec<u8> {
        let last = self.entries.last().map(|e| (e.index, e.bytes.as_slice()));
        super::encode(&(&self.run_id, last, self.tree_head))
    }
}

/// One log entry of the run and the proof that it is in the tree head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PackEntry {
    /// Its index in the log.
    pub index: u64,
    /// The entry's bytes, exactly as hashed into the log.
    pub bytes: Vec<u8>,
    /// Its RFC 9162 inclusion proof in the tree head.
    pub proof: Vec<Hash>,
}

/// What [`Journal::write_pack`] wrote.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PackSummary {
    /// The run.
    pub run_id: String,
    /// Its records.
    pub records: u64,
    /// Checkpoints and memory pages included, so that replay needs nothing else.
    pub checkpoints: u64,
    /// Distinct memory pages included.
    pub pages: u64,
    /// Log entries included, each with its inclusion proof.
    pub entries: u64,
    /// The tree head the proofs lead to (size).
    pub tree_size: u64,
    /// Whether that tree head is signed.
    pub signed: bool,
    /// Whether the pack attests that it holds the run's last commit as of the tree head.
    pub attested: bool,
}

/// The result of verifying a pack.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PackVerification {
    /// The run: chain, blobs, checkpoints and its heads in the log.
    pub run: Verification,
    /// The tree head the pack's proofs lead to, in its one-line text form when signed.
    pub tree_head: String,
    /// The key the signatures were checked against: the auditor's own, or (when none was
    /// given) the one the pack carries, which proves nothing against a forger.
    pub key: Option<KeyId>,
    /// Whether `key` is the auditor's own (`--key`), not the pack's.
    pub trusted_key: bool,
    /// What does not check out beyond the run: proofs, tree head, attestation.
    pub problems: Vec<String>,
    /// Whether the pack attests (signed) that its last entry is the run's last as of
    /// its tree head. Without it, a pack cut back to an earlier commit looks the same.
    pub attested: bool,
    /// The run's status at the pack's last entry, and whether it had ended there.
    pub status: String,
    /// False when the run was still running or awaiting review at the pack's last entry:
    /// the pack shows a moment, and later commits (a review decision) are not in it.
    pub ended: bool,
}

impl PackVerification {
    /// The verification of a pack too damaged to check further.
    fn broken(run_id: &str, problem: String) -> PackVerification {
        PackVerification {
            run: Verification {
                run_id: run_id.to_string(),
                records: 0,
                head: Digest::ZERO,
                problem: Some(problem),
                record: None,
                log_entry: None,
                signed_by: None,
            },
            tree_head: String::new(),
            key: None,
            trusted_key: false,
            problems: Vec::new(),
            attested: false,
            status: String::new(),
            ended: false,
        }
    }

    /// Whether the run and every proof check out.
    pub fn is_intact(&self) -> bool {
        self.run.problem.is_none() && self.problems.is_empty()
    }
}

/// Why a pack could not be written or read.
fn pack_error(path: &Path, message: impl Into<String>) -> JournalError {
    JournalError::Pack {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl Journal {
    /// Writes the evidence pack of `run_id` to `out`, which must not exist. The run must
    /// verify and be in the transparency log: a pack vouches for what it holds.
    /// `public_key` is stored for the auditor's information.
    ///
    /// # Errors
    /// [`JournalError::Pack`] when the run does not verify, is not in the log, or `out`
    /// exists; redb errors.
    pub fn write_pack(
        &self,
        run_id: &str,
        out: &Path,
        public_key: Option<PublicKey>,
        signer: Option<&SigningKey>,
    ) -> Result<PackSummary, JournalError> {
        if out.exists() {
            return Err(pack_error(
                out,
                "the file exists; name a new file (a pack is never overwritten)",
            ));
        }
        let verification = self.verify_run(run_id, None)?;
        if let Some(problem) = &verification.problem {
            return Err(JournalError::Broken {
                run_id: run_id.to_string(),
                problem: format!("{problem} (no evidence pack is written for a broken run)"),
            });
        }
        let entries = self.log_entries_of(run_id)?;
        let Some((last, _)) = entries.last() else {
            return Err(pack_error(
                out,
                format!("run {run_id} is not in the transparency log (a run of format 1)"),
            ));
        };
        let size = self.log_size()?;
        let signed_head = self.log_head()?.filter(|sth| sth.head.size > *last);
        let tree_head = match &signed_head {
            Some(sth) => sth.head,
            None => TreeHead {
                size,
                root: self.log_root(size)?,
                time_ms: now_ms(),
            },
        };
        let mut pack_entries = Vec::with_capacity(entries.len());
        for (index, bytes) in entries {
            let proof = self.log_inclusion(index, tree_head.size)?;
            pack_entries.push(PackEntry {
                index,
                bytes,
                proof,
            });
        }
        let mut manifest = PackManifest {
            run_id: run_id.to_string(),
            created_ms: now_ms(),
            warden_version: env!("CARGO_PKG_VERSION").to_string(),
            source: self.path.display().to_string(),
            tree_head,
            signed_head,
            public_key: public_key.or(signer.map(SigningKey::public_key)),
            entries: pack_entries,
            attestation: None,
        };
        if let Some(key) = signer
            && let Ok(signature) = key.sign(PACK_DOMAIN, &manifest.attested())
        {
            manifest.attestation = Some((key.key_id(), signature));
        }
        // Made under a temporary name and renamed into place when whole.
        let temp = out.with_file_name(format!(
            ".{}.{}.new",
            out.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            std::process::id()
        ));
        let _ = std::fs::remove_file(&temp);
        let result = self.copy_run_into(run_id, &temp, &manifest);
        let summary = match result {
            Ok(summary) => summary,
            Err(e) => {
                let _ = std::fs::remove_file(&temp);
                return Err(e);
            }
        };
        std::fs::rename(&temp, out).map_err(|e| pack_error(out, e.to_string()))?;
        Ok(summary)
    }

    /// Copies the run's summary, records, blobs, checkpoints and pages byte for byte into
    /// a new journal at `path`, with the manifest, in one transaction.
    fn copy_run_into(
        &self,
        run_id: &str,
        path: &Path,
        manifest: &PackManifest,
    ) -> Result<PackSummary, JournalError> {
        let pack = Journal::create_or_open(path)?;
        let from = self.read()?;
        let to = pack.write()?;
        let mut summary = PackSummary {
            run_id: run_id.to_string(),
            records: 0,
            checkpoints: 0,
            pages: 0,
            entries: manifest.entries.len() as u64,
            tree_size: manifest.tree_head.size,
            signed: manifest.signed_head.is_some(),
            attested: manifest.attestation.is_some(),
        };
        {
            let runs = from.open_table(RUNS).map_err(|e| self.err(e))?;
            let meta = runs
                .get(run_id)
                .map_err(|e| self.err(e))?
                .ok_or_else(|| JournalError::NoSuchRun(run_id.to_string()))?;
            to.open_table(RUNS)
                .map_err(|e| pack.err(e))?
                .insert(run_id, meta.value())
                .map_err(|e| pack.err(e))?;
            let records = from.open_table(RECORDS).map_err(|e| self.err(e))?;
            let mut out = to.open_table(RECORDS).map_err(|e| pack.err(e))?;
            for item in records
                .range((run_id, 0)..=(run_id, u64::MAX))
                .map_err(|e| self.err(e))?
            {
                let (key, value) = item.map_err(|e| self.err(e))?;
                out.insert(key.value(), value.value())
                    .map_err(|e| pack.err(e))?;
            }
            let records = self.records(run_id)?;
            summary.records = records.len() as u64;
            let start = records.into_iter().next().and_then(|r| r.body.run_start());
            let mut blobs: Vec<Digest> = Vec::new();
            if let Some(start) = start {
                blobs.extend([start.agent, start.policy_text, start.input]);
                blobs.extend(start.models.iter().map(|m| m.card));
            }
            let from_blobs = from.open_table(BLOBS).map_err(|e| self.err(e))?;
            let mut to_blobs = to.open_table(BLOBS).map_err(|e| pack.err(e))?;
            for digest in blobs {
                if let Some(bytes) = from_blobs.get(&digest.0).map_err(|e| self.err(e))? {
                    to_blobs
                        .insert(&digest.0, bytes.value())
                        .map_err(|e| pack.err(e))?;
                }
            }
            let checkpoints = from.open_table(CHECKPOINTS).map_err(|e| self.err(e))?;
            let mut to_checkpoints = to.open_table(CHECKPOINTS).map_err(|e| pack.err(e))?;
            let from_pages = from.open_table(PAGES).map_err(|e| self.err(e))?;
            let mut to_pages = to.open_table(PAGES).map_err(|e| pack.err(e))?;
            for item in checkpoints
                .range((run_id, 0)..=(run_id, u32::MAX))
                .map_err(|e| self.err(e))?
            {
                let (key, value) = item.map_err(|e| self.err(e))?;
                let (_, step) = key.value();
                let checkpoint: Checkpoint =
                    match postcard::from_bytes::<Stored<Checkpoint>>(value.value()) {
                        Ok(Stored::V1(checkpoint)) => checkpoint,
                        Err(e) => {
                            return Err(
                                self.corrupt(format!("checkpoint {step} of run {run_id}"), e)
                            );
                        }
                    };
                to_checkpoints
                    .insert(key.value(), value.value())
                    .map_err(|e| pack.err(e))?;
                summary.checkpoints += 1;
                // Each page, and the base pages a page stored as a difference needs.
                let mut wanted: Vec<Digest> = checkpoint.pages.clone();
                while let Some(page) = wanted.pop() {
                    if to_pages.get(&page.0).map_err(|e| pack.err(e))?.is_some() {
                        continue;
                    }
                    if let Some(bytes) = from_pages.get(&page.0).map_err(|e| self.err(e))? {
                        to_pages
                            .insert(&page.0, bytes.value())
                            .map_err(|e| pack.err(e))?;
                        summary.pages += 1;
                        wanted.extend(crate::checkpoint::page_store::base_of(bytes.value()));
                    }
                }
            }
            to.open_table(PACK)
                .map_err(|e| pack.err(e))?
                .insert("manifest", super::encode(manifest).as_slice())
                .map_err(|e| pack.err(e))?;
        }
        to.commit().map_err(|e| pack.err(e))?;
        Ok(summary)
    }

    /// The run's entries in the log, oldest first, as stored.
    fn log_entries_of(&self, run_id: &str) -> Result<Vec<(u64, Vec<u8>)>, JournalError> {
        Ok(self
            .log_leaves()?
            .into_iter()
            .filter(|(_, bytes)| {
                postcard::from_bytes::<LogEntry>(bytes).is_ok_and(|entry| entry.run_id == run_id)
            })
            .collect())
    }

    /// The manifest of the evidence pack this journal is, if it is one.
    ///
    /// # Errors
    /// redb or decoding errors.
    pub fn pack_manifest(&self) -> Result<Option<PackManifest>, JournalError> {
        let tx = self.read()?;
        let table = match tx.open_table(PACK) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.err(e)),
        };
        match table.get("manifest").map_err(|e| self.err(e))? {
            Some(bytes) => {
                Ok(Some(postcard::from_bytes(bytes.value()).map_err(|e| {
                    self.corrupt("the evidence pack's manifest", e)
                })?))
            }
            None => Ok(None),
        }
    }

    /// Verifies this journal as an evidence pack: its run's chain, blobs and checkpoints;
    /// each of the run's log entries against its records and by its inclusion proof in
    /// the pack's tree head; and, with `key` (the deployment's public key as the auditor
    /// holds it), every signature. Without `key` the signatures are checked against the
    /// key the pack carries, which shows that nothing was damaged, not that nothing was
    /// forged.
    ///
    /// # Errors
    /// [`JournalError::Pack`] if the file is not a pack; redb errors.
    pub fn verify_pack(&self, key: Option<&PublicKey>) -> Result<PackVerification, JournalError> {
        let manifest = match self.pack_manifest() {
            Ok(Some(manifest)) => manifest,
            Ok(None) => {
                return Err(pack_error(
                    &self.path,
                    "this file is not an evidence pack (it has no `pack` table); for a journal, leave out --pack",
                ));
            }
            Err(JournalError::Corrupt { message, .. }) => {
                return Ok(PackVerification::broken(
                    "",
                    format!(
                        "the pack's manifest does not decode ({message}): the pack was altered"
                    ),
                ));
            }
            Err(e) => return Err(e),
        };
        let trusted_key = key.is_some();
        let key = key.copied().or(manifest.public_key);
        let mut problems = Vec::new();
        let head = manifest.tree_head;
        let mut entries = Vec::with_capacity(manifest.entries.len());
        for entry in &manifest.entries {
            let leaf = merkle::leaf_hash(&entry.bytes);
            if !merkle::verify_inclusion(&leaf, entry.index, head.size, &entry.proof, &head.root) {
                problems.push(format!(
                    "log entry {}'s inclusion proof does not lead to the root of the pack's tree head (size {}): the entry or the proof was altered",
                    entry.index, head.size
                ));
            }
            match postcard::from_bytes::<LogEntry>(&entry.bytes) {
                Ok(decoded) if decoded.run_id == manifest.run_id => {
                    entries.push((entry.index, decoded));
                }
                Ok(decoded) => problems.push(format!(
                    "log entry {} is about run {}, not the pack's run {}",
                    entry.index, decoded.run_id, manifest.run_id
                )),
                Err(e) => problems.push(format!(
                    "log entry {} does not decode ({e}): the pack was altered",
                    entry.index
                )),
            }
        }
        match (&manifest.signed_head, &key) {
            (Some(sth), Some(key)) => {
                if sth.head != head {
                    problems.push("the pack's signed tree head is not its tree head".into());
                } else if !sth.verify(key) {
                    problems.push(format!(
                        "the pack's tree head (size {}) is not signed by key {}: {}",
                        head.size,
                        key.key_id(),
                        sth.why_unverified(key)
                    ));
                }
            }
            (None, Some(key)) => problems.push(format!(
                "the pack's tree head is not signed (the journal it came from had no signing key), so key {} vouches for nothing in it",
                key.key_id()
            )),
            (_, None) => {}
        }
        let meta = match self.run(&manifest.run_id) {
            Ok(meta) => meta,
            Err(JournalError::NoSuchRun(_) | JournalError::Corrupt { .. }) => {
                return Ok(PackVerification::broken(
                    &manifest.run_id,
                    format!(
                        "the pack's manifest names run {}, whose summary the pack does not hold: the pack was altered",
                        manifest.run_id
                    ),
                ));
            }
            Err(e) => return Err(e),
        };
        let attested = match (&manifest.attestation, &key) {
            (Some((id, signature)), Some(key)) => {
                if *id == key.key_id() && key.verify(PACK_DOMAIN, &manifest.attested(), signature) {
                    true
                } else {
                    problems.push(format!(
                        "the pack's attestation that it holds the run's last commit is not signed by key {} (the pack was cut back or altered)",
                        key.key_id()
                    ));
                    false
                }
            }
            _ => false,
        };
        let rows = self.read_rows(&manifest.run_id)?;
        let mut run = self.verify_with(
            &meta,
            rows,
            LogCheck {
                entries: &entries,
                required: true,
                key: key.as_ref(),
            },
            &super::verify::Checked::default(),
        )?;
        run.log_entry = entries.last().map(|(index, _)| *index);
        if run.problem.is_none() && problems.is_empty() {
            run.signed_by = key.as_ref().map(PublicKey::key_id);
        }
        Ok(PackVerification {
            run,
            tree_head: match &manifest.signed_head {
                Some(sth) => sth.to_string(),
                None => format!(
                    "unsigned tree head size={} root={} time={}",
                    head.size,
                    crate::seal::hex::encode(&head.root),
                    timestamp(head.time_ms)
                ),
            },
            key: key.as_ref().map(PublicKey::key_id),
            trusted_key,
            problems,
            attested,
            status: meta.status().to_string(),
            ended: matches!(
                meta.status(),
                crate::outcome::Status::Completed | crate::outcome::Status::Failed
            ),
        })
    }
}
