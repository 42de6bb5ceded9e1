//! The host state of one execution: everything the host knows about a run while its
//! guest executes (the store's data), the records of the step in flight, and the memory
//! limiter.
//!
//! Upholds invariant 7 (bounded): the journal bytes a run produces and the memory it may
//! grow to are counted here against the policy's budgets.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use wasmtime::{Memory, ResourceLimiter};

use super::Halt;
use crate::decision::{Evidence, InferenceRecord};
use crate::effects::Effects;
use crate::journal::{Edition, RecordBody};
use crate::outcome::{FailureReason, Limit};
use crate::policy::Policy;
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

/// The response a guest reads next: the `HostResponse` record of the step in flight that
/// holds its bytes (records are taken only between steps, and `pending` is cleared then).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PendingResponse {
    /// The call it answers.
    pub(crate) call: u64,
    /// Its index in [`StepJournal::records`].
    pub(crate) record: usize,
}

/// The records of the step in flight, and what replay expects them to be.
#[derive(Debug, Default)]
pub(crate) struct StepJournal {
    /// Records not yet committed.
    pub(crate) records: Vec<RecordBody>,
    /// Approximate bytes of records the run has produced, against `max_journal_bytes`.
    pub(crate) bytes: u64,
    /// For exact replay: the recorded bodies, compared as they are produced.
    pub(crate) expected: Option<Expected>,
    /// How many records the latest step produced: the room a step's records start with,
    /// so that a step of many calls does not grow (and copy) its records again and again.
    room: usize,
    /// Where the request and response bytes of calls are written: each record holds a
    /// slice of it, and a chunk is freed (or written again) once no record holds any of it.
    /// Requests and responses encode as `Vec<u8>`s do, so the journal's bytes are the same.
    buffer: BytesMut,
}

impl StepJournal {
    fn push(&mut self, body: RecordBody, limit: u64, step: u32) -> Result<(), Halt> {
        self.bytes += approximate_size(&body);
        if let Some(expected) = &mut self.expected {
            expected
                .check(&body)
                .map_err(|d| Halt::Diverged(Box::new(d)))?;
        }
        if self.records.capacity() == 0 {
            self.records.reserve(self.room);
        }
        self.records.push(body);
        self.room = self.records.len();
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

    /// A copy of `bytes`: a slice of the step's buffer, or its own allocation if large.
    pub(crate) fn copy(&mut self, bytes: &[u8]) -> Bytes {
        if bytes.len() > OWN_ALLOCATION {
            return Bytes::copy_from_slice(bytes);
        }
        self.room_for(bytes.len());
        self.buffer.extend_from_slice(bytes);
        self.buffer.split().freeze()
    }

    /// `value`'s postcard encoding: a slice of the step's buffer, or its own allocation
    /// if large.
    pub(crate) fn encode<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> Bytes {
        let size = postcard::experimental::serialized_size(value).unwrap_or(0);
        if size > OWN_ALLOCATION {
            // Serialising our own plain data types to a Vec cannot fail.
            return postcard::to_extend(value, Vec::with_capacity(size))
                .unwrap_or_default()
                .into();
        }
        self.room_for(size);
        if postcard::serialize_with_flavor(value, Writer(&mut self.buffer)).is_err() {
            self.buffer.clear();
        }
        self.buffer.split().freeze()
    }

    /// Makes room for `len` (at most [`OWN_ALLOCATION`]) more bytes: the rest of the
    /// chunk, or a chunk of its own (the same one again once no record holds any of it).
    fn room_for(&mut self, len: usize) {
        if self.buffer.capacity() - self.buffer.len() < len {
            self.buffer.reserve(BUFFER_CHUNK);
        }
    }

    /// The bytes of the response `pending` names, if its record is there.
    pub(crate) fn response(&self, pending: PendingResponse) -> Option<&[u8]> {
        match self.records.get(pending.record) {
            Some(RecordBody::HostResponse { call, response }) if *call == pending.call => {
                Some(response)
            }
            _ => None,
        }
    }
}

/// The size of the step buffer's chunks.
const BUFFER_CHUNK: usize = 64 * 1024;

/// Pieces larger than this are allocated on their own, so that the buffer never grows past
/// one chunk and a chunk is never left with more than this unused: the memory records hold
/// stays within about 7% of their bytes, whatever sizes a guest chooses.
const OWN_ALLOCATION: usize = 4 * 1024;

/// A postcard output appending to a buffer.
struct Writer<'a>(&'a mut BytesMut);

impl postcard::ser_flavors::Flavor for Writer<'_> {
    type Output = ();

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.extend_from_slice(&[byte]);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

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
    /// Whether this step made a transition.
    pub(crate) transitioned: bool,
    /// Whether a gate sent the run to review in this step.
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

    /// Whether answers come from a recording (replay, or the catch-up of a resume).
    pub(crate) fn replaying(&self) -> bool {
        matches!(self.effects, Effects::Recorded(_))
    }

    /// Adds a record to the step in flight (checked against replay's expectation).
    pub(crate) fn push(&mut self, body: RecordBody) -> Result<(), Halt> {
        let limit = self.policy.budgets.max_journal_bytes;
        self.journal.push(body, limit, self.step)
    }

    pub(super) fn fail(&self, reason: impl FnOnce(u32) -> FailureReason) -> Halt {
        Halt::Failed(Box::new(reason(self.step)))
    }
}
