//! Example manifests: a directory whose `warden.toml` names an agent, its policy, its
//! bindings and a default input, so that `warden run examples/loan-underwriting` works.
//!
//! Where files may be: `bindings` and `input` must stay inside the example directory
//! (no absolute path, no `..` above it, no symlink leading out), unless the operator
//! allows otherwise ([`Manifest::from_dir_with`], `warden run
//! --allow-paths-outside-bindings-dir`); `agent` and `policy` may be anywhere readable.
//! Why the difference: an example directory may come from someone else, and pointing
//! its `bindings` at another deployment's bindings file would make its agent's effects
//! land in that deployment's ledgers, and its `input` at a JSON file elsewhere would copy
//! that file into the journal, where the agent reads it. An agent module or a policy
//! elsewhere gives a crafted manifest nothing it could not ship itself: each is only
//! read, must load as a Wasm module or validate as a policy, and is stored in the
//! journal for anyone to see. (The shipped example builds its agent under the
//! workspace's `target/` and shares `policies/` with the tests.) The check is made when
//! the manifest is read, through a capability for the directory (see
//! [`crate::confine`]); the files a bindings file names are confined on their own.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::confine::{Confinement, OutsideReason};

/// The file name of a manifest inside an example directory.
pub const MANIFEST_FILE: &str = "warden.toml";

/// The fields of a manifest.
const FIELDS: &[&str] = &["agent", "build", "policy", "bindings", "input"];

/// A parsed manifest, with paths resolved against its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The agent module.
    pub agent: PathBuf,
    /// The command that builds the agent. Advisory: Warden never runs it; it is shown
    /// when the module is missing (by `warden run` and `warden check`).
    pub build: Option<String>,
    /// The policy file.
    pub policy: PathBuf,
    /// The bindings file, if the policy needs tools or models.
    pub bindings: Option<PathBuf>,
    /// The default input file.
    pub input: Option<PathBuf>,
}

/// A manifest checked whole (what `warden check` reads): the manifest if its fields could
/// be read, where each field is written, and every problem found.
#[derive(Debug)]
pub struct ManifestInspection {
    /// The manifest file.
    pub path: PathBuf,
    /// The manifest, when `agent` and `policy` could be read (even if a file it names is
    /// missing: the problems say so).
    pub manifest: Option<Manifest>,
    /// 1-based line and column of each field's value, by field name.
    pub places: BTreeMap<&'static str, (usize, usize)>,
    /// Every problem, in the order of the file.
    pub problems: Vec<ManifestError>,
}

