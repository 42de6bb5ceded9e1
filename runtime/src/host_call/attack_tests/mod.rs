//! Red-team attacks on the step journal (records encoded as they are pushed, the guest's
//! request and response bytes copied once into them) and the record layout (the shared
//! `Arc<str>` state, the boxed `RunStarted` and `Outcome`): memory a guest can make the
//! host hold, and encodings that differ from the `Vec<u8>` layout they replace. The
//! attacks with real guests are in `step::host_call_attacks`.

mod buffer;
mod encoding;
