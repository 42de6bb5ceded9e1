//! Which pages of guest memory were written since the last capture, asked of the kernel
//! instead of found by comparing the whole image with the previous one.
//!
//! Linux 6.7 and later can write-protect a memory range with a userfaultfd in
//! asynchronous mode (`UFFD_FEATURE_WP_ASYNC`): a write to a protected page is reported to
//! no one, the kernel only lifts the page's protection. `PAGEMAP_SCAN` on
//! `/proc/self/pagemap` then lists the pages whose protection was lifted and protects them
//! again, in one call. Tracking belongs to one memory range, so each run of a process
//! tracks its own memory (the kernel's soft-dirty bits, by contrast, are cleared for the
//! whole process at once).
//!
//! Invariant: the 4 KiB blocks [`WriteTracker::take_written`] reports include every block
//! written since the previous call, whoever wrote it: the guest, the host through its
//! accessor, or the kernel on the process's behalf (a `read` into guest memory). It may
//! report more (a block read before it was first written, a block written back to its old
//! content): the caller compares those. Whenever the kernel cannot vouch for the range (the tracker
//! could not be set up, the memory moved, the scan found an unprotected page, any error),
//! it answers `None`, and the caller compares the whole image instead. Nothing the guest
//! can write is consulted.
//!
//! Assumptions: nothing discards pages of live guest memory (`madvise(MADV_DONTNEED)` or
//! `MADV_FREE`), which would turn a written page back into a never-written one (wasmtime
//! does that only when an instance is torn down, and every execution has its own
//! tracker); nothing writes guest memory without a page fault (pages pinned for direct or
//! asynchronous I/O: Warden does neither); and a tracker is used by the process that
//! started it (each opens its own `/proc/self/pagemap`, which names the address space of
//! the process that opened it, so a tracker carried across `fork` answers for the parent).
//!
//! Asking for the written bit alone takes a kernel fast path that, before "fs/proc/
//! task_mmu: Fix uffd-wp confusion in pagemap_scan_pmd_entry()" (April 2024), read a
//! swapped-out or migrating page's swap offset as its write-protect bit and could skip a
//! written page. On kernels before 6.10 (which surely has the fix) the scan also asks
//! whether each page is swapped out, which keeps it off that path (and makes the walk
//! about twice as slow: 0.42 ms against 0.19 ms for 256 MiB here).

#[cfg(target_os = "linux")]
pub(crate) use linux::WriteTracker;
#[cfg(not(target_os = "linux"))]
pub(crate) use other::WriteTracker;

#[cfg(target_os = "linux")]
#[allow(
    unsafe_code,
    reason = "userfaultfd and PAGEMAP_SCAN are ioctls on raw structs"
)]
mod linux {
    use std::fs::File;
    use std::os::fd::{AsFd, OwnedFd};

    use linux_raw_sys::general::{
        PAGE_IS_SWAPPED, PAGE_IS_WPALLOWED, PAGE_IS_WRITTEN, PM_SCAN_CHECK_WPASYNC,
        PM_SCAN_WP_MATCHING, UFFD_API, UFFD_FEATURE_WP_ASYNC, UFFD_FEATURE_WP_UNPOPULATED,
        UFFD_USER_MODE_ONLY, UFFDIO_REGISTER_MODE_WP, page_region, pm_scan_arg, uffdio_api,
        uffdio_range, uffdio_register,
    };
    use rustix::ioctl::{Opcode, Updater, ioctl, opcode};
    use rustix::mm::{UserfaultfdFlags, userfaultfd};

    use crate::checkpoint::{BLOCK, BLOCKS, PAGE_SIZE};

    const UFFDIO_API: Opcode = linux_raw_sys::ioctl::UFFDIO_API as Opcode;
    const UFFDIO_REGISTER: Opcode = linux_raw_sys::ioctl::UFFDIO_REGISTER as Opcode;
    /// `_IOWR('f', 16, struct pm_scan_arg)` (linux/fs.h).
    const PAGEMAP_SCAN: Opcode = opcode::read_write::<pm_scan_arg>(b'f', 16);
    /// Regions returned by one scan; a scan with more written ranges continues.
    const REGIONS: usize = 256;

