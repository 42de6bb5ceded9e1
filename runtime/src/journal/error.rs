//! Why the journal could not be read or written, and which of redb's errors say that the
//! file itself is damaged.

use std::path::{Path, PathBuf};

use super::FORMAT_VERSION;

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
    /// The storage engine found the file damaged where it reads (truncated, not a redb
    /// file, a page that does not check out): nothing in it can be vouched for.
    #[error(
        "journal file {path} is damaged: the storage engine cannot read it ({message}); `warden verify` says what can be trusted; restore the file from a copy"
    )]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// The storage engine's account of the damage.
        message: String,
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
    /// The transparency log could not be read or extended.
    #[error("journal {path}: transparency log: {message}")]
    Log {
        /// The database file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// An evidence pack could not be written or is not one.
    #[error("evidence pack {path}: {message}")]
    Pack {
        /// The pack file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A signed write was refused because the log it would extend was altered since the
    /// last signed write (or is not the one this key last signed for the journal).
    #[error("journal {path}: transparency log: {message}")]
    LogAltered {
        /// The database file.
        path: PathBuf,
        /// What does not check out, and what to do.
        message: String,
    },
    /// A run does not verify, so the operation that vouches for it was refused.
    #[error("run {run_id} does not verify: {problem}")]
    Broken {
        /// The run.
        run_id: String,
        /// Its first problem.
        problem: String,
    },
    /// There is no journal file to read.
    #[error("there is no journal at {path} (set --db or WARDEN_DB, or start a run first)")]
    Missing {
        /// The database file.
        path: PathBuf,
    },
    /// A write was attempted on a journal opened read-only.
    #[error("journal {path} was opened read-only; this command needs to write to it")]
    ReadOnly {
        /// The database file.
        path: PathBuf,
    },
    /// No run has this id.
    #[error("no run `{0}` in this journal (see `warden runs`)")]
    NoSuchRun(String),
    /// A shortened run id is the start of several runs' ids.
    #[error("run id `{prefix}` is ambiguous: it matches {}; give more of the id", matches.join(", "))]
    AmbiguousRunId {
        /// The id as given.
        prefix: String,
        /// The ids it starts (the first few).
        matches: Vec<String>,
    },
    /// A run id is already taken.
    #[error("run `{0}` already exists in this journal; start the run again for a fresh id")]
    RunExists(String),
    /// A commit to a run that has ended: nothing is added to a completed or failed run.
    #[error("run `{run_id}` has ended ({status}): nothing more can be recorded in it")]
    RunEnded {
        /// The run.
        run_id: String,
        /// Its status, completed or failed.
        status: &'static str,
    },
}

pub(super) fn open_error(path: &Path, e: redb::DatabaseError) -> JournalError {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => JournalError::InUse {
            path: path.to_path_buf(),
        },
        other => storage_error(path, other.into()),
    }
}

/// redb's error, as [`JournalError::Damaged`] where it says the file's bytes are wrong (a
/// page that does not check out, a file cut short or that is no redb file); any other
/// (a failing disk, a full file system, permissions) stays [`JournalError::Database`].
pub(super) fn storage_error(path: &Path, e: redb::Error) -> JournalError {
    let damaged = match &e {
        // A table of another type or kind than Warden writes is a crafted file; every
        // journal Warden wrote is of redb's current file format, so one that claims an
        // older format was altered; and every journal holds the tables it creates when
        // it is made (the ones that may be missing are looked for, never required).
        redb::Error::Corrupted(_)
        | redb::Error::TableDoesNotExist(_)
        | redb::Error::UpgradeRequired(_)
        | redb::Error::TableTypeMismatch { .. }
        | redb::Error::TypeDefinitionChanged { .. }
        | redb::Error::TableIsMultimap(_)
        | redb::Error::TableIsNotMultimap(_) => true,
        redb::Error::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
        ),
        _ => false,
    };
    if damaged {
        return JournalError::Damaged {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
    }
    JournalError::Database {
        path: path.to_path_buf(),
        source: e,
    }
}
