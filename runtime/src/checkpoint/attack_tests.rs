//! Red-team attacks on the incremental page hashing (cached BLAKE3 subtrees, in-place
//! image updates, XOR differences, the shared first image of an agent).
//!
//! Every capture is checked three ways: each digest in its page list is
//! `Digest::of(domain::PAGE, page)` of the real page; each changed page's bytes are the
//! real page and hash to its digest; and, after storing the capture the way
//! `Journal::commit` does (a difference from its base when the base is stored), every page
//! of the list unpacks from the store to the real page. Every page that really changed
//! must be in `changed`.

use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;

use super::page_store;
use super::tree::{SUBTREES, span};
use super::*;

fn plain(memory: &[u8]) -> Vec<Digest> {
    memory
        .chunks(PAGE_SIZE)
        .map(|page| Digest::of(domain::PAGE, page))
        .collect()
}

/// The journal's page table, as `Journal::commit` fills it.
#[derive(Default)]
struct Store(HashMap<Digest, Vec<u8>>);

impl Store {
    fn commit(&mut self, capture: &Capture) {
        for page in &capture.changed {
            if self.0.contains_key(&page.digest) {
                continue;
            }
            let base = page.base.as_ref().and_then(|(digest, difference)| {
                let depth = page_store::depth(self.0.get(digest)?)?;
                Some((*digest, difference, depth))
            });
            let packed = page_store::pack(&page.bytes, base);
            self.0.insert(page.digest, packed);
        }
    }

    fn read(&self, digest: &Digest) -> Result<Vec<u8>, String> {
        let stored = self.0.get(digest).ok_or("missing")?;
        page_store::unpack(stored, |base| Ok(self.0.get(base).cloned()))
    }
}

/// Checks `capture` of `memory` against plain hashing, against the previous memory
/// (`before`: every page that differs must be reported) and against the store.
fn check(what: &str, capture: &Capture, memory: &[u8], before: Option<&[u8]>, store: &mut Store) {
    assert_eq!(capture.pages, plain(memory), "{what}: page list");
    for page in &capture.changed {
        let real = memory
            .chunks(PAGE_SIZE)
            .nth(page.index)
            .expect("changed page in memory");
        assert!(
            &page.bytes[..] == real,
            "{what}: bytes of page {}",
            page.index
        );
        assert_eq!(
            page.digest,
            Digest::of(domain::PAGE, real),
            "{what}: digest of changed page {}",
            page.index
        );
        if let Some((base, difference)) = &page.base {
            // The difference applied to the base gives the page.
            let xor = difference.to_xor(real.len());
            let rebuilt: Vec<u8> = xor.iter().zip(real).map(|(x, b)| x ^ b).collect();
            assert_eq!(
                Digest::of(domain::PAGE, &rebuilt),
                *base,
                "{what}: base of page {} is not page XOR difference",
                page.index
            );
        }
    }
    if let Some(before) = before {
        for (index, page) in memory.chunks(PAGE_SIZE).enumerate() {
            let old = before.chunks(PAGE_SIZE).nth(index);
            if old != Some(page) {
                assert!(
                    capture.changed.iter().any(|c| c.index == index),
                    "{what}: page {index} changed but was not reported"
                );
            }
        }
    }
    store.commit(capture);
    for (index, (digest, page)) in capture
        .pages
        .iter()
        .zip(memory.chunks(PAGE_SIZE))
        .enumerate()
    {
        if page.len() != PAGE_SIZE {
            // The journal stores only whole pages (page_store); a short one is stored raw
            // and is not a stored form it reads back: out of scope here.
            continue;
        }
        let read = store.read(digest);
        assert!(
            read.as_deref() == Ok(page),
            "{what}: stored page {index} does not unpack to the page: {:?}",
            read.map(|bytes| Digest::of(domain::PAGE, &bytes))
        );
    }
}

