//! Stretches of the trace clock.

/// A stretch of the trace clock, from `from_ns` to `to_ns` (ns since the Unix epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Interval {
    /// Start, ns.
    pub from_ns: u64,
    /// End, ns.
    pub to_ns: u64,
}

impl Interval {
    /// The stretch from `from_ns` to `to_ns`.
    pub(crate) const fn new(from_ns: u64, to_ns: u64) -> Self {
        Self { from_ns, to_ns }
    }

    /// Its length, ns (zero for an inverted one).
    pub(crate) fn len_ns(self) -> u64 {
        self.to_ns.saturating_sub(self.from_ns)
    }

    /// How much of `[a, b]` it covers, ns.
    pub(crate) fn overlap_ns(self, a: u64, b: u64) -> u64 {
        b.min(self.to_ns).saturating_sub(a.max(self.from_ns))
    }
}

/// How much of `[a, b]` the sorted, disjoint intervals `sorted` cover, ns.
pub(crate) fn covered_ns(sorted: &[Interval], a: u64, b: u64) -> u64 {
    let first = sorted.partition_point(|i| i.to_ns <= a);
    sorted[first..]
        .iter()
        .take_while(|i| i.from_ns < b)
        .map(|i| i.overlap_ns(a, b))
        .sum()
}

/// The union of `intervals` as sorted, disjoint intervals.
pub(crate) fn union(mut intervals: Vec<Interval>) -> Vec<Interval> {
    intervals.sort_unstable();
    let mut out: Vec<Interval> = Vec::with_capacity(intervals.len());
    for i in intervals {
        match out.last_mut() {
            Some(last) if i.from_ns <= last.to_ns => last.to_ns = last.to_ns.max(i.to_ns),
            _ => out.push(i),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(v: &[(u64, u64)]) -> Vec<Interval> {
        v.iter().map(|&(a, b)| Interval::new(a, b)).collect()
    }

    #[test]
    fn overlapping_intervals_merge_into_a_sorted_disjoint_union() {
        assert_eq!(
            union(all(&[(50, 60), (10, 20), (15, 30), (30, 35), (40, 45)])),
            all(&[(10, 35), (40, 45), (50, 60)])
        );
        assert!(union(Vec::new()).is_empty());
    }

    #[test]
    fn an_interval_covers_only_its_own_part_of_a_stretch() {
        let i = Interval::new(10, 20);
        assert_eq!(i.overlap_ns(15, 35), 5);
        assert_eq!(i.overlap_ns(0, 5), 0);
        assert_eq!(i.len_ns(), 10);
        assert_eq!(Interval::new(20, 10).len_ns(), 0);
        assert_eq!(covered_ns(&all(&[(10, 20), (30, 40)]), 15, 35), 10);
        assert_eq!(covered_ns(&[], 15, 35), 0);
    }
}
