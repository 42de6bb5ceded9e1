//! Red-team attacks on group commit with pages packed by the committing thread (commit
//! e467200): many threads commit at once (a barrier lines them up so their commits share
//! transactions), their pages share digests, use each other's pages (stored in the same
//! group, or not at all) as delta bases, and walk long chains of differences; some
//! commits in a group fail. Afterwards every checkpoint must restore its exact bytes,
//! every stored page must unpack within the depth limit, failed commits must leave
//! nothing, and the transparency log must audit clean (signed and unsigned). Also: run
//! ids of the new `YYYYMMDD-HHMMSS.mmm-<hex>` shape resolved by prefix.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Barrier, Mutex};

use redb::ReadableTable;

use super::attack_rows_tests::first_commit;
use super::*;
use crate::checkpoint::{ChangedPage, Checkpoint, Difference, PAGE_SIZE, page_store};
use crate::digest::{Digest, domain};
use crate::seal::signing::SigningKey;

/// A page of `family`, `version`: a compressible pattern of its family with one more
/// byte set per version, so version n differs from version n-1 in a few bytes.
fn page(family: u64, version: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; PAGE_SIZE];
    let mut x = family
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(0x1234_5678);
    for b in bytes.iter_mut().take(2048) {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        *b = (x >> 56) as u8;
    }
    for v in 1..=version {
        let at = usize::try_from((v * 7919 + family * 31) % PAGE_SIZE as u64).unwrap_or(0);
        bytes[at] = bytes[at].wrapping_add(1 + (v % 250) as u8);
    }
    bytes
}

/// `bytes` with one byte of `tweak` at `at`.
fn tweaked(mut bytes: Vec<u8>, at: usize, tweak: u8) -> Vec<u8> {
    bytes[at % PAGE_SIZE] ^= tweak | 1;
    bytes
}

/// Each run's memory (its pages' bytes) at each step, as the threads committed it.
type Expected = Mutex<HashMap<String, BTreeMap<u32, Vec<Vec<u8>>>>>;

fn digest(bytes: &[u8]) -> Digest {
    Digest::of(domain::PAGE, bytes)
}

/// A changed page at `index`, stored as its difference from `base` when the journal may.
fn changed(index: usize, bytes: &[u8], base: Option<&[u8]>) -> ChangedPage {
    ChangedPage {
        index,
        digest: digest(bytes),
        bytes: Arc::from(bytes),
        base: base.map(|base| (digest(base), Difference::between(base, bytes))),
    }
}

fn checkpoint(step: u32, pages: &[Vec<u8>]) -> Checkpoint {
    Checkpoint {
        step,
        state: "s".into(),
        host_calls: 0,
        fuel: 0,
        journal_bytes: 0,
        inferences: Vec::new(),
        memory_bytes: (pages.len() * PAGE_SIZE) as u64,
        pages: pages.iter().map(|p| digest(p)).collect(),
        globals: Vec::new(),
    }
}

/// The commit of `step` of `run_id`: a step record, a checkpoint of `memory`, and the
/// `changed` pages; the first step creates the run.
fn step_commit(run_id: &str, step: u32, memory: &[Vec<u8>], pages: Vec<ChangedPage>) -> Commit {
    let cp = checkpoint(step, memory);
    let mut commit = if step == 0 {
        first_commit(run_id, Vec::new())
    } else {
        Commit::default()
    };
    commit.records.extend([
        RecordBody::StepStarted {
            step,
            state: "s".into(),
        },
        RecordBody::Checkpoint {
            step,
            digest: cp.digest(),
        },
    ]);
    commit.pages = pages;
    commit.checkpoint = Some(cp);
    commit
}

/// Every stored page row unpacks, hashes to its key, and heads a chain of at most
/// `MAX_DEPTH` differences whose bases are all stored. Returns how many rows there are.
fn check_page_table(j: &Journal) -> usize {
    let tx = j.read().unwrap();
    let pages = tx.open_table(PAGES).unwrap();
    let mut rows = 0;
    for entry in pages.iter().unwrap() {
        let (key, value) = entry.unwrap();
        let key = Digest(*key.value());
        let stored = value.value().to_vec();
        if stored.len() != PAGE_SIZE && stored.first() == Some(&0x02) {
            assert!(
                (1..=page_store::MAX_DEPTH).contains(&stored[1]),
                "page {} stored at depth {}",
                key.short(),
                stored[1]
            );
            let base = page_store::base_of(&stored).unwrap();
            assert_ne!(base, key, "page {} is its own base", key.short());
        }
        let bytes = j
            .page(&key)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("page {} vanished", key.short()));
        assert_eq!(
            digest(&bytes),
            key,
            "page {} unpacks to other bytes",
            key.short()
        );
        rows += 1;
    }
    rows
}

