//! Example manifests: a directory whose `warden.toml` names an agent, its policy, its
//! bindings and a default input, so that `warden run examples/loan-underwriting` works.

use std::path::{Path, PathBuf};

use serde::Deserialize;

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
    bindings: Option<String>,
    input: Option<String>,
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
    /// Reads `dir/warden.toml`.
    ///
    /// # Errors
    /// [`ManifestError`] naming the file, line and field.
    pub fn from_dir(dir: &Path) -> Result<Manifest, ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ManifestError::Io {
            path: path.clone(),
            source,
        })?;
        let raw: Raw = toml::from_str(&text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            let before = text.get(..offset).unwrap_or("");
            ManifestError::Invalid {
                path: path.clone(),
                line: before.matches('\n').count() + 1,
                column: before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1,
                message: e.message().to_string(),
            }
        })?;
        let manifest = Manifest {
            agent: dir.join(raw.agent),
            build: raw.build,
            policy: dir.join(raw.policy),
            bindings: raw.bindings.map(|b| dir.join(b)),
            input: raw.input.map(|i| dir.join(i)),
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
