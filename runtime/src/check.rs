//! Checking a deployment before running it (`warden check`): one pass over an example
//! directory's `warden.toml`, its policy, bindings, model cards, fixtures, agent module and
//! input that reports every problem at once, each with its file, line, field and a fix,
//! and the problems *between* files that no single file shows (a capability without a
//! binding, a feature the policy reconciles that the card does not score, a fixture looked
//! up by an argument the policy does not tie to the input).
//!
//! Invariant: checking changes nothing in the deployment. Ledgers are inspected, never
//! created or opened for appending ([`LedgerMode::Inspect`]); the agent is loaded
//! (validated and compiled, as a run would) but never instantiated.

mod contract;
mod cross;
mod locate;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::agent::{Agent, LoadError, WasiImports};
use crate::bindings::{BindingEntry, Bindings, BindingsError, LedgerMode, LoadOptions};
use crate::manifest::{Manifest, ManifestError};
use crate::policy::{Policy, PolicyError};

/// What to check, as a caller names it: an example directory, or files, or both (a file
/// given overrides the directory's).
#[derive(Debug, Clone, Default)]
pub struct CheckSpec {
    /// An example directory holding a `warden.toml`, or an agent module.
    pub target: Option<PathBuf>,
    /// The agent module (`.wasm` or `.wat`); overrides the manifest's.
    pub agent: Option<PathBuf>,
    /// The policy; overrides the manifest's.
    pub policy: Option<PathBuf>,
    /// The bindings; overrides the manifest's.
    pub bindings: Option<PathBuf>,
    /// The input (JSON); overrides the manifest's.
    pub input: Option<PathBuf>,
    /// As [`crate::RunSpec::allow_paths_outside`]: the operator lets the bindings and the
    /// manifest name files outside their directories.
    pub allow_paths_outside: bool,
}

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// `warden run` would refuse this deployment, or a run of it would fail.
    Error,
    /// Probably a mistake, but a run may work (a binding no policy uses, say).
    Warning,
}

/// Which check found a problem: the file kind it is in, or the two files that disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// The example's `warden.toml`.
    Manifest,
    /// The policy file.
    Policy,
    /// The bindings file.
    Bindings,
    /// A model card a binding names.
    Card,
    /// A fixture a binding names.
    Fixture,
    /// A ledger a binding names.
    Ledger,
    /// The agent module.
    Agent,
    /// The input.
    Input,
    /// The input breaks the policy's input contract (`[input] schema`).
    InputContract,
    /// A tool or model the policy declares that nothing binds.
    Unbound,
    /// A binding the policy does not use.
    Unused,
    /// A model's features: the policy's and the card's disagree.
    Features,
    /// A gate's label the card gives no probability for.
    Label,
    /// A fixture's `key`, the policy's sources and the records or input disagree.
    FixtureKey,
    /// A reference of the policy's feature provenance the input or a fixture lacks.
    Provenance,
    /// Nothing to check (no policy given, say).
    Usage,
}

/// One problem: where it is, what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// Which check found it.
    pub kind: CheckKind,
    /// The file it is in, as the caller named it (joined with the directory).
    pub file: String,
    /// 1-based line; 0 when the file has no lines (a Wasm module) or the problem none.
    pub line: usize,
    /// 1-based column; 0 when unknown.
    pub column: usize,
    /// Dotted path of the field (`tools.credit_bureau.key`, `gates[0].label`,
    /// `features[2].name`, `imports.wasi_snapshot_preview1.fd_write`); empty for the file
    /// as a whole.
    pub field: String,
    /// What is wrong, and how to fix it.
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.column > 0 {
                write!(f, ":{}", self.column)?;
            }
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The files a check read, as resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckedFiles {
    /// The example's `warden.toml`.
    pub manifest: Option<String>,
    /// The agent module.
    pub agent: Option<String>,
    /// The manifest's `build` command (advisory: Warden never runs it).
    pub build: Option<String>,
    /// The policy.
    pub policy: Option<String>,
    /// The bindings.
    pub bindings: Option<String>,
    /// The input.
    pub input: Option<String>,
}

