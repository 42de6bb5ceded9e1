//! Old runs must replay forever: a journal written by format version 1 (a fixture kept
//! in `tests/compat/`) still verifies and replays bit for bit with today's code.

use std::io::Read;

use crate::support::warden_json_on as warden;

pub fn fixture(dir: &std::path::Path) -> std::path::PathBuf {
    let gz =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/compat/journal-v1.redb.gz");
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(gz).expect("fixture"))
        .read_to_end(&mut bytes)
        .expect("decompress");
    let db = dir.join("journal-v1.redb");
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
    let (code, verified) = warden(&db, &["verify", "--all"]);
    assert_eq!(code, 0, "{verified:#}");
    let (code, replays) = warden(&db, &["replay", "--all"]);
    assert_eq!(code, 0, "{replays:#}");
    for replay in replays.as_array().expect("reports") {
        assert_eq!(replay["verdict"], "identical", "{replay:#}");
    }
    for run in runs.as_array().expect("runs") {
        let (code, shown) = warden(&db, &["show", run["run_id"].as_str().expect("id")]);
        assert_eq!(code, 0);
        assert!(shown["records"].as_array().expect("records").len() > 3);
    }
}
