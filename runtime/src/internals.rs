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
            Err(reason) => panic!("the benchmark's agent does not instantiate: {reason}"),
        }
    }

    /// Runs step 1 again from the same host counters, discarding its records; returns the
    /// run's status after it.
    pub fn step(&mut self) -> Status {
        let host = self.0.host_mut();
        host.host_calls = 0;
        host.journal.bytes = 0;
        let end = self.0.run_step(1);
        self.0.take_records();
        end.status()
    }
}

/// The page tracker of checkpoints: compares with the previous image, hashes what changed.
#[derive(Debug, Default)]
pub struct BenchPages(PageTracker);

impl BenchPages {
    /// Captures `memory`; returns (pages, bytes of changed pages to store).
    pub fn capture(&mut self, memory: &[u8]) -> (usize, usize) {
        let capture = self.0.capture(memory);
        let stored = capture.changed.iter().map(|page| page.bytes.len()).sum();
        (capture.pages.len(), stored)
    }
}
