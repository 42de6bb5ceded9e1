//! Red-team attacks on the per-operation caches of `warden verify --all` / `Journal::audit`
//! and `warden replay --all` (`Checked`: a page or blob found intact is not read again for
//! later runs of the same operation) and on the process-wide caches of loaded agents and
//! parsed policies. A person with write access to the journal alters a page, module,
//! policy text or input that several runs share; every run that names it must be reported,
//! and no run that does not name it may be blamed.

use std::collections::BTreeSet;
use std::path::Path;

use redb::{Database, ReadableDatabase, TableDefinition};
use serde_json::json;
use warden::{Digest, Journal, ReplayOptions, ReplayVerdict, replay, replay_all};

use crate::support::Sandbox;
use crate::support::tamper::{copy_db, replace_blob};

const PAGES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("pages");

/// Every page digest any checkpoint of `run_id` names.
fn pages_of(journal: &Journal, run_id: &str) -> BTreeSet<Digest> {
    let mut out = BTreeSet::new();
    for step in 0..=64 {
        if let Some(checkpoint) = journal.checkpoint(run_id, step).expect("read") {
            out.extend(checkpoint.pages);
        }
    }
    out
}

/// Overwrites the stored page `digest` with a whole raw page of other content (a stored
/// form the journal reads without complaint: only its digest can tell).
fn replace_page(db: &Path, digest: &Digest) {
    let database = Database::create(db).expect("open copy");
    let tx = database.begin_write().expect("write");
    {
        let mut pages = tx.open_table(PAGES).expect("pages");
        let forged = vec![0xabu8; 65_536];
        pages.insert(&digest.0, forged.as_slice()).expect("insert");
    }
    tx.commit().expect("commit");
}

fn counter_runs(sandbox: &Sandbox, inputs: &[serde_json::Value]) -> Vec<String> {
    inputs
        .iter()
        .map(|input| {
            sandbox
                .run(warden_test_guests::COUNTER, "test-basic.toml", input)
                .run_id
        })
        .collect()
}

/// Checks, on the journal at `db`, that audit and `replay_all` (and the real binary's
/// `replay --all` and `verify --all`) report exactly the runs in `bad` and no other.
fn every_named_run_reported(db: &Path, runs: &[String], bad: &BTreeSet<String>, needle: &str) {
    let journal = Journal::open(db).expect("open");
    let audit = journal.verify_all().expect("audit");
    for run in runs {
        let verification = audit
            .iter()
            .find(|v| &v.run_id == run)
            .expect("every run audited");
        if bad.contains(run) {
            let problem = verification.problem.as_deref().unwrap_or_else(|| {
                panic!("audit missed the tampered {needle} for run {run}: {verification:#?}")
            });
            assert!(problem.contains(needle), "run {run}: {problem}");
        } else {
            assert_eq!(
                verification.problem, None,
                "run {run} does not name the tampered {needle} but was blamed"
            );
        }
    }
    let reports = replay_all(&journal, &ReplayOptions::default(), &|_| {}).expect("replay all");
    for run in runs {
        let report = reports
            .iter()
            .find(|r| &r.run_id == run)
            .expect("every run replayed");
        if bad.contains(run) {
            assert_eq!(
                report.verdict,
                ReplayVerdict::CouldNotReplay,
                "replay --all missed the tampered {needle} for run {run}: {report:#?}"
            );
        } else {
            assert_eq!(report.verdict, ReplayVerdict::Identical, "run {run}");
        }
    }
    // One run at a time, in the same process (its agent and policy caches warm).
    for run in runs {
        let report = replay(&journal, run, &ReplayOptions::default()).expect("replay");
        assert_eq!(
            report.verdict == ReplayVerdict::CouldNotReplay,
            bad.contains(run),
            "run {run}: {report:#?}"
        );
    }
    drop(journal);
    // The real binary, a fresh process.
    let (code, replays) = crate::support::warden_json_on(db, &["replay", "--all"]);
    assert_ne!(code, 0, "replay --all must fail: {replays:#}");
    for replay in replays.as_array().expect("reports") {
        let id = replay["run_id"].as_str().expect("id").to_string();
        let identical = replay["verdict"] == "identical";
        assert_eq!(
            !identical,
            bad.contains(&id),
            "binary replay --all, run {id}: {replay:#}"
        );
    }
    let (code, audit) = crate::support::warden_json_on(db, &["verify", "--all"]);
    assert_ne!(code, 0, "verify --all must fail: {audit:#}");
    let text = audit.to_string();
    for run in bad {
        assert!(
            text.contains(run.as_str()),
            "verify --all names run {run}: {audit:#}"
        );
    }
}

