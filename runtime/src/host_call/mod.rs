//! The host side of the single host-call import: read the request through one
//! bounds-checked accessor, decode it, [`enforce`] it, journal it, then (only if allowed)
//! perform it and journal the response.
//!
//! Upholds invariants 1 (every request passes `enforce`), 4 (the decision is journaled
//! before the effect) and 6 (every misuse becomes a typed failure, never a host panic).

use std::ops::Range;
use std::sync::Arc;

use warden_guest::wire::{self, Request, Response};
use wasmtime::{Caller, Memory};

use crate::decision::{
    CapabilityKind, Decision, FeatureRecord, InferenceRecord, ModelInference, Rule, RunView,
    Verdict, enforce,
};
use crate::journal::{HostCallRef, RecordBody};
use crate::outcome::{FailureReason, GuestFault, HostFault, Limit};
use crate::recording::Divergence;

mod json;
mod state;

pub use json::duplicate_key;
pub(crate) use state::{HostState, PendingResponse, Performed};

/// Why the guest was stopped inside a host call.
#[derive(Debug, Clone)]
pub(crate) enum Halt {
    /// The run fails with this reason.
    Failed(Box<FailureReason>),
    /// Replay found the run departing from its recording.
    Diverged(Box<Divergence>),
    /// The agent tried to act after a gate sent the run to review: the step ends there and
    /// the run waits for review.
    AwaitingReview,
}

/// The error a host call returns to stop the guest; the reason is in [`HostState::halt`].
#[derive(Debug)]
pub(crate) struct Halted;

impl std::fmt::Display for Halted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped by warden")
    }
}

impl std::error::Error for Halted {}

/// The only host function an agent can import.
pub(crate) fn host_call(
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

/// The kind of a request other than a tool or model call, as the `host_call` span says it.
fn request_kind(request: &Request) -> &'static str {
    match request {
        Request::Input => "input",
        Request::State => "state",
        Request::Tool { .. } => "tool",
        Request::Model { .. } => "model",
        Request::Transition { .. } => "transition",
        Request::Log { .. } => "log",
        Request::Finish { .. } => "finish",
        Request::Abort { .. } => "abort",
        Request::Review => "review",
    }
}

