//! The record of one WASI call of a WASI guest (`RecordBody::Wasi`): what the guest asked
//! through `wasi_snapshot_preview1`, enforcement's decision, and what the host answered.
//!
//! Part of the file format (append, never change): the answer is recorded whole (the
//! time a clock gave, the random bytes, the bytes written), so that replay gives the
//! guest exactly what it got, by call number, and compares everything else.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::decision::Decision;

/// One WASI call, numbered in the run's host-call sequence (so it counts against
/// `max_host_calls`, like a host call).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WasiCall {
    /// The step.
    pub step: u32,
    /// The call's sequence number, shared with the host calls.
    pub call: u64,
    /// Fuel consumed in the step before the call.
    pub fuel: u64,
    /// What the guest asked.
    pub request: WasiRequest,
    /// What enforcement said.
    pub decision: Decision,
    /// What the host answered ([`WasiAnswer::Denied`] when enforcement refused).
    pub answer: WasiAnswer,
}

/// What a WASI guest asked, with the arguments that say what it asked: pointers into its
/// memory are not recorded (they say where, not what), the bytes it wrote are.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WasiRequest {
    /// `args_sizes_get`: how many arguments, and their size.
    ArgsSizesGet,
    /// `args_get`: the arguments.
    ArgsGet,
    /// `environ_sizes_get`: how many environment variables, and their size.
    EnvironSizesGet,
    /// `environ_get`: the environment.
    EnvironGet,
    /// `clock_res_get`: a clock's resolution.
    ClockResGet {
        /// 0 realtime, 1 monotonic, 2 process CPU time, 3 thread CPU time.
        clock: u32,
    },
    /// `clock_time_get`: a clock's time.
    ClockTimeGet {
        /// 0 realtime, 1 monotonic, 2 process CPU time, 3 thread CPU time.
        clock: u32,
        /// The precision asked, in nanoseconds.
        precision: u64,
    },
    /// `random_get`: this many random bytes.
    RandomGet {
        /// How many.
        len: u32,
    },
    /// `fd_write`: bytes written to a file descriptor (1 standard output, 2 error).
    FdWrite {
        /// The file descriptor.
        fd: u32,
        /// The bytes, gathered from the guest's buffers in order.
        #[serde(with = "text")]
        bytes: Vec<u8>,
    },
    /// `fd_read`: read up to `len` bytes (standard input is empty).
    FdRead {
        /// The file descriptor.
        fd: u32,
        /// The total size of the guest's buffers.
        len: u64,
    },
    /// `fd_fdstat_get`: what a file descriptor is.
    FdFdstatGet {
        /// The file descriptor.
        fd: u32,
    },
    /// `fd_prestat_get`: a preopened directory (there are none).
    FdPrestatGet {
        /// The file descriptor.
        fd: u32,
    },
    /// `fd_prestat_dir_name`: a preopened directory's name (there are none).
    FdPrestatDirName {
        /// The file descriptor.
        fd: u32,
    },
    /// `fd_seek`.
    FdSeek {
        /// The file descriptor.
        fd: u32,
        /// The offset.
        offset: i64,
        /// 0 set, 1 current, 2 end.
        whence: u32,
    },
    /// `fd_close`.
    FdClose {
        /// The file descriptor.
        fd: u32,
    },
    /// `sched_yield`.
    SchedYield,
    /// `proc_exit`: the guest ends its process.
    ProcExit {
        /// The exit code.
        code: u32,
    },
}

/// What the host answered a WASI call, as laid out in the guest's memory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WasiAnswer {
    /// Enforcement refused the call: nothing was answered, and the run stopped.
    Denied,
    /// The call failed with this WASI error number; nothing was written.
    Errno(u16),
    /// The call succeeded with nothing to give back.
    Done,
    /// Argument or environment sizes: how many entries, and their bytes.
    Sizes {
        /// Entries.
        count: u32,
        /// Bytes of their text.
        bytes: u32,
    },
    /// A clock's time or resolution, in nanoseconds.
    Time(u64),
    /// Random bytes.
    Random(#[serde(with = "hex")] Vec<u8>),
    /// Bytes written or read.
    Count(u64),
    /// What a file descriptor is (`fd_fdstat_get`).
    Fdstat {
        /// WASI file type (2: character device).
        filetype: u8,
        /// WASI fd flags.
        flags: u16,
        /// The rights of the descriptor.
        rights_base: u64,
        /// The rights descriptors opened from it inherit.
        rights_inheriting: u64,
    },
}

/// The WASI error numbers Warden answers with (`wasi_snapshot_preview1`'s `errno`).
pub(crate) mod errno {
    /// No such file descriptor.
    pub const BADF: u16 = 8;
    /// An argument is invalid (an unknown clock).
    pub const INVAL: u16 = 28;
    /// An input or output error (the host's randomness failed).
    pub const IO: u16 = 29;
    /// Seeking on a stream.
    pub const SPIPE: u16 = 70;
}

