//! Confirming access modes on the GPU: run a kernel with every buffer filled with a known
//! pattern, read every buffer back, and check that no buffer the pass called read-only (or
//! unused) changed. Launches are described by `// launch:` lines in the fixture source.

use std::collections::BTreeMap;
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaModule, CudaSlice, DevicePtr};
use wattlens_instrument::{AccessMode, KernelFacts};

/// Size of every buffer a check allocates, bytes.
pub const BUFFER_BYTES: usize = 1 << 20;

/// What a buffer is filled with before the launch.
#[derive(Debug, Clone, PartialEq)]
pub enum Fill {
    /// Every f32 element.
    F32(f32),
    /// Every i32 element.
    I32(i32),
    /// A quiet NaN pattern (outputs: any write changes it).
    Nan,
    /// Device addresses of the named buffers, then zeros.
    Pointers(Vec<String>),
}

/// One launch argument.
#[derive(Debug, Clone, PartialEq)]
pub enum ArgSpec {
    /// A buffer, by name (two arguments with one name alias).
    Buffer {
        /// The buffer's name in the launch line.
        name: String,
        /// Its contents before the launch.
        fill: Fill,
    },
    /// A 32-bit integer.
    I32(i32),
    /// A 32-bit float.
    F32(f32),
    /// A 64-bit unsigned integer.
    U64(u64),
    /// A by-value struct of buffers and scalars, laid out with natural alignment.
    Struct(Vec<ArgSpec>),
}

/// How to run one fixture kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchSpec {
    /// Kernel name.
    pub kernel: String,
    /// Blocks (x only).
    pub grid: u32,
    /// Threads per block (x only).
    pub block: u32,
    /// Arguments in order.
    pub args: Vec<ArgSpec>,
}

fn parse_fill(text: Option<&str>) -> Result<Fill, String> {
    Ok(match text {
        None | Some("nan") => Fill::Nan,
        Some(t) if t.starts_with("i32=") => {
            Fill::I32(t[4..].parse().map_err(|e| format!("{t}: {e}"))?)
        }
        Some(t) if t.starts_with("ptrs=") => {
            Fill::Pointers(t[5..].split('+').map(str::to_owned).collect())
        }
        Some(t) => Fill::F32(t.parse().map_err(|e| format!("{t}: {e}"))?),
    })
}

fn parse_arg(text: &str) -> Result<ArgSpec, String> {
    let mut parts = text.splitn(3, ':');
    let kind = parts.next().unwrap_or("");
    let value = parts
        .next()
        .ok_or_else(|| format!("argument {text:?} has no value"))?;
    let bad = |e: String| format!("argument {text:?}: {e}");
    Ok(match kind {
        "buf" => ArgSpec::Buffer {
            name: value.to_owned(),
            fill: parse_fill(parts.next()).map_err(bad)?,
        },
        "i32" => ArgSpec::I32(
            value
                .parse()
                .map_err(|e: std::num::ParseIntError| bad(e.to_string()))?,
        ),
        "u64" => ArgSpec::U64(
            value
                .parse()
                .map_err(|e: std::num::ParseIntError| bad(e.to_string()))?,
        ),
        "f32" => ArgSpec::F32(
            value
                .parse()
                .map_err(|e: std::num::ParseFloatError| bad(e.to_string()))?,
        ),
        _ => return Err(format!("argument {text:?}: unknown kind {kind:?}")),
    })
}

impl LaunchSpec {
    /// Parse the text after `launch: `.
    ///
    /// # Errors
    /// A message naming the malformed part.
    pub fn parse(line: &str) -> Result<LaunchSpec, String> {
        let mut words = line.split_whitespace();
        let kernel = words.next().ok_or("empty launch line")?.to_owned();
        let (mut grid, mut block, mut args) = (1, 1, Vec::new());
        for w in words {
            if let Some(g) = w.strip_prefix("grid=") {
                grid = g.parse().map_err(|e| format!("{kernel}: grid {g}: {e}"))?;
            } else if let Some(b) = w.strip_prefix("block=") {
                block = b.parse().map_err(|e| format!("{kernel}: block {b}: {e}"))?;
            } else if let Some(a) = w.strip_prefix("args=") {
                for arg in a.split(',') {
                    args.push(match arg.strip_prefix("struct:") {
                        Some(fields) => ArgSpec::Struct(
                            fields.split(';').map(parse_arg).collect::<Result<_, _>>()?,
                        ),
                        None => parse_arg(arg)?,
                    });
                }
            } else {
                return Err(format!("{kernel}: unknown word {w:?}"));
            }
        }
        Ok(LaunchSpec {
            kernel,
            grid,
            block,
            args,
        })
    }

    /// Every `// launch:` line of a fixture source.
    ///
    /// # Errors
    /// The first malformed line's message.
    pub fn all_in(source: &str) -> Result<Vec<LaunchSpec>, String> {
        source
            .lines()
            .filter_map(|l| l.split("launch: ").nth(1))
            .map(LaunchSpec::parse)
            .collect()
    }