/// The one bounds-checked accessor of guest memory: `ptr..ptr+len`, or a fault. The WASI
/// functions (`crate::wasi`) read and write guest memory through it too.
pub(crate) fn guest_range(
    memory_bytes: usize,
    ptr: u32,
    len: u32,
) -> Result<Range<usize>, GuestFault> {
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
    let (data, state) = memory.data_and_store_mut(&mut *caller);
    let range = guest_range(data.len(), ptr, len)
        .map_err(|fault| state.fail(|step| FailureReason::Fault { step, fault }))?;
    // The request is read where the guest wrote it, and its bytes are copied once: into
    // its record.
    let bytes: &[u8] = data.get(range).unwrap_or_default();
    let request = decode_request(bytes)
        .map_err(|fault| state.fail(|step| FailureReason::Fault { step, fault }))?;

    if state.edition >= crate::edition::Edition::V2
        && let Some(error) = ambiguous_json(&request)
    {
        return Err(state.fail(|step| FailureReason::Fault {
            step,
            fault: GuestFault::MalformedRequest {
                len: bytes.len() as u32,
                error,
            },
        }));
    }
    let call = u64::from(state.host_calls);
    state.host_calls += 1;
    let (kind, tool, model) = match &request {
        Request::Tool { name, .. } => ("tool", Some(name.as_str()), None),
        Request::Model { name, .. } => ("model", None, Some(name.as_str())),
        other => (request_kind(other), None, None),
    };
    let span = tracing::debug_span!(
        "host_call",
        run_id = %state.run_id,
        call,
        step = state.step,
        state = %state.state,
        kind,
        tool,
        model,
        verdict = tracing::field::Empty,
        rule = tracing::field::Empty,
    )
    .entered();
    let decision = enforce(
        &state.policy,
        &RunView {
            state: &state.state,
            transitioned_this_step: state.transitioned,
            escalated: state.escalated,
            finished: state.finished.is_some(),
            inferences: &state.inferences,
            evidence: state.evidence.as_ref(),
        },
        &request,
    );
    // A disabled span still looks each field up by name: skip that when none listens.
    if !span.is_disabled() {
        span.record("verdict", decision.verdict.name());
        span.record("rule", decision.rule.name());
    }
    let next = Next::after(&decision);
    let limit = budgets.max_journal_bytes;
    state.journal.push_host_call(
        HostCallRef {
            step: state.step,
            call,
            state: &state.state,
            fuel,
            request: bytes,
            decision: &decision,
        },
        limit,
        state.step,
    )?;
    drop(decision);
    let answer = match next {
        Next::AwaitingReview => return Err(Halt::AwaitingReview),
        Next::Deny(rule) => return Err(state.fail(|step| FailureReason::Denied { step, rule })),
        Next::Escalate(otherwise) => {
            state.move_to(otherwise.clone())?;
            state.escalated = true;
            Answer::Response(Response::Transitioned(otherwise))
        }
        Next::EscalationWithoutGate => {
            return Err(state.fail(|step| FailureReason::HostFault {
                step,
                fault: HostFault::EscalationWithoutGate,
            }));
        }
        Next::Perform(features) => state.perform(call, request, bytes, features)?,
    };
    // Journaled even when over budget: the effect has run, and replay answers from it.
    let pending = state.push_answer(call, &answer)?;
    let len = pending.bytes.len();
    if let Some(inference) = state.recorded_inference.take() {
        state.push(RecordBody::Inference(Box::new(inference)))?;
    }
    if len as u64 > u64::from(budgets.max_response_bytes) {
        return Err(state.fail(|step| FailureReason::LimitExceeded {
            step,
            limit: Limit::ResponseBytes,
            value: len as u64,
            max: u64::from(budgets.max_response_bytes),
        }));
    }
    // The guest reads the bytes from their record: one copy of them, not two.
    state.pending = Some(pending);
    Ok(len as i64)
}

/// What a host call does after its decision is journaled, taken from the decision before
/// it moves into its record (so that only the rare paths copy any of it).
enum Next {
    /// Allowed: perform it (with the features a model request reconciled, if any).
    Perform(Option<FeatureRecord>),
    /// A gate sent the run to this review state instead.
    Escalate(String),
    /// The agent acted after an escalation: the step ends, the run waits for review.
    AwaitingReview,
    /// Denied by this rule: the run fails.
    Deny(Rule),
    /// Escalated by a rule that is no gate: a host bug, which stops the run.
    EscalationWithoutGate,
}

impl Next {
    fn after(decision: &Decision) -> Next {
        match (decision.verdict, &decision.rule) {
            (Verdict::Deny, Rule::AwaitingReview { .. }) => Next::AwaitingReview,
            (Verdict::Deny, rule) => Next::Deny(rule.clone()),
            (
                Verdict::Escalate,
                Rule::GateNotMet { otherwise, .. } | Rule::GateLabelNotMet { otherwise, .. },
            ) => Next::Escalate(otherwise.clone()),
            // Only gates escalate.
            (Verdict::Escalate, _) => Next::EscalationWithoutGate,
            (
                Verdict::Allow,
                Rule::FeaturesReconciled {
                    features, sources, ..
                },
            ) => Next::Perform(Some(FeatureRecord {
                reconciled: *features,
                sources: sources.clone(),
            })),
            (Verdict::Allow, _) => Next::Perform(None),
        }
    }
}

/// The response to an allowed request, before it is encoded: the run's input and state
/// are encoded from where they are, never copied first.
enum Answer {
    /// `Response::Input` of the run's input.
    Input,
    /// `Response::State` of the run's current state.
    State,
    /// Any other response.
    Response(Response),
}

/// The indexes of the first two variants of [`Response`], which carry only a text: the
/// run's input and state are encoded from where they are, as postcard writes
/// `Response::Input` and `Response::State` (the variant's index, never its name; wire
/// variants are only ever appended; `tests` pins it).
const RESPONSE_INPUT: u8 = 0;
const RESPONSE_STATE: u8 = 1;

