//! Random workloads for accuracy checks: 1–64 signatures of 10 µs to 2 s kernels, random
//! gaps, 1–4 streams. Every draw comes from the seed, so a failing seed reproduces.

use super::rng::SimRng;
use super::workload::{KernelSpec, WorkItem, Workload};
use crate::trace::{LaunchShape, OpClass};

/// Shortest kernel of a short signature, ns.
pub const SHORT_MIN_NS: u64 = 10_000;
/// Longest kernel of a short signature, ns.
pub const SHORT_MAX_NS: u64 = 20_000_000;
/// Shortest kernel of a long signature, ns.
pub const LONG_MIN_NS: u64 = 100_000_000;
/// Longest kernel of a long signature, ns.
pub const LONG_MAX_NS: u64 = 2_000_000_000;

/// One kernel signature of a random workload.
struct Sig {
    name: String,
    duration_ns: u64,
    dynamic_mw: u32,
    stream: u32,
    grid: u32,
    long: bool,
}

fn log_uniform(rng: &mut SimRng, lo: u64, hi: u64) -> u64 {
    (rng.uniform((lo as f64).ln(), (hi as f64).ln())).exp() as u64
}

/// A random workload from `seed`: a quarter of the signatures long (100 ms–2 s, a few
/// launches each), the rest short (10 µs–20 ms, 200–400 launches each in bursts), dynamic
/// power 20–550 W, on 1–4 streams, with random gaps and occasional syncs.
pub fn random_workload(seed: u64) -> Workload {
    let mut rng = SimRng::new(seed ^ 0x0005_eed0_fa11);
    let n_sigs = 1 + (rng.next_u64() % 64) as usize;
    let streams = 1 + (rng.next_u64() % 4) as u32;
    let sigs: Vec<Sig> = (0..n_sigs)
        .map(|i| {
            let long = rng.unit() < 0.25;
            let duration_ns = if long {
                log_uniform(&mut rng, LONG_MIN_NS, LONG_MAX_NS)
            } else {
                log_uniform(&mut rng, SHORT_MIN_NS, SHORT_MAX_NS)
            };
            Sig {
                name: format!("k{i:02}_{}", if long { "long" } else { "short" }),
                duration_ns,
                dynamic_mw: rng.uniform(20_000.0, 550_000.0) as u32,
                stream: (rng.next_u64() % u64::from(streams)) as u32,
                grid: 1 + (rng.next_u64() % 528) as u32,
                long,
            }
        })
        .collect();
    // Launches left per signature; short ones come in bursts.
    let mut left: Vec<u32> = sigs
        .iter()
        .map(|s| {
            if s.long {
                1 + (rng.next_u64() % 3) as u32
            } else {
                200 + (rng.next_u64() % 200) as u32
            }
        })
        .collect();
    // Keep the run near a minute of busy time at most: trim the long-kernel launches first.
    let busy = |left: &[u32]| -> u64 {
        sigs.iter()
            .zip(left)
            .map(|(s, &n)| s.duration_ns * u64::from(n))
            .sum()
    };
    while busy(&left) > 60_000_000_000 {
        match (0..sigs.len())
            .filter(|&i| left[i] > 1)
            .max_by_key(|&i| sigs[i].duration_ns * u64::from(left[i]))
        {
            Some(i) => left[i] = left[i] * 2 / 3,
            None => break,
        }
    }
    let mut items = Vec::new();
    loop {
        let live: Vec<usize> = (0..sigs.len()).filter(|&i| left[i] > 0).collect();
        if live.is_empty() {
            break;
        }
        let i = live[(rng.next_u64() % live.len() as u64) as usize];
        let s = &sigs[i];
        let count = if s.long {
            1
        } else {
            left[i].min(1 + (rng.next_u64() % 40) as u32)
        };
        left[i] -= count;
        items.push(WorkItem::Kernel(KernelSpec {
            name: s.name.clone(),
            op_class: OpClass::Unknown,
            stream: s.stream,
            duration_ns: s.duration_ns,
            dynamic_mw: s.dynamic_mw,
            launch: LaunchShape {
                grid: [s.grid, 1, 1],
                block: [256, 1, 1],
                shared_mem_bytes: 0,
            },
            region: format!(
                "stream{}/{}",
                s.stream,
                if s.long { "long" } else { "short" }
            ),
            count,
            gap_ns: 3_000 + rng.next_u64() % 20_000,
        }));
        let r = rng.unit();
        if r < 0.3 {
            items.push(WorkItem::Gap {
                stream: s.stream,
                duration_ns: log_uniform(&mut rng, 10_000, 50_000_000),
            });
        } else if r < 0.35 {
            items.push(WorkItem::Sync {
                host_ns: log_uniform(&mut rng, 10_000, 100_000_000),
                lead_ns: 0,
            });
        }
    }
    Workload {
        name: format!("random mix {seed}: {n_sigs} signatures on {streams} streams"),
        lead_idle_ns: 2_000_000_000,
        tail_idle_ns: 1_500_000_000,
        items,
    }
}
