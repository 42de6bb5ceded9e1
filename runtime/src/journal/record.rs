//! The journal's records and run summaries: the file format, field by field.
//!
//! Upholds invariant 5 (tamper-evident): each [`Record`] carries its predecessor's digest
//! and is itself named by [`Record::digest`]. Everything here is encoded with postcard,
//! which writes fields in declaration order without names, so **these definitions are the
//! file format**: a variant or field is never changed or reordered, only appended, and a
//! layout that must change gets a new version beside the old one (see `docs/journal.md`,
//! "Format versions"). Old runs must verify and replay forever.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::bindings::ModelCard;
use crate::decision::{Decision, ModelInference, ReviewRecord, ReviewRefusal};
use crate::digest::{Digest, domain};
use crate::edition::Edition;
use crate::outcome::{FailureReason, Outcome, Status};
use crate::policy::Budgets;

use super::wasi_call::WasiCall;

/// A record of a run, as chained in the journal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the run's journal, from 0.
    pub index: u64,
    /// Digest of the previous record ([`Digest::ZERO`] for the first).
    pub prev: Digest,
    /// Wall-clock time of the commit that wrote it, ms since the Unix epoch. Never an input
    /// to anything a run decides; hashed, but not compared by replay.
    pub at_ms: u64,
    /// What happened.
    pub body: RecordBody,
}

impl Record {
    /// The record's own digest, which its successor carries as `prev`:
    /// `blake3("warden-record-v1" 0 postcard(record))`.
    pub fn digest(&self) -> Digest {
        Digest::of(domain::RECORD, &super::encode(self))
    }
}

/// The run and checkpoint a fork started from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parent {
    /// The run it was forked from.
    pub run_id: String,
    /// The checkpoint (step) it starts from.
    pub step: u32,
}

/// What a record says. Everything but `RunStarted` and timestamps is compared by replay.
/// Variants and fields are the file format: append, never change (module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RecordBody {
    /// Record 0 of every format-version-1 run: what ran, under which rules, on what.
    /// Boxed, as every rare large record is, so that the records of a step stay small.
    RunStarted(Box<RunStartedV1>),
    /// A step begins in `state`.
    StepStarted {
        /// The step number, from 1.
        step: u32,
        /// The run's state as the step begins.
        state: String,
    },
    /// A host call, journaled before any effect.
    HostCall {
        /// The step in flight.
        step: u32,
        /// The call's sequence number in the run (its idempotency key with the run id).
        call: u64,
        /// The run's state when the call was made (shared with the host's, not copied).
        state: Arc<str>,
        /// Fuel the step had consumed when it made the call.
        fuel: u64,
        /// The request bytes exactly as the guest sent them (postcard `Request`); encoded
        /// as a `Vec<u8>` is, and in memory a slice of its step's buffer.
        request: Bytes,
        /// Enforcement's decision and the rule behind it.
        decision: Decision,
    },
    /// The response to an allowed call, exactly as given to the guest.
    HostResponse {
        /// The call it answers.
        call: u64,
        /// The response bytes (postcard `Response`), encoded as a `Vec<u8>` is.
        response: Bytes,
    },
    /// The run moved from one state to another (by the agent, or by a gate).
    Transition {
        /// The step in flight.
        step: u32,
        /// The state left.
        from: String,
        /// The state entered.
        to: String,
    },
    /// Guest state captured at the end of `step`; the checkpoint itself is stored beside
    /// the records, under (run, step), and must match `digest`.
    Checkpoint {
        /// The step it follows (0: the freshly instantiated guest).
        step: u32,
        /// `Checkpoint::digest` of the stored checkpoint.
        digest: Digest,
    },
    /// The step's records end here.
    StepCommitted {
        /// The step.
        step: u32,
        /// Fuel the step used.
        fuel: u64,
        /// The run's state at the end of the step.
        state: String,
    },
    /// The run ended (for now: `awaiting_review` continues after a review).
    Outcome(Box<Outcome>),
    /// Record 0 of every run from format version 2 on: [`RunStart`].
    Started(Box<RunStart>),
    /// An inference the host computed (edition 2): label probabilities, the
    /// reconciliation of its features and the model card; written after the response.
    Inference(Box<ModelInference>),
    /// A fork's first records: the recorded facts it inherits from its parent up to the
    /// fork's checkpoint (edition 2), so that the fork's own journal says what its
    /// features may rest on. Inferences are never inherited.
    Inherited(Box<InheritedEvidence>),
    /// A review decision that moves the run on from its review state (a person's, or a
    /// timeout's); the run's next records are that review step's.
    Review(Box<ReviewRecord>),
    /// The first of two decisions under dual control; the run still awaits review.
    ReviewPending(Box<ReviewRecord>),
    /// A refused review decision; the run still awaits review.
    ReviewRefused(Box<ReviewRefusal>),
    /// A WASI call of a WASI guest (a policy with `[wasi] enabled = true`): request,
    /// decision and the host's answer in one record, numbered in the host-call sequence.
    Wasi(Box<WasiCall>),
    /// A fork's first records, after [`RecordBody::Inherited`]: the last review decision of
    /// its parent (or of an ancestor) before the fork's checkpoint, which the fork's agent
    /// reads as its review (`Request::Review`), so that the fork replays from its own
    /// records. It is the parent's record as it was recorded there; it decides nothing in
    /// the fork.
    InheritedReview(Box<ReviewRecord>),
}

