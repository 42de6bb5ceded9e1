//! WASI guests: the functions of WASI preview 1 (`wasi_snapshot_preview1`) that Warden
//! answers itself, for an agent built for `wasm32-wasip1` with the standard library under
//! a policy that allows WASI guests (`[wasi] enabled = true`).
//!
//! Every call is decided by [`enforce_wasi`], takes a number in the run's host-call
//! sequence (so `max_host_calls` bounds it), and is journaled with its answer as one
//! `RecordBody::Wasi` before the guest sees the answer. What the world would answer (the
//! time of a clock, random bytes) is taken live and journaled; a re-execution (replay,
//! the catch-up of a resume) answers from the journal by call number, and a
//! counterfactual by identical request, so a run replays bit for bit. Everything else is
//! answered the same way every time: no arguments, an empty environment, an empty
//! standard input, standard output and error as journaled lines, no preopened directory,
//! and no file, socket or poll at all (loading refuses those imports). Nothing of the
//! WASI context lives outside guest memory, so a checkpoint stays whole.
//!
//! Upholds invariants 1 (every WASI call passes `enforce_wasi`), 2 (a WASI guest reaches
//! only what the host answers), 3 (nondeterminism enters only as journaled answers),
//! 6 (a bad pointer is a recorded fault, an exit a recorded failure) and 7 (calls, bytes
//! written and bytes drawn count against the policy's budgets).

use std::time::{SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Linker};

use crate::agent::WASI_MODULE;
use crate::decision::{Rule, RunView, Verdict, WASI_EXIT, enforce_wasi};
use crate::effects::Effects;
use crate::host_call::{Halt, Halted, HostState, guest_range};
use crate::journal::{RecordBody, WasiAnswer, WasiCall, WasiRequest, wasi_errno as errno};
use crate::outcome::{FailureReason, GuestFault, Limit};

/// `clockid::realtime`.
const REALTIME: u32 = 0;
/// `clockid::monotonic`.
const MONOTONIC: u32 = 1;
/// The resolution both clocks report, in nanoseconds.
const RESOLUTION_NS: u64 = 1;
/// `filetype::character_device`: what standard input, output and error are.
const CHARACTER_DEVICE: u8 = 2;
/// `rights::fd_read`.
const RIGHT_FD_READ: u64 = 1 << 1;
/// `rights::fd_write`.
const RIGHT_FD_WRITE: u64 = 1 << 6;

type HostResult<T> = wasmtime::Result<T>;

/// Defines every function of [`crate::agent::WASI_FUNCTIONS`] in `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> HostResult<()> {
    let m = WASI_MODULE;
    linker.func_wrap(m, "args_get", args_get)?;
    linker.func_wrap(m, "args_sizes_get", args_sizes_get)?;
    linker.func_wrap(m, "environ_get", environ_get)?;
    linker.func_wrap(m, "environ_sizes_get", environ_sizes_get)?;
    linker.func_wrap(m, "clock_res_get", clock_res_get)?;
    linker.func_wrap(m, "clock_time_get", clock_time_get)?;
    linker.func_wrap(m, "random_get", random_get)?;
    linker.func_wrap(m, "fd_write", fd_write)?;
    linker.func_wrap(m, "fd_read", fd_read)?;
    linker.func_wrap(m, "fd_fdstat_get", fd_fdstat_get)?;
    linker.func_wrap(m, "fd_prestat_get", fd_prestat_get)?;
    linker.func_wrap(m, "fd_prestat_dir_name", fd_prestat_dir_name)?;
    linker.func_wrap(m, "fd_seek", fd_seek)?;
    linker.func_wrap(m, "fd_close", fd_close)?;
    linker.func_wrap(m, "sched_yield", sched_yield)?;
    linker.func_wrap(m, "proc_exit", proc_exit)?;
    Ok(())
}

type Ctx<'a> = Caller<'a, HostState>;

fn args_get(mut caller: Ctx<'_>, _argv: i32, _buf: i32) -> HostResult<i32> {
    run(&mut caller, WasiRequest::ArgsGet, |_, _| Ok(()))
}

