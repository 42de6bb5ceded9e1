//! Append-only Merkle tree with the structure and hashing of RFC 9162 §2.1
//! (Certificate Transparency v2; byte-for-byte the same tree as RFC 6962).
//!
//! # Hashing
//!
//! With SHA-256 throughout: a leaf hashes as `SHA-256(0x00 || leaf_bytes)`
//! ([`leaf_hash`]), an interior node as `SHA-256(0x01 || left || right)`
//! ([`node_hash`]) and the empty tree as `SHA-256("")` ([`empty_root`]). A
//! tree of `n > 1` leaves splits at `k`, the largest power of two strictly
//! less than `n`: the left subtree holds leaves `[0, k)`, the right `[k, n)`.
//!
//! # Storage and complexity
//!
//! Every tree hash the RFC recursion asks for is either a *perfect* subtree
//! (`2^level` leaves starting at a multiple of `2^level`) or a ragged right
//! edge made of at most 64 perfect subtrees. The algorithms here therefore
//! only ever read perfect subtrees, through the [`LeafStore`] trait: leaves
//! are level 0 ([`LeafStore::leaf_hash`]), and a store may also answer for
//! higher levels ([`LeafStore::subtree_hash`]); whatever it does not cache is
//! recomputed from the level below.
//!
//! | store | append | [`root`] | [`inclusion_proof`] | [`consistency_proof`] |
//! |---|---|---|---|---|
//! | caches every perfect subtree ([`MemoryTree`], or a database fed by [`new_subtrees`]) | O(1) amortised, O(log n) worst | O(log n) | O(log n) | O(log n) |
//! | leaves only (`Vec<Hash>`, `[Hash]`) | O(1) | O(n) | O(n) | O(n) |
//!
//! (Counted in hash computations and store reads; proof sizes are at most 64
//! hashes. A store that caches only levels ≥ 8, say, recomputes any smaller
//! perfect subtree from its leaves: at most `2^9` reads each.) [`MemoryTree`]
//! keeps about two hashes per leaf, 64 bytes: ten million leaves is ~640 MB,
//! which is why a database-backed [`LeafStore`] is the production shape.
//!
//! # Verifiers
//!
//! [`verify_inclusion`] and [`verify_consistency`] implement the RFC 9162
//! §2.1.3.2 and §2.1.4.2 algorithms over hashes alone. They never panic and
//! return `false` for any input that is not a valid proof, including
//! `index >= n`, `m > n`, `m == 0` and proofs of the wrong length.
//!
//! An inclusion proof does not by itself bind the tree size: proofs for two
//! sizes whose paths have the same shape (for example leaf 0 in trees of 3
//! and 4 leaves) are interchangeable. The size must come from the same signed
//! tree head as the root, which is how [`super::signing::SignedTreeHead`] is
//! meant to be used.

use sha2::{Digest, Sha256};
use thiserror::Error;

/// A SHA-256 output: a leaf hash, node hash or tree root.
pub type Hash = [u8; 32];

/// RFC 9162 domain-separation prefix for leaf hashes.
const LEAF_PREFIX: u8 = 0x00;
/// RFC 9162 domain-separation prefix for interior node hashes.
const NODE_PREFIX: u8 = 0x01;

/// `SHA-256(0x00 || data)`: the RFC 9162 hash of one leaf.
#[must_use]
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([LEAF_PREFIX]);
    hasher.update(data);
    hasher.finalize().into()
}

/// `SHA-256(0x01 || left || right)`: the RFC 9162 hash of an interior node.
#[must_use]
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([NODE_PREFIX]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root of a log read leaf by leaf, in O(log n) memory: the hashes of the perfect
/// subtrees its leaves so far form (the largest first), as RFC 9162 splits a tree.
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    /// (number of leaves, hash) of each perfect subtree, left to right.
    subtrees: Vec<(u64, Hash)>,
    len: u64,
}

impl Frontier {
    /// Appends a leaf's data (hashed with [`leaf_hash`]).
    pub fn append(&mut self, data: &[u8]) {
        let mut subtree = (1u64, leaf_hash(data));
        while let Some(&(size, left)) = self.subtrees.last()
            && size == subtree.0
        {
            self.subtrees.pop();
            subtree = (size * 2, node_hash(&left, &subtree.1));
        }
        self.subtrees.push(subtree);
        self.len += 1;
    }

    /// Number of leaves appended.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no leaf was appended.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The root of the leaves appended: [`root`] of a tree of them.
    pub fn root(&self) -> Hash {
        let mut subtrees = self.subtrees.iter().rev();
        let Some(&(_, last)) = subtrees.next() else {
            return empty_root();
        };
        subtrees.fold(last, |right, (_, left)| node_hash(left, &right))
    }
}

