//! What `wattlens compare` compares, and how a comparison is reported: the variants (wattlens'
//! own kernels), their batches on the trace clock, and the table and verdicts, for the GPU
//! ([`super::gpu`]) and the simulated GPU ([`super::sim`]) alike.

use std::io::Write;
use std::path::Path;

use serde::Serialize;
use wattlens_instrument::compare::{self, AccuracySample, VariantSummary};
use wattlens_instrument::repeat::{analyze, Batch, RepeatConfig};
use wattlens_instrument::trace::{SpanKind, Trace};
use wattlens_instrument::SensorProfile;
use wattlens_kernels::reference::AttnShape;

use crate::cli::CompareSet;
use crate::error::CliError;

/// The attention shape compared: GPT-2-small heads over 1024 tokens, causal.
pub const ATTN: AttnShape = AttnShape {
    b: 4,
    h: 12,
    l: 1024,
    d: 64,
    causal: true,
};

/// One kernel variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// fp32 matmul, 128×128 register tiles.
    MatmulF32,
    /// bf16 matmul on tensor cores (fp32 accumulate).
    MatmulBf16,
    /// int8 matmul (dp4a) with per-channel scales.
    MatmulInt8,
    /// Attention as three kernels (scores, softmax, P·V).
    AttnUnfused,
    /// Flash-style attention in one kernel.
    AttnFused,
}

impl Variant {
    /// The variants of `set`, in table order.
    pub fn of(set: CompareSet) -> Vec<Variant> {
        let matmul = [Variant::MatmulF32, Variant::MatmulBf16, Variant::MatmulInt8];
        let attention = [Variant::AttnUnfused, Variant::AttnFused];
        match set {
            CompareSet::Matmul => matmul.to_vec(),
            CompareSet::Attention => attention.to_vec(),
            CompareSet::All => matmul.iter().chain(&attention).copied().collect(),
        }
    }

    /// Label in tables, traces and verdicts.
    pub fn label(self) -> &'static str {
        match self {
            Variant::MatmulF32 => "matmul fp32",
            Variant::MatmulBf16 => "matmul bf16",
            Variant::MatmulInt8 => "matmul int8",
            Variant::AttnUnfused => "attention unfused",
            Variant::AttnFused => "attention fused",
        }
    }

    /// Operations of one launch: 2n³ for a matmul (int8 operations count as FLOPs), QKᵀ and
    /// P·V over the causal half for attention.
    pub fn flops(self, n: usize) -> f64 {
        match self {
            Variant::MatmulF32 | Variant::MatmulBf16 | Variant::MatmulInt8 => {
                2.0 * (n as f64).powi(3)
            }
            Variant::AttnUnfused | Variant::AttnFused => {
                let (bh, l, d) = ((ATTN.b * ATTN.h) as f64, ATTN.l as f64, ATTN.d as f64);
                2.0 * 2.0 * bh * l * l / 2.0 * d
            }
        }
    }

    /// The pairs a verdict is given for: (variant, baseline).
    pub fn pairs(set: &[Variant]) -> Vec<(Variant, Variant)> {
        [
            (Variant::MatmulBf16, Variant::MatmulF32),
            (Variant::MatmulInt8, Variant::MatmulBf16),
            (Variant::AttnFused, Variant::AttnUnfused),
        ]
        .into_iter()
        .filter(|(a, b)| set.contains(a) && set.contains(b))
        .collect()
    }

    /// The simulated GPU's model of one launch at size `n`: kernels as (name, duration ns,
    /// dynamic mW). Workload parameters of the simulator, not measurements.
    pub(super) fn sim_kernels(self, n: usize) -> Vec<(&'static str, u64, u32)> {
        let at = |tflops: f64| (self.flops(n) / (tflops * 1e12) * 1e9) as u64;
        match self {
            Variant::MatmulF32 => vec![("matmul_f32_reg", at(25.0), 330_000)],
            Variant::MatmulBf16 => vec![("matmul_bf16_tc", at(350.0), 420_000)],
            Variant::MatmulInt8 => vec![("matmul_int8_dp4a", at(40.0), 260_000)],
            Variant::AttnUnfused => {
                let t = at(4.0);
                vec![
                    ("attn_scores", t * 2 / 5, 250_000),
                    ("softmax_rows", t / 5, 180_000),
                    ("attn_pv", t * 2 / 5, 260_000),
                ]
            }
            Variant::AttnFused => vec![("attn_fused", at(9.0), 300_000)],
        }
    }
}

/// One variant as run: its batches on the trace clock and its accuracy trials.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Which variant.
    pub variant: Variant,
    /// Batches, with the start of the idle gap before each.
    pub batches: Vec<Batch>,
    /// Accuracy against fp64, when measured.
    pub accuracy: Option<AccuracySample>,
    /// True energy of one launch per batch (simulated GPU only), mJ.
    pub truth_mj: Option<f64>,
}

/// Region path of batch `k` of `variant`.
pub fn batch_region(variant: Variant, k: usize) -> String {
    format!("compare/{}/batch{k}", variant.label())
}

