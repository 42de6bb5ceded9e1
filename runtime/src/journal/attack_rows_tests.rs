//! Attacks on the journal's record rows (format 5's `RecordRow`, format 4's
//! `StoredRecords::V2`, which an attacker may write too): a forger with redb, postcard and
//! docs/journal.md edits rows directly. Each test is an attack that
//! is caught, or that changes no record. (Written by a reviewer who had not seen the
//! format's own tests; the three weaknesses it found are fixed, and their tests are the
//! last three here.)

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};

use super::log::{LOG_LEAVES, LOG_NODES};
use super::record::{self, StoredMetaRef};
use super::*;
use crate::digest::{Digest, domain};
use crate::edition::Edition;
use crate::policy::Budgets;
use crate::seal::signing::{PublicKey, SigningKey};

struct Fx {
    _dir: tempfile::TempDir,
    path: PathBuf,
    j: Journal,
    key: Option<PublicKey>,
}

fn step(step: u32) -> RecordBody {
    RecordBody::StepStarted {
        step,
        state: "s".into(),
    }
}

/// A run's first commit: its summary, its start record and its blobs.
pub(super) fn first_commit(run_id: &str, more: Vec<RecordBody>) -> Commit {
    let agent = b"\0asm fake module".to_vec();
    let policy = b"name: p\nversion: 1\n".to_vec();
    let input = br#"{"x":1}"#.to_vec();
    let start = RunStart {
        run_id: run_id.into(),
        agent: Digest::of(domain::AGENT, &agent),
        policy: Digest::ZERO,
        policy_text: Digest::of(domain::BLOB, &policy),
        policy_name: "p".into(),
        policy_version: "1".into(),
        bindings: Digest::ZERO,
        bindings_path: None,
        input: Digest::of(domain::BLOB, &input),
        state: "s".into(),
        budgets: Budgets::DEFAULT,
        parent: None,
        warden_version: "test".into(),
        edition: Edition::CURRENT,
        engine: "test".into(),
        submitted_by: None,
        models: Vec::new(),
        live_effects: true,
    };
    let meta = RunMeta {
        agent: start.agent,
        policy_text: start.policy_text,
        input: start.input,
        ..test_meta(run_id)
    };
    let mut records = vec![RecordBody::Started(Box::new(start.clone()))];
    records.extend(more);
    Commit {
        create: Some(meta),
        records: records.into(),
        blobs: vec![
            (start.agent, agent.into()),
            (start.policy_text, policy.into()),
            (start.input, input.into()),
        ],
        ..Commit::default()
    }
}

/// Run `run_id` in three commits: rows at 0 [0,1], 2 [2,3,4], 5 [5,6].
fn make_run(j: &Journal, run_id: &str) {
    j.commit(run_id, first_commit(run_id, vec![step(0)]))
        .unwrap();
    j.commit(
        run_id,
        Commit {
            records: vec![step(1), step(2), step(3)].into(),
            ..Commit::default()
        },
    )
    .unwrap();
    j.commit(
        run_id,
        Commit {
            records: vec![step(4), step(5)].into(),
            ..Commit::default()
        },
    )
    .unwrap();
}

fn fixture(signed: bool, runs: &[&str]) -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.redb");
    let mut j = Journal::open(&path).unwrap();
    let mut key = None;
    if signed {
        let k = SigningKey::from_seed(&[7; 32]);
        key = Some(k.public_key());
        j.set_signer(k);
    }
    for run in runs {
        make_run(&j, run);
    }
    Fx {
        _dir: dir,
        path,
        j,
        key,
    }
}

fn rows(j: &Journal, run: &str) -> Vec<(u64, Vec<u8>)> {
    let tx = j.read().unwrap();
    let t = tx.open_table(RECORDS).unwrap();
    t.range((run, 0)..=(run, u64::MAX))
        .unwrap()
        .map(|e| {
            let (k, v) = e.unwrap();
            (k.value().1, v.value().to_vec())
        })
        .collect()
}

