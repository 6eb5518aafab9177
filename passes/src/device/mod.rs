//! Device-IR analysis: kernel facts (operator class, access modes, static cost) for every
//! kernel of an NVPTX module, and the `!wattlens.*` metadata that tags them.

mod access;
mod cfg;
mod classify;
mod cost;
mod expr;
mod kernels;

use std::path::Path;

use inkwell::context::Context;
use inkwell::module::Module;
use inkwell::values::{AsValueRef, BasicMetadataValueEnum};
use wattlens_instrument::{KernelFacts, Manifest, OpClass};

pub use classify::Features;
pub use kernels::{kernels_in_file, kernels_in_module};

use crate::annotations::function_annotations;
use crate::ir::Reader;
use crate::PassError;

/// Everything the analysis found about one kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelReport {
    /// The facts that go into the manifest.
    pub facts: KernelFacts,
    /// The structural evidence for the class.
    pub features: Features,
    /// The class a `wattlens.op=` annotation forced, if any.
    pub annotated: Option<OpClass>,
    /// The class the structure alone indicates.
    pub structural: OpClass,
    /// IR instructions in the kernel.
    pub instructions: usize,
    /// What the cost analysis could not count and counted as nothing, or clamped, in words.
    pub clamped: Vec<String>,
}

/// The operator class a `wattlens.op=…` annotation names, if the function has one.
fn annotated_class(function: &str, notes: &[String]) -> Result<Option<OpClass>, PassError> {
    let mut class = None;
    for note in notes {
        let Some(label) = note.strip_prefix("op=") else {
            if note.starts_with("region=") {
                continue;
            }
            return Err(annotation_error(function, note));
        };
        class = Some(OpClass::from_label(label).ok_or_else(|| annotation_error(function, note))?);
    }
    Ok(class)
}

fn annotation_error(function: &str, note: &str) -> PassError {
    PassError::Annotation {
        function: function.to_owned(),
        annotation: note.to_owned(),
        classes: OpClass::ALL
            .iter()
            .map(|c| c.label())
            .collect::<Vec<_>>()
            .join("|"),
    }
}

/// How deep calls to functions with bodies are followed.
const MAX_CALL_DEPTH: u32 = 8;

/// What a caller needs of an analysed callee: its access facts, its evidence, and its cost
/// when that is a constant (FLOPs, bytes).
type CalleeFacts = (access::Access, Features, Option<(i64, i64)>);

/// Analyses functions once each, callees before callers.
struct Analyzer {
    reader: Reader,
    done: std::collections::HashMap<String, CalleeFacts>,
}

/// One analysed function.
struct Analysed {
    func: crate::ir::Func,
    access: access::Access,
    features: Features,
    cost: wattlens_instrument::StaticCost,
}

impl Analyzer {
    fn function(&mut self, f: inkwell::llvm_sys::prelude::LLVMValueRef, depth: u32) -> Analysed {
        let func = self.reader.read(f);
        // Callees with bodies first.
        let mut callees = access::Callees::new();
        let mut callee_features = Vec::new();
        let mut callee_costs = cost::CalleeCosts::new();
        if depth < MAX_CALL_DEPTH {
            for inst in &func.insts {
                if let crate::ir::Callee::Direct {
                    name,
                    body: Some(body),
                    ..
                } = &inst.callee
                {
                    if *name == func.name {
                        continue;
                    }
                    if !self.done.contains_key(name) {
                        let a = self.function(*body, depth + 1);
                        let constant = a
                            .cost
                            .flops_per_thread
                            .parse::<i64>()
                            .ok()
                            .zip(a.cost.global_bytes_per_thread.parse::<i64>().ok());
                        self.done
                            .insert(name.clone(), (a.access, a.features, constant));
                    }
                    if let Some((acc, ft, constant)) = self.done.get(name) {
                        callees.insert(name.clone(), acc.clone());
                        callee_features.push(ft.clone());
                        if let Some(c) = constant {
                            callee_costs.insert(name.clone(), *c);
                        }
                    }
                }
            }
        }
        let cfg = cfg::Cfg::of(&func);
        let roots = access::roots(&func);
        let access = access::analyze(&func, &roots, &callees);
        let mut features = classify::features(&func, &cfg, &roots);
        for ft in &callee_features {
            features.absorb(ft);
        }
        let cost = cost::static_cost(&func, &cfg, &roots, &callee_costs);
        Analysed {
            func,
            access,
            features,
            cost,
        }
    }
}

