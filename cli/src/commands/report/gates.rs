//! The gates: the policy's confidence gates, every judgement of one in the run (label,
//! probability against threshold, verdict and rule), and every inference in full, with
//! its model card and the features the agent sent beside the sources the policy declares
//! for them and whether Warden reconciled them. Every string is escaped ([`Esc`]).

use std::fmt::{self, Write};

use serde_json::Value;
use warden::{ModelInference, RecordBody, Rule};

use super::Material;
use super::html::{Esc, digest};
use super::steps::{FLAG, decision_cell, flagged};

/// A gate's judgement, as its rule records it.
struct Judged<'a> {
    to: &'a str,
    model: &'a str,
    label: Option<&'a str>,
    inference: Option<u64>,
    probability: Option<f64>,
    threshold: Option<f64>,
}

fn judged(rule: &Rule) -> Option<Judged<'_>> {
    let j = match rule {
        Rule::GateMet {
            to,
            model,
            inference,
            confidence,
            threshold,
        } => Judged {
            to,
            model,
            label: None,
            inference: Some(inference.0),
            probability: Some(*confidence),
            threshold: Some(*threshold),
        },
        Rule::GateNotMet {
            to,
            model,
            inference,
            confidence,
            threshold,
            ..
        } => Judged {
            to,
            model,
            label: None,
            inference: inference.map(|i| i.0),
            probability: *confidence,
            threshold: Some(*threshold),
        },
        Rule::GateLabelMet {
            to,
            model,
            inference,
            label,
            probability,
            threshold,
            ..
        } => Judged {
            to,
            model,
            label: Some(label),
            inference: Some(inference.0),
            probability: Some(*probability),
            threshold: Some(*threshold),
        },
        Rule::GateLabelNotMet {
            to,
            model,
            inference,
            label,
            probability,
            threshold,
            ..
        } => Judged {
            to,
            model,
            label: Some(label),
            inference: inference.map(|i| i.0),
            probability: *probability,
            threshold: Some(*threshold),
        },
        Rule::EvidenceUnknown { to, inference } => Judged {
            to,
            model: "",
            label: None,
            inference: Some(inference.0),
            probability: None,
            threshold: None,
        },
        Rule::EvidenceWrongModel {
            to,
            inference,
            model,
            ..
        }
        | Rule::EvidenceNotLatest {
            to,
            inference,
            model,
            ..
        } => Judged {
            to,
            model,
            label: None,
            inference: Some(inference.0),
            probability: None,
            threshold: None,
        },
        _ => return None,
    };
    Some(j)
}

/// The gates: the policy's, each judgement in the run, and every inference in full.
pub(crate) fn gates(out: &mut String, m: &Material) -> fmt::Result {
    out.push_str("<h2 id=\"gates\">Confidence gates and inferences</h2>\n");
    if let Ok(policy) = &m.policy {
        if policy.gates.is_empty() {
            out.push_str("<p>The policy declares no confidence gate.</p>\n");
        } else {
            out.push_str(
                "<h3>The policy's gates</h3>\n<table>\n<thead><tr><th>Gated state</th><th>Model</th><th>Label</th>\
                 <th>Threshold</th><th>Otherwise (review)</th><th>Features must reconcile</th></tr></thead>\n<tbody>\n",
            );
            for gate in &policy.gates {
                writeln!(
                    out,
                    "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td class=\"num\">{}</td><td><code>{}</code></td><td>{}</td></tr>",
                    Esc(&gate.to),
                    Esc(&gate.model),
                    gate.label.as_deref().map_or_else(
                        || "any (edition 1)".to_string(),
                        |l| format!("<code>{}</code>", Esc(l))
                    ),
                    gate.min_confidence,
                    Esc(&gate.otherwise),
                    if gate.require_reconciled { "yes" } else { "no" }
                )?;
            }
            out.push_str("</tbody>\n</table>\n");
        }
    }
    out.push_str("<h3>Gate decisions in this run</h3>\n");
    let mut rows = 0;
    for record in &m.records {
        let RecordBody::HostCall {
            step,
            call,
            state,
            decision,
            ..
        } = &record.body
        else {
            continue;
        };
        let Some(j) = judged(&decision.rule) else {
            continue;
        };
        if rows == 0 {
            out.push_str(
                "<table>\n<thead><tr><th>Record</th><th>Call</th><th>Asked</th><th>Inference</th>\
                 <th>Probability vs threshold</th><th>Decision and rule</th></tr></thead>\n<tbody>\n",
            );
        }
        rows += 1;
        let bad = flagged(m, record.index);
        let measure = j.label.map_or_else(
            || "confidence in its prediction".to_string(),
            |label| format!("P({})", Esc(label)),
        );
        let comparison = match (j.probability, j.threshold) {
            (Some(p), Some(t)) => format!(
                "{measure} = <strong>{p:.4}</strong> {} {t} <span class=\"muted\">(exactly {p})</span>",
                if p >= t { "\u{2265}" } else { "&lt;" }
            ),
            (None, Some(t)) => format!("no probability (needs \u{2265} {t})"),
            _ => "not judged: the citation was refused".to_string(),
        };
        let inference = j.inference.map_or_else(
            || "none".to_string(),
            |id| format!("<a href=\"#inference-{id}\">#{id}</a>"),
        );
        write!(
            out,
            "<tr{}><td class=\"num\">{}{}</td><td class=\"num\">{call}<br><span class=\"muted\">step {step}</span></td>\
             <td><code>{}</code> \u{2192} <code>{}</code></td><td>{inference}{}</td><td>{comparison}</td><td>",
            if bad { " class=\"bad\"" } else { "" },
            record.index,
            if bad { FLAG } else { "" },
            Esc(state),
            Esc(j.to),
            if j.model.is_empty() {
                String::new()
            } else {
                format!(" of <code>{}</code>", Esc(j.model))
            },
        )?;
        decision_cell(out, decision)?;
        out.push_str("</td></tr>\n");
    }
    if rows == 0 {
        out.push_str("<p>No transition of this run was judged by a gate.</p>\n");
    } else {
        out.push_str("</tbody>\n</table>\n");
    }
    let inferences: Vec<&ModelInference> = m
        .records
        .iter()
        .filter_map(|r| match &r.body {
            RecordBody::Inference(i) => Some(&**i),
            _ => None,
        })
        .collect();
    if inferences.is_empty() {
        out.push_str("<p>The run records no inference.</p>\n");
    }
    for i in inferences {
        inference(out, m, i)?;
    }
    Ok(())
}

