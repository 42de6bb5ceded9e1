//! Unit tests of page capture and change detection.

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

/// Trackers sharing a first image: one over the same bytes takes it, and its first
/// capture equals a capture from nothing, whether it comes before any change or after
/// some; a later change does not alter the shared image; a tracker over other bytes
/// hashes them.
#[test]
fn a_first_image_is_reused_only_for_the_same_bytes() {
    let first = Arc::new(FirstImage::default());
    let memory: Vec<u8> = (0..3 * PAGE_SIZE).map(|i| (i % 253) as u8).collect();
    let mut changed = memory.clone();
    changed[PAGE_SIZE + 5] ^= 1;
    let fresh = PageTracker::default().capture(&memory);
    let fresh_changed = PageTracker::default().capture(&changed);
    let without_bases = |capture: Capture| {
        let pages = capture.changed.into_iter();
        let pages = pages.map(|page| (page.index, page.digest, page.bytes));
        (capture.pages, pages.collect::<Vec<_>>())
    };
    let filling = PageTracker::fresh(Arc::clone(&first)).capture(&memory);
    assert_eq!(filling.pages, fresh.pages);
    assert_eq!(filling.changed, fresh.changed);
    assert!(first.0.get().is_some(), "the first tracker fills it");
    let mut reusing = PageTracker::sharing(&first, &memory);
    let reused = reusing.capture(&memory);
    assert_eq!(reused.changed, fresh.changed);
    let next = reusing.capture(&changed);
    assert_eq!(next.pages, fresh_changed.pages);
    assert_eq!(next.changed.len(), 1);
    assert_eq!(next.changed[0].index, 1);
    let reused = PageTracker::sharing(&first, &memory).capture(&memory);
    assert_eq!(
        reused.changed, fresh.changed,
        "the shared image is unchanged"
    );
    // Changed before its first capture (a counterfactual's first checkpoint follows
    // its first step): every page still reported, the changed one hashed anew.
    let late = PageTracker::sharing(&first, &memory).capture(&changed);
    assert_eq!(without_bases(late), without_bases(fresh_changed));
    let fresh_changed = PageTracker::default().capture(&changed);
    let other = PageTracker::sharing(&first, &changed).capture(&changed);
    assert_eq!(other.changed, fresh_changed.changed);
}

/// After a restore the tracker knows digests but no hash trees: a page's first change
/// is hashed whole, the next ones where they differ; each changed page carries the
/// page it replaced.
#[test]
fn a_restored_tracker_hashes_changes_like_a_fresh_one() {
    let mut memory: Vec<u8> = (0..3 * PAGE_SIZE).map(|i| (i % 251) as u8).collect();
    let digests = memory
        .chunks(PAGE_SIZE)
        .map(|page| Digest::of(domain::PAGE, page))
        .collect();
    let mut tracker = PageTracker::primed(&memory, digests);
    for (step, at) in [PAGE_SIZE + 8_180, PAGE_SIZE + 8_177, 3 * PAGE_SIZE - 1, 0]
        .into_iter()
        .enumerate()
    {
        let before = memory[at / PAGE_SIZE * PAGE_SIZE..][..PAGE_SIZE].to_vec();
        memory[at] ^= 0xff;
        let capture = tracker.capture(&memory);
        let page = &memory[at / PAGE_SIZE * PAGE_SIZE..][..PAGE_SIZE];
        assert_eq!(capture.changed.len(), 1, "step {step}");
        let changed = &capture.changed[0];
        assert_eq!(
            changed.digest,
            Digest::of(domain::PAGE, page),
            "step {step}"
        );
        assert_eq!(&changed.bytes[..], page);
        let (base_digest, difference) = changed.base.as_ref().expect("a base");
        assert_eq!(*base_digest, Digest::of(domain::PAGE, &before));
        let xor: Vec<u8> = before.iter().zip(page).map(|(a, b)| a ^ b).collect();
        assert_eq!(difference.to_xor(PAGE_SIZE), xor);
    }
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

    /// Captures, and checks every digest against a plain hash of the page.
    fn capture(&mut self) -> (Vec<Digest>, Vec<Digest>) {
        let memory = self.memory.data(&self.store);
        let capture = self.tracker.capture(memory);
        let plain: Vec<Digest> = memory
            .chunks(PAGE_SIZE)
            .map(|page| Digest::of(domain::PAGE, page))
            .collect();
        assert_eq!(capture.pages, plain);
        for page in &capture.changed {
            assert_eq!(page.digest, Digest::of(domain::PAGE, &page.bytes));
        }
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
