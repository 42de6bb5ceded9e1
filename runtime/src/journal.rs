//! The journal: the append-only, hash-chained record of every run, in redb.
//!
//! Upholds invariants 4 (write-ahead: a step's records, its checkpoint and the run's
//! metadata are committed in one redb write transaction at the step boundary) and 5
//! (tamper-evident: each record carries the digest of its predecessor and its own). The
//! file format is documented in `docs/journal.md`; change it only with a new version.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::decision::Decision;
use crate::digest::Digest;
use crate::outcome::{FailureReason, Status};
use crate::policy::Budgets;

/// The journal format this build writes. Readers accept every version up to it.
pub const FORMAT_VERSION: u64 = 1;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const RUNS: TableDefinition<&str, &[u8]> = TableDefinition::new("runs");
const RECORDS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("records");
const BLOBS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("blobs");
const PAGES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("pages");
const CHECKPOINTS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("checkpoints");

/// Why the journal could not be read or written. Never caused by a guest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// Another process holds the database.
    #[error(
        "journal {path} is open in another warden process; wait for it to finish (one process at a time per database)"
    )]
    InUse {
        /// The database file.
        path: PathBuf,
    },
    /// redb could not open, read or commit.
    #[error("journal {path}: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// redb's error.
        #[source]
        source: redb::Error,
    },
    /// The file was written by a newer Warden.
    #[error(
        "journal {path} has format version {found}; this warden reads up to {FORMAT_VERSION}: upgrade warden"
    )]
    NewerFormat {
        /// The database file.
        path: PathBuf,
        /// The version found.
        found: u64,
    },
    /// A stored value does not decode.
    #[error("journal {path}: {what} does not decode: {message}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// Which value.
        what: String,
        /// postcard's message.
        message: String,
    },
    /// No run has this id.
    #[error("no run `{0}` in this journal (see `warden runs`)")]
    NoSuchRun(String),
    /// A run id is already taken.
    #[error("run `{0}` already exists")]
    RunExists(String),
}

/// A record of a run, as chained in the journal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the run's journal, from 0.
    pub index: u64,
    /// Digest of the previous record ([`Digest::ZERO`] for the first).
    pub prev: Digest,
    /// Wall-clock time of the commit that wrote it, ms since the Unix epoch. Never an input
    /// to anything a run decides; excluded from replay comparison.
    pub at_ms: u64,
    /// What happened.
    pub body: RecordBody,
}

impl Record {
    /// The record's own digest, which its successor carries as `prev`.
    pub fn digest(&self) -> Digest {
        Digest::of("warden-record-v1", &encode(self))
    }
}

/// Who or what started a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parent {
    /// The run it was forked from.
    pub run_id: String,
    /// The checkpoint (step) it starts from.
    pub step: u32,
}

/// What a record says. Everything but `RunStarted` is compared by replay.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RecordBody {
    /// The run's identity: what ran, under which rules, on what.
    RunStarted {
        run_id: String,
        agent: Digest,
        policy: Digest,
        policy_text: Digest,
        policy_name: String,
        policy_version: String,
        bindings: Digest,
        input: Digest,
        state: String,
        budgets: Budgets,
        parent: Option<Parent>,
        warden_version: String,
    },
    /// A step begins in `state`.
    StepStarted { step: u32, state: String },
    /// A host call: the request bytes exactly as the guest sent them, the fuel the step had
    /// consumed when it made the call, and the decision (journaled before any effect).
    HostCall {
        step: u32,
        call: u64,
        state: String,
        fuel: u64,
        request: Vec<u8>,
        decision: Decision,
    },
    /// The response bytes exactly as given to the guest.
    HostResponse { call: u64, response: Vec<u8> },
    /// The run moved from one state to another (by the agent, or by a gate).
    Transition { step: u32, from: String, to: String },
    /// Guest state captured at the end of `step`.
    Checkpoint { step: u32, digest: Digest },
    /// The step's records end here; fuel the step used.
    StepCommitted { step: u32, fuel: u64, state: String },
    /// The run ended (for now: `awaiting_review` can resume after a review).
    Outcome {
        status: Status,
        state: String,
        output: Option<String>,
        reason: Option<FailureReason>,
        steps: u32,
        host_calls: u32,
        fuel: u64,
    },
}

