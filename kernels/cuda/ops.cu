// Operator kernels wattlens profiles: matmuls in fp32, bf16 (tensor cores) and int8, attention
// unfused and fused (causal and padding masks), softmax, norms, activations, residual add,
// embedding gather, KV-cache append and transpose. Workloads, not tuned libraries: each is a
// plain, correct implementation whose CPU reference lives in src/reference.rs.
// Built by build.rs: clang-19 → wattlens pass → llc-19, no CUDA toolkit.
#include <__clang_cuda_builtin_vars.h>

#define WL_GLOBAL extern "C" __attribute__((global))
#define WL_DEVICE static __attribute__((device)) __inline__ __attribute__((always_inline))
#define WL_SHARED __attribute__((shared))

typedef unsigned short bf16;
typedef unsigned long long u64;

WL_DEVICE void sync() { __nvvm_bar_sync(0); }
WL_DEVICE float exp_(float x) { return __nvvm_ex2_approx_f(x * 1.4426950408889634f); }
WL_DEVICE float fmax_(float a, float b) { return __builtin_fmaxf(a, b); }
WL_DEVICE float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __nvvm_shfl_sync_bfly_f32(0xffffffff, v, o, 31);
  return v;
}
WL_DEVICE float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmax_(v, __nvvm_shfl_sync_bfly_f32(0xffffffff, v, o, 31));
  return v;
}
#define NEG_INF (-__builtin_inff())

// ---------------------------------------------------------------------------------------------
// Matmul: C (M×N) = A (M×K) · B (K×N), row-major fp32.

// One thread per element of C; block 16×16.
WL_GLOBAL void matmul_f32_naive(const float *A, const float *B, float *C, int M, int N, int K) {
  int r = blockIdx.y * blockDim.y + threadIdx.y, c = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= M || c >= N) return;
  float acc = 0.f;
  for (int k = 0; k < K; ++k) acc = __builtin_fmaf(A[r * K + k], B[k * N + c], acc);
  C[r * N + c] = acc;
}

#define TILE 32
// 32×32 tiles in shared memory; block 32×8, each thread computes 4 rows of its column.
WL_GLOBAL void matmul_f32_tiled(const float *A, const float *B, float *C, int M, int N, int K) {
  WL_SHARED float As[TILE][TILE + 1];
  WL_SHARED float Bs[TILE][TILE + 1];
  int tx = threadIdx.x, ty = threadIdx.y;
  int row0 = blockIdx.y * TILE, col = blockIdx.x * TILE + tx;
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  for (int t = 0; t < K; t += TILE) {
    for (int i = 0; i < 4; ++i) {
      int r = ty + 8 * i;
      int ar = row0 + r, ak = t + tx, bk = t + r;
      As[r][tx] = (ar < M && ak < K) ? A[ar * K + ak] : 0.f;
      Bs[r][tx] = (bk < K && col < N) ? B[bk * N + col] : 0.f;
    }
    sync();
    for (int k = 0; k < TILE; ++k) {
      float b = Bs[k][tx];
      for (int i = 0; i < 4; ++i) acc[i] = __builtin_fmaf(As[ty + 8 * i][k], b, acc[i]);
    }
    sync();
  }
  for (int i = 0; i < 4; ++i) {
    int r = row0 + ty + 8 * i;
    if (r < M && col < N) C[r * N + col] = acc[i];
  }
}

// 128×128 block tiles with 8×8 outputs per thread in registers (the classic SGEMM scheme):
// 256 threads, K in steps of 8 through shared memory. Thread (ty, tx) owns rows ty + 16·i and
// columns tx + 16·j, so shared-memory reads and global stores are conflict-free and coalesced.
#define RT_BM 128
#define RT_BN 128
#define RT_BK 8
WL_GLOBAL void matmul_f32_reg(const float *A, const float *B, float *C, int M, int N, int K) {
  WL_SHARED float As[RT_BK][RT_BM];
  WL_SHARED float Bs[RT_BK][RT_BN];
  int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  int row0 = blockIdx.y * RT_BM, col0 = blockIdx.x * RT_BN;
  float acc[8][8];
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;
  for (int k0 = 0; k0 < K; k0 += RT_BK) {
    for (int x = 0; x < 4; ++x) {
      int e = tid * 4 + x;
      int ar = e / RT_BK, ac = e % RT_BK;
      int gr = row0 + ar, gk = k0 + ac;
      As[ac][ar] = (gr < M && gk < K) ? A[(u64)gr * K + gk] : 0.f;
      int br = e / RT_BN, bc = e % RT_BN;
      int bk = k0 + br, gc = col0 + bc;
      Bs[br][bc] = (bk < K && gc < N) ? B[(u64)bk * N + gc] : 0.f;
    }
    sync();
    for (int k = 0; k < RT_BK; ++k) {
      float a[8], b[8];
      for (int i = 0; i < 8; ++i) a[i] = As[k][ty + 16 * i];
      for (int j = 0; j < 8; ++j) b[j] = Bs[k][tx + 16 * j];
      for (int i = 0; i < 8; ++i)
        for (int j = 0; j < 8; ++j) acc[i][j] = __builtin_fmaf(a[i], b[j], acc[i][j]);
    }
    sync();
  }
  for (int i = 0; i < 8; ++i) {
    int r = row0 + ty + 16 * i;
    if (r >= M) continue;
    for (int j = 0; j < 8; ++j) {
      int c = col0 + tx + 16 * j;
      if (c < N) C[(u64)r * N + c] = acc[i][j];
    }
  }
}

