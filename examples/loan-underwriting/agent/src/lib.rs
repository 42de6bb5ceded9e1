//! A consumer-loan underwriting agent, run by Warden under `policies/loan-underwriting.toml`.
//!
//! One step per state of the policy: intake validates the application, bureau_check pulls
//! the applicant's credit file, affordability computes the repayment and the
//! debt-to-income ratio, scoring asks the probability-of-default scorecard and proposes a
//! decision. In a terminal state the agent writes its decision with the reasons for it.
//! What it learns along the way stays in its own fields, which persist between steps.
//!
//! The agent proposes; the policy disposes. It may propose `approved`, but the policy's
//! confidence gate on `approved` decides whether the run gets there or stops for an
//! underwriter in `manual_review`.

use serde::{Deserialize, Serialize};
use warden_guest::{Agent, CallErrorKind, Error, InferenceId, LogLevel, ReviewInfo, Warden};

/// Annual percentage rate of the product, fixed.
const APR: f64 = 0.119;
/// The product lends between these amounts, for between these terms.
const MIN_AMOUNT: f64 = 1_000.0;
const MAX_AMOUNT: f64 = 50_000.0;
const MIN_TERM_MONTHS: u32 = 12;
const MAX_TERM_MONTHS: u32 = 84;
/// Total monthly debt service (existing debts and the new loan) over monthly gross income
/// above which the bank does not lend.
const MAX_DEBT_TO_INCOME: f64 = 0.45;
/// The agent proposes approval below this probability of default...
const APPROVE_BELOW_PD: f64 = 0.12;
/// ... a decline above this one, and a referral to an underwriter in between.
const DECLINE_ABOVE_PD: f64 = 0.30;

/// A loan application, the run's input.
#[derive(Debug, Clone, Deserialize)]
struct Application {
    applicant_id: String,
    requested_amount: f64,
    term_months: u32,
    annual_income: f64,
    employment_years: f64,
    purpose: String,
    #[serde(default)]
    co_applicant_id: Option<String>,
}

/// What the `credit_bureau` tool is asked.
#[derive(Serialize)]
struct BureauQuery<'a> {
    applicant_id: &'a str,
}

/// The fields of a bureau report this agent uses (reports carry more).
#[derive(Debug, Clone, Deserialize)]
struct BureauRecord {
    credit_score: u32,
    delinquencies_24m: u32,
    open_accounts: u32,
    revolving_utilization: f64,
    bankruptcies_7y: u32,
    monthly_debt_payments: f64,
}

/// The repayment burden of the loan applied for.
#[derive(Debug, Clone, Copy)]
struct Affordability {
    monthly_payment: f64,
    debt_to_income: f64,
    payment_to_income: f64,
}

/// The features of the `pd_scorecard` model, exactly as its card lists them.
#[derive(Serialize)]
struct ScorecardFeatures {
    debt_to_income: f64,
    payment_to_income: f64,
    revolving_utilization: f64,
    delinquencies_24m: f64,
    /// (credit score - 700) / 100.
    credit_score_scaled: f64,
    employment_years: f64,
}

/// The value of a `pd_scorecard` inference.
#[derive(Debug, Deserialize)]
struct PdScore {
    probability: f64,
    label: String,
}

/// The run's output: the decision and everything it rests on.
#[derive(Serialize)]
struct Decision<'a> {
    decision: &'a str,
    applicant_id: Option<&'a str>,
    reasons: &'a [String],
    probability_of_default: Option<f64>,
    debt_to_income: Option<f64>,
    payment_to_income: Option<f64>,
    monthly_payment: Option<f64>,
    apr: f64,
    inference_id: Option<u64>,
    /// The underwriter's decision, when a person decided the case.
    review: Option<ReviewInfo>,
}

/// The underwriting agent: what it has learned so far about the application.
#[derive(Debug, Default)]
struct Underwriter {
    application: Option<Application>,
    bureau: Option<BureauRecord>,
    affordability: Option<Affordability>,
    probability_of_default: Option<f64>,
    inference: Option<InferenceId>,
    reasons: Vec<String>,
    /// The last transition the agent asked for, to tell its own decisions from a reviewer's.
    proposed: Option<String>,
    /// Whether a confidence gate sent the agent's proposal to review.
    escalated: bool,
}

