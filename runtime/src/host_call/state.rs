//! The host state of one execution: everything the host knows about a run while its
//! guest executes (the store's data), the records of the step in flight, and the memory
//! limiter.
//!
//! Upholds invariant 7 (bounded): the journal bytes a run produces and the memory it may
//! grow to are counted here against the policy's budgets.

use std::ops::Range;
use std::sync::Arc;

use wasmtime::{Memory, ResourceLimiter};

use super::Halt;
use crate::decision::{Evidence, InferenceRecord};
use crate::effects::Effects;
use crate::journal::{Bodies, Edition, HostCallRef, RecordBody, kind};
use crate::outcome::{FailureReason, Limit};
use crate::policy::{Policy, StateKind};
use crate::recording::Expected;

/// The policy's memory budget, applied to every `memory.grow` (and to instantiation).
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    /// `budgets.memory_bytes`.
    pub(crate) limit: u64,
    /// The largest size the guest asked for over the limit, if any.
    pub(crate) refused: Option<u64>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.limit {
            self.refused = Some(self.refused.unwrap_or(0).max(desired as u64));
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables only exist as the module declares them (the loader refuses table.grow).
        Ok(desired <= 1 << 20)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }
}

/// The response a guest reads next: where its bytes are in the `HostResponse` record of
/// the step in flight that holds them (records are taken only between steps, and
/// `pending` is cleared then).
#[derive(Debug, Clone)]
pub(crate) struct PendingResponse {
    /// The index of its record in [`StepJournal::records`].
    pub(crate) record: usize,
    /// Where the response's bytes are in the step's encoded records.
    pub(crate) bytes: Range<usize>,
}

/// The records of the step in flight, each encoded as it is pushed, and what replay
/// expects them to be.
#[derive(Debug, Default)]
pub(crate) struct StepJournal {
    /// Records not yet committed.
    pub(crate) records: Bodies,
    /// Approximate bytes of records the run has produced, against `max_journal_bytes`.
    pub(crate) bytes: u64,
    /// For exact replay: the recorded bodies, compared as they are produced.
    pub(crate) expected: Option<Expected>,
    /// The room (records, bytes) the latest step's records ended with: what the next
    /// step's start with, so that a step of many calls does not grow (and copy) its
    /// records again and again.
    room: (usize, usize),
}

impl StepJournal {
    /// Adds `body`.
    fn push(&mut self, body: &RecordBody, limit: u64, step: u32) -> Result<(), Halt> {
        self.reserve();
        self.records.push(body);
        self.pushed(approximate_size(body), limit, step)
    }

    /// Adds the `HostCall` record of `call`.
    pub(crate) fn push_host_call(
        &mut self,
        call: HostCallRef<'_>,
        limit: u64,
        step: u32,
    ) -> Result<(), Halt> {
        self.reserve();
        let size = 64 + (call.request.len() + call.state.len()) as u64;
        self.records.push_host_call(call);
        self.pushed(size, limit, step)
    }

    /// Adds the `HostResponse` record that `write` writes (it returns where the response's
    /// bytes are); returns where the guest reads it.
    pub(crate) fn push_response(
        &mut self,
        write: impl FnOnce(&mut Bodies) -> Range<usize>,
        limit: u64,
        step: u32,
    ) -> Result<PendingResponse, Halt> {
        self.reserve();
        let record = self.records.len();
        let bytes = write(&mut self.records);
        let size = 64 + bytes.len() as u64;
        self.pushed(size, limit, step)?;
        Ok(PendingResponse { record, bytes })
    }

    /// Starts the step's records with the room the previous step's took (checked on every
    /// push: kept inline, so that a push that needs no room costs a comparison).
    #[inline]
    fn reserve(&mut self) {
        if self.room != (0, 0) && self.records.is_empty() {
            self.make_room();
        }
    }

    #[cold]
    #[inline(never)]
    fn make_room(&mut self) {
        self.records = Bodies::with_room(self.room.0, self.room.1);
        self.room = (0, 0);
    }

