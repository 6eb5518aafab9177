//! Finding the GPU kernels of an NVPTX module.

use std::path::Path;

use inkwell::context::Context;
use inkwell::memory_buffer::MemoryBuffer;
use inkwell::module::Module;
use inkwell::values::BasicMetadataValueEnum;

use crate::PassError;

/// LLVM's calling-convention number for `ptx_kernel`.
const PTX_KERNEL_CC: u32 = 71;

/// Names of the kernels in the IR file at `path` (`.ll` or `.bc`), in module order.
///
/// # Errors
/// [`PassError::Load`] when LLVM cannot read or parse the file.
pub fn kernels_in_file(path: &Path) -> Result<Vec<String>, PassError> {
    let load = |reason: String| PassError::Load {
        path: path.to_owned(),
        reason,
    };
    let buffer = MemoryBuffer::create_from_file(path).map_err(|e| load(e.to_string()))?;
    let context = Context::create();
    let module = context
        .create_module_from_ir(buffer)
        .map_err(|e| load(e.to_string()))?;
    Ok(kernels_in_module(&module))
}

/// Names of the kernels in `module`: functions with the `ptx_kernel` calling convention or
/// marked `"kernel"` in `!nvvm.annotations`.
pub fn kernels_in_module(module: &Module<'_>) -> Vec<String> {
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
        .map(|f| {
            (
                f.get_call_conventions(),
                f.get_name().to_string_lossy().into_owned(),
            )
        })
        .filter(|(cc, name)| *cc == PTX_KERNEL_CC || annotated.contains(name))
        .map(|(_, name)| name)
        .collect()
}
