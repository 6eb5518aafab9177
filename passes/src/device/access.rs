//! Access modes of a kernel's pointer arguments: every pointer an instruction reads, writes or
//! lets escape is traced back to its roots (arguments, pointer fields of by-value structs,
//! locals, shared memory, or an opaque origin), then LLVM's own parameter attributes refine
//! what the trace could not decide.

use std::collections::BTreeMap;

use wattlens_instrument::{AccessMode, FieldAccess};

use crate::ir::{Callee, Func, Op, Ty, Val};

/// Where a pointer (or an integer made from one) comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Root {
    /// A pointer argument (global memory).
    Param(u32),
    /// The parameter-space copy of a by-value struct argument, at a byte offset if known.
    ParamSpace { arg: u32, offset: Option<i64> },
    /// A pointer loaded from a by-value struct argument's field.
    Field { arg: u32, offset: Option<i64> },
    /// A stack slot.
    Local,
    /// Shared memory.
    Shared,
    /// A global variable.
    Global,
    /// A pointer of unknown origin: loaded from memory, returned by a call, made from an integer.
    Opaque,
}

/// What an instruction does through a pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Read,
    Write,
    ReadWrite,
    /// The pointer leaves the analysis (stored, returned, passed to unknown code).
    Escape,
}

impl Effect {
    fn mode(self) -> AccessMode {
        match self {
            Effect::Read => AccessMode::Read,
            Effect::Write => AccessMode::Write,
            Effect::ReadWrite => AccessMode::ReadWrite,
            Effect::Escape => AccessMode::Unknown,
        }
    }
}

/// The access facts of one kernel.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Access {
    /// One mode per parameter (scalars: `None`).
    pub args: Vec<AccessMode>,
    /// Pointer fields of by-value struct arguments.
    pub fields: Vec<FieldAccess>,
    /// The kernel may store through pointers of opaque origin.
    pub writes_outside_args: bool,
}

/// Roots of every instruction's result, to a fixed point (phis in loops feed themselves).
pub(crate) fn roots(f: &Func) -> Vec<Vec<Root>> {
    let mut roots: Vec<Vec<Root>> = vec![Vec::new(); f.insts.len()];
    let mut changed = true;
    let mut rounds = 0;
    while changed && rounds < 64 {
        changed = false;
        rounds += 1;
        for i in 0..f.insts.len() {
            let new = derive(f, i, &roots);
            if new != roots[i] {
                roots[i] = new;
                changed = true;
            }
        }
    }
    roots
}

/// Roots of an operand, given the roots known so far.
pub(crate) fn val_roots(f: &Func, v: &Val, roots: &[Vec<Root>]) -> Vec<Root> {
    match *v {
        Val::Inst(i) => roots[i as usize].clone(),
        Val::Arg(a) => {
            let p = &f.params[a as usize];
            match p.ty {
                Ty::Ptr(_) if p.attrs.byval => vec![Root::ParamSpace {
                    arg: a,
                    offset: Some(0),
                }],
                Ty::Ptr(_) => vec![Root::Param(a)],
                _ => Vec::new(),
            }
        }
        Val::Global { addrspace: 3 } => vec![Root::Shared],
        Val::Global { addrspace: 5 } => vec![Root::Local],
        Val::Global { .. } => vec![Root::Global],
        Val::Int(_) | Val::Null | Val::Other => Vec::new(),
    }
}

fn union(mut a: Vec<Root>, b: Vec<Root>) -> Vec<Root> {
    a.extend(b);
    a.sort_unstable();
    a.dedup();
    a
}

fn derive(f: &Func, i: usize, roots: &[Vec<Root>]) -> Vec<Root> {
    let inst = &f.insts[i];
    let of = |k: usize| {
        inst.ops
            .get(k)
            .map(|v| val_roots(f, v, roots))
            .unwrap_or_default()
    };
    let is_ptr = matches!(inst.ty, Ty::Ptr(_));
    match inst.op {
        Op::LLVMAlloca => vec![Root::Local],
        Op::LLVMGetElementPtr => of(0)
            .into_iter()
            .map(|r| match r {
                Root::ParamSpace { arg, offset } => Root::ParamSpace {
                    arg,
                    offset: offset.zip(inst.gep_offset).map(|(a, b)| a + b),
                },
                other => other,
            })
            .collect(),
        Op::LLVMBitCast | Op::LLVMAddrSpaceCast | Op::LLVMFreeze | Op::LLVMPtrToInt => of(0),
        Op::LLVMIntToPtr => {
            let r = of(0);
            if r.is_empty() {
                vec![Root::Opaque]
            } else {
                r
            }
        }
        Op::LLVMSelect => union(of(1), of(2)),
        Op::LLVMPHI => {
            let mut all = Vec::new();
            for v in &inst.ops {
                all = union(all, val_roots(f, v, roots));
            }
            all
        }
        // Integer arithmetic carries the roots of pointer-derived operands (offsets, masks).
        Op::LLVMAdd
        | Op::LLVMSub
        | Op::LLVMOr
        | Op::LLVMAnd
        | Op::LLVMXor
        | Op::LLVMMul
        | Op::LLVMShl
        | Op::LLVMLShr
        | Op::LLVMAShr
        | Op::LLVMTrunc
        | Op::LLVMZExt
        | Op::LLVMSExt => {
            let mut all = Vec::new();
            for k in 0..inst.ops.len() {
                all = union(all, of(k));
            }
            all
        }
        Op::LLVMLoad if is_ptr => {
            let from = of(0);
            let mut out = Vec::new();
            for r in from {
                out.push(match r {
                    Root::ParamSpace { arg, offset } => Root::Field { arg, offset },
                    _ => Root::Opaque,
                });
            }
            if out.is_empty() {
                out.push(Root::Opaque);
            }
            out.sort_unstable();
            out.dedup();
            out
        }
        Op::LLVMCall | Op::LLVMInvoke if is_ptr => match inst.callee_name() {
            Some(n) if n.starts_with("llvm.ptrmask") || n.starts_with("llvm.nvvm.ptr.") => of(0),
            Some(n) if n.starts_with("llvm.nvvm.cvta") => of(0),
            _ => vec![Root::Opaque],
        },
        _ if is_ptr => vec![Root::Opaque],
        _ => Vec::new(),
    }
}

