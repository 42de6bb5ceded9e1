//! Red-team attacks on the host call's records with real guests (see
//! `host_call::attack_tests` for the step journal's memory and the encodings): records of earlier
//! steps keep their bytes, a response cannot be read after its step, the state recorded
//! with each call follows transitions and checkpoint restores, and replay sees a changed
//! request, response or state.

use std::sync::Arc;

use bytes::Bytes;
use warden_guest::wire::{self, LogLevel, Request, Response};

use crate::agent::Agent;
use crate::bindings::Bindings;
use crate::digest::Digest;
use crate::edition::Edition;
use crate::effects::Effects;
use crate::host_call::HostState;
use crate::journal::{Record, RecordBody};
use crate::outcome::{FailureReason, GuestFault};
use crate::policy::Policy;
use crate::recording::Expected;
use crate::step::{Execution, StepEnd};

/// The scripted guest really compares what it reads: a wrong expectation traps.
#[test]
fn control_the_scripted_guest_traps_on_a_wrong_response() {
    let mut wrong = call(&Request::State, Some(&Response::State("start".into())));
    if let Some(expect) = &mut wrong.expect
        && let Some(last) = expect.last_mut()
    {
        *last ^= 1;
    }
    let agent = agent(&[vec![wrong]]);
    let mut exec = execution(&agent, "{}");
    let end = exec.run_step(1);
    assert!(
        matches!(end, StepEnd::Failed(FailureReason::Trapped { .. })),
        "{end:?}"
    );
}

/// One host call of a scripted guest: the request it sends, and (if `read`) the response
/// it reads and compares with `expect` byte for byte (trapping on any difference).
struct Call {
    request: Vec<u8>,
    read: bool,
    expect: Option<Vec<u8>>,
}

fn call(request: &Request, expect: Option<&Response>) -> Call {
    Call {
        request: postcard::to_allocvec(request).expect("encodes"),
        read: true,
        expect: expect.map(|r| postcard::to_allocvec(r).expect("encodes")),
    }
}

fn data(offset: usize, bytes: &[u8]) -> String {
    let mut text = format!("(data (i32.const {offset}) \"");
    for b in bytes {
        text.push_str(&format!("\\{b:02x}"));
    }
    text.push_str("\")\n");
    text
}

/// A guest whose step number `n` (counted in a global) makes the calls of `steps[n-1]`.
fn agent(steps: &[Vec<Call>]) -> Agent {
    let mut offset = 1024usize;
    let mut segments = String::new();
    let mut body = String::new();
    let mut largest = 0usize;
    for (index, calls) in steps.iter().enumerate() {
        let mut code = String::new();
        for c in calls {
            let at = offset;
            segments.push_str(&data(at, &c.request));
            offset += c.request.len() + 16;
            code.push_str(&format!(
                "(local.set $n (call $h (i32.const {}) (i32.const {at}) (i32.const {})))\n",
                wire::OP_CALL,
                c.request.len()
            ));
            if let Some(expect) = &c.expect {
                largest = largest.max(expect.len());
                let e = offset;
                segments.push_str(&data(e, expect));
                offset += expect.len() + 16;
                code.push_str(&format!(
                    "(if (i64.ne (local.get $n) (i64.const {})) (then unreachable))\n",
                    expect.len()
                ));
                if c.read {
                    code.push_str(&format!(
                        "(drop (call $h (i32.const {}) (global.get $resp) (i32.const 0x7fffffff)))\n\
                         (if (i32.eqz (call $eq (global.get $resp) (i32.const {e}) (i32.const {}))) (then unreachable))\n",
                        wire::OP_READ_RESPONSE,
                        expect.len()
                    ));
                }
            } else if c.read {
                code.push_str(&format!(
                    "(drop (call $h (i32.const {}) (global.get $resp) (i32.const 0x7fffffff)))\n",
                    wire::OP_READ_RESPONSE
                ));
            }
        }
        body.push_str(&format!(
            "(if (i32.eq (global.get $s) (i32.const {})) (then\n{code}))\n",
            index + 1
        ));
    }
    let resp = offset.next_multiple_of(16);
    let pages = (resp + largest.max(1 << 20)).div_ceil(65_536) + 1;
    let wat = format!(
        r#"(module
  (import "warden" "host_call" (func $h (param i32 i32 i32) (result i64)))
  (memory (export "memory") {pages})
  (global $s (mut i32) (i32.const 0))
  (global $resp i32 (i32.const {resp}))
  (func $eq (param $a i32) (param $b i32) (param $n i32) (result i32)
    (block $done (loop $l
      (br_if $done (i32.eqz (local.get $n)))
      (if (i32.ne (i32.load8_u (local.get $a)) (i32.load8_u (local.get $b)))
        (then (return (i32.const 0))))
      (local.set $a (i32.add (local.get $a) (i32.const 1)))
      (local.set $b (i32.add (local.get $b) (i32.const 1)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $l)))
    (i32.const 1))
  (func (export "warden_step") (result i32) (local $n i64)
    (global.set $s (i32.add (global.get $s) (i32.const 1)))
    {body}
    (i32.const 0))
  {segments})"#
    );
    Agent::from_bytes(wat.as_bytes()).expect("the scripted guest loads")
}

