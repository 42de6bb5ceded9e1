//! The canonical form of a policy and its hash: the same rules give the same hash
//! whatever the formatting, comments or order of the file; any change of meaning changes
//! it.

use std::collections::BTreeSet;

use serde::Serialize;

use super::{OutputConstraint, Policy, PolicyHash, StateKind};
use crate::provenance::Provenance;

/// The domain tag hashed before the canonical form, so that a policy hash can never
/// equal the hash of anything else Warden names.
const HASH_DOMAIN: &str = crate::digest::domain::POLICY;
/// The domain tag of policies that use rules added since edition 1.
const HASH_DOMAIN_V2: &str = crate::digest::domain::POLICY_V2;
/// The domain tag of policies that declare an input contract.
const HASH_DOMAIN_V3: &str = crate::digest::domain::POLICY_V3;
/// The domain tag of policies that allow WASI guests.
const HASH_DOMAIN_V4: &str = crate::digest::domain::POLICY_V4;

impl Policy {
    /// The canonical hash: blake3 of a domain tag and the postcard encoding of the
    /// policy's meaning (sets sorted, gates sorted by target, defaults filled in).
    /// Formatting, comments and the order of tables and lists do not change it; any
    /// change of meaning, including the description, does. A policy that uses nothing
    /// added since edition 1 (labels, feature provenance, call caps, output rules) hashes
    /// as edition 1 did (`warden-policy-v1`), so recorded runs keep their digest; one
    /// with an input contract hashes under `warden-policy-v3`, which covers the edition-2
    /// form and the schema's canonical JSON; any other hashes under `warden-policy-v2`,
    /// which covers those rules too. A policy without a contract so keeps the hash it had
    /// before contracts existed. One that allows WASI guests (`[wasi] enabled = true`)
    /// hashes under `warden-policy-v4`, which covers the edition-2 form, the contract if
    /// any, and the grant; `enabled = false` means what no `[wasi]` means, and hashes so.
    pub fn hash(&self) -> PolicyHash {
        let v1 = CanonicalPolicy {
            name: &self.name,
            version: &self.version,
            description: self.description.as_deref(),
            initial: &self.initial,
            tools: &self.tools,
            models: &self.models,
            states: self
                .states
                .iter()
                .map(|(name, state)| CanonicalState {
                    name,
                    kind: match state.kind {
                        StateKind::Working => 0,
                        StateKind::Terminal => 1,
                        StateKind::Review => 2,
                    },
                    tools: &state.tools,
                    models: &state.models,
                    transitions: &state.transitions,
                })
                .collect(),
            gates: self
                .gates
                .iter()
                .map(|gate| CanonicalGate {
                    to: &gate.to,
                    model: &gate.model,
                    // +0.0 and -0.0 mean the same threshold.
                    min_confidence: (gate.min_confidence + 0.0).to_bits(),
                    otherwise: &gate.otherwise,
                })
                .collect(),
            budgets: self.budgets.to_array(),
        };
        if self.is_edition_1() && self.input_contract.is_none() && !self.wasi {
            // Encoding plain strings, integers and sequences to a Vec cannot fail.
            let encoded = postcard::to_allocvec(&v1).unwrap_or_default();
            return crate::digest::Digest::of(HASH_DOMAIN, &encoded);
        }
        let v2 = CanonicalPolicyV2 {
            v1,
            gates: self
                .gates
                .iter()
                .map(|g| (g.to.as_str(), g.label.as_deref(), g.require_reconciled))
                .collect(),
            tools: self
                .tool_rules
                .iter()
                .map(|(name, rules)| (name.as_str(), rules.max_calls_per_state))
                .collect(),
            models: self
                .model_rules
                .iter()
                .map(|(name, rules)| {
                    (
                        name.as_str(),
                        rules.max_calls_per_state,
                        rules.provenance.as_ref().map(Provenance::canonical_string),
                    )
                })
                .collect(),
            outputs: self
                .states
                .iter()
                .flat_map(|(state, s)| {
                    s.output.iter().map(move |(field, rule)| {
                        let rule = match rule {
                            OutputConstraint::Equals(value) => format!("= {value}"),
                            OutputConstraint::Type(t) => format!(": {}", t.as_str()),
                            // Canonical expression text (`Expr`'s Display).
                            OutputConstraint::Number { min, max } => format!(
                                ": number{}{}",
                                min.as_ref()
                                    .map_or_else(String::new, |b| format!(", >= {b}")),
                                max.as_ref()
                                    .map_or_else(String::new, |b| format!(", <= {b}"))
                            ),
                        };
                        (state.as_str(), field.as_str(), rule)
                    })
                })
                .collect(),
            reviews: self
                .states
                .iter()
                .filter_map(|(state, s)| Some((state.as_str(), s.review.as_ref()?)))
                .map(|(state, review)| CanonicalReview {
                    state,
                    decisions: review
                        .decisions
                        .iter()
                        .map(|(outcome, rule)| (outcome.as_str(), &rule.roles, rule.dual_control))
                        .collect(),
                    timeout: review
                        .timeout
                        .as_ref()
                        .map(|t| (t.after_ms, t.outcome.as_str())),
                })
                .collect(),
        };
        if self.wasi {
            let v4 = CanonicalPolicyV4 {
                v2,
                input_schema: self.input_contract.as_ref().map(|c| c.canonical()),
                wasi: true,
            };
            let encoded = postcard::to_allocvec(&v4).unwrap_or_default();
            return crate::digest::Digest::of(HASH_DOMAIN_V4, &encoded);
        }
        if let Some(contract) = &self.input_contract {
            let v3 = CanonicalPolicyV3 {
                v2,
                input_schema: contract.canonical(),
            };
            let encoded = postcard::to_allocvec(&v3).unwrap_or_default();
            return crate::digest::Digest::of(HASH_DOMAIN_V3, &encoded);
        }
        let encoded = postcard::to_allocvec(&v2).unwrap_or_default();
        crate::digest::Digest::of(HASH_DOMAIN_V2, &encoded)
    }