// bf16 on tensor cores: C (M×N, fp32) = A (M×K, bf16, row-major) · B, with B given transposed
// as Bt (N×K, bf16, row-major). M a multiple of 16, N of 8, K of 16. One warp per 16×8 tile of
// C with mma.sync.m16n8k16; block of 4 warps.
WL_GLOBAL void matmul_bf16_mma(const bf16 *A, const bf16 *Bt, float *C, int M, int N, int K) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int tile = blockIdx.x * 4 + warp;
  int tiles_n = N / 8;
  if (tile >= (M / 16) * tiles_n) return;
  int tm = tile / tiles_n, tn = tile % tiles_n;
  int g = lane >> 2, t = lane & 3;
  const bf16 *a_lo = A + (tm * 16 + g) * K + t * 2;
  const bf16 *a_hi = a_lo + 8 * K;
  const bf16 *b = Bt + (tn * 8 + g) * K + t * 2;
  float c0 = 0.f, c1 = 0.f, c2 = 0.f, c3 = 0.f;
  for (int k = 0; k < K; k += 16) {
    unsigned a0 = *(const unsigned *)(a_lo + k), a1 = *(const unsigned *)(a_hi + k);
    unsigned a2 = *(const unsigned *)(a_lo + k + 8), a3 = *(const unsigned *)(a_hi + k + 8);
    unsigned b0 = *(const unsigned *)(b + k), b1 = *(const unsigned *)(b + k + 8);
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(c0), "+f"(c1), "+f"(c2), "+f"(c3)
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
  float *c_lo = C + (tm * 16 + g) * N + tn * 8 + t * 2;
  c_lo[0] = c0;
  c_lo[1] = c1;
  c_lo[8 * N] = c2;
  c_lo[8 * N + 1] = c3;
}

