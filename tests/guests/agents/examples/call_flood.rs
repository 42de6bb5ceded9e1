//! Hostile: makes host calls without end (a log flood). Must hit `budgets.max_host_calls`.
use warden_guest::{Agent, Error, LogLevel, Warden};

#[derive(Default)]
struct Chatty;

impl Agent for Chatty {
    fn step(&mut self, warden: &mut Warden) -> Result<(), Error> {
        loop {
            warden.log(LogLevel::Debug, "still here")?;
        }
    }
}

warden_guest::agent!(Chatty);
