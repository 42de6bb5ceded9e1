//! A page's digest from the BLAKE3 subtrees it is made of, so that a page a step changed
//! in one place is hashed again only around that place.
//!
//! BLAKE3 hashes its input as a binary tree of 1 KiB chunks; the root of that tree is the
//! digest. A page's digest, [`Digest::of`]`(domain::PAGE, page)`, hashes the domain tag,
//! a zero byte and the 64 KiB page: 65 551 bytes, a tree whose left half is eight
//! subtrees of 8 KiB of that input and whose right child is the last 15 bytes. A
//! [`PageTree`] keeps the chaining value of those nine subtrees; when bytes change, only
//! the subtrees holding them are hashed again, and three merges give the same digest as
//! hashing the whole page (tested against [`Digest::of`] below). Nothing of the journal's
//! format changes: the digest is the same number, computed in parts.

use std::ops::Range;

use blake3::hazmat::{
    ChainingValue, HasherExt, Mode, merge_subtrees_non_root, merge_subtrees_root,
};

use super::PAGE_SIZE;
use crate::digest::{Digest, domain};

/// Bytes of hashed input per subtree: eight chunks, a full AVX2 batch, so hashing a whole
/// page in eight subtrees costs about what hashing it at once does.
const SPAN: usize = 8 * 1024;

/// The domain tag and its zero byte, hashed before the page.
const PREFIX: usize = domain::PAGE.len() + 1;

/// Eight subtrees of `SPAN` bytes of input and the short last chunk.
pub(super) const SUBTREES: usize = PAGE_SIZE / SPAN + 1;

/// The chaining value of each subtree of one page's hash.
#[derive(Debug, Clone)]
pub(super) struct PageTree([ChainingValue; SUBTREES]);

/// The bytes of the page that subtree `index` hashes (the first also hashes the prefix).
pub(super) fn span(index: usize) -> Range<usize> {
    let start = (index * SPAN).saturating_sub(PREFIX);
    let end = ((index + 1) * SPAN - PREFIX).min(PAGE_SIZE);
    start..end
}

impl PageTree {
    /// The tree of a whole page (`PAGE_SIZE` bytes).
    pub(super) fn of(page: &[u8]) -> PageTree {
        PageTree(std::array::from_fn(|index| subtree(page, index)))
    }

    /// Hashes again the subtrees in `stale` (bit `i`: subtree `i`) of `page`.
    pub(super) fn update(&mut self, page: &[u8], stale: u16) {
        for (index, value) in self.0.iter_mut().enumerate() {
            if stale & (1 << index) != 0 {
                *value = subtree(page, index);
            }
        }
    }

    /// The page's digest: the root of the tree.
    pub(super) fn digest(&self) -> Digest {
        let merge =
            |pair: &[ChainingValue]| merge_subtrees_non_root(&pair[0], &pair[1], Mode::Hash);
        let [a, b, c, d] = [0, 2, 4, 6].map(|i| merge(&self.0[i..i + 2]));
        let left = merge(&[merge(&[a, b]), merge(&[c, d])]);
        Digest(*merge_subtrees_root(&left, &self.0[SUBTREES - 1], Mode::Hash).as_bytes())
    }
}

/// The chaining value of subtree `index` of `page`'s hash.
fn subtree(page: &[u8], index: usize) -> ChainingValue {
    let mut hasher = blake3::Hasher::new();
    if index == 0 {
        hasher.update(domain::PAGE.as_bytes());
        hasher.update(&[0]);
    } else {
        hasher.set_input_offset((index * SPAN) as u64);
    }
    hasher.update(&page[span(index)]);
    hasher.finalize_non_root()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn spans_cover_the_page_once() {
        let mut next = 0;
        for index in 0..SUBTREES {
            assert_eq!(span(index).start, next);
            next = span(index).end;
        }
        assert_eq!(next, PAGE_SIZE);
        assert_eq!(span(0).len(), SPAN - PREFIX);
        assert_eq!(span(SUBTREES - 1).len(), PREFIX);
    }

    #[test]
    fn the_tree_gives_the_plain_digest() {
        for bytes in [
            vec![0; PAGE_SIZE],
            vec![0xff; PAGE_SIZE],
            crate::checkpoint::noise(7),
        ] {
            assert_eq!(
                PageTree::of(&bytes).digest(),
                Digest::of(domain::PAGE, &bytes)
            );
        }
    }

    /// Anywhere in the page, or within a few bytes before a subtree's start.
    fn edit_start() -> impl Strategy<Value = usize> {
        prop_oneof![
            0..PAGE_SIZE,
            (1..SUBTREES, 0..20usize).prop_map(|(i, back)| span(i).start - back),
        ]
    }

    proptest! {
        /// Edits anywhere (the edges of every subtree included), each followed by an
        /// update of only the subtrees it touched: always the digest of the whole page.
        #[test]
        fn updating_the_touched_subtrees_gives_the_plain_digest(
            seed in any::<u64>(),
            edits in proptest::collection::vec((edit_start(), 1..40usize, any::<u8>()), 1..6),
        ) {
            let mut bytes = crate::checkpoint::noise(seed);
            let mut tree = PageTree::of(&bytes);
            for (at, len, value) in edits {
                let end = (at + len).min(PAGE_SIZE);
                bytes[at..end].fill(value);
                let stale = (0..SUBTREES)
                    .filter(|&i| span(i).start < end && at < span(i).end)
                    .fold(0u16, |mask, i| mask | 1 << i);
                tree.update(&bytes, stale);
                prop_assert_eq!(tree.digest(), Digest::of(domain::PAGE, &bytes));
            }
        }
    }
}
