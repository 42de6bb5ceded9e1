//! Crash consistency: the real `warden` binary is killed with SIGKILL at chosen and at
//! random moments of a multi-step, effectful run (the `counter` agent: one ledger
//! `disbursement` per step), and the run is then resumed with `warden resume`.
//!
//! What a kill may lose:
//! - the step in flight: its records were never committed (a step is one redb
//!   transaction), so `warden resume` re-runs it from the last checkpoint;
//! - if the process dies before the run's first commit, the whole run: it is not listed,
//!   no effect of it was applied, and there is nothing to resume.
//!
//! What a kill must never lose, duplicate or corrupt:
//! - any committed step: its records, its checkpoint and the run's metadata;
//! - the hash chain of any run in the database (`warden verify --all` passes);
//! - exactly-once effects: a re-run step calls the ledger with the same idempotency key
//!   and gets the recorded receipt, so every ledger key of the run is recorded once, one
//!   per step.
//!
//! - the journal itself: a process killed while it creates a new database leaves no
//!   database or a usable one, never a file that every later command refuses.
//!
//! And after `warden resume`, a killed run is indistinguishable from an uninterrupted run
//! on the same input: the same status, state and output, and the same journal records,
//! up to the run id, the commit timestamps and the checkpoints' memory digests (guest
//! memory holds the receipts, hence the run id); those are checked by `warden replay` of
//! the resumed run, which must reproduce every record bit for bit.
//!
//! Also here: two processes on one database (the second is refused, never corrupts), a
//! read-only database and a full disk (clear errors, nothing committed is lost), and a
//! resume from another working directory (the run keeps its own ledger).
//!
//! The bulk version (>= 1000 kills at random moments over many runs) is ignored by default:
//! `cargo test -p warden --release --test crash -- --ignored --nocapture`

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Sandbox;

/// Steps of the runs the normal test kills (the agent takes one more to finish).
const STEPS: u32 = 25;
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
struct Workload {
    steps: u32,
    checkpoint_every: u32,
}

impl Workload {
    const fn new(steps: u32) -> Workload {
        Workload {
            steps,
            checkpoint_every: 1,
        }
    }