/// What a check found. Serialized as `warden check --json` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// The files checked.
    pub files: CheckedFiles,
    /// Every problem, grouped by file (in the order the files were checked) and sorted by
    /// position within each.
    pub findings: Vec<Finding>,
}

impl CheckReport {
    /// The number of findings of `severity`.
    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    /// Whether the deployment passes: no error, and, when `strict`, no warning either.
    pub fn passes(&self, strict: bool) -> bool {
        self.findings
            .iter()
            .all(|f| f.severity == Severity::Warning && !strict)
    }
}

/// Checks everything `spec` names, reporting every problem found. Never fails: a file
/// that cannot be read is a finding.
pub fn check(spec: &CheckSpec) -> CheckReport {
    let mut report = Report::default();
    let (dir, target_agent) = match &spec.target {
        Some(target) if target.is_dir() => (Some(target.as_path()), None),
        Some(target) => (None, Some(target.clone())),
        None => (None, None),
    };
    let (manifest, refused) = match dir {
        Some(dir) => report.manifest(dir, spec.allow_paths_outside, spec),
        None => (None, Vec::new()),
    };
    let agent = spec
        .agent
        .clone()
        .or(target_agent)
        .or_else(|| manifest.as_ref().map(|m| m.agent.clone()));
    let policy = spec
        .policy
        .clone()
        .or_else(|| manifest.as_ref().map(|m| m.policy.clone()));
    let bindings = spec
        .bindings
        .clone()
        .or_else(|| manifest.as_ref().and_then(|m| m.bindings.clone()));
    let input = spec
        .input
        .clone()
        .or_else(|| manifest.as_ref().and_then(|m| m.input.clone()));
    // Findings are listed file by file in this order, then cards and fixtures as the
    // bindings name them, then the agent and the input.
    for file in [&policy, &bindings].into_iter().flatten() {
        report.register(display(file));
    }
    report.files = CheckedFiles {
        manifest: dir.map(|d| display(&d.join(crate::manifest::MANIFEST_FILE))),
        agent: agent.as_deref().map(display),
        build: manifest.as_ref().and_then(|m| m.build.clone()),
        policy: policy.as_deref().map(display),
        bindings: bindings.as_deref().map(display),
        input: input.as_deref().map(display),
    };
    // A file of the manifest's that is missing, or outside the directory and not allowed
    // there, was reported with its line: it is not read (so a crafted manifest cannot make
    // a check read a file a run would refuse), and saying it again would repeat that.
    let reported =
        |field: &str, given: &Option<PathBuf>| given.is_none() && refused.contains(&field);
    let policy = match &policy {
        Some(path) if !reported("policy", &spec.policy) => report.policy(path),
        Some(_) => None,
        None => {
            report.push(Finding {
                severity: Severity::Error,
                kind: CheckKind::Usage,
                file: spec
                    .target
                    .as_deref()
                    .map_or_else(|| "(no file)".into(), display),
                line: 0,
                column: 0,
                field: String::new(),
                message: "no policy to check against: give --policy, or an example directory whose warden.toml names one".into(),
            });
            None
        }
    };
    let options = LoadOptions {
        allow_outside: spec.allow_paths_outside,
        ledgers: LedgerMode::Inspect,
    };
    let inspection = match &bindings {
        Some(path) if !reported("bindings", &spec.bindings) => {
            let inspection = Bindings::inspect(path, &options);
            report.bindings(path, &inspection.entries, &inspection.problems);
            Some(inspection)
        }
        _ => None,
    };
    for file in [&agent, &input].into_iter().flatten() {
        report.register(display(file));
    }
    match &agent {
        Some(path) if !reported("agent", &spec.agent) => {
            // A WASI guest is checked against the policy that would admit it; without
            // a policy that could be read, its WASI imports are not held against it.
            let wasi = policy
                .as_ref()
                .map_or(WasiImports::Admitted, |(policy, _, _)| {
                    WasiImports::of(policy)
                });
            report.agent(path, wasi);
        }
        _ => {}
    }
    let input_value = match &input {
        Some(path) if !reported("input", &spec.input) => report.input(path),
        _ => None,
    };
    if let Some((policy, text, path)) = &policy {
        let empty = Bindings::empty();
        let (bound, entries, bindings_path) = match &inspection {
            Some(inspection) => (
                &inspection.bindings,
                inspection.entries.as_slice(),
                bindings.as_deref(),
            ),
            None => (&empty, &[][..], None),
        };
        // A bindings file that could not be read at all (not TOML, say) was reported; that
        // it binds nothing is its consequence, not another problem.
        let bindings_read = match (&inspection, &bindings) {
            (Some(inspection), _) => {
                !inspection.entries.is_empty() || inspection.problems.is_empty()
            }
            (None, Some(_)) => false,
            (None, None) => true,
        };
        let context = cross::Context {
            policy,
            policy_text: text,
            policy_path: path,
            bindings: bound,
            entries,
            bindings_path,
            bindings_read,
            input: input_value.as_ref().map(|(v, _)| v).zip(input.as_deref()),
        };
        for finding in cross::check(&context) {
            report.push(finding);
        }
        if let (Some((value, text)), Some(path)) = (&input_value, input.as_deref()) {
            for finding in contract::check(policy, value, text, path) {
                report.push(finding);
            }
            for finding in contract::bounds(policy, value, path) {
                report.push(finding);
            }
        }
    }
    report.finish()
}

