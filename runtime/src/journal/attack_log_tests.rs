//! Attacks on the transparency log by a person who can write the file but holds no key:
//! alter the log, then wait for the next signed write to seal the alteration under a new
//! signed tree head. Each signed write refuses, writing nothing; and a stored subtree
//! hash that is not the hash of its entries (which proofs are built from) is reported.

use redb::{ReadableTable, ReadableTableMetadata};

use super::attack_rows_tests::first_commit;
use super::log::{LOG_HEAD, LOG_LEAVES, LOG_NODES};
use super::*;
use crate::seal::signing::SigningKey;

fn key() -> SigningKey {
    SigningKey::from_seed(&[7; 32])
}

/// A signed journal of `runs` one-commit runs.
fn signed(runs: usize) -> (tempfile::TempDir, Journal) {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(&dir.path().join("j.redb")).unwrap();
    j.set_signer(key());
    for n in 0..runs {
        let id = format!("run-{n}");
        j.commit(&id, first_commit(&id, Vec::new())).unwrap();
    }
    (dir, j)
}

/// The next signed write: a new run.
fn write(j: &Journal) -> Result<(), JournalError> {
    j.commit("later", first_commit("later", Vec::new()))
        .map(|_| ())
}

fn refused(j: &Journal, says: &str) {
    let size = j.log_size().unwrap();
    let head = j.log_head().unwrap();
    match write(j) {
        Err(JournalError::LogAltered { message, .. }) => {
            assert!(message.contains(says), "{message}");
            assert!(message.contains("nothing was written"), "{message}");
        }
        other => panic!("a signed write over an altered log was not refused: {other:?}"),
    }
    assert_eq!(j.log_size().unwrap(), size, "nothing appended");
    assert_eq!(j.log_head().unwrap(), head, "no head signed");
    assert!(matches!(j.run("later"), Err(JournalError::NoSuchRun(_))));
}

/// Deletes the log's last `n` entries and every stored subtree hash (which the writer then
/// recomputes from the entries that are left).
fn cut_log(j: &Journal, n: u64) {
    let tx = j.write().unwrap();
    {
        let mut leaves = tx.open_table(LOG_LEAVES).unwrap();
        let len = leaves.len().unwrap();
        for index in len - n..len {
            leaves.remove(index).unwrap();
        }
        clear_nodes(&tx);
    }
    tx.commit().unwrap();
}

fn clear_nodes(tx: &redb::WriteTransaction) {
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

#[test]
fn a_signed_write_extends_an_intact_log() {
    let (_dir, j) = signed(3);
    write(&j).unwrap();
    let audit = j.audit(Some(&key().public_key())).unwrap();
    assert!(audit.is_intact(), "{audit:?}");
    assert_eq!(j.log_size().unwrap(), 4);
}

#[test]
fn a_signed_write_refuses_a_log_cut_back_under_its_signed_head() {
    let (_dir, j) = signed(6);
    cut_log(&j, 2);
    refused(
        &j,
        "signed tree head covers 6 log entries, but the log holds 4",
    );
}

#[test]
fn a_signed_write_refuses_a_log_whose_entry_was_replaced_and_rehashed() {
    let (_dir, j) = signed(5);
    let tx = j.write().unwrap();
    {
        let mut leaves = tx.open_table(LOG_LEAVES).unwrap();
        let first = leaves.get(0).unwrap().unwrap().value().to_vec();
        // Entry 3 replaced by a copy of entry 0: as many entries, another root.
        leaves.insert(3, first.as_slice()).unwrap();
        clear_nodes(&tx);
    }
    tx.commit().unwrap();
    refused(&j, "does not hash to the root of its signed tree head");
}

#[test]
fn a_signed_write_refuses_a_signed_log_whose_head_was_removed() {
    let (_dir, j) = signed(4);
    cut_log(&j, 1);
    let tx = j.write().unwrap();
    tx.open_table(LOG_HEAD).unwrap().remove("latest").unwrap();
    tx.commit().unwrap();
    refused(
        &j,
        "signed entries (entry 0 is one) but no signed tree head",
    );
}

#[test]
fn a_signed_write_refuses_a_head_another_key_signed() {
    let (_dir, mut j) = signed(2);
    j.set_signer(SigningKey::from_seed(&[8; 32]));
    refused(&j, "is not signed by this key");
}

#[test]
fn an_unsigned_journal_may_start_being_signed() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(&dir.path().join("j.redb")).unwrap();
    j.commit("old", first_commit("old", Vec::new())).unwrap();
    j.set_signer(key());
    write(&j).unwrap();
    assert!(j.log_head().unwrap().is_some());
    // ... and once signed, every later write checks the head it extends.
    j.commit("more", first_commit("more", Vec::new())).unwrap();
    assert_eq!(j.log_size().unwrap(), 3);
}

