//! The host-call protocol: the one definition of every byte that crosses the guest/host
//! boundary, shared by the guest SDK and the host.
//!
//! # ABI
//!
//! An agent imports exactly one function, [`IMPORT_MODULE`]`.`[`IMPORT_NAME`], of type
//! `(op: i32, ptr: i32, len: i32) -> i64`, and exports [`STEP_EXPORT`] of type `() -> i32`
//! and its linear memory as [`MEMORY_EXPORT`].
//!
//! - `op = `[`OP_CALL`]: `ptr..ptr+len` holds a postcard-encoded [`Request`]. The host
//!   decodes it, enforces the policy, journals it and returns the length in bytes of the
//!   postcard-encoded [`Response`], which it holds for the guest.
//! - `op = `[`OP_READ_RESPONSE`]: the host copies the held response into `ptr..ptr+len`
//!   (`len` must be at least the response length) and returns the number of bytes written.
//!   A response can be read once.
//!
//! Anything else (an unknown op, a pointer outside memory, bytes that do not decode, a
//! read with no response held, a short buffer) ends the run as a recorded failure. So
//! does a request the policy denies: the guest never sees a denial, it is stopped.
//!
//! Payloads that are the agent's own data (input, tool arguments and results, model
//! features and values, output) travel as JSON text, so that the host can route them to
//! providers and people can read them in the journal.

use alloc::string::String;
use serde::{Deserialize, Serialize};

/// Module name of the single host-call import.
pub const IMPORT_MODULE: &str = "warden";
/// Field name of the single host-call import.
pub const IMPORT_NAME: &str = "host_call";
/// The export the host calls once per step: `() -> i32`, 0 when the step ran to its end.
pub const STEP_EXPORT: &str = "warden_step";
/// The linear memory every agent exports.
pub const MEMORY_EXPORT: &str = "memory";
/// `op` of a host call that sends a request.
pub const OP_CALL: i32 = 0;
/// `op` of a host call that reads the response to the last request.
pub const OP_READ_RESPONSE: i32 = 1;

/// Identifies one model inference the host computed and recorded in this run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InferenceId(pub u64);

/// Severity of a guest log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogLevel {
    /// Detail for whoever debugs the agent.
    Debug,
    /// A normal event worth keeping in the journal.
    Info,
    /// Something the agent thinks a person should look at.
    Warn,
}

/// What a guest asks of the host. Every variant is one host call, enforced and journaled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// The run's input, as JSON text.
    Input,
    /// The run's current state in the policy's state machine.
    State,
    /// Call the named tool with JSON arguments.
    Tool {
        /// Tool name as declared in the policy.
        name: String,
        /// Arguments, JSON text.
        args: String,
    },
    /// Ask the named model for an inference on JSON features.
    Model {
        /// Model name as declared in the policy.
        name: String,
        /// Features, JSON text.
        features: String,
    },
    /// Move the run to another state. A confidence gate on the target state is judged on
    /// `evidence` if given (it must be an inference of this run), else on the latest
    /// inference of the gate's model.
    Transition {
        /// Target state.
        to: String,
        /// The inference the agent rests this transition on.
        evidence: Option<InferenceId>,
    },
    /// Write a line to the journal.
    Log {
        /// Severity.
        level: LogLevel,
        /// The line.
        message: String,
    },
    /// End the run with an output (JSON text). Allowed only in a terminal state.
    Finish {
        /// The run's output, JSON text.
        output: String,
    },
    /// Give up: the run ends as failed with this reason.
    Abort {
        /// Why the agent cannot go on.
        reason: String,
    },
    /// The latest human review of this run, if a person decided it: always allowed.
    Review,
}

/// What the host answers. A guest receives a response only for an allowed request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// The run's input, JSON text.
    Input(String),
    /// The current state.
    State(String),
    /// A tool's result (JSON text) or why the tool could not answer.
    Tool(Result<String, CallError>),
    /// A model's inference or why the model could not answer.
    Model(Result<Inference, CallError>),
    /// The transition happened; this is the new state.
    Transitioned(String),
    /// Done (log, finish).
    Ack,
    /// The latest review of this run (`None` if no person has decided it).
    Review(Option<ReviewInfo>),
}

/// A person's (or a timeout's) decision on a run that a gate sent to review, as the agent
/// reads it to cite in its output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewInfo {
    /// The state the reviewer sent the run to.
    pub outcome: String,
    /// Who decided (`warden` for a timeout).
    pub reviewer: String,
    /// In which role.
    pub role: String,
    /// Their justification.
    pub note: String,
    /// Whether a person decided, or a timeout did.
    pub by_timeout: bool,
}

/// A model's answer, with the confidence the host computed for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Inference {
    /// Cite this id when a transition rests on this inference.
    pub id: InferenceId,
    /// The model that produced it.
    pub model: String,
    /// The model's value, JSON text.
    pub value: String,
    /// The host-computed confidence in `value`, in `[0, 1]`.
    pub confidence: f64,
}

/// Why a tool or model could not answer. Not a policy matter: the agent decides what to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallError {
    /// The class of failure.
    pub kind: CallErrorKind,
    /// A sentence for people.
    pub message: String,
}

/// The class of a [`CallError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallErrorKind {
    /// The provider has no answer for these arguments (e.g. unknown applicant).
    NotFound,
    /// The arguments or features do not fit what the provider expects.
    InvalidArguments,
    /// The provider failed.
    Unavailable,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_through_postcard() {
        let requests = [
            Request::Input,
            Request::Tool {
                name: "credit_bureau".into(),
                args: "{\"id\":\"A-1\"}".into(),
            },
            Request::Transition {
                to: "approved".into(),
                evidence: Some(InferenceId(3)),
            },
        ];
        for request in requests {
            let bytes = postcard::to_allocvec(&request).expect("encode");
            let back: Request = postcard::from_bytes(&bytes).expect("decode");
            assert_eq!(back, request);
        }
    }
}
