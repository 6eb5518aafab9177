//! Time intervals, (from, to) ns on the trace clock.

/// The union of `intervals` as sorted, disjoint intervals.
pub(crate) fn union(mut intervals: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    intervals.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(intervals.len());
    for (a, b) in intervals {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_intervals_merge_into_a_sorted_disjoint_union() {
        assert_eq!(
            union(vec![(50, 60), (10, 20), (15, 30), (30, 35), (40, 45)]),
            vec![(10, 35), (40, 45), (50, 60)]
        );
        assert!(union(Vec::new()).is_empty());
    }
}
