//! Hostile or well-behaved as its input says: runs the plan in its input, one list of
//! actions per step, so that one module can attempt many attacks on the gates (shopping
//! for an answer, citing a stale or foreign inference, sending made-up features, acting
//! after an escalation, breaking an output rule, forging timeline lines in a log).
//!
//! Input: `{"plan": [[action, ...], ...], ...}`; the other fields are the case itself.
//! Escalations are ignored (the plan goes on), every other error ends the run.
use serde::Deserialize;
use serde_json::Value;
use warden_guest::{Agent, Error, InferenceId, LogLevel, Warden};

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Action {
    /// Ask a model with these features; remember the inference.
    Model { name: String, features: Value },
    /// Ask a model with the input's values of these fields as features.
    ModelFromInput { name: String, fields: Vec<String> },
    /// Call a tool.
    Tool { name: String, args: Value },
    /// Move to a state.
    Transition { to: String },
    /// Move to a state citing the `saved`-th inference this agent got (0 = the first).
    TransitionCiting { to: String, saved: usize },
    /// Move to a state citing an inference id the host never gave.
    TransitionCitingId { to: String, id: u64 },
    /// Finish with this output.
    Finish { output: Value },
    /// Write a log line.
    Log { message: String },
    /// Read the run's review and log what it says.
    ReadReview,
    /// Trap (`unreachable`).
    Trap,
}

#[derive(Deserialize)]
struct Input {
    plan: Vec<Vec<Action>>,
}

#[derive(Default)]
struct Scripted {
    step: usize,
    saved: Vec<InferenceId>,
}

impl Agent for Scripted {
    fn step(&mut self, warden: &mut Warden) -> Result<(), Error> {
        let case: Value = warden.input()?;
        let input: Input = serde_json::from_value(case.clone())
            .map_err(|e| Error::agent(format!("no plan in the input: {e}")))?;
        let step = self.step;
        self.step += 1;
        for action in input.plan.into_iter().nth(step).unwrap_or_default() {
            let done = match action {
                Action::Model { name, features } => self.model(warden, &name, &features),
                Action::ModelFromInput { name, fields } => {
                    let features: serde_json::Map<String, Value> = fields
                        .into_iter()
                        .map(|f| {
                            let value = case.get(&f).cloned().unwrap_or(Value::Null);
                            (f, value)
                        })
                        .collect();
                    self.model(warden, &name, &Value::Object(features))
                }
                Action::Tool { name, args } => warden.tool::<_, Value>(&name, &args).map(|_| ()),
                Action::Transition { to } => warden.transition(&to).map(|_| ()),
                Action::TransitionCiting { to, saved } => {
                    let id = self
                        .saved
                        .get(saved)
                        .copied()
                        .unwrap_or(InferenceId(u64::MAX));
                    warden.transition_citing(&to, id).map(|_| ())
                }
                Action::TransitionCitingId { to, id } => {
                    warden.transition_citing(&to, InferenceId(id)).map(|_| ())
                }
                Action::Finish { output } => warden.finish(&output),
                Action::Log { message } => warden.log(LogLevel::Info, message),
                Action::ReadReview => {
                    let review = warden.review()?;
                    let line = match review {
                        Some(r) => format!("reviewed by {} ({}): {}", r.reviewer, r.role, r.note),
                        None => "not reviewed".to_string(),
                    };
                    warden.log(LogLevel::Info, line)
                }
                Action::Trap => std::process::abort(),
            };
            match done {
                Ok(()) | Err(Error::Escalated { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Scripted {
    fn model(&mut self, warden: &mut Warden, name: &str, features: &Value) -> Result<(), Error> {
        let inference = warden.model::<_, Value>(name, features)?;
        self.saved.push(inference.id);
        Ok(())
    }
}

warden_guest::agent!(Scripted);
