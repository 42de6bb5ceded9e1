//! The records of a commit before they are chained: each body encoded once, as it is
//! produced, one after another in one buffer.
//!
//! A step of many host calls writes each call's two records here as bytes (a few dozen
//! each), instead of keeping a 232-byte [`RecordBody`] per record that the commit then
//! encodes anyway. The commit chains these bytes as they are ([`super::RecordRow`]);
//! replay compares them with the recorded bodies; the few readers that need a body back
//! (the outcome, the path of states) decode only the records of the kinds they want.
//!
//! Every body here is the postcard encoding of a [`RecordBody`], byte for byte: the fast
//! paths for host calls and responses write borrowed fields under the variant's index,
//! and `tests` pins that they encode exactly as the owned variants do.

use std::ops::Range;

use serde::Serialize;

use super::RecordBody;
use crate::decision::{Decision, Rule};

/// The variant indexes of [`RecordBody`] that readers look for: a body's first byte
/// (postcard writes the index as a varint, and every index is below 128).
pub(crate) mod kind {
    pub(crate) const RUN_STARTED: u8 = 0;
    pub(crate) const HOST_CALL: u8 = 2;
    pub(crate) const HOST_RESPONSE: u8 = 3;
    pub(crate) const TRANSITION: u8 = 4;
    pub(crate) const OUTCOME: u8 = 7;
    pub(crate) const STARTED: u8 = 8;
}

/// The most bytes a `HostResponse` takes before its response: its kind, then the call
/// and the response's length as varints of up to ten bytes each.
const HEADER: usize = 21;

/// The least a step's buffer grows by.
const MIN_GROWTH: usize = 4096;

/// Encoded record bodies, in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Bodies {
    bytes: Vec<u8>,
    /// Where each body ends in `bytes`.
    ends: Vec<usize>,
}

impl Bodies {
    /// No bodies, with room for `records` of `bytes` in all.
    pub(crate) fn with_room(records: usize, bytes: usize) -> Bodies {
        Bodies {
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(records),
        }
    }

    /// The number of bodies.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The room (bodies, bytes) allocated.
    pub(crate) fn capacity(&self) -> (usize, usize) {
        (self.ends.capacity(), self.bytes.capacity())
    }

    /// The bytes of all bodies.
    pub(crate) fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// Every body's encoding, one after another.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Appends `body`, encoded.
    pub fn push(&mut self, body: &RecordBody) {
        self.make_room(postcard::experimental::serialized_size(body).unwrap_or(0));
        self.write(body);
        self.ends.push(self.bytes.len());
    }

    /// Appends a `RecordBody::HostCall` of these fields, encoded from where they are.
    pub(crate) fn push_host_call(&mut self, call: HostCallRef<'_>) {
        // The decision's names are the policy's; this is room for the common ones.
        self.make_room(call.request.len() + call.state.len() + 256);
        // The fields in order, as postcard writes them (`tests` pins it): unsigned
        // integers and lengths as LEB128 varints, strings and bytes after their length.
        let bytes = &mut self.bytes;
        bytes.push(kind::HOST_CALL);
        varint(bytes, u64::from(call.step));
        varint(bytes, call.call);
        varint(bytes, call.state.len() as u64);
        bytes.extend_from_slice(call.state.as_bytes());
        varint(bytes, call.fuel);
        varint(bytes, call.request.len() as u64);
        bytes.extend_from_slice(call.request);
        self.write_decision(call.decision);
        self.ends.push(self.bytes.len());
    }

    /// Appends a `RecordBody::HostResponse` of call `call` whose response is the encoding
    /// of `response`, encoded in place; returns where the response's bytes are.
    pub(crate) fn push_response<T: Serialize + ?Sized>(
        &mut self,
        call: u64,
        response: &T,
    ) -> Range<usize> {
        // `Bytes` encode as their length, then themselves.
        let size = postcard::experimental::serialized_size(response).unwrap_or(0);
        self.make_room(size + HEADER);
        self.bytes.push(kind::HOST_RESPONSE);
        varint(&mut self.bytes, call);
        varint(&mut self.bytes, size as u64);
        let start = self.bytes.len();
        self.write(response);
        let end = self.bytes.len();
        self.ends.push(end);
        start..end
    }

