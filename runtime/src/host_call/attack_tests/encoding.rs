//! The record layout before and after: postcard and JSON bytes, hostile length prefixes.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use warden_guest::wire::Response;

use crate::decision::{Decision, ModelInference, ReviewRecord, ReviewRefusal, Rule, Verdict};
use crate::digest::Digest;
use crate::journal::{InheritedEvidence, Parent, Record, RecordBody, RunStart, RunStartedV1};
use crate::outcome::{FailureReason, GuestFault, Outcome, Status};
use crate::policy::Budgets;

// ---------------------------------------------------------------------------------------
// The record layout before the change (ebaba3c^), field for field: the file format.
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum OldBody {
    RunStarted {
        run_id: String,
        agent: Digest,
        policy: Digest,
        policy_text: Digest,
        policy_name: String,
        policy_version: String,
        bindings: Digest,
        bindings_path: Option<String>,
        input: Digest,
        state: String,
        budgets: Budgets,
        parent: Option<Parent>,
        warden_version: String,
    },
    StepStarted {
        step: u32,
        state: String,
    },
    HostCall {
        step: u32,
        call: u64,
        state: String,
        fuel: u64,
        request: Vec<u8>,
        decision: Decision,
    },
    HostResponse {
        call: u64,
        response: Vec<u8>,
    },
    Transition {
        step: u32,
        from: String,
        to: String,
    },
    Checkpoint {
        step: u32,
        digest: Digest,
    },
    StepCommitted {
        step: u32,
        fuel: u64,
        state: String,
    },
    Outcome(Outcome),
    Started(Box<RunStart>),
    Inference(Box<ModelInference>),
    Inherited(Box<InheritedEvidence>),
    Review(Box<ReviewRecord>),
    ReviewPending(Box<ReviewRecord>),
    ReviewRefused(Box<ReviewRefusal>),
}

pub(super) fn allow() -> Decision {
    Decision {
        verdict: Verdict::Allow,
        rule: Rule::RunProtocol,
    }
}

fn v1() -> RunStartedV1 {
    RunStartedV1 {
        run_id: "r-1".into(),
        agent: Digest([1; 32]),
        policy: Digest([2; 32]),
        policy_text: Digest([3; 32]),
        policy_name: "p".into(),
        policy_version: "1".into(),
        bindings: Digest([4; 32]),
        bindings_path: Some("/b".into()),
        input: Digest([5; 32]),
        state: "start".into(),
        budgets: Budgets::DEFAULT,
        parent: Some(Parent {
            run_id: "parent".into(),
            step: 3,
        }),
        warden_version: "0.0.0".into(),
    }
}

fn old_v1() -> OldBody {
    let v = v1();
    OldBody::RunStarted {
        run_id: v.run_id,
        agent: v.agent,
        policy: v.policy,
        policy_text: v.policy_text,
        policy_name: v.policy_name,
        policy_version: v.policy_version,
        bindings: v.bindings,
        bindings_path: v.bindings_path,
        input: v.input,
        state: v.state,
        budgets: v.budgets,
        parent: v.parent,
        warden_version: v.warden_version,
    }
}

fn outcome() -> Outcome {
    Outcome {
        status: Status::Failed,
        state: "start".into(),
        output: Some("{}".into()),
        reason: Some(FailureReason::Fault {
            step: 2,
            fault: GuestFault::NoPendingResponse,
        }),
        steps: 2,
        host_calls: 7,
        fuel: 99,
    }
}

