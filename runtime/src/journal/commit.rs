//! Commits, grouped: every step boundary of every run is one durable write, and the
//! writes of runs that reach a boundary at the same time share one redb transaction and
//! one fsync.
//!
//! Upholds invariant 4 (write-ahead) unchanged: [`Journal::commit`] returns only once its
//! records are durable, so no step is reported, and no effect of the next step runs,
//! before its commit is on disk. A thread that finds no write in progress writes whatever
//! is queued (its own commit, and those that arrived while the previous write was
//! syncing) in one transaction; the others wait for it. A single run sees exactly one
//! transaction per commit, as before. If any commit of a group fails, the group is
//! written again one commit per transaction, so that each gets its own result.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};

use redb::ReadableTable;

use super::log::LogEntry;
use super::record::{RecordRow, StoredMetaRef};
use super::{
    BLOBS, Bodies, CHECKPOINTS, Checkpoint, Journal, JournalError, PAGES, RECORDS, RUNS,
    RecordBody, RunMeta, Stored, encode, kind, now_ms,
};
use crate::checkpoint::page_store;
use crate::digest::Digest;

/// One atomic write: a step's worth of journal.
#[derive(Debug, Default)]
pub struct Commit {
    /// Creates the run with this metadata in the same transaction (the first commit).
    pub create: Option<RunMeta>,
    /// Records to append (chained by the journal), encoded.
    pub records: Bodies,
    /// Content-addressed blobs (module, policy text, input) to store if absent.
    pub blobs: Vec<(Digest, std::sync::Arc<[u8]>)>,
    /// Memory pages to store if absent.
    pub pages: Vec<crate::checkpoint::ChangedPage>,
    /// The checkpoint taken at this boundary.
    pub checkpoint: Option<Checkpoint>,
    /// The run's progress after this commit, for its summary (an `Outcome` record sets
    /// the summary's outcome itself).
    pub progress: Option<Progress>,
}

/// A run's progress as its summary records it between outcomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The state it stands in.
    pub state: String,
    /// Steps run.
    pub steps: u32,
    /// Host calls made.
    pub host_calls: u32,
    /// Fuel used.
    pub fuel: u64,
    /// The run is in progress again (a review decision moved it on): its status becomes
    /// running, and its output and failure reason are cleared.
    pub reopened: bool,
}

/// Commits waiting to be written, and the results of those written.
#[derive(Debug, Default)]
pub(super) struct Group {
    state: Mutex<GroupState>,
    written: Condvar,
    /// Commits made and durable transactions written by this handle: the fsyncs a
    /// commit costs, for the benchmarks and `warden batch`.
    commits: std::sync::atomic::AtomicU64,
    transactions: std::sync::atomic::AtomicU64,
}

/// A commit waiting for its transaction, its new pages already packed (compressed or
/// stored as differences) by the thread that made it, outside the group's write.
#[derive(Debug)]
struct Queued {
    ticket: u64,
    run_id: String,
    commit: Commit,
    /// For each page of `commit.pages`: what to store, or `None` if it was already stored
    /// when the commit was queued (pages are never removed).
    packed: Vec<Option<Vec<u8>>>,
}

#[derive(Debug, Default)]
struct GroupState {
    next_ticket: u64,
    queue: Vec<Queued>,
    writing: bool,
    results: HashMap<u64, Result<RunMeta, JournalError>>,
}

/// The tables a commit writes, opened once per transaction.
struct Tables<'t> {
    runs: redb::Table<'t, &'static str, &'static [u8]>,
    records: redb::Table<'t, (&'static str, u64), &'static [u8]>,
    blobs: redb::Table<'t, &'static [u8; 32], &'static [u8]>,
    pages: redb::Table<'t, &'static [u8; 32], &'static [u8]>,
    checkpoints: redb::Table<'t, (&'static str, u32), &'static [u8]>,
}

