//! `warden new`: a working agent project, written from the templates in
//! `cli/templates/new/` (compiled into the binary), that builds and runs with two
//! commands.
//!
//! It never overwrites anything: the project directory must not exist or be empty, and
//! each file is created new. The guest SDK is not published, so the project depends on it
//! by path: the `guest-sdk` of the checkout this binary was built from, unless `--sdk`
//! names another.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::output::Usage;

/// The guest SDK of the checkout this binary was built from.
const BUILT_WITH_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-sdk");

/// Every file of a new project: its path in the project and its template. Templates may
/// use `{{name}}` (the project's name), `{{crate}}` (its crate name, `-` as `_`) and
/// `{{sdk}}` (the guest SDK's path, escaped for a TOML string).
const FILES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../templates/new/Cargo.toml.tmpl"),
    ),
    // The toolchain the SDK is built and tested with; it also installs the wasm target.
    (
        "rust-toolchain.toml",
        include_str!("../../../rust-toolchain.toml"),
    ),
    (".gitignore", include_str!("../../templates/new/gitignore")),
    ("README.md", include_str!("../../templates/new/README.md")),
    (
        "warden.toml",
        include_str!("../../templates/new/warden.toml"),
    ),
    (
        "policy.toml",
        include_str!("../../templates/new/policy.toml"),
    ),
    (
        "bindings.toml",
        include_str!("../../templates/new/bindings.toml"),
    ),
    (
        "fixtures/policy_register.json",
        include_str!("../../templates/new/fixtures/policy_register.json"),
    ),
    (
        "models/claim_risk.toml",
        include_str!("../../templates/new/models/claim_risk.toml"),
    ),
    ("src/lib.rs", include_str!("../../templates/new/src/lib.rs")),
    // Generates the agent's `State` enum from policy.toml (warden-guest-build).
    ("build.rs", include_str!("../../templates/new/build.rs")),
    (
        "inputs/01-approve.json",
        include_str!("../../templates/new/inputs/01-approve.json"),
    ),
    (
        "inputs/01-approve.expect.toml",
        include_str!("../../templates/new/inputs/01-approve.expect.toml"),
    ),
    (
        "inputs/02-lapsed-decline.json",
        include_str!("../../templates/new/inputs/02-lapsed-decline.json"),
    ),
    (
        "inputs/02-lapsed-decline.expect.toml",
        include_str!("../../templates/new/inputs/02-lapsed-decline.expect.toml"),
    ),
    (
        "inputs/03-gate-escalates.json",
        include_str!("../../templates/new/inputs/03-gate-escalates.json"),
    ),
    (
        "inputs/03-gate-escalates.expect.toml",
        include_str!("../../templates/new/inputs/03-gate-escalates.expect.toml"),
    ),
    (
        "inputs/04-invalid-amount.json",
        include_str!("../../templates/new/inputs/04-invalid-amount.json"),
    ),
    (
        "inputs/04-invalid-amount.expect.toml",
        include_str!("../../templates/new/inputs/04-invalid-amount.expect.toml"),
    ),
];

/// Names a project may not take: Rust's own crates and keywords, and the crates every
/// project depends on.
const RESERVED: &[&str] = &[
    "alloc",
    "core",
    "proc_macro",
    "std",
    "test",
    "self",
    "super",
    "crate",
    "warden_guest",
    "serde",
    "serde_json",
    "postcard",
];

