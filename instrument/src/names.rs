//! Operator classes of kernels that come with no facts (cuBLAS, cuDNN, CUTLASS, flash
//! attention, PyTorch's own kernels, NCCL), from their names. One table, first match wins:
//! add a row to teach wattlens a library. Patterns are matched case-insensitively against the
//! demangled-or-not symbol name; a row matches when every one of its fragments occurs.

use crate::trace::OpClass;

/// (fragments that must all occur, class), in priority order.
const TABLE: &[(&[&str], OpClass)] = &[
    // Communication first: NCCL kernels also contain "reduce".
    (&["nccl"], OpClass::Communication),
    (&["allreduce"], OpClass::Communication),
    (&["all_reduce"], OpClass::Communication),
    (&["allgather"], OpClass::Communication),
    (&["reducescatter"], OpClass::Communication),
    // Attention before matmul: flash kernels are GEMMs inside.
    (&["flash"], OpClass::Attention),
    (&["fmha"], OpClass::Attention),
    (&["attention"], OpClass::Attention),
    (&["attn"], OpClass::Attention),
    (&["sdpa"], OpClass::Attention),
    // Norms before reductions.
    (&["layer_norm"], OpClass::Norm),
    (&["layernorm"], OpClass::Norm),
    (&["rms_norm"], OpClass::Norm),
    (&["rmsnorm"], OpClass::Norm),
    (&["batch_norm"], OpClass::Norm),
    (&["group_norm"], OpClass::Norm),
    (&["softmax"], OpClass::Softmax),
    // GEMMs: cuBLAS, cuBLASLt, CUTLASS, Hopper wgmma kernels.
    (&["gemm"], OpClass::Matmul),
    (&["xmma"], OpClass::Matmul),
    (&["cutlass"], OpClass::Matmul),
    (&["wgmma"], OpClass::Matmul),
    // cuBLAS' JIT-generated GEMMs (CUDA 12.8 and later on Hopper and Blackwell).
    (&["nvjet"], OpClass::Matmul),
    (&["sm90_", "tensorop"], OpClass::Matmul),
    (&["matmul"], OpClass::Matmul),
    (&["conv2d"], OpClass::Matmul),
    (&["convolution"], OpClass::Matmul),
    (&["embedding"], OpClass::GatherScatter),
    (&["gather"], OpClass::GatherScatter),
    (&["scatter"], OpClass::GatherScatter),
    (&["index_select"], OpClass::GatherScatter),
    (&["indexselect"], OpClass::GatherScatter),
    (&["memcpy"], OpClass::Copy),
    (&["copy_kernel"], OpClass::Copy),
    (&["transpose"], OpClass::Copy),
    (&["cat_array"], OpClass::Copy),
    (&["reduce_kernel"], OpClass::Softmax),
    (&["elementwise"], OpClass::Elementwise),
    (&["vectorized"], OpClass::Elementwise),
    (&["unrolled_elementwise"], OpClass::Elementwise),
    (&["gelu"], OpClass::Elementwise),
    (&["silu"], OpClass::Elementwise),
    (&["relu"], OpClass::Elementwise),
    (&["fill_kernel"], OpClass::Elementwise),
];

/// The operator class a kernel's name implies, or `None` when no row matches.
pub fn class_from_name(name: &str) -> Option<OpClass> {
    let lower = name.to_ascii_lowercase();
    TABLE
        .iter()
        .find(|(fragments, _)| fragments.iter().all(|f| lower.contains(f)))
        .map(|&(_, class)| class)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_kernels_get_their_class() {
        let cases = [
            ("_ZN7cutlass7Kernel2I42cutlass_80_tensorop_s1688gemm_64x64_16x6_nn_align4EEvNT_6ParamsE", OpClass::Matmul),
            ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1", OpClass::Matmul),
            ("ampere_sgemm_128x64_nn", OpClass::Matmul),
            ("nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_bias_TNT", OpClass::Matmul),
            ("cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_7_64x128x64_4x1x1_cga1x1x1_kernel0_0", OpClass::Attention),
            ("flash_fwd_kernel<Flash_fwd_kernel_traits<128, 128, 64, 4>>", OpClass::Attention),
            ("fmha_cutlassF_f16_aligned_64x64_rf_sm80", OpClass::Attention),
            ("void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<float>", OpClass::Norm),
            ("void at::native::(anonymous namespace)::cunn_SoftMaxForward<4, float>", OpClass::Softmax),
            ("ncclDevKernel_AllReduce_Sum_f32_RING_LL", OpClass::Communication),
            ("void at::native::vectorized_elementwise_kernel<4, at::native::GeluCUDAKernelImpl>", OpClass::Elementwise),
            ("void at::native::(anonymous namespace)::indexSelectLargeIndex<float>", OpClass::GatherScatter),
        ];
        for (name, class) in cases {
            assert_eq!(class_from_name(name), Some(class), "{name}");
        }
        assert_eq!(class_from_name("my_custom_kernel"), None);
    }
}
