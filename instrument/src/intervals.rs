//! Stretches of the trace clock.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A stretch of the trace clock, from `from_ns` to `to_ns` (ns since the Unix epoch).
///
/// It is written as the pair `[from_ns, to_ns]` (in JSON, and in the trace's binary format,
/// where a pair and a two-field struct are the same bytes), as the `(u64, u64)` pairs it
/// replaced were.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Interval {
    /// Start, ns.
    pub from_ns: u64,
    /// End, ns.
    pub to_ns: u64,
}

impl Interval {
    /// The stretch from `from_ns` to `to_ns`.
    pub const fn new(from_ns: u64, to_ns: u64) -> Self {
        Self { from_ns, to_ns }
    }

    /// Its length, ns (zero for an inverted one).
    pub fn len_ns(self) -> u64 {
        self.to_ns.saturating_sub(self.from_ns)
    }

    /// How much of `[a, b]` it covers, ns.
    pub fn overlap_ns(self, a: u64, b: u64) -> u64 {
        b.min(self.to_ns).saturating_sub(a.max(self.from_ns))
    }

    /// Whether `t_ns` lies in it, start included, end excluded.
    pub fn contains_ns(self, t_ns: u64) -> bool {
        (self.from_ns..self.to_ns).contains(&t_ns)
    }
}

impl From<(u64, u64)> for Interval {
    fn from((from_ns, to_ns): (u64, u64)) -> Self {
        Self::new(from_ns, to_ns)
    }
}

impl Serialize for Interval {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.from_ns, self.to_ns).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <(u64, u64)>::deserialize(d).map(Self::from)
    }
}

/// `a_ns − b_ns` as an f64, exact to the ns. Trace-clock instants are ns since the Unix epoch
/// (about 2⁶⁰), which an f64 holds only to the nearest 256 ns, so two instants are
/// subtracted as integers first.
pub fn diff_ns(a_ns: u64, b_ns: u64) -> f64 {
    (i128::from(a_ns) - i128::from(b_ns)) as f64
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

    #[test]
    fn instants_on_the_trace_clock_subtract_exactly() {
        let t = 1_765_000_000_123_456_789u64;
        assert_eq!(diff_ns(t + 1, t), 1.0);
        assert_eq!(diff_ns(t, t + 300), -300.0);
        // What the subtraction of the two as f64 gives: nothing, or 256 ns.
        assert_ne!((t + 1) as f64 - t as f64, 1.0);
    }

    #[test]
    fn an_interval_is_written_as_the_pair_it_replaced() {
        let i = Interval::new(7, 300);
        assert_eq!(serde_json::to_string(&i).unwrap(), "[7,300]");
        assert_eq!(serde_json::from_str::<Interval>("[7,300]").unwrap(), i);
        assert_eq!(
            postcard::to_allocvec(&i).unwrap(),
            postcard::to_allocvec(&(7u64, 300u64)).unwrap()
        );
        assert!(i.contains_ns(7) && !i.contains_ns(300));
    }
}