    /// Appends a `RecordBody::HostResponse` of call `call` whose response is the response
    /// variant `variant` (an index below 128) holding only `text`, encoded in place;
    /// returns where the response's bytes are.
    pub(crate) fn push_text_response(
        &mut self,
        call: u64,
        variant: u8,
        text: &str,
    ) -> Range<usize> {
        let len = text.len() as u64;
        let size = 1 + varint_size(len) + text.len();
        self.make_room(size + HEADER);
        let bytes = &mut self.bytes;
        bytes.push(kind::HOST_RESPONSE);
        varint(bytes, call);
        varint(bytes, size as u64);
        let start = bytes.len();
        bytes.push(variant);
        varint(bytes, len);
        bytes.extend_from_slice(text.as_bytes());
        let end = bytes.len();
        self.ends.push(end);
        start..end
    }

    /// The encoding of body `index`.
    pub(crate) fn get(&self, index: usize) -> Option<&[u8]> {
        self.bytes.get(self.span(index)?)
    }

    /// Where body `index` is in the buffer.
    pub(crate) fn span(&self, index: usize) -> Option<Range<usize>> {
        let end = *self.ends.get(index)?;
        let start = index.checked_sub(1).map_or(0, |before| self.ends[before]);
        Some(start..end)
    }

    /// The bytes at `range`, if they are there.
    pub(crate) fn slice(&self, range: Range<usize>) -> Option<&[u8]> {
        self.bytes.get(range)
    }

    /// The encoding of each body, in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &[u8]> + ExactSizeIterator {
        (0..self.ends.len()).map(|index| self.get(index).unwrap_or_default())
    }

    /// Drops the bodies after the first `len`.
    pub(crate) fn truncate(&mut self, len: usize) {
        if len < self.ends.len() {
            self.bytes
                .truncate(if len == 0 { 0 } else { self.ends[len - 1] });
            self.ends.truncate(len);
        }
    }

    /// Appends `other`'s bodies.
    pub fn append(&mut self, other: &Bodies) {
        let base = self.bytes.len();
        self.bytes.extend_from_slice(&other.bytes);
        self.ends.extend(other.ends.iter().map(|end| base + end));
    }

    /// Every body, decoded.
    pub fn decode(&self) -> Vec<RecordBody> {
        self.iter().filter_map(decode).collect()
    }

    /// The bodies of the variants `kinds` (see [`kind`]), decoded, in order.
    pub(crate) fn of_kinds<'a>(
        &'a self,
        kinds: &'a [u8],
    ) -> impl DoubleEndedIterator<Item = RecordBody> + 'a {
        self.iter()
            .filter(|body| body.first().is_some_and(|k| kinds.contains(k)))
            .filter_map(decode)
    }

    /// Makes room for `needed` more bytes, growing by a quarter, not by doubling, so that
    /// the memory a step's records hold stays close to the journal bytes they are charged
    /// for (large blocks are moved by the allocator's remapping, not copied).
    fn make_room(&mut self, needed: usize) {
        if self.bytes.capacity() - self.bytes.len() < needed {
            let grow = needed.max(self.bytes.len() / 4).max(MIN_GROWTH);
            self.bytes.reserve_exact(grow);
        }
    }

    fn write<T: Serialize + ?Sized>(&mut self, value: &T) {
        encode_into(value, &mut self.bytes);
    }

    /// Appends `decision` as postcard writes it. The rules of nearly every call (the run
    /// protocol's, a capability allowed) are written by hand: the verdict's and the rule's
    /// variant indexes (each below 128, so one byte; `tests` pins them), then the rule's
    /// fields in order. Any other goes through serde.
    fn write_decision(&mut self, decision: &Decision) {
        // Fieldless enums: the discriminant is the variant's index.
        let verdict = decision.verdict as u8;
        match &decision.rule {
            Rule::RunProtocol => self.bytes.extend_from_slice(&[verdict, rule::RUN_PROTOCOL]),
            Rule::CapabilityAllowed { kind, name, state } => {
                let bytes = &mut self.bytes;
                bytes.extend_from_slice(&[verdict, rule::CAPABILITY_ALLOWED, *kind as u8]);
                varint(bytes, name.len() as u64);
                bytes.extend_from_slice(name.as_bytes());
                varint(bytes, state.len() as u64);
                bytes.extend_from_slice(state.as_bytes());
            }
            _ => self.write(decision),
        }
    }
}

