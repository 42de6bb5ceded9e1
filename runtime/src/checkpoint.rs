//! Checkpoints: guest memory as content-addressed 64 KiB pages, plus mutable globals and
//! the host's own run state, taken at step boundaries.
//!
//! Between steps the guest has no live frames, so memory + globals (exported by the
//! loader's rewriting, see [`crate::agent`]) + the host-side counters below is the whole
//! state of a run: restoring a checkpoint into a fresh instance continues the run exactly.
//! A page's digest is its address, so a page is stored once however many steps, runs and
//! agents share it, and capture cost follows the pages a step changed: where the kernel
//! can say which pages were written ([`written`]), only those are compared with the
//! previous image; elsewhere the whole image is compared. Either way a page is hashed
//! only if it differs, and both ways give the same capture.

use std::sync::{Arc, OnceLock};

use crate::decision::InferenceRecord;
use crate::digest::{Digest, domain};
use serde::{Deserialize, Serialize};

#[cfg(test)]
mod attack_tests;
mod globals;
pub(crate) mod page_store;
mod tree;
mod written;

pub use globals::{read_globals, write_globals};
use tree::PageTree;
use written::WriteTracker;

/// Why a checkpoint could not be taken or restored. A checkpoint that does not fit the
/// agent, or whose pages are missing or altered, is refused before any guest code runs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The page list does not cover the memory size it claims.
    #[error(
        "checkpoint {step} lists {pages} pages for {memory_bytes} bytes of memory; it is inconsistent"
    )]
    Inconsistent {
        /// The checkpoint's step.
        step: u32,
        /// Pages listed.
        pages: usize,
        /// Memory size claimed.
        memory_bytes: u64,
    },
    /// The checkpoint's memory is smaller than the agent starts with.
    #[error(
        "checkpoint {step} has {checkpoint_bytes} bytes of memory, less than the agent starts with ({agent_bytes}): it was not taken of this agent"
    )]
    SmallerThanAgent {
        /// The checkpoint's step.
        step: u32,
        /// Its memory size.
        checkpoint_bytes: u64,
        /// The fresh instance's memory size.
        agent_bytes: u64,
    },
    /// The checkpoint has another number of mutable globals than the agent.
    #[error(
        "the checkpoint has {checkpoint} mutable globals but the agent has {agent}: it was not taken of this agent"
    )]
    GlobalCount {
        /// Globals in the checkpoint.
        checkpoint: usize,
        /// Mutable globals of the agent.
        agent: usize,
    },
    /// Memory could not be grown to the checkpoint's size.
    #[error("cannot grow memory to {bytes} bytes")]
    Grow {
        /// The size asked for.
        bytes: u64,
        /// wasmtime's error.
        #[source]
        source: wasmtime::Error,
    },
    /// A page the checkpoint lists is not stored.
    #[error("memory page {} is missing from the journal", digest.short())]
    PageMissing {
        /// The page's digest.
        digest: Digest,
    },
    /// A stored page does not match its digest.
    #[error("memory page {index} ({}) does not match its digest", digest.short())]
    PageMismatch {
        /// Its position in memory.
        index: usize,
        /// The digest it should have.
        digest: Digest,
    },
    /// A page could not be read from storage.
    #[error("memory page {} could not be read", digest.short())]
    PageUnreadable {
        /// The page's digest.
        digest: Digest,
        /// The storage error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The loader's export of a mutable global is missing.
    #[error("global export `{name}` is missing")]
    GlobalMissing {
        /// The export name.
        name: String,
    },
    /// A mutable global holds a reference, which a checkpoint cannot capture.
    #[error("global `{name}` holds a reference, which a checkpoint cannot capture")]
    GlobalReference {
        /// The export name.
        name: String,
    },
    /// A global could not be set on restore.
    #[error("cannot restore global `{name}`")]
    GlobalSet {
        /// The export name.
        name: String,
        /// wasmtime's error.
        #[source]
        source: wasmtime::Error,
    },
}

/// Size of a checkpoint page: one WebAssembly page.
pub const PAGE_SIZE: usize = 65_536;

