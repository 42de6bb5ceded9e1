//! Hostile: grows memory without end, one small allocation at a time. Must end as the
//! memory budget, not as a host allocation failure.
use warden_guest::{Agent, Error, Warden};

#[derive(Default)]
struct Bomb {
    hoard: Vec<Vec<u8>>,
}

impl Agent for Bomb {
    fn step(&mut self, warden: &mut Warden) -> Result<(), Error> {
        let _ = warden.state()?;
        loop {
            self.hoard.push(vec![7u8; 1 << 20]);
        }
    }
}

warden_guest::agent!(Bomb);