/// Pairs of (new body, old body) that must encode identically (the step journal's own
/// encoding of host calls and responses is pinned against these bodies in
/// `journal::bodies`).
fn pairs() -> Vec<(RecordBody, OldBody)> {
    let mut pairs = Vec::new();
    for len in [0usize, 1, 127, 128, 300, 16_383, 16_384, 70_000, 200_000] {
        let raw: Vec<u8> = (0..len).map(|i| (i * 31 % 256) as u8).collect();
        let request = Bytes::copy_from_slice(&raw);
        pairs.push((
            RecordBody::HostCall {
                step: 1,
                call: len as u64,
                state: Arc::from("st\u{e9}"),
                fuel: 5,
                request,
                decision: allow(),
            },
            OldBody::HostCall {
                step: 1,
                call: len as u64,
                state: "st\u{e9}".into(),
                fuel: 5,
                request: raw.clone(),
                decision: allow(),
            },
        ));
        let text: String = raw.iter().map(|b| char::from(b'a' + b % 26)).collect();
        let response =
            Bytes::from(postcard::to_allocvec(&Response::State(text.clone())).expect("encodes"));
        let old = postcard::to_allocvec(&Response::State(text)).expect("encodes");
        pairs.push((
            RecordBody::HostResponse {
                call: len as u64,
                response,
            },
            OldBody::HostResponse {
                call: len as u64,
                response: old,
            },
        ));
    }
    // The empty byte strings, as `Default` (a static empty `Bytes`) and from a buffer.
    pairs.push((
        RecordBody::HostResponse {
            call: 0,
            response: Bytes::new(),
        },
        OldBody::HostResponse {
            call: 0,
            response: Vec::new(),
        },
    ));
    pairs.push((
        RecordBody::HostCall {
            step: 0,
            call: 0,
            state: Arc::from(""),
            fuel: 0,
            request: Bytes::copy_from_slice(&[]),
            decision: allow(),
        },
        OldBody::HostCall {
            step: 0,
            call: 0,
            state: String::new(),
            fuel: 0,
            request: Vec::new(),
            decision: allow(),
        },
    ));
    pairs.push((RecordBody::RunStarted(Box::new(v1())), old_v1()));
    pairs.push((
        RecordBody::RunStarted(Box::new(RunStartedV1 {
            bindings_path: None,
            parent: None,
            ..v1()
        })),
        {
            let mut old = old_v1();
            if let OldBody::RunStarted {
                bindings_path,
                parent,
                ..
            } = &mut old
            {
                *bindings_path = None;
                *parent = None;
            }
            old
        },
    ));
    pairs.push((
        RecordBody::Outcome(Box::new(outcome())),
        OldBody::Outcome(outcome()),
    ));
    pairs.push((
        RecordBody::StepStarted {
            step: 4,
            state: "s".into(),
        },
        OldBody::StepStarted {
            step: 4,
            state: "s".into(),
        },
    ));
    pairs.push((
        RecordBody::StepCommitted {
            step: 4,
            fuel: 8,
            state: "s".into(),
        },
        OldBody::StepCommitted {
            step: 4,
            fuel: 8,
            state: "s".into(),
        },
    ));
    pairs
}

/// postcard: every changed variant encodes byte for byte as before, decodes from the old
/// bytes to the same value, and the old layout decodes the new bytes; so does a whole
/// `Record` (the digest chain is over its postcard bytes).
#[test]
fn held_postcard_bytes_are_those_of_the_vec_layout() {
    for (new, old) in pairs() {
        let new_bytes = postcard::to_allocvec(&new).expect("new encodes");
        let old_bytes = postcard::to_allocvec(&old).expect("old encodes");
        assert_eq!(new_bytes, old_bytes, "postcard of {}", new.kind());
        let decoded: RecordBody = postcard::from_bytes(&old_bytes).expect("old bytes decode");
        assert_eq!(decoded, new, "old bytes decode to the new value");
        let back: OldBody = postcard::from_bytes(&new_bytes).expect("new bytes decode old");
        assert_eq!(back, old);
        let record = Record {
            index: 3,
            prev: Digest([7; 32]),
            at_ms: 11,
            body: new.clone(),
        };
        let again: Record = postcard::from_bytes(&postcard::to_allocvec(&record).expect("encodes"))
            .expect("record decodes");
        assert_eq!(again.digest(), record.digest());
        assert_eq!(again, record);
    }
}

