//! Well-behaved: asks the `risk` model, then proposes `approved` citing the inference.
//! The gate decides: approved when confident, the review state otherwise.
use warden_guest::{Agent, Error, Warden};

#[derive(Default)]
struct Gated;

impl Agent for Gated {
    fn step(&mut self, warden: &mut Warden) -> Result<(), Error> {
        if warden.state()? == "approved" {
            return warden.finish(&"approved");
        }
        let input: serde_json::Value = warden.input()?;
        let inference = warden.model::<_, serde_json::Value>("risk", &input)?;
        warden.transition_citing("approved", inference.id)?;
        Ok(())
    }
}

warden_guest::agent!(Gated);