/// Replaces every row of `run` with `new`.
fn set_rows(j: &Journal, run: &str, new: &[(u64, Vec<u8>)]) {
    let tx = j.write().unwrap();
    {
        let mut t = tx.open_table(RECORDS).unwrap();
        let keys: Vec<u64> = t
            .range((run, 0)..=(run, u64::MAX))
            .unwrap()
            .map(|e| e.unwrap().0.value().1)
            .collect();
        for k in keys {
            t.remove((run, k)).unwrap();
        }
        for (k, v) in new {
            t.insert((run, *k), v.as_slice()).unwrap();
        }
    }
    tx.commit().unwrap();
}

/// The records of row `i` of `rows` (each with its digest, chained from the rows before).
fn decoded(rows: &[(u64, Vec<u8>)], i: usize) -> Vec<(Record, Digest)> {
    let mut before = Digest::ZERO;
    let mut records = Vec::new();
    for (first, bytes) in &rows[..=i] {
        records = record::decode_row(*first, bytes, before).unwrap().records;
        before = records.last().unwrap().1;
    }
    records
}

/// The run's head after row `i` of `rows`: the commit's digest (format 6), or its last
/// record's.
fn head_after(rows: &[(u64, Vec<u8>)], i: usize) -> Digest {
    let (first, bytes) = &rows[i];
    let before = if i == 0 {
        Digest::ZERO
    } else {
        decoded(rows, i - 1).last().unwrap().1
    };
    let row = record::decode_row(*first, bytes, before).unwrap();
    row.link
        .map_or_else(|| row.records.last().unwrap().1, |link| link.head)
}

fn v2(records: &[(Record, Digest)]) -> Vec<u8> {
    let mut b = vec![1];
    b.extend(postcard::to_allocvec(&records.to_vec()).unwrap());
    b
}

fn v1(record: &(Record, Digest)) -> Vec<u8> {
    let mut b = vec![0];
    b.extend(postcard::to_allocvec(record).unwrap());
    b
}

fn varint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// Every problem the audit reports, run problems first.
/// The audit's problems, runs first; and every run's own audit (`warden verify RUN`)
/// says of it what the whole audit says, beside the same account of the log.
fn problems(j: &Journal, key: Option<&PublicKey>) -> Vec<String> {
    let a = j.audit(key).unwrap();
    for run in &a.runs {
        let alone = j.audit_run(&run.run_id, key).unwrap();
        assert_eq!(
            alone.runs,
            std::slice::from_ref(run),
            "run {:?} audited alone",
            run.run_id
        );
        assert_eq!(
            alone.log, a.log,
            "the log, audited for run {:?}",
            run.run_id
        );
    }
    assert_eq!(j.audit_log(key).unwrap(), a.log);
    let mut p: Vec<String> = a
        .runs
        .iter()
        .filter_map(|v| v.problem.as_ref().map(|p| format!("{}: {p}", v.run_id)))
        .collect();
    p.extend(a.log.problems);
    p
}

fn reseal_summary(j: &Journal, run: &str, records: u64, head: Digest) {
    let tx = j.write().unwrap();
    {
        let mut runs = tx.open_table(RUNS).unwrap();
        let bytes = runs.get(run).unwrap().unwrap().value().to_vec();
        let mut meta = j.decode_meta(run, &bytes).unwrap();
        meta.records = records;
        meta.head = head;
        runs.insert(run, encode(&StoredMetaRef::V2(&meta)).as_slice())
            .unwrap();
    }
    tx.commit().unwrap();
}

#[test]
fn held_baseline_rows_are_one_per_commit_and_audit_is_intact() {
    let fx = fixture(true, &["r"]);
    let keys: Vec<u64> = rows(&fx.j, "r").iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, vec![0, 2, 5]);
    assert!(problems(&fx.j, None).is_empty());
    assert!(problems(&fx.j, fx.key.as_ref()).is_empty());
    assert_eq!(fx.j.storage().unwrap().records, 7);
}

