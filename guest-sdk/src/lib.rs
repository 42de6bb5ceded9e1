//! What a Warden agent compiles against.
//!
//! An agent is a state machine written in safe Rust: a type implementing [`Agent`],
//! registered with [`agent!`]. Each call of its [`Agent::step`] is one *step* of the run;
//! everything it does outside its own memory goes through the [`Warden`] handle, whose
//! every method is one host call that Warden enforces against the run's policy and
//! journals. There is no other way out: no WASI, no clock, no randomness.
//!
//! ```ignore
//! use warden_guest::{Agent, Warden, Error};
//!
//! #[derive(Default)]
//! struct Echo;
//!
//! impl Agent for Echo {
//!     fn step(&mut self, warden: &mut Warden) -> Result<(), Error> {
//!         let input: serde_json::Value = warden.input()?;
//!         warden.transition("done")?;
//!         warden.finish(&input)
//!     }
//! }
//!
//! warden_guest::agent!(Echo);
//! ```
//!
//! The raw ABI (pointers, lengths, the import and the export) lives in this crate only;
//! agent authors never write `unsafe`. The wire types are in [`wire`], shared with the host.
//!
//! **Typed states.** A state is named by a string on the wire, and by the agent either
//! as a `&str` or as a variant of a `State` enum generated from the policy at build time
//! by the companion crate `warden-guest-build` (a build-dependency; its docs show the
//! `build.rs`). [`Warden::transition`] and [`Warden::transition_citing`] take any
//! `AsRef<str>`, and [`Warden::state_as`] reads the current state into the enum, so that
//! a state name the policy does not declare is a compile error:
//!
//! ```ignore
//! match warden.state_as::<State>()? {
//!     State::Intake => warden.transition(State::Done).map(|_| ()),
//!     State::Done => warden.finish(&"ok"),
//! }
//! ```
//!
//! With the cargo feature `stub`, `stub::StubHost` runs an agent's steps natively
//! (`cargo test`) against scripted answers, through the same boundary.
#![no_std]

extern crate alloc;

pub mod wire;

#[cfg(all(not(target_arch = "wasm32"), any(feature = "stub", test)))]
pub mod stub;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::fmt;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use wire::{CallError, CallErrorKind, InferenceId, LogLevel, ReviewInfo};
use wire::{Request, Response};

/// Why an SDK call did not give the agent what it asked for.
#[derive(Debug)]
pub enum Error {
    /// The tool or model answered that it could not (unknown key, bad arguments, outage).
    Call(CallError),
    /// The agent's own data did not (de)serialize: names the what and the serde message.
    Data {
        /// What was being encoded or decoded.
        what: &'static str,
        /// serde's message.
        message: String,
    },
    /// The host answered with a response of the wrong kind (a host bug; should not happen).
    Protocol(&'static str),
    /// The agent's own reason to stop (see [`Error::agent`]).
    Agent(String),
    /// A confidence gate did not let the requested transition happen: the host moved the
    /// run to a review state instead, and the run now waits for a human. Propagate it with
    /// `?`: the step then ends normally (this is not a failure), and any further action in
    /// the step would be refused.
    Escalated {
        /// The state the agent asked for.
        requested: String,
        /// The review state the run is in now.
        state: String,
    },
}

impl Error {
    /// An error the agent raises itself; the run ends as failed with this reason.
    pub fn agent(reason: impl Into<String>) -> Self {
        Error::Agent(reason.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Call(e) => write!(f, "{:?}: {}", e.kind, e.message),
            Error::Data { what, message } => write!(f, "{what}: {message}"),
            Error::Protocol(what) => write!(f, "unexpected response to {what}"),
            Error::Agent(reason) => f.write_str(reason),
            Error::Escalated { requested, state } => write!(
                f,
                "the transition to `{requested}` was escalated: the run waits for review in `{state}`"
            ),
        }
    }
}

/// A model inference as the agent sees it: the decoded value, the host's confidence, and
/// the id to cite when a transition rests on it.
#[derive(Debug, Clone)]
pub struct Inference<V> {
    /// Cite it with [`Warden::transition_citing`].
    pub id: InferenceId,
    /// The model's value.
    pub value: V,
    /// The confidence the host computed, in `[0, 1]`. Informational for the agent: gates
    /// use the host's own record, never this copy.
    pub confidence: f64,
}

/// An agent: a deterministic state machine. Warden calls [`Agent::step`] until the run
/// reaches a terminal or review state, fails, or runs out of budget.
pub trait Agent: Default + 'static {
    /// One step: typically read [`Warden::state`], do that state's work, then request a
    /// transition (or [`Warden::finish`] in a terminal state). An `Err` ends the run as
    /// failed with the error as its reason.
    fn step(&mut self, warden: &mut Warden) -> Result<(), Error>;
}

/// The agent's only door to the world. Each method is one enforced, journaled host call.
#[derive(Debug)]
pub struct Warden {
    _private: (),
}

