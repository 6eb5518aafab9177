//! Operator class of a kernel from the structure of its IR: tensor-core and dot-product
//! multiply–accumulate chains, exponentials, reductions, square roots, data-dependent
//! addressing and pure data movement.

use wattlens_instrument::OpClass;

use super::access::{val_roots, Root};
use super::cfg::Cfg;
use crate::ir::{Callee, Func, Inst, Op, Ty, Val};

/// The structural evidence the classification rests on (reported with `--explain`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    /// Tensor-core instructions (`mma`, `wmma`, `wgmma`) or packed integer dot products (`dp4a`).
    pub tensor_ops: u32,
    /// Multiply–accumulates whose two factors come from two different loads.
    pub dot_macs: u32,
    /// Exponentials (`exp`, `ex2`).
    pub exps: u32,
    /// Square roots and reciprocal square roots.
    pub sqrts: u32,
    /// Sum reductions (loop-carried accumulators, warp-shuffle trees).
    pub sum_reductions: u32,
    /// Max reductions.
    pub max_reductions: u32,
    /// Loads or stores whose address depends on an integer loaded from memory.
    pub indirect_accesses: u32,
    /// Stores to global memory.
    pub global_stores: u32,
    /// Of those, stores of a loaded value or a constant, converted at most.
    pub move_stores: u32,
    /// Of those, stores of a value computed from loaded data.
    pub computed_stores: u32,
    /// Floating-point instructions (static count).
    pub fp_ops: u32,
}

impl Features {
    /// Add the evidence of a function this one calls.
    pub(crate) fn absorb(&mut self, callee: &Features) {
        self.tensor_ops += callee.tensor_ops;
        self.dot_macs += callee.dot_macs;
        self.exps += callee.exps;
        self.sqrts += callee.sqrts;
        self.sum_reductions += callee.sum_reductions;
        self.max_reductions += callee.max_reductions;
        self.indirect_accesses += callee.indirect_accesses;
        self.global_stores += callee.global_stores;
        self.move_stores += callee.move_stores;
        self.computed_stores += callee.computed_stores;
        self.fp_ops += callee.fp_ops;
    }

    /// The class these features indicate (before any source annotation).
    pub fn class(&self) -> OpClass {
        let reduces = self.sum_reductions + self.max_reductions > 0;
        if self.tensor_ops > 0 || self.dot_macs > 0 {
            if self.exps > 0 {
                OpClass::Attention
            } else {
                OpClass::Matmul
            }
        } else if self.sqrts > 0 && self.sum_reductions > 0 {
            OpClass::Norm
        } else if reduces {
            OpClass::Softmax
        } else if self.indirect_accesses > 0 {
            OpClass::GatherScatter
        } else if self.global_stores > 0 && self.move_stores == self.global_stores {
            OpClass::Copy
        } else if self.computed_stores > 0 {
            OpClass::Elementwise
        } else {
            OpClass::Unknown
        }
    }
}

fn callee_text(inst: &Inst) -> &str {
    match &inst.callee {
        Callee::Direct { name, .. } => name,
        Callee::Asm(text) => text,
        _ => "",
    }
}

fn is_call(inst: &Inst) -> bool {
    matches!(inst.op, Op::LLVMCall | Op::LLVMInvoke)
}

fn is_float(t: Ty) -> bool {
    matches!(t, Ty::Float { .. })
}

/// Operations that move a value without computing on it.
fn is_conversion(op: Op) -> bool {
    matches!(
        op,
        Op::LLVMBitCast
            | Op::LLVMFPExt
            | Op::LLVMFPTrunc
            | Op::LLVMZExt
            | Op::LLVMSExt
            | Op::LLVMTrunc
            | Op::LLVMExtractElement
            | Op::LLVMInsertElement
            | Op::LLVMShuffleVector
            | Op::LLVMExtractValue
            | Op::LLVMInsertValue
            | Op::LLVMFPToSI
            | Op::LLVMFPToUI
            | Op::LLVMSIToFP
            | Op::LLVMUIToFP
            | Op::LLVMFreeze
    )
}