/// Access facts of functions called from a kernel, by name (analysed before their callers).
pub(crate) type Callees = std::collections::HashMap<String, Access>;

/// Effects of one instruction on its pointer operands: (operand index, effect).
fn effects(f: &Func, i: usize, roots: &[Vec<Root>], callees: &Callees) -> Vec<(usize, Effect)> {
    let inst = &f.insts[i];
    let carries = |k: usize| {
        inst.ops
            .get(k)
            .is_some_and(|v| !val_roots(f, v, roots).is_empty())
    };
    match inst.op {
        Op::LLVMLoad => vec![(0, Effect::Read)],
        Op::LLVMStore => {
            let mut e = vec![(1, Effect::Write)];
            if carries(0) {
                e.push((0, Effect::Escape));
            }
            e
        }
        Op::LLVMAtomicRMW | Op::LLVMAtomicCmpXchg => {
            let mut e = vec![(0, Effect::ReadWrite)];
            for k in 1..inst.ops.len() {
                if carries(k) {
                    e.push((k, Effect::Escape));
                }
            }
            e
        }
        Op::LLVMRet => (0..inst.ops.len())
            .filter(|&k| carries(k))
            .map(|k| (k, Effect::Escape))
            .collect(),
        Op::LLVMCall | Op::LLVMInvoke | Op::LLVMCallBr => call_effects(inst, &carries, callees),
        _ => Vec::new(),
    }
}

fn call_effects(
    inst: &crate::ir::Inst,
    carries: &dyn Fn(usize) -> bool,
    callees: &Callees,
) -> Vec<(usize, Effect)> {
    let pointer_ops: Vec<usize> = (0..inst.ops.len()).filter(|&k| carries(k)).collect();
    let all = |e: Effect| pointer_ops.iter().map(|&k| (k, e)).collect::<Vec<_>>();
    match &inst.callee {
        // `cp.async [dst], [src], size`: the first operand is written, the others read.
        Callee::Asm(text) if text.contains("cp.async") => pointer_ops
            .iter()
            .map(|&k| (k, if k == 0 { Effect::Write } else { Effect::Read }))
            .collect(),
        Callee::Asm(text) => {
            let stores = ["st.", "red.", "atom.", "cp.", "wgmma", "stmatrix"]
                .iter()
                .any(|s| text.contains(s));
            let loads = ["ld.", "ldmatrix", "prefetch"]
                .iter()
                .any(|s| text.contains(s));
            let rmw = text.contains("atom.") || text.contains("red.");
            all(match (loads, stores) {
                (true, false) => Effect::Read,
                (false, true) if rmw => Effect::ReadWrite,
                (false, true) => Effect::Write,
                _ => Effect::Escape,
            })
        }
        Callee::Indirect | Callee::None => all(Effect::Escape),
        Callee::Direct {
            name, params, pure, ..
        } => {
            if let Some(acc) = callees.get(name) {
                return pointer_ops
                    .iter()
                    .filter_map(|&k| {
                        match acc.args.get(k).copied().unwrap_or(AccessMode::Unknown) {
                            AccessMode::None => None,
                            AccessMode::Read => Some((k, Effect::Read)),
                            AccessMode::Write => Some((k, Effect::Write)),
                            AccessMode::ReadWrite => Some((k, Effect::ReadWrite)),
                            AccessMode::Unknown => Some((k, Effect::Escape)),
                        }
                    })
                    .collect();
            }
            if name.starts_with("llvm.") {
                intrinsic_effects(name, &pointer_ops, *pure)
            } else {
                pointer_ops
                    .iter()
                    .map(|&k| {
                        let a = params.get(k).copied().unwrap_or_default();
                        let e = if a.readnone || a.byval {
                            None
                        } else if a.readonly {
                            Some(Effect::Read)
                        } else if a.writeonly {
                            Some(Effect::Write)
                        } else {
                            Some(Effect::Escape)
                        };
                        (k, e)
                    })
                    .filter_map(|(k, e)| e.map(|e| (k, e)))
                    .collect()
            }
        }
    }
}