fn args_sizes_get(mut caller: Ctx<'_>, count: i32, size: i32) -> HostResult<i32> {
    run(&mut caller, WasiRequest::ArgsSizesGet, sizes(count, size))
}

fn environ_get(mut caller: Ctx<'_>, _environ: i32, _buf: i32) -> HostResult<i32> {
    run(&mut caller, WasiRequest::EnvironGet, |_, _| Ok(()))
}

fn environ_sizes_get(mut caller: Ctx<'_>, count: i32, size: i32) -> HostResult<i32> {
    run(
        &mut caller,
        WasiRequest::EnvironSizesGet,
        sizes(count, size),
    )
}

fn clock_res_get(mut caller: Ctx<'_>, clock: i32, out: i32) -> HostResult<i32> {
    let request = WasiRequest::ClockResGet {
        clock: clock as u32,
    };
    run(&mut caller, request, time(out))
}

fn clock_time_get(mut caller: Ctx<'_>, clock: i32, precision: i64, out: i32) -> HostResult<i32> {
    let request = WasiRequest::ClockTimeGet {
        clock: clock as u32,
        precision: precision as u64,
    };
    run(&mut caller, request, time(out))
}

fn random_get(mut caller: Ctx<'_>, buf: i32, len: i32) -> HostResult<i32> {
    let request = WasiRequest::RandomGet { len: len as u32 };
    run(&mut caller, request, move |caller, answer| match answer {
        WasiAnswer::Random(bytes) => write(caller, buf as u32, bytes),
        _ => Ok(()),
    })
}

fn fd_write(mut caller: Ctx<'_>, fd: i32, iovs: i32, count: i32, out: i32) -> HostResult<i32> {
    let bytes = match gather(&caller, iovs as u32, count as u32) {
        Ok(bytes) => bytes,
        Err(halt) => return Err(stop(&mut caller, halt)),
    };
    let request = WasiRequest::FdWrite {
        fd: fd as u32,
        bytes,
    };
    run(&mut caller, request, counted(out))
}

fn fd_read(mut caller: Ctx<'_>, fd: i32, iovs: i32, count: i32, out: i32) -> HostResult<i32> {
    let len = match buffers(&caller, iovs as u32, count as u32) {
        Ok(buffers) => buffers.iter().map(|(_, len)| u64::from(*len)).sum(),
        Err(halt) => return Err(stop(&mut caller, halt)),
    };
    let request = WasiRequest::FdRead { fd: fd as u32, len };
    run(&mut caller, request, counted(out))
}

fn fd_fdstat_get(mut caller: Ctx<'_>, fd: i32, out: i32) -> HostResult<i32> {
    let request = WasiRequest::FdFdstatGet { fd: fd as u32 };
    run(&mut caller, request, move |caller, answer| match answer {
        WasiAnswer::Fdstat {
            filetype,
            flags,
            rights_base,
            rights_inheriting,
        } => {
            // `fdstat`: filetype u8 at 0, flags u16 at 2, rights u64 at 8 and 16.
            let mut layout = [0u8; 24];
            layout[0] = *filetype;
            layout[2..4].copy_from_slice(&flags.to_le_bytes());
            layout[8..16].copy_from_slice(&rights_base.to_le_bytes());
            layout[16..24].copy_from_slice(&rights_inheriting.to_le_bytes());
            write(caller, out as u32, &layout)
        }
        _ => Ok(()),
    })
}

fn fd_prestat_get(mut caller: Ctx<'_>, fd: i32, _out: i32) -> HostResult<i32> {
    let request = WasiRequest::FdPrestatGet { fd: fd as u32 };
    run(&mut caller, request, |_, _| Ok(()))
}

fn fd_prestat_dir_name(mut caller: Ctx<'_>, fd: i32, _path: i32, _len: i32) -> HostResult<i32> {
    let request = WasiRequest::FdPrestatDirName { fd: fd as u32 };
    run(&mut caller, request, |_, _| Ok(()))
}

fn fd_seek(mut caller: Ctx<'_>, fd: i32, offset: i64, whence: i32, _out: i32) -> HostResult<i32> {
    let request = WasiRequest::FdSeek {
        fd: fd as u32,
        offset,
        whence: whence as u32,
    };
    run(&mut caller, request, |_, _| Ok(()))
}

