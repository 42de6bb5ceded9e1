//! Records decoded for people: one line per record, with request and response bytes
//! decoded, used by `warden show`, replay's divergence reports and error messages.

use super::RecordBody;

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
        Request::Review => "review".into(),
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
        Ok(Response::Review(Some(r))) => format!(
            "review: {} by {} ({}): {}",
            r.outcome, r.reviewer, r.role, r.note
        ),
        Ok(Response::Review(None)) => "review: none".into(),
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
            RecordBody::RunStarted(v1) => format!(
                "run {} started under {} {} in {}",
                v1.run_id, v1.policy_name, v1.policy_version, v1.state
            ),
            RecordBody::Started(start) => format!(
                "run {} started under {} {} in {}",
                start.run_id, start.policy_name, start.policy_version, start.state
            ),
            RecordBody::Review(r) | RecordBody::ReviewPending(r) => {
                let what = match r.kind {
                    crate::decision::ReviewKind::Decision => "reviewed",
                    crate::decision::ReviewKind::FirstOfTwo => "first of two reviews",
                    crate::decision::ReviewKind::Expiry => "review expired",
                };
                format!(
                    "{what}: {} -> {} by {} ({}): {} [action {}]",
                    r.state,
                    r.outcome,
                    r.reviewer,
                    r.role,
                    r.note,
                    r.action.short()
                )
            }
            RecordBody::ReviewRefused(r) => format!(
                "review refused: {} ({}) asked for {}: {}",
                r.reviewer, r.role, r.outcome, r.reason
            ),
            RecordBody::Wasi(wasi) => wasi.describe(),
            RecordBody::Inherited(inherited) => format!(
                "inherits {} recorded tool response(s) from its parent",
                inherited.facts.len()
            ),
            RecordBody::InheritedReview(r) => format!(
                "inherits its parent's review (the agent reads it): {} by {} ({}): {}",
                r.outcome, r.reviewer, r.role, r.note
            ),
            RecordBody::Inference(i) => {
                let probabilities: Vec<String> = i
                    .probabilities
                    .iter()
                    .map(|(label, p)| format!("P({label}) = {p:.4}"))
                    .collect();
                let mut line = format!(
                    "inference #{} of {} in {}: {}",
                    i.id.0,
                    i.model,
                    i.state,
                    probabilities.join(", ")
                );
                if let Some(features) = &i.features {
                    line.push_str(&format!(
                        "; features: {0}/{0} reconciled with input",
                        features.reconciled
                    ));
                    for (_, tool, call) in &features.sources {
                        if let Some(call) = call {
                            line.push_str(&format!(" and {tool} response #{call}"));
                        }
                    }
                }
                if let Some(card) = &i.card {
                    line.push_str(&format!(
                        "; card {} {} ({})",
                        card.name,
                        card.version,
                        card.card.short()
                    ));
                }
                line
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
            RecordBody::Outcome(outcome) => {
                let mut line = format!("outcome {} in {}", outcome.status, outcome.state);
                if let Some(output) = &outcome.output {
                    line.push_str(&format!(", output {output}"));
                }
                if let Some(reason) = &outcome.reason {
                    line.push_str(&format!(", reason: {reason}"));
                }
                line
            }
        }
    }
}
