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
    (&["batchnorm"], OpClass::Norm),
    (&["group_norm"], OpClass::Norm),
    (&["groupnorm"], OpClass::Norm),
    // PyTorch's LayerNorm helpers (mean and variance per row).
    (&["rowwisemoments"], OpClass::Norm),
    (&["softmax"], OpClass::Softmax),
    // Sorts, scans and top-k before gathers: `gatherTopK` is a top-k.
    (&["topk"], OpClass::SortScan),
    (&["radixsort"], OpClass::SortScan),
    (&["radixfind"], OpClass::SortScan),
    (&["bitonicsort"], OpClass::SortScan),
    (&["sort_postprocess"], OpClass::SortScan),
    (&["segmentedsort"], OpClass::SortScan),
    (&["devicescan"], OpClass::SortScan),
    (&["scan_innermost"], OpClass::SortScan),
    (&["scan_outer"], OpClass::SortScan),
    (&["deviceselect"], OpClass::SortScan),
    (&["devicecompact"], OpClass::SortScan),
    (&["nonzero"], OpClass::SortScan),
    (&["multinomial"], OpClass::SortScan),
    (&["cumsum"], OpClass::SortScan),
    (&["unique"], OpClass::SortScan),
    // GEMMs: cuBLAS, cuBLASLt, CUTLASS, Hopper wgmma kernels, Triton's matmul templates.
    (&["gemm"], OpClass::Matmul),
    (&["gemv"], OpClass::Matmul),
    (&["splitkreduce"], OpClass::Matmul),
    (&["xmma"], OpClass::Matmul),
    (&["cutlass"], OpClass::Matmul),
    (&["wgmma"], OpClass::Matmul),
    // cuBLAS' JIT-generated GEMMs (CUDA 12.8 and later on Hopper and Blackwell).
    (&["nvjet"], OpClass::Matmul),
    (&["sm90_", "tensorop"], OpClass::Matmul),
    (&["matmul"], OpClass::Matmul),
    (&["triton_tem"], OpClass::Matmul),
    (&["triton_mm"], OpClass::Matmul),
    (&["conv2d"], OpClass::Matmul),
    (&["convolution"], OpClass::Matmul),
    (&["embedding"], OpClass::GatherScatter),
    (&["gather"], OpClass::GatherScatter),
    (&["scatter"], OpClass::GatherScatter),
    (&["index_select"], OpClass::GatherScatter),
    (&["indexselect"], OpClass::GatherScatter),
    // Advanced indexing (`x[idx]`, `index_put_`) runs through an elementwise template.
    (&["index_elementwise"], OpClass::GatherScatter),
    (&["index_put"], OpClass::GatherScatter),
    (&["masked_select"], OpClass::GatherScatter),
    (&["take_kernel"], OpClass::GatherScatter),
    (&["memcpy"], OpClass::Copy),
    (&["copy_kernel"], OpClass::Copy),
    (&["transpose"], OpClass::Copy),
    (&["cat_array"], OpClass::Copy),
    // `torch.cat`: CatArrayBatchedCopy.
    (&["catarray"], OpClass::Copy),
    // Reductions (sum, mean, max, argmax: `reduce_kernel`; cub's), and Triton's.
    (&["reduce_kernel"], OpClass::Softmax),
    (&["devicereduce"], OpClass::Softmax),
    (&["reduce_1block"], OpClass::Softmax),
    (&["logsumexp"], OpClass::Softmax),
    (&["renormrows"], OpClass::Softmax),
    (&["triton_red"], OpClass::Softmax),
    (&["triton_per"], OpClass::Softmax),
    (&["elementwise"], OpClass::Elementwise),
    (&["vectorized"], OpClass::Elementwise),
    (&["unrolled_elementwise"], OpClass::Elementwise),
    (&["triton_poi"], OpClass::Elementwise),
    (&["gelu"], OpClass::Elementwise),
    (&["silu"], OpClass::Elementwise),
    (&["relu"], OpClass::Elementwise),
    (&["fill_kernel"], OpClass::Elementwise),
    (&["triu_tril"], OpClass::Elementwise),
    (&["dropout"], OpClass::Elementwise),
    (&["rotary"], OpClass::Elementwise),
    (&["masked_fill"], OpClass::Elementwise),
    (&["distribution"], OpClass::Elementwise),
    // Last: any other fill (a program's own `fill` initialising a buffer); names that hold
    // "fill" inside another op's name (`prefill_attention`) match their op's row first.
    (&["fill"], OpClass::Elementwise),
];

