//! Well-behaved, multi-step, effectful: one `disbursement` (a ledger effect with an
//! idempotency key) per step, memory that changes every step, `steps` steps in all.
//! The crash tests kill `warden` while it runs this agent.
use serde::Deserialize;
use warden_guest::{Agent, Error, LogLevel, Warden};

#[derive(Deserialize)]
struct Input {
    steps: u32,
    amount: u64,
}

#[derive(Default)]
struct Counter {
    done: u32,
    receipts: Vec<String>,
    scratch: Vec<u8>,
}

impl Agent for Counter {
    fn step(&mut self, warden: &mut Warden) -> Result<(), Error> {
        let input: Input = warden.input()?;
        if warden.state()? == "done" {
            let total = u64::from(self.done) * input.amount;
            return warden.finish(&serde_json::json!({
                "steps": self.done,
                "total": total,
                "receipts": self.receipts,
                "checksum": self.scratch.iter().map(|b| u64::from(*b)).sum::<u64>(),
            }));
        }
        self.done += 1;
        let receipt: serde_json::Value = warden.tool(
            "disbursement",
            &serde_json::json!({ "n": self.done, "amount": input.amount }),
        )?;
        self.receipts
            .push(receipt["receipt"].as_str().unwrap_or_default().to_string());
        // Touch a fresh 64 KiB page's worth of memory each step.
        self.scratch
            .extend(std::iter::repeat_n(self.done as u8, 65_536));
        warden.log(
            LogLevel::Info,
            format!("step {} of {}", self.done, input.steps),
        )?;
        let next = if self.done >= input.steps {
            "done"
        } else {
            "working"
        };
        warden.transition(next)?;
        Ok(())
    }
}

warden_guest::agent!(Counter);
