//! Evidence that survives an insider (issue #15): on copies of a real, signed journal, an
//! attacker with write access to the file and nothing but redb edits, deletes, inserts,
//! reorders and truncates records, deletes a run, re-seals a run with recomputed hashes
//! and new timestamps, replaces a blob, rebuilds the log, forges a tree head with their
//! own key and rolls the file back; `warden verify --key` (and `warden log prove` against
//! a head the auditor kept) detects every one, naming the run and the first bad record.
//! An evidence pack written here verifies and replays from a fresh directory with only
//! the pack and the public key.

use std::path::{Path, PathBuf};

use serde_json::Value;
use warden::seal::signing::SigningKey;
use warden::{Journal, Record, RecordBody};

use crate::support::tamper::{copy_db, delete_run, replace_blob, rewrite, rewrite_log, tamper};
use crate::support::{loan_example, warden_json_on};
use crate::support::{output_text as text, warden_in as warden};

/// A signed journal of real loan-underwriting runs, and what an auditor keeps.
struct Signed {
    dir: tempfile::TempDir,
    /// A completed run of several commits, made before the auditor took the head.
    completed: String,
    /// A run a gate sent to review, decided by an underwriter, made before the head.
    reviewed: String,
    /// A run made after the head.
    later: String,
    /// The signed tree head the auditor kept after the first two runs.
    head: String,
}

impl Signed {
    fn db(&self) -> PathBuf {
        self.dir.path().join("warden.redb")
    }
    fn public(&self) -> PathBuf {
        self.dir.path().join("deployment.pub")
    }
    fn secret(&self) -> PathBuf {
        self.dir.path().join("deployment.key")
    }
}

/// Runs the loan example on `application` (None: its default input) with the signing key.
fn signed_run(dir: &Path, application: Option<&str>) -> (i32, Value) {
    let example = loan_example();
    let input;
    let mut args = vec![
        "--db",
        "warden.redb",
        "--signing-key",
        "deployment.key",
        "run",
    ];
    let example_arg = example.to_string_lossy().into_owned();
    args.push(&example_arg);
    if let Some(application) = application {
        input = example
            .join("applications")
            .join(application)
            .to_string_lossy()
            .into_owned();
        args.extend(["--input", &input]);
    }
    args.push("--json");
    let output = warden(dir, &args);
    let json = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("warden run printed no JSON: {}", text(&output)));
    (output.status.code().unwrap_or(-1), json)
}