/// The findings so far, and the files in the order they were first named.
#[derive(Default)]
struct Report {
    files: CheckedFiles,
    findings: Vec<Finding>,
    order: Vec<String>,
}

impl Report {
    fn push(&mut self, finding: Finding) {
        self.register(finding.file.clone());
        self.findings.push(finding);
    }

    /// Ranks `file` after those registered before it.
    fn register(&mut self, file: String) {
        if !self.order.contains(&file) {
            self.order.push(file);
        }
    }

    fn error(
        &mut self,
        kind: CheckKind,
        file: &Path,
        place: (usize, usize),
        field: &str,
        message: String,
    ) {
        self.push(Finding {
            severity: Severity::Error,
            kind,
            file: display(file),
            line: place.0,
            column: place.1,
            field: field.to_string(),
            message,
        });
    }

    fn finish(mut self) -> CheckReport {
        let order = self.order;
        let rank = |file: &str| order.iter().position(|f| f == file).unwrap_or(usize::MAX);
        self.findings
            .sort_by_key(|f| (rank(&f.file), f.line, f.column));
        self.findings.dedup();
        CheckReport {
            files: self.files,
            findings: self.findings,
        }
    }

    /// The manifest, and the fields whose file it refused (missing, or outside the
    /// directory).
    fn manifest(
        &mut self,
        dir: &Path,
        allow_outside: bool,
        spec: &CheckSpec,
    ) -> (Option<Manifest>, Vec<&'static str>) {
        let inspection = Manifest::inspect(dir, allow_outside);
        // A file the caller names instead of the manifest's is checked; the manifest's
        // own is not used, so its absence is no problem.
        let overridden = |problem: &ManifestError| match problem {
            ManifestError::AgentMissing { .. } => spec.agent.is_some(),
            ManifestError::NotFound { field, .. } => match *field {
                "agent" => spec.agent.is_some(),
                "policy" => spec.policy.is_some(),
                "bindings" => spec.bindings.is_some(),
                _ => spec.input.is_some(),
            },
            _ => false,
        };
        for problem in inspection.problems.iter().filter(|p| !overridden(p)) {
            let (field, message) = manifest_parts(problem);
            self.error(
                CheckKind::Manifest,
                &inspection.path,
                problem.place(),
                &field,
                message,
            );
        }
        let refused = inspection
            .problems
            .iter()
            .filter_map(|p| match p {
                ManifestError::AgentMissing { .. } => Some("agent"),
                ManifestError::NotFound { field, .. }
                | ManifestError::PathOutside { field, .. } => Some(*field),
                _ => None,
            })
            .collect();
        (inspection.manifest, refused)
    }