/// The value of one mutable global, bit-exact (floats as their bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GlobalValue {
    /// An `i32`.
    I32(i32),
    /// An `i64`.
    I64(i64),
    /// An `f32`, as bits.
    F32(u32),
    /// An `f64`, as bits.
    F64(u64),
    /// A `v128`.
    V128(u128),
}

/// Everything needed to continue a run after `step`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The step it follows (0: right after instantiation, before any step).
    pub step: u32,
    /// The run's state.
    pub state: String,
    /// Host calls made so far; the next call's sequence number.
    pub host_calls: u32,
    /// Fuel consumed by the run so far.
    pub fuel: u64,
    /// Bytes of journal records written by the run so far.
    pub journal_bytes: u64,
    /// Inferences the host computed so far (what gates may rest on).
    pub inferences: Vec<InferenceRecord>,
    /// Size of linear memory in bytes.
    pub memory_bytes: u64,
    /// Digest of each 64 KiB page of memory, in order.
    pub pages: Vec<Digest>,
    /// Each mutable global, in index order.
    pub globals: Vec<GlobalValue>,
}

impl Checkpoint {
    /// The digest recorded in the journal's `Checkpoint` record.
    pub fn digest(&self) -> Digest {
        Digest::of(
            domain::CHECKPOINT,
            &postcard::to_allocvec(self).unwrap_or_default(),
        )
    }
}

/// Remembers the last captured image so the next capture hashes only changed pages.
#[derive(Debug, Default)]
pub struct PageTracker {
    /// The last captured image, page by page; a changed page's bytes are shared with the
    /// [`ChangedPage`] handed to the journal, not copied again.
    image: Vec<Arc<[u8]>>,
    digests: Vec<Digest>,
    /// The hash tree of each page hashed since the tracker began, so that a page changed
    /// in a few places is hashed again only there (see [`tree`]).
    trees: Vec<Option<Box<PageTree>>>,
    /// The kernel's record of the pages written since the last capture, where available
    /// (see [`written`]); without it, every page is compared.
    writes: Option<WriteTracker>,
    /// Never track writes: compare every page (the fallback, for tests and benchmarks).
    compare_all: bool,
    /// Primed with the image of a fresh instance that no capture has reported yet: the
    /// next capture reports every page, as a first capture does.
    unreported: bool,
    /// Over a fresh instance, not yet primed: [`PageTracker::settle`] primes it from this
    /// shared image before the first guest code runs (or at the first capture).
    fresh: Option<Arc<FirstImage>>,
}

/// The memory of one agent's fresh instances as first hashed, shared by every run of the
/// agent in the process: a fresh instance whose memory is byte for byte this image takes
/// its digests and hash trees instead of hashing every page again (comparing costs a tenth
/// of hashing). Only bytes are trusted, never the agent's identity: an instance whose
/// memory differs anywhere is hashed as usual.
#[derive(Debug, Default)]
pub struct FirstImage(OnceLock<Snapshot>);

#[derive(Debug)]
struct Snapshot {
    image: Vec<Arc<[u8]>>,
    digests: Vec<Digest>,
    trees: Vec<Option<Box<PageTree>>>,
}

impl Snapshot {
    /// Whether `memory` is exactly this image.
    fn holds(&self, memory: &[u8]) -> bool {
        self.image.len() * PAGE_SIZE == memory.len()
            && self
                .image
                .iter()
                .zip(memory.chunks(PAGE_SIZE))
                .all(|(known, page)| **known == *page)
    }
}

/// How captures find the pages a step changed, in this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeDetection {
    /// The kernel lists the pages written (userfaultfd write protection and
    /// `PAGEMAP_SCAN`, Linux 6.7 and later); only those are compared.
    WrittenPages,
    /// Every page is compared with the previous image.
    CompareAll,
}

impl ChangeDetection {
    /// A short name, for logs and `--json`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeDetection::WrittenPages => "written-pages",
            ChangeDetection::CompareAll => "compare-all",
        }
    }
}

