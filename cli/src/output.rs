//! What every command shares: exit codes, JSON printing, escaping of untrusted text, and
//! the rendering of errors.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use warden::seal::signing::{PublicKey, SigningKey};
use warden::{ErrorKind, Status};

/// Exit codes, documented in `--help` and the README.
pub mod exit {
    /// Completed, or the command succeeded.
    pub const COMPLETED: u8 = 0;
    /// Warden itself failed.
    pub const HOST_ERROR: u8 = 1;
    /// A usage or configuration error.
    pub const USAGE: u8 = 2;
    /// The run stopped awaiting human review.
    pub const AWAITING_REVIEW: u8 = 10;
    /// The run failed.
    pub const FAILED: u8 = 11;
    /// Replay diverged or could not replay, an outcome changed, or a chain is broken.
    pub const DIVERGED: u8 = 12;
}

/// A usage error found by the CLI itself (arguments that clap cannot check).
#[derive(Debug)]
pub struct Usage(pub String);

/// The submitter of a new run: `--submitter`, or else `$USER`. A `$USER` that is not UTF-8
/// is refused, not dropped: without a submitter the check that nobody reviews their own
/// run would not apply.
pub fn submitter(given: Option<&str>) -> anyhow::Result<Option<String>> {
    if let Some(given) = given {
        return Ok(Some(given.to_string()));
    }
    match std::env::var("USER") {
        Ok(user) => Ok(Some(user)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(Usage(
            "$USER is not UTF-8 text, so it cannot name the submitter; pass --submitter".into(),
        )
        .into()),
    }
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Opens the journal for writing, signing every commit with the key at `signing_key`
/// (`--signing-key`, `WARDEN_SIGNING_KEY`). A journal whose log is signed takes no
/// unsigned write and no other key's: each would leave entries that `verify --key`
/// reports as not signed.
pub fn open(db: &Path, signing_key: Option<&Path>) -> anyhow::Result<warden::Journal> {
    let mut journal = warden::Journal::open(db).map_err(warden::Error::from)?;
    let head = journal.log_head().map_err(warden::Error::from)?;
    let last = journal.last_log_entry().map_err(warden::Error::from)?;
    let signed_by = head.as_ref().map(|h| h.key_id).or_else(|| {
        last.as_ref()
            .and_then(|e| e.signature.as_ref().map(|(id, _)| *id))
    });
    match (signing_key, signed_by) {
        (Some(path), _) => {
            let key = read_signing_key(path)?;
            let public = key.public_key();
            // The stored head must be this key's: a head planted by someone else would
            // make this writer extend a forged log (or deny it service).
            if let Some(head) = &head
                && !head.verify(&public)
                && head.key_id == key.key_id()
            {
                // This key's head, but its signature does not hold: altered, not foreign.
                return Err(warden::Error::from(warden::JournalError::LogAltered {
                    path: db.to_path_buf(),
                    message: format!(
                        "its signed tree head names key {} (--signing-key {}) but its signature does not hold: the journal was altered since its last signed write; nothing was written; check it with `warden verify --all --key PUB` and restore it from a copy",
                        key.key_id(),
                        path.display()
                    ),
                })
                .into());
            }
            if let Some(head) = &head
                && !head.verify(&public)
            {
                return Err(Usage(format!(
                    "journal {}: its signed tree head is not signed by --signing-key {} (key {}; the head names key {}): the journal belongs to another deployment or was altered; check it with `warden verify --all --key` before writing to it",
                    db.display(),
                    path.display(),
                    key.key_id(),
                    head.key_id
                ))
                .into());
            }
            if let Some(id) = signed_by.filter(|id| *id != key.key_id()) {
                return Err(Usage(format!(
                    "journal {} is signed by key {id}, but --signing-key {} is key {}; sign with the deployment's key (one key per journal)",
                    db.display(),
                    path.display(),
                    key.key_id()
                ))
                .into());
            }
            journal.set_signer(key);
            journal.keep_signed_heads(signed_heads_file(path));
        }
        (None, Some(id)) => {
            return Err(Usage(format!(
                "journal {} is signed by key {id}: pass --signing-key FILE (or set WARDEN_SIGNING_KEY) so that this write is signed too",
                db.display()
            ))
            .into());
        }
        (None, None) => {}
    }
    Ok(journal)
}

/// Where a writer records the last tree head it signed for each journal: beside the
/// signing key (`<key>.heads`), or `$WARDEN_SIGNED_HEADS`; somewhere whoever can write
/// the journal cannot, so that a journal put back to an earlier head is refused.
fn signed_heads_file(key: &Path) -> std::path::PathBuf {
    std::env::var_os("WARDEN_SIGNED_HEADS").map_or_else(
        || {
            let mut name = key.as_os_str().to_owned();
            name.push(".heads");
            name.into()
        },
        Into::into,
    )
}

/// Opens the journal for maintenance that appends nothing (compaction).
pub fn open_unsigned(db: &Path) -> anyhow::Result<warden::Journal> {
    Ok(warden::Journal::open(db).map_err(warden::Error::from)?)
}

/// Reads the deployment's signing key, refusing a file others may read.
pub fn read_signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Usage(format!("cannot read signing key {}: {e}", path.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map(|m| m.permissions().mode())
            .unwrap_or(0);
        if mode & 0o077 != 0 {
            return Err(Usage(format!(
                "signing key {} may be read by others (mode {:o}); run `chmod 600 {}` (whoever reads it can sign forged runs)",
                path.display(),
                mode & 0o777,
                path.display()
            ))
            .into());
        }
    }
    SigningKey::from_file_text(&text)
        .map_err(|e| Usage(format!("signing key {}: {e}", path.display())).into())
}

/// Reads a public key (`--key`), as `warden key generate` wrote it.
pub fn read_public_key(path: &Path) -> anyhow::Result<PublicKey> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Usage(format!("cannot read public key {}: {e}", path.display())))?;
    PublicKey::from_file_text(&text)
        .map_err(|e| Usage(format!("public key {}: {e}", path.display())).into())
}

