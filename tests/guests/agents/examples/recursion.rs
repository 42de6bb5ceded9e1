//! Hostile: unbounded recursion. Must end as a stack-overflow trap, never a host crash.
use warden_guest::{Agent, Error, Warden};

#[derive(Default)]
struct Deep;

fn dive(n: u64, pad: [u64; 16]) -> u64 {
    let pad = std::hint::black_box(pad);
    if std::hint::black_box(n) == u64::MAX {
        return 0;
    }
    dive(n + 1, pad) + pad[(n % 16) as usize]
}

impl Agent for Deep {
    fn step(&mut self, warden: &mut Warden) -> Result<(), Error> {
        let _ = warden.state()?;
        let depth = dive(0, [1; 16]);
        warden.finish(&depth)
    }
}

warden_guest::agent!(Deep);
