//! The crash harness behind `tests/crash.rs`: the counter workload, the real `warden`
//! binary driven as a child process on one journal ([`Site`]), what a killed-and-resumed
//! run must share with an uninterrupted one ([`Signature`]), and the ledger checks of
//! exactly-once effects. Killing and resuming is in [`kill`]; making a journal read-only
//! or its disk full, in [`disk`].

mod disk;
mod kill;

pub use disk::{make_read_only, mount_tmpfs};
pub use kill::{Moment, Rng, check_trial, kill_at, trial};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::Sandbox;
use serde_json::{Value, json};

/// Steps of the runs the normal test kills (the agent takes one more to finish).
pub const STEPS: u32 = 25;
/// What each `disbursement` pays.
const AMOUNT: u64 = 100;
/// The policy the counter runs under (`max_steps = 40`, `checkpoint_every = 1`).
const POLICY: &str = "test-basic.toml";
/// Stands for the run id when runs are compared.
const RUN: &str = "<run>";
/// How many times one run may be resumed before the harness gives up on it.
const MAX_ATTEMPTS: u32 = 64;

/// What a trial runs: the counter for `steps` steps (plus one to finish), under
/// `policies/test-basic.toml` with `checkpoint_every` changed. Above 1, a resume restores
/// an older checkpoint and re-executes the committed steps after it against their records
/// before it goes on live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Workload {
    pub steps: u32,
    pub checkpoint_every: u32,
}

impl Workload {
    pub const fn new(steps: u32) -> Workload {
        Workload {
            steps,
            checkpoint_every: 1,
        }
    }

    /// The policy file (a variant is written into the sandbox).
    fn policy(self, sb: &Sandbox) -> PathBuf {
        let path = crate::support::policy_path(POLICY);
        if self.checkpoint_every == 1 {
            return path;
        }
        let text = std::fs::read_to_string(&path).expect("read the policy");
        let variant = text.replace(
            "checkpoint_every = 1\n",
            &format!("checkpoint_every = {}\n", self.checkpoint_every),
        );
        assert_ne!(variant, text, "{POLICY} sets checkpoint_every = 1");
        let path = sb.path(&format!("test-basic-every-{}.toml", self.checkpoint_every));
        std::fs::write(&path, variant).expect("write the policy variant");
        path
    }

    /// The input file.
    fn input(self, sb: &Sandbox) -> PathBuf {
        sb.input(
            &format!("counter-{}.json", self.steps),
            &json!({ "steps": self.steps, "amount": AMOUNT }),
        )
    }
}

// ---------------------------------------------------------------------------------------
// The `warden` binary

/// One journal database, used with a sandbox's bindings and ledger.
pub struct Site<'a> {
    sb: &'a Sandbox,
    pub db: PathBuf,
}

impl<'a> Site<'a> {
    /// The sandbox's own database.
    pub fn new(sb: &'a Sandbox) -> Site<'a> {
        Site { sb, db: sb.db() }
    }

    /// Another database, with the same bindings and ledger.
    pub fn with_db(sb: &'a Sandbox, db: PathBuf) -> Site<'a> {
        Site { sb, db }
    }

    pub fn command(&self, args: &[OsString]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_warden"));
        command
            .arg("--db")
            .arg(&self.db)
            .args(args)
            .current_dir(self.sb.dir.path());
        command
    }

    /// Runs `warden ARGS` to its end; a panic of `warden` fails the test.
    pub fn warden<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        let args: Vec<OsString> = args.iter().map(|a| a.as_ref().to_owned()).collect();
        let output = self.command(&args).output().expect("run warden");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !panicked(output.status, &stderr),
            "warden {args:?} panicked: {stderr}"
        );
        output
    }

    /// Runs `warden ARGS --json` and parses what it prints.
    pub fn json<S: AsRef<OsStr>>(&self, args: &[S]) -> (i32, Value) {
        let mut args: Vec<OsString> = args.iter().map(|a| a.as_ref().to_owned()).collect();
        args.push("--json".into());
        let output = self.warden(&args);
        // A run killed before its journal was linked into place leaves no journal:
        // listing it is listing no runs.
        if args.first().is_some_and(|a| a == "runs" || a == "verify")
            && !self.db.exists()
            && String::from_utf8_lossy(&output.stderr).contains("there is no journal")
        {
            return (0, json!([]));
        }
        let json = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "warden {args:?} printed no JSON ({e}); stdout: {}; stderr: {}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        });
        (output.status.code().unwrap_or(-1), json)
    }

    /// The arguments of `warden run COUNTER` for `work`, with the sandbox's bindings.
    pub fn counter_args(&self, work: Workload) -> Vec<OsString> {
        vec![
            "run".into(),
            warden_test_guests::COUNTER.into(),
            "--policy".into(),
            work.policy(self.sb).into(),
            "--bindings".into(),
            self.sb.bindings().into(),
            "--input".into(),
            work.input(self.sb).into(),
        ]
    }