/// The variant indexes of the rules [`Bodies::write_decision`] writes by hand.
mod rule {
    pub(super) const RUN_PROTOCOL: u8 = 0;
    pub(super) const CAPABILITY_ALLOWED: u8 = 1;
}

/// Appends `value` as postcard writes an unsigned integer: LEB128, seven bits a byte,
/// low bits first (pushed byte by byte: a call to `memcpy` for each would cost more).
pub(super) fn varint(bytes: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        bytes.push(value as u8 | 0x80);
        value >>= 7;
    }
    bytes.push(value as u8);
}

/// The bytes of `value`'s varint.
fn varint_size(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// Appends `value`'s encoding to `bytes`.
pub(crate) fn encode_into<T: Serialize + ?Sized>(value: &T, bytes: &mut Vec<u8>) {
    // Writing our own plain data types to a Vec cannot fail.
    let _ = postcard::serialize_with_flavor(value, Appender(bytes));
}

/// One encoded body, decoded (`None` only if it is not a body's encoding, which the
/// bodies this module writes always are).
pub(crate) fn decode(bytes: &[u8]) -> Option<RecordBody> {
    postcard::from_bytes(bytes).ok()
}

impl From<Vec<RecordBody>> for Bodies {
    fn from(bodies: Vec<RecordBody>) -> Bodies {
        bodies.into_iter().collect()
    }
}

impl FromIterator<RecordBody> for Bodies {
    fn from_iter<I: IntoIterator<Item = RecordBody>>(iter: I) -> Bodies {
        let mut bodies = Bodies::default();
        bodies.extend(iter);
        bodies
    }
}

impl Extend<RecordBody> for Bodies {
    fn extend<I: IntoIterator<Item = RecordBody>>(&mut self, iter: I) {
        for body in iter {
            self.push(&body);
        }
    }
}

/// The fields of `RecordBody::HostCall`, borrowed.
pub(crate) struct HostCallRef<'a> {
    pub(crate) step: u32,
    pub(crate) call: u64,
    pub(crate) state: &'a str,
    pub(crate) fuel: u64,
    pub(crate) request: &'a [u8],
    pub(crate) decision: &'a Decision,
}

