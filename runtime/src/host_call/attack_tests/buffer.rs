//! The step journal's encoded records: memory a guest can make the host hold for them,
//! and the recording's lookup by request bytes.

use std::sync::Arc;

use bytes::Bytes;
use warden_guest::wire::{LogLevel, Request, Response};

use super::super::state::StepJournal;
use crate::digest::Digest;
use crate::journal::{HostCallRef, Record, RecordBody};
use crate::recording::{Answering, Recording};

use super::encoding::allow;

/// Answering by request bytes (counterfactual replay) looks `Bytes` keys up by `&[u8]`:
/// the hashes agree, identical requests get their answers in order, a request differing
/// in one byte gets none.
#[test]
fn held_recording_by_request_bytes() {
    let request = postcard::to_allocvec(&Request::Tool {
        name: "t".into(),
        args: "{\"a\":1}".into(),
    })
    .expect("encodes");
    let mut records = Vec::new();
    for (call, answer) in [(0u64, "one"), (1, "two")] {
        records.push(RecordBody::HostCall {
            step: 1,
            call,
            state: Arc::from("start"),
            fuel: 0,
            request: Bytes::copy_from_slice(&request),
            decision: allow(),
        });
        records.push(RecordBody::HostResponse {
            call,
            response: postcard::to_allocvec(&Response::Tool(Ok(answer.into())))
                .expect("encodes")
                .into(),
        });
    }
    let records: Vec<Record> = records
        .into_iter()
        .enumerate()
        .map(|(i, body)| Record {
            index: i as u64,
            prev: Digest::ZERO,
            at_ms: 0,
            body,
        })
        .collect();
    let mut recording = Recording::of(&records, Answering::ByRequest);
    let mut changed = request.clone();
    if let Some(last) = changed.last_mut() {
        *last ^= 1;
    }
    assert!(recording.answer(9, &changed).is_none());
    let first = recording.answer(7, &request).expect("first answer");
    let second = recording.answer(8, &request).expect("second answer");
    assert!(recording.answer(9, &request).is_none());
    let decode = |b: &Bytes| postcard::from_bytes::<Response>(b).expect("decodes");
    assert_eq!(decode(&first.0), Response::Tool(Ok("one".into())));
    assert_eq!(decode(&second.0), Response::Tool(Ok("two".into())));
}

mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static LIVE: Cell<isize> = const { Cell::new(0) };
    }

    pub(super) struct Counting;

    fn add(bytes: isize) {
        let _ = LIVE.try_with(|live| live.set(live.get() + bytes));
    }

    /// Bytes allocated and not yet freed by this thread.
    pub(super) fn live() -> isize {
        LIVE.try_with(Cell::get).unwrap_or(0)
    }

    // SAFETY: every call is forwarded to `System` unchanged; only a counter is kept.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: as the caller promised for `layout`.
            let ptr = unsafe { System.alloc(layout) };
            if !ptr.is_null() {
                add(layout.size() as isize);
            }
            ptr
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: as the caller promised for `layout`.
            let ptr = unsafe { System.alloc_zeroed(layout) };
            if !ptr.is_null() {
                add(layout.size() as isize);
            }
            ptr
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: `ptr` was allocated by `System` with `layout` (above).
            unsafe { System.dealloc(ptr, layout) };
            add(-(layout.size() as isize));
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: as the caller promised for `ptr`, `layout` and `new_size`.
            let new = unsafe { System.realloc(ptr, layout, new_size) };
            if !new.is_null() {
                add(new_size as isize - layout.size() as isize);
            }
            new
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;
}

/// The host calls of a guest's step of `rounds` rounds, each a log request of `small`
/// bytes, its `Ack`, one of `big` bytes, its `Ack`, through the step journal: returns
/// (the most memory its records held, the bytes of their encodings, the journal bytes
/// the step counted for them), and checks that taking them leaves nothing held.
fn held_by(rounds: usize, small: usize, big: usize) -> (isize, usize, u64) {
    let log = |message: String| Request::Log {
        level: LogLevel::Info,
        message,
    };
    let small_request = postcard::to_allocvec(&log("s".repeat(small))).expect("encodes");
    let big_request = postcard::to_allocvec(&log("b".repeat(big))).expect("encodes");
    let decision = allow();
    let base = counting::live();
    let mut journal = StepJournal::default();
    let mut most = 0;
    for call in 0..rounds as u64 * 2 {
        let request = if call % 2 == 0 {
            &small_request
        } else {
            &big_request
        };
        let host_call = HostCallRef {
            step: 1,
            call,
            state: "start",
            fuel: 0,
            request,
            decision: &decision,
        };
        journal
            .push_host_call(host_call, u64::MAX, 1)
            .expect("pushed");
        journal
            .push_response(|b| b.push_response(call, &Response::Ack), u64::MAX, 1)
            .expect("pushed");
        most = most.max(counting::live() - base);
    }
    let counted = journal.bytes;
    let records = journal.take();
    let encoded = records.byte_len();
    assert_eq!(records.len(), rounds * 4);
    drop(records);
    assert!(counting::live() - base <= 0, "freed again");
    (most, encoded, counted)
}

/// A guest that alternates small requests with large ones of every size around the
/// buffer's growth steps cannot make the host hold much more than the journal bytes it
/// is charged for: a step's records grow by a quarter at a time (not doubling), so what
/// they hold stays within 1.3 times the count, plus 64 KiB.
#[test]
fn held_memory_stays_within_the_journal_count() {
    let mut worst = (0.0f64, 0usize);
    for big in (0..40).map(|i| 1 << (i % 20)).chain(65_500..65_540) {
        let (most, encoded, counted) = held_by(64, 4, big);
        let ratio = most as f64 / counted as f64;
        if ratio > worst.0 {
            worst = (ratio, big);
        }
        assert!(
            encoded as u64 <= counted,
            "big {big}: {encoded} encoded, {counted} counted"
        );
        assert!(
            (most as u64) <= counted + counted * 3 / 10 + 65_536,
            "big {big}: held {most} bytes for {encoded} encoded bytes, {counted} counted"
        );
    }
    let (most, encoded, counted) = held_by(64, 4, worst.1);
    eprintln!(
        "worst: message {} bytes: held {most} bytes for {encoded} encoded, {counted} counted: {:.2}x",
        worst.1, worst.0
    );
}

/// Between steps the step journal holds nothing: the records went to the commit.
#[test]
fn held_memory_kept_between_steps_is_none() {
    let mut journal = StepJournal::default();
    for len in [1usize, 70_000, 3, 1 << 20, 10] {
        let request = vec![7u8; len];
        let decision = allow();
        let base = counting::live();
        let host_call = HostCallRef {
            step: 1,
            call: 0,
            state: "start",
            fuel: 0,
            request: &request,
            decision: &decision,
        };
        journal
            .push_host_call(host_call, u64::MAX, 1)
            .expect("pushed");
        drop(journal.take());
        assert!(
            counting::live() - base <= 0,
            "{len}: kept memory between steps"
        );
    }
}
