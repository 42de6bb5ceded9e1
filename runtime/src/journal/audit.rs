//! Auditing: every run checked against the transparency log as well as its own chain, and,
//! given the deployment's public key, every head and the log itself checked for the key's
//! signature. Upholds invariant 5 against a person who can write the journal file but
//! does not hold the signing key (`docs/threat-model.md`).
//!
//! A run's own chain proves only that its records agree with one another: whoever can
//! write the file can cut a run short, re-seal it with new digests and timestamps, or
//! delete it, and leave a chain that checks out. The log holds, for every commit, the
//! run's record count and head (since format 6 a digest of the commit's records; up to
//! format 5 with the digest of each record the commit appended), signed; so the audit
//! names the first commit that is not the one committed (the first record, where the
//! entry holds record digests), a run cut back to an earlier head, a run the log never
//! saw, and a run that is gone.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use super::record::Link;
use super::{Checked, Journal, JournalError, LogEntry, Record, RunMeta, Verification};
use crate::digest::Digest;
use crate::edition::Edition;
use crate::seal::merkle::{self, LeafStore, MemoryTree};
use crate::seal::signing::{KeyId, PublicKey, SignedTreeHead};

/// Where each run's entries are in the log: (place, the number the leaf is stored under).
/// Entries are read again from the log when a run is verified, not held for every run.
type PlacesByRun = BTreeMap<String, Vec<(u64, u64)>>;

/// The result of auditing a whole journal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Audit {
    /// Every run, oldest first, then every run the log names that the journal no longer
    /// holds (each with its problem).
    pub runs: Vec<Verification>,
    /// The transparency log as a whole.
    pub log: LogAudit,
}

impl Audit {
    /// Whether nothing at all was found wrong.
    pub fn is_intact(&self) -> bool {
        self.log.problems.is_empty() && self.runs.iter().all(|v| v.problem.is_none())
    }
}

/// The transparency log as a whole.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogAudit {
    /// Entries in the log.
    pub entries: u64,
    /// Its root over all entries, recomputed from the entries (hex).
    pub root: String,
    /// The latest signed tree head the journal holds, in its one-line text form.
    pub signed_head: Option<String>,
    /// The key the signatures were checked against, if one was given.
    pub key: Option<KeyId>,
    /// What is wrong with the log, first problem first; empty when it checks out.
    pub problems: Vec<String>,
}

/// The log entries a run's verification holds it to.
#[derive(Clone, Copy)]
pub(super) struct LogCheck<'a> {
    /// The run's entries, by log index.
    pub entries: &'a [(u64, LogEntry)],
    /// Whether a run with no entry is a problem.
    pub required: bool,
    /// The key each entry must be signed by.
    pub key: Option<&'a PublicKey>,
}

/// The last millisecond RFC 3339 can write (9999-12-31T23:59:59.999Z).
const LAST_RFC3339_MS: u64 = 253_402_300_799_999;

