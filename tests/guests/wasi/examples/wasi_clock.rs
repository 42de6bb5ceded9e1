//! A WASI guest written as an author would write one with the standard library: it reads
//! the wall clock (`SystemTime`) and the monotonic clock (`Instant`), draws random bytes
//! (`getrandom`) and lets a `HashMap` seed itself (`RandomState`), prints to standard
//! output and error, and uses serde_json. Every one of those is a WASI call Warden
//! answers and journals, so the run replays bit for bit although no two live runs agree.
//!
//! Step 1 (in `start`) takes the readings and moves to `done`; step 2 reads the clocks
//! again, across the checkpoint between the steps, and finishes with everything it saw.
use std::collections::HashMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use warden_guest::{Agent, Error, Warden};

#[derive(Default)]
struct Clock {
    wall_ms: u128,
    started: Option<Instant>,
    nonce: u64,
    order: Vec<String>,
}

impl Agent for Clock {
    fn step(&mut self, warden: &mut Warden) -> Result<(), Error> {
        let input: Value = warden.input()?;
        if warden.state()? == "start" {
            self.wall_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or_default();
            self.started = Some(Instant::now());
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes).map_err(|e| Error::agent(e.to_string()))?;
            self.nonce = u64::from_le_bytes(bytes);
            // The iteration order of a std HashMap follows its random seed.
            let names: HashMap<String, usize> = ["alpha", "beta", "gamma", "delta", "epsilon"]
                .iter()
                .enumerate()
                .map(|(i, name)| (name.to_string(), i))
                .collect();
            self.order = names.into_keys().collect();
            println!("wall clock {} ms", self.wall_ms);
            eprintln!("nonce {:016x}", self.nonce);
            warden.transition("done")?;
            return Ok(());
        }
        let elapsed = self.started.map(|s| s.elapsed().as_nanos()).unwrap_or(0);
        println!("elapsed {elapsed} ns");
        warden.finish(&json!({
            "wall_ms": self.wall_ms.to_string(),
            "nonce": format!("{:016x}", self.nonce),
            "order": self.order,
            "elapsed_ns": elapsed.to_string(),
            "echo": input,
        }))
    }
}

warden_guest::agent!(Clock);
