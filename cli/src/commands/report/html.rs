//! The page: escaping, the style sheet, and the sections about the run as a whole
//! (header, provenance, verification, footer, appendices). The sections about what the
//! run did are in `steps.rs`, `gates.rs` and `reviews.rs`, the diagram in `svg.rs`.
//!
//! Upholds the report's one rule: nothing from the journal reaches the page but through
//! [`Esc`], and the page loads nothing.

use std::fmt::{self, Write};

use warden::{Digest, Status};

use super::{Inclusion, Material};
use crate::output;

/// Text from the journal (or anywhere else), made safe for HTML, in an element or in a
/// quoted attribute: `& < > " '` become character references; control and invisible
/// format characters are shown as `\u{..}` (as in the terminal, `output::escape`), so
/// that nothing can reorder or hide text; new lines are kept. `=` and the colon of a
/// `://` become references too, so that no text of a run reads as an attribute
/// (`src=`) or a URL to a scanner that greps the page: the page's own markup is the
/// only place they occur.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, line) in self.0.split('\n').enumerate() {
            if n > 0 {
                f.write_char('\n')?;
            }
            let line = output::escape(line);
            for (i, c) in line.char_indices() {
                match c {
                    '&' => f.write_str("&amp;")?,
                    '<' => f.write_str("&lt;")?,
                    '>' => f.write_str("&gt;")?,
                    '"' => f.write_str("&quot;")?,
                    '\'' => f.write_str("&#39;")?,
                    '=' => f.write_str("&#61;")?,
                    ':' if line[i + 1..].starts_with("//") => f.write_str("&#58;")?,
                    c => f.write_char(c)?,
                }
            }
        }
        Ok(())
    }
}

/// The width of `text` as shown, in columns of a monospace font (wide characters count
/// two; escaped characters as their escape).
pub(crate) fn columns(text: &str) -> usize {
    output::escape(text)
        .chars()
        .map(|c| if u32::from(c) >= 0x1100 { 2 } else { 1 })
        .sum()
}

/// ms since the Unix epoch, as RFC 3339 (UTC, milliseconds).
pub(crate) fn time(ms: u64) -> String {
    warden::timestamp(ms)
}

/// JSON text, pretty-printed (as given if it does not parse).
pub(crate) fn pretty_json(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_string())
}

/// A digest in full, as a code span.
pub(crate) fn digest(out: &mut String, digest: &Digest) -> fmt::Result {
    write!(out, "<code class=\"digest\">{digest}</code>")
}

