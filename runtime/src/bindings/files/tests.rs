//! The `files` provider through [`crate::bindings::Bindings`]: confinement of every path
//! the agent sends, the write grant, the size caps, and writes applied once per key.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use warden_guest::CallErrorKind;

use crate::bindings::{Bindings, BindingsError, IdempotencyKey, LedgerMode, LoadOptions};

fn key(call_seq: u64) -> IdempotencyKey {
    IdempotencyKey {
        run_id: "run-1".into(),
        call_seq,
    }
}

/// A deployment: `deploy/` with the bindings, `deploy/documents/` with a file and a
/// subdirectory, and `secret.txt` beside `deploy/`.
fn deployment(bindings: &str) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().expect("tempdir");
    let deploy = root.path().join("deploy");
    std::fs::create_dir_all(deploy.join("documents/cases")).expect("mkdir");
    std::fs::write(deploy.join("documents/a.json"), r#"{"a": 1}"#).expect("write");
    std::fs::write(deploy.join("documents/cases/c-1.txt"), "case one").expect("write");
    std::fs::write(root.path().join("secret.txt"), "the operator's secret").expect("write");
    std::fs::write(deploy.join("bindings.toml"), bindings).expect("bindings");
    (root, deploy)
}

const READ_ONLY: &str = "[tools.documents]\nprovider = \"files\"\ndir = \"documents\"\n";
const WRITABLE: &str = "[tools.documents]\nprovider = \"files\"\ndir = \"documents\"\nwrite = true\nfile = \"documents.writes.jsonl\"\n";

fn load(deploy: &Path) -> Bindings {
    Bindings::from_file(&deploy.join("bindings.toml")).expect("bindings load")
}

fn call(bindings: &Bindings, args: Value, seq: u64) -> Result<Value, (CallErrorKind, String)> {
    bindings
        .call_tool("documents", &args.to_string(), &key(seq))
        .map(|text| serde_json::from_str(&text).expect("a JSON answer"))
        .map_err(|e| (e.kind, e.message))
}

#[test]
fn reads_and_lists_inside_the_directory_and_is_not_an_effect() {
    let (_root, deploy) = deployment(READ_ONLY);
    let bindings = load(&deploy);
    assert!(!bindings.is_effect("documents"));
    assert_eq!(
        call(&bindings, json!({"op": "read", "path": "a.json"}), 1),
        Ok(json!({"path": "a.json", "bytes": 8, "content": "{\"a\": 1}"}))
    );
    assert_eq!(
        call(
            &bindings,
            json!({"op": "read", "path": "cases/../cases/c-1.txt"}),
            2
        )
        .expect("read")["content"],
        "case one"
    );
    assert_eq!(
        call(&bindings, json!({"op": "list"}), 3),
        Ok(json!({"path": ".", "entries": [
            {"name": "a.json", "kind": "file", "bytes": 8},
            {"name": "cases", "kind": "directory"},
        ]}))
    );
    let (kind, message) =
        call(&bindings, json!({"op": "read", "path": "missing.json"}), 4).expect_err("missing");
    assert_eq!(kind, CallErrorKind::NotFound);
    assert!(
        message.contains("tool `documents`: read \"missing.json\""),
        "{message}"
    );
    let (kind, message) =
        call(&bindings, json!({"op": "delete", "path": "a.json"}), 5).expect_err("unknown op");
    assert_eq!(kind, CallErrorKind::InvalidArguments);
    assert!(message.contains("unknown variant `delete`"), "{message}");
}

#[test]
fn every_way_out_of_the_directory_is_refused_naming_the_path() {
    let (root, deploy) = deployment(WRITABLE);
    #[cfg(unix)]
    std::os::unix::fs::symlink("../../secret.txt", deploy.join("documents/link")).expect("symlink");
    let bindings = load(&deploy);
    let absolute = root.path().join("secret.txt");
    let attacks = [
        (
            json!({"op": "read", "path": "../../secret.txt"}),
            "climbs out",
        ),
        (
            json!({"op": "read", "path": "cases/../../bindings.toml"}),
            "climbs out",
        ),
        (json!({"op": "read", "path": absolute}), "absolute path"),
        (json!({"op": "list", "path": ".."}), "climbs out"),
        (
            json!({"op": "write", "path": "../bindings.toml", "content": "x"}),
            "climbs out",
        ),
        (
            json!({"op": "write", "path": absolute, "content": "x"}),
            "absolute path",
        ),
        #[cfg(unix)]
        (json!({"op": "read", "path": "link"}), "symlink out"),
    ];
    for (seq, (args, how)) in attacks.into_iter().enumerate() {
        let path = args["path"].as_str().expect("path").to_string();
        let (kind, message) = call(&bindings, args, seq as u64).expect_err(&path);
        assert_eq!(kind, CallErrorKind::InvalidArguments, "{message}");
        assert!(
            message.contains(&format!("{path:?}")) && message.contains(how),
            "{path}: {message}"
        );
        assert!(!message.contains("operator's secret"), "{message}");
    }
    assert_eq!(
        std::fs::read_to_string(root.path().join("secret.txt")).expect("read"),
        "the operator's secret"
    );
    assert!(
        std::fs::read_to_string(deploy.join("bindings.toml"))
            .expect("read")
            .contains("files")
    );
}

