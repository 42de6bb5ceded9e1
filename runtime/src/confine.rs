//! Confinement: the files that a bindings file or an example manifest names are opened
//! inside that file's own directory, unless the operator allowed otherwise.
//!
//! Invariant: when confined, every such file is opened through a [`cap_std::fs::Dir`] for
//! the directory, so no path the file's author writes (absolute, climbing out with `..`,
//! or leading through a symlink to somewhere else) reaches a file outside it; a path that
//! tries is refused before anything is read or written, with the reason as an
//! [`OutsideReason`]. Only the operator lifts this (a load option, never a field of the
//! file itself, which may have been written by someone else): then paths are resolved
//! against the directory with the process's own authority, as a shell would.
//!
//! Why it matters: a ledger binding makes Warden create and append to a file with content
//! the agent chooses. A crafted bindings file must not make that file the operator's
//! shell profile or another deployment's ledger. `docs/bindings.md` states the rule.

use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Component, Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};

/// The most bytes Warden reads whole from one file (a policy, bindings, manifest, model
/// card, fixture, input or agent module): far above any real one, and far below a file
/// (or a sparse one) that would take the machine's memory.
pub const MAX_FILE_BYTES: u64 = 256 << 20;

/// Opens without blocking on a FIFO (`O_NONBLOCK` changes nothing else for a file that is
/// only read), so that one is refused rather than waited on for ever.
#[cfg(unix)]
const NONBLOCK: i32 = rustix::fs::OFlags::NONBLOCK.bits().cast_signed();

/// Reads all of the regular file at `path`. Anything else (a FIFO, a device such as
/// `/dev/zero`, a directory) is refused without waiting on it, as is a file over
/// [`MAX_FILE_BYTES`]; the error says which.
///
/// # Errors
/// The file cannot be opened or read, is not a regular file, or is too large.
pub fn read_file(path: &Path) -> io::Result<Vec<u8>> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, NONBLOCK);
    read_whole(options.open(path)?)
}

/// [`read_file`], as UTF-8 text.
///
/// # Errors
/// As [`read_file`]; text that is not UTF-8 ([`io::ErrorKind::InvalidData`]).
pub fn read_file_to_string(path: &Path) -> io::Result<String> {
    String::from_utf8(read_file(path)?).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let before = &e.as_bytes()[..at];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let line_start = before.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        // The column counts characters, as an editor shows them.
        let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "it is not UTF-8 text: line {line}, column {column} (byte {at}) is not UTF-8; save it as UTF-8"
            ),
        )
    })
}

/// Reads all of an opened file, which must be a regular one of at most
/// [`MAX_FILE_BYTES`].
fn read_whole(mut file: File) -> io::Result<Vec<u8>> {
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        let what = if metadata.is_dir() {
            "a directory"
        } else {
            "a FIFO, socket or device"
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it is {what}, not a regular file: warden reads only files"),
        ));
    }
    let too_large = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "it is larger than {MAX_FILE_BYTES} bytes, more than warden reads from one file"
            ),
        )
    };
    if metadata.len() > MAX_FILE_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    io::Read::read_to_end(
        &mut io::Read::take(&mut file, MAX_FILE_BYTES + 1),
        &mut bytes,
    )?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Why a path named by a bindings file or a manifest leaves its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutsideReason {
    /// The path is absolute.
    Absolute,
    /// The path climbs above the directory with `..`.
    ClimbsOut,
    /// The path leads through a symlink (or a `..` after one) to a file outside.
    Symlink {
        /// Where it leads.
        target: PathBuf,
    },
}

impl fmt::Display for OutsideReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutsideReason::Absolute => f.write_str("is an absolute path"),
            OutsideReason::ClimbsOut => f.write_str("climbs out of the directory with `..`"),
            OutsideReason::Symlink { target } => {
                write!(f, "leads through a symlink to {}", target.display())
            }
        }
    }
}

/// Why a confined file could not be opened.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The path leaves the directory.
    Outside(OutsideReason),
    /// The file could not be opened (missing, unreadable, ...): an ordinary I/O error.
    Io(io::Error),
}

/// How a file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Read only.
    Read,
    /// Read and append to an existing file.
    Append,
    /// Create a new file (failing if it exists), to read and append.
    CreateNew,
}

/// A directory whose named files are opened inside it, or anywhere if the operator said so.
#[derive(Debug)]
pub(crate) struct Confinement {
    /// The directory, as given (used to name files in messages).
    dir: PathBuf,
    /// The capability for it; `None` when paths outside are allowed.
    handle: Option<Dir>,
}