/// The summary of a run kept beside its records, for listing and resuming.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    pub run_id: String,
    pub status: Status,
    pub state: String,
    pub agent: Digest,
    pub policy: Digest,
    pub policy_text: Digest,
    pub policy_name: String,
    pub policy_version: String,
    pub bindings: Digest,
    /// Where the bindings were loaded from, for `warden resume`.
    pub bindings_path: Option<String>,
    pub input: Digest,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub steps: u32,
    pub host_calls: u32,
    pub fuel: u64,
    /// Number of records.
    pub records: u64,
    /// Digest of the last record.
    pub head: Digest,
    pub last_checkpoint: Option<u32>,
    pub output: Option<String>,
    pub reason: Option<FailureReason>,
    pub parent: Option<Parent>,
}

/// One atomic write: a step's worth of journal.
#[derive(Debug, Default)]
pub struct Commit {
    /// Creates the run with this metadata in the same transaction (the first commit).
    pub create: Option<RunMeta>,
    /// Records to append (chained by the journal).
    pub records: Vec<RecordBody>,
    /// Content-addressed blobs (module, policy text, input) to store if absent.
    pub blobs: Vec<(Digest, Vec<u8>)>,
    /// Memory pages to store if absent.
    pub pages: Vec<(Digest, Vec<u8>)>,
    /// The checkpoint taken at this boundary.
    pub checkpoint: Option<Checkpoint>,
}

/// Versioned envelope of every stored value: postcard encodes the variant index first, so
/// old values keep decoding after new versions are added.
#[derive(Serialize, Deserialize)]
enum Stored<T> {
    V1(T),
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising our own plain data types to a Vec cannot fail.
    postcard::to_allocvec(value).unwrap_or_default()
}

