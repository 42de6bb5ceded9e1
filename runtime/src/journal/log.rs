//! The transparency log: every commit of every run appends the run's new head (its record
//! count and head, signed with the deployment's key when one is configured) as a
//! leaf of one append-only Merkle tree per journal, with the structure and hashing of
//! RFC 9162 (Certificate Transparency). After each commit the journal signs the tree's
//! head (size, root, time).
//!
//! Upholds invariant 5 against a person who can write the file: a run cut back to an
//! earlier head, re-sealed with recomputed digests, or deleted, no longer matches the
//! signed head the log holds for it; and the log itself cannot lose or change an entry
//! without its root changing, which an auditor holding an earlier signed tree head
//! detects with a consistency proof (`warden log prove`).

use std::path::PathBuf;

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{Journal, JournalError, encode};
use crate::digest::Digest;
use crate::seal::merkle::{self, Hash, LeafStore};
use crate::seal::signing::{KeyId, PublicKey, Signature, SignedTreeHead, SigningKey, TreeHead};

/// Leaf index -> the postcard bytes of a [`LogEntry`].
pub(super) const LOG_LEAVES: TableDefinition<u64, &[u8]> = TableDefinition::new("log_leaves");
/// (level >= 1, index) -> hash of a complete subtree, so roots and proofs cost O(log n).
pub(super) const LOG_NODES: TableDefinition<(u32, u64), [u8; 32]> =
    TableDefinition::new("log_nodes");
/// `latest` -> the postcard bytes of the latest [`SignedTreeHead`].
pub(super) const LOG_HEAD: TableDefinition<&str, &[u8]> = TableDefinition::new("log_head");

/// The domain a run head is signed under.
pub const RUN_HEAD_DOMAIN: &str = "warden-run-head-v1";

/// A run's head as one commit left it: a leaf of the transparency log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The run.
    pub run_id: String,
    /// Its number of records after the commit.
    pub records: u64,
    /// The run's head after the commit: the commit's digest (format 6), or the digest of
    /// its last record (formats up to 5).
    pub head: Digest,
    /// Empty since format 6 (the head binds the commit's records). Up to format 5, the
    /// digests of the records this commit appended (records `records - digests.len()` to
    /// `records - 1`), so that an altered or re-sealed record is named exactly.
    pub digests: Vec<Digest>,
    /// When the commit was made, ms since the Unix epoch.
    pub at_ms: u64,
    /// The deployment key's signature over (run id, records, head), if a key was
    /// configured.
    pub signature: Option<(KeyId, Signature)>,
}

impl LogEntry {
    /// What is signed: postcard of (run id, records, head, the commit's record digests,
    /// time), under [`RUN_HEAD_DOMAIN`]: the leaf's fields before its signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        self.fields()
    }

    /// The leaf's bytes: its postcard encoding, its fields then its signature.
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut bytes = self.fields();
        super::bodies::encode_into(&self.signature, &mut bytes);
        bytes
    }

    /// The postcard encoding of (run id, records, head, digests, time), written by hand
    /// because a commit of many records has a digest per record, and serde writes each
    /// digest byte by byte (its 32 bytes are a tuple of `u8`s); `tests` pins it against
    /// serde.
    fn fields(&self) -> Vec<u8> {
        use super::bodies::varint;
        let mut bytes = Vec::with_capacity(192 + self.run_id.len() + 32 * self.digests.len());
        varint(&mut bytes, self.run_id.len() as u64);
        bytes.extend_from_slice(self.run_id.as_bytes());
        varint(&mut bytes, self.records);
        bytes.extend_from_slice(&self.head.0);
        varint(&mut bytes, self.digests.len() as u64);
        for digest in &self.digests {
            bytes.extend_from_slice(&digest.0);
        }
        varint(&mut bytes, self.at_ms);
        bytes
    }

    /// The index of the first record this commit appended, for an entry that holds their
    /// digests (formats up to 5); an entry of format 6 does not tell (its commit begins
    /// where the run's entry before it ended).
    pub fn first_record(&self) -> u64 {
        self.records.saturating_sub(self.digests.len() as u64)
    }

    /// Whether `key` signed this head.
    pub fn signed_by(&self, key: &PublicKey) -> bool {
        self.signature.as_ref().is_some_and(|(id, signature)| {
            *id == key.key_id() && key.verify(RUN_HEAD_DOMAIN, &self.signed_bytes(), signature)
        })
    }

    /// The leaf hash of these bytes (RFC 9162: SHA-256 of 0x00 and the leaf).
    pub fn leaf_hash(bytes: &[u8]) -> Hash {
        merkle::leaf_hash(bytes)
    }
}