    /// What a scan asks the kernel to report of each written page: see the module's
    /// documentation. Read once per process from `/proc/sys/kernel/osrelease`.
    fn return_mask() -> u64 {
        static MASK: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        *MASK.get_or_init(|| {
            let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
            let mut numbers = release
                .split(|c: char| !c.is_ascii_digit())
                .map(|n| n.parse::<u32>().unwrap_or(0));
            let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
            if version >= (6, 10) {
                u64::from(PAGE_IS_WRITTEN)
            } else {
                u64::from(PAGE_IS_WRITTEN | PAGE_IS_SWAPPED)
            }
        })
    }

    /// Write tracking of one memory range (see the module's documentation).
    #[derive(Debug)]
    pub(crate) struct WriteTracker {
        uffd: OwnedFd,
        /// `/proc/self/pagemap` of the process that started tracking.
        pagemap: File,
        /// Address of the range's first byte.
        start: usize,
        /// Bytes tracked from `start`.
        len: usize,
    }

    impl WriteTracker {
        /// Starts tracking `memory`: from now on every write to it is seen. `None` where
        /// the kernel cannot (before 6.7, userfaultfd not permitted, memory not
        /// page-aligned).
        pub(crate) fn start(memory: &[u8]) -> Option<WriteTracker> {
            // An unaligned range (not a linear memory) is refused by UFFDIO_REGISTER.
            let start = memory.as_ptr() as usize;
            let pagemap = File::open("/proc/self/pagemap").ok()?;
            // SAFETY: the descriptor only ever write-protects in asynchronous mode: a
            // write is never blocked or reported, it only lifts the page's protection.
            let uffd = unsafe {
                userfaultfd(
                    UserfaultfdFlags::CLOEXEC
                        | UserfaultfdFlags::NONBLOCK
                        | UserfaultfdFlags::from_bits_retain(UFFD_USER_MODE_ONLY),
                )
            }
            .ok()?;
            let wanted = u64::from(UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED);
            let mut api = uffdio_api {
                api: u64::from(UFFD_API),
                features: wanted,
                ioctls: 0,
            };
            // SAFETY: UFFDIO_API reads and writes a `uffdio_api`.
            unsafe { ioctl(&uffd, Updater::<UFFDIO_API, uffdio_api>::new(&mut api)) }.ok()?;
            if api.features & wanted != wanted {
                return None;
            }
            let mut tracker = WriteTracker {
                uffd,
                pagemap,
                start,
                len: 0,
            };
            tracker.extend(memory).then_some(tracker)
        }

        /// Tracks the part of `memory` past what is tracked already (after `memory.grow`),
        /// protected from now on. False if it cannot: stop using this tracker.
        pub(crate) fn extend(&mut self, memory: &[u8]) -> bool {
            if memory.as_ptr() as usize != self.start || memory.len() < self.len {
                return false;
            }
            if memory.len() == self.len {
                return true;
            }
            let mut register = uffdio_register {
                range: uffdio_range {
                    start: (self.start + self.len) as u64,
                    len: (memory.len() - self.len) as u64,
                },
                mode: u64::from(UFFDIO_REGISTER_MODE_WP),
                ioctls: 0,
            };
            // SAFETY: UFFDIO_REGISTER reads and writes a `uffdio_register`; the range is
            // `memory`'s, which this process maps.
            let registered = unsafe {
                ioctl(
                    &self.uffd,
                    Updater::<UFFDIO_REGISTER, uffdio_register>::new(&mut register),
                )
            };
            if registered.is_err() {
                return false;
            }
            let from = self.len;
            self.len = memory.len();
            // A newly registered range is unprotected: protect it, ignoring what it says;
            // then the kernel must say that the whole range, as one, is tracked this way.
            self.scan(from, |_, _| {}) && self.whole_range_tracked()
        }

        /// Whether the kernel reports the whole tracked range, as one region, as
        /// registered for asynchronous write protection: not another process's address
        /// space, no gap, no part left unregistered.
        fn whole_range_tracked(&self) -> bool {
            let mut region = [page_region {
                start: 0,
                end: 0,
                categories: 0,
            }; 2];
            let (start, end) = (self.start as u64, (self.start + self.len) as u64);
            let mask = u64::from(PAGE_IS_WPALLOWED);
            self.pagemap_scan(start, end, 0, (mask, mask), &mut region) == Some(end)
                && region[0].start == start
                && region[0].end == end
                && region[1].end == 0
        }