impl Warden {
    /// The run's input, decoded from JSON.
    pub fn input<T: DeserializeOwned>(&mut self) -> Result<T, Error> {
        match call(&Request::Input)? {
            Response::Input(json) => from_json("run input", &json),
            _ => Err(Error::Protocol("input")),
        }
    }

    /// The run's current state.
    pub fn state(&mut self) -> Result<String, Error> {
        match call(&Request::State)? {
            Response::State(state) => Ok(state),
            _ => Err(Error::Protocol("state")),
        }
    }

    /// The run's current state, as the agent's own type: typically the `State` enum that
    /// `warden-guest-build` generates from the policy (`warden.state_as::<State>()?`),
    /// so that a `match` on it names only declared states and must handle each. A state
    /// the type does not know (the run is under a policy the agent was not built with)
    /// is an [`Error::Agent`] with the type's message, and ends the run as failed.
    pub fn state_as<S>(&mut self) -> Result<S, Error>
    where
        S: core::str::FromStr,
        S::Err: fmt::Display,
    {
        let state = self.state()?;
        state.parse::<S>().map_err(|e| Error::Agent(e.to_string()))
    }

    /// Calls the named tool (declared in the policy, allowed in the current state).
    pub fn tool<A: Serialize, R: DeserializeOwned>(
        &mut self,
        name: &str,
        args: &A,
    ) -> Result<R, Error> {
        let args = to_json("tool arguments", args)?;
        match call(&Request::Tool {
            name: name.to_string(),
            args,
        })? {
            Response::Tool(Ok(json)) => from_json("tool result", &json),
            Response::Tool(Err(e)) => Err(Error::Call(e)),
            _ => Err(Error::Protocol("tool")),
        }
    }

    /// Asks the named model (declared in the policy, allowed in the current state) for an
    /// inference on `features`.
    pub fn model<F: Serialize, V: DeserializeOwned>(
        &mut self,
        name: &str,
        features: &F,
    ) -> Result<Inference<V>, Error> {
        let features = to_json("model features", features)?;
        match call(&Request::Model {
            name: name.to_string(),
            features,
        })? {
            Response::Model(Ok(inference)) => Ok(Inference {
                id: inference.id,
                value: from_json("model value", &inference.value)?,
                confidence: inference.confidence,
            }),
            Response::Model(Err(e)) => Err(Error::Call(e)),
            _ => Err(Error::Protocol("model")),
        }
    }

    /// Requests a transition to `to` and returns the new state. If a confidence gate
    /// guards `to`, the host judges it on the latest inference of the gate's model in this
    /// run; a gate that is not met moves the run to its review state instead, and this
    /// returns [`Error::Escalated`]: propagate it with `?` to end the step, and the run
    /// waits for a human.
    ///
    /// `to` is a state name: a `&str`, or a variant of the `State` enum that
    /// `warden-guest-build` generates from the policy (`warden.transition(State::Scoring)`),
    /// with which a name the policy does not declare fails to compile. Either way the
    /// host receives the name.
    pub fn transition(&mut self, to: impl AsRef<str>) -> Result<String, Error> {
        self.transition_with(to.as_ref(), None)
    }

    /// Like [`Warden::transition`], resting the gate on the cited inference.
    pub fn transition_citing(
        &mut self,
        to: impl AsRef<str>,
        evidence: InferenceId,
    ) -> Result<String, Error> {
        self.transition_with(to.as_ref(), Some(evidence))
    }

    fn transition_with(
        &mut self,
        to: &str,
        evidence: Option<InferenceId>,
    ) -> Result<String, Error> {
        match call(&Request::Transition {
            to: to.to_string(),
            evidence,
        })? {
            Response::Transitioned(state) if state == to => Ok(state),
            Response::Transitioned(state) => Err(Error::Escalated {
                requested: to.to_string(),
                state,
            }),
            _ => Err(Error::Protocol("transition")),
        }
    }

    /// Writes a line to the run's journal.
    pub fn log(&mut self, level: LogLevel, message: impl Into<String>) -> Result<(), Error> {
        match call(&Request::Log {
            level,
            message: message.into(),
        })? {
            Response::Ack => Ok(()),
            _ => Err(Error::Protocol("log")),
        }
    }

    /// The latest human review of this run: who sent it to the current state, in which
    /// role and why, so that the output can cite it. `None` if no person (or timeout)
    /// has decided on it.
    pub fn review(&mut self) -> Result<Option<ReviewInfo>, Error> {
        match call(&Request::Review)? {
            Response::Review(review) => Ok(review),
            _ => Err(Error::Protocol("review")),
        }
    }

    /// Ends the run with `output`. Allowed only in a terminal state.
    pub fn finish<O: Serialize>(&mut self, output: &O) -> Result<(), Error> {
        let output = to_json("output", output)?;
        match call(&Request::Finish { output })? {
            Response::Ack => Ok(()),
            _ => Err(Error::Protocol("finish")),
        }
    }
}

fn to_json<T: Serialize>(what: &'static str, value: &T) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|e| Error::Data {
        what,
        message: e.to_string(),
    })
}

