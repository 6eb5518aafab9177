//! Host-IR instrumentation: region push/pop around annotated (or pattern-matched) functions,
//! on every exit including unwinding, and a launch-site call before every kernel launch,
//! recorded with its file:line in the manifest.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{c_char, c_uint, CString};
use std::path::Path;

use inkwell::context::Context;
use inkwell::llvm_sys::core::*;
use inkwell::llvm_sys::debuginfo::{LLVMInstructionGetDebugLoc, LLVMInstructionSetDebugLoc};
use inkwell::llvm_sys::prelude::*;
use inkwell::llvm_sys::{LLVMAttributeFunctionIndex, LLVMAttributeReturnIndex, LLVMOpcode};
use inkwell::module::Module;
use wattlens_instrument::{LaunchSite, Manifest};

use crate::annotations::function_annotations;
use crate::ir::value_name;
use crate::PassError;

/// The launch APIs whose calls become launch sites.
pub const LAUNCH_FUNCTIONS: &[&str] = &[
    "cudaLaunchKernel",
    "cudaLaunchKernel_ptsz",
    "cudaLaunchKernelExC",
    "cudaLaunchCooperativeKernel",
    "cuLaunchKernel",
    "cuLaunchKernel_ptsz",
    "cuLaunchKernelEx",
    "cuLaunchKernelEx_ptsz",
    "cuLaunchCooperativeKernel",
];

/// One line of a region pattern file: functions whose name matches `glob` get region `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionPattern {
    /// `*` matches any run of characters, `?` one character.
    pub glob: String,
    /// Region name; the function's name when absent.
    pub name: Option<String>,
}

/// Parse a pattern file: `GLOB [REGION]` per line, `#` comments, blank lines ignored.
///
/// # Errors
/// [`PassError::Patterns`] when the file cannot be read or a line has more than two words.
pub fn read_patterns(path: &Path) -> Result<Vec<RegionPattern>, PassError> {
    let bad = |reason: String| PassError::Patterns {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("{e}; check the path")))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [glob] => out.push(RegionPattern {
                glob: (*glob).to_owned(),
                name: None,
            }),
            [glob, name] => out.push(RegionPattern {
                glob: (*glob).to_owned(),
                name: Some((*name).to_owned()),
            }),
            _ => {
                return Err(bad(format!(
                    "line {} has {} words; write `GLOB [REGION]`",
                    n + 1,
                    words.len()
                )))
            }
        }
    }
    Ok(out)
}