/// ms since the epoch, as RFC 3339 (UTC, milliseconds). A time past year 9999 (a far
/// timeout, or a time someone wrote into the file) is written as its milliseconds.
pub fn timestamp(ms: u64) -> String {
    if ms > LAST_RFC3339_MS {
        return format!("{ms} ms after 1970 (past year 9999)");
    }
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// [`timestamp`] to the second.
pub fn timestamp_seconds(ms: u64) -> String {
    if ms > LAST_RFC3339_MS {
        return timestamp(ms);
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// The first way in which a run's records depart from what the log holds for it, with
/// the index of the first record at fault where one can be named. `entries` are in log
/// order.
pub(super) fn log_problem(
    records: &[(Record, Digest)],
    links: &[Link],
    entries: &[(u64, LogEntry)],
    key: Option<&PublicKey>,
) -> Option<(Option<u64>, String)> {
    // The run's head after its first `count` records, as its rows chain it (`chain_problem`):
    // none inside a format-6 commit, whose records have no head of their own.
    let head_at = |count: u64| -> Option<Digest> {
        let Some(last) = count.checked_sub(1) else {
            return Some(Digest::ZERO);
        };
        match links.get(links.partition_point(|link| link.end <= last)) {
            Some(link) if link.first <= last => (link.end == count).then_some(link.head),
            _ => records.get(last as usize).map(|(_, digest)| *digest),
        }
    };
    let mut before = 0;
    for (index, entry) in entries {
        // Since format 6 an entry holds no record digests: its commit begins where the
        // run's previous entry ended.
        let previous = before;
        let first = if entry.digests.is_empty() {
            previous
        } else {
            entry.first_record()
        };
        before = entry.records;
        if let Some(key) = key
            && !entry.signed_by(key)
        {
            let signer = match &entry.signature {
                Some((id, _)) if *id == key.key_id() => "carries a signature that is not valid",
                Some(_) => "is signed by another key",
                None => "is not signed",
            };
            return Some((
                Some(first),
                format!(
                    "log entry {index} (the run's head at {} records, committed {}) {signer}: key {} did not sign it (the entry was forged, or written without the key)",
                    entry.records,
                    timestamp(entry.at_ms),
                    key.key_id()
                ),
            ));
        }
        if entry.records < previous {
            // The entry of the commit that began at `previous` was altered.
            return Some((
                Some(previous),
                format!(
                    "log entry {index} holds the run's head at {} records, after an earlier entry of the run held it at {previous}: a run's entries only grow (the log was altered)",
                    entry.records
                ),
            ));
        }
        for (offset, logged) in entry.digests.iter().enumerate() {
            let position = first + offset as u64;
            match records.get(position as usize) {
                None => {
                    return Some((
                        Some(position),
                        format!(
                            "record {position} is missing: the log holds its digest {} from the commit of {} (log entry {index}); the run was truncated or the record deleted",
                            logged.short(),
                            timestamp(entry.at_ms)
                        ),
                    ));
                }
                Some((record, _)) if record.digest() != *logged => {
                    return Some((
                        Some(position),
                        format!(
                            "record {position} is not the record committed on {}: the log holds digest {} for it (log entry {index}), the journal's record hashes to {} (it was altered, replaced or re-sealed)",
                            timestamp(entry.at_ms),
                            logged.short(),
                            record.digest().short()
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        if entry.records > records.len() as u64 {
            // Which of the commit's records went, its digest alone cannot tell.
            let named = first.min(records.len() as u64);
            return Some((
                Some(named),
                format!(
                    "records {named} to {} are not the records committed on {}: the log holds the run's head at {} records (log entry {index}), the run has {}; records were deleted or the run was truncated",
                    entry.records - 1,
                    timestamp(entry.at_ms),
                    entry.records,
                    records.len()
                ),
            ));
        }
        let head = head_at(entry.records);
        if head != Some(entry.head) {
            let journal = match head {
                Some(head) => format!("the journal's records hash to {}", head.short()),
                None => format!(
                    "no commit of the journal ends at record {}",
                    entry.records - 1
                ),
            };
            return Some((
                Some(first),
                format!(
                    "records {first} to {} are not the records committed on {}: the log holds the run's head {} at {} records (log entry {index}), {journal} (they were altered, replaced or re-sealed)",
                    entry.records.saturating_sub(1),
                    timestamp(entry.at_ms),
                    entry.head.short(),
                    entry.records
                ),
            ));
        }
    }
    if let Some((index, latest)) = entries.last()
        && records.len() as u64 > latest.records
    {
        return Some((
            Some(latest.records),
            format!(
                "records {} to {} were added after the last head the log holds for the run ({} records, log entry {index}): they did not come from a commit",
                latest.records,
                records.len() - 1,
                latest.records
            ),
        ));
    }
    None
}

impl Journal {
    /// Verifies one run against its own chain, blobs and checkpoints and against every
    /// entry the transparency log holds for it; with `key`, each of those entries must be
    /// signed by it.
    ///
    /// # Errors
    /// [`JournalError::NoSuchRun`] when the run is neither in the journal nor in the log;
    /// redb errors. What does not check out is the returned verification's `problem`.
    pub fn verify_run(
        &self,
        run_id: &str,
        key: Option<&PublicKey>,
    ) -> Result<Verification, JournalError> {
        let index = self.log_index()?;
        let entries = &index.entries_of(self, run_id)?;
        let mut verification = match self.run(run_id) {
            Ok(meta) => self.verify_logged(&meta, entries, key, &Checked::default())?,
            Err(JournalError::NoSuchRun(_)) if !entries.is_empty() => deleted_run(run_id, entries),
            Err(e) => return Err(e),
        };
        if verification.problem.is_none()
            && let Some((position, key)) = index
                .renumbered
                .iter()
                .find(|(position, _)| entries.iter().any(|(i, _)| i == position))
        {
            verification.problem = Some(format!(
                "its log entry {position} is stored under the number {key}: the log's entries were renumbered (the journal was altered)"
            ));
            verification.log_entry = Some(*position);
        }
        Ok(verification)
    }

    /// Audits the whole journal: every run as [`Journal::verify_run`] does, every run the
    /// log names that is gone, and the log itself (its entries against its stored tree,
    /// its signed tree head, and with `key` every signature).
    ///
    /// # Errors
    /// redb errors.
    pub fn audit(&self, key: Option<&PublicKey>) -> Result<Audit, JournalError> {
        let (log, by_run) = self.audit_log_by_run(key, |_| true)?;
        let mut runs = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        let checked = Checked::default();
        for id in self.run_keys_by_age()? {
            let meta = match self.run(&id) {
                Err(JournalError::NoSuchRun(_)) => continue,
                Err(e @ JournalError::Corrupt { .. }) => Err(e),
                Err(e) => return Err(e),
                Ok(meta) => Ok(meta),
            };
            let entries = self.log_entries_at(places_of(&by_run, &id))?;
            runs.push(self.audit_one(&id, meta, &entries, key, &checked)?);
            seen.insert(id);
        }
        for (run_id, places) in &by_run {
            if !seen.contains(run_id) {
                runs.push(deleted_run(run_id, &self.log_entries_at(places)?));
            }
        }
        for run_id in self.record_run_ids()? {
            if !seen.contains(&run_id) && !by_run.contains_key(&run_id) {
                runs.push(unlisted_records(&run_id));
            }
        }
        Ok(Audit { runs, log })
    }

    /// [`Journal::audit`] for one run: the log as a whole, and that run alone, as the
    /// audit of the whole journal would report it (a summary stored under another id or
    /// that does not decode, a run the log names that is gone, records no summary lists),
    /// without verifying every other run: what `warden verify RUN` prints. It reads the
    /// whole log (nothing less shows that no later entry of the run was cut), but the
    /// records, blobs and checkpoints of that run only.
    ///
    /// # Errors
    /// [`JournalError::NoSuchRun`] when the journal holds nothing of the run; redb errors.
    pub fn audit_run(&self, run_id: &str, key: Option<&PublicKey>) -> Result<Audit, JournalError> {
        let (log, by_run) = self.audit_log_by_run(key, |id| id == run_id)?;
        let entries = &self.log_entries_at(places_of(&by_run, run_id))?;
        let verification = match self.run(run_id) {
            Err(JournalError::NoSuchRun(_)) if !entries.is_empty() => deleted_run(run_id, entries),
            Err(JournalError::NoSuchRun(_)) => {
                let rows = self.read_rows(run_id)?;
                if rows.records.is_empty() && rows.broken.is_none() {
                    return Err(JournalError::NoSuchRun(run_id.to_string()));
                }
                unlisted_records(run_id)
            }
            Err(e @ JournalError::Corrupt { .. }) => {
                self.audit_one(run_id, Err(e), entries, key, &Checked::default())?
            }
            Err(e) => return Err(e),
            Ok(meta) => self.audit_one(run_id, Ok(meta), entries, key, &Checked::default())?,
        };
        Ok(Audit {
            runs: vec![verification],
            log,
        })
    }

    /// One run of the audit, from its summary as read under `id` and its log entries: a
    /// summary stored under another id, or that does not decode, is the run's problem.
    fn audit_one(
        &self,
        id: &str,
        meta: Result<RunMeta, JournalError>,
        entries: &[(u64, LogEntry)],
        key: Option<&PublicKey>,
        checked: &Checked,
    ) -> Result<Verification, JournalError> {
        let problem = match meta {
            Ok(meta) if meta.run_id == id => {
                return self.verify_logged(&meta, entries, key, checked);
            }
            Ok(meta) => format!(
                "the summary stored under run id {id} names run {} (a summary was moved or copied)",
                meta.run_id
            ),
            Err(e) => format!("its summary does not decode: {e}"),
        };
        Ok(Verification {
            run_id: id.to_string(),
            records: 0,
            head: Digest::ZERO,
            problem: Some(problem),
            record: None,
            log_entry: entries.last().map(|(index, _)| *index),
            signed_by: None,
        })
    }

    /// The transparency log as a whole, as [`Journal::audit`] checks it (its entries
    /// against its stored tree, its signed tree head, and with `key` every signature),
    /// without verifying every run: what a report on one run adds to that run's own
    /// verification.
    ///
    /// # Errors
    /// redb errors.
    pub fn audit_log(&self, key: Option<&PublicKey>) -> Result<LogAudit, JournalError> {
        Ok(self.audit_log_by_run(key, |_| false)?.0)
    }

    /// [`Journal::audit_log`], and the log's entries by run, of the runs `keep` says.
    /// The leaves are read one at a time: what is held is the tree's hashes (64 bytes a
    /// leaf) and the entries kept.
    fn audit_log_by_run(
        &self,
        key: Option<&PublicKey>,
        keep: impl Fn(&str) -> bool,
    ) -> Result<(LogAudit, PlacesByRun), JournalError> {
        let mut by_run = PlacesByRun::new();
        let mut problems = Vec::new();
        let mut undecoded = Vec::new();
        let mut tree = MemoryTree::new();
        let mut unsigned = Vec::new();
        let mut renumbered = None;
        let tx = self.read()?;
        match tx.open_table(super::log::LOG_LEAVES) {
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(self.err(e)),
            Ok(leaves) => {
                // An entry's number is its place in the log (what its inclusion proof is
                // for).
                for (index, item) in
                    (0u64..).zip(redb::ReadableTable::iter(&leaves).map_err(|e| self.err(e))?)
                {
                    let (number, bytes) = item.map_err(|e| self.err(e))?;
                    let (number, bytes) = (number.value(), bytes.value());
                    if number != index && renumbered.is_none() {
                        renumbered = Some((index, number));
                    }
                    tree.append(bytes);
                    match postcard::from_bytes::<LogEntry>(bytes) {
                        Ok(entry) => {
                            if let Some(key) = key
                                && !entry.signed_by(key)
                            {
                                unsigned.push(index);
                            }
                            if keep(&entry.run_id) {
                                by_run
                                    .entry(entry.run_id)
                                    .or_default()
                                    .push((index, number));
                            }
                        }
                        Err(e) => undecoded.push(format!(
                            "log entry {index} does not decode ({e}): the log was altered"
                        )),
                    }
                }
            }
        }
        drop(tx);
        let size = tree.len();
        if let Some((position, key)) = renumbered {
            problems.push(format!(
                "log entry {position} is stored under the number {key}: the log's entries were renumbered (the journal was altered)"
            ));
        }
        problems.extend(undecoded);
        if let (Some(first), Some(key)) = (unsigned.first(), key) {
            problems.push(format!(
                "{} of {} log entries are not signed by key {} (the first is entry {first})",
                unsigned.len(),
                size,
                key.key_id()
            ));
        }
        let root = tree.root(size).unwrap_or_else(|_| merkle::empty_root());
        problems.extend(self.log_node_problem(&tree)?);
        let head = match self.log_head() {
            Ok(head) => head,
            Err(e) => {
                problems.push(format!("{e}"));
                None
            }
        };
        let signed_root = head.as_ref().and_then(|sth| tree.root(sth.head.size).ok());
        problems.extend(head_problems(head.as_ref(), signed_root, size, key));
        let log = LogAudit {
            entries: size,
            root: crate::seal::hex::encode(&root),
            signed_head: head.map(|h| h.to_string()),
            key: key.map(PublicKey::key_id),
            problems,
        };
        Ok((log, by_run))
    }

    /// One run against the entries the log holds for it.
    pub(super) fn verify_logged(
        &self,
        meta: &RunMeta,
        entries: &[(u64, LogEntry)],
        key: Option<&PublicKey>,
        checked: &Checked,
    ) -> Result<Verification, JournalError> {
        let rows = self.read_rows(&meta.run_id)?;
        // Runs started before the log existed (edition 1) are not in it; without a key
        // they are checked against their own chain only.
        let required = key.is_some()
            || rows
                .records
                .first()
                .and_then(|(r, _)| r.body.run_start())
                .is_none_or(|start| start.edition != Edition::V1);
        let mut verification = self.verify_with(
            meta,
            rows,
            LogCheck {
                entries,
                required,
                key,
            },
            checked,
        )?;
        verification.log_entry = entries.last().map(|(index, _)| *index);
        if verification.problem.is_none() {
            verification.signed_by = key.map(PublicKey::key_id);
        }
        Ok(verification)
    }

    /// The log's Merkle tree rebuilt from its leaves alone (never from the stored subtree
    /// hashes, which are a cache a person with the file could alter): what `warden log`
    /// computes roots and proofs from.
    ///
    /// # Errors
    /// redb errors.
    pub fn log_tree(&self) -> Result<MemoryTree, JournalError> {
        let mut tree = MemoryTree::new();
        for (_, bytes) in self.log_leaves()? {
            tree.append(&bytes);
        }
        Ok(tree)
    }

    /// The first stored subtree hash of the log that is not the hash of the entries it
    /// covers (proofs and new heads are built from them), if one is not.
    fn log_node_problem(&self, tree: &MemoryTree) -> Result<Option<String>, JournalError> {
        let tx = self.read()?;
        let nodes = match tx.open_table(super::log::LOG_NODES) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.err(e)),
        };
        for item in redb::ReadableTable::iter(&nodes).map_err(|e| self.err(e))? {
            let (key, stored) = item.map_err(|e| self.err(e))?;
            let (level, index) = key.value();
            if tree.subtree_hash(level, index).ok().flatten() != Some(stored.value()) {
                return Ok(Some(format!(
                    "the log's stored subtree hash at level {level}, index {index} is not the hash of the entries it covers (the log was altered; proofs served from this file would not verify)"
                )));
            }
        }
        Ok(None)
    }

    /// Every leaf of the log, by index, as stored.
    pub(super) fn log_leaves(&self) -> Result<Vec<(u64, Vec<u8>)>, JournalError> {
        let tx = self.read()?;
        let leaves = match tx.open_table(super::log::LOG_LEAVES) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(self.err(e)),
        };
        let mut out = Vec::new();
        for item in redb::ReadableTable::iter(&leaves).map_err(|e| self.err(e))? {
            let (index, bytes) = item.map_err(|e| self.err(e))?;
            out.push((index.value(), bytes.value().to_vec()));
        }
        Ok(out)
    }

    /// The log's entries at `places` ((place, number stored under), as the log was read
    /// a moment before), each decoded, with its place.
    pub(super) fn log_entries_at(
        &self,
        places: &[(u64, u64)],
    ) -> Result<Vec<(u64, LogEntry)>, JournalError> {
        if places.is_empty() {
            return Ok(Vec::new());
        }
        let tx = self.read()?;
        let leaves = tx
            .open_table(super::log::LOG_LEAVES)
            .map_err(|e| self.err(e))?;
        let mut entries = Vec::with_capacity(places.len());
        for &(place, number) in places {
            let what = || format!("log entry {place}");
            let leaf = leaves.get(number).map_err(|e| self.err(e))?;
            let leaf = leaf.ok_or_else(|| JournalError::Corrupt {
                path: self.path.clone(),
                what: what(),
                message: "it is gone since the log was read".into(),
            })?;
            let entry = postcard::from_bytes::<LogEntry>(leaf.value())
                .map_err(|e| self.corrupt(what(), e))?;
            entries.push((place, entry));
        }
        Ok(entries)
    }

    /// The first run the log names that the journal holds no summary of (a run deleted),
    /// with the number of its heads the log holds.
    pub(super) fn first_deleted_run(&self) -> Result<Option<(String, usize)>, JournalError> {
        let index = self.log_index()?;
        if index.by_run.is_empty() {
            return Ok(None);
        }
        let tx = self.read()?;
        let runs = tx.open_table(super::RUNS).map_err(|e| self.err(e))?;
        for (run_id, places) in &index.by_run {
            if runs
                .get(run_id.as_str())
                .map_err(|e| self.err(e))?
                .is_none()
            {
                return Ok(Some((run_id.clone(), places.len())));
            }
        }
        Ok(None)
    }

    /// The log's entries grouped by run, read once per size of the log; for an evidence
    /// pack (which has no log), the entries its manifest carries.
    pub(super) fn log_index(&self) -> Result<std::sync::Arc<LogIndex>, JournalError> {
        let size = self.log_size()?;
        if let Ok(memo) = self.log_index.lock()
            && let Some(index) = memo.as_ref()
            && index.size == size
        {
            return Ok(index.clone());
        }
        let mut by_run = PlacesByRun::new();
        let mut carried = None;
        let mut sealed = None;
        let renumbered = match (size, self.pack_manifest()?) {
            (0, Some(manifest)) => {
                carried = Some(
                    (0u64..)
                        .zip(&manifest.entries)
                        .filter_map(|(place, entry)| {
                            postcard::from_bytes::<LogEntry>(&entry.bytes)
                                .ok()
                                .map(|e| (place, e))
                        })
                        .collect(),
                );
                // A pack's entries keep the numbers they had in the journal it was cut
                // from (its inclusion proofs name them): not a renumbering.
                Vec::new()
            }
            _ => {
                let mut renumbered = Vec::new();
                // The leaves the stored signed tree head covers, hashed as they are read.
                let head = self.log_head().ok().flatten();
                let mut frontier = merkle::Frontier::default();
                let tx = self.read()?;
                match tx.open_table(super::log::LOG_LEAVES) {
                    Err(redb::TableError::TableDoesNotExist(_)) => {}
                    Err(e) => return Err(self.err(e)),
                    Ok(leaves) => {
                        let items = redb::ReadableTable::iter(&leaves).map_err(|e| self.err(e))?;
                        for (place, item) in (0u64..).zip(items) {
                            let (number, bytes) = item.map_err(|e| self.err(e))?;
                            let number = number.value();
                            if number != place {
                                renumbered.push((place, number));
                            }
                            if head.as_ref().is_some_and(|sth| place < sth.head.size) {
                                frontier.append(bytes.value());
                            }
                            if let Some(run_id) = entry_run_id(bytes.value()) {
                                by_run.entry(run_id).or_default().push((place, number));
                            }
                        }
                    }
                }
                sealed = head.and_then(|sth| unsealed(&sth, size, &frontier));
                renumbered
            }
        };
        let index = std::sync::Arc::new(LogIndex {
            size,
            by_run,
            carried,
            renumbered,
            sealed,
        });
        if let Ok(mut memo) = self.log_index.lock() {
            *memo = Some(index.clone());
        }
        Ok(index)
    }
}

/// Where the log's entries are, by run (entries that do not decode are left out; the
/// audit reports them): about 16 bytes an entry, the entries themselves read when a run is
/// verified.
#[derive(Debug)]
pub(super) struct LogIndex {
    size: u64,
    /// Each run's entries: (place in the log, number stored under).
    by_run: PlacesByRun,
    /// An evidence pack's entries (it has no log): those its manifest carries, numbered by
    /// their place in it.
    carried: Option<Vec<(u64, LogEntry)>>,
    /// Entries stored under another number than their place: (place, number).
    renumbered: Vec<(u64, u64)>,
    /// How the log's leaves fail the signed tree head stored with them, if they do: every
    /// run's verification reports it, since no entry of such a log can be trusted.
    sealed: Option<String>,
}

/// How the first `sth.head.size` of the `size` leaves read into `frontier` fail `sth`, as
/// the audit says it ([`head_problems`]) without the key: a tree head covering more or
/// fewer leaves than the log holds, or another root. The head's signature is not checked
/// here (that needs the key); a head that names leaves the log no longer has is evidence
/// enough.
fn unsealed(sth: &SignedTreeHead, size: u64, frontier: &merkle::Frontier) -> Option<String> {
    let root = (frontier.len() == sth.head.size).then(|| frontier.root());
    head_problems(Some(sth), root, size, None)
        .into_iter()
        .next()
}

impl LogIndex {
    /// How the log's leaves fail its stored signed tree head, if they do.
    pub(super) fn sealed(&self) -> Option<&str> {
        self.sealed.as_deref()
    }
}

/// The run id a log leaf names, read without decoding the rest: a leaf is postcard of
/// [`LogEntry`], whose first field is the run id. `None` if the whole leaf does not
/// decode, as the audit reports.
fn entry_run_id(bytes: &[u8]) -> Option<String> {
    postcard::from_bytes::<LogEntry>(bytes)
        .ok()
        .map(|entry| entry.run_id)
}

/// The places of `run_id`'s entries in `by_run`.
fn places_of<'a>(by_run: &'a PlacesByRun, run_id: &str) -> &'a [(u64, u64)] {
    by_run.get(run_id).map(Vec::as_slice).unwrap_or_default()
}

/// The leaves stored under another number than their place in the log, as (place,
/// number): the log's leaves are numbered 0, 1, 2, ... by the writer, so any other number
/// was written by someone else.
impl LogIndex {
    /// The entries of `run_id`, oldest first, each with its place in the log, read from
    /// `journal`'s log (or the pack's manifest).
    pub(super) fn entries_of(
        &self,
        journal: &Journal,
        run_id: &str,
    ) -> Result<Vec<(u64, LogEntry)>, JournalError> {
        match &self.carried {
            Some(carried) => Ok(carried
                .iter()
                .filter(|(_, entry)| entry.run_id == run_id)
                .cloned()
                .collect()),
            None => journal.log_entries_at(places_of(&self.by_run, run_id)),
        }
    }
}

/// Records stored under a run id that has neither a summary nor a log entry: planted, or
/// left by a run deleted together with its log entries (which the log's root then shows).
fn unlisted_records(run_id: &str) -> Verification {
    Verification {
        run_id: run_id.to_string(),
        records: 0,
        head: Digest::ZERO,
        problem: Some(
            "records are stored under this run id, but the journal has no such run and the transparency log never held it: the rows were planted, or left by a deleted run (the journal was altered)".into(),
        ),
        record: Some(0),
        log_entry: None,
        signed_by: None,
    }
}

/// The verification of a run the log names but the journal no longer holds.
fn deleted_run(run_id: &str, entries: &[(u64, LogEntry)]) -> Verification {
    let (index, latest) = entries
        .last()
        .map_or((0, None), |(index, entry)| (*index, Some(entry)));
    Verification {
        run_id: run_id.to_string(),
        records: latest.map_or(0, |e| e.records),
        head: latest.map_or(Digest::ZERO, |e| e.head),
        problem: Some(format!(
            "the run is missing from the journal, but the transparency log holds {} of its heads (the last, entry {index}, at {} records, committed {}): the run was deleted",
            entries.len(),
            latest.map_or(0, |e| e.records),
            timestamp(latest.map_or(0, |e| e.at_ms)),
        )),
        record: Some(0),
        log_entry: Some(index),
        signed_by: None,
    }
}

/// What is wrong with the log's signed tree head, given the log's size and the root of
/// its first `head.size` entries (none when it has fewer).
fn head_problems(
    head: Option<&SignedTreeHead>,
    root: Option<merkle::Hash>,
    size: u64,
    key: Option<&PublicKey>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(sth) = head else {
        if let Some(key) = key
            && size > 0
        {
            problems.push(format!(
                "the log has {size} entries but no signed tree head: key {} never signed it, or the head was removed",
                key.key_id()
            ));
        }
        return problems;
    };
    if let Some(key) = key
        && !sth.verify(key)
    {
        problems.push(format!(
            "the log's signed tree head (size {}) is not signed by key {}: {}",
            sth.head.size,
            key.key_id(),
            sth.why_unverified(key)
        ));
    }
    if sth.head.size > size {
        problems.push(format!(
            "the log's signed tree head covers {} entries but the log holds only {size}: entries were removed",
            sth.head.size
        ));
    } else {
        if root != Some(sth.head.root) {
            problems.push(format!(
                "the log's first {} entries do not hash to the root its signed tree head holds: the log was altered",
                sth.head.size
            ));
        }
        if sth.head.size < size {
            problems.push(format!(
                "log entries {} to {} came after the last signed tree head (size {}): they were written without the signing key, or inserted",
                sth.head.size,
                size - 1,
                sth.head.size
            ));
        }
    }
    problems
}
