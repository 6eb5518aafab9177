//! An owned snapshot of one LLVM function (blocks, instructions, operands, parameter
//! attributes), read once through the LLVM-C API so that every analysis is plain Rust over
//! indices.

use std::collections::HashMap;
use std::ffi::c_char;

use inkwell::llvm_sys::core::*;
use inkwell::llvm_sys::prelude::{LLVMModuleRef, LLVMTypeRef, LLVMValueRef};
use inkwell::llvm_sys::target::{LLVMABISizeOfType, LLVMOffsetOfElement, LLVMTargetDataRef};
use inkwell::llvm_sys::target::{LLVMGetModuleDataLayout, LLVMStoreSizeOfType};
use inkwell::llvm_sys::{LLVMAttributeFunctionIndex, LLVMIntPredicate, LLVMTypeKind};

pub(crate) use inkwell::llvm_sys::LLVMOpcode as Op;

/// An operand of an instruction.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    /// The result of instruction `i` of the same function.
    Inst(u32),
    /// Parameter `i` of the function.
    Arg(u32),
    /// An integer constant (sign-extended).
    Int(i64),
    /// A global variable (seen through constant casts and GEPs), with its address space.
    Global { addrspace: u32 },
    /// A null pointer.
    Null,
    /// Anything else: floating constants, undef, poison, other constant expressions.
    Other,
}

/// The type of a value, as far as the analyses care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    /// No value.
    Void,
    /// An integer of `bits` (vectors: `lanes` > 1).
    Int { bits: u32, lanes: u32 },
    /// A floating-point value of `bits` (vectors: `lanes` > 1).
    Float { bits: u32, lanes: u32 },
    /// A pointer in an address space.
    Ptr(u32),
    /// Structs, arrays, labels, tokens, metadata.
    Other,
}

/// What a call instruction calls.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Callee {
    /// Not a call.
    None,
    /// A named function; `params` are its parameter attributes.
    Direct {
        name: String,
        params: Vec<ParamAttrs>,
        /// The function is declared `memory(none)`.
        pure: bool,
        /// The callee itself, when it has a body in this module.
        body: Option<LLVMValueRef>,
    },
    /// Inline assembly, with its text.
    Asm(String),
    /// A function pointer.
    Indirect,
}

/// LLVM attributes of one parameter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ParamAttrs {
    pub readonly: bool,
    pub writeonly: bool,
    pub readnone: bool,
    pub noalias: bool,
    pub byval: bool,
}

/// One parameter of the analysed function.
#[derive(Debug, Clone)]
pub(crate) struct Param {
    pub ty: Ty,
    /// Its IR name, or `argN` when clang discarded names.
    pub name: String,
    pub attrs: ParamAttrs,
}

/// One instruction.
#[derive(Debug, Clone)]
pub(crate) struct Inst {
    pub op: Op,
    /// Index of the block that holds it.
    pub block: u32,
    /// Operands; for calls, the arguments only (not the callee).
    pub ops: Vec<Val>,
    pub ty: Ty,
    /// Bytes moved by a load, store, atomic, or memory intrinsic with a constant length.
    pub mem_bytes: u64,
    /// Integer comparison predicate.
    pub pred: Option<LLVMIntPredicate>,
    pub callee: Callee,
    /// Incoming blocks of a phi, parallel to `ops`.
    pub phi_blocks: Vec<u32>,
    /// Byte offset of a GEP whose indices are all constant.
    pub gep_offset: Option<i64>,
}