    /// Whether the policy uses nothing added since edition 1.
    fn is_edition_1(&self) -> bool {
        self.gates
            .iter()
            .all(|g| g.label.is_none() && !g.require_reconciled)
            && self.tool_rules.is_empty()
            && self.model_rules.is_empty()
            && self
                .states
                .values()
                .all(|s| s.output.is_empty() && s.review.is_none())
    }
}

/// What [`Policy::hash`] encodes. Spelled out field by field, apart from [`Policy`], so
/// that adding a convenience field to `Policy` cannot silently change every hash.
#[derive(Serialize)]
struct CanonicalPolicy<'a> {
    name: &'a str,
    version: &'a str,
    description: Option<&'a str>,
    initial: &'a str,
    tools: &'a BTreeSet<String>,
    models: &'a BTreeSet<String>,
    states: Vec<CanonicalState<'a>>,
    gates: Vec<CanonicalGate<'a>>,
    budgets: [u64; 9],
}

/// What [`Policy::hash`] encodes for a policy with rules added since edition 1: the
/// edition-1 form, then those rules, each sorted by name.
#[derive(Serialize)]
struct CanonicalPolicyV2<'a> {
    v1: CanonicalPolicy<'a>,
    /// (to, label, require_reconciled) per gate.
    gates: Vec<(&'a str, Option<&'a str>, bool)>,
    /// (tool, max_calls_per_state).
    tools: Vec<(&'a str, Option<u32>)>,
    /// (model, max_calls_per_state, canonical provenance).
    models: Vec<(&'a str, Option<u32>, Option<String>)>,
    /// (state, field, rule).
    outputs: Vec<(&'a str, &'a str, String)>,
    /// The rules of each review state.
    reviews: Vec<CanonicalReview<'a>>,
}

/// What [`Policy::hash`] encodes for a policy with an input contract: the edition-2 form
/// (whatever else the policy uses), then the schema as canonical JSON.
#[derive(Serialize)]
struct CanonicalPolicyV3<'a> {
    v2: CanonicalPolicyV2<'a>,
    input_schema: &'a str,
}

/// What [`Policy::hash`] encodes for a policy that allows WASI guests: the edition-2
/// form, the input contract's canonical JSON if it declares one, and the grant.
#[derive(Serialize)]
struct CanonicalPolicyV4<'a> {
    v2: CanonicalPolicyV2<'a>,
    input_schema: Option<&'a str>,
    /// `[wasi] enabled`; always true here (a policy without it hashes as before).
    wasi: bool,
}

/// A review state's rules, for the hash: reviewer roles are governance.
#[derive(Serialize)]
struct CanonicalReview<'a> {
    state: &'a str,
    /// (outcome, roles, dual control).
    decisions: Vec<(&'a str, &'a BTreeSet<String>, bool)>,
    /// (after ms, outcome).
    timeout: Option<(u64, &'a str)>,
}

#[derive(Serialize)]
struct CanonicalState<'a> {
    name: &'a str,
    kind: u8,
    tools: &'a BTreeSet<String>,
    models: &'a BTreeSet<String>,
    transitions: &'a BTreeSet<String>,
}

#[derive(Serialize)]
struct CanonicalGate<'a> {
    to: &'a str,
    model: &'a str,
    min_confidence: u64,
    otherwise: &'a str,
}