impl Agent for Underwriter {
    fn step(&mut self, warden: &mut Warden) -> Result<(), Error> {
        let state = warden.state()?;
        match state.as_str() {
            "intake" => self.intake(warden),
            "bureau_check" => self.bureau_check(warden),
            "affordability" => self.affordability(warden),
            "scoring" => self.scoring(warden),
            "manual_review" => warden.log(
                LogLevel::Info,
                "awaiting an underwriter's decision in manual_review",
            ),
            "approved" | "declined" => self.decide(warden, &state),
            other => Err(Error::agent(format!(
                "state {other:?} is not a state of the loan-underwriting policy"
            ))),
        }
    }
}

impl Underwriter {
    fn intake(&mut self, warden: &mut Warden) -> Result<(), Error> {
        let application: Application = warden.input()?;
        validate(&application)?;
        warden.log(
            LogLevel::Info,
            format!(
                "application {}: {:.2} over {} months for {}, annual income {:.2}",
                application.applicant_id,
                application.requested_amount,
                application.term_months,
                application.purpose,
                application.annual_income,
            ),
        )?;
        let outside_product = outside_product(&application);
        self.application = Some(application);
        match outside_product {
            Some(reason) => {
                warden.log(LogLevel::Info, format!("knock-out: {reason}"))?;
                self.reasons.push(reason);
                self.propose(warden, "declined", None)
            }
            None => self.propose(warden, "bureau_check", None),
        }
    }

    fn bureau_check(&mut self, warden: &mut Warden) -> Result<(), Error> {
        let applicant_id = self.application()?.applicant_id.clone();
        let query = BureauQuery {
            applicant_id: &applicant_id,
        };
        let record: BureauRecord = match warden.tool("credit_bureau", &query) {
            Ok(record) => record,
            Err(Error::Call(e)) if e.kind == CallErrorKind::NotFound => {
                warden.log(
                    LogLevel::Warn,
                    format!("no bureau file for {applicant_id}: thin file, referring"),
                )?;
                self.reasons
                    .push("no credit bureau record (thin file): needs an underwriter".into());
                return self.propose(warden, "manual_review", None);
            }
            Err(e) => return Err(e),
        };
        warden.log(
            LogLevel::Info,
            format!(
                "bureau: score {}, {} delinquencies in 24 months, {} open accounts, \
                 revolving utilization {:.2}, monthly debt {:.2}",
                record.credit_score,
                record.delinquencies_24m,
                record.open_accounts,
                record.revolving_utilization,
                record.monthly_debt_payments,
            ),
        )?;
        let bankruptcies = record.bankruptcies_7y;
        self.bureau = Some(record);
        if bankruptcies > 0 {
            self.reasons.push(format!(
                "{bankruptcies} bankruptcy filing(s) in the last 7 years"
            ));
            return self.propose(warden, "declined", None);
        }
        self.propose(warden, "affordability", None)
    }

    fn affordability(&mut self, warden: &mut Warden) -> Result<(), Error> {
        let application = self.application()?;
        let bureau = self.bureau()?;
        let monthly_income = application.annual_income / 12.0;
        let monthly_payment =
            monthly_payment(application.requested_amount, application.term_months);
        let affordability = Affordability {
            monthly_payment,
            debt_to_income: (bureau.monthly_debt_payments + monthly_payment) / monthly_income,
            payment_to_income: monthly_payment / monthly_income,
        };
        warden.log(
            LogLevel::Info,
            format!(
                "monthly payment {:.2} at {:.1}% APR; debt-to-income {:.4}, payment-to-income {:.4}",
                affordability.monthly_payment,
                APR * 100.0,
                affordability.debt_to_income,
                affordability.payment_to_income,
            ),
        )?;
        self.affordability = Some(affordability);
        if affordability.debt_to_income > MAX_DEBT_TO_INCOME {
            self.reasons.push(format!(
                "debt-to-income {:.1}% exceeds the {:.0}% limit",
                affordability.debt_to_income * 100.0,
                MAX_DEBT_TO_INCOME * 100.0,
            ));
            return self.propose(warden, "declined", None);
        }
        self.propose(warden, "scoring", None)
    }