/// A page every run names (their fresh instance's memory, stored once) is altered: every
/// run is reported by audit and by replay --all, not only the first to read it.
#[test]
fn a_page_all_runs_share_is_reported_for_every_run() {
    let sandbox = Sandbox::new();
    let runs = counter_runs(
        &sandbox,
        &[
            json!({"steps": 3, "amount": 1}),
            json!({"steps": 3, "amount": 1}),
            json!({"steps": 4, "amount": 2}),
            json!({"steps": 2, "amount": 5}),
        ],
    );
    let journal = sandbox.journal();
    let shared = runs
        .iter()
        .map(|run| pages_of(&journal, run))
        .reduce(|a, b| a.intersection(&b).copied().collect())
        .expect("runs");
    assert!(!shared.is_empty(), "the runs share pages");
    drop(journal);
    // Each shared page in turn, on its own copy of the journal.
    for page in shared.iter().take(3) {
        let (_dir, db) = copy_db(&sandbox.db());
        replace_page(&db, page);
        let bad = runs.iter().cloned().collect();
        every_named_run_reported(&db, &runs, &bad, "memory page");
    }
}

/// A page only later runs name (not the first one audited) is altered: exactly those runs
/// are reported; the run before them, which was read intact, is not blamed.
#[test]
fn a_page_only_some_runs_share_is_reported_for_exactly_those_runs() {
    let sandbox = Sandbox::new();
    let runs = counter_runs(
        &sandbox,
        &[
            json!({"steps": 3, "amount": 1}),
            json!({"steps": 3, "amount": 77}),
            json!({"steps": 3, "amount": 1}),
            json!({"steps": 3, "amount": 77}),
        ],
    );
    let journal = sandbox.journal();
    let sets: Vec<BTreeSet<Digest>> = runs.iter().map(|run| pages_of(&journal, run)).collect();
    drop(journal);
    // Pages of the amount-77 runs that no amount-1 run names.
    let only: BTreeSet<Digest> = sets[1]
        .intersection(&sets[3])
        .filter(|page| !sets[0].contains(page) && !sets[2].contains(page))
        .copied()
        .collect();
    assert!(
        !only.is_empty(),
        "the amount-77 runs have pages of their own"
    );
    let bad: BTreeSet<String> = [runs[1].clone(), runs[3].clone()].into();
    for page in only.iter().take(2) {
        let (_dir, db) = copy_db(&sandbox.db());
        replace_page(&db, page);
        every_named_run_reported(&db, &runs, &bad, "memory page");
    }
    // And the other way round: a page only the amount-1 runs name.
    let only: BTreeSet<Digest> = sets[0]
        .intersection(&sets[2])
        .filter(|page| !sets[1].contains(page) && !sets[3].contains(page))
        .copied()
        .collect();
    let bad: BTreeSet<String> = [runs[0].clone(), runs[2].clone()].into();
    if let Some(page) = only.iter().next() {
        let (_dir, db) = copy_db(&sandbox.db());
        replace_page(&db, page);
        every_named_run_reported(&db, &runs, &bad, "memory page");
    }
}

