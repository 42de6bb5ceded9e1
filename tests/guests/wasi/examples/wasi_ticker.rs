//! A WASI guest of several steps, for the crash test: each step reads the wall clock,
//! draws random bytes, pays one `disbursement` (a ledger effect, whose line tells the
//! test how far the run got), prints a line and does some arithmetic, so that a kill can
//! land between steps or in one. A resumed run must end exactly as its journal says.
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{Value, json};
use warden_guest::{Agent, Error, Warden};

#[derive(Deserialize)]
struct Input {
    steps: u32,
    spin: u64,
}

#[derive(Default)]
struct Ticker {
    done: u32,
    readings: Vec<String>,
}

impl Agent for Ticker {
    fn step(&mut self, warden: &mut Warden) -> Result<(), Error> {
        let input: Input = warden.input()?;
        if warden.state()? == "done" {
            return warden.finish(&json!({ "steps": self.done, "readings": self.readings }));
        }
        self.done += 1;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let mut bytes = [0u8; 4];
        getrandom::fill(&mut bytes).map_err(|e| Error::agent(e.to_string()))?;
        let receipt: Value =
            warden.tool("disbursement", &json!({ "n": self.done, "amount": 1 }))?;
        let mut x = u64::from(self.done);
        for i in 0..input.spin {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i);
        }
        self.readings.push(format!(
            "{now}:{:08x}:{x:016x}:{}",
            u32::from_le_bytes(bytes),
            receipt["receipt"].as_str().unwrap_or_default()
        ));
        println!("step {} of {} at {now}", self.done, input.steps);
        let next = if self.done >= input.steps {
            "done"
        } else {
            "working"
        };
        warden.transition(next)?;
        Ok(())
    }
}

warden_guest::agent!(Ticker);
