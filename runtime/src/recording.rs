//! A run's recording as a re-execution uses it: the answers to its tool and model calls,
//! the records a re-execution must reproduce, and where a re-execution departed.
//!
//! Upholds invariant 3 (determinism): every record a re-execution produces is compared,
//! in order, with the recorded one ([`Expected::check`]), and the first difference is kept
//! with both sides decoded ([`Divergence`]). Shared by replay, resume (catching up on
//! committed steps) and the host call, which sits below all of them.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use serde::Serialize;
use warden_guest::wire::Request;

use crate::bindings::ModelOutput;
use crate::decision::Evidence;
use crate::journal::{Record, RecordBody, WasiAnswer, WasiRequest};

/// Where and how a re-execution departed from its recording.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Divergence {
    /// Index of the first recorded record that was not reproduced (if any).
    pub record: Option<u64>,
    /// The step it belongs to.
    pub step: Option<u32>,
    /// The host call it belongs to.
    pub call: Option<u64>,
    /// What the recording says, decoded.
    pub expected: String,
    /// What the re-execution did, decoded.
    pub actual: String,
    /// `true` when the re-execution asked a tool or model something the recording cannot
    /// answer (a counterfactual never invents an answer).
    pub unanswerable: bool,
}

impl Divergence {
    /// A difference between a recorded body (at record `index`) and a produced one.
    pub(crate) fn between(index: Option<u64>, expected: &RecordBody, actual: &RecordBody) -> Self {
        Divergence {
            record: index,
            step: expected.step(),
            call: expected.call(),
            expected: expected.describe(),
            actual: actual.describe(),
            unanswerable: false,
        }
    }

    /// The re-execution ended while the recording goes on, or the other way round.
    pub(crate) fn at_end(expected: impl Into<String>, actual: impl Into<String>) -> Self {
        Divergence {
            record: None,
            step: None,
            call: None,
            expected: expected.into(),
            actual: actual.into(),
            unanswerable: false,
        }
    }

    /// A WASI call the recording has no answer for: at its number, the recording holds
    /// `recorded` (another call, or none).
    pub(crate) fn unanswerable_wasi(
        call: u64,
        request: &WasiRequest,
        recorded: Option<&WasiRequest>,
    ) -> Divergence {
        Divergence {
            record: None,
            step: None,
            call: Some(call),
            expected: match recorded {
                Some(recorded) => format!("call {call}: wasi {recorded}"),
                None => "a WASI call the recording can answer".into(),
            },
            actual: format!("call {call}: wasi {request}"),
            unanswerable: true,
        }
    }

    /// A request the recording has no answer for.
    pub(crate) fn unanswerable(call: u64, request: &Request) -> Divergence {
        Divergence {
            record: None,
            step: None,
            call: Some(call),
            expected: "a request the recording can answer".into(),
            actual: format!("call {call}: {}", crate::journal::describe_request(request)),
            unanswerable: true,
        }
    }
}

/// The recorded bodies a re-execution must reproduce, consumed in order.
#[derive(Debug, Default)]
pub(crate) struct Expected {
    bodies: VecDeque<(u64, RecordBody)>,
    /// Records compared so far.
    pub compared: u64,
    /// The first divergence, kept even where the caller could not stop at once.
    pub diverged: Option<Divergence>,
    /// Where the next recorded body is encoded, to compare with a produced one.
    scratch: Vec<u8>,
}

impl Expected {
    /// Expects the bodies of `records` in order.
    pub fn new(records: &[Record]) -> Expected {
        Expected {
            bodies: records.iter().map(|r| (r.index, r.body.clone())).collect(),
            ..Expected::default()
        }
    }

    /// Records not yet reproduced.
    pub fn remaining(&self) -> usize {
        self.bodies.len()
    }

    /// The next recorded body and its record index, without consuming it.
    pub fn peek(&self) -> Option<(u64, &RecordBody)> {
        self.bodies.front().map(|(index, body)| (*index, body))
    }

    /// Consumes the next recorded body without comparing it: a record that is an input to
    /// the re-execution (a review), not something it produces.
    pub fn take(&mut self) -> Option<(u64, RecordBody)> {
        let next = self.bodies.pop_front();
        if next.is_some() {
            self.compared += 1;
        }
        next
    }

