// A plain CUDA program that calls cuBLAS, with NVTX ranges: what `wattlens run` must attach
// to without any change. Built on the GPU machine by the GPU tests:
//   nvcc -O2 -o cublas_app cublas_app.cu -lcublas
//   ./cublas_app [STEPS] [reupload]
// With `reupload` it uploads the same matrix twice at the start (the second copy redundant,
// provably: nothing runs in between) and again before every step (likely waste: the kernels
// in between do not write it, but nothing outside the program can prove that).
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <nvtx3/nvToolsExt.h>

__global__ void fill(float* x, int n, float scale) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] = scale * static_cast<float>(i % 7);
}

__global__ void relu(float* x, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n && x[i] < 0.f) x[i] = 0.f;
}

#define CHECK(call)                                                      \
  do {                                                                   \
    if ((call) != 0) {                                                   \
      std::fprintf(stderr, "%s failed at line %d\n", #call, __LINE__);   \
      return 1;                                                          \
    }                                                                    \
  } while (0)

int main(int argc, char** argv) {
  const int n = 2048;
  const int steps = argc > 1 ? std::atoi(argv[1]) : 2000;
  const bool reupload = argc > 2 && std::strcmp(argv[2], "reupload") == 0;
  const int elems = n * n;
  float *a, *b, *c;
  CHECK(cudaMalloc(&a, elems * sizeof(float)));
  CHECK(cudaMalloc(&b, elems * sizeof(float)));
  CHECK(cudaMalloc(&c, elems * sizeof(float)));
  std::vector<float> host(elems, 0.5f);
  nvtxRangePushA("upload");
  CHECK(cudaMemcpy(a, host.data(), elems * sizeof(float), cudaMemcpyHostToDevice));
  if (reupload) {
    CHECK(cudaMemcpy(a, host.data(), elems * sizeof(float), cudaMemcpyHostToDevice));
  }
  fill<<<(elems + 255) / 256, 256>>>(b, elems, 0.25f);
  nvtxRangePop();
  cublasHandle_t handle;
  CHECK(cublasCreate(&handle));
  const float one = 1.f, zero = 0.f;
  for (int s = 0; s < steps; ++s) {
    nvtxRangePushA("step");
    if (reupload) {
      CHECK(cudaMemcpyAsync(a, host.data(), elems * sizeof(float), cudaMemcpyHostToDevice, 0));
    }
    nvtxRangePushA("gemm");
    CHECK(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a, n, b, n, &zero, c, n));
    nvtxRangePop();
    nvtxRangePushA("relu");
    relu<<<(elems + 255) / 256, 256>>>(c, elems);
    nvtxRangePop();
    nvtxRangePop();
  }
  CHECK(cudaMemcpy(host.data(), c, elems * sizeof(float), cudaMemcpyDeviceToHost));
  CHECK(cudaDeviceSynchronize());
  // FNV-1a over every byte of the result: a run under wattlens must print the same.
  unsigned long long checksum = 1469598103934665603ull;
  const unsigned char* bytes = reinterpret_cast<const unsigned char*>(host.data());
  for (size_t i = 0; i < host.size() * sizeof(float); ++i) {
    checksum = (checksum ^ bytes[i]) * 1099511628211ull;
  }
  std::printf("cublas_app: %d steps, c[1] = %g, checksum %016llx\n", steps, host[1], checksum);
  cublasDestroy(handle);
  cudaFree(a);
  cudaFree(b);
  cudaFree(c);
  return 0;
}
