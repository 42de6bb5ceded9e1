//! A step: one call of the agent's `warden_step` export, metered and classified.
//!
//! [`Execution`] owns one short-lived store and instance. Each step gets a fresh fuel
//! budget and a wall-clock safety deadline; whatever the guest does, the step ends as a
//! typed [`StepEnd`] (invariant 6). Fuel, never wall-clock time, decides anything that
//! reaches the journal (invariant 3): the deadline only ends a run as a failure.

use std::sync::{Arc, OnceLock};

use wasmtime::{InstancePre, Linker, Memory, Store, Trap, TypedFunc};

use crate::agent::Agent;
use crate::checkpoint::{self, Capture, Checkpoint, CheckpointError, PageTracker};
use crate::digest::{Digest, domain};
use crate::engine;
use crate::host_call::{Halt, HostState, host_call};
use crate::journal::{Bodies, Edition, RecordBody};
use crate::outcome::{FailureReason, HostFault, Status, TrapCode};
use crate::policy::StateKind;
use crate::recording::Divergence;
use warden_guest::wire;

/// How much more wall-clock room a replayed step gets than the policy's budget.
pub(crate) const REPLAY_DEADLINE_FACTOR: u64 = 10;

/// How a step ended.
#[derive(Debug, Clone)]
pub(crate) enum StepEnd {
    /// The run goes on.
    Continue,
    /// The agent finished in a terminal state.
    Completed,
    /// The run entered a review state.
    AwaitingReview,
    /// The run failed.
    Failed(FailureReason),
    /// Replay found a departure from the recording.
    Diverged(Box<Divergence>),
}

impl StepEnd {
    /// The run's status after a step that ended this way.
    pub fn status(&self) -> Status {
        match self {
            StepEnd::Continue => Status::Running,
            StepEnd::Completed => Status::Completed,
            StepEnd::AwaitingReview => Status::AwaitingReview,
            StepEnd::Failed(_) | StepEnd::Diverged(_) => Status::Failed,
        }
    }
}

/// The process's one linker: the host-call import, and the WASI functions Warden answers
/// for WASI guests (a module imports them only if loading admitted it, for a policy that
/// allows WASI guests).
fn linker() -> Result<&'static Linker<HostState>, wasmtime::Error> {
    static LINKER: OnceLock<Result<Linker<HostState>, String>> = OnceLock::new();
    LINKER
        .get_or_init(|| {
            let engine = engine::engine().map_err(|e| format!("{e:#}"))?;
            let mut linker = Linker::new(engine);
            linker
                .func_wrap(wire::IMPORT_MODULE, wire::IMPORT_NAME, host_call)
                .map_err(|e| format!("{e:#}"))?;
            crate::wasi::add_to_linker(&mut linker).map_err(|e| format!("{e:#}"))?;
            Ok(linker)
        })
        .as_ref()
        .map_err(|message| wasmtime::Error::msg(message.clone()))
}

/// An agent prepared for fast instantiation: its imports resolved once per `Agent` (and its
/// clones), on its first run.
pub(crate) fn prepare(agent: &Agent) -> Result<&InstancePre<HostState>, wasmtime::Error> {
    agent.prepared(|module| linker()?.instantiate_pre(module))
}

/// A live instance of an agent and the host state around it.
pub(crate) struct Execution {
    store: Store<HostState>,
    instance: wasmtime::Instance,
    step_fn: TypedFunc<(), i32>,
    memory: Memory,
    globals: Vec<String>,
    tracker: PageTracker,
}

impl std::fmt::Debug for Execution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Execution")
            .field("host", self.store.data())
            .finish_non_exhaustive()
    }
}

/// Why an agent could not be instantiated.
#[derive(Debug)]
pub(crate) enum NotStarted {
    /// The module's own doing (its initial memory over budget, a data segment out of
    /// bounds, a table too large): the same every time, so the run's recorded failure.
    Agent(Box<FailureReason>),
    /// The machine's: the operating system refused memory or address space. Not the
    /// run's outcome (another attempt may succeed), so nothing is recorded.
    Host(String),
}

