//! Checkpoints: guest memory as content-addressed 64 KiB pages, plus mutable globals and
//! the host's own run state, taken at step boundaries.
//!
//! Between steps the guest has no live frames, so memory + globals (exported by the
//! loader's rewriting, see [`crate::agent`]) + the host-side counters below is the whole
//! state of a run: restoring a checkpoint into a fresh instance continues the run exactly.
//! A page's digest is its address, so a page is stored once however many steps, runs and
//! agents share it, and capture cost follows the pages a step changed: unchanged pages are
//! found by comparing with the previous image, before any hashing.

use serde::{Deserialize, Serialize};
use wasmtime::{AsContextMut, Instance, Val};

use crate::decision::InferenceRecord;
use crate::digest::{Digest, domain};

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
    image: Vec<u8>,
    digests: Vec<Digest>,
}

/// A page that changed since the previous capture, to store if new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedPage {
    /// The digest of its content.
    pub digest: Digest,
    /// Its content.
    pub bytes: Vec<u8>,
    /// The page it replaced at the same index (digest and content), which the journal
    /// may store it as a difference against.
    pub base: Option<(Digest, Vec<u8>)>,
}

/// A capture: the page list, and the pages not seen in the previous image.
#[derive(Debug)]
pub struct Capture {
    /// Digest of every page.
    pub pages: Vec<Digest>,
    /// Pages that changed since the previous capture, to store if new.
    pub changed: Vec<ChangedPage>,
}

impl PageTracker {
    /// A tracker whose previous image is `image`, whose pages have the given digests
    /// (already checked by the caller), as after restoring a checkpoint.
    pub fn primed(image: Vec<u8>, digests: Vec<Digest>) -> PageTracker {
        PageTracker { image, digests }
    }

    /// Captures `memory`, comparing each page with the previous image first.
    pub fn capture(&mut self, memory: &[u8]) -> Capture {
        self.image.resize(memory.len(), 0);
        let mut pages = Vec::with_capacity(memory.len() / PAGE_SIZE);
        let mut changed = Vec::new();
        for ((index, page), old) in memory
            .chunks(PAGE_SIZE)
            .enumerate()
            .zip(self.image.chunks_mut(PAGE_SIZE))
        {
            match self.digests.get(index) {
                Some(digest) if old == page => pages.push(*digest),
                previous => {
                    let digest = Digest::of(domain::PAGE, page);
                    let base = previous.map(|base| (*base, old.to_vec()));
                    old.copy_from_slice(page);
                    changed.push(ChangedPage {
                        digest,
                        bytes: page.to_vec(),
                        base,
                    });
                    pages.push(digest);
                }
            }
        }
        self.digests.clone_from(&pages);
        Capture { pages, changed }
    }
}

/// Reads the mutable globals the loader exported.
pub fn read_globals(
    mut store: impl AsContextMut,
    instance: &Instance,
    names: &[String],
) -> Result<Vec<GlobalValue>, CheckpointError> {
    let mut values = Vec::with_capacity(names.len());
    for name in names {
        let global = instance
            .get_global(&mut store, name)
            .ok_or_else(|| CheckpointError::GlobalMissing { name: name.clone() })?;
        values.push(match global.get(&mut store) {
            Val::I32(v) => GlobalValue::I32(v),
            Val::I64(v) => GlobalValue::I64(v),
            Val::F32(v) => GlobalValue::F32(v),
            Val::F64(v) => GlobalValue::F64(v),
            Val::V128(v) => GlobalValue::V128(v.as_u128()),
            _ => return Err(CheckpointError::GlobalReference { name: name.clone() }),
        });
    }
    Ok(values)
}

/// Writes globals back, in the order [`read_globals`] read them.
pub fn write_globals(
    mut store: impl AsContextMut,
    instance: &Instance,
    names: &[String],
    values: &[GlobalValue],
) -> Result<(), CheckpointError> {
    if names.len() != values.len() {
        return Err(CheckpointError::GlobalCount {
            checkpoint: values.len(),
            agent: names.len(),
        });
    }
    for (name, value) in names.iter().zip(values) {
        let global = instance
            .get_global(&mut store, name)
            .ok_or_else(|| CheckpointError::GlobalMissing { name: name.clone() })?;
        let val = match *value {
            GlobalValue::I32(v) => Val::I32(v),
            GlobalValue::I64(v) => Val::I64(v),
            GlobalValue::F32(v) => Val::F32(v),
            GlobalValue::F64(v) => Val::F64(v),
            GlobalValue::V128(v) => Val::V128(v.into()),
        };
        global
            .set(&mut store, val)
            .map_err(|source| CheckpointError::GlobalSet {
                name: name.clone(),
                source,
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_hashes_only_changed_pages() {
        let mut tracker = PageTracker::default();
        let mut memory = vec![0u8; 4 * PAGE_SIZE];
        memory[PAGE_SIZE] = 1;
        let first = tracker.capture(&memory);
        assert_eq!(first.pages.len(), 4);
        assert_eq!(first.changed.len(), 4, "first capture sees every page");
        memory[3 * PAGE_SIZE + 7] = 9;
        let second = tracker.capture(&memory);
        assert_eq!(second.changed.len(), 1);
        assert_eq!(second.pages[..3], first.pages[..3]);
        assert_ne!(second.pages[3], first.pages[3]);
        let third = tracker.capture(&memory);
        assert!(third.changed.is_empty());
        memory.extend(vec![0u8; PAGE_SIZE]);
        let grown = tracker.capture(&memory);
        assert_eq!(grown.changed.len(), 1);
        assert_eq!(grown.pages[4], first.pages[0], "zero pages share a digest");
    }
}
