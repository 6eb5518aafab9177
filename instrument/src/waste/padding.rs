//! Padding compute: the share of a launch's rows (query–key pairs, for attention) that the
//! program's declared padding mask marks as padding, priced as the work and time those units
//! cost (`Context::partial_mj`).

use super::{Context, Evidence, Occurrence, WasteKind};
use crate::trace::PaddedUnits;

pub(super) fn detect(cx: &Context<'_>, out: &mut Vec<Occurrence>, unchecked: &mut Vec<String>) {
    if cx.padding.values().all(|u| u.padded == 0) {
        unchecked.push(
            "no padding mask was declared (Profiler::set_padding), so compute on padding rows was not priced".into(),
        );
        return;
    }
    for s in &cx.work {
        let Some(&PaddedUnits { padded, total }) = cx.padding.get(&s.id).filter(|u| u.padded > 0)
        else {
            continue;
        };
        let (energy, time) = cx.partial_mj(s, padded as f64, total as f64);
        out.push(cx.partial_occurrence(WasteKind::PaddingCompute, s, (energy, (s.duration_ns() as f64 * time) as u64), Evidence::new((vec![s.id], Vec::new()), format!("{padded} of its {total} rows (or query–key pairs) are padding"), "batch sequences of similar length, or skip padding (packed or variable-length kernels)".into())));
    }
}