impl Confinement {
    /// Confines paths to `dir` (the empty path is the working directory), or, with
    /// `allow_outside`, resolves them against it without confinement.
    pub(crate) fn new(dir: &Path, allow_outside: bool) -> io::Result<Confinement> {
        let handle = if allow_outside {
            None
        } else {
            Some(Dir::open_ambient_dir(non_empty(dir), ambient_authority())?)
        };
        Ok(Confinement {
            dir: dir.to_path_buf(),
            handle,
        })
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of `file` as a person reads it: the directory joined with it.
    pub(crate) fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Opens `file` (relative to the directory) as `access` says.
    pub(crate) fn open(&self, file: &str, access: Access) -> Result<File, Refused> {
        let (append, create_new) = match access {
            Access::Read => (false, false),
            Access::Append => (true, false),
            Access::CreateNew => (true, true),
        };
        // Never blocking on a FIFO: reading refuses one, and one opened to append with
        // no reader fails at once. A regular file is not affected.
        #[cfg(unix)]
        let flags = NONBLOCK;
        let Some(handle) = &self.handle else {
            let mut options = std::fs::OpenOptions::new();
            options.read(true).append(append).create_new(create_new);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, flags);
            return options.open(self.path(file)).map_err(Refused::Io);
        };
        if let Some(reason) = lexically_outside(Path::new(file)) {
            return Err(Refused::Outside(reason));
        }
        let mut options = OpenOptions::new();
        options.read(true).append(append).create_new(create_new);
        #[cfg(unix)]
        cap_std::fs::OpenOptionsExt::custom_flags(&mut options, flags);
        match handle.open_with(file, &options) {
            Ok(opened) => Ok(opened.into_std()),
            Err(error) => Err(self.refusal(file, error)),
        }
    }

    /// The directory `sub` (relative to this one) as a confinement of its own, confined
    /// whatever this one allows: the directory of a `files` tool, whose paths the agent
    /// writes. `sub` itself is checked as any other path of this one is.
    pub(crate) fn open_dir(&self, sub: &str) -> Result<Confinement, Refused> {
        let handle = match &self.handle {
            None => Dir::open_ambient_dir(non_empty(&self.path(sub)), ambient_authority())
                .map_err(Refused::Io)?,
            Some(handle) => {
                if let Some(reason) = lexically_outside(Path::new(sub)) {
                    return Err(Refused::Outside(reason));
                }
                handle
                    .open_dir(non_empty(Path::new(sub)))
                    .map_err(|error| self.refusal(sub, error))?
            }
        };
        Ok(Confinement {
            dir: self.path(sub),
            handle: Some(handle),
        })
    }

    /// The capability for the directory; `None` when paths outside are allowed.
    pub(crate) fn handle(&self) -> Option<&Dir> {
        self.handle.as_ref()
    }

    /// Reads all of `file`, a regular file (see [`read_file`]).
    pub(crate) fn read(&self, file: &str) -> Result<Vec<u8>, Refused> {
        read_whole(self.open(file, Access::Read)?).map_err(Refused::Io)
    }

    /// Whether `file` stays inside the directory: `Err` only for a path that leaves it.
    /// A file that is missing or unreadable passes: whoever reads it later says so. Looks
    /// at the file's metadata only (opening a FIFO would block).
    pub(crate) fn check(&self, file: &str) -> Result<(), OutsideReason> {
        let Some(handle) = &self.handle else {
            return Ok(());
        };
        if let Some(reason) = lexically_outside(Path::new(file)) {
            return Err(reason);
        }
        match handle.metadata(file) {
            Ok(_) => Ok(()),
            Err(error) => match self.refusal(file, error) {
                Refused::Outside(reason) => Err(reason),
                Refused::Io(_) => Ok(()),
            },
        }
    }

    /// Makes the creation of `file` durable: its directory entry is data of its parent.
    pub(crate) fn sync_parent(&self, file: &str) -> io::Result<()> {
        let parent = Path::new(file)
            .parent()
            .filter(|p| !p.as_os_str().is_empty());
        // Opened to read, not as cap-std's own directory handles are (`O_PATH` on Linux,
        // which cannot be synced).
        let directory = match (&self.handle, parent) {
            (Some(handle), Some(parent)) => handle.open(parent)?.into_std(),
            (Some(handle), None) => handle.open(".")?.into_std(),
            (None, Some(parent)) => File::open(self.dir.join(parent))?,
            (None, None) => File::open(non_empty(&self.dir))?,
        };
        sync_directory(&directory)
    }

    /// Tells a refusal of the capability (a symlink leading out: cap-std says only
    /// "permission denied") from an ordinary I/O error, by resolving the path the way the
    /// operating system would and comparing it with the directory.
    pub(crate) fn refusal(&self, file: &str, error: io::Error) -> Refused {
        if error.kind() != io::ErrorKind::PermissionDenied {
            return Refused::Io(error);
        }
        let Ok(root) = std::fs::canonicalize(non_empty(&self.dir)) else {
            return Refused::Io(error);
        };
        match resolve(&self.path(file)) {
            Some(target) if !target.starts_with(&root) => {
                Refused::Outside(OutsideReason::Symlink { target })
            }
            _ => Refused::Io(error),
        }
    }
}

