//! Loading one bindings file: each entry resolved into its provider, every problem an
//! error naming the file, the line and column, the entry and the field.
//!
//! Invariant: every file an entry names is opened through the bindings file's
//! [`Confinement`], never by path; a ledger file is created only under
//! [`LedgerMode::CreateIfMissing`], and only once every fixture and scorecard loaded.

use std::io;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::{
    BindingsError, Entry, EntryOutside, Fixture, Ledger, LedgerMode, Model, ModelCard, Scorecard,
    Tool, line_column,
};
use crate::confine::{Access, Confinement, Refused};

/// Resolves the entries of one bindings file, with what errors need to name.
pub(super) struct Loader<'a> {
    pub(super) path: &'a Path,
    pub(super) files: Confinement,
    pub(super) text: &'a str,
    /// (section, name, bytes) of every file the hash covers, in name order.
    pub(super) hashed: Vec<(&'static str, String, Vec<u8>)>,
}

impl Loader<'_> {
    /// Resolves a fixture tool now; returns `None` for a ledger, opened by the caller.
    pub(super) fn tool(
        &mut self,
        name: &str,
        entry: &Entry,
    ) -> Result<Option<Tool>, BindingsError> {
        match entry.provider.get_ref().as_str() {
            "fixture" => {
                let Some(key) = &entry.key else {
                    return Err(self.entry_error(
                        "tools",
                        name,
                        "key",
                        &entry.provider,
                        "a fixture needs `key`, the argument whose value is looked up".into(),
                    ));
                };
                let (path, bytes) = self.read("tools", name, &entry.file)?;
                let fixture = Fixture::parse(&path, &bytes, key.get_ref().clone())?;
                self.hashed.push(("tools", name.to_string(), bytes));
                Ok(Some(Tool::Fixture(fixture)))
            }
            "ledger" => {
                self.no_key("tools", name, entry)?;
                Ok(None)
            }
            other => Err(self.entry_error(
                "tools",
                name,
                "provider",
                &entry.provider,
                format!("unknown tool provider {other:?} (expected \"fixture\" or \"ledger\")"),
            )),
        }
    }

    pub(super) fn model(&mut self, name: &str, entry: &Entry) -> Result<Model, BindingsError> {
        match entry.provider.get_ref().as_str() {
            "scorecard" => {
                self.no_key("models", name, entry)?;
                let (path, bytes) = self.read("models", name, &entry.file)?;
                let scorecard = Scorecard::parse(&path, &bytes)?;
                let card = ModelCard {
                    name: name.to_string(),
                    provider: "scorecard".into(),
                    version: scorecard.version().to_string(),
                    card: crate::digest::Digest::of(crate::digest::domain::BLOB, &bytes),
                };
                self.hashed
                    .push(("models", name.to_string(), bytes.clone()));
                Ok(Model::Scorecard {
                    scorecard,
                    card,
                    bytes,
                })
            }
            other => Err(self.entry_error(
                "models",
                name,
                "provider",
                &entry.provider,
                format!("unknown model provider {other:?} (expected \"scorecard\")"),
            )),
        }
    }

    fn no_key(
        &self,
        section: &'static str,
        name: &str,
        entry: &Entry,
    ) -> Result<(), BindingsError> {
        match &entry.key {
            Some(key) => Err(self.entry_error(
                section,
                name,
                "key",
                key,
                format!("provider {:?} takes no `key`", entry.provider.get_ref()),
            )),
            None => Ok(()),
        }
    }

    /// Reads the file an entry names, inside the bindings file's directory unless the
    /// operator allowed otherwise; returns its path (for messages) and its bytes.
    fn read(
        &self,
        section: &'static str,
        name: &str,
        file: &Spanned<String>,
    ) -> Result<(PathBuf, Vec<u8>), BindingsError> {
        let path = self.files.path(file.get_ref());
        let read_error = |source| BindingsError::Read {
            path: path.clone(),
            source,
        };
        let bytes = self
            .files
            .read(file.get_ref())
            .map_err(|refused| self.refused(section, name, file, refused, read_error))?;
        Ok((path, bytes))
    }

    /// Opens the ledger of tool `name`: an existing file, or, if it is missing and `mode`
    /// allows, a new one (made durable before anything is written to it).
    pub(super) fn ledger(
        &self,
        name: &str,
        entry: &Entry,
        mode: LedgerMode,
    ) -> Result<Ledger, BindingsError> {
        let file = entry.file.get_ref();
        let path = self.files.path(file);
        let open_error = |source| BindingsError::LedgerOpen {
            path: path.clone(),
            source,
        };
        let opened = match self.files.open(file, Access::Append) {
            Ok(opened) => opened,
            Err(Refused::Io(e)) if e.kind() == io::ErrorKind::NotFound => match mode {
                LedgerMode::MustExist => {
                    let (line, column) = line_column(self.text, entry.file.span().start);
                    return Err(BindingsError::LedgerMissing {
                        path,
                        bindings: self.path.to_path_buf(),
                        line,
                        column,
                        tool: name.to_string(),
                    });
                }
                LedgerMode::CreateIfMissing => {
                    let created = self
                        .files
                        .open(file, Access::CreateNew)
                        .map_err(|refused| {
                            self.refused("tools", name, &entry.file, refused, open_error)
                        })?;
                    self.files.sync_parent(file).map_err(open_error)?;
                    created
                }
            },
            Err(refused) => {
                return Err(self.refused("tools", name, &entry.file, refused, open_error));
            }
        };
        Ledger::open(&path, opened)
    }

    /// The error for a file the confinement refused: [`BindingsError::PathOutside`] for a
    /// path that leaves the directory, `io` for an I/O error.
    fn refused(
        &self,
        section: &'static str,
        name: &str,
        file: &Spanned<String>,
        refused: Refused,
        io: impl FnOnce(io::Error) -> BindingsError,
    ) -> BindingsError {
        match refused {
            Refused::Io(source) => io(source),
            Refused::Outside(reason) => {
                let (line, column) = line_column(self.text, file.span().start);
                BindingsError::PathOutside(Box::new(EntryOutside {
                    path: self.path.to_path_buf(),
                    line,
                    column,
                    section,
                    name: name.to_string(),
                    field: "file",
                    file: file.get_ref().clone(),
                    dir: self.files.dir().to_path_buf(),
                    reason,
                }))
            }
        }
    }

    pub(super) fn entry_error<T>(
        &self,
        section: &'static str,
        name: &str,
        field: &'static str,
        at: &Spanned<T>,
        problem: String,
    ) -> BindingsError {
        let (line, column) = line_column(self.text, at.span().start);
        BindingsError::Entry {
            path: self.path.to_path_buf(),
            line,
            column,
            section,
            name: name.to_string(),
            field,
            problem,
        }
    }
}