    fn policy(&mut self, path: &Path) -> Option<(Policy, String, PathBuf)> {
        match Policy::from_file_with_text(path) {
            Ok((policy, text)) => Some((policy, text, path.to_path_buf())),
            Err(PolicyError::Invalid { diagnostics }) => {
                for d in diagnostics {
                    self.push(Finding {
                        severity: Severity::Error,
                        kind: CheckKind::Policy,
                        file: d.file,
                        line: d.line,
                        column: d.column,
                        field: d.field,
                        message: d.problem.to_string(),
                    });
                }
                None
            }
            Err(PolicyError::Io { source, .. }) => {
                self.error(
                    CheckKind::Policy,
                    path,
                    (0, 0),
                    "",
                    format!("cannot read the policy: {source}"),
                );
                None
            }
        }
    }

    fn bindings(&mut self, path: &Path, entries: &[BindingEntry], problems: &[BindingsError]) {
        let dir = path.parent().unwrap_or(Path::new(""));
        // Which entry names a file tells whether a problem in it is a card's or a fixture's.
        let kind_of = |file: &Path| {
            if file == path {
                return CheckKind::Bindings;
            }
            entries
                .iter()
                .find(|e| {
                    [&e.file, &e.card]
                        .into_iter()
                        .flatten()
                        .any(|f| dir.join(f) == file)
                })
                .map_or(CheckKind::Bindings, |e| {
                    match (e.section, e.provider.as_deref()) {
                        ("models", _) => CheckKind::Card,
                        (_, Some("ledger")) => CheckKind::Ledger,
                        _ => CheckKind::Fixture,
                    }
                })
        };
        for problem in problems.iter().flat_map(|p| p.problems()) {
            let (file, line, column) = problem.place();
            let file = file.unwrap_or(path);
            let (field, message) = bindings_parts(problem);
            let kind = match problem {
                BindingsError::Ledger { .. }
                | BindingsError::NotALedger { .. }
                | BindingsError::LedgerOpen { .. }
                | BindingsError::LedgerMissing { .. } => CheckKind::Ledger,
                _ => kind_of(file),
            };
            self.error(kind, file, (line, column), &field, message);
        }
    }

    fn agent(&mut self, path: &Path, wasi: WasiImports) {
        if let Err(error) = Agent::from_file_with(path, wasi) {
            let field = match &error {
                LoadError::ForbiddenImport { module, name, .. } => {
                    format!("imports.{module}.{name}")
                }
                LoadError::ImportSignature { .. } => "imports.warden.host_call".into(),
                LoadError::WasiSignature { name, .. } => {
                    format!("imports.{}.{name}", crate::agent::WASI_MODULE)
                }
                LoadError::Export { .. } | LoadError::EntryPoint(_) => "exports".into(),
                LoadError::StartFunction(_) => "start".into(),
                LoadError::UncheckpointableGlobal { global } => format!("globals[{global}]"),
                LoadError::UncheckpointableInstruction { function, .. } => {
                    format!("functions[{function}]")
                }
                LoadError::Io { .. }
                | LoadError::Text(_)
                | LoadError::Invalid(_)
                | LoadError::Engine(_) => String::new(),
            };
            let message = match &error {
                LoadError::Io { source, .. } => format!("cannot read the agent module: {source}"),
                other => other.to_string(),
            };
            self.error(CheckKind::Agent, path, (0, 0), &field, message);
        }
    }