/// Every checkpoint of `run_id` in `expected` (step -> memory) is recorded and restores
/// exactly, and the run verifies.
fn check_run(j: &Journal, run_id: &str, expected: &BTreeMap<u32, Vec<Vec<u8>>>) {
    for (step, memory) in expected {
        let cp = j
            .recorded_checkpoint(run_id, *step)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("{run_id}: checkpoint {step} not restorable"));
        assert_eq!(cp.pages.len(), memory.len());
        for (i, (d, want)) in cp.pages.iter().zip(memory).enumerate() {
            let got = j
                .page(d)
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|| panic!("{run_id}: step {step} page {i} missing"));
            assert!(
                got == *want,
                "{run_id}: step {step} page {i} restores other bytes"
            );
        }
    }
    let v = j.verify(run_id).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v.problem, None, "{run_id}");
    assert_eq!(v.records, 1 + 2 * expected.len() as u64, "{run_id}");
}

/// The memory (5 pages) and changed pages of thread `t` of `threads` at `step`:
/// 0: a chain every thread shares (same digest from all threads at once, based on the
///    previous step's version: the chain grows past `MAX_DEPTH`);
/// 1: the thread's own page, based on its previous version;
/// 2: the next thread's own page of this step, tweaked, based on that page (stored, if at
///    all, in the same group);
/// 3: the thread after next's own page of the previous step, tweaked, based on it
///    (stored by an earlier group);
/// 4: the previous thread's page 2 of this step (a digest two threads store at once, with
///    different claims of base: none here).
fn memory_of(t: u64, threads: u64, step: u64) -> (Vec<Vec<u8>>, Vec<ChangedPage>) {
    let own = |t: u64, s: u64| page(100 + t, s);
    let cross = |t: u64, s: u64| {
        tweaked(
            own((t + 1) % threads, s),
            5000 + t as usize,
            (s as u8).wrapping_mul(3),
        )
    };
    let shared = page(1, step);
    let mine = own(t, step);
    let next = cross(t, step);
    let prev_base = own((t + 2) % threads, step.saturating_sub(1));
    let late = tweaked(prev_base.clone(), 9000 + t as usize, step as u8);
    let neighbour = cross((t + threads - 1) % threads, step);
    let memory = vec![
        shared.clone(),
        mine.clone(),
        next.clone(),
        late.clone(),
        neighbour.clone(),
    ];
    let pages = if step == 0 {
        memory
            .iter()
            .enumerate()
            .map(|(i, p)| changed(i, p, None))
            .collect()
    } else {
        vec![
            changed(0, &shared, Some(&page(1, step - 1))),
            changed(1, &mine, Some(&own(t, step - 1))),
            changed(2, &next, Some(&own((t + 1) % threads, step))),
            changed(3, &late, Some(&prev_base)),
            changed(4, &neighbour, None),
        ]
    };
    (memory, pages)
}

