//! Property tests of verification: every corruption of a chain is detected.

use super::verify::chain_problem;
use super::*;
use proptest::prelude::*;

/// A valid chain of `n` records and the metadata that describes it.
fn chain(n: usize) -> (RunMeta, Vec<(Record, Digest)>) {
    let mut prev = Digest::ZERO;
    let mut records = Vec::new();
    for index in 0..n as u64 {
        let record = Record {
            index,
            prev,
            at_ms: 1_700_000_000_000 + index,
            body: RecordBody::StepStarted {
                step: index as u32,
                state: format!("s{index}"),
            },
        };
        prev = record.digest();
        records.push((record, prev));
    }
    let meta = RunMeta {
        run_id: "r".into(),
        agent: Digest::ZERO,
        policy: Digest::ZERO,
        policy_text: Digest::ZERO,
        policy_name: "p".into(),
        policy_version: "1".into(),
        bindings: Digest::ZERO,
        bindings_path: None,
        input: Digest::ZERO,
        parent: None,
        created_ms: 0,
        updated_ms: 0,
        records: n as u64,
        head: prev,
        last_checkpoint: None,
        outcome: crate::outcome::Outcome {
            status: crate::outcome::Status::Running,
            state: "s".into(),
            output: None,
            reason: None,
            steps: 0,
            host_calls: 0,
            fuel: 0,
        },
    };
    (meta, records)
}

/// One way to tamper with a stored chain.
#[derive(Debug, Clone)]
enum Corruption {
    Edit(usize),
    EditAndReseal(usize),
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    Truncate(usize),
    EditTimestamp(usize),
}

fn corruption() -> impl Strategy<Value = Corruption> {
    prop_oneof![
        any::<usize>().prop_map(Corruption::Edit),
        any::<usize>().prop_map(Corruption::EditAndReseal),
        any::<usize>().prop_map(Corruption::Delete),
        any::<usize>().prop_map(Corruption::Duplicate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Corruption::Swap(a, b)),
        (1usize..4).prop_map(Corruption::Truncate),
        any::<usize>().prop_map(Corruption::EditTimestamp),
    ]
}

/// Applies `c`; returns false when it would leave the chain unchanged.
fn apply(records: &mut Vec<(Record, Digest)>, c: &Corruption) -> bool {
    let n = records.len();
    match *c {
        Corruption::Edit(i) => {
            let (record, _) = &mut records[i % n];
            record.body = RecordBody::StepStarted {
                step: 9_999,
                state: "forged".into(),
            };
        }
        Corruption::EditAndReseal(i) => {
            let (record, digest) = &mut records[i % n];
            record.body = RecordBody::StepStarted {
                step: 9_999,
                state: "forged".into(),
            };
            *digest = record.digest();
        }
        Corruption::EditTimestamp(i) => records[i % n].0.at_ms += 1,
        Corruption::Delete(i) => {
            records.remove(i % n);
        }
        Corruption::Duplicate(i) => {
            let copy = records[i % n].clone();
            records.insert(i % n, copy);
        }
        Corruption::Swap(a, b) => {
            if a % n == b % n {
                return false;
            }
            records.swap(a % n, b % n);
        }
        Corruption::Truncate(k) => records.truncate(n.saturating_sub(k)),
    }
    true
}

#[test]
fn an_intact_chain_verifies() {
    for n in 0..20 {
        let (meta, records) = chain(n);
        assert_eq!(chain_problem(&meta, &records), None);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::test_support::cases(2_000)))]

    /// Every single edit, deletion, insertion, reordering or truncation is detected.
    #[test]
    fn every_corruption_is_detected(n in 1usize..40, c in corruption()) {
        let (meta, mut records) = chain(n);
        if apply(&mut records, &c) {
            prop_assert!(chain_problem(&meta, &records).is_some(), "{c:?} on {n} records went unseen");
        }
    }
}