/// Creates a new, initialized journal at `path`, which did not exist, so that a process
/// killed at any moment leaves either no journal there or a whole one.
///
/// redb sizes a new file before it writes its magic number (last, so that a half-made file
/// is never taken for a database); a process killed in between used to leave at `path` a
/// file that every later open refused ("Not a redb database"). So the journal is made
/// under a temporary name beside `path` (`.NAME.PID.new`) and hard-linked into place once
/// whole. A link never replaces a file: if another process created the journal meanwhile,
/// that one is kept. A process killed before the link leaves only the temporary file,
/// which holds no run and may be deleted. Where the journal cannot be made this way (no
/// hard links, no write access to the directory), nothing is done and [`Journal::open`]
/// creates it in place, reporting any error against `path` itself.
fn create_atomically(path: &Path) {
    let Some(name) = path.file_name() else {
        return;
    };
    let temp = path.with_file_name(format!(
        ".{}.{}.new",
        name.to_string_lossy(),
        std::process::id()
    ));
    // Left by an earlier process with this pid that was killed: never the journal.
    let _ = std::fs::remove_file(&temp);
    let made = Journal::create_or_open(&temp).is_ok();
    let linked = made
        && match std::fs::hard_link(&temp, path) {
            Ok(()) => true,
            Err(e) => e.kind() == std::io::ErrorKind::AlreadyExists,
        };
    let _ = std::fs::remove_file(&temp);
    if linked {
        // The new name is directory data: make it as durable as the runs it will hold.
        let parent = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let _ = std::fs::File::open(parent).and_then(|dir| dir.sync_all());
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The journal database.
#[derive(Debug)]
pub struct Journal {
    db: Database,
    path: PathBuf,
}

/// The result of checking one run's hash chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verification {
    pub run_id: String,
    pub records: u64,
    pub head: Digest,
    /// The first problem found, or `None` when every record checks out.
    pub problem: Option<String>,
    /// The index of the first record that does not check out, where one can be named.
    pub record: Option<u64>,
}

impl Journal {
    /// Opens (creating if needed) the journal at `path`.
    ///
    /// # Errors
    /// [`JournalError::InUse`] when another process has it open; otherwise redb's error
    /// or a format-version mismatch, naming the file.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        if !path.exists() {
            create_atomically(path);
        }
        Journal::create_or_open(path)
    }

    fn create_or_open(path: &Path) -> Result<Journal, JournalError> {
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => JournalError::InUse {
                path: path.to_path_buf(),
            },
            other => JournalError::Database {
                path: path.to_path_buf(),
                source: other.into(),
            },
        })?;
        let journal = Journal {
            db,
            path: path.to_path_buf(),
        };
        journal.init()?;
        Ok(journal)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: impl Into<redb::Error>) -> JournalError {
        JournalError::Database {
            path: self.path.clone(),
            source: e.into(),
        }
    }

    fn corrupt(&self, what: impl Into<String>, e: postcard::Error) -> JournalError {
        JournalError::Corrupt {
            path: self.path.clone(),
            what: what.into(),
            message: e.to_string(),
        }
    }

    fn decode<T: for<'de> Deserialize<'de>>(
        &self,
        what: impl Into<String>,
        bytes: &[u8],
    ) -> Result<T, JournalError> {
        match postcard::from_bytes::<Stored<T>>(bytes) {
            Ok(Stored::V1(value)) => Ok(value),
            Err(e) => Err(self.corrupt(what, e)),
        }
    }

    fn init(&self) -> Result<(), JournalError> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut meta = tx.open_table(META).map_err(|e| self.err(e))?;
            let found = meta
                .get("format_version")
                .map_err(|e| self.err(e))?
                .map(|v| v.value());
            match found {
                Some(v) if v > FORMAT_VERSION => {
                    return Err(JournalError::NewerFormat {
                        path: self.path.clone(),
                        found: v,
                    });
                }
                Some(_) => {}
                None => {
                    meta.insert("format_version", FORMAT_VERSION)
                        .map_err(|e| self.err(e))?;
                }
            }
            tx.open_table(RUNS).map_err(|e| self.err(e))?;
            tx.open_table(RECORDS).map_err(|e| self.err(e))?;
            tx.open_table(BLOBS).map_err(|e| self.err(e))?;
            tx.open_table(PAGES).map_err(|e| self.err(e))?;
            tx.open_table(CHECKPOINTS).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Appends a step's worth of records, blobs, pages and a checkpoint (creating the run
    /// first if `commit.create` says so), and updates the run's metadata with `update`, in
    /// one durable transaction. Returns the new metadata.
    ///
    /// # Errors
    /// [`JournalError::NoSuchRun`], redb errors. Nothing is written unless all is.
    pub fn commit(
        &self,
        run_id: &str,
        commit: Commit,
        update: impl FnOnce(&mut RunMeta),
    ) -> Result<RunMeta, JournalError> {
        let at_ms = now_ms();
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        let meta = {
            let mut runs = tx.open_table(RUNS).map_err(|e| self.err(e))?;
            let existing = runs
                .get(run_id)
                .map_err(|e| self.err(e))?
                .map(|v| v.value().to_vec());
            let mut meta: RunMeta = match (existing, commit.create) {
                (Some(_), Some(_)) => return Err(JournalError::RunExists(run_id.to_string())),
                (None, Some(meta)) => meta,
                (Some(bytes), None) => self.decode(format!("run {run_id}"), &bytes)?,
                (None, None) => return Err(JournalError::NoSuchRun(run_id.to_string())),
            };
            let mut records = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
            for body in commit.records {
                let record = Record {
                    index: meta.records,
                    prev: meta.head,
                    at_ms,
                    body,
                };
                let digest = record.digest();
                records
                    .insert(
                        (run_id, record.index),
                        encode(&Stored::V1((&record, digest))).as_slice(),
                    )
                    .map_err(|e| self.err(e))?;
                meta.records += 1;
                meta.head = digest;
            }
            let mut blobs = tx.open_table(BLOBS).map_err(|e| self.err(e))?;
            for (digest, bytes) in &commit.blobs {
                if blobs.get(&digest.0).map_err(|e| self.err(e))?.is_none() {
                    blobs
                        .insert(&digest.0, bytes.as_slice())
                        .map_err(|e| self.err(e))?;
                }
            }
            let mut pages = tx.open_table(PAGES).map_err(|e| self.err(e))?;
            for (digest, bytes) in &commit.pages {
                if pages.get(&digest.0).map_err(|e| self.err(e))?.is_none() {
                    pages
                        .insert(&digest.0, bytes.as_slice())
                        .map_err(|e| self.err(e))?;
                }
            }
            if let Some(checkpoint) = &commit.checkpoint {
                let mut table = tx.open_table(CHECKPOINTS).map_err(|e| self.err(e))?;
                table
                    .insert(
                        (run_id, checkpoint.step),
                        encode(&Stored::V1(checkpoint)).as_slice(),
                    )
                    .map_err(|e| self.err(e))?;
                meta.last_checkpoint = Some(checkpoint.step);
            }
            update(&mut meta);
            meta.updated_ms = at_ms;
            runs.insert(run_id, encode(&Stored::V1(&meta)).as_slice())
                .map_err(|e| self.err(e))?;
            meta
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok(meta)
    }

    /// The metadata of one run.
    ///
    /// # Errors
    /// [`JournalError::NoSuchRun`], redb or decoding errors.
    pub fn run(&self, run_id: &str) -> Result<RunMeta, JournalError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let runs = tx.open_table(RUNS).map_err(|e| self.err(e))?;
        match runs.get(run_id).map_err(|e| self.err(e))? {
            Some(bytes) => self.decode(format!("run {run_id}"), bytes.value()),
            None => Err(JournalError::NoSuchRun(run_id.to_string())),
        }
    }

    /// Every run, oldest first.
    ///
    /// # Errors
    /// redb or decoding errors.
    pub fn runs(&self) -> Result<Vec<RunMeta>, JournalError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let runs = tx.open_table(RUNS).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for entry in runs.iter().map_err(|e| self.err(e))? {
            let (key, value) = entry.map_err(|e| self.err(e))?;
            out.push(self.decode::<RunMeta>(format!("run {}", key.value()), value.value())?);
        }
        out.sort_by(|a, b| (a.created_ms, &a.run_id).cmp(&(b.created_ms, &b.run_id)));
        Ok(out)
    }

    /// Every record of a run with the digest stored beside it, in order.
    ///
    /// # Errors
    /// redb or decoding errors.
    pub fn stored_records(&self, run_id: &str) -> Result<Vec<(Record, Digest)>, JournalError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let records = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for entry in records
            .range((run_id, 0)..=(run_id, u64::MAX))
            .map_err(|e| self.err(e))?
        {
            let (key, value) = entry.map_err(|e| self.err(e))?;
            let (_, index) = key.value();
            out.push(self.decode(format!("record {index} of run {run_id}"), value.value())?);
        }
        Ok(out)
    }

    /// Every record of a run, in order.
    ///
    /// # Errors
    /// redb or decoding errors.
    pub fn records(&self, run_id: &str) -> Result<Vec<Record>, JournalError> {
        Ok(self
            .stored_records(run_id)?
            .into_iter()
            .map(|(r, _)| r)
            .collect())
    }

    /// A stored blob (module bytes, policy text, input).
    ///
    /// # Errors
    /// redb errors.
    pub fn blob(&self, digest: &Digest) -> Result<Option<Vec<u8>>, JournalError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let blobs = tx.open_table(BLOBS).map_err(|e| self.err(e))?;
        Ok(blobs
            .get(&digest.0)
            .map_err(|e| self.err(e))?
            .map(|v| v.value().to_vec()))
    }

    /// A stored memory page.
    ///
    /// # Errors
    /// redb errors.
    pub fn page(&self, digest: &Digest) -> Result<Option<Vec<u8>>, JournalError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let pages = tx.open_table(PAGES).map_err(|e| self.err(e))?;
        Ok(pages
            .get(&digest.0)
            .map_err(|e| self.err(e))?
            .map(|v| v.value().to_vec()))
    }

    /// Number of distinct memory pages stored (shared by all runs).
    ///
    /// # Errors
    /// redb errors.
    pub fn page_count(&self) -> Result<u64, JournalError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let pages = tx.open_table(PAGES).map_err(|e| self.err(e))?;
        pages.len().map_err(|e| self.err(e))
    }

    /// The checkpoint taken at the end of `step` (0: right after instantiation).
    ///
    /// # Errors
    /// redb or decoding errors.
    pub fn checkpoint(&self, run_id: &str, step: u32) -> Result<Option<Checkpoint>, JournalError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = tx.open_table(CHECKPOINTS).map_err(|e| self.err(e))?;
        match table.get((run_id, step)).map_err(|e| self.err(e))? {
            Some(bytes) => Ok(Some(
                self.decode(format!("checkpoint {step} of run {run_id}"), bytes.value())?,
            )),
            None => Ok(None),
        }
    }

    /// Recomputes a run's hash chain and names the first record that does not check out.
    ///
    /// # Errors
    /// redb errors, or [`JournalError::NoSuchRun`]. A broken chain is not an error: it is
    /// the `problem` of the returned [`Verification`].
    pub fn verify(&self, run_id: &str) -> Result<Verification, JournalError> {
        let meta = self.run(run_id)?;
        let records = match self.stored_records(run_id) {
            Ok(records) => records,
            Err(JournalError::Corrupt { what, message, .. }) => {
                return Ok(Verification {
                    run_id: run_id.to_string(),
                    records: meta.records,
                    head: meta.head,
                    problem: Some(format!("{what} does not decode: {message}")),
                    record: None,
                });
            }
            Err(e) => return Err(e),
        };
        let found = match chain_problem(&meta, &records) {
            Some(found) => Some(found),
            None => self.checkpoint_problem(run_id, &records)?,
        };
        let (record, problem) = match found {
            Some((record, problem)) => (record, Some(problem)),
            None => (None, None),
        };
        Ok(Verification {
            run_id: run_id.to_string(),
            records: meta.records,
            head: meta.head,
            problem,
            record,
        })
    }
}