impl WasiRequest {
    /// The WASI function's name, as imported (`clock_time_get`).
    pub fn function(&self) -> &'static str {
        match self {
            WasiRequest::ArgsSizesGet => "args_sizes_get",
            WasiRequest::ArgsGet => "args_get",
            WasiRequest::EnvironSizesGet => "environ_sizes_get",
            WasiRequest::EnvironGet => "environ_get",
            WasiRequest::ClockResGet { .. } => "clock_res_get",
            WasiRequest::ClockTimeGet { .. } => "clock_time_get",
            WasiRequest::RandomGet { .. } => "random_get",
            WasiRequest::FdWrite { .. } => "fd_write",
            WasiRequest::FdRead { .. } => "fd_read",
            WasiRequest::FdFdstatGet { .. } => "fd_fdstat_get",
            WasiRequest::FdPrestatGet { .. } => "fd_prestat_get",
            WasiRequest::FdPrestatDirName { .. } => "fd_prestat_dir_name",
            WasiRequest::FdSeek { .. } => "fd_seek",
            WasiRequest::FdClose { .. } => "fd_close",
            WasiRequest::SchedYield => "sched_yield",
            WasiRequest::ProcExit { .. } => "proc_exit",
        }
    }

    /// The text a write to standard output or error carries, as one journaled line (a
    /// final newline dropped), with the stream's name; `None` for any other call.
    pub fn output_line(&self) -> Option<(&'static str, String)> {
        let WasiRequest::FdWrite { fd, bytes } = self else {
            return None;
        };
        let stream = match fd {
            1 => "stdout",
            2 => "stderr",
            _ => return None,
        };
        let text = String::from_utf8_lossy(bytes);
        let text = text.strip_suffix('\n').unwrap_or(&text);
        Some((stream, text.to_string()))
    }
}

fn clock_name(clock: u32) -> String {
    match clock {
        0 => "realtime".into(),
        1 => "monotonic".into(),
        2 => "process cputime".into(),
        3 => "thread cputime".into(),
        other => format!("clock {other}"),
    }
}

fn fd_name(fd: u32) -> String {
    match fd {
        0 => "stdin".into(),
        1 => "stdout".into(),
        2 => "stderr".into(),
        other => format!("fd {other}"),
    }
}

/// At most 160 characters of `text`, on one line, quoted.
fn shown(text: &str) -> String {
    let cut: String = text.chars().take(160).collect();
    if cut.len() < text.len() {
        format!("{cut:?}... ({} bytes)", text.len())
    } else {
        format!("{cut:?}")
    }
}

impl fmt::Display for WasiRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.function();
        match self {
            WasiRequest::ClockResGet { clock } => write!(f, "{name}({})", clock_name(*clock)),
            WasiRequest::ClockTimeGet { clock, precision } => {
                write!(
                    f,
                    "{name}({}, precision {precision} ns)",
                    clock_name(*clock)
                )
            }
            WasiRequest::RandomGet { len } => write!(f, "{name}({len} bytes)"),
            WasiRequest::FdWrite { fd, bytes } => write!(
                f,
                "{name}({}) {}",
                fd_name(*fd),
                shown(&String::from_utf8_lossy(bytes))
            ),
            WasiRequest::FdRead { fd, len } => write!(f, "{name}({}, {len} bytes)", fd_name(*fd)),
            WasiRequest::FdSeek { fd, offset, whence } => {
                write!(f, "{name}({}, {offset}, whence {whence})", fd_name(*fd))
            }
            WasiRequest::FdFdstatGet { fd }
            | WasiRequest::FdPrestatGet { fd }
            | WasiRequest::FdPrestatDirName { fd }
            | WasiRequest::FdClose { fd } => write!(f, "{name}({})", fd_name(*fd)),
            WasiRequest::ProcExit { code } => write!(f, "{name}({code})"),
            WasiRequest::ArgsSizesGet
            | WasiRequest::ArgsGet
            | WasiRequest::EnvironSizesGet
            | WasiRequest::EnvironGet
            | WasiRequest::SchedYield => f.write_str(name),
        }
    }
}

impl fmt::Display for WasiAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WasiAnswer::Denied => f.write_str("denied"),
            WasiAnswer::Errno(code) => {
                let name = match *code {
                    errno::BADF => " (badf)",
                    errno::INVAL => " (inval)",
                    errno::IO => " (io)",
                    errno::SPIPE => " (spipe)",
                    _ => "",
                };
                write!(f, "errno {code}{name}")
            }
            WasiAnswer::Done => f.write_str("ok"),
            WasiAnswer::Sizes { count, bytes } => write!(f, "{count} entries, {bytes} bytes"),
            WasiAnswer::Time(ns) => write!(f, "{ns} ns"),
            WasiAnswer::Random(bytes) => {
                let hex: String = bytes.iter().take(16).map(|b| format!("{b:02x}")).collect();
                let more = if bytes.len() > 16 { "..." } else { "" };
                write!(f, "{} random bytes {hex}{more}", bytes.len())
            }
            WasiAnswer::Count(n) => write!(f, "{n} bytes"),
            WasiAnswer::Fdstat {
                filetype,
                rights_base,
                ..
            } => write!(f, "file type {filetype}, rights {rights_base:#x}"),
        }
    }
}