/// Why a log leaf could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LogStoreError {
    /// redb failed.
    #[error(transparent)]
    Storage(#[from] redb::StorageError),
    /// A leaf the tree needs is missing.
    #[error("transparency log leaf {0} is missing")]
    Missing(u64),
}

/// The log's tables, open in a write transaction, and how many leaves they hold.
pub(super) struct LogTables<'t> {
    leaves: Leaves<'t>,
    nodes: Nodes<'t>,
    len: u64,
}

type Leaves<'t> = redb::Table<'t, u64, &'static [u8]>;
type Nodes<'t> = redb::Table<'t, (u32, u64), [u8; 32]>;

impl LogTables<'_> {
    fn store(&self) -> TableStore<'_, Leaves<'_>, Nodes<'_>> {
        TableStore {
            leaves: &self.leaves,
            nodes: &self.nodes,
            len: self.len,
        }
    }
}

/// The log's leaves and subtree hashes as one redb transaction sees them.
pub(crate) struct TableStore<'t, L, N> {
    leaves: &'t L,
    nodes: &'t N,
    len: u64,
}

impl<L, N> LeafStore for TableStore<'_, L, N>
where
    L: ReadableTable<u64, &'static [u8]>,
    N: ReadableTable<(u32, u64), [u8; 32]>,
{
    type Error = LogStoreError;

    fn len(&self) -> u64 {
        self.len
    }

    fn leaf_hash(&self, index: u64) -> Result<Hash, LogStoreError> {
        match self.leaves.get(index)? {
            Some(bytes) => Ok(merkle::leaf_hash(bytes.value())),
            None => Err(LogStoreError::Missing(index)),
        }
    }

    fn subtree_hash(&self, level: u32, index: u64) -> Result<Option<Hash>, LogStoreError> {
        Ok(self.nodes.get((level, index))?.map(|v| v.value()))
    }
}

impl Journal {
    /// Signs every commit's run head and the log's tree head with `key` from now on.
    pub fn set_signer(&mut self, key: SigningKey) {
        self.signer = Some(key);
    }

    /// Records each tree head the signer signs for this journal in `file` (beside the
    /// signing key, where whoever can write only the journal cannot reach), and from now
    /// on refuses a signed write to a log that does not extend the last head recorded
    /// there for this key and journal: a log put back to an earlier genuine head (and
    /// cut to match) is never sealed again. Call after [`Journal::set_signer`].
    pub fn keep_signed_heads(&mut self, file: PathBuf) {
        if let Some(key) = &self.signer {
            self.kept_heads = Some(super::heads::KeptHeads::new(file, &self.path, key.key_id()));
        }
    }