/// The body of a format-version-1 run's first record (`RunStarted`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunStartedV1 {
    /// The run id.
    pub run_id: String,
    /// Digest of the agent module as supplied (blob `agent`).
    pub agent: Digest,
    /// Canonical digest of the policy (`Policy::hash`).
    pub policy: Digest,
    /// Digest of the policy file's text (a blob).
    pub policy_text: Digest,
    /// `policy.name`.
    pub policy_name: String,
    /// `policy.version`.
    pub policy_version: String,
    /// Digest of the bindings and the files they reference (not ledgers).
    pub bindings: Digest,
    /// Where the bindings were loaded from (absolute), for `warden resume`.
    pub bindings_path: Option<String>,
    /// Digest of the input JSON (a blob).
    pub input: Digest,
    /// The state the run starts in (a fork: its checkpoint's state).
    pub state: String,
    /// The policy's budgets, as applied.
    pub budgets: Budgets,
    /// The run and checkpoint a fork started from.
    pub parent: Option<Parent>,
    /// The Warden version that started the run.
    pub warden_version: String,
}

/// What a fork inherits from its parent's record (record `Inherited`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InheritedEvidence {
    /// The parent's successful tool responses: (call, tool, args JSON, response JSON).
    pub facts: Vec<(u64, String, String, String)>,
    /// The parent's number of transitions at the checkpoint.
    pub visit: u32,
    /// Allowed calls per capability in the current visit: (kind, name, count).
    pub calls: Vec<(crate::decision::CapabilityKind, String, u32)>,
}

/// What a run is: the body of its first record (`Started`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunStart {
    /// The run id.
    pub run_id: String,
    /// Digest of the agent module as supplied (a blob).
    pub agent: Digest,
    /// Canonical digest of the policy (`Policy::hash`).
    pub policy: Digest,
    /// Digest of the policy file's text (a blob).
    pub policy_text: Digest,
    /// `policy.name`.
    pub policy_name: String,
    /// `policy.version`.
    pub policy_version: String,
    /// Digest of the bindings and the files they reference (not ledgers).
    pub bindings: Digest,
    /// Where the bindings were loaded from (absolute), for `warden resume`.
    pub bindings_path: Option<String>,
    /// Digest of the input JSON (a blob).
    pub input: Digest,
    /// The state the run starts in (a fork: its checkpoint's state).
    pub state: String,
    /// The policy's budgets, as applied.
    pub budgets: Budgets,
    /// The run and checkpoint a fork started from.
    pub parent: Option<Parent>,
    /// The Warden version that started the run.
    pub warden_version: String,
    /// The rules the run is recorded under.
    pub edition: Edition,
    /// The engine whose fuel accounting the run's figures follow, e.g. `wasmtime 48.0.8`.
    pub engine: String,
    /// Who submitted the run (a reviewer may not review their own submission).
    pub submitted_by: Option<String>,
    /// The models the bindings provide, with their cards.
    pub models: Vec<ModelCard>,
    /// Whether effectful tools act on the world. Always for a run; for a fork only when
    /// started with live effects (otherwise they answer from the parent's recording).
    pub live_effects: bool,
}