    /// Compares the next produced record, encoded, with the next recorded one: their
    /// encodings, or where those differ, the bodies (a float's two zeros are one value).
    pub fn check_encoded(&mut self, actual: &[u8]) -> Result<(), Divergence> {
        if let Some((_, expected)) = self.bodies.front() {
            self.scratch.clear();
            crate::journal::encode_into(expected, &mut self.scratch);
            if self.diverged.is_none() && self.scratch == actual {
                self.bodies.pop_front();
                self.compared += 1;
                return Ok(());
            }
        }
        match crate::journal::decode_body(actual) {
            Some(body) => self.check(&body),
            // Never: the step journal writes only bodies' encodings.
            None => {
                let divergence = Divergence::at_end(
                    self.peek()
                        .map_or("the end of the recording".into(), |(_, b)| b.describe()),
                    "a record that does not decode",
                );
                Err(self.diverged.get_or_insert(divergence).clone())
            }
        }
    }

    /// Compares the next produced record with the next recorded one.
    pub fn check(&mut self, actual: &RecordBody) -> Result<(), Divergence> {
        if let Some(divergence) = &self.diverged {
            return Err(divergence.clone());
        }
        let divergence = match self.bodies.pop_front() {
            Some((_, expected)) if expected == *actual => {
                self.compared += 1;
                return Ok(());
            }
            Some((index, expected)) => Divergence::between(Some(index), &expected, actual),
            None => Divergence {
                record: None,
                step: actual.step(),
                call: actual.call(),
                expected: "the end of the recording".into(),
                actual: actual.describe(),
                unanswerable: false,
            },
        };
        self.diverged = Some(divergence.clone());
        Err(divergence)
    }
}

/// How a recording answers a tool or model request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answering {
    /// By call sequence number: an exact re-execution asks the same calls in order.
    ByCall,
    /// By the exact request bytes: a counterfactual agent may ask in another order, but
    /// only what was really asked before can be answered.
    ByRequest,
}

/// A recorded answer: the response bytes, and for a model, what the host recorded of it.
pub(crate) type Recorded = (Bytes, Option<ModelOutput>);

/// The tool and model responses of a recorded run, and the answers to its WASI calls.
#[derive(Debug)]
pub(crate) struct Recording {
    answering: Answering,
    by_call: HashMap<u64, Recorded>,
    /// Every recorded answer to each request, in call order: handed out in that order, so
    /// identical requests get the answers they got, one each.
    by_request: HashMap<Bytes, VecDeque<Recorded>>,
    /// The WASI calls that were answered, by call number.
    wasi_by_call: HashMap<u64, (WasiRequest, WasiAnswer)>,
    /// The answers to each WASI request, in call order (as `by_request`).
    wasi_by_request: HashMap<WasiRequest, VecDeque<WasiAnswer>>,
}

impl Recording {
    /// The responses of `records`, answered as `answering` says.
    pub fn of(records: &[Record], answering: Answering) -> Recording {
        let mut recording = Recording {
            answering,
            by_call: HashMap::new(),
            by_request: HashMap::new(),
            wasi_by_call: HashMap::new(),
            wasi_by_request: HashMap::new(),
        };
        let mut requests = HashMap::new();
        for record in records {
            match &record.body {
                RecordBody::HostCall { call, request, .. } => {
                    requests.insert(*call, request.clone());
                }
                RecordBody::HostResponse { call, response } => {
                    recording.by_call.insert(*call, (response.clone(), None));
                }
                RecordBody::Inference(inference) => {
                    let output = ModelOutput {
                        label: inference.label.clone(),
                        probabilities: inference.probabilities.clone(),
                        card: inference.card.clone(),
                    };
                    if let Some((_, model)) = recording.by_call.get_mut(&inference.id.0) {
                        *model = Some(output);
                    }
                }
                RecordBody::Wasi(wasi) if wasi.answer != WasiAnswer::Denied => {
                    recording
                        .wasi_by_call
                        .insert(wasi.call, (wasi.request.clone(), wasi.answer.clone()));
                    recording
                        .wasi_by_request
                        .entry(wasi.request.clone())
                        .or_default()
                        .push_back(wasi.answer.clone());
                }
                _ => {}
            }
        }
        let mut calls: Vec<&u64> = recording.by_call.keys().collect();
        calls.sort();
        for call in calls {
            if let (Some(request), Some(answer)) =
                (requests.remove(call), recording.by_call.get(call))
            {
                recording
                    .by_request
                    .entry(request)
                    .or_default()
                    .push_back(answer.clone());
            }
        }
        recording
    }

    /// The recorded response bytes (and model output) for call number `call`, which sent
    /// `request`. Answering by request, each recorded answer is given once, in the order
    /// it was recorded; a request asked more often than recorded has no answer.
    pub fn answer(&mut self, call: u64, request: &[u8]) -> Option<Recorded> {
        match self.answering {
            Answering::ByCall => self.by_call.get(&call).cloned(),
            Answering::ByRequest => self.by_request.get_mut(request)?.pop_front(),
        }
    }

