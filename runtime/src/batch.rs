//! Many runs in one process: one agent, policy and bindings over many inputs, on a pool of
//! worker threads sharing one journal, whose commits are grouped (one transaction and one
//! fsync for the step boundaries that arrive together; `journal/commit.rs`).
//!
//! A batch can be started again after a crash and completes every input exactly once: an
//! input is known by its digest, with the agent, policy and bindings digests. One that
//! already has an ended run (completed, failed, awaiting review) is skipped; one whose run
//! was interrupted is resumed from its last checkpoint (so its effects are not repeated);
//! the others run. Identical inputs in one batch run once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use crate::digest::{Digest, domain};
use crate::error::Error;
use crate::journal::Journal;
use crate::outcome::{Outcome, Status};
use crate::resolve::NewRun;
use crate::run::{RunReport, start};

/// One input of a batch.
#[derive(Debug, Clone)]
pub struct BatchInput {
    /// Where it came from, for people: a file name, or `FILE:LINE`.
    pub name: String,
    /// The input JSON.
    pub input: String,
}

/// What a batch did with one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchAction {
    /// A new run was started and went as far as it could.
    Ran,
    /// An interrupted run of this input was resumed and went as far as it could.
    Resumed,
    /// The input already has an ended run; nothing was done.
    Skipped,
    /// The input is the same as an earlier one of this batch; it ran once.
    Duplicate,
    /// The run could not be started or resumed (the error says why).
    Error,
}

/// One result line of a batch (`warden batch --json` prints one per input).
#[derive(Debug, Clone, Serialize)]
pub struct BatchLine {
    /// The input's name.
    pub input: String,
    /// Its digest (the run's recorded `input`).
    pub input_digest: Digest,
    /// What was done.
    pub action: BatchAction,
    /// The run, if there is one.
    pub run_id: Option<String>,
    /// Where the run stands.
    pub status: Option<Status>,
    /// Its state.
    pub state: Option<String>,
    /// Why it could not run, for [`BatchAction::Error`].
    pub error: Option<String>,
    /// Whose the error is, for [`BatchAction::Error`]: the input's (usage), the
    /// journal's content (integrity) or Warden's (host).
    #[serde(skip)]
    pub error_kind: Option<crate::error::ErrorKind>,
}

/// How many runs a batch of `template` keeps in progress when not told: 32 per processor
/// (a run waits on its commits' fsync far longer than it computes, and the more runs
/// commit at once, the more of them share each fsync; on the project's 2-core machine the
/// loan batch ran at 245 runs/s with 8 and 520 to 565 with 32 to 64), at most 256, and no
/// more than half the available memory (the system's, or the container's limit if less)
/// holds if every run grew to its policy's memory budget. At least one.
pub fn default_workers(template: &NewRun) -> usize {
    workers_for(
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        available_memory(),
        template.policy.budgets.memory_bytes,
    )
}

fn workers_for(processors: usize, available_memory: Option<u64>, budget: u64) -> usize {
    let mut workers = processors.saturating_mul(32).min(256);
    if let Some(available) = available_memory {
        let fits = available / 2 / budget.max(1);
        workers = workers.min(usize::try_from(fits).unwrap_or(usize::MAX));
    }
    workers.max(1)
}

/// The memory this process can still take, in bytes: the system's (Linux's
/// `MemAvailable`), or less if its control group (a container's limit, v2 or v1) leaves
/// less.
fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let system = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?
        .checked_mul(1024)?;
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let group = cgroup_files(&cgroups)
        .into_iter()
        .find_map(|(limit, usage)| {
            let read = |path: &str| std::fs::read_to_string(path).ok();
            let limit = read(&limit)?.trim().parse::<u64>().ok()?;
            let usage = read(&usage)?.trim().parse::<u64>().ok()?;
            Some(limit.saturating_sub(usage))
        });
    Some(group.map_or(system, |group| group.min(system)))
}