/// Which call a floating-point "accumulate" step is, with the index of its accumulator operand.
fn accumulate_step(inst: &Inst) -> Option<(Step, usize)> {
    match inst.op {
        Op::LLVMFAdd => Some((Step::Add, usize::MAX)),
        Op::LLVMFSub => Some((Step::Add, 0)),
        _ if is_call(inst) => {
            let name = inst.callee_name()?;
            if name.starts_with("llvm.fma")
                || name.starts_with("llvm.fmuladd")
                || name.starts_with("llvm.nvvm.fma")
            {
                Some((Step::Fma, 2))
            } else if name.contains("maxnum")
                || name.contains("maximum")
                || name.contains("nvvm.fmax")
            {
                Some((Step::Max, usize::MAX))
            } else {
                None
            }
        }
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Add,
    Fma,
    Max,
}

struct Ctx<'a> {
    f: &'a Func,
    /// For each instruction, the load it forwards (through conversions), if any.
    load_of: Vec<Option<u32>>,
}

impl Ctx<'_> {
    fn source_load(&self, v: &Val) -> Option<u32> {
        match *v {
            Val::Inst(i) => self.load_of[i as usize],
            _ => None,
        }
    }

    /// Follow an accumulator chain from `start` back to `phi`; count multiply–accumulates whose
    /// two factors are distinct loads. Returns (reaches the phi, step kinds seen, dot MACs).
    fn chain(&self, phi: u32, start: &Val) -> (bool, Option<Step>, u32) {
        let mut v = start.clone();
        let mut macs = 0;
        let mut kind = None;
        for _ in 0..4096 {
            let Val::Inst(i) = v else {
                return (false, kind, macs);
            };
            if i == phi {
                return (true, kind, macs);
            }
            let inst = &self.f.insts[i as usize];
            if inst.op == Op::LLVMPHI || inst.op == Op::LLVMSelect {
                // Inner loops or predicated steps: follow the operand that leads back.
                let next = inst.ops.iter().find(|o| self.reaches(phi, o, 64));
                match next {
                    Some(n) => {
                        v = n.clone();
                        continue;
                    }
                    None => return (false, kind, macs),
                }
            }
            let Some((step, acc)) = accumulate_step(inst) else {
                return (false, kind, macs);
            };
            kind = kind.or(Some(step));
            let acc_index = if acc == usize::MAX {
                // Commutative: the operand that leads back to the phi.
                (0..inst.ops.len())
                    .find(|&k| self.reaches(phi, &inst.ops[k], 64))
                    .unwrap_or(0)
            } else {
                acc
            };
            let others: Vec<&Val> = inst
                .ops
                .iter()
                .enumerate()
                .filter(|(k, _)| *k != acc_index)
                .map(|(_, o)| o)
                .collect();
            match step {
                Step::Fma if others.len() == 2 => {
                    macs += u32::from(self.distinct_loads(others[0], others[1]))
                }
                Step::Add => {
                    if let Some(Val::Inst(m)) = others.first() {
                        let mul = &self.f.insts[*m as usize];
                        if mul.op == Op::LLVMFMul && mul.ops.len() == 2 {
                            macs += u32::from(self.distinct_loads(&mul.ops[0], &mul.ops[1]));
                        }
                    }
                }
                _ => {}
            }
            v = inst.ops.get(acc_index).cloned().unwrap_or(Val::Other);
        }
        (false, kind, macs)
    }

    fn distinct_loads(&self, a: &Val, b: &Val) -> bool {
        matches!((self.source_load(a), self.source_load(b)), (Some(x), Some(y)) if x != y)
    }

    /// Whether `v` depends on instruction `target` within `budget` steps.
    fn reaches(&self, target: u32, v: &Val, budget: u32) -> bool {
        let mut stack = vec![(v.clone(), budget)];
        let mut seen = std::collections::HashSet::new();
        while let Some((v, b)) = stack.pop() {
            let Val::Inst(i) = v else { continue };
            if i == target {
                return true;
            }
            if b == 0 || !seen.insert(i) {
                continue;
            }
            for o in &self.f.insts[i as usize].ops {
                stack.push((o.clone(), b - 1));
            }
        }
        false
    }
}

