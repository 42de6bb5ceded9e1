//! Hostile: panics after a call; the SDK's panic hook reports the message as the reason.
use warden_guest::{Agent, Error, Warden};

#[derive(Default)]
struct Panicker;

impl Agent for Panicker {
    fn step(&mut self, warden: &mut Warden) -> Result<(), Error> {
        let input: serde_json::Value = warden.input()?;
        let items = input["items"].as_array().map(Vec::len).unwrap_or(0);
        let list = [1, 2, 3];
        let index = std::hint::black_box(items + 10);
        warden.finish(&list[index])
    }
}

warden_guest::agent!(Panicker);
