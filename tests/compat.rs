//! Old runs must replay forever: journals written by format version 1, by edition 2 and
//! by format version 5 (fixtures kept in `tests/compat/`) still verify and replay bit for
//! bit with today's code, each run under the rules of the edition it was recorded in, and
//! a run continued today adds rows of today's format after its old ones.

use std::io::Read;

use crate::support::warden_json_on as warden;

pub fn fixture(dir: &std::path::Path) -> std::path::PathBuf {
    fixture_named(dir, "journal-v1.redb")
}

/// `warden verify --all` passes and `warden replay --all` finds every run identical.
fn every_run_verifies_and_replays(db: &std::path::Path) {
    let (code, verified) = warden(db, &["verify", "--all"]);
    assert_eq!(code, 0, "{verified:#}");
    let (code, replays) = warden(db, &["replay", "--all"]);
    assert_eq!(code, 0, "{replays:#}");
    for replay in replays.as_array().expect("reports") {
        assert_eq!(replay["verdict"], "identical", "{replay:#}");
    }
}

/// Decides the case `case` of run `run_id` with (outcome, reviewer, role, note) under the
/// action digest it shows; the run completes.
fn decide(db: &std::path::Path, run_id: &str, case: &serde_json::Value, decision: [&str; 4]) {
    let action = case["action"].as_str().expect("action");
    let [outcome, reviewer, role, note] = decision;
    let (code, decided) = warden(
        db,
        &[
            "review",
            run_id,
            "--decide",
            outcome,
            "--reviewer",
            reviewer,
            "--role",
            role,
            "--note",
            note,
            "--action",
            action,
        ],
    );
    assert_eq!(
        (code, decided["status"].as_str()),
        (0, Some("completed")),
        "{decided:#}"
    );
}

/// Decompresses `tests/compat/<name>.gz` into `dir`.
fn fixture_named(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let gz = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/compat")
        .join(format!("{name}.gz"));
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(gz).expect("fixture"))
        .read_to_end(&mut bytes)
        .expect("decompress");
    let db = dir.join(name);
    std::fs::write(&db, bytes).expect("write");
    db
}

#[test]
fn a_version_1_journal_verifies_and_replays_bit_for_bit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = fixture(dir.path());
    let (code, runs) = warden(&db, &["runs"]);
    assert_eq!(code, 0);
    let statuses: Vec<&str> = runs
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["status"].as_str().expect("status"))
        .collect();
    assert_eq!(
        statuses,
        ["completed", "awaiting_review", "failed", "completed"]
    );
    every_run_verifies_and_replays(&db);
    for run in runs.as_array().expect("runs") {
        let (code, shown) = warden(&db, &["show", run["run_id"].as_str().expect("id")]);
        assert_eq!(code, 0);
        assert!(shown["records"].as_array().expect("records").len() > 3);
    }
}