/// Why a manifest cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The manifest could not be read.
    #[error("cannot read example manifest {path}: {source}")]
    Io {
        /// The manifest file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The manifest is not valid TOML.
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        /// The manifest file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// toml's message.
        message: String,
    },
    /// A field is unknown, missing or of the wrong type.
    #[error("{}:{line}:{column}: {field}: {problem}", manifest.display())]
    Field {
        /// The manifest file.
        manifest: PathBuf,
        /// 1-based line (1 for a missing field).
        line: usize,
        /// 1-based column.
        column: usize,
        /// The field.
        field: String,
        /// What is wrong, and how to fix it.
        problem: String,
    },
    /// The manifest's `bindings` or `input` leaves the example directory, and the
    /// operator did not allow that.
    #[error("{manifest}:{line}:{column}: {field}: {file:?} {reason}, outside the example directory {dir}; an example's bindings and input must be inside it, unless the operator allows others (`warden run --allow-paths-outside-bindings-dir`)", manifest = manifest.display(), dir = crate::confine::describe_dir(manifest.parent().unwrap_or(Path::new(""))))]
    PathOutside {
        /// The manifest.
        manifest: PathBuf,
        /// 1-based line of the offending value.
        line: usize,
        /// 1-based column of the offending value.
        column: usize,
        /// `bindings` or `input`.
        field: &'static str,
        /// The path as written (relative to the manifest's directory, the example's).
        file: String,
        /// How it leaves it.
        reason: OutsideReason,
    },
    /// The example directory could not be opened.
    #[error("cannot open example directory {}: {source}", dir.display())]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The agent module named by the manifest does not exist yet.
    #[error("{}:{line}:{column}: agent: agent module {} does not exist; {}", manifest.display(), agent.display(), build.as_ref().map_or_else(|| "build it, or correct the path (relative to the example directory)".to_string(), |b| format!("build it with: {b}")))]
    AgentMissing {
        /// The module path.
        agent: PathBuf,
        /// The manifest.
        manifest: PathBuf,
        /// 1-based line of the `agent` value.
        line: usize,
        /// 1-based column of the `agent` value.
        column: usize,
        /// The build command (`build`).
        build: Option<String>,
    },
    /// A file the manifest names (`policy`, `bindings`, `input`) does not exist, or a path
    /// it names (these or `agent`) is not a regular file.
    #[error("{}:{line}:{column}: {field}: {} {what}; correct the path (relative to the example directory)", manifest.display(), path.display())]
    NotFound {
        /// The manifest.
        manifest: PathBuf,
        /// 1-based line of the value.
        line: usize,
        /// 1-based column of the value.
        column: usize,
        /// `agent`, `policy`, `bindings` or `input`.
        field: &'static str,
        /// The path, resolved against the example directory.
        path: PathBuf,
        /// What is wrong with it: "does not exist", "is a directory, not a file", ...
        what: &'static str,
    },
}

/// What keeps `path` from being read as a file, if anything: it is missing, a directory,
/// or not a regular file (a FIFO, socket or device).
fn not_a_file(path: &Path) -> Option<&'static str> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => None,
        Ok(meta) if meta.is_dir() => Some("is a directory, not a file"),
        Ok(_) => Some("is not a regular file (a FIFO, socket or device)"),
        Err(_) => Some("does not exist"),
    }
}

impl ManifestError {
    /// The 1-based line and column this error points at (0 where it has none).
    pub fn place(&self) -> (usize, usize) {
        match self {
            ManifestError::Invalid { line, column, .. }
            | ManifestError::Field { line, column, .. }
            | ManifestError::PathOutside { line, column, .. }
            | ManifestError::AgentMissing { line, column, .. }
            | ManifestError::NotFound { line, column, .. } => (*line, *column),
            ManifestError::Io { .. } | ManifestError::Dir { .. } => (0, 0),
        }
    }
}

impl Manifest {
    /// Reads `dir/warden.toml`, keeping its `bindings` and `input` inside `dir`.
    ///
    /// # Errors
    /// [`ManifestError`] naming the file, line and field.
    pub fn from_dir(dir: &Path) -> Result<Manifest, ManifestError> {
        Manifest::from_dir_with(dir, false)
    }

    /// Reads `dir/warden.toml`; with `allow_outside` (the operator's choice), its
    /// `bindings` and `input` may be outside `dir`.
    ///
    /// # Errors
    /// [`ManifestError`] naming the file, line and field (the first problem; `warden
    /// check` lists them all); [`ManifestError::PathOutside`] for a path that leaves `dir`
    /// unless allowed; [`ManifestError::AgentMissing`] when the agent is not built.
    pub fn from_dir_with(dir: &Path, allow_outside: bool) -> Result<Manifest, ManifestError> {
        let mut inspection = inspect(dir, allow_outside, false);
        if !inspection.problems.is_empty() {
            return Err(inspection.problems.remove(0));
        }
        inspection.manifest.ok_or_else(|| ManifestError::Field {
            manifest: inspection.path,
            line: 1,
            column: 1,
            field: String::new(),
            problem: "the manifest could not be read".into(),
        })
    }