/// A page that changed since the previous capture, to store if new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedPage {
    /// Its position in memory (in pages).
    pub index: usize,
    /// The digest of its content.
    pub digest: Digest,
    /// Its content (shared with the tracker's image, not copied for the journal).
    pub bytes: Arc<[u8]>,
    /// The page it replaced at the same index (its digest) and how this one differs from
    /// it, which the journal may store it as.
    pub base: Option<(Digest, Difference)>,
}

/// How a page differs from the page it replaced: their XOR, which is zero outside
/// `spans` (offset in the page, XOR of those bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    spans: Vec<(usize, Box<[u8]>)>,
}

impl Difference {
    /// The difference between two pages of the same length, found by comparing them.
    pub fn between(old: &[u8], new: &[u8]) -> Difference {
        let spans = old
            .chunks(BLOCK)
            .zip(new.chunks(BLOCK))
            .enumerate()
            .filter(|(_, (old, new))| old != new)
            .map(|(block, (old, new))| (block * BLOCK, xor(old, new)))
            .collect();
        Difference { spans }
    }

    /// The XOR of the two pages, `len` bytes (the pages' length).
    pub fn to_xor(&self, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        for (offset, bytes) in &self.spans {
            if let Some(dst) = out.get_mut(*offset..offset + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
        }
        out
    }
}

/// `a` XOR `b` (of equal lengths), written so that it vectorizes.
fn xor(a: &[u8], b: &[u8]) -> Box<[u8]> {
    let mut out: Box<[u8]> = Box::from(b);
    for (out, a) in out.iter_mut().zip(a) {
        *out ^= a;
    }
    out
}

/// A capture: the page list, and the pages not seen in the previous image.
#[derive(Debug)]
pub struct Capture {
    /// Digest of every page.
    pub pages: Vec<Digest>,
    /// Pages that changed since the previous capture, to store if new.
    pub changed: Vec<ChangedPage>,
}

/// Bytes per block, the unit in which writes are reported and pages compared: the
/// kernel's page on most machines.
pub(crate) const BLOCK: usize = PAGE_SIZE / BLOCKS;

/// Blocks per page (bits of a `u16` mask).
pub(crate) const BLOCKS: usize = 16;

/// Every block of a page.
const ALL_BLOCKS: u16 = u16::MAX;

impl PageTracker {
    /// A tracker whose previous image is `image`, whose pages have the given digests
    /// (already checked by the caller), as after restoring a checkpoint.
    pub fn primed(image: &[u8], digests: Vec<Digest>) -> PageTracker {
        PageTracker {
            image: image.chunks(PAGE_SIZE).map(Arc::from).collect(),
            trees: vec![None; digests.len()],
            digests,
            writes: None,
            compare_all: false,
            unreported: false,
            fresh: None,
        }
    }

    /// A tracker over the memory of a fresh instance, primed from `first` by
    /// [`PageTracker::settle`] when the run first needs it: nothing is compared or hashed
    /// for an instance that a checkpoint is then restored into.
    pub fn fresh(first: Arc<FirstImage>) -> PageTracker {
        PageTracker {
            fresh: Some(first),
            ..PageTracker::default()
        }
    }

    /// Primes a [`PageTracker::fresh`] tracker over `memory`, the instance's memory before
    /// any guest code has run (see [`PageTracker::sharing`]); nothing otherwise.
    pub fn settle(&mut self, memory: &[u8]) {
        if let Some(first) = self.fresh.take() {
            *self = PageTracker::sharing(&first, memory);
        }
    }

    /// A tracker over the memory of a fresh instance (no guest code has run), primed with
    /// its image: taken from `first` when that holds exactly these bytes, else hashed (and
    /// kept in `first`, if it is empty). Captures then hash only what the run changes,
    /// whether or not the first of them comes before the first step; that first capture
    /// still reports every page.
    pub fn sharing(first: &FirstImage, memory: &[u8]) -> PageTracker {
        let mut tracker = PageTracker::default();
        match first.0.get() {
            Some(snapshot) if snapshot.holds(memory) => {
                tracker.image.clone_from(&snapshot.image);
                tracker.digests.clone_from(&snapshot.digests);
                tracker.trees.clone_from(&snapshot.trees);
                tracker.track(memory);
            }
            _ => {
                tracker.capture(memory);
                first.0.get_or_init(|| Snapshot {
                    image: tracker.image.clone(),
                    digests: tracker.digests.clone(),
                    trees: tracker.trees.clone(),
                });
            }
        }
        tracker.unreported = true;
        tracker
    }

