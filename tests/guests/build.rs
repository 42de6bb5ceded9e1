//! Builds every guest the tests run, from source, with a nested cargo into its own target
//! directory (the way wasmtime's test-programs does), and writes their paths into
//! `guests.rs`. Needs the wasm32-unknown-unknown target, and wasm32-wasip1 for the WASI
//! guests (`rustup target add`; `./x` does it). The C guests are built by `build_c.rs`,
//! with clang and lld if they are installed.

#![allow(
    clippy::expect_used,
    reason = "a build script that cannot build the test guests must stop, saying why"
)]

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

mod build_c;

const TARGET: &str = "wasm32-unknown-unknown";
/// The target of the WASI guests (`tests/guests/wasi`).
const WASI_TARGET: &str = "wasm32-wasip1";

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.join("../..");
    let target_dir = workspace.join("target/guests");
    for watched in [
        "guest-sdk/src",
        "guest-sdk/Cargo.toml",
        "guest-sdk/build-support/src",
        "guest-sdk/build-support/Cargo.toml",
        "tests/guests/agents",
        "tests/guests/wasi",
        "examples/loan-underwriting/agent",
        // The loan agent's build.rs generates its states from this policy.
        "policies/loan-underwriting.toml",
        "examples/aml-triage/agent",
        // The AML agent's build.rs generates its states from this policy.
        "policies/aml-triage.toml",
        "examples/insurance-claims/agent",
        // The insurance agent's build.rs generates its states from this policy.
        "policies/insurance-claims.toml",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    cargo(
        &workspace,
        &target_dir,
        TARGET,
        &["-p", "loan-agent", "--lib"],
    );
    cargo(
        &workspace,
        &target_dir,
        TARGET,
        &["-p", "aml-agent", "--lib"],
    );
    cargo(
        &workspace,
        &target_dir,
        TARGET,
        &["-p", "insurance-agent", "--lib"],
    );
    cargo(
        &workspace,
        &target_dir,
        TARGET,
        &["-p", "warden-test-agents", "--examples"],
    );
    cargo(
        &workspace,
        &target_dir,
        WASI_TARGET,
        &["-p", "warden-test-wasi-agents", "--examples"],
    );

    let release = target_dir.join(TARGET).join("release");
    let mut out = String::new();
    writeln!(out, "/// The loan-underwriting example's agent.").ok();
    writeln!(
        out,
        "pub const LOAN_AGENT: &str = {:?};",
        path(&release.join("loan_agent.wasm"))
    )
    .ok();
    writeln!(
        out,
        "/// The anti-money-laundering alert-triage example's agent."
    )
    .ok();
    writeln!(
        out,
        "pub const AML_AGENT: &str = {:?};",
        path(&release.join("aml_agent.wasm"))
    )
    .ok();
    writeln!(out, "/// The insurance claim-triage example's agent.").ok();
    writeln!(
        out,
        "pub const INSURANCE_AGENT: &str = {:?};",
        path(&release.join("insurance_agent.wasm"))
    )
    .ok();
    let names = example_names(&manifest_dir.join("agents/examples"));
    for name in &names {
        let file = release.join("examples").join(format!("{name}.wasm"));
        assert!(file.exists(), "{} was not built", file.display());
        writeln!(
            out,
            "/// Test agent `tests/guests/agents/examples/{name}.rs`."
        )
        .ok();
        writeln!(
            out,
            "pub const {}: &str = {:?};",
            name.to_uppercase(),
            path(&file)
        )
        .ok();
    }
    let wasi_release = target_dir.join(WASI_TARGET).join("release");
    let wasi_examples = manifest_dir.join("wasi/examples");
    for name in example_names(&wasi_examples) {
        let file = wasi_release.join("examples").join(format!("{name}.wasm"));
        assert!(file.exists(), "{} was not built", file.display());
        writeln!(
            out,
            "/// WASI test agent `tests/guests/wasi/examples/{name}.rs` (wasm32-wasip1)."
        )
        .ok();
        writeln!(
            out,
            "pub const {}: &str = {:?};",
            name.to_uppercase(),
            path(&file)
        )
        .ok();
    }
    build_c::build(&workspace, &target_dir, &mut out);
    let dest = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("guests.rs");
    std::fs::write(dest, out).expect("write guests.rs");
}

/// The names of the examples in `dir`, sorted.
fn example_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.path()
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    names
}

fn path(p: &Path) -> String {
    p.canonicalize()
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

fn cargo(workspace: &Path, target_dir: &Path, target: &str, args: &[&str]) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .args(["build", "--release", "--target", target, "--target-dir"])
        .arg(target_dir)
        .args(args);
    // Settings meant for this build script's compilation must not leak into the guests'.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        command.env_remove(var);
    }
    let status = command
        .status()
        .expect("run cargo to build the test guests");
    assert!(
        status.success(),
        "building test guests failed: is the wasm target installed? run `rustup target add {target}`"
    );
}
