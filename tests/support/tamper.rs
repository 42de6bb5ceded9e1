//! Tampering with a journal the way a person with write access to its file would: with
//! nothing but redb, postcard and the format documented in `docs/journal.md`.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use warden::{Digest, Record, RunMeta};

// The journal's tables, as documented in docs/journal.md.
pub const RUNS: TableDefinition<&str, &[u8]> = TableDefinition::new("runs");
pub const RECORDS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("records");
pub const CHECKPOINTS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("checkpoints");

/// Stored values are a versioned envelope: the postcard variant index (0 = V1), then the value.
pub fn decode<T: for<'de> serde::Deserialize<'de>>(bytes: &[u8]) -> T {
    assert_eq!(bytes.first(), Some(&0), "format version 1");
    postcard::from_bytes(&bytes[1..]).expect("decodes")
}

pub fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = vec![0];
    bytes.extend(postcard::to_allocvec(value).expect("encodes"));
    bytes
}

/// The records of `run_id`, flattened from their rows: a row is the records of one commit
/// (since format version 5: variant index 2, the first record's predecessor, the commit's
/// time, the count and the bodies; format version 4: `StoredRecords::V2`, variant index 1,
/// records whole with their digests) or one record (variant index 0, format versions 1 to
/// 3).
pub fn read_records(
    table: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    run_id: &str,
) -> Vec<(Record, Digest)> {
    let mut out = Vec::new();
    for entry in table
        .range((run_id, 0)..=(run_id, u64::MAX))
        .expect("range")
    {
        let entry = entry.expect("entry");
        let bytes = entry.1.value();
        match bytes.first() {
            Some(0) => out.push(decode(bytes)),
            Some(1) => out.extend(
                postcard::from_bytes::<Vec<(Record, Digest)>>(&bytes[1..]).expect("decodes"),
            ),
            Some(version @ (2 | 3)) => {
                let (stored, rest) =
                    postcard::take_from_bytes::<Digest>(&bytes[1..]).expect("predecessor");
                // Format 6 stores the run's head (a commit digest): its records are chained
                // from the record before the row.
                let mut prev = match version {
                    2 => stored,
                    _ => out.last().map_or(Digest::ZERO, |(_, digest)| *digest),
                };
                let (at_ms, rest) = postcard::take_from_bytes::<u64>(rest).expect("time");
                let (bodies, rest) =
                    postcard::take_from_bytes::<Vec<warden::RecordBody>>(rest).expect("bodies");
                assert!(rest.is_empty(), "nothing follows the bodies");
                for (index, body) in (entry.0.value().1..).zip(bodies) {
                    let record = Record {
                        index,
                        prev,
                        at_ms,
                        body,
                    };
                    prev = record.digest();
                    out.push((record, prev));
                }
            }
            other => panic!("unknown record row version {other:?}"),
        }
    }
    out
}