impl Execution {
    /// Instantiates `agent` around `host`. A module whose initial memory is over budget
    /// (or that otherwise cannot start) is a run failure; the operating system refusing
    /// memory is a host error.
    pub(crate) fn instantiate(agent: &Agent, host: HostState) -> Result<Execution, NotStarted> {
        let instantiation = |e: wasmtime::Error| {
            let message = format!("{e:#}");
            // A system call's error (mmap, mprotect) or an allocation that failed is the
            // machine's state, not the module's.
            if e.is::<rustix::io::Errno>()
                || e.is::<std::io::Error>()
                || e.is::<wasmtime::OutOfMemory>()
            {
                NotStarted::Host(message)
            } else {
                NotStarted::Agent(Box::new(FailureReason::Instantiation { message }))
            }
        };
        let pre = prepare(agent).map_err(instantiation)?;
        let fuel = host.policy.budgets.fuel_per_step;
        let ticks = engine::deadline_ticks(host.policy.budgets.wall_clock_ms);
        let mut store = Store::new(agent.module.engine(), host);
        store.limiter(|host| &mut host.limiter);
        store.set_fuel(fuel).map_err(instantiation)?;
        store.set_epoch_deadline(ticks);
        let instance = match pre.instantiate(&mut store) {
            Ok(instance) => instance,
            Err(e) => {
                let limiter = &store.data().limiter;
                return Err(match limiter.refused {
                    Some(requested) => NotStarted::Agent(Box::new(FailureReason::MemoryLimit {
                        step: 0,
                        requested_bytes: requested,
                        limit_bytes: limiter.limit,
                    })),
                    None => instantiation(e),
                });
            }
        };
        let step_fn = instance
            .get_typed_func::<(), i32>(&mut store, wire::STEP_EXPORT)
            .map_err(instantiation)?;
        let memory = instance
            .get_memory(&mut store, wire::MEMORY_EXPORT)
            .ok_or_else(|| instantiation(wasmtime::Error::msg("no exported memory")))?;
        store.data_mut().memory = Some(memory);
        Ok(Execution {
            store,
            instance,
            step_fn,
            memory,
            globals: agent.globals.clone(),
            tracker: PageTracker::fresh(agent.first_image()),
        })
    }

    /// The host state.
    pub fn host(&self) -> &HostState {
        self.store.data()
    }

    /// The host state, mutably (to switch effects when a resume catches up).
    pub fn host_mut(&mut self) -> &mut HostState {
        self.store.data_mut()
    }

    /// Adds a record to the step in flight.
    pub fn push(&mut self, body: RecordBody) -> Result<(), Halt> {
        self.store.data_mut().push(body)
    }

    /// Takes the records of the step in flight, for committing or discarding.
    pub fn take_records(&mut self) -> Bodies {
        self.store.data_mut().journal.take()
    }

    /// Runs step number `step` to its end.
    pub fn run_step(&mut self, step: u32) -> StepEnd {
        let span = tracing::debug_span!(
            "step",
            run_id = %self.host().run_id,
            step,
            state = %self.host().state,
            end = tracing::field::Empty,
        )
        .entered();
        let mut end = self.run_step_inner(step);
        // Since edition 2 a gate's escalation is final whatever the rest of the step does:
        // a trap, a bad result, fuel or the deadline after it leaves the run awaiting
        // review, with that failure recorded beside it (in its outcome).
        let host = self.store.data_mut();
        if host.escalated
            && host.edition >= Edition::V2
            && let StepEnd::Failed(reason) = end
        {
            host.after_escalation = Some(reason);
            host.stopped_mid_step = true;
            end = StepEnd::AwaitingReview;
        }
        span.record("end", end.status().as_str());
        end
    }

