//! The `files` tool provider: a directory the agent reads, and writes only if the
//! operator granted it, through a cap-std capability for that directory.
//!
//! Invariant: every path the agent sends is resolved inside the tool's directory by
//! [`cap_std::fs::Dir`], never by the process's own authority. A path that is absolute,
//! climbs out with `..` or leads through a symlink to somewhere else is refused before
//! anything is read or written, as a call error naming the path (the agent's answer, and
//! so recorded in the journal). The directory itself is confined to the bindings file's
//! directory like every file a binding names ([`crate::confine`]).
//!
//! Invariant: a write is an effect, applied once per idempotency key (invariant 4). With
//! `write = true` the binding names a write log (`file`, in the ledger format): each write
//! is first recorded there under `<run_id>/<call_seq>` with the path, length and blake3 of
//! the content, synced, and only then made, as a whole-file replacement (a temporary file
//! in the same directory, synced, renamed over the target, the directory synced). So a
//! step re-run after a crash (`warden resume`) that repeats a write under the same key
//! with the same content writes the same bytes again (a no-op for the file, whether or not
//! the first attempt reached it); one that repeats it with *other* content (say, it read
//! what its first attempt wrote and computed something new) is refused, naming the key,
//! so no write is ever applied twice with different effects. Reads are not effects.
//!
//! A read answers the file's text (UTF-8, at most `max_read_bytes`); a listing, a
//! directory's entries; every answer is journaled, so replay needs no directory.
//!
//! ```toml
//! [tools.documents]
//! provider = "files"
//! dir = "documents"                 # relative to the bindings file's directory
//! write = true                      # default false: read and list only
//! file = "documents.writes.jsonl"   # the write log, required with write = true
//! max_read_bytes = 1048576
//! max_write_bytes = 1048576
//! ```

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use cap_std::fs::Dir;
use serde::Deserialize;
use serde_json::{Value, json};
use warden_guest::{CallError, CallErrorKind};

use super::ledger::Ledger;
use super::{IdempotencyKey, Tool, call_error};
use crate::confine::{Confinement, OutsideReason, Refused, lexically_outside};

mod load;

pub(in crate::bindings) use load::check_written_dirs;

/// The settings of a `files` tool (beside `file`, its write log).
pub(super) const FIELDS: &[&str] = &["dir", "write", "max_read_bytes", "max_write_bytes"];

/// Default `max_read_bytes`: 1 MiB.
const DEFAULT_MAX_READ_BYTES: u64 = 1 << 20;
/// Default `max_write_bytes`: 1 MiB.
const DEFAULT_MAX_WRITE_BYTES: u64 = 1 << 20;
/// The largest `max_read_bytes` and `max_write_bytes`: 64 MiB.
const MAX_BYTES: u64 = 64 << 20;
/// The most entries a listing answers.
const MAX_LIST_ENTRIES: usize = 10_000;

/// A directory tool as loaded.
#[derive(Debug)]
pub(super) struct FilesTool {
    name: String,
    dir: Confinement,
    write: bool,
    max_read_bytes: u64,
    max_write_bytes: u64,
    log: WriteLog,
}

/// Where a write-granted tool records its writes.
#[derive(Debug)]
enum WriteLog {
    /// Read-only: no log.
    None,
    /// The open log.
    Open(Ledger),
    /// A log that an inspection found missing and did not create: writes are unavailable.
    Unopened(PathBuf),
}

/// A call's arguments.
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum FileRequest {
    /// The text of one file.
    Read { path: String },
    /// The entries of one directory (`.`, the tool's directory, when no path is given).
    List {
        #[serde(default = "here")]
        path: String,
    },
    /// Replace (or create) one file with `content`.
    Write { path: String, content: String },
}

fn here() -> String {
    ".".to_string()
}

impl FilesTool {
    /// The tool with its write log (a [`Tool::Ledger`], or [`Tool::Unopened`] when an
    /// inspection found it missing).
    pub(super) fn with_log(mut self, log: Tool) -> FilesTool {
        self.log = match log {
            Tool::Ledger(ledger) => WriteLog::Open(ledger),
            Tool::Unopened { path } => WriteLog::Unopened(path),
            _ => WriteLog::None,
        };
        self
    }

    /// Whether the tool may write: then it is an effect.
    pub(super) fn is_effect(&self) -> bool {
        self.write
    }

    /// Answers one request.
    pub(super) fn call(&self, args_json: &str, key: &IdempotencyKey) -> Result<String, CallError> {
        let request: FileRequest = serde_json::from_str(args_json).map_err(|e| {
            self.error(
                CallErrorKind::InvalidArguments,
                format!(
                    "arguments must be {{\"op\": \"read\" | \"list\" | \"write\", \"path\": \"...\"}} (and \"content\" to write): {e}"
                ),
            )
        })?;
        match request {
            FileRequest::Read { path } => self.read(&path),
            FileRequest::List { path } => self.list(&path),
            FileRequest::Write { path, content } => self.write(&path, &content, key),
        }
    }

