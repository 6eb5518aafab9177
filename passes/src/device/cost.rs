//! Static cost of one thread: floating-point operations and global-memory bytes along the
//! costliest path, with loop trip counts derived from induction variables as expressions over
//! the scalar arguments (`iters_L<n>` where a count cannot be derived).

use inkwell::llvm_sys::LLVMIntPredicate;
use wattlens_instrument::StaticCost;

use super::access::{val_roots, Root};
use super::cfg::Cfg;
use super::expr::Expr;
use crate::ir::{Callee, Func, Inst, Op, Ty, Val};

/// Reference value of every symbol when comparing the cost of two paths.
const REFERENCE: i64 = 251; // prime: remainder loops of unrolled code run

/// Per-block constant costs.
#[derive(Debug, Clone, Copy, Default)]
struct BlockCost {
    flops: i64,
    bytes: i64,
}

fn lanes(t: Ty) -> i64 {
    match t {
        Ty::Float { lanes, .. } | Ty::Int { lanes, .. } => i64::from(lanes.max(1)),
        _ => 1,
    }
}

/// Largest side of an MMA shape (`m`, `n`, `k`) read from asm text.
const MAX_MMA_SIDE: i64 = 1024;
/// Largest `cp.async` size read from asm text, bytes (a bulk copy's at most).
const MAX_COPY_BYTES: i64 = 1 << 20;

