//! A run's timeline as people and machines read it (`warden show`): every record decoded,
//! with its digest and whether its predecessor digest checks out.

use serde::Serialize;
use serde_json::{Value, json};

use crate::digest::Digest;
use crate::journal::{Journal, JournalError, Record, RecordBody, RunMeta, Verification};

/// One record, decoded.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Position in the run's journal.
    pub index: u64,
    /// Commit time, RFC 3339.
    pub at: String,
    /// Commit time, ms since the Unix epoch.
    pub at_ms: u64,
    /// The digest of the previous record, as stored.
    pub prev: Digest,
    /// This record's digest, recomputed.
    pub digest: Digest,
    /// Whether `prev` equals the previous record's recomputed digest.
    pub prev_ok: bool,
    /// `run_started`, `step_started`, `host_call`, ...
    pub kind: &'static str,
    /// One line for people.
    pub text: String,
    /// The record's fields, with request and response bytes decoded.
    pub body: Value,
}

/// A run's metadata, its records and the verification of its chain.
#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    /// The run's summary.
    pub run: RunMeta,
    /// Every record, decoded.
    pub records: Vec<Entry>,
    /// The verification of its chain.
    pub verification: Verification,
}

impl Timeline {
    /// Loads and decodes a run's journal.
    ///
    /// # Errors
    /// Journal errors, or no such run.
    pub fn load(journal: &Journal, run_id: &str) -> Result<Timeline, JournalError> {
        let run = journal.run(run_id)?;
        let verification = journal.verify(run_id)?;
        let mut prev = Digest::ZERO;
        let mut records = Vec::new();
        for (record, _) in journal.stored_records(run_id)? {
            let digest = record.digest();
            records.push(entry(&record, digest, record.prev == prev));
            prev = digest;
        }
        Ok(Timeline {
            run,
            records,
            verification,
        })
    }
}

/// The format tag of every line `warden export --format jsonl` writes.
pub const EXPORT_FORMAT: &str = "warden-export-v1";

/// One line of `warden export --format jsonl`: one record of one run, with its digests.
/// The field names are stable and documented in `docs/export.md`; new fields may be
/// added, none is renamed or removed without a new [`EXPORT_FORMAT`].
#[derive(Debug, Clone, Serialize)]
pub struct ExportLine<'a> {
    /// [`EXPORT_FORMAT`].
    pub format: &'static str,
    /// The run.
    pub run_id: &'a str,
    /// The record, decoded.
    #[serde(flatten)]
    pub record: &'a Entry,
}

impl Timeline {
    /// The run's records as export lines, in order.
    pub fn export_lines(&self) -> impl Iterator<Item = ExportLine<'_>> {
        self.records.iter().map(|record| ExportLine {
            format: EXPORT_FORMAT,
            run_id: &self.run.run_id,
            record,
        })
    }
}

fn entry(record: &Record, digest: Digest, prev_ok: bool) -> Entry {
    let at = crate::journal::timestamp(record.at_ms);
    Entry {
        index: record.index,
        at,
        at_ms: record.at_ms,
        prev: record.prev,
        digest,
        prev_ok,
        kind: record.body.kind(),
        text: record.body.describe(),
        body: body_json(&record.body),
    }
}

fn bytes_json<T: Serialize + for<'de> serde::Deserialize<'de>>(bytes: &[u8]) -> Value {
    match postcard::from_bytes::<T>(bytes) {
        Ok(value) => serde_json::to_value(value).unwrap_or(Value::Null),
        Err(_) => json!({ "undecodable_bytes": bytes.len() }),
    }
}

fn body_json(body: &RecordBody) -> Value {
    match body {
        RecordBody::HostCall {
            step,
            call,
            state,
            fuel,
            request,
            decision,
        } => json!({
            "step": step,
            "call": call,
            "state": state,
            "fuel": fuel,
            "request": bytes_json::<warden_guest::wire::Request>(request),
            "request_bytes": request.len(),
            "decision": {
                "verdict": decision.verdict,
                "rule": decision.rule,
                "explanation": decision.rule.to_string(),
            },
        }),
        RecordBody::HostResponse { call, response } => json!({
            "call": call,
            "response": bytes_json::<warden_guest::wire::Response>(response),
            "response_bytes": response.len(),
        }),
        RecordBody::Outcome(outcome) if outcome.reason.is_some() => {
            let reason = outcome.reason.as_ref().map(ToString::to_string);
            let mut value = serde_json::to_value(body).unwrap_or(Value::Null);
            if let Some(fields) = value.get_mut("Outcome").and_then(Value::as_object_mut) {
                fields.insert("explanation".into(), reason.into());
            }
            value
        }
        other => serde_json::to_value(other).unwrap_or(Value::Null),
    }
}
