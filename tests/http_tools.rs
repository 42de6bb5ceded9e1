//! The `http` tool provider against a real HTTP server on 127.0.0.1 (issue #17), through
//! the real `warden` binary: the credential from the environment is sent and never
//! recorded (every byte of the journal is searched), an effect carries Warden's
//! idempotency key (and a resume after a SIGKILL mid-request sends the same one), replay
//! answers from the journal with the server gone, every HTTP failure (timeout, 4xx, 5xx,
//! oversize, invalid JSON, refused connection, TLS, DNS, a host outside the allowlist) is
//! a recorded answer naming the tool and the cause, and the step's wall-clock budget
//! bounds a call whose own timeout is longer.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use warden_test_guests as guests;

use crate::support::http_server::{NO_LENGTH, Reply, Request, Server};
use crate::support::output_text;

/// The bureau's token, planted in the environment of every `warden` process.
pub const SECRET: &str = "sk-test-BUREAU-9c1e5b2d4680aa77e3f1";
/// The variable that holds it.
pub const SECRET_ENV: &str = "WARDEN_TEST_HTTP_TOKEN";

/// A deployment directory: `warden.toml` naming the scripted test agent, a policy, the
/// bindings, and a journal.
pub struct Deployment {
    pub dir: tempfile::TempDir,
}

impl Deployment {
    pub fn new(policy: &str, bindings: &str) -> Deployment {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("policy.toml"), policy).expect("policy");
        std::fs::write(dir.path().join("bindings.toml"), bindings).expect("bindings");
        std::fs::write(
            dir.path().join("warden.toml"),
            format!(
                "agent = {:?}\npolicy = \"policy.toml\"\nbindings = \"bindings.toml\"\n",
                guests::SCRIPTED
            ),
        )
        .expect("manifest");
        Deployment { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `warden --db warden.redb ARGS` in the directory, the secret in its environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_warden"));
        command
            .arg("--db")
            .arg(self.path("warden.redb"))
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("WARDEN_DB")
            .env_remove("WARDEN_SIGNING_KEY")
            .env_remove("WARDEN_SUBMITTER")
            .env(SECRET_ENV, SECRET);
        command
    }

    pub fn warden(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run warden")
    }

    /// Writes the scripted agent's input for `plan`.
    pub fn input(&self, plan: &Value) -> PathBuf {
        let path = self.path("input.json");
        std::fs::write(&path, json!({ "plan": plan }).to_string()).expect("input");
        path
    }

    /// `warden run DIR --input (plan) --json`: the exit code and the report.
    pub fn run(&self, plan: &Value) -> (i32, Value) {
        let input = self.input(plan);
        let dir = self.dir.path().to_str().expect("utf-8").to_string();
        let output = self.warden(&[
            "run",
            &dir,
            "--input",
            input.to_str().expect("utf-8"),
            "--json",
        ]);
        let report = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|_| panic!("no report: {}", output_text(&output)));
        (output.status.code().unwrap_or(-1), report)
    }

    /// The run's timeline (`warden show RUN --json`).
    pub fn show(&self, run_id: &str) -> Value {
        let output = self.warden(&["show", run_id, "--json"]);
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|_| panic!("no timeline: {}", output_text(&output)))
    }

    /// Every byte of the journal file.
    pub fn journal_bytes(&self) -> Vec<u8> {
        std::fs::read(self.path("warden.redb")).expect("journal")
    }
}

/// Whether `needle` occurs in `haystack`, raw or hex-encoded.
pub fn holds(haystack: &[u8], needle: &str) -> bool {
    let hex: String = needle.bytes().map(|b| format!("{b:02x}")).collect();
    [needle.as_bytes(), hex.as_bytes()]
        .iter()
        .any(|n| haystack.windows(n.len()).any(|w| w == *n))
}

/// A policy with one working state allowing `tools` and `models`, a terminal `done`,
/// and the step wall-clock budget `wall_clock_ms`.
pub fn policy(tools: &[&str], models: &[&str], wall_clock_ms: u64, extra: &str) -> String {
    let list = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        r#"[policy]
name = "http-providers-test"
version = "1"
initial = "start"

[capabilities]
tools = [{tools}]
models = [{models}]

[budgets]
fuel_per_step = 200_000_000
memory_bytes = 16_777_216
max_steps = 10
max_host_calls = 100
max_request_bytes = 65_536
max_response_bytes = 65_536
wall_clock_ms = {wall_clock_ms}
max_journal_bytes = 67_108_864
checkpoint_every = 1

[states.start]
tools = [{tools}]
models = [{models}]
transitions = ["done", "paid"]

[states.done]
terminal = true

[states.paid]
terminal = true
{extra}"#,
        tools = list(tools),
        models = list(models),
    )
}

