//! The human review: every decision, first decision under dual control, expiry and
//! refusal, with who, in which role, when, why and on which action; and the open case of
//! a run awaiting review. Every string is escaped ([`Esc`]).

use std::fmt::{self, Write};

use warden::{RecordBody, ReviewKind};

use super::Material;
use super::html::{Esc, digest, time};
use super::steps::{FLAG, flagged};

/// Every review, refusal and pending decision; the open case for a run awaiting review.
pub(crate) fn reviews(out: &mut String, m: &Material) -> fmt::Result {
    out.push_str("<h2 id=\"review\">Human review</h2>\n");
    let mut rows = 0;
    for record in &m.records {
        let (event, reviewer, role, decided, note, action) = match &record.body {
            RecordBody::Review(r) | RecordBody::ReviewPending(r) => (
                match r.kind {
                    ReviewKind::Decision => "decided",
                    ReviewKind::FirstOfTwo => {
                        "first of two (dual control): the run still awaits a second reviewer"
                    }
                    ReviewKind::Expiry => "expired: the review state's timeout decided",
                },
                &r.reviewer,
                &r.role,
                format!(
                    "<code>{}</code> \u{2192} <code>{}</code>",
                    Esc(&r.state),
                    Esc(&r.outcome)
                ),
                Esc(&r.note).to_string(),
                r.action,
            ),
            RecordBody::ReviewRefused(r) => (
                "refused: the decision was not applied",
                &r.reviewer,
                &r.role,
                format!("asked for <code>{}</code>", Esc(&r.outcome)),
                format!("refused because {}", Esc(&r.reason.to_string())),
                r.action,
            ),
            _ => continue,
        };
        if rows == 0 {
            out.push_str(
                "<table>\n<thead><tr><th>Record</th><th>When</th><th>Reviewer</th><th>Role</th><th>Event</th>\
                 <th>Decision</th><th>Note</th><th>Action reviewed</th></tr></thead>\n<tbody>\n",
            );
        }
        rows += 1;
        let bad = flagged(m, record.index);
        write!(
            out,
            "<tr{}><td class=\"num\">{}{}</td><td class=\"num\">{}</td><td><strong>{}</strong></td><td>{}</td><td>{event}</td><td>{decided}</td><td>{note}</td><td>",
            if bad { " class=\"bad\"" } else { "" },
            record.index,
            if bad { FLAG } else { "" },
            time(record.at_ms),
            Esc(reviewer),
            Esc(role),
        )?;
        digest(out, &action)?;
        out.push_str("</td></tr>\n");
    }
    if rows > 0 {
        out.push_str(
            "</tbody>\n</table>\n<p class=\"muted\">The action digest binds a decision to what the reviewer was shown: \
             the escalated request, the inference it rested on and the checkpoint at the gate.</p>\n",
        );
    }
    match &m.case {
        Some(case) => {
            let mut lines = vec![format!(
                "<strong>Awaiting review</strong> in <code>{}</code> since {}. \
                 Action to decide on: <code class=\"digest\">{}</code>.",
                Esc(&case.state),
                time(case.entered_ms),
                case.action
            )];
            if let Some(explanation) = &case.explanation {
                lines.push(format!("Why: {}.", Esc(explanation)));
            }
            if !case.options.is_empty() {
                let options: Vec<String> = case
                    .options
                    .iter()
                    .map(|option| {
                        format!(
                            "<code>{}</code> by {}{}",
                            Esc(&option.outcome),
                            Esc(&option.roles.join(" or ")),
                            if option.dual_control {
                                " (two distinct reviewers)"
                            } else {
                                ""
                            }
                        )
                    })
                    .collect();
                lines.push(format!("Options: {}.", options.join("; ")));
            }
            if let Some((at, outcome)) = &case.timeout {
                lines.push(format!(
                    "Undecided at {}, the timeout sends it to <code>{}</code>.",
                    time(*at),
                    Esc(outcome)
                ));
            }
            writeln!(
                out,
                "<div class=\"banner warn\">{}</div>",
                lines.join("<br>")
            )?;
        }
        None if rows == 0 => out.push_str(
            "<p>No review: the run never entered a review state, and no decision was attempted.</p>\n",
        ),
        None => {}
    }
    Ok(())
}