/// Attack 1: grouped commits whose pages share digests and use each other's pages
/// (stored in the same group, in an earlier one, or being stored at once) as bases, and
/// a shared chain longer than `MAX_DEPTH`: every checkpoint restores its exact bytes.
#[test]
fn grouped_commits_sharing_pages_and_bases_restore_exact_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(&dir.path().join("j.redb")).unwrap();
    let threads = 8u64;
    let steps = 11u64;
    let barrier = Barrier::new(threads as usize);
    let expected: Expected = Mutex::default();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (j, barrier, expected) = (&j, &barrier, &expected);
            scope.spawn(move || {
                let run_id = format!("run-{t}");
                let mut mine = BTreeMap::new();
                for s in 0..steps {
                    let (memory, pages) = memory_of(t, threads, s);
                    barrier.wait();
                    j.commit(&run_id, step_commit(&run_id, s as u32, &memory, pages))
                        .unwrap_or_else(|e| panic!("{run_id} step {s}: {e}"));
                    mine.insert(s as u32, memory);
                }
                expected.lock().unwrap().insert(run_id, mine);
            });
        }
    });
    let expected = expected.into_inner().unwrap();
    for (run_id, steps) in &expected {
        check_run(&j, run_id, steps);
    }
    let distinct: HashSet<Digest> = expected
        .values()
        .flat_map(|steps| steps.values().flatten().map(|p| digest(p)))
        .collect();
    assert_eq!(check_page_table(&j), distinct.len());
    assert_eq!(j.page_count().unwrap(), distinct.len() as u64);
    let (commits, transactions) = j.commit_stats();
    assert_eq!(commits, threads * steps);
    assert!(transactions <= commits);
    let audit = j.audit(None).unwrap();
    assert!(audit.is_intact(), "{:?}", audit.log.problems);
    assert_eq!(audit.log.entries, commits);
}

/// Attack 2: commits that fail inside a group (a run that does not exist, a run created
/// twice), carrying pages the good commits also carry, pages only they carry, and pages
/// the good commits later use as bases: the good commits' pages are all stored and
/// restore; the failed commits leave nothing behind (no page, no run, no log leaf).
#[test]
fn failing_commits_in_a_group_lose_nothing_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(&dir.path().join("j.redb")).unwrap();
    let threads = 6u64;
    let saboteurs = 4u64;
    let steps = 10u64;
    let barrier = Barrier::new((threads + saboteurs) as usize);
    let expected: Expected = Mutex::default();
    // Only a failed commit ever carries these.
    let orphan = |k: u64, s: u64| page(10_000 + k, s);
    // What a failed commit carries first and a good one uses as its base at the next step.
    let decoy = |t: u64, s: u64| page(20_000 + t, s);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (j, barrier, expected) = (&j, &barrier, &expected);
            scope.spawn(move || {
                let run_id = format!("good-{t}");
                let mut mine = BTreeMap::new();
                for s in 0..steps {
                    let (mut memory, mut pages) = memory_of(t, threads, s);
                    // A page based on the decoy a saboteur tried to store last step.
                    let after_decoy = tweaked(decoy(t, s.saturating_sub(1)), 77, s as u8);
                    pages.push(changed(
                        5,
                        &after_decoy,
                        (s > 0).then(|| decoy(t, s - 1)).as_deref(),
                    ));
                    memory.push(after_decoy);
                    barrier.wait();
                    j.commit(&run_id, step_commit(&run_id, s as u32, &memory, pages))
                        .unwrap_or_else(|e| panic!("{run_id} step {s}: {e}"));
                    mine.insert(s as u32, memory);
                }
                expected.lock().unwrap().insert(run_id, mine);
            });
        }
        for k in 0..saboteurs {
            let (j, barrier) = (&j, &barrier);
            scope.spawn(move || {
                for s in 0..steps {
                    let t = (k + s) % threads;
                    let (memory, _) = memory_of(t, threads, s);
                    let pages = vec![
                        // The same page a good commit stores now, a different base claim.
                        changed(1, &memory[1], None),
                        changed(2, &memory[2], Some(&memory[1])),
                        changed(3, &orphan(k, s), Some(&memory[0])),
                        changed(4, &decoy(t, s), None),
                    ];
                    let mut commit = step_commit("x", s as u32, &memory, pages);
                    let (run_id, existing) = if k % 2 == 0 {
                        commit.create = None;
                        (format!("no-such-run-{k}"), false)
                    } else {
                        // Create a run that the good thread created at step 0; at step 0
                        // itself it may win the race: use one created before.
                        commit.create = Some(test_meta("good-0"));
                        ("good-0".to_string(), true)
                    };
                    barrier.wait();
                    if existing && s == 0 {
                        // good-0 may not exist yet: do not race its creation.
                        continue;
                    }
                    match j.commit(&run_id, commit) {
                        Err(JournalError::NoSuchRun(_)) if !existing => {}
                        Err(JournalError::RunExists(_)) if existing => {}
                        other => panic!("saboteur {k} step {s}: {other:?}"),
                    }
                }
            });
        }
    });
    let expected = expected.into_inner().unwrap();
    for (run_id, steps) in &expected {
        check_run(&j, run_id, steps);
    }
    for k in 0..saboteurs {
        for s in 0..steps {
            assert_eq!(
                j.page(&digest(&orphan(k, s))).unwrap(),
                None,
                "a failed commit's page {k}/{s} was stored"
            );
        }
        assert!(matches!(
            j.run(&format!("no-such-run-{k}")),
            Err(JournalError::NoSuchRun(_))
        ));
    }
    check_page_table(&j);
    assert_eq!(j.runs().unwrap().len(), threads as usize);
    let audit = j.audit(None).unwrap();
    assert!(audit.is_intact(), "{:?}", audit.log.problems);
    assert_eq!(audit.log.entries, threads * steps);
}