/// Splitting a format-6 row in two or merging rows, each row under its first record's
/// index, with every record and its digest as the reader computes them: the records read
/// the same, but the run's head after each commit is that commit's digest, which no
/// rewritten row reproduces, so the first rewritten commit is named. (Under format 5 a
/// split changed nothing: its heads were record digests.)
#[test]
fn held_split_and_merge_of_commits_are_named() {
    let fx = fixture(true, &["r"]);
    let before = fx.j.stored_records("r").unwrap();
    let r = rows(&fx.j, "r");
    let mid = decoded(&r, 1);
    let last = decoded(&r, 2);
    // Split [2,3,4] into [2] and [3,4]; [5,6] into V1 rows at keys 5 and 6.
    set_rows(
        &fx.j,
        "r",
        &[
            r[0].clone(),
            (2, v2(&mid[..1])),
            (3, v2(&mid[1..])),
            (5, v1(&last[0])),
            (6, v1(&last[1])),
        ],
    );
    assert_eq!(fx.j.stored_records("r").unwrap(), before);
    assert_eq!(fx.j.verify("r").unwrap().record, Some(2));
    assert!(!problems(&fx.j, fx.key.as_ref()).is_empty());
    // Everything merged into one row under key 0, the summary re-sealed to its head.
    set_rows(&fx.j, "r", &[(0, v2(&before))]);
    reseal_summary(&fx.j, "r", 7, before[6].1);
    assert_eq!(fx.j.stored_records("r").unwrap(), before);
    assert_eq!(fx.j.verify("r").unwrap().record, Some(0));
    assert!(!problems(&fx.j, fx.key.as_ref()).is_empty());
}

/// A format-6 row stores no digest to re-seal: whatever byte of it is changed (the head
/// it follows, the commit's time, a body), the commit hashes to another head than the log
/// holds, and verification names the commit's first record, in a signed journal and an
/// unsigned one, with the rest of the chain and the run's summary re-sealed to the new
/// head the way a careful forger would, or left as they were.
#[test]
fn held_a_changed_byte_of_a_row_is_named_at_its_commit() {
    for signed in [true, false] {
        for reseal in [false, true] {
            let fx = fixture(signed, &["r"]);
            let r = rows(&fx.j, "r");
            assert_eq!(r[1].1[0], 3, "rows are written in format 6");
            // Record 3 is `StepStarted { step: 2, state: "s" }`: 1, 2, 1, "s".
            let body = r[1]
                .1
                .windows(4)
                .position(|w| w == [1, 2, 1, b's'])
                .unwrap();
            for (what, at, named) in [
                ("predecessor", 1, 2),
                ("time", 33, 2),
                ("body", body + 3, 2),
            ] {
                let mut new = r.clone();
                new[1].1[at] ^= 1;
                if reseal {
                    let head = head_after(&new, 1);
                    new[2].1[1..33].copy_from_slice(&head.0);
                    let head = head_after(&new, 2);
                    reseal_summary(&fx.j, "r", 7, head);
                }
                set_rows(&fx.j, "r", &new);
                let verification = fx.j.verify("r").unwrap();
                assert_eq!(
                    verification.record,
                    Some(named),
                    "{what} changed (signed: {signed}, re-sealed: {reseal}): {verification:?}"
                );
                set_rows(&fx.j, "r", &r);
                let head = head_after(&r, 2);
                reseal_summary(&fx.j, "r", 7, head);
                assert!(problems(&fx.j, fx.key.as_ref()).is_empty());
            }
        }
    }
}

/// A row that does not decode ends what can be read of a run, but does not hide what
/// comes before it: a record altered in an earlier row is still named, at its commit,
/// and the broken row alone is named at its first record. (Found by a reviewer: the
/// broken row used to be the only problem reported, with no record named.)
#[test]
fn held_a_broken_row_does_not_hide_an_earlier_altered_record() {
    for signed in [true, false] {
        let fx = fixture(signed, &["r"]);
        let r = rows(&fx.j, "r");
        let mut broken = r.clone();
        broken[2].1.push(0);
        set_rows(&fx.j, "r", &broken);
        let verification = fx.j.verify("r").unwrap();
        assert_eq!(verification.record, Some(5), "{verification:?}");
        let problem = verification.problem.unwrap();
        assert!(
            problem.starts_with("the records of run r from record 5 do not decode: 1 bytes follow"),
            "{problem}"
        );
        let body = r[1]
            .1
            .windows(4)
            .position(|w| w == [1, 2, 1, b's'])
            .unwrap();
        broken[1].1[body + 3] = b't';
        set_rows(&fx.j, "r", &broken);
        let verification = fx.j.verify("r").unwrap();
        // Record 3 is altered: its commit, records 2 to 4, is named.
        assert_eq!(verification.record, Some(2), "{verification:?}");
    }
}

