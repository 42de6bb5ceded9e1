//! Hostile: makes calls (one of them an effect), then traps in the middle of the step.
use warden_guest::{Agent, Error, LogLevel, Warden};

#[derive(Default)]
struct Trapper;

impl Agent for Trapper {
    fn step(&mut self, warden: &mut Warden) -> Result<(), Error> {
        let _: serde_json::Value = warden.input()?;
        warden.log(LogLevel::Info, "about to misbehave")?;
        let _: serde_json::Value =
            warden.tool("disbursement", &serde_json::json!({"n": 1, "amount": 5}))?;
        // Compiles to the `unreachable` instruction on wasm32: a trap, mid-step.
        std::process::abort()
    }
}

warden_guest::agent!(Trapper);
