//! The `files` tool provider (issue #17) through the real `warden` binary: an agent reads
//! and lists a directory bound as a cap-std capability, and writes it only when the
//! operator granted it. Every way out of the directory (`..`, an absolute path, a symlink
//! leading out), a write without the grant and a file over the read cap is a recorded
//! answer naming the path, and nothing outside is read or changed. A write after a crash
//! mid-step is applied once (its write log keeps one line), and replay answers from the
//! journal with the directory deleted.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

use crate::http_tools::{Deployment, policy};
use crate::support::http_server::{Reply, Server};
use crate::support::output_text;

const READ_ONLY: &str = "[tools.documents]\nprovider = \"files\"\ndir = \"documents\"\n";
const WRITABLE: &str = "[tools.documents]\nprovider = \"files\"\ndir = \"documents\"\nwrite = true\nfile = \"documents.writes.jsonl\"\nmax_read_bytes = 4096\n";
/// What lies beside the deployment directory, which no call may read or change.
const SECRET: &str = "operator-only: db password hunter2";

fn tool(args: Value) -> Value {
    json!({"tool": {"name": "documents", "args": args}})
}

fn done() -> Value {
    json!({"transition": {"to": "done"}})
}

fn finish() -> Value {
    json!({"finish": {"output": {"ok": true}}})
}

