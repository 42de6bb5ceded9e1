//! Storage and start-up: what a run costs on disk and before its first step.
//!
//! - `page_store`: one 64 KiB page as the journal stores it. Baseline: copying it raw
//!   (what format 2 stored). Then zstd alone, and the difference from the page it replaced
//!   (a step that changed 1% of its bytes), each with its bytes stored (printed once).
//! - `module`: the loan agent compiled by Cranelift (baseline: every process before the
//!   cache), loaded back from the on-disk cache (digest check and deserialize), and found
//!   in the in-process cache (`Agent::from_bytes` a second time, validation included).
//! - `journal bytes per loan run`: printed once, from runs of the loan example's sample
//!   applications with a checkpoint every step, stored compressed and as differences.
//!
//! Needs the loan agent built (`./x bench` builds it).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a benchmark that cannot set itself up should stop at once, saying where"
)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use warden::internals::{
    PAGE_SIZE, cache_load, cache_store, compile_uncached, pack_page, unpack_page,
};
use warden::{Agent, Bindings, Journal, NewRun, Policy};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn loan_agent() -> Vec<u8> {
    let path = workspace().join("target/wasm32-unknown-unknown/release/loan_agent.wasm");
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build it: cargo build --release --target wasm32-unknown-unknown -p loan-agent",
            path.display()
        )
    })
}

/// A page of a guest heap: structured, partly zero.
fn heap_page(seed: u32) -> Vec<u8> {
    let mut page = vec![0u8; PAGE_SIZE];
    for (i, chunk) in page.chunks_mut(16).enumerate().take(PAGE_SIZE / 32) {
        let v = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed);
        chunk[..4].copy_from_slice(&v.to_le_bytes());
        chunk[4..8].copy_from_slice(&(i as u32).to_le_bytes());
    }
    page
}

fn page_store(c: &mut Criterion) {
    let base = heap_page(1);
    let mut page = base.clone();
    for i in (0..PAGE_SIZE).step_by(100) {
        page[i] ^= 0x5a;
    }
    let zstd = pack_page(&page, None);
    let delta = pack_page(&page, Some(&base));
    let base_stored = pack_page(&base, None);
    assert_eq!(unpack_page(&delta, Some(&base_stored)), page);
    eprintln!(
        "page_store bytes: raw {PAGE_SIZE}, zstd {}, difference {} (a page 1% changed)",
        zstd.len(),
        delta.len()
    );
    let mut group = c.benchmark_group("page_store");
    group.throughput(Throughput::Bytes(PAGE_SIZE as u64));
    group.bench_function("raw_copy_baseline", |b| b.iter(|| black_box(page.clone())));
    group.bench_function("zstd", |b| b.iter(|| pack_page(black_box(&page), None)));
    group.bench_function("difference", |b| {
        b.iter(|| pack_page(black_box(&page), Some(&base)))
    });
    group.bench_function("read_difference", |b| {
        b.iter(|| unpack_page(black_box(&delta), Some(&base_stored)))
    });
    group.finish();
}

fn module(c: &mut Criterion) {
    let binary = loan_agent();
    let dir = tempfile::tempdir().expect("temp dir");
    let module = compile_uncached(&binary);
    let file = cache_store(&module, &binary, dir.path());
    assert!(cache_load(&file));
    Agent::from_bytes(&binary).expect("loan agent loads");
    let mut group = c.benchmark_group("module");
    group.sample_size(10);
    group.bench_function("compile_baseline", |b| {
        b.iter(|| compile_uncached(black_box(&binary)))
    });
    group.bench_function("disk_cache_load", |b| b.iter(|| cache_load(&file)));
    group.bench_function("memory_cache_agent_from_bytes", |b| {
        b.iter(|| Agent::from_bytes(black_box(&binary)).expect("loads"))
    });
    group.finish();
}

/// Journal bytes per loan run, printed once: every sample application, each once, in a
/// fresh journal; the module and policy blobs (shared by every run) reported apart.
fn journal_bytes(_: &mut Criterion) {
    let example = workspace().join("examples/loan-underwriting");
    let dir = tempfile::tempdir().expect("temp dir");
    let journal = Journal::open(&dir.path().join("bytes.redb")).expect("journal");
    let agent = Agent::from_bytes(&loan_agent()).expect("agent");
    let policy_path = workspace().join("policies/loan-underwriting.toml");
    let (policy, policy_text) = Policy::from_file_with_text(&policy_path).expect("policy");
    let policy = Arc::new(policy);
    let bindings = Arc::new(Bindings::from_file(&example.join("bindings.toml")).expect("bindings"));
    let mut runs = 0u64;
    for entry in std::fs::read_dir(example.join("applications")).expect("applications") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let input = std::fs::read_to_string(&path).expect("input");
        warden::start(
            &journal,
            &NewRun {
                agent: agent.clone(),
                policy: policy.clone(),
                policy_text: policy_text.clone(),
                bindings: bindings.clone(),
                input,
                submitted_by: None,
            },
        )
        .expect("run");
        runs += 1;
    }
    let s = journal.storage().expect("storage");
    let per_run = (s.record_bytes + s.checkpoint_bytes + s.page_bytes + s.log_bytes) / runs;
    eprintln!(
        "journal bytes per loan run ({runs} runs, a checkpoint every step): {per_run} \
         (records {}, checkpoints {}, pages {} stored of {} raw, log {}); shared blobs {}",
        s.record_bytes / runs,
        s.checkpoint_bytes / runs,
        s.page_bytes / runs,
        s.page_bytes_raw / runs,
        s.log_bytes / runs,
        s.blob_bytes
    );
}

criterion_group!(benches, page_store, module, journal_bytes);
criterion_main!(benches);
