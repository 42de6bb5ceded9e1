//! The journal: the append-only, hash-chained record of every run, in redb.
//!
//! Upholds invariants 4 (write-ahead: a step's records, its checkpoint and the run's
//! metadata are committed in one redb write transaction at the step boundary) and 5
//! (tamper-evident: each record carries the digest of its predecessor and its own). The
//! file format is documented in `docs/journal.md`; change it only with a new version.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{Database, ReadOnlyDatabase, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::digest::Digest;

mod audit;
mod bodies;
mod commit;
mod describe;
mod error;
mod heads;
mod log;
mod pack;
mod record;
mod storage;
mod verify;
mod wasi_call;

pub use crate::edition::Edition;
pub use audit::{Audit, LogAudit, timestamp, timestamp_seconds};
pub use bodies::Bodies;
pub(crate) use bodies::{HostCallRef, decode as decode_body, encode_into, kind};
pub use commit::{Commit, Progress};
pub use error::JournalError;
use error::{open_error, storage_error};

pub use describe::{describe_request, describe_request_bytes, describe_response_bytes};
pub use log::{LogEntry, RUN_HEAD_DOMAIN};
pub use pack::{PackEntry, PackManifest, PackSummary, PackVerification};
use record::StoredMeta;
pub use record::{InheritedEvidence, Parent, Record, RecordBody, RunMeta, RunStart, RunStartedV1};
pub use storage::Storage;
pub use verify::{Checked, Verification};
pub(crate) use wasi_call::errno as wasi_errno;
pub use wasi_call::{WasiAnswer, WasiCall, WasiRequest};

/// A run's records read up to the first row that does not decode ([`Journal::read_rows`]).
#[derive(Default)]
pub(super) struct Rows {
    /// The records of the rows before it, in order, each with its digest.
    pub(super) records: Vec<(Record, Digest)>,
    /// The commits of the format-6 rows among them, in order.
    pub(super) links: Vec<record::Link>,
    /// That row's key (the index of the first record it should hold) and its problem.
    pub(super) broken: Option<(u64, String)>,
}

/// The journal format this build writes. Readers accept every version up to it
/// (`docs/journal.md`, "Format versions").
pub const FORMAT_VERSION: u64 = 6;

/// The most memory redb keeps for pages of the journal file, read or written, per open
/// journal. redb's default, 1 GiB, is memory that a long batch fills with pages it wrote and
/// never reads again: `warden batch` of 100 000 loan runs (a 1.2 GB journal) held 1.25 GB
/// resident against 0.26 GB with this bound, at the same runs per second, and `verify
/// --all` of that journal 1.44 GB against 0.48 GB, a little faster (`BENCHMARKS.md`,
/// "Journal memory"). Interior pages of the tables, the ones read again, fit many times.
const CACHE_BYTES: usize = 64 << 20;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const RUNS: TableDefinition<&str, &[u8]> = TableDefinition::new("runs");
const RECORDS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("records");
const BLOBS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("blobs");
const PAGES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("pages");
const CHECKPOINTS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("checkpoints");

/// A row of the `runs` table: its key, and its summary or why that does not decode.
pub type RunRow = (String, Result<RunMeta, JournalError>);

/// Versioned envelope of every stored value: postcard encodes the variant index first, so
/// old values keep decoding after new versions are added.
#[derive(Serialize, Deserialize)]
enum Stored<T> {
    V1(T),
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
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

/// The redb handle: read-write for runs, read-only for inspection (`runs`, `show`,
/// `verify`, `replay`), so that an archived or write-protected journal can be audited.
enum Handle {
    ReadWrite(Database),
    ReadOnly(ReadOnlyDatabase),
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Handle::ReadWrite(_) => "ReadWrite",
            Handle::ReadOnly(_) => "ReadOnly",
        })
    }
}