    /// Starts `warden run COUNTER` (or `warden resume RUN_ID`) as a child whose standard
    /// error goes to `stderr`.
    pub fn spawn(&self, what: &Start, stderr: &Path) -> Child {
        let args: Vec<OsString> = match what {
            Start::Run(work) => {
                let mut args = self.counter_args(*work);
                args.push("--json".into());
                args
            }
            Start::Resume(run_id) => vec!["resume".into(), run_id.into(), "--json".into()],
        };
        self.command(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(stderr).expect("stderr file"))
            .spawn()
            .expect("spawn warden")
    }

    /// `warden runs --json`: run id → (status, steps). Never fails after a kill.
    pub fn runs(&self) -> BTreeMap<String, (String, u64)> {
        let (code, runs) = self.json(&["runs"]);
        assert_eq!(code, 0, "warden runs failed: {runs}");
        runs.as_array()
            .expect("runs is an array")
            .iter()
            .map(|r| {
                (
                    r["run_id"].as_str().expect("run_id").to_string(),
                    (
                        r["status"].as_str().expect("status").to_string(),
                        r["steps"].as_u64().expect("steps"),
                    ),
                )
            })
            .collect()
    }

    /// `warden verify --all`: every run's chain checks out.
    pub fn verify_all(&self) -> Result<usize, String> {
        let (code, audit) = self.json(&["verify", "--all"]);
        let results = audit["runs"].as_array().cloned().unwrap_or_default();
        let broken: Vec<&Value> = results.iter().filter(|v| !v["problem"].is_null()).collect();
        if code != 0 || !broken.is_empty() {
            return Err(format!(
                "warden verify --all exited {code}: {broken:?}; log: {}",
                audit["log"]
            ));
        }
        Ok(results.len())
    }

    /// `warden replay RUN_ID`: re-executing the run from its journal reproduces every
    /// record bit for bit, the memory digest of every checkpoint included.
    pub fn replay_identical(&self, run_id: &str) -> Result<(), String> {
        let (code, report) = self.json(&["replay", run_id]);
        if code != 0 || report["verdict"] != json!("identical") {
            return Err(format!(
                "warden replay {run_id} exited {code}: {}",
                report["divergence"]
            ));
        }
        Ok(())
    }

    /// A run as `warden show --json` has it, with its id replaced by [`RUN`].
    pub fn signature(&self, run_id: &str) -> Signature {
        let (code, show) = self.json(&["show", run_id]);
        assert_eq!(code, 0, "warden show {run_id} exited {code}: {show}");
        let plain = |v: &Value| v.as_str().unwrap_or_default().replace(run_id, RUN);
        let run = &show["run"];
        Signature {
            status: plain(&run["status"]),
            state: plain(&run["state"]),
            steps: run["steps"].as_u64().unwrap_or_default(),
            host_calls: run["host_calls"].as_u64().unwrap_or_default(),
            fuel: run["fuel"].as_u64().unwrap_or_default(),
            output: run["output"].as_str().map(|o| {
                serde_json::from_str(&o.replace(run_id, RUN)).expect("the output is JSON")
            }),
            records: show["records"]
                .as_array()
                .expect("records")
                .iter()
                .map(|r| record_text(&plain(&r["kind"]), &plain(&r["text"])))
                .collect(),
            verified: show["verification"]["problem"].is_null(),
        }
    }
}

/// A record as compared across runs: `kind: text`. A checkpoint's memory digest is left
/// out, because guest memory holds the receipts, which hold the run id; the digests are
/// checked instead by replaying the run itself (see [`Site::replay_identical`]).
fn record_text(kind: &str, text: &str) -> String {
    match (kind, text.rsplit_once(": ")) {
        ("checkpoint", Some((head, _digest))) => format!("{kind}: {head}: <memory digest>"),
        _ => format!("{kind}: {text}"),
    }
}

/// What a child process does.
pub enum Start {
    /// `warden run COUNTER` for a workload.
    Run(Workload),
    /// `warden resume RUN_ID`.
    Resume(String),
}

fn panicked(status: ExitStatus, stderr: &str) -> bool {
    status.code() == Some(101) || stderr.contains("panicked")
}

/// Kills a child when dropped (a test that fails must not leave `warden` behind).
pub struct Reaper(pub Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------------------
// What is compared

/// What must be the same for a killed-and-resumed run as for an uninterrupted one.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    pub status: String,
    pub state: String,
    pub steps: u64,
    pub host_calls: u64,
    pub fuel: u64,
    /// The agent's output, run id replaced.
    pub output: Option<Value>,
    /// `kind: text` of every record, run id replaced (timestamps are not in the text).
    pub records: Vec<String>,
    /// `warden show` found the chain intact.
    pub verified: bool,
}