impl Inst {
    /// The called function's name, for direct calls.
    pub fn callee_name(&self) -> Option<&str> {
        match &self.callee {
            Callee::Direct { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// One basic block: instructions `first..end`, and its successors.
#[derive(Debug, Clone)]
pub(crate) struct Block {
    pub first: u32,
    pub end: u32,
    pub succs: Vec<u32>,
}

/// A function with a body, ready for analysis.
#[derive(Debug, Clone)]
pub(crate) struct Func {
    pub name: String,
    pub params: Vec<Param>,
    pub blocks: Vec<Block>,
    pub insts: Vec<Inst>,
    /// Users of each instruction's result.
    pub users: Vec<Vec<u32>>,
}

/// Attribute kind ids looked up once per module.
struct Kinds {
    readonly: u32,
    writeonly: u32,
    readnone: u32,
    noalias: u32,
    byval: u32,
    memory: u32,
}

impl Kinds {
    fn new() -> Self {
        let kind = |name: &str| {
            // SAFETY: the pointer and length describe a live &str.
            unsafe { LLVMGetEnumAttributeKindForName(name.as_ptr().cast::<c_char>(), name.len()) }
        };
        Kinds {
            readonly: kind("readonly"),
            writeonly: kind("writeonly"),
            readnone: kind("readnone"),
            noalias: kind("noalias"),
            byval: kind("byval"),
            memory: kind("memory"),
        }
    }
}

/// Reads functions of one module; holds the module's data layout and attribute kinds.
pub(crate) struct Reader {
    layout: LLVMTargetDataRef,
    kinds: Kinds,
    callee_cache: HashMap<usize, (String, Vec<ParamAttrs>, bool, bool)>,
}

/// The name of any value, or an empty string.
pub(crate) fn value_name(v: LLVMValueRef) -> String {
    let mut len = 0usize;
    // SAFETY: `v` is a live value of a live module; LLVM returns a pointer into the value's
    // name (valid while the value lives) and its length.
    let ptr = unsafe { LLVMGetValueName2(v, &mut len) };
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: LLVM guarantees `len` readable bytes at `ptr`.
    let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
    String::from_utf8_lossy(bytes).into_owned()
}

impl Reader {
    /// A reader for functions of `module`.
    pub fn new(module: LLVMModuleRef) -> Self {
        Reader {
            // SAFETY: the module is live; the layout it returns is owned by the module.
            layout: unsafe { LLVMGetModuleDataLayout(module) },
            kinds: Kinds::new(),
            callee_cache: HashMap::new(),
        }
    }

    fn attr_at(
        &self,
        f: LLVMValueRef,
        index: u32,
        kind: u32,
    ) -> Option<inkwell::llvm_sys::prelude::LLVMAttributeRef> {
        // SAFETY: `f` is a function value; an absent attribute comes back null.
        let a = unsafe { LLVMGetEnumAttributeAtIndex(f, index, kind) };
        (!a.is_null()).then_some(a)
    }

    /// Parameter attributes of function `f`.
    fn param_attrs(&self, f: LLVMValueRef) -> Vec<ParamAttrs> {
        // SAFETY: `f` is a function value.
        let n = unsafe { LLVMCountParams(f) };
        (0..n)
            .map(|i| {
                let has = |k| self.attr_at(f, i + 1, k).is_some();
                ParamAttrs {
                    readonly: has(self.kinds.readonly),
                    writeonly: has(self.kinds.writeonly),
                    readnone: has(self.kinds.readnone),
                    noalias: has(self.kinds.noalias),
                    byval: has(self.kinds.byval),
                }
            })
            .collect()
    }

    /// Whether `f` is declared `memory(none)`.
    fn is_pure(&self, f: LLVMValueRef) -> bool {
        self.attr_at(f, LLVMAttributeFunctionIndex, self.kinds.memory)
            // SAFETY: the attribute is a live enum attribute.
            .is_some_and(|a| unsafe { LLVMGetEnumAttributeValue(a) } == 0)
    }

    fn size(&self, ty: LLVMTypeRef) -> u64 {
        // SAFETY: the layout and the type belong to the same live module.
        unsafe { LLVMStoreSizeOfType(self.layout, ty) }
    }

    /// Snapshot of function `f` (which must have a body).
    pub fn read(&mut self, f: LLVMValueRef) -> Func {
        let params_attrs = self.param_attrs(f);
        let mut arg_index: HashMap<usize, u32> = HashMap::new();
        let mut params = Vec::with_capacity(params_attrs.len());
        // SAFETY (whole block): `f` is a live function with a body; every handle below is
        // obtained from it and used while the module lives.
        unsafe {
            let mut p = LLVMGetFirstParam(f);
            let mut i = 0u32;
            while !p.is_null() {
                arg_index.insert(p as usize, i);
                let name = value_name(p);
                params.push(Param {
                    ty: ty_of(LLVMTypeOf(p)),
                    name: if name.is_empty() {
                        format!("arg{i}")
                    } else {
                        name
                    },
                    attrs: params_attrs.get(i as usize).copied().unwrap_or_default(),
                });
                p = LLVMGetNextParam(p);
                i += 1;
            }
        }
        // First pass: number blocks and instructions.
        let mut block_index: HashMap<usize, u32> = HashMap::new();
        let mut inst_index: HashMap<usize, u32> = HashMap::new();
        let mut raw_insts: Vec<(LLVMValueRef, u32)> = Vec::new();
        let mut blocks: Vec<Block> = Vec::new();
        // SAFETY: as above.
        unsafe {
            let mut bb = LLVMGetFirstBasicBlock(f);
            while !bb.is_null() {
                let b = blocks.len() as u32;
                block_index.insert(bb as usize, b);
                let first = raw_insts.len() as u32;
                let mut inst = LLVMGetFirstInstruction(bb);
                while !inst.is_null() {
                    inst_index.insert(inst as usize, raw_insts.len() as u32);
                    raw_insts.push((inst, b));
                    inst = LLVMGetNextInstruction(inst);
                }
                blocks.push(Block {
                    first,
                    end: raw_insts.len() as u32,
                    succs: Vec::new(),
                });
                bb = LLVMGetNextBasicBlock(bb);
            }
        }
        let mut insts = Vec::with_capacity(raw_insts.len());
        for &(raw, block) in &raw_insts {
            insts.push(self.inst(raw, block, &inst_index, &arg_index, &block_index));
        }
        for b in &mut blocks {
            if b.end > b.first {
                let (term, _) = raw_insts[(b.end - 1) as usize];
                // SAFETY: `term` is the block's last instruction (a terminator in valid IR).
                let n = unsafe { LLVMGetNumSuccessors(term) };
                for s in 0..n {
                    // SAFETY: `s` is below the successor count.
                    let sb = unsafe { LLVMGetSuccessor(term, s) };
                    if let Some(&i) = block_index.get(&(sb as usize)) {
                        b.succs.push(i);
                    }
                }
            }
        }
        let mut users = vec![Vec::new(); insts.len()];
        for (i, inst) in insts.iter().enumerate() {
            for v in &inst.ops {
                if let Val::Inst(j) = *v {
                    users[j as usize].push(i as u32);
                }
            }
        }
        for u in users.iter_mut() {
            u.dedup();
        }
        Func {
            name: value_name(f),
            params,
            blocks,
            insts,
            users,
        }
    }

    fn inst(
        &mut self,
        raw: LLVMValueRef,
        block: u32,
        inst_index: &HashMap<usize, u32>,
        arg_index: &HashMap<usize, u32>,
        block_index: &HashMap<usize, u32>,
    ) -> Inst {
        // SAFETY (whole function): `raw` is a live instruction of the function being read.
        unsafe {
            let op = LLVMGetInstructionOpcode(raw);
            let n = LLVMGetNumOperands(raw).max(0) as u32;
            let is_call = matches!(op, Op::LLVMCall | Op::LLVMInvoke | Op::LLVMCallBr);
            let n_args = if is_call {
                LLVMGetNumArgOperands(raw)
            } else {
                n
            };
            let ops: Vec<Val> = if op == Op::LLVMBr && n == 3 {
                // A conditional branch: keep only its condition.
                vec![operand(LLVMGetOperand(raw, 0), inst_index, arg_index)]
            } else if matches!(op, Op::LLVMBr | Op::LLVMSwitch) {
                Vec::new()
            } else {
                (0..n_args)
                    .map(|k| operand(LLVMGetOperand(raw, k), inst_index, arg_index))
                    .collect()
            };
            let mut phi_blocks = Vec::new();
            if op == Op::LLVMPHI {
                for k in 0..LLVMCountIncoming(raw) {
                    let b = LLVMGetIncomingBlock(raw, k);
                    phi_blocks.push(block_index.get(&(b as usize)).copied().unwrap_or(u32::MAX));
                }
            }
            let mem_bytes = match op {
                Op::LLVMLoad => self.size(LLVMTypeOf(raw)),
                Op::LLVMStore | Op::LLVMAtomicRMW => self.size(LLVMTypeOf(LLVMGetOperand(
                    raw,
                    if op == Op::LLVMStore { 0 } else { 1 },
                ))),
                Op::LLVMAtomicCmpXchg => self.size(LLVMTypeOf(LLVMGetOperand(raw, 1))),
                _ => 0,
            };
            let callee = if is_call {
                self.callee(LLVMGetCalledValue(raw))
            } else {
                Callee::None
            };
            let pred = (op == Op::LLVMICmp).then(|| LLVMGetICmpPredicate(raw));
            let gep_offset = if op == Op::LLVMGetElementPtr {
                self.gep_offset(raw)
            } else {
                None
            };
            Inst {
                op,
                block,
                ops,
                ty: ty_of(LLVMTypeOf(raw)),
                mem_bytes,
                pred,
                callee,
                phi_blocks,
                gep_offset,
            }
        }
    }

    fn callee(&mut self, v: LLVMValueRef) -> Callee {
        // SAFETY: `v` is the called operand of a live call.
        unsafe {
            if !LLVMIsAInlineAsm(v).is_null() {
                let mut len = 0usize;
                let p = LLVMGetInlineAsmAsmString(v, &mut len);
                let text = if p.is_null() {
                    String::new()
                } else {
                    String::from_utf8_lossy(std::slice::from_raw_parts(p.cast::<u8>(), len))
                        .into_owned()
                };
                return Callee::Asm(text);
            }
            if LLVMIsAFunction(v).is_null() {
                return Callee::Indirect;
            }
        }
        let key = v as usize;
        if !self.callee_cache.contains_key(&key) {
            // SAFETY: `v` is a live function.
            let has_body = unsafe { LLVMCountBasicBlocks(v) } > 0;
            let entry = (
                value_name(v),
                self.param_attrs(v),
                self.is_pure(v),
                has_body,
            );
            self.callee_cache.insert(key, entry);
        }
        match self.callee_cache.get(&key) {
            Some((name, params, pure, has_body)) => Callee::Direct {
                name: name.clone(),
                params: params.clone(),
                pure: *pure,
                body: has_body.then_some(v),
            },
            None => Callee::Indirect,
        }
    }

    /// Constant byte offset of a GEP, when every index is a constant integer.
    fn gep_offset(&self, gep: LLVMValueRef) -> Option<i64> {
        // SAFETY: `gep` is a live getelementptr instruction; types come from it.
        unsafe {
            let n = LLVMGetNumOperands(gep).max(0) as u32;
            let mut ty = LLVMGetGEPSourceElementType(gep);
            let mut offset: i64 = 0;
            for k in 1..n {
                let idx = LLVMGetOperand(gep, k);
                if LLVMIsAConstantInt(idx).is_null() {
                    return None;
                }
                let i = LLVMConstIntGetSExtValue(idx);
                if k == 1 {
                    offset += i * LLVMABISizeOfType(self.layout, ty) as i64;
                    continue;
                }
                match LLVMGetTypeKind(ty) {
                    LLVMTypeKind::LLVMStructTypeKind => {
                        offset += LLVMOffsetOfElement(self.layout, ty, i as u32) as i64;
                        ty = LLVMStructGetTypeAtIndex(ty, i as u32);
                    }
                    LLVMTypeKind::LLVMArrayTypeKind | LLVMTypeKind::LLVMVectorTypeKind => {
                        ty = LLVMGetElementType(ty);
                        offset += i * LLVMABISizeOfType(self.layout, ty) as i64;
                    }
                    _ => return None,
                }
            }
            Some(offset)
        }
    }
}

/// Classify an operand.
fn operand(
    v: LLVMValueRef,
    inst_index: &HashMap<usize, u32>,
    arg_index: &HashMap<usize, u32>,
) -> Val {
    if let Some(&i) = inst_index.get(&(v as usize)) {
        return Val::Inst(i);
    }
    if let Some(&a) = arg_index.get(&(v as usize)) {
        return Val::Arg(a);
    }
    constant(v, 0)
}

/// Classify a constant, looking through constant casts and GEPs to a global.
fn constant(v: LLVMValueRef, depth: u32) -> Val {
    if v.is_null() || depth > 8 {
        return Val::Other;
    }
    // SAFETY: `v` is a live constant operand.
    unsafe {
        if !LLVMIsAConstantInt(v).is_null() {
            return Val::Int(LLVMConstIntGetSExtValue(v));
        }
        if !LLVMIsAConstantPointerNull(v).is_null() {
            return Val::Null;
        }
        if !LLVMIsAGlobalVariable(v).is_null() {
            let ty = LLVMTypeOf(v);
            return Val::Global {
                addrspace: LLVMGetPointerAddressSpace(ty),
            };
        }
        if !LLVMIsAConstantExpr(v).is_null() {
            return match LLVMGetConstOpcode(v) {
                Op::LLVMGetElementPtr | Op::LLVMBitCast | Op::LLVMAddrSpaceCast => {
                    constant(LLVMGetOperand(v, 0), depth + 1)
                }
                _ => Val::Other,
            };
        }
    }
    Val::Other
}

/// The analysis view of an LLVM type.
fn ty_of(t: LLVMTypeRef) -> Ty {
    // SAFETY: `t` is a live type.
    unsafe {
        match LLVMGetTypeKind(t) {
            LLVMTypeKind::LLVMVoidTypeKind => Ty::Void,
            LLVMTypeKind::LLVMIntegerTypeKind => Ty::Int {
                bits: LLVMGetIntTypeWidth(t),
                lanes: 1,
            },
            LLVMTypeKind::LLVMHalfTypeKind | LLVMTypeKind::LLVMBFloatTypeKind => {
                Ty::Float { bits: 16, lanes: 1 }
            }
            LLVMTypeKind::LLVMFloatTypeKind => Ty::Float { bits: 32, lanes: 1 },
            LLVMTypeKind::LLVMDoubleTypeKind => Ty::Float { bits: 64, lanes: 1 },
            LLVMTypeKind::LLVMPointerTypeKind => Ty::Ptr(LLVMGetPointerAddressSpace(t)),
            LLVMTypeKind::LLVMVectorTypeKind => {
                let lanes = LLVMGetVectorSize(t);
                match ty_of(LLVMGetElementType(t)) {
                    Ty::Int { bits, .. } => Ty::Int { bits, lanes },
                    Ty::Float { bits, .. } => Ty::Float { bits, lanes },
                    other => other,
                }
            }
            _ => Ty::Other,
        }
    }
}