/// FLOPs of a tensor-core or packed-dot instruction per thread, from its asm or intrinsic text.
fn tensor_flops(text: &str) -> i64 {
    if text.contains("dp4a") {
        return 8;
    }
    if text.contains("dp2a") {
        return 4;
    }
    // Shape `mMnNkK`: 2·M·N·K per warp-wide instruction, spread over 32 threads. No real
    // shape has a side over 256: a larger one is not an MMA this knows, and counts nothing.
    let dims = |tag: char, rest: &str| -> Option<i64> {
        let at = rest.find(tag)?;
        let digits: String = rest[at + 1..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        digits
            .parse::<i64>()
            .ok()
            .filter(|d| (1..=MAX_MMA_SIDE).contains(d))
    };
    let Some(start) = text.find(".m").map(|i| i + 1) else {
        return 0;
    };
    let shape = &text[start..];
    match (dims('m', shape), dims('n', shape), dims('k', shape)) {
        (Some(m), Some(n), Some(k)) => 2 * m * n * k / 32,
        _ => 0,
    }
}

/// Bytes an inline-asm global access moves, from its type suffix (or, for `cp.async`, its
/// copy size).
fn asm_bytes(text: &str) -> i64 {
    if let Some(at) = text.find("cp.async") {
        // `cp.async.{ca,cg}.shared.global [dst], [src], SIZE;`: the last operand is the size.
        let rest = &text[at..];
        let size = rest
            .split([',', ';'])
            .nth(2)
            .and_then(|s| s.trim().parse::<i64>().ok())
            .filter(|n| (0..=MAX_COPY_BYTES).contains(n));
        return size.unwrap_or(0);
    }
    let global = [
        "ld.global",
        "st.global",
        "red.global",
        "atom.global",
        "ld.",
        "st.",
    ]
    .iter()
    .any(|p| text.contains(p))
        && !text.contains(".shared");
    if !global {
        return 0;
    }
    let width = [
        (".b128", 16),
        (".u64", 8),
        (".s64", 8),
        (".b64", 8),
        (".f64", 8),
        (".u32", 4),
        (".s32", 4),
        (".b32", 4),
        (".f32", 4),
        (".u16", 2),
        (".b16", 2),
        (".f16", 2),
        (".u8", 1),
        (".b8", 1),
    ]
    .iter()
    .find(|(s, _)| text.contains(s))
    .map_or(4, |(_, w)| *w);
    let vec = if text.contains(".v4") {
        4
    } else if text.contains(".v2") {
        2
    } else {
        1
    };
    let rmw = if text.contains("atom.") { 2 } else { 1 };
    width * vec * rmw
}

fn inst_flops(inst: &Inst) -> i64 {
    match inst.op {
        Op::LLVMFAdd | Op::LLVMFSub | Op::LLVMFMul | Op::LLVMFDiv | Op::LLVMFRem => lanes(inst.ty),
        Op::LLVMCall | Op::LLVMInvoke => match &inst.callee {
            Callee::Direct { name, .. } => {
                if name.starts_with("llvm.fma")
                    || name.starts_with("llvm.fmuladd")
                    || name.starts_with("llvm.nvvm.fma")
                {
                    2 * lanes(inst.ty)
                } else if [
                    "llvm.exp",
                    "llvm.log",
                    "llvm.sqrt",
                    "llvm.sin",
                    "llvm.cos",
                    "llvm.tanh",
                    "llvm.pow",
                    "ex2",
                    "lg2",
                    "sqrt",
                    "rcp",
                    "sin.approx",
                    "cos.approx",
                    "tanh",
                ]
                .iter()
                .any(|p| name.contains(p))
                {
                    lanes(inst.ty)
                } else {
                    tensor_flops(name)
                }
            }
            Callee::Asm(text) => {
                let t = tensor_flops(text);
                if t > 0 {
                    t
                } else if ["fma.", "ex2", "rsqrt", "sqrt", "tanh"]
                    .iter()
                    .any(|p| text.contains(p))
                {
                    1
                } else {
                    0
                }
            }
            _ => 0,
        },
        _ => 0,
    }
}

fn is_global(roots: &[Root]) -> bool {
    roots.iter().any(|r| {
        matches!(
            r,
            Root::Param(_) | Root::Field { .. } | Root::Opaque | Root::Global
        )
    })
}

fn inst_bytes(f: &Func, inst: &Inst, roots: &[Vec<Root>]) -> i64 {
    let at = |k: usize| {
        inst.ops
            .get(k)
            .map(|v| val_roots(f, v, roots))
            .unwrap_or_default()
    };
    match inst.op {
        Op::LLVMLoad if is_global(&at(0)) => inst.mem_bytes as i64,
        Op::LLVMStore if is_global(&at(1)) => inst.mem_bytes as i64,
        Op::LLVMAtomicRMW | Op::LLVMAtomicCmpXchg if is_global(&at(0)) => {
            2i64.saturating_mul(i64::try_from(inst.mem_bytes).unwrap_or(i64::MAX))
        }
        Op::LLVMCall | Op::LLVMInvoke => match &inst.callee {
            Callee::Asm(text) => asm_bytes(text),
            Callee::Direct { name, .. } if name.starts_with("llvm.mem") => {
                let len = match inst.ops.get(2) {
                    Some(Val::Int(n)) => *n,
                    _ => 0,
                };
                let source_is_global = !name.starts_with("llvm.memset") && is_global(&at(1));
                let sides = i64::from(is_global(&at(0))) + i64::from(source_is_global);
                len.saturating_mul(sides)
            }
            _ => 0,
        },
        _ => 0,
    }
}

/// Derives trip counts and path costs for one function.
struct Coster<'a> {
    f: &'a Func,
    cfg: &'a Cfg,
    roots: &'a [Vec<Root>],
    blocks: Vec<BlockCost>,
}

