//! How a run ends, and why: upholds invariant 6 (failure is data).
//!
//! Whatever a guest does (trap, loop, exhaust fuel, hit a limit, send garbage, break the
//! policy), the run ends in one of these typed outcomes, recorded in the journal. None of
//! it is a host error.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::decision::Rule;
use crate::input_contract::InputViolation;

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
    UnknownOp {
        /// The op passed.
        op: i32,
    },
    /// `ptr..ptr+len` is not inside the guest's memory (or wraps past 2^32).
    OutOfBounds {
        /// The pointer passed.
        ptr: u32,
        /// The length passed.
        len: u32,
        /// The guest memory's size.
        memory_bytes: u64,
    },
    /// The request bytes do not decode as a Warden request.
    MalformedRequest {
        /// The length passed.
        len: u32,
        /// Why it does not decode.
        error: String,
    },
    /// A read of the response when none is held (read twice, or before any call).
    NoPendingResponse,
    /// The read buffer is shorter than the held response.
    ShortBuffer {
        /// The response's size.
        needed: u32,
        /// The buffer's size.
        given: u32,
    },
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
    Denied {
        /// The step it happened in.
        step: u32,
        /// The rule that denied it.
        rule: Rule,
    },
    /// The step used all of `budgets.fuel_per_step`.
    FuelExhausted {
        /// The step it happened in.
        step: u32,
        /// The budget's value.
        limit: u64,
    },
    /// The step ran past `budgets.wall_clock_ms` (a safety stop, not a decision input).
    DeadlineExceeded {
        /// The step it happened in.
        step: u32,
        /// The budget, in milliseconds.
        limit_ms: u64,
    },
    /// The guest asked for more memory than `budgets.memory_bytes`, then trapped.
    MemoryLimit {
        /// The step it happened in.
        step: u32,
        /// The size the guest asked for.
        requested_bytes: u64,
        /// The budget, in bytes.
        limit_bytes: u64,
    },
    /// The guest exceeded a count or size budget.
    LimitExceeded {
        /// The step it happened in.
        step: u32,
        /// The budget's value.
        limit: Limit,
        /// The value reached.
        value: u64,
        /// The budget.
        max: u64,
    },
    /// The guest misused the host-call ABI.
    Fault {
        /// The step it happened in.
        step: u32,
        /// What the guest did wrong.
        fault: GuestFault,
    },
    /// The guest trapped (stack overflow, unreachable, division by zero, ...).
    Trap {
        /// The step it happened in.
        step: u32,
        /// The trap.
        trap: String,
    },
    /// The agent gave up (`Err` from its step, or a panic), with its own reason.
    AgentAborted {
        /// The step it happened in.
        step: u32,
        /// The agent's own words.
        reason: String,
    },
    /// A step in a terminal state ended without calling `finish`.
    NoFinish {
        /// The step it happened in.
        step: u32,
        /// The state the run was in.
        state: String,
    },
    /// `warden_step` returned a value other than 0.
    BadStepResult {
        /// The step it happened in.
        step: u32,
        /// The value reached.
        value: i32,
    },
    /// The module could not be instantiated (for example its initial memory is over budget).
    Instantiation {
        /// wasmtime's message.
        message: String,
    },
    /// The guest trapped, with wasmtime's trap code (format version 2 and later; version 1
    /// recorded traps as [`FailureReason::Trap`]).
    Trapped {
        /// The step it happened in.
        step: u32,
        /// The trap.
        trap: TrapCode,
    },
    /// Warden itself failed inside the step (a bug of the host, never a policy decision).
    HostFault {
        /// The step it happened in.
        step: u32,
        /// What the guest did wrong.
        fault: HostFault,
    },
    /// The input breaks the policy's input contract (`[input] schema`): refused before
    /// the first step of the run (or of the fork), so the agent never saw it. Only runs
    /// under a policy with a contract can record it.
    InputRejected {
        /// The first violations (at most [`crate::input_contract::MAX_RECORDED_VIOLATIONS`]),
        /// each naming the JSON pointer into the input and the schema keyword.
        violations: Vec<InputViolation>,
        /// How many violations the input has in all.
        total: u32,
    },
}

