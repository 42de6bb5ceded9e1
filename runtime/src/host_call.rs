//! The host side of the single host-call import: read the request through one
//! bounds-checked accessor, decode it, [`enforce`] it, journal it, then (only if allowed)
//! perform it and journal the response.
//!
//! Upholds invariants 1 (every request passes `enforce`), 4 (the decision is journaled
//! before the effect) and 6 (every misuse becomes a typed failure, never a host panic).

use std::ops::Range;
use std::sync::Arc;

use warden_guest::InferenceId;
use warden_guest::wire::{self, Request, Response};
use wasmtime::{Caller, Memory, ResourceLimiter};

use crate::decision::{InferenceRecord, Rule, RunView, Verdict, enforce};
use crate::effects::Effects;
use crate::journal::RecordBody;
use crate::outcome::{FailureReason, GuestFault, Limit};
use crate::policy::Policy;
use crate::replay::{Divergence, Expected};

/// Why the guest was stopped inside a host call.
#[derive(Debug, Clone)]
pub enum Halt {
    /// The run fails with this reason.
    Failed(FailureReason),
    /// Replay found the run departing from its recording.
    Diverged(Box<Divergence>),
    /// The agent tried to act after a gate sent the run to review: the step ends there and
    /// the run waits for review.
    AwaitingReview,
}

/// The error a host call returns to stop the guest; the reason is in [`HostState::halt`].
#[derive(Debug)]
pub struct Halted;

impl std::fmt::Display for Halted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped by warden")
    }
}

impl std::error::Error for Halted {}

/// The policy's memory budget, applied to every `memory.grow` (and to instantiation).
#[derive(Debug)]
pub struct MemoryLimiter {
    /// `budgets.memory_bytes`.
    pub limit: u64,
    /// The largest size the guest asked for over the limit, if any.
    pub refused: Option<u64>,
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

/// The records of the step in flight, and what replay expects them to be.
#[derive(Debug, Default)]
pub struct StepJournal {
    /// Records not yet committed.
    pub records: Vec<RecordBody>,
    /// Approximate bytes of records the run has produced, against `max_journal_bytes`.
    pub bytes: u64,
    /// For exact replay: the recorded bodies, compared as they are produced.
    pub expected: Option<Expected>,
}

impl StepJournal {
    fn push(&mut self, body: RecordBody, limit: u64, step: u32) -> Result<(), Halt> {
        self.bytes += approximate_size(&body);
        if let Some(expected) = &mut self.expected {
            expected
                .check(&body)
                .map_err(|d| Halt::Diverged(Box::new(d)))?;
        }
        self.records.push(body);
        if self.bytes > limit {
            return Err(Halt::Failed(FailureReason::LimitExceeded {
                step,
                limit: Limit::JournalBytes,
                value: self.bytes,
                max: limit,
            }));
        }
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
        _ => 0,
    }
}

/// Everything the host knows about a run while its guest executes: the store's data.
#[derive(Debug)]
pub struct HostState {
    /// The run's id (part of every effect's idempotency key).
    pub run_id: String,
    /// The governance contract.
    pub policy: Arc<Policy>,
    /// The run's input, JSON text.
    pub input: Arc<str>,
    /// Where tool and model answers come from.
    pub effects: Effects,
    /// The current state.
    pub state: String,
    /// The step in flight (0 before the first).
    pub step: u32,
    /// Host calls made so far; also the next call's sequence number.
    pub host_calls: u32,
    /// Fuel the run has consumed in completed steps.
    pub fuel: u64,
    /// Inferences computed so far.
    pub inferences: Vec<InferenceRecord>,
    /// Whether this step made a transition.
    pub transitioned: bool,
    /// Whether a gate sent the run to review in this step.
    pub escalated: bool,
    /// Whether the guest was stopped inside a host call (its frames still live), so that
    /// no checkpoint may be taken at the end of this step.
    pub stopped_mid_step: bool,
    /// The output, once the agent finished.
    pub finished: Option<String>,
    /// The response held for the guest's read.
    pub pending: Option<Vec<u8>>,
    /// Records of the step in flight.
    pub journal: StepJournal,
    /// Why the guest was stopped, if it was.
    pub halt: Option<Halt>,
    /// The memory budget.
    pub limiter: MemoryLimiter,
    /// The guest's memory, once instantiated.
    pub memory: Option<Memory>,
}

impl HostState {
    /// The host state of a fresh execution of run `run_id`, in the policy's initial state.
    pub fn new(run_id: &str, policy: Arc<Policy>, input: &str, effects: Effects) -> HostState {
        let limit = policy.budgets.memory_bytes;
        HostState {
            run_id: run_id.to_string(),
            state: policy.initial.clone(),
            policy,
            input: Arc::from(input),
            effects,
            step: 0,
            host_calls: 0,
            fuel: 0,
            inferences: Vec::new(),
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
        }
    }

