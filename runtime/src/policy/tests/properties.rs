//! Property tests: the parser never panics on arbitrary or mutated text, and a family of
//! generated valid policies always parses, with a hash that ignores the order of writing.

use proptest::prelude::*;

use super::{EXAMPLE, parse};
use crate::policy::PolicyError;

/// A valid policy built from random choices: a chain of working states `s0 .. sN` ending
/// in `done`, extra transitions anywhere, tools per state, an optional gate on `done`.
#[derive(Clone, Debug)]
struct Generated {
    working: usize,
    extra: Vec<(usize, usize)>,
    tools: Vec<Vec<usize>>,
    gate: Option<f64>,
    max_steps: Option<u32>,
}

const TOOLS: [&str; 4] = ["bureau", "registry", "sanctions", "ledger"];

impl Generated {
    /// All state names: the working ones, then `done`, `rejected` and `review`.
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = (0..self.working).map(|i| format!("s{i}")).collect();
        names.extend(["done", "rejected", "review"].map(String::from));
        names
    }

    /// The policy text; `reversed` writes every table and list in the opposite order.
    fn render(&self, reversed: bool) -> String {
        let names = self.names();
        let order = |mut items: Vec<String>| {
            if reversed {
                items.reverse();
            }
            items
        };
        let quoted = |items: Vec<String>| {
            order(items.iter().map(|s| format!("\"{s}\"")).collect()).join(", ")
        };
        let mut states = Vec::new();
        for i in 0..self.working {
            // The chain s0 -> s1 -> ... ends in every non-working state, so all are reachable.
            let mut targets = if i + 1 == self.working {
                names[i + 1..].to_vec()
            } else {
                vec![names[i + 1].clone()]
            };
            targets.extend(
                self.extra
                    .iter()
                    .filter(|(from, _)| *from == i)
                    .map(|(_, to)| names[*to % names.len()].clone()),
            );
            targets.sort();
            targets.dedup();
            let mut tools: Vec<String> = self
                .tools
                .get(i)
                .into_iter()
                .flatten()
                .map(|t| TOOLS[*t].to_string())
                .collect();
            tools.sort();
            tools.dedup();
            states.push(format!(
                "[states.s{i}]\ntools = [{}]\ntransitions = [{}]\n",
                quoted(tools),
                quoted(targets)
            ));
        }
        states.push("[states.done]\nterminal = true\n".into());
        states.push("[states.rejected]\nterminal = true\n".into());
        states.push(
            "[states.review]\nreview = true\ntransitions = [\"done\", \"rejected\"]\n[states.review.decisions.done]\nroles = [\"r\"]\n[states.review.decisions.rejected]\nroles = [\"r\"]\n".into(),
        );
        let gate = self.gate.map_or(String::new(), |min| {
            format!("[[gates]]\nto = \"done\"\nmodel = \"m\"\nlabel = \"ok\"\nmin_confidence = {min:?}\notherwise = \"review\"\nrequire_reconciled = false\n")
        });
        let budgets = self
            .max_steps
            .map_or(String::new(), |n| format!("[budgets]\nmax_steps = {n}\n"));
        let head = format!(
            "[policy]\nname = \"generated\"\nversion = \"1\"\ninitial = \"s0\"\n\n[capabilities]\ntools = [{}]\nmodels = [\"m\"]\n",
            quoted(TOOLS.map(String::from).to_vec())
        );
        let mut sections = vec![head, budgets, gate];
        sections.extend(states);
        order(sections).join("\n")
    }
}

fn generated() -> impl Strategy<Value = Generated> {
    (1usize..12).prop_flat_map(|working| {
        (
            proptest::collection::vec((0..working, 0..working + 3), 0..20),
            proptest::collection::vec(proptest::collection::vec(0..TOOLS.len(), 0..4), working),
            proptest::option::of(0.0f64..=1.0),
            proptest::option::of(1u32..=100_000),
        )
            .prop_map(move |(extra, tools, gate, max_steps)| Generated {
                working,
                extra,
                tools,
                gate,
                max_steps,
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::test_support::cases(1000)))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let _ = parse(&text);
    }

    #[test]
    fn toml_like_text_never_panics(text in "[\\[\\]a-z_.=\"' \n0-9,{}#-]{0,300}") {
        let _ = parse(&text);
    }

    #[test]
    fn mutated_example_never_panics(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = EXAMPLE.as_bytes().to_vec();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        let text = String::from_utf8_lossy(&bytes);
        if let Err(PolicyError::Invalid { diagnostics }) = parse(&text) {
            prop_assert!(!diagnostics.is_empty());
            prop_assert!(diagnostics.iter().all(|d| d.line >= 1 && d.column >= 1));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::test_support::cases(300)))]

    #[test]
    fn generated_policies_parse_and_hash_deterministically(policy in generated()) {
        let forward = parse(&policy.render(false));
        let backward = parse(&policy.render(true));
        let (forward, backward) = match (forward, backward) {
            (Ok(f), Ok(b)) => (f, b),
            (f, b) => return Err(TestCaseError::fail(format!("{f:?}\n{b:?}\n{}", policy.render(false)))),
        };
        prop_assert_eq!(forward.hash(), forward.hash());
        prop_assert_eq!(forward.hash(), backward.hash());
        prop_assert_eq!(forward.states.len(), policy.working + 3);
    }
}