    /// The input, parsed, and its text.
    fn input(&mut self, path: &Path) -> Option<(serde_json::Value, String)> {
        let text = match crate::confine::read_file_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                self.error(
                    CheckKind::Input,
                    path,
                    (0, 0),
                    "",
                    format!("cannot read the input: {e}"),
                );
                return None;
            }
        };
        match serde_json::from_str(&text) {
            Ok(value) => {
                if let Some(key) = crate::host_call::duplicate_key(&text) {
                    self.error(
                        CheckKind::Input,
                        path,
                        (0, 0),
                        &key,
                        format!(
                            "key `{key}` appears twice in one object: a run would refuse this input (the agent, the gates and a reader of the journal could each take a different value)"
                        ),
                    );
                    return None;
                }
                Some((value, text))
            }
            Err(e) => {
                let message = e.to_string();
                let message = message
                    .split(" at line ")
                    .next()
                    .unwrap_or(&message)
                    .to_string();
                self.error(
                    CheckKind::Input,
                    path,
                    (e.line(), e.column()),
                    "",
                    format!("not valid JSON: {message}"),
                );
                None
            }
        }
    }
}

/// The field and the message of a manifest problem, without the position its `Display`
/// starts with.
fn manifest_parts(problem: &ManifestError) -> (String, String) {
    let text = problem.to_string();
    match problem {
        ManifestError::Field { field, problem, .. } => (field.clone(), problem.clone()),
        ManifestError::Invalid { message, .. } => {
            (String::new(), format!("not valid TOML: {message}"))
        }
        ManifestError::PathOutside { field, .. } | ManifestError::NotFound { field, .. } => {
            (field.to_string(), after(&text, &format!(": {field}: ")))
        }
        ManifestError::AgentMissing { .. } => ("agent".into(), after(&text, ": agent: ")),
        ManifestError::Io { .. } | ManifestError::Dir { .. } => (String::new(), text),
    }
}

/// The field and the message of a bindings problem, without the position its `Display`
/// starts with.
fn bindings_parts(problem: &BindingsError) -> (String, String) {
    let text = problem.to_string();
    match problem {
        BindingsError::Entry {
            section,
            name,
            field,
            problem,
            ..
        } => {
            let path = if field.is_empty() {
                format!("{section}.{name}")
            } else {
                format!("{section}.{name}.{field}")
            };
            (path, problem.clone())
        }
        BindingsError::Field { field, problem, .. } => (field.clone(), problem.clone()),
        BindingsError::Syntax { message, .. } => (String::new(), format!("not valid: {message}")),
        BindingsError::Fixture {
            record, problem, ..
        } => (
            serde_json::to_string(record).unwrap_or_else(|_| record.clone()),
            problem.clone(),
        ),
        BindingsError::EntryFile { section, name, .. } => {
            let field = format!("{section}.{name}.file");
            let message = after(&text, &format!("{field}: "));
            (field, message)
        }
        BindingsError::PathOutside(outside) => {
            let field = format!("{}.{}.{}", outside.section, outside.name, outside.field);
            let message = after(&text, &format!("{field}: "));
            (field, message)
        }
        BindingsError::LedgerMissing { tool, .. } => {
            let field = format!("tools.{tool}.file");
            let message = after(&text, &format!("{field}: "));
            (field, message)
        }
        BindingsError::CardName { .. } => ("name".into(), after(&text, ": name: ")),
        BindingsError::Ledger { problem, .. } | BindingsError::OnnxModel { problem, .. } => {
            (String::new(), problem.clone())
        }
        BindingsError::NotALedger { .. } => (
            String::new(),
            after(&text, ": not a ledger").replacen("", "not a ledger", 1),
        ),
        _ => (String::new(), text),
    }
}

/// The text after the first `marker`, or all of it.
fn after(text: &str, marker: &str) -> String {
    text.split_once(marker)
        .map_or_else(|| text.to_string(), |(_, rest)| rest.to_string())
}

/// A path as people read it.
fn display(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests;
