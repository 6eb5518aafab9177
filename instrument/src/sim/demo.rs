//! The built-in demo workload: a kernel sweep, then a small transformer decode loop.

use super::workload::{KernelSpec, TransferSpec, WorkItem, Workload};
use crate::trace::{CopyDirection, LaunchShape, OpClass};

/// One kernel of the demo: name, class, duration (µs), true dynamic power (W), grid x.
struct DemoKernel(&'static str, OpClass, u64, u32, u32);

const KERNELS: &[DemoKernel] = &[
    DemoKernel("embedding_gather", OpClass::GatherScatter, 25, 70, 64),
    DemoKernel("layernorm_f32", OpClass::Norm, 18, 90, 132),
    DemoKernel("matmul_qkv_bf16", OpClass::Matmul, 160, 430, 264),
    DemoKernel("flash_attention_fwd", OpClass::Attention, 210, 320, 132),
    DemoKernel("matmul_out_bf16", OpClass::Matmul, 55, 400, 132),
    DemoKernel("residual_add_f32", OpClass::Elementwise, 16, 120, 264),
    DemoKernel("matmul_mlp_up_bf16", OpClass::Matmul, 220, 460, 528),
    DemoKernel("gelu_f32", OpClass::Elementwise, 35, 160, 528),
    DemoKernel("matmul_mlp_down_bf16", OpClass::Matmul, 220, 450, 264),
    DemoKernel("lm_head_bf16", OpClass::Matmul, 380, 480, 396),
    DemoKernel("softmax_f32", OpClass::Softmax, 40, 140, 16),
];

const LAUNCH_GAP_NS: u64 = 4_000;

fn kernel(k: &DemoKernel, region: &str, count: u32) -> WorkItem {
    WorkItem::Kernel(KernelSpec {
        name: k.0.to_owned(),
        op_class: k.1,
        stream: 0,
        duration_ns: k.2 * 1000,
        dynamic_mw: k.3 * 1000,
        launch: LaunchShape {
            grid: [k.4, 1, 1],
            block: [256, 1, 1],
            shared_mem_bytes: 0,
        },
        region: region.to_owned(),
        count,
        gap_ns: LAUNCH_GAP_NS,
    })
}

fn copy(
    name: &str,
    stream: u32,
    direction: CopyDirection,
    bytes: u64,
    us: u64,
    w: u32,
    region: &str,
) -> WorkItem {
    WorkItem::Transfer(TransferSpec {
        name: name.to_owned(),
        stream,
        direction,
        bytes,
        duration_ns: us * 1000,
        dynamic_mw: w * 1000,
        region: region.to_owned(),
        count: 1,
    })
}

/// The demo: 1.5 s idle; each kernel repeated for 250 ms with 100 ms idle gaps (the
/// repetition method, which makes each signature identifiable); `steps` decode steps of a
/// 12-layer transformer with a concurrent copy stream; 1.5 s idle.
pub fn demo_workload(steps: u32) -> Workload {
    let mut items = Vec::new();
    for k in KERNELS {
        let count = (250_000 / (k.2 + LAUNCH_GAP_NS / 1000)) as u32;
        items.push(kernel(k, &format!("sweep/{}", k.0), count));
        items.push(WorkItem::Gap {
            stream: 0,
            duration_ns: 100_000_000,
        });
    }
    let by = |name: &str| KERNELS.iter().find(|k| k.0 == name);
    for step in 0..steps {
        items.push(copy(
            "tokens_h2d",
            0,
            CopyDirection::HostToDevice,
            4096,
            20,
            30,
            "decode/input",
        ));
        if let Some(k) = by("embedding_gather") {
            items.push(kernel(k, "decode/embedding", 1));
        }
        for layer in 0..12 {
            let base = format!("decode/layer{layer}");
            for (name, region) in [
                ("layernorm_f32", "norm"),
                ("matmul_qkv_bf16", "attention"),
                ("flash_attention_fwd", "attention"),
                ("matmul_out_bf16", "attention"),
                ("residual_add_f32", "attention"),
                ("layernorm_f32", "norm"),
                ("matmul_mlp_up_bf16", "mlp"),
                ("gelu_f32", "mlp"),
                ("matmul_mlp_down_bf16", "mlp"),
                ("residual_add_f32", "mlp"),
            ] {
                if let Some(k) = by(name) {
                    items.push(kernel(k, &format!("{base}/{region}"), 1));
                }
            }
        }
        for (name, region) in [
            ("layernorm_f32", "decode/norm"),
            ("lm_head_bf16", "decode/lm_head"),
            ("softmax_f32", "decode/sample"),
        ] {
            if let Some(k) = by(name) {
                items.push(kernel(k, region, 1));
            }
        }
        items.push(copy(
            "logits_d2h",
            0,
            CopyDirection::DeviceToHost,
            200_000,
            60,
            35,
            "decode/output",
        ));
        if step % 10 == 0 {
            items.push(copy(
                "kv_cache_compact",
                1,
                CopyDirection::DeviceToDevice,
                64 << 20,
                1500,
                60,
                "kv_cache",
            ));
        }
        items.push(WorkItem::Sync {
            host_ns: 500_000,
            lead_ns: 0,
        });
    }
    Workload {
        name: format!("demo: kernel sweep + {steps}-step decode"),
        lead_idle_ns: 1_500_000_000,
        tail_idle_ns: 1_500_000_000,
        items,
    }
}