/// Replaces the record rows of `run_id` with rows holding `records`, cut where the run's
/// rows began, each written as a commit of format 6 writes it: the variant index 3, the
/// run's head before it, the time of its first record, the count and the bodies. With
/// `reseal`, each row follows the head of the row before, as a careful forger would chain
/// them; without, each keeps the head its row at that key followed (only the bodies
/// change). Returns the run's head after the last row.
pub fn write_records(
    table: &mut redb::Table<(&'static str, u64), &'static [u8]>,
    run_id: &str,
    records: &[(Record, Digest)],
    reseal: bool,
) -> Digest {
    let old: Vec<(u64, Digest)> = table
        .range((run_id, 0)..=(run_id, u64::MAX))
        .expect("range")
        .map(|entry| {
            let entry = entry.expect("entry");
            let bytes = entry.1.value();
            let stored = match bytes.first() {
                Some(2 | 3) => postcard::from_bytes::<Digest>(&bytes[1..33]).expect("head"),
                _ => Digest::ZERO,
            };
            (entry.0.value().1, stored)
        })
        .collect();
    for (key, _) in &old {
        table.remove((run_id, *key)).expect("remove");
    }
    let mut cuts: Vec<usize> = old
        .iter()
        .map(|(key, _)| *key as usize)
        .filter(|&key| key > 0 && key < records.len())
        .collect();
    cuts.insert(0, 0);
    cuts.push(records.len());
    let mut head = Digest::ZERO;
    for cut in cuts.windows(2) {
        let (first, end) = (cut[0], cut[1]);
        if first >= end {
            continue;
        }
        let prev = match old.iter().find(|(key, _)| *key as usize == first) {
            Some((_, stored)) if !reseal => *stored,
            _ => head,
        };
        // A commit has one time: a record whose time was changed changes it.
        let at_ms = records[first..end]
            .iter()
            .map(|(record, _)| record.at_ms)
            .find(|&at_ms| at_ms != records[first].0.at_ms)
            .unwrap_or(records[first].0.at_ms);
        let mut row = vec![3];
        row.extend_from_slice(&prev.0);
        row.extend(postcard::to_allocvec(&at_ms).expect("time"));
        row.extend(postcard::to_allocvec(&((end - first) as u64)).expect("count"));
        for (record, _) in &records[first..end] {
            row.extend(postcard::to_allocvec(&record.body).expect("body"));
        }
        head = commit_digest(first as u64, &row);
        table
            .insert((run_id, first as u64), row.as_slice())
            .expect("insert");
    }
    head
}

/// The first record of the commit (the row) that holds record `record` of `run_id`: what
/// verification names when a record of a format-6 commit was altered.
pub fn commit_of(db: &std::path::Path, run_id: &str, record: u64) -> u64 {
    let database = Database::create(db).expect("open");
    let tx = database.begin_read().expect("read");
    let table = tx.open_table(RECORDS).expect("records");
    let row = table
        .range((run_id, 0)..=(run_id, record))
        .expect("range")
        .next_back()
        .expect("a row holds the record")
        .expect("row");
    row.0.value().1
}

/// The run's head after each of its rows, as (records so far, head): a format-6 row's
/// commit digest, or an older row's last record digest.
pub fn heads(db: &std::path::Path, run_id: &str) -> Vec<(u64, Digest)> {
    let database = Database::create(db).expect("open");
    let tx = database.begin_read().expect("read");
    let table = tx.open_table(RECORDS).expect("records");
    let records = read_records(&table, run_id);
    let mut heads = Vec::new();
    let rows: Vec<(u64, Vec<u8>)> = table
        .range((run_id, 0)..=(run_id, u64::MAX))
        .expect("range")
        .map(|entry| {
            let entry = entry.expect("entry");
            (entry.0.value().1, entry.1.value().to_vec())
        })
        .collect();
    for (at, (first, bytes)) in rows.iter().enumerate() {
        let end = rows
            .get(at + 1)
            .map_or(records.len() as u64, |(next, _)| *next);
        let head = match bytes.first() {
            Some(3) => commit_digest(*first, bytes),
            _ => records[end as usize - 1].1,
        };
        heads.push((end, head));
    }
    heads
}

/// The run's head after a format-6 row stored under record `first`:
/// `blake3("warden-commit-v1" 0 varint(first) row)`.
pub fn commit_digest(first: u64, row: &[u8]) -> Digest {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"warden-commit-v1\0");
    hasher.update(&postcard::to_allocvec(&first).expect("first"));
    hasher.update(row);
    Digest(*hasher.finalize().as_bytes())
}

/// Run summaries are format version 2 (variant index 1).
pub fn decode_meta(bytes: &[u8]) -> RunMeta {
    assert_eq!(bytes.first(), Some(&1), "run summary format version 2");
    postcard::from_bytes(&bytes[1..]).expect("decodes")
}

pub fn encode_meta(meta: &RunMeta) -> Vec<u8> {
    let mut bytes = vec![1];
    bytes.extend(postcard::to_allocvec(meta).expect("encodes"));
    bytes
}

