//! Source annotations that survive to IR: `__attribute__((annotate("wattlens.op=attention")))`
//! and `annotate("wattlens.region=decode")` land in `@llvm.global.annotations`.

use std::collections::HashMap;

use inkwell::llvm_sys::core::*;
use inkwell::llvm_sys::prelude::{LLVMModuleRef, LLVMValueRef};

use crate::ir::value_name;

/// The prefix of every wattlens annotation.
pub(crate) const PREFIX: &str = "wattlens.";

/// Annotations of each function: name → the `key=value` texts after `wattlens.`.
pub(crate) fn function_annotations(module: LLVMModuleRef) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    // SAFETY (whole block): the module is live; every handle comes from its
    // `llvm.global.annotations` initializer and is only read.
    unsafe {
        let g = LLVMGetNamedGlobal(module, c"llvm.global.annotations".as_ptr());
        if g.is_null() {
            return out;
        }
        let init = LLVMGetInitializer(g);
        if init.is_null() {
            return out;
        }
        let n = LLVMGetNumOperands(init).max(0) as u32;
        for i in 0..n {
            let entry = LLVMGetOperand(init, i);
            if entry.is_null() || LLVMGetNumOperands(entry) < 2 {
                continue;
            }
            let target = strip_casts(LLVMGetOperand(entry, 0));
            let text = string_of(LLVMGetOperand(entry, 1));
            if target.is_null() || LLVMIsAFunction(target).is_null() {
                continue;
            }
            if let Some(rest) = text.strip_prefix(PREFIX) {
                out.entry(value_name(target))
                    .or_default()
                    .push(rest.to_owned());
            }
        }
    }
    out
}

/// Look through constant casts to the underlying global.
fn strip_casts(mut v: LLVMValueRef) -> LLVMValueRef {
    for _ in 0..4 {
        // SAFETY: `v` is a live constant.
        unsafe {
            if v.is_null() || LLVMIsAConstantExpr(v).is_null() {
                return v;
            }
            v = LLVMGetOperand(v, 0);
        }
    }
    v
}

/// The text of a constant C string global (`@.str = constant [N x i8] c"…\00"`).
fn string_of(v: LLVMValueRef) -> String {
    let g = strip_casts(v);
    // SAFETY: `g` is a live global variable or constant; only its initializer is read.
    unsafe {
        if g.is_null() || LLVMIsAGlobalVariable(g).is_null() {
            return String::new();
        }
        let init = LLVMGetInitializer(g);
        if init.is_null() || LLVMIsAConstantDataSequential(init).is_null() {
            return String::new();
        }
        let mut len = 0usize;
        let p = LLVMGetAsString(init, &mut len);
        if p.is_null() {
            return String::new();
        }
        let bytes = std::slice::from_raw_parts(p.cast::<u8>(), len);
        String::from_utf8_lossy(bytes)
            .trim_end_matches('\0')
            .to_owned()
    }
}
