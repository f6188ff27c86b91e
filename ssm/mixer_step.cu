// ssm/mixer_step.cu: mixer_step_cuda (ssm/mixer_step.h): the fused kernel for bfloat16, the
// three ops for every type where it does not apply.
//
// Launch: a 1-D grid of kSlices·ceil(B / M) blocks of kThreads = 256 threads in clusters of
// kSlices = 8 consecutive blocks, M (1 to kMaxRows) batch rows a cluster, chosen by the host.
// Cluster g owns rows [g·M, min(B, (g+1)·M)); its block j (the cluster rank) owns the channels
// [c0, c0 + cs) of those rows, c0 = j·Cs, cs = min(Cs, Di − c0) (none for some last blocks of a
// small Di), Cs = ceil(Di / 8) rounded up to whole 16-byte pieces of T.
// Shared memory of a block (dynamic; T unless said, each array a whole number of pieces):
// W_x's columns of its channels (R + 2N, Cs), W_dt's rows (Cs, R), A_log's (Cs, N), conv_w
// (Cs, K), conv_b, b_dt, Dskip (Cs each), shared by the M rows; a row's h (Cs, N), conv_state
// (Cs, K), x and z (Cs each); then in acc_t<T>: u (M, Cs), the block's partial x_dbl (M, R + 2N)
// and the rows' x_dbl (M, R + 2N). Rows share a block so that the weights' slices are read
// once for M rows: a decode step re-reads W_x, W_dt and A_log from L2 for every block.
// Phases:
//  1. every slice above is copied by 16-byte asynchronous copies, all in flight at once: the
//     block waits on one round trip to memory, not one an operand;
//  2. a thread a (row, channel): its convolution step, summed bias first then taps in order as
//     causal_conv1d_step_cuda; u rounded to T; the new window moved in shared memory and the
//     block's windows stored to conv_state in 16-byte pieces;
//  3. warp w: the block's part of x_proj, Σ over its channels of W_x[e, c]·u[m, c], for groups
//     of kOutGroup outputs e and every row m (lanes over channels, then a butterfly);
//  4. cluster barrier; each block adds the 8 blocks' parts of every (m, e) in rank order,
//     reading the others' shared memory (distributed shared memory), so every block holds the
//     same x_dbl, rounded to T as x_proj's output is;
//  5. a thread a (row, channel): the selective step (ssm/selective_step.h (1)-(3)), its rows of
//     W_dt, A_log and h read from shared memory in 16-byte pieces where they are whole pieces
//     (a thread's row at a stride of R or N elements: element by element those reads would
//     fall on a few banks); the new states written over h in shared memory, then stored in
//     16-byte pieces (a thread's N states, stored by it, would be N narrow stores a thread);
//  6. a block leaves only after every block of its cluster has read its parts (phase 4): the
//     second cluster barrier is arrived at after the reads and waited on at the end.
// Every sum runs in an order fixed by the sizes: results do not depend on timing.
#include "ssm/mixer_step.h"

#include <cooperative_groups.h>
#include <cuda_pipeline.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <mutex>
#include <tuple>
#include <type_traits>
#include <utility>

#include "nn/causal_conv1d.h"
#include "ssm/selective_step.h"
#include "tensor/cuda_check.cuh"
#include "tensor/cuda_device.h"
#include "tensor/cuda_fast_math.cuh"
#include "tensor/dtype.h"
#include "tensor/elementwise_math.h"
#include "tensor/error.h"
#include "tensor/matmul.h"
#include "tensor/storage.h"

