//! Host-side cost of recording one kernel launch, without the driver calls: site lookup,
//! scalar digest, buffer versions, the span record, and the CUPTI timer's bookkeeping.

#![allow(missing_docs, clippy::panic)] // a bench fails loudly on a broken setup

use std::sync::{Arc, Mutex};

use criterion::{criterion_group, criterion_main, Criterion};
use wattlens_instrument::clock::FakeClock;
use wattlens_instrument::trace::{AccessMode, LaunchShape, SpanKind, StrId};
use wattlens_runtime::internal::buffers::Touches;
use wattlens_runtime::internal::digest::{content_digest, ArgDigest, ContentHash, SAMPLE_BYTES};
use wattlens_runtime::internal::recorder::{OpDesc, Recorder};
use wattlens_runtime::internal::timing::fake::FakeGpu;
use wattlens_runtime::internal::timing::{CuptiTimer, Expect, OpTimer, StreamKey};

fn record_launch(c: &mut Criterion) {
    let clock = Arc::new(FakeClock::new(1_000_000));
    let rec = Arc::new(Mutex::new(Recorder::new(clock.clone())));
    let gpu = FakeGpu::new(clock.clone(), 0.0, 0);
    let mut timer = CuptiTimer::new(gpu, clock, 0).unwrap_or_else(|e| panic!("{e}"));
    let (a, b, out) = {
        let mut r = rec.lock().unwrap_or_else(|p| p.into_inner());
        (
            r.buffers.register(0, 1),
            r.buffers.register(0, 2),
            r.buffers.register(0, 3),
        )
    };
    let name = rec
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .intern("saxpy");
    let shape = LaunchShape {
        grid: [132, 1, 1],
        block: [256, 1, 1],
        shared_mem_bytes: 0,
    };
    let key = StreamKey {
        device: 0,
        ordinal: 0,
        raw: 7,
    };
    let kernel_name: Arc<str> = "saxpy".into();
    c.bench_function("record one launch (3 buffers, 2 scalars)", |bench| {
        bench.iter(|| {
            let here = std::panic::Location::caller();
            let mut digest = ArgDigest::new();
            digest.push(&2.5f32.to_le_bytes());
            digest.push(&(1u64 << 20).to_le_bytes());
            let mut r = rec.lock().unwrap_or_else(|p| p.into_inner());
            let site = r.site(here);
            let seq = r.issued() as u64;
            let _ = timer.before(&key, seq);
            let _ = timer.after(
                &key,
                seq,
                Expect::Kernel {
                    name: kernel_name.clone(),
                    shape,
                },
            );
            let mut touches = Touches::default();
            r.buffers.touch(a, AccessMode::Read, &mut touches);
            r.buffers.touch(b, AccessMode::Read, &mut touches);
            r.buffers.touch(out, AccessMode::Write, &mut touches);
            r.issue(OpDesc {
                device: 0,
                stream: 0,
                kind: SpanKind::Kernel,
                name,
                launch: Some(shape),
                args_digest: digest.finish(),
                touches,
                site: if site.is_some() { site } else { StrId::NONE },
                padding_op: None,
            })
        })
    });
}

/// What hashing copied content costs the thread that makes the copy: uploads hashed whole (the
/// runtime's limit is 1 MiB, the injection library's 260 KiB, what a sampled digest reads) and
/// a 64 MiB one from samples (the injection library hashes uploads on the program's thread).
fn content_digests(c: &mut Criterion) {
    let mut group = c.benchmark_group("content digest");
    for (label, bytes, mode) in [
        ("64 KiB, whole", 64 << 10, ContentHash::Sampled),
        ("260 KiB, whole", SAMPLE_BYTES, ContentHash::Sampled),
        ("1 MiB, whole", 1 << 20, ContentHash::Sampled),
        ("64 MiB, sampled", 64 << 20, ContentHash::Sampled),
    ] {
        let data: Vec<u8> = (0..bytes).map(|i: usize| (i * 31 % 251) as u8).collect();
        group.throughput(criterion::Throughput::Bytes(bytes as u64));
        group.bench_function(label, |bench| {
            bench.iter(|| content_digest(std::hint::black_box(&data), mode))
        });
    }
    group.finish();
}

criterion_group!(benches, record_launch, content_digests);
criterion_main!(benches);