/// Opens the journal for reading only: an archived or write-protected journal can be
/// audited, and nothing is created.
pub fn open_read_only(db: &Path) -> anyhow::Result<warden::Journal> {
    Ok(warden::Journal::open_read_only(db).map_err(warden::Error::from)?)
}

/// Opens the journal for reading only, in a process given the deployment's signing key
/// (`--signing-key`, `WARDEN_SIGNING_KEY`), its public key (`--public-key`,
/// `WARDEN_PUBLIC_KEY`: the same checks, less the record of heads kept beside the secret
/// key; [`warden::Journal::hold_to_public_key`]) or neither. With the key, the log must be what the
/// key last sealed ([`warden::Journal::hold_to_key`]: its signed tree head this key's and
/// covering every entry, and extending the head recorded beside the key), and every run
/// read is held to its signatures as a writer's runs are ([`warden::Journal::verify`]): a
/// run whose log entries are not the key's, re-sealed by someone without it, does not
/// verify, so it is not shown as a case, replayed or listed as sound.
pub fn open_to_read(db: &Path, keys: Keys<'_>) -> anyhow::Result<warden::Journal> {
    let mut journal = open_read_only(db)?;
    if let Some(path) = keys.signing {
        journal
            .hold_to_key(read_signing_key(path)?, signed_heads_file(path))
            .map_err(warden::Error::from)?;
    }
    if let Some(path) = keys.public {
        journal
            .hold_to_public_key(read_public_key(path)?)
            .map_err(warden::Error::from)?;
    }
    Ok(journal)
}