fn fd_close(mut caller: Ctx<'_>, fd: i32) -> HostResult<i32> {
    let request = WasiRequest::FdClose { fd: fd as u32 };
    run(&mut caller, request, |_, _| Ok(()))
}

fn sched_yield(mut caller: Ctx<'_>) -> HostResult<i32> {
    run(&mut caller, WasiRequest::SchedYield, |_, _| Ok(()))
}

/// `proc_exit` never returns: the run ends as failed, recorded. A run ends by `finish`,
/// with an output its terminal state's rules check; an exit code carries none.
fn proc_exit(mut caller: Ctx<'_>, code: i32) -> HostResult<()> {
    let code = code as u32;
    let halt = match answer_call(&mut caller, WasiRequest::ProcExit { code }) {
        Ok(_) => fail(caller.data(), |step| FailureReason::AgentAborted {
            step,
            reason: format!(
                "the agent exited (WASI {WASI_EXIT}({code})); an agent ends its run with finish"
            ),
        }),
        Err(halt) => halt,
    };
    Err(stop(&mut caller, halt))
}

/// Answers one WASI call ([`answer_call`]), lays the answer out in guest memory with
/// `layout` (the call's out-pointers), and returns its WASI error number (0: success).
fn run(
    caller: &mut Ctx<'_>,
    request: WasiRequest,
    layout: impl FnOnce(&mut Ctx<'_>, &WasiAnswer) -> Result<(), Halt>,
) -> HostResult<i32> {
    let result = answer_call(caller, request).and_then(|answer| {
        layout(caller, &answer)?;
        Ok(match answer {
            WasiAnswer::Errno(code) => i32::from(code),
            _ => 0,
        })
    });
    result.map_err(|halt| stop(caller, halt))
}

/// Stops the guest: the reason is kept in the host state, as the host call keeps it.
fn stop(caller: &mut Ctx<'_>, halt: Halt) -> wasmtime::Error {
    caller.data_mut().halt = Some(halt);
    wasmtime::Error::new(Halted)
}

fn fail(host: &HostState, reason: impl FnOnce(u32) -> FailureReason) -> Halt {
    Halt::Failed(Box::new(reason(host.step)))
}

/// Checks the budgets, numbers, enforces, answers and journals one WASI call.
fn answer_call(caller: &mut Ctx<'_>, request: WasiRequest) -> Result<WasiAnswer, Halt> {
    let fuel_left = caller.get_fuel().unwrap_or(0);
    let host = caller.data_mut();
    let budgets = host.policy.budgets;
    let fuel = budgets.fuel_per_step.saturating_sub(fuel_left);
    if host.host_calls >= budgets.max_host_calls {
        return Err(fail(host, |step| FailureReason::LimitExceeded {
            step,
            limit: Limit::HostCalls,
            value: u64::from(host.host_calls) + 1,
            max: u64::from(budgets.max_host_calls),
        }));
    }
    if let WasiRequest::RandomGet { len } = request
        && len > budgets.max_response_bytes
    {
        return Err(fail(host, |step| FailureReason::LimitExceeded {
            step,
            limit: Limit::ResponseBytes,
            value: u64::from(len),
            max: u64::from(budgets.max_response_bytes),
        }));
    }
    let call = u64::from(host.host_calls);
    host.host_calls += 1;
    let span = tracing::debug_span!(
        "wasi_call",
        call,
        step = host.step,
        function = request.function(),
        verdict = tracing::field::Empty,
    )
    .entered();
    let decision = enforce_wasi(
        &host.policy,
        &RunView {
            state: &host.state,
            transitioned_this_step: host.transitioned,
            escalated: host.escalated,
            finished: host.finished.is_some(),
            inferences: &host.inferences,
            evidence: host.evidence.as_ref(),
        },
        request.function(),
    );
    span.record("verdict", tracing::field::debug(decision.verdict));
    let answer = match decision.verdict {
        Verdict::Allow => answer(host, call, &request)?,
        Verdict::Deny | Verdict::Escalate => WasiAnswer::Denied,
    };
    let refused = match (decision.verdict, &decision.rule) {
        (Verdict::Allow, _) => None,
        (_, Rule::AwaitingReview { .. }) => Some(Halt::AwaitingReview),
        (_, rule) => Some(fail(host, |step| FailureReason::Denied {
            step,
            rule: rule.clone(),
        })),
    };
    host.push(RecordBody::Wasi(Box::new(WasiCall {
        step: host.step,
        call,
        fuel,
        request,
        decision,
        answer: answer.clone(),
    })))?;
    match refused {
        Some(halt) => Err(halt),
        None => Ok(answer),
    }
}

/// The answer to an allowed call: the same every time, except what the world answers.
fn answer(host: &mut HostState, call: u64, request: &WasiRequest) -> Result<WasiAnswer, Halt> {
    use WasiAnswer::{Count, Done, Errno, Sizes, Time};
    use WasiRequest as R;
    let clock = |clock: u32| clock == REALTIME || clock == MONOTONIC;
    Ok(match request {
        R::ArgsSizesGet | R::EnvironSizesGet => Sizes { count: 0, bytes: 0 },
        R::ArgsGet | R::EnvironGet | R::SchedYield | R::ProcExit { .. } => Done,
        R::ClockResGet { clock: id } if clock(*id) => Time(RESOLUTION_NS),
        R::ClockResGet { .. } => Errno(errno::INVAL),
        R::ClockTimeGet { clock: id, .. } if !clock(*id) => Errno(errno::INVAL),
        R::ClockTimeGet { .. } | R::RandomGet { .. } => from_world(host, call, request)?,
        R::FdWrite { fd: 1 | 2, bytes } => Count(bytes.len() as u64),
        // Standard input is empty: every read is at its end.
        R::FdRead { fd: 0, .. } => Count(0),
        R::FdFdstatGet { fd: fd @ 0..=2 } => WasiAnswer::Fdstat {
            filetype: CHARACTER_DEVICE,
            flags: 0,
            rights_base: if *fd == 0 {
                RIGHT_FD_READ
            } else {
                RIGHT_FD_WRITE
            },
            rights_inheriting: 0,
        },
        R::FdSeek { fd: 0..=2, .. } => Errno(errno::SPIPE),
        R::FdClose { fd: 0..=2 } => Done,
        // No other descriptor exists: no preopened directory, no file, no socket.
        R::FdWrite { .. }
        | R::FdRead { .. }
        | R::FdFdstatGet { .. }
        | R::FdPrestatGet { .. }
        | R::FdPrestatDirName { .. }
        | R::FdSeek { .. }
        | R::FdClose { .. } => Errno(errno::BADF),
    })
}

/// A clock's time or random bytes: live, or from the recording when re-executing.
fn from_world(host: &mut HostState, call: u64, request: &WasiRequest) -> Result<WasiAnswer, Halt> {
    match &mut host.effects {
        Effects::Recorded(recording) => recording
            .wasi_answer(call, request)
            .map_err(|d| Halt::Diverged(Box::new(d))),
        Effects::Live(_) | Effects::Fork { .. } => Ok(live(request)),
    }
}

fn live(request: &WasiRequest) -> WasiAnswer {
    let nanos = |secs: u64, subsec: u64| secs.saturating_mul(1_000_000_000).saturating_add(subsec);
    match request {
        WasiRequest::ClockTimeGet {
            clock: REALTIME, ..
        } => {
            let since = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            WasiAnswer::Time(nanos(since.as_secs(), u64::from(since.subsec_nanos())))
        }
        WasiRequest::ClockTimeGet { .. } => {
            // CLOCK_MONOTONIC: one origin for every process on this machine, so a run
            // resumed by another process still sees its clock go forward.
            let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
            let secs = u64::try_from(now.tv_sec).unwrap_or(0);
            let subsec = u64::try_from(now.tv_nsec).unwrap_or(0);
            WasiAnswer::Time(nanos(secs, subsec))
        }
        WasiRequest::RandomGet { len } => {
            let mut bytes = vec![0u8; *len as usize];
            match getrandom::fill(&mut bytes) {
                Ok(()) => WasiAnswer::Random(bytes),
                Err(_) => WasiAnswer::Errno(errno::IO),
            }
        }
        // Only clocks and randomness come from the world.
        _ => WasiAnswer::Errno(errno::INVAL),
    }
}

fn sizes(count: i32, size: i32) -> impl FnOnce(&mut Ctx<'_>, &WasiAnswer) -> Result<(), Halt> {
    move |caller, answer| match answer {
        WasiAnswer::Sizes { count: n, bytes } => {
            write(caller, count as u32, &n.to_le_bytes())?;
            write(caller, size as u32, &bytes.to_le_bytes())
        }
        _ => Ok(()),
    }
}

fn time(out: i32) -> impl FnOnce(&mut Ctx<'_>, &WasiAnswer) -> Result<(), Halt> {
    move |caller, answer| match answer {
        WasiAnswer::Time(ns) => write(caller, out as u32, &ns.to_le_bytes()),
        _ => Ok(()),
    }
}

fn counted(out: i32) -> impl FnOnce(&mut Ctx<'_>, &WasiAnswer) -> Result<(), Halt> {
    move |caller, answer| match answer {
        WasiAnswer::Count(n) => {
            let n = u32::try_from(*n).unwrap_or(u32::MAX);
            write(caller, out as u32, &n.to_le_bytes())
        }
        _ => Ok(()),
    }
}

/// The guest's `iovec` array at `iovs`: `count` (pointer, length) pairs.
fn buffers(caller: &Ctx<'_>, iovs: u32, count: u32) -> Result<Vec<(u32, u32)>, Halt> {
    let array = read(caller, iovs, count.saturating_mul(8))?;
    Ok(array
        .chunks_exact(8)
        .map(|pair| {
            let word = |at: usize| {
                pair.get(at..at + 4)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u32::from_le_bytes)
            };
            (word(0), word(4))
        })
        .collect())
}

