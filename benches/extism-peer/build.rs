//! Builds the Extism guest (`guest/`, a member of this workspace) for
//! wasm32-unknown-unknown into its own target directory, so the bench can include it.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let target_dir = root.join("target").join("guest");
    println!("cargo::rerun-if-changed=guest/src");
    println!("cargo::rerun-if-changed=guest/Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .args(["build", "--release", "--target", "wasm32-unknown-unknown"])
        .args(["-p", "extism-peer-guest", "--target-dir"])
        .arg(&target_dir)
        .status()
        .expect("run cargo for the guest");
    assert!(status.success(), "building the Extism guest failed (rustup target add wasm32-unknown-unknown)");
    let wasm = target_dir.join("wasm32-unknown-unknown/release/extism_peer_guest.wasm");
    println!("cargo::rustc-env=EXTISM_PEER_GUEST={}", wasm.display());
}