impl RunStart {
    /// The start of a format-version-1 run, from its `RunStarted` record.
    fn from_v1(body: &RecordBody) -> Option<RunStart> {
        let RecordBody::RunStarted(v1) = body else {
            return None;
        };
        let RunStartedV1 {
            run_id,
            agent,
            policy,
            policy_text,
            policy_name,
            policy_version,
            bindings,
            bindings_path,
            input,
            state,
            budgets,
            parent,
            warden_version,
        } = &**v1;
        Some(RunStart {
            run_id: run_id.clone(),
            agent: *agent,
            policy: *policy,
            policy_text: *policy_text,
            policy_name: policy_name.clone(),
            policy_version: policy_version.clone(),
            bindings: *bindings,
            bindings_path: bindings_path.clone(),
            input: *input,
            state: state.clone(),
            budgets: *budgets,
            parent: parent.clone(),
            warden_version: warden_version.clone(),
            edition: Edition::V1,
            engine: String::new(),
            submitted_by: None,
            models: Vec::new(),
            live_effects: true,
        })
    }
}

impl RecordBody {
    /// What the run is, if this is its first record (either format).
    pub fn run_start(&self) -> Option<RunStart> {
        match self {
            RecordBody::Started(start) => Some((**start).clone()),
            other => RunStart::from_v1(other),
        }
    }

    /// The step a record belongs to, where it names one.
    pub fn step(&self) -> Option<u32> {
        match self {
            RecordBody::Review(review) => Some(review.step),
            RecordBody::Wasi(wasi) => Some(wasi.step),
            RecordBody::StepStarted { step, .. }
            | RecordBody::HostCall { step, .. }
            | RecordBody::Transition { step, .. }
            | RecordBody::Checkpoint { step, .. }
            | RecordBody::StepCommitted { step, .. } => Some(*step),
            _ => None,
        }
    }

    /// The host call a record belongs to, where it names one.
    pub fn call(&self) -> Option<u64> {
        match self {
            RecordBody::HostCall { call, .. } | RecordBody::HostResponse { call, .. } => {
                Some(*call)
            }
            RecordBody::Inference(inference) => Some(inference.id.0),
            RecordBody::Wasi(wasi) => Some(wasi.call),
            _ => None,
        }
    }

    /// The record's kind, as named in JSON and docs: `run_started`, `host_call`, ...
    pub fn kind(&self) -> &'static str {
        match self {
            RecordBody::RunStarted(_) => "run_started",
            RecordBody::StepStarted { .. } => "step_started",
            RecordBody::HostCall { .. } => "host_call",
            RecordBody::HostResponse { .. } => "host_response",
            RecordBody::Transition { .. } => "transition",
            RecordBody::Checkpoint { .. } => "checkpoint",
            RecordBody::StepCommitted { .. } => "step_committed",
            RecordBody::Outcome(_) => "outcome",
            RecordBody::Started(_) => "run_started",
            RecordBody::Inference(_) => "inference",
            RecordBody::Inherited(_) => "inherited",
            RecordBody::InheritedReview(_) => "inherited_review",
            RecordBody::Review(_) => "review",
            RecordBody::ReviewPending(_) => "review_pending",
            RecordBody::ReviewRefused(_) => "review_refused",
            RecordBody::Wasi(_) => "wasi_call",
        }
    }
}