fn intrinsic_effects(name: &str, pointer_ops: &[usize], pure: bool) -> Vec<(usize, Effect)> {
    let each = |e: Effect| pointer_ops.iter().map(|&k| (k, e)).collect::<Vec<_>>();
    let dst_src = |dst: Effect, src: Option<Effect>| {
        pointer_ops
            .iter()
            .filter_map(|&k| match k {
                0 => Some((0, dst)),
                1 => src.map(|s| (1, s)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    const NO_MEMORY: [&str; 9] = [
        "llvm.lifetime",
        "llvm.assume",
        "llvm.dbg",
        "llvm.prefetch",
        "llvm.nvvm.prefetch",
        "llvm.nvvm.isspacep",
        "llvm.invariant",
        "llvm.ptrmask",
        "llvm.nvvm.ptr.",
    ];
    if NO_MEMORY.iter().any(|p| name.starts_with(p)) || pure {
        return Vec::new();
    }
    if name.starts_with("llvm.memcpy") || name.starts_with("llvm.memmove") {
        return dst_src(Effect::Write, Some(Effect::Read));
    }
    if name.starts_with("llvm.memset") {
        return dst_src(Effect::Write, None);
    }
    if name.contains("cp.async") && !name.contains("wait") && !name.contains("commit") {
        return dst_src(Effect::Write, Some(Effect::Read));
    }
    if name.contains("atomic") || name.contains(".red.") {
        return each(Effect::ReadWrite);
    }
    if name.contains(".store") || name.contains(".st.") {
        return each(Effect::Write);
    }
    if name.contains("ldg")
        || name.contains("ldu")
        || name.contains(".load")
        || name.contains(".ld.")
    {
        return each(Effect::Read);
    }
    each(Effect::Escape)
}

/// Access modes of every parameter of `f`.
pub(crate) fn analyze(f: &Func, roots: &[Vec<Root>], callees: &Callees) -> Access {
    let n = f.params.len();
    let mut args = vec![AccessMode::None; n];
    let mut fields: BTreeMap<(u32, i64), AccessMode> = BTreeMap::new();
    let mut writes_outside = false;
    for i in 0..f.insts.len() {
        let inst = &f.insts[i];
        if let Some(callee) = inst.callee_name().and_then(|n| callees.get(n)) {
            writes_outside |= callee.writes_outside_args;
        }
        for (k, effect) in effects(f, i, roots, callees) {
            let Some(v) = inst.ops.get(k) else { continue };
            for root in val_roots(f, v, roots) {
                match root {
                    Root::Param(p) => args[p as usize] = args[p as usize].join(effect.mode()),
                    Root::Field { arg, offset } => {
                        let a = arg as usize;
                        match offset {
                            Some(o) => {
                                let m = fields.entry((arg, o)).or_insert(AccessMode::None);
                                *m = m.join(effect.mode());
                                args[a] = args[a].join(effect.mode());
                            }
                            None => args[a] = AccessMode::Unknown,
                        }
                    }
                    Root::ParamSpace { arg, .. } => {
                        if effect != Effect::Read {
                            args[arg as usize] = AccessMode::Unknown;
                        }
                    }
                    Root::Opaque => {
                        let via_unknown_code =
                            matches!(inst.op, Op::LLVMCall | Op::LLVMInvoke | Op::LLVMCallBr);
                        if matches!(effect, Effect::Write | Effect::ReadWrite)
                            || (effect == Effect::Escape && via_unknown_code)
                        {
                            writes_outside = true;
                        }
                    }
                    Root::Local | Root::Shared | Root::Global => {}
                }
            }
        }
    }
    // LLVM's proven parameter attributes settle what the trace left unknown.
    for (a, p) in f.params.iter().enumerate() {
        if !matches!(p.ty, Ty::Ptr(_)) || p.attrs.byval {
            continue;
        }
        let m = args[a];
        args[a] = if p.attrs.readnone {
            AccessMode::None
        } else if p.attrs.readonly && matches!(m, AccessMode::Unknown) {
            AccessMode::Read
        } else if p.attrs.writeonly && matches!(m, AccessMode::Unknown) {
            AccessMode::Write
        } else {
            m
        };
    }
    // A store through a pointer of unknown origin may land in any argument's buffer that
    // `noalias` does not protect.
    if writes_outside {
        for (a, p) in f.params.iter().enumerate() {
            let exposed = matches!(p.ty, Ty::Ptr(_)) && !p.attrs.byval;
            let protected = p.attrs.noalias && args[a] != AccessMode::None;
            if exposed && !protected && !args[a].may_write() {
                args[a] = AccessMode::Unknown;
            }
        }
    }
    Access {
        args,
        fields: fields
            .into_iter()
            .map(|((arg, offset), mode)| FieldAccess {
                arg,
                offset_bytes: offset.max(0) as u64,
                mode,
            })
            .collect(),
        writes_outside_args: writes_outside,
    }
}
