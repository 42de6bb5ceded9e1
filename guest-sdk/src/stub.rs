//! A stub host, to unit-test an agent's steps natively (`cargo test`), with scripted
//! input, tool answers, model answers and reviews: cargo feature `stub`.
//!
//! Invariant: the stub answers at the SDK's one host-call boundary, exactly where Warden
//! would. Every [`Warden`] method an agent calls is encoded as the same postcard
//! [`Request`] bytes Warden decodes, and answered with [`Response`] bytes the SDK decodes,
//! so the agent's code under test is the code that runs in Warden, and every request is
//! recorded for the test to assert on.
//!
//! ```ignore
//! use warden_guest::stub::{StubHost, StubStatus};
//!
//! let mut host = StubHost::new("intake")
//!     .input(&serde_json::json!({ "claim_id": "C-1", "policy_number": "P-1", "amount": 900 }))
//!     .tool_answer("policy_register", &serde_json::json!({ "status": "active" }))
//!     .model_answer("claim_risk", &serde_json::json!({ "probability": 0.02 }), 0.98)
//!     .review_state("manual_review");
//! let outcome = host.run(&mut MyAgent::default());
//! assert_eq!(outcome.status, StubStatus::Completed);
//! assert_eq!(host.tool_calls("policy_register"), [serde_json::json!({ "policy_number": "P-1" })]);
//! ```
//!
//! What the stub does **not** do: read the policy. It allows every tool, model and
//! transition, judges no confidence gate on its own (script one with
//! [`StubHost::escalate`]), reconciles no features and checks no output rules. Those are
//! Warden's, and `warden test` runs the built agent under the real policy. The stub keeps
//! the run-protocol rules that need no policy, the way Warden does: one transition per
//! step, nothing after `finish`, and after a gate's escalation only reads and logs in
//! the rest of the step. Breaking one panics, naming what Warden would deny.
//!
//! Compiled only off wasm32: inside Warden the real host answers.

extern crate std;

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::RefCell;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::wire::{self, CallError, CallErrorKind, InferenceId, LogLevel, Request, Response};
use crate::{Agent, Error, ReviewInfo, Warden};

/// Steps [`StubHost::run`] takes before it gives up, unless [`StubHost::max_steps`] says
/// otherwise.
pub const DEFAULT_MAX_STEPS: u32 = 64;

/// A scripted host for one run of an agent, stepped natively. Build it with the state the
/// run is in and the answers the test scripts, then [`StubHost::step`] or
/// [`StubHost::run`] the agent, and assert on the state, the output and the requests.
#[derive(Debug)]
pub struct StubHost {
    session: Session,
    max_steps: u32,
}

/// How a [`StubHost::run`] ended, with Warden's names for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StubStatus {
    /// The agent called `finish`.
    Completed,
    /// The run is in a review state: a scripted gate escalated, or the agent moved there.
    AwaitingReview,
    /// The agent's step returned an error, or the run took more steps than allowed.
    Failed,
}

/// What a [`StubHost::run`] came to.
#[derive(Clone, Debug, PartialEq)]
pub struct StubOutcome {
    /// How it ended.
    pub status: StubStatus,
    /// The state it ended in.
    pub state: String,
    /// The output passed to `finish` (JSON text), if the agent finished.
    pub output: Option<String>,
    /// Why it failed (the agent's error, as Warden would record it), if it did.
    pub reason: Option<String>,
    /// Steps taken.
    pub steps: u32,
}

/// A scripted tool answer: result JSON, or the tool's error.
type ToolAnswer = Result<String, CallError>;
/// A scripted model answer: value JSON and confidence, or the model's error.
type ModelAnswer = Result<(String, f64), CallError>;

/// The scripted world and what the agent did in it; moved into [`ACTIVE`] for a step.
#[derive(Debug, Default)]
struct Session {
    state: String,
    input: Option<String>,
    tools: BTreeMap<String, VecDeque<ToolAnswer>>,
    models: BTreeMap<String, VecDeque<ModelAnswer>>,
    /// Gated target state -> the review state the gate sends the run to.
    gates: BTreeMap<String, String>,
    review_states: BTreeSet<String>,
    review: Option<ReviewInfo>,
    requests: Vec<Request>,
    logs: Vec<(LogLevel, String)>,
    output: Option<String>,
    aborted: Option<String>,
    /// The current step: a transition made, a gate's escalation.
    transitioned: Option<String>,
    escalated: bool,
    /// The encoded response waiting to be read, as Warden holds it.
    held: Option<Vec<u8>>,
}