/// The summary of a run kept beside its records (table `runs`), for listing and resuming.
/// Verification checks every field against the records it summarises.
///
/// In the journal it is encoded field by field (postcard, the order below). In JSON
/// (`warden runs --json`, `show --json`) the outcome's fields are flattened into the
/// summary: `status`, `state`, `output`, `reason`, `steps`, `host_calls`, `fuel` beside
/// `run_id`, the digests, `created_ms`, `updated_ms`, `records`, `head`,
/// `last_checkpoint` and `parent`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct RunMeta {
    /// The run id (UTC time of start plus hex digits: twelve; six in runs of journal
    /// format 3 and before). Readers take it as opaque text.
    pub run_id: String,
    /// Digest of the agent module, stored in the blobs table under it.
    pub agent: Digest,
    /// Canonical digest of the policy (see `Policy::hash`).
    pub policy: Digest,
    /// Digest of the policy file as written, stored in the blobs table.
    pub policy_text: Digest,
    /// `policy.name` of the policy.
    pub policy_name: String,
    /// `policy.version` of the policy.
    pub policy_version: String,
    /// Digest of the bindings and the files they reference (not ledgers).
    pub bindings: Digest,
    /// Where the bindings were loaded from, for `warden resume`.
    pub bindings_path: Option<String>,
    /// Digest of the input JSON, stored in the blobs table.
    pub input: Digest,
    /// The run and checkpoint it was forked from, if any.
    pub parent: Option<Parent>,
    /// When the run started, ms since the Unix epoch.
    pub created_ms: u64,
    /// When it was last committed, ms since the Unix epoch.
    pub updated_ms: u64,
    /// Number of records.
    pub records: u64,
    /// The run's head: the digest of its last commit (format 6) or last record (up to 5).
    pub head: Digest,
    /// The step of the latest checkpoint (where `warden resume` starts).
    pub last_checkpoint: Option<u32>,
    /// Where the run stands: its `Outcome` record once ended; while running, the state
    /// and counters of its last committed step.
    pub outcome: Outcome,
}

impl RunMeta {
    /// Where the run stands.
    pub fn status(&self) -> Status {
        self.outcome.status
    }
}

impl Serialize for RunMeta {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// The binary layout: every field in declaration order.
        #[derive(Serialize)]
        struct Binary<'a> {
            run_id: &'a str,
            agent: &'a Digest,
            policy: &'a Digest,
            policy_text: &'a Digest,
            policy_name: &'a str,
            policy_version: &'a str,
            bindings: &'a Digest,
            bindings_path: &'a Option<String>,
            input: &'a Digest,
            parent: &'a Option<Parent>,
            created_ms: u64,
            updated_ms: u64,
            records: u64,
            head: &'a Digest,
            last_checkpoint: Option<u32>,
            outcome: &'a Outcome,
        }
        /// The JSON view: the outcome flattened, its reason also in words.
        #[derive(Serialize)]
        struct Json<'a> {
            run_id: &'a str,
            status: Status,
            state: &'a str,
            output: &'a Option<String>,
            reason: Option<String>,
            failure: &'a Option<FailureReason>,
            steps: u32,
            host_calls: u32,
            fuel: u64,
            policy_name: &'a str,
            policy_version: &'a str,
            agent: &'a Digest,
            policy: &'a Digest,
            policy_text: &'a Digest,
            bindings: &'a Digest,
            bindings_path: &'a Option<String>,
            input: &'a Digest,
            parent: &'a Option<Parent>,
            created_ms: u64,
            updated_ms: u64,
            records: u64,
            head: &'a Digest,
            last_checkpoint: Option<u32>,
        }
        if serializer.is_human_readable() {
            Json {
                run_id: &self.run_id,
                status: self.outcome.status,
                state: &self.outcome.state,
                output: &self.outcome.output,
                reason: self.outcome.reason.as_ref().map(ToString::to_string),
                failure: &self.outcome.reason,
                steps: self.outcome.steps,
                host_calls: self.outcome.host_calls,
                fuel: self.outcome.fuel,
                policy_name: &self.policy_name,
                policy_version: &self.policy_version,
                agent: &self.agent,
                policy: &self.policy,
                policy_text: &self.policy_text,
                bindings: &self.bindings,
                bindings_path: &self.bindings_path,
                input: &self.input,
                parent: &self.parent,
                created_ms: self.created_ms,
                updated_ms: self.updated_ms,
                records: self.records,
                head: &self.head,
                last_checkpoint: self.last_checkpoint,
            }
            .serialize(serializer)
        } else {
            Binary {
                run_id: &self.run_id,
                agent: &self.agent,
                policy: &self.policy,
                policy_text: &self.policy_text,
                policy_name: &self.policy_name,
                policy_version: &self.policy_version,
                bindings: &self.bindings,
                bindings_path: &self.bindings_path,
                input: &self.input,
                parent: &self.parent,
                created_ms: self.created_ms,
                updated_ms: self.updated_ms,
                records: self.records,
                head: &self.head,
                last_checkpoint: self.last_checkpoint,
                outcome: &self.outcome,
            }
            .serialize(serializer)
        }
    }
}

