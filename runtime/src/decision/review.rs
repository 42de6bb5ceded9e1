//! Human review as the journal records it: a person's decision on a run that a gate (or
//! the agent) sent to a review state, bound to the exact action they were shown, and the
//! refusals of decisions the policy does not allow. The operations are in `crate::review`.

use std::fmt;

use serde::{Deserialize, Serialize};
use warden_guest::wire::ReviewInfo;

use crate::digest::Digest;

/// How a review decision came about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReviewKind {
    /// A person decided (the second of two, under dual control).
    Decision,
    /// The first of two people decided; the run waits for a second, distinct reviewer.
    FirstOfTwo,
    /// No one decided in time: the review state's timeout applied its declared,
    /// non-approving outcome.
    Expiry,
}

/// A review decision (record `Review` when it moves the run on; `ReviewPending` for the
/// first approval under dual control).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewRecord {
    /// How it came about.
    pub kind: ReviewKind,
    /// The step number the review takes in the run (the step after the one that
    /// escalated); the run continues from it.
    pub step: u32,
    /// The review state the run was in.
    pub state: String,
    /// The state the reviewer sent the run to.
    pub outcome: String,
    /// Who decided (`warden` for an expiry).
    pub reviewer: String,
    /// In which role.
    pub role: String,
    /// Their justification.
    pub note: String,
    /// Digest of the action reviewed: the escalated request, the inference it rested on
    /// and the checkpoint at the gate. A decision on another digest is refused.
    pub action: Digest,
    /// The checkpoint the run continues from (the one taken at the gate, or the last
    /// clean one before it).
    pub resumed_from: u32,
}

impl ReviewRecord {
    /// What the agent reads of it (`warden.review()`).
    pub fn info(&self) -> ReviewInfo {
        ReviewInfo {
            outcome: self.outcome.clone(),
            reviewer: self.reviewer.clone(),
            role: self.role.clone(),
            note: self.note.clone(),
            by_timeout: self.kind == ReviewKind::Expiry,
        }
    }
}

/// Why a review decision was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusalReason {
    /// The outcome is not one the review state offers.
    OutcomeNotOffered {
        /// The outcomes it offers.
        offered: Vec<String>,
    },
    /// The role may not give this outcome.
    RoleNotAllowed {
        /// The roles that may.
        allowed: Vec<String>,
    },
    /// The reviewer submitted the run: no one reviews their own work.
    SelfReview,
    /// The action digest is not the one of the action now awaiting review: the reviewer
    /// saw something else (or something changed underneath).
    StaleAction {
        /// The digest of the action awaiting review.
        current: Digest,
    },
    /// Under dual control, the second decision came from the first reviewer again.
    SameReviewerTwice,
    /// Under dual control, the reviewer already decided on this run at an earlier stage
    /// (sent the case on to this review state, say): the two must be new to the case.
    DecidedBefore {
        /// The review state they decided in.
        state: String,
        /// What they decided there.
        outcome: String,
    },
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefusalReason::OutcomeNotOffered { offered } => write!(
                f,
                "the review state does not offer that outcome (it offers {})",
                offered.join(", ")
            ),
            RefusalReason::RoleNotAllowed { allowed } => write!(
                f,
                "the role may not give that outcome (roles that may: {})",
                allowed.join(", ")
            ),
            RefusalReason::SelfReview => {
                f.write_str("the reviewer submitted the run; no one reviews their own work")
            }
            RefusalReason::StaleAction { current } => write!(
                f,
                "the action reviewed is not the one awaiting review (its digest is {}); read the case file again",
                current.short()
            ),
            RefusalReason::SameReviewerTwice => f.write_str(
                "dual control needs two distinct reviewers; this reviewer already decided",
            ),
            RefusalReason::DecidedBefore { state, outcome } => write!(
                f,
                "dual control needs two reviewers new to the case; this reviewer already decided on this run (in `{state}`, sending it to `{outcome}`)"
            ),
        }
    }
}

/// A refused review decision (record `ReviewRefused`): recorded, so that every attempt
/// to decide a case is part of its history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewRefusal {
    /// Who tried.
    pub reviewer: String,
    /// In which role.
    pub role: String,
    /// The outcome asked for.
    pub outcome: String,
    /// The action digest they presented.
    pub action: Digest,
    /// Why it was refused.
    pub reason: RefusalReason,
}