    fn run_step_inner(&mut self, step: u32) -> StepEnd {
        let budgets = self.host().policy.budgets;
        {
            let host = self.store.data_mut();
            host.step = step;
            host.transitioned = false;
            host.escalated = host.held_for_review();
            host.stopped_mid_step = false;
            host.halt = None;
            host.pending = None;
            host.after_escalation = None;
            host.limiter.refused = None;
        }
        if let Err(halt) = self.push(RecordBody::StepStarted {
            step,
            state: String::from(&*self.host().state),
        }) {
            return halt_end(halt);
        }
        let was_terminal = self.state_kind() == Some(StateKind::Terminal);
        if self.store.set_fuel(budgets.fuel_per_step).is_err() {
            return StepEnd::Failed(FailureReason::HostFault {
                step,
                fault: HostFault::FuelUnavailable,
            });
        }
        // Replay may run on a slower or busier machine: the safety stop gets ten times the
        // room, so that wall-clock time does not make a replay depart from its recording.
        let room = if self.host().replaying() {
            REPLAY_DEADLINE_FACTOR
        } else {
            1
        };
        self.store.set_epoch_deadline(engine::deadline_ticks(
            budgets.wall_clock_ms.saturating_mul(room),
        ));
        self.store.data_mut().deadline = std::time::Instant::now().checked_add(
            std::time::Duration::from_millis(budgets.wall_clock_ms.saturating_mul(room)),
        );
        // Before the first guest code runs, the tracker takes the instance's own image.
        self.tracker.settle(self.memory.data(&self.store));
        let result = self.step_fn.call(&mut self.store, ());
        let used = budgets
            .fuel_per_step
            .saturating_sub(self.store.get_fuel().unwrap_or(0));
        self.store.data_mut().fuel += used;
        let value = match result {
            Ok(value) => value,
            Err(error) => return self.classify(step, used, &error),
        };
        if value != 0 {
            return StepEnd::Failed(FailureReason::BadStepResult { step, value });
        }
        if let Err(halt) = self.push(RecordBody::StepCommitted {
            step,
            fuel: used,
            state: String::from(&*self.host().state),
        }) {
            return halt_end(halt);
        }
        if self.host().finished.is_some() {
            return StepEnd::Completed;
        }
        match self.state_kind() {
            Some(StateKind::Review) => StepEnd::AwaitingReview,
            Some(StateKind::Terminal) if was_terminal => StepEnd::Failed(FailureReason::NoFinish {
                step,
                state: String::from(&*self.host().state),
            }),
            _ => StepEnd::Continue,
        }
    }

    fn state_kind(&self) -> Option<StateKind> {
        let host = self.host();
        host.policy.state(&host.state).map(|s| s.kind)
    }

    fn classify(&mut self, step: u32, fuel: u64, error: &wasmtime::Error) -> StepEnd {
        if let Some(halt) = self.store.data_mut().halt.take() {
            if let Halt::AwaitingReview = halt {
                // The agent was stopped at its first act after an escalation; the step
                // ends there, as if it had returned, but with its frames still live.
                self.store.data_mut().stopped_mid_step = true;
                let state = String::from(&*self.host().state);
                if let Err(halt) = self.push(RecordBody::StepCommitted { step, fuel, state }) {
                    return halt_end(halt);
                }
            }
            return halt_end(halt);
        }
        let budgets = self.host().policy.budgets;
        let refused = self.host().limiter.refused;
        let reason = match (error.downcast_ref::<Trap>(), refused) {
            (Some(Trap::OutOfFuel), _) => FailureReason::FuelExhausted {
                step,
                limit: budgets.fuel_per_step,
            },
            (Some(Trap::Interrupt), _) => FailureReason::DeadlineExceeded {
                step,
                limit_ms: budgets.wall_clock_ms,
            },
            (_, Some(requested)) => FailureReason::MemoryLimit {
                step,
                requested_bytes: requested,
                limit_bytes: budgets.memory_bytes,
            },
            // Format version 1 recorded traps as wasmtime's text; its runs replay so.
            (Some(trap), None) if self.host().edition == Edition::V1 => FailureReason::Trap {
                step,
                trap: trap.to_string(),
            },
            (Some(trap), None) => FailureReason::Trapped {
                step,
                trap: TrapCode::of(trap),
            },
            (None, None) => FailureReason::HostFault {
                step,
                fault: HostFault::UnclassifiedError,
            },
        };
        StepEnd::Failed(reason)
    }