impl<'t> Tables<'t> {
    fn open(journal: &Journal, tx: &'t redb::WriteTransaction) -> Result<Self, JournalError> {
        let err = |e| journal.err(e);
        Ok(Tables {
            runs: tx.open_table(RUNS).map_err(err)?,
            records: tx.open_table(RECORDS).map_err(err)?,
            blobs: tx.open_table(BLOBS).map_err(err)?,
            pages: tx.open_table(PAGES).map_err(err)?,
            checkpoints: tx.open_table(CHECKPOINTS).map_err(err)?,
        })
    }
}

impl Journal {
    /// Appends a step's worth of records, blobs, pages and a checkpoint (creating the run
    /// first if `commit.create` says so), and updates the run's summary, durably. Commits
    /// made at the same moment from several threads share one transaction and one fsync;
    /// each returns only when its own records are on disk. Returns the new summary.
    ///
    /// # Errors
    /// [`JournalError::NoSuchRun`], [`JournalError::RunExists`], redb errors. Nothing of
    /// this commit is written unless all of it is.
    pub fn commit(&self, run_id: &str, commit: Commit) -> Result<RunMeta, JournalError> {
        let lock = |e: std::sync::PoisonError<_>| -> JournalError {
            drop(e);
            JournalError::Log {
                path: self.path.clone(),
                message: "a thread writing the journal panicked".into(),
            }
        };
        // Compressing pages (zstd) is done here, by every committing thread at once, so
        // that the group's write, one thread at a time, only stores the bytes.
        let packed = self.pack_pages(&commit.pages)?;
        let mut state = self.group.state.lock().map_err(lock)?;
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.queue.push(Queued {
            ticket,
            run_id: run_id.to_string(),
            commit,
            packed,
        });
        loop {
            if let Some(result) = state.results.remove(&ticket) {
                return result;
            }
            if state.writing {
                state = self.group.written.wait(state).map_err(lock)?;
                continue;
            }
            state.writing = true;
            let group = std::mem::take(&mut state.queue);
            drop(state);
            let results = self.write_group(&group);
            state = self.group.state.lock().map_err(lock)?;
            state.writing = false;
            state.results.extend(results);
            self.group.written.notify_all();
        }
    }