/// Why `path` leaves its directory without looking at the file system: absolute, or
/// more `..` than names before them.
pub(crate) fn lexically_outside(path: &Path) -> Option<OutsideReason> {
    let mut depth: usize = 0;
    for component in path.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => return Some(OutsideReason::Absolute),
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(up) => depth = up,
                None => return Some(OutsideReason::ClimbsOut),
            },
            Component::Normal(_) => depth += 1,
        }
    }
    None
}

/// Where `path` leads: the file itself if it exists, else its parent's target joined
/// with its name (a file about to be created).
pub(crate) fn resolve(path: &Path) -> Option<PathBuf> {
    if let Ok(target) = std::fs::canonicalize(path) {
        return Some(target);
    }
    let parent = std::fs::canonicalize(non_empty(path.parent()?)).ok()?;
    Some(parent.join(path.file_name()?))
}

/// A directory for a message: the empty path (the working directory) as `.`.
pub(crate) fn describe_dir(dir: &Path) -> String {
    if dir.as_os_str().is_empty() {
        ".".to_string()
    } else {
        dir.display().to_string()
    }
}

fn non_empty(dir: &Path) -> &Path {
    if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }
}

#[cfg(unix)]
fn sync_directory(directory: &File) -> io::Result<()> {
    directory.sync_all()
}

#[cfg(not(unix))]
fn sync_directory(_directory: &File) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FIFO, a device and a directory where a file was expected are refused at once,
    /// never waited on or read without end; so is a file over the limit.
    #[test]
    fn only_regular_files_of_bounded_size_are_read() {
        let dir = tempfile::tempdir().expect("dir");
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        let said = |path: &Path| read_file(path).expect_err("refused").to_string();
        assert!(said(&fifo).contains("FIFO"), "{}", said(&fifo));
        assert!(said(Path::new("/dev/zero")).contains("device"));
        assert!(said(dir.path()).contains("a directory"));
        let confined = Confinement::new(dir.path(), false).expect("confine");
        assert!(
            matches!(confined.read("fifo"), Err(Refused::Io(e)) if e.to_string().contains("FIFO"))
        );
        let sparse = dir.path().join("sparse");
        std::fs::File::create(&sparse)
            .and_then(|f| f.set_len(MAX_FILE_BYTES + 1))
            .expect("sparse file");
        assert!(said(&sparse).contains("larger than"), "{}", said(&sparse));
        std::fs::write(dir.path().join("text"), "caf\u{e9}").expect("write");
        assert_eq!(
            read_file_to_string(&dir.path().join("text")).expect("text"),
            "caf\u{e9}"
        );
        // Text that is not UTF-8 is named by line and column (in characters).
        std::fs::write(
            dir.path().join("latin1"),
            b"a = 1\nname = \"caf\xc3\xa9 \xe9\"\n",
        )
        .expect("write");
        let error = read_file_to_string(&dir.path().join("latin1")).expect_err("not UTF-8");
        assert!(
            error.to_string().contains("line 2, column 14 (byte 20)"),
            "{error}"
        );
    }

    #[test]
    fn lexical_escapes_are_named() {
        assert_eq!(
            lexically_outside(Path::new("/etc/passwd")),
            Some(OutsideReason::Absolute)
        );
        assert_eq!(
            lexically_outside(Path::new("../victim")),
            Some(OutsideReason::ClimbsOut)
        );
        assert_eq!(
            lexically_outside(Path::new("a/../../victim")),
            Some(OutsideReason::ClimbsOut)
        );
        assert_eq!(lexically_outside(Path::new("a/../b")), None);
        assert_eq!(lexically_outside(Path::new("./a/b.json")), None);
    }

    #[test]
    fn a_confined_directory_refuses_every_way_out_and_opens_what_is_inside() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("deployment");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("inside.json"), "{}").expect("write");
        std::fs::write(root.path().join("victim.txt"), "secret").expect("write");
        let confined = Confinement::new(&dir, false).expect("open dir");
        assert_eq!(confined.read("inside.json").expect("inside"), b"{}");
        assert!(matches!(
            confined.read("../victim.txt"),
            Err(Refused::Outside(OutsideReason::ClimbsOut))
        ));
        let absolute = root.path().join("victim.txt");
        assert!(matches!(
            confined.read(absolute.to_str().expect("utf-8")),
            Err(Refused::Outside(OutsideReason::Absolute))
        ));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("../victim.txt", dir.join("link")).expect("symlink");
            match confined.open("link", Access::Append) {
                Err(Refused::Outside(OutsideReason::Symlink { target })) => {
                    assert!(target.ends_with("victim.txt"), "{}", target.display());
                }
                other => panic!("a symlink out was not refused: {other:?}"),
            }
        }
        assert!(matches!(
            confined.read("missing.json"),
            Err(Refused::Io(e)) if e.kind() == io::ErrorKind::NotFound
        ));
        assert_eq!(
            std::fs::read(root.path().join("victim.txt")).expect("read"),
            b"secret"
        );

        let open = Confinement::new(&dir, true).expect("open dir");
        assert_eq!(open.read("../victim.txt").expect("allowed"), b"secret");
    }
}
