//! The engine's internals, for Warden's own benchmarks only (feature `bench`). Not an
//! API: nothing here is stable, and nothing an embedder needs is only here.

use std::sync::Arc;

use crate::agent::Agent;
use crate::bindings::Bindings;
use crate::checkpoint::PageTracker;
use crate::edition::Edition;
use crate::effects::Effects;
use crate::host_call::HostState;
use crate::outcome::Status;
use crate::policy::Policy;
use crate::step::Execution;

pub use crate::checkpoint::PAGE_SIZE;
pub use crate::digest::domain::PAGE as PAGE_DOMAIN;

/// One execution of an agent with live (empty) bindings and no journal: steps run through
/// the real host call, enforcement and step journal; nothing is committed.
#[derive(Debug)]
pub struct BenchExecution(Box<Execution>);

impl BenchExecution {
    /// Instantiates `agent` under `policy` on input `{}`.
    ///
    /// # Panics
    /// If the agent cannot be instantiated (a benchmark's own mistake).
    pub fn new(agent: &Agent, policy: Arc<Policy>) -> BenchExecution {
        let host = HostState::new(
            "bench",
            policy,
            "{}",
            Effects::Live(Arc::new(Bindings::empty())),
            Edition::CURRENT,
        );
        match Execution::instantiate(agent, host) {
            Ok(exec) => BenchExecution(Box::new(exec)),
            Err(reason) => panic!("the benchmark's agent does not instantiate: {reason:?}"),
        }
    }

    /// Runs step 1 again from the same host counters, in the policy's initial state,
    /// discarding its records; returns the run's status after it.
    pub fn step(&mut self) -> Status {
        let host = self.0.host_mut();
        host.host_calls = 0;
        host.journal.bytes = 0;
        host.state = Arc::from(host.policy.initial.as_str());
        host.finished = None;
        let end = self.0.run_step(1);
        self.0.take_records();
        end.status()
    }
}

/// A linear memory of the process's engine with the page tracker of checkpoints over it,
/// as a run has: finds the pages changed since the previous capture, hashes those.
pub struct BenchPages {
    store: wasmtime::Store<()>,
    memory: wasmtime::Memory,
    tracker: PageTracker,
}

impl std::fmt::Debug for BenchPages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BenchPages").finish_non_exhaustive()
    }
}

impl BenchPages {
    /// A memory of `bytes` (a multiple of [`PAGE_SIZE`]); with `compare_all`, captures
    /// compare every page even where the kernel could say which were written.
    ///
    /// # Panics
    /// If the memory cannot be created (a benchmark's own mistake).
    pub fn new(bytes: usize, compare_all: bool) -> BenchPages {
        let engine = crate::engine::engine().unwrap_or_else(|e| panic!("engine: {e}"));
        let mut store = wasmtime::Store::new(engine, ());
        let pages = (bytes / PAGE_SIZE) as u32;
        let memory = wasmtime::Memory::new(&mut store, wasmtime::MemoryType::new(pages, None))
            .unwrap_or_else(|e| panic!("memory: {e}"));
        let tracker = match compare_all {
            true => PageTracker::comparing_all(),
            false => PageTracker::default(),
        };
        BenchPages {
            store,
            memory,
            tracker,
        }
    }

    /// The memory, to write to.
    pub fn memory(&mut self) -> &mut [u8] {
        self.memory.data_mut(&mut self.store)
    }

    /// Grows the memory by `pages` 64 KiB pages.
    ///
    /// # Panics
    /// If it cannot grow (a benchmark's own mistake).
    pub fn grow(&mut self, pages: u64) {
        self.memory
            .grow(&mut self.store, pages)
            .unwrap_or_else(|e| panic!("grow: {e}"));
    }

    /// Captures the memory; returns (pages, bytes of changed pages to store).
    pub fn capture(&mut self) -> (usize, usize) {
        let capture = self.tracker.capture(self.memory.data(&self.store));
        let stored = capture.changed.iter().map(|page| page.bytes.len()).sum();
        (capture.pages.len(), stored)
    }

    /// How the next capture finds changed pages: `written-pages` or `compare-all`.
    pub fn detection(&self) -> &'static str {
        self.tracker.detection().as_str()
    }
}

/// Compiles `binary` (a module binary) with the process's engine, bypassing every cache:
/// what the first run of an agent pays.
///
/// # Panics
/// If the module does not compile (a benchmark's own mistake).
pub fn compile_uncached(binary: &[u8]) -> wasmtime::Module {
    let engine = crate::engine::engine().unwrap_or_else(|e| panic!("engine: {e}"));
    wasmtime::Module::new(engine, binary).unwrap_or_else(|e| panic!("compile: {e}"))
}

/// Stores `module` in `dir` as the module cache does; returns the file.
pub fn cache_store(
    module: &wasmtime::Module,
    binary: &[u8],
    dir: &std::path::Path,
) -> std::path::PathBuf {
    let engine = crate::engine::engine().unwrap_or_else(|e| panic!("engine: {e}"));
    let key = crate::module_cache::key(engine, binary);
    let file = dir.join(format!(
        "{}.cwasm",
        key.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ));
    crate::module_cache::store(module, &file);
    file
}

/// Loads a cached module back as a later process would (digest check, deserialize).
pub fn cache_load(file: &std::path::Path) -> bool {
    let engine = crate::engine::engine().unwrap_or_else(|e| panic!("engine: {e}"));
    crate::module_cache::load(engine, file).is_some()
}

/// A page as the journal stores it: compressed, or as its difference from `base`.
pub fn pack_page(page: &[u8], base: Option<&[u8]>) -> Vec<u8> {
    let difference = base.map(|b| crate::checkpoint::Difference::between(b, page));
    let base = base
        .zip(difference.as_ref())
        .map(|(b, difference)| (crate::digest::Digest::of(PAGE_DOMAIN, b), difference, 0));
    crate::checkpoint::page_store::pack(page, base)
}

/// The page a stored value holds, given its base page's stored value.
pub fn unpack_page(stored: &[u8], base: Option<&[u8]>) -> Vec<u8> {
    crate::checkpoint::page_store::unpack(stored, |_| Ok(base.map(<[u8]>::to_vec)))
        .unwrap_or_else(|e| panic!("unpack: {e}"))
}
