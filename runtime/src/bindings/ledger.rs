//! The ledger tool provider: an effect recorded in an append-only JSONL file, applied at
//! most once per idempotency key.
//!
//! Invariant: a key that has a durable line in the ledger is never appended again; its
//! recorded response is returned instead. A line is durable once `sync_data` returned,
//! and only then is it entered in the in-memory index, so a crash mid-append can leave at
//! most one torn (unterminated) last line, which readers ignore and the next append cuts
//! off.
//!
//! Invariant: a ledger never changes a file it did not write. A file is taken for a
//! ledger only if it is empty or its first line is a ledger record; anything else (a
//! shell profile, a JSON document, a directory) is [`BindingsError::NotALedger`], refused
//! before a byte is written. Only bytes after the last valid record of a recognised
//! ledger are ever cut. (So a ledger whose very first append was torn is refused too:
//! nothing in it was applied, and a person removes it.)
//!
//! One line per effect: `{"key":"<run_id>/<call_seq>","args":<args>,"response":<result>}`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use warden_guest::{CallError, CallErrorKind};

use super::{BindingsError, IdempotencyKey, call_error};

/// An open ledger file and the index of the effects it records.
#[derive(Debug)]
pub(super) struct Ledger {
    path: PathBuf,
    state: Mutex<LedgerState>,
}

#[derive(Debug)]
struct LedgerState {
    file: File,
    /// Recorded effects by key: their arguments and their response (compact JSON).
    index: HashMap<String, (Value, String)>,
    /// Length of the file up to the end of its last good line.
    valid_len: u64,
    /// Bytes past `valid_len` are garbage (a torn line or a failed append): cut them off
    /// before the next append.
    needs_repair: bool,
    /// The last good line has no newline yet (a crash between the record and its `\n`).
    needs_newline: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    key: String,
    args: Value,
    response: Value,
}

impl Ledger {
    /// Indexes the ledger `file`, already opened to read and append (creating it is the
    /// loader's business: it decides where files may be); `path` names it in messages.
    pub(super) fn open(path: &Path, mut file: File) -> Result<Ledger, BindingsError> {
        let open_error = |source| BindingsError::LedgerOpen {
            path: path.to_path_buf(),
            source,
        };
        if !file.metadata().map_err(open_error)?.is_file() {
            return Err(BindingsError::NotALedger {
                path: path.to_path_buf(),
                line: 1,
                problem: "it is not a regular file".into(),
            });
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(open_error)?;
        let state = index(path, &bytes, file)?;
        Ok(Ledger {
            path: path.to_path_buf(),
            state: Mutex::new(state),
        })
    }

    /// What makes two ledgers the same file, whatever the path that names it.
    pub(super) fn identity(&self) -> PathBuf {
        self.path
            .canonicalize()
            .unwrap_or_else(|_| self.path.clone())
    }

    /// Applies the effect once per key; a repeated key returns the recorded response.
    pub(super) fn call(&self, args_json: &str, key: &IdempotencyKey) -> Result<String, CallError> {
        let args: Value = serde_json::from_str(args_json).map_err(|e| {
            call_error(
                CallErrorKind::InvalidArguments,
                format!("arguments are not JSON: {e}"),
            )
        })?;
        let key = key.to_string();
        let unavailable = |problem: String| {
            call_error(
                CallErrorKind::Unavailable,
                format!("ledger {}: {problem}", self.path.display()),
            )
        };
        let mut state = self
            .state
            .lock()
            .map_err(|_| unavailable("a previous append panicked".into()))?;
        if let Some((recorded_args, response)) = state.index.get(&key) {
            if *recorded_args != args {
                return Err(call_error(
                    CallErrorKind::InvalidArguments,
                    format!("idempotency key {key} was already used with other arguments"),
                ));
            }
            return Ok(response.clone());
        }
        let response = serde_json::json!({ "receipt": key });
        let line = Line {
            key: key.clone(),
            args,
            response,
        };
        let mut bytes = serde_json::to_vec(&line).map_err(|e| unavailable(e.to_string()))?;
        bytes.push(b'\n');
        state
            .append(&bytes)
            .map_err(|e| unavailable(format!("append failed: {e}")))?;
        let response = line.response.to_string();
        state.index.insert(key, (line.args, response.clone()));
        Ok(response)
    }
}

impl LedgerState {
    fn append(&mut self, line: &[u8]) -> io::Result<()> {
        if self.needs_repair {
            self.file.set_len(self.valid_len)?;
            self.needs_repair = false;
        }
        let mut bytes = Vec::with_capacity(line.len() + 1);
        if self.needs_newline {
            bytes.push(b'\n');
        }
        bytes.extend_from_slice(line);
        match self
            .file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data())
        {
            Ok(()) => {
                self.valid_len += bytes.len() as u64;
                self.needs_newline = false;
                Ok(())
            }
            Err(e) => {
                // Whether any of it reached the disk is unknown: treat it all as torn.
                self.needs_repair = true;
                Err(e)
            }
        }
    }
}

