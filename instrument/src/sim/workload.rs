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
