//! Reading, checking and writing LLVM modules (`.ll` text or `.bc` bitcode).

use std::path::Path;

use inkwell::context::Context;
use inkwell::memory_buffer::MemoryBuffer;
use inkwell::module::Module;

use crate::PassError;

/// Host architectures whose IR `instrument-host` accepts (the triple's first component).
const HOST_ARCHES: &[&str] = &[
    "x86_64",
    "aarch64",
    "arm64",
    "i386",
    "i686",
    "riscv64",
    "powerpc64le",
    "powerpc64",
    "s390x",
    "loongarch64",
];

/// Largest IR file read, bytes: a whole program's bitcode is far smaller, and LLVM would
/// otherwise read a device file or an endless stream until memory runs out.
pub const MAX_INPUT_BYTES: u64 = 1 << 30;

/// Parse the IR file at `path` (text or bitcode) into `context`, and check that it verifies.
///
/// # Errors
/// [`PassError::Input`] for a path that is not a regular file or is over
/// `MAX_INPUT_BYTES`, [`PassError::Load`] when LLVM cannot parse it,
/// [`PassError::InvalidInput`] when it parses but does not verify.
pub fn load_module<'ctx>(context: &'ctx Context, path: &Path) -> Result<Module<'ctx>, PassError> {
    let input = |reason: String| PassError::Input {
        path: path.to_owned(),
        reason,
    };
    let load = |reason: String| PassError::Load {
        path: path.to_owned(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| load(e.to_string()))?;
    if !meta.is_file() {
        return Err(input(
            "it is not a regular file (a device, pipe or folder); give a .ll or .bc file".into(),
        ));
    }
    if meta.len() > MAX_INPUT_BYTES {
        return Err(input(format!(
            "it is {} bytes, more than the {MAX_INPUT_BYTES} this tool reads",
            meta.len()
        )));
    }
    let buffer = MemoryBuffer::create_from_file(path).map_err(|e| load(e.to_string()))?;
    let module = context
        .create_module_from_ir(buffer)
        .map_err(|e| load(e.to_string().trim().to_owned()))?;
    // Checked here, so that a fault of the input is never blamed on the transformation.
    module.verify().map_err(|e| PassError::InvalidInput {
        path: path.to_owned(),
        reason: e.to_string().trim().to_owned(),
    })?;
    Ok(module)
}

fn triple(module: &Module<'_>) -> String {
    module.get_triple().as_str().to_string_lossy().into_owned()
}

/// Check that `module` is NVPTX device code.
///
/// # Errors
/// [`PassError::Target`] naming the module's triple otherwise.
pub fn expect_device(module: &Module<'_>, path: &Path) -> Result<(), PassError> {
    let t = triple(module);
    if t.starts_with("nvptx") {
        Ok(())
    } else {
        Err(PassError::Target {
            path: path.to_owned(),
            triple: t,
            expected: "NVPTX device IR (nvptx64-nvidia-cuda, from clang --cuda-device-only)",
        })
    }
}

/// Check that `module` is host code for a CPU target this build knows.
///
/// # Errors
/// [`PassError::Target`] naming the module's triple otherwise.
pub fn expect_host(module: &Module<'_>, path: &Path) -> Result<(), PassError> {
    let t = triple(module);
    let arch = t.split('-').next().unwrap_or("");
    if HOST_ARCHES.contains(&arch) {
        Ok(())
    } else {
        Err(PassError::Target {
            path: path.to_owned(),
            triple: t,
            expected: "host IR for a CPU target (x86_64, aarch64, …), from clang -S -emit-llvm",
        })
    }
}

/// Verify `module` and write it to `path`: bitcode for `.bc`, text otherwise.
///
/// # Errors
/// [`PassError::Verify`] when the module does not verify, [`PassError::Write`] when the file
/// cannot be written.
pub fn write_module(module: &Module<'_>, path: &Path) -> Result<(), PassError> {
    module.verify().map_err(|e| PassError::Verify {
        reason: e.to_string().trim().to_owned(),
    })?;
    let write = |reason: String| PassError::Write {
        path: path.to_owned(),
        reason,
    };
    if path.extension().is_some_and(|e| e == "bc") {
        if !module.write_bitcode_to_path(path) {
            return Err(write("LLVM could not write the bitcode".into()));
        }
        Ok(())
    } else {
        module.print_to_file(path).map_err(|e| write(e.to_string()))
    }
}