const POLICY: &str = r#"
[policy]
name = "attack"
version = "1"
initial = "start"
[budgets]
fuel_per_step = 400_000_000
memory_bytes = 67_108_864
max_host_calls = 1_000
max_request_bytes = 4_194_304
max_response_bytes = 4_194_304
max_journal_bytes = 268_435_456
[states.start]
transitions = ["start", "mid", "done"]
[states.mid]
transitions = ["mid", "done"]
[states.done]
terminal = true
"#;

fn policy() -> Arc<Policy> {
    Arc::new(Policy::parse(POLICY, "attack").expect("policy parses"))
}

fn execution(agent: &Agent, input: &str) -> Execution {
    let host = HostState::new(
        "attack",
        policy(),
        input,
        Effects::Live(Arc::new(Bindings::empty())),
        Edition::CURRENT,
    );
    Execution::instantiate(agent, host).expect("instantiates")
}

fn log(message: String) -> Request {
    Request::Log {
        level: LogLevel::Info,
        message,
    }
}

/// The `(request, response)` bytes of the host calls among `records`.
fn calls_of(records: &[RecordBody]) -> Vec<(Bytes, Option<Bytes>)> {
    let mut out: Vec<(Bytes, Option<Bytes>)> = Vec::new();
    for body in records {
        match body {
            RecordBody::HostCall { request, .. } => out.push((request.clone(), None)),
            RecordBody::HostResponse { response, .. } => {
                if let Some(last) = out.last_mut() {
                    last.1 = Some(response.clone());
                }
            }
            _ => {}
        }
    }
    out
}

fn ok(end: &StepEnd, what: &str) {
    assert!(
        matches!(end, StepEnd::Continue),
        "{what}: step ended {end:?}"
    );
}

/// The records of step 1 are held (as a commit holds them) while steps 2 and 3 write
/// small requests, requests over a chunk, and responses over the room left; the guest
/// reads and compares every response; step 1's records never change, and every
/// request record is exactly what the guest sent.
#[test]
fn held_records_of_an_earlier_step_keep_their_bytes() {
    let input = format!("{{\"k\":\"{}\"}}", "i".repeat(150_000));
    let big = "L".repeat(100_000);
    let steps = vec![
        vec![
            call(&Request::State, Some(&Response::State("start".into()))),
            call(&log("a".repeat(65_000)), Some(&Response::Ack)),
            call(&Request::Input, Some(&Response::Input(input.clone()))),
        ],
        vec![
            call(&log(big.clone()), Some(&Response::Ack)),
            call(&Request::State, Some(&Response::State("start".into()))),
            call(&Request::Input, Some(&Response::Input(input.clone()))),
            call(&log("z".repeat(10)), Some(&Response::Ack)),
        ],
        (0..200)
            .map(|i| call(&log(format!("{i}").repeat(i * 7)), Some(&Response::Ack)))
            .collect(),
    ];
    let expected_requests: Vec<Vec<Vec<u8>>> = steps
        .iter()
        .map(|s| s.iter().map(|c| c.request.clone()).collect())
        .collect();
    let agent = agent(&steps);
    let mut exec = execution(&agent, &input);
    let mut held: Vec<(Vec<RecordBody>, Vec<RecordBody>)> = Vec::new();
    for step in 1..=3u32 {
        let end = exec.run_step(step);
        ok(&end, &format!("step {step}"));
        let records = exec.take_records().decode();
        // A deep copy of what the records said when they were taken.
        let snapshot: Vec<RecordBody> = records
            .iter()
            .map(|b| {
                postcard::from_bytes(&postcard::to_allocvec(b).expect("encodes")).expect("decodes")
            })
            .collect();
        let got = calls_of(&records);
        let sent = &expected_requests[step as usize - 1];
        assert_eq!(got.len(), sent.len(), "step {step}: calls");
        for (i, ((request, response), sent)) in got.iter().zip(sent).enumerate() {
            assert_eq!(
                &request[..],
                &sent[..],
                "step {step} call {i}: request record"
            );
            assert!(response.is_some(), "step {step} call {i}: response record");
        }
        held.push((records, snapshot));
        for (n, (records, snapshot)) in held.iter().enumerate() {
            assert_eq!(
                records,
                snapshot,
                "after step {step}: records of step {}",
                n + 1
            );
        }
    }
}

