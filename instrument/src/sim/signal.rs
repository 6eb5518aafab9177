//! The ground-truth power signal of the simulated GPU, on a fine grid.

use super::gpu::GpuModel;
use super::schedule::Scheduled;

/// Ground-truth power on a grid of `cell_ns` cells: each cell holds the exact mean power of
/// its interval, so integrals over cell boundaries are exact.
#[derive(Debug, Clone)]
pub struct PowerSignal {
    /// Width of one cell, ns.
    pub cell_ns: u64,
    /// Mean true power of each cell, mW.
    pub power_mw: Vec<f64>,
    /// Mean dynamic power of the work in each cell (without idle and thermal tail), mW.
    pub dynamic_mw: Vec<f64>,
    /// Idle power, mW.
    pub idle_mw: f64,
    /// Energy from time 0 to the start of each cell, mJ (one more entry than cells).
    cumulative_mj: Vec<f64>,
}

impl PowerSignal {
    /// Build the signal: idle + the dynamic power of every span + the thermal tail.
    pub(crate) fn build(
        spans: &[Scheduled],
        total_ns: u64,
        gpu: &GpuModel,
        cell_ns: u64,
    ) -> (Self, f64) {
        let cells = (total_ns / cell_ns + 1) as usize;
        let mut dynamic = vec![0.0f64; cells];
        for s in spans
            .iter()
            .filter(|s| s.dynamic_mw > 0 && s.end_ns > s.start_ns)
        {
            let (first, last) = (
                (s.start_ns / cell_ns) as usize,
                ((s.end_ns - 1) / cell_ns) as usize,
            );
            for (k, d) in dynamic
                .iter_mut()
                .enumerate()
                .take(last.min(cells - 1) + 1)
                .skip(first)
            {
                let lo = (k as u64 * cell_ns).max(s.start_ns);
                let hi = ((k as u64 + 1) * cell_ns).min(s.end_ns);
                *d += f64::from(s.dynamic_mw) * (hi - lo) as f64 / cell_ns as f64;
            }
        }
        let alpha = 1.0 - (-(cell_ns as f64) / gpu.thermal_tau_ns.max(1) as f64).exp();
        let mut theta = 0.0;
        let mut thermal_mj = 0.0;
        let cell_s = cell_ns as f64 * 1e-9;
        let power_mw: Vec<f64> = dynamic
            .iter()
            .map(|&d| {
                theta += (gpu.thermal_gain * d - theta) * alpha;
                thermal_mj += theta * cell_s;
                f64::from(gpu.idle_mw) + d + theta
            })
            .collect();
        let mut cumulative_mj = Vec::with_capacity(cells + 1);
        let mut acc = 0.0;
        cumulative_mj.push(0.0);
        for p in &power_mw {
            acc += p * cell_s;
            cumulative_mj.push(acc);
        }
        (
            Self {
                cell_ns,
                power_mw,
                dynamic_mw: dynamic,
                idle_mw: f64::from(gpu.idle_mw),
                cumulative_mj,
            },
            thermal_mj,
        )
    }

    /// True energy above idle of one span running at `dynamic_mw` over [`start_ns`, `end_ns`]
    /// (relative): its own dynamic energy plus the thermal leakage in those cells, shared among
    /// the spans running there in proportion to their dynamic power, mJ.
    pub fn above_idle_mj(&self, start_ns: u64, end_ns: u64, dynamic_mw: f64) -> f64 {
        if end_ns <= start_ns || dynamic_mw <= 0.0 {
            return 0.0;
        }
        let last =
            (((end_ns - 1) / self.cell_ns) as usize).min(self.power_mw.len().saturating_sub(1));
        (((start_ns / self.cell_ns) as usize)..=last)
            .filter(|&k| self.dynamic_mw[k] > 0.0)
            .map(|k| {
                let lo = (k as u64 * self.cell_ns).max(start_ns);
                let hi = ((k as u64 + 1) * self.cell_ns).min(end_ns);
                let own_mj = dynamic_mw * (hi - lo) as f64 * 1e-9;
                own_mj * (self.power_mw[k] - self.idle_mw) / self.dynamic_mw[k]
            })
            .sum()
    }

    /// Exact true energy from time 0 to `t_ns` (relative), mJ.
    pub fn energy_mj(&self, t_ns: u64) -> f64 {
        let k = (t_ns / self.cell_ns) as usize;
        if k >= self.power_mw.len() {
            return self.cumulative_mj.last().copied().unwrap_or(0.0);
        }
        let frac_s = (t_ns - k as u64 * self.cell_ns) as f64 * 1e-9;
        self.cumulative_mj[k] + self.power_mw[k] * frac_s
    }

    /// Mean true power over [`t0_ns`, `t1_ns`] (relative), mW.
    pub fn mean_mw(&self, t0_ns: u64, t1_ns: u64) -> f64 {
        if t1_ns <= t0_ns {
            return self.at_mw(t0_ns);
        }
        (self.energy_mj(t1_ns) - self.energy_mj(t0_ns)) / ((t1_ns - t0_ns) as f64 * 1e-9)
    }

    /// True power at `t_ns` (relative), mW.
    pub fn at_mw(&self, t_ns: u64) -> f64 {
        let k = ((t_ns / self.cell_ns) as usize).min(self.power_mw.len().saturating_sub(1));
        self.power_mw.get(k).copied().unwrap_or(0.0)
    }

    /// The signal seen through a first-order response of time constant `tau_ns`, per cell.
    pub fn smoothed_mw(&self, tau_ns: u64) -> Vec<f64> {
        let alpha = 1.0 - (-(self.cell_ns as f64) / tau_ns.max(1) as f64).exp();
        let mut y = self.power_mw.first().copied().unwrap_or(0.0);
        self.power_mw
            .iter()
            .map(|&p| {
                y += (p - y) * alpha;
                y
            })
            .collect()
    }
}
