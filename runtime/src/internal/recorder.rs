//! The span recorder: what each operation was (name, shape, stream, args digest, buffer
//! versions, region path, launch site), in issue order, with GPU times filled in as the timer
//! resolves them. It knows nothing of CUDA, so all of it is tested on any machine.

use std::collections::HashMap;
use std::sync::Arc;

use wattlens_instrument::clock::Clock;
use wattlens_instrument::trace::{
    Annotation, LaunchShape, OpClass, PaddedUnits, Span, SpanKind, StrId, StringTable,
};
use wattlens_instrument::Interval;

use crate::buffers::{BufferTable, Touches};

/// Deepest region nesting recorded; deeper pushes are counted, not recorded.
pub const MAX_REGION_DEPTH: usize = 64;

/// One operation as issued, before its GPU times are known.
#[derive(Debug, Clone)]
pub struct OpDesc {
    /// Device index in the trace.
    pub device: u32,
    /// Stream ordinal within the session.
    pub stream: u64,
    /// Kernel, memcpy or memset, with its payload.
    pub kind: SpanKind,
    /// Kernel name or copy label.
    pub name: StrId,
    /// Launch shape of a kernel.
    pub launch: Option<LaunchShape>,
    /// Digest of the scalar arguments (0 for none).
    pub args_digest: u64,
    /// Buffers read and written.
    pub touches: Touches,
    /// The launch site, or none.
    pub site: StrId,
    /// The op class a kernel counts its padding share by, under a padding mask; none for
    /// copies and memsets.
    pub padding_op: Option<OpClass>,
}

/// A library call made through the session: its kernels, seen only by CUPTI, take its region,
/// site and buffer touches.
struct LibraryCall {
    name: String,
    region: StrId,
    site: StrId,
    touches: Touches,
    /// Indices in `regions` of the spans that ran under it.
    spans: Vec<usize>,
    /// The padding mask in force when it was made: its pass and the padded units of one of its
    /// kernels, the class of the call's name deciding rows or query–key pairs.
    padding: Option<(u32, PaddedUnits)>,
}

struct OpenRegion {
    name: StrId,
    path: StrId,
    start_ns: u64,
}

/// The padding a program declared for the work it issues next (one pass over a batch of
/// sequences): per batch row, the valid length out of `padded_len`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PaddingMask {
    /// Valid rows (tokens) of each batch row.
    pub lens: Vec<u64>,
    /// Rows each batch row is padded to.
    pub padded_len: u64,
    /// Each batch row's token ids, where the program gives them (empty otherwise). With
    /// `causal`, they let the waste analysis find positions a pass recomputed from tokens an
    /// earlier pass already ran.
    pub tokens: Vec<Vec<u32>>,
    /// Whether the model is causal: position i's outputs depend on tokens 0..=i only.
    pub causal: bool,
}

impl PaddingMask {
    /// The units of one launch of a kernel of class `op`, and how many are padding: query–key
    /// pairs for attention, rows otherwise.
    pub fn units(&self, op: OpClass) -> PaddedUnits {
        // Saturating: the lengths are the program's word, and absurd ones must not panic.
        let rows = self.lens.len() as u64;
        let len = self.padded_len;
        let sum = |f: &dyn Fn(u64) -> u64| {
            self.lens
                .iter()
                .map(|&l| f(l.min(len)))
                .fold(0u64, u64::saturating_add)
        };
        let (useful, total) = if op == OpClass::Attention {
            (
                sum(&|l| l.saturating_mul(l)),
                rows.saturating_mul(len.saturating_mul(len)),
            )
        } else {
            (sum(&|l| l), rows.saturating_mul(len))
        };
        PaddedUnits {
            padded: total.saturating_sub(useful),
            total,
        }
    }
}

