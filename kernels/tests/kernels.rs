//! The embedded PTX is what the launchers expect.

use wattlens_kernels::calibration::{KERNELS, PTX};

#[test]
fn ptx_targets_sm90_and_defines_every_kernel() {
    assert!(PTX.contains(".target sm_90"), "PTX is not for sm_90");
    for k in KERNELS {
        assert!(
            PTX.contains(&format!(".entry {k}(")),
            "kernel {k} missing from the PTX"
        );
    }
    // The spin kernels must really be FMA-bound.
    assert!(PTX.matches("fma.rn.f32").count() >= 128);
}