/// A row under a key other than its first record's index is reported at once, even
/// when the records, read in key order, are exactly the run's: whether moved past the
/// run's end (where its next commit would overwrite it), merged under another key, or
/// split into V1 rows under made-up keys.
#[test]
fn held_a_row_under_another_key_is_reported() {
    let fx = fixture(true, &["r"]);
    let r = rows(&fx.j, "r");
    let before = fx.j.stored_records("r").unwrap();
    let last = decoded(&r, 2);
    for layout in [
        vec![r[0].clone(), r[1].clone(), (7, r[2].1.clone())],
        vec![(7, v2(&before))],
        vec![
            r[0].clone(),
            r[1].clone(),
            (90, v1(&last[0])),
            (91, v1(&last[1])),
        ],
    ] {
        set_rows(&fx.j, "r", &layout);
        assert!(
            !problems(&fx.j, fx.key.as_ref()).is_empty(),
            "moved rows went unseen: {:?}",
            layout.iter().map(|(k, _)| k).collect::<Vec<_>>()
        );
    }
}

#[test]
fn held_reordered_rows_are_reported() {
    let fx = fixture(false, &["r"]);
    let r = rows(&fx.j, "r");
    set_rows(
        &fx.j,
        "r",
        &[
            (0, r[0].1.clone()),
            (2, r[2].1.clone()),
            (5, r[1].1.clone()),
        ],
    );
    assert!(!problems(&fx.j, None).is_empty());
}

#[test]
fn held_v1_row_overlapping_v2_row_is_reported() {
    let fx = fixture(false, &["r"]);
    let r = rows(&fx.j, "r");
    let mid = decoded(&r, 1);
    // A V1 copy of record 3 at key 3, inside the V2 row at key 2.
    let mut new = r.clone();
    new.push((3, v1(&mid[1])));
    set_rows(&fx.j, "r", &new);
    assert!(!problems(&fx.j, None).is_empty());
    // A V1 row replacing record 2 only, the V2 row kept: duplicates.
    let mut new = r.clone();
    new.push((1, v1(&mid[0])));
    set_rows(&fx.j, "r", &new);
    assert!(!problems(&fx.j, None).is_empty());
}

#[test]
fn held_duplicate_row_is_reported() {
    let fx = fixture(false, &["r"]);
    let mut r = rows(&fx.j, "r");
    r.push((100, r[2].1.clone()));
    set_rows(&fx.j, "r", &r);
    assert!(!problems(&fx.j, None).is_empty());
}

/// An empty V2 row is reported: a commit with no records writes no row.
#[test]
fn held_an_empty_row_is_reported() {
    let fx = fixture(true, &["r"]);
    let mut r = rows(&fx.j, "r");
    r.push((50, vec![1, 0]));
    set_rows(&fx.j, "r", &r);
    assert!(!problems(&fx.j, fx.key.as_ref()).is_empty());
}

#[test]
fn held_trailing_bytes_short_and_huge_counts_are_reported_without_panic() {
    let fx = fixture(false, &["r"]);
    let r = rows(&fx.j, "r");
    let body = &r[1].1[2..]; // after variant 1 and count 3
    let cases: Vec<Vec<u8>> = vec![
        // trailing bytes
        [r[1].1.clone(), vec![0]].concat(),
        // a count larger than what follows
        [vec![1], varint(4), body.to_vec()].concat(),
        // a smaller count: the rest is trailing
        [vec![1], varint(2), body.to_vec()].concat(),
        // huge counts
        [vec![1], varint(u64::MAX), body.to_vec()].concat(),
        [vec![1], varint(1 << 40), body.to_vec()].concat(),
        [vec![1], varint(1 << 40)].concat(),
        // an unknown variant; a truncated varint
        vec![2, 0],
        vec![1, 0xff],
        vec![],
    ];
    for (n, case) in cases.into_iter().enumerate() {
        let mut new = r.clone();
        new[1].1 = case;
        set_rows(&fx.j, "r", &new);
        let result = catch_unwind(AssertUnwindSafe(|| problems(&fx.j, None)));
        let p = result.unwrap_or_else(|_| panic!("case {n} panicked"));
        assert!(!p.is_empty(), "case {n} not reported");
    }
}

