//! Hostile: tries to make several transitions in one step.
use warden_guest::{Agent, Error, Warden};

#[derive(Default)]
struct Flood;

impl Agent for Flood {
    fn step(&mut self, warden: &mut Warden) -> Result<(), Error> {
        for _ in 0..1000 {
            warden.transition("working")?;
        }
        Ok(())
    }
}

warden_guest::agent!(Flood);