/// The journal database.
#[derive(Debug)]
pub struct Journal {
    db: Handle,
    path: PathBuf,
    /// The deployment's key: when set, every commit signs the run's head and the log's
    /// tree head, and every verification checks signatures against it.
    signer: Option<crate::seal::signing::SigningKey>,
    /// Where the signer records the last head it signed for this journal, if anywhere.
    kept_heads: Option<heads::KeptHeads>,
    /// The deployment's public key a reader holds the journal to
    /// ([`Journal::hold_to_public_key`]): every verification checks signatures against it.
    readers_key: Option<crate::seal::signing::PublicKey>,
    /// The log's entries by run, read once per size of the log (it only grows).
    log_index: std::sync::Mutex<Option<std::sync::Arc<audit::LogIndex>>>,
    /// Commits waiting to be written together (group commit).
    group: commit::Group,
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

    /// Opens an existing journal for reading only. Nothing is written to the file, so a
    /// read-only or archived journal can be listed, shown, verified and replayed; the one
    /// exception is a journal left by a killed writer, which redb must repair first.
    ///
    /// # Errors
    /// [`JournalError::Missing`] if there is no file; [`JournalError::InUse`] while a
    /// process writes to it; redb's error or a newer format, naming the file.
    pub fn open_read_only(path: &Path) -> Result<Journal, JournalError> {
        Journal::open_reading(path, true)
    }

    /// Opens an evidence pack (or any journal) for reading without ever writing to it,
    /// not even redb's repair: a pack is evidence, and its bytes must stay as received.
    ///
    /// # Errors
    /// As [`Journal::open_read_only`]; a file that needs repair is [`JournalError::Damaged`].
    pub fn open_pack(path: &Path) -> Result<Journal, JournalError> {
        Journal::open_reading(path, false)
    }