/// Whether `text` matches `glob` (`*` any run, `?` one character).
pub fn glob_matches(glob: &str, text: &str) -> bool {
    let (g, t): (Vec<char>, Vec<char>) = (glob.chars().collect(), text.chars().collect());
    let (mut gi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if gi < g.len() && (g[gi] == '?' || g[gi] == t[ti]) {
            gi += 1;
            ti += 1;
        } else if gi < g.len() && g[gi] == '*' {
            star = Some(gi);
            mark = ti;
            gi += 1;
        } else if let Some(s) = star {
            gi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    g[gi..].iter().all(|&c| c == '*')
}

/// FNV-1a, 64 bits: stable ids for launch sites.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

/// Declare (or find) `name` with type `ty` in `module`.
fn declare(module: LLVMModuleRef, name: &str, ty: LLVMTypeRef) -> LLVMValueRef {
    let c = cstring(name);
    // SAFETY: module and type are live; the name is NUL-terminated.
    unsafe {
        let f = LLVMGetNamedFunction(module, c.as_ptr());
        if !f.is_null() {
            return f;
        }
        LLVMAddFunction(module, c.as_ptr(), ty)
    }
}

/// Instructions of a function, in order.
fn instructions(f: LLVMValueRef) -> Vec<LLVMValueRef> {
    let mut out = Vec::new();
    // SAFETY: `f` is a live function; iteration only reads.
    unsafe {
        let mut bb = LLVMGetFirstBasicBlock(f);
        while !bb.is_null() {
            let mut i = LLVMGetFirstInstruction(bb);
            while !i.is_null() {
                out.push(i);
                i = LLVMGetNextInstruction(i);
            }
            bb = LLVMGetNextBasicBlock(bb);
        }
    }
    out
}

fn functions(module: LLVMModuleRef) -> Vec<LLVMValueRef> {
    let mut out = Vec::new();
    // SAFETY: the module is live; iteration only reads.
    unsafe {
        let mut f = LLVMGetFirstFunction(module);
        while !f.is_null() {
            if LLVMCountBasicBlocks(f) > 0 {
                out.push(f);
            }
            f = LLVMGetNextFunction(f);
        }
    }
    out
}

fn opcode(i: LLVMValueRef) -> LLVMOpcode {
    // SAFETY: `i` is a live instruction.
    unsafe { LLVMGetInstructionOpcode(i) }
}

/// The text of a constant C string pointer operand, through constant casts.
fn const_string(v: LLVMValueRef) -> Option<String> {
    // SAFETY: `v` is a live value; only constants' initializers are read.
    unsafe {
        let mut g = v;
        while !g.is_null() && !LLVMIsAConstantExpr(g).is_null() {
            g = LLVMGetOperand(g, 0);
        }
        if g.is_null() || LLVMIsAGlobalVariable(g).is_null() {
            return None;
        }
        let init = LLVMGetInitializer(g);
        if init.is_null() || LLVMIsAConstantDataSequential(init).is_null() {
            return None;
        }
        let mut len = 0usize;
        let p = LLVMGetAsString(init, &mut len);
        if p.is_null() {
            return None;
        }
        let bytes = std::slice::from_raw_parts(p.cast::<u8>(), len);
        Some(
            String::from_utf8_lossy(bytes)
                .trim_end_matches('\0')
                .to_owned(),
        )
    }
}

fn called(i: LLVMValueRef) -> LLVMValueRef {
    // SAFETY: `i` is a live call or invoke.
    unsafe { LLVMGetCalledValue(i) }
}

fn is_call(i: LLVMValueRef) -> bool {
    matches!(opcode(i), LLVMOpcode::LLVMCall | LLVMOpcode::LLVMInvoke)
}

/// Name of the called function of a direct call.
fn direct_callee(i: LLVMValueRef) -> Option<String> {
    let c = called(i);
    // SAFETY: `c` is the live called operand.
    (!c.is_null() && unsafe { !LLVMIsAFunction(c).is_null() }).then(|| value_name(c))
}

/// Launch functions reached through pointers obtained by symbol name: `dlsym(h, "cuLaunchKernel")`
/// or `cuGetProcAddress("cuLaunchKernel", &p, …)`. Maps the holder (a global, or the dlsym call
/// itself) to the function name.
fn resolved_symbols(module: LLVMModuleRef) -> HashMap<usize, String> {
    let mut map = HashMap::new();
    for f in functions(module) {
        for i in instructions(f) {
            if !is_call(i) {
                continue;
            }
            let Some(name) = direct_callee(i) else {
                continue;
            };
            // SAFETY: `i` is a live call; operand indices are below its argument count.
            unsafe {
                let nargs = LLVMGetNumArgOperands(i);
                if (name == "dlsym" || name == "dlvsym") && nargs >= 2 {
                    if let Some(sym) = const_string(LLVMGetOperand(i, 1)) {
                        map.insert(i as usize, sym.clone());
                        // Stores of the result into globals.
                        let mut u = LLVMGetFirstUse(i);
                        while !u.is_null() {
                            let user = LLVMGetUser(u);
                            if !LLVMIsAStoreInst(user).is_null() && LLVMGetOperand(user, 0) == i {
                                map.insert(LLVMGetOperand(user, 1) as usize, sym.clone());
                            }
                            u = LLVMGetNextUse(u);
                        }
                    }
                } else if name.starts_with("cuGetProcAddress") && nargs >= 2 {
                    if let Some(sym) = const_string(LLVMGetOperand(i, 0)) {
                        map.insert(LLVMGetOperand(i, 1) as usize, sym);
                    }
                }
            }
        }
    }
    map
}

/// The launch API a call invokes, if it is one.
fn launch_api(i: LLVMValueRef, symbols: &HashMap<usize, String>) -> Option<String> {
    let name = match direct_callee(i) {
        Some(n) => n,
        None => {
            let c = called(i);
            // SAFETY: `c` is the live called operand of `i`.
            let holder = unsafe {
                if !LLVMIsALoadInst(c).is_null() {
                    LLVMGetOperand(c, 0)
                } else {
                    c
                }
            };
            symbols.get(&(holder as usize))?.clone()
        }
    };
    let base = name.trim_end_matches("_v2").trim_end_matches("_v3");
    LAUNCH_FUNCTIONS
        .iter()
        .find(|l| **l == base || **l == name)
        .map(|l| (*l).to_owned())
}

/// Debug location of an instruction: (file, line, column).
fn debug_location(i: LLVMValueRef) -> (String, u32, u32) {
    // SAFETY: `i` is a live instruction; without a location LLVM returns null / 0.
    unsafe {
        let line = LLVMGetDebugLocLine(i);
        if line == 0 {
            return (String::new(), 0, 0);
        }
        let mut len: c_uint = 0;
        let p = LLVMGetDebugLocFilename(i, &mut len);
        let file = if p.is_null() {
            String::new()
        } else {
            String::from_utf8_lossy(std::slice::from_raw_parts(p.cast::<u8>(), len as usize))
                .into_owned()
        };
        (file, line, LLVMGetDebugLocColumn(i))
    }
}

/// Insert `call @wattlens_launch_site(id)` before every launch (`symbols` resolves launches
/// through pointers), except in the functions of `skip`; returns the site table.
fn instrument_sites(
    module: LLVMModuleRef,
    builder: LLVMBuilderRef,
    (symbols, skip): (&HashMap<usize, String>, &BTreeMap<String, String>),
) -> BTreeMap<String, LaunchSite> {
    let mut sites = BTreeMap::new();
    // SAFETY (whole block): module, context and builder are live; instructions are visited
    // from a snapshot and the builder inserts before them, never removing any.
    unsafe {
        let ctx = LLVMGetModuleContext(module);
        let i64t = LLVMInt64TypeInContext(ctx);
        let i32t = LLVMInt32TypeInContext(ctx);
        let mut params = [i64t];
        let site_ty = LLVMFunctionType(i32t, params.as_mut_ptr(), 1, 0);
        let site_fn = declare(module, "wattlens_launch_site", site_ty);
        for f in functions(module) {
            let fname = value_name(f);
            if skip.contains_key(&fname) {
                continue;
            }
            let mut ordinal = 0u32;
            for i in instructions(f) {
                if !is_call(i) {
                    continue;
                }
                let Some(api) = launch_api(i, symbols) else {
                    continue;
                };
                let (file, line, column) = debug_location(i);
                let id = fnv1a(&[
                    fname.as_bytes(),
                    file.as_bytes(),
                    &line.to_le_bytes(),
                    &column.to_le_bytes(),
                    &ordinal.to_le_bytes(),
                ]);
                ordinal += 1;
                LLVMPositionBuilderBefore(builder, i);
                let mut args = [LLVMConstInt(i64t, id, 0)];
                let call = LLVMBuildCall2(
                    builder,
                    site_ty,
                    site_fn,
                    args.as_mut_ptr(),
                    1,
                    c"".as_ptr(),
                );
                let loc = LLVMInstructionGetDebugLoc(i);
                if !loc.is_null() {
                    LLVMInstructionSetDebugLoc(call, loc);
                }
                sites.insert(
                    Manifest::site_key(id),
                    LaunchSite {
                        file,
                        line,
                        column,
                        function: fname.clone(),
                        callee: api,
                    },
                );
            }
        }
    }
    sites
}

/// Whether a call may unwind out of its function.
fn may_unwind(i: LLVMValueRef, nounwind: c_uint) -> bool {
    if opcode(i) != LLVMOpcode::LLVMCall {
        return false;
    }
    // SAFETY: `i` is a live call; attribute lookups only read.
    unsafe {
        let c = called(i);
        if !LLVMIsAInlineAsm(c).is_null() {
            return false;
        }
        if !LLVMGetCallSiteEnumAttribute(i, LLVMAttributeFunctionIndex, nounwind).is_null() {
            return false;
        }
        if !LLVMIsAFunction(c).is_null() {
            if LLVMGetIntrinsicID(c) != 0 {
                return false;
            }
            if !LLVMGetEnumAttributeAtIndex(c, LLVMAttributeFunctionIndex, nounwind).is_null() {
                return false;
            }
        }
        true
    }
}

/// Copy every call-site attribute of `from` onto `to`.
fn copy_call_attributes(from: LLVMValueRef, to: LLVMValueRef, nargs: u32) {
    let mut indices = vec![LLVMAttributeFunctionIndex, LLVMAttributeReturnIndex];
    indices.extend(1..=nargs);
    for idx in indices {
        // SAFETY: both are live call sites of the same callee type; the buffer holds `n` refs.
        unsafe {
            let n = LLVMGetCallSiteAttributeCount(from, idx);
            if n == 0 {
                continue;
            }
            let mut attrs: Vec<LLVMAttributeRef> = vec![std::ptr::null_mut(); n as usize];
            LLVMGetCallSiteAttributes(from, idx, attrs.as_mut_ptr());
            for a in attrs {
                LLVMAddCallSiteAttribute(to, idx, a);
            }
        }
    }
}

/// Wrap function `f` in region `name`: push at entry, pop before every return and resume, and
/// turn calls that may unwind into invokes whose cleanup pops and resumes.
fn wrap_region(module: LLVMModuleRef, builder: LLVMBuilderRef, f: LLVMValueRef, name: &str) {
    // SAFETY (whole block): module, builder and `f` are live. Instructions are taken from a
    // snapshot; a call is erased only after its invoke replacement took over all its uses,
    // and moved instructions are re-inserted at once, so the function stays well formed.
    unsafe {
        let ctx = LLVMGetModuleContext(module);
        let i32t = LLVMInt32TypeInContext(ctx);
        let ptrt = LLVMPointerTypeInContext(ctx, 0);
        let mut pparams = [ptrt];
        let push_ty = LLVMFunctionType(i32t, pparams.as_mut_ptr(), 1, 0);
        let pop_ty = LLVMFunctionType(i32t, std::ptr::null_mut(), 0, 0);
        let push_fn = declare(module, "wattlens_region_push", push_ty);
        let pop_fn = declare(module, "wattlens_region_pop", pop_ty);
        let nounwind = LLVMGetEnumAttributeKindForName(c"nounwind".as_ptr(), 8);
        let f_nounwind =
            !LLVMGetEnumAttributeAtIndex(f, LLVMAttributeFunctionIndex, nounwind).is_null();

        let entry = LLVMGetFirstBasicBlock(f);
        let first = LLVMGetFirstInstruction(entry);
        LLVMPositionBuilderBefore(builder, first);
        let cname = cstring(name);
        let label = LLVMBuildGlobalStringPtr(builder, cname.as_ptr(), c"wattlens.region".as_ptr());
        let mut args = [label];
        LLVMBuildCall2(
            builder,
            push_ty,
            push_fn,
            args.as_mut_ptr(),
            1,
            c"".as_ptr(),
        );

        // A call to pop wherever the builder is positioned.
        let build_pop = || {
            LLVMBuildCall2(
                builder,
                pop_ty,
                pop_fn,
                std::ptr::null_mut(),
                0,
                c"".as_ptr(),
            );
        };
        let pop_before = |at: LLVMValueRef| {
            LLVMPositionBuilderBefore(builder, at);
            build_pop();
        };

        // Calls that may unwind become invokes with a cleanup that pops.
        if !f_nounwind {
            let candidates: Vec<LLVMValueRef> = instructions(f)
                .into_iter()
                .filter(|&i| may_unwind(i, nounwind))
                .filter(|&i| {
                    let c = called(i);
                    c != push_fn && c != pop_fn
                })
                .filter(|&i| {
                    let bb = LLVMGetInstructionParent(i);
                    let head = LLVMGetFirstInstruction(bb);
                    opcode(head) != LLVMOpcode::LLVMLandingPad
                })
                .collect();
            if !candidates.is_empty() {
                let personality = if LLVMHasPersonalityFn(f) != 0 {
                    LLVMGetPersonalityFn(f)
                } else {
                    let pty = LLVMFunctionType(i32t, std::ptr::null_mut(), 0, 1);
                    let p = declare(module, "__gxx_personality_v0", pty);
                    LLVMSetPersonalityFn(f, p);
                    p
                };
                let mut lp_fields = [ptrt, i32t];
                let lp_ty = LLVMStructTypeInContext(ctx, lp_fields.as_mut_ptr(), 2, 0);
                let cleanup = LLVMAppendBasicBlockInContext(ctx, f, c"wattlens.unwind".as_ptr());
                LLVMPositionBuilderAtEnd(builder, cleanup);
                let lp = LLVMBuildLandingPad(builder, lp_ty, personality, 0, c"".as_ptr());
                LLVMSetCleanup(lp, 1);
                build_pop();
                LLVMBuildResume(builder, lp);
                for call in candidates {
                    to_invoke(ctx, builder, call, cleanup);
                }
            }
        }
        for i in instructions(f) {
            match opcode(i) {
                LLVMOpcode::LLVMRet => pop_before(i),
                LLVMOpcode::LLVMResume => {
                    // Our own cleanup already popped.
                    let bb = LLVMGetInstructionParent(i);
                    if value_name(LLVMBasicBlockAsValue(bb)) != "wattlens.unwind" {
                        pop_before(i);
                    }
                }
                _ => {}
            }
        }
    }
}

/// Replace `call` with an invoke that continues in a new block and unwinds to `cleanup`.
///
/// # Safety
/// All handles must be live and belong to one function; `call` must be a call instruction
/// that is not a terminator.
unsafe fn to_invoke(
    ctx: LLVMContextRef,
    builder: LLVMBuilderRef,
    call: LLVMValueRef,
    cleanup: LLVMBasicBlockRef,
) {
    // SAFETY: guaranteed by the caller; see the steps' comments.
    unsafe {
        let bb = LLVMGetInstructionParent(call);
        let cont = LLVMInsertBasicBlockInContext(
            ctx,
            LLVMGetNextBasicBlock(bb),
            c"wattlens.cont".as_ptr(),
        );
        if LLVMGetNextBasicBlock(bb).is_null() {
            LLVMMoveBasicBlockAfter(cont, bb);
        }
        // Move everything after the call into the continuation block.
        let mut rest = Vec::new();
        let mut i = LLVMGetNextInstruction(call);
        while !i.is_null() {
            rest.push(i);
            i = LLVMGetNextInstruction(i);
        }
        LLVMPositionBuilderAtEnd(builder, cont);
        for &i in &rest {
            LLVMInstructionRemoveFromParent(i);
            LLVMInsertIntoBuilder(builder, i);
        }
        // Successor phis now come from `cont`, not `bb`.
        if let Some(&term) = rest.last() {
            for s in 0..LLVMGetNumSuccessors(term) {
                let succ = LLVMGetSuccessor(term, s);
                let mut phi = LLVMGetFirstInstruction(succ);
                while !phi.is_null() && opcode(phi) == LLVMOpcode::LLVMPHI {
                    let next = LLVMGetNextInstruction(phi);
                    let n = LLVMCountIncoming(phi);
                    let mut vals = Vec::with_capacity(n as usize);
                    let mut blocks = Vec::with_capacity(n as usize);
                    for k in 0..n {
                        vals.push(LLVMGetIncomingValue(phi, k));
                        let b = LLVMGetIncomingBlock(phi, k);
                        blocks.push(if b == bb { cont } else { b });
                    }
                    LLVMPositionBuilderBefore(builder, phi);
                    let name = cstring(&value_name(phi));
                    let new = LLVMBuildPhi(builder, LLVMTypeOf(phi), name.as_ptr());
                    LLVMAddIncoming(new, vals.as_mut_ptr(), blocks.as_mut_ptr(), n);
                    LLVMReplaceAllUsesWith(phi, new);
                    LLVMInstructionEraseFromParent(phi);
                    phi = next;
                }
            }
        }
        // The invoke replaces the call at the end of `bb`.
        let nargs = LLVMGetNumArgOperands(call);
        let mut args: Vec<LLVMValueRef> = (0..nargs).map(|k| LLVMGetOperand(call, k)).collect();
        let fty = LLVMGetCalledFunctionType(call);
        let callee = LLVMGetCalledValue(call);
        LLVMPositionBuilderAtEnd(builder, bb);
        let name = cstring(&value_name(call));
        let inv = LLVMBuildInvoke2(
            builder,
            fty,
            callee,
            args.as_mut_ptr(),
            nargs,
            cont,
            cleanup,
            name.as_ptr(),
        );
        LLVMSetInstructionCallConv(inv, LLVMGetInstructionCallConv(call));
        copy_call_attributes(call, inv, nargs);
        let loc = LLVMInstructionGetDebugLoc(call);
        if !loc.is_null() {
            LLVMInstructionSetDebugLoc(inv, loc);
        }
        LLVMReplaceAllUsesWith(call, inv);
        LLVMInstructionEraseFromParent(call);
    }
}

/// Region names of the functions to wrap: annotations first, then the first matching pattern.
fn region_functions(module: LLVMModuleRef, patterns: &[RegionPattern]) -> BTreeMap<String, String> {
    let notes = function_annotations(module);
    let mut out = BTreeMap::new();
    for f in functions(module) {
        let name = value_name(f);
        if name.starts_with("wattlens_") {
            continue;
        }
        let annotated = notes.get(&name).and_then(|n| {
            n.iter()
                .find_map(|t| t.strip_prefix("region=").map(str::to_owned))
        });
        let region = annotated.or_else(|| {
            patterns
                .iter()
                .find(|p| glob_matches(&p.glob, &name))
                .map(|p| p.name.clone().unwrap_or_else(|| name.clone()))
        });
        if let Some(r) = region {
            out.insert(name, r);
        }
    }
    out
}

/// Personality functions of funclet-based (MSVC, SEH) exception handling, whose pads need
/// `funclet` bundles a landing pad cannot give.
const FUNCLET_PERSONALITIES: &[&str] = &[
    "__CxxFrameHandler3",
    "__CxxFrameHandler4",
    "__C_specific_handler",
    "_except_handler3",
    "_except_handler4",
    "__gxx_wasm_personality_v0",
];

/// Why adding calls to `f` (a region push and pop, a launch-site call) would change what it
/// does, if it would.
fn unsafe_to_instrument(f: LLVMValueRef) -> Option<&'static str> {
    // SAFETY (whole block): `f` is a live function of the module; everything is only read.
    unsafe {
        let naked = LLVMGetEnumAttributeKindForName(c"naked".as_ptr(), 5);
        if !LLVMGetEnumAttributeAtIndex(f, LLVMAttributeFunctionIndex, naked).is_null() {
            return Some("it is naked (no prologue: a call added to it would run without a frame)");
        }
        if LLVMHasPersonalityFn(f) != 0 {
            let p = value_name(LLVMGetPersonalityFn(f));
            if FUNCLET_PERSONALITIES.contains(&p.as_str()) {
                return Some("it uses funclet-based (MSVC-style) exception handling, whose pads a cleanup landing pad cannot join");
            }
        }
        for i in instructions(f) {
            match opcode(i) {
                LLVMOpcode::LLVMCatchSwitch
                | LLVMOpcode::LLVMCatchPad
                | LLVMOpcode::LLVMCleanupPad => {
                    return Some("it uses funclet-based (MSVC-style) exception handling, whose pads a cleanup landing pad cannot join");
                }
                LLVMOpcode::LLVMCall if LLVMIsTailCall(i) != 0 && is_musttail(i) => {
                    return Some(
                        "it makes a musttail call, which must stay a call right before its return",
                    );
                }
                _ => {}
            }
        }
    }
    None
}

/// Whether call `i` is marked `musttail`.
fn is_musttail(i: LLVMValueRef) -> bool {
    // SAFETY: `i` is a live call instruction.
    unsafe {
        LLVMGetTailCallKind(i) == inkwell::llvm_sys::LLVMTailCallKind::LLVMTailCallKindMustTail
    }
}

/// Instrument host `module`: regions and launch sites. Returns the manifest of what was done,
/// with the functions it left alone because instrumenting them would change their meaning.
pub fn instrument_host_module(module: &Module<'_>, patterns: &[RegionPattern]) -> Manifest {
    let m = module.as_mut_ptr();
    let mut manifest = Manifest::new();
    let chosen = region_functions(m, patterns);
    let unsafe_fns: BTreeMap<String, String> = functions(m)
        .into_iter()
        .filter_map(|f| unsafe_to_instrument(f).map(|why| (value_name(f), why.to_owned())))
        .collect();
    // SAFETY: the module's context is live; the builder is disposed before returning.
    let builder = unsafe { LLVMCreateBuilderInContext(LLVMGetModuleContext(m)) };
    // Functions with a launch call, found once (the symbol table is a scan of the module).
    let symbols = resolved_symbols(m);
    let launching: std::collections::BTreeSet<String> = unsafe_fns
        .keys()
        .filter(|fname| {
            let c = cstring(fname);
            // SAFETY: the module is live; the name is NUL-terminated.
            let f = unsafe { LLVMGetNamedFunction(m, c.as_ptr() as *const c_char) };
            !f.is_null()
                && instructions(f)
                    .into_iter()
                    .any(|i| is_call(i) && launch_api(i, &symbols).is_some())
        })
        .cloned()
        .collect();
    manifest.sites = instrument_sites(m, builder, (&symbols, &unsafe_fns));
    for (fname, region) in &chosen {
        if unsafe_fns.contains_key(fname) {
            continue;
        }
        let c = cstring(fname);
        // SAFETY: the module is live; the name is NUL-terminated.
        let f = unsafe { LLVMGetNamedFunction(m, c.as_ptr() as *const c_char) };
        if !f.is_null() {
            wrap_region(m, builder, f, region);
            manifest.regions.insert(fname.clone(), region.clone());
        }
    }
    // Named only where something was to be added: a chosen region or a launch site.
    manifest.skipped = unsafe_fns
        .into_iter()
        .filter(|(fname, _)| chosen.contains_key(fname) || launching.contains(fname))
        .collect();
    // SAFETY: the builder was created above and is not used afterwards.
    unsafe { LLVMDisposeBuilder(builder) };
    manifest
}

/// Instrument the host IR at `input` and write it to `output`.
///
/// # Errors
/// [`PassError::Load`], [`PassError::Target`] or [`PassError::Patterns`] for bad input;
/// [`PassError::Verify`] or [`PassError::Write`] when the output cannot be produced.
pub fn instrument_host_file(
    input: &Path,
    output: &Path,
    patterns: Option<&Path>,
) -> Result<Manifest, PassError> {
    let patterns = match patterns {
        Some(p) => read_patterns(p)?,
        None => Vec::new(),
    };
    let context = Context::create();
    let module = crate::load_module(&context, input)?;
    crate::module::expect_host(&module, input)?;
    let manifest = instrument_host_module(&module, &patterns);
    crate::write_module(&module, output)?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob_matches("decode_*", "decode_step"));
        assert!(glob_matches("*attn*", "run_attn_layer"));
        assert!(glob_matches("f?o", "foo"));
        assert!(!glob_matches("decode_*", "prefill"));
        assert!(!glob_matches("f?o", "fo"));
        assert!(glob_matches("*", ""));
    }

    #[test]
    fn site_ids_differ_by_line_and_ordinal() {
        let a = fnv1a(&[b"main", b"h.c", &3u32.to_le_bytes(), &0u32.to_le_bytes()]);
        let b = fnv1a(&[b"main", b"h.c", &4u32.to_le_bytes(), &0u32.to_le_bytes()]);
        let c = fnv1a(&[b"main", b"h.c", &3u32.to_le_bytes(), &1u32.to_le_bytes()]);
        assert_ne!(a, b);
        assert_ne!(a, c);
    }
}