/// A linear memory of the engine runs use (so the kernel write tracking is exercised where
/// available).
struct Mem {
    store: wasmtime::Store<()>,
    memory: wasmtime::Memory,
}

impl Mem {
    fn new(pages: u32) -> Mem {
        let engine = crate::engine::engine().expect("engine");
        let mut store = wasmtime::Store::new(engine, ());
        let memory = wasmtime::Memory::new(&mut store, wasmtime::MemoryType::new(pages, None))
            .expect("memory");
        Mem { store, memory }
    }
    fn data(&mut self) -> &mut [u8] {
        self.memory.data_mut(&mut self.store)
    }
    fn view(&self) -> &[u8] {
        self.memory.data(&self.store)
    }
    fn grow(&mut self, pages: u64) {
        self.memory.grow(&mut self.store, pages).expect("grow");
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Offsets in a page where the subtree and block arithmetic could go wrong: both sides of
/// every subtree edge (8 KiB - 15), of every 8 KiB and 4 KiB edge, the 15-byte tail.
fn edges() -> Vec<usize> {
    let mut out = vec![0, PAGE_SIZE - 1, PAGE_SIZE - 15, PAGE_SIZE - 16];
    for i in 1..SUBTREES {
        let s = span(i).start;
        out.extend([s - 1, s, s + 1]);
    }
    for b in 1..BLOCKS {
        out.extend([b * BLOCK - 1, b * BLOCK]);
    }
    out.retain(|&x| x < PAGE_SIZE);
    out
}

/// One adversarial write step on `mem`.
fn attack_step(mem: &mut Mem, rng: &mut Rng, edges: &[usize]) {
    let pages = mem.view().len() / PAGE_SIZE;
    match rng.below(9) {
        // One byte exactly at an edge of a random page.
        0 | 1 => {
            let at = rng.below(pages) * PAGE_SIZE + edges[rng.below(edges.len())];
            let data = mem.data();
            data[at] = data[at].wrapping_add(1 + (rng.next() % 255) as u8);
        }
        // A run crossing a subtree edge.
        2 => {
            let page = rng.below(pages);
            let i = 1 + rng.below(SUBTREES - 1);
            let start = page * PAGE_SIZE + span(i).start - rng.below(20);
            let len = 1 + rng.below(40);
            let value = rng.next() as u8;
            let end = (start + len).min(mem.view().len());
            mem.data()[start..end].fill(value);
        }
        // Write then write back (no net change) plus one real change elsewhere.
        3 => {
            let at = rng.below(mem.view().len());
            let data = mem.data();
            let old = data[at];
            data[at] = old ^ 0x80;
            data[at] = old;
            let other = rng.below(data.len());
            data[other] ^= 1;
        }
        // The whole of one page.
        4 => {
            let page = rng.below(pages);
            let value = rng.next() as u8;
            mem.data()[page * PAGE_SIZE..(page + 1) * PAGE_SIZE].fill(value);
        }
        // Bulk copy across pages.
        5 => {
            let len = mem.view().len();
            let from = rng.below(len / 2);
            let to = rng.below(len / 2);
            let n = rng.below(len / 2).max(1);
            mem.data().copy_within(from..from + n, to);
        }
        // Grow and write into the new pages and the old last page.
        6 if pages < 24 => {
            mem.grow(1 + rng.below(2) as u64);
            let data = mem.data();
            let len = data.len();
            data[len - 1] = 0x77;
            data[pages * PAGE_SIZE - 1] ^= 0x33;
        }
        6 => {}
        // Only the last 15 bytes of a page (the 9th subtree).
        7 => {
            let page = rng.below(pages);
            let at = (page + 1) * PAGE_SIZE - 1 - rng.below(15);
            mem.data()[at] ^= 0xa5;
        }
        // Nothing at all.
        _ => {}
    }
}

/// Drives both a kernel-tracked tracker and a compare-all one over random edge writes,
/// sometimes keeping captures alive (the image's pages then cannot be updated in place)
/// and sometimes not.
fn drive(tracker: PageTracker, mem: &mut Mem, seed: u64, steps: usize, label: &str) {
    let mut tracker = tracker;
    let mut store = Store::default();
    let mut rng = Rng(seed | 1);
    let edges = edges();
    let mut kept: Vec<Capture> = Vec::new();
    let mut before: Option<Vec<u8>> = None;
    for step in 0..steps {
        if step > 0 {
            attack_step(mem, &mut rng, &edges);
        }
        let memory = mem.view().to_vec();
        let capture = tracker.capture(mem.view());
        check(
            &format!("{label} seed {seed} step {step}"),
            &capture,
            &memory,
            before.as_deref(),
            &mut store,
        );
        if rng.below(3) == 0 {
            kept.push(capture);
        } else if rng.below(2) == 0 {
            kept.clear();
        }
        before = Some(memory);
    }
}

#[test]
fn adversarial_writes_never_give_a_wrong_digest_or_delta_kernel_tracked() {
    for seed in 1..=6u64 {
        let mut mem = Mem::new(4);
        drive(PageTracker::default(), &mut mem, seed, 60, "kernel");
    }
}

#[test]
fn adversarial_writes_never_give_a_wrong_digest_or_delta_compare_all() {
    for seed in 1..=6u64 {
        let mut mem = Mem::new(4);
        drive(
            PageTracker::comparing_all(),
            &mut mem,
            seed,
            60,
            "compare-all",
        );
    }
}

/// A restored run: the tracker is primed with digests but no trees, its image is shared
/// by nothing (updated in place), then changed at the edges.
#[test]
fn restore_then_change_at_every_edge() {
    for seed in 1..=4u64 {
        let mut mem = Mem::new(3);
        let mut rng = Rng(seed * 7919);
        for byte in mem.data().iter_mut() {
            *byte = rng.next() as u8;
        }
        let image = mem.view().to_vec();
        let mut tracker = PageTracker::primed(&image, plain(&image));
        tracker.track(mem.view());
        let mut store = Store::default();
        // The restored pages are in the journal already.
        for page in image.chunks(PAGE_SIZE) {
            store
                .0
                .insert(Digest::of(domain::PAGE, page), page_store::pack(page, None));
        }
        let mut before = image;
        for (step, at) in edges().into_iter().enumerate() {
            let page = step % 3;
            mem.data()[page * PAGE_SIZE + at] ^= 0x5a;
            let memory = mem.view().to_vec();
            let capture = tracker.capture(mem.view());
            check(
                &format!("restored seed {seed} edge {at}"),
                &capture,
                &memory,
                Some(&before),
                &mut store,
            );
            assert_eq!(capture.changed.len(), 1, "edge {at}");
            before = memory;
        }
    }
}

/// The shared first image: reused only for byte-identical memory; a tracker that filled it
/// and then changes its pages must not alter it; whatever the first capture comes after
/// (nothing, changes, growth), it reports every page exactly once, in order, correctly.
#[test]
fn first_image_is_never_reused_for_other_bytes_and_never_altered() {
    let first = FirstImage::default();
    let mut rng = Rng(0xdead_beef);
    let original: Vec<u8> = (0..3 * PAGE_SIZE).map(|_| rng.next() as u8).collect();
    // Fill it, then change every page of the filling tracker's memory in place.
    let mut mem = Mem::new(3);
    mem.data().copy_from_slice(&original);
    let mut filler = PageTracker::sharing(&first, mem.view());
    let mut store = Store::default();
    let c = filler.capture(mem.view());
    check("filler first", &c, &original, None, &mut store);
    drop(c);
    for page in 0..3 {
        mem.data()[page * PAGE_SIZE + 100] ^= 1;
    }
    let memory = mem.view().to_vec();
    let c = filler.capture(mem.view());
    check("filler changed", &c, &memory, Some(&original), &mut store);
    drop(c);
    mem.data()[5] ^= 2;
    let memory2 = mem.view().to_vec();
    let c = filler.capture(mem.view());
    check(
        "filler changed twice",
        &c,
        &memory2,
        Some(&memory),
        &mut store,
    );
    let snapshot = first.0.get().expect("filled");
    assert!(snapshot.holds(&original), "the shared image was altered");
    assert_eq!(snapshot.digests, plain(&original));

    // One byte different anywhere (every edge of every page) or one page more: the first
    // capture of a tracker over it is exactly a fresh tracker's.
    let mut variants = Vec::new();
    for page in 0..3 {
        for at in edges() {
            let mut v = original.clone();
            v[page * PAGE_SIZE + at] ^= 0x01;
            variants.push(v);
        }
    }
    let mut longer = original.clone();
    longer.extend(vec![0u8; PAGE_SIZE]);
    variants.push(longer);
    variants.push(original[..2 * PAGE_SIZE].to_vec());
    for (n, v) in variants.iter().enumerate() {
        let mut tracker = PageTracker::sharing(&first, v);
        let capture = tracker.capture(v);
        let mut store = Store::default();
        check(&format!("variant {n}"), &capture, v, None, &mut store);
        let indices: Vec<usize> = capture.changed.iter().map(|p| p.index).collect();
        assert_eq!(indices, (0..v.len() / PAGE_SIZE).collect::<Vec<_>>());
    }
    assert!(first.0.get().expect("filled").holds(&original));

    // Reused, then the first capture comes after edge writes and growth: every page once.
    for seed in 1..=8u64 {
        let mut mem = Mem::new(3);
        mem.data().copy_from_slice(&original);
        let mut tracker = PageTracker::sharing(&first, mem.view());
        let mut rng = Rng(seed);
        let edges = edges();
        for _ in 0..seed {
            attack_step(&mut mem, &mut rng, &edges);
        }
        let memory = mem.view().to_vec();
        let capture = tracker.capture(mem.view());
        // Another run stored the fresh image already: the changed pages, whose bases are
        // the fresh pages this tracker never reported, are stored as differences on them.
        let mut store = Store::default();
        for page in original.chunks(PAGE_SIZE) {
            store
                .0
                .insert(Digest::of(domain::PAGE, page), page_store::pack(page, None));
        }
        check(
            &format!("late first seed {seed}"),
            &capture,
            &memory,
            None,
            &mut store,
        );
        let indices: Vec<usize> = capture.changed.iter().map(|p| p.index).collect();
        assert_eq!(indices, (0..memory.len() / PAGE_SIZE).collect::<Vec<_>>());
        // And on after that.
        let mut before = memory;
        for step in 0..20 {
            attack_step(&mut mem, &mut rng, &edges);
            let memory = mem.view().to_vec();
            let capture = tracker.capture(mem.view());
            check(
                &format!("reused seed {seed} step {step}"),
                &capture,
                &memory,
                Some(&before),
                &mut store,
            );
            before = memory;
        }
    }
    assert!(first.0.get().expect("filled").holds(&original));
}

/// Many runs of one agent at once, on threads, sharing one first image (the first filled
/// concurrently): no run's captures see another's writes or a wrong digest.
#[test]
fn concurrent_runs_sharing_a_first_image() {
    let first = Arc::new(FirstImage::default());
    let mut rng = Rng(42);
    let original: Arc<Vec<u8>> =
        Arc::new((0..4 * PAGE_SIZE).map(|_| (rng.next() % 7) as u8).collect());
    let threads: Vec<_> = (0..6u64)
        .map(|t| {
            let first = Arc::clone(&first);
            let original = Arc::clone(&original);
            std::thread::spawn(move || {
                for round in 0..3u64 {
                    let mut mem = Mem::new(4);
                    mem.data().copy_from_slice(&original);
                    let mut tracker = PageTracker::sharing(&first, mem.view());
                    let mut rng = Rng(t * 1000 + round + 1);
                    let edges = edges();
                    let mut store = Store::default();
                    let mut before: Option<Vec<u8>> = None;
                    for step in 0..15 {
                        if step > 0 {
                            attack_step(&mut mem, &mut rng, &edges);
                        }
                        let memory = mem.view().to_vec();
                        let capture = tracker.capture(mem.view());
                        check(
                            &format!("thread {t} round {round} step {step}"),
                            &capture,
                            &memory,
                            before.as_deref(),
                            &mut store,
                        );
                        before = Some(memory);
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("thread");
    }
    assert!(first.0.get().expect("filled").holds(&original));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::test_support::cases(64)))]

    /// Arbitrary edits (each a run of bytes somewhere in a plain buffer) over a
    /// compare-all tracker, captures kept or dropped at random: every capture exact, every
    /// stored delta unpacks.
    #[test]
    fn arbitrary_edits_over_plain_buffers(
        pages in 1usize..4,
        steps in proptest::collection::vec(
            (proptest::collection::vec((any::<u32>(), 1usize..300, any::<u8>()), 0..6), any::<bool>(), 0u8..3),
            1..12,
        ),
    ) {
        let mut memory = vec![0u8; pages * PAGE_SIZE];
        let mut tracker = PageTracker::comparing_all();
        let mut store = Store::default();
        let mut kept = Vec::new();
        let mut before: Option<Vec<u8>> = None;
        for (edits, keep, grow) in steps {
            for (at, len, value) in edits {
                let at = at as usize % memory.len();
                let end = (at + len).min(memory.len());
                memory[at..end].fill(value);
            }
            if grow == 2 {
                memory.extend(vec![0u8; PAGE_SIZE]);
            }
            let capture = tracker.capture(&memory);
            check("proptest", &capture, &memory, before.as_deref(), &mut store);
            if keep { kept.push(capture) } else { kept.clear() }
            before = Some(memory.clone());
        }
    }
}

/// A memory whose length is not a whole number of pages (a page shorter than 64 KiB):
/// changed in place, then grown so that the short page becomes whole.
///
/// Wasm memories in Warden are whole 64 KiB pages (custom page sizes are not enabled), so
/// this is reachable only through the crate-internal API (`PageTracker::capture` on an
/// arbitrary slice, e.g. the benches' `internals`); the old code compared such a page
/// whole.
#[test]
fn a_short_last_page_that_becomes_whole() {
    let mut tracker = PageTracker::comparing_all();
    let mut store = Store::default();
    let mut memory = vec![3u8; 2 * PAGE_SIZE + PAGE_SIZE / 2];
    let c = tracker.capture(&memory);
    check("short", &c, &memory, None, &mut store);
    let before = memory.clone();
    memory[2 * PAGE_SIZE + 7] = 9;
    let c = tracker.capture(&memory);
    check("short changed", &c, &memory, Some(&before), &mut store);
    let before = memory.clone();
    memory.resize(3 * PAGE_SIZE, 3);
    let c = tracker.capture(&memory);
    check("short grown whole", &c, &memory, Some(&before), &mut store);
}

/// A short last page changed in place with no growth: rehashed whole, correctly.
#[test]
fn a_short_last_page_changed_in_place() {
    let mut tracker = PageTracker::comparing_all();
    let mut store = Store::default();
    let mut memory = vec![3u8; PAGE_SIZE + 1000];
    let c = tracker.capture(&memory);
    check("short", &c, &memory, None, &mut store);
    for at in [PAGE_SIZE, PAGE_SIZE + 999, 5] {
        let before = memory.clone();
        memory[at] ^= 0xff;
        let c = tracker.capture(&memory);
        check(
            &format!("short at {at}"),
            &c,
            &memory,
            Some(&before),
            &mut store,
        );
    }
}
