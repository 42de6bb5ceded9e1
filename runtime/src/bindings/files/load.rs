//! Loading a `files` entry: its directory opened inside the bindings file's (always
//! confined for the agent's own paths), and, with `write = true`, checks that the agent
//! cannot rewrite the deployment: the writable directory holds neither the bindings file,
//! nor the tool's write log, nor any file another entry names.

use std::path::PathBuf;

use toml::Spanned;

use super::{
    DEFAULT_MAX_READ_BYTES, DEFAULT_MAX_WRITE_BYTES, FIELDS, FilesTool, MAX_BYTES, WriteLog,
};
use crate::bindings::decode::Entry;
use crate::bindings::error::EntryOutside;
use crate::bindings::load::{Loader, Resolved};
use crate::bindings::settings::Settings;
use crate::bindings::{BindingsError, Tool, line_column};
use crate::confine::{Refused, resolve};

/// What a `files` entry says, before its directory is opened.
struct Wanted {
    dir: Spanned<String>,
    write: bool,
    max_read_bytes: u64,
    max_write_bytes: u64,
}

impl Loader<'_> {
    /// Resolves a `files` entry: its directory opened inside the bindings file's, and,
    /// with `write = true`, its write log left for the caller to open with the ledgers.
    /// `None` after a problem (recorded).
    pub(in crate::bindings) fn files_tool(
        &mut self,
        entry: &Entry,
        provider: &Spanned<String>,
    ) -> Option<Resolved> {
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
        let mut settings = Settings::new(entry, "files", FIELDS);
        let wanted = read_settings(&mut settings);
        settings.finish(self);
        let wanted = wanted?;
        let written = wanted.dir.get_ref();
        let dir = match self.files.open_dir(written) {
            Ok(dir) => dir,
            Err(Refused::Outside(reason)) => {
                let (line, column) = line_column(self.text, wanted.dir.span().start);
                self.problems
                    .push(BindingsError::PathOutside(Box::new(EntryOutside {
                        path: self.path.to_path_buf(),
                        line,
                        column,
                        section: entry.section,
                        name: entry.name.clone(),
                        field: "dir",
                        file: written.clone(),
                        dir: self.files.dir().to_path_buf(),
                        reason,
                    })));
                return None;
            }
            Err(Refused::Io(e)) => {
                self.entry_error(
                    entry,
                    "dir",
                    &wanted.dir.span(),
                    format!(
                        "cannot open directory {}: {e}; the path is relative to the bindings file's directory",
                        self.files.path(written).display()
                    ),
                );
                return None;
            }
        };
        let tool = FilesTool {
            name: entry.name.clone(),
            dir,
            write: wanted.write,
            max_read_bytes: wanted.max_read_bytes,
            max_write_bytes: wanted.max_write_bytes,
            log: WriteLog::None,
        };
        match (wanted.write, &entry.file) {
            (false, None) => Some(Resolved::Tool(Tool::Files(Box::new(tool)))),
            (false, Some(file)) => {
                self.entry_error(
                    entry,
                    "file",
                    &file.span(),
                    "`file` is the write log of a files tool with write = true; this one is read-only: remove `file`, or grant write = true".into(),
                );
                None
            }
            (true, None) => {
                if !entry.misspelt("file") {
                    self.entry_error(
                        entry,
                        "file",
                        &entry.at,
                        "a files tool with write = true needs `file`, its write log (every write recorded by idempotency key): add file = \"<name>.writes.jsonl\", beside the directory".into(),
                    );
                }
                None
            }
            (true, Some(file)) => {
                let clean = self.writable(entry, &tool, &wanted.dir, file);
                clean.then(|| Resolved::WriteLog(Box::new(tool)))
            }
        }
    }

    /// Checks that a write-granted directory holds neither the bindings file nor the
    /// tool's own write log: the agent could rewrite them.
    fn writable(
        &mut self,
        entry: &Entry,
        tool: &FilesTool,
        dir: &Spanned<String>,
        file: &Spanned<String>,
    ) -> bool {
        let Ok(root) = std::fs::canonicalize(tool.dir.dir()) else {
            return true;
        };
        let mut clean = true;
        if resolve(self.path).is_some_and(|p| p.starts_with(&root)) {
            self.entry_error(
                entry,
                "dir",
                &dir.span(),
                format!(
                    "write = true on {}, which holds the bindings file: the agent could rewrite the deployment; grant write on a subdirectory that holds only the agent's documents",
                    tool.dir.dir().display()
                ),
            );
            clean = false;
        }
        if resolve(&self.files.path(file.get_ref())).is_some_and(|p| p.starts_with(&root)) {
            self.entry_error(
                entry,
                "file",
                &file.span(),
                format!(
                    "the write log {:?} is inside {}, the directory the agent writes: it could rewrite the record of its own writes; put the log beside the directory",
                    file.get_ref(),
                    tool.dir.dir().display()
                ),
            );
            clean = false;
        }
        clean
    }
}

/// Reports every file another entry names (a fixture, a ledger, a card) that lies inside
/// a directory a `files` tool may write: the agent could rewrite it.
pub(in crate::bindings) fn check_written_dirs(
    loader: &mut Loader<'_>,
    entries: &[Entry<'_>],
    tools: &std::collections::BTreeMap<String, Tool>,
) {
    let roots: Vec<(&String, PathBuf)> = tools
        .iter()
        .filter_map(|(name, tool)| match tool {
            Tool::Files(files) if files.write => std::fs::canonicalize(files.dir.dir())
                .ok()
                .map(|root| (name, root)),
            _ => None,
        })
        .collect();
    for entry in entries {
        let Some(file) = &entry.file else { continue };
        let Some(path) = resolve(&loader.files.path(file.get_ref())) else {
            continue;
        };
        if let Some((tool, root)) = roots.iter().find(|(tool, root)| {
            path.starts_with(root) && !(entry.section == "tools" && entry.name == **tool)
        }) {
            let problem = format!(
                "{:?} is inside {}, which tool {tool:?} may write (write = true): the agent could rewrite it; keep the deployment's files outside a writable directory",
                file.get_ref(),
                root.display()
            );
            loader.entry_error(entry, "file", &file.span(), problem);
        }
    }
}

fn read_settings(settings: &mut Settings<'_, '_>) -> Option<Wanted> {
    let dir =
        settings.required_string("dir", "\"documents\", a directory beside the bindings file");
    let write = settings.boolean("write", false);
    let max_read_bytes = settings.integer("max_read_bytes", 1, MAX_BYTES, DEFAULT_MAX_READ_BYTES);
    let max_write_bytes =
        settings.integer("max_write_bytes", 1, MAX_BYTES, DEFAULT_MAX_WRITE_BYTES);
    Some(Wanted {
        dir: dir?,
        write,
        max_read_bytes,
        max_write_bytes,
    })
}
