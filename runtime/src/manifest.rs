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

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::confine::{Confinement, OutsideReason};

/// The file name of a manifest inside an example directory.
pub const MANIFEST_FILE: &str = "warden.toml";

/// A parsed manifest, with paths resolved against its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The agent module.
    pub agent: PathBuf,
    /// The command that builds the agent, shown when the module is missing.
    pub build: Option<String>,
    /// The policy file.
    pub policy: PathBuf,
    /// The bindings file, if the policy needs tools or models.
    pub bindings: Option<PathBuf>,
    /// The default input file.
    pub input: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    agent: String,
    build: Option<String>,
    policy: String,
    bindings: Option<Spanned<String>>,
    input: Option<Spanned<String>>,
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
    /// The manifest is not valid.
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
    #[error("agent module {agent} (named in {manifest}) does not exist{}", build.as_ref().map(|b| format!("; build it with: {b}")).unwrap_or_default())]
    AgentMissing {
        /// The module path.
        agent: PathBuf,
        /// The manifest.
        manifest: PathBuf,
        /// The build command.
        build: Option<String>,
    },
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
    /// [`ManifestError`] naming the file, line and field;
    /// [`ManifestError::PathOutside`] for a path that leaves `dir` unless allowed.
    pub fn from_dir_with(dir: &Path, allow_outside: bool) -> Result<Manifest, ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ManifestError::Io {
            path: path.clone(),
            source,
        })?;
        let place = |offset: usize| {
            let before = text.get(..offset).unwrap_or("");
            (
                before.matches('\n').count() + 1,
                before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1,
            )
        };
        let raw: Raw = toml::from_str(&text).map_err(|e| {
            let (line, column) = place(e.span().map_or(0, |s| s.start));
            ManifestError::Invalid {
                path: path.clone(),
                line,
                column,
                message: e.message().to_string(),
            }
        })?;
        let confined =
            Confinement::new(dir, allow_outside).map_err(|source| ManifestError::Dir {
                dir: dir.to_path_buf(),
                source,
            })?;
        for (field, value) in [("bindings", &raw.bindings), ("input", &raw.input)] {
            let Some(value) = value else { continue };
            if let Err(reason) = confined.check(value.get_ref()) {
                let (line, column) = place(value.span().start);
                return Err(ManifestError::PathOutside {
                    manifest: path,
                    line,
                    column,
                    field,
                    file: value.get_ref().clone(),
                    reason,
                });
            }
        }
        let manifest = Manifest {
            agent: dir.join(raw.agent),
            build: raw.build,
            policy: dir.join(raw.policy),
            bindings: raw.bindings.map(|b| dir.join(b.into_inner())),
            input: raw.input.map(|i| dir.join(i.into_inner())),
        };
        if !manifest.agent.exists() {
            return Err(ManifestError::AgentMissing {
                agent: manifest.agent,
                manifest: path,
                build: manifest.build,
            });
        }
        Ok(manifest)
    }
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
