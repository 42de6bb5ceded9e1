//! Where the answers to tool and model calls come from: the live bindings, or a run's
//! recording (replay performs no effect).
//!
//! Upholds invariant 4 (write-ahead, idempotent effects): live effects carry an
//! idempotency key (run id + call sequence), so a step re-run after a crash cannot make an
//! effectful provider act twice; and invariant 3: a recording answers only what was
//! really recorded, never an invented response.

use std::sync::Arc;
use std::time::Instant;

use warden_guest::wire::{Inference, Request, Response};
use warden_guest::{CallError, CallErrorKind, InferenceId};

use crate::bindings::{Bindings, IdempotencyKey, ModelOutput};
use crate::recording::{Divergence, Recording};

/// An answer: the response for the agent, and for a model, what the host records.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The response the agent reads.
    pub response: Response,
    /// A model's output, for the host's inference record.
    pub model: Option<ModelOutput>,
}

/// The source of tool and model answers for one execution.
#[derive(Debug)]
pub(crate) enum Effects {
    /// Call the providers of the bindings.
    Live(Arc<Bindings>),
    /// Answer from a recording; never call a provider.
    Recorded(Recording),
    /// A fork, a what-if: tools that only read and models answer live, but a tool that
    /// acts on the world (a ledger) is answered from the parent's recording where the
    /// request is identical, and otherwise not performed (the agent gets an error
    /// saying so). Live effects in a fork only with the operator's explicit flag.
    Fork {
        /// The fork's providers.
        bindings: Arc<Bindings>,
        /// The parent's answers, by request bytes.
        parent: Recording,
    },
}

impl Effects {
    /// Whether tool `name` acts on the world (a ledger) under these effects' bindings; a
    /// recording acts on nothing.
    pub fn is_effect(&self, name: &str) -> bool {
        match self {
            Effects::Live(bindings) | Effects::Fork { bindings, .. } => bindings.is_effect(name),
            Effects::Recorded(_) => false,
        }
    }

    /// Answers an allowed tool or model `request` (whose bytes are `request_bytes`) made
    /// as call number `call`; a live provider never waits past `deadline` (the step's
    /// wall-clock budget). A recording that has no answer is a divergence.
    pub fn answer(
        &mut self,
        run_id: &str,
        call: u64,
        request: &Request,
        request_bytes: &[u8],
        deadline: Option<Instant>,
    ) -> Result<Answer, Divergence> {
        match self {
            Effects::Live(bindings) => Ok(live(bindings, run_id, call, request, deadline)),
            Effects::Fork { bindings, parent } => match request {
                Request::Tool { name, .. } if bindings.is_effect(name) => {
                    let recorded = parent
                        .answer(call, request_bytes)
                        .and_then(|(bytes, _)| postcard::from_bytes::<Response>(&bytes).ok());
                    let response = recorded.unwrap_or_else(|| {
                        Response::Tool(Err(CallError {
                            kind: CallErrorKind::Unavailable,
                            message: format!(
                                "effect `{name}` not performed in a fork: its parent never made this request, and a fork acts on the world only when started with live effects"
                            ),
                        }))
                    });
                    Ok(Answer {
                        response,
                        model: None,
                    })
                }
                _ => Ok(live(bindings, run_id, call, request, deadline)),
            },
            Effects::Recorded(recording) => {
                let unanswerable = || Divergence::unanswerable(call, request);
                let by_request = recording.by_request();
                let (bytes, model) = recording
                    .answer(call, request_bytes)
                    .ok_or_else(unanswerable)?;
                let mut response: Response =
                    postcard::from_bytes(&bytes).map_err(|_| unanswerable())?;
                // A counterfactual's calls have their own numbers: the inference it gets
                // is this call's, never the recorded call's id.
                if let (true, Response::Model(Ok(inference))) = (by_request, &mut response) {
                    inference.id = inference_id(call);
                }
                Ok(Answer { response, model })
            }
        }
    }
}

/// The inference id the host gives the model call with sequence number `call`: the same
/// in every re-execution of the run.
pub(crate) fn inference_id(call: u64) -> InferenceId {
    InferenceId(call)
}

fn live(
    bindings: &Bindings,
    run_id: &str,
    call: u64,
    request: &Request,
    deadline: Option<Instant>,
) -> Answer {
    match request {
        Request::Tool { name, args } => {
            let key = IdempotencyKey {
                run_id: run_id.to_string(),
                call_seq: call,
            };
            Answer {
                response: Response::Tool(bindings.call_tool_until(name, args, &key, deadline)),
                model: None,
            }
        }
        Request::Model { name, features } => match bindings.infer_until(name, features, deadline) {
            Ok(answer) => Answer {
                model: Some(ModelOutput {
                    label: answer.label,
                    probabilities: answer.probabilities,
                    card: bindings.card(name).cloned(),
                }),
                response: Response::Model(Ok(Inference {
                    id: inference_id(call),
                    model: name.clone(),
                    value: answer.value,
                    confidence: answer.confidence,
                })),
            },
            Err(e) => Answer {
                response: Response::Model(Err(e)),
                model: None,
            },
        },
        // Only tool and model requests reach here; the rest are answered by the host.
        _ => Answer {
            response: Response::Ack,
            model: None,
        },
    }
}
