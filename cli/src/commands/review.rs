//! `warden review`: the case file of a run awaiting review, a reviewer's decision on it,
//! or the expiry of the cases nobody decided in time.

use std::io::Write;
use std::path::Path;

use warden::{CaseFile, Digest, ReviewOutcome, ReviewRequest};

use crate::output::{self, Usage, escape};

/// Arguments of `warden review`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
A run a confidence gate (or its agent) sent to a review state waits for a person.
Read the case file, then decide, passing back the action digest the case file printed:

  warden review RUN_ID
  warden review RUN_ID --decide approved --reviewer u.schmidt --role underwriter \\
      --note \"income verified by phone\" --action <DIGEST>

The policy says which outcomes each review state offers and which roles may give each
(some under dual control: two distinct reviewers). A decision by another role, for an
outcome not offered, by the person who submitted the run, or on an action digest that is
not the one awaiting review is refused, and the refusal is recorded. A decision continues
the run from the checkpoint taken at the gate: nothing before it runs again.

  warden review --expire [--now 2026-12-04T09:00:00Z]

applies each review state's declared timeout outcome (never an approval) to the runs that
waited longer than it allows. --now may name an earlier time (expire only what was due by
then), never a later one than this machine's clock: a timeout is recorded as what
happened when its time ran out, so it cannot be applied ahead of time. A run due that cannot be continued (its bindings file
changed since, say) is named and left awaiting review, and the others are still expired
(exit 1 when any was left).

Exit codes: 0 the run completed after the decision; 10 it (still) awaits review; 11 it
failed after the decision; 2 the decision was refused (recorded) or an argument is wrong.")]
pub struct Args {
    /// The run awaiting review (omit with --expire).
    #[arg(required_unless_present = "expire")]
    run_id: Option<String>,
    /// Decide: the state to send the run to (one its review state offers).
    #[arg(long, requires_all = ["reviewer", "role", "note", "action"])]
    decide: Option<String>,
    /// Who decides (must not be who submitted the run).
    #[arg(long, env = "WARDEN_REVIEWER")]
    reviewer: Option<String>,
    /// The role they decide in (the policy says which roles may give each outcome).
    #[arg(long)]
    role: Option<String>,
    /// Why: recorded with the decision, and readable by the agent.
    #[arg(long)]
    note: Option<String>,
    /// The action digest printed by the case file: the decision binds to it.
    #[arg(long)]
    action: Option<String>,
    /// Apply the timeout of every review state to the runs that waited too long.
    #[arg(long, conflicts_with_all = ["run_id", "decide"])]
    expire: bool,
    /// With --expire: the time to expire as of (RFC 3339), no later than the clock;
    /// default now.
    #[arg(long, requires = "expire")]
    now: Option<String>,
    /// Print JSON: the case file, or the result of the decision(s).
    #[arg(long)]
    json: bool,
}

/// Runs `warden review`.
pub fn run(db: &Path, keys: output::Keys<'_>, args: &Args) -> anyhow::Result<u8> {
    let signing_key = keys.signing;
    if args.expire {
        return expire(db, signing_key, args);
    }
    let Some(run_id) = &args.run_id else {
        return Err(Usage("name a run id, or pass --expire".into()).into());
    };
    let run_id = &output::run_id_in(db, run_id)?;
    let Some(outcome) = &args.decide else {
        let case = warden::case_file(&output::open_to_read(db, keys)?, run_id)?;
        if args.json {
            output::print_json(&case)?;
        } else {
            render_case(db, &case)?;
        }
        return Ok(output::exit::AWAITING_REVIEW);
    };
    let action: Digest = args
        .action
        .as_deref()
        .unwrap_or_default()
        .parse()
        .map_err(|e| Usage(format!("--action is not a digest: {e}")))?;
    let request = ReviewRequest {
        run_id,
        outcome,
        reviewer: args.reviewer.as_deref().unwrap_or_default(),
        role: args.role.as_deref().unwrap_or_default(),
        note: args.note.as_deref().unwrap_or_default(),
        action,
    };
    let result = warden::decide(&output::open(db, signing_key)?, &request)?;
    render_result(db, &result, args.json)
}

fn expire(db: &Path, signing_key: Option<&Path>, args: &Args) -> anyhow::Result<u8> {
    let now = match &args.now {
        Some(text) => chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| {
                std::time::UNIX_EPOCH
                    + std::time::Duration::from_millis(u64::try_from(t.timestamp_millis()).unwrap_or(0))
            })
            .map_err(|e| {
                Usage(format!(
                    "--now is not an RFC 3339 time ({e}): write e.g. 2026-12-02T09:00:00Z or 2026-12-02T10:00:00+01:00"
                ))
            })?,
        None => std::time::SystemTime::now(),
    };
    let clock = std::time::SystemTime::now();
    if now > clock {
        return Err(Usage(format!(
            "--now {} is later than this machine's clock ({}): a timeout is applied only once its time has passed, never ahead of it",
            args.now.as_deref().unwrap_or_default(),
            humantime::format_rfc3339_seconds(clock)
        ))
        .into());
    }
    let now_ms = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let results = warden::expire(&output::open(db, signing_key)?, now_ms)?;
    let stuck = results
        .iter()
        .filter(|r| matches!(r, ReviewOutcome::NotContinued { .. }))
        .count();
    if args.json {
        output::print_json(&results)?;
    } else {
        for result in &results {
            render_result(db, result, false)?;
        }
        println!("{} review(s) expired", results.len() - stuck);
        if stuck > 0 {
            println!("{stuck} run(s) due could not be continued (see above)");
        }
    }
    Ok(if stuck > 0 {
        output::exit::HOST_ERROR
    } else {
        output::exit::COMPLETED
    })
}