/// `SHA-256("")`: the RFC 9162 root of a tree with no leaves.
#[must_use]
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two strictly less than `n`. Requires `n >= 2`.
fn split(n: u64) -> u64 {
    1u64 << (n - 1).ilog2()
}

/// A store that missed a leaf or subtree the tree structure says it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("no hash stored at level {level}, index {index}")]
pub struct MissingNode {
    /// Height of the missing subtree (0 for a leaf).
    pub level: u32,
    /// Position of the missing subtree within its level.
    pub index: u64,
}

/// Why a root or proof could not be produced.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MerkleError<E> {
    /// The requested tree size is larger than the number of stored leaves.
    #[error("tree size {size} is larger than the {len} leaves stored")]
    SizeTooLarge {
        /// Requested tree size.
        size: u64,
        /// Number of leaves the store holds.
        len: u64,
    },
    /// The leaf index is not inside the requested tree.
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange {
        /// Requested leaf index.
        index: u64,
        /// Requested tree size.
        size: u64,
    },
    /// A consistency proof needs `0 < old <= new` (RFC 9162 defines none from
    /// the empty tree, and none backwards).
    #[error("no consistency proof from size {old} to size {new}: need 0 < old <= new")]
    InvalidConsistencySizes {
        /// Size of the older tree.
        old: u64,
        /// Size of the newer tree.
        new: u64,
    },
    /// The backing store failed.
    #[error("leaf store failed: {0}")]
    Store(#[source] E),
}

/// Read access to a tree's leaf hashes, and optionally to cached hashes of
/// perfect subtrees, for a caller that keeps them elsewhere (e.g. a redb
/// table).
///
/// A perfect subtree at `level` and `index` covers leaves
/// `[index * 2^level, (index + 1) * 2^level)`; level 0 is the leaf itself.
pub trait LeafStore {
    /// The store's own error type.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Number of leaves stored.
    fn len(&self) -> u64;

    /// Whether no leaves are stored.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The leaf hash (see [`leaf_hash`]) at `index < len()`.
    fn leaf_hash(&self, index: u64) -> Result<Hash, Self::Error>;

    /// The cached hash of the perfect subtree at (`level >= 1`, `index`), or
    /// `None` if it is not cached; it is then recomputed from its children.
    /// Called only for subtrees lying wholly inside `[0, len())`. The default
    /// caches nothing, which makes roots and proofs O(n).
    fn subtree_hash(&self, level: u32, index: u64) -> Result<Option<Hash>, Self::Error> {
        let _ = (level, index);
        Ok(None)
    }
}

/// A leaf-hash-only store: correct, but roots and proofs cost O(n).
impl LeafStore for [Hash] {
    type Error = MissingNode;

    fn len(&self) -> u64 {
        self.len() as u64
    }

    fn leaf_hash(&self, index: u64) -> Result<Hash, MissingNode> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.get(i))
            .copied()
            .ok_or(MissingNode { level: 0, index })
    }
}

/// A leaf-hash-only store: correct, but roots and proofs cost O(n).
impl LeafStore for Vec<Hash> {
    type Error = MissingNode;

    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }

    fn leaf_hash(&self, index: u64) -> Result<Hash, MissingNode> {
        LeafStore::leaf_hash(self.as_slice(), index)
    }
}

/// Hash of the perfect subtree at (`level`, `index`).
fn perfect<S: LeafStore + ?Sized>(store: &S, level: u32, index: u64) -> Result<Hash, S::Error> {
    if level == 0 {
        return store.leaf_hash(index);
    }
    if let Some(hash) = store.subtree_hash(level, index)? {
        return Ok(hash);
    }
    let left = perfect(store, level - 1, 2 * index)?;
    let right = perfect(store, level - 1, 2 * index + 1)?;
    Ok(node_hash(&left, &right))
}

/// `MTH(D[start:end])` for `start <= end <= len`.
fn range_hash<S: LeafStore + ?Sized>(store: &S, start: u64, end: u64) -> Result<Hash, S::Error> {
    let n = end - start;
    if n == 0 {
        return Ok(empty_root());
    }
    if n.is_power_of_two() && start.is_multiple_of(n) {
        return perfect(store, n.trailing_zeros(), start / n);
    }
    let k = split(n);
    let left = range_hash(store, start, start + k)?;
    let right = range_hash(store, start + k, end)?;
    Ok(node_hash(&left, &right))
}

fn check_size<S: LeafStore + ?Sized>(store: &S, size: u64) -> Result<(), MerkleError<S::Error>> {
    let len = store.len();
    if size > len {
        return Err(MerkleError::SizeTooLarge { size, len });
    }
    Ok(())
}

/// The root `MTH(D[0:n])` of the first `n` leaves, for any `n <= len`
/// (so the heads of older, smaller trees can be recomputed).
pub fn root<S: LeafStore + ?Sized>(store: &S, n: u64) -> Result<Hash, MerkleError<S::Error>> {
    check_size(store, n)?;
    range_hash(store, 0, n).map_err(MerkleError::Store)
}

