//! Extism 1.30's host function beside raw wasmtime 43 host calls (the wasmtime Extism
//! pulls), in the same run, so the figure that matters is the ratio to `raw_nothing`.
//! Each step makes N = 10 or 1 000 calls (criterion's throughput: time per element is
//! time per call, the step's own overhead included).
//! - `raw_nothing`: a WAT loop calling a host function that returns at once (as the `raw`
//!   row of the main crate's `benches/host_call.rs`, one crossing per call).
//! - `raw_copy64`: the same loop; the host function copies a 64-byte request out of guest
//!   memory and writes a 64-byte response back.
//! - `extism`: an extism-pdk guest (`guest/`) calling an Extism host function
//!   (`Function::new`, default `UserData`) N times with 64 bytes in, 64 bytes out.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use extism::{CurrentPlugin, Function, PTR, Plugin, UserData, Val};
use wasmtime::{Caller, Config, Engine, Linker, Memory, Module, Store};

const CALLS: [u32; 2] = [10, 1_000];

fn guest(calls: u32) -> String {
    format!(
        r#"(module
  (import "host" "call" (func $call (param i32 i32 i32) (result i64)))
  (memory (export "memory") 1)
  (func (export "step") (result i32) (local $i i32)
    (loop $again
      (drop (call $call (i32.const 16) (i32.const 64) (i32.const 1024)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const {calls}))))
    i32.const 0))"#
    )
}

fn raw(engine: &Engine, calls: u32, copy: bool) -> impl FnMut() -> i32 {
    let module = Module::new(engine, wat::parse_str(guest(calls)).expect("wat")).expect("module");
    let mut linker: Linker<Option<Memory>> = Linker::new(engine);
    if copy {
        linker
            .func_wrap(
                "host",
                "call",
                |mut caller: Caller<'_, Option<Memory>>, ptr: i32, len: i32, out: i32| -> i64 {
                    let memory = caller.data().expect("memory");
                    let mut request = [0u8; 64];
                    if len as usize != request.len()
                        || memory.read(&caller, ptr as usize, &mut request).is_err()
                    {
                        return -1;
                    }
                    let mut response = [0u8; 64];
                    response[0] = request[0].wrapping_add(1);
                    response[63] = 7;
                    match memory.write(&mut caller, out as usize, &response) {
                        Ok(()) => 64,
                        Err(_) => -1,
                    }
                },
            )
            .expect("link");
    } else {
        linker
            .func_wrap("host", "call", |_: Caller<'_, Option<Memory>>, _: i32, _: i32, _: i32| -> i64 { 1 })
            .expect("link");
    }
    let mut store = Store::new(engine, None);
    store.set_epoch_deadline(u64::MAX / 2);
    let instance = linker.instantiate(&mut store, &module).expect("instantiate");
    let memory = instance.get_memory(&mut store, "memory").expect("memory");
    *store.data_mut() = Some(memory);
    let step = instance.get_typed_func::<(), i32>(&mut store, "step").expect("step");
    move || {
        store.set_fuel(u64::MAX / 2).expect("fuel");
        step.call(&mut store, ()).expect("step")
    }
}

fn peer_echo(
    plugin: &mut CurrentPlugin,
    inputs: &[Val],
    outputs: &mut [Val],
    _: UserData<()>,
) -> Result<(), extism::Error> {
    let request: &[u8] = plugin.memory_get_val(&inputs[0])?;
    if request.len() != 64 {
        return Err(extism::Error::msg("request is not 64 bytes"));
    }
    let mut response = [0u8; 64];
    response[0] = request[0].wrapping_add(1);
    response[63] = 7;
    plugin.memory_set_val(&mut outputs[0], &response[..])?;
    Ok(())
}

fn host_fn(c: &mut Criterion) {
    // The raw rows run on an engine configured as Warden's (fuel and epochs on), as in
    // the main crate's host_call bench.
    let mut config = Config::new();
    config.consume_fuel(true).epoch_interruption(true);
    let engine = &Engine::new(&config).expect("engine");
    let wasm = std::fs::read(env!("EXTISM_PEER_GUEST")).expect("guest wasm");
    let function = Function::new("peer_echo", [PTR], [PTR], UserData::<()>::default(), peer_echo);
    let mut plugin = Plugin::new(&wasm, [function], false).expect("plugin");

    let mut group = c.benchmark_group("extism_peer");
    for calls in CALLS {
        group.throughput(Throughput::Elements(u64::from(calls)));
        let mut nothing = raw(engine, calls, false);
        group.bench_function(BenchmarkId::new("raw_nothing", calls), |b| b.iter(&mut nothing));
        let mut copy = raw(engine, calls, true);
        assert_eq!(copy(), 0);
        group.bench_function(BenchmarkId::new("raw_copy64", calls), |b| b.iter(&mut copy));
        let input = calls.to_le_bytes();
        let out = plugin.call::<&[u8], Vec<u8>>("run", &input[..]).expect("extism call");
        assert_eq!(out, (7 * calls).to_le_bytes());
        group.bench_function(BenchmarkId::new("extism", calls), |b| {
            b.iter(|| plugin.call::<&[u8], Vec<u8>>("run", &input[..]).expect("extism call"))
        });
    }
    group.finish();
}

criterion_group!(benches, host_fn);
criterion_main!(benches);