/// Rewrites the records of `run_id` in the database at `db` with `edit`, optionally
/// re-sealing the hash chain (recomputing every digest after the edit and the run's head)
/// the way a careful forger would.
pub fn tamper(
    db: &std::path::Path,
    run_id: &str,
    reseal: bool,
    mut edit: impl FnMut(&mut Record) -> bool,
) -> u64 {
    let database = Database::create(db).expect("open copy");
    let tx = database.begin_write().expect("write");
    let mut edited = None;
    {
        let mut table = tx.open_table(RECORDS).expect("records");
        let mut records = read_records(&table, run_id);
        for (record, _) in &mut records {
            if edited.is_none() && edit(record) {
                edited = Some(record.index);
            }
        }
        let head = write_records(&mut table, run_id, &records, reseal);
        if reseal {
            let mut runs = tx.open_table(RUNS).expect("runs");
            let mut meta = decode_meta(runs.get(run_id).expect("get").expect("run").value());
            meta.head = head;
            runs.insert(run_id, encode_meta(&meta).as_slice())
                .expect("insert meta");
        }
    }
    tx.commit().expect("commit");
    edited.expect("the edit found its record")
}

/// A copy of the sandbox's journal in a temporary directory (the original stays intact).
pub fn copy_db(db: &std::path::Path) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("copy.redb");
    std::fs::copy(db, &copy).expect("copy");
    (dir, copy)
}

/// Replaces the stored blob under `digest` with `bytes` (a forged input, say).
pub fn replace_blob(db: &std::path::Path, digest: &Digest, bytes: &[u8]) {
    const BLOBS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("blobs");
    let database = Database::create(db).expect("open copy");
    let tx = database.begin_write().expect("write");
    {
        let mut blobs = tx.open_table(BLOBS).expect("blobs");
        blobs.insert(&digest.0, bytes).expect("insert");
    }
    tx.commit().expect("commit");
}

/// Rewrites the summary of `run_id` with `edit`.
pub fn edit_summary(db: &std::path::Path, run_id: &str, edit: impl FnOnce(&mut RunMeta)) {
    let database = Database::create(db).expect("open copy");
    let tx = database.begin_write().expect("write");
    {
        let mut runs = tx.open_table(RUNS).expect("runs");
        let mut meta = decode_meta(runs.get(run_id).expect("get").expect("run").value());
        edit(&mut meta);
        runs.insert(run_id, encode_meta(&meta).as_slice())
            .expect("insert");
    }
    tx.commit().expect("commit");
}

/// Truncates the run to its first `keep` records, re-sealing the summary (record count,
/// head) so that the chain still checks out, and marks it running (as if interrupted),
/// with `edit` applied to the summary last.
pub fn truncate(db: &std::path::Path, run_id: &str, keep: u64, edit: impl FnOnce(&mut RunMeta)) {
    let database = Database::create(db).expect("open copy");
    let tx = database.begin_write().expect("write");
    {
        let mut table = tx.open_table(RECORDS).expect("records");
        let records = read_records(&table, run_id);
        let head = write_records(&mut table, run_id, &records[..keep as usize], true);
        let mut runs = tx.open_table(RUNS).expect("runs");
        let mut meta = decode_meta(runs.get(run_id).expect("get").expect("run").value());
        meta.records = keep;
        meta.head = head;
        meta.outcome.status = warden::Status::Running;
        meta.outcome.output = None;
        meta.outcome.reason = None;
        edit(&mut meta);
        runs.insert(run_id, encode_meta(&meta).as_slice())
            .expect("insert meta");
    }
    tx.commit().expect("commit");
}

/// Rewrites the records of `run_id` with `edit` (which may change, remove, insert or
/// reorder them) the way a careful forger would: every record renumbered, the hash chain
/// recomputed, the run's summary (record count, head) re-sealed to match, every record
/// row of the run replaced. Returns the number of records written.
pub fn rewrite(db: &std::path::Path, run_id: &str, edit: impl FnOnce(&mut Vec<Record>)) -> u64 {
    let database = Database::create(db).expect("open copy");
    let tx = database.begin_write().expect("write");
    let written;
    {
        let mut table = tx.open_table(RECORDS).expect("records");
        let mut records: Vec<Record> = read_records(&table, run_id)
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        edit(&mut records);
        let sealed: Vec<(Record, Digest)> =
            records.iter().map(|r| (r.clone(), Digest::ZERO)).collect();
        let head = write_records(&mut table, run_id, &sealed, true);
        written = records.len() as u64;
        let mut runs = tx.open_table(RUNS).expect("runs");
        let mut meta = decode_meta(runs.get(run_id).expect("get").expect("run").value());
        meta.records = written;
        meta.head = head;
        runs.insert(run_id, encode_meta(&meta).as_slice())
            .expect("insert meta");
    }
    tx.commit().expect("commit");
    written
}

