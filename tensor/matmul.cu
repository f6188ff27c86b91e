// tensor/matmul.cu: the CUDA variant of the GEMM family (tensor/matmul.h), on cuBLAS, and
// decode's products (M ≤ 32 rows times a weight's transpose) on kernels of simba's:
// few_rows_kernel up to 4 rows, row_tile_kernel above that (float32).
//
// Layout. cuBLAS is column-major, simba row-major. A row-major (M, N) matrix with row stride
// ldc is, read column-major, its transpose (N, M) with leading dimension ldc; so
//   c = a @ b  (row-major)   is   cᵀ = bᵀ @ aᵀ  (column-major),
// one cuBLAS GEMM with the operands swapped, M and N swapped, and each operand's own trans
// flag kept: an operand stored as itself (row-major, trans false) is read by cuBLAS as its
// transpose, which is exactly what cᵀ = bᵀ·aᵀ needs (CUBLAS_OP_N); one stored transposed
// (trans true) is read as itself and needs CUBLAS_OP_T. No operand is copied here; the
// planner (tensor/matmul.cpp) has already copied the layouts no BLAS can read (no unit stride
// in the last two dims, stride-0 rows).
//
// Batches. The planner coalesced the batch dims across c, a and b, so a batch whose matrices
// sit at one uniform stride in every operand (contiguous batches, a broadcast operand with
// stride 0, a sliced batch dim) is a single dim: one cublas<t>gemmStridedBatched call. Only
// batch dims that cannot be merged (e.g. a permutation of two batch dims of a) leave outer
// dims, walked here on the host with one strided-batched call each; no data is copied.
//
// Precision and determinism. The handle keeps CUBLAS_DEFAULT_MATH, under which cublasSgemm
// computes in FP32 (TF32 tensor cores are used only with CUBLAS_TF32_TENSOR_OP_MATH, never
// set here), so CUDA and CPU agree to float32 rounding (the order of the K-sums differs, so
// not bit for bit). bfloat16 GEMMs (cublasGemmEx) read and write bfloat16 and accumulate in
// float32 (CUBLAS_COMPUTE_32F), as the CPU variant does on float32 copies: the two differ by
// float32 summation order before the one rounding to bfloat16 (none into a float32 c). cuBLAS documents that its
// GEMMs give the same bits on every run on GPUs of one architecture and SM count while a
// single stream is in use: simba issues all work of a device (bfloat16 GEMMs included) on
// its one stream (cuda_stream), and gives each handle (one a branch of cuda_branches) a fixed
// workspace of the same size, so the algorithm cuBLAS picks does not depend on what else ran.
#include <cublas_v2.h>
#include <cuda_pipeline.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <type_traits>
#include <utility>

#include "tensor/cuda_check.cuh"
#include "tensor/cuda_device.h"
#include "tensor/matmul.h"
#include "tensor/storage.h"

// Throws simba::Error naming the failed cuBLAS call and cuBLAS's status name and text.
#define SIMBA_CUBLAS_CHECK(call)                                                                     \
  do {                                                                                               \
    const cublasStatus_t simba_cublas_status_ = (call);                                              \
    SIMBA_CHECK(simba_cublas_status_ == CUBLAS_STATUS_SUCCESS,                                       \
                #call " failed: " << cublasGetStatusName(simba_cublas_status_) << " ("             \
                                  << cublasGetStatusString(simba_cublas_status_) << ")");           \
  } while (0)