/// The session's record of operations, regions, buffers and strings.
pub struct Recorder {
    /// Interned strings of the trace.
    pub strings: StringTable,
    /// Buffer ids and versions.
    pub buffers: BufferTable,
    /// Buffer sizes and frees, and padding shares of launches.
    pub annotations: Vec<Annotation>,
    /// The padding mask in force, if the program declared one, and its pass number.
    padding: Option<(PaddingMask, u32)>,
    passes: u32,
    ops: Vec<Span>,
    timed: Vec<bool>,
    regions: Vec<Span>,
    stack: Vec<OpenRegion>,
    overflowed_pushes: usize,
    pending_site: Option<StrId>,
    /// Region path when the pending site was set.
    pending_region: StrId,
    /// Sites set through the C ABI that no wattlens-issued operation took, with their region.
    unclaimed_sites: Vec<(StrId, StrId)>,
    /// Indices in `regions` of spans the session did not issue.
    foreign: Vec<usize>,
    /// Library calls, id − 1 = index.
    library: Vec<LibraryCall>,
    site_labels: std::collections::BTreeMap<u64, String>,
    sites: HashMap<(usize, u32), StrId>,
    next_region_id: u64,
    clock: Arc<dyn Clock + Send + Sync>,
}

/// Span ids of regions start here, so they never collide with operation ids.
const REGION_ID_BASE: u64 = 1 << 62;

impl Recorder {
    /// An empty recorder on `clock` (the trace clock).
    pub fn new(clock: Arc<dyn Clock + Send + Sync>) -> Self {
        Self {
            strings: StringTable::default(),
            buffers: BufferTable::new(),
            annotations: Vec::new(),
            padding: None,
            passes: 0,
            ops: Vec::new(),
            timed: Vec::new(),
            regions: Vec::new(),
            stack: Vec::new(),
            overflowed_pushes: 0,
            pending_site: None,
            pending_region: StrId::NONE,
            unclaimed_sites: Vec::new(),
            foreign: Vec::new(),
            library: Vec::new(),
            site_labels: std::collections::BTreeMap::new(),
            sites: HashMap::new(),
            next_region_id: REGION_ID_BASE,
            clock,
        }
    }

    /// Now on the trace clock, ns.
    pub fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    /// Intern `text` in the trace's string table.
    pub fn intern(&mut self, text: &str) -> StrId {
        self.strings.id(text)
    }

    /// The site of the next operation: a site set through the C ABI if one is pending,
    /// otherwise `file:line` of the Rust caller.
    pub fn site(&mut self, caller: &'static std::panic::Location<'static>) -> StrId {
        if let Some(site) = self.pending_site.take() {
            return site;
        }
        let key = (caller.file().as_ptr() as usize, caller.line());
        if let Some(&id) = self.sites.get(&key) {
            return id;
        }
        let id = self
            .strings
            .id(&format!("{}:{}", caller.file(), caller.line()));
        self.sites.insert(key, id);
        id
    }

    /// Set the site of the next operation (the C ABI's `wattlens_launch_site`). A previous
    /// site that no operation took belonged to a launch the session did not issue.
    pub fn set_pending_site(&mut self, site: &str) {
        let id = self.strings.id(site);
        if let Some(old) = self.pending_site.replace(id) {
            self.unclaimed_sites.push((old, self.pending_region));
        }
        self.pending_region = self.stack.last().map_or(StrId::NONE, |o| o.path);
    }

    /// Labels (`file:line`) for the launch-site ids of the pass's manifest.
    pub fn set_site_labels(&mut self, labels: std::collections::BTreeMap<u64, String>) {
        self.site_labels = labels;
    }

