//! Hostile: unbounded recursion. Must end as a stack-overflow trap, never a host crash.
//! The recursion keeps its values in wasm locals (not Rust's in-memory stack), so it is
//! the engine's native stack limit that it exhausts.
use warden_guest::{Agent, Error, Warden};

#[derive(Default)]
struct Deep;

fn dive(n: u64, limit: u64) -> u64 {
    if n == limit {
        return n;
    }
    dive(n + 1, limit).wrapping_mul(3).wrapping_add(n)
}

impl Agent for Deep {
    fn step(&mut self, warden: &mut Warden) -> Result<(), Error> {
        let input: serde_json::Value = warden.input()?;
        let limit = input["limit"].as_u64().unwrap_or(u64::MAX);
        let depth = dive(0, limit);
        warden.finish(&depth)
    }
}

warden_guest::agent!(Deep);