    fn handle(&self, op: &str, path: &str) -> Result<&Dir, CallError> {
        if let Some(reason) = lexically_outside(Path::new(path)) {
            return Err(self.outside(op, path, &reason));
        }
        self.dir.handle().ok_or_else(|| {
            self.error(
                CallErrorKind::Unavailable,
                format!("{op} {path:?}: the directory is not confined"),
            )
        })
    }

    fn read(&self, path: &str) -> Result<String, CallError> {
        let handle = self.handle("read", path)?;
        let metadata = handle
            .metadata(path)
            .map_err(|e| self.io_error("read", path, e))?;
        if metadata.is_dir() {
            return Err(self.error(
                CallErrorKind::InvalidArguments,
                format!("read {path:?}: it is a directory; list it with {{\"op\": \"list\", \"path\": {path:?}}}"),
            ));
        }
        if !metadata.is_file() {
            return Err(self.error(
                CallErrorKind::InvalidArguments,
                format!("read {path:?}: it is not a regular file"),
            ));
        }
        let too_big = |size: u64| {
            self.error(
                CallErrorKind::Unavailable,
                format!(
                    "read {path:?}: the file is {size} bytes, more than max_read_bytes ({} bytes)",
                    self.max_read_bytes
                ),
            )
        };
        if metadata.len() > self.max_read_bytes {
            return Err(too_big(metadata.len()));
        }
        let Some((file, size)) =
            open_regular(handle, path).map_err(|e| self.io_error("read", path, e))?
        else {
            return Err(self.error(
                CallErrorKind::InvalidArguments,
                format!("read {path:?}: it is not a regular file"),
            ));
        };
        if size > self.max_read_bytes {
            return Err(too_big(size));
        }
        let mut bytes = Vec::new();
        // A file that grows between the look and the read is still cut at the limit.
        file.take(self.max_read_bytes + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.io_error("read", path, e))?;
        if bytes.len() as u64 > self.max_read_bytes {
            return Err(too_big(bytes.len() as u64));
        }
        let size = bytes.len();
        let content = String::from_utf8(bytes).map_err(|e| {
            self.error(
                CallErrorKind::InvalidArguments,
                format!(
                    "read {path:?}: the file is not UTF-8 text (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                ),
            )
        })?;
        Ok(json!({"path": path, "bytes": size, "content": content}).to_string())
    }

    fn list(&self, path: &str) -> Result<String, CallError> {
        let handle = self.handle("list", path)?;
        let target = if path.is_empty() { "." } else { path };
        let entries = handle
            .read_dir(target)
            .map_err(|e| self.io_error("list", path, e))?;
        let mut listed = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.io_error("list", path, e))?;
            if listed.len() == MAX_LIST_ENTRIES {
                return Err(self.error(
                    CallErrorKind::Unavailable,
                    format!("list {path:?}: more than {MAX_LIST_ENTRIES} entries"),
                ));
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = entry
                .file_type()
                .map_err(|e| self.io_error("list", path, e))?;
            let item = if kind.is_symlink() {
                json!({"name": name, "kind": "symlink"})
            } else if kind.is_dir() {
                json!({"name": name, "kind": "directory"})
            } else if kind.is_file() {
                let size = entry
                    .metadata()
                    .map_err(|e| self.io_error("list", path, e))?
                    .len();
                json!({"name": name, "kind": "file", "bytes": size})
            } else {
                json!({"name": name, "kind": "other"})
            };
            listed.push((name, item));
        }
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        let entries: Vec<Value> = listed.into_iter().map(|(_, item)| item).collect();
        let answer = json!({"path": path, "entries": entries}).to_string();
        if answer.len() as u64 > self.max_read_bytes {
            return Err(self.error(
                CallErrorKind::Unavailable,
                format!(
                    "list {path:?}: the listing is {} bytes, more than max_read_bytes ({} bytes)",
                    answer.len(),
                    self.max_read_bytes
                ),
            ));
        }
        Ok(answer)
    }

