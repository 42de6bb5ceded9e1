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
        records: n as u64,
        head: prev,
        ..test_meta("r")
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
        assert_eq!(chain_problem(&meta, &records, &[]), None);
    }
}

proptest! {
    /// A log leaf written by hand is its postcard encoding, signed or not, and what is
    /// signed is the postcard tuple of its fields, whatever the lengths (varints of one
    /// and several bytes).
    #[test]
    fn log_leaves_encode_as_serde(
        run_id in "\\PC{0,200}",
        numbers in (any::<u64>(), any::<u64>()),
        digests in proptest::collection::vec(any::<[u8; 32]>(), 0..300),
        signed in any::<bool>(),
    ) {
        let mut entry = LogEntry {
            run_id,
            records: numbers.0,
            head: Digest([7; 32]),
            digests: digests.into_iter().map(Digest).collect(),
            at_ms: numbers.1,
            signature: None,
        };
        if signed {
            let key = crate::seal::signing::SigningKey::from_seed(&[1; 32]);
            let signature = key
                .sign(RUN_HEAD_DOMAIN, &entry.signed_bytes())
                .unwrap_or_else(|_| unreachable!("a valid domain"));
            entry.signature = Some((key.key_id(), signature));
        }
        prop_assert_eq!(entry.encode(), encode(&entry));
        let signed = encode(&(
            &entry.run_id,
            entry.records,
            &entry.head,
            &entry.digests,
            entry.at_ms,
        ));
        prop_assert_eq!(entry.signed_bytes(), signed);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::test_support::cases(2_000)))]

    /// Every single edit, deletion, insertion, reordering or truncation is detected.
    #[test]
    fn every_corruption_is_detected(n in 1usize..40, c in corruption()) {
        let (meta, mut records) = chain(n);
        if apply(&mut records, &c) {
            prop_assert!(chain_problem(&meta, &records, &[]).is_some(), "{c:?} on {n} records went unseen");
        }
    }
}

/// The log of `records` as commits of the sizes in `cuts` (cycled) would have left it,
/// each entry signed by `key`.
fn log_of(
    records: &[(Record, Digest)],
    cuts: &[usize],
    key: &crate::seal::signing::SigningKey,
) -> Vec<(u64, LogEntry)> {
    let mut entries = Vec::new();
    let mut at = 0;
    for (index, cut) in cuts.iter().cycle().enumerate() {
        if at >= records.len() {
            break;
        }
        let end = (at + cut).min(records.len());
        let mut entry = LogEntry {
            run_id: "r".into(),
            records: end as u64,
            head: records[end - 1].1,
            digests: records[at..end].iter().map(|(_, d)| *d).collect(),
            at_ms: 1_700_000_000_000 + index as u64,
            signature: None,
        };
        let signature = key
            .sign(RUN_HEAD_DOMAIN, &entry.signed_bytes())
            .unwrap_or_else(|_| unreachable!("a valid domain"));
        entry.signature = Some((key.key_id(), signature));
        entries.push((index as u64 * 3, entry));
        at = end;
    }
    entries
}

/// What a forger does after an edit: renumber the records and recompute the chain.
fn reseal(records: &mut [(Record, Digest)]) {
    let mut prev = Digest::ZERO;
    for (position, (record, digest)) in records.iter_mut().enumerate() {
        record.index = position as u64;
        record.prev = prev;
        *digest = record.digest();
        prev = *digest;
    }
}

/// The first position at which `forged` is not `original`.
fn first_difference(original: &[(Record, Digest)], forged: &[(Record, Digest)]) -> Option<u64> {
    let common = original.len().min(forged.len());
    (0..common)
        .find(|&i| original[i].1 != forged[i].1)
        .or((original.len() != forged.len()).then_some(common))
        .map(|i| i as u64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::test_support::cases(2_000)))]

    /// A forger who re-seals the chain after any corruption leaves a chain that checks
    /// out, and the log still names the first record that is not the one committed.
    #[test]
    fn every_resealed_forgery_is_named_by_the_log(
        n in 1usize..40,
        c in corruption(),
        cuts in proptest::collection::vec(1usize..7, 1..8),
    ) {
        let key = crate::seal::signing::SigningKey::from_seed(&[1; 32]);
        let (_, original) = chain(n);
        let entries = log_of(&original, &cuts, &key);
        let mut forged = original.clone();
        if !apply(&mut forged, &c) {
            return Ok(());
        }
        reseal(&mut forged);
        let expected = first_difference(&original, &forged);
        let found = super::audit::log_problem(&forged, &[], &entries, Some(&key.public_key()));
        prop_assert_eq!(found.as_ref().and_then(|(r, _)| *r), expected, "{:?}: {:?}", c, found);
        prop_assert_eq!(found.is_some(), expected.is_some());
    }

    /// Heads signed by another key are refused, naming the first record of the first
    /// such commit.
    #[test]
    fn heads_not_signed_by_the_key_are_refused(n in 1usize..20, cuts in proptest::collection::vec(1usize..7, 1..8)) {
        let key = crate::seal::signing::SigningKey::from_seed(&[1; 32]);
        let other = crate::seal::signing::SigningKey::from_seed(&[2; 32]);
        let (_, records) = chain(n);
        let entries = log_of(&records, &cuts, &other);
        let found = super::audit::log_problem(&records, &[], &entries, Some(&key.public_key()));
        prop_assert_eq!(found.and_then(|(r, _)| r), Some(0));
        prop_assert!(super::audit::log_problem(&records, &[], &entries, Some(&other.public_key())).is_none());
    }
}

