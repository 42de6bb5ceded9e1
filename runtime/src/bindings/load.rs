//! Loading one bindings file: each entry resolved into its provider, every problem an
//! error naming the file, the line and column, the entry and the field. A problem in one
//! entry does not stop the others from being checked.
//!
//! Invariant: every file an entry names is opened through the bindings file's
//! [`Confinement`], never by path; a ledger file is created only under
//! [`LedgerMode::CreateIfMissing`], and only once every other entry loaded without a
//! problem.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::chat::{self, ChatModel};
use super::decode::{self, Entry, closest};
use super::error::CardNameMismatch;
use super::http::{self, HttpTool};
use super::settings::Settings;
use super::{BindingEntry, Bindings, BindingsInspection, LoadOptions, hash_of, read_text};
use super::{
    BindingsError, EntryOutside, Fixture, Ledger, LedgerMode, Model, ModelCard, Scorecard, Tool,
    line_column,
};
use crate::confine::{Access, Confinement, Refused};

/// The providers of each section, as the loader knows them.
pub(super) const TOOL_PROVIDERS: &[&str] = &["fixture", "ledger", "http", "files"];
pub(super) const MODEL_PROVIDERS: &[&str] = &["scorecard", "chat", "onnx"];

impl Bindings {
    /// Checks a bindings file whole: every entry is loaded as `options` say, and every
    /// problem found is reported, not only the first. Under [`LedgerMode::Inspect`]
    /// nothing is created or written; otherwise a missing ledger is created only when no
    /// other entry has a problem.
    pub fn inspect(path: &Path, options: &LoadOptions) -> BindingsInspection {
        let mut inspection = BindingsInspection {
            bindings: Bindings {
                source: Some(path.to_path_buf()),
                hash: hash_of("", &[]),
                tools: BTreeMap::new(),
                models: BTreeMap::new(),
            },
            entries: Vec::new(),
            problems: Vec::new(),
        };
        let text = match read_text(path) {
            Ok(text) => text,
            Err(error) => {
                inspection.problems.push(error);
                return inspection;
            }
        };
        let document = match decode::parse(path, &text) {
            Ok(document) => document,
            Err(errors) => {
                inspection.problems = errors;
                return inspection;
            }
        };
        let mut problems = decode::Problems::new(path, &text);
        let mut entries = decode::entries(document.get_ref(), &mut problems);
        inspection.entries = entries
            .iter()
            .map(|entry| BindingEntry {
                section: entry.section,
                name: entry.name.clone(),
                line: line_column(&text, entry.at.start).0,
                column: line_column(&text, entry.at.start).1,
                provider: entry.provider.as_ref().map(|p| p.get_ref().clone()),
                file: entry.file.as_ref().map(|f| f.get_ref().clone()),
                key: entry.key.as_ref().map(|k| k.get_ref().clone()),
                key_at: entry
                    .key
                    .as_ref()
                    .map(|k| line_column(&text, k.span().start)),
                card: entry
                    .settings
                    .iter()
                    .find(|(name, _)| name.get_ref() == "card")
                    .and_then(|(_, value)| match value.get_ref() {
                        toml::de::DeValue::String(card) => Some(card.to_string()),
                        _ => None,
                    }),
            })
            .collect();
        let dir = path.parent().unwrap_or(Path::new(""));
        let files = match Confinement::new(dir, options.allow_outside) {
            Ok(files) => files,
            Err(source) => {
                problems.list.push(BindingsError::Read {
                    path: dir.to_path_buf(),
                    source,
                });
                inspection.problems = problems.list;
                return inspection;
            }
        };
        // Name order within each section, models first: the order the hash has always
        // covered, so that a run's recorded bindings digest stays what it was.
        entries.sort_by(|a, b| {
            (a.section != "models", &a.name).cmp(&(b.section != "models", &b.name))
        });
        let mut loader = Loader {
            path,
            files,
            text: &text,
            hashed: Vec::new(),
            problems: problems.list,
        };
        let bindings = &mut inspection.bindings;
        let mut ledgers = Vec::new();
        for entry in &entries {
            match entry.section {
                "models" => {
                    if let Some(model) = loader.model(entry) {
                        bindings.models.insert(entry.name.clone(), model);
                    }
                }
                _ => match loader.tool(entry) {
                    Some(Resolved::Tool(tool)) => {
                        bindings.tools.insert(entry.name.clone(), tool);
                    }
                    Some(Resolved::Ledger) => ledgers.push((entry, None)),
                    Some(Resolved::WriteLog(files)) => ledgers.push((entry, Some(files))),
                    None => {}
                },
            }
        }
        // Ledgers are opened last, so that a broken entry creates no file.
        let mode = match options.ledgers {
            LedgerMode::CreateIfMissing if !loader.problems.is_empty() => LedgerMode::Inspect,
            mode => mode,
        };
        let mut ledger_files: BTreeMap<PathBuf, &String> = BTreeMap::new();
        for (entry, files) in ledgers {
            let Some(tool) = loader.ledger(entry, mode) else {
                continue;
            };
            let identity = match &tool {
                Tool::Ledger(ledger) => ledger.identity(),
                Tool::Unopened { path } => path.clone(),
                Tool::Fixture(_) | Tool::Http(_) | Tool::Files(_) => continue,
            };
            if let Some(other) = ledger_files.insert(identity, &entry.name) {
                let at = entry.file.as_ref().map_or(entry.at.clone(), |f| f.span());
                loader.entry_error(
                    entry,
                    "file",
                    &at,
                    format!("the same ledger file is already bound to tool {other:?}; give each effect its own ledger"),
                );
                continue;
            }
            let tool = match files {
                Some(files) => Tool::Files(Box::new(files.with_log(tool))),
                None => tool,
            };
            bindings.tools.insert(entry.name.clone(), tool);
        }
        super::files::check_written_dirs(&mut loader, &entries, &bindings.tools);
        bindings.hash = hash_of(&text, &loader.hashed);
        inspection.problems = loader.problems;
        // The bindings file's own problems first, then each other file's; by position.
        inspection.problems.sort_by(|a, b| {
            let key = |e: &BindingsError| {
                let (file, line, column) = e.place();
                (
                    file != Some(path),
                    file.map(Path::to_path_buf),
                    line,
                    column,
                )
            };
            key(a).cmp(&key(b))
        });
        inspection.entries.sort_by_key(|e| (e.line, e.column));
        inspection
    }
}