impl Coster<'_> {
    fn in_loop(&self, l: usize, v: &Val) -> bool {
        match *v {
            Val::Inst(i) => self.cfg.loops[l]
                .blocks
                .binary_search(&self.f.insts[i as usize].block)
                .is_ok(),
            _ => false,
        }
    }

    /// A loop-invariant integer value as an expression over the scalar arguments.
    fn expr(&self, v: &Val, depth: u32) -> Option<Expr> {
        self.expr_in(v, depth, true)
    }

    /// As [`Self::expr`]; thread and block indices count as 0 only when `thread_index` is set
    /// (start offsets), and make the value underivable otherwise (bounds, steps).
    fn expr_in(&self, v: &Val, depth: u32, thread_index: bool) -> Option<Expr> {
        if depth > 24 {
            return None;
        }
        match v {
            Val::Int(c) => Some(Expr::Const(*c)),
            Val::Arg(a) => {
                let p = &self.f.params[*a as usize];
                matches!(p.ty, Ty::Int { .. }).then(|| Expr::Sym(p.name.clone()))
            }
            Val::Inst(i) => {
                let inst = &self.f.insts[*i as usize];
                let op = |k: usize| {
                    inst.ops
                        .get(k)
                        .and_then(|o| self.expr_in(o, depth + 1, thread_index))
                };
                let konst = |k: usize| match inst.ops.get(k) {
                    Some(Val::Int(c)) => Some(*c),
                    _ => None,
                };
                match inst.op {
                    Op::LLVMAdd => Some(Expr::add(op(0)?, op(1)?)),
                    Op::LLVMSub => Some(Expr::sub(op(0)?, op(1)?)),
                    Op::LLVMMul => Some(Expr::mul(op(0)?, op(1)?)),
                    Op::LLVMShl => Some(Expr::mul(
                        op(0)?,
                        Expr::Const(1i64.checked_shl(konst(1)? as u32)?),
                    )),
                    Op::LLVMLShr | Op::LLVMAShr => Some(Expr::div(
                        op(0)?,
                        Expr::Const(1i64.checked_shl(konst(1)? as u32)?),
                    )),
                    Op::LLVMSDiv | Op::LLVMUDiv => Some(Expr::div(op(0)?, op(1)?)),
                    Op::LLVMSRem | Op::LLVMURem => Some(Expr::rem(op(0)?, op(1)?)),
                    Op::LLVMAnd => {
                        let mask = konst(1)?;
                        let x = op(0)?;
                        let tz = mask.trailing_zeros();
                        let run = (mask as u64) >> tz;
                        if mask > 0 && tz == 0 && run & (run + 1) == 0 {
                            // x & (2^k - 1)
                            Some(Expr::rem(x, Expr::Const(mask + 1)))
                        } else if tz > 0
                            && tz < 32
                            && run & (run + 1) == 0
                            && run.count_ones() >= 24
                        {
                            // x & ~(2^k - 1) on values in the positive range: a multiple of 2^k.
                            Some(Expr::sub(x.clone(), Expr::rem(x, Expr::Const(1i64 << tz))))
                        } else {
                            None
                        }
                    }
                    Op::LLVMZExt | Op::LLVMSExt | Op::LLVMTrunc | Op::LLVMFreeze => op(0),
                    Op::LLVMCall => {
                        let name = inst.callee_name()?;
                        let axis = name.rsplit('.').next().unwrap_or("x");
                        if name.contains("sreg.tid")
                            || name.contains("sreg.ctaid")
                            || name.contains("sreg.laneid")
                        {
                            thread_index.then_some(Expr::Const(0))
                        } else if name.contains("sreg.ntid") {
                            Some(Expr::Sym(format!("blockDim.{axis}")))
                        } else if name.contains("sreg.nctaid") {
                            Some(Expr::Sym(format!("gridDim.{axis}")))
                        } else {
                            None
                        }
                    }
                    Op::LLVMLoad => {
                        // A scalar field of a by-value struct argument.
                        let r = val_roots(self.f, inst.ops.first()?, self.roots);
                        match r.as_slice() {
                            [Root::ParamSpace {
                                arg,
                                offset: Some(o),
                            }] => Some(Expr::Sym(format!(
                                "{}.{o}",
                                self.f.params[*arg as usize].name
                            ))),
                            _ => None,
                        }
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// How many times loop `l`'s header runs per entry into the loop, when derivable.
    fn trip(&self, l: usize) -> Option<Expr> {
        let lp = &self.cfg.loops[l];
        let exiting: Vec<u32> = lp
            .blocks
            .iter()
            .copied()
            .filter(|&b| {
                self.f.blocks[b as usize]
                    .succs
                    .iter()
                    .any(|s| lp.blocks.binary_search(s).is_err())
            })
            .collect();
        let [e] = exiting.as_slice() else { return None };
        let block = &self.f.blocks[*e as usize];
        let term = &self.f.insts[(block.end - 1) as usize];
        let (Op::LLVMBr, Some(Val::Inst(c)), [t, _]) =
            (term.op, term.ops.first(), block.succs.as_slice())
        else {
            return None;
        };
        let cmp = &self.f.insts[*c as usize];
        let (Op::LLVMICmp, Some(pred)) = (cmp.op, cmp.pred) else {
            return None;
        };
        let continue_if_true = lp.blocks.binary_search(t).is_ok();
        // Find which side is the induction variable.
        let (lhs, rhs) = (cmp.ops.first()?, cmp.ops.get(1)?);
        let (iv_side, bound, swapped) = if self.in_loop(l, lhs) && !self.in_loop(l, rhs) {
            (lhs, rhs, false)
        } else if self.in_loop(l, rhs) && !self.in_loop(l, lhs) {
            (rhs, lhs, true)
        } else {
            return None;
        };
        let bound = self.expr_in(bound, 0, false)?;
        let Val::Inst(x) = iv_side else { return None };
        // x is the header phi, or phi + step.
        let header_phi = |i: u32| {
            let inst = &self.f.insts[i as usize];
            inst.op == Op::LLVMPHI && inst.block == lp.header
        };
        // x is the header phi plus an invariant offset c (0 when x is the phi itself).
        let (phi, offset) = if header_phi(*x) {
            (*x, Expr::Const(0))
        } else {
            let add = &self.f.insts[*x as usize];
            if add.op != Op::LLVMAdd {
                return None;
            }
            match add.ops.as_slice() {
                [Val::Inst(p), c] | [c, Val::Inst(p)] if header_phi(*p) && !self.in_loop(l, c) => {
                    (*p, self.expr_in(c, 0, false)?)
                }
                [Val::Inst(p), Val::Inst(q)] if header_phi(*p) && header_phi(*q) => return None,
                _ => return None,
            }
        };
        let tested_at_latch = lp.latches.contains(e);
        let (init, step) = self.induction(l, phi)?;
        let mut pred = pred;
        if swapped {
            pred = swapped_predicate(pred);
        }
        if !continue_if_true {
            pred = inverse_predicate(pred);
        }
        // Continue while `phi + offset pred bound`: compare the phi against `bound - offset`.
        let span = values_passing(pred, init, Expr::sub(bound, offset), step)?;
        // A test at the latch runs after the body: one iteration more than the values that
        // pass. Rotated loops are guarded before entry (LLVM's rotation inserts the test), so a
        // count below one means the loop does not run.
        let count = if tested_at_latch {
            Expr::add(span, Expr::Const(1))
        } else {
            span
        };
        Some(Expr::max(Expr::Const(0), count))
    }

    /// The start value and step of header phi `phi` of loop `l`: its value from outside the
    /// loop, and the invariant it adds from inside.
    fn induction(&self, l: usize, phi: u32) -> Option<(Expr, Expr)> {
        let lp = &self.cfg.loops[l];
        let phi_inst = &self.f.insts[phi as usize];
        let mut init = None;
        let mut step = None;
        for (k, v) in phi_inst.ops.iter().enumerate() {
            let from = phi_inst.phi_blocks.get(k).copied().unwrap_or(u32::MAX);
            if lp.blocks.binary_search(&from).is_ok() {
                let Val::Inst(n) = v else { return None };
                let add = &self.f.insts[*n as usize];
                if add.op != Op::LLVMAdd {
                    return None;
                }
                let s = match add.ops.as_slice() {
                    [Val::Inst(p), s] | [s, Val::Inst(p)] if *p == phi => s.clone(),
                    _ => return None,
                };
                step = Some(self.expr_in(&s, 0, false)?);
            } else {
                init = Some(self.expr(v, 0)?);
            }
        }
        Some((init?, step?))
    }

    /// Costliest path through the region of loop `l` (or the whole function), for a metric.
    fn region(&self, l: Option<usize>, metric: fn(&BlockCost) -> i64) -> Expr {
        let in_region = |b: u32| match l {
            Some(l) => self.cfg.loops[l].blocks.binary_search(&b).is_ok(),
            None => true,
        };
        // Node of a block: itself, or the outermost child loop (directly below `l`) holding it.
        let node_of = |b: u32| -> (u32, Option<usize>) {
            let mut cur = self.cfg.loop_of[b as usize].map(|x| x as usize);
            let mut child = None;
            while let Some(c) = cur {
                if Some(c) == l {
                    break;
                }
                child = Some(c);
                cur = self.cfg.loops[c].parent.map(|p| p as usize);
            }
            match child {
                Some(c) => (self.cfg.loops[c].header, Some(c)),
                None => (b, None),
            }
        };
        let header = l.map_or(self.cfg.rpo.first().copied().unwrap_or(0), |l| {
            self.cfg.loops[l].header
        });
        let nblocks = self.f.blocks.len();
        let mut best: Vec<Option<Expr>> = vec![None; nblocks];
        let mut result = Expr::Const(0);
        let reference = |e: &Expr| e.eval(&|_| REFERENCE);
        // RPO restricted to the region is a topological order of the region's DAG.
        for &b in &self.cfg.rpo {
            if !in_region(b) {
                continue;
            }
            let (node, child) = node_of(b);
            if node != b {
                continue; // handled at the child loop's header
            }
            let weight = match child {
                Some(c) => {
                    let body = self.region(Some(c), metric);
                    let trip = self
                        .trip(c)
                        .unwrap_or_else(|| Expr::Sym(format!("iters_L{c}")));
                    Expr::mul(trip, body)
                }
                None => Expr::Const(metric(&self.blocks[b as usize])),
            };
            let start = if b == header {
                Some(Expr::Const(0))
            } else {
                best[b as usize].take()
            };
            let Some(start) = start else { continue };
            let total = Expr::add(start, weight);
            // Exits of this node: successors of every block it covers.
            let covered: Vec<u32> = match child {
                Some(c) => self.cfg.loops[c].blocks.clone(),
                None => vec![b],
            };
            let mut exits_region = false;
            for &cb in &covered {
                for &s in &self.f.blocks[cb as usize].succs {
                    if s == header && l.is_some() {
                        exits_region = true; // back edge: the iteration ends here
                        continue;
                    }
                    if !in_region(s) {
                        exits_region = true;
                        continue;
                    }
                    let (sn, _) = node_of(s);
                    if sn == node {
                        continue;
                    }
                    let better = match &best[sn as usize] {
                        Some(cur) => reference(&total) > reference(cur),
                        None => true,
                    };
                    if better {
                        best[sn as usize] = Some(total.clone());
                    }
                }
            }
            let is_sink = self.f.blocks[b as usize].succs.is_empty() && child.is_none();
            if (exits_region || is_sink) && reference(&total) >= reference(&result) {
                result = total;
            }
        }
        result
    }
}

/// What the cost of `f` left out or clamped, in words: inline asm whose MMA shape or copy
/// size no real instruction has (counted as nothing), and counts that saturated.
pub(crate) fn clamped(f: &Func, cost: &StaticCost) -> Vec<String> {
    let mut out = Vec::new();
    for inst in &f.insts {
        let Callee::Asm(text) = &inst.callee else {
            continue;
        };
        if text.contains(".m") && text.contains("mma") && tensor_flops(text) == 0 {
            out.push(format!(
                "inline asm `{}` has an MMA shape no instruction has (a side over {MAX_MMA_SIDE}): counted as 0 FLOP",
                text.chars().take(60).collect::<String>()
            ));
        }
        if text.contains("cp.async") && asm_bytes(text) == 0 {
            out.push(format!(
                "inline asm `{}` copies a size outside 0..={MAX_COPY_BYTES} bytes: counted as 0 bytes",
                text.chars().take(60).collect::<String>()
            ));
        }
    }
    for (what, v) in [
        ("FLOP", &cost.flops_per_thread),
        ("global bytes", &cost.global_bytes_per_thread),
    ] {
        if v.contains(&i64::MAX.to_string()) || v.contains(&i64::MIN.to_string()) {
            out.push(format!(
                "its {what} per thread saturated at the 64-bit limit"
            ));
        }
    }
    out
}

/// Constant per-call costs (FLOPs, bytes) of functions `f` calls, by name.
pub(crate) type CalleeCosts = std::collections::HashMap<String, (i64, i64)>;

/// The static cost of one thread of `f`; calls to functions in `callees` add their cost.
pub(crate) fn static_cost(
    f: &Func,
    cfg: &Cfg,
    roots: &[Vec<Root>],
    callees: &CalleeCosts,
) -> StaticCost {
    let blocks = f
        .blocks
        .iter()
        .map(|b| {
            let mut c = BlockCost::default();
            // Saturating: a hostile module's counts must not wrap into nonsense.
            for inst in &f.insts[b.first as usize..b.end as usize] {
                c.flops = c.flops.saturating_add(inst_flops(inst));
                c.bytes = c.bytes.saturating_add(inst_bytes(f, inst, roots));
                if let Some((fl, by)) = inst.callee_name().and_then(|n| callees.get(n)) {
                    c.flops = c.flops.saturating_add(*fl);
                    c.bytes = c.bytes.saturating_add(*by);
                }
            }
            c
        })
        .collect();
    let coster = Coster {
        f,
        cfg,
        roots,
        blocks,
    };
    StaticCost {
        flops_per_thread: coster.region(None, |c| c.flops).simplified(),
        global_bytes_per_thread: coster.region(None, |c| c.bytes).simplified(),
    }
}

/// The predicate with its operands swapped (`a < b` is `b > a`).
fn swapped_predicate(pred: LLVMIntPredicate) -> LLVMIntPredicate {
    use LLVMIntPredicate::*;
    match pred {
        LLVMIntSLT => LLVMIntSGT,
        LLVMIntSGT => LLVMIntSLT,
        LLVMIntSLE => LLVMIntSGE,
        LLVMIntSGE => LLVMIntSLE,
        LLVMIntULT => LLVMIntUGT,
        LLVMIntUGT => LLVMIntULT,
        LLVMIntULE => LLVMIntUGE,
        LLVMIntUGE => LLVMIntULE,
        p => p,
    }
}

/// The predicate that holds exactly where `pred` does not (a loop that exits on true
/// continues on its inverse).
fn inverse_predicate(pred: LLVMIntPredicate) -> LLVMIntPredicate {
    use LLVMIntPredicate::*;
    match pred {
        LLVMIntEQ => LLVMIntNE,
        LLVMIntNE => LLVMIntEQ,
        LLVMIntSLT => LLVMIntSGE,
        LLVMIntSGE => LLVMIntSLT,
        LLVMIntSGT => LLVMIntSLE,
        LLVMIntSLE => LLVMIntSGT,
        LLVMIntULT => LLVMIntUGE,
        LLVMIntUGE => LLVMIntULT,
        LLVMIntUGT => LLVMIntULE,
        LLVMIntULE => LLVMIntUGT,
    }
}

/// How many values `init, init + step, …` satisfy `v pred bound` before the first that does
/// not; `None` for an equality test, whose count is not a closed form.
fn values_passing(pred: LLVMIntPredicate, init: Expr, bound: Expr, step: Expr) -> Option<Expr> {
    use LLVMIntPredicate::*;
    Some(match pred {
        LLVMIntSLT | LLVMIntULT | LLVMIntNE => Expr::ceil_div(Expr::sub(bound, init), step),
        LLVMIntSLE | LLVMIntULE => {
            Expr::ceil_div(Expr::add(Expr::sub(bound, init), Expr::Const(1)), step)
        }
        LLVMIntSGT | LLVMIntUGT => {
            Expr::ceil_div(Expr::sub(init, bound), Expr::sub(Expr::Const(0), step))
        }
        LLVMIntSGE | LLVMIntUGE => Expr::ceil_div(
            Expr::add(Expr::sub(init, bound), Expr::Const(1)),
            Expr::sub(Expr::Const(0), step),
        ),
        LLVMIntEQ => return None,
    })
}