/// The features the agent sent with the model request of call `call`.
fn features_sent(m: &Material, call: u64) -> Option<serde_json::Map<String, Value>> {
    let entry = m.entries.iter().find(|e| {
        e.kind == "host_call" && e.body.get("call").and_then(Value::as_u64) == Some(call)
    })?;
    let text = entry.body.pointer("/request/Model/features")?.as_str()?;
    match serde_json::from_str(text).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

fn inference(out: &mut String, m: &Material, i: &ModelInference) -> fmt::Result {
    writeln!(
        out,
        "<h3 id=\"inference-{id}\">Inference #{id}: <code>{}</code> in <code>{}</code></h3>\n<table class=\"kv\">",
        Esc(&i.model),
        Esc(&i.state),
        id = i.id.0
    )?;
    match &i.card {
        Some(card) => {
            write!(
                out,
                "<tr><th>Model card</th><td><code>{}</code> version <code>{}</code>, provider <code>{}</code><br>",
                Esc(&card.name),
                Esc(&card.version),
                Esc(&card.provider)
            )?;
            digest(out, &card.card)?;
            out.push_str("</td></tr>\n");
        }
        None => out.push_str("<tr><th>Model card</th><td class=\"muted\">not recorded</td></tr>\n"),
    }
    write!(
        out,
        "<tr><th>Predicted label</th><td><code>{}</code></td></tr>\n<tr><th>Probabilities</th><td>",
        Esc(&i.label)
    )?;
    for (n, (label, p)) in i.probabilities.iter().enumerate() {
        write!(
            out,
            "{}P(<code>{}</code>) = {p}",
            if n > 0 { "<br>" } else { "" },
            Esc(label)
        )?;
    }
    writeln!(
        out,
        "</td></tr>\n<tr><th>Made in</th><td>state <code>{}</code>, visit {} (transitions before it)</td></tr>",
        Esc(&i.state),
        i.visit
    )?;
    let reconciled = match &i.features {
        Some(f) => {
            let mut text = format!(
                "yes: all {} declared features were recomputed by Warden from the input",
                f.reconciled
            );
            for (source, tool, call) in &f.sources {
                match call {
                    Some(call) => {
                        let _ = write!(text, " and {tool} response #{call} (source {source})");
                    }
                    None => {
                        let _ = write!(text, " ({source}: {tool}, no response used)");
                    }
                }
            }
            text.push_str(" before the model was asked, and matched what the agent sent");
            text
        }
        None => "no: the policy declares no sources for this model's features".to_string(),
    };
    writeln!(
        out,
        "<tr><th>Features reconciled</th><td>{}</td></tr>\n</table>",
        Esc(&reconciled)
    )?;
    let declared: Vec<(String, String, String)> = m
        .policy
        .as_ref()
        .ok()
        .and_then(|p| p.model_rules(&i.model))
        .and_then(|r| r.provenance.as_ref())
        .map(|p| {
            p.canonical()
                .into_iter()
                .map(|e| (e.kind.to_string(), e.name, e.text))
                .collect()
        })
        .unwrap_or_default();
    let source_of = |name: &str| {
        declared
            .iter()
            .find(|(kind, n, _)| kind == "feature" && n == name)
            .map(|(_, _, text)| text.as_str())
    };
    let sent = features_sent(m, i.id.0).unwrap_or_default();
    out.push_str(
        "<table>\n<thead><tr><th>Feature</th><th>Value sent</th><th>Declared source (policy)</th><th>Reconciled</th></tr></thead>\n<tbody>\n",
    );
    for (name, value) in &sent {
        let source = source_of(name);
        writeln!(
            out,
            "<tr><td><code>{}</code></td><td class=\"num\"><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            Esc(name),
            Esc(&value.to_string()),
            source.map_or_else(
                || "<span class=\"muted\">none declared</span>".to_string(),
                |s| format!("<code>{}</code>", Esc(s))
            ),
            match (&i.features, source) {
                (Some(_), Some(_)) => "<span class=\"allowed\">yes</span>",
                _ => "<span class=\"muted\">not checked</span>",
            }
        )?;
    }
    if sent.is_empty() {
        out.push_str("<tr><td colspan=\"4\" class=\"muted\">the request's features could not be read</td></tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
    for (kind, title) in [
        ("source", "Declared sources"),
        ("let", "Intermediate values"),
    ] {
        let mut first = true;
        for (_, name, text) in declared.iter().filter(|(k, _, _)| k == kind) {
            write!(
                out,
                "{}<code>{}</code> = <code>{}</code>",
                if first {
                    format!("<p class=\"muted\">{title}: ")
                } else {
                    "; ".to_string()
                },
                Esc(name),
                Esc(text)
            )?;
            first = false;
        }
        if !first {
            out.push_str("</p>\n");
        }
    }
    Ok(())
}