    fn scoring(&mut self, warden: &mut Warden) -> Result<(), Error> {
        let application = self.application()?.clone();
        let bureau = self.bureau()?.clone();
        let affordability = self
            .affordability
            .ok_or_else(|| Error::agent("scoring before affordability was assessed"))?;

        // Known defect of v1, kept on purpose for this example: the co-applicant's file is
        // pulled here, in scoring, instead of in bureau_check. The policy grants the
        // bureau to bureau_check alone, so Warden denies this call and the run fails,
        // naming the tool and the state. Fixing the agent means moving this lookup.
        if let Some(co_applicant_id) = &application.co_applicant_id {
            let query = BureauQuery {
                applicant_id: co_applicant_id,
            };
            let co_applicant: BureauRecord = warden.tool("credit_bureau", &query)?;
            self.reasons.push(format!(
                "co-applicant {co_applicant_id} credit score {}",
                co_applicant.credit_score
            ));
        }

        let features = ScorecardFeatures {
            debt_to_income: affordability.debt_to_income,
            payment_to_income: affordability.payment_to_income,
            revolving_utilization: bureau.revolving_utilization,
            delinquencies_24m: f64::from(bureau.delinquencies_24m),
            credit_score_scaled: (f64::from(bureau.credit_score) - 700.0) / 100.0,
            employment_years: application.employment_years,
        };
        let inference = warden.model::<_, PdScore>("pd_scorecard", &features)?;
        let pd = inference.value.probability;
        if !(0.0..=1.0).contains(&pd) {
            return Err(Error::agent(format!(
                "pd_scorecard answered a probability of default outside [0, 1]: {pd}"
            )));
        }
        self.probability_of_default = Some(pd);
        self.inference = Some(inference.id);
        warden.log(
            LogLevel::Info,
            format!(
                "probability of default {pd:.4} (label {}, confidence {:.4}, inference {})",
                inference.value.label, inference.confidence, inference.id.0,
            ),
        )?;
        if pd < APPROVE_BELOW_PD {
            self.reasons.push(format!(
                "probability of default {pd:.4} is below the approval cut-off {APPROVE_BELOW_PD}"
            ));
            self.propose(warden, "approved", Some(inference.id))
        } else if pd > DECLINE_ABOVE_PD {
            self.reasons.push(format!(
                "probability of default {pd:.4} is above the decline cut-off {DECLINE_ABOVE_PD}"
            ));
            self.propose(warden, "declined", None)
        } else {
            self.reasons.push(format!(
                "probability of default {pd:.4} is in the referral band \
                 [{APPROVE_BELOW_PD}, {DECLINE_ABOVE_PD}]"
            ));
            self.propose(warden, "manual_review", None)
        }
    }

    /// In a terminal state: records the decision and what it rests on.
    fn decide(&mut self, warden: &mut Warden, state: &str) -> Result<(), Error> {
        let review = warden.review()?;
        if let Some(review) = &review {
            let who = if review.by_timeout {
                "no underwriter decided in time".to_string()
            } else {
                format!("{} ({})", review.reviewer, review.role)
            };
            let proposed = self.proposed.as_deref().unwrap_or("nothing");
            self.reasons.push(format!(
                "decided in manual review by {who}: {} (the agent had proposed {proposed})",
                review.note
            ));
        } else if self.escalated || self.proposed.as_deref() != Some(state) {
            let proposed = self.proposed.as_deref().unwrap_or("nothing");
            self.reasons.push(format!(
                "decided in manual review (the agent had proposed {proposed})"
            ));
        }
        let affordability = self.affordability;
        let decision = Decision {
            decision: state,
            applicant_id: self.application.as_ref().map(|a| a.applicant_id.as_str()),
            reasons: &self.reasons,
            probability_of_default: self.probability_of_default,
            debt_to_income: affordability.map(|a| a.debt_to_income),
            payment_to_income: affordability.map(|a| a.payment_to_income),
            monthly_payment: affordability.map(|a| a.monthly_payment),
            apr: APR,
            inference_id: self.inference.map(|id| id.0),
            review,
        };
        warden.log(LogLevel::Info, format!("decision: {state}"))?;
        warden.finish(&decision)
    }