namespace simba {
namespace {

constexpr int kSlices = 8;  // blocks a cluster (the portable cluster size)
constexpr int kThreads = 256;
constexpr int kMaxRows = 4;  // batch rows a cluster at most

template <class T>
struct MixerStepArgs {
  T* y;
  T* conv_state;
  T* h;
  const T *x, *z, *conv_w, *conv_b, *W_x, *W_dt, *b_dt, *A_log, *Dskip;
  int64_t ld_x, ld_z;
  int B, Di, K, R, N, Cs;
};

// Element offsets of a block's shared arrays (the file comment), the same on host and device;
// the per-row arrays' row m starts m·(its size) further.
template <class T>
struct SharedLayout {
  int64_t wx, wdt, alog, cw, cb, bdt, skip, h, conv, x, z, u, part, xd, bytes;
  __host__ __device__ SharedLayout(int Cs, int K, int R, int N, int M) {
    const int64_t E = R + 2 * N;
    int64_t t = 0;  // in elements of T; every array a multiple of Cs, so of whole 16-byte pieces
    const auto take = [&](int64_t n) { const int64_t at = t; t += n; return at; };
    wx = take(E * Cs), wdt = take(int64_t(Cs) * R), alog = take(int64_t(Cs) * N), cw = take(int64_t(Cs) * K);
    cb = take(Cs), bdt = take(Cs), skip = take(Cs);
    h = take(int64_t(M) * Cs * N), conv = take(int64_t(M) * Cs * K);
    x = take(int64_t(M) * Cs), z = take(int64_t(M) * Cs);
    // acc_t<T> arrays after the T arrays, counted in acc_t<T> elements from their start.
    const int64_t a0 = t * int64_t(sizeof(T)) / int64_t(sizeof(acc_t<T>));
    u = a0, part = a0 + int64_t(M) * Cs, xd = part + int64_t(M) * E;
    bytes = (xd + int64_t(M) * E) * int64_t(sizeof(acc_t<T>));
  }
};

// Copies n elements (whole 16-byte pieces) from src to dst by the block's threads, asynchronously.
template <class T>
__device__ inline void copy_pieces(T* dst, const T* src, int64_t n) {
  constexpr int P = 16 / sizeof(T);
  for (int64_t i = int64_t(threadIdx.x) * P; i < n; i += int64_t(kThreads) * P)
    __pipeline_memcpy_async(dst + i, src + i, 16);
}

// Stores n elements (whole 16-byte pieces) of shared memory src to global dst by the block's
// threads, a piece each: consecutive threads, consecutive pieces.
template <class T>
__device__ inline void store_pieces(T* dst, const T* src, int64_t n) {
  constexpr int P = 16 / sizeof(T);
  for (int64_t i = int64_t(threadIdx.x) * P; i < n; i += int64_t(kThreads) * P)
    *reinterpret_cast<uint4*>(dst + i) = *reinterpret_cast<const uint4*>(src + i);
}

// f(i, a[i], b[i]) for i = 0 .. n − 1 over two rows of T in shared memory (a and b may be the
// same row), read in 16-byte pieces when a row is whole pieces (n a multiple of P: every row of
// the array then starts on a piece), else element by element.
template <class T, class F>
__device__ inline void for_rows(const T* a, const T* b, int n, F f) {
  constexpr int P = 16 / sizeof(T);
  if (n % P == 0) {
    for (int q = 0; q < n; q += P) {
      const uint4 pa = *reinterpret_cast<const uint4*>(a + q), pb = *reinterpret_cast<const uint4*>(b + q);
      const T* ea = reinterpret_cast<const T*>(&pa);
      const T* eb = reinterpret_cast<const T*>(&pb);
#pragma unroll
      for (int i = 0; i < P; ++i) f(q + i, ea[i], eb[i]);
    }
  } else {
    for (int i = 0; i < n; ++i) f(i, a[i], b[i]);
  }
}

template <class T, int M>
__global__ void __launch_bounds__(kThreads) mixer_step_kernel(const MixerStepArgs<T> a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900  // thread block clusters (the host checks)
  namespace cg = cooperative_groups;
  using fast_math::exp2;
  using fast_math::sigmoid;
  using pointwise::softplus_of;
  using A = acc_t<T>;
  constexpr int kWarps = kThreads / 32;
  constexpr int kOutGroup = 4;  // x_proj outputs a warp sums at once in phase 3
  extern __shared__ __align__(16) unsigned char smem_bytes[];
  T* const sT = reinterpret_cast<T*>(smem_bytes);
  A* const sA = reinterpret_cast<A*>(smem_bytes);
  const SharedLayout<T> L(a.Cs, a.K, a.R, a.N, M);
  const cg::cluster_group cluster = cg::this_cluster();
  const int E = a.R + 2 * a.N, K = a.K, R = a.R, N = a.N, Cs = a.Cs, Di = a.Di;
  const int64_t b0 = int64_t(blockIdx.x / kSlices) * M;  // the cluster's first row
  const int rows = int(min(int64_t(M), a.B - b0));        // its rows
  const int c0 = int(cluster.block_rank()) * Cs, cs = max(0, min(Cs, Di - c0));
  const int t = threadIdx.x, warp = t / 32, lane = t % 32;

  // 1. The block's slices, all copies in flight at once.
  {
    // W_x's rows of pieces: thread t copies piece t mod rp of rows t / rp, t / rp + kThreads / rp, ...
    // (rp = pieces a row; one division a thread, none a piece).
    constexpr int P = 16 / sizeof(T);
    const int rp = cs / P;
    if (rp > 0 && t < kThreads / rp * rp)
      for (int e = t / rp, q = t % rp * P; e < E; e += kThreads / rp)
        __pipeline_memcpy_async(sT + L.wx + int64_t(e) * Cs + q, a.W_x + int64_t(e) * Di + c0 + q, 16);
    copy_pieces(sT + L.wdt, a.W_dt + int64_t(c0) * R, int64_t(cs) * R);
    copy_pieces(sT + L.alog, a.A_log + int64_t(c0) * N, int64_t(cs) * N);
    copy_pieces(sT + L.cw, a.conv_w + int64_t(c0) * K, int64_t(cs) * K);
    if (a.conv_b) copy_pieces(sT + L.cb, a.conv_b + c0, cs);
    if (a.b_dt) copy_pieces(sT + L.bdt, a.b_dt + c0, cs);
    if (a.Dskip) copy_pieces(sT + L.skip, a.Dskip + c0, cs);
    for (int m = 0; m < rows; ++m) {
      const int64_t b = b0 + m;
      copy_pieces(sT + L.h + int64_t(m) * Cs * N, a.h + (b * Di + c0) * N, int64_t(cs) * N);
      copy_pieces(sT + L.conv + int64_t(m) * Cs * K, a.conv_state + (b * Di + c0) * K, int64_t(cs) * K);
      copy_pieces(sT + L.x + int64_t(m) * Cs, a.x + b * a.ld_x + c0, cs);
      copy_pieces(sT + L.z + int64_t(m) * Cs, a.z + b * a.ld_z + c0, cs);
    }
    __pipeline_commit();
    __pipeline_wait_prior(0);
    __syncthreads();
  }

  // 2. The convolution step: the window moves by one, x enters last.
  for (int m = 0; m < rows; ++m)
    for (int c = t; c < cs; c += kThreads) {
      T* win = sT + L.conv + (int64_t(m) * Cs + c) * K;  // moved in place, stored after the barrier
      A acc = a.conv_b ? A(sT[L.cb + c]) : A(0);
      for (int k = 0; k < K; ++k) {
        const T v = k + 1 < K ? win[k + 1] : sT[L.x + int64_t(m) * Cs + c];
        win[k] = v;
        acc += A(sT[L.cw + int64_t(c) * K + k]) * A(v);
      }
      sA[L.u + int64_t(m) * Cs + c] = A(T(fast_math::silu(acc)));  // rounded to T as the conv step's output
    }
  __syncthreads();

  // The new conv windows, in 16-byte pieces (a thread's own K elements would be K narrow stores).
  for (int m = 0; m < rows; ++m)
    store_pieces(a.conv_state + ((b0 + m) * Di + c0) * K, sT + L.conv + int64_t(m) * Cs * K, int64_t(cs) * K);

  // 3. The block's part of x_proj, kOutGroup outputs of a warp at a time, for every row.
  for (int e0 = warp * kOutGroup; e0 < E; e0 += kWarps * kOutGroup) {
    A s[kOutGroup][M] = {};
    for (int c = lane; c < cs; c += 32) {
      A uc[M];
#pragma unroll
      for (int m = 0; m < M; ++m) uc[m] = m < rows ? sA[L.u + int64_t(m) * Cs + c] : A(0);
#pragma unroll
      for (int g = 0; g < kOutGroup; ++g) {
        const A w = e0 + g < E ? A(sT[L.wx + int64_t(e0 + g) * Cs + c]) : A(0);
#pragma unroll
        for (int m = 0; m < M; ++m) s[g][m] += w * uc[m];
      }
    }
#pragma unroll
    for (int off = 16; off > 0; off /= 2)
#pragma unroll
      for (int g = 0; g < kOutGroup; ++g)
#pragma unroll
        for (int m = 0; m < M; ++m) s[g][m] += __shfl_xor_sync(0xffffffffu, s[g][m], off);
    if (lane == 0)
#pragma unroll
      for (int g = 0; g < kOutGroup; ++g)
#pragma unroll
        for (int m = 0; m < M; ++m)
          if (e0 + g < E && m < rows) sA[L.part + int64_t(m) * E + e0 + g] = s[g][m];
  }

  // 4. The rows' x_dbl from the cluster's parts, in rank order.
  cluster.sync();
  for (int i = t; i < rows * E; i += kThreads) {
    A sum = 0;
#pragma unroll
    for (int r = 0; r < kSlices; ++r) sum += cluster.map_shared_rank(sA + L.part, r)[i];
    sA[L.xd + i] = A(T(sum));  // rounded to T as x_proj's output
  }
  asm volatile("barrier.cluster.arrive.release.aligned;" ::: "memory");  // this block's reads are done
  __syncthreads();

  // 5. The selective step, a thread a (row, channel).
  const A kLog2e = A(1.4426950408889634);
  for (int m = 0; m < rows; ++m)
    for (int c = t; c < cs; c += kThreads) {
      const int64_t b = b0 + m;
      const A* xd = sA + L.xd + int64_t(m) * E;
      A s = a.b_dt ? A(sT[L.bdt + c]) : A(0);
      const T* wrow = sT + L.wdt + int64_t(c) * R;
      for_rows(wrow, wrow, R, [&](int r, T w, T) { s += A(w) * xd[r]; });
      const A delta = softplus_of(s);  // (1)
      const A ud = sA[L.u + int64_t(m) * Cs + c], dx = delta * ud;
      T* const hs = sT + L.h + (int64_t(m) * Cs + c) * N;  // updated in place, stored after the loop
      A acc = 0;
      for_rows(sT + L.alog + int64_t(c) * N, hs, N, [&](int n, T al, T hv) {
        const A av = -exp2(A(al) * kLog2e) * kLog2e;          // A·log2 e
        const A hn = exp2(delta * av) * A(hv) + dx * xd[R + n];  // (2)
        hs[n] = T(hn);
        acc += xd[R + N + n] * hn;
      });
      const A zv = A(sT[L.z + int64_t(m) * Cs + c]), skip = a.Dskip ? A(sT[L.skip + c]) : A(0);
      a.y[b * Di + c0 + c] = T((acc + skip * ud) * zv * sigmoid(zv));  // (3)
    }

  __syncthreads();
  for (int m = 0; m < rows; ++m)  // the new states, in 16-byte pieces
    store_pieces(a.h + ((b0 + m) * Di + c0) * N, sT + L.h + int64_t(m) * Cs * N, int64_t(cs) * N);

  // 6. Wait until every block of the cluster has read this block's parts.
  asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory");
#else
  __trap();  // never launched: the host launches it only from compute capability 9.0 code
#endif
}

// Whether the fused kernel's operands allow it: whole 16-byte pieces (sizes, strides and
// pointers; a null pointer counts as aligned) and a 32-bit grid.
template <class T>
bool fused_operands(const MixerStepArgs<T>& a) {
  constexpr int P = 16 / sizeof(T);
  const auto aligned = [](const T* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  if (a.Di % P || a.ld_x % P || a.ld_z % P || int64_t(a.B) * kSlices > INT_MAX) return false;
  for (const T* p : std::initializer_list<const T*>{a.y, a.conv_state, a.h, a.x, a.z, a.conv_w, a.conv_b, a.W_x,
                                                    a.W_dt, a.b_dt, a.A_log, a.Dskip})
    if (!aligned(p)) return false;
  return true;
}

// Whether the fused kernel runs on `device` with `bytes` of shared memory a block: its cluster
// code compiled for the GPU (compute capability 9.0 code: a GPU that would run the
// compute_75 PTX instead gets the three ops), the bytes within the block's limit, and a cluster
// of 8 such blocks able to be resident. Asked once a (device, bytes): a decode step is recorded
// once, but an eager step would repeat these driver queries every layer.
template <class T>
bool fused_runs(void (*kernel)(MixerStepArgs<T>), int device, int64_t bytes, const cudaLaunchConfig_t& cfg) {
  static std::mutex mutex;
  static std::map<std::tuple<void (*)(MixerStepArgs<T>), int, int64_t>, bool> known;
  std::lock_guard<std::mutex> lock(mutex);
  const auto key = std::make_tuple(kernel, device, bytes);
  if (auto it = known.find(key); it != known.end()) return it->second;
  cudaFuncAttributes attr{};
  SIMBA_CUDA_CHECK(cudaFuncGetAttributes(&attr, kernel));
  int max_bytes = 0, clusters = 0;
  SIMBA_CUDA_CHECK(cudaDeviceGetAttribute(&max_bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  bool ok = attr.ptxVersion >= 90 && attr.binaryVersion >= 90 && bytes <= max_bytes;
  if (ok) {
    SIMBA_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
    SIMBA_CUDA_CHECK(cudaOccupancyMaxActiveClusters(&clusters, kernel, &cfg));
    ok = clusters > 0;
  }
  return known[key] = ok;
}

}  // namespace

template <class T>
void mixer_step_cuda(T* y, T* conv_state, T* h, const T* x, int64_t ld_x, const T* z, int64_t ld_z, const T* conv_w,
                     const T* conv_b, const T* W_x, const T* W_dt, const T* b_dt, const T* A_log, const T* Dskip,
                     int64_t B, int64_t Di, int64_t K, int64_t R, int64_t N) {
  const char* op = "mixer_step_cuda";
  check_mixer_step(op, y, conv_state, h, x, ld_x, z, ld_z, conv_w, W_x, W_dt, A_log, B, Di, K, R, N);
  for (const auto& [p, name] :
       {std::pair<const void*, const char*>{y, "y"}, {conv_state, "conv_state"}, {h, "h"}, {x, "x"}, {z, "z"},
        {conv_w, "conv_w"}, {conv_b, "conv_b"}, {W_x, "W_x"}, {W_dt, "W_dt"}, {b_dt, "b_dt"}, {A_log, "A_log"},
        {Dskip, "Dskip"}})
    cuda_check_device_pointer(p, op, name);
  if (B == 0) return;
  SIMBA_CHECK(Di <= INT_MAX / 2 && K <= INT_MAX && R + 2 * N <= INT_MAX,
              op << ": sizes Di=" << Di << ", K=" << K << ", R + 2N=" << R + 2 * N << " exceed 32-bit indexing");
  const int device = cuda_current_device();
  if constexpr (std::is_same_v<T, bfloat16>) {  // the fused kernel: bfloat16 only (ssm/mixer_step.h)
    constexpr int P = 16 / sizeof(T);
    const int Cs = int(((Di + kSlices - 1) / kSlices + P - 1) / P * P);
    const cudaStream_t stream = cuda_stream(device);
    int sms = 0;
    SIMBA_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    // Rows a cluster: one while the clusters' blocks fit the SMs once, more (up to kMaxRows) as the
    // batch grows, so that each block's weight slices serve more rows; fewer where the shared
    // memory of that many does not fit.
    const MixerStepArgs<T> args{y,    conv_state, h,    x,    z,    conv_w, conv_b, W_x, W_dt, b_dt, A_log, Dskip,
                                ld_x, ld_z, int(std::min<int64_t>(B, INT_MAX)), int(Di), int(K), int(R), int(N), Cs};
    static_assert(kMaxRows == 4, "one kernel a row count");
    void (*const kernels[kMaxRows])(MixerStepArgs<T>) = {mixer_step_kernel<T, 1>, mixer_step_kernel<T, 2>,
                                                          mixer_step_kernel<T, 3>, mixer_step_kernel<T, 4>};
    if (B <= INT_MAX && fused_operands(args)) {
      for (int M = int(std::min<int64_t>(kMaxRows, (B * kSlices + sms - 1) / sms)); M >= 1; --M) {
        const auto kernel = kernels[M - 1];
        const int64_t bytes = SharedLayout<T>(Cs, int(K), int(R), int(N), M).bytes;
        cudaLaunchConfig_t cfg{};
        cfg.gridDim = dim3(unsigned((B + M - 1) / M * kSlices));
        cfg.blockDim = dim3(kThreads);
        cfg.dynamicSmemBytes = size_t(bytes);
        cfg.stream = stream;
        cudaLaunchAttribute cluster{};
        cluster.id = cudaLaunchAttributeClusterDimension;
        cluster.val.clusterDim.x = kSlices;
        cluster.val.clusterDim.y = 1;
        cluster.val.clusterDim.z = 1;
        cfg.attrs = &cluster;
        cfg.numAttrs = 1;
        if (fused_runs<T>(kernel, device, bytes, cfg)) {
          SIMBA_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, args));
          return;
        }
      }
    }
  }
  // The three ops (ssm/mixer_step.h), with u and x_dbl in scratch memory.
  const int64_t E = R + 2 * N;
  const Device dev{DeviceType::CUDA, device};
  Storage u(size_t(B * Di) * sizeof(T), dev), x_dbl(size_t(std::max<int64_t>(1, B * E)) * sizeof(T), dev);
  T* const up = static_cast<T*>(u.data());
  T* const xp = static_cast<T*>(x_dbl.data());
  causal_conv1d_step_cuda(up, Di, conv_state, x, ld_x, conv_w, conv_b, B, Di, K, /*silu=*/true);
  if (E > 0) {
    GemmPlan p;  // x_dbl = u · W_xᵀ, the plan tensor/matmul.cpp makes for Linear on (B, Di) rows
    p.M = B, p.N = E, p.K = Di, p.a = BlasMatrix{false, Di}, p.b = BlasMatrix{true, Di}, p.ldc = E;
    batched_gemm_cuda<T>(xp, up, W_x, p, acc_t<T>(1), acc_t<T>(0));
  }
  selective_step_cuda(y, h, xp, E, up, z, ld_z, W_dt, b_dt, A_log, Dskip, B, Di, R, N);
}

#define SIMBA_INSTANTIATE_MIXER_STEP_CUDA(T)                                                                       \
  template void mixer_step_cuda<T>(T*, T*, T*, const T*, int64_t, const T*, int64_t, const T*, const T*, const T*, \
                                   const T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t,      \
                                   int64_t);
SIMBA_INSTANTIATE_MIXER_STEP_CUDA(float)
SIMBA_INSTANTIATE_MIXER_STEP_CUDA(double)
SIMBA_INSTANTIATE_MIXER_STEP_CUDA(bfloat16)
#undef SIMBA_INSTANTIATE_MIXER_STEP_CUDA

}  // namespace simba
