//! A claims-triage agent, run by Warden under `policy.toml`.
//!
//! One step per state of the policy: `intake` checks the claim, `coverage_check` asks the
//! policy register about the claim's insurance policy, `assess` asks the `claim_risk`
//! scorecard and proposes a decision, and in `approved` or `declined` the agent finishes
//! with its decision and the reasons for it.
//!
//! The agent proposes; the policy disposes. It may propose `approved`, but the policy's
//! confidence gate decides whether the run gets there or stops in `manual_review` for a
//! claims handler.
//!
//! The claim is the run's input, and each step reads it again rather than keeping a copy:
//! a fork with a patched input (`warden fork RUN --at-step 2 --input-patch ...`) then
//! sees the patch. What the agent learns from tools stays in its own fields, which
//! persist between steps.

use serde::{Deserialize, Serialize};
use warden_guest::{Agent, CallErrorKind, Error, InferenceId, LogLevel, ReviewInfo, Warden};

/// A claim reported later than this after the incident is declined at intake.
const MAX_REPORT_DELAY_DAYS: u32 = 365;
/// The agent proposes approval below this probability that the claim is suspicious, and
/// refers the claim to a claims handler otherwise.
const APPROVE_BELOW: f64 = 0.15;

/// A claim, the run's input.
#[derive(Debug, Clone, Deserialize)]
struct Claim {
    claim_id: String,
    policy_number: String,
    amount: f64,
    incident_days_ago: u32,
    description: String,
}

/// What the `policy_register` tool is asked.
#[derive(Serialize)]
struct RegisterQuery<'a> {
    policy_number: &'a str,
}

/// The fields of a register entry this agent uses.
#[derive(Debug, Clone, Deserialize)]
struct PolicyRecord {
    status: String,
    coverage_limit: f64,
    months_insured: u32,
    prior_claims_12m: u32,
}

/// The features of the `claim_risk` scorecard, as its card lists them. The policy
/// declares how each is computed, and Warden checks them before the scorecard is asked.
#[derive(Serialize)]
struct RiskFeatures {
    amount_to_limit: f64,
    prior_claims_12m: f64,
    tenure_years: f64,
    report_delay_months: f64,
}

/// The value of a `claim_risk` inference: the probability of its positive label,
/// `suspicious`.
#[derive(Debug, Deserialize)]
struct RiskScore {
    probability: f64,
}

/// The run's output: the decision and what it rests on.
#[derive(Serialize)]
struct Decision<'a> {
    decision: &'a str,
    claim_id: &'a str,
    amount: f64,
    reasons: &'a [String],
    /// P(suspicious), when the scorecard was asked.
    risk: Option<f64>,
    inference_id: Option<u64>,
    /// The claims handler's decision, when a person decided.
    review: Option<ReviewInfo>,
}

/// The triage agent: what it has learned so far.
#[derive(Debug, Default)]
struct Triage {
    record: Option<PolicyRecord>,
    risk: Option<f64>,
    inference: Option<InferenceId>,
    reasons: Vec<String>,
}

impl Agent for Triage {
    fn step(&mut self, warden: &mut Warden) -> Result<(), Error> {
        let state = warden.state()?;
        match state.as_str() {
            "intake" => self.intake(warden),
            "coverage_check" => self.coverage_check(warden),
            "assess" => self.assess(warden),
            "manual_review" => warden.log(LogLevel::Info, "awaiting a claims handler"),
            "approved" | "declined" => self.decide(warden, &state),
            other => Err(Error::agent(format!(
                "state {other:?} is not a state of this agent's policy"
            ))),
        }
    }
}

impl Triage {
    fn intake(&mut self, warden: &mut Warden) -> Result<(), Error> {
        let claim = read_claim(warden)?;
        warden.log(
            LogLevel::Info,
            format!(
                "claim {} on policy {}: {:.2} for {:?}, reported {} days after the incident",
                claim.claim_id,
                claim.policy_number,
                claim.amount,
                claim.description,
                claim.incident_days_ago,
            ),
        )?;
        if claim.incident_days_ago > MAX_REPORT_DELAY_DAYS {
            self.reasons.push(format!(
                "reported {} days after the incident, later than the {MAX_REPORT_DELAY_DAYS} days allowed",
                claim.incident_days_ago
            ));
            return self.propose(warden, "declined", None);
        }
        self.propose(warden, "coverage_check", None)
    }