    /// A tracker that always compares every page, as where the kernel cannot track writes.
    #[cfg(any(test, feature = "bench"))]
    pub fn comparing_all() -> PageTracker {
        PageTracker {
            compare_all: true,
            ..PageTracker::default()
        }
    }

    /// Starts asking the kernel which pages of `memory` are written from now on, where it
    /// can; `memory` must hold the tracker's image (as right after [`PageTracker::primed`]
    /// or a capture). Returns how the next captures find changed pages.
    pub fn track(&mut self, memory: &[u8]) -> ChangeDetection {
        self.writes = None;
        if !self.compare_all && memory.len() == self.image.len() * PAGE_SIZE {
            self.writes = WriteTracker::start(memory);
        }
        let detection = self.detection();
        report(detection);
        detection
    }

    /// How the next capture finds changed pages.
    pub fn detection(&self) -> ChangeDetection {
        match self.writes {
            Some(_) => ChangeDetection::WrittenPages,
            None => ChangeDetection::CompareAll,
        }
    }

    /// Captures `memory`: the blocks written since the previous capture (all of them, if
    /// the kernel cannot say) are compared with the previous image, and the pages that
    /// differ are hashed again where they differ. Starts write tracking after a capture
    /// that compared everything.
    pub fn capture(&mut self, memory: &[u8]) -> Capture {
        self.settle(memory);
        let mut capture = self.capture_changes(memory);
        if std::mem::take(&mut self.unreported) {
            // Every page, in order, as a capture from nothing reports them.
            let mut changed = std::mem::take(&mut capture.changed).into_iter().peekable();
            for (index, (digest, bytes)) in self.digests.iter().zip(&self.image).enumerate() {
                match changed.next_if(|page| page.index == index) {
                    Some(page) => capture.changed.push(page),
                    None => capture.changed.push(ChangedPage {
                        index,
                        digest: *digest,
                        bytes: Arc::clone(bytes),
                        base: None,
                    }),
                }
            }
        }
        capture
    }

    /// Captures `memory` against the tracker's previous image.
    fn capture_changes(&mut self, memory: &[u8]) -> Capture {
        let written = self
            .writes
            .as_mut()
            .and_then(|writes| writes.take_written(memory));
        let tracked = written.is_some();
        let written = written.unwrap_or_else(|| {
            (0..memory.len().div_ceil(PAGE_SIZE))
                .map(|index| (index, ALL_BLOCKS))
                .collect()
        });
        let capture = self.capture_written(memory, &written);
        // A tracker that could not answer is not trusted again: start a new one.
        let extended = match self.writes.as_mut() {
            Some(writes) if tracked => writes.extend(memory),
            _ => false,
        };
        if !extended {
            self.track(memory);
        }
        capture
    }

    /// Compares the `written` blocks (pages in increasing order, with their masks) of
    /// pages below the previous size, and every page past it; the others are unchanged.
    fn capture_written(&mut self, memory: &[u8], written: &[(usize, u16)]) -> Capture {
        let previous = self.digests.len().min(memory.len() / PAGE_SIZE);
        self.digests.truncate(previous);
        self.image.truncate(previous);
        self.trees.truncate(previous);
        let mut changed = Vec::new();
        for &(index, blocks) in written.iter().take_while(|(index, _)| *index < previous) {
            if let Some(page) = memory.chunks(PAGE_SIZE).nth(index) {
                self.compare_page(index, page, blocks, &mut changed);
            }
        }
        for (index, page) in memory.chunks(PAGE_SIZE).enumerate().skip(previous) {
            let (digest, tree) = hash(page);
            let bytes = Arc::<[u8]>::from(page);
            changed.push(ChangedPage {
                index,
                digest,
                bytes: Arc::clone(&bytes),
                base: None,
            });
            self.digests.push(digest);
            self.image.push(bytes);
            self.trees.push(tree);
        }
        Capture {
            pages: self.digests.clone(),
            changed,
        }
    }

