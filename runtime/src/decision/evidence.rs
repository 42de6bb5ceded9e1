//! What enforcement may rest on besides the policy: the run's input, the tool responses
//! recorded earlier in the run, the inferences the host computed, and how many calls of
//! each capability the current visit of a state has made.
//!
//! Upholds invariant 1 for gates: everything here comes from the run's own record (the
//! host builds it as the run goes, and rebuilds it from the journal when a run continues
//! from a checkpoint), never from anything the guest claims.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use warden_guest::{CallError, InferenceId};

use super::CapabilityKind;
use crate::bindings::ModelCard;
use crate::provenance::ToolFact;

/// How the features of an inference were checked against their declared sources.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureRecord {
    /// Features declared and reconciled (a request with one that does not reconcile is
    /// denied, so an inference exists only when all did).
    pub reconciled: u32,
    /// Each source, its tool, and the call whose recorded response it read.
    pub sources: Vec<(String, String, Option<u64>)>,
}

/// An inference as the host records it (record `Inference`, edition 2): what a gate may
/// rest on, and the model lineage behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInference {
    /// The id given to the agent (the call's sequence number).
    pub id: InferenceId,
    /// The model.
    pub model: String,
    /// The state the run was in when the model was asked.
    pub state: String,
    /// Which visit of states it was made in: the number of transitions before it.
    pub visit: u32,
    /// The label the model predicts.
    pub label: String,
    /// The probability of every label the model knows, as the host's provider computed.
    pub probabilities: Vec<(String, f64)>,
    /// The reconciliation of its features, if the policy declares their sources.
    pub features: Option<FeatureRecord>,
    /// The model card that answered.
    pub card: Option<ModelCard>,
}

impl ModelInference {
    /// The probability of `label`, if the model gave one.
    pub fn probability_of(&self, label: &str) -> Option<f64> {
        self.probabilities
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, p)| *p)
    }
}

/// What a fork inherits: recorded facts (call, tool, args JSON, response JSON), the visit,
/// and the calls per capability of the current visit.
pub type Inheritance = (
    Vec<(u64, String, String, String)>,
    u32,
    Vec<(CapabilityKind, String, u32)>,
);

/// The run's record as enforcement sees it (edition 2).
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    /// The run's input.
    pub input: Value,
    /// Successful tool responses recorded in this run, in call order.
    pub facts: Vec<ToolFact>,
    /// Inferences the host computed in this run, in order.
    pub inferences: Vec<ModelInference>,
    /// Transitions so far: each visit of a state has its own number.
    pub visit: u32,
    /// Allowed calls of each capability in the current visit.
    pub calls: BTreeMap<(CapabilityKind, String), u32>,
    /// The latest review decision of the run, which the agent may read.
    pub review: Option<warden_guest::wire::ReviewInfo>,
}

impl Evidence {
    /// The evidence of a run that has done nothing yet with `input` (JSON text; anything
    /// else reads as null, whose pointers resolve to nothing).
    pub fn new(input: &str) -> Evidence {
        Evidence {
            input: serde_json::from_str(input).unwrap_or(Value::Null),
            ..Evidence::default()
        }
    }

    /// An allowed tool or model call.
    pub fn on_call(&mut self, kind: CapabilityKind, name: &str) {
        *self.calls.entry((kind, name.to_string())).or_default() += 1;
    }

    /// Allowed calls of a capability in the current visit.
    pub fn calls_this_visit(&self, kind: CapabilityKind, name: &str) -> u32 {
        self.calls
            .get(&(kind, name.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// A tool's response to call `call` with `args` (JSON text). Only a successful
    /// response whose JSON parses is a fact a feature may come from.
    pub fn on_tool_response(
        &mut self,
        call: u64,
        tool: &str,
        args: &str,
        response: &Result<String, CallError>,
    ) {
        let Ok(text) = response else { return };
        let (Ok(args), Ok(response)) = (serde_json::from_str(args), serde_json::from_str(text))
        else {
            return;
        };
        self.facts.push(ToolFact {
            call,
            tool: tool.to_string(),
            args,
            response,
        });
    }

    /// An inference the host recorded.
    pub fn on_inference(&mut self, inference: ModelInference) {
        self.inferences.push(inference);
    }

    /// The run moved to another state (or the same one again): a new visit.
    pub fn on_transition(&mut self) {
        self.visit += 1;
        self.calls.clear();
    }

    /// What a fork of the run at this point inherits: the recorded facts, the visit and
    /// the calls of the current visit; never the inferences.
    pub fn inheritance(&self) -> Inheritance {
        let facts = self
            .facts
            .iter()
            .map(|f| {
                (
                    f.call,
                    f.tool.clone(),
                    f.args.to_string(),
                    f.response.to_string(),
                )
            })
            .collect();
        let calls = self
            .calls
            .iter()
            .map(|((kind, name), n)| (*kind, name.clone(), *n))
            .collect();
        (facts, self.visit, calls)
    }

    /// Takes on what a fork inherits (see [`Evidence::inheritance`]).
    pub fn inherit(
        &mut self,
        facts: &[(u64, String, String, String)],
        visit: u32,
        calls: &[(CapabilityKind, String, u32)],
    ) {
        self.facts.clear();
        for (call, tool, args, response) in facts {
            let response = Ok(response.clone());
            self.on_tool_response(*call, tool, args, &response);
        }
        self.visit = visit;
        self.calls = calls
            .iter()
            .map(|(kind, name, n)| ((*kind, name.clone()), *n))
            .collect();
    }

    /// The latest inference of `model` made in the current visit.
    pub fn latest(&self, model: &str) -> Option<&ModelInference> {
        self.inferences
            .iter()
            .rev()
            .take_while(|i| i.visit == self.visit)
            .find(|i| i.model == model)
    }
}