/// Deletes a run: its summary, records and checkpoints.
pub fn delete_run(db: &std::path::Path, run_id: &str) {
    let database = Database::create(db).expect("open copy");
    let tx = database.begin_write().expect("write");
    {
        tx.open_table(RUNS)
            .expect("runs")
            .remove(run_id)
            .expect("remove run");
        write_records(
            &mut tx.open_table(RECORDS).expect("records"),
            run_id,
            &[],
            true,
        );
        let mut checkpoints = tx.open_table(CHECKPOINTS).expect("checkpoints");
        let steps: Vec<u32> = checkpoints
            .range((run_id, 0)..=(run_id, u32::MAX))
            .expect("range")
            .map(|entry| entry.expect("entry").0.value().1)
            .collect();
        for step in steps {
            checkpoints
                .remove((run_id, step))
                .expect("remove checkpoint");
        }
    }
    tx.commit().expect("commit");
}

// The transparency log's tables, as documented in docs/journal.md.
pub const LOG_LEAVES: TableDefinition<u64, &[u8]> = TableDefinition::new("log_leaves");
pub const LOG_NODES: TableDefinition<(u32, u64), [u8; 32]> = TableDefinition::new("log_nodes");
pub const LOG_HEAD: TableDefinition<&str, &[u8]> = TableDefinition::new("log_head");

/// Rewrites the transparency log's leaves with `edit` (given each leaf decoded) and
/// renumbers them, dropping the cached subtree hashes so that the journal recomputes
/// them from the forged leaves; the signed tree head is
/// left alone, or replaced by `head` (forger-signed) when given.
pub fn rewrite_log(
    db: &std::path::Path,
    edit: impl FnOnce(&mut Vec<warden::LogEntry>),
    head: Option<&warden::seal::signing::SigningKey>,
) {
    use warden::seal::merkle::MemoryTree;
    use warden::seal::signing::TreeHead;
    let database = Database::create(db).expect("open copy");
    let tx = database.begin_write().expect("write");
    {
        let mut leaves = tx.open_table(LOG_LEAVES).expect("leaves");
        let mut entries: Vec<warden::LogEntry> = leaves
            .iter()
            .expect("iter")
            .map(|item| postcard::from_bytes(item.expect("leaf").1.value()).expect("entry"))
            .collect();
        let old = entries.len() as u64;
        for index in 0..old {
            leaves.remove(index).expect("remove leaf");
        }
        edit(&mut entries);
        let mut tree = MemoryTree::new();
        for (index, entry) in entries.iter().enumerate() {
            let bytes = postcard::to_allocvec(entry).expect("encode");
            tree.append(&bytes);
            leaves.insert(index as u64, bytes.as_slice()).expect("leaf");
        }
        let mut nodes = tx.open_table(LOG_NODES).expect("nodes");
        let keys: Vec<(u32, u64)> = nodes
            .iter()
            .expect("iter")
            .map(|item| item.expect("node").0.value())
            .collect();
        for key in keys {
            nodes.remove(key).expect("remove node");
        }
        if let Some(key) = head {
            let size = tree.len();
            let sth = key.sign_tree_head(TreeHead {
                size,
                root: tree.root(size).expect("root"),
                time_ms: 1,
            });
            tx.open_table(LOG_HEAD)
                .expect("head")
                .insert(
                    "latest",
                    postcard::to_allocvec(&sth).expect("encode").as_slice(),
                )
                .expect("insert head");
        }
    }
    tx.commit().expect("commit");
}