    /// For a reader given the deployment's signing key: holds every run read from now on
    /// to the key's signatures ([`Journal::verify`]), after checking what a signed writer
    /// checks before it writes: the log is sealed by the key ([`Journal::hold_to_public_key`])
    /// and extends the last head this key signed for the journal as recorded in `kept`
    /// ([`Journal::keep_signed_heads`]), if it holds one. A log cut back with its genuine
    /// entries, or under an older genuine head, is refused here, where no run's own entries
    /// show it.
    ///
    /// # Errors
    /// [`JournalError::LogAltered`] naming what does not hold; redb errors.
    pub fn hold_to_key(&mut self, key: SigningKey, kept: PathBuf) -> Result<(), JournalError> {
        self.check_sealed_by(&key.public_key())?;
        let size = self.log_size()?;
        let kept = super::heads::KeptHeads::new(kept, &self.path, key.key_id());
        if let Some((signed, root)) = kept.last()
            && (signed > size || self.log_root(signed)? != root)
        {
            return Err(JournalError::LogAltered {
                path: self.path.clone(),
                message: format!(
                    "its log ({size} entries) does not extend the last tree head this key signed for it ({signed} entries, recorded in {}): it was rolled back, cut or replaced since. Check it with `warden log prove --from HEAD --key PUB` against a head you kept",
                    kept.file().display()
                ),
            });
        }
        self.signer = Some(key);
        Ok(())
    }

    /// For a reader given the deployment's public key (a reviewer or an auditor, who holds
    /// no secret): checks that the log is sealed by the key, as a signed writer does
    /// before it writes (a log with signed entries has a signed tree head, the head is
    /// signed by this key and covers exactly the entries stored; whether the leaves hash
    /// to its root every verification checks), and holds every run read from now on to
    /// the key's signatures ([`Journal::verify`]). Without the secret key's record of the
    /// heads it signed, a journal put back whole to an earlier genuine state is not told
    /// apart here: `warden log prove --from` against a kept head does that.
    ///
    /// # Errors
    /// [`JournalError::LogAltered`] naming what does not hold; redb errors.
    pub fn hold_to_public_key(&mut self, key: PublicKey) -> Result<(), JournalError> {
        self.check_sealed_by(&key)?;
        self.readers_key = Some(key);
        Ok(())
    }

    /// Whether the log is sealed by `public`: see [`Journal::hold_to_public_key`]. An
    /// evidence pack must verify against the key, attested as holding the run's last
    /// commit; a journal must hold every run its log names.
    fn check_sealed_by(&self, public: &PublicKey) -> Result<(), JournalError> {
        if self.pack_manifest()?.is_some() {
            let pack = self.verify_pack(Some(public))?;
            let problem = pack
                .run
                .problem
                .clone()
                .or_else(|| pack.problems.first().cloned())
                .or_else(|| {
                    (!pack.attested).then(|| {
                        "the pack is not attested: nothing vouches that it holds the run's last commit".to_string()
                    })
                });
            return match problem {
                None => Ok(()),
                Some(problem) => Err(JournalError::LogAltered {
                    path: self.path.clone(),
                    message: format!(
                        "the evidence pack does not verify against key {}: {problem}; check it with `warden verify --pack FILE --key PUB`",
                        public.key_id()
                    ),
                }),
            };
        }
        let size = self.log_size()?;
        let refuse = |what: String| JournalError::LogAltered {
            path: self.path.clone(),
            message: format!(
                "{what}: the journal was altered since its last signed write, and nothing read from it can be trusted; check it with `warden verify --all --key PUB`"
            ),
        };
        if let Some((run_id, heads)) = self.first_deleted_run()? {
            return Err(refuse(format!(
                "run {run_id} is missing from the journal, but the transparency log holds {heads} of its heads: it was deleted"
            )));
        }
        match self.log_head()? {
            None => {
                if let Some(index) = self
                    .log_entries()?
                    .iter()
                    .position(|(entry, _)| entry.signature.is_some())
                {
                    return Err(refuse(format!(
                        "its log holds signed entries (entry {index} is one) but no signed tree head"
                    )));
                }
            }
            Some(head) => {
                if !head.verify(public) {
                    return Err(refuse(format!(
                        "its signed tree head is not signed by key {} ({})",
                        public.key_id(),
                        head.why_unverified(public)
                    )));
                }
                if head.head.size != size {
                    return Err(refuse(format!(
                        "its signed tree head covers {} log entries, but the log holds {size}",
                        head.head.size
                    )));
                }
            }
        }
        Ok(())
    }