fn from_json<T: DeserializeOwned>(what: &'static str, json: &str) -> Result<T, Error> {
    serde_json::from_str(json).map_err(|e| Error::Data {
        what,
        message: e.to_string(),
    })
}

/// Sends one request and reads its response: the only two uses of the raw import.
fn call(request: &Request) -> Result<Response, Error> {
    let bytes = postcard::to_allocvec(request).map_err(|e| Error::Data {
        what: "request",
        message: e.to_string(),
    })?;
    let len = abi::host_call(wire::OP_CALL, &bytes);
    let mut buffer: Vec<u8> = alloc::vec![0; usize::try_from(len).unwrap_or(0)];
    abi::host_read(&mut buffer);
    postcard::from_bytes(&buffer).map_err(|e| Error::Data {
        what: "response",
        message: e.to_string(),
    })
}

mod abi {
    //! The raw import, wrapped so that the rest of the SDK passes slices, not pointers.
    //! Off wasm32 there is no Warden: the stub host answers instead (feature `stub`), or
    //! a call panics saying how to test an agent natively.

    #[cfg(target_arch = "wasm32")]
    #[link(wasm_import_module = "warden")]
    unsafe extern "C" {
        #[link_name = "host_call"]
        fn raw_host_call(op: i32, ptr: i32, len: i32) -> i64;
    }

    #[cfg(target_arch = "wasm32")]
    pub(super) fn host_call(op: i32, bytes: &[u8]) -> i64 {
        // SAFETY: the host reads `len` bytes at `ptr`, which is exactly `bytes`.
        unsafe { raw_host_call(op, bytes.as_ptr() as usize as i32, bytes.len() as i32) }
    }

    #[cfg(target_arch = "wasm32")]
    pub(super) fn host_read(buffer: &mut [u8]) {
        // SAFETY: the host writes at most `len` bytes at `ptr`, which is exactly `buffer`.
        unsafe {
            raw_host_call(
                super::wire::OP_READ_RESPONSE,
                buffer.as_mut_ptr() as usize as i32,
                buffer.len() as i32,
            );
        }
    }

    #[cfg(all(not(target_arch = "wasm32"), any(feature = "stub", test)))]
    pub(super) use crate::stub::transport::{host_call, host_read};

    #[cfg(all(not(target_arch = "wasm32"), not(any(feature = "stub", test))))]
    pub(super) fn host_call(_op: i32, _bytes: &[u8]) -> i64 {
        panic!(
            "a Warden agent runs only inside Warden, compiled for wasm32; to unit-test its \
             steps natively, enable warden-guest's `stub` feature and use \
             warden_guest::stub::StubHost"
        )
    }

    #[cfg(all(not(target_arch = "wasm32"), not(any(feature = "stub", test))))]
    pub(super) fn host_read(_buffer: &mut [u8]) {
        panic!("a Warden agent runs only inside Warden, compiled for wasm32")
    }
}

/// Holds the registered agent between steps. Used by [`agent!`]; not for direct use.
#[doc(hidden)]
#[allow(missing_debug_implementations)]
pub struct AgentCell<A>(UnsafeCell<Option<A>>);

// SAFETY: Warden runs agents single-threaded (threads and shared memory are disabled in
// the host's engine), and never calls `warden_step` while a step is running.
unsafe impl<A> Sync for AgentCell<A> {}

impl<A: Agent> AgentCell<A> {
    #[doc(hidden)]
    pub const fn new() -> Self {
        AgentCell(UnsafeCell::new(None))
    }

    /// Runs one step. An agent error becomes an `Abort` request, which ends the run; an
    /// escalation ends the step normally (the run waits for review).
    #[doc(hidden)]
    pub fn step(&self) -> i32 {
        // SAFETY: see the `Sync` impl: no other reference to the cell exists during a step.
        let slot = unsafe { &mut *self.0.get() };
        let agent = slot.get_or_insert_with(A::default);
        match agent.step(&mut Warden { _private: () }) {
            Ok(()) | Err(Error::Escalated { .. }) => 0,
            Err(e) => {
                abort(&format!("{e}"));
                1
            }
        }
    }
}

/// Ends the run as failed with `reason`. Used for agent errors and by the panic hook.
#[doc(hidden)]
pub fn abort(reason: &str) {
    let _ = call(&Request::Abort {
        reason: reason.to_string(),
    });
}

/// Registers `$agent` (a type implementing [`Agent`]) as this module's agent: exports
/// `warden_step` and routes panics into the journal as the run's failure reason.
#[macro_export]
macro_rules! agent {
    ($agent:ty) => {
        static __WARDEN_AGENT: $crate::AgentCell<$agent> = $crate::AgentCell::new();

        #[unsafe(export_name = "warden_step")]
        extern "C" fn __warden_step() -> i32 {
            static HOOK: ::std::sync::Once = ::std::sync::Once::new();
            HOOK.call_once(|| {
                ::std::panic::set_hook(::std::boxed::Box::new(|info| {
                    $crate::abort(&::std::format!("agent panicked: {info}"));
                }));
            });
            __WARDEN_AGENT.step()
        }
    };
}