        /// One `PAGEMAP_SCAN` of `start..end` with `flags`, pages in the categories of
        /// `masks.0`, reporting the categories of `masks.1`, into `regions` (cleared
        /// first: the regions written end at the first with `end == 0`). Returns where
        /// the walk ended, `None` on error.
        fn pagemap_scan(
            &self,
            start: u64,
            end: u64,
            flags: u32,
            masks: (u64, u64),
            regions: &mut [page_region],
        ) -> Option<u64> {
            for region in regions.iter_mut() {
                region.end = 0;
            }
            let mut arg = pm_scan_arg {
                size: size_of::<pm_scan_arg>() as u64,
                flags: u64::from(flags),
                start,
                end,
                walk_end: 0,
                vec: regions.as_mut_ptr() as u64,
                vec_len: regions.len() as u64,
                max_pages: 0,
                category_inverted: 0,
                category_mask: masks.0,
                category_anyof_mask: 0,
                return_mask: masks.1,
            };
            // SAFETY: PAGEMAP_SCAN reads and writes a `pm_scan_arg` and writes at most
            // `vec_len` regions to `vec`, which `regions` holds; without
            // `PM_SCAN_WP_MATCHING` it changes no protection.
            let scanned = unsafe {
                ioctl(
                    self.pagemap.as_fd(),
                    Updater::<PAGEMAP_SCAN, pm_scan_arg>::new(&mut arg),
                )
            };
            scanned.ok().map(|()| arg.walk_end)
        }

        /// The 64 KiB pages of `memory` written since the last call (or since tracking
        /// began), in increasing order, each with the mask of its [`BLOCK`]s written (bit
        /// `i`: bytes `i * BLOCK..(i + 1) * BLOCK` of the page), and protects them again.
        /// `None` if the kernel cannot tell (the caller must compare everything; the
        /// tracker is then useless). Pages past the tracked length (memory grown since)
        /// are not included.
        pub(crate) fn take_written(&mut self, memory: &[u8]) -> Option<Vec<(usize, u16)>> {
            if memory.as_ptr() as usize != self.start || memory.len() < self.len {
                return None;
            }
            let mut written: Vec<(usize, u16)> = Vec::new();
            let scanned = self.scan(0, |from, to| {
                for block in from / BLOCK..to.div_ceil(BLOCK) {
                    let (page, bit) = (block * BLOCK / PAGE_SIZE, 1 << (block % BLOCKS));
                    match written.last_mut() {
                        Some((last, mask)) if *last == page => *mask |= bit,
                        _ => written.push((page, bit)),
                    }
                }
            });
            scanned.then_some(written)
        }

