//! Finding the GPU kernels of an NVPTX module.

use std::path::Path;

use inkwell::context::Context;
use inkwell::llvm_sys::core::{
    LLVMGetMDNodeNumOperands, LLVMGetMDNodeOperands, LLVMGetMDString, LLVMIsAFunction,
    LLVMIsAMDString,
};
use inkwell::llvm_sys::prelude::LLVMValueRef;
use inkwell::module::Module;
use inkwell::values::{AsValueRef, FunctionValue};

use crate::PassError;

/// LLVM's calling-convention number for `ptx_kernel`.
const PTX_KERNEL_CC: u32 = 71;

/// Names of the kernels in the IR file at `path` (`.ll` or `.bc`), in module order.
///
/// # Errors
/// [`PassError::Load`] when LLVM cannot read or parse the file.
pub fn kernels_in_file(path: &Path) -> Result<Vec<String>, PassError> {
    let context = Context::create();
    let module = crate::load_module(&context, path)?;
    Ok(kernels_in_module(&module))
}

/// Names of the kernels in `module`: functions with the `ptx_kernel` calling convention or
/// marked `"kernel"` in `!nvvm.annotations`.
pub fn kernels_in_module(module: &Module<'_>) -> Vec<String> {
    kernel_functions(module)
        .into_iter()
        .map(|f| f.get_name().to_string_lossy().into_owned())
        .collect()
}

/// The names of the functions `!nvvm.annotations` marks `"kernel"`. Operands are read
/// through the C API and checked one by one: valid IR may hold a `null` operand there, which
/// inkwell's node reader would dereference.
fn annotated_kernels(module: &Module<'_>) -> Vec<String> {
    let mut annotated = Vec::new();
    for node in module.get_global_metadata("nvvm.annotations") {
        let node = node.as_value_ref();
        // SAFETY (whole block): `node` is a live metadata node of the module, read only; every
        // operand is checked for null before it is looked at.
        unsafe {
            let n = LLVMGetMDNodeNumOperands(node) as usize;
            if n < 2 {
                continue;
            }
            let mut ops: Vec<LLVMValueRef> = vec![std::ptr::null_mut(); n];
            LLVMGetMDNodeOperands(node, ops.as_mut_ptr());
            let (target, kind) = (ops[0], ops[1]);
            if kind.is_null() || LLVMIsAMDString(kind).is_null() {
                continue;
            }
            let mut len = 0u32;
            let text = LLVMGetMDString(kind, &mut len);
            if text.is_null()
                || std::slice::from_raw_parts(text.cast::<u8>(), len as usize) != b"kernel"
            {
                continue;
            }
            if !target.is_null() && !LLVMIsAFunction(target).is_null() {
                annotated.push(crate::ir::value_name(target));
            }
        }
    }
    annotated
}

/// The kernel functions of `module` that have a body, in module order.
pub(crate) fn kernel_functions<'ctx>(module: &Module<'ctx>) -> Vec<FunctionValue<'ctx>> {
    let annotated = annotated_kernels(module);
    module
        .get_functions()
        .filter(|f| f.count_basic_blocks() > 0)
        .filter(|f| {
            f.get_call_conventions() == PTX_KERNEL_CC
                || annotated
                    .iter()
                    .any(|a| a.as_bytes() == f.get_name().to_bytes())
        })
        .collect()
}