    /// The policy file (a variant is written into the sandbox).
    fn policy(self, sb: &Sandbox) -> PathBuf {
        let path = support::policy_path(POLICY);
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
struct Site<'a> {
    sb: &'a Sandbox,
    db: PathBuf,
}

impl<'a> Site<'a> {
    /// The sandbox's own database.
    fn new(sb: &'a Sandbox) -> Site<'a> {
        Site { sb, db: sb.db() }
    }

    /// Another database, with the same bindings and ledger.
    fn with_db(sb: &'a Sandbox, db: PathBuf) -> Site<'a> {
        Site { sb, db }
    }

    fn command(&self, args: &[OsString]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_warden"));
        command
            .arg("--db")
            .arg(&self.db)
            .args(args)
            .current_dir(self.sb.dir.path());
        command
    }

    /// Runs `warden ARGS` to its end; a panic of `warden` fails the test.
    fn warden<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
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
    fn json<S: AsRef<OsStr>>(&self, args: &[S]) -> (i32, Value) {
        let mut args: Vec<OsString> = args.iter().map(|a| a.as_ref().to_owned()).collect();
        args.push("--json".into());
        let output = self.warden(&args);
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
    fn counter_args(&self, work: Workload) -> Vec<OsString> {
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
    fn spawn(&self, what: &Start, stderr: &Path) -> Child {
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
    fn runs(&self) -> BTreeMap<String, (String, u64)> {
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
    fn verify_all(&self) -> Result<usize, String> {
        let (code, results) = self.json(&["verify", "--all"]);
        let results = results.as_array().cloned().unwrap_or_default();
        let broken: Vec<&Value> = results.iter().filter(|v| !v["problem"].is_null()).collect();
        if code != 0 || !broken.is_empty() {
            return Err(format!("warden verify --all exited {code}: {broken:?}"));
        }
        Ok(results.len())
    }

    /// `warden replay RUN_ID`: re-executing the run from its journal reproduces every
    /// record bit for bit, the memory digest of every checkpoint included.
    fn replay_identical(&self, run_id: &str) -> Result<(), String> {
        let (code, report) = self.json(&["replay", run_id]);
        if code != 0 || report["identical"] != json!(true) {
            return Err(format!(
                "warden replay {run_id} exited {code}: {}",
                report["divergence"]
            ));
        }
        Ok(())
    }

    /// A run as `warden show --json` has it, with its id replaced by [`RUN`].
    fn signature(&self, run_id: &str) -> Signature {
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
enum Start {
    /// `warden run COUNTER` for a workload.
    Run(Workload),
    /// `warden resume RUN_ID`.
    Resume(String),
}

fn panicked(status: ExitStatus, stderr: &str) -> bool {
    status.code() == Some(101) || stderr.contains("panicked")
}

/// Kills a child when dropped (a test that fails must not leave `warden` behind).
struct Reaper(Child);

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
struct Signature {
    status: String,
    state: String,
    steps: u64,
    host_calls: u64,
    fuel: u64,
    /// The agent's output, run id replaced.
    output: Option<Value>,
    /// `kind: text` of every record, run id replaced (timestamps are not in the text).
    records: Vec<String>,
    /// `warden show` found the chain intact.
    verified: bool,
}

impl Signature {
    /// Where `self` (a resumed run) departs from `expected` (an uninterrupted one).
    fn compare(&self, expected: &Signature) -> Result<(), String> {
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
fn reference(work: Workload) -> (Signature, Duration) {
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
fn ledger_lines(sb: &Sandbox) -> usize {
    std::fs::read(sb.path("ledger.jsonl"))
        .map(|bytes| bytes.iter().filter(|&&b| b == b'\n').count())
        .unwrap_or(0)
}

/// Effects of `run_id` in the ledger.
fn effects_of(sb: &Sandbox, run_id: &str) -> usize {
    let prefix = format!("{run_id}/");
    ledger(sb)
        .iter()
        .filter(|l| l["key"].as_str().is_some_and(|k| k.starts_with(&prefix)))
        .count()
}

/// Every effect of `run_id` is in the ledger exactly once: `steps` keys, each once, each
/// step's disbursement (`n` = 1..=steps) once, and the keys are the receipts of the output.
fn check_ledger(sb: &Sandbox, run_id: &str, steps: u32, run: &Signature) -> Result<(), String> {
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

// ---------------------------------------------------------------------------------------
// Killing

/// When to kill a child process.
#[derive(Clone, Copy, Debug)]
enum Moment {
    /// This long after it was spawned.
    After(Duration),
    /// As soon as the ledger holds this many effects of the run. The effect of step k is
    /// durable before step k is committed, so the kill lands during step k's commit or
    /// shortly after it: mid-step, or between steps.
    Effects(usize),
}

/// What a trial did to one run.
#[derive(Debug, Default)]
struct Trial {
    /// The run, unless every process was killed before its first commit.
    run_id: Option<String>,
    /// Kills that landed on a live process.
    kills: u32,
    /// `warden resume` processes started.
    resumes: u32,
    /// Kills before the run's first commit (nothing to resume).
    before_first_commit: u32,
    /// Kills after a step's effect was applied and before the step was committed: the
    /// resume must re-run the step and get the recorded receipt, not pay again.
    effect_uncommitted: u32,
    /// Each kill, for the log: what was killed, when, and what it had committed.
    log: Vec<String>,
}

impl Trial {
    /// Counts a kill that landed after the run was created, and logs what it had committed.
    fn landed(&mut self, site: &Site<'_>, run_id: &str, work: Workload, what: String) {
        let committed = site.runs()[run_id].1;
        let effects = effects_of(site.sb, run_id) as u64;
        self.kills += 1;
        let uncommitted = effects > committed.min(u64::from(work.steps));
        self.effect_uncommitted += u32::from(uncommitted);
        self.log.push(format!(
            "{what}: {committed} steps committed, {effects} effects{}",
            if uncommitted {
                " (one not committed)"
            } else {
                ""
            }
        ));
    }
}

/// Kills `child` at `moment` (if it is still running then) and reaps it. Returns whether
/// the kill landed on a live process, and how the process ended.
fn kill_at(
    child: Child,
    moment: Option<Moment>,
    sb: &Sandbox,
    run_id: Option<&str>,
) -> (bool, ExitStatus) {
    let mut child = Reaper(child);
    let spawned = Instant::now();
    let target = match moment {
        None => None,
        Some(Moment::After(delay)) => Some((Some(spawned + delay), usize::MAX)),
        Some(Moment::Effects(k)) => {
            let done = run_id.map_or(0, |id| effects_of(sb, id));
            Some((None, ledger_lines(sb) + k.saturating_sub(done)))
        }
    };
    let Some((deadline, lines)) = target else {
        return (false, child.0.wait().expect("wait for warden"));
    };
    loop {
        if let Some(status) = child.0.try_wait().expect("poll warden") {
            return (false, status);
        }
        let due = match deadline {
            Some(at) => Instant::now() >= at,
            None => ledger_lines(sb) >= lines,
        };
        if due {
            child.0.kill().expect("SIGKILL warden");
            let status = child.0.wait().expect("reap warden");
            return (!status.success() && status.code().is_none(), status);
        }
        match deadline {
            Some(at) => std::thread::sleep(
                at.saturating_duration_since(Instant::now())
                    .min(Duration::from_micros(500)),
            ),
            None => std::thread::sleep(Duration::from_micros(200)),
        }
    }
}

/// Starts a counter run of `work`, kills it at `moments(0)`, resumes it and kills
/// the resume at `moments(1)`, and so on until a process is let run (`None`) or ends by
/// itself and the run is no longer `running`. Returns what happened, or the first thing
/// that went wrong (a panic, a host error, a second run, a broken journal).
fn trial(
    site: &Site<'_>,
    work: Workload,
    moments: &mut dyn FnMut(u32) -> Option<Moment>,
) -> Result<Trial, String> {
    let sb = site.sb;
    let stderr = sb.path("stderr.txt");
    let known = site.runs();
    let ledger_before = ledger_lines(sb);
    let mut trial = Trial::default();
    let moment = moments(0);
    let child = site.spawn(&Start::Run(work), &stderr);
    let (killed, status) = kill_at(child, moment, sb, None);
    check_exit("run", status, killed, &stderr)?;
    let runs = site.runs();
    let new: Vec<&String> = runs.keys().filter(|id| !known.contains_key(*id)).collect();
    let run_id = match new.as_slice() {
        [] => {
            if !killed {
                return Err("warden run ended without creating a run".into());
            }
            if ledger_lines(sb) != ledger_before {
                return Err("a run killed before its first commit applied an effect".into());
            }
            trial.kills += 1;
            trial.before_first_commit += 1;
            trial.log.push(format!("run killed at {moment:?}: no run"));
            site.verify_all()?;
            return Ok(trial);
        }
        [id] => (*id).clone(),
        more => return Err(format!("one `warden run` created {} runs", more.len())),
    };
    if killed {
        trial.landed(site, &run_id, work, format!("run killed at {moment:?}"));
    }
    let mut attempt = 0;
    loop {
        let (status, _) = &site.runs()[&run_id];
        if status != "running" {
            break;
        }
        attempt += 1;
        if attempt > MAX_ATTEMPTS {
            return Err(format!(
                "run {run_id} still running after {MAX_ATTEMPTS} resumes"
            ));
        }
        // Whatever was killed, the journal must read and verify before anything resumes.
        site.verify_all()?;
        let moment = moments(attempt);
        trial.resumes += 1;
        let child = site.spawn(&Start::Resume(run_id.clone()), &stderr);
        let (killed, status) = kill_at(child, moment, sb, Some(&run_id));
        check_exit("resume", status, killed, &stderr)?;
        if killed {
            let what = format!("resume {attempt} killed at {moment:?}");
            trial.landed(site, &run_id, work, what);
        }
    }
    trial.run_id = Some(run_id);
    Ok(trial)
}

/// A process that was not killed must have completed (exit 0); none may have panicked.
fn check_exit(what: &str, status: ExitStatus, killed: bool, stderr: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(stderr).unwrap_or_default();
    if panicked(status, &text) {
        return Err(format!("warden {what} panicked: {text}"));
    }
    if !killed && status.code() != Some(0) {
        return Err(format!("warden {what} exited {status}: {text}"));
    }
    Ok(())
}

/// The run of a finished trial equals `expected` and its effects are each in the ledger
/// once; the whole database verifies.
fn check_trial(
    site: &Site<'_>,
    trial: &Trial,
    work: Workload,
    expected: &Signature,
) -> Result<(), String> {
    site.verify_all()?;
    let Some(run_id) = &trial.run_id else {
        return Ok(());
    };
    let resumed = site.signature(run_id);
    resumed
        .compare(expected)
        .map_err(|e| format!("run {run_id} ({:?}): {e}", trial.log))?;
    site.replay_identical(run_id)
        .map_err(|e| format!("run {run_id} ({:?}): {e}", trial.log))?;
    check_ledger(site.sb, run_id, work.steps, &resumed)
}

/// A small deterministic generator (xorshift64*), seeded from `CRASH_SEED` or the clock.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| u64::from(std::process::id()) ^ warden::journal::now_ms());
        println!("crash: seed {seed} (set CRASH_SEED={seed} to repeat)");
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A random moment in a run of `steps` steps that takes about `span`.
    fn moment(&mut self, steps: u32, span: Duration) -> Moment {
        if self.chance(50) {
            Moment::Effects(self.below(u64::from(steps) + 2) as usize)
        } else {
            let micros = span.as_micros() as u64 * 12 / 10;
            Moment::After(Duration::from_micros(self.below(micros)))
        }
    }
}

// ---------------------------------------------------------------------------------------
// The tests

/// Kills before the first commit, during chosen steps, at random moments and during
/// resumes; every killed run resumes to exactly what an uninterrupted run produces.
#[test]
fn killed_runs_resume_to_the_uninterrupted_result() {
    let started = Instant::now();
    let every_step = Workload::new(STEPS);
    let every_4 = Workload {
        checkpoint_every: 4,
        ..every_step
    };
    let references: HashMap<Workload, (Signature, Duration)> = [every_step, every_4]
        .into_iter()
        .map(|w| (w, reference(w)))
        .collect();
    let span = references[&every_step].1;
    let mut rng = Rng::new();
    let (mut kills, mut mid_step, mut resumes, mut completed) = (0, 0, 0, 0);
    let mut run = |site: &Site<'_>, work, moments: &mut dyn FnMut(u32) -> Option<Moment>| {
        let trial = trial(site, work, moments).unwrap_or_else(|e| panic!("{e}"));
        check_trial(site, &trial, work, &references[&work].0).unwrap_or_else(|e| panic!("{e}"));
        for line in &trial.log {
            println!("  {line}");
        }
        kills += trial.kills;
        mid_step += trial.effect_uncommitted;
        resumes += trial.resumes;
        completed += u32::from(trial.run_id.is_some());
    };

    // Before anything is committed: right after the spawn, on a fresh database (the kill
    // may land while redb creates the file) and on one that holds runs.
    for delay_ms in [0, 1, 3, 8] {
        let sb = Sandbox::new();
        run(&Site::new(&sb), every_step, &mut |attempt| {
            (attempt == 0).then_some(Moment::After(Duration::from_millis(delay_ms)))
        });
    }
    let sb = Sandbox::new();
    let site = Site::new(&sb);
    for delay_ms in [0, 5, 15] {
        run(&site, every_step, &mut |attempt| {
            (attempt == 0).then_some(Moment::After(Duration::from_millis(delay_ms)))
        });
    }

    // During step k (its effect applied, its commit in flight or just done), then resumed.
    for k in [1, 2, 7, 13, 19, 24, 25] {
        run(&site, every_step, &mut |attempt| {
            (attempt == 0).then_some(Moment::Effects(k))
        });
    }

    // One run killed again and again: the run, then each resume, further on each time.
    let mut chain = [3, 8, 8, 14, 20, 25].into_iter();
    run(&site, every_step, &mut |_| {
        chain.next().map(Moment::Effects)
    });

    // A checkpoint every 4 steps: a resume re-executes committed steps before going live.
    for k in [3, 6, 11] {
        run(&site, every_4, &mut |attempt| {
            (attempt == 0).then_some(Moment::Effects(k))
        });
    }
    let mut chain = [7, 9, 18].into_iter();
    run(&site, every_4, &mut |_| chain.next().map(Moment::Effects));

    // Random moments, the resumes too.
    for _ in 0..4 {
        let mut left = 1 + rng.below(3);
        run(&site, every_step, &mut |_| {
            (left > 0).then(|| {
                left -= 1;
                rng.moment(STEPS, span)
            })
        });
    }

    let runs = site.verify_all().expect("verify --all");
    println!(
        "crash: {kills} kills ({mid_step} with an effect applied and its step not committed), {resumes} resumes, {completed} runs completed identically, {runs} runs in the shared journal, {:.1?}",
        started.elapsed()
    );
    assert!(kills >= 20, "only {kills} kills landed");
    assert!(
        mid_step >= 5,
        "only {mid_step} kills between an effect and its commit"
    );
}

/// The bulk version: at least 1000 kills (`CRASH_KILLS`) at random moments over many runs
/// of random lengths and checkpoint intervals, counting what happened. Prints one summary
/// line.
#[test]
#[ignore = "takes minutes: cargo test -p warden --release --test crash -- --ignored --nocapture"]
fn crash_many_kills() {
    let target: u32 = std::env::var("CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let started = Instant::now();
    let mut rng = Rng::new();
    let mut references: HashMap<Workload, (Signature, Duration)> = HashMap::new();
    let (mut runs, mut kills, mut before_commit, mut mid_step) = (0u32, 0u32, 0u32, 0u32);
    let (mut resumes, mut interrupted, mut identical, mut panics) = (0u32, 0u32, 0u32, 0u32);
    let mut failures: Vec<String> = Vec::new();
    let mut sandbox = Sandbox::new();
    while kills < target && failures.len() < 20 {
        // A fresh database now and then, so kills also land while one is being created.
        if runs % 20 == 19 {
            sandbox = Sandbox::new();
        }
        let site = Site::new(&sandbox);
        let work = Workload {
            steps: 1 + rng.below(30) as u32,
            checkpoint_every: [1, 1, 1, 2, 5][rng.below(5) as usize],
        };
        let (expected, span) = references
            .entry(work)
            .or_insert_with(|| reference(work))
            .clone();
        runs += 1;
        let mut moments = |attempt: u32| {
            // Always kill the run; kill most resumes, let the others finish.
            (attempt == 0 || rng.chance(60)).then(|| rng.moment(work.steps, span))
        };
        let outcome = trial(&site, work, &mut moments)
            .and_then(|t| check_trial(&site, &t, work, &expected).map(|()| t));
        match outcome {
            Ok(trial) => {
                kills += trial.kills;
                resumes += trial.resumes;
                before_commit += trial.before_first_commit;
                mid_step += trial.effect_uncommitted;
                interrupted += u32::from(trial.resumes > 0);
                identical += u32::from(trial.run_id.is_some());
            }
            Err(e) => {
                panics += u32::from(e.contains("panicked"));
                if failures.len() < 10 {
                    eprintln!("crash: run {runs} ({work:?}): {e}");
                }
                failures.push(e);
                // Go on in a fresh database: this one holds a run that went wrong.
                sandbox = Sandbox::new();
            }
        }
    }
    println!(
        "crash_many_kills: {runs} runs, {kills} kills ({before_commit} before the run's first commit, {mid_step} between an effect and its step's commit), {interrupted} runs resumed ({resumes} resume processes), {identical}/{} completed identically, {} failures, panics = {panics}, {:.0?}",
        runs - before_commit,
        failures.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} failures, first: {}",
        failures.len(),
        failures[0]
    );
}

/// While one process holds the journal, a second is refused with a clear message and exit
/// code 1, and applies no effect; the journal is intact afterwards.
#[test]
fn a_second_process_is_refused_while_one_holds_the_journal() {
    let sb = Sandbox::new();
    let site = Site::new(&sb);
    let in_use = |output: &Output| {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
        assert!(
            stderr.contains("open in another warden process")
                && stderr.contains(&sb.db().display().to_string()),
            "the refusal names the journal and says why: {stderr}"
        );
    };
    let run_args = site.counter_args(Workload::new(3));
    assert_eq!(site.warden(&run_args).status.code(), Some(0));

    // This test process holds the journal.
    let held = sb.journal();
    in_use(&site.warden(&["runs", "--json"]));
    in_use(&site.warden(&run_args));
    assert_eq!(ledger_lines(&sb), 3, "a refused run applied an effect");
    drop(held);

    // Another `warden` holds it: a long run, stopped (SIGSTOP) mid-run so that the
    // refusal is not a race.
    let child = site.spawn(&Start::Run(Workload::new(39)), &sb.path("stderr.txt"));
    let mut child = Reaper(child);
    let pid = child.0.id().to_string();
    while ledger_lines(&sb) < 3 + 1 {
        assert!(
            child.0.try_wait().expect("poll").is_none(),
            "the long run ended early"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let signal = |name: &str| {
        let status = Command::new("kill")
            .args([name, &pid])
            .status()
            .expect("kill(1)");
        assert!(status.success(), "kill {name} {pid}");
    };
    signal("-STOP");
    in_use(&site.warden(&["runs", "--json"]));
    in_use(&site.warden(&["verify", "--all", "--json"]));
    signal("-CONT");
    let status = child.0.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "the long run completes");

    let runs = site.runs();
    assert_eq!(runs.len(), 2);
    assert!(
        runs.values().all(|(status, _)| status == "completed"),
        "{runs:?}"
    );
    assert_eq!(site.verify_all().expect("verify --all"), 2);
    assert_eq!(ledger_lines(&sb), 3 + 39);
}

/// Undoes `chattr +i` or a read-only bind mount when dropped.
enum ReadOnly {
    Immutable(PathBuf),
    Mounted(PathBuf),
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = match self {
            ReadOnly::Immutable(path) => Command::new("chattr").arg("-i").arg(path).status(),
            ReadOnly::Mounted(path) => Command::new("umount").arg("-l").arg(path).status(),
        };
    }
}

/// Makes the database `db` (in directory `dir`) read-only, even for root: chmod 0444,
/// and when that does not stop writes (root ignores it), `chattr +i` on the file, or else
/// a read-only bind mount of the directory. Says why when none of it works.
fn make_read_only(dir: &Path, db: &Path) -> Result<Option<ReadOnly>, String> {
    use std::os::unix::fs::PermissionsExt;
    let writable = || std::fs::OpenOptions::new().write(true).open(db).is_ok();
    std::fs::set_permissions(db, std::fs::Permissions::from_mode(0o444))
        .map_err(|e| format!("chmod 0444: {e}"))?;
    if !writable() {
        return Ok(None);
    }
    let chattr = Command::new("chattr").arg("+i").arg(db).output();
    if chattr.as_ref().is_ok_and(|o| o.status.success()) {
        let guard = ReadOnly::Immutable(db.to_path_buf());
        if !writable() {
            return Ok(Some(guard));
        }
    }
    let bind = Command::new("mount")
        .arg("--bind")
        .arg(dir)
        .arg(dir)
        .status();
    if bind.is_ok_and(|s| s.success()) {
        let guard = ReadOnly::Mounted(dir.to_path_buf());
        let ro = Command::new("mount")
            .args(["-o", "remount,bind,ro"])
            .arg(dir)
            .status();
        if ro.is_ok_and(|s| s.success()) && !writable() {
            return Ok(Some(guard));
        }
    }
    Err(format!(
        "running as root, chmod 0444 does not stop writes, and neither `chattr +i` ({}) nor a read-only bind mount is available",
        chattr.map_or_else(
            |e| e.to_string(),
            |o| String::from_utf8_lossy(&o.stderr).trim().to_string()
        )
    ))
}

/// A journal that cannot be written: `warden run` fails with exit code 1 and an error that
/// names the journal, applies no effect, and what was committed is intact afterwards.
#[test]
fn a_read_only_journal_is_refused_and_nothing_is_lost() {
    let sb = Sandbox::new();
    let dir = sb.path("ro");
    std::fs::create_dir(&dir).expect("mkdir");
    let site = Site::with_db(&sb, dir.join("warden.redb"));
    let run_args = site.counter_args(Workload::new(3));
    assert_eq!(site.warden(&run_args).status.code(), Some(0));
    let before = site.runs();
    let bytes = std::fs::read(&site.db).expect("read db");

    let guard = match make_read_only(&dir, &site.db) {
        Ok(guard) => guard,
        Err(reason) => {
            println!("SKIPPED a_read_only_journal_is_refused_and_nothing_is_lost: {reason}");
            return;
        }
    };
    let output = site.warden(&run_args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains(&format!("journal {}", site.db.display())),
        "the error names the journal: {stderr}"
    );
    assert!(
        [
            "Permission denied",
            "Operation not permitted",
            "Read-only file system"
        ]
        .iter()
        .any(|why| stderr.contains(why)),
        "the error says why: {stderr}"
    );
    assert_eq!(ledger_lines(&sb), 3, "a refused run applied an effect");
    // Inspection opens the journal read-only, so a protected journal can still be audited.
    assert_eq!(site.runs(), before);
    site.verify_all()
        .expect("verify --all of a read-only journal");
    assert_eq!(std::fs::read(&site.db).expect("read db"), bytes);
    drop(guard);

    assert_eq!(site.runs(), before);
    site.verify_all().expect("verify --all");
}

/// Unmounts a tmpfs when dropped.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A journal on a full disk: the run that fills it fails with exit code 1 and an error
/// naming the journal; a copy of the database verifies, holds every committed step intact,
/// and its interrupted run resumes to the uninterrupted result without repeating an effect.
#[test]
fn a_full_disk_fails_cleanly_and_loses_no_committed_step() {
    let sb = Sandbox::new();
    let full = sb.path("full");
    std::fs::create_dir(&full).expect("mkdir");
    let mount = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&full)
        .output();
    let _tmpfs = match mount {
        Ok(o) if o.status.success() => Tmpfs(full.clone()),
        other => {
            let why = other.map_or_else(
                |e| e.to_string(),
                |o| String::from_utf8_lossy(&o.stderr).trim().to_string(),
            );
            println!(
                "SKIPPED a_full_disk_fails_cleanly_and_loses_no_committed_step: cannot mount a 2 MiB tmpfs: {why}"
            );
            return;
        }
    };
    let work = Workload::new(STEPS);
    let (expected, _) = reference(work);
    let site = Site::with_db(&sb, full.join("warden.redb"));
    let run_args = site.counter_args(work);
    let failed = (0..20)
        .map(|_| site.warden(&run_args))
        .find(|output| output.status.code() != Some(0))
        .expect("2 MiB fill up within 20 runs");
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains(&format!("journal {}", site.db.display()))
            && stderr.contains("No space left on device"),
        "the error names the journal and says why: {stderr}"
    );

    let copy = Site::with_db(&sb, sb.path("copy.redb"));
    std::fs::copy(&site.db, &copy.db).expect("copy the journal off the full disk");
    copy.verify_all().expect("verify --all on the copy");
    let runs = copy.runs();
    let interrupted = runs.values().filter(|(status, _)| status == "running");
    assert!(interrupted.count() <= 1, "{runs:?}");
    for (run_id, (status, steps)) in &runs {
        // Every committed record is the uninterrupted run's, up to the last commit.
        let stored = copy.signature(run_id);
        assert!(stored.verified);
        assert_eq!(
            stored.records[..],
            expected.records[..stored.records.len()],
            "run {run_id}"
        );
        let committed = stored
            .records
            .iter()
            .filter(|r| r.starts_with("step_committed"))
            .count();
        assert_eq!(committed as u64, *steps, "run {run_id}");
        if status == "running" {
            println!("crash: the full disk stopped run {run_id} after {steps} committed steps");
            let (code, report) = copy.json(&["resume", run_id]);
            assert_eq!(code, 0, "{report}");
        }
        let finished = copy.signature(run_id);
        finished
            .compare(&expected)
            .expect("the run as if uninterrupted");
        copy.replay_identical(run_id).expect("the run replays");
        check_ledger(&sb, run_id, STEPS, &finished).expect("exactly-once effects");
    }
    copy.verify_all().expect("verify --all on the copy");
}

/// Regression: a `warden` killed while it created a new journal could leave a file that
/// redb had sized but not yet stamped with its magic number (redb writes it last), and
/// every later command on that path failed with "Not a redb database: magic number
/// mismatch". A kill at any moment of the creation must leave no journal or a usable one.
/// (Inspection commands never create a journal, so the kills hit `warden run`.)
#[test]
fn a_kill_while_a_journal_is_created_leaves_no_unopenable_file() {
    let sb = Sandbox::new();
    let mut rng = Rng::new();
    let (mut kills, mut created) = (0, 0);
    for i in 0..100 {
        let site = Site::with_db(&sb, sb.path(&format!("new-{i}.redb")));
        // `warden run` opens (so creates) the journal before anything else.
        let child = site
            .command(&site.counter_args(Workload::new(1)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn warden");
        let delay = Duration::from_micros(300 + rng.below(8_000));
        let (killed, _) = kill_at(child, Some(Moment::After(delay)), &sb, None);
        kills += u32::from(killed);
        created += u32::from(site.db.exists());
        let output = site.warden(&["runs", "--json"]);
        assert!(
            output.status.success(),
            "after a kill {delay:?} into `warden run` on a new journal: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(site.runs().len() <= 1);
    }
    println!("crash: {kills} kills while creating a journal ({created} left a file), all usable");
}

/// Regression: `warden run --bindings bindings.toml` (a relative path) recorded the path as
/// given, so `warden resume` from another directory loaded another `bindings.toml` with
/// the same digest, hence another ledger: the step in flight paid again there, and the
/// rest of the run paid into the wrong ledger.
#[test]
fn a_resume_from_another_directory_keeps_the_recorded_ledger() {
    let (home, elsewhere) = (Sandbox::new(), Sandbox::new());
    let site = Site::new(&home);
    let work = Workload::new(8);
    let mut args = site.counter_args(work);
    args[5] = "bindings.toml".into();
    assert_eq!(args[4], "--bindings");
    let child = site
        .command(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn warden");
    let (killed, _) = kill_at(child, Some(Moment::Effects(3)), &home, None);
    assert!(killed, "the run ended before its third effect");
    let runs = site.runs();
    let run_id = runs.keys().next().expect("the run was created");

    let resume = Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("--db")
        .arg(&site.db)
        .args(["resume", run_id])
        .current_dir(elsewhere.dir.path())
        .output()
        .expect("run warden");
    assert!(
        resume.status.success(),
        "{}",
        String::from_utf8_lossy(&resume.stderr)
    );
    assert_eq!(
        effects_of(&elsewhere, run_id),
        0,
        "paid into another ledger"
    );
    let finished = site.signature(run_id);
    check_ledger(&home, run_id, work.steps, &finished).expect("exactly-once effects");
}