std::thread_local! {
    /// The session of the step running on this thread (tests run on threads of their own).
    static ACTIVE: RefCell<Option<Session>> = const { RefCell::new(None) };
}

impl StubHost {
    /// A run standing in `state` (usually the policy's `initial` state), with nothing
    /// scripted yet. Like every state this stub takes, a `&str` or a variant of the
    /// `State` enum generated from the policy (`StubHost::new(State::INITIAL)`).
    pub fn new(state: impl AsRef<str>) -> StubHost {
        StubHost {
            session: Session {
                state: state.as_ref().to_string(),
                ..Session::default()
            },
            max_steps: DEFAULT_MAX_STEPS,
        }
    }

    /// The run's input, serialized to JSON as Warden would hand it over.
    pub fn input<T: Serialize>(mut self, input: &T) -> StubHost {
        self.session.input = Some(json("input", input));
        self
    }

    /// The next answer of tool `name`. Answers of one tool are given in the order they
    /// were scripted; a call with none left panics, naming the tool and its arguments.
    pub fn tool_answer<T: Serialize>(mut self, name: &str, answer: &T) -> StubHost {
        let answer = json("tool answer", answer);
        self.queue_tool(name, Ok(answer));
        self
    }

    /// The next answer of tool `name` is an error (`NotFound` for an unknown key, ...).
    pub fn tool_error(mut self, name: &str, kind: CallErrorKind, message: &str) -> StubHost {
        self.queue_tool(name, Err(call_error(kind, message)));
        self
    }

    /// The next answer of model `name`: its value, and the confidence Warden would
    /// report to the agent. (A scorecard's value is `{"probability", "label", "score"}`,
    /// the probability being that of its positive label.)
    pub fn model_answer<V: Serialize>(
        mut self,
        name: &str,
        value: &V,
        confidence: f64,
    ) -> StubHost {
        let value = json("model answer", value);
        self.session
            .models
            .entry(name.to_string())
            .or_default()
            .push_back(Ok((value, confidence)));
        self
    }

    /// The next answer of model `name` is an error.
    pub fn model_error(mut self, name: &str, kind: CallErrorKind, message: &str) -> StubHost {
        self.session
            .models
            .entry(name.to_string())
            .or_default()
            .push_back(Err(call_error(kind, message)));
        self
    }

    /// A confidence gate on `to` that is not met: a transition to `to` moves the run to
    /// `review_state` instead, and the agent sees [`Error::Escalated`], as in Warden.
    pub fn escalate(mut self, to: impl AsRef<str>, review_state: impl AsRef<str>) -> StubHost {
        let review_state = review_state.as_ref();
        self.session
            .gates
            .insert(to.as_ref().to_string(), review_state.to_string());
        self.session.review_states.insert(review_state.to_string());
        self
    }

    /// Declares a review state of the policy: [`StubHost::run`] stops when the run
    /// enters it, as Warden does (the run awaits a reviewer).
    pub fn review_state(mut self, state: impl AsRef<str>) -> StubHost {
        self.session
            .review_states
            .insert(state.as_ref().to_string());
        self
    }

    /// A reviewer's decision, as [`Warden::review`] returns it.
    pub fn reviewed(mut self, review: ReviewInfo) -> StubHost {
        self.session.review = Some(review);
        self
    }

    /// The steps [`StubHost::run`] takes at most (default [`DEFAULT_MAX_STEPS`]).
    pub fn max_steps(mut self, steps: u32) -> StubHost {
        self.max_steps = steps;
        self
    }

    /// Runs one step of `agent`, returning what its [`Agent::step`] returned (an
    /// escalation included). The agent keeps its fields between steps, as in Warden.
    pub fn step<A: Agent>(&mut self, agent: &mut A) -> Result<(), Error> {
        self.session.transitioned = None;
        self.session.escalated = false;
        let session = core::mem::take(&mut self.session);
        ACTIVE.with(|active| {
            let mut active = active.borrow_mut();
            if active.is_some() {
                panic!("stub host: a step is already running on this thread");
            }
            *active = Some(session);
        });
        // Put the session back even if the agent (or a denial) panics.
        let restore = Restore(&mut self.session);
        let result = agent.step(&mut Warden { _private: () });
        drop(restore);
        result
    }

