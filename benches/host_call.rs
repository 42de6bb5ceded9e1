//! Host call cost: a raw wasmtime host function beside Warden's enforced, journaled host
//! call, driven by the same guest loop, so the figure that matters is the ratio.
//!
//! The guest makes 10, 1 000 or 10 000 requests per step (criterion's parameter, and its
//! throughput: the time per element is the time per request, step overhead included);
//! each request is two crossings of the import (send the request, read the response),
//! exactly as the guest SDK does.
//! - `raw`: the import is a host function that returns at once.
//! - `warden`: the import is Warden's: bounds-checked read, postcard decode, `enforce`,
//!   two journal records, response encode and write-back (the step's redb commit is not
//!   included; see the `step_commit` group for that).

#![allow(
    clippy::expect_used,
    reason = "a benchmark that cannot set itself up should stop at once, saying where"
)]

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use warden::internals::BenchExecution;
use warden::{Agent, Policy};
use wasmtime::{Caller, Config, Engine, Linker, Module, Store};

/// Requests per step.
const CALLS: [u32; 3] = [10, 1_000, 10_000];

/// Sends `Request::State` (postcard byte 0x01) `calls` times, reading each response.
fn guest(calls: u32) -> String {
    format!(
        r#"(module
  (import "warden" "host_call" (func $host_call (param i32 i32 i32) (result i64)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\01")
  (func (export "warden_step") (result i32) (local $i i32)
    (loop $again
      (drop (call $host_call (i32.const 0) (i32.const 16) (i32.const 1)))
      (drop (call $host_call (i32.const 1) (i32.const 1024) (i32.const 1024)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const {calls}))))
    i32.const 0))"#
    )
}

const POLICY: &str = r#"
[policy]
name = "bench"
version = "1"
initial = "start"
[budgets]
max_host_calls = 1_000_000
max_journal_bytes = 1_073_741_824
[states.start]
transitions = ["done"]
[states.done]
terminal = true
"#;

fn host_calls(c: &mut Criterion) {
    // The baseline runs on an engine configured as Warden's (fuel and epochs on).
    let mut config = Config::new();
    config.consume_fuel(true).epoch_interruption(true);
    let engine = &Engine::new(&config).expect("engine");
    let policy = Arc::new(Policy::parse(POLICY, "bench").expect("policy"));
    let mut group = c.benchmark_group("host_call");
    for calls in CALLS {
        let wat = guest(calls);
        group.throughput(Throughput::Elements(u64::from(calls)));

        // Baseline: the same loop against a host function that does nothing.
        let module = Module::new(engine, wat::parse_str(&wat).expect("wat")).expect("module");
        let mut linker: Linker<()> = Linker::new(engine);
        linker
            .func_wrap(
                "warden",
                "host_call",
                |_: Caller<'_, ()>, _op: i32, _ptr: i32, _len: i32| -> i64 { 1 },
            )
            .expect("link");
        let mut store = Store::new(engine, ());
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = linker
            .instantiate(&mut store, &module)
            .expect("instantiate");
        let step = instance
            .get_typed_func::<(), i32>(&mut store, "warden_step")
            .expect("step");
        group.bench_function(BenchmarkId::new("raw", calls), |b| {
            b.iter(|| {
                store.set_fuel(u64::MAX / 2).expect("fuel");
                step.call(&mut store, ()).expect("step")
            })
        });

        // Warden: decode, enforce, journal, respond, for every call.
        let agent = Agent::from_bytes(wat.as_bytes()).expect("agent");
        let mut exec = BenchExecution::new(&agent, Arc::clone(&policy));
        // Every request is answered and the step returns: a step that stopped early would
        // measure nothing.
        assert_eq!(
            exec.step(),
            warden::Status::Running,
            "the step runs to its end"
        );
        group.bench_function(BenchmarkId::new("warden", calls), |b| {
            b.iter(|| exec.step())
        });
    }
    group.finish();
}

criterion_group!(benches, host_calls);
criterion_main!(benches);