    /// The recorded answer to WASI call number `call`, which asks `request`: by call, the
    /// answer recorded at that number if the same request was recorded there; by request,
    /// the next answer recorded for an identical request. Records are in call order, so a
    /// request asked more often than recorded has no answer.
    ///
    /// # Errors
    /// The [`Divergence`] of a call the recording cannot answer.
    pub fn wasi_answer(
        &mut self,
        call: u64,
        request: &WasiRequest,
    ) -> Result<WasiAnswer, Divergence> {
        match self.answering {
            Answering::ByCall => match self.wasi_by_call.get(&call) {
                Some((recorded, answer)) if recorded == request => Ok(answer.clone()),
                // An exact re-execution that asks something else departs from the
                // recording here: a divergence, not a question the recording lacks.
                other => Err(Divergence {
                    unanswerable: false,
                    ..Divergence::unanswerable_wasi(
                        call,
                        request,
                        other.map(|(recorded, _)| recorded),
                    )
                }),
            },
            Answering::ByRequest => self
                .wasi_by_request
                .get_mut(request)
                .and_then(VecDeque::pop_front)
                .ok_or_else(|| Divergence::unanswerable_wasi(call, request, None)),
        }
    }

    /// Whether answers are found by request (a counterfactual) rather than by call.
    pub fn by_request(&self) -> bool {
        self.answering == Answering::ByRequest
    }
}

/// The records after the `Checkpoint` record of `step`: what a re-execution restored from
/// that checkpoint must reproduce. Empty if the run has no such checkpoint record.
pub(crate) fn after_checkpoint(records: &[Record], step: u32) -> &[Record] {
    let start = records
        .iter()
        .position(|r| matches!(r.body, RecordBody::Checkpoint { step: s, .. } if s == step))
        .map_or(records.len(), |i| i + 1);
    &records[start..]
}

/// The records from the `Checkpoint` record of `step` on (that record included).
pub(crate) fn from_checkpoint(records: &[Record], step: u32) -> &[Record] {
    let start = records
        .iter()
        .position(|r| matches!(r.body, RecordBody::Checkpoint { step: s, .. } if s == step))
        .unwrap_or(0);
    &records[start..]
}

/// The evidence a run's `records` give enforcement (edition 2), for an execution that
/// continues after them: every allowed call, successful tool response, inference and
/// transition, replayed into an [`Evidence`] over `input`. A fork passes its parent's
/// records up to its checkpoint with `inherit_inferences` false: the fork's input may
/// differ, so it may rest on recorded facts but never on an inference made for another
/// input.
pub(crate) fn evidence_of(records: &[Record], input: &str, inherit_inferences: bool) -> Evidence {
    use warden_guest::wire::{Request, Response};

    use crate::decision::{CapabilityKind, Verdict};

    let mut evidence = Evidence::new(input);
    let mut tools: HashMap<u64, (String, String)> = HashMap::new();
    for record in records {
        match &record.body {
            RecordBody::HostCall {
                call,
                request,
                decision,
                ..
            } if decision.verdict == Verdict::Allow => {
                match postcard::from_bytes::<Request>(request) {
                    Ok(Request::Tool { name, args }) => {
                        evidence.on_call(CapabilityKind::Tool, &name);
                        tools.insert(*call, (name, args));
                    }
                    Ok(Request::Model { name, .. }) => {
                        evidence.on_call(CapabilityKind::Model, &name);
                    }
                    _ => {}
                }
            }
            RecordBody::HostResponse { call, response } => {
                if let (Some((name, args)), Ok(Response::Tool(result))) = (
                    tools.remove(call),
                    postcard::from_bytes::<Response>(response),
                ) {
                    evidence.on_tool_response(*call, &name, &args, &result);
                }
            }
            RecordBody::Transition { .. } => evidence.on_transition(),
            RecordBody::Review(review) | RecordBody::InheritedReview(review) => {
                evidence.review = Some(review.info());
            }
            RecordBody::Inherited(inherited) => {
                evidence.inherit(&inherited.facts, inherited.visit, &inherited.calls);
            }
            RecordBody::Inference(inference) if inherit_inferences => {
                evidence.on_inference((**inference).clone());
            }
            _ => {}
        }
    }
    evidence
}

/// The records up to and including the `Checkpoint` record of `step`.
pub(crate) fn until_checkpoint(records: &[Record], step: u32) -> &[Record] {
    let end = records
        .iter()
        .position(|r| matches!(r.body, RecordBody::Checkpoint { step: s, .. } if s == step))
        .map_or(records.len(), |i| i + 1);
    &records[..end]
}
