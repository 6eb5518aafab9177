//! Kernel replay for power: the first launch of each kernel signature (name and launch shape)
//! is replayed alone, back to back, for a set time, so the energy counter sees that kernel by
//! itself. Kernels launched in lockstep (every decode step the same sequence) cannot be told
//! apart from the counter otherwise; each burst pins one of them (see
//! [`SpanKind::Alone`](wattlens_instrument::trace::SpanKind::Alone)).
//!
//! Only launches that give the same result however often they run are replayed: no argument
//! both read and written, none of unknown access, no buffer written that another argument
//! reads. Others are listed as skipped, with the reason, as are the launch shapes of a kernel
//! after its first [`MAX_SHAPES_PER_KERNEL`](super::alone_state::MAX_SHAPES_PER_KERNEL).

use cudarc::driver::CudaStream;
use wattlens_instrument::trace::{AccessMode, LaunchShape};

use super::error::CudaError;
use super::profiler::{lock, Kernel, Profiler};
use crate::timing::TimingMethod;

/// Launches between two looks at the clock during a burst.
const LAUNCHES_PER_CHECK: u32 = 32;

/// Why replaying a launch with these arguments could change what the program computes, if it
/// could: `buffers` are (buffer id, access mode) per pointer argument.
pub(crate) fn replay_hazard(buffers: &[(u64, AccessMode)]) -> Option<&'static str> {
    if buffers.iter().any(|&(_, m)| m == AccessMode::Unknown) {
        return Some("the access mode of an argument is unknown");
    }
    if buffers.iter().any(|&(_, m)| m == AccessMode::ReadWrite) {
        return Some("it updates an argument in place");
    }
    let written: Vec<u64> = buffers
        .iter()
        .filter(|&&(_, m)| m == AccessMode::Write)
        .map(|&(b, _)| b)
        .collect();
    let aliased = buffers
        .iter()
        .any(|&(b, m)| m == AccessMode::Read && written.contains(&b));
    aliased.then_some("it writes a buffer it also reads")
}

impl Profiler {
    /// If the session measures kernels alone and this is the first launch of `kernel` with
    /// `shape`, replay it (`replay` launches it once more) alone on the device for the
    /// configured time, and record the burst. `seq` is the launch just issued; `buffers` its
    /// pointer arguments with their access modes.
    ///
    /// # Errors
    /// [`CudaError`] when the device faults, a replay launch fails, or CUPTI refuses to pause
    /// or resume its kernel records.
    pub(crate) fn measure_alone(
        &self,
        stream: &CudaStream,
        (kernel, shape): (&Kernel, LaunchShape),
        (seq, buffers): (u64, &[(u64, AccessMode)]),
        mut replay: impl FnMut() -> Result<(), CudaError>,
    ) -> Result<(), CudaError> {
        let Some(burst_ns) = self.config.measure_alone_ns else {
            return Ok(());
        };
        {
            let mut state = lock(&self.alone);
            if !state.admit((kernel.name_id, kernel.name()), shape) {
                return Ok(());
            }
            if let Some(why) = replay_hazard(buffers) {
                state
                    .report
                    .skipped
                    .push(format!("{}: not replayed, since {why}", kernel.name()));
                return Ok(());
            }
        }
        let device = self.device_of(stream)?;
        let ctx = self.context(device as usize)?;
        // The device must be idle, so the burst is all that runs.
        ctx.synchronize().map_err(|e| self.fault(e))?;
        let paused = if self.methods.get(device as usize) == Some(&TimingMethod::Cupti) {
            Some(super::cupti::pause_kernel_records().map_err(CudaError::Timer)?)
        } else {
            None
        };
        let start_ns = self.now_ns();
        let mut launches = 0u32;
        while self.now_ns().saturating_sub(start_ns) < burst_ns && launches < u32::MAX / 2 {
            for _ in 0..LAUNCHES_PER_CHECK {
                replay()?;
            }
            launches += LAUNCHES_PER_CHECK;
        }
        ctx.synchronize().map_err(|e| self.fault(e))?;
        let end_ns = self.now_ns();
        if let Some(p) = paused {
            p.resume().map_err(CudaError::Timer)?;
        }
        let ordinal = self.stream_ordinal(device, stream);
        lock(&self.rec).add_alone(
            (device, ordinal),
            (kernel.name_id, shape),
            (start_ns, end_ns),
            (launches, seq),
        );
        lock(&self.alone)
            .report
            .measured
            .push(kernel.name().to_owned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::alone_state::{AloneState, MAX_SHAPES_PER_KERNEL};
    use super::*;
    use wattlens_instrument::trace::StrId;
    use AccessMode::{None as Scalarish, Read, ReadWrite, Unknown, Write};

    #[test]
    fn each_signature_is_replayed_once_and_each_kernel_at_a_few_shapes() {
        let mut state = AloneState::default();
        let shape = |rows: u32| LaunchShape {
            grid: [rows, 1, 1],
            block: [256, 1, 1],
            shared_mem_bytes: 0,
        };
        let (k, other) = ((StrId(0), "k"), (StrId(1), "other"));
        assert!(state.admit(k, shape(1)));
        assert!(!state.admit(k, shape(1)));
        let admitted = (2..=10).filter(|&rows| state.admit(k, shape(rows))).count();
        assert_eq!(admitted as u32, MAX_SHAPES_PER_KERNEL - 1);
        assert_eq!(state.report.skipped.len(), 1);
        assert!(state.report.skipped[0].starts_with("k: launch shapes after"));
        assert!(state.admit(other, shape(1)));
    }

    #[test]
    fn only_launches_that_give_the_same_result_again_are_replayed() {
        assert_eq!(replay_hazard(&[(1, Read), (2, Read), (3, Write)]), None);
        assert_eq!(
            replay_hazard(&[(1, Read), (3, Write), (4, Scalarish)]),
            None
        );
        assert!(replay_hazard(&[(1, Read), (2, ReadWrite)]).is_some_and(|w| w.contains("in place")));
        assert!(replay_hazard(&[(1, Unknown), (2, Write)]).is_some_and(|w| w.contains("unknown")));
        assert!(replay_hazard(&[(1, Read), (1, Write)]).is_some_and(|w| w.contains("also reads")));
    }
}