    /// The commits made through this handle, and the durable transactions (fsyncs) they
    /// took: with concurrent writers, fewer transactions than commits.
    pub fn commit_stats(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.group.commits.load(Relaxed),
            self.group.transactions.load(Relaxed),
        )
    }

    /// What to store for each of `pages`: its packed form, or `None` for a page already
    /// stored. Reads the journal as it is now; a base page stored since is not used.
    fn pack_pages(
        &self,
        pages: &[crate::checkpoint::ChangedPage],
    ) -> Result<Vec<Option<Vec<u8>>>, JournalError> {
        if pages.is_empty() {
            return Ok(Vec::new());
        }
        let tx = self.read()?;
        let stored = tx.open_table(PAGES).map_err(|e| self.err(e))?;
        pages
            .iter()
            .map(|page| {
                if stored
                    .get(&page.digest.0)
                    .map_err(|e| self.err(e))?
                    .is_some()
                {
                    return Ok(None);
                }
                // A page is stored as its difference from the page it replaced when that
                // one is stored and its chain of differences is short.
                let base = match &page.base {
                    Some((digest, difference)) => stored
                        .get(&digest.0)
                        .map_err(|e| self.err(e))?
                        .and_then(|stored| page_store::depth(stored.value()))
                        .map(|depth| (*digest, difference, depth)),
                    None => None,
                };
                Ok(Some(page_store::pack(&page.bytes, base)))
            })
            .collect()
    }

    /// Writes `group` in one transaction; if that fails, each commit in a transaction of
    /// its own.
    fn write_group(&self, group: &[Queued]) -> Vec<(u64, Result<RunMeta, JournalError>)> {
        if group.len() > 1
            && let Ok(metas) = self.write_all(group)
        {
            return group
                .iter()
                .map(|queued| queued.ticket)
                .zip(metas.into_iter().map(Ok))
                .collect();
        }
        group
            .iter()
            .map(|queued| {
                let result = self
                    .write_all(std::slice::from_ref(queued))
                    .map(|mut metas| metas.remove(0));
                (queued.ticket, result)
            })
            .collect()
    }

    /// Applies every commit in one transaction, signs the log's new tree head once, and
    /// makes it durable.
    fn write_all(&self, commits: &[Queued]) -> Result<Vec<RunMeta>, JournalError> {
        let tx = self.write()?;
        let mut metas = Vec::new();
        let mut at_ms = 0;
        let mut tables = Tables::open(self, &tx)?;
        let mut log = self.log_tables(&tx)?;
        for queued in commits {
            let run_id = queued.run_id.as_str();
            at_ms = now_ms();
            let meta = self.apply(&mut tables, queued, at_ms)?;
            self.append_log(
                &mut log,
                LogEntry {
                    run_id: run_id.to_string(),
                    records: meta.records,
                    head: meta.head,
                    digests: Vec::new(),
                    at_ms,
                    signature: None,
                },
            )?;
            metas.push(meta);
        }
        drop(tables);
        let signed = self.sign_log_head(&tx, log, at_ms)?;
        tx.commit().map_err(|e| self.err(e))?;
        self.keep_head(signed);
        use std::sync::atomic::Ordering::Relaxed;
        self.group.transactions.fetch_add(1, Relaxed);
        self.group.commits.fetch_add(metas.len() as u64, Relaxed);
        Ok(metas)
    }

    /// Writes one commit into `tx`; returns the run's new summary.
    fn apply(
        &self,
        tables: &mut Tables<'_>,
        queued: &Queued,
        at_ms: u64,
    ) -> Result<RunMeta, JournalError> {
        let (run_id, commit) = (queued.run_id.as_str(), &queued.commit);
        let existing = tables
            .runs
            .get(run_id)
            .map_err(|e| self.err(e))?
            .map(|v| v.value().to_vec());
        let mut meta: RunMeta = match (existing, &commit.create) {
            (Some(_), Some(_)) => return Err(JournalError::RunExists(run_id.to_string())),
            // A run's creation time is its first commit's, the time of record 0.
            (None, Some(meta)) => RunMeta {
                created_ms: at_ms,
                ..meta.clone()
            },
            (Some(bytes), None) => self.decode_meta(run_id, &bytes)?,
            (None, None) => return Err(JournalError::NoSuchRun(run_id.to_string())),
        };
        // An ended run is final: checked here, in the one writer, so that two decisions
        // racing for one run awaiting review cannot both be recorded.
        let status = meta.status();
        if matches!(
            status,
            crate::outcome::Status::Completed | crate::outcome::Status::Failed
        ) {
            return Err(JournalError::RunEnded {
                run_id: run_id.to_string(),
                status: status.as_str(),
            });
        }
        if let Some(progress) = &commit.progress {
            let outcome = &mut meta.outcome;
            outcome.state.clone_from(&progress.state);
            outcome.steps = progress.steps;
            outcome.host_calls = progress.host_calls;
            outcome.fuel = progress.fuel;
            if progress.reopened {
                outcome.status = crate::outcome::Status::Running;
                outcome.output = None;
                outcome.reason = None;
            }
        }
        // The summary of an ended run is its Outcome record, field for field, so the two
        // can never disagree (verification checks that they don't).
        if let Some(RecordBody::Outcome(outcome)) =
            commit.records.of_kinds(&[kind::OUTCOME]).next_back()
        {
            meta.outcome = *outcome;
        }
        // The commit's records are one row, under the index of its first record; its
        // digest is the run's new head.
        if !commit.records.is_empty() {
            let row = RecordRow::encode(&commit.records, meta.records, meta.head, at_ms);
            tables
                .records
                .insert((run_id, meta.records), row.bytes())
                .map_err(|e| self.err(e))?;
            meta.records += commit.records.len() as u64;
            meta.head = row.head;
        }
        for (digest, bytes) in &commit.blobs {
            if tables
                .blobs
                .get(&digest.0)
                .map_err(|e| self.err(e))?
                .is_none()
            {
                tables
                    .blobs
                    .insert(&digest.0, &bytes[..])
                    .map_err(|e| self.err(e))?;
            }
        }
        for (page, packed) in commit.pages.iter().zip(&queued.packed) {
            let Some(packed) = packed else { continue };
            if tables
                .pages
                .get(&page.digest.0)
                .map_err(|e| self.err(e))?
                .is_none()
            {
                tables
                    .pages
                    .insert(&page.digest.0, packed.as_slice())
                    .map_err(|e| self.err(e))?;
            }
        }
        if let Some(checkpoint) = &commit.checkpoint {
            tables
                .checkpoints
                .insert(
                    (run_id, checkpoint.step),
                    encode(&Stored::V1(checkpoint)).as_slice(),
                )
                .map_err(|e| self.err(e))?;
            meta.last_checkpoint = Some(checkpoint.step);
        }
        meta.updated_ms = at_ms;
        tables
            .runs
            .insert(run_id, encode(&StoredMetaRef::V2(&meta)).as_slice())
            .map_err(|e| self.err(e))?;
        Ok(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(step: u32) -> Commit {
        Commit {
            records: vec![RecordBody::StepStarted {
                step,
                state: "s".into(),
            }]
            .into(),
            ..Commit::default()
        }
    }

    /// Many threads committing at once: every commit lands, each run's records in
    /// order with a chain that checks out, in fewer transactions than commits; and a
    /// commit that fails (a run that does not exist) fails alone.
    #[test]
    fn concurrent_commits_share_transactions_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let journal = Journal::open(&dir.path().join("j.redb")).unwrap_or_else(|e| panic!("{e}"));
        let threads = 8;
        let steps = 25;
        std::thread::scope(|scope| {
            for t in 0..threads {
                let journal = &journal;
                scope.spawn(move || {
                    let run_id = format!("run-{t}");
                    let first = Commit {
                        create: Some(super::super::test_meta(&run_id)),
                        ..step(0)
                    };
                    journal
                        .commit(&run_id, first)
                        .unwrap_or_else(|e| panic!("{e}"));
                    for s in 1..steps {
                        journal
                            .commit(&run_id, step(s))
                            .unwrap_or_else(|e| panic!("{e}"));
                        if s == 10 {
                            assert!(matches!(
                                journal.commit("no-such-run", step(0)),
                                Err(JournalError::NoSuchRun(_))
                            ));
                        }
                    }
                });
            }
        });
        for t in 0..threads {
            let run_id = format!("run-{t}");
            let run = journal.run(&run_id).unwrap_or_else(|e| panic!("{e}"));
            let rows = journal.read_rows(&run_id).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                super::super::verify::chain_problem(&run, &rows.records, &rows.links),
                None
            );
            assert_eq!(run.records, u64::from(steps));
            let records = journal.records(&run_id).unwrap_or_else(|e| panic!("{e}"));
            for (index, record) in records.iter().enumerate() {
                assert!(
                    matches!(record.body, RecordBody::StepStarted { step, .. } if step as usize == index)
                );
            }
        }
        let (commits, transactions) = journal.commit_stats();
        assert_eq!(commits, u64::from(threads * steps));
        assert!(transactions <= commits);
        // The log holds every commit, and its tree is whole.
        let audit = journal.audit(None).unwrap_or_else(|e| panic!("{e}"));
        assert!(audit.log.problems.is_empty(), "{:?}", audit.log.problems);
        assert_eq!(audit.log.entries, commits);
    }
}
