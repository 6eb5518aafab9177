// Kernels that check the runtime on a real GPU: a spin that stamps its own start and end
// with %globaltimer (ground truth for timing accuracy), an empty kernel (launch overhead),
// saxpy (buffer versions), and a kernel that faults on purpose (error paths).
// Built by build.rs with clang-19 (CUDA device-only, no CUDA toolkit) and llc-19 to PTX.
#include <__clang_cuda_builtin_vars.h>

#define WL_GLOBAL extern "C" __attribute__((global))
#define WL_DEVICE static __attribute__((device)) __inline__ __attribute__((always_inline))

typedef unsigned long long u64;

WL_DEVICE u64 global_timer_ns() {
  u64 t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

WL_DEVICE void atomic_min_u64(u64 *p, u64 v) {
  asm volatile("red.global.min.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}

WL_DEVICE void atomic_max_u64(u64 *p, u64 v) {
  asm volatile("red.global.max.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}

// Spins `duration_ns`; stamps[0] gets the earliest block start, stamps[1] the latest block
// end (set stamps to {~0, 0} before). The host compares them with the measured duration.
WL_GLOBAL void stamped_spin(u64 *stamps, u64 duration_ns) {
  u64 t0 = global_timer_ns();
  if (threadIdx.x == 0) atomic_min_u64(&stamps[0], t0);
  while (global_timer_ns() - t0 < duration_ns) {
  }
  __syncthreads();
  if (threadIdx.x == 0) atomic_max_u64(&stamps[1], global_timer_ns());
}

// Does nothing: the launch itself is what is measured.
WL_GLOBAL void empty_kernel() {}

// y = a·x + y over n elements (grid-stride).
WL_GLOBAL void saxpy(float a, const float *x, float *y, u64 n) {
  u64 stride = (u64)gridDim.x * blockDim.x;
  for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    y[i] = a * x[i] + y[i];
  }
}

// Writes through `p`: pass an invalid address to make the kernel fault.
WL_GLOBAL void fault_write(float *p) { p[threadIdx.x] = 1.0f; }
