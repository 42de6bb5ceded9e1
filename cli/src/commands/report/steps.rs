//! The sections about what the run did, step by step: its path through the state
//! machine (with the diagram) and every record, each host call with its decision, the
//! rule that decided it and its response. Also the helpers the other sections share to
//! show a decision and to mark a record that does not check out. Everything is read
//! from the run's records; every string from them is escaped ([`Esc`]).

use std::collections::BTreeMap;
use std::fmt::{self, Write};

use serde_json::Value;
use warden::{
    Decision, ModelInference, Record, RecordBody, ReviewKind, Rule, Verdict,
    describe_request_bytes, describe_response_bytes,
};

use super::Material;
use super::html::{Esc, time};
use super::svg;

/// How enforcement's verdict reads on the page.
fn verdict(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Allow => "allowed",
        Verdict::Deny => "denied",
        Verdict::Escalate => "escalated",
    }
}

/// The rule's name as journaled (`TransitionAllowed`, `GateLabelNotMet`, ...).
fn rule_name(rule: &Rule) -> String {
    match serde_json::to_value(rule) {
        Ok(Value::String(name)) => name,
        Ok(Value::Object(fields)) => fields.keys().next().cloned().unwrap_or_default(),
        _ => String::new(),
    }
}

pub(super) fn decision_cell(out: &mut String, decision: &Decision) -> fmt::Result {
    let word = verdict(decision.verdict);
    write!(
        out,
        "<span class=\"verdict {word}\">{word}</span> <code class=\"rule\">{}</code><br>{}",
        Esc(&rule_name(&decision.rule)),
        Esc(&decision.rule.to_string())
    )
}

/// Whether the record at `index` is the first that does not check out, or does not
/// carry its predecessor's digest.
pub(super) fn flagged(m: &Material, index: u64) -> bool {
    m.flagged.contains(&index)
}

pub(super) const FLAG: &str = "<br><strong class=\"denied\">\u{2717} does not check out</strong>";

/// One move of the run through the state machine.
#[derive(Debug)]
struct Move<'a> {
    record: u64,
    step: u32,
    from: &'a str,
    to: &'a str,
    /// Who moved it: the agent, a gate or a reviewer, in words.
    by: String,
}

fn moves(records: &[Record]) -> Vec<Move<'_>> {
    let mut moves = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let RecordBody::Transition { step, from, to } = &record.body else {
            continue;
        };
        let before = i.checked_sub(1).and_then(|i| records.get(i));
        let by = match before.map(|r| &r.body) {
            Some(RecordBody::HostCall { call, decision, .. })
                if decision.verdict == Verdict::Escalate =>
            {
                format!("by the confidence gate (call {call}): {}", decision.rule)
            }
            Some(RecordBody::HostCall { call, decision, .. }) => {
                format!("by the agent (call {call}): {}", decision.rule)
            }
            Some(RecordBody::Review(review)) => match review.kind {
                ReviewKind::Expiry => "by the review state's timeout".to_string(),
                _ => format!("by review: {} ({})", review.reviewer, review.role),
            },
            _ => String::new(),
        };
        moves.push(Move {
            record: record.index,
            step: *step,
            from,
            to,
            by,
        });
    }
    moves
}

/// The path section: the diagram and the moves in words.
pub(crate) fn path(out: &mut String, m: &Material) -> fmt::Result {
    let moves = moves(&m.records);
    let initial = m
        .start
        .as_ref()
        .map_or(m.meta.outcome.state.as_str(), |s| s.state.as_str());
    out.push_str("<h2 id=\"path\">Path through the state machine</h2>\n");
    if let Err(problem) = &m.policy {
        writeln!(
            out,
            "<p class=\"denied\">The stored policy could not be read ({}); only the states the run passed through are drawn.</p>",
            Esc(problem)
        )?;
    }
    out.push_str("<div class=\"diagram\">");
    svg::diagram(
        out,
        m.policy.as_ref().ok(),
        &svg::Path {
            initial,
            moves: moves.iter().map(|mv| (mv.from, mv.to)).collect(),
            current: &m.meta.outcome.state,
        },
    )?;
    out.push_str(
        "</div>\n<p class=\"legend\">Boxes are the policy's states (rounded: terminal; dashed amber: review; \
         filled: where the run stands). Grey arrows are the transitions the policy allows, dashed amber ones \
         where a confidence gate may send a run to review instead. Blue arrows are the run's path, numbered in order.</p>\n",
    );
    writeln!(
        out,
        "<ol class=\"path\">\n<li value=\"0\">started in <code>{}</code></li>",
        Esc(initial)
    )?;
    for mv in &moves {
        writeln!(
            out,
            "<li>step {}: <code>{}</code> \u{2192} <code>{}</code> <span class=\"muted\">{} (record {})</span></li>",
            mv.step,
            Esc(mv.from),
            Esc(mv.to),
            Esc(&mv.by),
            mv.record
        )?;
    }
    writeln!(
        out,
        "</ol>\n<p>The run stands in <code>{}</code> ({}).</p>",
        Esc(&m.meta.outcome.state),
        m.meta.outcome.status
    )
}

/// A row spanning the table: an event of the run rather than a host call.
fn event(out: &mut String, m: &Material, index: u64, class: &str, html: &str) -> fmt::Result {
    let bad = flagged(m, index);
    writeln!(
        out,
        "<tr class=\"{class}{}\"><td class=\"num\">{index}{}</td><td colspan=\"4\">{html}</td></tr>",
        if bad { " bad" } else { "" },
        if bad { FLAG } else { "" }
    )
}