/// Attack 3: with a signing key, many grouped commits (some failing in their group): the
/// log's leaves and nodes stay whole, the signed head covers every leaf, and every run
/// verifies against the key.
#[test]
fn signed_log_stays_whole_after_many_grouped_commits() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(&dir.path().join("j.redb")).unwrap();
    let key = SigningKey::from_seed(&[42; 32]);
    let public = key.public_key();
    j.set_signer(key);
    let threads = 8u64;
    let steps = 12u64;
    let barrier = Barrier::new(threads as usize + 1);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (j, barrier) = (&j, &barrier);
            scope.spawn(move || {
                let run_id = format!("signed-{t}");
                for s in 0..steps {
                    let (memory, pages) = memory_of(t, threads, s);
                    barrier.wait();
                    j.commit(&run_id, step_commit(&run_id, s as u32, &memory, pages))
                        .unwrap_or_else(|e| panic!("{run_id} step {s}: {e}"));
                }
            });
        }
        let (j, barrier) = (&j, &barrier);
        scope.spawn(move || {
            for s in 0..steps {
                barrier.wait();
                let commit = step_commit("nobody", s as u32, &[page(7, s)], Vec::new());
                let commit = Commit {
                    create: None,
                    ..commit
                };
                assert!(matches!(
                    j.commit("nobody", commit),
                    Err(JournalError::NoSuchRun(_))
                ));
            }
        });
    });
    let audit = j.audit(Some(&public)).unwrap();
    assert!(audit.log.problems.is_empty(), "{:?}", audit.log.problems);
    assert!(audit.is_intact());
    assert_eq!(audit.log.entries, threads * steps);
    assert!(audit.log.signed_head.is_some());
    assert_eq!(audit.log.key, Some(public.key_id()));
    assert_eq!(audit.runs.len(), threads as usize);
    for v in &audit.runs {
        assert_eq!(v.problem, None, "{}", v.run_id);
        assert_eq!(v.signed_by, Some(public.key_id()), "{}", v.run_id);
    }
    for t in 0..threads {
        let run_id = format!("signed-{t}");
        let v = j.verify_run(&run_id, Some(&public)).unwrap();
        assert_eq!(v.problem, None, "{run_id}");
        assert_eq!(v.records, 1 + 2 * steps);
    }
    // The stored subtree hashes give, at every size the log passed through (each group's
    // write appends several leaves), the root of the tree rebuilt from the leaves alone.
    let tree = j.log_tree().unwrap();
    assert_eq!(tree.len(), threads * steps);
    for size in 1..=tree.len() {
        assert_eq!(
            j.log_root(size).unwrap(),
            tree.root(size).unwrap(),
            "stored root at size {size}"
        );
    }
    let head = j.log_head().unwrap().expect("a signed head");
    assert_eq!(head.head.size, tree.len());
    check_page_table(&j);
}

