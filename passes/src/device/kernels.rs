//! Finding the GPU kernels of an NVPTX module.

use std::path::Path;

use inkwell::context::Context;
use inkwell::module::Module;
use inkwell::values::{BasicMetadataValueEnum, FunctionValue};

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

/// The kernel functions of `module` that have a body, in module order.
pub(crate) fn kernel_functions<'ctx>(module: &Module<'ctx>) -> Vec<FunctionValue<'ctx>> {
    let mut annotated: Vec<String> = Vec::new();
    for node in module.get_global_metadata("nvvm.annotations") {
        let ops = node.get_node_values().unwrap_or_default();
        let is_kernel = ops.get(1).is_some_and(|v| match v {
            BasicMetadataValueEnum::MetadataValue(m) => {
                m.get_string_value().is_some_and(|s| s == b"kernel")
            }
            _ => false,
        });
        if let (true, Some(BasicMetadataValueEnum::PointerValue(f))) = (is_kernel, ops.first()) {
            annotated.push(f.get_name().to_string_lossy().into_owned());
        }
    }
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
