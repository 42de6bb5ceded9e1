//! Killing `warden` with SIGKILL at chosen or random moments, and resuming the run until
//! it ends: one [`trial`] per run, checked against an uninterrupted run by [`check_trial`].

use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use super::{
    MAX_ATTEMPTS, Reaper, Signature, Site, Start, Workload, check_ledger, effects_of, ledger_lines,
    panicked,
};
use crate::support::Sandbox;

/// When to kill a child process.
#[derive(Clone, Copy, Debug)]
pub enum Moment {
    /// This long after it was spawned.
    After(Duration),
    /// As soon as the ledger holds this many effects of the run. The effect of step k is
    /// durable before step k is committed, so the kill lands during step k's commit or
    /// shortly after it: mid-step, or between steps.
    Effects(usize),
}

/// What a trial did to one run.
#[derive(Debug, Default)]
pub struct Trial {
    /// The run, unless every process was killed before its first commit.
    pub run_id: Option<String>,
    /// Kills that landed on a live process.
    pub kills: u32,
    /// `warden resume` processes started.
    pub resumes: u32,
    /// Kills before the run's first commit (nothing to resume).
    pub before_first_commit: u32,
    /// Kills after a step's effect was applied and before the step was committed: the
    /// resume must re-run the step and get the recorded receipt, not pay again.
    pub effect_uncommitted: u32,
    /// Each kill, for the log: what was killed, when, and what it had committed.
    pub log: Vec<String>,
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
pub fn kill_at(
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
pub fn trial(
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
pub fn check_trial(
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
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Rng {
        let seed = std::env::var("CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                u64::from(std::process::id())
                    ^ std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64)
            });
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
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A random moment in a run of `steps` steps that takes about `span`.
    pub fn moment(&mut self, steps: u32, span: Duration) -> Moment {
        if self.chance(50) {
            Moment::Effects(self.below(u64::from(steps) + 2) as usize)
        } else {
            let micros = span.as_micros() as u64 * 12 / 10;
            Moment::After(Duration::from_micros(self.below(micros)))
        }
    }
}