// bf16 on tensor cores, staged through shared memory: 128×128 block tiles, K in steps of 32,
// a three-stage cp.async pipeline (one barrier per step), 4 warps of 64×64 each (4×8 mma tiles
// of 16×8), fragments loaded with ldmatrix from XOR-swizzled 64-byte rows (conflict-free for
// both cp.async and ldmatrix). M and N multiples of 128, K of 32; same operand layout as
// matmul_bf16_mma.
#define TC_BM 128
#define TC_BN 128
#define TC_BK 32
#define TC_STAGES 3
WL_DEVICE unsigned smem_addr(const void *p) {
  unsigned a;
  asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
  return a;
}
WL_DEVICE void ldmatrix_x4(unsigned *r, unsigned addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
typedef unsigned u128 __attribute__((ext_vector_type(4)));
// 16 bytes global → shared, asynchronously.
WL_DEVICE void cp_async16(unsigned dst, const void *src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(src) : "memory");
}
// Index of 16-byte chunk c (0..3) of row r in a tile of 64-byte rows, swizzled so that eight
// consecutive rows at one logical chunk land in eight different bank groups.
WL_DEVICE int swz(int r, int c) { return r * 4 + (c ^ ((r >> 1) & 3)); }
// One stage: the 128×32 slices of A and Bt at k0, four 16-byte chunks of each per thread.
WL_DEVICE void tc_load(u128 *as, u128 *bs, const bf16 *A, const bf16 *Bt, int row0, int col0,
                       int K, int k0, int tid) {
#pragma unroll
  for (int v = 0; v < 4; ++v) {
    int e = tid + v * 128, r = e >> 2, c = e & 3;
    cp_async16(smem_addr(&as[swz(r, c)]), A + (u64)(row0 + r) * K + k0 + c * 8);
    cp_async16(smem_addr(&bs[swz(r, c)]), Bt + (u64)(col0 + r) * K + k0 + c * 8);
  }
  asm volatile("cp.async.commit_group;" ::: "memory");
}
WL_GLOBAL void matmul_bf16_tc(const bf16 *A, const bf16 *Bt, float *C, int M, int N, int K) {
  WL_SHARED u128 As[TC_STAGES][TC_BM * 4];
  WL_SHARED u128 Bs[TC_STAGES][TC_BN * 4];
  int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  int wm = (warp / 2) * 64, wn = (warp % 2) * 64;
  int row0 = blockIdx.y * TC_BM, col0 = blockIdx.x * TC_BN;
  float acc[4][8][4];
  #pragma unroll
  for (int i = 0; i < 4; ++i)
    #pragma unroll
    for (int j = 0; j < 8; ++j)
      #pragma unroll
      for (int c = 0; c < 4; ++c) acc[i][j][c] = 0.f;
  int steps = K / TC_BK;
  // Prologue: the first STAGES-1 tiles in flight (an empty group where K is short, so the
  // group count stays in step).
  #pragma unroll
  for (int s = 0; s < TC_STAGES - 1; ++s) {
    if (s < steps)
      tc_load(As[s], Bs[s], A, Bt, row0, col0, K, s * TC_BK, tid);
    else
      asm volatile("cp.async.commit_group;" ::: "memory");
  }
  for (int kt = 0; kt < steps; ++kt) {
    // Tile kt has landed once at most STAGES-2 groups are pending; the barrier also says every
    // warp is done with tile kt-1, whose stage the next load reuses.
    asm volatile("cp.async.wait_group 1;" ::: "memory");
    sync();
    int next = kt + TC_STAGES - 1;
    if (next < steps)
      tc_load(As[next % TC_STAGES], Bs[next % TC_STAGES], A, Bt, row0, col0, K, next * TC_BK, tid);
    else
      asm volatile("cp.async.commit_group;" ::: "memory");
    const u128 *as = As[kt % TC_STAGES], *bs = Bs[kt % TC_STAGES];
#pragma unroll
    for (int kk = 0; kk < 2; ++kk) {
      unsigned a[4][4], b[8][2];
      #pragma unroll
      for (int i = 0; i < 4; ++i)
        ldmatrix_x4(a[i], smem_addr(&as[swz(wm + i * 16 + (lane % 16), kk * 2 + lane / 16)]));
      #pragma unroll
      for (int j = 0; j < 4; ++j) {
        unsigned r[4];
        int n = wn + j * 16 + (lane % 8) + (lane / 16) * 8;
        ldmatrix_x4(r, smem_addr(&bs[swz(n, kk * 2 + (lane / 8) % 2)]));
        b[2 * j][0] = r[0];
        b[2 * j][1] = r[1];
        b[2 * j + 1][0] = r[2];
        b[2 * j + 1][1] = r[3];
      }
      #pragma unroll
      for (int i = 0; i < 4; ++i)
        #pragma unroll
        for (int j = 0; j < 8; ++j)
          asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
                       "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                       : "+f"(acc[i][j][0]), "+f"(acc[i][j][1]), "+f"(acc[i][j][2]), "+f"(acc[i][j][3])
                       : "r"(a[i][0]), "r"(a[i][1]), "r"(a[i][2]), "r"(a[i][3]), "r"(b[j][0]), "r"(b[j][1]));
    }
  }
  asm volatile("cp.async.wait_group 0;" ::: "memory");
  int g = lane >> 2, t = lane & 3;
  #pragma unroll
  for (int i = 0; i < 4; ++i)
    #pragma unroll
    for (int j = 0; j < 8; ++j) {
      float *c = C + (u64)(row0 + wm + i * 16 + g) * N + col0 + wn + j * 8 + t * 2;
      c[0] = acc[i][j][0];
      c[1] = acc[i][j][1];
      c[(u64)8 * N] = acc[i][j][2];
      c[(u64)8 * N + 1] = acc[i][j][3];
    }
}