/// A run summary as format version 1 wrote it (field order is the format).
#[derive(Deserialize)]
pub(super) struct RunMetaV1 {
    run_id: String,
    status: Status,
    state: String,
    agent: Digest,
    policy: Digest,
    policy_text: Digest,
    policy_name: String,
    policy_version: String,
    bindings: Digest,
    bindings_path: Option<String>,
    input: Digest,
    created_ms: u64,
    updated_ms: u64,
    steps: u32,
    host_calls: u32,
    fuel: u64,
    records: u64,
    head: Digest,
    last_checkpoint: Option<u32>,
    output: Option<String>,
    reason: Option<FailureReason>,
    parent: Option<Parent>,
}

impl From<RunMetaV1> for RunMeta {
    fn from(v1: RunMetaV1) -> RunMeta {
        RunMeta {
            run_id: v1.run_id,
            agent: v1.agent,
            policy: v1.policy,
            policy_text: v1.policy_text,
            policy_name: v1.policy_name,
            policy_version: v1.policy_version,
            bindings: v1.bindings,
            bindings_path: v1.bindings_path,
            input: v1.input,
            parent: v1.parent,
            created_ms: v1.created_ms,
            updated_ms: v1.updated_ms,
            records: v1.records,
            head: v1.head,
            last_checkpoint: v1.last_checkpoint,
            outcome: Outcome {
                status: v1.status,
                state: v1.state,
                output: v1.output,
                reason: v1.reason,
                steps: v1.steps,
                host_calls: v1.host_calls,
                fuel: v1.fuel,
            },
        }
    }
}

/// The versioned envelope of a run summary in table `runs`.
#[derive(Deserialize)]
pub(super) enum StoredMeta {
    /// Format version 1.
    V1(RunMetaV1),
    /// Format version 2: the outcome in one [`Outcome`].
    V2(RunMeta),
}

/// How a run summary is written (always the newest version).
#[derive(Serialize)]
pub(super) enum StoredMetaRef<'a> {
    /// Never written any more; keeps the variant index of `V2` at 1.
    #[expect(
        dead_code,
        reason = "placeholder for the variant index of format version 1"
    )]
    V1(()),
    /// Format version 2.
    V2(&'a RunMeta),
}

/// The versioned envelope of a row of table `records` written by format versions 1 to 4,
/// keyed by (run id, index of the row's first record). Formats 5 and 6 write rows of their
/// own ([`RecordRow`]), which [`decode_row`] reads beside these.
#[derive(Deserialize)]
pub(super) enum StoredRecords {
    /// Format versions 1 to 3: one record and its digest.
    V1(Box<(Record, Digest)>),
    /// Format version 4: the records of one commit, in order, each with its digest.
    V2(Vec<(Record, Digest)>),
}

/// The variant index of a format-5 row, after `StoredRecords`' two.
const ROW_FORMAT_5: u8 = 2;
/// The variant index of a format-6 row.
const ROW_FORMAT_6: u8 = 3;

/// The rows a commit appends to table `records` from format version 6 on: the variant
/// index 3, the run's head before the commit (32 bytes), the commit's time and the number
/// of records (postcard varints), then each record's body as the step encoded it. The
/// run's head after the commit is the digest of the row ([`commit_digest`]): one hash of
/// the commit's bytes chains it to the commit before, where format 5 chained every record
/// (a BLAKE3 of each, about 100 ns a record, the largest cost of recording a step of many
/// host calls). Each record's own digest ([`Record::digest`], chained record to record as
/// in every format) is computed by whoever reads the row, for people and exports; the
/// chain, the run's head and the log hold commit digests.
///
/// Format 5's rows (variant index 2) had the same layout, and the run's head was the
/// digest of the last record.
pub(super) struct RecordRow {
    bytes: Vec<u8>,
    /// The run's head after the commit: [`commit_digest`] of the row.
    pub(super) head: Digest,
}