/// Every step and host call.
pub(crate) fn steps(out: &mut String, m: &Material) -> fmt::Result {
    out.push_str(
        "<h2 id=\"steps\">Steps and host calls</h2>\n<p>Every record of the run in order: each host call the agent \
         made with enforcement's decision, the rule that decided it, and the response the agent was given. \
         Record numbers are the journal's (<code>warden show</code>).</p>\n",
    );
    if m.records.is_empty() {
        out.push_str("<p class=\"denied\">No records could be read.</p>\n");
        return Ok(());
    }
    let responses: BTreeMap<u64, (u64, &[u8])> = m
        .records
        .iter()
        .filter_map(|r| match &r.body {
            RecordBody::HostResponse { call, response } => Some((*call, (r.index, &response[..]))),
            _ => None,
        })
        .collect();
    out.push_str(
        "<table class=\"calls\">\n<colgroup><col class=\"rec\"><col class=\"call\"><col class=\"request\">\
         <col class=\"decision\"><col class=\"response\"></colgroup>\n\
         <thead><tr><th>Record</th><th>Call</th><th>Request</th>\
         <th>Decision and rule</th><th>Response</th></tr></thead>\n<tbody>\n",
    );
    let mut step_shown = None;
    for record in &m.records {
        let index = record.index;
        if let Some(step) = record.body.step()
            && step_shown != Some(step)
        {
            step_shown = Some(step);
            let what = match &record.body {
                RecordBody::StepStarted { state, .. } => format!("in <code>{}</code>", Esc(state)),
                RecordBody::Review(r) => format!("review in <code>{}</code>", Esc(&r.state)),
                _ if step == 0 => "(the agent as loaded, before its first step)".to_string(),
                _ => String::new(),
            };
            writeln!(
                out,
                "<tr class=\"group\" id=\"step-{step}\"><th colspan=\"5\">Step {step} {what} <span class=\"muted\">\u{b7} committed {}</span></th></tr>",
                time(record.at_ms)
            )?;
        }
        match &record.body {
            RecordBody::HostCall {
                call,
                state,
                fuel,
                request,
                decision,
                ..
            } => {
                let response = responses.get(call);
                let bad = flagged(m, index) || response.is_some_and(|(i, _)| flagged(m, *i));
                let protocol = matches!(decision.rule, Rule::RunProtocol);
                let class = match (bad, protocol) {
                    (true, _) => " class=\"bad\"",
                    (false, true) => " class=\"protocol\"",
                    (false, false) => "",
                };
                write!(
                    out,
                    "<tr{class}><td class=\"num\">{index}{}{}</td><td class=\"num\">{call}<br><span class=\"muted\">fuel {fuel}</span></td>\
                     <td><code>{}</code><br><span class=\"muted\">in {}</span></td><td>",
                    response
                        .map(|(i, _)| format!("\u{2013}{i}"))
                        .unwrap_or_default(),
                    if bad { FLAG } else { "" },
                    Esc(&describe_request_bytes(request)),
                    Esc(state)
                )?;
                decision_cell(out, decision)?;
                match response {
                    Some((_, bytes)) => writeln!(
                        out,
                        "</td><td><code>{}</code></td></tr>",
                        Esc(&describe_response_bytes(bytes))
                    )?,
                    None => out.push_str(
                        "</td><td class=\"muted\">none: the call was not answered</td></tr>\n",
                    ),
                }
            }
            RecordBody::HostResponse { .. } | RecordBody::StepStarted { .. } => {}
            RecordBody::Transition { from, to, .. } => event(
                out,
                m,
                index,
                "",
                &format!(
                    "<strong>transition</strong> <code>{}</code> \u{2192} <code>{}</code>",
                    Esc(from),
                    Esc(to)
                ),
            )?,
            RecordBody::StepCommitted { step, fuel, state } => event(
                out,
                m,
                index,
                "protocol",
                &format!(
                    "step {step} committed in <code>{}</code>, fuel {fuel}",
                    Esc(state)
                ),
            )?,
            RecordBody::Checkpoint { step, digest } => event(
                out,
                m,
                index,
                "protocol",
                &format!("checkpoint after step {step}: <code class=\"digest\">{digest}</code>"),
            )?,
            RecordBody::Inference(i) => event(
                out,
                m,
                index,
                "",
                &format!(
                    "<strong>inference</strong> #{} of <code>{}</code> recorded: {} (<a href=\"#inference-{}\">details</a>)",
                    i.id.0,
                    Esc(&i.model),
                    Esc(&probabilities(i)),
                    i.id.0
                ),
            )?,
            RecordBody::Review(_) | RecordBody::ReviewPending(_) | RecordBody::ReviewRefused(_) => {
                event(
                    out,
                    m,
                    index,
                    "event",
                    &format!(
                        "<strong>{}</strong> (<a href=\"#review\">review</a>)",
                        Esc(&record.body.describe())
                    ),
                )?
            }
            RecordBody::Outcome(outcome) => {
                step_shown = None;
                let reason = outcome
                    .reason
                    .as_ref()
                    .map(|r| format!(": {}", Esc(&r.to_string())))
                    .unwrap_or_default();
                event(
                    out,
                    m,
                    index,
                    "event",
                    &format!(
                        "<strong>outcome: {} in <code>{}</code></strong>{reason}",
                        outcome.status,
                        Esc(&outcome.state)
                    ),
                )?
            }
            other => event(
                out,
                m,
                index,
                "event",
                &format!("<strong>{}</strong>", Esc(&other.describe())),
            )?,
        }
    }
    out.push_str("</tbody>\n</table>\n");
    Ok(())
}

fn probabilities(i: &ModelInference) -> String {
    i.probabilities
        .iter()
        .map(|(label, p)| format!("P({label}) = {p:.4}"))
        .collect::<Vec<_>>()
        .join(", ")
}