/// A range name with its `tokens=N` taken out, and N: how a program gives a request's token
/// count in the range's message (`torch.cuda.nvtx.range_push(f"request tokens={n}")`). The
/// count is a whole word, separated from the rest by spaces, commas or semicolons; the name
/// keeps the rest, trimmed.
pub fn split_tokens(name: &str) -> (String, Option<u64>) {
    let mut tokens = None;
    let mut kept: Vec<&str> = Vec::new();
    for word in name.split([' ', ',', ';']) {
        match word.strip_prefix("tokens=").map(str::parse::<u64>) {
            Some(Ok(n)) if tokens.is_none() => tokens = Some(n),
            _ if word.is_empty() => {}
            _ => kept.push(word),
        }
    }
    if tokens.is_none() {
        return (name.to_owned(), None);
    }
    (kept.join(" "), tokens)
}

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
    fn a_token_count_is_taken_out_of_a_range_name() {
        assert_eq!(
            split_tokens("request tokens=64"),
            ("request".into(), Some(64))
        );
        assert_eq!(split_tokens("tokens=3"), (String::new(), Some(3)));
        assert_eq!(
            split_tokens("decode step, tokens=5; id=9"),
            ("decode step id=9".into(), Some(5))
        );
        assert_eq!(
            split_tokens("request tokens=x"),
            ("request tokens=x".into(), None)
        );
        assert_eq!(split_tokens("request"), ("request".into(), None));
    }

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
            ("fill", OpClass::Elementwise),
            ("prefill_flash_attention_kernel", OpClass::Attention),
            ("void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<float>", OpClass::Norm),
            ("void at::native::(anonymous namespace)::cunn_SoftMaxForward<4, float>", OpClass::Softmax),
            ("ncclDevKernel_AllReduce_Sum_f32_RING_LL", OpClass::Communication),
            ("void at::native::vectorized_elementwise_kernel<4, at::native::GeluCUDAKernelImpl>", OpClass::Elementwise),
            ("void at::native::(anonymous namespace)::indexSelectLargeIndex<float>", OpClass::GatherScatter),
            // What PyTorch's own kernels of a transformer's forward pass and its sampling are
            // called (CUDA 12-13 builds).
            ("void at::native::(anonymous namespace)::CatArrayBatchedCopy_alignedK_contig<at::native::(anonymous namespace)::OpaqueType<2u>, unsigned int, 4, 128, 1, 16>(at::native::(anonymous namespace)::OpaqueType<2u>*, at::native::(anonymous namespace)::CatArrInputTensorMetadata<at::native::(anonymous namespace)::OpaqueType<2u>, unsigned int, 128, 1>, at::native::(anonymous namespace)::TensorSizeStride<unsigned int, 4u>, int, unsigned int)", OpClass::Copy),
            ("void at::native::reduce_kernel<512, 1, at::native::ReduceOp<c10::Half, at::native::ArgMaxOps<c10::Half>, unsigned int, long, 4, 4> >(at::native::ReduceOp<c10::Half, at::native::ArgMaxOps<c10::Half>, unsigned int, long, 4, 4>)", OpClass::Softmax),
            ("void at::native::index_elementwise_kernel<128, 4, at::native::gpu_index_kernel<at::native::index_kernel_impl<at::native::OpaqueType<2> >(at::TensorIteratorBase&, c10::ArrayRef<long>, c10::ArrayRef<long>)::{lambda(char*, char const*, long)#1}> >", OpClass::GatherScatter),
            ("void at::native::sbtopk::gatherTopK<float, unsigned int, 2, false>", OpClass::SortScan),
            ("void at_cuda_detail::cub::DeviceRadixSortOnesweepKernel<at_cuda_detail::cub::DeviceRadixSortPolicy<float, long, int>::Policy900, false, float, long, int, int, at_cuda_detail::cub::detail::identity_decomposer_t>", OpClass::SortScan),
            ("void at_cuda_detail::cub::DeviceScanKernel<at_cuda_detail::cub::DeviceScanPolicy<long, std::plus<long> >::Policy900, long*, long*>", OpClass::SortScan),
            ("void at::native::tensor_kernel_scan_innermost_dim<float, std::plus<float> >", OpClass::SortScan),
            ("void at::native::(anonymous namespace)::cunn_SoftMaxForwardSmem<8, float, float, float, at::native::(anonymous namespace)::SoftMaxForwardEpilogue>", OpClass::Softmax),
            ("void gemv2T_kernel_val<int, int, __half, __half, float, float, 128, 16, 4, 4, false, false, cublasGemvParamsEx<int, cublasGemvTensorStridedBatched<__half const>, cublasGemvTensorStridedBatched<__half const>, cublasGemvTensorStridedBatched<__half>, float> >", OpClass::Matmul),
            ("void splitKreduce_kernel<32, 16, int, float, __half, float, __half, true, false, false>", OpClass::Matmul),
            ("fmha_cutlassF_f16_aligned_64x128_rf_sm80(PyTorchMemEffAttention::AttentionKernel<cutlass::half_t, cutlass::arch::Sm80, true, 64, 128, 128, true, true>::Params)", OpClass::Attention),
            ("void at::native::(anonymous namespace)::RowwiseMomentsCUDAKernel<float, float>", OpClass::Norm),
            ("void at::native::(anonymous namespace)::triu_tril_kernel<bool, int, false, 4, true>", OpClass::Elementwise),
            ("void at::native::unrolled_elementwise_kernel<at::native::direct_copy_kernel_cuda(at::TensorIteratorBase&)::{lambda()#3}::operator()() const::{lambda()#10}::operator()() const::{lambda(c10::Half)#1}, std::array<char*, 2ul>, 4, TrivialOffsetCalculator<1, unsigned int>>", OpClass::Copy),
        ];
        for (name, class) in cases {
            assert_eq!(class_from_name(name), Some(class), "{name}");
        }
        assert_eq!(class_from_name("my_custom_kernel"), None);
    }
}