    /// Whether answers come from a recording (replay, or the catch-up of a resume).
    pub fn replaying(&self) -> bool {
        matches!(self.effects, Effects::Recorded(_))
    }

    /// Adds a record to the step in flight (checked against replay's expectation).
    pub fn push(&mut self, body: RecordBody) -> Result<(), Halt> {
        let limit = self.policy.budgets.max_journal_bytes;
        self.journal.push(body, limit, self.step)
    }

    fn fail(&self, reason: impl FnOnce(u32) -> FailureReason) -> Halt {
        Halt::Failed(reason(self.step))
    }
}

/// The only host function an agent can import.
pub fn host_call(
    mut caller: Caller<'_, HostState>,
    op: i32,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<i64> {
    // The ABI passes unsigned 32-bit addresses in i32s.
    let (ptr, len) = (ptr as u32, len as u32);
    let result = match op {
        wire::OP_CALL => call(&mut caller, ptr, len),
        wire::OP_READ_RESPONSE => read_response(&mut caller, ptr, len),
        op => Err(caller.data().fail(|step| FailureReason::Fault {
            step,
            fault: GuestFault::UnknownOp { op },
        })),
    };
    result.map_err(|halt| {
        caller.data_mut().halt = Some(halt);
        wasmtime::Error::new(Halted)
    })
}

/// The one bounds-checked accessor of guest memory: `ptr..ptr+len`, or a fault.
fn guest_range(memory_bytes: usize, ptr: u32, len: u32) -> Result<Range<usize>, GuestFault> {
    let start = ptr as usize;
    let end = start.checked_add(len as usize);
    match end {
        Some(end) if end <= memory_bytes && ptr.checked_add(len).is_some() => Ok(start..end),
        _ => Err(GuestFault::OutOfBounds {
            ptr,
            len,
            memory_bytes: memory_bytes as u64,
        }),
    }
}

fn guest_memory(caller: &Caller<'_, HostState>) -> Result<Memory, Halt> {
    // Set at instantiation; no host call can come earlier (start functions are refused).
    caller.data().memory.ok_or_else(|| {
        caller.data().fail(|step| FailureReason::Fault {
            step,
            fault: GuestFault::NoMemory,
        })
    })
}

fn call(caller: &mut Caller<'_, HostState>, ptr: u32, len: u32) -> Result<i64, Halt> {
    let fuel_left = caller.get_fuel().unwrap_or(0);
    let budgets = caller.data().policy.budgets;
    let fuel = budgets.fuel_per_step.saturating_sub(fuel_left);
    let host_calls = caller.data().host_calls;
    if host_calls >= budgets.max_host_calls {
        return Err(caller.data().fail(|step| FailureReason::LimitExceeded {
            step,
            limit: Limit::HostCalls,
            value: u64::from(host_calls) + 1,
            max: u64::from(budgets.max_host_calls),
        }));
    }
    if len > budgets.max_request_bytes {
        return Err(caller.data().fail(|step| FailureReason::LimitExceeded {
            step,
            limit: Limit::RequestBytes,
            value: u64::from(len),
            max: u64::from(budgets.max_request_bytes),
        }));
    }
    let memory = guest_memory(caller)?;
    let data = memory.data(&*caller);
    let range = guest_range(data.len(), ptr, len).map_err(|fault| {
        caller
            .data()
            .fail(|step| FailureReason::Fault { step, fault })
    })?;
    let bytes = data.get(range).map(<[u8]>::to_vec).unwrap_or_default();
    let request = decode_request(&bytes).map_err(|fault| {
        caller
            .data()
            .fail(|step| FailureReason::Fault { step, fault })
    })?;

    let state = caller.data_mut();
    let call = u64::from(state.host_calls);
    state.host_calls += 1;
    let decision = enforce(
        &state.policy,
        &RunView {
            state: &state.state,
            transitioned_this_step: state.transitioned,
            escalated: state.escalated,
            finished: state.finished.is_some(),
            inferences: &state.inferences,
        },
        &request,
    );
    state.push(RecordBody::HostCall {
        step: state.step,
        call,
        state: state.state.clone(),
        fuel,
        request: bytes,
        decision: decision.clone(),
    })?;
    let response = match decision.verdict {
        Verdict::Deny if matches!(decision.rule, Rule::AwaitingReview { .. }) => {
            return Err(Halt::AwaitingReview);
        }
        Verdict::Deny => {
            return Err(state.fail(|step| FailureReason::Denied {
                step,
                rule: decision.rule,
            }));
        }
        Verdict::Escalate => match &decision.rule {
            Rule::GateNotMet { otherwise, .. } => {
                state.move_to(otherwise.clone())?;
                state.escalated = true;
                Response::Transitioned(otherwise.clone())
            }
            // Only gates escalate; anything else would be a host bug, so it stops the run.
            other => {
                return Err(state.fail(|step| FailureReason::Denied {
                    step,
                    rule: other.clone(),
                }));
            }
        },
        Verdict::Allow => state.perform(call, request)?,
    };
    let response = postcard::to_allocvec(&response).unwrap_or_default();
    let len = response.len();
    // Journaled even when over budget: the effect has run, and replay answers from it.
    state.push(RecordBody::HostResponse {
        call,
        response: response.clone(),
    })?;
    if len as u64 > u64::from(budgets.max_response_bytes) {
        return Err(state.fail(|step| FailureReason::LimitExceeded {
            step,
            limit: Limit::ResponseBytes,
            value: len as u64,
            max: u64::from(budgets.max_response_bytes),
        }));
    }
    state.pending = Some(response);
    Ok(len as i64)
}

/// Decodes a request, refusing trailing bytes and non-canonical encodings, so that one
/// request has exactly one encoding.
fn decode_request(bytes: &[u8]) -> Result<Request, GuestFault> {
    let malformed = |error: String| GuestFault::MalformedRequest {
        len: bytes.len() as u32,
        error,
    };
    match postcard::take_from_bytes::<Request>(bytes) {
        // Over-long varints decode too; refuse them so the journal's bytes are the one
        // encoding of the request that replay compares.
        Ok((request, [])) if postcard::to_allocvec(&request).ok().as_deref() == Some(bytes) => {
            Ok(request)
        }
        Ok((_, [])) => Err(malformed(
            "non-canonical encoding (an over-long integer)".into(),
        )),
        Ok((_, rest)) => Err(malformed(format!(
            "{} trailing bytes after the request",
            rest.len()
        ))),
        Err(e) => Err(malformed(e.to_string())),
    }
}

impl HostState {
    fn move_to(&mut self, to: String) -> Result<(), Halt> {
        let from = std::mem::replace(&mut self.state, to.clone());
        self.transitioned = true;
        self.push(RecordBody::Transition {
            step: self.step,
            from,
            to,
        })
    }

    /// Performs an allowed request and returns its response.
    fn perform(&mut self, call: u64, request: Request) -> Result<Response, Halt> {
        Ok(match request {
            Request::Input => Response::Input(self.input.to_string()),
            Request::State => Response::State(self.state.clone()),
            Request::Log { .. } => Response::Ack,
            Request::Transition { to, .. } => {
                self.move_to(to.clone())?;
                Response::Transitioned(to)
            }
            Request::Finish { output } => {
                if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&output) {
                    return Err(self.fail(|step| FailureReason::Fault {
                        step,
                        fault: GuestFault::MalformedRequest {
                            len: output.len() as u32,
                            error: format!("finish output is not JSON: {e}"),
                        },
                    }));
                }
                self.finished = Some(output);
                Response::Ack
            }
            Request::Abort { reason } => {
                return Err(self.fail(|step| FailureReason::AgentAborted { step, reason }));
            }
            Request::Tool { .. } | Request::Model { .. } => {
                let response = self.effects.answer(&self.run_id, call, &request)?;
                if let Response::Model(Ok(inference)) = &response {
                    self.inferences.push(InferenceRecord {
                        id: inference.id,
                        model: inference.model.clone(),
                        confidence: inference.confidence,
                    });
                }
                response
            }
        })
    }
}

fn read_response(caller: &mut Caller<'_, HostState>, ptr: u32, len: u32) -> Result<i64, Halt> {
    let Some(response) = caller.data_mut().pending.take() else {
        return Err(caller.data().fail(|step| FailureReason::Fault {
            step,
            fault: GuestFault::NoPendingResponse,
        }));
    };
    let needed = response.len() as u32;
    if len < needed {
        return Err(caller.data().fail(|step| FailureReason::Fault {
            step,
            fault: GuestFault::ShortBuffer { needed, given: len },
        }));
    }
    let memory = guest_memory(caller)?;
    let data = memory.data_mut(&mut *caller);
    let range = guest_range(data.len(), ptr, needed);
    match range.ok().and_then(|range| data.get_mut(range)) {
        Some(dst) => {
            dst.copy_from_slice(&response);
            Ok(i64::from(needed))
        }
        None => {
            let memory_bytes = data.len() as u64;
            Err(caller.data().fail(|step| FailureReason::Fault {
                step,
                fault: GuestFault::OutOfBounds {
                    ptr,
                    len: needed,
                    memory_bytes,
                },
            }))
        }
    }
}

/// The inference id the host gives the model call with sequence number `call`.
pub fn inference_id(call: u64) -> InferenceId {
    InferenceId(call)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_ranges_are_bounds_checked_without_overflow() {
        assert_eq!(guest_range(100, 10, 20), Ok(10..30));
        assert_eq!(guest_range(100, 100, 0), Ok(100..100));
        assert!(guest_range(100, 90, 20).is_err());
        assert!(
            guest_range(100, u32::MAX, 2).is_err(),
            "ptr + len wraps past 2^32"
        );
        assert!(guest_range(usize::MAX, u32::MAX, u32::MAX).is_err());
    }

    #[test]
    fn trailing_and_garbage_bytes_are_malformed() {
        let mut bytes = postcard::to_allocvec(&Request::Input).expect("encode");
        assert_eq!(decode_request(&bytes), Ok(Request::Input));
        bytes.push(0);
        assert!(matches!(
            decode_request(&bytes),
            Err(GuestFault::MalformedRequest { .. })
        ));
        assert!(matches!(
            decode_request(&[0xff; 9]),
            Err(GuestFault::MalformedRequest { .. })
        ));
        assert!(matches!(
            decode_request(&[]),
            Err(GuestFault::MalformedRequest { .. })
        ));
    }

    mod properties {
        use proptest::prelude::*;
        use warden_guest::InferenceId;
        use warden_guest::wire::{LogLevel, Request};

        use super::super::decode_request;
        use crate::outcome::GuestFault;

        fn text() -> impl Strategy<Value = String> {
            any::<String>()
        }

        /// Every variant of [`Request`], with arbitrary Unicode in every string.
        fn request() -> impl Strategy<Value = Request> {
            let level = prop_oneof![
                Just(LogLevel::Debug),
                Just(LogLevel::Info),
                Just(LogLevel::Warn)
            ];
            prop_oneof![
                Just(Request::Input),
                Just(Request::State),
                (text(), text()).prop_map(|(name, args)| Request::Tool { name, args }),
                (text(), text()).prop_map(|(name, features)| Request::Model { name, features }),
                (text(), proptest::option::of(any::<u64>())).prop_map(|(to, evidence)| {
                    Request::Transition {
                        to,
                        evidence: evidence.map(InferenceId),
                    }
                }),
                (level, text()).prop_map(|(level, message)| Request::Log { level, message }),
                text().prop_map(|output| Request::Finish { output }),
                text().prop_map(|reason| Request::Abort { reason }),
            ]
        }

        fn encode(request: &Request) -> Vec<u8> {
            postcard::to_allocvec(request).expect("a request encodes")
        }

        /// Whatever the bytes, decoding returns a request or a malformed-request fault
        /// that names their length; it never panics.
        fn check_decodes_or_faults(bytes: &[u8]) -> Result<(), TestCaseError> {
            match decode_request(bytes) {
                Ok(request) => {
                    prop_assert!(!encode(&request).is_empty());
                }
                Err(GuestFault::MalformedRequest { len, error }) => {
                    prop_assert_eq!(len as usize, bytes.len());
                    prop_assert!(!error.is_empty());
                }
                Err(other) => prop_assert!(false, "unexpected fault {other:?}"),
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(crate::test_support::cases(1_000)))]

            #[test]
            fn arbitrary_bytes_never_panic_the_decoder(
                bytes in proptest::collection::vec(any::<u8>(), 0..2048),
            ) {
                check_decodes_or_faults(&bytes)?;
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(crate::test_support::cases(500)))]

            #[test]
            fn every_request_round_trips(request in request()) {
                let bytes = encode(&request);
                prop_assert_eq!(decode_request(&bytes), Ok(request));
            }

            /// Random bytes rarely get past the variant tag; damaged real requests reach
            /// the length prefixes, UTF-8 checks and option tags.
            #[test]
            fn damaged_requests_never_panic_the_decoder(
                request in request(),
                cut in any::<prop::sample::Index>(),
                flip in any::<prop::sample::Index>(),
                byte in any::<u8>(),
                tail in proptest::collection::vec(any::<u8>(), 0..8),
            ) {
                let bytes = encode(&request);
                let truncated = &bytes[..cut.index(bytes.len() + 1)];
                check_decodes_or_faults(truncated)?;
                if truncated.len() < bytes.len() {
                    prop_assert!(decode_request(truncated).is_err(), "a strict prefix decoded");
                }
                let mut flipped = bytes.clone();
                let at = flip.index(flipped.len());
                flipped[at] = byte;
                check_decodes_or_faults(&flipped)?;
                let mut extended = bytes.clone();
                extended.extend_from_slice(&tail);
                check_decodes_or_faults(&extended)?;
                if !tail.is_empty() {
                    prop_assert!(decode_request(&extended).is_err(), "trailing bytes accepted");
                }
            }
        }
    }
}