impl Journal {
    /// Checks every checkpoint a chained `Checkpoint` record names: the stored checkpoint
    /// must match the digest in the record, and each of its pages must be present and
    /// match its own digest.
    fn checkpoint_problem(
        &self,
        run_id: &str,
        records: &[(Record, Digest)],
    ) -> Result<Option<(Option<u64>, String)>, JournalError> {
        let mut checked = std::collections::HashSet::new();
        for (record, _) in records {
            let RecordBody::Checkpoint { step, digest } = &record.body else {
                continue;
            };
            let checkpoint = match self.checkpoint(run_id, *step) {
                Ok(Some(checkpoint)) => checkpoint,
                Ok(None) => {
                    return Ok(Some((
                        Some(record.index),
                        format!("checkpoint {step} is missing"),
                    )));
                }
                Err(JournalError::Corrupt { message, .. }) => {
                    return Ok(Some((
                        Some(record.index),
                        format!("checkpoint {step} does not decode: {message}"),
                    )));
                }
                Err(e) => return Err(e),
            };
            if checkpoint.digest() != *digest {
                return Ok(Some((
                    Some(record.index),
                    format!(
                        "checkpoint {step} does not match the digest {} in record {} (the checkpoint was altered)",
                        digest.short(),
                        record.index
                    ),
                )));
            }
            for page in &checkpoint.pages {
                if !checked.insert(*page) {
                    continue;
                }
                match self.page(page)? {
                    Some(bytes) if Digest::of("warden-page-v1", &bytes) == *page => {}
                    Some(_) => {
                        return Ok(Some((
                            Some(record.index),
                            format!(
                                "memory page {} of checkpoint {step} does not match its digest (the page was altered)",
                                page.short()
                            ),
                        )));
                    }
                    None => {
                        return Ok(Some((
                            Some(record.index),
                            format!(
                                "memory page {} of checkpoint {step} is missing",
                                page.short()
                            ),
                        )));
                    }
                }
            }
        }
        Ok(None)
    }
}