fn tool(name: &str, args: Value) -> Value {
    json!({"tool": {"name": name, "args": args}})
}

fn finish() -> Value {
    json!({"finish": {"output": {"ok": true}}})
}

fn http_bindings(server: &Server) -> String {
    format!(
        r#"[tools.bureau]
provider = "http"
url = "{base}/v1/report"
method = "POST"
allow = ["{base}/v1/"]
headers = {{ Authorization = {{ env = "{SECRET_ENV}", prefix = "Bearer " }}, Accept-Language = "en" }}
timeout_ms = 5000

[tools.payout]
provider = "http"
url = "{base}/v1/payouts"
allow = ["{base}/v1/"]
effect = true
retries = 2
"#,
        base = server.url("")
    )
}

fn bureau_and_payout(request: &Request) -> Reply {
    match request.target.as_str() {
        // A careless server that echoes the credential it was sent.
        "/v1/report" => Reply::Json(
            200,
            json!({"credit_score": 712, "echo": request.header("authorization")}).to_string(),
        ),
        "/v1/payouts" => Reply::Json(201, json!({"paid": request.json()["amount"]}).to_string()),
        _ => Reply::Json(404, "{}".into()),
    }
}

/// The recorded host responses of a run, as `warden show` renders them.
fn responses(timeline: &Value) -> Vec<String> {
    timeline["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["kind"] == "host_response")
        .map(|r| r["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn an_http_tool_sends_its_credential_an_effect_its_idempotency_key_and_replay_needs_no_server() {
    let mut server = Server::start(bureau_and_payout);
    let deployment = Deployment::new(
        &policy(&["bureau", "payout"], &[], 10_000, ""),
        &http_bindings(&server),
    );
    let plan = json!([
        [tool("bureau", json!({"applicant_id": "A-1"})), tool("payout", json!({"amount": 250})), {"transition": {"to": "done"}}],
        [finish()]
    ]);
    let (code, report) = deployment.run(&plan);
    assert_eq!(code, 0, "{report:#}");
    let run_id = report["run_id"].as_str().expect("run id").to_string();

    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    let (bureau, payout) = (&requests[0], &requests[1]);
    assert_eq!(
        (bureau.method.as_str(), bureau.target.as_str()),
        ("POST", "/v1/report")
    );
    assert_eq!(
        bureau.header("authorization"),
        Some(format!("Bearer {SECRET}").as_str())
    );
    assert_eq!(bureau.header("accept-language"), Some("en"));
    assert_eq!(
        bureau.header("idempotency-key"),
        None,
        "a read is not an effect"
    );
    assert_eq!(bureau.json(), json!({"applicant_id": "A-1"}));
    assert_eq!(payout.header("authorization"), None);
    // The key the ledger uses: the run and the call's sequence number.
    let key = payout
        .header("idempotency-key")
        .expect("an effect carries the key");
    let (key_run, call) = key.rsplit_once('/').expect("run/call");
    assert_eq!(key_run, run_id);
    assert!(call.parse::<u64>().is_ok(), "{key}");

    let timeline = deployment.show(&run_id);
    let answers = responses(&timeline).join("\n");
    assert!(
        answers.contains("credit_score") && answers.contains("[redacted]"),
        "{answers}"
    );
    assert!(
        answers.contains("\\\"paid\\\":250") || answers.contains("\"paid\":250"),
        "{answers}"
    );

    // No byte of the journal, nor of an export, holds the credential.
    let export = deployment.warden(&["export", "--all"]).stdout;
    for (what, bytes) in [
        ("the journal", deployment.journal_bytes()),
        ("the export", export),
    ] {
        assert!(!holds(&bytes, SECRET), "the credential was found in {what}");
    }

    // Replay answers from the journal: the server is gone, and it is identical.
    server.stop();
    let replay = deployment.warden(&["replay", &run_id]);
    assert_eq!(replay.status.code(), Some(0), "{}", output_text(&replay));
}

/// One run per failing tool; the outcome's reason and the recorded answer.
fn failing_run(deployment: &Deployment, tool_name: &str) -> (String, Vec<String>, Duration) {
    let started = Instant::now();
    let (code, report) = deployment.run(&json!([[tool(tool_name, json!({"id": "A-1"}))]]));
    let took = started.elapsed();
    assert_eq!(code, 11, "{tool_name}: {report:#}");
    let reason = report["reason"].as_str().unwrap_or_default().to_string();
    let run_id = report["run_id"].as_str().expect("run id");
    (reason, responses(&deployment.show(run_id)), took)
}

#[test]
fn every_http_failure_is_a_recorded_answer_naming_the_tool_and_the_cause() {
    let flaky = Arc::new(AtomicUsize::new(0));
    let counter = flaky.clone();
    let server = Server::start(move |request| match request.target.as_str() {
        "/slow" => Reply::Delay(
            Duration::from_secs(5),
            Box::new(Reply::Json(200, "{}".into())),
        ),
        "/boom" => Reply::Json(500, r#"{"error": "database on fire"}"#.into()),
        "/missing" => Reply::Json(404, r#"{"error": "no such applicant"}"#.into()),
        "/invalid" => Reply::Json(422, r#"{"error": "id is malformed"}"#.into()),
        "/huge" => Reply::Json(200, format!("[{}0]", "0,".repeat(4096))),
        "/huge-stream" => Reply::Raw {
            status: 200,
            headers: vec![(NO_LENGTH.into(), String::new())],
            body: format!("[{}0]", "0,".repeat(4096)).into_bytes(),
        },
        "/html" => Reply::Json(200, "<html>hello</html>".into()),
        "/closed" => Reply::Close,
        "/flaky" if counter.fetch_add(1, Ordering::SeqCst) == 0 => Reply::Json(503, "{}".into()),
        "/flaky" => Reply::Json(200, r#"{"ok": true}"#.into()),
        _ => Reply::Json(404, "{}".into()),
    });
    let base = server.url("");
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let tools: Vec<(&str, String, &str)> = vec![
        ("t_slow", format!("{base}/slow"), "timeout_ms = 400"),
        ("t_boom", format!("{base}/boom"), ""),
        ("t_missing", format!("{base}/missing"), ""),
        ("t_invalid", format!("{base}/invalid"), ""),
        (
            "t_huge",
            format!("{base}/huge"),
            "max_response_bytes = 1024",
        ),
        (
            "t_stream",
            format!("{base}/huge-stream"),
            "max_response_bytes = 1024",
        ),
        ("t_html", format!("{base}/html"), ""),
        ("t_closed", format!("{base}/closed"), ""),
        ("t_refused", format!("http://127.0.0.1:{closed_port}/x"), ""),
        ("t_tls", base.replace("http://", "https://") + "/boom", ""),
        (
            "t_dns",
            "http://no-such-host.invalid/x".into(),
            "timeout_ms = 3000",
        ),
        (
            "t_flaky",
            format!("{base}/flaky"),
            "retries = 2\neffect = true",
        ),
    ];
    let mut bindings = String::new();
    for (name, url, extra) in &tools {
        let allow = {
            let rest = url.split("://").nth(1).unwrap_or_default();
            let origin = rest.split('/').next().unwrap_or_default();
            format!(
                "{}://{origin}/",
                url.split("://").next().unwrap_or_default()
            )
        };
        bindings.push_str(&format!(
            "[tools.{name}]\nprovider = \"http\"\nurl = \"{url}\"\nallow = [\"{allow}\"]\n{extra}\n\n"
        ));
    }
    let names: Vec<&str> = tools.iter().map(|(n, _, _)| *n).collect();
    let deployment = Deployment::new(&policy(&names, &[], 10_000, ""), &bindings);

    let expectations = [
        ("t_slow", "Unavailable", "timed out after"),
        (
            "t_boom",
            "Unavailable",
            "answered 500 Internal Server Error: {\"error\": \"database on fire\"}",
        ),
        (
            "t_missing",
            "NotFound",
            "answered 404 Not Found: {\"error\": \"no such applicant\"}",
        ),
        (
            "t_invalid",
            "InvalidArguments",
            "answered 422 Unprocessable Entity",
        ),
        (
            "t_huge",
            "Unavailable",
            "larger than max_response_bytes (1024 bytes)",
        ),
        (
            "t_stream",
            "Unavailable",
            "larger than max_response_bytes (1024 bytes)",
        ),
        ("t_html", "Unavailable", "a body that is not JSON"),
        ("t_closed", "Unavailable", "POST"),
        ("t_refused", "Unavailable", "connection to 127.0.0.1"),
        ("t_tls", "Unavailable", "TLS with 127.0.0.1 failed"),
        ("t_dns", "Unavailable", "no-such-host.invalid"),
    ];
    for (name, kind, cause) in expectations {
        let (reason, answers, took) = failing_run(&deployment, name);
        let said = format!("{kind}: tool `{name}`: ");
        assert!(
            reason.contains(&said) && reason.contains(cause),
            "{name}: {reason}"
        );
        assert!(
            answers
                .iter()
                .any(|a| a.contains(&format!("tool `{name}`"))),
            "{name}: the failure is not recorded as the call's answer: {answers:?}"
        );
        if name == "t_slow" {
            assert!(
                took < Duration::from_secs(4),
                "the 400 ms timeout took {took:?}"
            );
            assert!(reason.contains("its timeout_ms"), "{reason}");
        }
    }
    // A 5xx is retried (with the same idempotency key) and the second attempt succeeds.
    let (code, report) = deployment.run(&json!([[tool("t_flaky", json!({"id": "A-1"})), {"transition": {"to": "done"}}], [finish()]]));
    assert_eq!(code, 0, "{report:#}");
    let flaky: Vec<Request> = server
        .requests()
        .into_iter()
        .filter(|r| r.target == "/flaky")
        .collect();
    assert_eq!(flaky.len(), 2, "{flaky:#?}");
    assert_eq!(
        flaky[0].header("idempotency-key"),
        flaky[1].header("idempotency-key")
    );
    assert!(flaky[0].header("idempotency-key").is_some());
    let boom = server
        .requests()
        .iter()
        .filter(|r| r.target == "/boom")
        .count();
    assert_eq!(boom, 1, "retries are off by default for a tool");
}

#[test]
fn a_host_outside_the_allowlist_is_never_contacted() {
    let elsewhere = Server::start(|_| Reply::Json(200, "{}".into()));
    let target = elsewhere.url("/v1/steal");
    let server = Server::start(move |request| match request.path() {
        "/v1/away" => Reply::Raw {
            status: 302,
            headers: vec![("Location".into(), target.clone())],
            body: Vec::new(),
        },
        "/v1/moved" => Reply::Raw {
            status: 307,
            headers: vec![("Location".into(), "/v1/final".into())],
            body: Vec::new(),
        },
        "/v1/final" => Reply::Json(200, r#"{"here": true}"#.into()),
        _ => Reply::Json(404, "{}".into()),
    });
    let base = server.url("");

    // A url outside its own allowlist: refused before anything runs, and by `warden check`.
    let outside = format!(
        "[tools.bureau]\nprovider = \"http\"\nurl = \"{}\"\nallow = [\"{base}/v1/\"]\n",
        elsewhere.url("/v1/report")
    );
    let deployment = Deployment::new(&policy(&["bureau"], &[], 10_000, ""), &outside);
    let (code, _) = {
        let input = deployment.input(&json!([[tool("bureau", json!({}))]]));
        let dir = deployment.dir.path().to_str().expect("utf-8").to_string();
        let output = deployment.warden(&["run", &dir, "--input", input.to_str().expect("utf-8")]);
        let text = output_text(&output);
        assert!(
            text.contains("bindings.toml:3:7: tools.bureau.url")
                && text.contains("is not in the allowlist"),
            "{text}"
        );
        (output.status.code(), text)
    };
    assert_eq!(code, Some(2));
    let check = deployment.warden(&["check", deployment.dir.path().to_str().expect("utf-8")]);
    assert_eq!(check.status.code(), Some(2), "{}", output_text(&check));
    assert!(
        output_text(&check).contains("is not in the allowlist"),
        "{}",
        output_text(&check)
    );

    // A redirect out of the allowlist is refused at run time; one within it is followed.
    let bindings = format!(
        "[tools.away]\nprovider = \"http\"\nmethod = \"GET\"\nurl = \"{base}/v1/away\"\nallow = [\"{base}/v1/\"]\n\n\
         [tools.moved]\nprovider = \"http\"\nurl = \"{base}/v1/moved\"\nallow = [\"{base}/v1/\"]\n"
    );
    let deployment = Deployment::new(&policy(&["away", "moved"], &[], 10_000, ""), &bindings);
    let (reason, answers, _) = failing_run(&deployment, "away");
    assert!(
        reason.contains("tool `away`: GET ")
            && reason.contains("denied: ")
            && reason.contains("is not in the allowlist"),
        "{reason}"
    );
    assert!(answers.iter().any(|a| a.contains("denied")), "{answers:?}");
    assert!(
        elsewhere.requests().is_empty(),
        "the host outside the allowlist was contacted"
    );
    let (code, report) = deployment.run(
        &json!([[tool("moved", json!({"n": 1})), {"transition": {"to": "done"}}], [finish()]]),
    );
    assert_eq!(code, 0, "{report:#}");
    let final_request = server
        .requests()
        .into_iter()
        .find(|r| r.target == "/v1/final")
        .expect("followed");
    assert_eq!(
        (final_request.method.as_str(), final_request.json()),
        ("POST", json!({"n": 1}))
    );
}

#[test]
fn the_steps_wall_clock_budget_bounds_a_call_whose_timeout_is_longer() {
    let server = Server::start(|_| Reply::Hang);
    let bindings = format!(
        "[tools.bureau]\nprovider = \"http\"\nurl = \"{}\"\nallow = [\"{}\"]\ntimeout_ms = 60000\n",
        server.url("/v1/report"),
        server.url("/v1/")
    );
    let deployment = Deployment::new(&policy(&["bureau"], &[], 1_000, ""), &bindings);
    let started = Instant::now();
    let (code, report) = deployment.run(&json!([[tool("bureau", json!({}))]]));
    let took = started.elapsed();
    assert_eq!(code, 11, "{report:#}");
    assert!(took < Duration::from_secs(6), "a 1 s step waited {took:?}");
    let reason = report["reason"].as_str().unwrap_or_default();
    // Either the agent received the timeout and gave up, or the step's deadline stopped it
    // on its return: both are recorded failures naming the limit.
    assert!(
        reason.contains("what remained of the step's wall-clock budget")
            || reason.contains("wall-clock deadline exceeded"),
        "{reason}"
    );
    let answers = responses(&deployment.show(report["run_id"].as_str().expect("run id")));
    assert!(
        answers.iter().any(|a| a.contains("wall_clock_ms")),
        "the timeout is the call's recorded answer: {answers:?}"
    );
}

#[test]
fn resume_after_a_crash_mid_request_sends_the_effect_again_with_the_same_key() {
    let first = Arc::new(AtomicUsize::new(0));
    let seen = first.clone();
    let server = Server::start(move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            // The process is killed while it waits for this answer.
            Reply::Hang
        } else {
            Reply::Json(201, r#"{"paid": true}"#.into())
        }
    });
    let bindings = format!(
        "[tools.payout]\nprovider = \"http\"\nurl = \"{}\"\nallow = [\"{}\"]\neffect = true\ntimeout_ms = 20000\n",
        server.url("/v1/payouts"),
        server.url("/v1/")
    );
    let deployment = Deployment::new(&policy(&["payout"], &[], 30_000, ""), &bindings);
    let input = deployment.input(&json!([
        [tool("payout", json!({"amount": 900})), {"transition": {"to": "done"}}],
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

    let key = server.requests()[0]
        .header("idempotency-key")
        .expect("key")
        .to_string();
    let run_id = key.rsplit_once('/').expect("run/call").0.to_string();
    let resumed = deployment.warden(&["resume", &run_id, "--json"]);
    assert_eq!(resumed.status.code(), Some(0), "{}", output_text(&resumed));
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert_eq!(requests[1].header("idempotency-key"), Some(key.as_str()));
    assert_eq!(requests[0].body, requests[1].body);
    assert!(!holds(&deployment.journal_bytes(), SECRET));
    let verify = deployment.warden(&["verify", &run_id]);
    assert_eq!(verify.status.code(), Some(0), "{}", output_text(&verify));
}

#[test]
fn a_credential_echoed_with_json_escapes_is_redacted_too() {
    // The same bytes to a JSON parser, other bytes to a search for the credential: each
    // `-` as `\u002d` (and a PHP-style `\/` where there is none to escape).
    let escaped = SECRET.replace('-', "\\u002d");
    let body = format!(r#"{{"echo": "Bearer {escaped}", "score": 712}}"#);
    let mut server = Server::start(move |request| match request.target.as_str() {
        "/v1/report" => Reply::Json(200, body.clone()),
        _ => Reply::Json(500, body.clone()),
    });
    let bindings = format!(
        "{}\n[tools.failing]\nprovider = \"http\"\nurl = \"{base}/v1/fail\"\nallow = [\"{base}/v1/\"]\nheaders = {{ Authorization = {{ env = \"{SECRET_ENV}\" }} }}\n",
        http_bindings(&server),
        base = server.url("")
    );
    let deployment = Deployment::new(
        &policy(&["bureau", "payout", "failing"], &[], 10_000, ""),
        &bindings,
    );
    let plan = json!([
        [tool("bureau", json!({"applicant_id": "A-1"})), {"transition": {"to": "done"}}],
        [finish()]
    ]);
    let (code, report) = deployment.run(&plan);
    assert_eq!(code, 0, "{report:#}");
    let run_id = report["run_id"].as_str().expect("run id").to_string();
    let answers = responses(&deployment.show(&run_id)).join("\n");
    assert!(
        answers.contains("[redacted]") && answers.contains("712"),
        "{answers}"
    );
    // The scripted agent gives up on a failed call: the error is its recorded answer.
    let (code, report) = deployment.run(&json!([[tool("failing", json!({}))]]));
    assert_eq!(code, 11, "{report:#}");
    let failed = report["run_id"].as_str().expect("run id").to_string();
    let answers = responses(&deployment.show(&failed)).join("\n");
    assert!(
        answers.contains("500") && answers.contains("[redacted]"),
        "{answers}"
    );
    let export = deployment.warden(&["export", "--all"]).stdout;
    for (what, bytes) in [
        ("the journal", deployment.journal_bytes()),
        ("the export", export),
    ] {
        for form in [SECRET, escaped.as_str(), &escaped.replace('\\', "\\\\")] {
            assert!(
                !holds(&bytes, form),
                "the credential ({form}) was found in {what}"
            );
        }
    }
    server.stop();
    let replay = deployment.warden(&["replay", &run_id]);
    assert_eq!(replay.status.code(), Some(0), "{}", output_text(&replay));
}

#[test]
fn a_redirect_to_another_allowed_origin_does_not_carry_the_credential() {
    let other = Server::start(|_| Reply::Json(200, r#"{"public": true}"#.into()));
    let target = other.url("/public/x");
    let server = Server::start(move |request| match request.path() {
        "/v1/same" => Reply::Raw {
            status: 307,
            headers: vec![("Location".into(), "/v1/final".into())],
            body: Vec::new(),
        },
        "/v1/final" => Reply::Json(200, r#"{"here": true}"#.into()),
        _ => Reply::Raw {
            status: 307,
            headers: vec![("Location".into(), target.clone())],
            body: Vec::new(),
        },
    });
    let (base, public) = (server.url(""), other.url("/public/"));
    let tool_for = |name: &str, path: &str| {
        format!(
            "[tools.{name}]\nprovider = \"http\"\nurl = \"{base}{path}\"\nallow = [\"{base}/v1/\", \"{public}\"]\nheaders = {{ Authorization = {{ env = \"{SECRET_ENV}\", prefix = \"Bearer \" }}, Accept-Language = \"en\" }}\n\n"
        )
    };
    let bindings = tool_for("same", "/v1/same") + &tool_for("away", "/v1/away");
    let deployment = Deployment::new(&policy(&["same", "away"], &[], 10_000, ""), &bindings);
    let plan = json!([
        [tool("same", json!({})), tool("away", json!({})), {"transition": {"to": "done"}}],
        [finish()]
    ]);
    let (code, report) = deployment.run(&plan);
    assert_eq!(code, 0, "{report:#}");
    let bearer = format!("Bearer {SECRET}");
    // Within its origin the credential goes on; to the other allowed origin it does not,
    // and the other headers do.
    let followed = server
        .requests()
        .into_iter()
        .find(|r| r.target == "/v1/final")
        .expect("followed within the origin");
    assert_eq!(followed.header("authorization"), Some(bearer.as_str()));
    let elsewhere = other.requests();
    assert_eq!(elsewhere.len(), 1, "{elsewhere:#?}");
    assert_eq!(elsewhere[0].header("authorization"), None);
    assert_eq!(elsewhere[0].header("accept-language"), Some("en"));
}
