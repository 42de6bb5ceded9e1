//! Checkpoint cost: a step that dirtied k pages of an M MiB memory, for k in {1, 16, 256}
//! and M in {1, 16, 256}. The capture compares each page with the previous image before
//! hashing, so its cost should follow k (the pages hashed and stored), with only a
//! memory-speed compare over M. The baseline in the same run hashes all of M, which is
//! what a capture without the comparison would cost.

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
        let pages = mib * 1024 * 1024 / PAGE_SIZE;
        let mut memory: Vec<u8> = (0..mib * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        group.throughput(Throughput::Bytes(memory.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("hash_all_pages", format!("{mib}MiB")),
            &mib,
            |b, _| {
                b.iter(|| {
                    memory
                        .chunks(PAGE_SIZE)
                        .map(|p| Digest::of(PAGE_DOMAIN, p))
                        .collect::<Vec<_>>()
                })
            },
        );
        for dirty in [1usize, 16, 256] {
            if dirty > pages {
                continue;
            }
            let mut tracker = BenchPages::default();
            tracker.capture(&memory);
            let mut round = 0u8;
            let mut stored = 0usize;
            group.bench_with_input(
                BenchmarkId::new(format!("dirty_{dirty}_pages"), format!("{mib}MiB")),
                &dirty,
                |b, &dirty| {
                    b.iter(|| {
                        round = round.wrapping_add(1);
                        // Spread the dirty pages over the whole memory.
                        for k in 0..dirty {
                            memory[(k * pages / dirty) * PAGE_SIZE + 7] = round;
                        }
                        let (pages, bytes) = tracker.capture(&memory);
                        stored = bytes;
                        pages
                    })
                },
            );
            assert_eq!(
                stored,
                dirty * PAGE_SIZE,
                "bytes stored follow the dirty pages"
            );
        }
    }
    group.finish();
}

criterion_group!(benches, checkpoint);
criterion_main!(benches);
