//! Batch throughput: the loan agent over 200 varied applications in one process, a fresh
//! journal each iteration, every step boundary durable. Baseline: one worker, so every
//! commit is its own transaction and fsync (what running them one after another costs).
//! Then 16 workers, whose commits share transactions (group commit), and the number
//! `warden batch` uses when not told (`warden::default_workers`). Throughput is in runs;
//! the commits per durable transaction are printed once.
//!
//! Population replay (group `population_replay`): the 200 runs of one such batch replayed
//! in one process with `warden::replay_all` (what `warden replay --all` runs), exactly and
//! as a counterfactual under the strict policy; every exact replay must be identical.
//!
//! Needs the loan agent built (`./x bench` builds it).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a benchmark that cannot set itself up should stop at once, saying where"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use warden::{
    Agent, BatchInput, Bindings, Journal, NewRun, Policy, ReplayOptions, ReplayVerdict, replay_all,
};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn template() -> NewRun {
    let example = workspace().join("examples/loan-underwriting");
    let agent = workspace().join("target/wasm32-unknown-unknown/release/loan_agent.wasm");
    let agent = Agent::from_file(&agent).unwrap_or_else(|e| {
        panic!("{e}; build it: cargo build --release --target wasm32-unknown-unknown -p loan-agent")
    });
    let (policy, policy_text) =
        Policy::from_file_with_text(&workspace().join("policies/loan-underwriting.toml"))
            .expect("policy");
    NewRun {
        agent,
        policy: Arc::new(policy),
        policy_text,
        bindings: Arc::new(Bindings::from_file(&example.join("bindings.toml")).expect("bindings")),
        input: String::new(),
        submitted_by: None,
    }
}

fn inputs(count: usize) -> Vec<BatchInput> {
    let dir = workspace().join("examples/loan-underwriting/applications");
    let mut samples: Vec<serde_json::Value> = std::fs::read_dir(&dir)
        .expect("applications")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).expect("read")).expect("json"))
        .collect();
    samples.sort_by_key(|v| v["applicant_id"].to_string());
    (0..count)
        .map(|i| {
            let mut app = samples[i % samples.len()].clone();
            app["batch_seq"] = i.into();
            BatchInput {
                name: format!("app-{i}"),
                input: app.to_string(),
            }
        })
        .collect()
}

fn batch(c: &mut Criterion) {
    let template = template();
    let inputs = inputs(200);
    let mut group = c.benchmark_group("batch");
    group.sample_size(10);
    group.throughput(Throughput::Elements(inputs.len() as u64));
    let mut variants = vec![(1, "sequential_baseline"), (16, "grouped_16_workers")];
    let default = warden::default_workers(&template);
    if !variants.iter().any(|(workers, _)| *workers == default) {
        variants.push((default, "grouped_default_workers"));
    }
    for (workers, name) in variants {
        let mut stats = None;
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let dir = tempfile::tempdir().expect("temp dir");
                    let journal = Journal::open(&dir.path().join("batch.redb")).expect("journal");
                    (dir, journal)
                },
                |(dir, journal)| {
                    let lines = warden::batch(&journal, &template, &inputs, workers, &|_| {})
                        .expect("batch");
                    assert_eq!(lines.len(), inputs.len());
                    stats = Some(journal.commit_stats());
                    drop(journal);
                    drop(dir);
                },
                BatchSize::PerIteration,
            );
        });
        if let Some((commits, transactions)) = stats {
            eprintln!(
                "batch {name} ({workers} workers): {commits} commits in {transactions} durable transactions ({:.2} commits per fsync)",
                commits as f64 / transactions.max(1) as f64
            );
        }
    }
    group.finish();
}

fn population_replay(c: &mut Criterion) {
    let template = template();
    let inputs = inputs(200);
    let dir = tempfile::tempdir().expect("temp dir");
    let journal = Journal::open(&dir.path().join("population.redb")).expect("journal");
    warden::batch(&journal, &template, &inputs, 16, &|_| {}).expect("batch");
    let (strict, _) =
        Policy::from_file_with_text(&workspace().join("policies/loan-underwriting-strict.toml"))
            .expect("strict policy");
    let counterfactual = ReplayOptions {
        policy: Some(Arc::new(strict)),
        ..ReplayOptions::default()
    };
    let mut group = c.benchmark_group("population_replay");
    group.sample_size(10);
    group.throughput(Throughput::Elements(inputs.len() as u64));
    group.bench_function("exact", |b| {
        b.iter(|| {
            let reports = replay_all(&journal, &ReplayOptions::default(), &|_| {}).expect("replay");
            assert_eq!(reports.len(), inputs.len());
            assert!(
                reports
                    .iter()
                    .all(|r| r.verdict == ReplayVerdict::Identical)
            );
        })
    });
    group.bench_function("counterfactual_strict_policy", |b| {
        b.iter(|| {
            let reports = replay_all(&journal, &counterfactual, &|_| {}).expect("replay");
            assert_eq!(reports.len(), inputs.len());
        })
    });
    group.finish();
}

criterion_group!(benches, batch, population_replay);
criterion_main!(benches);
