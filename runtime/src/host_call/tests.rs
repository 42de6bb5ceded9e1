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

/// The one-byte fast path decodes exactly what serde and the canonical check accept:
/// every single byte gives the same request, or a fault from both.
#[test]
fn one_byte_requests_decode_as_serde_does() {
    for byte in 0..=u8::MAX {
        let bytes = [byte];
        let serde = match postcard::take_from_bytes::<Request>(&bytes) {
            Ok((request, [])) if encodes_to(&request, &bytes) => Some(request),
            _ => None,
        };
        assert_eq!(decode_request(&bytes).ok(), serde, "byte {byte:#04x}");
    }
    let encode = |request: &Request| postcard::to_allocvec(request).expect("encode");
    assert_eq!(encode(&Request::Input), [REQUEST_INPUT]);
    assert_eq!(encode(&Request::State), [REQUEST_STATE]);
    assert_eq!(encode(&Request::Review), [REQUEST_REVIEW]);
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
            use super::super::{RESPONSE_INPUT, RESPONSE_STATE};
            let mut bodies = crate::journal::Bodies::default();
            let input = bodies.push_text_response(0, RESPONSE_INPUT, &text);
            let state = bodies.push_text_response(1, RESPONSE_STATE, &text);
            prop_assert_eq!(bodies.slice(input), Some(&encode(&Response::Input(text.clone()))[..]));
            prop_assert_eq!(bodies.slice(state), Some(&encode(&Response::State(text.clone()))[..]));
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