#[test]
fn a_write_without_the_grant_is_refused_and_writes_nothing() {
    let (_root, deploy) = deployment(READ_ONLY);
    let bindings = load(&deploy);
    let (kind, message) = call(
        &bindings,
        json!({"op": "write", "path": "a.json", "content": "overwritten"}),
        1,
    )
    .expect_err("no grant");
    assert_eq!(kind, CallErrorKind::InvalidArguments);
    assert!(message.contains("writing is not granted"), "{message}");
    assert_eq!(
        std::fs::read_to_string(deploy.join("documents/a.json")).expect("read"),
        r#"{"a": 1}"#
    );
}

#[test]
fn a_file_over_max_read_bytes_is_refused_and_content_over_max_write_bytes_too() {
    let (_root, deploy) = deployment(&format!(
        "{WRITABLE}max_read_bytes = 64\nmax_write_bytes = 16\n"
    ));
    std::fs::write(deploy.join("documents/huge.txt"), "x".repeat(65)).expect("write");
    let bindings = load(&deploy);
    let (kind, message) =
        call(&bindings, json!({"op": "read", "path": "huge.txt"}), 1).expect_err("huge");
    assert_eq!(kind, CallErrorKind::Unavailable);
    assert!(
        message.contains("\"huge.txt\": the file is 65 bytes, more than max_read_bytes (64 bytes)"),
        "{message}"
    );
    let (_, message) = call(
        &bindings,
        json!({"op": "write", "path": "b.txt", "content": "y".repeat(17)}),
        2,
    )
    .expect_err("too much");
    assert!(
        message.contains("more than max_write_bytes (16 bytes)"),
        "{message}"
    );
    assert!(!deploy.join("documents/b.txt").exists());
}

