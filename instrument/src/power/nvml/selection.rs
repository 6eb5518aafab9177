//! Which GPUs to read: all, NVML indices, UUIDs, or what `CUDA_VISIBLE_DEVICES` names.

use super::backend::NvmlIdentity;
use crate::power::PowerError;

/// The GPUs a run observes. Trace device indices follow the order given here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSelection {
    /// Every GPU NVML sees, in NVML (PCI) order.
    All,
    /// These NVML indices.
    NvmlIndices(Vec<u32>),
    /// These UUIDs (or unique UUID prefixes), e.g. from `cuDeviceGetUuid` in CUDA order, so
    /// trace index i is CUDA device i.
    Uuids(Vec<String>),
    /// The GPUs a CUDA program would see under this `CUDA_VISIBLE_DEVICES` value, in CUDA
    /// order. Integer entries are read as PCI order, which is NVML's (CUDA uses it when
    /// `CUDA_DEVICE_ORDER=PCI_BUS_ID`; pass UUIDs when it does not).
    CudaVisible(String),
}

impl DeviceSelection {
    /// The selection for this process: `CUDA_VISIBLE_DEVICES` when set, else all GPUs.
    pub fn from_env() -> Self {
        match std::env::var("CUDA_VISIBLE_DEVICES") {
            Ok(v) => DeviceSelection::CudaVisible(v),
            Err(_) => DeviceSelection::All,
        }
    }
}

fn unknown(what: &str, ids: &[NvmlIdentity]) -> PowerError {
    let known: Vec<String> = ids
        .iter()
        .map(|i| format!("{} ({})", i.nvml_index, i.uuid))
        .collect();
    PowerError::Unavailable(format!(
        "no GPU matches {what}; NVML sees {}",
        if known.is_empty() {
            "no GPU".to_owned()
        } else {
            known.join(", ")
        }
    ))
}

fn by_uuid(u: &str, ids: &[NvmlIdentity]) -> Result<u32, PowerError> {
    let hits: Vec<&NvmlIdentity> = ids.iter().filter(|i| i.uuid.starts_with(u)).collect();
    match hits.as_slice() {
        [one] => Ok(one.nvml_index),
        [] => Err(unknown(&format!("UUID {u}"), ids)),
        _ => Err(PowerError::Unavailable(format!(
            "UUID prefix {u} matches several GPUs; give more of it"
        ))),
    }
}

/// Resolve `selection` to NVML indices, in trace order.
///
/// # Errors
/// [`PowerError::Unavailable`] when nothing or something unknown is selected.
pub fn resolve_selection(
    selection: &DeviceSelection,
    ids: &[NvmlIdentity],
) -> Result<Vec<u32>, PowerError> {
    let out = match selection {
        DeviceSelection::All => ids.iter().map(|i| i.nvml_index).collect(),
        DeviceSelection::NvmlIndices(v) => v
            .iter()
            .map(|&n| {
                ids.iter()
                    .find(|i| i.nvml_index == n)
                    .map(|i| i.nvml_index)
                    .ok_or_else(|| unknown(&format!("index {n}"), ids))
            })
            .collect::<Result<Vec<_>, _>>()?,
        DeviceSelection::Uuids(v) => v
            .iter()
            .map(|u| by_uuid(u, ids))
            .collect::<Result<Vec<_>, _>>()?,
        DeviceSelection::CudaVisible(s) => {
            let mut out = Vec::new();
            // CUDA stops at the first entry it cannot parse or find.
            for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                let found = if let Ok(n) = entry.parse::<u32>() {
                    ids.iter().find(|i| i.nvml_index == n).map(|i| i.nvml_index)
                } else if entry.starts_with("GPU-") || entry.starts_with("MIG-") {
                    by_uuid(entry, ids).ok()
                } else {
                    None
                };
                match found {
                    Some(i) if !out.contains(&i) => out.push(i),
                    _ => break,
                }
            }
            out
        }
    };
    if out.is_empty() {
        return Err(PowerError::Unavailable(match selection {
            DeviceSelection::CudaVisible(s) => format!(
                "CUDA_VISIBLE_DEVICES={s:?} selects no GPU that NVML sees; unset it or name a GPU by index or UUID"
            ),
            _ => "NVML sees no GPU; check `nvidia-smi`, or run `wattlens demo --simulate`".to_owned(),
        }));
    }
    Ok(out)
}