        /// Scans the tracked range from byte `from` to its end, calling `found` with each
        /// written range (byte offsets, in order) and protecting it again. False on error,
        /// including an unprotected page (`PM_SCAN_CHECK_WPASYNC`: the range is not, or no
        /// longer, registered with this kind of tracking).
        fn scan(&self, from: usize, mut found: impl FnMut(usize, usize)) -> bool {
            let end = (self.start + self.len) as u64;
            let mut next = (self.start + from) as u64;
            let mut regions = [page_region {
                start: 0,
                end: 0,
                categories: 0,
            }; REGIONS];
            while next < end {
                let walk_end = self.pagemap_scan(
                    next,
                    end,
                    PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
                    (u64::from(PAGE_IS_WRITTEN), return_mask()),
                    &mut regions,
                );
                let Some(walk_end) = walk_end.filter(|&w| w > next && w <= end) else {
                    return false;
                };
                for region in regions.iter().take_while(|region| region.end != 0) {
                    if region.start < next || region.end > walk_end {
                        return false;
                    }
                    found(
                        (region.start - self.start as u64) as usize,
                        (region.end - self.start as u64) as usize,
                    );
                }
                next = walk_end;
            }
            true
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod other {
    /// No write tracking on this platform: every capture compares the whole image.
    #[derive(Debug)]
    pub(crate) enum WriteTracker {}

    impl WriteTracker {
        pub(crate) fn start(_memory: &[u8]) -> Option<WriteTracker> {
            None
        }

        pub(crate) fn extend(&mut self, _memory: &[u8]) -> bool {
            match *self {}
        }

        pub(crate) fn take_written(&mut self, _memory: &[u8]) -> Option<Vec<(usize, u16)>> {
            match *self {}
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::WriteTracker;
    use crate::checkpoint::{BLOCK, PAGE_SIZE};

    /// Reports exactly the pages written, each once per write, and nothing when nothing was.
    #[test]
    fn reports_the_pages_written_and_only_those() {
        let engine = crate::engine::engine().expect("engine");
        let mut store = wasmtime::Store::new(engine, ());
        let memory =
            wasmtime::Memory::new(&mut store, wasmtime::MemoryType::new(8, None)).expect("memory");
        let Some(mut tracker) = start(memory.data(&store)) else {
            return;
        };
        assert_eq!(tracker.take_written(memory.data(&store)), Some(vec![]));
        let data = memory.data_mut(&mut store);
        data[3 * PAGE_SIZE + 100] = 1;
        data[7 * PAGE_SIZE - 1] = 1;
        data[7 * PAGE_SIZE + 5 * BLOCK] = 1;
        data[7 * PAGE_SIZE + 6 * BLOCK + 9] = 1;
        let written = vec![(3, 1), (6, 1 << 15), (7, 1 << 5 | 1 << 6)];
        assert_eq!(tracker.take_written(memory.data(&store)), Some(written));
        assert_eq!(tracker.take_written(memory.data(&store)), Some(vec![]));
        // Read-only access is not a write.
        let sum: u64 = memory.data(&store).iter().map(|&b| u64::from(b)).sum();
        assert_eq!(sum, 4);
        assert_eq!(tracker.take_written(memory.data(&store)), Some(vec![]));
        memory.grow(&mut store, 2).expect("grow");
        assert!(tracker.extend(memory.data(&store)));
        memory.data_mut(&mut store)[9 * PAGE_SIZE] = 1;
        assert_eq!(
            tracker.take_written(memory.data(&store)),
            Some(vec![(9, 1)])
        );
        // Another range than the one tracked: the tracker cannot vouch for it.
        let other = vec![0u8; 10 * PAGE_SIZE];
        assert_eq!(tracker.take_written(&other), None);
    }

    /// A tracker, or `None` (skipping the test) where the kernel has none; with
    /// `WARDEN_EXPECT_WRITE_TRACKING` set, a kernel without it fails the test instead.
    fn start(memory: &[u8]) -> Option<WriteTracker> {
        let tracker = WriteTracker::start(memory);
        if tracker.is_none() {
            assert!(
                std::env::var_os("WARDEN_EXPECT_WRITE_TRACKING").is_none(),
                "no kernel write tracking here"
            );
            eprintln!("no kernel write tracking here");
        }
        tracker
    }

    /// More written ranges than one scan returns (256 regions): the scan goes on from
    /// where the kernel stopped, and every page written is reported, once.
    #[test]
    fn more_written_ranges_than_one_scan_holds() {
        let engine = crate::engine::engine().expect("engine");
        let mut store = wasmtime::Store::new(engine, ());
        let memory =
            wasmtime::Memory::new(&mut store, wasmtime::MemoryType::new(64, None)).expect("memory");
        let Some(mut tracker) = start(memory.data(&store)) else {
            return;
        };
        assert_eq!(tracker.take_written(memory.data(&store)), Some(vec![]));
        let pages: Vec<usize> = (0..64).filter(|page| page % 3 != 1).collect();
        let data = memory.data_mut(&mut store);
        // Every other 4 KiB of each page: 8 separate ranges per page, 344 in all.
        for page in &pages {
            for block in (0..PAGE_SIZE).step_by(2 * BLOCK) {
                data[page * PAGE_SIZE + block] = 1;
            }
        }
        let written = pages.iter().map(|&page| (page, 0x5555)).collect();
        assert_eq!(tracker.take_written(memory.data(&store)), Some(written));
        assert_eq!(tracker.take_written(memory.data(&store)), Some(vec![]));
    }
}