    /// Set the site of the next operation by the id the pass gave it: its `file:line` label
    /// when the manifest has it, `site#<16 hex digits>` otherwise.
    pub fn set_pending_site_id(&mut self, id: u64) {
        let label = self
            .site_labels
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("site#{id:016x}"));
        self.set_pending_site(&label);
    }

    /// Give launches the session did not issue (a pass-instrumented C program's own
    /// `cuLaunchKernel` calls) the sites and regions set for them, in launch order. Done only
    /// when the counts match: with uninstrumented launches in the mix (a library's), order
    /// alone cannot pair them, and the spans keep no site rather than a wrong one.
    pub fn attach_unclaimed_sites(&mut self) {
        if let Some(last) = self.pending_site.take() {
            self.unclaimed_sites.push((last, self.pending_region));
        }
        let mut kernels: Vec<usize> = self
            .foreign
            .iter()
            .copied()
            .filter(|&i| matches!(self.regions[i].kind, SpanKind::Kernel))
            .collect();
        if kernels.is_empty() || kernels.len() != self.unclaimed_sites.len() {
            return;
        }
        kernels.sort_by_key(|&i| (self.regions[i].start_ns, self.regions[i].id));
        for (i, (site, region)) in kernels.into_iter().zip(self.unclaimed_sites.drain(..)) {
            let span = &mut self.regions[i];
            span.site = site;
            if span.region == StrId::NONE {
                span.region = region;
            }
        }
    }

    /// Open a region named `name` inside the current one.
    pub fn push_region(&mut self, name: &str) {
        if self.stack.len() >= MAX_REGION_DEPTH {
            self.overflowed_pushes += 1;
            return;
        }
        let path = match self.stack.last() {
            Some(parent) => {
                let parent = self.strings.get(parent.path).unwrap_or_default().to_owned();
                self.strings.id(&format!("{parent}/{name}"))
            }
            None => self.strings.id(name),
        };
        let name = self.strings.id(name);
        let start_ns = self.clock.now_ns();
        self.stack.push(OpenRegion {
            name,
            path,
            start_ns,
        });
    }

    /// Close the innermost region; false when none is open.
    pub fn pop_region(&mut self) -> bool {
        if self.overflowed_pushes > 0 {
            self.overflowed_pushes -= 1;
            return true;
        }
        let Some(open) = self.stack.pop() else {
            return false;
        };
        let end_ns = self.clock.now_ns().max(open.start_ns);
        self.regions.push(Span {
            region: open.path,
            ..Span::new(
                self.next_region_id,
                SpanKind::Region {
                    depth: self.stack.len() as u32,
                },
                (0, 0),
                open.name,
                (open.start_ns, end_ns),
            )
        });
        self.next_region_id += 1;
        true
    }

    /// The current region path, or none.
    pub fn region_path(&self) -> StrId {
        self.stack.last().map_or(StrId::NONE, |r| r.path)
    }

    /// Declare the padding mask of the work issued from now on (`None` to clear); each mask
    /// starts a new pass, recorded with its tokens when the program gave them.
    pub fn set_padding(&mut self, mask: Option<PaddingMask>) {
        self.padding = mask.map(|m| {
            self.passes += 1;
            if !m.tokens.is_empty() {
                self.annotations.push(Annotation::Pass {
                    pass: self.passes,
                    padded_len: m.padded_len,
                    causal: m.causal,
                    rows: m.tokens.clone(),
                });
            }
            (m, self.passes)
        });
    }

    /// Note that operation `seq`, a kernel of class `op`, ran under the padding mask in force.
    fn note_padding(&mut self, seq: u64, op: OpClass) {
        if let Some((mask, pass)) = &self.padding {
            let PaddedUnits { padded, total } = mask.units(op);
            if total > 0 {
                self.annotations.push(Annotation::Padding {
                    span: seq,
                    pass: *pass,
                    padded,
                    total,
                });
            }
        }
    }

    /// Record an operation as issued; returns its sequence number (its span id).
    pub fn issue(&mut self, op: OpDesc) -> u64 {
        let seq = self.ops.len() as u64;
        let region = self.region_path();
        self.ops.push(Span {
            id: seq,
            kind: op.kind,
            device: op.device,
            stream: op.stream,
            start_ns: 0,
            end_ns: 0,
            name: op.name,
            launch: op.launch,
            args_digest: op.args_digest,
            reads: op.touches.reads,
            writes: op.touches.writes,
            region,
            site: op.site,
            unknown_access: op.touches.unknown,
            host_call_ns: None,
        });
        self.timed.push(false);
        if let Some(class) = op.padding_op {
            self.note_padding(seq, class);
        }
        seq
    }

    /// Record the host time that issuing operation `seq` took: the profiler's bookkeeping and
    /// the driver call (see `Span::host_call_ns`). An end before the start is taken as the start.
    pub fn set_host_call(&mut self, seq: u64, call: Interval) {
        if let Some(span) = usize::try_from(seq).ok().and_then(|i| self.ops.get_mut(i)) {
            span.host_call_ns = Some(Interval::new(call.from_ns, call.to_ns.max(call.from_ns)));
        }
    }

    /// Operations issued so far.
    pub fn issued(&self) -> usize {
        self.ops.len()
    }

    /// The issued operation `seq`, if any.
    pub fn op(&self, seq: u64) -> Option<&Span> {
        self.ops.get(usize::try_from(seq).ok()?)
    }

    /// The first issued operation of `kind` whose times never came (a fault's first suspect).
    pub fn first_untimed(&self, kind: SpanKind) -> Option<&Span> {
        self.ops
            .iter()
            .zip(&self.timed)
            .find(|(s, t)| !**t && s.kind == kind)
            .map(|(s, _)| s)
    }

    /// Fill in the trace-clock times of operation `seq`; false for an unknown sequence.
    pub fn set_times(&mut self, seq: u64, start_ns: u64, end_ns: u64) -> bool {
        let Ok(i) = usize::try_from(seq) else {
            return false;
        };
        match (self.ops.get_mut(i), self.timed.get_mut(i)) {
            (Some(span), Some(t)) => {
                span.start_ns = start_ns;
                span.end_ns = end_ns.max(start_ns);
                *t = true;
                true
            }
            _ => false,
        }
    }

    /// Set the content digest of a recorded copy (known only once its data has arrived).
    pub fn set_content_digest(&mut self, seq: u64, digest: Option<u64>) {
        let span = usize::try_from(seq).ok().and_then(|i| self.ops.get_mut(i));
        if let Some(Span {
            kind: SpanKind::Memcpy { content_digest, .. },
            ..
        }) = span
        {
            *content_digest = digest;
        }
    }

    /// Record that the host waited on `stream` of `device` from `start_ns` to `end_ns`, at
    /// `site`, in the current region.
    pub fn add_sync(
        &mut self,
        device: u32,
        stream: u64,
        (start_ns, end_ns): (u64, u64),
        site: StrId,
    ) {
        let region = self.region_path();
        let name = self.intern("host synchronisation");
        self.regions.push(Span {
            region,
            site,
            ..Span::new(
                self.next_region_id,
                SpanKind::Sync,
                (device, stream),
                name,
                (start_ns, end_ns.max(start_ns)),
            )
        });
        self.next_region_id += 1;
    }

    /// Record a burst of `launches` replays of operation `of` (a kernel of `shape` on `stream`
    /// of `device`), alone on the device from `start_ns` to `end_ns`: a
    /// [`SpanKind::Alone`] span in the [`ALONE_REGION`] region (waste analysis counts its time
    /// as the profiler's, not the program's).
    ///
    /// [`ALONE_REGION`]: wattlens_instrument::trace::ALONE_REGION
    pub fn add_alone(
        &mut self,
        (device, stream): (u32, u64),
        (name, shape): (StrId, LaunchShape),
        (start_ns, end_ns): (u64, u64),
        (launches, of): (u32, u64),
    ) {
        let region = self.intern(wattlens_instrument::trace::ALONE_REGION);
        self.regions.push(Span {
            region,
            launch: Some(shape),
            ..Span::new(
                self.next_region_id,
                SpanKind::Alone { launches, of },
                (device, stream),
                name,
                (start_ns, end_ns.max(start_ns)),
            )
        });
        self.next_region_id += 1;
    }

    /// Record a library call about to be made in the current region at `site`, touching
    /// `touches`; returns its external correlation id (never 0).
    pub fn begin_library(&mut self, name: &str, touches: Touches, site: StrId) -> u64 {
        let region = self.region_path();
        let class = wattlens_instrument::names::class_from_name(name).unwrap_or(OpClass::Unknown);
        let padding = self
            .padding
            .as_ref()
            .map(|(mask, pass)| (*pass, mask.units(class)))
            .filter(|(_, units)| units.total > 0);
        self.library.push(LibraryCall {
            name: name.to_owned(),
            region,
            site,
            touches,
            spans: Vec::new(),
            padding,
        });
        self.library.len() as u64
    }

    /// The name of library call `external`, if the session made it.
    pub fn library_name(&self, external: u64) -> Option<&str> {
        let i = usize::try_from(external).ok()?.checked_sub(1)?;
        self.library.get(i).map(|c| c.name.as_str())
    }

    /// Add a span the session did not issue (seen by CUPTI: a library's kernel, say). One that
    /// ran under a library call (`external`) takes the call's region and site; the last of a
    /// call's spans also takes its buffer touches (see [`Recorder::take_spans`]).
    pub fn add_foreign(&mut self, mut span: Span, external: Option<u64>) {
        span.id = self.next_region_id;
        self.next_region_id += 1;
        let index = self.regions.len();
        let call = external
            .and_then(|e| usize::try_from(e).ok()?.checked_sub(1))
            .and_then(|i| self.library.get_mut(i));
        if let Some(call) = call {
            span.region = call.region;
            span.site = call.site;
            call.spans.push(index);
            // Each kernel of a call made under a padding mask computes the call's rows.
            if let Some((pass, PaddedUnits { padded, total })) = call.padding {
                self.annotations.push(Annotation::Padding {
                    span: span.id,
                    pass,
                    padded,
                    total,
                });
            }
        } else {
            self.foreign.push(index);
        }
        self.regions.push(span);
    }

    /// All spans with known times (operations, then closed regions; open regions are closed
    /// now), sorted by start, and the number of issued operations whose times never came.
    pub fn take_spans(&mut self) -> (Vec<Span>, usize) {
        while !self.stack.is_empty() {
            self.pop_region();
        }
        let mut untimed = 0;
        let mut spans = Vec::with_capacity(self.ops.len() + self.regions.len());
        for (span, timed) in self.ops.drain(..).zip(self.timed.drain(..)) {
            if timed {
                spans.push(span);
            } else {
                untimed += 1;
            }
        }
        // A library call's buffer touches go on its last kernel: its output is complete then.
        for call in self.library.drain(..) {
            let last = call
                .spans
                .iter()
                .copied()
                .max_by_key(|&i| self.regions.get(i).map_or(0, |s| s.end_ns));
            if let Some(span) = last.and_then(|i| self.regions.get_mut(i)) {
                span.reads = call.touches.reads;
                span.writes = call.touches.writes;
                span.unknown_access = call.touches.unknown;
            }
        }
        spans.append(&mut self.regions);
        self.foreign.clear();
        spans.sort_by_key(|s| (s.start_ns, s.id));
        (spans, untimed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wattlens_instrument::clock::FakeClock;
    use wattlens_instrument::trace::AccessMode;

    fn recorder() -> (Arc<FakeClock>, Recorder) {
        let clock = Arc::new(FakeClock::new(1_000));
        (clock.clone(), Recorder::new(clock))
    }

    fn kernel(r: &mut Recorder, name: &str) -> OpDesc {
        let name = r.intern(name);
        OpDesc {
            device: 0,
            stream: 0,
            kind: SpanKind::Kernel,
            name,
            launch: None,
            args_digest: 0,
            touches: Touches::default(),
            site: StrId::NONE,
            padding_op: None,
        }
    }

    #[test]
    fn an_operations_host_call_survives_its_timing_and_never_ends_before_it_starts() {
        let (_, mut r) = recorder();
        let op = kernel(&mut r, "k");
        let seq = r.issue(op);
        r.set_host_call(seq, Interval::new(1_000, 1_200));
        let op = kernel(&mut r, "k");
        let seq2 = r.issue(op);
        r.set_host_call(seq2, Interval::new(1_300, 1_250));
        assert!(r.set_times(seq, 1_100, 1_400));
        assert!(r.set_times(seq2, 1_500, 1_600));
        let (spans, _) = r.take_spans();
        let call = |seq: u64| {
            spans
                .iter()
                .find(|s| s.id == seq)
                .and_then(|s| s.host_call_ns)
        };
        assert_eq!(call(seq), Some(Interval::new(1_000, 1_200)));
        assert_eq!(call(seq2), Some(Interval::new(1_300, 1_300)));
    }

    #[test]
    fn regions_nest_into_paths_and_tag_the_ops_inside() {
        let (clock, mut r) = recorder();
        r.push_region("decoder");
        r.push_region("attention");
        let op = kernel(&mut r, "qk");
        let seq = r.issue(op);
        clock.advance(500);
        assert!(r.pop_region());
        let op = kernel(&mut r, "norm");
        let seq2 = r.issue(op);
        assert!(r.pop_region());
        assert!(!r.pop_region());
        assert!(r.set_times(seq, 1_100, 1_300));
        assert!(r.set_times(seq2, 1_400, 1_350));
        let (spans, untimed) = r.take_spans();
        assert_eq!(untimed, 0);
        let path = |s: &Span| r.strings.get(s.region).unwrap_or("").to_owned();
        let qk = spans.iter().find(|s| s.id == seq).unwrap();
        assert_eq!(path(qk), "decoder/attention");
        let norm = spans.iter().find(|s| s.id == seq2).unwrap();
        assert_eq!(path(norm), "decoder");
        assert_eq!(
            norm.end_ns, norm.start_ns,
            "an inverted interval is clamped"
        );
        let regions: Vec<_> = spans
            .iter()
            .filter(|s| matches!(s.kind, SpanKind::Region { .. }))
            .collect();
        assert_eq!(regions.len(), 2);
        let inner = regions
            .iter()
            .find(|s| s.kind == SpanKind::Region { depth: 1 })
            .unwrap();
        assert_eq!(r.strings.get(inner.name), Some("attention"));
        assert_eq!(inner.duration_ns(), 500);
    }

    #[test]
    fn untimed_ops_are_counted_not_kept_and_open_regions_close() {
        let (_, mut r) = recorder();
        r.push_region("left-open");
        let a = kernel(&mut r, "a");
        let seq = r.issue(a);
        let b = kernel(&mut r, "b");
        r.issue(b);
        r.set_times(seq, 10, 20);
        let (spans, untimed) = r.take_spans();
        assert_eq!(untimed, 1);
        assert_eq!(spans.len(), 2, "{spans:?}");
        assert!(!r.set_times(99, 1, 2));
    }

    #[test]
    fn sites_come_from_the_caller_unless_the_c_abi_set_one() {
        let (_, mut r) = recorder();
        let here = std::panic::Location::caller();
        let a = r.site(here);
        assert!(r.strings.get(a).unwrap().contains("recorder.rs:"));
        assert_eq!(r.site(here), a, "cached");
        r.set_pending_site("model.cu:42");
        let b = r.site(here);
        assert_eq!(r.strings.get(b), Some("model.cu:42"));
        assert_eq!(r.site(here), a, "a pending site is used once");
    }

    #[test]
    fn kernels_with_unknown_modes_carry_them_into_the_span() {
        let (_, mut r) = recorder();
        let buf = r.buffers.register(0, 0xdead);
        let mut op = kernel(&mut r, "k");
        r.buffers.touch(buf, AccessMode::Unknown, &mut op.touches);
        let seq = r.issue(op);
        r.set_times(seq, 1, 2);
        let (spans, _) = r.take_spans();
        assert_eq!(spans[0].unknown_access, vec![buf]);
        assert_eq!(spans[0].writes[0].version, 1);
    }

    #[test]
    fn deep_nesting_is_bounded_and_balanced() {
        let (_, mut r) = recorder();
        for _ in 0..MAX_REGION_DEPTH + 10 {
            r.push_region("x");
        }
        for _ in 0..MAX_REGION_DEPTH + 10 {
            assert!(r.pop_region());
        }
        assert!(!r.pop_region());
        let (spans, _) = r.take_spans();
        assert_eq!(spans.len(), MAX_REGION_DEPTH);
    }

    /// A kernel span the session did not issue, starting at `start_ns`.
    fn foreign(start_ns: u64) -> Span {
        Span::new(
            0,
            SpanKind::Kernel,
            (0, 0),
            StrId::NONE,
            (start_ns, start_ns + 5),
        )
    }

    #[test]
    fn sites_no_issued_operation_took_go_to_foreign_kernels_in_launch_order() {
        let (_clock, mut r) = recorder();
        r.set_site_labels([(1u64, "host.c:10".to_owned()), (2, "host.c:20".to_owned())].into());
        r.push_region("prefill");
        r.set_pending_site_id(1);
        r.pop_region();
        r.set_pending_site_id(2);
        r.set_pending_site_id(3);
        // Records arrive out of order; launch order is start order.
        r.add_foreign(foreign(300), None);
        r.add_foreign(foreign(100), None);
        r.add_foreign(foreign(200), None);
        r.attach_unclaimed_sites();
        let (spans, _) = r.take_spans();
        let kernels: Vec<(u64, &str, &str)> = spans
            .iter()
            .filter(|s| s.kind == SpanKind::Kernel)
            .map(|s| {
                (
                    s.start_ns,
                    r.strings.get(s.site).unwrap_or(""),
                    r.strings.get(s.region).unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            kernels,
            vec![
                (100, "host.c:10", "prefill"),
                (200, "host.c:20", ""),
                (300, "site#0000000000000003", "")
            ]
        );
    }

    #[test]
    fn sites_are_not_guessed_when_launches_outnumber_them() {
        let (_clock, mut r) = recorder();
        r.set_pending_site_id(1);
        for start_ns in [10, 20] {
            r.add_foreign(foreign(start_ns), None);
        }
        r.attach_unclaimed_sites();
        let (spans, _) = r.take_spans();
        assert!(spans.iter().all(|s| s.site == StrId::NONE));
    }

    #[test]
    fn a_library_calls_kernels_take_its_region_site_and_touches_on_the_last_one() {
        let (_clock, mut r) = recorder();
        let (a, c) = (r.buffers.register(0, 0x1000), r.buffers.register(0, 0x2000));
        r.push_region("decode");
        r.push_region("mlp");
        let mut touches = Touches::default();
        r.buffers.touch(a, AccessMode::Read, &mut touches);
        r.buffers.touch(c, AccessMode::Write, &mut touches);
        let site = r.intern("pipeline.rs:42");
        let id = r.begin_library("cublas_sgemm", touches, site);
        r.pop_region();
        r.pop_region();
        assert_eq!(r.library_name(id), Some("cublas_sgemm"));
        assert_eq!(r.library_name(id + 1), None);
        // A split-K GEMM: the main kernel, then its reduction; records arrive out of order.
        r.add_foreign(foreign(500), Some(id));
        r.add_foreign(foreign(100), Some(id));
        r.add_foreign(foreign(900), None);
        r.set_pending_site_id(9);
        r.attach_unclaimed_sites();
        let (spans, _) = r.take_spans();
        let kernels: Vec<&Span> = spans
            .iter()
            .filter(|s| s.kind == SpanKind::Kernel)
            .collect();
        assert_eq!(kernels.len(), 3);
        for k in &kernels[..2] {
            assert_eq!(r.strings.get(k.region), Some("decode/mlp"));
            assert_eq!(r.strings.get(k.site), Some("pipeline.rs:42"));
        }
        assert!(kernels[0].writes.is_empty() && kernels[0].reads.is_empty());
        assert_eq!(kernels[1].reads.len(), 1);
        assert_eq!(kernels[1].reads[0].buffer, a);
        assert_eq!(
            (kernels[1].writes[0].buffer, kernels[1].writes[0].version),
            (c, 1)
        );
        // The unrelated kernel is the only one the pending host site may go to.
        assert_eq!(r.strings.get(kernels[2].region), None);
        assert_eq!(
            r.strings.get(kernels[2].site),
            Some("site#0000000000000009")
        );
    }

    #[test]
    fn padding_counts_rows_or_query_key_pairs() {
        let mask = PaddingMask {
            lens: vec![4, 1],
            padded_len: 4,
            tokens: vec![vec![5, 6, 7, 8], vec![9]],
            causal: true,
        };
        let units = |padded, total| PaddedUnits { padded, total };
        assert_eq!(mask.units(OpClass::Matmul), units(3, 8));
        assert_eq!(mask.units(OpClass::Attention), units(15, 32));
        let (_clock, mut r) = recorder();
        let padded = |r: &mut Recorder, op| OpDesc {
            padding_op: Some(op),
            ..kernel(r, "k")
        };
        let op = padded(&mut r, OpClass::Matmul);
        r.issue(op);
        assert!(r.annotations.is_empty());
        r.set_padding(Some(mask));
        let copy = kernel(&mut r, "copy");
        r.issue(copy); // no padding class: not annotated
        let op = padded(&mut r, OpClass::Norm);
        let seq = r.issue(op);
        assert_eq!(
            r.annotations,
            vec![
                Annotation::Pass {
                    pass: 1,
                    padded_len: 4,
                    causal: true,
                    rows: vec![vec![5, 6, 7, 8], vec![9]]
                },
                Annotation::Padding {
                    span: seq,
                    pass: 1,
                    padded: 3,
                    total: 8
                }
            ]
        );
        r.set_padding(None);
        let op = padded(&mut r, OpClass::Norm);
        r.issue(op);
        assert_eq!(r.annotations.len(), 2);
    }

    #[test]
    fn a_library_call_under_a_padding_mask_annotates_each_of_its_kernels() {
        let (_clock, mut r) = recorder();
        r.set_padding(Some(PaddingMask {
            lens: vec![4, 1],
            padded_len: 4,
            tokens: vec![vec![5, 6, 7, 8], vec![9]],
            causal: true,
        }));
        let gemm = r.begin_library("cublas_sgemm", Touches::default(), StrId::NONE);
        let attention = r.begin_library("flash_attention", Touches::default(), StrId::NONE);
        // The mask changes before the records arrive: each call keeps the one it was made under.
        r.set_padding(None);
        let outside = r.begin_library("cublas_sgemm", Touches::default(), StrId::NONE);
        for (start_ns, call) in [(100, gemm), (200, gemm), (300, attention), (400, outside)] {
            r.add_foreign(foreign(start_ns), Some(call));
        }
        let (spans, _) = r.take_spans();
        let id_at = |t: u64| spans.iter().find(|s| s.start_ns == t).map(|s| s.id);
        let padding: Vec<(Option<u64>, u64, u64)> = r
            .annotations
            .iter()
            .filter_map(|a| match *a {
                Annotation::Padding {
                    span,
                    padded,
                    total,
                    pass: 1,
                } => Some((Some(span), padded, total)),
                _ => None,
            })
            .collect();
        // Rows for the GEMM's two kernels, query–key pairs for the attention call.
        assert_eq!(
            padding,
            vec![(id_at(100), 3, 8), (id_at(200), 3, 8), (id_at(300), 15, 32)]
        );
    }
}
