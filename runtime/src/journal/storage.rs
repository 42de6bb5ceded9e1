//! What the journal stores beside the records: blobs, memory pages and checkpoints, and
//! the sizes of every table ([`Storage`]).

use redb::{ReadableTable, ReadableTableMetadata};
use serde::Serialize;

use super::{BLOBS, CHECKPOINTS, Journal, JournalError, PAGES, RECORDS, RUNS, RecordBody, log};
use crate::checkpoint::Checkpoint;
use crate::digest::Digest;

/// What a journal holds ([`Journal::storage`]): counts and the bytes of stored values.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Storage {
    /// Runs.
    pub runs: u64,
    /// Records, and their stored bytes.
    pub records: u64,
    /// Bytes of all records as stored.
    pub record_bytes: u64,
    /// Bytes of modules, policy texts, inputs and model cards.
    pub blob_bytes: u64,
    /// Checkpoints, and their stored bytes (page lists, globals).
    pub checkpoints: u64,
    /// Bytes of all checkpoints.
    pub checkpoint_bytes: u64,
    /// Distinct memory pages (shared by every run).
    pub pages: u64,
    /// Their bytes as stored (compressed).
    pub page_bytes: u64,
    /// Their bytes uncompressed.
    pub page_bytes_raw: u64,
    /// Transparency log entries, and their bytes.
    pub log_entries: u64,
    /// Bytes of all log entries.
    pub log_bytes: u64,
    /// The file's size on disk (redb allocates ahead and reuses freed space).
    pub file_bytes: u64,
}

impl Journal {
    /// The steps of every checkpoint row stored for a run.
    ///
    /// # Errors
    /// redb errors.
    pub(crate) fn checkpoint_steps(&self, run_id: &str) -> Result<Vec<u32>, JournalError> {
        let tx = self.read()?;
        let table = tx.open_table(CHECKPOINTS).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for entry in table
            .range((run_id, 0)..=(run_id, u32::MAX))
            .map_err(|e| self.err(e))?
        {
            let (key, _) = entry.map_err(|e| self.err(e))?;
            out.push(key.value().1);
        }
        Ok(out)
    }

    /// A stored blob (module bytes, policy text, input).
    ///
    /// # Errors
    /// redb errors.
    pub fn blob(&self, digest: &Digest) -> Result<Option<Vec<u8>>, JournalError> {
        let tx = self.read()?;
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
        let tx = self.read()?;
        let pages = tx.open_table(PAGES).map_err(|e| self.err(e))?;
        let Some(stored) = pages.get(&digest.0).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        let stored = stored.value().to_vec();
        crate::checkpoint::page_store::unpack(&stored, |base| {
            Ok(pages
                .get(&base.0)
                .map_err(|e| e.to_string())?
                .map(|v| v.value().to_vec()))
        })
        .map(Some)
        .map_err(|message| JournalError::Corrupt {
            path: self.path.clone(),
            what: format!("memory page {}", digest.short()),
            message,
        })
    }

    /// What the journal holds, table by table: what an operator sizes storage by, and
    /// what the benchmarks report as bytes per run.
    ///
    /// # Errors
    /// redb errors.
    pub fn storage(&self) -> Result<Storage, JournalError> {
        let tx = self.read()?;
        let mut storage = Storage {
            runs: tx
                .open_table(RUNS)
                .map_err(|e| self.err(e))?
                .len()
                .map_err(|e| self.err(e))?,
            ..Storage::default()
        };
        let records = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
        for item in records.iter().map_err(|e| self.err(e))? {
            let (key, value) = item.map_err(|e| self.err(e))?;
            let value = value.value();
            // A row holds one record (format 1 to 3) or a commit's records; a row that
            // does not decode counts none (verification reports it).
            storage.records += super::record::decode_row(key.value().1, value, Digest::ZERO)
                .map_or(0, |row| row.records.len() as u64);
            storage.record_bytes += value.len() as u64;
        }
        let blobs = tx.open_table(BLOBS).map_err(|e| self.err(e))?;
        for item in blobs.iter().map_err(|e| self.err(e))? {
            let (_, value) = item.map_err(|e| self.err(e))?;
            storage.blob_bytes += value.value().len() as u64;
        }
        let checkpoints = tx.open_table(CHECKPOINTS).map_err(|e| self.err(e))?;
        for item in checkpoints.iter().map_err(|e| self.err(e))? {
            let (_, value) = item.map_err(|e| self.err(e))?;
            storage.checkpoints += 1;
            storage.checkpoint_bytes += value.value().len() as u64;
        }
        let pages = tx.open_table(PAGES).map_err(|e| self.err(e))?;
        for item in pages.iter().map_err(|e| self.err(e))? {
            let (_, value) = item.map_err(|e| self.err(e))?;
            storage.pages += 1;
            storage.page_bytes += value.value().len() as u64;
        }
        storage.page_bytes_raw = storage.pages * crate::checkpoint::PAGE_SIZE as u64;
        if let Ok(leaves) = tx.open_table(log::LOG_LEAVES) {
            for item in leaves.iter().map_err(|e| self.err(e))? {
                let (_, value) = item.map_err(|e| self.err(e))?;
                storage.log_entries += 1;
                storage.log_bytes += value.value().len() as u64;
            }
        }
        storage.file_bytes = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        Ok(storage)
    }

    /// Number of runs (rows of table `runs`).
    ///
    /// # Errors
    /// redb errors.
    pub fn run_count(&self) -> Result<u64, JournalError> {
        let tx = self.read()?;
        let runs = tx.open_table(RUNS).map_err(|e| self.err(e))?;
        runs.len().map_err(|e| self.err(e))
    }

    /// Number of distinct memory pages stored (shared by all runs).
    ///
    /// # Errors
    /// redb errors.
    pub fn page_count(&self) -> Result<u64, JournalError> {
        let tx = self.read()?;
        let pages = tx.open_table(PAGES).map_err(|e| self.err(e))?;
        pages.len().map_err(|e| self.err(e))
    }

    /// The checkpoint taken at the end of `step`, only if the run's own chained records
    /// name it (a `Checkpoint` record for that step with the checkpoint's digest): what
    /// fork, resume, review and replay restore. A checkpoint row no record names (planted
    /// in the file) is never restored.
    ///
    /// # Errors
    /// redb or decoding errors.
    pub fn recorded_checkpoint(
        &self,
        run_id: &str,
        step: u32,
    ) -> Result<Option<Checkpoint>, JournalError> {
        let recorded = self
            .records(run_id)?
            .into_iter()
            .find_map(|r| match r.body {
                RecordBody::Checkpoint { step: s, digest } if s == step => Some(digest),
                _ => None,
            });
        let Some(digest) = recorded else {
            return Ok(None);
        };
        Ok(self
            .checkpoint(run_id, step)?
            .filter(|checkpoint| checkpoint.digest() == digest))
    }

    /// The checkpoint row stored for the end of `step` (0: right after instantiation),
    /// whether or not a record names it; [`Journal::recorded_checkpoint`] is what may be
    /// restored.
    ///
    /// # Errors
    /// redb or decoding errors.
    pub fn checkpoint(&self, run_id: &str, step: u32) -> Result<Option<Checkpoint>, JournalError> {
        let tx = self.read()?;
        let table = tx.open_table(CHECKPOINTS).map_err(|e| self.err(e))?;
        match table.get((run_id, step)).map_err(|e| self.err(e))? {
            Some(bytes) => Ok(Some(
                self.decode(format!("checkpoint {step} of run {run_id}"), bytes.value())?,
            )),
            None => Ok(None),
        }
    }
}