/// The first way in which `records` fail to form the chain `meta` describes, with the
/// index of the record at fault where one can be named.
fn chain_problem(meta: &RunMeta, records: &[(Record, Digest)]) -> Option<(Option<u64>, String)> {
    let mut prev = Digest::ZERO;
    for (position, (record, stored)) in records.iter().enumerate() {
        let position = position as u64;
        if record.index != position {
            return Some((
                Some(position),
                format!(
                    "record at position {position} says it is record {} (a record was deleted, inserted or reordered)",
                    record.index
                ),
            ));
        }
        let digest = record.digest();
        if digest != *stored {
            return Some((
                Some(position),
                format!(
                    "record {position}: content does not match its digest {} (the record was altered)",
                    stored.short()
                ),
            ));
        }
        if record.prev != prev {
            return Some((
                Some(position),
                format!(
                    "record {position}: predecessor digest {} is not the digest {} of record {} (a record was altered, deleted, inserted or reordered)",
                    record.prev.short(),
                    prev.short(),
                    position.wrapping_sub(1)
                ),
            ));
        }
        prev = digest;
    }
    if records.len() as u64 != meta.records {
        return Some((
            Some(records.len() as u64),
            format!(
                "the run has {} records but its metadata says {} (records were deleted or appended)",
                records.len(),
                meta.records
            ),
        ));
    }
    if prev != meta.head {
        return Some((
            None,
            format!(
                "the last record's digest {} is not the run's head {} (the journal was truncated or extended)",
                prev.short(),
                meta.head.short()
            ),
        ));
    }
    None
}