    /// Checks `dir/warden.toml` whole: every unknown, missing or wrongly typed field, every
    /// path that leaves the directory (unless `allow_outside`), and every file it names
    /// that does not exist (the agent's problem says how to build it). Reads nothing but
    /// the manifest and the metadata of the files it names.
    pub fn inspect(dir: &Path, allow_outside: bool) -> ManifestInspection {
        inspect(dir, allow_outside, true)
    }
}

/// The manifest as written: each field's value and where it is.
#[derive(Default)]
struct Raw {
    agent: Option<Spanned<String>>,
    build: Option<Spanned<String>>,
    policy: Option<Spanned<String>>,
    bindings: Option<Spanned<String>>,
    input: Option<Spanned<String>>,
}

fn inspect(dir: &Path, allow_outside: bool, every_file: bool) -> ManifestInspection {
    let path = dir.join(MANIFEST_FILE);
    let mut inspection = ManifestInspection {
        path: path.clone(),
        manifest: None,
        places: BTreeMap::new(),
        problems: Vec::new(),
    };
    let text = match crate::confine::read_file_to_string(&path) {
        Ok(text) => text,
        Err(source) => {
            inspection.problems.push(ManifestError::Io { path, source });
            return inspection;
        }
    };
    let place = |span: &Range<usize>| {
        let before = text.get(..span.start).unwrap_or("");
        (
            before.matches('\n').count() + 1,
            before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1,
        )
    };
    let (document, errors) = DeTable::parse_recoverable(&text);
    if !errors.is_empty() {
        for error in errors {
            let (line, column) = place(&error.span().unwrap_or(0..0));
            inspection.problems.push(ManifestError::Invalid {
                path: path.clone(),
                line,
                column,
                message: error.message().trim_end().to_string(),
            });
        }
        return inspection;
    }
    let field_error = |span: &Range<usize>, field: &str, problem: String| {
        let (line, column) = place(span);
        ManifestError::Field {
            manifest: path.clone(),
            line,
            column,
            field: field.to_string(),
            problem,
        }
    };
    let mut raw = Raw::default();
    for (key, value) in document.get_ref().iter() {
        let field = key.get_ref().as_ref();
        let slot = match field {
            "agent" => &mut raw.agent,
            "build" => &mut raw.build,
            "policy" => &mut raw.policy,
            "bindings" => &mut raw.bindings,
            "input" => &mut raw.input,
            other => {
                inspection.problems.push(field_error(
                    &key.span(),
                    other,
                    format!(
                        "unknown field `{other}`; remove it or correct its spelling (a manifest has {})",
                        FIELDS.join(", ")
                    ),
                ));
                continue;
            }
        };
        match value.get_ref() {
            DeValue::String(text) => {
                *slot = Some(Spanned::new(value.span(), text.to_string()));
            }
            _ => inspection.problems.push(field_error(
                &value.span(),
                field,
                "expected a string in quotes (a path relative to the example directory, or the build command)".into(),
            )),
        }
    }
    for (field, value) in [
        ("agent", &raw.agent),
        ("build", &raw.build),
        ("policy", &raw.policy),
        ("bindings", &raw.bindings),
        ("input", &raw.input),
    ] {
        if let Some(value) = value {
            inspection.places.insert(field, place(&value.span()));
        }
    }
    for (field, value, example) in [
        (
            "agent",
            &raw.agent,
            "agent = \"target/wasm32-unknown-unknown/release/my_agent.wasm\"",
        ),
        ("policy", &raw.policy, "policy = \"policy.toml\""),
    ] {
        if value.is_none() && document.get_ref().get(field).is_none() {
            inspection.problems.push(field_error(
                &(0..0),
                field,
                format!("required field is missing; add {example}"),
            ));
        }
    }
    let confined = match Confinement::new(dir, allow_outside) {
        Ok(confined) => confined,
        Err(source) => {
            inspection.problems.push(ManifestError::Dir {
                dir: dir.to_path_buf(),
                source,
            });
            return inspection;
        }
    };
    for (field, value) in [("bindings", &raw.bindings), ("input", &raw.input)] {
        let Some(value) = value else { continue };
        if let Err(reason) = confined.check(value.get_ref()) {
            let (line, column) = place(&value.span());
            inspection.problems.push(ManifestError::PathOutside {
                manifest: path.clone(),
                line,
                column,
                field,
                file: value.get_ref().clone(),
                reason,
            });
        }
    }
    let (Some(agent), Some(policy)) = (&raw.agent, &raw.policy) else {
        return inspection;
    };
    let manifest = Manifest {
        agent: dir.join(agent.get_ref()),
        build: raw.build.as_ref().map(|b| b.get_ref().clone()),
        policy: dir.join(policy.get_ref()),
        bindings: raw.bindings.as_ref().map(|b| dir.join(b.get_ref())),
        input: raw.input.as_ref().map(|i| dir.join(i.get_ref())),
    };
    if !manifest.agent.exists() {
        let (line, column) = place(&agent.span());
        inspection.problems.push(ManifestError::AgentMissing {
            agent: manifest.agent.clone(),
            manifest: path.clone(),
            line,
            column,
            build: manifest.build.clone(),
        });
    } else if let Some(what) = not_a_file(&manifest.agent) {
        let (line, column) = place(&agent.span());
        inspection.problems.push(ManifestError::NotFound {
            manifest: path.clone(),
            line,
            column,
            field: "agent",
            path: manifest.agent.clone(),
            what,
        });
    }
    if every_file {
        let files = [
            ("policy", Some(policy), Some(&manifest.policy)),
            (
                "bindings",
                raw.bindings.as_ref(),
                manifest.bindings.as_ref(),
            ),
            ("input", raw.input.as_ref(), manifest.input.as_ref()),
        ];
        let outside: Vec<&'static str> = inspection
            .problems
            .iter()
            .filter_map(|p| match p {
                ManifestError::PathOutside { field, .. } => Some(*field),
                _ => None,
            })
            .collect();
        for (field, value, resolved) in files {
            let (Some(value), Some(resolved)) = (value, resolved) else {
                continue;
            };
            if outside.contains(&field) {
                continue;
            }
            if let Some(what) = not_a_file(resolved) {
                let (line, column) = place(&value.span());
                inspection.problems.push(ManifestError::NotFound {
                    manifest: path.clone(),
                    line,
                    column,
                    field,
                    path: resolved.clone(),
                    what,
                });
            }
        }
    }
    inspection.problems.sort_by_key(ManifestError::place);
    inspection.manifest = Some(manifest);
    inspection
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An example directory `example/` inside `root` with the given manifest lines, an
    /// agent module and a policy outside it (as the shipped example has), a bindings file
    /// and an input inside it, and a secret beside it.
    fn example(root: &Path, lines: &str) -> PathBuf {
        let dir = root.join("example");
        std::fs::create_dir_all(dir.join("applications")).expect("mkdir");
        std::fs::create_dir_all(root.join("target")).expect("mkdir");
        std::fs::write(root.join("target/agent.wasm"), b"\0asm").expect("write");
        std::fs::write(root.join("policy.toml"), "").expect("write");
        std::fs::write(root.join("secret.json"), "{}").expect("write");
        std::fs::write(dir.join("bindings.toml"), "").expect("write");
        std::fs::write(dir.join("applications/a.json"), "{}").expect("write");
        std::fs::write(
            dir.join(MANIFEST_FILE),
            format!("agent = \"../target/agent.wasm\"\npolicy = \"../policy.toml\"\n{lines}"),
        )
        .expect("write");
        dir
    }

    #[test]
    fn agent_and_policy_may_be_anywhere_bindings_and_input_inside() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = example(
            root.path(),
            "bindings = \"bindings.toml\"\ninput = \"applications/a.json\"\n",
        );
        let manifest = Manifest::from_dir(&dir).expect("loads");
        assert_eq!(manifest.agent, dir.join("../target/agent.wasm"));
        assert_eq!(manifest.bindings, Some(dir.join("bindings.toml")));
        assert_eq!(manifest.input, Some(dir.join("applications/a.json")));
    }

    /// A path to a directory (or a FIFO) where a file belongs is named by its line in the
    /// manifest, as a missing file is.
    #[test]
    fn a_directory_where_a_file_belongs_is_named_by_its_line() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = example(
            root.path(),
            "bindings = \"bindings.toml\"\ninput = \"applications\"\n",
        );
        let inspection = Manifest::inspect(&dir, false);
        let said: Vec<String> = inspection
            .problems
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(
            said[0].ends_with(
                "warden.toml:4:9: input: {}/applications is a directory, not a file; correct the path (relative to the example directory)"
                    .replace("{}", &dir.display().to_string())
                    .as_str()
            ),
            "{said:?}"
        );
        std::fs::write(
            dir.join(MANIFEST_FILE),
            "agent = \"applications\"\npolicy = \"../policy.toml\"\n",
        )
        .expect("write");
        let error = Manifest::from_dir(&dir).expect_err("a directory is no agent");
        assert_eq!(error.place(), (1, 9), "{error}");
        assert!(error.to_string().contains("agent: "), "{error}");
    }

    /// Regression (paths escape): an example's manifest could point its bindings at
    /// another deployment's bindings (so its effects at their ledgers), and its input at
    /// any JSON file (copied into the journal).
    #[test]
    fn bindings_or_input_outside_the_example_are_refused_naming_the_field() {
        let root = tempfile::tempdir().expect("tempdir");
        example(root.path(), "");
        let secret = root.path().join("secret.json");
        let mut cases = vec![
            (
                "bindings",
                "../elsewhere/bindings.toml".to_string(),
                OutsideReason::ClimbsOut,
            ),
            (
                "input",
                secret.display().to_string(),
                OutsideReason::Absolute,
            ),
        ];
        #[cfg(unix)]
        {
            let link = root.path().join("example/link.json");
            std::os::unix::fs::symlink("../secret.json", &link).expect("symlink");
            let target = secret.canonicalize().expect("canonical");
            cases.push((
                "input",
                "link.json".to_string(),
                OutsideReason::Symlink { target },
            ));
        }
        for (field, file, expected) in cases {
            let dir = example(root.path(), &format!("{field} = {file:?}\n"));
            let error = Manifest::from_dir(&dir).expect_err("outside");
            match &error {
                ManifestError::PathOutside {
                    field: named,
                    file: written,
                    line: 3,
                    column,
                    reason,
                    ..
                } => {
                    assert_eq!((*named, written, reason), (field, &file, &expected));
                    assert_eq!(*column, field.len() + 4);
                }
                other => panic!("{field} = {file}: {other:?}"),
            }
            let message = error.to_string();
            assert!(
                message.contains(&format!("warden.toml:3:{}: {field}", field.len() + 4))
                    && message.contains("--allow-paths-outside-bindings-dir"),
                "{message}"
            );
            let allowed = Manifest::from_dir_with(&dir, true).expect("the operator allows it");
            let path = if field == "input" {
                allowed.input
            } else {
                allowed.bindings
            };
            assert_eq!(path, Some(dir.join(&file)));
        }
    }

    /// The shipped example's agent and policy are outside its directory (the workspace's
    /// `target/` and `policies/`): the rule must let them be.
    #[test]
    fn the_shipped_example_is_within_the_rule() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/loan-underwriting");
        match Manifest::from_dir(&dir) {
            Ok(manifest) => assert!(manifest.bindings.is_some() && manifest.input.is_some()),
            // The agent is built by `./x demo`, not by the unit tests.
            Err(ManifestError::AgentMissing { .. }) => {}
            Err(other) => panic!("{other}"),
        }
    }
}