/// The indexes of the variants of [`Request`] without data, as postcard writes them.
const REQUEST_INPUT: u8 = 0;
const REQUEST_STATE: u8 = 1;
const REQUEST_REVIEW: u8 = 8;

/// Why the JSON payload of a request is ambiguous (a key twice in one object), if it is.
fn ambiguous_json(request: &Request) -> Option<String> {
    let (what, text) = match request {
        Request::Tool { args, .. } => ("tool arguments", args),
        Request::Model { features, .. } => ("model features", features),
        Request::Finish { output } => ("finish output", output),
        _ => return None,
    };
    json::duplicate_key(text).map(|key| format!("{what}: key `{key}` appears twice in one object"))
}

/// Decodes a request, refusing trailing bytes and non-canonical encodings, so that one
/// request has exactly one encoding.
fn decode_request(bytes: &[u8]) -> Result<Request, GuestFault> {
    // The requests without data are one byte, their variant's index: the commonest
    // requests skip serde's decode and the canonical check (`tests` pins the equivalence
    // for every byte).
    match bytes {
        [REQUEST_INPUT] => return Ok(Request::Input),
        [REQUEST_STATE] => return Ok(Request::State),
        [REQUEST_REVIEW] => return Ok(Request::Review),
        _ => {}
    }
    let malformed = |error: String| GuestFault::MalformedRequest {
        len: bytes.len() as u32,
        error,
    };
    match postcard::take_from_bytes::<Request>(bytes) {
        // Over-long varints decode too; refuse them so the journal's bytes are the one
        // encoding of the request that replay compares.
        Ok((request, [])) if encodes_to(&request, bytes) => Ok(request),
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

/// Whether `request` encodes to exactly `bytes`: the canonical check, comparing the
/// encoding with the bytes as it is written instead of writing it anywhere.
fn encodes_to(request: &Request, bytes: &[u8]) -> bool {
    postcard::serialize_with_flavor(request, SameBytes { rest: bytes }).is_ok()
}

/// A postcard output that stores nothing: it accepts only the bytes `rest` holds next, and
/// finishes only when all of them were written.
struct SameBytes<'a> {
    rest: &'a [u8],
}

impl postcard::ser_flavors::Flavor for SameBytes<'_> {
    type Output = ();

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.try_extend(&[byte])
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        match self.rest.split_at_checked(data.len()) {
            Some((head, rest)) if head == data => {
                self.rest = rest;
                Ok(())
            }
            _ => Err(postcard::Error::SerializeBufferFull),
        }
    }

    fn finalize(self) -> postcard::Result<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(postcard::Error::SerializeBufferFull)
        }
    }
}

impl HostState {
    /// Records `answer` as the response to `call`, encoded as the guest reads it.
    fn push_answer(&mut self, call: u64, answer: &Answer) -> Result<PendingResponse, Halt> {
        let (limit, step) = (self.policy.budgets.max_journal_bytes, self.step);
        let (input, state) = (&self.input, &self.state);
        let write = |bodies: &mut crate::journal::Bodies| match answer {
            Answer::Input => bodies.push_text_response(call, RESPONSE_INPUT, input),
            Answer::State => bodies.push_text_response(call, RESPONSE_STATE, state),
            Answer::Response(response) => bodies.push_response(call, response),
        };
        self.journal.push_response(write, limit, step)
    }

    fn move_to(&mut self, to: String) -> Result<(), Halt> {
        let from = std::mem::replace(&mut self.state, Arc::from(to.as_str()));
        self.transitioned = true;
        self.escalated |= self.held_for_review();
        if let Some(evidence) = &mut self.evidence {
            evidence.on_transition();
        }
        self.push(RecordBody::Transition {
            step: self.step,
            from: from.to_string(),
            to,
        })
    }

