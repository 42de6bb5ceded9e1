//! How a run ends, and why: upholds invariant 6 (failure is data).
//!
//! Whatever a guest does (trap, loop, exhaust fuel, hit a limit, send garbage, break the
//! policy), the run ends in one of these typed outcomes, recorded in the journal. None of
//! it is a host error.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::decision::Rule;

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Started and not ended: in progress, or interrupted (see `warden resume`).
    Running,
    /// Reached a terminal state and finished.
    Completed,
    /// Stopped in a review state, waiting for a human decision.
    AwaitingReview,
    /// Ended by a failure; see its [`FailureReason`].
    Failed,
}

impl Status {
    /// The name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Completed => "completed",
            Status::AwaitingReview => "awaiting_review",
            Status::Failed => "failed",
        }
    }

    /// Parses a name as printed by [`Status::as_str`].
    pub fn parse(text: &str) -> Option<Status> {
        [
            Status::Running,
            Status::Completed,
            Status::AwaitingReview,
            Status::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A guest's misuse of the host-call ABI. Each ends the run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GuestFault {
    /// `op` is neither call nor read-response.
    UnknownOp { op: i32 },
    /// `ptr..ptr+len` is not inside the guest's memory (or wraps past 2^32).
    OutOfBounds {
        ptr: u32,
        len: u32,
        memory_bytes: u64,
    },
    /// The request bytes do not decode as a Warden request.
    MalformedRequest { len: u32, error: String },
    /// A read of the response when none is held (read twice, or before any call).
    NoPendingResponse,
    /// The read buffer is shorter than the held response.
    ShortBuffer { needed: u32, given: u32 },
    /// The guest has no exported memory to exchange bytes through.
    NoMemory,
}

impl fmt::Display for GuestFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestFault::UnknownOp { op } => write!(
                f,
                "host_call with unknown op {op} (0 = call, 1 = read response)"
            ),
            GuestFault::OutOfBounds {
                ptr,
                len,
                memory_bytes,
            } => write!(
                f,
                "host_call pointer {ptr:#x} + length {len} is outside guest memory of {memory_bytes} bytes"
            ),
            GuestFault::MalformedRequest { len, error } => {
                write!(f, "malformed request ({len} bytes): {error}")
            }
            GuestFault::NoPendingResponse => f.write_str(
                "read of a response when none is pending (read twice, or before any call)",
            ),
            GuestFault::ShortBuffer { needed, given } => write!(
                f,
                "response buffer too short: the response is {needed} bytes, the buffer {given}"
            ),
            GuestFault::NoMemory => f.write_str("the agent exports no memory"),
        }
    }
}

/// A budget of the policy (or a host cap) that a run exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Limit {
    /// `budgets.max_steps`.
    Steps,
    /// `budgets.max_host_calls`.
    HostCalls,
    /// `budgets.max_request_bytes`.
    RequestBytes,
    /// `budgets.max_response_bytes`.
    ResponseBytes,
    /// `budgets.max_journal_bytes`.
    JournalBytes,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::Steps => "budgets.max_steps",
            Limit::HostCalls => "budgets.max_host_calls",
            Limit::RequestBytes => "budgets.max_request_bytes",
            Limit::ResponseBytes => "budgets.max_response_bytes",
            Limit::JournalBytes => "budgets.max_journal_bytes",
        })
    }
}

/// Why a run failed. Typed so that tests and tools can `matches!` on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum FailureReason {
    /// Enforcement denied a host call or transition.
    Denied { step: u32, rule: Rule },
    /// The step used all of `budgets.fuel_per_step`.
    FuelExhausted { step: u32, limit: u64 },
    /// The step ran past `budgets.wall_clock_ms` (a safety stop, not a decision input).
    DeadlineExceeded { step: u32, limit_ms: u64 },
    /// The guest asked for more memory than `budgets.memory_bytes`, then trapped.
    MemoryLimit {
        step: u32,
        requested_bytes: u64,
        limit_bytes: u64,
    },
    /// The guest exceeded a count or size budget.
    LimitExceeded {
        step: u32,
        limit: Limit,
        value: u64,
        max: u64,
    },
    /// The guest misused the host-call ABI.
    Fault { step: u32, fault: GuestFault },
    /// The guest trapped (stack overflow, unreachable, division by zero, ...).
    Trap { step: u32, trap: String },
    /// The agent gave up (`Err` from its step, or a panic), with its own reason.
    AgentAborted { step: u32, reason: String },
    /// A step in a terminal state ended without calling `finish`.
    NoFinish { step: u32, state: String },
    /// `warden_step` returned a value other than 0.
    BadStepResult { step: u32, value: i32 },
    /// The module could not be instantiated (for example its initial memory is over budget).
    Instantiation { message: String },
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureReason::Denied { step, rule } => write!(f, "step {step}: denied: {rule}"),
            FailureReason::FuelExhausted { step, limit } => {
                write!(
                    f,
                    "step {step}: fuel exhausted (budgets.fuel_per_step = {limit})"
                )
            }
            FailureReason::DeadlineExceeded { step, limit_ms } => write!(
                f,
                "step {step}: wall-clock deadline exceeded (budgets.wall_clock_ms = {limit_ms})"
            ),
            FailureReason::MemoryLimit {
                step,
                requested_bytes,
                limit_bytes,
            } => write!(
                f,
                "step {step}: memory limit: the agent asked for {requested_bytes} bytes of memory, over budgets.memory_bytes = {limit_bytes}"
            ),
            FailureReason::LimitExceeded {
                step,
                limit,
                value,
                max,
            } => {
                write!(f, "step {step}: {limit} exceeded: {value} > {max}")
            }
            FailureReason::Fault { step, fault } => write!(f, "step {step}: {fault}"),
            FailureReason::Trap { step, trap } => write!(f, "step {step}: agent trapped: {trap}"),
            FailureReason::AgentAborted { step, reason } => {
                write!(f, "step {step}: agent aborted: {reason}")
            }
            FailureReason::NoFinish { step, state } => write!(
                f,
                "step {step}: the step in terminal state `{state}` ended without calling finish"
            ),
            FailureReason::BadStepResult { step, value } => {
                write!(f, "step {step}: warden_step returned {value}, expected 0")
            }
            FailureReason::Instantiation { message } => {
                write!(f, "agent could not be instantiated: {message}")
            }
        }
    }
}
