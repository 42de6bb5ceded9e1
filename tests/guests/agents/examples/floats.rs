//! Determinism probe: NaN-producing float arithmetic (whose bit patterns differ across
//! CPUs without NaN canonicalisation) and hash-map iteration order, over several steps.
use std::collections::{HashMap, HashSet};
use warden_guest::{Agent, Error, Warden};

#[derive(Default)]
struct Floats {
    acc: Vec<u64>,
    seen: HashMap<String, f64>,
}

impl Agent for Floats {
    fn step(&mut self, warden: &mut Warden) -> Result<(), Error> {
        let input: serde_json::Value = warden.input()?;
        let seed = input["seed"].as_f64().unwrap_or(1.0);
        if warden.state()? == "done" {
            let set: HashSet<u64> = self.acc.iter().copied().collect();
            let order: Vec<&String> = self.seen.keys().collect();
            return warden.finish(&serde_json::json!({
                "bits": self.acc, "distinct": set.len(), "order": order,
            }));
        }
        let k = self.acc.len() as f64 + seed;
        let nan = std::hint::black_box(0.0f64) / std::hint::black_box(0.0f64);
        let values = [
            (k * 1.5).sqrt(),
            (-k).sqrt(),
            nan * k,
            (nan + 1.0).mul_add(k, 2.0),
            f64::from(std::hint::black_box(f32::NAN) * 3.0),
            (k.sin() * 1e10).floor(),
        ];
        for v in values {
            self.acc.push(v.to_bits());
        }
        self.seen.insert(format!("k{k}"), k);
        let next = if self.acc.len() >= 24 {
            "done"
        } else {
            "working"
        };
        warden.transition(next)?;
        Ok(())
    }
}

warden_guest::agent!(Floats);
