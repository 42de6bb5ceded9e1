//! Red-team attacks on the step buffer (request and response bytes as `bytes::Bytes`
//! slices of one `BytesMut` per execution) and the record layout (the shared `Arc<str>`
//! state, the boxed `RunStarted` and `Outcome`): slices that change after they are handed
//! out, chunk reuse, responses larger than the room left, memory a guest can pin, and
//! encodings that differ from the `Vec<u8>` layout they replace. The attacks with real
//! guests are in `step::host_call_attacks`.

mod buffer;
mod encoding;