    fn coverage_check(&mut self, warden: &mut Warden) -> Result<(), Error> {
        let claim = read_claim(warden)?;
        let query = RegisterQuery {
            policy_number: &claim.policy_number,
        };
        let record: PolicyRecord = match warden.tool("policy_register", &query) {
            Ok(record) => record,
            Err(Error::Call(e)) if e.kind == CallErrorKind::NotFound => {
                self.reasons.push(format!(
                    "policy {} is not in the register: a claims handler must check it",
                    claim.policy_number
                ));
                return self.propose(warden, "manual_review", None);
            }
            Err(e) => return Err(e),
        };
        let outcome = if record.status != "active" {
            self.reasons.push(format!(
                "policy {} is {}, not active",
                claim.policy_number, record.status
            ));
            "declined"
        } else if claim.amount > record.coverage_limit {
            self.reasons.push(format!(
                "the amount claimed, {:.2}, exceeds the coverage limit of {:.2}",
                claim.amount, record.coverage_limit
            ));
            "declined"
        } else {
            "assess"
        };
        self.record = Some(record);
        self.propose(warden, outcome, None)
    }

    fn assess(&mut self, warden: &mut Warden) -> Result<(), Error> {
        let claim = read_claim(warden)?;
        let record = self
            .record
            .clone()
            .ok_or_else(|| Error::agent("assess before coverage_check"))?;
        let features = RiskFeatures {
            amount_to_limit: claim.amount / record.coverage_limit,
            prior_claims_12m: f64::from(record.prior_claims_12m),
            tenure_years: f64::from(record.months_insured) / 12.0,
            report_delay_months: f64::from(claim.incident_days_ago) / 30.0,
        };
        let inference = warden.model::<_, RiskScore>("claim_risk", &features)?;
        let risk = inference.value.probability;
        self.risk = Some(risk);
        self.inference = Some(inference.id);
        warden.log(
            LogLevel::Info,
            format!(
                "P(suspicious) {risk:.4}, confidence {:.4}",
                inference.confidence
            ),
        )?;
        if risk < APPROVE_BELOW {
            self.reasons.push(format!(
                "claim risk {risk:.4} is below the approval cut-off {APPROVE_BELOW}"
            ));
            self.propose(warden, "approved", Some(inference.id))
        } else {
            self.reasons.push(format!(
                "claim risk {risk:.4} is at or above the approval cut-off {APPROVE_BELOW}: a claims handler decides"
            ));
            self.propose(warden, "manual_review", None)
        }
    }

    /// In a terminal state: the decision and what it rests on.
    fn decide(&mut self, warden: &mut Warden, state: &str) -> Result<(), Error> {
        let claim = read_claim(warden)?;
        let review = warden.review()?;
        if let Some(review) = &review {
            self.reasons.push(format!(
                "decided by {} ({}): {}",
                review.reviewer, review.role, review.note
            ));
        }
        warden.finish(&Decision {
            decision: state,
            claim_id: &claim.claim_id,
            amount: claim.amount,
            reasons: &self.reasons,
            risk: self.risk,
            inference_id: self.inference.map(|id| id.0),
            review,
        })
    }

    /// Asks for a transition, citing the inference it rests on. A confidence gate may
    /// send the run to review instead: this logs it and returns `Error::Escalated`, which
    /// ends the step (the run waits for a person).
    fn propose(
        &mut self,
        warden: &mut Warden,
        to: &str,
        evidence: Option<InferenceId>,
    ) -> Result<(), Error> {
        let result = match evidence {
            Some(id) => warden.transition_citing(to, id),
            None => warden.transition(to),
        };
        if let Err(Error::Escalated { state, .. }) = &result {
            warden.log(
                LogLevel::Warn,
                format!("proposed {to}; the confidence gate sent the run to {state}"),
            )?;
        }
        result.map(|_| ())
    }
}