impl RecordRow {
    /// Encodes `bodies` as records `first..` following the run's head `prev`, written at
    /// `at_ms`.
    pub(super) fn encode(bodies: &super::Bodies, first: u64, prev: Digest, at_ms: u64) -> Self {
        let bytes = row_bytes(ROW_FORMAT_6, bodies, prev, at_ms);
        let head = commit_digest(first, &bytes);
        RecordRow { bytes, head }
    }

    /// A format-5 row of the same records (for tests of what older builds wrote), and the
    /// digest of its last record, the run's head after it.
    #[cfg(test)]
    pub(super) fn encode_format_5(
        bodies: &super::Bodies,
        first: u64,
        prev: Digest,
        at_ms: u64,
    ) -> Self {
        let bytes = row_bytes(ROW_FORMAT_5, bodies, prev, at_ms);
        let mut head = prev;
        for (index, body) in (first..).zip(bodies.iter()) {
            head = record_digest(index, &head, at_ms, body);
        }
        RecordRow { bytes, head }
    }

    /// The row's value.
    pub(super) fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

fn row_bytes(variant: u8, bodies: &super::Bodies, prev: Digest, at_ms: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(64 + bodies.byte_len());
    bytes.push(variant);
    bytes.extend_from_slice(&prev.0);
    super::bodies::varint(&mut bytes, at_ms);
    super::bodies::varint(&mut bytes, bodies.len() as u64);
    bytes.extend_from_slice(bodies.bytes());
    bytes
}

/// The digest of the format-6 row `row` stored under record `first`: the run's head after
/// that commit. `blake3("warden-commit-v1" 0 varint(first) row)`, the row whole from its
/// variant index; the key's index is hashed because the row does not hold it.
pub(super) fn commit_digest(first: u64, row: &[u8]) -> Digest {
    let tag = domain::COMMIT.as_bytes();
    let mut head = [0u8; domain::COMMIT.len() + 1 + 10];
    head[..tag.len()].copy_from_slice(tag);
    let len = put_varint(&mut head, tag.len() + 1, first);
    let mut hasher = blake3::Hasher::new();
    hasher.update(&head[..len]);
    hasher.update(row);
    Digest(*hasher.finalize().as_bytes())
}

/// A commit of format 6 as its row tells it: records `first` to `end - 1`, following the
/// run's head `prev`, leaving the run's head at `head`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Link {
    pub(super) first: u64,
    pub(super) end: u64,
    pub(super) prev: Digest,
    pub(super) head: Digest,
}

/// The records of one row, each with its digest, and, for a format-6 row, its commit.
pub(super) struct DecodedRow {
    pub(super) records: Vec<(Record, Digest)>,
    pub(super) link: Option<Link>,
}

/// [`Record::digest`] of the record (`index`, `prev`, `at_ms`, the body encoded as
/// `body`), from the body's bytes as they are: a record's fields in order (postcard writes
/// them without names), its index, its predecessor's 32 bytes and its time, then its body.
fn record_digest(index: u64, prev: &Digest, at_ms: u64, body: &[u8]) -> Digest {
    /// The tag and its 0, two varints of at most ten bytes and the 32 bytes of `prev`.
    const HEAD: usize = domain::RECORD.len() + 1 + 10 + 32 + 10;
    let tag = domain::RECORD.as_bytes();
    let mut head = [0u8; HEAD];
    head[..tag.len()].copy_from_slice(tag);
    let at = put_varint(&mut head, tag.len() + 1, index);
    head[at..at + 32].copy_from_slice(&prev.0);
    let len = put_varint(&mut head, at + 32, at_ms);
    let mut hasher = blake3::Hasher::new();
    hasher.update(&head[..len]);
    hasher.update(body);
    Digest(*hasher.finalize().as_bytes())
}