/// Extract the classification features of `f`.
pub(crate) fn features(f: &Func, cfg: &Cfg, roots: &[Vec<Root>]) -> Features {
    let flow = LoadFlow::of(f);
    let indirect = indirect_pointers(f, &flow.int_from_load);
    let ctx = Ctx {
        f,
        load_of: flow.load_of,
    };
    let mut ft = Features::default();
    for (i, inst) in f.insts.iter().enumerate() {
        if is_call(inst) {
            count_intrinsics(&mut ft, f, i, inst);
        }
        if is_float(inst.ty)
            && !matches!(inst.op, Op::LLVMLoad | Op::LLVMPHI | Op::LLVMSelect)
            && !is_conversion(inst.op)
        {
            ft.fp_ops += 1;
        }
        if inst.op == Op::LLVMPHI && is_float(inst.ty) {
            count_loop_reductions(&mut ft, &ctx, cfg, i);
        }
        // Data-dependent addressing: an address built (through any chain of GEPs, casts, phis
        // and selects) from an integer loaded from memory.
        if matches!(inst.op, Op::LLVMLoad | Op::LLVMStore) {
            let ptr = if inst.op == Op::LLVMLoad {
                inst.ops.first()
            } else {
                inst.ops.get(1)
            };
            if let Some(Val::Inst(p)) = ptr {
                if indirect[*p as usize] {
                    ft.indirect_accesses += 1;
                }
            }
        }
        if inst.op == Op::LLVMStore {
            count_global_store(&mut ft, &ctx, inst, (roots, &flow.from_load));
        }
        if is_call(inst) && is_memory_intrinsic(callee_text(inst)) {
            ft.global_stores += 1;
            ft.move_stores += 1;
        }
    }
    ft
}

/// What each instruction's value owes to loads.
struct LoadFlow {
    /// The load it forwards (through conversions), if any.
    load_of: Vec<Option<u32>>,
    /// Whether it is an integer derived from a loaded integer (for data-dependent addressing).
    int_from_load: Vec<bool>,
    /// Whether it is derived from any loaded data (for "computed from loads").
    from_load: Vec<bool>,
}

impl LoadFlow {
    fn of(f: &Func) -> Self {
        let n = f.insts.len();
        let mut flow = Self {
            load_of: vec![None; n],
            int_from_load: vec![false; n],
            from_load: vec![false; n],
        };
        // Three passes reach values defined after their use in the listing (loop phis).
        for _ in 0..3 {
            for i in 0..n {
                flow.visit(f, i);
            }
        }
        flow
    }

    fn visit(&mut self, f: &Func, i: usize) {
        let inst = &f.insts[i];
        let dep = |flags: &[bool]| {
            inst.ops
                .iter()
                .any(|o| matches!(o, Val::Inst(j) if flags[*j as usize]))
        };
        let is_int = matches!(inst.ty, Ty::Int { .. });
        match inst.op {
            Op::LLVMLoad => {
                self.load_of[i] = Some(i as u32);
                self.from_load[i] = true;
                self.int_from_load[i] = is_int;
            }
            op if is_conversion(op) => {
                self.load_of[i] = match inst.ops.first() {
                    Some(Val::Inst(j)) => self.load_of[*j as usize],
                    _ => None,
                };
                self.from_load[i] = dep(&self.from_load);
                self.int_from_load[i] = is_int && dep(&self.int_from_load);
            }
            Op::LLVMGetElementPtr => {}
            _ => {
                self.from_load[i] = dep(&self.from_load);
                self.int_from_load[i] = is_int && dep(&self.int_from_load);
            }
        }
    }
}