/// A deployment with `documents/` (a case file and a subdirectory) and the bindings; a
/// secret file in a sibling directory.
fn deployment(
    bindings: &str,
    extra_tools: &[&str],
    extra_bindings: &str,
) -> (Deployment, tempfile::TempDir) {
    let mut tools = vec!["documents"];
    tools.extend_from_slice(extra_tools);
    let deployment = Deployment::new(
        &policy(&tools, &[], 30_000, ""),
        &format!("{bindings}\n{extra_bindings}"),
    );
    let documents = deployment.path("documents");
    std::fs::create_dir_all(documents.join("cases")).expect("mkdir");
    std::fs::write(documents.join("case.json"), r#"{"applicant": "A-1"}"#).expect("write");
    std::fs::write(documents.join("cases/notes.txt"), "thin file").expect("write");
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(outside.path().join("secret.txt"), SECRET).expect("secret");
    (deployment, outside)
}

/// The recorded host responses of a run, as `warden show` renders them.
fn responses(deployment: &Deployment, run_id: &str) -> String {
    deployment.show(run_id)["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["kind"] == "host_response")
        .map(|r| r["text"].as_str().unwrap_or_default().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn an_agent_reads_lists_and_writes_and_replay_needs_no_directory() {
    let (deployment, _outside) = deployment(WRITABLE, &[], "");
    let plan = json!([
        [
            tool(json!({"op": "read", "path": "case.json"})),
            tool(json!({"op": "list", "path": "."})),
            tool(
                json!({"op": "write", "path": "cases/decision.json", "content": "{\"approved\": true}"})
            ),
            tool(json!({"op": "read", "path": "cases/decision.json"})),
            done(),
        ],
        [finish()]
    ]);
    let (code, report) = deployment.run(&plan);
    assert_eq!(code, 0, "{report:#}");
    let run_id = report["run_id"].as_str().expect("run id").to_string();
    assert_eq!(
        std::fs::read_to_string(deployment.path("documents/cases/decision.json")).expect("written"),
        "{\"approved\": true}"
    );
    let log = std::fs::read_to_string(deployment.path("documents.writes.jsonl")).expect("log");
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(log.contains(&format!("\"key\":\"{run_id}/")), "{log}");
    let answers = responses(&deployment, &run_id);
    for expected in ["A-1", "cases", "decision.json", "approved", "receipt"] {
        assert!(
            answers.contains(expected),
            "{expected} missing from {answers}"
        );
    }

    // The answers are in the journal: replay needs neither the directory nor the log.
    std::fs::remove_dir_all(deployment.path("documents")).expect("rm documents");
    std::fs::remove_file(deployment.path("documents.writes.jsonl")).expect("rm log");
    let replay = deployment.warden(&["replay", &run_id]);
    assert_eq!(replay.status.code(), Some(0), "{}", output_text(&replay));
    let verify = deployment.warden(&["verify", &run_id]);
    assert_eq!(verify.status.code(), Some(0), "{}", output_text(&verify));
}

#[test]
fn every_way_out_of_the_directory_and_every_refusal_is_a_recorded_answer_naming_the_path() {
    let (deployment, outside) = deployment(
        WRITABLE,
        &["reader"],
        "[tools.reader]\nprovider = \"files\"\ndir = \"documents\"\n",
    );
    let secret = outside.path().join("secret.txt");
    std::os::unix::fs::symlink(&secret, deployment.path("documents/absolute-link"))
        .expect("symlink");
    std::fs::create_dir(deployment.path("elsewhere")).expect("mkdir");
    std::fs::write(deployment.path("elsewhere/private.txt"), SECRET).expect("write");
    std::os::unix::fs::symlink("../elsewhere", deployment.path("documents/up")).expect("symlink");
    std::fs::write(deployment.path("documents/huge.log"), "x".repeat(5000)).expect("huge");
    let secret_path = secret.to_str().expect("utf-8").to_string();

    let attacks: Vec<(&str, Value, String)> = vec![
        (
            "documents",
            json!({"op": "read", "path": "../bindings.toml"}),
            "\"../bindings.toml\": the path climbs out of the directory with `..`".into(),
        ),
        (
            "documents",
            json!({"op": "read", "path": "cases/../../warden.toml"}),
            "climbs out".into(),
        ),
        (
            "documents",
            json!({"op": "read", "path": secret_path}),
            format!("{secret_path:?}: the path is an absolute path"),
        ),
        (
            "documents",
            json!({"op": "write", "path": secret_path, "content": "pwned"}),
            "is an absolute path".into(),
        ),
        (
            "documents",
            json!({"op": "write", "path": "../policy.toml", "content": "pwned"}),
            "climbs out".into(),
        ),
        (
            "documents",
            json!({"op": "read", "path": "absolute-link"}),
            "\"absolute-link\": the path leads through a symlink out of the directory".into(),
        ),
        (
            "documents",
            json!({"op": "read", "path": "up/private.txt"}),
            "\"up/private.txt\": the path leads through a symlink out".into(),
        ),
        (
            "documents",
            json!({"op": "write", "path": "up/private.txt", "content": "pwned"}),
            "\"up/private.txt\": the path leads through a symlink out".into(),
        ),
        (
            "documents",
            json!({"op": "list", "path": "up"}),
            "\"up\": the path leads through a symlink out".into(),
        ),
        (
            "reader",
            json!({"op": "write", "path": "case.json", "content": "pwned"}),
            "write \"case.json\": writing is not granted".into(),
        ),
        (
            "documents",
            json!({"op": "read", "path": "huge.log"}),
            "\"huge.log\": the file is 5000 bytes, more than max_read_bytes (4096 bytes)".into(),
        ),
    ];
    for (name, args, expected) in attacks {
        let plan = json!([[{"tool": {"name": name, "args": args}}, done()], [finish()]]);
        let (code, report) = deployment.run(&plan);
        assert_eq!(code, 11, "{args}: {report:#}");
        let reason = report["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains(&format!("tool `{name}`")) && reason.contains(&expected),
            "{args}: {reason}"
        );
        let run_id = report["run_id"].as_str().expect("run id");
        let answers = responses(&deployment, run_id);
        assert!(
            answers.contains(&format!("tool `{name}`")),
            "{args}: not recorded: {answers}"
        );
        assert!(
            !answers.contains(SECRET),
            "{args}: the secret leaked: {answers}"
        );
    }
    assert_eq!(std::fs::read_to_string(&secret).expect("secret"), SECRET);
    assert_eq!(
        std::fs::read_to_string(deployment.path("elsewhere/private.txt")).expect("private"),
        SECRET
    );
    assert!(
        std::fs::read_to_string(deployment.path("policy.toml"))
            .expect("policy")
            .contains("[policy]")
    );
    assert_eq!(
        std::fs::read_to_string(deployment.path("documents/case.json")).expect("case"),
        r#"{"applicant": "A-1"}"#
    );
    let log = std::fs::read_to_string(deployment.path("documents.writes.jsonl")).expect("log");
    assert_eq!(log, "", "a refused write is not logged");
}

#[test]
fn a_directory_outside_the_bindings_dir_is_refused_before_the_run() {
    let (deployment, outside) = deployment(READ_ONLY, &[], "");
    let bindings = format!(
        "[tools.documents]\nprovider = \"files\"\ndir = {:?}\n",
        outside.path().to_str().expect("utf-8")
    );
    std::fs::write(deployment.path("bindings.toml"), bindings).expect("bindings");
    let dir = deployment.dir.path().to_str().expect("utf-8").to_string();
    for command in ["run", "check"] {
        let output = deployment.warden(&[command, &dir]);
        let text = output_text(&output);
        assert_eq!(output.status.code(), Some(2), "{command}: {text}");
        assert!(
            text.contains("tools.documents.dir:") && text.contains("is an absolute path"),
            "{command}: {text}"
        );
    }
}

#[test]
fn a_write_re_run_by_resume_after_a_crash_mid_step_is_applied_once() {
    let first = Arc::new(AtomicUsize::new(0));
    let seen = first.clone();
    // The step writes, then waits on a server; the process is killed while it waits.
    let server = Server::start(move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::Hang
        } else {
            Reply::Json(200, r#"{"ok": true}"#.into())
        }
    });
    let http = format!(
        "[tools.notify]\nprovider = \"http\"\nurl = \"{}\"\nallow = [\"{}\"]\ntimeout_ms = 20000\n",
        server.url("/v1/notify"),
        server.url("/v1/")
    );
    let (deployment, _outside) = deployment(WRITABLE, &["notify"], &http);
    let input = deployment.input(&json!([
        [
            tool(json!({"op": "write", "path": "cases/letter.txt", "content": "Dear applicant"})),
            {"tool": {"name": "notify", "args": {}}},
            done(),
        ],
        [finish()]
    ]));
    let dir = deployment.dir.path().to_str().expect("utf-8").to_string();
    let mut child = deployment
        .command(&["run", &dir, "--input", input.to_str().expect("utf-8")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn warden");
    server.wait_for_a_request();
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");

    let letter = deployment.path("documents/cases/letter.txt");
    assert_eq!(
        std::fs::read_to_string(&letter).expect("written before the crash"),
        "Dear applicant"
    );
    let log_path = deployment.path("documents.writes.jsonl");
    let log = std::fs::read_to_string(&log_path).expect("log");
    assert_eq!(log.lines().count(), 1, "{log}");
    let record: Value = serde_json::from_str(log.lines().next().expect("line")).expect("json");
    let key = record["key"].as_str().expect("key").to_string();
    let run_id = key.rsplit_once('/').expect("run/call").0.to_string();

    let resumed = deployment.warden(&["resume", &run_id, "--json"]);
    assert_eq!(resumed.status.code(), Some(0), "{}", output_text(&resumed));
    assert_eq!(
        std::fs::read_to_string(&letter).expect("letter"),
        "Dear applicant"
    );
    let log = std::fs::read_to_string(&log_path).expect("log");
    assert_eq!(
        log.lines().count(),
        1,
        "the re-run step wrote a second time: {log}"
    );
    assert!(log.contains(&format!("\"key\":\"{key}\"")), "{log}");
    let verify = deployment.warden(&["verify", &run_id]);
    assert_eq!(verify.status.code(), Some(0), "{}", output_text(&verify));
}