    /// Compares the `blocks` of page `index`, now `page`, with the previous image; if
    /// they differ, hashes the page again where it differs and adds it to `changed`.
    fn compare_page(
        &mut self,
        index: usize,
        page: &[u8],
        blocks: u16,
        changed: &mut Vec<ChangedPage>,
    ) {
        let old = &self.image[index];
        if old.len() != page.len() {
            // A short last page grown whole (only a buffer that is not a linear memory has
            // a short page): replaced whole.
            let (digest, tree) = hash(page);
            self.trees[index] = tree;
            self.image[index] = Arc::from(page);
            self.digests[index] = digest;
            changed.push(ChangedPage {
                index,
                digest,
                bytes: Arc::clone(&self.image[index]),
                base: None,
            });
            return;
        }
        // The subtrees of the page's hash (see [`tree`]) holding a byte that changed.
        let mut stale = 0u16;
        let mut differing = Vec::new();
        if page.len() == PAGE_SIZE {
            for subtree in 0..tree::SUBTREES {
                let span = tree::span(subtree);
                let span_blocks = block_mask(span.start / BLOCK, (span.end - 1) / BLOCK);
                if span_blocks & blocks != 0 && old[span.clone()] != page[span.clone()] {
                    stale |= 1 << subtree;
                    differing.push(span);
                }
            }
        } else if **old != *page {
            differing.push(0..page.len());
        }
        if differing.is_empty() {
            return;
        }
        let digest = match &mut self.trees[index] {
            Some(tree) => {
                tree.update(page, stale);
                tree.digest()
            }
            slot => {
                let (digest, tree) = hash(page);
                *slot = tree;
                digest
            }
        };
        // The image takes the new bytes: in place when no capture still holds the page
        // (only the spans that changed are copied), else as a new copy.
        let spans = match Arc::get_mut(&mut self.image[index]) {
            Some(image) => differing
                .into_iter()
                .map(|span| {
                    let difference = xor(&image[span.clone()], &page[span.clone()]);
                    image[span.clone()].copy_from_slice(&page[span.clone()]);
                    (span.start, difference)
                })
                .collect(),
            None => {
                let old = &self.image[index];
                let spans = differing
                    .into_iter()
                    .map(|span| (span.start, xor(&old[span.clone()], &page[span])))
                    .collect();
                self.image[index] = Arc::from(page);
                spans
            }
        };
        let previous = std::mem::replace(&mut self.digests[index], digest);
        changed.push(ChangedPage {
            index,
            digest,
            bytes: Arc::clone(&self.image[index]),
            base: Some((previous, Difference { spans })),
        });
    }
}

/// A page of pseudo-random bytes (xorshift from `seed`), for tests: incompressible, and
/// different in every subtree of its hash.
#[cfg(test)]
fn noise(seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..PAGE_SIZE)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// The bits of blocks `first..=last`.
fn block_mask(first: usize, last: usize) -> u16 {
    (first..=last).fold(0, |mask, block| mask | 1 << block)
}

/// The digest of a page, with its hash tree if it is a whole page.
fn hash(page: &[u8]) -> (Digest, Option<Box<PageTree>>) {
    if page.len() == PAGE_SIZE {
        let tree = PageTree::of(page);
        (tree.digest(), Some(Box::new(tree)))
    } else {
        (Digest::of(domain::PAGE, page), None)
    }
}

/// Says once per process, in a trace event, how captures find changed pages.
fn report(detection: ChangeDetection) {
    static REPORTED: std::sync::Once = std::sync::Once::new();
    REPORTED.call_once(|| {
        tracing::info!(
            target: "warden::checkpoint",
            change_detection = detection.as_str(),
            "checkpoints find changed pages by {}",
            match detection {
                ChangeDetection::WrittenPages => "asking the kernel which were written",
                ChangeDetection::CompareAll => "comparing every page (no kernel write tracking here)",
            }
        );
    });
}

#[cfg(test)]
mod tests;