    /// Counts the record just pushed (`size` approximate bytes) against `limit`, and
    /// compares it with replay's expectation (a divergent record is taken back out).
    #[inline]
    fn pushed(&mut self, size: u64, limit: u64, step: u32) -> Result<(), Halt> {
        self.bytes += size;
        if self.expected.is_none() && self.bytes <= limit {
            return Ok(());
        }
        self.check_pushed(limit, step)
    }

    /// [`StepJournal::pushed`] when replaying or over the limit.
    #[inline(never)]
    fn check_pushed(&mut self, limit: u64, step: u32) -> Result<(), Halt> {
        if let Some(expected) = &mut self.expected {
            let last = self.records.len() - 1;
            let checked = expected.check_encoded(self.records.get(last).unwrap_or_default());
            if let Err(divergence) = checked {
                self.records.truncate(last);
                return Err(Halt::Diverged(Box::new(divergence)));
            }
        }
        if self.bytes > limit {
            return Err(Halt::Failed(Box::new(FailureReason::LimitExceeded {
                step,
                limit: Limit::JournalBytes,
                value: self.bytes,
                max: limit,
            })));
        }
        Ok(())
    }

    /// Takes the step's records, for committing or discarding.
    pub(crate) fn take(&mut self) -> Bodies {
        let records = std::mem::take(&mut self.records);
        let (records_room, bytes_room) = records.capacity();
        self.room = (records_room.min(ROOM.0), bytes_room.min(ROOM.1));
        records
    }

    /// The bytes of the response `pending` names, if its record is there.
    pub(crate) fn response(&self, pending: &PendingResponse) -> Option<&[u8]> {
        let record = self.records.span(pending.record)?;
        let inside = record.start < pending.bytes.start && pending.bytes.end == record.end;
        let is_response = self.records.slice(record.clone())?.first() == Some(&kind::HOST_RESPONSE);
        if !(inside && is_response) {
            return None;
        }
        self.records.slice(pending.bytes.clone())
    }
}

/// The most room a step's records start with (records, bytes): a step that wrote more
/// grows its buffer as it goes.
const ROOM: (usize, usize) = (1 << 16, 1 << 20);

/// Journal size of a record the guest can cause: its variable-length parts plus a fixed
/// allowance. Records of the step structure (bounded by `max_steps`) count as 0, so that
/// the count at a checkpoint is exactly the count a resumed run continues from.
fn approximate_size(body: &RecordBody) -> u64 {
    match body {
        RecordBody::HostCall { request, state, .. } => 64 + (request.len() + state.len()) as u64,
        RecordBody::HostResponse { response, .. } => 64 + response.len() as u64,
        RecordBody::Transition { .. } => 64,
        RecordBody::Wasi(wasi) => wasi.approximate_size(),
        _ => 0,
    }
}