/// A response that is read in a later step (its records were taken between) is no
/// response: a typed fault, never the bytes of a record since reused.
#[test]
fn held_a_response_is_not_readable_after_its_step() {
    let wat = format!(
        r#"(module
  (import "warden" "host_call" (func $h (param i32 i32 i32) (result i64)))
  (memory (export "memory") 2)
  (global $s (mut i32) (i32.const 0))
  (func (export "warden_step") (result i32)
    (global.set $s (i32.add (global.get $s) (i32.const 1)))
    (if (i32.eq (global.get $s) (i32.const 1))
      (then (drop (call $h (i32.const {call}) (i32.const 0) (i32.const 1)))))
    (if (i32.eq (global.get $s) (i32.const 2))
      (then (drop (call $h (i32.const {read}) (i32.const 4096) (i32.const 65536)))))
    (i32.const 0))
  (data (i32.const 0) "\01"))"#,
        call = wire::OP_CALL,
        read = wire::OP_READ_RESPONSE,
    );
    let agent = Agent::from_bytes(wat.as_bytes()).expect("loads");
    let mut exec = execution(&agent, "{}");
    let end = exec.run_step(1);
    ok(&end, "step 1");
    drop(exec.take_records().decode());
    let end = exec.run_step(2);
    assert!(
        matches!(
            end,
            StepEnd::Failed(FailureReason::Fault {
                fault: GuestFault::NoPendingResponse,
                ..
            })
        ),
        "a read in a later step: {end:?}"
    );
}