/// A row of table `records`: its key's index and its value.
type RowBytes = (u64, Vec<u8>);

/// The format-6 rows of `records` committed in commits of the sizes in `cuts` (cycled),
/// each at its first record's time, and the log entries those commits leave (no record
/// digests, the run's head after each commit).
fn commit_rows(
    records: &[(Record, Digest)],
    cuts: &[usize],
) -> (Vec<RowBytes>, Vec<(u64, LogEntry)>) {
    let (mut rows, mut entries) = (Vec::new(), Vec::new());
    let (mut at, mut head) = (0, Digest::ZERO);
    for (index, cut) in cuts.iter().cycle().enumerate() {
        if at >= records.len() {
            break;
        }
        let end = (at + cut).min(records.len());
        let bodies: Vec<RecordBody> = records[at..end]
            .iter()
            .map(|(r, _)| r.body.clone())
            .collect();
        let at_ms = records[at].0.at_ms;
        let row = record::RecordRow::encode(&bodies.into(), at as u64, head, at_ms);
        head = row.head;
        rows.push((at as u64, row.bytes().to_vec()));
        let entry = LogEntry {
            run_id: "r".into(),
            records: end as u64,
            head,
            digests: Vec::new(),
            at_ms,
            signature: None,
        };
        entries.push((index as u64 * 3, entry));
        at = end;
    }
    (rows, entries)
}

/// What `Journal::read_rows` makes of `rows`: the records and the commits.
fn read(rows: &[RowBytes]) -> (Vec<(Record, Digest)>, Vec<record::Link>, Digest) {
    let (mut records, mut links) = (Vec::new(), Vec::new());
    for (first, bytes) in rows {
        let before = records
            .last()
            .map_or(Digest::ZERO, |(_, d): &(Record, Digest)| *d);
        let row = record::decode_row(*first, bytes, before).unwrap_or_else(|e| panic!("{e}"));
        records.extend(row.records);
        links.extend(row.link);
    }
    let head = links
        .last()
        .map_or(Digest::ZERO, |link: &record::Link| link.head);
    (records, links, head)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::test_support::cases(2_000)))]

    /// Format 6: a forger who edits, deletes, inserts, reorders or truncates records and
    /// writes the run again as commits would (each row chained to the one before, the
    /// summary re-sealed to the new head) leaves a chain that checks out, and the log names
    /// the first commit that is not the one committed (its first record), or the first
    /// record added after the last.
    #[test]
    fn every_recommitted_forgery_is_named_at_its_commit(
        n in 1usize..40,
        c in corruption(),
        cuts in proptest::collection::vec(1usize..7, 1..8),
    ) {
        let (_, chained) = chain(n);
        let (rows, entries) = commit_rows(&chained, &cuts);
        let (original, links, head) = read(&rows);
        let meta = RunMeta { records: n as u64, head, ..test_meta("r") };
        prop_assert_eq!(chain_problem(&meta, &original, &links), None);
        prop_assert_eq!(super::audit::log_problem(&original, &links, &entries, None), None);
        let mut forged = chained.clone();
        if !apply(&mut forged, &c) {
            return Ok(());
        }
        let (forged_rows, _) = commit_rows(&forged, &cuts);
        let (forged, forged_links, forged_head) = read(&forged_rows);
        let meta = RunMeta { records: forged.len() as u64, head: forged_head, ..test_meta("r") };
        prop_assert_eq!(chain_problem(&meta, &forged, &forged_links), None);
        let Some(at) = first_difference(&original, &forged) else {
            return Ok(());
        };
        // The commit of record `at` (or of the last record, when records were added).
        let last = at.min(original.len() as u64 - 1);
        let commit = links.iter().find(|link| link.first <= last && last < link.end).map(|link| link.first);
        let found = super::audit::log_problem(&forged, &forged_links, &entries, None);
        let named = found.as_ref().and_then(|(r, _)| *r);
        // Records added after the last commit are named where they begin, unless the forger's
        // rows merged them into that commit, which is then named.
        let expected = if (at as usize) < original.len() { vec![commit] } else { vec![commit, Some(at)] };
        prop_assert!(expected.contains(&named), "{:?}: {:?}, expected one of {:?}", c, found, expected);

    }
}

