//! Hostile: an infinite loop inside a step. Must end as fuel exhaustion (or, with a huge
//! fuel budget, as the wall-clock safety stop).
use warden_guest::{Agent, Error, Warden};

#[derive(Default)]
struct Spin;

impl Agent for Spin {
    fn step(&mut self, warden: &mut Warden) -> Result<(), Error> {
        let _ = warden.state()?;
        let mut x = 0u64;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }
}

warden_guest::agent!(Spin);