/// A postcard output appending to a `Vec`.
struct Appender<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Appender<'_> {
    type Output = ();

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;
    use warden_guest::wire::Response;

    use super::*;
    use crate::decision::{CapabilityKind, Verdict};

    fn numbered_host_call(
        (step, call, fuel): (u32, u64, u64),
        request: &[u8],
        state: &str,
        decision: Decision,
    ) -> RecordBody {
        RecordBody::HostCall {
            step,
            call,
            state: Arc::from(state),
            fuel,
            request: bytes::Bytes::copy_from_slice(request),
            decision,
        }
    }

    /// Both hand-written rules under every verdict and kind, and one through serde.
    fn decisions() -> Vec<Decision> {
        let verdicts = [Verdict::Allow, Verdict::Deny, Verdict::Escalate];
        let mut decisions: Vec<Decision> = verdicts
            .iter()
            .flat_map(|&verdict| {
                let allowed = |kind| Rule::CapabilityAllowed {
                    kind,
                    name: "credit_bureau".into(),
                    state: "é".repeat(70),
                };
                [
                    Rule::RunProtocol,
                    allowed(CapabilityKind::Tool),
                    allowed(CapabilityKind::Model),
                ]
                .map(|rule| Decision { verdict, rule })
            })
            .collect();
        decisions.extend([Decision {
            verdict: Verdict::Escalate,
            rule: Rule::GateNotMet {
                to: "approve".into(),
                model: "risk".into(),
                inference: None,
                confidence: Some(0.25),
                threshold: 0.8,
                otherwise: "review".into(),
            },
        }]);
        decisions
    }

    /// Each kind constant is its variant's first byte.
    #[test]
    fn kinds_are_the_variants_first_bytes() {
        let first = |body: &RecordBody| crate::journal::encode(body)[0];
        let outcome = crate::outcome::Outcome {
            status: crate::outcome::Status::Completed,
            state: "done".into(),
            steps: 1,
            host_calls: 2,
            fuel: 3,
            output: None,
            reason: None,
        };
        assert_eq!(
            first(&numbered_host_call(
                (3, 300, 1 << 40),
                b"x",
                "s",
                decisions()[0].clone()
            )),
            kind::HOST_CALL
        );
        let response = RecordBody::HostResponse {
            call: 1,
            response: bytes::Bytes::new(),
        };
        assert_eq!(first(&response), kind::HOST_RESPONSE);
        let transition = RecordBody::Transition {
            step: 1,
            from: "a".into(),
            to: "b".into(),
        };
        assert_eq!(first(&transition), kind::TRANSITION);
        assert_eq!(
            first(&RecordBody::Outcome(Box::new(outcome))),
            kind::OUTCOME
        );
    }

    /// Every hand-written decision is the decision's postcard encoding.
    #[test]
    fn hand_written_decisions_encode_as_serde() {
        for decision in decisions() {
            let mut fast = Bodies::default();
            fast.write_decision(&decision);
            assert_eq!(
                fast.bytes,
                crate::journal::encode(&decision),
                "{decision:?}"
            );
        }
    }

    proptest! {
        /// The borrowed host call and the in-place response encode exactly as the owned
        /// variants, whatever their sizes (lengths of one and several varint bytes).
        #[test]
        fn fast_paths_encode_as_the_owned_variants(
            request in proptest::collection::vec(any::<u8>(), 0..400),
            state in "[a-z_]{0,200}",
            call in any::<u64>(),
            numbers in (any::<u32>(), any::<u64>(), any::<u64>()),
            which in 0usize..10,
        ) {
            let decision = decisions()[which].clone();
            let mut fast = Bodies::default();
            fast.push_host_call(HostCallRef {
                step: numbers.0,
                call: numbers.1,
                state: &state,
                fuel: numbers.2,
                request: &request,
                decision: &decision,
            });
            let response = Response::State(state.clone());
            let range = fast.push_response(call, &response);
            let text = fast.push_text_response(call, 1, &state);
            prop_assert_eq!(fast.slice(text), fast.slice(range.clone()));
            fast.truncate(2);
            let owned = Bodies::from(vec![
                numbered_host_call(numbers, &request, &state, decision),
                RecordBody::HostResponse {
                    call,
                    response: crate::journal::encode(&response).into(),
                },
            ]);
            prop_assert_eq!(&fast, &owned);
            prop_assert_eq!(fast.slice(range), Some(&crate::journal::encode(&response)[..]));
            prop_assert_eq!(fast.decode().len(), 2);
        }

        /// Bodies read back as pushed: one by one, appended, truncated.
        #[test]
        fn bodies_read_back_as_pushed(lengths in proptest::collection::vec(0usize..300, 0..20)) {
            let bodies: Vec<RecordBody> = lengths
                .iter()
                .enumerate()
                .map(|(i, len)| RecordBody::HostResponse {
                    call: i as u64,
                    response: vec![7; *len].into(),
                })
                .collect();
            let encoded = Bodies::from(bodies.clone());
            prop_assert_eq!(encoded.len(), bodies.len());
            prop_assert_eq!(encoded.decode(), bodies.clone());
            for (i, body) in bodies.iter().enumerate() {
                prop_assert_eq!(encoded.get(i), Some(&crate::journal::encode(body)[..]));
            }
            let half = bodies.len() / 2;
            let mut joined = Bodies::from(bodies[..half].to_vec());
            joined.append(&Bodies::from(bodies[half..].to_vec()));
            prop_assert_eq!(&joined, &encoded);
            joined.truncate(half);
            prop_assert_eq!(joined, Bodies::from(bodies[..half].to_vec()));
        }
    }
}
