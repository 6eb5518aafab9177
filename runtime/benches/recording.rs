//! Host-side cost of recording one kernel launch, without the driver calls: site lookup,
//! scalar digest, buffer versions, the span record, and the CUPTI timer's bookkeeping.

#![allow(missing_docs, clippy::panic)] // a bench fails loudly on a broken setup

use std::sync::{Arc, Mutex};

use criterion::{criterion_group, criterion_main, Criterion};
use wattlens_instrument::clock::FakeClock;
use wattlens_instrument::trace::{AccessMode, LaunchShape, SpanKind, StrId};
use wattlens_runtime::buffers::Touches;
use wattlens_runtime::digest::ArgDigest;
use wattlens_runtime::recorder::{OpDesc, Recorder};
use wattlens_runtime::timing::fake::FakeGpu;
use wattlens_runtime::timing::{CuptiTimer, Expect, OpTimer, StreamKey};

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

criterion_group!(benches, record_launch);
criterion_main!(benches);