/// Analyse every kernel of an NVPTX module.
///
/// # Errors
/// [`PassError::Annotation`] when a kernel carries a `wattlens.*` annotation this build does
/// not understand.
pub fn analyze_module(module: &Module<'_>) -> Result<Vec<KernelReport>, PassError> {
    let notes = function_annotations(module.as_mut_ptr());
    let mut analyzer = Analyzer {
        reader: Reader::new(module.as_mut_ptr()),
        done: std::collections::HashMap::new(),
    };
    let mut reports = Vec::new();
    for f in kernels::kernel_functions(module) {
        let a = analyzer.function(f.as_value_ref(), 0);
        let name = a.func.name.clone();
        let annotated = annotated_class(&name, notes.get(&name).map_or(&[][..], |v| v))?;
        let structural = a.features.class();
        let clamped = cost::clamped(&a.func, &a.cost);
        reports.push(KernelReport {
            facts: KernelFacts {
                name,
                op_class: annotated.unwrap_or(structural),
                arg_access: a.access.args,
                cost: Some(a.cost),
                fields: a.access.fields,
                writes_outside_args: a.access.writes_outside_args,
            },
            features: a.features,
            annotated,
            structural,
            clamped,
            instructions: a.func.insts.len(),
        });
    }
    Ok(reports)
}

/// The manifest of a set of kernel reports.
pub fn manifest_of(reports: &[KernelReport]) -> Manifest {
    let mut m = Manifest::new();
    for r in reports {
        m.kernels.insert(r.facts.name.clone(), r.facts.clone());
    }
    m
}

/// Attach `!wattlens.op`, `!wattlens.access` and `!wattlens.cost` to each analysed kernel.
pub fn tag_module(module: &Module<'_>, reports: &[KernelReport]) {
    let ctx = module.get_context();
    let op_kind = ctx.get_kind_id("wattlens.op");
    let access_kind = ctx.get_kind_id("wattlens.access");
    let cost_kind = ctx.get_kind_id("wattlens.cost");
    let node = |texts: &[&str]| {
        let values: Vec<BasicMetadataValueEnum> = texts
            .iter()
            .map(|t| BasicMetadataValueEnum::MetadataValue(ctx.metadata_string(t)))
            .collect();
        ctx.metadata_node(&values)
    };
    for r in reports {
        let Some(f) = module.get_function(&r.facts.name) else {
            continue;
        };
        let g = f.as_global_value();
        g.set_metadata(node(&[r.facts.op_class.label()]), op_kind);
        let modes: Vec<&str> = r.facts.arg_access.iter().map(|m| m.label()).collect();
        g.set_metadata(node(&modes), access_kind);
        if let Some(c) = &r.facts.cost {
            g.set_metadata(
                node(&[&c.flops_per_thread, &c.global_bytes_per_thread]),
                cost_kind,
            );
        }
    }
}

/// Analyse the device IR at `input`: its kernel reports.
///
/// # Errors
/// [`PassError::Load`] or [`PassError::Target`] for bad input, else as [`analyze_module`].
pub fn analyze_file(input: &Path) -> Result<Vec<KernelReport>, PassError> {
    let context = Context::create();
    let module = crate::load_module(&context, input)?;
    crate::module::expect_device(&module, input)?;
    analyze_module(&module)
}

/// Analyse the device IR at `input`, tag its kernels and write the tagged IR to `output`.
///
/// # Errors
/// As [`analyze_file`], plus [`PassError::Verify`] and [`PassError::Write`].
pub fn tag_file(input: &Path, output: &Path) -> Result<Vec<KernelReport>, PassError> {
    let context = Context::create();
    let module = crate::load_module(&context, input)?;
    crate::module::expect_device(&module, input)?;
    let reports = analyze_module(&module)?;
    tag_module(&module, &reports);
    crate::write_module(&module, output)?;
    Ok(reports)
}
