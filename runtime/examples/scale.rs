//! Profile your own cudarc launches: one kernel, scaled in place in a region, then the joules
//! per kernel and region from the trace.
//!
//! ```sh
//! cargo run --release -p wattlens-runtime --example scale -- 20000   # launches (default 20000)
//! ```
//! Needs an NVIDIA GPU (and `libcupti` on `LD_LIBRARY_PATH` for CUPTI timing; CUDA events
//! otherwise). The PTX is written out here, so no CUDA toolkit is needed to build it.

use cudarc::driver::LaunchConfig;
use wattlens_instrument::attribute;
use wattlens_runtime::{ProfiledArg, Profiler, ProfilerConfig};

/// `x[i] *= a` for `i < n`.
const PTX: &str = r#"
.version 7.0
.target sm_70
.address_size 64
.visible .entry scale(.param .u64 x, .param .f32 a, .param .u32 n)
{
    .reg .pred p;
    .reg .b32 r<5>;
    .reg .f32 f<3>;
    .reg .b64 rd<4>;
    ld.param.u64 rd1, [x];
    ld.param.f32 f1, [a];
    ld.param.u32 r1, [n];
    mov.u32 r2, %ctaid.x;
    mov.u32 r3, %ntid.x;
    mov.u32 r4, %tid.x;
    mad.lo.s32 r2, r2, r3, r4;
    setp.ge.u32 p, r2, r1;
    @p bra DONE;
    cvta.to.global.u64 rd2, rd1;
    mul.wide.u32 rd3, r2, 4;
    add.s64 rd2, rd2, rd3;
    ld.global.f32 f2, [rd2];
    mul.f32 f2, f2, f1;
    st.global.f32 [rd2], f2;
DONE:
    ret;
}
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let launches: usize = match std::env::args().nth(1) {
        Some(a) => a.parse()?,
        None => 20_000,
    };
    let n: u32 = 1 << 24;
    let prof = Profiler::start(ProfilerConfig::default())?;
    let stream = prof.context(0)?.default_stream();
    let scale = prof.kernel(&prof.load_ptx(0, PTX)?, "scale")?;
    let mut x = prof.upload(&stream, &vec![1.0f32; n as usize])?;
    let cfg = LaunchConfig::for_num_elems(n);
    // Quiet stretches before and after the work: idle power is measured in counter windows
    // (100 ms) with no work in them, and a session busy from start to end has none.
    let quiet = std::time::Duration::from_millis(500);
    prof.synchronize(&stream)?;
    std::thread::sleep(quiet);
    {
        let _step = prof.region("scale");
        for _ in 0..launches {
            // SAFETY: `scale` takes (f32*, f32, u32) and touches x[0..n), which `x` holds.
            unsafe {
                prof.launch(&stream, &scale)
                    .arg(&mut x)
                    .arg(&1.0f32)
                    .arg(&n)
                    .launch(cfg)
            }?;
        }
    }
    prof.synchronize(&stream)?;
    std::thread::sleep(quiet);
    let trace = match prof.finish() {
        Ok(f) => f.trace,
        Err(aborted) => return Err(aborted.error.into()),
    };
    let a = attribute(&trace, 0).map_err(|e| format!("cannot attribute the run: {e}"))?;
    for s in &a.signatures {
        println!(
            "kernel {:<10} {:>7} launches  dynamic {:.1} J [{:.1}, {:.1}] ({})",
            s.name,
            s.launches,
            s.dynamic.mj / 1e3,
            s.dynamic.low_mj / 1e3,
            s.dynamic.high_mj / 1e3,
            s.dynamic.coverage.label()
        );
    }
    for r in &a.regions {
        println!(
            "region {:<10} dynamic {:.1} J ({})",
            r.path,
            r.dynamic.mj / 1e3,
            r.dynamic.coverage.label()
        );
    }
    println!(
        "closure: counter {:.1} J = idle {:.1} J + dynamic {:.1} J + unattributed {:.2} J",
        a.closure.counter_mj / 1e3,
        a.closure.idle_mj / 1e3,
        a.closure.dynamic_mj / 1e3,
        a.closure.residual_mj / 1e3
    );
    Ok(())
}
