//! The NVML boundary: the few calls wattlens makes, behind a trait with a fake for tests.

/// NVML field id of the total energy counter, mJ (`NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION`).
pub const FIELD_ENERGY: u32 = 83;
/// NVML field id of the instant power, mW (`NVML_FI_DEV_POWER_INSTANT`).
pub const FIELD_POWER_INSTANT: u32 = 186;
/// Power scope of the whole GPU (`NVML_POWER_SCOPE_GPU`).
pub const SCOPE_GPU: u32 = 0;
/// Power scope of the memory (`NVML_POWER_SCOPE_MEMORY`).
pub const SCOPE_MEMORY: u32 = 2;

/// Why one NVML call failed, reduced to what the sampler acts on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NvmlCallError {
    /// The library is not installed (no driver) or lacks a symbol.
    #[error("the NVML library could not be loaded ({0})")]
    Library(String),
    /// The device does not support this query: a capability flag, not a failure.
    #[error("not supported by this GPU")]
    NotSupported,
    /// Nothing new to return (the samples ring has no entry after the given time).
    #[error("no new data")]
    NotFound,
    /// The GPU fell off the bus or is otherwise inaccessible.
    #[error("the GPU is lost (fallen off the bus or reset)")]
    GpuLost,
    /// Anything else, with NVML's own description.
    #[error("{0}")]
    Other(String),
}

/// What identifies one GPU to NVML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmlIdentity {
    /// NVML index (PCI bus order).
    pub nvml_index: u32,
    /// Product name.
    pub name: String,
    /// UUID, e.g. `GPU-8f3a…`.
    pub uuid: String,
    /// Power limit, mW, when readable.
    pub power_limit_mw: Option<u32>,
    /// Streaming multiprocessors, when known (NVML reports cores, not SMs; 0 when unknown).
    pub sm_count: u32,
}

/// One field value as NVML returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldValue {
    /// Field id.
    pub field: u32,
    /// Scope id.
    pub scope: u32,
    /// NVML's CPU timestamp of the value, µs since the Unix epoch (0 when absent).
    pub ts_us: i64,
    /// The value, or why this field failed.
    pub value: Result<u64, NvmlCallError>,
}

/// The NVML calls the power source uses. Indices are NVML indices.
pub trait NvmlBackend: Send {
    /// Number of GPUs NVML sees.
    ///
    /// # Errors
    /// [`NvmlCallError`] from NVML.
    fn device_count(&self) -> Result<u32, NvmlCallError>;
    /// Name, UUID and limits of one GPU.
    ///
    /// # Errors
    /// [`NvmlCallError`] from NVML.
    fn identity(&self, nvml_index: u32) -> Result<NvmlIdentity, NvmlCallError>;
    /// The driver version string.
    ///
    /// # Errors
    /// [`NvmlCallError`] from NVML.
    fn driver_version(&self) -> Result<String, NvmlCallError>;
    /// Total-power samples newer than `since_us` as (µs since the epoch, mW), oldest first.
    ///
    /// # Errors
    /// [`NvmlCallError`]; `NotFound` means there is nothing new.
    fn power_samples(
        &mut self,
        nvml_index: u32,
        since_us: u64,
    ) -> Result<Vec<(u64, u32)>, NvmlCallError>;
    /// Read several (field, scope) pairs in one call.
    ///
    /// # Errors
    /// [`NvmlCallError`] when the call as a whole fails; a single field's failure is in its value.
    fn field_values(
        &mut self,
        nvml_index: u32,
        fields: &[(u32, u32)],
    ) -> Result<Vec<FieldValue>, NvmlCallError>;
}