#[test]
fn a_write_is_recorded_then_applied_once_per_key_and_a_different_rerun_is_refused() {
    let (_root, deploy) = deployment(WRITABLE);
    let bindings = load(&deploy);
    assert!(bindings.is_effect("documents"));
    let write = |content: &str| json!({"op": "write", "path": "cases/out.txt", "content": content});
    assert_eq!(
        call(&bindings, write("first"), 7),
        Ok(json!({"path": "cases/out.txt", "bytes": 5, "receipt": "run-1/7"}))
    );
    let out = deploy.join("documents/cases/out.txt");
    assert_eq!(std::fs::read_to_string(&out).expect("read"), "first");
    let log = std::fs::read_to_string(deploy.join("documents.writes.jsonl")).expect("log");
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(
        log.contains("\"key\":\"run-1/7\"") && log.contains("\"path\":\"cases/out.txt\""),
        "{log}"
    );
    assert!(
        !log.contains("first"),
        "the log records a digest, not the content: {log}"
    );

    // A re-run after a crash: the bindings load again, the same key writes the same bytes.
    std::fs::write(&out, "lost").expect("as if the first attempt never reached the file");
    let rerun = load(&deploy);
    assert_eq!(
        call(&rerun, write("first"), 7),
        Ok(json!({"path": "cases/out.txt", "bytes": 5, "receipt": "run-1/7"}))
    );
    assert_eq!(std::fs::read_to_string(&out).expect("read"), "first");
    // The same key asking for other content is refused, the file keeps the first write.
    let (kind, message) = call(&rerun, write("second"), 7).expect_err("other content");
    assert_eq!(kind, CallErrorKind::InvalidArguments);
    assert!(
        message.contains("idempotency key run-1/7 already wrote other content"),
        "{message}"
    );
    assert_eq!(std::fs::read_to_string(&out).expect("read"), "first");
    let log = std::fs::read_to_string(deploy.join("documents.writes.jsonl")).expect("log");
    assert_eq!(log.lines().count(), 1, "{log}");
    // No temporary file is left behind.
    let names: Vec<String> = std::fs::read_dir(deploy.join("documents/cases"))
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

fn problems(deploy: &Path) -> String {
    match Bindings::from_file(&deploy.join("bindings.toml")) {
        Ok(_) => panic!("loaded"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn the_directory_is_confined_to_the_bindings_dir_and_a_write_grant_needs_a_safe_log() {
    let (_root, deploy) = deployment("[tools.documents]\nprovider = \"files\"\ndir = \"..\"\n");
    let message = problems(&deploy);
    assert!(
        message.contains("bindings.toml:3:7: tools.documents.dir: \"..\" climbs out"),
        "{message}"
    );
    let error = Bindings::from_file(&deploy.join("bindings.toml")).expect_err("outside");
    assert!(matches!(error, BindingsError::PathOutside(_)), "{error:?}");

    let (_root, deploy) =
        deployment("[tools.documents]\nprovider = \"files\"\ndir = \"documents\"\nwrite = true\n");
    assert!(
        problems(&deploy)
            .contains("tools.documents.file: a files tool with write = true needs `file`")
    );

    let (_root, deploy) = deployment(&format!("{READ_ONLY}file = \"log.jsonl\"\n"));
    assert!(problems(&deploy).contains("this one is read-only"));

    let (_root, deploy) = deployment(
        "[tools.documents]\nprovider = \"files\"\ndir = \"documents\"\nwrite = true\nfile = \"documents/log.jsonl\"\n",
    );
    let message = problems(&deploy);
    assert!(
        message.contains("the write log \"documents/log.jsonl\" is inside"),
        "{message}"
    );
    assert!(!deploy.join("documents/log.jsonl").exists());

    let (_root, deploy) = deployment(
        "[tools.documents]\nprovider = \"files\"\ndir = \".\"\nwrite = true\nfile = \"log.jsonl\"\n",
    );
    let message = problems(&deploy);
    assert!(
        message.contains("which holds the bindings file"),
        "{message}"
    );

    let (_root, deploy) = deployment(&format!(
        "{WRITABLE}\n[tools.bureau]\nprovider = \"fixture\"\nfile = \"documents/a.json\"\nkey = \"id\"\n"
    ));
    let message = problems(&deploy);
    assert!(
        message.contains("tools.bureau.file: \"documents/a.json\" is inside")
            && message.contains("which tool \"documents\" may write"),
        "{message}"
    );

    let (_root, deploy) =
        deployment("[tools.documents]\nprovider = \"files\"\ndir = \"nowhere\"\n");
    assert!(problems(&deploy).contains("tools.documents.dir: cannot open directory"));
}

#[test]
fn an_inspection_creates_no_write_log_and_a_resume_needs_it() {
    let (_root, deploy) = deployment(WRITABLE);
    let path = deploy.join("bindings.toml");
    let inspection = Bindings::inspect(
        &path,
        &LoadOptions {
            ledgers: LedgerMode::Inspect,
            ..LoadOptions::default()
        },
    );
    assert!(inspection.problems.is_empty(), "{:?}", inspection.problems);
    assert!(!deploy.join("documents.writes.jsonl").exists());
    let (kind, _) = call(
        &inspection.bindings,
        json!({"op": "write", "path": "a.json", "content": "x"}),
        1,
    )
    .expect_err("inspected only");
    assert_eq!(kind, CallErrorKind::Unavailable);
    let error = Bindings::from_file_with(
        &path,
        &LoadOptions {
            ledgers: LedgerMode::MustExist,
            ..LoadOptions::default()
        },
    )
    .expect_err("log missing at resume");
    assert!(
        matches!(error, BindingsError::LedgerMissing { .. }),
        "{error:?}"
    );
}

#[cfg(unix)]
#[test]
fn a_fifo_swapped_in_after_the_look_is_refused_without_waiting_for_a_writer() {
    // The race (a file checked, then replaced by a FIFO before it is opened) is won here
    // by asking the open directly for the FIFO: it must answer at once, not block.
    let dir = tempfile::tempdir().expect("tempdir");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        dir.path().join("pipe"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .expect("mkfifo");
    std::fs::write(dir.path().join("file"), "text").expect("write");
    let handle =
        cap_std::fs::Dir::open_ambient_dir(dir.path(), cap_std::ambient_authority()).expect("dir");
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let pipe = super::open_regular(&handle, "pipe").map(|opened| opened.is_none());
        let file = super::open_regular(&handle, "file").map(|opened| opened.map(|(_, size)| size));
        let _ = done.send((pipe.ok(), file.ok()));
    });
    let answer = finished
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("opening a FIFO to read blocked the host");
    assert_eq!(answer, (Some(true), Some(Some(4))));
}
