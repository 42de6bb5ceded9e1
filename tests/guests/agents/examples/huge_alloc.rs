//! Hostile: one allocation of 1 GiB, far past any sane memory budget.
use warden_guest::{Agent, Error, Warden};

#[derive(Default)]
struct Huge;

impl Agent for Huge {
    fn step(&mut self, warden: &mut Warden) -> Result<(), Error> {
        let _ = warden.state()?;
        let big = std::hint::black_box(vec![1u8; 1 << 30]);
        warden.finish(&big.len())
    }
}

warden_guest::agent!(Huge);