/// The deployment's keys a command was given: the signing key (`--signing-key`,
/// `WARDEN_SIGNING_KEY`) and the public key a reader holds the journal to
/// (`--public-key`, `WARDEN_PUBLIC_KEY`).
#[derive(Clone, Copy, Default)]
pub struct Keys<'a> {
    /// The signing key's file.
    pub signing: Option<&'a Path>,
    /// The public key's file.
    pub public: Option<&'a Path>,
}

/// The full id of the run `id` names: the id itself, or a unique prefix of one
/// ([`warden::Journal::resolve_run_id`]).
pub fn run_id(journal: &warden::Journal, id: &str) -> anyhow::Result<String> {
    Ok(journal.resolve_run_id(id).map_err(warden::Error::from)?)
}

/// As [`run_id`], for a command that opens the journal for writing afterwards.
pub fn run_id_in(db: &Path, id: &str) -> anyhow::Result<String> {
    run_id(&open_read_only(db)?, id)
}

/// The exit code of a run that stands at `status`.
pub fn status_code(status: Status) -> u8 {
    match status {
        Status::Completed => exit::COMPLETED,
        Status::AwaitingReview => exit::AWAITING_REVIEW,
        Status::Failed | Status::Running => exit::FAILED,
    }
}

/// Prints `value` as pretty JSON on standard output.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    // Serialise first, so that a closed pipe surfaces as the plain I/O error it is.
    let text = serde_json::to_string_pretty(value)?;
    writeln!(std::io::stdout().lock(), "{text}")?;
    Ok(())
}

/// Reports `error` on standard error and returns its exit code: the library says whose
/// error it is ([`warden::Error::kind`]); a closed pipe is not an error.
pub fn report_error(error: &anyhow::Error) -> ExitCode {
    let broken_pipe = error.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    });
    if broken_pipe {
        return ExitCode::SUCCESS;
    }
    // An error listing several problems (a policy's, a bindings file's) prints one per
    // line, each escaped on its own.
    match error
        .downcast_ref::<warden::Error>()
        .and_then(warden::Error::problems)
    {
        Some(problems) => {
            for problem in problems {
                eprintln!("error: {}", escape(&problem));
            }
        }
        None => eprintln!("error: {}", render_error(error)),
    }
    ExitCode::from(error_code(error))
}

fn error_code(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<Usage>().is_some() {
        return exit::USAGE;
    }
    let kind = error
        .downcast_ref::<warden::Error>()
        .map_or(ErrorKind::Host, warden::Error::kind);
    match kind {
        ErrorKind::Usage => exit::USAGE,
        ErrorKind::Integrity => exit::DIVERGED,
        ErrorKind::Host => exit::HOST_ERROR,
    }
}

/// The error and its causes on one line, leaving out a cause whose text the message
/// before it already contains (many errors quote their source).
fn render_error(error: &anyhow::Error) -> String {
    let mut text = String::new();
    let mut previous = String::new();
    for cause in error.chain() {
        let line = cause.to_string();
        if !previous.contains(&line) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&line);
        }
        previous = line;
    }
    escape(&text)
}

/// Text from a guest, a journal or a file, made safe for a terminal: control characters
/// (ANSI escapes, carriage returns, new lines), line and paragraph separators, and the
/// invisible format characters that reorder or hide text (bidirectional overrides,
/// zero-width characters) are shown as `\u{..}` escapes, so that nothing printed can forge
/// a line, move the cursor or make one text read as another.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if (c.is_control() && c != '\t') || is_format(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// Unicode's separators and the format characters (category Cf) a terminal would act on
/// or hide.
fn is_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}'
        | '\u{061C}'
        | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{E0000}'..='\u{E007F}'
    )
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_controls_separators_and_invisible_reordering() {
        assert_eq!(escape("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(
            escape("x\u{202e}y\u{2028}z\u{200b}"),
            "x\\u{202e}y\\u{2028}z\\u{200b}"
        );
        assert_eq!(escape("tab\tand é"), "tab\tand é");
    }
}