/// A request, decoded for people.
pub fn describe_request(request: &warden_guest::wire::Request) -> String {
    use warden_guest::wire::Request;
    match request {
        Request::Input => "input".into(),
        Request::State => "state".into(),
        Request::Tool { name, args } => format!("tool {name} {args}"),
        Request::Model { name, features } => format!("model {name} {features}"),
        Request::Transition {
            to,
            evidence: Some(id),
        } => format!("transition -> {to} (citing inference #{})", id.0),
        Request::Transition { to, evidence: None } => format!("transition -> {to}"),
        Request::Log { level, message } => format!("log {level:?}: {message}"),
        Request::Finish { output } => format!("finish {output}"),
        Request::Abort { reason } => format!("abort: {reason}"),
    }
}

/// Request bytes, decoded for people (or shown as bytes if they do not decode).
pub fn describe_request_bytes(bytes: &[u8]) -> String {
    match postcard::from_bytes::<warden_guest::wire::Request>(bytes) {
        Ok(request) => describe_request(&request),
        Err(_) => format!("{} undecodable bytes {}", bytes.len(), hex_prefix(bytes)),
    }
}

/// Response bytes, decoded for people.
pub fn describe_response_bytes(bytes: &[u8]) -> String {
    use warden_guest::wire::Response;
    match postcard::from_bytes::<Response>(bytes) {
        Ok(Response::Input(json)) => format!("input {}", compact_json(&json)),
        Ok(Response::State(state)) => format!("state {state}"),
        Ok(Response::Tool(Ok(json))) => format!("ok {json}"),
        Ok(Response::Tool(Err(e))) => format!("tool error {:?}: {}", e.kind, e.message),
        Ok(Response::Model(Ok(i))) => format!(
            "inference #{} of {}: {} (confidence {:.4})",
            i.id.0, i.model, i.value, i.confidence
        ),
        Ok(Response::Model(Err(e))) => format!("model error {:?}: {}", e.kind, e.message),
        Ok(Response::Transitioned(state)) => format!("now in {state}"),
        Ok(Response::Ack) => "ok".into(),
        Err(_) => format!("{} undecodable bytes {}", bytes.len(), hex_prefix(bytes)),
    }
}

/// JSON text on one line (as given if it does not parse).
fn compact_json(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .map_or_else(|_| json.to_string(), |v| v.to_string())
}

fn hex_prefix(bytes: &[u8]) -> String {
    let shown: String = bytes.iter().take(16).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > 16 {
        format!("{shown}...")
    } else {
        shown
    }
}

