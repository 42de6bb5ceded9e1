//! The compiled-module cache (issue #16): a second process reuses the first one's compiled
//! agent; a cache file whose bytes were altered is refused, removed and compiled again,
//! and the run is the same; a directory others may write is not used.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::loan_example;

fn run(dir: &Path, cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["--db", "warden.redb", "--module-cache"])
        .arg(cache)
        .arg("run")
        .arg(loan_example())
        .arg("--json")
        .current_dir(dir)
        .env_remove("WARDEN_DB")
        .env_remove("WARDEN_SIGNING_KEY")
        .output()
        .expect("run warden")
}

fn cache_files(cache: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(cache)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
                .collect()
        })
        .unwrap_or_default()
}

fn outcome(output: &Output) -> serde_json::Value {
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("no JSON: {}", String::from_utf8_lossy(&output.stderr)));
    serde_json::json!([
        report["status"],
        report["state"],
        report["output"],
        report["fuel"]
    ])
}

#[test]
fn a_cached_module_is_reused_and_an_altered_one_is_refused_and_compiled_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("cache");
    let first = run(dir.path(), &cache);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let files = cache_files(&cache);
    assert_eq!(files.len(), 1, "the agent was compiled once and stored");
    let stored = std::fs::read(&files[0]).expect("cache file");
    let second = run(dir.path(), &cache);
    assert!(second.status.success());
    assert_eq!(outcome(&first), outcome(&second));
    assert_eq!(
        std::fs::read(&files[0]).expect("cache file"),
        stored,
        "reused as is"
    );

    // Alter one byte of the compiled code: refused, and the run compiles afresh.
    let mut altered = stored.clone();
    let middle = altered.len() / 2;
    altered[middle] ^= 0x01;
    std::fs::write(&files[0], &altered).expect("alter");
    let third = run(dir.path(), &cache);
    assert!(
        third.status.success(),
        "{}",
        String::from_utf8_lossy(&third.stderr)
    );
    assert!(
        String::from_utf8_lossy(&third.stderr).contains("altered"),
        "the refusal is reported: {}",
        String::from_utf8_lossy(&third.stderr)
    );
    assert_eq!(outcome(&first), outcome(&third));
    assert_eq!(
        std::fs::read(&files[0]).expect("cache file"),
        stored,
        "compiled again and stored whole"
    );
    // Every run verifies and replays identically.
    let verify = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args([
            "--db",
            "warden.redb",
            "--module-cache",
            "off",
            "replay",
            "--all",
        ])
        .current_dir(dir.path())
        .output()
        .expect("replay");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

#[cfg(unix)]
#[test]
fn a_cache_directory_others_may_write_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("shared");
    std::fs::create_dir(&cache).expect("dir");
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let output = run(dir.path(), &cache);
    assert!(output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("is not used"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(cache_files(&cache).is_empty(), "nothing was written to it");
}