/// The RFC 9162 §2.1.3.1 inclusion proof `PATH(index, D[0:n])`: sibling
/// hashes from the leaf's neighbour up to the child of the root.
pub fn inclusion_proof<S: LeafStore + ?Sized>(
    store: &S,
    index: u64,
    n: u64,
) -> Result<Vec<Hash>, MerkleError<S::Error>> {
    check_size(store, n)?;
    if index >= n {
        return Err(MerkleError::IndexOutOfRange { index, size: n });
    }
    // Walk down from the root; the RFC lists siblings bottom-up, so reverse.
    let mut proof = Vec::new();
    let (mut start, mut end) = (0, n);
    while end - start > 1 {
        let mid = start + split(end - start);
        if index < mid {
            proof.push(range_hash(store, mid, end).map_err(MerkleError::Store)?);
            end = mid;
        } else {
            proof.push(range_hash(store, start, mid).map_err(MerkleError::Store)?);
            start = mid;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// The RFC 9162 §2.1.4.1 consistency proof `PROOF(m, D[0:n])` that the tree
/// of the first `m` leaves is a prefix of the tree of the first `n`.
/// `m == n` gives the empty proof; `m == 0` and `m > n` are errors.
pub fn consistency_proof<S: LeafStore + ?Sized>(
    store: &S,
    m: u64,
    n: u64,
) -> Result<Vec<Hash>, MerkleError<S::Error>> {
    check_size(store, n)?;
    if m == 0 || m > n {
        return Err(MerkleError::InvalidConsistencySizes { old: m, new: n });
    }
    // SUBPROOF(m, D[start:end], complete) unrolled. Invariant: start < m <= end.
    let mut proof = Vec::new();
    let (mut start, mut end) = (0, n);
    let mut complete = true;
    loop {
        if m == end {
            if !complete {
                proof.push(range_hash(store, start, end).map_err(MerkleError::Store)?);
            }
            break;
        }
        let mid = start + split(end - start);
        if m <= mid {
            proof.push(range_hash(store, mid, end).map_err(MerkleError::Store)?);
            end = mid;
        } else {
            proof.push(range_hash(store, start, mid).map_err(MerkleError::Store)?);
            start = mid;
            complete = false;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// A perfect subtree that became complete when a leaf was appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubtreeNode {
    /// Height of the subtree (`>= 1`).
    pub level: u32,
    /// Position of the subtree within its level.
    pub index: u64,
    /// The subtree's hash.
    pub hash: Hash,
}

/// The perfect subtrees completed by the leaf at `index` with hash
/// `leaf`, lowest first, for a caller that persists them so its
/// [`LeafStore::subtree_hash`] makes roots and proofs O(log n).
///
/// Everything left of `index` must already be readable from `store`
/// (`index <= store.len()`; the leaf itself may or may not be stored yet).
/// Costs O(log n) when the store caches the subtrees this returned earlier.
pub fn new_subtrees<S: LeafStore + ?Sized>(
    store: &S,
    index: u64,
    leaf: Hash,
) -> Result<Vec<SubtreeNode>, MerkleError<S::Error>> {
    check_size(store, index)?;
    let mut nodes = Vec::new();
    let mut hash = leaf;
    let mut level = 0u32;
    while level < 64 && (index >> level) & 1 == 1 {
        let left = perfect(store, level, (index >> level) - 1).map_err(MerkleError::Store)?;
        hash = node_hash(&left, &hash);
        level += 1;
        nodes.push(SubtreeNode {
            level,
            index: index.checked_shr(level).unwrap_or(0),
            hash,
        });
    }
    Ok(nodes)
}

/// An in-memory tree that caches every perfect subtree (about 64 bytes per
/// leaf), giving O(log n) roots and proofs for any past size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryTree {
    /// `levels[h][i]` is the perfect subtree at level `h`, index `i`;
    /// `levels[0]` holds the leaf hashes.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf's data (hashed with [`leaf_hash`]); returns its index.
    pub fn append(&mut self, data: &[u8]) -> u64 {
        self.append_leaf_hash(leaf_hash(data))
    }

    /// Appends an already computed leaf hash; returns its index.
    /// O(1) amortised, O(log n) worst case.
    pub fn append_leaf_hash(&mut self, leaf: Hash) -> u64 {
        let index = self.len();
        let mut hash = leaf;
        let mut level = 0usize;
        loop {
            if self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            let Some(row) = self.levels.get_mut(level) else {
                break;
            };
            row.push(hash);
            // An even count means the new node completed a pair.
            let pair = match row.as_slice() {
                [.., left, right] if row.len() % 2 == 0 => node_hash(left, right),
                _ => break,
            };
            hash = pair;
            level += 1;
        }
        index
    }

    /// Number of leaves.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// See [`root`].
    pub fn root(&self, n: u64) -> Result<Hash, MerkleError<MissingNode>> {
        root(self, n)
    }

    /// See [`inclusion_proof`].
    pub fn inclusion_proof(
        &self,
        index: u64,
        n: u64,
    ) -> Result<Vec<Hash>, MerkleError<MissingNode>> {
        inclusion_proof(self, index, n)
    }

    /// See [`consistency_proof`].
    pub fn consistency_proof(&self, m: u64, n: u64) -> Result<Vec<Hash>, MerkleError<MissingNode>> {
        consistency_proof(self, m, n)
    }

    fn get(&self, level: u32, index: u64) -> Option<Hash> {
        let row = self.levels.get(usize::try_from(level).ok()?)?;
        row.get(usize::try_from(index).ok()?).copied()
    }
}

impl LeafStore for MemoryTree {
    type Error = MissingNode;

    fn len(&self) -> u64 {
        MemoryTree::len(self)
    }

    fn leaf_hash(&self, index: u64) -> Result<Hash, MissingNode> {
        self.get(0, index).ok_or(MissingNode { level: 0, index })
    }

    fn subtree_hash(&self, level: u32, index: u64) -> Result<Option<Hash>, MissingNode> {
        Ok(self.get(level, index))
    }
}

/// Recomputes the root implied by an inclusion proof (RFC 9162 §2.1.3.2),
/// or `None` if the proof cannot be valid for `index` in a tree of size `n`
/// (wrong length, `index >= n`).
#[must_use]
pub fn root_from_inclusion_proof(leaf: &Hash, index: u64, n: u64, proof: &[Hash]) -> Option<Hash> {
    if index >= n {
        return None;
    }
    let (mut fnode, mut snode) = (index, n - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return None;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    (snode == 0).then_some(r)
}

/// Whether `proof` shows that `leaf` is the leaf at `index` in the tree of
/// size `n` whose root is `root` (RFC 9162 §2.1.3.2). Never panics.
#[must_use]
pub fn verify_inclusion(leaf: &Hash, index: u64, n: u64, proof: &[Hash], root: &Hash) -> bool {
    root_from_inclusion_proof(leaf, index, n, proof).is_some_and(|r| r == *root)
}

/// Whether `proof` shows that the tree of size `m` with root `old_root` is a
/// prefix of the tree of size `n` with root `new_root` (RFC 9162 §2.1.4.2).
///
/// `m == n` is consistent exactly when the proof is empty and the roots are
/// equal. `m == 0` is always `false`: RFC 9162 defines no proof from the
/// empty tree, so a caller that wants "the empty tree precedes everything"
/// must decide that itself. `m > n` is `false`. Never panics.
#[must_use]
pub fn verify_consistency(
    m: u64,
    n: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if m == 0 || m > n {
        return false;
    }
    if m == n {
        return proof.is_empty() && old_root == new_root;
    }
    // Step 2: a power-of-two old tree is a complete subtree, so its root is
    // the (implicit) first element of the path.
    let (first, rest) = if m.is_power_of_two() {
        (old_root, proof)
    } else {
        match proof.split_first() {
            Some(split) => split,
            None => return false,
        }
    };
    let (mut fnode, mut snode) = (m - 1, n - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    // Step 1 (an empty path fails) is covered: with m < n and m a power of
    // two, an empty `rest` leaves snode != 0.
    snode == 0 && fr == *old_root && sr == *new_root
}

#[cfg(test)]
mod frontier_tests {
    use super::{Frontier, MemoryTree, leaf_hash, node_hash};
    use proptest::prelude::*;

    proptest! {
        /// The root of leaves read one by one is the root of the tree that holds them, at
        /// every size.
        #[test]
        fn a_frontier_has_the_trees_root(leaves in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..70)) {
            let (mut frontier, mut tree) = (Frontier::default(), MemoryTree::new());
            prop_assert_eq!(frontier.root(), tree.root(0).unwrap_or_else(|e| panic!("{e:?}")));
            for leaf in &leaves {
                frontier.append(leaf);
                tree.append(leaf);
                prop_assert_eq!(frontier.len(), tree.len());
                prop_assert_eq!(frontier.root(), tree.root(tree.len()).unwrap_or_else(|e| panic!("{e:?}")));
            }
        }
    }

    /// RFC 9162's root of three leaves: the split at two.
    #[test]
    fn three_leaves_split_at_two() {
        let mut frontier = Frontier::default();
        for leaf in [b"a", b"b", b"c"] {
            frontier.append(leaf);
        }
        let expected = node_hash(
            &node_hash(&leaf_hash(b"a"), &leaf_hash(b"b")),
            &leaf_hash(b"c"),
        );
        assert_eq!(frontier.root(), expected);
    }
}
