//! Regressions from the red team's attack on the evidence guarantees (issue #15), each on
//! a copy of a real signed journal: a planted checkpoint a fork would start from; a
//! re-sealed run that review, replay and resume would have built on; an evidence pack cut
//! back to before its review decision, or altered and then replayed; a summary moved to
//! another key, or one that does not decode; a log whose leaves were replaced while its
//! cached subtree hashes stayed; a removed or stale tree head; bytes appended after a
//! stored value; back-dated summary times; and a journal or pack cut short or overwritten
//! at its header (refused by the storage engine itself).

use std::path::{Path, PathBuf};
use std::process::Output;

use redb::{Database, ReadableTable, TableDefinition};
use serde_json::Value;
use warden::{Journal, PackManifest, Record};

use crate::support::loan_example;
use crate::support::tamper::{
    CHECKPOINTS, LOG_HEAD, LOG_LEAVES, RECORDS, RUNS, copy_db, decode, delete_run, edit_summary,
    encode, read_records, rewrite, write_records,
};
use crate::support::{output_text as text, warden_in as warden};

struct Signed {
    dir: tempfile::TempDir,
    /// Completed, several commits.
    completed: String,
    /// Escalated by the gate, then approved by an underwriter.
    reviewed: String,
    /// Escalated by the gate, still awaiting review.
    waiting: String,
}

/// `warden --db DB --signing-key deployment.key ARGS` in the journal's directory.
fn with_key(dir: &Path, db: &Path, args: &[&str]) -> Output {
    let db = db.to_str().expect("utf-8");
    let mut all = vec!["--db", db, "--signing-key", "deployment.key"];
    all.extend(args);
    warden(dir, &all)
}

/// `warden --db DB --public-key deployment.pub ARGS...`: a reader who holds no secret.
fn with_public(dir: &Path, db: &Path, args: &[&str]) -> Output {
    let db = db.to_str().expect("utf-8");
    let mut all = vec!["--db", db, "--public-key", "deployment.pub"];
    all.extend(args);
    warden(dir, &all)
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("no JSON: {}", text(output)))
}

fn run_loan(dir: &Path, db: &Path, application: &str) -> String {
    let example = loan_example();
    let input = example.join("applications").join(application);
    let out = with_key(
        dir,
        db,
        &[
            "run",
            example.to_str().expect("utf-8"),
            "--input",
            input.to_str().expect("utf-8"),
            "--json",
        ],
    );
    json(&out)["run_id"].as_str().expect("run id").to_string()
}

fn action(dir: &Path, db: &Path, run_id: &str) -> String {
    let out = warden(
        dir,
        &[
            "--db",
            db.to_str().expect("utf-8"),
            "review",
            run_id,
            "--json",
        ],
    );
    json(&out)["action"].as_str().expect("action").to_string()
}

fn decide(dir: &Path, db: &Path, run_id: &str, reviewer: &str) -> Output {
    let action = action(dir, db, run_id);
    with_key(
        dir,
        db,
        &[
            "review",
            run_id,
            "--decide",
            "approved",
            "--reviewer",
            reviewer,
            "--role",
            "underwriter",
            "--note",
            "checked",
            "--action",
            &action,
        ],
    )
}

fn journal() -> Signed {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    assert!(
        warden(root, &["key", "generate", "--out", "deployment"])
            .status
            .success()
    );
    let db = root.join("warden.redb");
    let completed = run_loan(root, &db, "01-prime-approve.json");
    let reviewed = run_loan(root, &db, "05-gate-escalates.json");
    let out = decide(root, &db, &reviewed, "u.schmidt");
    assert!(out.status.success(), "{}", text(&out));
    let waiting = run_loan(root, &db, "05-gate-escalates.json");
    Signed {
        dir,
        completed,
        reviewed,
        waiting,
    }
}

impl Signed {
    fn db(&self) -> PathBuf {
        self.dir.path().join("warden.redb")
    }
    fn copy(&self) -> (tempfile::TempDir, PathBuf) {
        copy_db(&self.db())
    }
    /// `warden --db DB ARGS...` in the journal's directory.
    fn cli(&self, db: &Path, args: &[&str]) -> Output {
        let mut all = vec!["--db", db.to_str().expect("utf-8")];
        all.extend(args);
        warden(self.dir.path(), &all)
    }
    fn audit(&self, db: &Path) -> (i32, Value) {
        let out = self.cli(
            db,
            &["verify", "--all", "--key", "deployment.pub", "--json"],
        );
        (out.status.code().unwrap_or(-1), json(&out))
    }
}

fn broken<'a>(audit: &'a Value, run_id: &str) -> &'a Value {
    audit["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .find(|v| v["run_id"] == run_id && v["problem"].is_string())
        .unwrap_or_else(|| panic!("{run_id} is reported broken: {audit:#}"))
}

fn write<K: redb::Key + 'static, V: redb::Value + 'static>(
    db: &Path,
    table: TableDefinition<K, V>,
    edit: impl FnOnce(&mut redb::Table<K, V>),
) {
    let database = Database::create(db).expect("open copy");
    let tx = database.begin_write().expect("write");
    {
        let mut table = tx.open_table(table).expect("table");
        edit(&mut table);
    }
    tx.commit().expect("commit");
}

