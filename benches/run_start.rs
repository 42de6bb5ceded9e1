//! Run start: instantiating the loan agent, the way each run begins. Baseline: a fresh
//! `Linker::instantiate` (imports resolved again for every instance). Then an
//! `InstancePre` made once (imports resolved once, what `step::prepare` offers), then the
//! same on an engine with wasmtime's pooling allocator (memories and tables taken from a
//! pool reserved up front instead of mapped for each instance), and last what Warden does
//! for each run today (`BenchExecution::new`: host state, `prepare`, instantiate, exports).
//! Every iteration creates a store, instantiates, finds `warden_step` and drops it all.
//!
//! Needs the loan agent built (`./x bench` builds it).

#![allow(
    clippy::expect_used,
    reason = "a benchmark that cannot set itself up should stop at once, saying where"
)]

use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use warden::internals::BenchExecution;
use warden::{Agent, Policy};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, Store,
};

/// Warden's engine configuration (`runtime/src/engine.rs`).
fn config() -> Config {
    let mut config = Config::new();
    config
        .consume_fuel(true)
        .epoch_interruption(true)
        .cranelift_nan_canonicalization(true)
        .relaxed_simd_deterministic(true)
        .max_wasm_stack(1 << 20);
    config
}

/// A linker with the one import, answered by a host function that returns at once.
fn linker(engine: &Engine) -> Linker<()> {
    let mut linker = Linker::new(engine);
    linker
        .func_wrap("warden", "host_call", |_: i32, _: i32, _: i32| -> i64 { 0 })
        .expect("link");
    linker
}

fn start(pre: &InstancePre<()>) -> i32 {
    let mut store = Store::new(pre.module().engine(), ());
    let instance = pre.instantiate(&mut store).expect("instantiate");
    let step = instance
        .get_typed_func::<(), i32>(&mut store, "warden_step")
        .expect("step");
    std::hint::black_box(step);
    0
}

fn run_start(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = root.join("target/wasm32-unknown-unknown/release/loan_agent.wasm");
    let agent = Agent::from_file(&wasm).unwrap_or_else(|e| {
        panic!("{e}; build it: cargo build --release --target wasm32-unknown-unknown -p loan-agent")
    });
    let policy =
        Arc::new(Policy::from_file(&root.join("policies/loan-underwriting.toml")).expect("policy"));
    let bytes = std::fs::read(&wasm).expect("agent");

    let engine = Engine::new(&config()).expect("engine");
    let module = Module::new(&engine, &bytes).expect("compile");
    let on_demand = linker(&engine);
    let pre = on_demand.instantiate_pre(&module).expect("pre");

    // The pool: sized for a few concurrent runs, each memory up to the policy's budget.
    let mut pool = PoolingAllocationConfig::new();
    pool.total_core_instances(16)
        .total_memories(16)
        .total_tables(16)
        .max_memory_size(policy.budgets.memory_bytes as usize);
    let mut pooled = config();
    pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    let pooled = Engine::new(&pooled).expect("pooling engine");
    let pooled_module = Module::new(&pooled, &bytes).expect("compile");
    let pooled_pre = linker(&pooled)
        .instantiate_pre(&pooled_module)
        .expect("pre");

    let mut group = c.benchmark_group("run_start");
    group.bench_function("linker_instantiate_baseline", |b| {
        b.iter(|| {
            let mut store = Store::new(&engine, ());
            let instance = on_demand
                .instantiate(&mut store, &module)
                .expect("instantiate");
            instance
                .get_typed_func::<(), i32>(&mut store, "warden_step")
                .expect("step")
        })
    });
    group.bench_function("instance_pre", |b| b.iter(|| start(&pre)));
    group.bench_function("pooling_instance_pre", |b| b.iter(|| start(&pooled_pre)));
    group.bench_function("warden_execution", |b| {
        b.iter(|| BenchExecution::new(&agent, Arc::clone(&policy)))
    });
    group.finish();
}

criterion_group!(benches, run_start);
criterion_main!(benches);