/// Reads every line of a ledger into an index. The first line must be a record (or the
/// file empty): otherwise the file is not a ledger. After it, an unterminated last line
/// that does not parse is the trace of a crash mid-append and is ignored (and cut off by
/// the next append); any other bad line is an error.
fn index(path: &Path, bytes: &[u8], file: File) -> Result<LedgerState, BindingsError> {
    let mut state = LedgerState {
        file,
        index: HashMap::new(),
        valid_len: 0,
        needs_repair: false,
        needs_newline: false,
    };
    let mut start = 0;
    let mut number = 0;
    while start < bytes.len() {
        number += 1;
        let (end, terminated) = match bytes[start..].iter().position(|&b| b == b'\n') {
            Some(i) => (start + i + 1, true),
            None => (bytes.len(), false),
        };
        let text = &bytes[start..end];
        let line = match serde_json::from_slice::<Line>(text) {
            Ok(line) => line,
            Err(e) if number == 1 => {
                return Err(BindingsError::NotALedger {
                    path: path.to_path_buf(),
                    line: 1,
                    problem: format!("its first line is not a ledger record ({e})"),
                });
            }
            Err(_) if text.iter().all(u8::is_ascii_whitespace) => {
                if terminated {
                    state.valid_len = end as u64;
                }
                start = end;
                continue;
            }
            Err(_) if !terminated => {
                state.needs_repair = true;
                break;
            }
            Err(e) => {
                return Err(BindingsError::Ledger {
                    path: path.to_path_buf(),
                    line: number,
                    problem: format!("not a ledger record: {e}"),
                });
            }
        };
        if state.index.contains_key(&line.key) {
            return Err(BindingsError::Ledger {
                path: path.to_path_buf(),
                line: number,
                problem: format!("key {} is recorded twice", line.key),
            });
        }
        state
            .index
            .insert(line.key, (line.args, line.response.to_string()));
        state.valid_len = end as u64;
        state.needs_newline = !terminated;
        start = end;
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(call_seq: u64) -> IdempotencyKey {
        IdempotencyKey {
            run_id: "run-1".into(),
            call_seq,
        }
    }

    /// Opens `path` as the loader does, creating it if missing.
    fn open(path: &Path) -> Result<Ledger, BindingsError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .expect("open the file");
        Ledger::open(path, file)
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .expect("read")
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn an_effect_is_appended_once_with_its_receipt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.jsonl");
        let ledger = open(&path).expect("open");
        let result = ledger.call(r#"{"amount": 5000}"#, &key(3)).expect("apply");
        assert_eq!(result, r#"{"receipt":"run-1/3"}"#);
        assert_eq!(
            lines(&path),
            [r#"{"key":"run-1/3","args":{"amount":5000},"response":{"receipt":"run-1/3"}}"#]
        );
    }

    #[test]
    fn a_repeated_key_returns_the_recorded_response_and_appends_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.jsonl");
        let first = open(&path)
            .expect("open")
            .call(r#"{"amount": 5000}"#, &key(3))
            .expect("apply");
        let before = std::fs::read(&path).expect("read");
        // A fresh open, as after a crash: the index is rebuilt from the file.
        let reopened = open(&path).expect("reopen");
        let again = reopened
            .call(r#"{"amount": 5000}"#, &key(3))
            .expect("repeat");
        assert_eq!(again, first);
        assert_eq!(reopened.call(r#"{"amount": 5000}"#, &key(3)), Ok(first));
        assert_eq!(std::fs::read(&path).expect("read"), before);

        let error = reopened
            .call(r#"{"amount": 9000}"#, &key(3))
            .expect_err("same key, other arguments");
        assert_eq!(error.kind, CallErrorKind::InvalidArguments);
        assert_eq!(std::fs::read(&path).expect("read"), before);
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_cut_off_by_the_next_append() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.jsonl");
        let good = r#"{"key":"run-1/1","args":{},"response":{"receipt":"run-1/1"}}"#;
        std::fs::write(&path, format!("{good}\n{{\"key\":\"run-1/2\",\"ar")).expect("write");
        let ledger = open(&path).expect("torn tail is tolerated");
        assert_eq!(
            ledger.call("{}", &key(1)).expect("recorded"),
            r#"{"receipt":"run-1/1"}"#
        );
        ledger.call("{}", &key(2)).expect("apply");
        let lines = lines(&path);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0], good);
        assert!(
            lines[1].starts_with(r#"{"key":"run-1/2","args":{}"#),
            "{}",
            lines[1]
        );
        open(&path).expect("clean again");
    }

    #[test]
    fn a_complete_last_line_without_newline_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.jsonl");
        let good = r#"{"key":"run-1/1","args":{},"response":{"receipt":"run-1/1"}}"#;
        std::fs::write(&path, good).expect("write");
        let ledger = open(&path).expect("open");
        ledger.call("{}", &key(2)).expect("apply");
        let lines = lines(&path);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0], good);
    }

    #[test]
    fn a_bad_line_before_the_end_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.jsonl");
        let good = r#"{"key":"run-1/1","args":{},"response":{"receipt":"run-1/1"}}"#;
        std::fs::write(&path, format!("{good}\ngarbage\n{good}\n")).expect("write");
        let message = open(&path).expect_err("corrupt").to_string();
        assert!(message.contains("ledger.jsonl:2:"), "{message}");
    }

    #[test]
    fn a_key_recorded_twice_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.jsonl");
        let good = r#"{"key":"run-1/1","args":{},"response":{"receipt":"run-1/1"}}"#;
        std::fs::write(&path, format!("{good}\n{good}\n")).expect("write");
        let message = open(&path).expect_err("duplicate").to_string();
        assert!(
            message.contains(":2: key run-1/1 is recorded twice"),
            "{message}"
        );
    }

    /// Regression: a ledger bound to a foreign file whose only line has no newline (a
    /// shell profile, say) took that line for a torn append and cut it off at the next
    /// effect; one with more lines was refused only after a line was read.
    #[test]
    fn a_file_that_is_not_a_ledger_is_refused_and_left_unchanged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cases: [&[u8]; 5] = [
            b"alias ls='rm -rf ~'",
            b"export PATH=/usr/bin\nexport EDITOR=vi\n",
            b"{\"key\": \"value\"}",
            b"\n",
            b"\xff\xfe binary",
        ];
        for (i, bytes) in cases.into_iter().enumerate() {
            let path = dir.path().join(format!("foreign-{i}"));
            std::fs::write(&path, bytes).expect("write");
            match open(&path) {
                Err(BindingsError::NotALedger {
                    line: 1,
                    path: named,
                    ..
                }) => {
                    assert_eq!(named, path);
                }
                other => panic!("case {i}: {other:?}"),
            }
            assert_eq!(std::fs::read(&path).expect("read"), bytes, "case {i}");
        }
        let directory = File::open(dir.path()).expect("open the directory");
        let error = Ledger::open(dir.path(), directory).expect_err("a directory");
        assert!(
            matches!(error, BindingsError::NotALedger { .. }),
            "{error:?}"
        );
    }

    #[test]
    fn an_empty_file_is_a_new_ledger() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.jsonl");
        std::fs::write(&path, "").expect("write");
        open(&path)
            .expect("an empty file")
            .call("{}", &key(1))
            .expect("apply");
        assert_eq!(lines(&path).len(), 1);
    }

    /// Only an unterminated last line can be a torn append: a complete bad last line is
    /// an error, never cut off.
    #[test]
    fn a_bad_terminated_last_line_is_an_error_not_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.jsonl");
        let good = r#"{"key":"run-1/1","args":{},"response":{"receipt":"run-1/1"}}"#;
        let text = format!("{good}\nexport PATH=/tmp\n");
        std::fs::write(&path, &text).expect("write");
        let message = open(&path).expect_err("corrupt").to_string();
        assert!(message.contains("ledger.jsonl:2:"), "{message}");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
    }
}