impl WasiCall {
    /// One line for people.
    pub fn describe(&self) -> String {
        format!(
            "step {} call {} (fuel {}): wasi {} => {:?}: {}; answer: {}",
            self.step,
            self.call,
            self.fuel,
            self.request,
            self.decision.verdict,
            self.decision.rule,
            self.answer
        )
    }

    /// Approximate journal bytes, against `max_journal_bytes`: the bytes written or
    /// drawn plus a fixed allowance.
    pub(crate) fn approximate_size(&self) -> u64 {
        let written = match &self.request {
            WasiRequest::FdWrite { bytes, .. } => bytes.len(),
            _ => 0,
        };
        let drawn = match &self.answer {
            WasiAnswer::Random(bytes) => bytes.len(),
            _ => 0,
        };
        64 + (written + drawn) as u64
    }
}

/// Bytes the guest wrote: in the journal, the bytes; in JSON, text (lossy UTF-8).
mod text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&String::from_utf8_lossy(bytes))
        } else {
            serializer.serialize_bytes(bytes)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        if deserializer.is_human_readable() {
            String::deserialize(deserializer).map(String::into_bytes)
        } else {
            serde_bytes_vec(deserializer)
        }
    }

    /// A byte string, as postcard writes it (length, then the bytes).
    pub(super) fn serde_bytes_vec<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl<'de> serde::de::Visitor<'de> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(byte) = seq.next_element::<u8>()? {
                    out.push(byte);
                }
                Ok(out)
            }
        }
        deserializer.deserialize_byte_buf(Bytes)
    }
}

/// Random bytes: in the journal, the bytes; in JSON, lowercase hex.
mod hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            serializer.serialize_str(&hex)
        } else {
            serializer.serialize_bytes(bytes)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            (0..text.len())
                .step_by(2)
                .map(|i| {
                    text.get(i..i + 2)
                        .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                        .ok_or_else(|| serde::de::Error::custom("not hex"))
                })
                .collect()
        } else {
            super::text::serde_bytes_vec(deserializer)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{Rule, Verdict};

    fn call(request: WasiRequest, answer: WasiAnswer) -> WasiCall {
        WasiCall {
            step: 1,
            call: 7,
            fuel: 1234,
            request,
            decision: Decision {
                verdict: Verdict::Allow,
                rule: Rule::WasiAnswered,
            },
            answer,
        }
    }

    /// Postcard writes the bytes as they are and reads them back; JSON shows text and hex.
    #[test]
    fn a_wasi_call_round_trips_through_the_journal_encoding() {
        for record in [
            call(
                WasiRequest::FdWrite {
                    fd: 1,
                    bytes: b"hello \xff\n".to_vec(),
                },
                WasiAnswer::Count(8),
            ),
            call(
                WasiRequest::RandomGet { len: 3 },
                WasiAnswer::Random(vec![0, 0xab, 0xff]),
            ),
            call(
                WasiRequest::ClockTimeGet {
                    clock: 0,
                    precision: 1,
                },
                WasiAnswer::Time(1_700_000_000_123_456_789),
            ),
        ] {
            let bytes = postcard::to_allocvec(&record).expect("encode");
            let back: WasiCall = postcard::from_bytes(&bytes).expect("decode");
            assert_eq!(back, record);
        }
        let json = serde_json::to_value(call(
            WasiRequest::FdWrite {
                fd: 2,
                bytes: b"oops\n".to_vec(),
            },
            WasiAnswer::Random(vec![1, 2]),
        ))
        .expect("json");
        assert_eq!(json["request"]["FdWrite"]["bytes"], "oops\n");
        assert_eq!(json["answer"]["Random"], "0102");
    }

    #[test]
    fn a_wasi_call_reads_as_one_line() {
        let line = call(
            WasiRequest::FdWrite {
                fd: 1,
                bytes: b"two\nlines\n".to_vec(),
            },
            WasiAnswer::Count(10),
        )
        .describe();
        assert_eq!(
            line,
            "step 1 call 7 (fuel 1234): wasi fd_write(stdout) \"two\\nlines\\n\" => Allow: answered by the host ([wasi] enabled); answer: 10 bytes"
        );
        assert!(!line.contains('\n'));
        let request = WasiRequest::FdWrite {
            fd: 2,
            bytes: b"warning\n".to_vec(),
        };
        assert_eq!(
            request.output_line(),
            Some(("stderr", "warning".to_string()))
        );
    }
}