fn render_result(db: &Path, result: &ReviewOutcome, json: bool) -> anyhow::Result<u8> {
    match result {
        ReviewOutcome::Decided(report) => super::run::render(db, report, json),
        other => {
            if json {
                output::print_json(other)?;
            } else if let ReviewOutcome::Refused {
                run_id,
                explanation,
                ..
            } = other
            {
                println!("refused  {}: {}", escape(run_id), escape(explanation));
                println!("         (the refusal is recorded; the run still awaits review)");
            } else if let ReviewOutcome::Pending {
                run_id, outcome, ..
            } = other
            {
                println!(
                    "recorded {}: first of two decisions for `{}`; a second, distinct reviewer must decide",
                    escape(run_id),
                    escape(outcome)
                );
            } else if let ReviewOutcome::NotContinued {
                run_id,
                explanation,
            } = other
            {
                println!("not expired {}: {}", escape(run_id), escape(explanation));
                println!("         (nothing was recorded; the run still awaits review)");
            }
            Ok(match other {
                ReviewOutcome::Refused { .. } => output::exit::USAGE,
                ReviewOutcome::NotContinued { .. } => output::exit::HOST_ERROR,
                _ => output::exit::AWAITING_REVIEW,
            })
        }
    }
}

fn render_case(db: &Path, case: &CaseFile) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let time = warden::timestamp_seconds;
    writeln!(
        out,
        "case     {}  awaiting review in `{}` since {}",
        escape(&case.run_id),
        escape(&case.state),
        time(case.entered_ms)
    )?;
    writeln!(out, "policy   {}", escape(&case.policy))?;
    match &case.submitted_by {
        Some(who) => writeln!(
            out,
            "by       submitted by {} (who may not review it)",
            escape(who)
        )?,
        None => writeln!(
            out,
            "by       no submitter was recorded for this run (no --submitter and no $USER): only the submitters of any run it was forked from are barred from reviewing it"
        )?,
    }
    writeln!(out, "input    {}", escape(&case.input))?;
    if let Some(request) = &case.request {
        writeln!(out, "action   {}", escape(request))?;
    }
    if let Some(explanation) = &case.explanation {
        writeln!(out, "decision {}", escape(explanation))?;
    }
    if let Some(i) = &case.inference {
        let probabilities: Vec<String> = i
            .probabilities
            .iter()
            .map(|(l, p)| format!("P({}) = {p:.4}", escape(l)))
            .collect();
        writeln!(
            out,
            "model    {} inference #{}: {}",
            escape(&i.model),
            i.id.0,
            probabilities.join(", ")
        )?;
        if let Some(card) = &i.card {
            writeln!(
                out,
                "         card {} {} ({})",
                escape(&card.name),
                escape(&card.version),
                card.card.short()
            )?;
        }
        if let Some(features) = &case.features {
            writeln!(out, "         features sent: {}", escape(features))?;
        }
        match &i.features {
            Some(f) => writeln!(
                out,
                "         features: {0}/{0} reconciled with their declared sources",
                f.reconciled
            )?,
            None => writeln!(
                out,
                "         features: not reconciled (the policy declares no sources)"
            )?,
        }
    }
    for answer in &case.evidence {
        writeln!(
            out,
            "evidence call {} {} {} => {}",
            answer.call,
            escape(&answer.tool),
            escape(&answer.args),
            escape(&answer.response)
        )?;
    }
    if !case.agent_log.is_empty() {
        writeln!(out, "agent's log:")?;
        for line in &case.agent_log {
            writeln!(out, "         {}", escape(line))?;
        }
    }
    writeln!(out, "options:")?;
    for option in &case.options {
        let dual = if option.dual_control {
            ", two distinct reviewers"
        } else {
            ""
        };
        writeln!(
            out,
            "         {:<16} roles: {}{dual}",
            escape(&option.outcome),
            escape(&option.roles.join(", "))
        )?;
        for (reviewer, role) in &option.given_by {
            writeln!(
                out,
                "                          already given by {} ({})",
                escape(reviewer),
                escape(role)
            )?;
        }
    }
    if let Some((at, outcome)) = &case.timeout {
        writeln!(
            out,
            "timeout  {} if undecided at {}",
            escape(outcome),
            time(*at)
        )?;
    }
    for refusal in &case.refused {
        writeln!(
            out,
            "refused  {} ({}) asked for {}: {}",
            escape(&refusal.reviewer),
            escape(&refusal.role),
            escape(&refusal.outcome),
            escape(&refusal.reason.to_string())
        )?;
    }
    for earlier in &case.earlier {
        let which = if earlier.run_id == case.run_id {
            "this run".to_string()
        } else {
            format!(
                "run {} (this one was forked from it)",
                escape(&earlier.run_id)
            )
        };
        writeln!(
            out,
            "earlier  {} ({}) sent {which} to `{}` at {}: {}",
            escape(&earlier.review.reviewer),
            escape(&earlier.review.role),
            escape(&earlier.review.outcome),
            time(earlier.at_ms),
            escape(&earlier.review.note)
        )?;
    }
    writeln!(out, "digest   {}", case.action)?;
    writeln!(
        out,
        "decide   warden{} review {} --decide <OUTCOME> --reviewer <ID> --role <ROLE> --note <WHY> --action {}",
        super::run::db_argument(db),
        escape(&case.run_id),
        case.action
    )?;
    Ok(())
}