/// Writes `value` as postcard writes an unsigned integer into `out` from `at`; returns
/// where it ends.
fn put_varint(out: &mut [u8], mut at: usize, mut value: u64) -> usize {
    while value >= 0x80 {
        out[at] = value as u8 | 0x80;
        value >>= 7;
        at += 1;
    }
    out[at] = value as u8;
    at + 1
}

/// The records of a row of table `records` keyed by `first` (the index of its first
/// record), each with its digest: as stored (formats 1 to 4) or computed (formats 5 and 6).
/// `before` is the digest of the record before the row (all zeros for record 0): a
/// format-6 row stores the run's head there instead, a commit digest, so its records'
/// predecessors are chained from `before`. What does not check out is the error's message:
/// bytes that do not decode, bytes after the row, a row that holds no record or that begins
/// with another record than its key.
pub(super) fn decode_row(first: u64, bytes: &[u8], before: Digest) -> Result<DecodedRow, String> {
    let mut link = None;
    let (records, rest) = match bytes.first() {
        Some(&ROW_FORMAT_5) => {
            let mut records = Vec::new();
            let (_, rest) =
                decode_bodies(first, &bytes[1..], None, &mut records).map_err(|e| e.to_string())?;
            (records, rest)
        }
        Some(&ROW_FORMAT_6) => {
            let mut records = Vec::new();
            let (prev, rest) = decode_bodies(first, &bytes[1..], Some(before), &mut records)
                .map_err(|e| e.to_string())?;
            if rest.is_empty() {
                // The last record may be numbered u64::MAX; the index after it may not.
                let end = first
                    .checked_add(records.len() as u64)
                    .ok_or("the row's records run past the last record number")?;
                link = Some(Link {
                    first,
                    end,
                    prev,
                    head: commit_digest(first, bytes),
                });
            }
            (records, rest)
        }
        _ => match postcard::take_from_bytes::<StoredRecords>(bytes).map_err(|e| e.to_string())? {
            (StoredRecords::V1(record), rest) => (vec![*record], rest),
            (StoredRecords::V2(records), rest) => (records, rest),
        },
    };
    if !rest.is_empty() {
        return Err(format!(
            "{} bytes follow the value (bytes no digest covers were appended)",
            rest.len()
        ));
    }
    // A row is keyed by its first record's index: a row moved, split, merged or emptied
    // is reported here, before the chain is even read.
    match records.first() {
        Some((record, _)) if record.index == first => Ok(DecodedRow { records, link }),
        Some((record, _)) => Err(format!(
            "the row under record {first} begins with record {} (rows were moved or rewritten)",
            record.index
        )),
        None => Err("the row holds no record".into()),
    }
}

/// Reads a format-5 or format-6 row after its variant index into `records`, chaining the
/// first record from `before` (format 6) or from the digest the row stores (format 5);
/// returns the digest the row stores and the bytes after the row.
fn decode_bodies<'a>(
    first: u64,
    bytes: &'a [u8],
    before: Option<Digest>,
    records: &mut Vec<(Record, Digest)>,
) -> postcard::Result<(Digest, &'a [u8])> {
    let (stored, rest) = postcard::take_from_bytes::<[u8; 32]>(bytes)?;
    let (at_ms, rest) = postcard::take_from_bytes::<u64>(rest)?;
    let (count, mut rest) = postcard::take_from_bytes::<u64>(rest)?;
    // Every body takes at least one byte: a count beyond that fails at the end of the row.
    records.reserve(count.min(rest.len() as u64).min(1 << 16) as usize);
    let mut prev = before.unwrap_or(Digest(stored));
    for offset in 0..count {
        // A key near the end of the numbers cannot hold this many records.
        let index = first
            .checked_add(offset)
            .ok_or(postcard::Error::DeserializeBadVarint)?;
        let (body, after) = postcard::take_from_bytes::<RecordBody>(rest)?;
        let digest = record_digest(index, &prev, at_ms, &rest[..rest.len() - after.len()]);
        records.push((
            Record {
                index,
                prev,
                at_ms,
                body,
            },
            digest,
        ));
        prev = digest;
        rest = after;
    }
    Ok((Digest(stored), rest))
}
