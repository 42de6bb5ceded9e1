//! Builds every guest the tests run, from source, with a nested cargo into its own target
//! directory (the way wasmtime's test-programs does), and writes their paths into
//! `guests.rs`. Needs the wasm32-unknown-unknown target (`rustup target add`).

#![allow(
    clippy::expect_used,
    reason = "a build script that cannot build the test guests must stop, saying why"
)]

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-unknown-unknown";

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
        "examples/loan-underwriting/agent",
        // The loan agent's build.rs generates its states from this policy.
        "policies/loan-underwriting.toml",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    cargo(&workspace, &target_dir, &["-p", "loan-agent", "--lib"]);
    cargo(
        &workspace,
        &target_dir,
        &["-p", "warden-test-agents", "--examples"],
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
    let examples = manifest_dir.join("agents/examples");
    let mut names: Vec<String> = std::fs::read_dir(&examples)
        .expect("tests/guests/agents/examples exists")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.path()
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
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
    let dest = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("guests.rs");
    std::fs::write(dest, out).expect("write guests.rs");
}

fn path(p: &Path) -> String {
    p.canonicalize()
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

fn cargo(workspace: &Path, target_dir: &Path, args: &[&str]) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .args(["build", "--release", "--target", TARGET, "--target-dir"])
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
        "building test guests failed: is the wasm target installed? run `rustup target add {TARGET}`"
    );
}