    fn open_reading(path: &Path, repair: bool) -> Result<Journal, JournalError> {
        if !path.exists() {
            return Err(JournalError::Missing {
                path: path.to_path_buf(),
            });
        }
        let db = match Database::builder()
            .set_cache_size(CACHE_BYTES)
            .open_read_only(path)
        {
            Ok(db) => db,
            // A journal whose last writer was killed needs redb's repair, which only a
            // writer can do: repair it (nothing committed is lost), then read.
            Err(redb::DatabaseError::RepairAborted) if repair => {
                return Journal::create_or_open(path);
            }
            // A pack is closed cleanly when written: one that asks for repair was altered
            // (or cut short) since, and evidence is not repaired.
            Err(redb::DatabaseError::RepairAborted) => {
                return Err(JournalError::Damaged {
                    path: path.to_path_buf(),
                    message: "it asks for repair, which a file warden finished writing never does: it was altered or cut short since; it is not changed here, ask for the pack again".into(),
                });
            }
            Err(e) => return Err(open_error(path, e)),
        };
        let journal = Journal {
            db: Handle::ReadOnly(db),
            path: path.to_path_buf(),
            signer: None,
            kept_heads: None,
            readers_key: None,
            log_index: std::sync::Mutex::new(None),
            group: commit::Group::default(),
        };
        let tx = journal.read()?;
        let found = match tx.open_table(META) {
            Ok(meta) => meta
                .get("format_version")
                .map_err(|e| journal.err(e))?
                .map(|v| v.value()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(journal.err(e)),
        };
        if let Some(found) = found.filter(|v| *v > FORMAT_VERSION) {
            return Err(JournalError::NewerFormat {
                path: path.to_path_buf(),
                found,
            });
        }
        drop(tx);
        Ok(journal)
    }

    fn create_or_open(path: &Path) -> Result<Journal, JournalError> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| open_error(path, e))?;
        let journal = Journal {
            db: Handle::ReadWrite(db),
            path: path.to_path_buf(),
            signer: None,
            kept_heads: None,
            readers_key: None,
            log_index: std::sync::Mutex::new(None),
            group: commit::Group::default(),
        };
        journal.init()?;
        Ok(journal)
    }

    pub(super) fn read(&self) -> Result<redb::ReadTransaction, JournalError> {
        match &self.db {
            Handle::ReadWrite(db) => db.begin_read(),
            Handle::ReadOnly(db) => db.begin_read(),
        }
        .map_err(|e| self.err(e))
    }

    fn write(&self) -> Result<redb::WriteTransaction, JournalError> {
        match &self.db {
            Handle::ReadWrite(db) => db.begin_write().map_err(|e| self.err(e)),
            Handle::ReadOnly(_) => Err(JournalError::ReadOnly {
                path: self.path.clone(),
            }),
        }
    }

    /// Returns free space in the file to the file system (redb compaction). Needs no other
    /// process to hold the database; nothing recorded changes.
    ///
    /// # Errors
    /// redb's compaction error.
    pub fn compact(&mut self) -> Result<bool, JournalError> {
        match &mut self.db {
            Handle::ReadWrite(db) => db.compact().map_err(|e| JournalError::Database {
                path: self.path.clone(),
                source: e.into(),
            }),
            Handle::ReadOnly(_) => Err(JournalError::ReadOnly {
                path: self.path.clone(),
            }),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn err(&self, e: impl Into<redb::Error>) -> JournalError {
        storage_error(&self.path, e.into())
    }

    pub(super) fn corrupt(&self, what: impl Into<String>, e: postcard::Error) -> JournalError {
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
        match postcard::take_from_bytes::<Stored<T>>(bytes) {
            Ok((Stored::V1(value), [])) => Ok(value),
            Ok((_, rest)) => Err(JournalError::Corrupt {
                path: self.path.clone(),
                what: what.into(),
                message: format!(
                    "{} bytes follow the value (bytes no digest covers were appended)",
                    rest.len()
                ),
            }),
            Err(e) => Err(self.corrupt(what, e)),
        }
    }

    fn decode_meta(&self, run_id: &str, bytes: &[u8]) -> Result<RunMeta, JournalError> {
        match postcard::take_from_bytes::<StoredMeta>(bytes) {
            Ok((StoredMeta::V1(v1), [])) => Ok(v1.into()),
            Ok((StoredMeta::V2(meta), [])) => Ok(meta),
            Ok((_, rest)) => Err(JournalError::Corrupt {
                path: self.path.clone(),
                what: format!("the summary of run {run_id}"),
                message: format!("{} bytes follow the value", rest.len()),
            }),
            Err(e) => Err(self.corrupt(format!("the summary of run {run_id}"), e)),
        }
    }

    fn init(&self) -> Result<(), JournalError> {
        let tx = self.write()?;
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
                // An older file is read as it is; what this build adds is written in the
                // new format, so the file's version becomes this one.
                Some(v) if v == FORMAT_VERSION => {}
                _ => {
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

    /// The metadata of one run.
    ///
    /// # Errors
    /// [`JournalError::NoSuchRun`], redb or decoding errors.
    pub fn run(&self, run_id: &str) -> Result<RunMeta, JournalError> {
        let tx = self.read()?;
        let runs = tx.open_table(RUNS).map_err(|e| self.err(e))?;
        match runs.get(run_id).map_err(|e| self.err(e))? {
            Some(bytes) => self.decode_meta(run_id, bytes.value()),
            None => Err(JournalError::NoSuchRun(run_id.to_string())),
        }
    }

    /// The full id of the run whose id is `id` or starts with it, so that people may
    /// shorten run ids to any unique prefix (`warden show 20261201-0442`).
    ///
    /// # Errors
    /// [`JournalError::NoSuchRun`] when no id starts with it;
    /// [`JournalError::AmbiguousRunId`] when several do (naming them); redb errors.
    pub fn resolve_run_id(&self, id: &str) -> Result<String, JournalError> {
        let tx = self.read()?;
        let runs = tx.open_table(RUNS).map_err(|e| self.err(e))?;
        if id.is_empty() {
            return Err(JournalError::NoSuchRun(id.to_string()));
        }
        if runs.get(id).map_err(|e| self.err(e))?.is_some() {
            return Ok(id.to_string());
        }
        let mut matches = Vec::new();
        for entry in runs.range(id..).map_err(|e| self.err(e))? {
            let (key, _) = entry.map_err(|e| self.err(e))?;
            let key = key.value();
            if !key.starts_with(id) || matches.len() == 5 {
                break;
            }
            matches.push(key.to_string());
        }
        match matches.len() {
            0 => Err(JournalError::NoSuchRun(id.to_string())),
            1 => Ok(matches.remove(0)),
            _ => Err(JournalError::AmbiguousRunId {
                prefix: id.to_string(),
                matches,
            }),
        }
    }

    /// Every run, oldest first.
    ///
    /// # Errors
    /// redb or decoding errors.
    pub fn runs(&self) -> Result<Vec<RunMeta>, JournalError> {
        self.runs_where(|_| true)
    }

    /// The runs whose summary `keep` accepts, oldest first, holding only those (the
    /// runs awaiting review, say, out of every run the journal holds).
    ///
    /// # Errors
    /// redb or decoding errors.
    pub fn runs_where(
        &self,
        keep: impl Fn(&RunMeta) -> bool,
    ) -> Result<Vec<RunMeta>, JournalError> {
        let mut out = Vec::new();
        self.each_run(&mut |meta| {
            if keep(&meta) {
                out.push(meta);
            }
        })?;
        out.sort_by(|a, b| (a.created_ms, &a.run_id).cmp(&(b.created_ms, &b.run_id)));
        Ok(out)
    }

    /// Every run's summary, handed to `each` one at a time in the order of their ids
    /// (not held together).
    ///
    /// # Errors
    /// redb or decoding errors.
    pub fn each_run(&self, each: &mut dyn FnMut(RunMeta)) -> Result<(), JournalError> {
        self.each_row(|_, meta| {
            each(meta?);
            Ok(())
        })
    }

    /// Every run's id, oldest first, as [`Journal::runs`] lists them, without holding
    /// every summary: what an operation over the whole population walks.
    ///
    /// # Errors
    /// redb or decoding errors.
    pub fn run_ids(&self) -> Result<Vec<String>, JournalError> {
        Ok(self.run_keys()?.into_iter().map(|(_, id)| id).collect())
    }

    /// [`Journal::run_ids`], each with the key its summary is stored under (another, in a
    /// journal whose summary was moved: the audit reports it), to read it again by.
    pub(crate) fn run_keys(&self) -> Result<Vec<(String, String)>, JournalError> {
        let mut out = Vec::new();
        self.each_row(|key, meta| {
            let meta = meta?;
            out.push((meta.created_ms, meta.run_id, key.to_string()));
            Ok(())
        })?;
        out.sort();
        Ok(out.into_iter().map(|(_, id, key)| (key, id)).collect())
    }

    /// Every key of the `runs` table, oldest first (by the time its summary says the run
    /// was created, 0 for a summary that does not decode, then by key): the order in
    /// which the audit reads the summaries again, one at a time.
    pub(super) fn run_keys_by_age(&self) -> Result<Vec<String>, JournalError> {
        let mut out = Vec::new();
        self.each_row(|key, meta| {
            out.push((meta.map_or(0, |meta| meta.created_ms), key.to_string()));
            Ok(())
        })?;
        out.sort();
        Ok(out.into_iter().map(|(_, id)| id).collect())
    }

    /// Every row of the `runs` table as stored: its key and its summary, or why the
    /// summary does not decode. The audit checks that each key is the run id its
    /// summary names.
    ///
    /// # Errors
    /// redb errors.
    pub fn run_rows(&self) -> Result<Vec<RunRow>, JournalError> {
        let mut out = Vec::new();
        self.each_row(|key, meta| {
            out.push((key.to_string(), meta));
            Ok(())
        })?;
        Ok(out)
    }

    /// Every row of the `runs` table, one at a time: its key and its summary decoded, or
    /// why it does not decode. `each` ends the walk by returning an error.
    fn each_row(
        &self,
        mut each: impl FnMut(&str, Result<RunMeta, JournalError>) -> Result<(), JournalError>,
    ) -> Result<(), JournalError> {
        let tx = self.read()?;
        let runs = tx.open_table(RUNS).map_err(|e| self.err(e))?;
        for entry in runs.iter().map_err(|e| self.err(e))? {
            let (key, value) = entry.map_err(|e| self.err(e))?;
            each(key.value(), self.decode_meta(key.value(), value.value()))?;
        }
        Ok(())
    }

    /// Every record of a run with its digest (stored beside it up to format 4, computed
    /// from the row since), in order.
    ///
    /// # Errors
    /// redb or decoding errors.
    pub fn stored_records(&self, run_id: &str) -> Result<Vec<(Record, Digest)>, JournalError> {
        let rows = self.read_rows(run_id)?;
        match rows.broken {
            None => Ok(rows.records),
            Some((index, message)) => Err(JournalError::Corrupt {
                path: self.path.clone(),
                what: format!("the records of run {run_id} from record {index}"),
                message,
            }),
        }
    }

    /// A run's records as far as its rows decode: every record before the first row that
    /// does not (see [`record::decode_row`]), and that row's key and what is wrong with it.
    pub(super) fn read_rows(&self, run_id: &str) -> Result<Rows, JournalError> {
        let tx = self.read()?;
        let table = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
        let mut rows = Rows::default();
        for entry in table
            .range((run_id, 0)..=(run_id, u64::MAX))
            .map_err(|e| self.err(e))?
        {
            let (key, value) = entry.map_err(|e| self.err(e))?;
            let (_, index) = key.value();
            let before = rows
                .records
                .last()
                .map_or(Digest::ZERO, |(_, digest)| *digest);
            match record::decode_row(index, value.value(), before) {
                Ok(row) => {
                    rows.records.extend(row.records);
                    rows.links.extend(row.link);
                }
                Err(message) => {
                    rows.broken = Some((index, message));
                    break;
                }
            }
        }
        Ok(rows)
    }

    /// The run ids the records table holds rows for, each once: one lookup per run,
    /// skipping over its rows.
    pub(super) fn record_run_ids(&self) -> Result<Vec<String>, JournalError> {
        let tx = self.read()?;
        let records = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
        let mut ids: Vec<String> = Vec::new();
        loop {
            let next = match ids.last() {
                None => records.first(),
                Some(last) => records
                    .range::<(&str, u64)>((
                        std::ops::Bound::Excluded((last.as_str(), u64::MAX)),
                        std::ops::Bound::Unbounded,
                    ))
                    .and_then(|mut rows| rows.next().transpose()),
            }
            .map_err(|e| self.err(e))?;
            let Some((key, _)) = next else {
                return Ok(ids);
            };
            let id = key.value().0.to_string();
            // Keys come in order: one that does not (a damaged tree) would be found again
            // and again.
            if ids.last().is_some_and(|last| id <= *last) {
                return Err(JournalError::Damaged {
                    path: self.path.clone(),
                    message: format!("the records table is out of order at run id {id:?}"),
                });
            }
            ids.push(id);
        }
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
}

/// The summary of a new run `run_id` of nothing in particular, for tests.
#[cfg(test)]
pub(crate) fn test_meta(run_id: &str) -> RunMeta {
    RunMeta {
        run_id: run_id.into(),
        agent: Digest::ZERO,
        policy: Digest::ZERO,
        policy_text: Digest::ZERO,
        policy_name: "p".into(),
        policy_version: "1".into(),
        bindings: Digest::ZERO,
        bindings_path: None,
        input: Digest::ZERO,
        parent: None,
        created_ms: 0,
        updated_ms: 0,
        records: 0,
        head: Digest::ZERO,
        last_checkpoint: None,
        outcome: crate::outcome::Outcome {
            status: crate::outcome::Status::Running,
            state: "s".into(),
            output: None,
            reason: None,
            steps: 0,
            host_calls: 0,
            fuel: 0,
        },
    }
}

#[cfg(test)]
mod attack_group_tests;
#[cfg(test)]
mod attack_log_tests;
#[cfg(test)]
mod attack_rows_tests;
#[cfg(test)]
mod tests;