#[test]
fn a_planted_checkpoint_is_reported_and_never_restored_by_a_fork() {
    let journal = journal();
    let (_d, copy) = journal.copy();
    let run = journal.completed.clone();
    // A checkpoint row for a step no record names: a copy of the last one, moved on.
    write(&copy, CHECKPOINTS, |table| {
        let last: Vec<u8> = table
            .iter()
            .expect("iter")
            .filter_map(|row| {
                let (key, value) = row.expect("row");
                (key.value().0 == run).then(|| value.value().to_vec())
            })
            .last()
            .expect("a checkpoint");
        let mut checkpoint: warden::Checkpoint = decode(&last);
        checkpoint.step = 99;
        checkpoint.state = "manual_review".into();
        table
            .insert((run.as_str(), 99), encode(&checkpoint).as_slice())
            .expect("plant");
    });
    let (code, audit) = journal.audit(&copy);
    assert_eq!(code, 12);
    assert!(
        broken(&audit, &run)["problem"]
            .as_str()
            .expect("problem")
            .contains("no record of the run names"),
        "{audit:#}"
    );
    let out = with_key(
        journal.dir.path(),
        &copy,
        &["fork", &run, "--at-step", "99"],
    );
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    let out = warden(
        journal.dir.path(),
        &[
            "--db",
            copy.to_str().expect("utf-8"),
            "replay",
            &run,
            "--from-checkpoint",
            "99",
        ],
    );
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
}

/// A copy of the journal in which the run awaiting review names another submitter, its
/// chain and summary re-sealed (the chain checks out): the copy's directory, its path and
/// the run.
fn resealed_waiting(journal: &Signed) -> (tempfile::TempDir, PathBuf, String) {
    let (dir, copy) = journal.copy();
    let run = journal.waiting.clone();
    rewrite(&copy, &run, |records: &mut Vec<Record>| {
        if let warden::RecordBody::Started(start) = &mut records[0].body {
            start.submitted_by = Some("someone-else".into());
        }
    });
    (dir, copy, run)
}

#[test]
fn a_resealed_run_is_refused_by_review_replay_show_and_resume_not_only_by_verify() {
    let journal = journal();
    let (_d, copy, run) = resealed_waiting(&journal);
    edit_summary(&copy, &run, |_| {});
    let db = copy.to_str().expect("utf-8");
    let root = journal.dir.path();
    let out = warden(root, &["--db", db, "review", &run]);
    assert_eq!(out.status.code(), Some(12), "the case file: {}", text(&out));
    let out = warden(root, &["--db", db, "runs", "--status", "awaiting_review"]);
    assert!(
        text(&out).contains("BROKEN"),
        "the queue says so: {}",
        text(&out)
    );
    let out = with_key(
        root,
        &copy,
        &[
            "review",
            &run,
            "--decide",
            "approved",
            "--reviewer",
            "u.schmidt",
            "--role",
            "underwriter",
            "--note",
            "x",
            "--action",
            "0000000000000000000000000000000000000000000000000000000000000000",
        ],
    );
    assert_eq!(out.status.code(), Some(12), "a decision: {}", text(&out));
    let out = warden(root, &["--db", db, "replay", &run]);
    assert_eq!(out.status.code(), Some(12), "replay: {}", text(&out));
    let out = warden(root, &["--db", db, "show", &run]);
    assert_eq!(out.status.code(), Some(12), "show: {}", text(&out));
    let out = with_key(root, &copy, &["fork", &run, "--at-step", "1"]);
    assert_eq!(out.status.code(), Some(12), "fork: {}", text(&out));
}