/// A page that is the base of stored differences is altered: every run whose checkpoints
/// name it, or a page stored on top of it (directly or down a chain), is reported, and no
/// other (a page read intact is never one whose base was altered). The runs differ (each
/// sees its own run id), so which runs read a base is worked out from the stored chains.
#[test]
fn a_base_page_shared_by_runs_is_reported_through_the_pages_stored_on_it() {
    let sandbox = Sandbox::new();
    let runs = counter_runs(
        &sandbox,
        &[
            json!({"steps": 6, "amount": 3}),
            json!({"steps": 6, "amount": 3}),
            json!({"steps": 6, "amount": 3}),
        ],
    );
    let journal = sandbox.journal();
    let named: Vec<BTreeSet<Digest>> = runs.iter().map(|r| pages_of(&journal, r)).collect();
    drop(journal);
    // Each stored page's base, where it is stored as a difference.
    let database = Database::create(sandbox.db()).expect("open");
    let mut base_of = std::collections::BTreeMap::new();
    {
        let tx = database.begin_read().expect("read");
        let pages = tx.open_table(PAGES).expect("pages");
        for digest in named.iter().flatten() {
            let mut at = *digest;
            // Follow the chain of differences (at most 8 deep) from each named page.
            for _ in 0..16 {
                let stored = pages.get(&at.0).expect("get").expect("stored");
                let stored = stored.value();
                if stored.len() == 65_536 || stored.first() != Some(&0x02) {
                    break;
                }
                let mut base = [0u8; 32];
                base.copy_from_slice(&stored[2..34]);
                base_of.insert(at, Digest(base));
                at = Digest(base);
            }
        }
    }
    drop(database);
    let bases: BTreeSet<Digest> = base_of.values().copied().collect();
    if bases.is_empty() {
        eprintln!("no page stored as a difference here: nothing to attack");
        return;
    }
    // Whether reading `page` reads `base` (it is the base, or its chain reaches it).
    let reads = |page: &Digest, base: &Digest| {
        let mut at = Some(*page);
        while let Some(digest) = at {
            if digest == *base {
                return true;
            }
            at = base_of.get(&digest).copied();
        }
        false
    };
    for base in bases.iter().take(3) {
        let (_dir, db) = copy_db(&sandbox.db());
        replace_page(&db, base);
        // Each run whose checkpoints name the base, or a page stored on top of it.
        let bad: BTreeSet<String> = runs
            .iter()
            .zip(&named)
            .filter(|(_, pages)| pages.iter().any(|page| reads(page, base)))
            .map(|(run, _)| run.clone())
            .collect();
        assert!(!bad.is_empty(), "a base no run reads");
        every_named_run_reported(&db, &runs, &bad, "memory page");
    }
}

/// The agent module, policy text and input every run shares are altered in turn, after
/// this process has loaded the agent and parsed the policy (its caches warm): every run is
/// reported by audit and by replay --all, in this process and in a fresh one.
#[test]
fn a_shared_module_policy_or_input_is_reported_for_every_run_despite_warm_caches() {
    let sandbox = Sandbox::new();
    let input = json!({"steps": 2, "amount": 4});
    let runs = counter_runs(&sandbox, &[input.clone(), input.clone(), input]);
    let journal = sandbox.journal();
    // Warm the process-wide caches: every run replays identically.
    for report in replay_all(&journal, &ReplayOptions::default(), &|_| {}).expect("replay") {
        assert_eq!(report.verdict, ReplayVerdict::Identical);
    }
    let start = journal.records(&runs[0]).expect("records")[0]
        .body
        .run_start()
        .expect("start");
    for run in &runs[1..] {
        let other = journal.records(run).expect("records")[0]
            .body
            .run_start()
            .expect("start");
        assert_eq!(
            (other.agent, other.policy_text, other.input),
            (start.agent, start.policy_text, start.input),
            "the runs share their artifacts"
        );
    }
    let module = journal.blob(&start.agent).expect("read").expect("module");
    let policy = journal
        .blob(&start.policy_text)
        .expect("read")
        .expect("policy");
    let _input = journal.blob(&start.input).expect("read").expect("input");
    drop(journal);
    let bad: BTreeSet<String> = runs.iter().cloned().collect();
    let mut forged_module = module.clone();
    let last = forged_module.len() - 1;
    forged_module[last] ^= 1;
    // A policy text that still parses (a comment added), and an input that is still JSON.
    let mut forged_policy = policy.clone();
    forged_policy.extend_from_slice(b"\n# forged\n");
    let forged_input = br#"{"steps": 2, "amount": 400}"#.to_vec();
    for (what, digest, forged) in [
        ("agent module", start.agent, forged_module),
        ("policy text", start.policy_text, forged_policy),
        ("input", start.input, forged_input),
    ] {
        let (_dir, db) = copy_db(&sandbox.db());
        replace_blob(&db, &digest, &forged);
        every_named_run_reported(&db, &runs, &bad, what);
        // The same journal restored: the caches do not remember the failure either.
        let (_dir, db) = copy_db(&sandbox.db());
        let journal = Journal::open(&db).expect("open");
        for report in replay_all(&journal, &ReplayOptions::default(), &|_| {}).expect("replay") {
            assert_eq!(report.verdict, ReplayVerdict::Identical, "{what}");
        }
    }
}