/// A run's log entries only grow: an entry set back to fewer records than an earlier one
/// (here the last, to none, with a head of zeros) is named at the first record of the
/// commit it stood for, not taken for a log that never held the run's later records.
#[test]
fn a_log_entry_set_back_is_named_at_its_commit() {
    let (_, chained) = chain(12);
    let (rows, mut entries) = commit_rows(&chained, &[5]);
    let (records, links, _) = read(&rows);
    assert_eq!(entries.len(), 3);
    let last = entries
        .last_mut()
        .map(|(_, entry)| entry)
        .expect("an entry");
    last.records = 0;
    last.head = Digest::ZERO;
    let found = super::audit::log_problem(&records, &links, &entries, None);
    let (named, message) = found.expect("found");
    assert_eq!(named, Some(10), "{message}");
    assert!(message.contains("only grow"), "{message}");
}

/// A format-6 row whose last record would be numbered u64::MAX is refused, not wrapped.
#[test]
fn a_row_ending_at_the_last_record_number_is_refused() {
    let bodies: Vec<RecordBody> = vec![RecordBody::StepStarted {
        step: 1,
        state: "s".into(),
    }];
    let row = record::RecordRow::encode(&bodies.into(), u64::MAX, Digest::ZERO, 1);
    let message = record::decode_row(u64::MAX, row.bytes(), Digest::ZERO)
        .err()
        .expect("refused");
    assert!(message.contains("past the last record number"), "{message}");
}

