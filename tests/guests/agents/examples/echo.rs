//! Well-behaved: reads its input, moves to `done`, finishes with the input as output.
use warden_guest::{Agent, Error, Warden};

#[derive(Default)]
struct Echo;

impl Agent for Echo {
    fn step(&mut self, warden: &mut Warden) -> Result<(), Error> {
        let input: serde_json::Value = warden.input()?;
        warden.transition("done")?;
        warden.finish(&input)
    }
}

warden_guest::agent!(Echo);