    fn write(&self, path: &str, content: &str, key: &IdempotencyKey) -> Result<String, CallError> {
        if !self.write {
            return Err(self.error(
                CallErrorKind::InvalidArguments,
                format!(
                    "write {path:?}: writing is not granted (the binding has write = false, the default); only the operator grants it, with write = true and a write log"
                ),
            ));
        }
        let handle = self.handle("write", path)?;
        let relative = Path::new(path);
        let Some(file_name) = relative.file_name().and_then(|n| n.to_str()) else {
            return Err(self.error(
                CallErrorKind::InvalidArguments,
                format!("write {path:?}: the path does not name a file"),
            ));
        };
        if content.len() as u64 > self.max_write_bytes {
            return Err(self.error(
                CallErrorKind::InvalidArguments,
                format!(
                    "write {path:?}: the content is {} bytes, more than max_write_bytes ({} bytes)",
                    content.len(),
                    self.max_write_bytes
                ),
            ));
        }
        let parent = match relative.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        match handle.metadata(parent) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => {
                return Err(self.error(
                    CallErrorKind::InvalidArguments,
                    format!("write {path:?}: {} is not a directory", parent.display()),
                ));
            }
            Err(e) => return Err(self.io_error("write", path, e)),
        }
        if handle.symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
            return Err(self.error(
                CallErrorKind::InvalidArguments,
                format!("write {path:?}: it is a directory"),
            ));
        }
        self.record(path, content, key)?;
        // Named after the key, so that runs writing at once (`warden batch`) never share
        // one, and a re-run after a crash reuses (and truncates) its own.
        let tag = blake3::hash(key.to_string().as_bytes()).to_hex();
        let temporary = parent.join(format!(".{file_name}.warden-{}.tmp", &tag[..16]));
        let replaced = replace(handle, &temporary, relative, content.as_bytes())
            .and_then(|()| self.dir.sync_parent(path));
        if let Err(e) = replaced {
            let _ = handle.remove_file(&temporary);
            return Err(self.io_error("write", path, e));
        }
        Ok(json!({"path": path, "bytes": content.len(), "receipt": key.to_string()}).to_string())
    }

    /// Records the write in the log before it is made; refuses a key already used with
    /// other content.
    fn record(&self, path: &str, content: &str, key: &IdempotencyKey) -> Result<(), CallError> {
        let ledger = match &self.log {
            WriteLog::Open(ledger) => ledger,
            WriteLog::Unopened(log) => {
                return Err(self.error(
                    CallErrorKind::Unavailable,
                    format!(
                        "write {path:?}: the write log {} was only inspected, not opened: load the bindings to run",
                        log.display()
                    ),
                ));
            }
            WriteLog::None => {
                return Err(self.error(
                    CallErrorKind::Unavailable,
                    format!("write {path:?}: the tool has no write log"),
                ));
            }
        };
        let args = json!({
            "op": "write",
            "path": path,
            "bytes": content.len(),
            "blake3": blake3::hash(content.as_bytes()).to_hex().to_string(),
        });
        ledger.call(&args.to_string(), key).map(drop).map_err(|e| {
            let message = if e.kind == CallErrorKind::InvalidArguments {
                format!(
                    "write {path:?}: idempotency key {key} already wrote other content (or another file): a re-run of this step after a crash asked for a different write than its first attempt made, and a write is applied once per key; the file keeps what the first attempt wrote"
                )
            } else {
                format!("write {path:?}: {}", e.message)
            };
            self.error(e.kind, message)
        })
    }

    fn outside(&self, op: &str, path: &str, reason: &OutsideReason) -> CallError {
        let how = match reason {
            OutsideReason::Absolute => "is an absolute path",
            OutsideReason::ClimbsOut => "climbs out of the directory with `..`",
            // Where the symlink leads is not the agent's business.
            _ => "leads through a symlink out of the directory",
        };
        self.error(
            CallErrorKind::InvalidArguments,
            format!("{op} {path:?}: the path {how}; name a file inside the tool's directory"),
        )
    }

    fn refused(&self, op: &str, path: &str, refused: Refused) -> CallError {
        match refused {
            Refused::Outside(reason) => self.outside(op, path, &reason),
            Refused::Io(e) if e.kind() == std::io::ErrorKind::NotFound => self.error(
                CallErrorKind::NotFound,
                format!("{op} {path:?}: no such file or directory"),
            ),
            Refused::Io(e) => self.error(CallErrorKind::Unavailable, format!("{op} {path:?}: {e}")),
        }
    }

    fn io_error(&self, op: &str, path: &str, error: std::io::Error) -> CallError {
        self.refused(op, path, self.dir.refusal(path, error))
    }

    fn error(&self, kind: CallErrorKind, message: String) -> CallError {
        call_error(kind, format!("tool `{}`: {message}", self.name))
    }
}

/// Opens `path` to read if it is a regular file: the file and its size, or `None` for
/// anything else. Opened without waiting, and the opened file is the one looked at: a
/// FIFO swapped in for a file after the caller's look would otherwise block the host
/// until a writer came, past every budget.
fn open_regular(dir: &Dir, path: &str) -> std::io::Result<Option<(cap_std::fs::File, u64)>> {
    let mut options = cap_std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    cap_std::fs::OpenOptionsExt::custom_flags(
        &mut options,
        rustix::fs::OFlags::NONBLOCK.bits() as i32,
    );
    let file = dir.open_with(path, &options)?;
    let metadata = file.metadata()?;
    Ok(metadata.is_file().then(|| (file, metadata.len())))
}

/// Replaces `target` with `content`: written and synced under `temporary`, then renamed
/// over it, so a reader sees the old file or the new one, never a part.
fn replace(dir: &Dir, temporary: &Path, target: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut options = cap_std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    let mut file = dir.open_with(temporary, &options)?;
    file.write_all(content)?;
    file.sync_all()?;
    drop(file);
    dir.rename(temporary, dir, target)
}

#[cfg(test)]
mod tests;
