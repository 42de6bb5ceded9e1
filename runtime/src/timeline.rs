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

fn entry(record: &Record, digest: Digest, prev_ok: bool) -> Entry {
    let at = humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(record.at_ms),
    );
    Entry {
        index: record.index,
        at: at.to_string(),
        prev: record.prev,
        digest,
        prev_ok,
        kind: kind(&record.body),
        text: record.body.describe(),
        body: body_json(&record.body),
    }
}

fn kind(body: &RecordBody) -> &'static str {
    match body {
        RecordBody::RunStarted { .. } => "run_started",
        RecordBody::StepStarted { .. } => "step_started",
        RecordBody::HostCall { .. } => "host_call",
        RecordBody::HostResponse { .. } => "host_response",
        RecordBody::Transition { .. } => "transition",
        RecordBody::Checkpoint { .. } => "checkpoint",
        RecordBody::StepCommitted { .. } => "step_committed",
        RecordBody::Outcome { .. } => "outcome",
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
        RecordBody::Outcome {
            reason: Some(reason),
            ..
        } => {
            let mut value = serde_json::to_value(body).unwrap_or(Value::Null);
            if let Some(fields) = value.get_mut("Outcome").and_then(Value::as_object_mut) {
                fields.insert("explanation".into(), Value::String(reason.to_string()));
            }
            value
        }
        other => serde_json::to_value(other).unwrap_or(Value::Null),
    }
}

/// A request, decoded for people.
pub fn describe_request(request: &warden_guest::wire::Request) -> String {
    use warden_guest::wire::Request;
    match request {
        Request::Input => "input".into(),
        Request::State => "state".into(),
        Request::Tool { name, args } => format!("tool {name} {args}"),
        Request::Model { name, features } => format!("model {name} {features}"),
        Request::Transition {
            to,
            evidence: Some(id),
        } => format!("transition -> {to} (citing inference #{})", id.0),
        Request::Transition { to, evidence: None } => format!("transition -> {to}"),
        Request::Log { level, message } => format!("log {level:?}: {message}"),
        Request::Finish { output } => format!("finish {output}"),
        Request::Abort { reason } => format!("abort: {reason}"),
    }
}

/// Request bytes, decoded for people (or shown as bytes if they do not decode).
pub fn describe_request_bytes(bytes: &[u8]) -> String {
    match postcard::from_bytes::<warden_guest::wire::Request>(bytes) {
        Ok(request) => describe_request(&request),
        Err(_) => format!("{} undecodable bytes {}", bytes.len(), hex_prefix(bytes)),
    }
}

/// Response bytes, decoded for people.
pub fn describe_response_bytes(bytes: &[u8]) -> String {
    use warden_guest::wire::Response;
    match postcard::from_bytes::<Response>(bytes) {
        Ok(Response::Input(json)) => format!("input {}", compact_json(&json)),
        Ok(Response::State(state)) => format!("state {state}"),
        Ok(Response::Tool(Ok(json))) => format!("ok {json}"),
        Ok(Response::Tool(Err(e))) => format!("tool error {:?}: {}", e.kind, e.message),
        Ok(Response::Model(Ok(i))) => format!(
            "inference #{} of {}: {} (confidence {:.4})",
            i.id.0, i.model, i.value, i.confidence
        ),
        Ok(Response::Model(Err(e))) => format!("model error {:?}: {}", e.kind, e.message),
        Ok(Response::Transitioned(state)) => format!("now in {state}"),
        Ok(Response::Ack) => "ok".into(),
        Err(_) => format!("{} undecodable bytes {}", bytes.len(), hex_prefix(bytes)),
    }
}

/// JSON text on one line (as given if it does not parse).
fn compact_json(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .map_or_else(|_| json.to_string(), |v| v.to_string())
}

fn hex_prefix(bytes: &[u8]) -> String {
    let shown: String = bytes.iter().take(16).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > 16 {
        format!("{shown}...")
    } else {
        shown
    }
}

impl RecordBody {
    /// One line for people: what the record says, decoded.
    pub fn describe(&self) -> String {
        match self {
            RecordBody::RunStarted {
                run_id,
                policy_name,
                policy_version,
                state,
                ..
            } => {
                format!("run {run_id} started under {policy_name} {policy_version} in {state}")
            }
            RecordBody::StepStarted { step, state } => format!("step {step} started in {state}"),
            RecordBody::HostCall {
                step,
                call,
                state,
                fuel,
                request,
                decision,
            } => format!(
                "step {step} call {call} in {state} (fuel {fuel}): {} => {:?}: {}",
                describe_request_bytes(request),
                decision.verdict,
                decision.rule
            ),
            RecordBody::HostResponse { call, response } => {
                format!(
                    "call {call} response: {}",
                    describe_response_bytes(response)
                )
            }
            RecordBody::Transition { step, from, to } => format!("step {step}: {from} -> {to}"),
            RecordBody::Checkpoint { step, digest } => {
                format!("checkpoint after step {step}: {}", digest.short())
            }
            RecordBody::StepCommitted { step, fuel, state } => {
                format!("step {step} committed in {state} (fuel {fuel})")
            }
            RecordBody::Outcome {
                status,
                state,
                output,
                reason,
                ..
            } => {
                let mut line = format!("outcome {status} in {state}");
                if let Some(output) = output {
                    line.push_str(&format!(", output {output}"));
                }
                if let Some(reason) = reason {
                    line.push_str(&format!(", reason: {reason}"));
                }
                line
            }
        }
    }
}