/// The state recorded with each call is the state when the call was made: before and
/// after a transition, in the step after, and after a checkpoint restore into a fresh
/// instance (whose host starts in the policy's initial state).
#[test]
fn held_call_states_follow_transitions_and_restores() {
    let transition = Request::Transition {
        to: "mid".into(),
        evidence: None,
    };
    let steps = vec![
        vec![
            call(&Request::State, Some(&Response::State("start".into()))),
            call(&transition, Some(&Response::Transitioned("mid".into()))),
            call(&Request::State, Some(&Response::State("mid".into()))),
        ],
        vec![call(&Request::State, Some(&Response::State("mid".into())))],
    ];
    let agent = agent(&steps);
    let mut exec = execution(&agent, "{}");
    let (_, capture0) = exec.checkpoint().expect("checkpoint 0");
    ok(&exec.run_step(1), "step 1");
    let step1 = exec.take_records().decode();
    let states: Vec<String> = step1
        .iter()
        .filter_map(|b| match b {
            RecordBody::HostCall { state, .. } => Some(state.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(states, ["start", "start", "mid"]);
    let (checkpoint, capture) = exec.checkpoint().expect("checkpoint");
    ok(&exec.run_step(2), "step 2");
    let step2 = exec.take_records().decode();
    // The state of step 1's records did not follow the host's later state.
    assert_eq!(
        step1
            .iter()
            .filter_map(|b| match b {
                RecordBody::HostCall { state, .. } => Some(state.to_string()),
                _ => None,
            })
            .collect::<Vec<_>>(),
        ["start", "start", "mid"]
    );
    // A fresh instance restored from the checkpoint after step 1.
    let mut pages = std::collections::HashMap::new();
    for page in capture0.changed.iter().chain(&capture.changed) {
        pages.insert(page.digest, page.bytes.to_vec());
    }
    let mut fresh = execution(&agent, "{}");
    assert_eq!(&*fresh.host().state, "start");
    fresh
        .restore(&checkpoint, |digest| Ok(pages.get(digest).cloned()))
        .expect("restores");
    assert_eq!(&*fresh.host().state, "mid");
    ok(&fresh.run_step(2), "restored step 2");
    let restored = fresh.take_records().decode();
    assert_eq!(restored, step2, "restored step 2 records as the original's");
    assert!(restored.iter().any(|b| matches!(
        b,
        RecordBody::HostCall { state, .. } if &**state == "mid"
    )));
}

/// Exact replay against the records of a run with one request byte, one response byte or
/// one state character changed: each is a divergence; the unchanged records are not.
#[test]
fn held_replay_sees_a_changed_request_response_or_state() {
    let steps = vec![vec![
        call(&Request::State, Some(&Response::State("start".into()))),
        call(&log("hello".repeat(20_000)), Some(&Response::Ack)),
        call(&Request::Input, Some(&Response::Input("{\"a\":1}".into()))),
    ]];
    let agent = agent(&steps);
    let mut exec = execution(&agent, "{\"a\":1}");
    ok(&exec.run_step(1), "recorded step");
    let bodies = exec.take_records().decode();
    let as_records = |bodies: &[RecordBody]| -> Vec<Record> {
        bodies
            .iter()
            .enumerate()
            .map(|(i, body)| Record {
                index: i as u64,
                prev: Digest::ZERO,
                at_ms: 0,
                body: body.clone(),
            })
            .collect()
    };
    let replay = |bodies: &[RecordBody]| -> StepEnd {
        let mut exec = execution(&agent, "{\"a\":1}");
        exec.host_mut().journal.expected = Some(Expected::new(&as_records(bodies)));
        exec.run_step(1)
    };
    ok(&replay(&bodies), "unchanged replay");
    let flip = |bytes: &Bytes, at: usize| -> Bytes {
        let mut v = bytes.to_vec();
        if let Some(b) = v.get_mut(at) {
            *b ^= 0x01;
        }
        Bytes::from(v)
    };
    let mut changes: Vec<(String, Vec<RecordBody>)> = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        match body {
            RecordBody::HostCall {
                step,
                call,
                state,
                fuel,
                request,
                decision,
            } => {
                for at in [request.len().saturating_sub(1), request.len() / 2] {
                    let mut changed = bodies.clone();
                    changed[i] = RecordBody::HostCall {
                        step: *step,
                        call: *call,
                        state: state.clone(),
                        fuel: *fuel,
                        request: flip(request, at),
                        decision: decision.clone(),
                    };
                    changes.push((format!("request byte {at} of record {i}"), changed));
                }
                let mut changed = bodies.clone();
                changed[i] = RecordBody::HostCall {
                    step: *step,
                    call: *call,
                    state: Arc::from(format!("{state}x").as_str()),
                    fuel: *fuel,
                    request: request.clone(),
                    decision: decision.clone(),
                };
                changes.push((format!("state of record {i}"), changed));
            }
            RecordBody::HostResponse { call, response } => {
                let mut changed = bodies.clone();
                changed[i] = RecordBody::HostResponse {
                    call: *call,
                    response: flip(response, response.len().saturating_sub(1)),
                };
                changes.push((format!("last response byte of record {i}"), changed));
                let mut changed = bodies.clone();
                let mut longer = response.to_vec();
                longer.push(0);
                changed[i] = RecordBody::HostResponse {
                    call: *call,
                    response: Bytes::from(longer),
                };
                changes.push((format!("response of record {i} one byte longer"), changed));
            }
            _ => {}
        }
    }
    assert!(changes.len() >= 9);
    for (what, changed) in changes {
        let end = replay(&changed);
        assert!(
            matches!(end, StepEnd::Diverged(_)),
            "{what}: replay ended {end:?}, not a divergence"
        );
    }
}

/// Journal budget against memory: a step of many requests, each held by its record; the
/// journal bytes counted cover every byte of the guest's requests and responses in the
/// step's records.
#[test]
fn held_journal_count_covers_request_bytes() {
    let steps = vec![
        (0..50)
            .map(|i| {
                call(
                    &log("q".repeat(if i % 2 == 0 { 1 } else { 65_530 })),
                    Some(&Response::Ack),
                )
            })
            .collect::<Vec<_>>(),
    ];
    let agent = agent(&steps);
    let mut exec = execution(&agent, "{}");
    ok(&exec.run_step(1), "step");
    let counted = exec.host().journal.bytes;
    let records = exec.take_records().decode();
    let held: u64 = calls_of(&records)
        .iter()
        .map(|(q, r)| (q.len() + r.as_ref().map_or(0, Bytes::len)) as u64)
        .sum();
    assert!(counted >= held, "counted {counted} < held {held}");
}
