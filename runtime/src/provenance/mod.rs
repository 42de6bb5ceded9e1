//! Feature provenance: where the features of a gated model's request must come from,
//! and their reconciliation against the run's record before the model is asked.
//!
//! Upholds invariant 1 for confidence gates: a gate rests on an inference whose every
//! feature the host recomputed itself, from the run's input and the tool responses
//! recorded earlier in the run ([`reconcile`]), with a small, total, deterministic
//! expression language ([`expr`]). A feature the agent made up does not reconcile, and
//! the request is denied naming the feature, the value sent and the value expected.

pub mod expr;
pub mod reconcile;

pub use expr::EvalError;
pub use reconcile::{Facts, Provenance, SourceSpec, ToolFact, reconcile};