#[test]
fn a_stored_subtree_hash_that_is_not_its_entries_hash_is_reported() {
    let (_dir, j) = signed(6);
    let key = key().public_key();
    assert!(j.audit(Some(&key)).unwrap().is_intact());
    // Level 1, index 0 (entries 0 and 1): no root of the whole log reads it once level
    // 2 is stored, but an inclusion proof of entry 2 or 3 does.
    let tx = j.write().unwrap();
    tx.open_table(LOG_NODES)
        .unwrap()
        .insert((1, 0), [0u8; 32])
        .unwrap();
    tx.commit().unwrap();
    let audit = j.audit(Some(&key)).unwrap();
    assert!(
        audit
            .log
            .problems
            .iter()
            .any(|p| p.contains("subtree hash at level 1, index 0")),
        "{audit:?}"
    );
    assert_eq!(j.audit_log(Some(&key)).unwrap(), audit.log);
}

/// A signed journal of `runs` runs whose signer records its heads in `heads`.
fn kept(dir: &std::path::Path, heads: &std::path::Path, runs: std::ops::Range<usize>) -> Journal {
    let mut j = Journal::open(&dir.join("j.redb")).unwrap();
    j.set_signer(key());
    j.keep_signed_heads(heads.to_path_buf());
    for n in runs {
        let id = format!("run-{n}");
        j.commit(&id, first_commit(&id, Vec::new())).unwrap();
    }
    j
}

/// Every head in the file is genuine, so the stored head cannot tell an earlier one from
/// the latest: the whole file put back to an earlier copy (or deleted and made anew) is
/// refused by a signer that recorded the heads it signed, and written to by one that
/// did not (the documented limit the record is for).
#[test]
fn a_signer_that_keeps_its_heads_refuses_a_journal_put_back_to_an_earlier_head() {
    let dir = tempfile::tempdir().unwrap();
    let heads = dir.path().join("deployment.key.heads");
    let earlier = dir.path().join("earlier.redb");
    let j = kept(dir.path(), &heads, 0..3);
    drop(j);
    std::fs::copy(dir.path().join("j.redb"), &earlier).unwrap();
    let j = kept(dir.path(), &heads, 3..5);
    assert_eq!(j.log_size().unwrap(), 5);
    drop(j);
    let recorded = std::fs::read_to_string(&heads).unwrap();
    assert_eq!(recorded.lines().count(), 1, "{recorded}");
    assert!(
        recorded.contains(&format!("{} 5 ", key().key_id())),
        "{recorded}"
    );

    std::fs::copy(&earlier, dir.path().join("j.redb")).unwrap();
    let j = kept(dir.path(), &heads, 0..0);
    match write(&j) {
        Err(JournalError::LogAltered { message, .. }) => {
            assert!(
                message.contains("does not extend the last tree head"),
                "{message}"
            );
            assert!(message.contains("nothing was written"), "{message}");
        }
        other => panic!("a rolled-back journal was written to: {other:?}"),
    }
    assert_eq!(j.log_size().unwrap(), 3);
    drop(j);
    // Deleted and made anew at the same place: refused too.
    std::fs::remove_file(dir.path().join("j.redb")).unwrap();
    let j = kept(dir.path(), &heads, 0..0);
    assert!(matches!(write(&j), Err(JournalError::LogAltered { .. })));
    drop(j);
    // Without the record, the earlier copy takes the write.
    std::fs::copy(&earlier, dir.path().join("j.redb")).unwrap();
    let mut j = Journal::open(&dir.path().join("j.redb")).unwrap();
    j.set_signer(key());
    write(&j).unwrap();
}

#[test]
fn a_signed_write_refuses_a_log_whose_entries_were_renumbered() {
    let (_dir, j) = signed(4);
    let tx = j.write().unwrap();
    {
        let mut leaves = tx.open_table(LOG_LEAVES).unwrap();
        let bytes = leaves.remove(1).unwrap().unwrap().value().to_vec();
        leaves.insert(4, bytes.as_slice()).unwrap();
    }
    tx.commit().unwrap();
    refused(&j, "not numbered 0 to 3");
}