/// The run's input, checked: a claim that cannot be triaged ends the run as failed.
fn read_claim(warden: &mut Warden) -> Result<Claim, Error> {
    let claim: Claim = warden.input()?;
    if claim.claim_id.trim().is_empty() {
        return Err(Error::agent("invalid claim: claim_id is empty"));
    }
    if !(claim.amount.is_finite() && claim.amount > 0.0) {
        return Err(Error::agent(format!(
            "invalid claim {:?}: amount must be a positive number, got {}",
            claim.claim_id, claim.amount
        )));
    }
    Ok(claim)
}

warden_guest::agent!(Triage);

/// The steps, unit-tested natively (`cargo test`) on warden-guest's stub host: scripted
/// claim, register and scorecard answers, no Warden and no policy. `warden test` runs the
/// built module under the policy on the sample inputs.
#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use warden_guest::stub::{StubHost, StubStatus};

    fn claim(amount: f64) -> Value {
        json!({
            "claim_id": "C-1",
            "policy_number": "P-1",
            "amount": amount,
            "incident_days_ago": 3,
            "description": "burst pipe",
        })
    }

    /// A run on `claim` with an active policy in the register, before the scorecard.
    fn host(claim: Value) -> StubHost {
        StubHost::new("intake")
            .input(&claim)
            .tool_answer(
                "policy_register",
                &json!({
                    "status": "active",
                    "coverage_limit": 20000.0,
                    "months_insured": 60,
                    "prior_claims_12m": 0,
                }),
            )
            .review_state("manual_review")
    }

    fn score(probability: f64) -> Value {
        json!({ "probability": probability, "label": "genuine", "score": -3.9 })
    }

    #[test]
    fn a_low_risk_claim_is_approved_on_features_from_the_claim_and_the_register() {
        let mut host = host(claim(1000.0)).model_answer("claim_risk", &score(0.02), 0.98);
        let outcome = host.run(&mut Triage::default());
        assert_eq!(outcome.status, StubStatus::Completed, "{outcome:?}");
        assert_eq!(outcome.state, "approved");
        assert_eq!(
            host.tool_calls("policy_register"),
            [json!({ "policy_number": "P-1" })]
        );
        assert_eq!(
            host.model_calls("claim_risk"),
            [json!({
                "amount_to_limit": 0.05,
                "prior_claims_12m": 0.0,
                "tenure_years": 5.0,
                "report_delay_months": 0.1,
            })]
        );
        let output: Value = host.output().expect("the agent finished");
        assert_eq!(output["decision"], "approved");
        assert_eq!(output["risk"], 0.02);
    }

    #[test]
    fn when_the_gate_escalates_the_claim_waits_for_a_claims_handler() {
        let mut host = host(claim(1000.0))
            .model_answer("claim_risk", &score(0.12), 0.88)
            .escalate("approved", "manual_review");
        let outcome = host.run(&mut Triage::default());
        assert_eq!(outcome.status, StubStatus::AwaitingReview, "{outcome:?}");
        assert_eq!(host.transitions().last(), Some(&"approved"));
        assert!(
            host.logs()
                .iter()
                .any(|(_, line)| line.contains("the confidence gate sent the run to manual_review"))
        );
    }

    #[test]
    fn a_policy_missing_from_the_register_goes_to_a_claims_handler() {
        let mut host = StubHost::new("intake")
            .input(&claim(1000.0))
            .tool_error("policy_register", CallErrorKind::NotFound, "no such policy")
            .review_state("manual_review");
        let outcome = host.run(&mut Triage::default());
        assert_eq!(outcome.status, StubStatus::AwaitingReview, "{outcome:?}");
        assert!(host.model_calls("claim_risk").is_empty());
    }

    #[test]
    fn a_claim_without_a_positive_amount_fails_at_intake() {
        let mut host = StubHost::new("intake").input(&claim(0.0));
        let outcome = host.run(&mut Triage::default());
        assert_eq!(outcome.status, StubStatus::Failed);
        assert_eq!(outcome.state, "intake");
        let reason = outcome.reason.unwrap_or_default();
        assert!(
            reason.contains("amount must be a positive number"),
            "{reason}"
        );
    }
}
