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
//! `cargo test -p warden-cli --release --test all crash -- --ignored --nocapture`
//!
//! The harness (the workload, driving and killing `warden`, the checks) is in
//! `tests/support/crash.rs`.

use std::collections::HashMap;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::Sandbox;
use crate::support::crash::{
    Moment, Reaper, Rng, STEPS, Signature, Site, Start, Workload, check_ledger, check_trial,
    effects_of, kill_at, ledger_lines, make_read_only, mount_tmpfs, reference, trial,
};

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
#[ignore = "takes minutes: cargo test -p warden-cli --release --test all crash -- --ignored --nocapture"]
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

/// A journal on a full disk: the run that fills it fails with exit code 1 and an error
/// naming the journal; a copy of the database verifies, holds every committed step intact,
/// and its interrupted run resumes to the uninterrupted result without repeating an effect.
#[test]
fn a_full_disk_fails_cleanly_and_loses_no_committed_step() {
    let sb = Sandbox::new();
    let full = sb.path("full");
    std::fs::create_dir(&full).expect("mkdir");
    let _tmpfs = match mount_tmpfs(&full, "2m") {
        Ok(tmpfs) => tmpfs,
        Err(why) => {
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
        // Killed before the journal was linked into place: there is none, and listing
        // says so; otherwise the journal opens.
        let absent = !site.db.exists()
            && String::from_utf8_lossy(&output.stderr).contains("there is no journal");
        assert!(
            output.status.success() || absent,
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