// int8 with per-channel scales: C[m][n] = sa[m]·sb[n]·Σ_k A[m][k]·B[k][n], with A (M×K) and
// Bt (N×K) packed 4 int8 per int (K4 = K/4 ints per row). One thread per element; dp4a.
WL_GLOBAL void matmul_int8_dp4a(const int *A4, const int *Bt4, const float *sa, const float *sb,
                                float *C, int M, int N, int K4) {
  int r = blockIdx.y * blockDim.y + threadIdx.y, c = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= M || c >= N) return;
  int acc = 0;
  for (int k = 0; k < K4; ++k) {
    int out;
    asm("dp4a.s32.s32 %0, %1, %2, %3;" : "=r"(out) : "r"(A4[r * K4 + k]), "r"(Bt4[c * K4 + k]), "r"(acc));
    acc = out;
  }
  C[r * N + c] = (float)acc * sa[r] * sb[c];
}

// ---------------------------------------------------------------------------------------------
// Attention over Q, K, V, O laid out [B][H][L][D]. Keys j ≥ lens[b] are padding; queries
// i ≥ lens[b] produce zeros; with `causal`, query i sees keys j ≤ i.

WL_DEVICE bool visible(int i, int j, int len, int causal) {
  return j < len && i < len && (!causal || j <= i);
}

// Unfused, step 1: S[bh][i][j] = scale·Q_i·K_j, or -inf where masked. One thread per score.
WL_GLOBAL void attn_scores(const float *Q, const float *K, float *S, const int *lens, int B, int H,
                           int L, int D, int causal, float scale) {
  u64 total = (u64)B * H * L * L;
  for (u64 e = (u64)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (u64)gridDim.x * blockDim.x) {
    int j = e % L, i = (e / L) % L;
    u64 bh = e / ((u64)L * L);
    int b = bh / H;
    float s = NEG_INF;
    if (visible(i, j, lens[b], causal)) {
      const float *q = Q + (bh * L + i) * D, *k = K + (bh * L + j) * D;
      float acc = 0.f;
      for (int d = 0; d < D; ++d) acc = __builtin_fmaf(q[d], k[d], acc);
      s = acc * scale;
    }
    S[e] = s;
  }
}

// Row softmax in place over `rows` rows of n; one warp per row. A row with every entry -inf
// (a padding query) becomes zeros.
WL_GLOBAL void softmax_rows(float *X, int rows, int n) {
  int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x & 31;
  if (row >= rows) return;
  float *x = X + (u64)row * n;
  float m = NEG_INF;
  for (int j = lane; j < n; j += 32) m = fmax_(m, x[j]);
  m = warp_max(m);
  if (m == NEG_INF) {
    for (int j = lane; j < n; j += 32) x[j] = 0.f;
    return;
  }
  float s = 0.f;
  for (int j = lane; j < n; j += 32) s += exp_(x[j] - m);
  s = warp_sum(s);
  for (int j = lane; j < n; j += 32) x[j] = exp_(x[j] - m) / s;
}

// Unfused, step 3: O[bh][i][d] = Σ_j P[bh][i][j]·V[bh][j][d]. One thread per output element.
WL_GLOBAL void attn_pv(const float *P, const float *V, float *O, int BH, int L, int D) {
  u64 total = (u64)BH * L * D;
  for (u64 e = (u64)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (u64)gridDim.x * blockDim.x) {
    int d = e % D, i = (e / D) % L;
    u64 bh = e / ((u64)L * D);
    const float *p = P + (bh * L + i) * L, *v = V + bh * L * D + d;
    float acc = 0.f;
    for (int j = 0; j < L; ++j) acc = __builtin_fmaf(p[j], v[(u64)j * D], acc);
    O[e] = acc;
  }
}

#define MAX_D 128
// Fused, flash-style: one thread per query row, online softmax over the visible keys. D ≤ 128.
WL_GLOBAL void attn_fused(const float *Q, const float *K, const float *V, float *O, const int *lens,
                          int B, int H, int L, int D, int causal, float scale) {
  u64 rows = (u64)B * H * L;
  u64 r = (u64)blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  int i = r % L;
  u64 bh = r / L;
  int len = lens[bh / H];
  float *o = O + r * D;
  if (i >= len) {
    for (int d = 0; d < D; ++d) o[d] = 0.f;
    return;
  }
  const float *q = Q + r * D;
  float acc[MAX_D];
  for (int d = 0; d < D; ++d) acc[d] = 0.f;
  float m = NEG_INF, l = 0.f;
  int last = causal ? (i + 1 < len ? i + 1 : len) : len;
  for (int j = 0; j < last; ++j) {
    const float *k = K + (bh * L + j) * D, *v = V + (bh * L + j) * D;
    float s = 0.f;
    for (int d = 0; d < D; ++d) s = __builtin_fmaf(q[d], k[d], s);
    s *= scale;
    float mn = fmax_(m, s);
    float corr = exp_(m - mn), p = exp_(s - mn);
    l = l * corr + p;
    for (int d = 0; d < D; ++d) acc[d] = __builtin_fmaf(p, v[d], acc[d] * corr);
    m = mn;
  }
  for (int d = 0; d < D; ++d) o[d] = acc[d] / l;
}