    /// Opens the log's tables for appending, once per transaction.
    pub(super) fn log_tables<'t>(
        &self,
        tx: &'t redb::WriteTransaction,
    ) -> Result<LogTables<'t>, JournalError> {
        let leaves = tx.open_table(LOG_LEAVES).map_err(|e| self.err(e))?;
        let nodes = tx.open_table(LOG_NODES).map_err(|e| self.err(e))?;
        let len = leaves.len().map_err(|e| self.err(e))?;
        let log = LogTables { leaves, nodes, len };
        if let Some(key) = &self.signer {
            self.check_extends_head(tx, &log, key)?;
        }
        Ok(log)
    }

    /// Before a signed write extends the log: the log must be the one the stored signed
    /// tree head covers, or the head this write signs would vouch for whatever a person
    /// with the file made of it (entries of a deleted run removed, a review's entries
    /// cut out, subtree hashes rebuilt over them). The head must be this key's, cover
    /// exactly the entries stored, and its root be the root of the subtree hashes the
    /// new head is built from; a log with signed entries must have a head. Nothing is
    /// written when it does not hold: `warden verify --all --key` says what was altered.
    fn check_extends_head(
        &self,
        tx: &redb::WriteTransaction,
        log: &LogTables<'_>,
        key: &SigningKey,
    ) -> Result<(), JournalError> {
        let refuse = |what: String| JournalError::LogAltered {
            path: self.path.clone(),
            message: format!(
                "{what}: the journal was altered since its last signed write, and a signed write would vouch for the alteration; nothing was written; check it with `warden verify --all --key PUB` and restore it from a copy"
            ),
        };
        // Entries numbered 0..len: the next one goes at the end, over nothing.
        let last = log.leaves.last().map_err(|e| self.err(e))?;
        if let Some((index, _)) = last
            && index.value() + 1 != log.len
        {
            return Err(refuse(format!(
                "its log's entries are not numbered 0 to {} (the last is numbered {})",
                log.len.saturating_sub(1),
                index.value()
            )));
        }
        if let Some(kept) = &self.kept_heads
            && let Some((size, root)) = kept.last()
        {
            let extends = size <= log.len
                && merkle::root(&log.store(), size).map_err(|e| self.log_error(e))? == root;
            if !extends {
                return Err(JournalError::LogAltered {
                    path: self.path.clone(),
                    message: format!(
                        "its log ({} entries) does not extend the last tree head this key signed for it ({size} entries, recorded in {}): it was rolled back, cut or replaced since, and a signed write would seal that; nothing was written. Check it with `warden log prove --from HEAD --key PUB` against a head you kept. If you restored it from a backup on purpose, remove its line from {} to write to it again",
                        log.len,
                        kept.file().display(),
                        kept.file().display()
                    ),
                });
            }
        }
        let stored = {
            let heads = tx.open_table(LOG_HEAD).map_err(|e| self.err(e))?;
            let latest = heads.get("latest").map_err(|e| self.err(e))?;
            latest.map(|bytes| postcard::from_bytes::<SignedTreeHead>(bytes.value()))
        };
        let head = match stored {
            Some(Ok(head)) => head,
            Some(Err(e)) => {
                return Err(refuse(format!(
                    "its signed tree head does not decode ({e})"
                )));
            }
            None => {
                // Only a log no key ever signed may lack a head (a journal that starts
                // being signed now): every signed commit stores one.
                for item in log.leaves.iter().map_err(|e| self.err(e))? {
                    let (index, bytes) = item.map_err(|e| self.err(e))?;
                    let signed = postcard::from_bytes::<LogEntry>(bytes.value())
                        .map_or(true, |entry| entry.signature.is_some());
                    if signed {
                        return Err(refuse(format!(
                            "its log holds signed entries (entry {} is one) but no signed tree head",
                            index.value()
                        )));
                    }
                }
                return Ok(());
            }
        };
        if !head.verify(&key.public_key()) {
            return Err(refuse(format!(
                "its signed tree head is not signed by this key ({})",
                key.key_id()
            )));
        }
        if head.head.size != log.len {
            return Err(refuse(format!(
                "its signed tree head covers {} log entries, but the log holds {}",
                head.head.size, log.len
            )));
        }
        let root = merkle::root(&log.store(), log.len).map_err(|e| self.log_error(e))?;
        if root != head.head.root {
            return Err(refuse(
                "its log does not hash to the root of its signed tree head".into(),
            ));
        }
        Ok(())
    }

    /// Appends a run's new head to the log inside the commit's transaction, signed when
    /// a key is configured.
    pub(super) fn append_log(
        &self,
        log: &mut LogTables<'_>,
        mut entry: LogEntry,
    ) -> Result<(), JournalError> {
        if let Some(key) = &self.signer
            && let Ok(signature) = key.sign(RUN_HEAD_DOMAIN, &entry.signed_bytes())
        {
            entry.signature = Some((key.key_id(), signature));
        }
        let bytes = entry.encode();
        let index = log.len;
        if log.leaves.get(index).map_err(|e| self.err(e))?.is_some() {
            return Err(JournalError::LogAltered {
                path: self.path.clone(),
                message: format!(
                    "log entry {index} already exists, past the log's {index} entries (they were renumbered); nothing was written"
                ),
            });
        }
        let new = merkle::new_subtrees(&log.store(), index, merkle::leaf_hash(&bytes))
            .map_err(|e| self.log_error(e))?;
        log.leaves
            .insert(index, bytes.as_slice())
            .map_err(|e| self.err(e))?;
        log.len += 1;
        for node in new {
            log.nodes
                .insert((node.level, node.index), node.hash)
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Signs the log's tree head as the transaction leaves it, if a key is configured;
    /// returns it (size, root).
    pub(super) fn sign_log_head(
        &self,
        tx: &redb::WriteTransaction,
        log: LogTables<'_>,
        at_ms: u64,
    ) -> Result<Option<(u64, Hash)>, JournalError> {
        let Some(key) = &self.signer else {
            return Ok(None);
        };
        let size = log.len;
        let root = merkle::root(&log.store(), size).map_err(|e| self.log_error(e))?;
        let sth = key.sign_tree_head(TreeHead {
            size,
            root,
            time_ms: at_ms,
        });
        drop(log);
        tx.open_table(LOG_HEAD)
            .map_err(|e| self.err(e))?
            .insert("latest", encode(&sth).as_slice())
            .map_err(|e| self.err(e))?;
        Ok(Some((size, root)))
    }

    /// Records a head this process signed and committed (see
    /// [`Journal::keep_signed_heads`]). A record that cannot be written is said, not
    /// fatal: the head is already durable in the journal.
    pub(super) fn keep_head(&self, signed: Option<(u64, Hash)>) {
        if let (Some(kept), Some((size, root))) = (&self.kept_heads, signed)
            && let Err(e) = kept.record(size, &root)
        {
            tracing::warn!(
                target: "warden::journal",
                file = %kept.file().display(),
                "cannot record the signed tree head beside the signing key ({e}): a rollback of this journal to an earlier head would not be refused"
            );
        }
    }

    fn log_error(&self, e: merkle::MerkleError<LogStoreError>) -> JournalError {
        JournalError::Log {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Runs `f` over the log as one read transaction sees it.
    fn with_log<T>(
        &self,
        f: impl FnOnce(&dyn LeafStore<Error = LogStoreError>) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        let tx = self.read()?;
        let leaves = match tx.open_table(LOG_LEAVES) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return f(&EmptyLog),
            Err(e) => return Err(self.err(e)),
        };
        let nodes = tx.open_table(LOG_NODES).map_err(|e| self.err(e))?;
        let len = leaves.len().map_err(|e| self.err(e))?;
        f(&TableStore {
            leaves: &leaves,
            nodes: &nodes,
            len,
        })
    }

    /// The number of entries in the log.
    ///
    /// # Errors
    /// redb errors.
    pub fn log_size(&self) -> Result<u64, JournalError> {
        self.with_log(|store| Ok(store.len()))
    }

    /// The log's root over its first `size` entries.
    ///
    /// # Errors
    /// A size larger than the log; redb errors.
    pub fn log_root(&self, size: u64) -> Result<Hash, JournalError> {
        self.with_log(|store| merkle::root(store, size).map_err(|e| self.log_error(e)))
    }

    /// The inclusion proof of entry `index` in the log's first `size` entries.
    ///
    /// # Errors
    /// An index or size out of range; redb errors.
    pub fn log_inclusion(&self, index: u64, size: u64) -> Result<Vec<Hash>, JournalError> {
        self.with_log(|store| {
            merkle::inclusion_proof(store, index, size).map_err(|e| self.log_error(e))
        })
    }

    /// The proof that the log's first `new` entries extend its first `old` ones.
    ///
    /// # Errors
    /// Sizes out of range; redb errors.
    pub fn log_consistency(&self, old: u64, new: u64) -> Result<Vec<Hash>, JournalError> {
        self.with_log(|store| {
            merkle::consistency_proof(store, old, new).map_err(|e| self.log_error(e))
        })
    }

    /// Every entry of the log, in order, with the bytes that were hashed.
    ///
    /// # Errors
    /// redb or decoding errors.
    pub fn log_entries(&self) -> Result<Vec<(LogEntry, Vec<u8>)>, JournalError> {
        let tx = self.read()?;
        let leaves = match tx.open_table(LOG_LEAVES) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(self.err(e)),
        };
        let mut out = Vec::new();
        for item in leaves.iter().map_err(|e| self.err(e))? {
            let (index, bytes) = item.map_err(|e| self.err(e))?;
            let bytes = bytes.value().to_vec();
            let entry = postcard::from_bytes(&bytes)
                .map_err(|e| self.corrupt(format!("log entry {}", index.value()), e))?;
            out.push((entry, bytes));
        }
        Ok(out)
    }

    /// The log's last entry, if it has one and it decodes.
    ///
    /// # Errors
    /// redb errors.
    pub fn last_log_entry(&self) -> Result<Option<LogEntry>, JournalError> {
        let tx = self.read()?;
        let leaves = match tx.open_table(LOG_LEAVES) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.err(e)),
        };
        let last = leaves.last().map_err(|e| self.err(e))?;
        Ok(last.and_then(|(_, bytes)| postcard::from_bytes(bytes.value()).ok()))
    }

    /// The latest signed tree head, if a key ever signed one.
    ///
    /// # Errors
    /// redb or decoding errors.
    pub fn log_head(&self) -> Result<Option<SignedTreeHead>, JournalError> {
        let tx = self.read()?;
        let table = match tx.open_table(LOG_HEAD) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.err(e)),
        };
        match table.get("latest").map_err(|e| self.err(e))? {
            Some(bytes) => Ok(Some(
                postcard::from_bytes(bytes.value())
                    .map_err(|e| self.corrupt("the signed tree head", e))?,
            )),
            None => Ok(None),
        }
    }
}

/// The log of a journal that has none yet.
struct EmptyLog;

impl LeafStore for EmptyLog {
    type Error = LogStoreError;

    fn len(&self) -> u64 {
        0
    }

    fn leaf_hash(&self, index: u64) -> Result<Hash, LogStoreError> {
        Err(LogStoreError::Missing(index))
    }
}