    /// Captures the guest's whole state after the step just run.
    pub fn checkpoint(&mut self) -> Result<(Checkpoint, Capture), CheckpointError> {
        let capture = self.tracker.capture(self.memory.data(&self.store));
        let globals = checkpoint::read_globals(&mut self.store, &self.instance, &self.globals)?;
        let host = self.store.data_mut();
        // Since edition 2 the pages a step changed count against the journal budget
        // (the initial image, checkpoint 0, is the module's own and does not).
        if host.edition >= Edition::V2 && host.step > 0 {
            let bytes: usize = capture.changed.iter().map(|page| page.bytes.len()).sum();
            host.journal.bytes += bytes as u64;
        }
        let checkpoint = Checkpoint {
            step: host.step,
            state: String::from(&*host.state),
            host_calls: host.host_calls,
            fuel: host.fuel,
            journal_bytes: host.journal.bytes,
            inferences: host.inferences.clone(),
            memory_bytes: self.memory.data_size(&self.store) as u64,
            pages: capture.pages.clone(),
            globals,
        };
        Ok((checkpoint, capture))
    }

    /// Restores a checkpoint into this fresh instance. `page` fetches a page by digest;
    /// each page is checked against its digest before use.
    pub fn restore(
        &mut self,
        checkpoint: &Checkpoint,
        mut page: impl FnMut(&Digest) -> Result<Option<Vec<u8>>, CheckpointError>,
    ) -> Result<(), CheckpointError> {
        let wasm_page = checkpoint::PAGE_SIZE as u64;
        let current = self.memory.data_size(&self.store) as u64;
        if checkpoint.pages.len() as u64 * wasm_page != checkpoint.memory_bytes {
            return Err(CheckpointError::Inconsistent {
                step: checkpoint.step,
                pages: checkpoint.pages.len(),
                memory_bytes: checkpoint.memory_bytes,
            });
        }
        if checkpoint.memory_bytes < current {
            return Err(CheckpointError::SmallerThanAgent {
                step: checkpoint.step,
                checkpoint_bytes: checkpoint.memory_bytes,
                agent_bytes: current,
            });
        }
        if checkpoint.memory_bytes > current {
            self.memory
                .grow(
                    &mut self.store,
                    (checkpoint.memory_bytes - current) / wasm_page,
                )
                .map_err(|source| CheckpointError::Grow {
                    bytes: checkpoint.memory_bytes,
                    source,
                })?;
        }
        let mut image = vec![0u8; checkpoint.memory_bytes as usize];
        for (index, (digest, dst)) in checkpoint
            .pages
            .iter()
            .zip(image.chunks_mut(checkpoint::PAGE_SIZE))
            .enumerate()
        {
            let bytes = page(digest)?.ok_or(CheckpointError::PageMissing { digest: *digest })?;
            if bytes.len() != dst.len() || Digest::of(domain::PAGE, &bytes) != *digest {
                return Err(CheckpointError::PageMismatch {
                    index,
                    digest: *digest,
                });
            }
            dst.copy_from_slice(&bytes);
        }
        let data = self.memory.data_mut(&mut self.store);
        match data.get_mut(..image.len()) {
            Some(dst) => dst.copy_from_slice(&image),
            None => {
                return Err(CheckpointError::SmallerThanAgent {
                    step: checkpoint.step,
                    checkpoint_bytes: checkpoint.memory_bytes,
                    agent_bytes: data.len() as u64,
                });
            }
        }
        checkpoint::write_globals(
            &mut self.store,
            &self.instance,
            &self.globals,
            &checkpoint.globals,
        )?;
        // Every page was just checked against its digest: no need to hash them again.
        self.tracker = PageTracker::primed(&image, checkpoint.pages.clone());
        self.tracker.track(self.memory.data(&self.store));
        let host = self.store.data_mut();
        host.step = checkpoint.step;
        host.state = Arc::from(checkpoint.state.as_str());
        host.host_calls = checkpoint.host_calls;
        host.fuel = checkpoint.fuel;
        host.journal.bytes = checkpoint.journal_bytes;
        host.inferences.clone_from(&checkpoint.inferences);
        Ok(())
    }
}

