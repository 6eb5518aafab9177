//! Under-filled launches: a kernel long enough to matter whose grid has fewer blocks than the
//! device has SMs. The idle SMs still draw static power for the whole launch, so the waste is
//! the launch's static share times the idle fraction of SMs. Occupancy below one block per SM
//! is not estimated (the trace has no register or shared-memory counts).

use super::{Context, Evidence, Mj, Occurrence, WasteConfig, WasteKind};
use crate::trace::SpanKind;

pub(super) fn detect(cx: &Context<'_>, config: &WasteConfig, out: &mut Vec<Occurrence>) {
    let Some(sms) = cx
        .trace
        .meta
        .devices
        .iter()
        .find(|d| d.index == cx.device)
        .map(|d| u64::from(d.sm_count))
        .filter(|&n| n > 0)
    else {
        return;
    };
    let idle = cx.idle;
    for s in cx.work.iter().filter(|s| s.kind == SpanKind::Kernel) {
        let Some(shape) = s.launch else {
            continue;
        };
        let blocks = shape.blocks();
        if blocks == 0 || blocks >= sms || s.duration_ns() < config.min_underfilled_ns {
            continue;
        }
        let idle_share = 1.0 - blocks as f64 / sms as f64;
        let wasted = cx.static_mj(s.id) * idle_share;
        let scale = |p: f64| {
            if idle.mw > 0.0 {
                wasted * p / idle.mw
            } else {
                wasted
            }
        };
        let energy = Mj::new(wasted, scale(idle.low_mw), scale(idle.high_mw));
        out.push(cx.occurrence(WasteKind::UnderfilledLaunch, s, (energy, (s.duration_ns() as f64 * idle_share) as u64), Evidence::new((vec![s.id], Vec::new()), format!(
                "{blocks} blocks on {sms} SMs: {} SMs drew static power for {:.1} µs with nothing to run",
                sms - blocks,
                s.duration_ns() as f64 / 1e3
            ), format!("give it at least {sms} blocks (smaller tiles, split the reduction, or more work per launch)"))));
    }
}