/// Everything the host knows about a run while its guest executes: the store's data.
#[derive(Debug)]
pub(crate) struct HostState {
    /// The run's id (part of every effect's idempotency key).
    pub(crate) run_id: String,
    /// The rules the run is recorded under.
    pub(crate) edition: Edition,
    /// The governance contract.
    pub(crate) policy: Arc<Policy>,
    /// The run's input, JSON text.
    pub(crate) input: Arc<str>,
    /// Where tool and model answers come from.
    pub(crate) effects: Effects,
    /// The current state (shared with the records of the calls made in it).
    pub(crate) state: Arc<str>,
    /// The step in flight (0 before the first).
    pub(crate) step: u32,
    /// Host calls made so far; also the next call's sequence number.
    pub(crate) host_calls: u32,
    /// Fuel the run has consumed in completed steps.
    pub(crate) fuel: u64,
    /// Inferences computed so far (edition 1 gates; kept in checkpoints).
    pub(crate) inferences: Vec<InferenceRecord>,
    /// What edition-2 rules rest on; `None` for edition-1 runs.
    pub(crate) evidence: Option<Evidence>,
    /// How the step failed after a gate escalated in it (edition 2): the run still waits
    /// for review, and this is recorded in its outcome.
    pub(crate) after_escalation: Option<FailureReason>,
    /// The inference record of the call in flight, written after its response.
    pub(crate) recorded_inference: Option<crate::decision::ModelInference>,
    /// The effects the step a review continues from performed before it was stopped.
    pub(crate) performed: Option<Performed>,
    /// Whether this step made a transition.
    pub(crate) transitioned: bool,
    /// Whether the run is held for review in this step, so that the agent may read but
    /// not act: a gate sent it to review, or (edition 3) it is in a review state.
    pub(crate) escalated: bool,
    /// Whether the guest was stopped inside a host call (its frames still live), so that
    /// no checkpoint may be taken at the end of this step.
    pub(crate) stopped_mid_step: bool,
    /// The output, once the agent finished.
    pub(crate) finished: Option<String>,
    /// The response held for the guest's read.
    pub(crate) pending: Option<PendingResponse>,
    /// Records of the step in flight.
    pub(crate) journal: StepJournal,
    /// Why the guest was stopped, if it was.
    pub(crate) halt: Option<Halt>,
    /// The memory budget.
    pub(crate) limiter: MemoryLimiter,
    /// The guest's memory, once instantiated.
    pub(crate) memory: Option<Memory>,
    /// When the step in flight runs out of wall-clock time: no provider waits past it.
    pub(crate) deadline: Option<std::time::Instant>,
}

/// The effects a run performed in a step that was stopped mid-step after it entered review
/// (its agent acted again after a gate's escalation, or in a review state), so that the
/// step has no clean end and its review continues the run from the checkpoint before it.
/// After the decision the agent runs that step's logic again: an effect it asks for again,
/// identically, in the step right after the review is answered from the record of the
/// first time, never performed twice (under a new idempotency key).
#[derive(Debug)]
pub(crate) struct Performed {
    /// The step right after the review, the only one answered from these.
    pub(crate) step: u32,
    /// The stopped step's answers, by request.
    pub(crate) answers: crate::recording::Recording,
}

impl HostState {
    /// The host state of a fresh execution of run `run_id`, in the policy's initial state.
    pub(crate) fn new(
        run_id: &str,
        policy: Arc<Policy>,
        input: &str,
        effects: Effects,
        edition: Edition,
    ) -> HostState {
        let limit = policy.budgets.memory_bytes;
        HostState {
            run_id: run_id.to_string(),
            edition,
            state: Arc::from(policy.initial.as_str()),
            policy,
            input: Arc::from(input),
            effects,
            step: 0,
            host_calls: 0,
            fuel: 0,
            inferences: Vec::new(),
            evidence: (edition >= Edition::V2).then(|| Evidence::new(input)),
            recorded_inference: None,
            performed: None,
            after_escalation: None,
            transitioned: false,
            escalated: false,
            stopped_mid_step: false,
            finished: None,
            pending: None,
            journal: StepJournal::default(),
            halt: None,
            limiter: MemoryLimiter {
                limit,
                refused: None,
            },
            memory: None,
            deadline: None,
        }
    }

    /// Whether the run's current state holds it for a person (edition 3): a review
    /// state, where the agent may read but not act, whatever brought the run there.
    pub(crate) fn held_for_review(&self) -> bool {
        self.edition >= Edition::V3
            && self
                .policy
                .state(&self.state)
                .is_some_and(|s| s.kind == StateKind::Review)
    }

    /// Whether answers come from a recording (replay, or the catch-up of a resume).
    pub(crate) fn replaying(&self) -> bool {
        matches!(self.effects, Effects::Recorded(_))
    }

    /// Adds a record to the step in flight (checked against replay's expectation).
    pub(crate) fn push(&mut self, body: RecordBody) -> Result<(), Halt> {
        let limit = self.policy.budgets.max_journal_bytes;
        self.journal.push(&body, limit, self.step)
    }

    pub(super) fn fail(&self, reason: impl FnOnce(u32) -> FailureReason) -> Halt {
        Halt::Failed(Box::new(reason(self.step)))
    }
}