/// Bodies of several kinds and sizes, for the row encoder.
fn body() -> impl Strategy<Value = RecordBody> {
    prop_oneof![
        (any::<u32>(), ".{0,12}").prop_map(|(step, state)| RecordBody::StepStarted { step, state }),
        (
            any::<u32>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..300)
        )
            .prop_map(|(step, call, request)| RecordBody::HostCall {
                step,
                call,
                state: "s".into(),
                fuel: u64::from(step) * 7,
                request: request.into(),
                decision: crate::decision::Decision {
                    verdict: crate::decision::Verdict::Allow,
                    rule: crate::decision::Rule::RunProtocol,
                },
            }),
        (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..300)).prop_map(
            |(call, response)| RecordBody::HostResponse {
                call,
                response: response.into(),
            }
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::test_support::cases(500)))]

    /// A commit's row holds exactly the records a record-by-record encoding would, each
    /// with its own digest chained from the record before, in the bytes `docs/journal.md`
    /// gives (the run's head, then every body as it is encoded alone); the run's head after
    /// it is the commit's digest (format 6) or its last record's (format 5).
    #[test]
    fn a_commit_row_holds_the_records_it_was_given(
        bodies in proptest::collection::vec(body(), 0..20),
        first in 0u64..1_000_000,
        prev in any::<[u8; 32]>(),
        before in any::<[u8; 32]>(),
        at_ms in any::<u64>(),
    ) {
        for format in [5u8, 6] {
            let row = if format == 6 {
                record::RecordRow::encode(&bodies.clone().into(), first, Digest(prev), at_ms)
            } else {
                record::RecordRow::encode_format_5(&bodies.clone().into(), first, Digest(prev), at_ms)
            };
            // Format 6 chains its records from the record before the row, format 5 from
            // the head it stores.
            let mut head = if format == 6 { Digest(before) } else { Digest(prev) };
            let mut expected = Vec::new();
            for (index, body) in (first..).zip(&bodies) {
                let record = Record { index, prev: head, at_ms, body: body.clone() };
                head = record.digest();
                expected.push((record, head));
            }
            let mut bytes = vec![format - 3];
            bytes.extend(prev);
            bytes.extend(encode(&at_ms));
            bytes.extend(encode(&(bodies.len() as u64)));
            for body in &bodies {
                bytes.extend(encode(body));
            }
            prop_assert_eq!(row.bytes(), bytes.as_slice());
            let commit = {
                let mut hashed = crate::digest::domain::COMMIT.as_bytes().to_vec();
                hashed.push(0);
                hashed.extend(encode(&first));
                hashed.extend(&bytes);
                Digest(*blake3::hash(&hashed).as_bytes())
            };
            let link = (format == 6).then_some(record::Link {
                first,
                end: first + bodies.len() as u64,
                prev: Digest(prev),
                head: commit,
            });
            if format == 6 {
                prop_assert_eq!(row.head, commit);
            } else if let Some((_, last)) = expected.last() {
                prop_assert_eq!(row.head, *last);
            }
            match record::decode_row(first, row.bytes(), Digest(before)) {
                Ok(decoded) => {
                    prop_assert_eq!(decoded.records, expected);
                    prop_assert_eq!(decoded.link, link);
                }
                Err(message) => prop_assert!(
                    bodies.is_empty() && message == "the row holds no record",
                    "{message}"
                ),
            }
        }
    }

    /// A row altered anywhere (one byte changed, or cut short) does not read back as the
    /// commit it was: it does not decode, or the run's head after it differs. Nothing
    /// panics, under any key.
    #[test]
    fn an_altered_commit_row_never_reads_as_the_same_records(
        bodies in proptest::collection::vec(body(), 1..8),
        first in prop_oneof![0u64..1_000, Just(u64::MAX - 8)],
        at_ms in any::<u64>(),
        at in any::<proptest::sample::Index>(),
        flip in 1u8..=255,
        cut in any::<bool>(),
        format_6 in any::<bool>(),
    ) {
        let bodies = bodies.into();
        let row = if format_6 {
            record::RecordRow::encode(&bodies, first, Digest([7; 32]), at_ms)
        } else {
            record::RecordRow::encode_format_5(&bodies, first, Digest([7; 32]), at_ms)
        };
        let mut bytes = row.bytes().to_vec();
        let at = at.index(bytes.len());
        if cut {
            bytes.truncate(at);
        } else {
            bytes[at] ^= flip;
        }
        match record::decode_row(first, &bytes, Digest([9; 32])) {
            Err(_) => {}
            // What a reader takes for the run's head after the row, as `chain_problem`
            // does: the commit's digest, or the last record's.
            Ok(decoded) => prop_assert_ne!(
                decoded.link.map_or_else(
                    || decoded.records.last().map(|(_, digest)| *digest),
                    |link| Some(link.head)
                ),
                Some(row.head)
            ),
        }
    }

    /// Any bytes, under any key, decode as a row or fail with a message; never a panic.
    #[test]
    fn any_bytes_decode_as_a_row_or_fail(
        first in any::<u64>(),
        version in 0u8..5,
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut row = vec![version];
        row.extend(bytes);
        let _ = record::decode_row(first, &row, Digest::ZERO);
    }
}

/// However much a process writes or reads, redb keeps at most `CACHE_BYTES` of the file's
/// pages in memory (its default, 1 GiB, held a long batch's written pages resident).
#[test]
fn the_journal_keeps_a_bounded_page_cache() {
    let cached = |j: &Journal| match &j.db {
        Handle::ReadWrite(db) => redb::ReadableDatabase::cache_stats(db).used_bytes(),
        Handle::ReadOnly(db) => redb::ReadableDatabase::cache_stats(db).used_bytes(),
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.redb");
    let j = Journal::open(&path).unwrap();
    let blob = 8 << 20;
    let mut digests = Vec::new();
    for i in 0..(2 * CACHE_BYTES / blob + 2) {
        let bytes: std::sync::Arc<[u8]> = vec![i as u8; blob].into();
        let commit = commit::Commit {
            create: Some(test_meta(&format!("r{i}"))),
            records: vec![RecordBody::StepStarted {
                step: 0,
                state: "s".into(),
            }]
            .into(),
            blobs: vec![(Digest::of(crate::digest::domain::BLOB, &bytes), bytes)],
            ..commit::Commit::default()
        };
        digests.push(commit.blobs[0].0);
        j.commit(&format!("r{i}"), commit).unwrap();
    }
    let written = cached(&j);
    drop(j);
    let j = Journal::open_read_only(&path).unwrap();
    for digest in &digests {
        assert_eq!(j.blob(digest).unwrap().map(|b| b.len()), Some(blob));
    }
    let read = cached(&j);
    for used in [written, read] {
        assert!(used > 0, "the cache holds something");
        assert!(
            used <= CACHE_BYTES,
            "{used} bytes cached, past the bound of {CACHE_BYTES}"
        );
    }
}
