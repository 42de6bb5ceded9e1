//! The C guests, built by `build.rs` with clang through `guest-sdk-c/wardencc`: the C
//! SDK's example agent, the test agents in `tests/guests/c/` and the hostile ones in
//! `tests/guests/c/hostile/`. Without clang and lld the rest of the guests still build;
//! `C_GUESTS` then says how to install them, and the tests that need a C guest fail
//! saying so (`warden_test_guests::c_guest`).

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// What to install when clang or lld is missing.
const INSTALL: &str = "install them with `apt-get install clang lld` (Debian, as root; \
    `./x test` does it), or set CLANG to a clang that targets wasm32 and finds wasm-ld";

/// Hostile fixtures are linked with a 16 KiB stack, so that their memory is one 64 KiB
/// page like the WAT fixtures', and a fault that names the memory's size names the same.
const HOSTILE_STACK: &str = "-Wl,-z,stack-size=16384";

/// One C guest: its name for `c_guest`, its source and extra options.
struct Guest {
    name: String,
    source: PathBuf,
    options: &'static [&'static str],
}

/// Builds every C guest into `target_dir/c` and appends `C_GUESTS` to `out`.
pub fn build(workspace: &Path, target_dir: &Path, out: &mut String) {
    println!("cargo:rerun-if-env-changed=CLANG");
    for watched in ["guest-sdk-c", "tests/guests/c"] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    writeln!(
        out,
        "/// The C guests `build.rs` built with clang (`guest-sdk-c/wardencc`): each name and\n\
         /// module path, or why there are none. Use [`c_guest`]."
    )
    .ok();
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".into());
    if let Err(why) = toolchain(&clang) {
        // Look again at the next build: this path does not exist, so cargo reruns us.
        println!("cargo:rerun-if-changed=/nonexistent/warden/clang-was-missing");
        println!("cargo:warning=the C guests are not built: {why}");
        writeln!(
            out,
            "pub const C_GUESTS: Result<&[(&str, &str)], &str> = Err({:?});",
            format!("the C guests were not built: {why}")
        )
        .ok();
        return;
    }
    let dir = target_dir.join("c");
    std::fs::create_dir_all(dir.join("hostile")).expect("create target/guests/c");
    let guests = guests(workspace);
    let wardencc = workspace.join("guest-sdk-c/wardencc");
    // A few clang processes at a time (each is single-threaded).
    let width = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut modules: Vec<(String, PathBuf)> = Vec::new();
    for batch in guests.chunks(width) {
        modules.extend(build_batch(batch, &wardencc, &clang, &dir));
    }
    writeln!(
        out,
        "pub const C_GUESTS: Result<&[(&str, &str)], &str> = Ok(&["
    )
    .ok();
    for (name, module) in modules {
        writeln!(out, "    ({name:?}, {:?}),", super::path(&module)).ok();
    }
    writeln!(out, "]);").ok();
}

/// Builds `batch` concurrently into `dir`: each guest's name and module.
fn build_batch(
    batch: &[Guest],
    wardencc: &Path,
    clang: &str,
    dir: &Path,
) -> Vec<(String, PathBuf)> {
    std::thread::scope(|scope| {
        let jobs: Vec<_> = batch
            .iter()
            .map(|guest| {
                let module = dir.join(format!("{}.wasm", guest.name));
                scope.spawn(move || {
                    let output = Command::new("sh")
                        .arg(wardencc)
                        .arg(&module)
                        .arg(&guest.source)
                        .args(guest.options)
                        .env("CLANG", clang)
                        .output()
                        .expect("run sh guest-sdk-c/wardencc");
                    check(guest, &output);
                    (guest.name.clone(), module)
                })
            })
            .collect();
        jobs.into_iter()
            .map(|job| job.join().expect("a C guest's build thread"))
            .collect()
    })
}

/// The example agent, the test agents and the hostile ones (`hostile/NAME`).
fn guests(workspace: &Path) -> Vec<Guest> {
    let mut guests = vec![Guest {
        name: "claims_triage".into(),
        source: workspace.join("guest-sdk-c/examples/claims-triage/agent.c"),
        options: &[],
    }];
    for (sub, prefix, options) in [
        ("", "", &[][..]),
        ("hostile", "hostile/", &[HOSTILE_STACK][..]),
    ] {
        let dir = workspace.join("tests/guests/c").join(sub);
        let mut sources: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "c"))
            .collect();
        sources.sort();
        for source in sources {
            let stem = source.file_stem().expect("a C file has a stem");
            guests.push(Guest {
                name: format!("{prefix}{}", stem.to_string_lossy()),
                source,
                options,
            });
        }
    }
    guests
}

/// clang runs and finds wasm-ld (lld), or why not.
fn toolchain(clang: &str) -> Result<(), String> {
    let version = Command::new(clang).arg("--version").output();
    if !version.is_ok_and(|o| o.status.success()) {
        return Err(format!("`{clang}` (clang) is not installed: {INSTALL}"));
    }
    let linker = Command::new(clang)
        .arg("-print-prog-name=wasm-ld")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let linker = if linker.is_empty() {
        "wasm-ld".to_string()
    } else {
        linker
    };
    let runs = Command::new(&linker).arg("--version").output();
    if !runs.is_ok_and(|o| o.status.success()) {
        return Err(format!("wasm-ld (lld) is not installed: {INSTALL}"));
    }
    Ok(())
}

/// A guest that does not compile stops the build with clang's message; warnings are
/// passed on as cargo warnings.
fn check(guest: &Guest, output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "building the C guest `{}` ({}) failed:\n{stderr}",
        guest.name,
        guest.source.display()
    );
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        println!("cargo:warning={}: {line}", guest.name);
    }
}