    /// Asks for a transition and remembers it. A confidence gate may send the run to
    /// review instead: then this logs why and returns `Error::Escalated`, which ends the
    /// step (the run waits for a human).
    fn propose(
        &mut self,
        warden: &mut Warden,
        to: &str,
        evidence: Option<InferenceId>,
    ) -> Result<(), Error> {
        self.proposed = Some(to.to_string());
        let result = match evidence {
            Some(id) => warden.transition_citing(to, id),
            None => warden.transition(to),
        };
        if let Err(Error::Escalated { state, .. }) = &result {
            // The decision is no longer the agent's: whatever a reviewer decides is theirs.
            self.escalated = true;
            warden.log(
                LogLevel::Warn,
                format!("proposed {to}; the confidence gate sent the run to {state}"),
            )?;
        }
        result.map(|_| ())
    }

    fn application(&self) -> Result<&Application, Error> {
        self.application
            .as_ref()
            .ok_or_else(|| Error::agent("no application on record: intake has not run"))
    }

    fn bureau(&self) -> Result<&BureauRecord, Error> {
        self.bureau
            .as_ref()
            .ok_or_else(|| Error::agent("no bureau record: bureau_check has not run"))
    }
}

/// Rejects an application whose data cannot be underwritten at all; the run fails.
fn validate(application: &Application) -> Result<(), Error> {
    let id = &application.applicant_id;
    let problem = if id.trim().is_empty() {
        Some("applicant_id is empty".to_string())
    } else if !(application.annual_income.is_finite() && application.annual_income > 0.0) {
        Some(format!(
            "annual_income must be a positive amount, got {}",
            application.annual_income
        ))
    } else if !(application.requested_amount.is_finite() && application.requested_amount > 0.0) {
        Some(format!(
            "requested_amount must be a positive amount, got {}",
            application.requested_amount
        ))
    } else if application.term_months == 0 {
        Some("term_months must be at least 1".to_string())
    } else if !(application.employment_years.is_finite() && application.employment_years >= 0.0) {
        Some(format!(
            "employment_years must be zero or more, got {}",
            application.employment_years
        ))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(Error::agent(format!(
            "invalid application {id:?}: {problem}"
        ))),
        None => Ok(()),
    }
}

/// A valid application the product does not cover: declined at intake.
fn outside_product(application: &Application) -> Option<String> {
    let amount = application.requested_amount;
    let term = application.term_months;
    if !(MIN_AMOUNT..=MAX_AMOUNT).contains(&amount) {
        Some(format!(
            "requested amount {amount:.2} is outside the product range {MIN_AMOUNT:.0}-{MAX_AMOUNT:.0}"
        ))
    } else if !(MIN_TERM_MONTHS..=MAX_TERM_MONTHS).contains(&term) {
        Some(format!(
            "term of {term} months is outside the product range {MIN_TERM_MONTHS}-{MAX_TERM_MONTHS}"
        ))
    } else {
        None
    }
}

/// The level monthly payment of an amortising loan at [`APR`]. The compounding factor is
/// a plain product rather than `powi`, so that anyone can reproduce it to the last bit.
fn monthly_payment(amount: f64, term_months: u32) -> f64 {
    let rate = APR / 12.0;
    let step = 1.0 + rate;
    let mut growth = 1.0;
    for _ in 0..term_months {
        growth *= step;
    }
    amount * rate * growth / (growth - 1.0)
}

warden_guest::agent!(Underwriter);