/// A row of run "r" under run "ab"'s key, and rows of "a" at the far ends of its key range
/// (next to "ab" and "a\0" in byte order), stay in their own runs.
#[test]
fn held_rows_under_another_run_or_prefix_run_id_are_reported_to_that_run_only() {
    let fx = fixture(false, &["a", "ab", "a\0"]);
    let a = rows(&fx.j, "a");
    let ab_before = fx.j.stored_records("ab").unwrap();
    let mut new = a.clone();
    new.push((u64::MAX, a[2].1.clone()));
    set_rows(&fx.j, "a", &new);
    assert_eq!(fx.j.stored_records("ab").unwrap(), ab_before);
    let p = problems(&fx.j, None);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("a: "), "{p:?}");
    set_rows(&fx.j, "a", &a);
    // "ab"'s last row copied to "a" key 5 (replacing "a"'s own).
    let ab = rows(&fx.j, "ab");
    let mut new = a.clone();
    new[2].1 = ab[2].1.clone();
    set_rows(&fx.j, "a", &new);
    let p = problems(&fx.j, None);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("a: "), "{p:?}");
}

/// Truncating inside the last row and re-sealing the summary: the log holds the run's
/// head at the commit's record count, so the audit names the commit cut short, with or
/// without a key;
/// with a key, removing the commit's log leaf as well leaves the signed tree head
/// uncovered.
#[test]
fn held_truncate_within_row_and_reseal_summary_is_reported() {
    for signed in [false, true] {
        let fx = fixture(signed, &["r"]);
        let r = rows(&fx.j, "r");
        let last = decoded(&r, 2);
        // The last commit re-written with its first record only, as a commit of it would
        // have written it, and the summary re-sealed to that commit's digest.
        let cut = record::RecordRow::encode(
            &vec![last[0].0.body.clone()].into(),
            5,
            head_after(&r, 1),
            last[0].0.at_ms,
        );
        set_rows(
            &fx.j,
            "r",
            &[r[0].clone(), r[1].clone(), (5, cut.bytes().to_vec())],
        );
        reseal_summary(&fx.j, "r", 6, cut.head);
        // The commit's digest does not tell which of its records went: the commit is named.
        assert_eq!(fx.j.verify("r").unwrap().record, Some(5));
        let p = problems(&fx.j, fx.key.as_ref());
        assert!(
            p.iter().any(
                |p| p.contains("records 5 to 6 are not the records committed on")
                    && p.contains("the run has 6; records were deleted or the run was truncated")
            ),
            "{p:?}"
        );
        if signed {
            // Also drop the last log leaf and the cached nodes.
            let tx = fx.j.write().unwrap();
            {
                let mut leaves = tx.open_table(LOG_LEAVES).unwrap();
                let n = leaves.len().unwrap();
                leaves.remove(n - 1).unwrap();
                let mut nodes = tx.open_table(LOG_NODES).unwrap();
                let keys: Vec<(u32, u64)> = nodes
                    .iter()
                    .unwrap()
                    .map(|e| e.unwrap().0.value())
                    .collect();
                for k in keys {
                    nodes.remove(k).unwrap();
                }
            }
            tx.commit().unwrap();
            let p = problems(&fx.j, fx.key.as_ref());
            assert!(
                !p.is_empty(),
                "truncation with the log cut back went unseen"
            );
        }
    }
}