    /// For each buffer name: whether the facts allow the kernel to change it.
    pub fn allowed_changes(&self, facts: &KernelFacts) -> BTreeMap<String, bool> {
        let mut allowed: BTreeMap<String, bool> = BTreeMap::new();
        let mut mark = |name: &str, mode: AccessMode| {
            let e = allowed.entry(name.to_owned()).or_insert(false);
            *e |= mode.may_write();
        };
        for (i, arg) in self.args.iter().enumerate() {
            let mode = facts
                .arg_access
                .get(i)
                .copied()
                .unwrap_or(AccessMode::Unknown);
            match arg {
                ArgSpec::Buffer { name, fill } => {
                    mark(name, mode);
                    if let Fill::Pointers(targets) = fill {
                        for t in targets {
                            let m = if facts.writes_outside_args {
                                AccessMode::Unknown
                            } else {
                                AccessMode::None
                            };
                            mark(t, m);
                        }
                    }
                }
                ArgSpec::Struct(fields) => {
                    let mut offset = 0u64;
                    for f in fields {
                        let (size, align) = field_layout(f);
                        offset = offset.div_ceil(align) * align;
                        if let ArgSpec::Buffer { name, .. } = f {
                            let m = facts
                                .fields
                                .iter()
                                .find(|fa| fa.arg as usize == i && fa.offset_bytes == offset)
                                .map_or(AccessMode::None, |fa| fa.mode);
                            // A struct argument the pass could not split stays unknown.
                            let m = if mode == AccessMode::Unknown {
                                AccessMode::Unknown
                            } else {
                                m
                            };
                            mark(name, m);
                        }
                        offset += size;
                    }
                }
                _ => {}
            }
        }
        allowed
    }
}

fn field_layout(f: &ArgSpec) -> (u64, u64) {
    match f {
        ArgSpec::Buffer { .. } | ArgSpec::U64(_) => (8, 8),
        ArgSpec::I32(_) | ArgSpec::F32(_) => (4, 4),
        ArgSpec::Struct(_) => (0, 8),
    }
}

fn fill_bytes(fill: &Fill, pointers: &BTreeMap<String, u64>) -> Vec<u8> {
    let word: [u8; 4] = match fill {
        Fill::F32(v) => v.to_le_bytes(),
        Fill::I32(v) => v.to_le_bytes(),
        Fill::Nan => 0x7fc0_0001u32.to_le_bytes(),
        Fill::Pointers(targets) => {
            let mut b = vec![0u8; BUFFER_BYTES];
            for (k, t) in targets.iter().enumerate() {
                let p = pointers.get(t).copied().unwrap_or(0);
                b[k * 8..k * 8 + 8].copy_from_slice(&p.to_le_bytes());
            }
            return b;
        }
    };
    word.iter().copied().cycle().take(BUFFER_BYTES).collect()
}

/// What one check found.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckOutcome {
    /// Kernel name.
    pub kernel: String,
    /// Buffers that changed although the facts said they could not.
    pub violations: Vec<String>,
    /// Buffers that changed (and were allowed to).
    pub changed: Vec<String>,
    /// Buffers the facts allowed to change that kept their contents (may-write, not must-write).
    pub unchanged_writable: Vec<String>,
}

/// Errors of a GPU check.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The CUDA driver failed.
    #[error("CUDA driver call failed during the access check of {kernel}: {source}")]
    Driver {
        /// The kernel being checked.
        kernel: String,
        /// The driver's error.
        source: cudarc::driver::DriverError,
    },
    /// The manifest has no facts for a kernel the source launches.
    #[error("no kernel facts for {0}; rebuild the kernels crate so the pass runs")]
    NoFacts(String),
}