/// The batches of `variant` in `trace`: the kernel spans in each batch's region, `launches`
/// launches per batch (a launch may be several kernels), the idle gap before batch k starting
/// at `gap_start(k, first kernel's start)`. Batches with no timed kernel are left out.
pub fn batches_in(
    trace: &Trace,
    variant: Variant,
    (batches, launches): (usize, u64),
    gap_start: impl Fn(usize, u64) -> u64,
) -> Vec<Batch> {
    (0..batches)
        .filter_map(|k| {
            let region = trace.strings.find(&batch_region(variant, k))?;
            let spans: Vec<_> = trace
                .spans
                .iter()
                .filter(|s| s.kind == SpanKind::Kernel && s.region == region)
                .collect();
            let start_ns = spans.iter().map(|s| s.start_ns).min()?;
            Some(Batch {
                start_ns,
                end_ns: spans.iter().map(|s| s.end_ns).max()?,
                launches,
                gap_start_ns: gap_start(k, start_ns),
                kernel_ns: Some(spans.iter().map(|s| s.end_ns - s.start_ns).sum()),
            })
        })
        .collect()
}

/// Everything `compare` measured, as written to compare.json.
#[derive(Debug, Serialize)]
pub struct Comparison {
    /// GPU name.
    pub gpu: String,
    /// True on the simulated GPU.
    pub simulated: bool,
    /// Matmul size n.
    pub size: usize,
    /// Per variant.
    pub variants: Vec<VariantSummary>,
    /// True energy per launch (simulated GPU only), mJ, same order.
    pub truth_mj: Vec<Option<f64>>,
    /// One line per pair.
    pub verdicts: Vec<String>,
}

fn stat(s: &compare::Stat, scale: f64, digits: usize) -> String {
    format!(
        "{:.digits$} [{:.digits$}, {:.digits$}]",
        s.median * scale,
        s.low * scale,
        s.high * scale
    )
}

/// Analyse every variant from the trace's power readings, print the table and the verdicts,
/// and write compare.json.
///
/// # Errors
/// [`CliError`] when a batch is not covered by power samples, or output fails.
pub fn report(
    out: &mut dyn Write,
    trace: &Trace,
    measured: &[Measured],
    (size, config): (usize, &RepeatConfig),
    out_dir: &Path,
) -> Result<Comparison, CliError> {
    let profile = SensorProfile::h200_2026_11_22();
    let simulated = trace.meta.simulated;
    let mut variants = Vec::new();
    for m in measured {
        let flops = Some(m.variant.flops(size));
        let r = analyze(&trace.power, 0, &profile, &m.batches, config, flops)?;
        variants.push(compare::summarize(&compare::VariantInput {
            name: m.variant.label(),
            flops_per_launch: flops,
            batches: &m.batches,
            energies: &r.batches,
            accuracy: m.accuracy.as_ref(),
        })?);
    }
    let tag = if simulated { " (simulated)" } else { "" };
    writeln!(
        out,
        "\nPer launch, median over batches [95% CI]{tag}; energy = dynamic + idle power over the launch's wall time"
    )?;
    writeln!(
        out,
        "{:<18} {:>8}  {:<28} {:<28} {:<26} {:<24} {:<26} {:<24} {:>8}",
        "variant",
        "launches",
        "time (ms)",
        "energy (mJ)",
        "mJ per GFLOP",
        "power (W)",
        "EDP (mJ·ms)",
        "rel. L2 error",
        "max rel"
    )?;
    for (v, m) in variants.iter().zip(measured) {
        writeln!(
            out,
            "{:<18} {:>8}  {:<28} {:<28} {:<26} {:<24} {:<26} {:<24} {:>8}{}",
            v.name,
            v.launches,
            stat(&v.time_ns, 1e-6, 4),
            stat(&v.energy_mj, 1.0, 2),
            v.energy_per_gflop_mj
                .as_ref()
                .map_or("-".into(), |s| stat(s, 1.0, 3)),
            stat(&v.power_w, 1.0, 1),
            stat(&v.edp_mj_ms, 1.0, 2),
            v.rel_l2.as_ref().map_or("not measured".into(), |s| format!(
                "{:.2e} [{:.2e}, {:.2e}]",
                s.median,
                s.low.max(0.0),
                s.high
            )),
            v.max_rel.map_or("-".into(), |e| format!("{e:.1e}")),
            m.truth_mj
                .map_or(String::new(), |t| format!("  truth {t:.2} mJ")),
        )?;
    }
    let set: Vec<Variant> = measured.iter().map(|m| m.variant).collect();
    let mut verdicts = Vec::new();
    writeln!(out)?;
    for (a, b) in Variant::pairs(&set) {
        let find = |x: Variant| variants.iter().find(|v| v.name == x.label());
        if let (Some(va), Some(vb)) = (find(a), find(b)) {
            let line = format!("{}{tag}", compare::verdict(va, vb));
            writeln!(out, "verdict: {line}")?;
            verdicts.push(line);
        }
    }
    let comparison = Comparison {
        gpu: trace
            .meta
            .devices
            .first()
            .map_or_else(String::new, |d| d.name.clone()),
        simulated,
        size,
        variants,
        truth_mj: measured.iter().map(|m| m.truth_mj).collect(),
        verdicts,
    };
    let json = out_dir.join("compare.json");
    let text = serde_json::to_string_pretty(&comparison).map_err(|e| CliError::WriteFile {
        path: json.clone(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&json, text).map_err(|source| CliError::WriteFile {
        path: json.clone(),
        source,
    })?;
    writeln!(out, "\nresults:  {}", json.display())?;
    Ok(comparison)
}