impl Signature {
    /// Where `self` (a resumed run) departs from `expected` (an uninterrupted one).
    pub fn compare(&self, expected: &Signature) -> Result<(), String> {
        if self == expected {
            return Ok(());
        }
        if let Some(i) = (0..self.records.len().max(expected.records.len()))
            .find(|&i| self.records.get(i) != expected.records.get(i))
        {
            return Err(format!(
                "record {i} differs: expected {:?}, found {:?} ({} records, expected {})",
                expected.records.get(i),
                self.records.get(i),
                self.records.len(),
                expected.records.len()
            ));
        }
        Err(format!(
            "run differs: expected {:?} {:?} steps {} calls {} fuel {} output {:?} verified {}, found {:?} {:?} steps {} calls {} fuel {} output {:?} verified {}",
            expected.status,
            expected.state,
            expected.steps,
            expected.host_calls,
            expected.fuel,
            expected.output,
            expected.verified,
            self.status,
            self.state,
            self.steps,
            self.host_calls,
            self.fuel,
            self.output,
            self.verified
        ))
    }
}

/// An uninterrupted run of `work`, in a sandbox of its own, and how long it took.
pub fn reference(work: Workload) -> (Signature, Duration) {
    let sb = Sandbox::new();
    let site = Site::new(&sb);
    let args = site.counter_args(work);
    let started = Instant::now();
    let (code, report) = site.json(&args);
    let took = started.elapsed();
    assert_eq!(code, 0, "the uninterrupted run completes: {report}");
    let run_id = report["run_id"].as_str().expect("run_id");
    let signature = site.signature(run_id);
    assert_eq!(signature.status, "completed");
    assert_eq!(signature.steps, u64::from(work.steps) + 1);
    check_ledger(&sb, run_id, work.steps, &signature).expect("the uninterrupted run's ledger");
    site.replay_identical(run_id)
        .expect("the uninterrupted run replays");
    (signature, took)
}

/// The ledger's lines, parsed. A last line without its newline that does not parse is the
/// trace of a torn append, which the ledger itself ignores; so does this.
fn ledger(sb: &Sandbox) -> Vec<Value> {
    let text = std::fs::read_to_string(sb.path("ledger.jsonl")).unwrap_or_default();
    let mut lines: Vec<&str> = text.split('\n').collect();
    let last = lines.pop().unwrap_or_default();
    let mut values: Vec<Value> = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("ledger line {l:?}: {e}")))
        .collect();
    if let Ok(value) = serde_json::from_str(last) {
        values.push(value);
    }
    values
}

/// Lines in the ledger file: it grows by one, fsynced, before each step's commit.
pub fn ledger_lines(sb: &Sandbox) -> usize {
    std::fs::read(sb.path("ledger.jsonl"))
        .map(|bytes| bytes.iter().filter(|&&b| b == b'\n').count())
        .unwrap_or(0)
}

/// Effects of `run_id` in the ledger.
pub fn effects_of(sb: &Sandbox, run_id: &str) -> usize {
    let prefix = format!("{run_id}/");
    ledger(sb)
        .iter()
        .filter(|l| l["key"].as_str().is_some_and(|k| k.starts_with(&prefix)))
        .count()
}

/// Every effect of `run_id` is in the ledger exactly once: `steps` keys, each once, each
/// step's disbursement (`n` = 1..=steps) once, and the keys are the receipts of the output.
pub fn check_ledger(sb: &Sandbox, run_id: &str, steps: u32, run: &Signature) -> Result<(), String> {
    let lines = ledger(sb);
    let mut keys: HashMap<&str, usize> = HashMap::new();
    for line in &lines {
        *keys.entry(line["key"].as_str().unwrap_or("?")).or_default() += 1;
    }
    if let Some((key, n)) = keys.iter().find(|(_, n)| **n > 1) {
        return Err(format!("ledger key {key} is recorded {n} times"));
    }
    let prefix = format!("{run_id}/");
    let ours: Vec<&Value> = lines
        .iter()
        .filter(|l| l["key"].as_str().is_some_and(|k| k.starts_with(&prefix)))
        .collect();
    let numbers: BTreeSet<u64> = ours
        .iter()
        .filter_map(|l| l["args"]["n"].as_u64())
        .collect();
    if ours.len() != steps as usize || numbers != (1..=u64::from(steps)).collect() {
        return Err(format!(
            "run {run_id} has {} ledger entries for steps {numbers:?}; expected one for each of 1..={steps}",
            ours.len()
        ));
    }
    let receipts: BTreeSet<String> = ours
        .iter()
        .map(|l| l["key"].as_str().unwrap_or_default().replace(run_id, RUN))
        .collect();
    let output: BTreeSet<String> = run
        .output
        .as_ref()
        .and_then(|o| o["receipts"].as_array())
        .map(|r| {
            r.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if receipts != output {
        return Err(format!(
            "run {run_id}: ledger keys {receipts:?} are not the output's receipts {output:?}"
        ));
    }
    Ok(())
}