/// Run `spec` on GPU 0 from `module` and compare every buffer before and after.
///
/// # Errors
/// [`CheckError`] when the driver fails or the facts are missing.
pub fn check(
    ctx: &Arc<CudaContext>,
    module: &Arc<CudaModule>,
    spec: &LaunchSpec,
    facts: Option<&KernelFacts>,
) -> Result<CheckOutcome, CheckError> {
    let facts = facts.ok_or_else(|| CheckError::NoFacts(spec.kernel.clone()))?;
    let drv = |source| CheckError::Driver {
        kernel: spec.kernel.clone(),
        source,
    };
    let stream = ctx.default_stream();
    // Buffers by name, in first-use order; pointer tables last so their targets exist.
    let mut fills: BTreeMap<String, Fill> = BTreeMap::new();
    let visit = |a: &ArgSpec, fills: &mut BTreeMap<String, Fill>| {
        if let ArgSpec::Buffer { name, fill } = a {
            fills.entry(name.clone()).or_insert_with(|| fill.clone());
            if let Fill::Pointers(ts) = fill {
                for t in ts {
                    fills.entry(t.clone()).or_insert(Fill::Nan);
                }
            }
        }
    };
    for a in &spec.args {
        match a {
            ArgSpec::Struct(fs) => fs.iter().for_each(|f| visit(f, &mut fills)),
            other => visit(other, &mut fills),
        }
    }
    let mut slices: BTreeMap<String, CudaSlice<u8>> = BTreeMap::new();
    let mut pointers: BTreeMap<String, u64> = BTreeMap::new();
    for name in fills.keys() {
        let s = stream.alloc_zeros::<u8>(BUFFER_BYTES).map_err(drv)?;
        let (p, _sync) = s.device_ptr(&stream);
        pointers.insert(name.clone(), p);
        drop(_sync);
        slices.insert(name.clone(), s);
    }
    let mut before: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (name, fill) in &fills {
        let bytes = fill_bytes(fill, &pointers);
        if let Some(s) = slices.get_mut(name) {
            stream.memcpy_htod(&bytes, s).map_err(drv)?;
        }
        before.insert(name.clone(), bytes);
    }
    // Parameter blobs, each 8-byte aligned storage.
    let mut blobs: Vec<Vec<u64>> = Vec::new();
    for a in &spec.args {
        let mut bytes: Vec<u8> = Vec::new();
        let put = |a: &ArgSpec, bytes: &mut Vec<u8>| {
            let (_, align) = field_layout(a);
            while bytes.len() as u64 % align != 0 {
                bytes.push(0);
            }
            match a {
                ArgSpec::Buffer { name, .. } => {
                    bytes.extend(pointers.get(name).copied().unwrap_or(0).to_le_bytes())
                }
                ArgSpec::I32(v) => bytes.extend(v.to_le_bytes()),
                ArgSpec::F32(v) => bytes.extend(v.to_le_bytes()),
                ArgSpec::U64(v) => bytes.extend(v.to_le_bytes()),
                ArgSpec::Struct(_) => {}
            }
        };
        match a {
            ArgSpec::Struct(fs) => fs.iter().for_each(|f| put(f, &mut bytes)),
            other => put(other, &mut bytes),
        }
        while bytes.len() % 8 != 0 {
            bytes.push(0);
        }
        blobs.push(
            bytes
                .chunks(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
        );
    }
    let mut params: Vec<*mut std::ffi::c_void> =
        blobs.iter_mut().map(|b| b.as_mut_ptr().cast()).collect();
    let func = module.load_function(&spec.kernel).map_err(drv)?;
    // SAFETY: every parameter points at storage that outlives the launch (synchronised below)
    // and has the size and layout the fixture's signature declares; buffers are 1 MiB, more
    // than any fixture's launch touches.
    unsafe {
        cudarc::driver::result::launch_kernel(
            func.cu_function(),
            (spec.grid, 1, 1),
            (spec.block, 1, 1),
            0,
            stream.cu_stream(),
            &mut params,
        )
    }
    .map_err(drv)?;
    stream.synchronize().map_err(drv)?;
    let allowed = spec.allowed_changes(facts);
    let mut out = CheckOutcome {
        kernel: spec.kernel.clone(),
        violations: Vec::new(),
        changed: Vec::new(),
        unchanged_writable: Vec::new(),
    };
    for (name, s) in &slices {
        let after = stream.clone_dtoh(s).map_err(drv)?;
        let changed = before.get(name).is_some_and(|b| *b != after);
        let may = allowed.get(name).copied().unwrap_or(false);
        match (changed, may) {
            (true, false) => out.violations.push(name.clone()),
            (true, true) => out.changed.push(name.clone()),
            (false, true) => out.unchanged_writable.push(name.clone()),
            (false, false) => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use wattlens_instrument::FieldAccess;

    #[test]
    fn every_fixture_has_a_launch_line_that_parses() {
        let specs = LaunchSpec::all_in(crate::pass_fixtures::SOURCE).unwrap();
        assert_eq!(specs.len(), 22);
        let s = specs.iter().find(|s| s.kernel == "via_struct").unwrap();
        assert!(matches!(&s.args[0], ArgSpec::Struct(f) if f.len() == 4));
    }

    #[test]
    fn aliased_and_struct_buffers_take_the_loosest_mode() {
        let spec = LaunchSpec::parse(
            "k grid=1 block=1 args=buf:X:1.0,buf:X:1.0,struct:buf:o:nan;buf:i:1.0;i32:4",
        )
        .unwrap();
        let facts = KernelFacts {
            arg_access: vec![AccessMode::Read, AccessMode::Write, AccessMode::ReadWrite],
            fields: vec![
                FieldAccess {
                    arg: 2,
                    offset_bytes: 0,
                    mode: AccessMode::Write,
                },
                FieldAccess {
                    arg: 2,
                    offset_bytes: 8,
                    mode: AccessMode::Read,
                },
            ],
            ..KernelFacts::unknown("k", 3)
        };
        let allowed = spec.allowed_changes(&facts);
        assert!(allowed["X"], "written through the second alias");
        assert!(allowed["o"]);
        assert!(!allowed["i"]);
    }
}