    /// Performs an allowed request and returns its response.
    fn perform(
        &mut self,
        call: u64,
        request: Request,
        request_bytes: &[u8],
        features: Option<FeatureRecord>,
    ) -> Result<Answer, Halt> {
        Ok(Answer::Response(match request {
            Request::Input => return Ok(Answer::Input),
            Request::State => return Ok(Answer::State),
            Request::Log { .. } => Response::Ack,
            Request::Review => {
                Response::Review(self.evidence.as_ref().and_then(|e| e.review.clone()))
            }
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
                let answer = match self.already_performed(call, &request, request_bytes) {
                    Some(answer) => answer,
                    None => self
                        .effects
                        .answer(&self.run_id, call, &request, request_bytes, self.deadline)
                        .map_err(|d| Halt::Diverged(Box::new(d)))?,
                };
                self.note(call, &request, &answer.response, answer.model, features);
                answer.response
            }
        }))
    }
}

impl HostState {
    /// The recorded answer to an effect this run already performed in the step its review
    /// continues from, if `request` is one again, identically, in the step right after the
    /// review ([`Performed`]): an effect is never performed twice.
    fn already_performed(
        &mut self,
        call: u64,
        request: &Request,
        request_bytes: &[u8],
    ) -> Option<crate::effects::Answer> {
        let Request::Tool { name, .. } = request else {
            return None;
        };
        let performed = self.performed.as_mut().filter(|p| p.step == self.step)?;
        if !self.effects.is_effect(name) {
            return None;
        }
        let (bytes, _) = performed.answers.answer(call, request_bytes)?;
        let response = postcard::from_bytes(&bytes).ok()?;
        Some(crate::effects::Answer {
            response,
            model: None,
        })
    }

    /// Notes an allowed tool or model call and its answer in the run's evidence.
    fn note(
        &mut self,
        call: u64,
        request: &Request,
        response: &Response,
        model: Option<crate::bindings::ModelOutput>,
        features: Option<FeatureRecord>,
    ) {
        if let Response::Model(Ok(inference)) = response {
            self.inferences.push(InferenceRecord {
                id: inference.id,
                model: inference.model.clone(),
                confidence: inference.confidence,
            });
        }
        let Some(evidence) = &mut self.evidence else {
            return;
        };
        match (request, response) {
            (Request::Tool { name, args }, Response::Tool(result)) => {
                evidence.on_call(CapabilityKind::Tool, name);
                evidence.on_tool_response(call, name, args, result);
            }
            (Request::Model { name, .. }, Response::Model(result)) => {
                evidence.on_call(CapabilityKind::Model, name);
                if let (Ok(inference), Some(model)) = (result, model) {
                    let recorded = ModelInference {
                        id: inference.id,
                        model: name.clone(),
                        state: self.state.to_string(),
                        visit: evidence.visit,
                        label: model.label,
                        probabilities: model.probabilities,
                        features,
                        card: model.card,
                    };
                    evidence.on_inference(recorded.clone());
                    self.recorded_inference = Some(recorded);
                }
            }
            _ => {}
        }
    }
}

fn read_response(caller: &mut Caller<'_, HostState>, ptr: u32, len: u32) -> Result<i64, Halt> {
    let no_response = |host: &HostState| {
        host.fail(|step| FailureReason::Fault {
            step,
            fault: GuestFault::NoPendingResponse,
        })
    };
    let Some(pending) = caller.data_mut().pending.take() else {
        return Err(no_response(caller.data()));
    };
    let memory = guest_memory(caller)?;
    let (data, host) = memory.data_and_store_mut(&mut *caller);
    let Some(response) = host.journal.response(&pending) else {
        return Err(no_response(host));
    };
    let needed = response.len() as u32;
    if len < needed {
        return Err(host.fail(|step| FailureReason::Fault {
            step,
            fault: GuestFault::ShortBuffer { needed, given: len },
        }));
    }
    let memory_bytes = data.len() as u64;
    match guest_range(data.len(), ptr, needed)
        .ok()
        .and_then(|range| data.get_mut(range))
    {
        Some(dst) => {
            dst.copy_from_slice(response);
            Ok(i64::from(needed))
        }
        None => Err(host.fail(|step| FailureReason::Fault {
            step,
            fault: GuestFault::OutOfBounds {
                ptr,
                len: needed,
                memory_bytes,
            },
        })),
    }
}

#[cfg(test)]
mod attack_tests;
#[cfg(test)]
mod tests;