/// The bytes of the guest's buffers, in order: what it writes, within
/// `budgets.max_request_bytes` for one write.
fn gather(caller: &Ctx<'_>, iovs: u32, count: u32) -> Result<Vec<u8>, Halt> {
    let buffers = buffers(caller, iovs, count)?;
    let total: u64 = buffers.iter().map(|(_, len)| u64::from(*len)).sum();
    let max = caller.data().policy.budgets.max_request_bytes;
    if total > u64::from(max) {
        return Err(fail(caller.data(), |step| FailureReason::LimitExceeded {
            step,
            limit: Limit::RequestBytes,
            value: total,
            max: u64::from(max),
        }));
    }
    let mut bytes = Vec::with_capacity(total as usize);
    for (ptr, len) in buffers {
        bytes.extend(read(caller, ptr, len)?);
    }
    Ok(bytes)
}

/// Guest memory, set at instantiation.
fn memory(caller: &Ctx<'_>) -> Result<wasmtime::Memory, Halt> {
    caller.data().memory.ok_or_else(|| {
        fail(caller.data(), |step| FailureReason::Fault {
            step,
            fault: GuestFault::NoMemory,
        })
    })
}

/// `len` bytes of guest memory at `ptr`, through the host call's bounds-checked accessor.
fn read(caller: &Ctx<'_>, ptr: u32, len: u32) -> Result<Vec<u8>, Halt> {
    let data = memory(caller)?.data(caller);
    guest_range(data.len(), ptr, len)
        .ok()
        .and_then(|range| data.get(range))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| out_of_bounds(caller.data(), ptr, len, data.len()))
}

/// Writes `bytes` into guest memory at `ptr`, bounds-checked.
fn write(caller: &mut Ctx<'_>, ptr: u32, bytes: &[u8]) -> Result<(), Halt> {
    let memory = memory(caller)?;
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    let data = memory.data_mut(&mut *caller);
    let size = data.len();
    match guest_range(size, ptr, len)
        .ok()
        .and_then(|range| data.get_mut(range))
    {
        Some(dst) => {
            dst.copy_from_slice(bytes);
            Ok(())
        }
        None => Err(out_of_bounds(caller.data(), ptr, len, size)),
    }
}

fn out_of_bounds(host: &HostState, ptr: u32, len: u32, size: usize) -> Halt {
    fail(host, |step| FailureReason::Fault {
        step,
        fault: GuestFault::OutOfBounds {
            ptr,
            len,
            memory_bytes: size as u64,
        },
    })
}