const STYLE: &str = r#"
@page { size: A4; margin: 14mm 12mm 16mm; }
* { box-sizing: border-box; }
html { color-scheme: light; }
body { margin: 0; background: #fff; color: #1b1f24;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Liberation Sans", sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 20px 32px 40px; }
.kicker { margin: 0; font-size: 12px; letter-spacing: .08em; text-transform: uppercase; color: #4a5563; }
h1 { font-size: 22px; margin: 2px 0 10px; }
h2 { font-size: 17px; color: #1d3557; border-bottom: 2px solid #1d3557; padding-bottom: 2px; margin: 30px 0 10px; }
h3 { font-size: 14.5px; margin: 18px 0 6px; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 12.5px; }
code.digest { font-size: 12px; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; background: #f5f6f8; border: 1px solid #d9dde3; padding: 7px 9px; margin: 4px 0; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; }
th, td { border: 1px solid #d3d8de; padding: 4px 6px; text-align: left; vertical-align: top; overflow-wrap: break-word; }
td code { overflow-wrap: anywhere; }
thead th { white-space: nowrap; }
table.provenance code.digest { white-space: nowrap; }
thead th { background: #e9edf2; }
table.kv th { width: 13em; background: #f5f6f8; font-weight: 600; }
tr.group th { background: #dfe6ee; font-weight: 600; }
tr.event td { background: #f7f4ec; }
tr.protocol td { color: #59626d; }
tr.bad td, tr.bad th { background: #fbe9e9; }
table.calls col.rec { width: 6%; }
table.calls col.call { width: 7%; }
table.calls col.request { width: 33%; }
table.calls col.decision { width: 30%; }
table.calls col.response { width: 24%; }
td.num { white-space: nowrap; font-variant-numeric: tabular-nums; }
.banner { border: 2px solid; padding: 9px 13px; margin: 10px 0 14px; }
.banner strong { font-size: 15px; }
.ok { border-color: #1e6b3a; background: #edf7f0; color: #174a2a; }
.bad { border-color: #a11d1d; background: #fbe9e9; color: #6f1111; }
.warn { border-color: #8a5300; background: #fdf5e6; color: #5c3800; }
.verdict { font-weight: 700; white-space: nowrap; }
.allowed { color: #1e6b3a; }
.denied { color: #a11d1d; }
.escalated { color: #8a5300; }
.rule { font-size: 12px; color: #3c4652; }
.muted { color: #59626d; }
nav { font-size: 13px; margin: 6px 0 0; }
nav a { color: #1d3557; margin-right: 12px; }
ol.path li { margin: 2px 0; }
.legend { font-size: 12.5px; color: #3c4652; margin: 4px 0 8px; }
.diagram { overflow-x: auto; border: 1px solid #d9dde3; padding: 6px; }
.diagram svg { max-width: 100%; height: auto; display: block; margin: 0 auto; }
svg.states { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", "Liberation Mono", monospace; }
svg.states .edge { fill: none; stroke: #a9b1bb; stroke-width: 1.3; }
svg.states .edge.gate { stroke: #c08a2b; stroke-dasharray: 5 4; }
svg.states .edge.taken { stroke: #1d4f91; stroke-width: 2.6; }
svg.states .head { stroke: none; fill: #a9b1bb; stroke-dasharray: none; }
svg.states .gate.head { fill: #c08a2b; }
svg.states .taken.head { fill: #1d4f91; }
svg.states .node rect { fill: #fff; stroke: #6b7480; stroke-width: 1.3; }
svg.states .node.review rect { fill: #fff5de; stroke: #b7791f; stroke-dasharray: 5 3; }
svg.states .node.terminal rect { stroke: #3b4452; stroke-width: 2; }
svg.states .node.unknown rect { stroke: #a11d1d; stroke-dasharray: 2 2; }
svg.states .node.visited rect { stroke: #1d4f91; stroke-width: 2.4; }
svg.states .node.current rect { fill: #1d4f91; }
svg.states .name { font-size: 13px; fill: #1b1f24; }
svg.states .caption { font-size: 10px; fill: #4a5563; }
svg.states .current .name { fill: #fff; font-weight: 700; }
svg.states .current .caption { fill: #dbe5f3; }
svg.states .badge { fill: #1d4f91; stroke: #fff; stroke-width: 1.5; }
svg.states .badge-text { fill: #fff; font-size: 11px; font-weight: 700; }
footer { margin-top: 30px; border-top: 1px solid #c5ccd4; padding-top: 8px; font-size: 12px; color: #3c4652; }
@media print {
  body { font-size: 9pt; }
  main { max-width: none; padding: 0; }
  nav { display: none; }
  h2 { break-after: avoid; margin-top: 18px; }
  h3 { break-after: avoid; }
  tr, .banner, .diagram, table.kv { break-inside: avoid; }
  thead { display: table-header-group; }
  pre { background: none; }
  code, pre, .mono { font-size: 8pt; }
  .diagram { overflow: visible; border: none; }
  * { print-color-adjust: exact; -webkit-print-color-adjust: exact; }
}
"#;

/// The whole page.
pub(crate) fn page(m: &Material) -> anyhow::Result<String> {
    let mut out = String::with_capacity(64 * 1024);
    write_page(&mut out, m)?;
    Ok(out)
}

fn write_page(out: &mut String, m: &Material) -> fmt::Result {
    let run_id = Esc(&m.meta.run_id);
    writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"warden {}\">\n\
         <title>Warden audit report: run {run_id}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>",
        env!("CARGO_PKG_VERSION")
    )?;
    header(out, m)?;
    super::steps::path(out, m)?;
    super::steps::steps(out, m)?;
    super::gates::gates(out, m)?;
    super::reviews::reviews(out, m)?;
    provenance(out, m)?;
    verification(out, m)?;
    appendix(out, m)?;
    footer(out, m)?;
    out.push_str("</main>\n</body>\n</html>\n");
    Ok(())
}

/// The verdict on the run's integrity in one line, shown at the top and in full below.
fn banner(out: &mut String, m: &Material) -> fmt::Result {
    let v = &m.verification;
    match &v.problem {
        Some(problem) => {
            let at = v
                .record
                .map(|r| format!(" at record {r}"))
                .unwrap_or_default();
            writeln!(
                out,
                "<div class=\"banner bad\" id=\"integrity\"><strong>The run does NOT verify{at}.</strong> {}<br>\
                 Nothing below can be relied on until this is explained: the journal was altered or damaged after it was written.</div>",
                Esc(problem)
            )
        }
        None => {
            write!(
                out,
                "<div class=\"banner ok\" id=\"integrity\"><strong>Verified.</strong> The run's {} records check out against their hash chain",
                v.records
            )?;
            if let Some(entry) = v.log_entry {
                write!(out, " and the transparency log (latest entry {entry})")?;
            }
            match (&v.signed_by, &m.key) {
                (Some(key), _) => write!(out, "; every head is signed by key <code>{key}</code>.")?,
                (None, Some(_)) => out.push('.'),
                (None, None) => out.push_str("; signatures not checked (no --key)."),
            }
            out.push_str("</div>\n");
            Ok(())
        }
    }
}

fn header(out: &mut String, m: &Material) -> fmt::Result {
    let meta = &m.meta;
    let outcome = &meta.outcome;
    writeln!(
        out,
        "<header>\n<p class=\"kicker\">Warden audit report</p>\n<h1>Run <code>{}</code></h1>",
        Esc(&meta.run_id)
    )?;
    banner(out, m)?;
    out.push_str(
        "<nav><a href=\"#path\">Path</a><a href=\"#steps\">Host calls</a><a href=\"#gates\">Gates</a>\
         <a href=\"#review\">Review</a><a href=\"#provenance\">Provenance</a><a href=\"#verification\">Verification</a>\
         <a href=\"#appendix\">Policy and input</a></nav>\n</header>\n",
    );
    out.push_str("<h2 id=\"summary\">Summary</h2>\n<table class=\"kv\">\n");
    let status = match outcome.status {
        Status::Completed => "completed in",
        Status::AwaitingReview => "awaiting human review in",
        Status::Failed => "failed in",
        Status::Running => "running, or interrupted (see <code>warden resume</code>), in",
    };
    writeln!(
        out,
        "<tr><th>Outcome</th><td><strong>{status} <code>{}</code></strong></td></tr>",
        Esc(&outcome.state)
    )?;
    writeln!(
        out,
        "<tr><th>Final state</th><td><code>{}</code></td></tr>",
        Esc(&outcome.state)
    )?;
    if let Some(reason) = &outcome.reason {
        writeln!(
            out,
            "<tr><th>Reason</th><td>{}</td></tr>",
            Esc(&reason.to_string())
        )?;
    }
    match &outcome.output {
        Some(output) => writeln!(
            out,
            "<tr><th>Output</th><td><pre>{}</pre></td></tr>",
            Esc(&pretty_json(output))
        )?,
        None => out.push_str(
            "<tr><th>Output</th><td class=\"muted\">none (the run has not finished)</td></tr>\n",
        ),
    }
    let submitted = m
        .start
        .as_ref()
        .and_then(|s| s.submitted_by.clone())
        .unwrap_or_else(|| "not recorded".into());
    writeln!(
        out,
        "<tr><th>Submitted by</th><td>{}</td></tr>",
        Esc(&submitted)
    )?;
    writeln!(
        out,
        "<tr><th>Started</th><td class=\"num\">{}</td></tr>\n<tr><th>{}</th><td class=\"num\">{}</td></tr>",
        time(meta.created_ms),
        if matches!(outcome.status, Status::Completed | Status::Failed) {
            "Ended"
        } else {
            "Last committed"
        },
        time(meta.updated_ms)
    )?;
    writeln!(
        out,
        "<tr><th>Work</th><td>{}, {}, {} fuel</td></tr>",
        crate::commands::run::plural(outcome.steps, "step"),
        crate::commands::run::plural(outcome.host_calls, "host call"),
        outcome.fuel
    )?;
    writeln!(
        out,
        "<tr><th>Policy</th><td><code>{}</code> version <code>{}</code></td></tr>",
        Esc(&meta.policy_name),
        Esc(&meta.policy_version)
    )?;
    if let Some(start) = &m.start {
        let engine = if start.engine.is_empty() {
            "engine not recorded".to_string()
        } else {
            start.engine.clone()
        };
        writeln!(
            out,
            "<tr><th>Recorded by</th><td>Warden {}, {}, edition {}</td></tr>",
            Esc(&start.warden_version),
            Esc(&engine),
            start.edition.number()
        )?;
    }
    if let Some(parent) = &meta.parent {
        let effects = match &m.start {
            Some(s) if s.live_effects => "effects performed live",
            _ => "effects answered from the parent's recording",
        };
        writeln!(
            out,
            "<tr><th>Forked from</th><td>run <code>{}</code> at step {} ({effects})</td></tr>",
            Esc(&parent.run_id),
            parent.step
        )?;
    }
    out.push_str("</table>\n");
    if let Some(why) = &m.unreadable {
        writeln!(
            out,
            "<div class=\"banner bad\"><strong>The run's records could not be read:</strong> {}. \
             The sections below that rest on them are empty.</div>",
            Esc(why)
        )?;
    }
    Ok(())
}

fn provenance(out: &mut String, m: &Material) -> fmt::Result {
    let meta = &m.meta;
    out.push_str(
        "<h2 id=\"provenance\">Provenance</h2>\n\
         <p>What ran, on what, under which rules: each is stored in the journal under its BLAKE3 digest \
         (a model card under the digest of its file), so the run can be replayed from the journal alone.</p>\n\
         <table class=\"provenance\">\n<thead><tr><th>Artifact</th><th>Digest</th><th>Notes</th></tr></thead>\n<tbody>\n",
    );
    let row = |out: &mut String, what: &str, d: &Digest, note: &str| -> fmt::Result {
        write!(out, "<tr><th>{}</th><td>", Esc(what))?;
        digest(out, d)?;
        writeln!(out, "</td><td>{note}</td></tr>")
    };
    row(
        out,
        "Agent module",
        &meta.agent,
        "the WebAssembly module as supplied",
    )?;
    row(
        out,
        "Policy (canonical)",
        &meta.policy,
        "the policy's rules: the same whatever the file's formatting, comments or order",
    )?;
    row(
        out,
        "Policy text",
        &meta.policy_text,
        "the policy file as written (appendix A)",
    )?;
    let bindings = match &meta.bindings_path {
        Some(path) => format!(
            "the bindings and the files they reference (not ledgers), loaded from <code>{}</code>",
            Esc(path)
        ),
        None => "the bindings and the files they reference (not ledgers)".to_string(),
    };
    row(out, "Bindings", &meta.bindings, &bindings)?;
    row(out, "Input", &meta.input, "the run's input (appendix B)")?;
    for card in m.start.iter().flat_map(|s| &s.models) {
        let note = format!(
            "model card of <code>{}</code>: provider <code>{}</code>, version <code>{}</code>",
            Esc(&card.name),
            Esc(&card.provider),
            Esc(&card.version)
        );
        row(out, &format!("Model {}", card.name), &card.card, &note)?;
    }
    out.push_str("<tr><th>Head</th><td>");
    digest(out, &meta.head)?;
    writeln!(
        out,
        "</td><td>the digest of the run's last record (record {}), which chains every record before it</td></tr>",
        meta.records.saturating_sub(1)
    )?;
    out.push_str("</tbody>\n</table>\n");
    Ok(())
}

fn verification(out: &mut String, m: &Material) -> fmt::Result {
    let v = &m.verification;
    out.push_str("<h2 id=\"verification\">Verification</h2>\n<table class=\"kv\">\n");
    match &v.problem {
        None => writeln!(
            out,
            "<tr><th>Result</th><td class=\"ok\"><strong>verified</strong></td></tr>\n\
             <tr><th>Hash chain</th><td>{} records; every record's predecessor digest, the run's summary, its stored \
             module, policy text, input and model cards, and its checkpoints check out; head <code>{}</code></td></tr>",
            v.records, v.head
        )?,
        Some(problem) => {
            writeln!(
                out,
                "<tr><th>Result</th><td class=\"bad\"><strong>does NOT verify</strong></td></tr>\n\
                 <tr><th>First problem</th><td>{}{}</td></tr>",
                v.record
                    .map(|r| format!("record {r}: "))
                    .unwrap_or_default(),
                Esc(problem)
            )?;
        }
    }
    out.push_str("<tr><th>Transparency log</th><td>");
    match (v.log_entry, m.log.entries) {
        (Some(entry), n) => write!(
            out,
            "{n} entries hold the run's heads, the latest is entry {entry}; {}",
            if v.problem.is_none() {
                "the run's records are the ones committed, as each entry's record digests say"
            } else {
                "see the problem above"
            }
        )?,
        (None, _) => out.push_str(
            "the run is not in the transparency log (a run recorded before the log existed, or its entries were removed)",
        ),
    }
    out.push_str("</td></tr>\n<tr><th>Log inclusion</th><td>");
    match (&m.log.inclusion, &m.log.head) {
        (
            Some(Inclusion::Proven {
                index,
                size,
                hashes,
            }),
            _,
        ) => write!(
            out,
            "entry {index} is included in the signed tree head of size {size}: its RFC 9162 inclusion proof ({hashes} hashes) leads to the head's root"
        )?,
        (Some(Inclusion::AfterHead { index, size }), _) => write!(
            out,
            "entry {index} came after the latest signed tree head (size {size}): no signed head covers it yet"
        )?,
        (Some(Inclusion::Failed { index, size }), _) => write!(
            out,
            "<strong class=\"denied\">entry {index}'s inclusion proof does NOT lead to the root of the signed tree head (size {size})</strong>: the log was altered"
        )?,
        (None, None) => out.push_str(
            "the journal holds no signed tree head: it was written without a signing key, or the head was removed (the verification above says which)",
        ),
        (None, Some(_)) => out.push_str("not applicable: the run has no log entry"),
    }
    out.push_str("</td></tr>\n<tr><th>Signatures</th><td>");
    signatures(out, m)?;
    out.push_str("</td></tr>\n");
    if let Some(sth) = &m.log.head {
        writeln!(
            out,
            "<tr><th>Signed tree head</th><td><code>{}</code><br><span class=\"muted\">taken {}; keep it where the journal's writers cannot reach, and check later logs extend it with <code>warden log prove --from HEAD</code></span></td></tr>",
            Esc(&sth.to_string()),
            time(sth.head.time_ms)
        )?;
    }
    let key = m
        .key
        .as_ref()
        .map_or_else(|| "PUB".to_string(), |(_, path)| path.display().to_string());
    writeln!(
        out,
        "<tr><th>Re-check</th><td><code>warden --db {db} verify {run} --key {key}</code><br>\
         <code>warden --db {db} replay {run}</code></td></tr>\n</table>",
        db = Esc(&m.db),
        run = Esc(&m.meta.run_id),
        key = Esc(&key)
    )
}

fn signatures(out: &mut String, m: &Material) -> fmt::Result {
    let v = &m.verification;
    let claimed: Vec<String> = m.log.claimed_keys.iter().map(ToString::to_string).collect();
    match &m.key {
        None => {
            out.push_str("<strong>signatures not checked (no --key)</strong>");
            if !claimed.is_empty() {
                write!(
                    out,
                    "; the run's log entries name key {}, which only the deployment's public key can confirm",
                    claimed.join(", ")
                )?;
            }
            if m.log.unsigned_entries > 0 {
                write!(
                    out,
                    "; {} of the run's {} log entries carry no signature",
                    m.log.unsigned_entries, m.log.entries
                )?;
            }
            Ok(())
        }
        Some((key, path)) => {
            match (&v.signed_by, &v.problem) {
                (Some(signer), _) => write!(
                    out,
                    "<strong class=\"allowed\">every head of the run is signed by key <code>{signer}</code></strong> (checked against {})",
                    Esc(&path.display().to_string())
                )?,
                (None, Some(_)) => write!(
                    out,
                    "<strong class=\"denied\">not verified against key <code>{key}</code></strong>: see the problem above"
                )?,
                (None, None) => write!(out, "checked against key <code>{key}</code>")?,
            }
            match m.log.head_signed {
                Some(true) => write!(
                    out,
                    "; the signed tree head is signed by key <code>{key}</code>"
                ),
                Some(false) => write!(
                    out,
                    "; <strong class=\"denied\">the signed tree head is NOT signed by key <code>{key}</code></strong>"
                ),
                None => Ok(()),
            }
        }
    }
}

fn appendix(out: &mut String, m: &Material) -> fmt::Result {
    out.push_str("<h2 id=\"appendix\">Appendix A: policy text</h2>\n");
    match &m.policy_text {
        Some(text) => {
            out.push_str("<p class=\"muted\">As stored in the journal under digest ");
            digest(out, &m.meta.policy_text)?;
            writeln!(out, ".</p>\n<pre>{}</pre>", Esc(text))?;
        }
        None => {
            out.push_str("<p class=\"denied\">The policy text is not stored in the journal.</p>\n")
        }
    }
    out.push_str("<h2 id=\"input\">Appendix B: input</h2>\n");
    match &m.input_text {
        Some(text) => {
            out.push_str("<p class=\"muted\">As stored in the journal under digest ");
            digest(out, &m.meta.input)?;
            writeln!(out, ".</p>\n<pre>{}</pre>", Esc(&pretty_json(text)))?;
        }
        None => out.push_str("<p class=\"denied\">The input is not stored in the journal.</p>\n"),
    }
    Ok(())
}

fn footer(out: &mut String, m: &Material) -> fmt::Result {
    writeln!(
        out,
        "<footer>\nGenerated {} by <code>warden report</code> (Warden {}) from the journal <code>{}</code>. \
         <strong>This report is a rendering; the journal is the record.</strong> \
         Check the run against the journal itself with the commands under Verification.\n</footer>",
        time(m.generated_ms),
        env!("CARGO_PKG_VERSION"),
        Esc(&m.db)
    )
}

#[cfg(test)]
mod tests {
    use super::Esc;

    #[test]
    fn escapes_markup_quotes_invisible_characters_and_urls() {
        let hostile = "</svg><img src=x onerror='alert(1)'>&\"\u{202e}\u{1b}[2J https://x";
        assert_eq!(
            Esc(hostile).to_string(),
            "&lt;/svg&gt;&lt;img src&#61;x onerror&#61;&#39;alert(1)&#39;&gt;&amp;&quot;\\u{202e}\\u{1b}[2J https&#58;//x"
        );
        assert_eq!(Esc("a\nb").to_string(), "a\nb");
    }
}
