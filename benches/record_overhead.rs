//! Record overhead: one whole run of the same guest recorded by Warden (`warden::start`:
//! every call decoded, enforced and journaled, the step's checkpoint captured, the step
//! committed durably to redb) against the same guest under plain wasmtime (baseline,
//! unrecorded): the same engine configuration, a fresh instance per run, and a host
//! function that answers each request with the bytes Warden would (from a table). A third
//! variant, `warden_step_only`, runs Warden's step alone (`internals::BenchExecution`: the
//! real host call, enforcement and step journal on one instance kept from run to run,
//! nothing committed), to tell the cost of enforcement from the cost of recording.
//!
//! Three guests, written below in WAT, each one step that ends with a transition and
//! `finish`:
//! - `compute`: 50 000 000 iterations of an integer loop, then those two calls;
//! - `calls`: 1 000 `State` requests, each after 1 000 iterations of the same loop (about
//!   a microsecond of guest work per call);
//! - `calls_10k`: the same with 10 000 requests, which tells the run's fixed cost (its two
//!   durable commits, instantiation, checkpoints) from what each call adds.

#![allow(
    clippy::expect_used,
    reason = "a benchmark that cannot set itself up should stop at once, saying where"
)]

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use warden::{Agent, Bindings, Journal, NewRun, Policy, Status};
use warden_guest::wire::Response;
use wasmtime::{Caller, Config, Engine, InstancePre, Linker, Module, Store};

/// (name, requests before the end, loop iterations before each request)
const GUESTS: [(&str, u32, u32); 3] = [
    ("compute", 1, 50_000_000),
    ("calls", 1_000, 1_000),
    ("calls_10k", 10_000, 1_000),
];

/// The guest: `calls` times, `work` iterations then a `State` request; then the
/// transition to `done` and `finish`. Requests are postcard bytes: `State` is 0x01,
/// `Transition { to: "done", evidence: None }` 0x04 0x04 "done" 0x00, `Finish { output:
/// "{}" }` 0x06 0x02 "{}".
fn guest(calls: u32, work: u32) -> String {
    format!(
        r#"(module
  (import "warden" "host_call" (func $host_call (param i32 i32 i32) (result i64)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\01")
  (data (i32.const 32) "\04\04done\00")
  (data (i32.const 48) "\06\02{{}}")
  (func $work (local $i i32) (local $x i32)
    (loop $again
      (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 31)) (local.get $i)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const {work}))))
    (i32.store (i32.const 0) (local.get $x)))
  (func $call (param $ptr i32) (param $len i32)
    (drop (call $host_call (i32.const 0) (local.get $ptr) (local.get $len)))
    (drop (call $host_call (i32.const 1) (i32.const 1024) (i32.const 1024))))
  (func (export "warden_step") (result i32) (local $n i32)
    (loop $again
      (call $work)
      (call $call (i32.const 16) (i32.const 1))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $n) (i32.const {calls}))))
    (call $call (i32.const 32) (i32.const 7))
    (call $call (i32.const 48) (i32.const 4))
    i32.const 0))"#
    )
}

const POLICY: &str = r#"
[policy]
name = "overhead"
version = "1"
initial = "start"
[budgets]
fuel_per_step = 4_000_000_000
max_host_calls = 1_000_000
[states.start]
transitions = ["done"]
[states.done]
terminal = true
"#;

/// The answers Warden gives this guest, by the request's first byte (its variant).
struct Answers {
    state: Vec<u8>,
    transitioned: Vec<u8>,
    ack: Vec<u8>,
    pending: usize,
}

impl Answers {
    fn new() -> Answers {
        let encode = |r: &Response| postcard::to_allocvec(r).expect("encode");
        Answers {
            state: encode(&Response::State("start".into())),
            transitioned: encode(&Response::Transitioned("done".into())),
            ack: encode(&Response::Ack),
            pending: 0,
        }
    }

    fn answer(&self, variant: usize) -> &[u8] {
        match variant {
            1 => &self.state,
            4 => &self.transitioned,
            _ => &self.ack,
        }
    }
}

/// The unrecorded host function: remembers the request's variant, then writes its answer.
fn host_call(mut caller: Caller<'_, Answers>, op: i32, ptr: i32, _len: i32) -> i64 {
    let Some(memory) = caller
        .get_export("memory")
        .and_then(wasmtime::Extern::into_memory)
    else {
        return -1;
    };
    let (data, answers) = memory.data_and_store_mut(&mut caller);
    let at = ptr as u32 as usize;
    if op == 0 {
        answers.pending = usize::from(data[at]);
        answers.answer(answers.pending).len() as i64
    } else {
        let answer = answers.answer(answers.pending);
        data[at..at + answer.len()].copy_from_slice(answer);
        answer.len() as i64
    }
}

fn unrecorded(pre: &InstancePre<Answers>) {
    let mut store = Store::new(pre.module().engine(), Answers::new());
    store.set_fuel(4_000_000_000).expect("fuel");
    store.set_epoch_deadline(u64::MAX / 2);
    let instance = pre.instantiate(&mut store).expect("instantiate");
    let step = instance
        .get_typed_func::<(), i32>(&mut store, "warden_step")
        .expect("step");
    assert_eq!(step.call(&mut store, ()).expect("step"), 0);
}

fn record_overhead(c: &mut Criterion) {
    // Warden's engine configuration (`runtime/src/engine.rs`).
    let mut config = Config::new();
    config
        .consume_fuel(true)
        .epoch_interruption(true)
        .cranelift_nan_canonicalization(true)
        .relaxed_simd_deterministic(true)
        .max_wasm_stack(1 << 20);
    let engine = Engine::new(&config).expect("engine");
    let mut linker: Linker<Answers> = Linker::new(&engine);
    linker
        .func_wrap("warden", "host_call", host_call)
        .expect("link");
    let policy = Arc::new(Policy::parse(POLICY, "overhead").expect("policy"));
    let dir = tempfile::tempdir().expect("temp dir");
    let journal = Journal::open(&dir.path().join("overhead.redb")).expect("journal");

    let mut group = c.benchmark_group("record_overhead");
    group.sample_size(20);
    for (name, calls, work) in GUESTS {
        let wat = guest(calls, work);
        let module = Module::new(&engine, wat::parse_str(&wat).expect("wat")).expect("module");
        let pre = linker.instantiate_pre(&module).expect("pre");
        group.bench_function(format!("{name}/unrecorded_baseline"), |b| {
            b.iter(|| unrecorded(&pre))
        });
        let new = NewRun {
            agent: Agent::from_bytes(wat.as_bytes()).expect("agent"),
            policy: Arc::clone(&policy),
            policy_text: POLICY.to_string(),
            bindings: Arc::new(Bindings::empty()),
            input: "{}".to_string(),
            submitted_by: None,
        };
        let mut exec = warden::internals::BenchExecution::new(&new.agent, Arc::clone(&policy));
        group.bench_function(format!("{name}/warden_step_only"), |b| {
            b.iter(|| assert_eq!(exec.step(), Status::Completed))
        });
        group.bench_function(format!("{name}/warden_recorded"), |b| {
            b.iter(|| {
                let report = warden::start(&journal, &new).expect("run");
                assert_eq!(report.outcome.status, Status::Completed);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, record_overhead);
criterion_main!(benches);
