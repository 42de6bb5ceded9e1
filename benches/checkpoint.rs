//! Checkpoint cost: a step that dirtied k pages of an M MiB linear memory, one byte each,
//! for k in {0, 1, 16, 256} and M in {1, 16, 256}, then a capture (k = 0: the fixed cost);
//! and 16 pages written all over (`whole_16_pages`), which must be hashed whole. Two ways
//! of finding the changed pages, in the same run: `compare_all` compares every page with
//! the previous image (the fallback); `written_pages` asks the kernel which pages were
//! written (userfaultfd write protection and `PAGEMAP_SCAN`) and compares only those.
//! Either way only changed pages are hashed, and only around their changes (8 KiB
//! subtrees of the page's hash). The baseline hashes all of M, what a capture
//! without any comparison costs.

#![allow(
    clippy::expect_used,
    reason = "a benchmark that cannot set itself up should stop at once, saying where"
)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use warden::Digest;
use warden::internals::{BenchPages, PAGE_DOMAIN, PAGE_SIZE};

fn checkpoint(c: &mut Criterion) {
    let mut group = c.benchmark_group("checkpoint");
    group.sample_size(20);
    for mib in [1usize, 16, 256] {
        let bytes = mib * 1024 * 1024;
        let pages = bytes / PAGE_SIZE;
        let image: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_with_input(
            BenchmarkId::new("hash_all_pages", format!("{mib}MiB")),
            &mib,
            |b, _| {
                b.iter(|| {
                    image
                        .chunks(PAGE_SIZE)
                        .map(|p| Digest::of(PAGE_DOMAIN, p))
                        .collect::<Vec<_>>()
                })
            },
        );
        // (pages dirtied, whether each is written all over or in one byte)
        for (dirty, whole) in [
            (0usize, false),
            (1, false),
            (16, false),
            (256, false),
            (16, true),
        ] {
            if dirty > pages {
                continue;
            }
            for (name, compare_all) in [("compare_all", true), ("written_pages", false)] {
                let written = if whole { "whole" } else { "dirty" };
                let mut memory = BenchPages::new(bytes, compare_all);
                memory.memory().copy_from_slice(&image);
                memory.capture();
                eprintln!("{name}: change detection {}", memory.detection());
                let mut round = 0u8;
                // `None` when a filter on the command line skips this benchmark.
                let mut stored = None;
                group.bench_with_input(
                    BenchmarkId::new(
                        format!("{name}/{written}_{dirty}_pages"),
                        format!("{mib}MiB"),
                    ),
                    &dirty,
                    |b, &dirty| {
                        b.iter(|| {
                            round = round.wrapping_add(1);
                            // Spread the dirty pages over the whole memory.
                            let data = memory.memory();
                            for k in 0..dirty {
                                let at = (k * pages / dirty) * PAGE_SIZE;
                                match whole {
                                    true => data[at..at + PAGE_SIZE].fill(round),
                                    false => data[at + 7] = round,
                                }
                            }
                            let (pages, bytes) = memory.capture();
                            stored = Some(bytes);
                            pages
                        })
                    },
                );
                if let Some(stored) = stored {
                    assert_eq!(
                        stored,
                        dirty * PAGE_SIZE,
                        "bytes stored follow the dirty pages"
                    );
                }
            }
        }
    }
    group.finish();
}

criterion_group!(benches, checkpoint);
criterion_main!(benches);
