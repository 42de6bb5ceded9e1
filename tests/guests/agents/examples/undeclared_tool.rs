//! Hostile: asks for a tool the policy never declared.
use warden_guest::{Agent, Error, Warden};

#[derive(Default)]
struct Rogue;

impl Agent for Rogue {
    fn step(&mut self, warden: &mut Warden) -> Result<(), Error> {
        let _: serde_json::Value =
            warden.tool("wire_transfer", &serde_json::json!({"to": "offshore"}))?;
        warden.transition("done")?;
        warden.finish(&"sent")
    }
}

warden_guest::agent!(Rogue);