// ---------------------------------------------------------------------------------------------
// Norms over rows of d: one warp per row.

WL_GLOBAL void layernorm(const float *X, const float *gamma, const float *beta, float *Y, int rows,
                         int d, float eps) {
  int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x & 31;
  if (row >= rows) return;
  const float *x = X + (u64)row * d;
  float s = 0.f;
  for (int j = lane; j < d; j += 32) s += x[j];
  float mean = warp_sum(s) / d;
  float v = 0.f;
  for (int j = lane; j < d; j += 32) v += (x[j] - mean) * (x[j] - mean);
  float rstd = __nvvm_rsqrt_approx_f(warp_sum(v) / d + eps);
  for (int j = lane; j < d; j += 32) Y[(u64)row * d + j] = (x[j] - mean) * rstd * gamma[j] + beta[j];
}

WL_GLOBAL void rmsnorm(const float *X, const float *w, float *Y, int rows, int d, float eps) {
  int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x & 31;
  if (row >= rows) return;
  const float *x = X + (u64)row * d;
  float ss = 0.f;
  for (int j = lane; j < d; j += 32) ss += x[j] * x[j];
  float r = __nvvm_rsqrt_approx_f(warp_sum(ss) / d + eps);
  for (int j = lane; j < d; j += 32) Y[(u64)row * d + j] = x[j] * r * w[j];
}

// ---------------------------------------------------------------------------------------------
// Element-wise, grid-stride over n.

// GELU, tanh form: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
WL_GLOBAL void gelu(const float *X, float *Y, u64 n) {
  for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
    float x = X[i];
    float u = 0.7978845608f * (x + 0.044715f * x * x * x);
    float e = exp_(-2.f * __builtin_fabsf(u));
    float t = (1.f - e) / (1.f + e);
    Y[i] = 0.5f * x * (1.f + (u < 0.f ? -t : t));
  }
}

// SiLU: x·σ(x).
WL_GLOBAL void silu(const float *X, float *Y, u64 n) {
  for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
    float x = X[i];
    Y[i] = x / (1.f + exp_(-x));
  }
}

// Y = X + R.
WL_GLOBAL void residual_add(const float *X, const float *R, float *Y, u64 n) {
  for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x)
    Y[i] = X[i] + R[i];
}

// ---------------------------------------------------------------------------------------------
// Data movement.

// out[t][:] = table[ids[t]][:], for ntok tokens of width d. One block per token.
WL_GLOBAL void embedding_gather(const int *ids, const float *table, float *out, int ntok, int d) {
  int t = blockIdx.x;
  if (t >= ntok) return;
  const float *row = table + (u64)ids[t] * d;
  for (int j = threadIdx.x; j < d; j += blockDim.x) out[(u64)t * d + j] = row[j];
}

// Append one token per batch row: cache[b][h][pos[b]][:] = knew[b][h][:], with cache laid out
// [B][H][max_len][D]. One block per (b, h).
WL_GLOBAL void kv_append(const float *knew, float *cache, const int *pos, int B, int H, int D,
                         int max_len) {
  int bh = blockIdx.x;
  if (bh >= B * H) return;
  int p = pos[bh / H];
  if (p < 0 || p >= max_len) return;
  for (int d = threadIdx.x; d < D; d += blockDim.x)
    cache[((u64)bh * max_len + p) * D + d] = knew[(u64)bh * D + d];
}

// out (cols×rows) = inᵀ for in (rows×cols); 32×32 tiles, block 32×8.
WL_GLOBAL void transpose(const float *in, float *out, int rows, int cols) {
  WL_SHARED float tile[TILE][TILE + 1];
  int bx = blockIdx.x * TILE, by = blockIdx.y * TILE;
  for (int i = threadIdx.y; i < TILE; i += 8) {
    int r = by + i, c = bx + threadIdx.x;
    if (r < rows && c < cols) tile[i][threadIdx.x] = in[(u64)r * cols + c];
  }
  sync();
  for (int i = threadIdx.y; i < TILE; i += 8) {
    int r = bx + i, c = by + threadIdx.x; // out row = in column
    if (r < cols && c < rows) out[(u64)r * rows + c] = tile[threadIdx.x][i];
  }
}