    /// Steps `agent` until it finishes, the run enters a review state, a step returns an
    /// error, or [`StubHost::max_steps`] steps were taken, as Warden would (its error
    /// becomes the failure reason; an escalation ends the run awaiting review).
    pub fn run<A: Agent>(&mut self, agent: &mut A) -> StubOutcome {
        let mut steps = 0;
        let mut failure = None;
        // Warden steps neither a finished run nor one that awaits a reviewer.
        while !self.stopped() && steps < self.max_steps {
            steps += 1;
            match self.step(agent) {
                Ok(()) | Err(Error::Escalated { .. }) => {}
                Err(error) => {
                    failure = Some(format!("step {steps}: agent aborted: {error}"));
                    break;
                }
            }
        }
        let session = &self.session;
        let status = if failure.is_some() {
            StubStatus::Failed
        } else if session.output.is_some() {
            StubStatus::Completed
        } else if session.review_states.contains(&session.state) {
            StubStatus::AwaitingReview
        } else {
            failure = Some(format!(
                "{steps} steps without finishing or entering a review state (Warden stops a run \
                 at budgets.max_steps; declare review states with StubHost::review_state)"
            ));
            StubStatus::Failed
        };
        StubOutcome {
            status,
            state: session.state.clone(),
            output: session.output.clone(),
            reason: failure,
            steps,
        }
    }

    fn stopped(&self) -> bool {
        self.session.output.is_some() || self.session.review_states.contains(&self.session.state)
    }

    /// The state the run stands in.
    pub fn state(&self) -> &str {
        &self.session.state
    }

    /// The output the agent passed to `finish`, decoded; `None` if it has not finished.
    /// Panics if the output does not decode as `T`.
    pub fn output<T: DeserializeOwned>(&self) -> Option<T> {
        let output = self.session.output.as_deref()?;
        Some(
            serde_json::from_str(output)
                .unwrap_or_else(|e| panic!("stub host: the output {output} does not decode: {e}")),
        )
    }

    /// Every request the agent made, in order, as Warden would journal them.
    pub fn requests(&self) -> &[Request] {
        &self.session.requests
    }

    /// The arguments of every call of tool `name`, in order.
    pub fn tool_calls(&self, name: &str) -> Vec<serde_json::Value> {
        self.calls(|request| match request {
            Request::Tool { name: called, args } if called == name => Some(args),
            _ => None,
        })
    }

    /// The features of every inference asked of model `name`, in order.
    pub fn model_calls(&self, name: &str) -> Vec<serde_json::Value> {
        self.calls(|request| match request {
            Request::Model {
                name: called,
                features,
            } if called == name => Some(features),
            _ => None,
        })
    }

