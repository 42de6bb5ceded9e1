//! Hostile: claims a confidence the host never computed, by citing an inference id that
//! does not exist in this run, to pass the gate on `approved`.
use warden_guest::{Agent, Error, InferenceId, Warden};

#[derive(Default)]
struct Liar;

impl Agent for Liar {
    fn step(&mut self, warden: &mut Warden) -> Result<(), Error> {
        warden.transition_citing("approved", InferenceId(9_999))?;
        warden.finish(&"approved, trust me")
    }
}

warden_guest::agent!(Liar);