/// Arguments of `warden new`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Creates a working agent project: a claims-triage agent (Rust, src/lib.rs) with its unit
tests on the SDK's stub host, its policy (policy.toml: states, one tool, one scorecard,
a confidence gate to a review state), bindings (a fixture and a scorecard model card),
four sample inputs with their expected outcomes (inputs/*.expect.toml) and a warden.toml.
Change it into your own agent; docs/authoring.md walks through it.

Then, in the project:
  cargo build --release --target wasm32-unknown-unknown
  warden run .
  warden test
  cargo test

The project depends on Warden's guest SDK by path (it is not published): by default the
guest-sdk directory of the checkout this warden was built from; --sdk (or
WARDEN_GUEST_SDK) names another. The path is written into the project's Cargo.toml.

Exit codes: 0 created; 2 the name is not usable, the directory is not empty, or the SDK
is not found.

Examples:
  warden new claims-triage
  warden new prior-auth --dir ~/agents/prior-auth --sdk ~/src/warden/guest-sdk")]
pub struct Args {
    /// The project's name, also its crate's and its policy's: lowercase letters, digits,
    /// `-` and `_`, starting with a letter.
    name: String,
    /// The directory to create (default: ./NAME). It must not exist, or be empty.
    #[arg(long, value_name = "PATH")]
    dir: Option<PathBuf>,
    /// The guest SDK to depend on: the guest-sdk directory of a Warden checkout
    /// (default: the one this warden was built from).
    #[arg(long, env = "WARDEN_GUEST_SDK", value_name = "PATH")]
    sdk: Option<PathBuf>,
}

/// Runs `warden new`.
pub fn run(args: &Args) -> anyhow::Result<u8> {
    check_name(&args.name)?;
    let sdk = find_sdk(args.sdk.as_deref())?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    prepare_dir(&dir)?;
    for (path, template) in FILES {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let text = render(template, &args.name, &sdk);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .and_then(|mut file| file.write_all(text.as_bytes()))
            .with_context(|| format!("cannot write {}", target.display()))?;
    }
    let shown = shell_word(&dir.display().to_string());
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "created {shown}: a claims-triage agent (src/lib.rs), its policy, bindings, model card, fixture, and 4 sample inputs with expectations"
    )?;
    writeln!(out, "guest SDK {}", sdk.display())?;
    writeln!(out)?;
    writeln!(out, "next:")?;
    writeln!(out, "  cd {shown}")?;
    writeln!(
        out,
        "  cargo build --release --target wasm32-unknown-unknown   # the agent, as a Wasm module"
    )?;
    writeln!(
        out,
        "  warden run .                                            # one claim, under the policy, journaled in ./warden.redb"
    )?;
    writeln!(
        out,
        "  warden test                                             # every sample input against its expectations"
    )?;
    writeln!(
        out,
        "  cargo test                                              # the agent's steps, natively, on the stub host"
    )?;
    writeln!(out, "guide: docs/authoring.md in the Warden repository")?;
    Ok(crate::output::exit::COMPLETED)
}

/// A name cargo and the policy accept, and no crate the project already uses.
fn check_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let well_formed = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 64;
    if !well_formed {
        return Err(Usage(format!(
            "project name {name:?}: use lowercase letters, digits, `-` and `_`, starting with a letter, at most 64 characters (e.g. claims-triage)"
        ))
        .into());
    }
    if RESERVED.contains(&name.replace('-', "_").as_str()) {
        return Err(Usage(format!(
            "project name {name:?} is taken by a crate the project needs (or by Rust); choose another"
        ))
        .into());
    }
    Ok(())
}

/// The guest SDK directory, absolute, checked to be warden-guest.
fn find_sdk(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let (path, origin) = match given {
        Some(path) => (path.to_path_buf(), "--sdk"),
        None => (
            PathBuf::from(BUILT_WITH_SDK),
            "the guest SDK this warden was built with",
        ),
    };
    let hint =
        "pass --sdk PATH (or set WARDEN_GUEST_SDK) to the guest-sdk directory of a Warden checkout";
    let sdk = path.canonicalize().map_err(|e| {
        Usage(format!(
            "{origin} is not at {}: {e}; {hint}",
            path.display()
        ))
    })?;
    let manifest = std::fs::read_to_string(sdk.join("Cargo.toml")).unwrap_or_default();
    if !manifest
        .lines()
        .any(|line| line.trim() == "name = \"warden-guest\"")
    {
        return Err(Usage(format!(
            "{origin} {} is not Warden's guest SDK (its Cargo.toml does not name the package warden-guest); {hint}",
            sdk.display()
        ))
        .into());
    }
    // The project's build.rs generates its states with the SDK's build-support crate,
    // which older SDKs do not have.
    let build_support =
        std::fs::read_to_string(sdk.join("build-support/Cargo.toml")).unwrap_or_default();
    if !build_support
        .lines()
        .any(|line| line.trim() == "name = \"warden-guest-build\"")
    {
        return Err(Usage(format!(
            "{origin} {} has no build-support/ (warden-guest-build, which generates the agent's states from its policy): it is older than this warden; {hint}",
            sdk.display()
        ))
        .into());
    }
    if sdk.to_str().is_none() {
        return Err(Usage(format!(
            "the guest SDK's path {} is not UTF-8, so Cargo.toml cannot name it; {hint}",
            sdk.display()
        ))
        .into());
    }
    Ok(sdk)
}

/// Creates `dir`, or accepts it if it is an empty directory.
fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Usage(format!(
                    "{} exists and is not empty: warden new writes only into a new or empty directory (choose another name or --dir)",
                    dir.display()
                ))
                .into());
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory || dir.is_file() => {
            Err(Usage(format!("{} exists and is not a directory", dir.display())).into())
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.display())),
    }
}

/// A template with its placeholders filled in.
fn render(template: &str, name: &str, sdk: &Path) -> String {
    // A JSON string is a TOML basic string: the same quotes and escapes.
    let sdk = serde_json::to_string(&sdk.display().to_string()).unwrap_or_default();
    let sdk = sdk.trim_matches('"');
    template
        .replace("{{name}}", name)
        .replace("{{crate}}", &name.replace('-', "_"))
        .replace("{{sdk}}", sdk)
}

/// `text` as one shell word, quoted if it needs to be, for the commands printed.
fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./~+@%:,=".contains(c));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_filled_and_every_toml_template_parses() {
        let sdk = Path::new("/opt/warden \"one\"/guest-sdk");
        for (path, template) in FILES {
            let text = render(template, "claims-triage", sdk);
            assert!(!text.contains("{{"), "{path} keeps a placeholder");
            if path.ends_with(".toml") {
                let parsed: Result<toml::Table, _> = toml::from_str(&text);
                assert!(parsed.is_ok(), "{path}: {parsed:?}");
            }
            if path.ends_with(".json") {
                let parsed: Result<serde_json::Value, _> = serde_json::from_str(&text);
                assert!(parsed.is_ok(), "{path}: {parsed:?}");
            }
        }
        let cargo = render(FILES[0].1, "claims-triage", sdk);
        let cargo: toml::Table = toml::from_str(&cargo).unwrap();
        assert_eq!(
            cargo["dependencies"]["warden-guest"]["path"].as_str(),
            Some("/opt/warden \"one\"/guest-sdk")
        );
        assert_eq!(
            cargo["build-dependencies"]["warden-guest-build"]["path"].as_str(),
            Some("/opt/warden \"one\"/guest-sdk/build-support")
        );
    }

    #[test]
    fn names_cargo_would_refuse_are_refused_before_anything_is_written() {
        for bad in [
            "",
            "Claims",
            "1claims",
            "claims triage",
            "std",
            "serde-json",
            "a/b",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for good in ["claims-triage", "prior_auth", "aml2"] {
            assert!(check_name(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn the_built_with_sdk_is_the_guest_sdk() {
        assert!(find_sdk(None).is_ok());
        let error = find_sdk(Some(Path::new(env!("CARGO_MANIFEST_DIR")))).unwrap_err();
        assert!(
            error.to_string().contains("is not Warden's guest SDK"),
            "{error}"
        );
    }

    #[test]
    fn an_sdk_without_build_support_is_refused_saying_it_is_older() {
        let old = tempfile::tempdir().unwrap();
        std::fs::write(
            old.path().join("Cargo.toml"),
            "[package]\nname = \"warden-guest\"\n",
        )
        .unwrap();
        let error = find_sdk(Some(old.path())).unwrap_err();
        assert!(
            error.to_string().contains("has no build-support/"),
            "{error}"
        );
    }

    #[test]
    fn printed_paths_are_one_shell_word() {
        assert_eq!(shell_word("claims-triage"), "claims-triage");
        assert_eq!(shell_word("my agents/x"), "'my agents/x'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