/// An evidence pack cut back inside its last row (summary re-sealed, the last manifest
/// entry dropped) does not verify.
#[test]
fn held_pack_cut_back_inside_a_row_is_reported() {
    let fx = fixture(true, &["r"]);
    let out = fx.path.with_file_name("pack.redb");
    fx.j.write_pack("r", &out, fx.key, None).unwrap();
    {
        let pack = Journal::open_pack(&out).unwrap();
        let v = pack.verify_pack(fx.key.as_ref()).unwrap();
        assert!(v.is_intact(), "{v:?}");
        drop(pack);
        // The forger's handle: redb, read-write.
        let pack = Journal::create_or_open(&out).unwrap();
        let r = rows(&pack, "r");
        let last = decoded(&r, 2);
        set_rows(
            &pack,
            "r",
            &[r[0].clone(), r[1].clone(), (5, v2(&last[..1]))],
        );
        reseal_summary(&pack, "r", 6, last[0].1);
        const PACK: TableDefinition<&str, &[u8]> = TableDefinition::new("pack");
        let mut manifest = pack.pack_manifest().unwrap().unwrap();
        manifest.entries.pop();
        let tx = pack.write().unwrap();
        tx.open_table(PACK)
            .unwrap()
            .insert("manifest", encode(&manifest).as_slice())
            .unwrap();
        tx.commit().unwrap();
        drop(pack);
        let pack = Journal::open_pack(&out).unwrap();
        let v = pack.verify_pack(fx.key.as_ref()).unwrap();
        assert!(
            !v.is_intact(),
            "a pack cut back inside a row verifies: {v:?}"
        );
        assert!(v.run.problem.is_some(), "{v:?}");
    }
}

/// `Journal::storage` counts the records a row holds, not the count it declares: a row
/// (here under a run id that has no summary, which the audit reports as planted)
/// declaring u64::MAX records neither overflows the sum nor inflates it.
#[test]
fn held_storage_counts_only_records_that_decode() {
    let fx = fixture(false, &["r"]);
    set_rows(&fx.j, "zz", &[(0, [vec![1], varint(u64::MAX)].concat())]);
    let p = problems(&fx.j, None);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("zz: records are stored under this run id"),
        "{p:?}"
    );
    let storage = catch_unwind(AssertUnwindSafe(|| fx.j.storage()));
    let storage = storage
        .expect("storage() panicked on a hostile row")
        .unwrap();
    assert_eq!(
        storage.records, 7,
        "storage counts records a row declares, not records that exist"
    );
}

/// postcard accepts an over-long varint for the variant index (0x81 0x00 = 1), so a
/// format-4 row written that way decodes to the very same records, and `Journal::storage`
/// counts them (the run's head after it is no longer its commit's digest, which the audit
/// reports). A format-6 row is read only under its one-byte index: rewritten as 0x83 0x00
/// it is reported as a row that does not decode.
#[test]
fn held_storage_counts_a_row_with_an_overlong_variant_index() {
    let fx = fixture(true, &["r"]);
    let before = fx.j.stored_records("r").unwrap();
    let mut r = rows(&fx.j, "r");
    let format_6 = r[1].1.clone();
    r[1].1 = [vec![0x81, 0x00], v2(&decoded(&r, 1))[1..].to_vec()].concat();
    set_rows(&fx.j, "r", &r);
    assert_eq!(fx.j.stored_records("r").unwrap(), before);
    assert_eq!(
        fx.j.storage().unwrap().records,
        7,
        "storage() miscounts a row that decodes"
    );
    assert_eq!(fx.j.verify("r").unwrap().record, Some(2));
    r[1].1 = [vec![0x83, 0x00], format_6[1..].to_vec()].concat();
    set_rows(&fx.j, "r", &r);
    let p = problems(&fx.j, fx.key.as_ref());
    assert!(
        p.iter()
            .any(|p| p.contains("the records of run r from record")),
        "{p:?}"
    );
}

/// Verification itself must not panic on a run whose records are well formed but hostile
/// (a whole run written consistently in an unsigned journal, e.g. with this library): a
/// host call numbered u64::MAX (its successor's number would overflow) is reported.
#[test]
fn held_verify_reports_a_host_call_numbered_u64_max() {
    let fx = fixture(false, &[]);
    let call = RecordBody::HostCall {
        step: 0,
        call: u64::MAX,
        state: "s".into(),
        fuel: 0,
        request: Default::default(),
        decision: crate::decision::Decision {
            verdict: crate::decision::Verdict::Allow,
            rule: crate::decision::Rule::RunProtocol,
        },
    };
    fx.j.commit("h", first_commit("h", vec![call])).unwrap();
    let result = catch_unwind(AssertUnwindSafe(|| problems(&fx.j, None)));
    let p = result.expect("audit panicked on a hostile record");
    assert!(!p.is_empty());
}