/// serde_json (the CLI's `--json` views, timelines and exports): the same JSON as before
/// (byte strings as arrays of numbers, the state a string, the boxed records unchanged),
/// and the old JSON reads back.
#[test]
fn held_json_is_that_of_the_vec_layout() {
    for (new, old) in pairs() {
        let new_json = serde_json::to_value(&new).expect("new to JSON");
        let old_json = serde_json::to_value(&old).expect("old to JSON");
        assert_eq!(new_json, old_json, "JSON of {}", new.kind());
        assert_eq!(
            serde_json::to_string(&new).expect("text"),
            serde_json::to_string(&old).expect("text")
        );
        let read: RecordBody = serde_json::from_value(old_json).expect("old JSON reads");
        assert_eq!(read, new);
    }
    // Empty byte strings are `[]`, not `null` or `""`.
    let empty = RecordBody::HostResponse {
        call: 0,
        response: Bytes::new(),
    };
    assert_eq!(
        serde_json::to_string(&empty).expect("text"),
        r#"{"HostResponse":{"call":0,"response":[]}}"#
    );
}

/// A hostile journal writer: length prefixes far beyond the bytes there, truncated
/// strings, a state that is not UTF-8. Every one is a decoding error, never a panic or a
/// huge allocation.
#[test]
fn held_hostile_length_prefixes_are_decoding_errors() {
    // HostResponse = variant 3, call 0, then a varint length of u32::MAX and 3 bytes.
    let mut bytes = vec![3u8, 0];
    bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    bytes.extend_from_slice(b"abc");
    assert!(postcard::from_bytes::<RecordBody>(&bytes).is_err());
    // A u64::MAX-sized length (10-byte varint).
    let mut bytes = vec![3u8, 0];
    bytes.extend_from_slice(&[0xff; 9]);
    bytes.push(0x01);
    assert!(postcard::from_bytes::<RecordBody>(&bytes).is_err());
    // HostCall whose state is not UTF-8.
    let good = postcard::to_allocvec(&OldBody::HostCall {
        step: 1,
        call: 2,
        state: "ab".into(),
        fuel: 3,
        request: vec![1, 2],
        decision: allow(),
    })
    .expect("encodes");
    let mut bad = good.clone();
    // variant, step, call, len(2), 'a', 'b', ...: make 'a' an invalid UTF-8 byte.
    bad[4] = 0xff;
    assert!(postcard::from_bytes::<RecordBody>(&bad).is_err());
    assert!(postcard::from_bytes::<OldBody>(&bad).is_err());
    // Truncated anywhere: an error.
    for cut in 0..good.len() {
        assert!(
            postcard::from_bytes::<RecordBody>(&good[..cut]).is_err(),
            "cut {cut}"
        );
    }
}

/// A difference between `Bytes` and `Vec<u8>` under serde_json that the change brings:
/// `Vec<u8>` refuses a JSON string where bytes are expected, `Bytes` takes its UTF-8
/// bytes. Only matters if something reads records from JSON (nothing in the crate or CLI
/// does today: journals are postcard); recorded here as a documented difference.
#[test]
fn note_json_strings_are_accepted_as_bytes_now() {
    let text = r#"{"HostResponse":{"call":0,"response":"abc"}}"#;
    assert!(serde_json::from_str::<OldBody>(text).is_err());
    let read = serde_json::from_str::<RecordBody>(text).expect("Bytes takes a JSON string");
    assert_eq!(
        read,
        RecordBody::HostResponse {
            call: 0,
            response: Bytes::from_static(b"abc"),
        }
    );
    // The same for a request, and the state may not be a number.
    let mut value = serde_json::to_value(RecordBody::HostCall {
        step: 1,
        call: 0,
        state: Arc::from("s"),
        fuel: 0,
        request: Bytes::from_static(&[1]),
        decision: allow(),
    })
    .expect("to JSON");
    value["HostCall"]["request"] = serde_json::Value::String("\u{1}".into());
    let old = serde_json::from_value::<OldBody>(value.clone());
    let new = serde_json::from_value::<RecordBody>(value);
    assert!(old.is_err(), "old layout: {old:?}");
    assert!(new.is_ok(), "new layout: {new:?}");
}