/// Attack 4: run ids to the millisecond (`YYYYMMDD-HHMMSS.mmm-<12 hex>`), beside an id of
/// the old shape from the same second, resolved by prefixes that stop before, at and
/// after the '.'.
#[test]
fn millisecond_run_ids_resolve_by_prefix_through_the_dot() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(&dir.path().join("j.redb")).unwrap();
    let a = "20261201-210228.123-0123456789ab";
    let b = "20261201-210228.123-0123456789ac";
    let c = "20261201-210228.124-aaaaaaaaaaaa";
    let old = "20261201-210228-bbbbbbbbbbbb";
    let e = "20261201-210229.000-cccccccccccc";
    for id in [a, b, c, old, e] {
        j.commit(
            id,
            Commit {
                create: Some(test_meta(id)),
                ..Commit::default()
            },
        )
        .unwrap();
    }
    let ambiguous = |prefix: &str| match j.resolve_run_id(prefix) {
        Err(JournalError::AmbiguousRunId { matches, .. }) => matches,
        other => panic!("{prefix}: {other:?}"),
    };
    assert_eq!(j.resolve_run_id("20261201-210228.124").unwrap(), c);
    assert_eq!(j.resolve_run_id("20261201-210228.124-").unwrap(), c);
    assert_eq!(j.resolve_run_id(a).unwrap(), a);
    assert_eq!(
        j.resolve_run_id("20261201-210228.123-0123456789ac")
            .unwrap(),
        b
    );
    assert_eq!(j.resolve_run_id("20261201-210228-").unwrap(), old);
    assert_eq!(j.resolve_run_id("20261201-210229").unwrap(), e);
    assert_eq!(j.resolve_run_id("20261201-210229.").unwrap(), e);
    assert_eq!(ambiguous("20261201-210228.123"), vec![a, b]);
    assert_eq!(ambiguous("20261201-210228.123-0123456789a"), vec![a, b]);
    assert_eq!(ambiguous("20261201-210228.12"), vec![a, b, c]);
    assert_eq!(ambiguous("20261201-210228."), vec![a, b, c]);
    // The old id (the '-' sorts before '.') comes first among the second's ids.
    assert_eq!(ambiguous("20261201-210228"), vec![old, a, b, c]);
    assert_eq!(ambiguous("2026"), vec![old, a, b, c, e]);
    for missing in ["", ".", "20261201-210228.125", "20261201-210228.1234", "x"] {
        assert!(
            matches!(j.resolve_run_id(missing), Err(JournalError::NoSuchRun(_))),
            "{missing}"
        );
    }
    // Ids of one second sort by millisecond in the runs table.
    let tx = j.read().unwrap();
    let runs = tx.open_table(RUNS).unwrap();
    let keys: Vec<String> = runs
        .iter()
        .unwrap()
        .map(|e| e.unwrap().0.value().to_string())
        .collect();
    assert_eq!(keys, vec![old, a, b, c, e]);
}

/// Attack 5: the same page sent by many runs at once as the first version of a chain and
/// by others as a difference from a page stored in the same group, then the whole chain
/// read back from a journal reopened from disk.
#[test]
fn pages_stored_in_one_group_read_back_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.redb");
    let threads = 12u64;
    let steps = 20u64;
    let expected: Expected = Mutex::default();
    {
        let j = Journal::open(&path).unwrap();
        let barrier = Barrier::new(threads as usize);
        std::thread::scope(|scope| {
            for t in 0..threads {
                let (j, barrier, expected) = (&j, &barrier, &expected);
                scope.spawn(move || {
                    let run_id = format!("r-{t}");
                    let mut mine = BTreeMap::new();
                    for s in 0..steps {
                        // Half the threads say step s of the chain is a difference from
                        // step s-1; the others, from step s-2 (valid too).
                        let now = page(3, s);
                        let base = match (t % 2, s) {
                            (_, 0) => None,
                            (0, _) | (_, 1) => Some(page(3, s - 1)),
                            _ => Some(page(3, s - 2)),
                        };
                        let memory = vec![now.clone()];
                        let pages = vec![changed(0, &now, base.as_deref())];
                        barrier.wait();
                        j.commit(&run_id, step_commit(&run_id, s as u32, &memory, pages))
                            .unwrap_or_else(|e| panic!("{run_id} step {s}: {e}"));
                        mine.insert(s as u32, memory);
                    }
                    expected.lock().unwrap().insert(run_id, mine);
                });
            }
        });
    }
    let j = Journal::open_read_only(&path).unwrap();
    for (run_id, steps) in &expected.into_inner().unwrap() {
        check_run(&j, run_id, steps);
    }
    assert_eq!(check_page_table(&j), steps as usize);
    assert!(j.audit(None).unwrap().is_intact());
}
