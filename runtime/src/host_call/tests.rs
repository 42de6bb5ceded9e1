//! Tests of the host call: bounds checks and the request decoder.

use super::*;

#[test]
fn guest_ranges_are_bounds_checked_without_overflow() {
    assert_eq!(guest_range(100, 10, 20), Ok(10..30));
    assert_eq!(guest_range(100, 100, 0), Ok(100..100));
    assert!(guest_range(100, 90, 20).is_err());
    assert!(
        guest_range(100, u32::MAX, 2).is_err(),
        "ptr + len wraps past 2^32"
    );
    assert!(guest_range(usize::MAX, u32::MAX, u32::MAX).is_err());
}

#[test]
fn trailing_and_garbage_bytes_are_malformed() {
    let mut bytes = postcard::to_allocvec(&Request::Input).expect("encode");
    assert_eq!(decode_request(&bytes), Ok(Request::Input));
    bytes.push(0);
    assert!(matches!(
        decode_request(&bytes),
        Err(GuestFault::MalformedRequest { .. })
    ));
    assert!(matches!(
        decode_request(&[0xff; 9]),
        Err(GuestFault::MalformedRequest { .. })
    ));
    assert!(matches!(
        decode_request(&[]),
        Err(GuestFault::MalformedRequest { .. })
    ));
}

#[test]
fn over_long_integers_are_refused_as_non_canonical() {
    // `Request::State` is variant 1: one byte, 0x01; 0x81 0x00 is the same 1, over-long.
    assert_eq!(decode_request(&[0x01]), Ok(Request::State));
    assert!(matches!(
        decode_request(&[0x81, 0x00]),
        Err(GuestFault::MalformedRequest { error, .. }) if error.contains("non-canonical")
    ));
    // A string's length prefix, over-long: `Abort { reason: "x" }`.
    let canonical = postcard::to_allocvec(&Request::Abort { reason: "x".into() }).expect("encode");
    assert_eq!(canonical, [0x07, 0x01, b'x']);
    assert!(decode_request(&[0x07, 0x81, 0x00, b'x']).is_err());
}

mod properties {
    use proptest::prelude::*;
    use warden_guest::InferenceId;
    use warden_guest::wire::{LogLevel, Request, Response};

    use super::super::decode_request;
    use crate::outcome::GuestFault;

    fn text() -> impl Strategy<Value = String> {
        any::<String>()
    }

    /// Every variant of [`Request`], with arbitrary Unicode in every string.
    fn request() -> impl Strategy<Value = Request> {
        let level = prop_oneof![
            Just(LogLevel::Debug),
            Just(LogLevel::Info),
            Just(LogLevel::Warn)
        ];
        prop_oneof![
            Just(Request::Input),
            Just(Request::State),
            (text(), text()).prop_map(|(name, args)| Request::Tool { name, args }),
            (text(), text()).prop_map(|(name, features)| Request::Model { name, features }),
            (text(), proptest::option::of(any::<u64>())).prop_map(|(to, evidence)| {
                Request::Transition {
                    to,
                    evidence: evidence.map(InferenceId),
                }
            }),
            (level, text()).prop_map(|(level, message)| Request::Log { level, message }),
            text().prop_map(|output| Request::Finish { output }),
            text().prop_map(|reason| Request::Abort { reason }),
        ]
    }

    fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
        postcard::to_allocvec(value).expect("a request or response encodes")
    }

    /// Whatever the bytes, decoding returns a request or a malformed-request fault
    /// that names their length; it never panics.
    fn check_decodes_or_faults(bytes: &[u8]) -> Result<(), TestCaseError> {
        match decode_request(bytes) {
            // Accepted bytes are the one encoding of what they decode to.
            Ok(request) => prop_assert_eq!(encode(&request), bytes),
            Err(GuestFault::MalformedRequest { len, error }) => {
                prop_assert_eq!(len as usize, bytes.len());
                prop_assert!(!error.is_empty());
            }
            Err(other) => prop_assert!(false, "unexpected fault {other:?}"),
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::test_support::cases(1_000)))]

        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        ) {
            check_decodes_or_faults(&bytes)?;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::test_support::cases(500)))]

        #[test]
        fn every_request_round_trips(request in request()) {
            let bytes = encode(&request);
            prop_assert_eq!(decode_request(&bytes), Ok(request));
        }

        /// The input and the state are encoded from where they are, without a copy: the
        /// bytes must be those of `Response::Input` and `Response::State`.
        #[test]
        fn borrowed_responses_encode_as_the_wire_responses(text in text()) {
            use super::super::BorrowedResponse;
            use super::super::state::StepJournal;
            let mut journal = StepJournal::default();
            prop_assert_eq!(
                journal.encode(&BorrowedResponse::Input(&text)),
                encode(&Response::Input(text.clone()))
            );
            prop_assert_eq!(
                journal.encode(&BorrowedResponse::State(&text)),
                encode(&Response::State(text.clone()))
            );
        }

        /// The step buffer hands out slices of shared chunks, written again once free:
        /// every slice keeps its bytes whatever is written, dropped or reused after it,
        /// across chunk edges and for pieces larger than a chunk.
        #[test]
        fn step_buffer_slices_keep_their_bytes(
            pieces in proptest::collection::vec(
                (0usize..3, 0usize..150_000, any::<u8>(), any::<bool>()),
                1..40,
            ),
        ) {
            use super::super::state::StepJournal;
            let mut journal = StepJournal::default();
            let mut kept: Vec<(bytes::Bytes, Vec<u8>)> = Vec::new();
            for (kind, len, seed, keep) in pieces {
                // Mostly small, as requests are; now and then over a 64 KiB chunk.
                let len = if kind == 0 { len } else { len % 300 };
                let expected: Vec<u8> =
                    (0..len).map(|i| seed.wrapping_add((i % 251) as u8)).collect();
                let (slice, expected) = if kind == 2 {
                    let text = String::from_utf8_lossy(&expected).into_owned();
                    let slice = journal.encode(&Response::State(text.clone()));
                    (slice, encode(&Response::State(text)))
                } else {
                    (journal.copy(&expected), expected)
                };
                prop_assert_eq!(&slice[..], &expected[..]);
                if keep {
                    kept.push((slice, expected));
                } else if kept.len() > 2 {
                    // A step's records are dropped together, but not always all of them.
                    kept.remove(kept.len() / 2);
                }
            }
            for (slice, expected) in &kept {
                prop_assert_eq!(&slice[..], &expected[..]);
            }
        }

        /// Random bytes rarely get past the variant tag; damaged real requests reach
        /// the length prefixes, UTF-8 checks and option tags.
        #[test]
        fn damaged_requests_never_panic_the_decoder(
            request in request(),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            tail in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let bytes = encode(&request);
            let truncated = &bytes[..cut.index(bytes.len() + 1)];
            check_decodes_or_faults(truncated)?;
            if truncated.len() < bytes.len() {
                prop_assert!(decode_request(truncated).is_err(), "a strict prefix decoded");
            }
            let mut flipped = bytes.clone();
            let at = flip.index(flipped.len());
            flipped[at] = byte;
            check_decodes_or_faults(&flipped)?;
            let mut extended = bytes.clone();
            extended.extend_from_slice(&tail);
            check_decodes_or_faults(&extended)?;
            if !tail.is_empty() {
                prop_assert!(decode_request(&extended).is_err(), "trailing bytes accepted");
            }
        }
    }
}