    /// Every transition the agent asked for (the state it named, granted or escalated).
    pub fn transitions(&self) -> Vec<&str> {
        self.session
            .requests
            .iter()
            .filter_map(|request| match request {
                Request::Transition { to, .. } => Some(to.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The agent's log lines, in order.
    pub fn logs(&self) -> &[(LogLevel, String)] {
        &self.session.logs
    }

    /// Tools and models with scripted answers the agent never asked for: a call the
    /// test expected and the agent did not make.
    pub fn unused_answers(&self) -> Vec<String> {
        let tools = self.session.tools.iter().map(|(n, q)| ("tool", n, q.len()));
        let models = self
            .session
            .models
            .iter()
            .map(|(n, q)| ("model", n, q.len()));
        tools
            .chain(models)
            .filter(|(_, _, left)| *left > 0)
            .map(|(kind, name, left)| format!("{kind} {name}: {left} answer(s)"))
            .collect()
    }

    fn queue_tool(&mut self, name: &str, answer: ToolAnswer) {
        self.session
            .tools
            .entry(name.to_string())
            .or_default()
            .push_back(answer);
    }

    fn calls(&self, pick: impl Fn(&Request) -> Option<&String>) -> Vec<serde_json::Value> {
        self.session
            .requests
            .iter()
            .filter_map(pick)
            .map(|text| {
                serde_json::from_str(text).unwrap_or_else(|e| {
                    panic!("stub host: request JSON {text} does not decode: {e}")
                })
            })
            .collect()
    }
}

/// Moves the step's session back into its [`StubHost`], also when the step panics.
struct Restore<'a>(&'a mut Session);

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        if let Some(session) = ACTIVE.with(|active| active.borrow_mut().take()) {
            *self.0 = session;
        }
    }
}

impl Session {
    /// Answers one request as Warden would, or panics naming what Warden would deny.
    fn answer(&mut self, request: &Request) -> Response {
        let acts = !matches!(
            request,
            Request::Input | Request::State | Request::Log { .. } | Request::Review
        );
        if self.escalated && acts {
            deny(format!(
                "{request:?} after a gate sent the run to `{}` in this step: only reads and logs \
                 are allowed until the step ends (propagate Error::Escalated with `?`)",
                self.state
            ));
        }
        if self.output.is_some() && !matches!(request, Request::Log { .. }) && acts {
            deny(format!("{request:?} after finish: the run has ended"));
        }
        match request {
            Request::Input => match &self.input {
                Some(input) => Response::Input(input.clone()),
                None => panic!(
                    "stub host: the agent read its input, but none is scripted: StubHost::input"
                ),
            },
            Request::State => Response::State(self.state.clone()),
            Request::Tool { name, args } => {
                match self.tools.get_mut(name).and_then(VecDeque::pop_front) {
                    Some(answer) => Response::Tool(answer),
                    None => panic!(
                        "stub host: the agent called tool `{name}` with {args}, but no answer is left for it: StubHost::tool_answer(\"{name}\", ...)"
                    ),
                }
            }
            Request::Model { name, features } => {
                match self.models.get_mut(name).and_then(VecDeque::pop_front) {
                    Some(Ok((value, confidence))) => Response::Model(Ok(wire::Inference {
                        // Warden's inference id is the call's sequence number in the run.
                        id: InferenceId(self.requests.len() as u64),
                        model: name.clone(),
                        value,
                        confidence,
                    })),
                    Some(Err(error)) => Response::Model(Err(error)),
                    None => panic!(
                        "stub host: the agent asked model `{name}` about {features}, but no answer is left for it: StubHost::model_answer(\"{name}\", ...)"
                    ),
                }
            }
            Request::Transition { to, .. } => {
                if let Some(earlier) = &self.transitioned {
                    deny(format!(
                        "a second transition in one step (to `{to}`, after `{earlier}`): one per step"
                    ));
                }
                self.transitioned = Some(to.clone());
                match self.gates.get(to) {
                    Some(review_state) => {
                        self.state = review_state.clone();
                        self.escalated = true;
                    }
                    None => self.state = to.clone(),
                }
                Response::Transitioned(self.state.clone())
            }
            Request::Log { level, message } => {
                self.logs.push((*level, message.clone()));
                Response::Ack
            }
            Request::Review => Response::Review(self.review.clone()),
            Request::Finish { output } => {
                self.output = Some(output.clone());
                Response::Ack
            }
            Request::Abort { reason } => {
                self.aborted = Some(reason.clone());
                Response::Ack
            }
        }
    }
}

fn deny(what: String) -> ! {
    panic!("stub host: Warden would deny {what}, and stop the agent")
}

fn json<T: Serialize>(what: &str, value: &T) -> String {
    serde_json::to_string(value)
        .unwrap_or_else(|e| panic!("stub host: the scripted {what} does not serialize: {e}"))
}

fn call_error(kind: CallErrorKind, message: &str) -> CallError {
    CallError {
        kind,
        message: message.to_string(),
    }
}

/// The host-call boundary off wasm32: what `warden.host_call` does in Warden, against the
/// session of the step running on this thread.
pub(crate) mod transport {
    use super::{ACTIVE, Request};
    use crate::wire;

    /// `op = OP_CALL`: decodes the request, answers it and holds the encoded response;
    /// returns its length.
    pub(crate) fn host_call(op: i32, bytes: &[u8]) -> i64 {
        if op != wire::OP_CALL {
            panic!("stub host: unknown host-call op {op}");
        }
        let request: Request = postcard::from_bytes(bytes)
            .unwrap_or_else(|e| panic!("stub host: the request does not decode: {e}"));
        ACTIVE.with(|active| {
            let mut active = active.borrow_mut();
            let Some(session) = active.as_mut() else {
                panic!(
                    "a Warden agent called its host outside a step: natively, run its steps \
                     with warden_guest::stub::StubHost (cargo feature `stub`)"
                );
            };
            session.requests.push(request.clone());
            let response = session.answer(&request);
            let encoded = postcard::to_allocvec(&response)
                .unwrap_or_else(|e| panic!("stub host: the response does not encode: {e}"));
            let len = encoded.len() as i64;
            session.held = Some(encoded);
            len
        })
    }

    /// `op = OP_READ_RESPONSE`: copies the held response into `buffer`, once.
    pub(crate) fn host_read(buffer: &mut [u8]) {
        ACTIVE.with(|active| {
            let held = active
                .borrow_mut()
                .as_mut()
                .and_then(|session| session.held.take());
            match held {
                Some(bytes) if bytes.len() <= buffer.len() => {
                    buffer[..bytes.len()].copy_from_slice(&bytes);
                }
                _ => panic!("stub host: a response was read that is not held"),
            }
        });
    }
}

#[cfg(test)]
mod tests;