/// Edition 2 let an agent act in a review state a reviewer sent the run to (the run in
/// the fixture paid while awaiting a senior's decision, then failed asking to move on),
/// and its action digests did not name the run. Edition 3 changed both for new runs;
/// these runs still replay as recorded, and the one awaiting review is decided on the
/// action digest it was shown under edition 2.
#[test]
fn an_edition_2_journal_replays_under_its_own_rules_and_its_case_is_decided() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = fixture_named(dir.path(), "journal-v2.redb");
    let (code, runs) = warden(&db, &["runs"]);
    assert_eq!(code, 0);
    let runs: Vec<(String, String)> = runs
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| {
            (
                r["run_id"].as_str().expect("id").to_string(),
                r["status"].as_str().expect("status").to_string(),
            )
        })
        .collect();
    let statuses: Vec<&str> = runs.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(statuses, ["failed", "completed", "awaiting_review"]);
    let (code, shown) = warden(&db, &["show", &runs[0].0]);
    assert_eq!(code, 0);
    let paid_in_senior = shown["records"]
        .as_array()
        .expect("records")
        .iter()
        .any(|r| {
            r["text"].as_str().is_some_and(|t| {
                t.contains("in senior") && t.contains("tool disbursement") && t.contains("Allow")
            })
        });
    assert!(
        paid_in_senior,
        "the fixture holds edition 2's behaviour: {shown:#}"
    );
    every_run_verifies_and_replays(&db);
    let waiting = &runs[2].0;
    let (code, case) = warden(&db, &["review", waiting]);
    assert_eq!(code, 10, "{case:#}");
    assert_eq!(
        case["action"], "e39b3abec5e80bbf4d7c7db7caf2f9c657430037af3624b4e54595a3d3aab7bc",
        "the action digest edition 2 showed"
    );
    // The run's bindings were recorded at this absolute path when the fixture was made
    // (`tests/compat/README.md`): a decision continues the run with them.
    let deployment = std::path::Path::new("/tmp/warden-compat-v2");
    let _ = std::fs::remove_dir_all(deployment);
    std::fs::create_dir_all(deployment).expect("the fixture's deployment directory");
    for name in ["bindings.toml", "risk.toml"] {
        let from = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures")
            .join(name);
        std::fs::copy(from, deployment.join(name)).expect("copy a fixture");
    }
    decide(&db, waiting, &case, ["done", "c.lerk", "clerk", "closed"]);
    let (code, replayed) = warden(&db, &["replay", waiting]);
    assert_eq!(
        (code, replayed["verdict"].as_str()),
        (0, Some("identical")),
        "{replayed:#}"
    );
}

/// Copies the directory `from` into `to`, recursively.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// Journal format 5 chained every record and its log entries held each record's digest;
/// format 6 chains commits. The loan example's eleven applications, written by format 5
/// (`tests/compat/README.md`), verify and replay; deciding a case awaiting review appends
/// format-6 rows after the run's format-5 rows, and the run then verifies and replays.
#[test]
fn a_version_5_journal_verifies_replays_and_is_continued_in_format_6() {
    use redb::ReadableDatabase;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = fixture_named(dir.path(), "journal-v5.redb");
    let (code, runs) = warden(&db, &["runs"]);
    assert_eq!(code, 0);
    let runs = runs.as_array().expect("runs").clone();
    let count = |status: &str| runs.iter().filter(|r| r["status"] == status).count();
    assert_eq!(
        (
            count("completed"),
            count("awaiting_review"),
            count("failed")
        ),
        (6, 3, 2)
    );
    every_run_verifies_and_replays(&db);
    let row_formats = |run_id: &str| -> Vec<u8> {
        let database = redb::Database::open(&db).expect("open");
        let tx = database.begin_read().expect("read");
        let table = tx
            .open_table(crate::support::tamper::RECORDS)
            .expect("records");
        table
            .range((run_id, 0)..=(run_id, u64::MAX))
            .expect("range")
            .map(|row| row.expect("row").1.value()[0])
            .collect()
    };
    let waiting = runs
        .iter()
        .find(|r| r["status"] == "awaiting_review")
        .and_then(|r| r["run_id"].as_str())
        .expect("a case awaiting review")
        .to_string();
    assert!(row_formats(&waiting).iter().all(|&format| format == 2));
    // The runs' bindings were recorded at this absolute path when the fixture was made: a
    // decision continues the run with them.
    let deployment = std::path::Path::new("/tmp/warden-compat-v5/examples/loan-underwriting");
    let _ = std::fs::remove_dir_all(deployment);
    copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/loan-underwriting"),
        deployment,
    );
    let (code, case) = warden(&db, &["review", &waiting]);
    assert_eq!(code, 10, "{case:#}");
    decide(
        &db,
        &waiting,
        &case,
        [
            "approved",
            "u.one",
            "underwriter",
            "decided by today's build",
        ],
    );
    let formats = row_formats(&waiting);
    assert!(
        formats.starts_with(&[2, 2]) && formats.ends_with(&[3]),
        "format-6 rows follow the run's format-5 rows: {formats:?}"
    );
    every_run_verifies_and_replays(&db);
}
