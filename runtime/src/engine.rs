//! The one wasmtime [`Engine`] of a process, configured for determinism and limits.
//!
//! Upholds invariant 3 (determinism): NaN canonicalisation on, threads and shared memory
//! off, relaxed SIMD deterministic, fuel metering on. Wall-clock time enters only as an
//! epoch deadline, a safety stop that ends a step as a recorded failure and never decides
//! anything else.

use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

use wasmtime::{Config, Engine};

/// The engine whose fuel accounting a run's figures follow, recorded in every run. Fuel
/// is compared by replay, so a run records which engine counted it.
pub const ENGINE_VERSION: &str = "wasmtime 48.0.8";

/// How often the epoch ticker advances the engine's epoch. A step's wall-clock budget is
/// rounded up to a whole number of ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Deepest guest call stack, in bytes of native stack. Deep recursion traps with
/// `StackOverflow` instead of crashing the host.
pub const MAX_WASM_STACK: usize = 1 << 20;

/// Builds the engine configuration every Warden process uses. Threads and shared memory
/// are not even compiled in (wasmtime's `threads` feature is off). Changing it changes fuel
/// accounting and so what replay compares: treat it as part of the journal format.
fn config() -> Config {
    let mut config = Config::new();
    config
        .consume_fuel(true)
        .epoch_interruption(true)
        .cranelift_nan_canonicalization(true)
        .relaxed_simd_deterministic(true)
        .wasm_multi_memory(false)
        .wasm_memory64(false)
        .wasm_gc(false)
        .wasm_stack_switching(false)
        .max_wasm_stack(MAX_WASM_STACK);
    config
}

/// The process-wide engine, with its epoch ticker thread started on first use.
///
/// # Errors
/// Fails only if wasmtime rejects the configuration on this platform.
pub(crate) fn engine() -> Result<&'static Engine, wasmtime::Error> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let engine = Engine::new(&config()).map_err(|e| format!("{e:#}"))?;
            let ticker = engine.clone();
            thread::Builder::new()
                .name("warden-epoch".into())
                .spawn(move || {
                    loop {
                        thread::sleep(EPOCH_TICK);
                        ticker.increment_epoch();
                    }
                })
                .map_err(|e| format!("cannot start the epoch ticker thread: {e}"))?;
            Ok(engine)
        })
        .as_ref()
        .map_err(|message| wasmtime::Error::msg(message.clone()))
}

/// Number of epoch ticks that covers `wall_clock_ms`, at least one.
pub(crate) fn deadline_ticks(wall_clock_ms: u64) -> u64 {
    let tick = EPOCH_TICK.as_millis().max(1) as u64;
    wall_clock_ms.div_ceil(tick).max(1)
}

#[cfg(test)]
mod tests {
    /// The recorded engine version is the one the workspace actually builds.
    #[test]
    fn engine_version_matches_the_lock_file() {
        let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"))
            .expect("Cargo.lock");
        let version = lock
            .split("[[package]]")
            .find(|p| p.contains("name = \"wasmtime\"\n"))
            .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
            .map(|v| v.trim_matches('"').to_string())
            .expect("wasmtime in Cargo.lock");
        assert_eq!(super::ENGINE_VERSION, format!("wasmtime {version}"));
    }
}