fn halt_end(halt: Halt) -> StepEnd {
    match halt {
        Halt::Failed(reason) => StepEnd::Failed(*reason),
        Halt::Diverged(divergence) => StepEnd::Diverged(divergence),
        Halt::AwaitingReview => StepEnd::AwaitingReview,
    }
}

#[cfg(test)]
mod host_call_attacks;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::bindings::Bindings;
    use crate::effects::Effects;
    use crate::policy::Policy;

    const POLICY: &str = r#"
[policy]
name = "fuzz"
version = "1"
initial = "start"
[budgets]
fuel_per_step = 2_000_000
memory_bytes = 4_194_304
max_host_calls = 64
wall_clock_ms = 2_000
[states.start]
transitions = ["start", "done"]
[states.done]
terminal = true
"#;

    /// What a generated agent may import, and what it must export: the agent ABI.
    fn agent_shape() -> (Vec<u8>, Vec<u8>) {
        let imports =
            r#"(module (import "warden" "host_call" (func (param i32 i32 i32) (result i64))))"#;
        let exports = r#"(module
            (memory (export "memory") 1)
            (func (export "warden_step") (result i32) unreachable))"#;
        (
            wat::parse_str(imports).unwrap_or_default(),
            wat::parse_str(exports).unwrap_or_default(),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::test_support::cases(200)))]

        /// Agent-shaped modules generated by wasm-smith (importing the host call, exporting
        /// `warden_step` and `memory`, with random code between) are loaded, instantiated
        /// and stepped: every step ends as a typed `StepEnd`, and the host never panics,
        /// whatever pointers, lengths and bytes the code passes to the host call.
        #[test]
        fn generated_agents_end_every_step_as_a_typed_outcome(seed in proptest::collection::vec(any::<u8>(), 64..8192)) {
            let (imports, exports) = agent_shape();
            let config = wasm_smith::Config {
                available_imports: Some(imports),
                exports: Some(exports),
                threads_enabled: false,
                shared_everything_threads_enabled: false,
                gc_enabled: false,
                exceptions_enabled: false,
                memory64_enabled: false,
                custom_page_sizes_enabled: false,
                wide_arithmetic_enabled: false,
                custom_descriptors_enabled: false,
                // Instructions the loader refuses (checkpoints could not capture their
                // effect) are tested by the hostile corpus; here they would only make
                // most generated modules stop at loading.
                bulk_memory_enabled: false,
                reference_types_enabled: false,
                max_memories: 1,
                max_tables: 1,
                max_memory32_bytes: 8 << 20,
                ..wasm_smith::Config::default()
            };
            let Ok(module) = wasm_smith::Module::new(config, &mut arbitrary::Unstructured::new(&seed)) else {
                return Ok(());
            };
            let Ok(agent) = Agent::from_bytes(&module.to_bytes()) else {
                return Ok(());
            };
            let policy = Arc::new(Policy::parse(POLICY, "fuzz").expect("policy"));
            let host = HostState::new("fuzz", policy, "{}", Effects::Live(Arc::new(Bindings::empty())), crate::edition::Edition::CURRENT);
            if let Ok(mut exec) = Execution::instantiate(&agent, host) {
                for step in 1..=3 {
                    let end = exec.run_step(step);
                    exec.take_records();
                    if !matches!(end, StepEnd::Continue) {
                        break;
                    }
                }
            }
        }
    }
}