namespace simba {
namespace {

// The workspace cuBLAS recommends for Hopper (32 MiB; 4 MiB suffices on older GPUs). A
// workspace of our own (instead of the one cuBLAS allocates per stream) keeps cuBLAS from
// allocating during a CUDA graph capture of the stream. It comes from simba's allocator, so
// cuda_memory_stats counts it as held from a device's first GEMM on.
constexpr size_t kWorkspaceBytes = size_t(32) << 20;

// The cuBLAS handle of `device` (the current device, made so by cuda_enter) for the branch the
// thread is queuing (cuda_branch: 0 but inside cuda_branches, whose branches may run at the same
// time in a CUDA graph and so must not share a workspace), created on first use with the
// device's simba stream and a workspace of its own bound to it. Handles and workspaces are
// destroyed at exit by an atexit function, not by static destructors: registered after the CUDA
// runtime and cuBLAS started (each registers its own teardown first), it runs while both are
// still up, so a leak check (compute-sanitizer --leak-check full) finds every allocation returned.
struct CublasContext {
  cublasHandle_t handle;
  Storage* workspace;
};
std::mutex& cublas_mutex() {
  static std::mutex* m = new std::mutex;
  return *m;
}
std::map<std::pair<int, int>, CublasContext>& cublas_contexts() {  // by (device, branch)
  static auto* contexts = new std::map<std::pair<int, int>, CublasContext>;
  return *contexts;
}

void destroy_cublas_contexts() {
  std::lock_guard<std::mutex> lock(cublas_mutex());
  for (const auto& entry : cublas_contexts()) {
    cublasDestroy(entry.second.handle);  // nothing to report to at exit
    delete entry.second.workspace;
  }
  cublas_contexts().clear();
}

cublasHandle_t cublas_handle(int device) {
  std::lock_guard<std::mutex> lock(cublas_mutex());
  const std::pair<int, int> key{device, cuda_branch()};
  auto it = cublas_contexts().find(key);
  if (it != cublas_contexts().end()) return it->second.handle;
  // The workspace would become memory of the graph being recorded: the first GEMM of a device
  // (and of each branch) runs before any recording (tensor/cuda_device.h).
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  SIMBA_CUDA_CHECK(cudaStreamIsCapturing(cuda_stream(device), &capturing));
  SIMBA_CHECK(capturing == cudaStreamCaptureStatusNone,
              "cuBLAS on cuda:" << device << " (branch " << key.second << ") first used while a CUDA graph records: "
                                << "run the recorded work once before recording it");
  cublasHandle_t h;
  SIMBA_CUBLAS_CHECK(cublasCreate(&h));
  SIMBA_CUBLAS_CHECK(cublasSetStream(h, cuda_stream(device)));  // resets the workspace: set it after
  Storage* workspace = new Storage(kWorkspaceBytes, Device{DeviceType::CUDA, device});
  SIMBA_CUBLAS_CHECK(cublasSetWorkspace(h, workspace->data(), kWorkspaceBytes));
  SIMBA_CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
  SIMBA_CUBLAS_CHECK(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST));  // alpha, beta on the host
  cublas_contexts()[key] = CublasContext{h, workspace};
  // After cublasCreate, so that this runs before any teardown cuBLAS itself registers.
  static const bool destroyed_at_exit = std::atexit(destroy_cublas_contexts) == 0;
  (void)destroyed_at_exit;
  return h;
}

cublasOperation_t op_of(const BlasMatrix& m) { return m.trans ? CUBLAS_OP_T : CUBLAS_OP_N; }

// ---- Few rows: c (M, N) = alpha · x (M, K) · Wᵀ + beta · c, M ≤ 4, W (N, K) row-major -----------
//
// Why. Decoding multiplies one token a sequence (M = the batch) by every weight matrix of the
// model (W stored (N, K) as Linear keeps it, read here as b = Wᵀ with b.trans set). With a few
// rows that product is a read of W, at most 4 multiply-adds per element: memory-bound, and
// latency-bound at a layer's sizes. cuBLAS serves it with GEMV kernels far from the copy
// bandwidth (bench/RESULTS.md); this kernel streams W once, in 16-byte pieces, a warp a row,
// with every piece of a thread's batch loading at once. With more rows the arithmetic and the
// re-reads of x catch up with the memory time (a version of this kernel for up to 32 rows lost
// to cuBLAS: bench/RESULTS.md); those go to the row tiles below.
//
// Launch: a 1-D grid of blocks of kDecodeThreads = 256 threads (8 warps). A weight row is
// taken by a group of S warps (S = 1, 2, 4 or 8, the fewest that still give every SM a block:
// split_warps), so a block owns 8 / S rows, and thread t of a group (32·S threads) takes the
// 16-byte pieces p ≡ t (mod 32·S) of K: a warp reads 512 consecutive bytes of its row at a
// time. A thread issues the loads of kFewRowsBatch pieces before it multiplies any, so a
// layer's whole weight matrix is in flight at once instead of one round trip a piece. Each
// thread keeps MT ≥ M partial dot products (x rows past M repeat row M − 1 and are not
// stored); each warp adds its lanes' (xor butterfly) and thread m < M of a group's first warp
// adds the S warps' sums in warp order: a fixed order, so the result does not depend on timing.
constexpr int kFewRowsMax = 4;
constexpr int kDecodeThreads = 256;
constexpr int kDecodeWarps = kDecodeThreads / 32;
constexpr int kFewRowsBatch = 8;

// 16 bytes of T (4 floats or 8 bfloat16s) and its elements widened to float.
template <class T>
struct Piece;
template <>
struct Piece<float> {
  static constexpr int kElems = 4;
  float4 v;
  __device__ static Piece load(const float* p) { return {__ldg(reinterpret_cast<const float4*>(p))}; }
  __device__ float at(int i) const { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }
};
template <>
struct Piece<bfloat16> {
  static constexpr int kElems = 8;
  uint4 v;
  __device__ static Piece load(const bfloat16* p) { return {__ldg(reinterpret_cast<const uint4*>(p))}; }
  // Element 2i sits in the low half of word i (little-endian); a bfloat16 is a float's top 16 bits.
  __device__ float at(int i) const {
    const uint32_t w = i < 2 ? v.x : i < 4 ? v.y : i < 6 ? v.z : v.w;
    return __uint_as_float(i % 2 ? (w & 0xffff0000u) : (w << 16));
  }
};

template <class T, int MT>
__global__ void __launch_bounds__(kDecodeThreads)
    few_rows_kernel(T* c, const T* x, const T* w, int M, int N, int K, int S, int64_t ldc, int64_t ldx, int64_t ldw,
                    float alpha, float beta) {
  constexpr int E = Piece<T>::kElems;
  __shared__ float part[kDecodeWarps][MT];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, G = 32 * S;
  const int n = blockIdx.x * (kDecodeWarps / S) + warp / S;  // this group's weight row
  const int t = (warp % S) * 32 + lane;                        // this thread's place in the group
  float acc[MT] = {};
  if (n < N) {
    const T* wn = w + int64_t(n) * ldw;
    for (int p0 = t * E; p0 < K; p0 += kFewRowsBatch * G * E) {
      Piece<T> wp[kFewRowsBatch];
#pragma unroll
      for (int b = 0; b < kFewRowsBatch; ++b)
        if (p0 + b * G * E < K) wp[b] = Piece<T>::load(wn + p0 + b * G * E);
#pragma unroll
      for (int b = 0; b < kFewRowsBatch; ++b) {
        const int p = p0 + b * G * E;
        if (p >= K) break;
#pragma unroll
        for (int m = 0; m < MT; ++m) {
          const Piece<T> xp = Piece<T>::load(x + min(m, M - 1) * ldx + p);
#pragma unroll
          for (int e = 0; e < E; ++e) acc[m] = fmaf(wp[b].at(e), xp.at(e), acc[m]);
        }
      }
    }
  }
#pragma unroll
  for (int m = 0; m < MT; ++m) {
#pragma unroll
    for (int o = 16; o > 0; o /= 2) acc[m] += __shfl_xor_sync(0xffffffffu, acc[m], o);
    if (lane == 0) part[warp][m] = acc[m];
  }
  __syncthreads();
  if (n < N && t < M) {
    const int m = t, first = warp;  // t < M ≤ 32: the group's first warp
    float sum = 0.0f;
    for (int k = 0; k < S; ++k) sum += part[first + k][m];
    T* out = c + int64_t(m) * ldc + n;
    *out = T(beta == 0.0f ? alpha * sum : alpha * sum + beta * float(*out));  // beta 0: c is not read
  }
}

// ---- Row tiles: c (M, N) = alpha · x (M, K) · Wᵀ + beta · c, 4 < M ≤ 32 -------------------------
//
// Why. Decoding a batch of 5 to 32 sequences uses each weight element M times: the product is
// arithmetic again, not just a read of W (float32 at M = 32: 16 flops a byte of W, about the
// ratio of the FMA peak to the copy bandwidth). cuBLAS serves these shapes with tiles of 128
// weight rows or more, one block each: in_proj's 3072 rows make 24 blocks for the H200's 132
// SMs, and a layer's products ran at 7 TFLOP/s (bench/RESULTS.md). row_tile_kernel (float32)
// cuts the weight rows finer and splits K over the warps of a block, so every SM works on every
// product, and a warp streams its part of W through a ring of kRingStages warp-steps in shared
// memory filled by asynchronous copies: the next stages' copies are in flight while a step is
// computed, and no register holds them. (bfloat16 keeps cuBLAS's tensor-core kernels: a
// tensor-core row tile of this design was no faster, bench/RESULTS.md.)
//
// Launch: a 1-D grid of blocks of kDecodeThreads = 256 threads (8 warps) = 8 / S groups of S warps
// (S = 1, 2, 4 or 8: the fewest that give every SM a block, no more than K has warp-steps:
// split_warps). A group owns WT = 4 consecutive weight rows (the block: (8 / S)·4 rows); its S
// warps take equal parts of K in whole warp-steps. A warp-step is 32 weight pieces of 16 bytes
// (4 rows x 8 pieces), lane l copying piece l % 8 of row l / 8 into slot l of the stage. Each
// warp leaves its (MT, 4) partial sums in shared memory and the block adds
// each group's S parts in warp order (finish_row_tile): a fixed order, so the bits do not depend
// on timing. x rows past M repeat row M − 1 and weight rows past N repeat row N − 1 (loads stay
// in bounds); neither is stored. Pieces past the warp's part of K are zeros.
constexpr int kRowTileMax = 32;  // rows of x at most
constexpr int kRingStages = 8;   // warp-steps of W in flight or in use, a warp

// A warp's ring of weight stages: 32 pieces a stage, slot l of a stage filled by lane l.
using WeightRing = uint4[kDecodeWarps][kRingStages][32];

// Lane `lane` of warp `warp` starts the copy of its piece of warp-step st (stage st mod
// kRingStages) from src, or zeros when !in; then commits the step as one group (also past the
// last step, so that every thread commits the same number of groups).
__device__ inline void ring_issue(WeightRing& ring, int warp, int lane, int st, int nsteps, const uint4* src,
                                  bool in) {
  if (st < nsteps) __pipeline_memcpy_async(&ring[warp][st % kRingStages][lane], src, 16, in ? 0 : 16);
  __pipeline_commit();
}

// Waits for warp-step st's stage (issued kRingStages − 1 groups ago) and makes it visible to the warp.
__device__ inline void ring_wait() {
  __pipeline_wait_prior(kRingStages - 1);
  __syncwarp();
}

// The block's outputs: for each of its 8 / S groups, the sum of its S warps' parts in warp
// order, scaled and stored (beta 0: c is not read). part[w][m][j]: warp w's partial sum for x
// row m and the group's weight row j. Every thread calls it after the barrier that publishes part.
template <class T, int MT, int WT>
__device__ void finish_row_tile(const float (&part)[kDecodeWarps][MT][WT], T* c, int M, int N, int S, int n_block,
                                int64_t ldc, float alpha, float beta) {
  for (int i = threadIdx.x; i < kDecodeWarps / S * MT * WT; i += kDecodeThreads) {
    const int grp = i / (MT * WT), m = i / WT % MT, j = i % WT, n = n_block + grp * WT + j;
    if (m >= M || n >= N) continue;
    float sum = 0.0f;
    for (int k = 0; k < S; ++k) sum += part[grp * S + k][m][j];
    T* out = c + int64_t(m) * ldc + n;
    *out = T(beta == 0.0f ? alpha * sum : alpha * sum + beta * float(*out));
  }
}

// One step of a reduce-scatter over the lanes that differ in lane bit `bit`: the lane with the
// bit set keeps the upper H of its first 2·H values and sends the lower H, its partner the
// reverse, and each adds what it receives: v[0, H) then holds the pair's sums of the kept half.
template <int H, int V>
__device__ inline void keep_half(float (&v)[V], int bit) {
  const bool up = threadIdx.x & bit;
#pragma unroll
  for (int h = 0; h < H; ++h) {
    const float send = up ? v[h] : v[h + H], keep = up ? v[h + H] : v[h];
    v[h] = keep + __shfl_xor_sync(0xffffffffu, send, bit);
  }
}

// The part of K (in 16-byte pieces) of warp-in-group ks: [q_begin, q_end), whole warp-steps of
// kStep pieces but the last; and its number of warp-steps.
struct KPart {
  int q_begin, q_end, nsteps;
  __device__ KPart(int P, int S, int ks, int kStep) {
    const int per = (P + S * kStep - 1) / (S * kStep) * kStep;
    q_begin = min(P, ks * per);
    q_end = min(P, q_begin + per);
    nsteps = (q_end - q_begin + kStep - 1) / kStep;
  }
};

// float32, on the FMA units (TF32 stays off: tensor/matmul.h). A warp owns WT = 4 weight rows
// for all MT x rows; lane = 8·r + k: row group r (x rows r·R .. r·R + R − 1, R = MT / 4) and
// k-lane k, which takes piece q0 + k of each warp-step of 8 pieces (32 floats of K). Per step a
// lane reads its 4 weight pieces from the ring (those of its k-lane, copied by the lanes 8·j + k)
// and R x pieces (x, small and read by every warp, comes through L1 into registers, one step
// ahead), and does 16·R multiply-adds: x is reused 4 times from registers, W R times. After the
// loop the 8 k-lanes' (R, 4) partials are added by a butterfly that keeps half of the values at
// each of its 3 steps (a reduce-scatter), leaving k-lane k the sums of flat entries
// k·V/8 .. (k+1)·V/8 − 1 of its row group's tile (V = 4·R).
template <int MT>
__global__ void __launch_bounds__(kDecodeThreads, 2)
    row_tile_kernel(float* c, const float* x, const float* w, int M, int N, int K, int S, int64_t ldc, int64_t ldx,
                    int64_t ldw, float alpha, float beta) {
  constexpr int R = MT / 4, WT = 4, kStep = 8, V = R * WT;
  __shared__ WeightRing ring;
  __shared__ float part[kDecodeWarps][MT][WT];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, rg = lane / 8, kl = lane % 8;
  const int n_block = blockIdx.x * (kDecodeWarps / S) * WT, n0 = n_block + warp / S * WT;
  const KPart kp(K / 4, S, warp % S, kStep);
  // Pieces (16 bytes) as 32-bit offsets (decode_gemm checks that M·ldx and N·ldw fit): this
  // lane's copy source (weight row n0 + rg) and its x rows; rows past N or M repeat the last one.
  const uint4* w16 = reinterpret_cast<const uint4*>(w) + min(n0 + rg, N - 1) * int(ldw / 4);
  const float4* x4 = reinterpret_cast<const float4*>(x);
  int xrow[R];
#pragma unroll
  for (int i = 0; i < R; ++i) xrow[i] = min(rg * R + i, M - 1) * int(ldx / 4);
  const auto issue = [&](int st) {
    const int q = kp.q_begin + st * kStep + kl;
    ring_issue(ring, warp, lane, st, kp.nsteps, w16 + (q < kp.q_end ? q : 0), q < kp.q_end);
  };
  // x pieces of step st; a lane past its part reads its part's last piece instead (in bounds)
  // and adds nothing (fma_step).
  const auto load_x = [&](int st, float4 (&xp)[R]) {
    const int q = min(kp.q_begin + st * kStep + kl, kp.q_end - 1);
#pragma unroll
    for (int i = 0; i < R; ++i) xp[i] = __ldg(x4 + xrow[i] + q);
  };
  float v[V] = {};  // v[i·WT + j]: x row rg·R + i times weight row n0 + j
  const auto fma_step = [&](int st, const float4 (&xp)[R]) {
    ring_wait();
    float4 wp[WT];
#pragma unroll
    for (int j = 0; j < WT; ++j) {
      const uint4 u = ring[warp][st % kRingStages][j * 8 + kl];
      wp[j] = make_float4(__uint_as_float(u.x), __uint_as_float(u.y), __uint_as_float(u.z), __uint_as_float(u.w));
    }
    __syncwarp();  // every lane has read the stage before the next issue() refills it
    if (kp.q_begin + st * kStep + kl >= kp.q_end) return;
#pragma unroll
    for (int i = 0; i < R; ++i)
#pragma unroll
      for (int j = 0; j < WT; ++j) {
        float s = v[i * WT + j];
        s = fmaf(xp[i].x, wp[j].x, s);
        s = fmaf(xp[i].y, wp[j].y, s);
        s = fmaf(xp[i].z, wp[j].z, s);
        v[i * WT + j] = fmaf(xp[i].w, wp[j].w, s);
      }
  };
  for (int st = 0; st < kRingStages - 1; ++st) issue(st);
  // Steps in pairs, x of the next step loading while one computes (two buffers, no copies).
  float4 xa[R], xb[R];
  if (kp.nsteps > 0) load_x(0, xa);
  for (int st = 0; st < kp.nsteps; st += 2) {
    issue(st + kRingStages - 1);
    if (st + 1 < kp.nsteps) load_x(st + 1, xb);
    fma_step(st, xa);
    if (st + 1 >= kp.nsteps) break;
    issue(st + kRingStages);
    if (st + 2 < kp.nsteps) load_x(st + 2, xa);
    fma_step(st + 1, xb);
  }
  __pipeline_wait_prior(0);  // the groups committed past the last step are empty; none left pending
  // Reduce-scatter over the k-lanes (lane bits 4, 2, 1).
  keep_half<V / 2>(v, 4);
  keep_half<V / 4>(v, 2);
  keep_half<V / 8>(v, 1);
#pragma unroll
  for (int h = 0; h < V / 8; ++h) {
    const int f = kl * (V / 8) + h;  // flat entry i·WT + j of the row group's tile
    part[warp][rg * R + f / WT][f % WT] = v[h];
  }
  __syncthreads();
  finish_row_tile(part, c, M, N, S, n_block, ldc, alpha, beta);
}

// The warps S (1, 2, 4 or 8) that split K in a block of the decode kernels: the fewest that give
// every SM a block, where a block holds 8 / S groups of `rows` weight rows; at most max_split.
int split_warps(int64_t N, int rows, int64_t max_split, int sms) {
  int S = 1;
  const int64_t rows_a_block = int64_t(kDecodeWarps) * rows;
  while (2 * S <= kDecodeWarps && 2 * S <= max_split && (N * S + rows_a_block - 1) / rows_a_block < sms) S *= 2;
  return S;
}

// Runs c = alpha · a · b + beta · c on the decode kernels when the plan is the decode shape (one
// matrix, M ≤ 32, a row-major, b = Wᵀ with W row-major, K and both row strides whole 16-byte
// pieces, a and b 16-byte aligned, both operands' elements addressable with 32-bit offsets) and
// returns true: few_rows_kernel up to 4 rows, row_tile_kernel above that in float32. Otherwise
// (bfloat16 above 4 rows: a tensor-core row tile of ours measured no faster than cuBLAS's; a
// weight of 128·SMs rows or more, such as the classifier's: cuBLAS's tiles of 128 rows then give
// every SM work, and its kernels are the faster ones, bench/RESULTS.md) returns false: cuBLAS runs.
template <class T>
bool decode_gemm(T* c, const T* a, const T* b, const GemmPlan& p, acc_t<T> alpha, acc_t<T> beta) {
  if constexpr (std::is_same_v<T, double>) {
    return false;  // float64 is the reference type, not a decode type: cuBLAS keeps it
  } else {
    constexpr int E = Piece<T>::kElems;
    const auto aligned = [](const T* q) { return reinterpret_cast<uintptr_t>(q) % 16 == 0; };
    if (!p.batch.empty() || p.M > kRowTileMax || p.a.trans || !p.b.trans || p.K % E || p.a.ld % E ||
        p.b.ld % E || !aligned(a) || !aligned(b) || p.M * p.a.ld > INT_MAX || p.N * p.b.ld > INT_MAX)
      return false;
    const int device = cuda_current_device();
    int sms = 0;
    SIMBA_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    if (p.N >= int64_t(128) * sms) return false;
    const int M = int(p.M), N = int(p.N), K = int(p.K);
    const cudaStream_t stream = cuda_stream(device);
    if (M <= kFewRowsMax) {
      const int S = split_warps(N, 1, kDecodeWarps, sms);
      const int64_t blocks = (int64_t(N) * S + kDecodeWarps - 1) / kDecodeWarps;
      const auto kernel = M == 1 ? few_rows_kernel<T, 1> : M == 2 ? few_rows_kernel<T, 2> : few_rows_kernel<T, 4>;
      kernel<<<unsigned(blocks), kDecodeThreads, 0, stream>>>(c, a, b, M, N, K, S, p.ldc, p.a.ld, p.b.ld, alpha, beta);
    } else if constexpr (std::is_same_v<T, float>) {
      constexpr int WT = 4, kStep = 8;  // row_tile_kernel's weight rows a warp, pieces a warp-step
      const int S = split_warps(N, WT, K / E / kStep, sms);
      const int64_t blocks = (int64_t(N) * S + kDecodeWarps * WT - 1) / (kDecodeWarps * WT);
      const auto kernel = M <= 8 ? row_tile_kernel<8> : M <= 16 ? row_tile_kernel<16> : row_tile_kernel<32>;
      kernel<<<unsigned(blocks), kDecodeThreads, 0, stream>>>(c, a, b, M, N, K, S, p.ldc, p.a.ld, p.b.ld, alpha, beta);
    } else {
      return false;  // bfloat16 above 4 rows: cuBLAS's tensor-core kernels (bench/RESULTS.md)
    }
    SIMBA_CUDA_CHECK(cudaGetLastError());
    return true;
  }
}

// The column-major calls of cᵀ = bᵀ·aᵀ (see the top of the file), per element type.
cublasStatus_t cublas_gemm(cublasHandle_t h, cublasOperation_t tb, cublasOperation_t ta, int n, int m, int k,
                           const float* alpha, const float* b, int ldb, const float* a, int lda, const float* beta,
                           float* c, int ldc) {
  return cublasSgemm(h, tb, ta, n, m, k, alpha, b, ldb, a, lda, beta, c, ldc);
}
cublasStatus_t cublas_gemm(cublasHandle_t h, cublasOperation_t tb, cublasOperation_t ta, int n, int m, int k,
                           const double* alpha, const double* b, int ldb, const double* a, int lda,
                           const double* beta, double* c, int ldc) {
  return cublasDgemm(h, tb, ta, n, m, k, alpha, b, ldb, a, lda, beta, c, ldc);
}
cublasStatus_t cublas_gemm_strided_batched(cublasHandle_t h, cublasOperation_t tb, cublasOperation_t ta, int n,
                                           int m, int k, const float* alpha, const float* b, int ldb, long long sb,
                                           const float* a, int lda, long long sa, const float* beta, float* c,
                                           int ldc, long long sc, int count) {
  return cublasSgemmStridedBatched(h, tb, ta, n, m, k, alpha, b, ldb, sb, a, lda, sa, beta, c, ldc, sc, count);
}
cublasStatus_t cublas_gemm_strided_batched(cublasHandle_t h, cublasOperation_t tb, cublasOperation_t ta, int n,
                                           int m, int k, const double* alpha, const double* b, int ldb,
                                           long long sb, const double* a, int lda, long long sa,
                                           const double* beta, double* c, int ldc, long long sc, int count) {
  return cublasDgemmStridedBatched(h, tb, ta, n, m, k, alpha, b, ldb, sb, a, lda, sa, beta, c, ldc, sc, count);
}

// The cuBLAS data type of a bfloat16 product's output c.
constexpr cudaDataType_t out_type(const bfloat16*) { return CUDA_R_16BF; }
constexpr cudaDataType_t out_type(const float*) { return CUDA_R_32F; }

// bfloat16 operands: products accumulated and scaled in float32 (CUBLAS_COMPUTE_32F, float alpha
// and beta); the result rounded once into a bfloat16 c, or landing unrounded in a float32 c.
template <class C>
cublasStatus_t cublas_gemm(cublasHandle_t h, cublasOperation_t tb, cublasOperation_t ta, int n, int m, int k,
                           const float* alpha, const bfloat16* b, int ldb, const bfloat16* a, int lda,
                           const float* beta, C* c, int ldc) {
  return cublasGemmEx(h, tb, ta, n, m, k, alpha, b, CUDA_R_16BF, ldb, a, CUDA_R_16BF, lda, beta, c, out_type(c), ldc,
                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}
template <class C>
cublasStatus_t cublas_gemm_strided_batched(cublasHandle_t h, cublasOperation_t tb, cublasOperation_t ta, int n,
                                           int m, int k, const float* alpha, const bfloat16* b, int ldb,
                                           long long sb, const bfloat16* a, int lda, long long sa,
                                           const float* beta, C* c, int ldc, long long sc, int count) {
  return cublasGemmStridedBatchedEx(h, tb, ta, n, m, k, alpha, b, CUDA_R_16BF, ldb, sb, a, CUDA_R_16BF, lda, sa,
                                    beta, c, out_type(c), ldc, sc, count, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

}  // namespace

template <class T, class C>
void batched_gemm_cuda(C* c, const T* a, const T* b, const GemmPlan& p, acc_t<T> alpha, acc_t<T> beta) {
  if constexpr (std::is_same_v<C, T>)
    if (decode_gemm(c, a, b, p, alpha, beta)) return;
  cublasHandle_t h = cublas_handle(cuda_current_device());
  const int M = static_cast<int>(p.M), N = static_cast<int>(p.N), K = static_cast<int>(p.K);
  const int lda = static_cast<int>(p.a.ld), ldb = static_cast<int>(p.b.ld), ldc = static_cast<int>(p.ldc);
  if (p.batch.empty()) {
    SIMBA_CUBLAS_CHECK(cublas_gemm(h, op_of(p.b), op_of(p.a), N, M, K, &alpha, b, ldb, a, lda, &beta, c, ldc));
    return;
  }
  // The innermost batch dim is the strided batch; the outer ones (only batch dims that would
  // not merge) are walked in row-major order.
  const int inner = static_cast<int>(p.batch.size()) - 1;
  SIMBA_CHECK(p.batch[inner] <= INT_MAX, "matmul: a batch of " << p.batch[inner]
                                                               << " matrices exceeds cuBLAS's 32-bit batch count");
  int64_t outer = 1;
  for (int d = 0; d < inner; ++d) outer *= p.batch[d];
  for (int64_t i = 0; i < outer; ++i) {
    int64_t off[3] = {0, 0, 0}, rest = i;
    for (int d = inner - 1; d >= 0; --d) {
      const int64_t k = rest % p.batch[d];
      rest /= p.batch[d];
      for (int o = 0; o < 3; ++o) off[o] += k * p.batch_strides[o][d];
    }
    SIMBA_CUBLAS_CHECK(cublas_gemm_strided_batched(
        h, op_of(p.b), op_of(p.a), N, M, K, &alpha, b + off[2], ldb, p.batch_strides[2][inner], a + off[1], lda,
        p.batch_strides[1][inner], &beta, c + off[0], ldc, p.batch_strides[0][inner],
        static_cast<int>(p.batch[inner])));
  }
}

template void batched_gemm_cuda<float>(float*, const float*, const float*, const GemmPlan&, float, float);
template void batched_gemm_cuda<double>(double*, const double*, const double*, const GemmPlan&, double, double);
template void batched_gemm_cuda<bfloat16>(bfloat16*, const bfloat16*, const bfloat16*, const GemmPlan&, float,
                                          float);
template void batched_gemm_cuda<bfloat16, float>(float*, const bfloat16*, const bfloat16*, const GemmPlan&, float,
                                                 float);

}  // namespace simba
