//! Where the answers to tool and model calls come from: the live bindings, or a run's
//! recording (replay performs no effect).
//!
//! Live effects carry an idempotency key (run id + call sequence), so a step re-run after
//! a crash cannot make an effectful provider act twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use warden_guest::wire::{Inference, Request, Response};

use crate::bindings::{Bindings, IdempotencyKey};
use crate::host_call::{Halt, inference_id};
use crate::replay::Divergence;

/// The source of tool and model answers for one execution.
#[derive(Debug)]
pub enum Effects {
    /// Call the providers of the bindings.
    Live(Arc<Bindings>),
    /// Answer from a recording; never call a provider.
    Recorded(Recording),
}

/// The tool and model responses of a recorded run.
#[derive(Debug, Default)]
pub struct Recording {
    /// Response bytes by call sequence number (exact replay).
    pub by_call: BTreeMap<u64, Vec<u8>>,
    /// Response bytes by request bytes (counterfactual replay: the new agent may ask in
    /// another order, but only what was asked before can be answered).
    pub by_request: HashMap<Vec<u8>, Vec<u8>>,
    /// Exact replay answers by sequence number; counterfactual replay by request.
    pub exact: bool,
}

impl Effects {
    /// Answers an allowed tool or model request made as call number `call`.
    pub fn answer(&mut self, run_id: &str, call: u64, request: &Request) -> Result<Response, Halt> {
        match self {
            Effects::Live(bindings) => Ok(live(bindings, run_id, call, request)),
            Effects::Recorded(recording) => {
                let recorded = if recording.exact {
                    recording.by_call.get(&call)
                } else {
                    let key = postcard::to_allocvec(request).unwrap_or_default();
                    recording.by_request.get(&key)
                };
                let unanswerable =
                    || Halt::Diverged(Box::new(Divergence::unanswerable(call, request)));
                let bytes = recorded.ok_or_else(unanswerable)?;
                postcard::from_bytes(bytes).map_err(|_| unanswerable())
            }
        }
    }
}

fn live(bindings: &Bindings, run_id: &str, call: u64, request: &Request) -> Response {
    match request {
        Request::Tool { name, args } => {
            let key = IdempotencyKey {
                run_id: run_id.to_string(),
                call_seq: call,
            };
            Response::Tool(bindings.call_tool(name, args, &key))
        }
        Request::Model { name, features } => {
            Response::Model(bindings.infer(name, features).map(|answer| Inference {
                id: inference_id(call),
                model: name.clone(),
                value: answer.value,
                confidence: answer.confidence,
            }))
        }
        // Only tool and model requests reach here; the rest are answered by the host.
        _ => Response::Ack,
    }
}