impl RecordBody {
    /// One line for people: what the record says, decoded.
    pub fn describe(&self) -> String {
        match self {
            RecordBody::RunStarted {
                run_id,
                policy_name,
                policy_version,
                state,
                ..
            } => {
                format!("run {run_id} started under {policy_name} {policy_version} in {state}")
            }
            RecordBody::StepStarted { step, state } => format!("step {step} started in {state}"),
            RecordBody::HostCall {
                step,
                call,
                state,
                fuel,
                request,
                decision,
            } => format!(
                "step {step} call {call} in {state} (fuel {fuel}): {} => {:?}: {}",
                describe_request_bytes(request),
                decision.verdict,
                decision.rule
            ),
            RecordBody::HostResponse { call, response } => {
                format!(
                    "call {call} response: {}",
                    describe_response_bytes(response)
                )
            }
            RecordBody::Transition { step, from, to } => format!("step {step}: {from} -> {to}"),
            RecordBody::Checkpoint { step, digest } => {
                format!("checkpoint after step {step}: {}", digest.short())
            }
            RecordBody::StepCommitted { step, fuel, state } => {
                format!("step {step} committed in {state} (fuel {fuel})")
            }
            RecordBody::Outcome {
                status,
                state,
                output,
                reason,
                ..
            } => {
                let mut line = format!("outcome {status} in {state}");
                if let Some(output) = output {
                    line.push_str(&format!(", output {output}"));
                }
                if let Some(reason) = reason {
                    line.push_str(&format!(", reason: {reason}"));
                }
                line
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A valid chain of `n` records and the metadata that describes it.
    fn chain(n: usize) -> (RunMeta, Vec<(Record, Digest)>) {
        let mut prev = Digest::ZERO;
        let mut records = Vec::new();
        for index in 0..n as u64 {
            let record = Record {
                index,
                prev,
                at_ms: 1_700_000_000_000 + index,
                body: RecordBody::StepStarted {
                    step: index as u32,
                    state: format!("s{index}"),
                },
            };
            prev = record.digest();
            records.push((record, prev));
        }
        let meta = RunMeta {
            run_id: "r".into(),
            status: Status::Running,
            state: "s".into(),
            agent: Digest::ZERO,
            policy: Digest::ZERO,
            policy_text: Digest::ZERO,
            policy_name: "p".into(),
            policy_version: "1".into(),
            bindings: Digest::ZERO,
            bindings_path: None,
            input: Digest::ZERO,
            created_ms: 0,
            updated_ms: 0,
            steps: 0,
            host_calls: 0,
            fuel: 0,
            records: n as u64,
            head: prev,
            last_checkpoint: None,
            output: None,
            reason: None,
            parent: None,
        };
        (meta, records)
    }

    /// One way to tamper with a stored chain.
    #[derive(Debug, Clone)]
    enum Corruption {
        Edit(usize),
        EditAndReseal(usize),
        Delete(usize),
        Duplicate(usize),
        Swap(usize, usize),
        Truncate(usize),
        EditTimestamp(usize),
    }

    fn corruption() -> impl Strategy<Value = Corruption> {
        prop_oneof![
            any::<usize>().prop_map(Corruption::Edit),
            any::<usize>().prop_map(Corruption::EditAndReseal),
            any::<usize>().prop_map(Corruption::Delete),
            any::<usize>().prop_map(Corruption::Duplicate),
            (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Corruption::Swap(a, b)),
            (1usize..4).prop_map(Corruption::Truncate),
            any::<usize>().prop_map(Corruption::EditTimestamp),
        ]
    }

    /// Applies `c`; returns false when it would leave the chain unchanged.
    fn apply(records: &mut Vec<(Record, Digest)>, c: &Corruption) -> bool {
        let n = records.len();
        match *c {
            Corruption::Edit(i) => {
                let (record, _) = &mut records[i % n];
                record.body = RecordBody::StepStarted {
                    step: 9_999,
                    state: "forged".into(),
                };
            }
            Corruption::EditAndReseal(i) => {
                let (record, digest) = &mut records[i % n];
                record.body = RecordBody::StepStarted {
                    step: 9_999,
                    state: "forged".into(),
                };
                *digest = record.digest();
            }
            Corruption::EditTimestamp(i) => records[i % n].0.at_ms += 1,
            Corruption::Delete(i) => {
                records.remove(i % n);
            }
            Corruption::Duplicate(i) => {
                let copy = records[i % n].clone();
                records.insert(i % n, copy);
            }
            Corruption::Swap(a, b) => {
                if a % n == b % n {
                    return false;
                }
                records.swap(a % n, b % n);
            }
            Corruption::Truncate(k) => records.truncate(n.saturating_sub(k)),
        }
        true
    }

    #[test]
    fn an_intact_chain_verifies() {
        for n in 0..20 {
            let (meta, records) = chain(n);
            assert_eq!(chain_problem(&meta, &records), None);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::test_support::cases(2_000)))]

        /// Every single edit, deletion, insertion, reordering or truncation is detected.
        #[test]
        fn every_corruption_is_detected(n in 1usize..40, c in corruption()) {
            let (meta, mut records) = chain(n);
            if apply(&mut records, &c) {
                prop_assert!(chain_problem(&meta, &records).is_some(), "{c:?} on {n} records went unseen");
            }
        }
    }
}
