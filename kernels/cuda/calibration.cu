// Kernels for sensor calibration and attribution checks on a real GPU: a full-chip FMA spin
// (timed or fixed work), an idle kernel, a bandwidth-bound copy, and a tiled fp32 GEMM.
// Built by build.rs with clang-19 (CUDA device-only, no CUDA toolkit) and llc-19 to PTX.
#include <__clang_cuda_builtin_vars.h>

#define WL_GLOBAL extern "C" __attribute__((global))
#define WL_DEVICE static __attribute__((device)) __inline__ __attribute__((always_inline))
#define WL_SHARED __attribute__((shared))

typedef unsigned long long u64;
struct __attribute__((aligned(16))) float4 {
  float x, y, z, w;
};

// The SM's globaltimer, ns.
WL_DEVICE u64 global_timer_ns() {
  u64 t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// Every thread runs dependent FMA chains until `duration_ns` has passed since it started.
WL_GLOBAL void spin_for(float *out, u64 duration_ns) {
  u64 t0 = global_timer_ns();
  float a = threadIdx.x * 1e-3f, b = 1.0001f, c = 0.9999f, d = 0.5f;
  while (global_timer_ns() - t0 < duration_ns) {
#pragma unroll 64
    for (int i = 0; i < 256; i++) {
      a = __builtin_fmaf(a, b, c);
      d = __builtin_fmaf(d, c, b);
    }
  }
  if (a == 1234.5f) out[0] = a + d;
}

// Fixed work: `iters` × 256 dependent FMA pairs per thread (FMA-bound, duration set by work).
WL_GLOBAL void spin_fma(float *out, unsigned iters) {
  float a = threadIdx.x * 1e-3f, b = 1.0001f, c = 0.9999f, d = 0.5f;
  for (unsigned k = 0; k < iters; k++) {
#pragma unroll 64
    for (int i = 0; i < 256; i++) {
      a = __builtin_fmaf(a, b, c);
      d = __builtin_fmaf(d, c, b);
    }
  }
  if (a == 1234.5f) out[0] = a + d;
}

// One thread sleeps until `duration_ns` has passed: the GPU is held but nearly idle.
WL_GLOBAL void idle_for(u64 duration_ns) {
  u64 t0 = global_timer_ns();
  while (global_timer_ns() - t0 < duration_ns) {
    asm volatile("nanosleep.u32 %0;" ::"r"(100000u));
  }
}

// Grid-stride copy of `n` float4 elements: bound by memory bandwidth.
WL_GLOBAL void copy_f4(const float4 *in, float4 *out, u64 n) {
  u64 stride = (u64)gridDim.x * blockDim.x;
  for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    out[i] = in[i];
  }
}

WL_DEVICE void syncthreads() { __nvvm_bar_sync(0); }
#define TILE 32
// C = A·B for n×n row-major fp32 matrices, n a multiple of 32; 32×32 tiles in shared memory,
// each thread computing one element of C.
WL_GLOBAL void sgemm_tiled(const float *A, const float *B, float *C, int n) {
  WL_SHARED float As[TILE][TILE];
  WL_SHARED float Bs[TILE][TILE];
  int row = blockIdx.y * TILE + threadIdx.y;
  int col = blockIdx.x * TILE + threadIdx.x;
  float acc = 0.0f;
  for (int t = 0; t < n; t += TILE) {
    As[threadIdx.y][threadIdx.x] = A[row * n + t + threadIdx.x];
    Bs[threadIdx.y][threadIdx.x] = B[(t + threadIdx.y) * n + col];
    syncthreads();
#pragma unroll
    for (int k = 0; k < TILE; k++) acc = __builtin_fmaf(As[threadIdx.y][k], Bs[k][threadIdx.x], acc);
    syncthreads();
  }
  C[row * n + col] = acc;
}