/// Pointers whose address depends on a loaded integer (`int_from_load`).
fn indirect_pointers(f: &Func, int_from_load: &[bool]) -> Vec<bool> {
    let n = f.insts.len();
    let mut indirect = vec![false; n];
    for _ in 0..3 {
        for i in 0..n {
            let inst = &f.insts[i];
            let from = |v: &Val| matches!(v, Val::Inst(j) if indirect[*j as usize]);
            indirect[i] = match inst.op {
                Op::LLVMGetElementPtr => {
                    inst.ops.first().is_some_and(from)
                        || inst
                            .ops
                            .iter()
                            .skip(1)
                            .any(|o| matches!(o, Val::Inst(j) if int_from_load[*j as usize]))
                }
                Op::LLVMBitCast | Op::LLVMAddrSpaceCast | Op::LLVMPHI | Op::LLVMSelect => {
                    inst.ops.iter().any(from)
                }
                _ => false,
            };
        }
    }
    indirect
}

/// Count call `inst` (instruction `i`) if it is a tensor-core or dot-product op, an exp, a
/// square root, or a shuffle whose value is combined with the value it came from (a shuffle
/// reduction tree).
fn count_intrinsics(ft: &mut Features, f: &Func, i: usize, inst: &Inst) {
    let text = callee_text(inst);
    if text.contains("mma") || text.contains("dp4a") || text.contains("dp2a") {
        ft.tensor_ops += 1;
    }
    if text.contains("llvm.exp") || text.contains("ex2") {
        ft.exps += 1;
    }
    if text.contains("sqrt") {
        ft.sqrts += 1;
    }
    if !text.contains("shfl") {
        return;
    }
    let src = inst.ops.get(1).cloned().unwrap_or(Val::Other);
    for &u in &f.users[i] {
        let user = &f.insts[u as usize];
        if let Some((step, _)) = accumulate_step(user) {
            if user.ops.contains(&src) {
                match step {
                    Step::Max => ft.max_reductions += 1,
                    _ => ft.sum_reductions += 1,
                }
            }
        }
    }
}

/// Count the reductions and dot-product multiply-adds a loop carries through float phi `i`
/// in its header: each value from a latch whose chain closes back on the phi.
fn count_loop_reductions(ft: &mut Features, ctx: &Ctx<'_>, cfg: &Cfg, i: usize) {
    let inst = &ctx.f.insts[i];
    let header = inst.block;
    let Some(l) = cfg.loop_of[header as usize] else {
        return;
    };
    let lp = &cfg.loops[l as usize];
    if lp.header != header {
        return;
    }
    for (k, v) in inst.ops.iter().enumerate() {
        let from = inst.phi_blocks.get(k).copied().unwrap_or(u32::MAX);
        if !lp.latches.contains(&from) {
            continue;
        }
        let (closed, step, macs) = ctx.chain(i as u32, v);
        if closed {
            ft.dot_macs += macs;
            match step {
                Some(Step::Max) => ft.max_reductions += 1,
                Some(_) => ft.sum_reductions += 1,
                None => {}
            }
        }
    }
}

/// Count store `inst` if it writes global memory: as a move (its value a load, forwarded) or
/// as computed from loaded data (`from_load`).
fn count_global_store(
    ft: &mut Features,
    ctx: &Ctx<'_>,
    inst: &Inst,
    (roots, from_load): (&[Vec<Root>], &[bool]),
) {
    let to_global = inst
        .ops
        .get(1)
        .map(|p| val_roots(ctx.f, p, roots))
        .is_some_and(|r| {
            r.iter().any(|r| {
                matches!(
                    r,
                    Root::Param(_) | Root::Field { .. } | Root::Opaque | Root::Global
                )
            })
        });
    if !to_global {
        return;
    }
    ft.global_stores += 1;
    match inst.ops.first() {
        Some(Val::Inst(j)) if ctx.load_of[*j as usize].is_some() => ft.move_stores += 1,
        Some(Val::Inst(j)) if from_load[*j as usize] => ft.computed_stores += 1,
        Some(Val::Inst(_)) => {}
        _ => ft.move_stores += 1,
    }
}

/// Whether a callee is a memory intrinsic (`llvm.memcpy`, `llvm.memmove`, `llvm.memset`): a
/// move of memory, counted as a global store.
fn is_memory_intrinsic(text: &str) -> bool {
    text.starts_with("llvm.memcpy")
        || text.starts_with("llvm.memmove")
        || text.starts_with("llvm.memset")
}