/// The (limit, usage) files of the memory control group `/proc/self/cgroup` names, most
/// specific first: v2 (`memory.max`, `memory.current`) and v1 (`memory.limit_in_bytes`,
/// `memory.usage_in_bytes`), under the group's path and, for a container that sees its
/// own group as the root, at the root. An unlimited group's `max` does not parse, and
/// v1's unlimited value is larger than any system's memory.
fn cgroup_files(cgroups: &str) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for line in cgroups.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let path = path.trim_end_matches('/');
        let (root, limit, usage) = if controllers.is_empty() {
            ("/sys/fs/cgroup", "memory.max", "memory.current")
        } else if controllers.split(',').any(|c| c == "memory") {
            (
                "/sys/fs/cgroup/memory",
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
            )
        } else {
            continue;
        };
        for dir in [format!("{root}{path}"), root.to_string()] {
            files.push((format!("{dir}/{limit}"), format!("{dir}/{usage}")));
        }
    }
    files
}

/// Runs `template` (whose `input` is ignored) on every input, `workers` at a time, calling
/// `done` as each finishes (from the worker's thread). Results are in input order.
///
/// # Errors
/// Journal errors reading the runs already recorded. The failure of one input is its
/// line's [`BatchAction::Error`], never the end of the batch.
pub fn batch(
    journal: &Journal,
    template: &NewRun,
    inputs: &[BatchInput],
    workers: usize,
    done: &(dyn Fn(&BatchLine) + Sync),
) -> Result<Vec<BatchLine>, Error> {
    let deployed = (
        template.agent.hash,
        template.policy.hash(),
        template.bindings.hash(),
    );
    let key = |input: &Digest| (deployed.0, deployed.1, deployed.2, *input);
    let digests: Vec<Digest> = inputs
        .iter()
        .map(|i| Digest::of(domain::BLOB, i.input.as_bytes()))
        .collect();
    // The runs already recorded of this agent, policy and bindings on these inputs (the
    // newest of each), read one summary at a time: what is held follows the batch, not
    // the journal.
    let wanted: std::collections::HashSet<&Digest> = digests.iter().collect();
    let mut existing: HashMap<_, (u64, String, Outcome)> = HashMap::new();
    journal.each_run(&mut |meta| {
        let run_key = (meta.agent, meta.policy, meta.bindings, meta.input);
        if meta.parent.is_none()
            && wanted.contains(&meta.input)
            && run_key == key(&meta.input)
            && existing
                .get(&run_key)
                .is_none_or(|(created, id, _)| (*created, id) < (meta.created_ms, &meta.run_id))
        {
            existing.insert(run_key, (meta.created_ms, meta.run_id, meta.outcome));
        }
    })?;
    let existing: HashMap<_, (String, Outcome)> = existing
        .into_iter()
        .map(|(run_key, (_, id, outcome))| (run_key, (id, outcome)))
        .collect();
    let mut first_of: HashMap<Digest, usize> = HashMap::new();
    let lines: Vec<Mutex<Option<BatchLine>>> = inputs.iter().map(|_| Mutex::new(None)).collect();
    let mut work = Vec::new();
    for (index, (item, digest)) in inputs.iter().zip(&digests).enumerate() {
        let line = |action, run: Option<&(String, Outcome)>| BatchLine {
            input: item.name.clone(),
            input_digest: *digest,
            action,
            run_id: run.map(|(id, _)| id.clone()),
            status: run.map(|(_, o)| o.status),
            state: run.map(|(_, o)| o.state.clone()),
            error: None,
            error_kind: None,
        };
        if let Some(first) = first_of.get(digest) {
            let line = BatchLine {
                error: Some(format!("the same input as {}", inputs[*first].name)),
                ..line(BatchAction::Duplicate, None)
            };
            done(&line);
            *lock(&lines[index]) = Some(line);
            continue;
        }
        first_of.insert(*digest, index);
        match existing.get(&key(digest)) {
            Some(run) if run.1.status != Status::Running => {
                let line = line(BatchAction::Skipped, Some(run));
                done(&line);
                *lock(&lines[index]) = Some(line);
            }
            Some((run_id, _)) => work.push((index, Some(run_id.clone()))),
            None => work.push((index, None)),
        }
    }
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..workers.min(work.len()).max(1) {
            scope.spawn(|| {
                loop {
                    let at = next.fetch_add(1, Ordering::Relaxed);
                    let Some((index, interrupted)) = work.get(at) else {
                        break;
                    };
                    let item = &inputs[*index];
                    let (action, result) = match interrupted {
                        Some(run_id) => {
                            (BatchAction::Resumed, crate::resume::resume(journal, run_id))
                        }
                        None => {
                            let new = NewRun {
                                input: item.input.clone(),
                                ..template.clone()
                            };
                            (BatchAction::Ran, start(journal, &new))
                        }
                    };
                    let line = finished(item, digests[*index], action, result);
                    done(&line);
                    *lock(&lines[*index]) = Some(line);
                }
            });
        }
    });
    Ok(lines
        .into_iter()
        .filter_map(|line| line.into_inner().ok().flatten())
        .collect())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn finished(
    item: &BatchInput,
    digest: Digest,
    action: BatchAction,
    result: Result<RunReport, Error>,
) -> BatchLine {
    match result {
        Ok(report) => BatchLine {
            input: item.name.clone(),
            input_digest: digest,
            action,
            run_id: Some(report.run_id),
            status: Some(report.outcome.status),
            state: Some(report.outcome.state),
            error: None,
            error_kind: None,
        },
        Err(e) => BatchLine {
            input: item.name.clone(),
            input_digest: digest,
            action: BatchAction::Error,
            run_id: None,
            status: None,
            state: None,
            error: Some(crate::error::chain(&e)),
            error_kind: Some(e.kind()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::workers_for;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn default_workers_follow_processors_and_stay_within_memory() {
        // 32 per processor, at most 256.
        assert_eq!(workers_for(2, None, 64 * MIB), 64);
        assert_eq!(workers_for(64, None, 64 * MIB), 256);
        assert_eq!(workers_for(2, Some(24 * 1024 * MIB), 64 * MIB), 64);
        // Half the available memory, if every run used its whole budget.
        assert_eq!(workers_for(2, Some(1024 * MIB), 64 * MIB), 8);
        assert_eq!(workers_for(2, Some(1024 * MIB), 4096 * MIB), 1);
        // Never none, whatever the budget or the machine says.
        assert_eq!(workers_for(0, Some(0), 0), 1);
        assert_eq!(workers_for(usize::MAX, Some(u64::MAX), u64::MAX), 1);
        assert!(super::available_memory().is_none_or(|bytes| bytes > 0));
    }

    #[test]
    fn the_memory_control_group_is_found_in_v1_and_v2() {
        let v2 = super::cgroup_files("0::/kubepods/pod1/abc\n");
        assert_eq!(
            v2,
            [
                (
                    "/sys/fs/cgroup/kubepods/pod1/abc/memory.max".to_string(),
                    "/sys/fs/cgroup/kubepods/pod1/abc/memory.current".to_string()
                ),
                (
                    "/sys/fs/cgroup/memory.max".to_string(),
                    "/sys/fs/cgroup/memory.current".to_string()
                ),
            ]
        );
        let v1 = super::cgroup_files("9:cpu,cpuacct:/\n4:memory:/process_api/88\n0::/\n");
        assert_eq!(
            v1[0],
            (
                "/sys/fs/cgroup/memory/process_api/88/memory.limit_in_bytes".to_string(),
                "/sys/fs/cgroup/memory/process_api/88/memory.usage_in_bytes".to_string()
            )
        );
        assert_eq!(v1[1].0, "/sys/fs/cgroup/memory/memory.limit_in_bytes");
        assert_eq!(v1[2].0, "/sys/fs/cgroup/memory.max");
        assert!(super::cgroup_files("garbage\n3:cpuset:/\n").is_empty());
    }
}