fn signed_journal() -> Signed {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = warden(dir.path(), &["key", "generate", "--out", "deployment"]);
    assert!(out.status.success(), "{}", text(&out));
    let (code, report) = signed_run(dir.path(), None);
    assert_eq!(code, 0, "{report}");
    let completed = report["run_id"].as_str().expect("run id").to_string();
    let (code, report) = signed_run(dir.path(), Some("05-gate-escalates.json"));
    assert_eq!(code, 10, "{report}");
    let reviewed = report["run_id"].as_str().expect("run id").to_string();
    let (_, case) = warden_json_on(&dir.path().join("warden.redb"), &["review", &reviewed]);
    let action = case["action"].as_str().expect("case action").to_string();
    let out = warden(
        dir.path(),
        &[
            "--db",
            "warden.redb",
            "--signing-key",
            "deployment.key",
            "review",
            &reviewed,
            "--decide",
            "approved",
            "--reviewer",
            "u.schmidt",
            "--role",
            "underwriter",
            "--note",
            "income verified",
            "--action",
            &action,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = warden(dir.path(), &["--db", "warden.redb", "log", "head"]);
    assert!(out.status.success(), "{}", text(&out));
    let head = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (_, report) = signed_run(dir.path(), Some("04-mid-pd-review.json"));
    let later = report["run_id"].as_str().expect("run id").to_string();
    Signed {
        dir,
        completed,
        reviewed,
        later,
        head,
    }
}

/// `warden verify --all --key PUB --json` on `db`: the exit code and the JSON.
fn verify_with_key(signed: &Signed, db: &Path) -> (i32, Value) {
    let public = signed.public();
    warden_json_on(
        db,
        &["verify", "--all", "--key", public.to_str().expect("utf-8")],
    )
}

/// The verification of `run_id` in `audit`.
fn run_in<'a>(audit: &'a Value, run_id: &str) -> Option<&'a Value> {
    audit["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .find(|v| v["run_id"] == run_id)
}

/// The index of a record in the middle of `run_id` that is neither the first nor the
/// last of its commit, and the record counts at which the log holds its heads.
fn shape(db: &Path, run_id: &str) -> (u64, Vec<u64>) {
    let journal = Journal::open_read_only(db).expect("journal");
    let heads: Vec<u64> = journal
        .log_entries()
        .expect("log")
        .into_iter()
        .filter(|(entry, _)| entry.run_id == run_id)
        .map(|(entry, _)| entry.records)
        .collect();
    let records = journal.run(run_id).expect("run").records;
    (records / 2, heads)
}

fn a_year_ms() -> u64 {
    365 * 24 * 3600 * 1000
}

type Attack = Box<dyn Fn(&Path)>;

#[test]
fn every_insider_tampering_is_detected_naming_the_run_and_the_first_bad_record() {
    let signed = signed_journal();
    let db = signed.db();
    let (code, clean) = verify_with_key(&signed, &db);
    assert_eq!(code, 0, "the untouched journal verifies: {clean}");
    assert!(
        clean["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .all(|v| v["signed_by"].is_string()),
        "{clean}"
    );

    let victim = signed.completed.clone();
    let (middle, heads) = shape(&db, &victim);
    assert!(heads.len() >= 3, "the run spans several commits: {heads:?}");
    // Roll the run back to an earlier commit whose head the log holds, signed: the
    // hardest truncation, since that head is genuine.
    let boundary = heads[1];
    let (input, content) = {
        let journal = Journal::open_read_only(&db).expect("journal");
        let content = journal
            .records(&victim)
            .expect("records")
            .iter()
            .find(|r| {
                r.index >= middle
                    && matches!(
                        r.body,
                        RecordBody::HostResponse { .. } | RecordBody::HostCall { .. }
                    )
            })
            .expect("a host call after the middle")
            .index;
        (journal.run(&victim).expect("run").input, content)
    };

    // A format-6 commit is chained as a whole: an altered record is named at the first
    // record of its commit.
    let middle_commit = crate::support::tamper::commit_of(&db, &victim, middle);
    let content_commit = crate::support::tamper::commit_of(&db, &victim, content);
    let v = victim.clone();
    let cases: Vec<(&str, String, u64, Attack)> = vec![
        (
            "edit one record",
            victim.clone(),
            middle_commit,
            Box::new({
                let v = v.clone();
                move |db| {
                    tamper(db, &v, false, |r| {
                        r.index == middle && {
                            r.at_ms += 1;
                            true
                        }
                    });
                }
            }),
        ),
        (
            "edit one record's content and re-seal the chain",
            victim.clone(),
            content_commit,
            Box::new({
                let v = v.clone();
                move |db| {
                    tamper(db, &v, true, |r| {
                        r.index == content
                            && match &mut r.body {
                                RecordBody::HostResponse { response, .. } => {
                                    let mut longer = response.to_vec();
                                    longer.push(0);
                                    *response = longer.into();
                                    true
                                }
                                RecordBody::HostCall { fuel, .. } => {
                                    *fuel += 1;
                                    true
                                }
                                _ => false,
                            }
                    });
                }
            }),
        ),
        (
            "delete one record and re-seal",
            victim.clone(),
            middle_commit,
            Box::new({
                let v = v.clone();
                move |db| {
                    rewrite(db, &v, |records| {
                        records.remove(middle as usize);
                    });
                }
            }),
        ),
        (
            "insert one record and re-seal",
            victim.clone(),
            middle_commit,
            Box::new({
                let v = v.clone();
                move |db| {
                    rewrite(db, &v, |records| {
                        let copy = records[middle as usize + 1].clone();
                        records.insert(middle as usize, copy);
                    });
                }
            }),
        ),
        (
            "reorder two records and re-seal",
            victim.clone(),
            middle_commit,
            Box::new({
                let v = v.clone();
                move |db| {
                    rewrite(db, &v, |records| {
                        records.swap(middle as usize, middle as usize + 1);
                    });
                }
            }),
        ),
        (
            "truncate the run to an earlier signed head and mark it running",
            victim.clone(),
            boundary,
            Box::new({
                let v = v.clone();
                move |db| {
                    rewrite(db, &v, |records| records.truncate(boundary as usize));
                    crate::support::tamper::edit_summary(db, &v, |meta| {
                        meta.outcome.status = warden::Status::Running;
                        meta.outcome.output = None;
                        meta.outcome.reason = None;
                    });
                }
            }),
        ),
        (
            "re-seal the whole run a year earlier",
            victim.clone(),
            0,
            Box::new({
                let v = v.clone();
                move |db| {
                    rewrite(db, &v, |records: &mut Vec<Record>| {
                        for record in records {
                            record.at_ms -= a_year_ms();
                        }
                    });
                }
            }),
        ),
        (
            "replace the stored input",
            victim.clone(),
            0,
            Box::new(move |db| replace_blob(db, &input, br#"{"applicant_id":"forged"}"#)),
        ),
        (
            "delete a whole run",
            signed.reviewed.clone(),
            0,
            Box::new({
                let r = signed.reviewed.clone();
                move |db| delete_run(db, &r)
            }),
        ),
    ];
    for (attack, run_id, first_bad, apply) in &cases {
        let (_dir, copy) = copy_db(&db);
        apply(&copy);
        let (code, audit) = verify_with_key(&signed, &copy);
        assert_eq!(code, 12, "{attack}: verify --key must fail: {audit}");
        let verdict =
            run_in(&audit, run_id).unwrap_or_else(|| panic!("{attack}: the run is named: {audit}"));
        assert!(
            verdict["problem"].is_string(),
            "{attack}: the run is broken: {verdict}"
        );
        assert_eq!(
            verdict["record"], *first_bad,
            "{attack}: names the first bad record: {verdict}"
        );
        // Every other run still verifies: the finding is precise.
        for other in audit["runs"].as_array().expect("runs") {
            if other["run_id"] != *run_id {
                assert!(other["problem"].is_null(), "{attack}: {other}");
            }
        }
        // The human output names the run and the record too.
        let out = warden(
            copy.parent().expect("dir"),
            &[
                "--db",
                copy.to_str().expect("utf-8"),
                "verify",
                "--all",
                "--key",
                signed.public().to_str().expect("utf-8"),
            ],
        );
        let printed = text(&out);
        assert!(
            printed.contains(&format!("BROKEN  {run_id}  record {first_bad}:")),
            "{attack}: {printed}"
        );
    }
}

#[test]
fn attacks_on_the_log_itself_are_detected_by_the_key_or_the_kept_head() {
    let signed = signed_journal();
    let db = signed.db();
    let public = signed.public();
    let public = public.to_str().expect("utf-8");
    let forger = SigningKey::from_seed(&[7; 32]);
    let prove = |db: &Path| {
        warden(
            signed.dir.path(),
            &[
                "--db",
                db.to_str().expect("utf-8"),
                "log",
                "prove",
                "--from",
                &signed.head,
                "--key",
                public,
            ],
        )
    };
    // Untouched: the log extends the head the auditor kept.
    let out = prove(&db);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("consistent"), "{}", text(&out));

    // Delete a run together with its log entries, rebuilding the tree without the key.
    let reviewed = signed.reviewed.clone();
    let (_dir, copy) = copy_db(&db);
    delete_run(&copy, &reviewed);
    rewrite_log(
        &copy,
        |entries| entries.retain(|e| e.run_id != reviewed),
        None,
    );
    let (code, audit) = verify_with_key(&signed, &copy);
    assert_eq!(code, 12, "{audit}");
    let problems = audit["log"]["problems"].to_string();
    assert!(
        problems.contains("do not hash to the root its signed tree head holds")
            || problems.contains("covers"),
        "{audit}"
    );
    let out = prove(&copy);
    assert_eq!(out.status.code(), Some(12), "{}", text(&out));
    assert!(text(&out).contains("INCONSISTENT"), "{}", text(&out));

    // The same, re-signing the tree head with the forger's own key.
    let (_dir, copy) = copy_db(&db);
    delete_run(&copy, &reviewed);
    rewrite_log(
        &copy,
        |entries| entries.retain(|e| e.run_id != reviewed),
        Some(&forger),
    );
    let (code, audit) = verify_with_key(&signed, &copy);
    assert_eq!(code, 12, "{audit}");
    assert!(
        audit["log"]["problems"]
            .to_string()
            .contains("is not signed by key"),
        "{audit}"
    );
    let out = prove(&copy);
    assert_eq!(out.status.code(), Some(12), "{}", text(&out));

    // Re-seal a run and forge its log entries to match, signing them with the forger's key.
    let victim = signed.completed.clone();
    let (_dir, copy) = copy_db(&db);
    rewrite(&copy, &victim, |records| {
        for record in records {
            record.at_ms -= a_year_ms();
        }
    });
    let heads = crate::support::tamper::heads(&copy, &victim);
    rewrite_log(
        &copy,
        |entries| {
            for entry in entries.iter_mut().filter(|e| e.run_id == victim) {
                entry.head = heads
                    .iter()
                    .find(|(end, _)| *end == entry.records)
                    .expect("a commit ends where the entry does")
                    .1;
                let signature = forger
                    .sign(warden::RUN_HEAD_DOMAIN, &entry.signed_bytes())
                    .expect("sign");
                entry.signature = Some((forger.key_id(), signature));
            }
        },
        Some(&forger),
    );
    let (code, audit) = verify_with_key(&signed, &copy);
    assert_eq!(code, 12, "{audit}");
    let verdict = run_in(&audit, &victim).expect("named");
    assert_eq!(verdict["record"], 0, "{verdict}");
    assert!(
        verdict["problem"]
            .as_str()
            .expect("problem")
            .contains("is signed by another key"),
        "{verdict}"
    );
    let out = prove(&copy);
    assert_eq!(out.status.code(), Some(12), "{}", text(&out));

    // Roll the whole file back to a copy taken before the last run: every chain and
    // signature in it is genuine, but the log is shorter than a head the auditor kept
    // afterwards.
    let out = warden(signed.dir.path(), &["--db", "warden.redb", "log", "head"]);
    let latest = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (_dir, copy) = copy_db(&db);
    let later = signed.later.clone();
    delete_run(&copy, &later);
    rewrite_log(&copy, |entries| entries.retain(|e| e.run_id != later), None);
    let out = warden(
        signed.dir.path(),
        &[
            "--db",
            copy.to_str().expect("utf-8"),
            "log",
            "prove",
            "--from",
            &latest,
            "--key",
            public,
        ],
    );
    assert_eq!(out.status.code(), Some(12), "{}", text(&out));
    assert!(text(&out).contains("fewer"), "{}", text(&out));
}

#[test]
fn without_the_key_a_write_to_a_signed_journal_is_refused_and_verify_says_what_it_did_not_check() {
    let signed = signed_journal();
    let out = warden(
        signed.dir.path(),
        &[
            "--db",
            "warden.redb",
            "run",
            loan_example().to_str().expect("utf-8"),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("--signing-key"),
        "names the fix: {}",
        text(&out)
    );
    // Another key is refused too.
    let out = warden(signed.dir.path(), &["key", "generate", "--out", "other"]);
    assert!(out.status.success());
    let out = warden(
        signed.dir.path(),
        &[
            "--db",
            "warden.redb",
            "--signing-key",
            "other.key",
            "run",
            loan_example().to_str().expect("utf-8"),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // A signing key others may read is refused.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(signed.secret(), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        let out = warden(
            signed.dir.path(),
            &[
                "--db",
                "warden.redb",
                "--signing-key",
                "deployment.key",
                "run",
                loan_example().to_str().expect("utf-8"),
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains("chmod 600"), "{}", text(&out));
    }
    // Verify without a key says so.
    let out = warden(
        signed.dir.path(),
        &["--db", "warden.redb", "verify", "--all"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("signatures NOT checked"),
        "{}",
        text(&out)
    );
    // The file's summaries still say what the chains say (nothing was written).
    let journal = Journal::open_read_only(&signed.db()).expect("journal");
    assert_eq!(journal.runs().expect("runs").len(), 3);
}

#[test]
fn an_evidence_pack_verifies_and_replays_from_a_fresh_directory_with_only_the_pack_and_the_key() {
    let signed = signed_journal();
    let pack_dir = tempfile::tempdir().expect("pack dir");
    let pack = pack_dir.path().join("case-4711.pack");
    let out = warden(
        signed.dir.path(),
        &[
            "--db",
            "warden.redb",
            "evidence",
            &signed.reviewed,
            "-o",
            pack.to_str().expect("utf-8"),
            "--key",
            "deployment.pub",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    // Never overwritten.
    let again = warden(
        signed.dir.path(),
        &[
            "--db",
            "warden.redb",
            "evidence",
            &signed.reviewed,
            "-o",
            pack.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));

    // Another machine: a fresh directory holding only the pack and the public key.
    let fresh = tempfile::tempdir().expect("fresh dir");
    std::fs::copy(&pack, fresh.path().join("case.pack")).expect("copy pack");
    std::fs::copy(signed.public(), fresh.path().join("bank.pub")).expect("copy key");
    drop(signed.dir);
    let entries: Vec<_> = std::fs::read_dir(fresh.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(entries.len(), 2);
    // Written without the signing key, the pack is not attested: checked against the
    // auditor's key it fails, unless what it holds is accepted as it is.
    let out = warden(
        fresh.path(),
        &["verify", "--pack", "case.pack", "--key", "bank.pub"],
    );
    assert_eq!(out.status.code(), Some(12), "{}", text(&out));
    assert!(
        text(&out).contains("the pack is not attested"),
        "{}",
        text(&out)
    );
    let out = warden(
        fresh.path(),
        &["replay", "--pack", "case.pack", "--key", "bank.pub"],
    );
    assert_eq!(out.status.code(), Some(12), "{}", text(&out));
    let out = warden(
        fresh.path(),
        &[
            "verify",
            "--pack",
            "case.pack",
            "--key",
            "bank.pub",
            "--accept-unattested",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("pack verified"), "{}", text(&out));
    assert!(text(&out).contains("NOT attested"), "{}", text(&out));
    assert!(text(&out).contains("signed by"), "{}", text(&out));
    let out = warden(fresh.path(), &["replay", "--pack", "case.pack", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["verdict"], "identical", "{report}");
    assert_eq!(report["run_id"], signed.reviewed.as_str());
    // The review is in the pack's timeline.
    let out = warden(
        fresh.path(),
        &["--db", "case.pack", "show", &signed.reviewed],
    );
    assert!(text(&out).contains("u.schmidt"), "{}", text(&out));

    // A pack altered by whoever held it does not verify: a record re-sealed inside it,
    // or a foreign key.
    let (_copy_dir, copy) = copy_db(&fresh.path().join("case.pack"));
    rewrite(&copy, &signed.reviewed, |records| {
        for record in records {
            record.at_ms += 1;
        }
    });
    let out = warden(
        fresh.path(),
        &[
            "verify",
            "--pack",
            copy.to_str().expect("utf-8"),
            "--key",
            "bank.pub",
        ],
    );
    assert_eq!(out.status.code(), Some(12), "{}", text(&out));
    assert!(text(&out).contains("record 0:"), "{}", text(&out));
    let out = warden(fresh.path(), &["key", "generate", "--out", "stranger"]);
    assert!(out.status.success());
    let out = warden(
        fresh.path(),
        &["verify", "--pack", "case.pack", "--key", "stranger.pub"],
    );
    assert_eq!(out.status.code(), Some(12), "{}", text(&out));
    // Without --key the pack's own key is used, and the output says what that proves.
    let out = warden(fresh.path(), &["verify", "--pack", "case.pack"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("not that it is genuine"),
        "{}",
        text(&out)
    );
}

#[test]
fn an_export_has_one_line_per_record_with_the_documented_fields_and_digests() {
    let signed = signed_journal();
    let out = warden(
        signed.dir.path(),
        &["--db", "warden.redb", "export", "--all"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let journal = Journal::open_read_only(&signed.db()).expect("journal");
    let mut expected = Vec::new();
    for meta in journal.runs().expect("runs") {
        for (record, digest) in journal.stored_records(&meta.run_id).expect("records") {
            expected.push((meta.run_id.clone(), record.index, digest, record.at_ms));
        }
    }
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), expected.len());
    for (line, (run_id, index, digest, at_ms)) in lines.iter().zip(&expected) {
        for field in [
            "format", "run_id", "index", "at", "at_ms", "prev", "digest", "prev_ok", "kind",
            "text", "body",
        ] {
            assert!(line.get(field).is_some(), "{field} missing: {line}");
        }
        assert_eq!(line["format"], "warden-export-v1");
        assert_eq!(line["run_id"], run_id.as_str());
        assert_eq!(line["index"], *index);
        assert_eq!(line["digest"], digest.to_string());
        assert_eq!(line["at_ms"], *at_ms);
        assert_eq!(line["prev_ok"], true);
    }
    assert!(
        lines
            .iter()
            .any(|l| l["kind"] == "host_call" && l["body"]["decision"]["verdict"] == "Escalate"),
        "the gate's escalation is exported"
    );
    assert!(lines.iter().any(|l| l["kind"] == "review"));
    // One run, to a file that is never overwritten.
    let file = signed.dir.path().join("one.jsonl");
    let args = [
        "--db",
        "warden.redb",
        "export",
        signed.completed.as_str(),
        "-o",
        "one.jsonl",
    ];
    assert!(warden(signed.dir.path(), &args).status.success());
    let one = std::fs::read_to_string(&file).expect("export file");
    assert!(one.lines().all(|l| l.contains(&signed.completed)));
    assert_eq!(warden(signed.dir.path(), &args).status.code(), Some(2));
}

#[test]
fn a_parquet_export_has_one_row_per_run_with_versions_outcome_gate_and_review() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let signed = signed_journal();
    let out = warden(
        signed.dir.path(),
        &[
            "--db",
            "warden.redb",
            "export",
            "--all",
            "--format",
            "parquet",
            "-o",
            "runs.parquet",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let file = std::fs::File::open(signed.dir.path().join("runs.parquet")).expect("file");
    let reader = SerializedFileReader::new(file).expect("a parquet file");
    let columns: Vec<String> = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let expected: Vec<&str> = warden::RUN_ROW_COLUMNS.iter().map(|(n, _)| *n).collect();
    assert_eq!(columns, expected);
    let rows: Vec<Value> = reader
        .get_row_iter(None)
        .expect("rows")
        .map(|row| {
            use parquet::record::Field;
            let row = row.expect("row");
            let mut object = serde_json::Map::new();
            for (name, field) in row.get_column_iter() {
                let value = match field {
                    Field::Str(s) => Value::from(s.as_str()),
                    Field::Long(i) => Value::from(*i),
                    Field::Double(f) => Value::from(*f),
                    Field::Bool(b) => Value::from(*b),
                    Field::Null => Value::Null,
                    other => panic!("unexpected field {other:?}"),
                };
                object.insert(name.clone(), value);
            }
            Value::Object(object)
        })
        .collect();
    assert_eq!(rows.len(), 3);
    let reviewed = rows
        .iter()
        .find(|r| r["run_id"] == signed.reviewed.as_str())
        .expect("the reviewed run");
    assert_eq!(reviewed["policy_name"], "loan-underwriting");
    assert_eq!(reviewed["last_gate_met"], false, "{reviewed}");
    assert!(
        reviewed["last_gate_confidence"]
            .as_f64()
            .expect("confidence")
            < 1.0
    );
    assert!(reviewed["last_gate_threshold"].is_number());
    assert_eq!(reviewed["reviewer"], "u.schmidt");
    assert_eq!(reviewed["reviewer_role"], "underwriter");
    assert_eq!(reviewed["escalations"], 1);
    assert_eq!(reviewed["verified"], true);
    let completed = rows
        .iter()
        .find(|r| r["run_id"] == signed.completed.as_str())
        .expect("the completed run");
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["last_gate_met"], true, "{completed}");
    assert_eq!(completed["last_gate_label"], "repay", "{completed}");
    assert!(completed["reviewer"].is_null());
    // -o is required, and never overwrites.
    let out = warden(
        signed.dir.path(),
        &[
            "--db",
            "warden.redb",
            "export",
            "--all",
            "--format",
            "parquet",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
