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

use serde::{Deserialize, Serialize};
use wasmtime::{AsContextMut, Instance, Val};

use crate::decision::InferenceRecord;
use crate::digest::{Digest, domain};

mod written;

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
    image: Vec<u8>,
    digests: Vec<Digest>,
    /// The kernel's record of the pages written since the last capture, where available
    /// (see [`written`]); without it, every page is compared.
    writes: Option<WriteTracker>,
    /// Never track writes: compare every page (the fallback, for tests and benchmarks).
    compare_all: bool,
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
        PageTracker {
            image,
            digests,
            writes: None,
            compare_all: false,
        }
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
        if !self.compare_all && memory.len() == self.image.len() {
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

    /// Captures `memory`: the pages written since the previous capture (all of them, if
    /// the kernel cannot say) are compared with the previous image, and those that differ
    /// are hashed. Starts write tracking after a capture that compared everything.
    pub fn capture(&mut self, memory: &[u8]) -> Capture {
        let written = self
            .writes
            .as_mut()
            .and_then(|writes| writes.take_written(memory));
        let (capture, tracked) = match written {
            Some(written) => (self.capture_written(memory, &written), true),
            None => (self.capture_all(memory), false),
        };
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

    /// Compares every page with the previous image.
    fn capture_all(&mut self, memory: &[u8]) -> Capture {
        self.image.resize(memory.len(), 0);
        let mut pages = Vec::with_capacity(memory.len() / PAGE_SIZE);
        let mut changed = Vec::new();
        for (index, page) in memory.chunks(PAGE_SIZE).enumerate() {
            pages.push(self.compare_page(index, page, &mut changed));
        }
        self.digests.clone_from(&pages);
        Capture { pages, changed }
    }

    /// Compares the `written` pages (increasing indices below the previous size) and every
    /// page past the previous size; the others are unchanged.
    fn capture_written(&mut self, memory: &[u8], written: &[usize]) -> Capture {
        let previous = self.digests.len().min(memory.len() / PAGE_SIZE);
        self.image.resize(memory.len(), 0);
        let mut changed = Vec::new();
        let mut pages = self.digests[..previous].to_vec();
        for &index in written.iter().take_while(|&&index| index < previous) {
            if let Some(page) = memory.chunks(PAGE_SIZE).nth(index) {
                pages[index] = self.compare_page(index, page, &mut changed);
            }
        }
        for (index, page) in memory.chunks(PAGE_SIZE).enumerate().skip(previous) {
            let digest = self.compare_page(index, page, &mut changed);
            pages.push(digest);
        }
        self.digests.clone_from(&pages);
        Capture { pages, changed }
    }

    /// The digest of page `index`, now `page`: the previous one if the page is as it was,
    /// else its new digest, with the page added to `changed`.
    fn compare_page(
        &mut self,
        index: usize,
        page: &[u8],
        changed: &mut Vec<ChangedPage>,
    ) -> Digest {
        let range = index * PAGE_SIZE..index * PAGE_SIZE + page.len();
        let old = &mut self.image[range];
        match self.digests.get(index) {
            Some(digest) if old == page => *digest,
            previous => {
                let digest = Digest::of(domain::PAGE, page);
                let base = previous.map(|base| (*base, old.to_vec()));
                old.copy_from_slice(page);
                changed.push(ChangedPage {
                    digest,
                    bytes: page.to_vec(),
                    base,
                });
                digest
            }
        }
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

    /// A linear memory of the process's engine, as a run has, with a tracker over it.
    struct Tracked {
        store: wasmtime::Store<()>,
        memory: wasmtime::Memory,
        tracker: PageTracker,
    }

    impl Tracked {
        fn new(pages: u32, tracker: PageTracker) -> Tracked {
            let engine = crate::engine::engine().expect("engine");
            let mut store = wasmtime::Store::new(engine, ());
            let memory = wasmtime::Memory::new(&mut store, wasmtime::MemoryType::new(pages, None))
                .expect("memory");
            Tracked {
                store,
                memory,
                tracker,
            }
        }

        fn data(&mut self) -> &mut [u8] {
            self.memory.data_mut(&mut self.store)
        }

        fn grow(&mut self, pages: u64) {
            self.memory.grow(&mut self.store, pages).expect("grow");
        }

        fn capture(&mut self) -> (Vec<Digest>, Vec<Digest>) {
            let capture = self.tracker.capture(self.memory.data(&self.store));
            let changed = capture.changed.iter().map(|page| page.digest).collect();
            (capture.pages, changed)
        }
    }

    /// Applies the same writes to a memory whose tracker asks the kernel and to one that
    /// compares every page, and checks after each step that both captures are the same:
    /// the pages the kernel reports cover every page that really changed.
    fn same_captures(steps: &[&dyn Fn(&mut Tracked)]) {
        let mut fast = Tracked::new(8, PageTracker::default());
        let mut slow = Tracked::new(8, PageTracker::comparing_all());
        for (step, write) in steps.iter().enumerate() {
            write(&mut fast);
            write(&mut slow);
            assert_eq!(fast.data(), slow.data());
            assert_eq!(fast.capture(), slow.capture(), "step {step}");
            if step == 0 && fast.tracker.detection() == ChangeDetection::CompareAll {
                eprintln!("no kernel write tracking here: the fallback is compared with itself");
            }
        }
        assert_eq!(slow.tracker.detection(), ChangeDetection::CompareAll);
    }

    #[test]
    fn written_pages_cover_every_change() {
        let one_byte_per_page = |m: &mut Tracked| {
            for (i, page) in m.data().chunks_mut(PAGE_SIZE).enumerate() {
                page[i * 97 % PAGE_SIZE] ^= 0x5a;
            }
        };
        let last_byte_of_page_3 = |m: &mut Tracked| m.data()[4 * PAGE_SIZE - 1] = 7;
        let grow_then_write_both_sides = |m: &mut Tracked| {
            m.grow(3);
            let data = m.data();
            data[2 * PAGE_SIZE + 5] = 1;
            data[9 * PAGE_SIZE + 5] = 2;
        };
        let grow_without_writing = |m: &mut Tracked| m.grow(2);
        let write_back_old_content = |m: &mut Tracked| {
            let data = m.data();
            let old = data[PAGE_SIZE + 3];
            data[PAGE_SIZE + 3] = old.wrapping_add(1);
            data[PAGE_SIZE + 3] = old;
            data[6 * PAGE_SIZE..7 * PAGE_SIZE].fill(0xee);
            data[6 * PAGE_SIZE..7 * PAGE_SIZE].fill(0);
        };
        let bulk_copy_across_pages = |m: &mut Tracked| {
            m.data()
                .copy_within(PAGE_SIZE / 2..3 * PAGE_SIZE, 5 * PAGE_SIZE + 11);
        };
        let nothing = |_: &mut Tracked| {};
        let kernel_writes = |m: &mut Tracked| {
            use std::io::{Read, Seek, Write};
            let mut file = tempfile::tempfile().expect("temp file");
            file.write_all(&[0x42; 3 * PAGE_SIZE]).expect("write");
            file.rewind().expect("rewind");
            file.read_exact(&mut m.data()[9 * PAGE_SIZE + 9..12 * PAGE_SIZE + 9])
                .expect("read");
        };
        let pseudo_random = |m: &mut Tracked| {
            let data = m.data();
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
            for _ in 0..64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = (x % data.len() as u64) as usize;
                data[at] = (x >> 56) as u8;
            }
        };
        same_captures(&[
            &nothing,
            &one_byte_per_page,
            &nothing,
            &last_byte_of_page_3,
            &grow_then_write_both_sides,
            &grow_without_writing,
            &write_back_old_content,
            &bulk_copy_across_pages,
            &kernel_writes,
            &one_byte_per_page,
            &pseudo_random,
            &pseudo_random,
            &grow_without_writing,
            &one_byte_per_page,
            &nothing,
        ]);
    }

    /// Many memories in one process, on several threads, each tracked by its own tracker:
    /// one run's captures never see (or hide) another's writes.
    #[test]
    fn write_tracking_is_per_memory() {
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                std::thread::spawn(move || {
                    for round in 0..5u8 {
                        let mut fast = Tracked::new(4, PageTracker::default());
                        let mut slow = Tracked::new(4, PageTracker::comparing_all());
                        for step in 0..6u8 {
                            for m in [&mut fast, &mut slow] {
                                let at = usize::from((t + round + step) % 4) * PAGE_SIZE + 1;
                                m.data()[at] = t ^ round ^ step;
                                if step == 3 {
                                    m.grow(1);
                                }
                            }
                            assert_eq!(fast.capture(), slow.capture());
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("thread");
        }
    }

    /// On Linux 6.7 and later with userfaultfd permitted, captures of a linear memory ask
    /// the kernel; set `WARDEN_EXPECT_WRITE_TRACKING=1` to fail where they do not.
    #[test]
    fn write_tracking_is_used_where_available() {
        let mut memory = Tracked::new(2, PageTracker::default());
        memory.capture();
        let detection = memory.tracker.detection();
        eprintln!("change detection: {}", detection.as_str());
        if std::env::var_os("WARDEN_EXPECT_WRITE_TRACKING").is_some() {
            assert_eq!(detection, ChangeDetection::WrittenPages);
        }
    }
}