/// A run re-sealed and its log entries rewritten to the new heads by someone without the
/// key (the entries keep their old signatures, which no longer hold): while the stored
/// signed tree head stands, every reader refuses the journal; with the head removed, or
/// re-made under another key, a reader without the key cannot tell
/// (`docs/threat-model.md`), but every reader given it (`--signing-key`,
/// `WARDEN_SIGNING_KEY`, or the public key: `--public-key`, `WARDEN_PUBLIC_KEY`) refuses
/// it, as writers do. (Found by reviewers: review, show,
/// runs and replay ignored the key, then the head.)
#[test]
fn a_run_resealed_with_its_log_rewritten_is_refused_by_every_reader_given_the_key() {
    let journal = journal();
    let (_d, copy, run) = resealed_waiting(&journal);
    let heads = crate::support::tamper::heads(&copy, &run);
    crate::support::tamper::rewrite_log(
        &copy,
        |entries| {
            for entry in entries.iter_mut().filter(|e| e.run_id == run) {
                entry.head = heads
                    .iter()
                    .find(|(end, _)| *end == entry.records)
                    .expect("a commit ends where the entry does")
                    .1;
            }
        },
        None,
    );
    let db = copy.to_str().expect("utf-8");
    let root = journal.dir.path();
    // The untouched journal reads as sound to a reader with either key.
    for out in [
        with_key(root, &journal.db(), &["review", &run]),
        with_public(root, &journal.db(), &["review", &run]),
    ] {
        assert_eq!(out.status.code(), Some(10), "{}", text(&out));
    }
    // The log's leaves no longer hash to its stored signed tree head: every reader sees
    // it, key or none.
    for args in [
        ["review", run.as_str()],
        ["show", run.as_str()],
        ["replay", run.as_str()],
    ] {
        let out = warden(root, &[&["--db", db][..], &args[..]].concat());
        assert_eq!(out.status.code(), Some(12), "{args:?}: {}", text(&out));
        assert!(
            text(&out).contains("do not hash to the root its signed tree head holds"),
            "{args:?}: {}",
            text(&out)
        );
    }
    // With the signed tree head removed as well, a reader without the key cannot tell:
    // the limit the threat model states.
    {
        use crate::support::tamper::LOG_HEAD;
        let database = Database::create(&copy).expect("open copy");
        let tx = database.begin_write().expect("write");
        tx.open_table(LOG_HEAD)
            .expect("head")
            .remove("latest")
            .expect("remove");
        tx.commit().expect("commit");
    }
    let out = warden(root, &["--db", db, "review", &run]);
    assert_eq!(out.status.code(), Some(10), "{}", text(&out));
    let refused = |why: &str| {
        let report = copy.with_extension("html");
        let _ = std::fs::remove_file(&report);
        for args in [
            vec!["review", run.as_str()],
            vec!["show", run.as_str()],
            vec!["replay", run.as_str()],
            vec!["runs", "--status", "awaiting_review"],
            vec![
                "report",
                run.as_str(),
                "--out",
                report.to_str().expect("utf-8"),
            ],
        ] {
            for out in [
                with_key(root, &copy, &args),
                with_public(root, &copy, &args),
            ] {
                assert_eq!(out.status.code(), Some(12), "{args:?}: {}", text(&out));
                assert!(
                    text(&out).contains(why),
                    "{args:?} says why: {}",
                    text(&out)
                );
            }
        }
    };
    refused("signed entries (entry 0 is one) but no signed tree head");
    // A tree head the forger made over the new leaves, signed with a key of their own:
    // it checks out for a reader without the key, not for one with it.
    let forger = warden::seal::signing::SigningKey::from_seed(&[9; 32]);
    crate::support::tamper::rewrite_log(&copy, |_| {}, Some(&forger));
    let out = warden(root, &["--db", db, "review", &run]);
    assert_eq!(out.status.code(), Some(10), "{}", text(&out));
    refused("its signed tree head is not signed by key");
    // The head put back as the key's, its root changed and its signature kept: a writer
    // calls it altered (exit 12), not another deployment's.
    {
        use crate::support::tamper::LOG_HEAD;
        use warden::seal::signing::SignedTreeHead;
        let (_o, original) = journal.copy();
        let genuine: SignedTreeHead = {
            let database = Database::create(&original).expect("open");
            let tx = redb::ReadableDatabase::begin_read(&database).expect("read");
            let table = tx.open_table(LOG_HEAD).expect("head");
            let bytes = table.get("latest").expect("get").expect("a head");
            postcard::from_bytes(bytes.value()).expect("decodes")
        };
        let mut rerooted = genuine;
        rerooted.head.root[0] ^= 1;
        let database = Database::create(&copy).expect("open copy");
        let tx = database.begin_write().expect("write");
        tx.open_table(LOG_HEAD)
            .expect("head")
            .insert(
                "latest",
                postcard::to_allocvec(&rerooted).expect("encode").as_slice(),
            )
            .expect("insert");
        tx.commit().expect("commit");
    }
    refused("its signed tree head is not signed by key");
    let example = loan_example();
    let out = with_key(root, &copy, &["run", example.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(12), "{}", text(&out));
    assert!(
        text(&out).contains("but its signature does not hold: the journal was altered"),
        "{}",
        text(&out)
    );
}

/// Cuts the pack back to its first `keep` log entries and the records they cover, as a
/// forger who holds the pack would: nothing re-sealed, every remaining byte genuine.
fn cut_back(pack: &Path, run_id: &str, keep: usize, strip_attestation: bool) {
    let records = edit_manifest(pack, |manifest| {
        manifest.entries.truncate(keep);
        if strip_attestation {
            manifest.attestation = None;
        }
        let last: warden::LogEntry =
            postcard::from_bytes(&manifest.entries[keep - 1].bytes).expect("entry");
        last.records
    });
    let database = Database::create(pack).expect("open pack");
    let tx = database.begin_write().expect("write");
    let (head, at_ms);
    {
        let mut table = tx.open_table(RECORDS).expect("records");
        let all = read_records(&table, run_id);
        head = write_records(&mut table, run_id, &all[..records as usize], true);
        at_ms = all[records as usize - 1].0.at_ms;
    }
    tx.commit().expect("commit");
    drop(database);
    edit_summary(pack, run_id, |meta| {
        meta.records = records;
        meta.head = head;
        meta.updated_ms = at_ms;
        meta.outcome.status = warden::Status::AwaitingReview;
        meta.outcome.state = "manual_review".into();
        meta.outcome.output = None;
    });
}

/// Edits the pack's manifest in place with `edit`, returning what it returns.
fn edit_manifest<T>(pack: &Path, edit: impl FnOnce(&mut PackManifest) -> T) -> T {
    const PACK: TableDefinition<&str, &[u8]> = TableDefinition::new("pack");
    let database = Database::create(pack).expect("open pack");
    let tx = database.begin_write().expect("write");
    let result;
    {
        let mut table = tx.open_table(PACK).expect("pack");
        let mut manifest: PackManifest = postcard::from_bytes(
            table
                .get("manifest")
                .expect("get")
                .expect("manifest")
                .value(),
        )
        .expect("manifest");
        result = edit(&mut manifest);
        table
            .insert(
                "manifest",
                postcard::to_allocvec(&manifest).expect("encode").as_slice(),
            )
            .expect("insert");
    }
    tx.commit().expect("commit");
    result
}

#[test]
fn a_pack_cut_back_to_before_its_review_or_altered_does_not_verify_or_replay() {
    let journal = journal();
    let root = journal.dir.path();
    let out = with_key(
        root,
        &journal.db(),
        &["evidence", &journal.reviewed, "-o", "case.pack"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let pack = root.join("case.pack");
    // The whole pack reads as a journal: its report verifies, with the key and without.
    // (Found by a reviewer: the pack's entries, numbered as in the journal they came
    // from, were taken for a renumbered log.)
    for key in [false, true] {
        let page = root.join(format!("pack-{key}.html"));
        let args = [
            "report",
            &journal.reviewed,
            "--out",
            page.to_str().expect("utf-8"),
        ];
        let out = if key {
            with_key(root, &pack, &args)
        } else {
            journal.cli(&pack, &args)
        };
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("verified"), "{}", text(&out));
    }
    // Audited as a journal, it is pointed to `--pack`, not called broken.
    let out = journal.cli(&pack, &["verify", "--all"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("is an evidence pack: verify it with `warden verify --pack"),
        "{}",
        text(&out)
    );
    let entries = {
        let journal = Journal::open_pack(&pack).expect("pack");
        journal
            .pack_manifest()
            .expect("manifest")
            .expect("a pack")
            .entries
            .len()
    };
    let review_entry = entries - 2;
    let (_d, cut) = copy_db(&pack);
    cut_back(&cut, &journal.reviewed, review_entry, false);
    // Read as a journal by a reader with either key, the whole pack reads, the cut one
    // is refused for what `verify --pack` says of it. (Found by a reviewer: readers of a
    // pack did not check its attestation, and showed the decided run as a case.)
    for args in [
        ["show", journal.reviewed.as_str()],
        ["replay", journal.reviewed.as_str()],
    ] {
        for out in [
            with_key(root, &pack, &args),
            with_public(root, &pack, &args),
        ] {
            assert!(out.status.success(), "{args:?}: {}", text(&out));
        }
        for out in [with_key(root, &cut, &args), with_public(root, &cut, &args)] {
            assert_eq!(out.status.code(), Some(12), "{args:?}: {}", text(&out));
            assert!(
                text(&out).contains("the evidence pack does not verify against key"),
                "{args:?}: {}",
                text(&out)
            );
        }
    }
    let cut = cut.to_str().expect("utf-8");
    let out = warden(root, &["verify", "--pack", cut, "--key", "deployment.pub"]);
    assert_eq!(out.status.code(), Some(12), "{}", text(&out));
    assert!(text(&out).contains("cut back"), "{}", text(&out));
    let out = warden(root, &["replay", "--pack", cut, "--key", "deployment.pub"]);
    assert_eq!(out.status.code(), Some(12), "{}", text(&out));
    assert!(text(&out).contains("COULD NOT REPLAY"), "{}", text(&out));
    // The same cut, its attestation removed: a pack that attests nothing fails against
    // the auditor's key unless accepted as it is (and then says so).
    let (_s, stripped) = copy_db(&pack);
    cut_back(&stripped, &journal.reviewed, review_entry, true);
    let stripped = stripped.to_str().expect("utf-8");
    let refused_as_unattested = |pack: &str| {
        let out = warden(root, &["verify", "--pack", pack, "--key", "deployment.pub"]);
        assert_eq!(out.status.code(), Some(12), "{}", text(&out));
        assert!(
            text(&out).contains("the pack is not attested"),
            "{}",
            text(&out)
        );
    };
    refused_as_unattested(stripped);
    let out = warden(
        root,
        &["replay", "--pack", stripped, "--key", "deployment.pub"],
    );
    assert_eq!(out.status.code(), Some(12), "{}", text(&out));
    assert!(text(&out).contains("COULD NOT REPLAY"), "{}", text(&out));
    // A whole pack, only its attestation removed: what it holds verifies once accepted.
    let (_w, whole) = copy_db(&pack);
    edit_manifest(&whole, |manifest| {
        assert!(
            manifest.attestation.take().is_some(),
            "the pack was attested"
        );
    });
    let whole = whole.to_str().expect("utf-8");
    refused_as_unattested(whole);
    let out = warden(
        root,
        &[
            "verify",
            "--pack",
            whole,
            "--key",
            "deployment.pub",
            "--accept-unattested",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("NOT attested"), "{}", text(&out));

    // Re-sealed inside the pack: replay refuses it too, even without --key.
    let (_d, altered) = copy_db(&pack);
    rewrite(&altered, &journal.reviewed, |records: &mut Vec<Record>| {
        records[3].at_ms += 1;
    });
    let altered = altered.to_str().expect("utf-8");
    let out = warden(root, &["replay", "--pack", altered]);
    assert_eq!(out.status.code(), Some(12), "{}", text(&out));
    // Verifying never writes to the pack.
    let before = std::fs::read(&pack).expect("pack");
    let out = warden(
        root,
        &["verify", "--pack", "case.pack", "--key", "deployment.pub"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("attested"), "{}", text(&out));
    assert_eq!(std::fs::read(&pack).expect("pack"), before);
}

/// `warden verify RUN` says of a run what `verify --all` says of it, whatever id the
/// audit names: a deleted run (only the log names it), records planted under an id no
/// summary has (one that is a prefix of a live run's id, and the empty id), and live runs,
/// in full or by a unique prefix. (Found by a reviewer: ids were looked up among the
/// summaries only, so a deleted run could not be verified by its id, and the planted
/// prefix verified the live run instead, exit 0.)
#[test]
fn verify_of_one_run_says_what_the_audit_says_of_it() {
    let journal = journal();
    let (_d, copy) = journal.copy();
    delete_run(&copy, &journal.waiting);
    // A reader with either key refuses the journal rather than list a queue without the
    // deleted case. (Found by a reviewer: the case vanished from the review queue.)
    let root = journal.dir.path();
    for out in [
        with_key(root, &copy, &["runs", "--status", "awaiting_review"]),
        with_public(root, &copy, &["runs", "--status", "awaiting_review"]),
    ] {
        assert_eq!(out.status.code(), Some(12), "{}", text(&out));
        assert!(
            text(&out).contains(&format!(
                "run {} is missing from the journal, but the transparency log holds",
                journal.waiting
            )),
            "{}",
            text(&out)
        );
    }
    let live = journal.completed.as_str();
    let planted = &live[..live.len() - 1];
    write(&copy, RECORDS, |table| {
        let row = table
            .get((live, 0))
            .expect("get")
            .expect("the run's first row")
            .value()
            .to_vec();
        for id in [planted, ""] {
            table.insert((id, 0), row.as_slice()).expect("insert");
        }
    });
    let (code, audit) = journal.audit(&copy);
    assert_eq!(code, 12, "{audit:#}");
    let reviewed = journal.reviewed.as_str();
    for (given, id) in [
        (journal.waiting.as_str(), journal.waiting.as_str()),
        (planted, planted),
        ("", ""),
        (live, live),
        (reviewed, reviewed),
        (&reviewed[..reviewed.len() - 2], reviewed),
    ] {
        let out = warden(
            journal.dir.path(),
            &[
                "--db",
                copy.to_str().expect("utf-8"),
                "verify",
                given,
                "--key",
                "deployment.pub",
                "--json",
            ],
        );
        let one = json(&out);
        let expected = audit["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .find(|v| v["run_id"] == id)
            .unwrap_or_else(|| panic!("the audit names {id:?}: {audit:#}"));
        assert_eq!(
            one["runs"],
            Value::Array(vec![expected.clone()]),
            "{given:?}"
        );
        assert_eq!(one["log"], audit["log"], "{given:?}");
        let intact = expected["problem"].is_null()
            && audit["log"]["problems"]
                .as_array()
                .is_some_and(Vec::is_empty);
        assert_eq!(
            out.status.code(),
            Some(if intact { 0 } else { 12 }),
            "{given:?}: {}",
            text(&out)
        );
    }
    assert!(broken(&audit, planted)["problem"].is_string());
    assert!(broken(&audit, &journal.waiting)["problem"].is_string());
}

#[test]
fn summaries_moved_undecodable_or_back_dated_and_appended_bytes_are_reported() {
    let journal = journal();
    let run = journal.completed.clone();
    // Moved to another key: the run is named, not silently hidden.
    let (_d, copy) = journal.copy();
    write(&copy, RUNS, |table| {
        let bytes = table
            .get(run.as_str())
            .expect("get")
            .expect("row")
            .value()
            .to_vec();
        table.remove(run.as_str()).expect("remove");
        table
            .insert("zzzz-hidden", bytes.as_slice())
            .expect("insert");
    });
    let (code, audit) = journal.audit(&copy);
    assert_eq!(code, 12, "{audit:#}");
    broken(&audit, "zzzz-hidden");
    // ... and `replay --all` reports it as a run it could not replay, replaying the others
    // (found by a reviewer: the streaming replay looked the summary up by the run id it
    // names, not the key it is under, and stopped with an error).
    let replay = |copy: &Path| journal.cli(copy, &["replay", "--all", "--json"]);
    let out = replay(&copy);
    assert_eq!(out.status.code(), Some(12), "{}", text(&out));
    let reports = json(&out);
    let verdicts: Vec<(&str, &str)> = reports
        .as_array()
        .expect("reports")
        .iter()
        .map(|r| {
            (
                r["run_id"].as_str().expect("id"),
                r["verdict"].as_str().expect("verdict"),
            )
        })
        .collect();
    assert!(
        verdicts.contains(&(run.as_str(), "could_not_replay")),
        "{verdicts:?}"
    );
    assert!(
        verdicts.contains(&(journal.reviewed.as_str(), "identical")),
        "{verdicts:?}"
    );
    assert_eq!(verdicts.len(), 3, "{verdicts:?}");
    // Undecodable: named, exit 12 (not a host error).
    let (_d, copy) = journal.copy();
    write(&copy, RUNS, |table| {
        table
            .insert(run.as_str(), [9u8, 9, 9].as_slice())
            .expect("insert");
    });
    let (code, audit) = journal.audit(&copy);
    assert_eq!(code, 12, "{audit:#}");
    broken(&audit, &run);
    // `replay --all` cannot list the runs: an error, and nothing half-printed.
    let out = replay(&copy);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));
    // ... and the listing still lists the other runs, naming this one (exit 12).
    let out = warden(
        journal.dir.path(),
        &["--db", copy.to_str().expect("utf-8"), "runs"],
    );
    assert_eq!(out.status.code(), Some(12), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("BROKEN  {run}")),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains(&journal.reviewed), "{}", text(&out));
    // Back-dated by a year.
    let (_d, copy) = journal.copy();
    edit_summary(&copy, &run, |meta| {
        meta.created_ms -= 365 * 24 * 3600 * 1000;
    });
    let (code, audit) = journal.audit(&copy);
    assert_eq!(code, 12, "{audit:#}");
    assert!(
        broken(&audit, &run)["problem"]
            .as_str()
            .expect("problem")
            .contains("created_ms")
    );
    // Bytes appended after a record's value.
    let (_d, copy) = journal.copy();
    write(&copy, RECORDS, |table| {
        // The row of the run's second commit.
        let (key, mut bytes) = table
            .range((run.as_str(), 1)..=(run.as_str(), u64::MAX))
            .expect("range")
            .next()
            .expect("a second row")
            .map(|(k, v)| (k.value().1, v.value().to_vec()))
            .expect("row");
        bytes.extend_from_slice(b"\x1b[31mhidden");
        table
            .insert((run.as_str(), key), bytes.as_slice())
            .expect("insert");
    });
    let (code, audit) = journal.audit(&copy);
    assert_eq!(code, 12, "{audit:#}");
    broken(&audit, &run);
}

#[test]
fn the_log_commands_read_the_leaves_not_the_cache_and_writers_trust_no_planted_head() {
    let journal = journal();
    let root = journal.dir.path();
    let out = warden(root, &["--db", "warden.redb", "log", "head"]);
    let kept = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // Replace one run's leaves with junk, keeping the cached subtree hashes and the head.
    let (_d, copy) = journal.copy();
    let run = journal.completed.clone();
    write(&copy, LOG_LEAVES, |table| {
        let theirs: Vec<u64> = table
            .iter()
            .expect("iter")
            .filter_map(|row| {
                let (index, bytes) = row.expect("row");
                let entry: warden::LogEntry = postcard::from_bytes(bytes.value()).expect("entry");
                (entry.run_id == run).then_some(index.value())
            })
            .collect();
        for index in theirs {
            table.insert(index, b"junk".as_slice()).expect("insert");
        }
    });
    let db = copy.to_str().expect("utf-8");
    let out = warden(
        root,
        &[
            "--db",
            db,
            "log",
            "prove",
            "--from",
            &kept,
            "--key",
            "deployment.pub",
        ],
    );
    assert_eq!(out.status.code(), Some(12), "{}", text(&out));
    let out = warden(root, &["--db", db, "log", "head"]);
    assert_eq!(
        out.status.code(),
        Some(12),
        "a stale head is not handed out: {}",
        text(&out)
    );

    // The tree head removed: an unsigned write is still refused (the log is signed).
    let (_d, copy) = journal.copy();
    write(&copy, LOG_HEAD, |table| {
        table.remove("latest").expect("remove");
    });
    let out = warden(
        root,
        &[
            "--db",
            copy.to_str().expect("utf-8"),
            "run",
            loan_example().to_str().expect("utf-8"),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // A head planted by another key: the deployment's writer refuses to build on it.
    let (_d, copy) = journal.copy();
    let forger = warden::seal::signing::SigningKey::from_seed(&[3; 32]);
    write(&copy, LOG_HEAD, |table| {
        let sth = forger.sign_tree_head(warden::seal::signing::TreeHead {
            size: 1,
            root: [0; 32],
            time_ms: 1,
        });
        table
            .insert(
                "latest",
                postcard::to_allocvec(&sth).expect("encode").as_slice(),
            )
            .expect("insert");
    });
    let out = with_key(
        root,
        &copy,
        &["run", loan_example().to_str().expect("utf-8")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not signed by"), "{}", text(&out));
}

/// Where `needle` occurs in `haystack`.
fn occurrences(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(at, _)| at)
        .collect()
}

/// Copies of `bytes` damaged where redb's own checks do not look: one byte of each stored
/// copy of `run_id` made non-UTF-8 (a key), and one bit of an entry's end offset in the
/// first `pages` leaf pages.
fn damaged(bytes: &[u8], run_id: &str, pages: usize) -> Vec<Vec<u8>> {
    let mut copies = Vec::new();
    for at in occurrences(bytes, run_id.as_bytes()) {
        let mut copy = bytes.to_vec();
        copy[at + 24] = 0xff;
        copies.push(copy);
    }
    let leaves = (4096..bytes.len())
        .step_by(4096)
        .filter(|&page| bytes[page] == 1);
    for page in leaves.take(pages) {
        let mut copy = bytes.to_vec();
        copy[page + 18] ^= 0x01;
        copies.push(copy);
    }
    copies
}

/// A journal file or evidence pack damaged where the storage engine trusts its bytes (the
/// engine panicked on both, and the commands with it): every command ends with an error
/// that says the file is damaged (`verify`: BROKEN, exit 12), never a panic.
#[test]
fn a_damaged_journal_or_pack_is_reported_never_a_panic() {
    let journal = journal();
    let dir = journal.dir.path();
    let run_id = journal.completed.as_str();
    let out = with_key(dir, &journal.db(), &["evidence", run_id, "-o", "case.pack"]);
    assert!(out.status.success(), "{}", text(&out));
    let no_panic = |what: &str, out: &Output| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code() != Some(101) && !stderr.contains("panicked"),
            "{what}: {}",
            text(out)
        );
    };
    let mut reported = 0;
    let bytes = std::fs::read(journal.db()).expect("read the journal");
    for (n, copy) in damaged(&bytes, run_id, 8).iter().enumerate() {
        let db = dir.join(format!("damaged-{n}.redb"));
        std::fs::write(&db, copy).expect("write the copy");
        let db = db.to_str().expect("utf-8");
        for args in [
            &["runs"][..],
            &["verify", "--all", "--key", "deployment.pub"],
            &["export", "--all"],
            &["replay", "--all"],
        ] {
            let mut all = vec!["--db", db];
            all.extend(args);
            let out = warden(dir, &all);
            no_panic(&format!("damaged copy {n}: {args:?}"), &out);
            if args[0] == "verify" && text(&out).contains("BROKEN: the journal file") {
                assert_eq!(out.status.code(), Some(12), "{}", text(&out));
                reported += 1;
            }
        }
    }
    assert!(
        reported > 0,
        "some damage is only seen by the storage engine"
    );
    let pack = std::fs::read(dir.join("case.pack")).expect("read the pack");
    let in_the_journal = reported;
    for (n, copy) in damaged(&pack, run_id, 8).iter().enumerate() {
        let path = dir.join(format!("damaged-{n}.pack"));
        std::fs::write(&path, copy).expect("write the copy");
        let path = path.to_str().expect("utf-8");
        let out = warden(dir, &["verify", "--pack", path, "--key", "deployment.pub"]);
        // A copy changed only where nothing live is stored (a freed page) still verifies.
        no_panic(&format!("damaged pack {n}"), &out);
        if text(&out).contains("BROKEN: the journal file") {
            assert_eq!(out.status.code(), Some(12), "{}", text(&out));
            reported += 1;
        }
    }
    assert!(
        reported > in_the_journal,
        "the pack's damage is reported too"
    );
}

/// A journal file or evidence pack cut short, emptied or overwritten at its header: the
/// storage engine refuses to open it. `verify` says BROKEN and exits 12 (a failed
/// verification, as for a broken chain), naming the file; every other command exits 1
/// with the same account and points to `verify`; none panics.
#[test]
fn a_journal_or_pack_cut_short_or_overwritten_at_its_header_is_broken() {
    let journal = journal();
    let dir = journal.dir.path();
    let run_id = journal.completed.as_str();
    let out = with_key(dir, &journal.db(), &["evidence", run_id, "-o", "case.pack"]);
    assert!(out.status.success(), "{}", text(&out));
    let bytes = std::fs::read(journal.db()).expect("read the journal");
    let pack = std::fs::read(dir.join("case.pack")).expect("read the pack");
    let cut = |bytes: &[u8], len: usize| bytes[..len].to_vec();
    let overwritten = |bytes: &[u8], at: usize| {
        let mut copy = bytes.to_vec();
        copy[at] ^= 0xa5;
        copy
    };
    let copies = |bytes: &[u8]| {
        vec![
            ("empty", Vec::new()),
            ("cut inside the header", cut(bytes, 100)),
            ("cut after the first page", cut(bytes, 4096)),
            ("cut in half", cut(bytes, bytes.len() / 2)),
            ("cut by one page", cut(bytes, bytes.len() - 4096)),
            ("magic number", overwritten(bytes, 0)),
            ("format version", overwritten(bytes, 64)),
            ("an older format version", {
                // redb's file format 2, which no Warden journal ever had.
                let mut copy = bytes.to_vec();
                copy[64] = 2;
                copy
            }),
        ]
    };
    for (what, copy) in copies(&bytes) {
        let db = dir.join("damaged.redb");
        std::fs::write(&db, &copy).expect("write the copy");
        let db = db.to_str().expect("utf-8");
        let out = warden(
            dir,
            &["--db", db, "verify", "--all", "--key", "deployment.pub"],
        );
        let said = text(&out);
        assert_eq!(out.status.code(), Some(12), "journal {what}: {said}");
        assert!(
            said.contains("BROKEN: the journal file") && said.contains("damaged.redb"),
            "journal {what}: {said}"
        );
        for args in [&["runs"][..], &["show", run_id], &["replay", "--all"]] {
            let mut all = vec!["--db", db];
            all.extend(args);
            let out = warden(dir, &all);
            let said = text(&out);
            // Every command says the same: the file does not check out (12), not that
            // Warden failed (1).
            assert_eq!(
                out.status.code(),
                Some(12),
                "journal {what}, {args:?}: {said}"
            );
            assert!(
                said.contains("damaged.redb is damaged") && said.contains("warden verify"),
                "journal {what}, {args:?}: {said}"
            );
        }
    }
    // With --json, the damage is on standard output too.
    let out = warden(dir, &["--db", "damaged.redb", "verify", "--all", "--json"]);
    assert_eq!(out.status.code(), Some(12), "{}", text(&out));
    let damaged = json(&out)["damaged"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        damaged.contains("damaged.redb is damaged"),
        "{}",
        text(&out)
    );
    for (what, copy) in copies(&pack) {
        let path = dir.join("damaged.pack");
        std::fs::write(&path, &copy).expect("write the copy");
        let path = path.to_str().expect("utf-8");
        let out = warden(dir, &["verify", "--pack", path, "--key", "deployment.pub"]);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(12), "pack {what}: {said}");
        assert!(
            said.contains("BROKEN: the journal file") && said.contains("damaged.pack"),
            "pack {what}: {said}"
        );
        // Evidence is never repaired: the copy is as it was given.
        assert_eq!(
            std::fs::read(path).expect("read the copy"),
            copy,
            "pack {what}"
        );
    }
}

/// The whole journal put back to an earlier copy (every signature in it genuine): the next
/// signed write refuses it, because the writer recorded beside its key the last head it
/// signed for this journal; an operator who restored a backup on purpose is told how to
/// write to it again.
#[test]
fn a_journal_put_back_to_an_earlier_copy_is_refused_by_the_next_signed_write() {
    let journal = journal();
    let root = journal.dir.path();
    let db = journal.db();
    let recorded = std::fs::read_to_string(root.join("deployment.key.heads")).expect("heads");
    assert_eq!(recorded.lines().count(), 1, "{recorded}");
    let earlier = root.join("earlier.redb");
    std::fs::copy(&db, &earlier).expect("copy");
    run_loan(root, &db, "01-prime-approve.json");
    std::fs::copy(&earlier, &db).expect("put back");
    let example = loan_example();
    let out = with_key(root, &db, &["run", example.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(12), "{}", text(&out));
    assert!(
        text(&out).contains("does not extend the last tree head this key signed")
            && text(&out).contains("deployment.key.heads"),
        "{}",
        text(&out)
    );
    let (code, audit) = journal.audit(&db);
    assert_eq!(code, 0, "the copy itself is genuine: {audit:#}");
    assert_eq!(
        audit["runs"].as_array().map(Vec::len),
        Some(3),
        "nothing written"
    );
    // Readers given the key refuse it too, however the path is spelled (found by a
    // reviewer: `dir/../dir/warden.redb` found no record and was written to).
    let name = root.file_name().expect("name").to_str().expect("utf-8");
    let spelled = root.join("..").join(name).join("warden.redb");
    for args in [
        vec!["show", journal.waiting.as_str()],
        vec!["runs", "--status", "awaiting_review"],
    ] {
        for path in [&db, &spelled] {
            let out = with_key(root, path, &args);
            assert_eq!(out.status.code(), Some(12), "{args:?}: {}", text(&out));
            assert!(
                text(&out).contains("does not extend the last tree head this key signed"),
                "{args:?}: {}",
                text(&out)
            );
        }
    }
    let out = with_key(root, &spelled, &["run", example.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(12), "{}", text(&out));
    // The same copy reached through a symlink at the journal's name: the record is the
    // operator's path, not wherever a link leads, so it is refused all the same.
    std::fs::remove_file(&db).expect("remove");
    std::os::unix::fs::symlink(&earlier, &db).expect("symlink");
    let out = with_key(root, &db, &["run", example.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(12), "{}", text(&out));
    assert!(
        text(&out).contains("does not extend the last tree head this key signed"),
        "{}",
        text(&out)
    );
}