/// An ended run takes nothing more: a commit after its outcome (a second review decision,
/// a decision after the timeout) is refused in the writer, and the run is unchanged. A run
/// awaiting review still takes one (the review step that reopens it).
#[test]
fn an_ended_run_takes_no_more_records() {
    use crate::outcome::{Outcome, Status};
    let fx = fixture(false, &[]);
    let outcome = |status| Outcome {
        status,
        state: "s".into(),
        output: None,
        reason: None,
        steps: 1,
        host_calls: 0,
        fuel: 0,
    };
    for (run_id, status, ended) in [
        ("completed", Status::Completed, true),
        ("failed", Status::Failed, true),
        ("waiting", Status::AwaitingReview, false),
    ] {
        let end = RecordBody::Outcome(Box::new(outcome(status)));
        fx.j.commit(run_id, first_commit(run_id, vec![end]))
            .unwrap();
        let before = fx.j.records(run_id).unwrap();
        let more = Commit {
            records: vec![step(2)].into(),
            ..Commit::default()
        };
        match fx.j.commit(run_id, more) {
            Err(JournalError::RunEnded {
                run_id: r,
                status: s,
            }) if ended => {
                assert_eq!((r.as_str(), s), (run_id, status.as_str()));
                assert_eq!(fx.j.records(run_id).unwrap(), before, "nothing was added");
            }
            Ok(_) if !ended => assert_eq!(fx.j.records(run_id).unwrap().len(), before.len() + 1),
            other => panic!("{run_id}: {other:?}"),
        }
    }
    assert!(fx.j.audit(fx.key.as_ref()).unwrap().is_intact());
}

/// The log's last leaf stored under another number (its content and order unchanged, so
/// the tree and its signed head still match): the audit and the run's own verification
/// report the renumbering, and the run's log entry stays its place in the log.
#[test]
fn a_renumbered_log_entry_is_reported() {
    let fx = fixture(true, &["a", "b"]);
    let before = fx.j.audit(fx.key.as_ref()).unwrap();
    assert!(before.is_intact(), "{before:?}");
    let tx = fx.j.write().unwrap();
    let last = {
        let mut leaves = tx.open_table(LOG_LEAVES).unwrap();
        let last = leaves.len().unwrap() - 1;
        let bytes = leaves.remove(last).unwrap().unwrap().value().to_vec();
        leaves.insert(last + 128, bytes.as_slice()).unwrap();
        last
    };
    tx.commit().unwrap();
    let Fx { _dir, path, j, key } = fx;
    drop(j);
    let fx = Fx {
        j: Journal::open(&path).unwrap(),
        _dir,
        path,
        key,
    };
    let j = &fx.j;
    let audit = j.audit(fx.key.as_ref()).unwrap();
    assert!(
        audit.log.problems.iter().any(|p| p.contains(&format!(
            "log entry {last} is stored under the number {}",
            last + 128
        ))),
        "{audit:?}"
    );
    let run = j.verify_run("b", fx.key.as_ref()).unwrap();
    assert!(
        run.problem
            .as_deref()
            .is_some_and(|p| p.contains("renumbered")),
        "{run:?}"
    );
    assert_eq!(run.log_entry, Some(last));
    let untouched = j.verify_run("a", fx.key.as_ref()).unwrap();
    assert!(untouched.problem.is_none(), "{untouched:?}");
}

/// Rows copied under run ids the journal has no run for (and the log never held), one of
/// them sorting between two real runs and one at the last index: the audit names each
/// planted id once, and nothing else.
#[test]
fn held_rows_under_a_run_id_with_no_run_are_reported() {
    let fx = fixture(false, &["a", "ab"]);
    assert!(problems(&fx.j, None).is_empty());
    let a = rows(&fx.j, "a");
    set_rows(&fx.j, "a\0", &a);
    set_rows(&fx.j, "zz", &[(u64::MAX, a[0].1.clone())]);
    set_rows(&fx.j, "", &a[..1]);
    let p = problems(&fx.j, None);
    assert_eq!(p.len(), 3, "{p:?}");
    for (problem, id) in p.iter().zip(["", "a\0", "zz"]) {
        assert!(
            problem.starts_with(&format!("{id}: records are stored under this run id")),
            "{p:?}"
        );
    }
    assert_eq!(fx.j.record_run_ids().unwrap(), ["", "a", "a\0", "ab", "zz"]);
}