/// Why a guest trapped: wasmtime's trap codes, kept typed so that tests and tools can
/// `matches!` on them. Variants are the journal format: append only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrapCode {
    /// The call stack overflowed (deep or unbounded recursion).
    StackOverflow,
    /// A load or store outside linear memory.
    MemoryOutOfBounds,
    /// A misaligned atomic access.
    HeapMisaligned,
    /// A table access outside the table.
    TableOutOfBounds,
    /// A call through a null table entry.
    IndirectCallToNull,
    /// A call through a table entry of the wrong type.
    BadSignature,
    /// Integer overflow (e.g. `i32.div_s` of `MIN` by -1).
    IntegerOverflow,
    /// Integer division or remainder by zero.
    IntegerDivisionByZero,
    /// A float that cannot be converted to the integer type.
    BadConversionToInteger,
    /// `unreachable` was executed (Rust panics compile to it when not caught).
    UnreachableCodeReached,
    /// A null reference was dereferenced.
    NullReference,
    /// A trap code this Warden does not know by name, with wasmtime's description.
    Other {
        /// wasmtime's description of the trap.
        description: String,
    },
}

impl TrapCode {
    /// The typed code of a wasmtime trap.
    pub(crate) fn of(trap: &wasmtime::Trap) -> TrapCode {
        use wasmtime::Trap;
        match trap {
            Trap::StackOverflow => TrapCode::StackOverflow,
            Trap::MemoryOutOfBounds => TrapCode::MemoryOutOfBounds,
            Trap::HeapMisaligned => TrapCode::HeapMisaligned,
            Trap::TableOutOfBounds => TrapCode::TableOutOfBounds,
            Trap::IndirectCallToNull => TrapCode::IndirectCallToNull,
            Trap::BadSignature => TrapCode::BadSignature,
            Trap::IntegerOverflow => TrapCode::IntegerOverflow,
            Trap::IntegerDivisionByZero => TrapCode::IntegerDivisionByZero,
            Trap::BadConversionToInteger => TrapCode::BadConversionToInteger,
            Trap::UnreachableCodeReached => TrapCode::UnreachableCodeReached,
            Trap::NullReference => TrapCode::NullReference,
            other => TrapCode::Other {
                description: other.to_string(),
            },
        }
    }
}

impl fmt::Display for TrapCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrapCode::StackOverflow => "call stack exhausted (stack overflow)",
            TrapCode::MemoryOutOfBounds => "out-of-bounds memory access",
            TrapCode::HeapMisaligned => "misaligned memory access",
            TrapCode::TableOutOfBounds => "out-of-bounds table access",
            TrapCode::IndirectCallToNull => "indirect call to a null table entry",
            TrapCode::BadSignature => "indirect call type mismatch",
            TrapCode::IntegerOverflow => "integer overflow",
            TrapCode::IntegerDivisionByZero => "integer divide by zero",
            TrapCode::BadConversionToInteger => "invalid conversion to integer",
            TrapCode::UnreachableCodeReached => "unreachable instruction executed",
            TrapCode::NullReference => "null reference",
            TrapCode::Other { description } => description,
        })
    }
}

/// A failure of Warden itself inside a step. Recorded, so that the run ends with a precise
/// reason, but never the guest's doing. Variants are the journal format: append only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostFault {
    /// wasmtime refused to set the step's fuel.
    FuelUnavailable,
    /// Enforcement escalated a request that no confidence gate guards.
    EscalationWithoutGate,
    /// The guest stopped with an error that is neither a trap nor a host-call halt.
    UnclassifiedError,
}

impl fmt::Display for HostFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HostFault::FuelUnavailable => "wasmtime could not set the step's fuel",
            HostFault::EscalationWithoutGate => {
                "enforcement escalated a request that no confidence gate guards"
            }
            HostFault::UnclassifiedError => {
                "the step stopped with an error that is neither a trap nor a host-call halt"
            }
        })
    }
}

/// How a run ended, or where it stands while it runs: the `Outcome` record's fields, the
/// run summary's, and the report's, in one type. Field order is the journal format.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Where the run stands.
    pub status: Status,
    /// The state it ended in (or is in).
    pub state: String,
    /// The agent's output (JSON text), once it finished.
    pub output: Option<String>,
    /// Why it failed, if it did.
    pub reason: Option<FailureReason>,
    /// Steps run.
    pub steps: u32,
    /// Host calls made.
    pub host_calls: u32,
    /// Fuel used.
    pub fuel: u64,
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
            FailureReason::Trapped { step, trap } => {
                write!(f, "step {step}: agent trapped: {trap}")
            }
            FailureReason::HostFault { step, fault } => {
                write!(f, "step {step}: warden failed (a host bug): {fault}")
            }
            FailureReason::InputRejected { violations, total } => {
                write!(
                    f,
                    "input rejected by the policy's input contract, before the first step:"
                )?;
                for (i, violation) in violations.iter().enumerate() {
                    let sep = if i == 0 { " " } else { "; " };
                    write!(f, "{sep}{violation}")?;
                }
                let shown = violations.len() as u64;
                if u64::from(*total) > shown {
                    write!(f, " (and {} more)", u64::from(*total) - shown)?;
                }
                Ok(())
            }
        }
    }
}
