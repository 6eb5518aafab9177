//! What the simulated GPU runs: kernels, transfers, gaps and syncs on streams.

use serde::{Deserialize, Serialize};

use crate::trace::{CopyDirection, LaunchShape, OpClass};

/// A workload for the simulated GPU, in issue order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// Name shown as the run's command.
    pub name: String,
    /// Idle time before the first item, ns (the in-run idle baseline).
    pub lead_idle_ns: u64,
    /// Idle time after the last item, ns.
    pub tail_idle_ns: u64,
    /// The work, in issue order; each stream runs its items in order.
    pub items: Vec<WorkItem>,
}

/// One step of a workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WorkItem {
    /// A kernel launched `count` times back to back.
    Kernel(KernelSpec),
    /// The profiler replays the last launch of this kernel (same name and shape) `count`
    /// times back to back, alone, to measure its power: one [`SpanKind::Alone`] span.
    ///
    /// [`SpanKind::Alone`]: crate::trace::SpanKind::Alone
    Alone(KernelSpec),
    /// The profiler checkpoints device memory, replays the last launch of this kernel
    /// alone, and restores the memory, as `wattlens run --replay` does in an unmodified
    /// program: one [`SpanKind::Alone`] span inside a profiler episode.
    ///
    /// [`SpanKind::Alone`]: crate::trace::SpanKind::Alone
    Replay(ReplaySpec),
    /// A copy repeated `count` times.
    Transfer(TransferSpec),
    /// The stream idles for a while (host-side work before the next launch).
    Gap {
        /// Stream.
        stream: u32,
        /// Idle time, ns.
        duration_ns: u64,
    },
    /// From here on, issuing each launch or copy takes the host `issue_ns`, and the device
    /// can start it `latency_ns` after the call began: a host slower than the device leaves
    /// the device waiting for launches (a launch-bound program). Before any such item the
    /// host issues in no time, so the device runs everything back to back.
    HostCost {
        /// Host time one launch or copy call takes, ns.
        issue_ns: u64,
        /// From a call's start until the device can start its work, ns.
        latency_ns: u64,
    },
    /// The host waits for every stream, then works for `host_ns` before launching more.
    Sync {
        /// Host time after the wait, ns.
        host_ns: u64,
        /// How long before the device finished the host began waiting, ns (the wait's span
        /// starts that much earlier; the device's timeline is unchanged).
        #[serde(default)]
        lead_ns: u64,
    },
}

/// A kernel in a workload, with its true dynamic power (the simulator's ground truth).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelSpec {
    /// Kernel name.
    pub name: String,
    /// Operator class (becomes the kernel's facts in the trace).
    pub op_class: OpClass,
    /// Stream.
    pub stream: u32,
    /// Duration of one launch, ns.
    pub duration_ns: u64,
    /// True power above idle while it runs, mW.
    pub dynamic_mw: u32,
    /// Launch shape.
    pub launch: LaunchShape,
    /// Region path, components joined by '/', or empty.
    pub region: String,
    /// Launches back to back.
    pub count: u32,
    /// Gap between repeats, ns (launch latency).
    pub gap_ns: u64,
}

/// A kernel replay with a checkpoint around it ([`WorkItem::Replay`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplaySpec {
    /// The kernel replayed, `count` times back to back.
    pub kernel: KernelSpec,
    /// How long the checkpoint's save, and then its restore, each keep the device busy, ns.
    pub checkpoint_ns: u64,
    /// What the checkpoint's copies draw above idle, mW (no span explains it).
    pub checkpoint_mw: u32,
    /// The burst's power over the kernel's in place: a replay runs warm, its inputs in L2.
    pub warm_power_factor: f64,
}

/// A copy in a workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferSpec {
    /// Label.
    pub name: String,
    /// Stream.
    pub stream: u32,
    /// Direction.
    pub direction: CopyDirection,
    /// Bytes per copy.
    pub bytes: u64,
    /// Duration of one copy, ns.
    pub duration_ns: u64,
    /// True power above idle while it runs, mW.
    pub dynamic_mw: u32,
    /// Region path, or empty.
    pub region: String,
    /// Copies back to back.
    pub count: u32,
}

impl Workload {
    /// This workload with the first launch of each kernel signature preceded by a kernel
    /// replay of `burst_ns` inside a checkpoint of `checkpoint_ns` at `checkpoint_mw` each
    /// way, the burst drawing `warm_power_factor` times the kernel's power, as
    /// `wattlens run --replay` runs an unmodified program. `skip` names kernels left alone.
    pub fn with_replays(
        &self,
        burst_ns: u64,
        (checkpoint_ns, checkpoint_mw): (u64, u32),
        warm_power_factor: f64,
        skip: &[&str],
    ) -> Self {
        let mut seen = std::collections::HashSet::new();
        let mut items = Vec::with_capacity(self.items.len());
        for item in &self.items {
            if let WorkItem::Kernel(k) = item {
                if !skip.contains(&k.name.as_str()) && seen.insert((k.name.clone(), k.launch)) {
                    // Back to back through a graph: about 1.4 µs between launches.
                    let cycle = (k.duration_ns + 1_400).max(1);
                    let count = u32::try_from(burst_ns / cycle).unwrap_or(u32::MAX).max(1);
                    items.push(WorkItem::Replay(ReplaySpec {
                        kernel: KernelSpec {
                            count,
                            gap_ns: 1_400,
                            ..k.clone()
                        },
                        checkpoint_ns,
                        checkpoint_mw,
                        warm_power_factor,
                    }));
                }
            }
            items.push(item.clone());
        }
        Self {
            items,
            ..self.clone()
        }
    }

    /// This workload with the first launch of each kernel signature (name and launch shape)
    /// followed by a burst of `burst_ns` replaying it alone, as a profiling session that
    /// measures kernels alone runs it.
    pub fn with_alone_bursts(&self, burst_ns: u64) -> Self {
        let mut seen = std::collections::HashSet::new();
        let mut items = Vec::with_capacity(self.items.len());
        for item in &self.items {
            items.push(item.clone());
            if let WorkItem::Kernel(k) = item {
                if seen.insert((k.name.clone(), k.launch)) {
                    let cycle = (k.duration_ns + k.gap_ns).max(1);
                    let count = u32::try_from(burst_ns / cycle).unwrap_or(u32::MAX).max(1);
                    items.push(WorkItem::Alone(KernelSpec { count, ..k.clone() }));
                }
            }
        }
        Self {
            items,
            ..self.clone()
        }
    }
}