// ---------------------------------------------------------------------------------------------
// Decoder plumbing: token + position embeddings, head split into a KV cache, attention over
// the cache, head merge. Tokens are rows b·T + t; caches are [B][H][max_len][D].

// out[b·T+t] = wte[ids[b·T+t]] + wpe[pos0[b] + t]. One block per token.
WL_GLOBAL void embed_tokens(const int *ids, const int *pos0, const float *wte, const float *wpe,
                            float *out, int B, int T, int d) {
  int row = blockIdx.x;
  if (row >= B * T) return;
  int p = pos0[row / T] + row % T;
  const float *e = wte + (u64)ids[row] * d, *w = wpe + (u64)p * d;
  for (int j = threadIdx.x; j < d; j += blockDim.x) out[(u64)row * d + j] = e[j] + w[j];
}

// qkv rows [B·T][3·H·D] → q [B][H][T][D]; k and v into the caches at positions pos0[b] + t
// (skipped past max_len). One block per token.
WL_GLOBAL void split_heads(const float *qkv, float *q, float *kc, float *vc, const int *pos0,
                           int B, int T, int H, int D, int max_len) {
  int row = blockIdx.x;
  if (row >= B * T) return;
  int b = row / T, t = row % T, p = pos0[b] + t, hd = H * D;
  const float *src = qkv + (u64)row * 3 * hd;
  for (int e = threadIdx.x; e < hd; e += blockDim.x) {
    int h = e / D, x = e % D;
    u64 bh = (u64)b * H + h;
    q[(bh * T + t) * D + x] = src[e];
    if (p < max_len) {
      kc[(bh * max_len + p) * D + x] = src[hd + e];
      vc[(bh * max_len + p) * D + x] = src[2 * hd + e];
    }
  }
}

// o [B][H][T][D] → rows [B·T][H·D]. One block per token.
WL_GLOBAL void merge_heads(const float *o, float *out, int B, int T, int H, int D) {
  int row = blockIdx.x;
  if (row >= B * T) return;
  int b = row / T, t = row % T;
  for (int e = threadIdx.x; e < H * D; e += blockDim.x) {
    int h = e / D, x = e % D;
    out[(u64)row * H * D + e] = o[(((u64)b * H + h) * T + t) * D + x];
  }
}

// Causal attention of T queries per (b, h) over a KV cache: query t sits at position
// qpos0[b] + t and sees keys 0..=that position among the klen[b] valid ones; a query at or past
// klen[b] (padding) gives zeros. One warp per query: each lane owns D/32 of the dimensions, the
// warp reduces each score, and every lane keeps the same online softmax. D ≤ 128, a multiple
// of 32; blocks of 4 warps.
WL_GLOBAL void attn_cached(const float *Q, const float *Kc, const float *Vc, float *O,
                           const int *qpos0, const int *klen, int B, int H, int T, int D,
                           int max_len, float scale) {
  u64 rows = (u64)B * H * T;
  u64 r = (u64)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  int lane = threadIdx.x & 31;
  if (r >= rows) return;
  int t = r % T;
  u64 bh = r / T;
  int b = bh / H;
  int p = qpos0[b] + t, len = klen[b];
  int per = D / 32;
  float *o = O + r * D;
  if (p >= len || p >= max_len) {
    for (int x = 0; x < per; ++x) o[lane * per + x] = 0.f;
    return;
  }
  const float *q = Q + r * D + lane * per;
  float qv[4], acc[4] = {0.f, 0.f, 0.f, 0.f};
  for (int x = 0; x < per; ++x) qv[x] = q[x];
  float m = NEG_INF, l = 0.f;
  for (int j = 0; j <= p; ++j) {
    const float *k = Kc + (bh * max_len + j) * D + lane * per;
    const float *v = Vc + (bh * max_len + j) * D + lane * per;
    float part = 0.f;
    for (int x = 0; x < per; ++x) part = __builtin_fmaf(qv[x], k[x], part);
    float s = warp_sum(part) * scale;
    float mn = fmax_(m, s);
    float corr = exp_(m - mn), pr = exp_(s - mn);
    l = l * corr + pr;
    for (int x = 0; x < per; ++x) acc[x] = __builtin_fmaf(pr, v[x], acc[x] * corr);
    m = mn;
  }
  for (int x = 0; x < per; ++x) o[lane * per + x] = acc[x] / l;
}