/// Resolves the entries of one bindings file, with what errors need to name.
pub(super) struct Loader<'a> {
    pub(super) path: &'a Path,
    pub(super) files: Confinement,
    pub(super) text: &'a str,
    /// (section, name, bytes) of every file the hash covers, in name order.
    pub(super) hashed: Vec<(&'static str, String, Vec<u8>)>,
    /// Every problem found so far.
    pub(super) problems: Vec<BindingsError>,
}

/// What a tool entry resolved to.
pub(super) enum Resolved {
    /// A provider, loaded.
    Tool(Tool),
    /// A ledger: opened by the caller once every other entry has loaded.
    Ledger,
    /// A `files` tool that may write: its write log (`file`, a ledger) is opened by the
    /// caller with the ledgers.
    WriteLog(Box<super::files::FilesTool>),
}

impl Loader<'_> {
    /// The [`ModelCard`] a run records for the card at `path` (`bytes`) of `provider`,
    /// whose `(name, place of the name, version)` is `named`; `None` (the problem
    /// recorded) when the card names another model than the binding does.
    pub(super) fn model_card(
        &mut self,
        entry: &Entry,
        provider: &str,
        (name, (line, column), version): (&str, (usize, usize), &str),
        path: &Path,
        bytes: &[u8],
    ) -> Option<ModelCard> {
        if name != entry.name {
            self.problems
                .push(BindingsError::CardName(Box::new(CardNameMismatch {
                    path: path.to_path_buf(),
                    line,
                    column,
                    found: name.to_string(),
                    bindings: self.path.to_path_buf(),
                    binding_line: line_column(self.text, entry.at.start).0,
                    model: entry.name.clone(),
                })));
            return None;
        }
        Some(ModelCard {
            name: entry.name.clone(),
            provider: provider.into(),
            version: version.to_string(),
            card: crate::digest::Digest::of(crate::digest::domain::BLOB, bytes),
        })
    }

    /// Resolves a fixture tool now, or says that the entry is a ledger. `None` after a
    /// problem (recorded).
    pub(super) fn tool(&mut self, entry: &Entry) -> Option<Resolved> {
        let provider = entry.provider.as_ref()?;
        match provider.get_ref().as_str() {
            "fixture" => {
                self.no_settings(entry, "fixture");
                // A misspelt `key` was reported as an unknown field already.
                if entry.key.is_none() && !entry.misspelt("key") {
                    self.entry_error(
                        entry,
                        "key",
                        &provider.span(),
                        "a fixture needs `key`, the argument whose string value is looked up among the records (key = \"applicant_id\", say)".into(),
                    );
                }
                let (path, bytes) = self.read(entry)?;
                let key = entry.key.as_ref().map(|k| k.get_ref().clone());
                match Fixture::parse(&path, &bytes, key.clone().unwrap_or_default()) {
                    Ok(fixture) if key.is_some() => {
                        self.hashed.push(("tools", entry.name.clone(), bytes));
                        Some(Resolved::Tool(Tool::Fixture(fixture)))
                    }
                    Ok(_) => None,
                    Err(errors) => {
                        self.problems.extend(errors);
                        None
                    }
                }
            }
            "ledger" => {
                self.no_key(entry, provider);
                self.no_settings(entry, "ledger");
                Some(Resolved::Ledger)
            }
            "http" => {
                self.no_key(entry, provider);
                self.no_file(entry, provider);
                let mut settings = Settings::new(entry, "http", http::FIELDS);
                let tool = HttpTool::load(&entry.name, &mut settings, &http::secret::process_env);
                settings.finish(self);
                tool.map(|tool| Resolved::Tool(Tool::Http(Box::new(tool))))
            }
            "files" => self.files_tool(entry, provider),
            other => {
                self.unknown_provider(entry, provider, other, TOOL_PROVIDERS);
                None
            }
        }
    }

    /// Resolves a model entry. `None` after a problem (recorded).
    pub(super) fn model(&mut self, entry: &Entry) -> Option<Model> {
        let provider = entry.provider.as_ref()?;
        match provider.get_ref().as_str() {
            "chat" => {
                self.no_key(entry, provider);
                self.no_file(entry, provider);
                let mut settings = Settings::new(entry, "chat", chat::FIELDS);
                let model = ChatModel::load(&entry.name, &mut settings, &http::secret::process_env);
                settings.finish(self);
                let chat = model?;
                let card = ModelCard {
                    name: entry.name.clone(),
                    provider: "chat".into(),
                    version: chat.version().to_string(),
                    card: crate::digest::Digest::of(crate::digest::domain::BLOB, chat.card()),
                };
                Some(Model::Chat {
                    chat: Box::new(chat),
                    card,
                })
            }
            "scorecard" => {
                self.no_key(entry, provider);
                self.no_settings(entry, "scorecard");
                let (path, bytes) = self.read(entry)?;
                let scorecard = match Scorecard::parse(&path, &bytes) {
                    Ok(scorecard) => scorecard,
                    Err(errors) => {
                        self.problems.extend(errors);
                        return None;
                    }
                };
                let card = self.model_card(
                    entry,
                    "scorecard",
                    (
                        scorecard.name(),
                        scorecard.places().name,
                        scorecard.version(),
                    ),
                    &path,
                    &bytes,
                )?;
                self.hashed
                    .push(("models", entry.name.clone(), bytes.clone()));
                Some(Model::Scorecard {
                    scorecard,
                    card,
                    bytes,
                    path,
                })
            }
            "onnx" => self.onnx(entry, provider),
            other => {
                self.unknown_provider(entry, provider, other, MODEL_PROVIDERS);
                None
            }
        }
    }

    fn unknown_provider(
        &mut self,
        entry: &Entry,
        provider: &Spanned<String>,
        other: &str,
        known: &[&str],
    ) {
        let quoted: Vec<String> = known.iter().map(|p| format!("{p:?}")).collect();
        let expected = match quoted.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => quoted.join(""),
        };
        let hint = match closest(other, known) {
            Some(near) => format!("; did you mean {near:?}?"),
            None if entry.section == "tools" && MODEL_PROVIDERS.contains(&other) => {
                format!("; {other:?} provides a model: bind it under [models.<name>]")
            }
            None if entry.section == "models" && TOOL_PROVIDERS.contains(&other) => {
                format!("; {other:?} provides a tool: bind it under [tools.<name>]")
            }
            None => " (docs/bindings.md lists the providers and their fields)".into(),
        };
        let kind = if entry.section == "tools" {
            "tool"
        } else {
            "model"
        };
        self.entry_error(
            entry,
            "provider",
            &provider.span(),
            format!("unknown {kind} provider {other:?} (expected {expected}){hint}"),
        );
    }

    /// Reports every provider setting (`url`, `model`, ...) of an entry whose provider
    /// takes none.
    fn no_settings(&mut self, entry: &Entry, provider: &'static str) {
        if !entry.settings.is_empty() {
            Settings::new(entry, provider, &[]).finish(self);
        }
    }

    fn no_file(&mut self, entry: &Entry, provider: &Spanned<String>) {
        if let Some(file) = &entry.file {
            self.entry_error(
                entry,
                "file",
                &file.span(),
                format!(
                    "provider {:?} takes no `file`: its settings are written in the entry itself; remove it",
                    provider.get_ref()
                ),
            );
        }
    }

    fn no_key(&mut self, entry: &Entry, provider: &Spanned<String>) {
        if let Some(key) = &entry.key {
            self.entry_error(
                entry,
                "key",
                &key.span(),
                format!(
                    "provider {:?} takes no `key` (only a fixture looks records up); remove it",
                    provider.get_ref()
                ),
            );
        }
    }

    /// Reads the file an entry names, inside the bindings file's directory unless the
    /// operator allowed otherwise; returns its path (for messages) and its bytes. `None`
    /// after a problem (recorded).
    fn read(&mut self, entry: &Entry) -> Option<(PathBuf, Vec<u8>)> {
        let file = entry.file.as_ref()?;
        let path = self.files.path(file.get_ref());
        match self.files.read(file.get_ref()) {
            Ok(bytes) => Some((path, bytes)),
            Err(refused) => {
                let error = self.refused(entry, file, refused, |cause, loader| {
                    let (line, column) = line_column(loader.text, file.span().start);
                    BindingsError::EntryFile {
                        bindings: loader.path.to_path_buf(),
                        line,
                        column,
                        section: entry.section,
                        name: entry.name.clone(),
                        path: path.clone(),
                        cause,
                    }
                });
                self.problems.push(error);
                None
            }
        }
    }

    /// Opens the ledger of a tool entry: an existing file, or, if it is missing and `mode`
    /// allows, a new one (made durable before anything is written to it). Under
    /// [`LedgerMode::Inspect`], a missing ledger is [`Tool::Unopened`] and an existing one
    /// is opened to read only. `None` after a problem (recorded).
    pub(super) fn ledger(&mut self, entry: &Entry, mode: LedgerMode) -> Option<Tool> {
        let written = entry.file.as_ref()?;
        let file = written.get_ref();
        let path = self.files.path(file);
        let open_error = |source| BindingsError::LedgerOpen {
            path: path.clone(),
            source,
        };
        let access = if mode == LedgerMode::Inspect {
            Access::Read
        } else {
            Access::Append
        };
        let opened = match self.files.open(file, access) {
            Ok(opened) => opened,
            Err(Refused::Io(e)) if e.kind() == io::ErrorKind::NotFound => match mode {
                LedgerMode::MustExist => {
                    let (line, column) = line_column(self.text, written.span().start);
                    self.problems.push(BindingsError::LedgerMissing {
                        path,
                        bindings: self.path.to_path_buf(),
                        line,
                        column,
                        tool: entry.name.clone(),
                    });
                    return None;
                }
                LedgerMode::Inspect => return Some(Tool::Unopened { path }),
                LedgerMode::CreateIfMissing => {
                    let created = match self.files.open(file, Access::CreateNew) {
                        Ok(created) => created,
                        Err(refused) => {
                            let error = self.refused(entry, written, refused, |e, _| open_error(e));
                            self.problems.push(error);
                            return None;
                        }
                    };
                    if let Err(e) = self.files.sync_parent(file) {
                        self.problems.push(open_error(e));
                        return None;
                    }
                    created
                }
            },
            Err(refused) => {
                let error = self.refused(entry, written, refused, |e, _| open_error(e));
                self.problems.push(error);
                return None;
            }
        };
        match Ledger::open(&path, opened) {
            Ok(ledger) => Some(Tool::Ledger(ledger)),
            Err(error) => {
                self.problems.push(error);
                None
            }
        }
    }

    /// The error for a file the confinement refused: [`BindingsError::PathOutside`] for a
    /// path that leaves the directory, `io` for an I/O error.
    fn refused(
        &self,
        entry: &Entry,
        file: &Spanned<String>,
        refused: Refused,
        io: impl FnOnce(io::Error, &Self) -> BindingsError,
    ) -> BindingsError {
        match refused {
            Refused::Io(source) => io(source, self),
            Refused::Outside(reason) => {
                let (line, column) = line_column(self.text, file.span().start);
                BindingsError::PathOutside(Box::new(EntryOutside {
                    path: self.path.to_path_buf(),
                    line,
                    column,
                    section: entry.section,
                    name: entry.name.clone(),
                    field: "file",
                    file: file.get_ref().clone(),
                    dir: self.files.dir().to_path_buf(),
                    reason,
                }))
            }
        }
    }

    /// Records a problem with field `field` of `entry`, at byte `at`.
    pub(super) fn entry_error(
        &mut self,
        entry: &Entry,
        field: &'static str,
        at: &std::ops::Range<usize>,
        problem: String,
    ) {
        let (line, column) = line_column(self.text, at.start);
        self.problems.push(BindingsError::Entry {
            path: self.path.to_path_buf(),
            line,
            column,
            section: entry.section,
            name: entry.name.clone(),
            field,
            problem,
        });
    }
}
