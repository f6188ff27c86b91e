// tensor/matmul.cu: the CUDA variant of the GEMM family (tensor/matmul.h), on cuBLAS, and
// few_rows_kernel for decode's products (M ≤ 4 rows times a weight's transpose).
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
// its one stream (cuda_stream), and gives the handle a fixed workspace, so the algorithm
// cuBLAS picks does not depend on what else ran.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <type_traits>

#include "tensor/cuda_check.cuh"
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

// The cuBLAS handle of `device` (the current device, made so by cuda_enter), created on first
// use with the device's simba stream and workspace bound to it. Handles and workspaces are
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
std::map<int, CublasContext>& cublas_contexts() {
  static auto* contexts = new std::map<int, CublasContext>;
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
  auto it = cublas_contexts().find(device);
  if (it != cublas_contexts().end()) return it->second.handle;
  cublasHandle_t h;
  SIMBA_CUBLAS_CHECK(cublasCreate(&h));
  SIMBA_CUBLAS_CHECK(cublasSetStream(h, cuda_stream(device)));  // resets the workspace: set it after
  Storage* workspace = new Storage(kWorkspaceBytes, Device{DeviceType::CUDA, device});
  SIMBA_CUBLAS_CHECK(cublasSetWorkspace(h, workspace->data(), kWorkspaceBytes));
  SIMBA_CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
  SIMBA_CUBLAS_CHECK(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST));  // alpha, beta on the host
  cublas_contexts()[device] = CublasContext{h, workspace};
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
// re-reads of x catch up with the memory time and cuBLAS's tiled kernels are faster (a version
// of this kernel for up to 32 rows lost to them: bench/RESULTS.md), so those stay with cuBLAS.
//
// Launch: a 1-D grid of blocks of kFewRowsThreads = 256 threads (8 warps). A weight row is
// taken by a group of S warps (S = 1, 2, 4 or 8, the fewest that still give every SM a block:
// few_rows_gemm), so a block owns 8 / S rows, and thread t of a group (32·S threads) takes the
// 16-byte pieces p ≡ t (mod 32·S) of K: a warp reads 512 consecutive bytes of its row at a
// time. A thread issues the loads of kFewRowsBatch pieces before it multiplies any, so a
// layer's whole weight matrix is in flight at once instead of one round trip a piece. Each
// thread keeps MT ≥ M partial dot products (x rows past M repeat row M − 1 and are not
// stored); each warp adds its lanes' (xor butterfly) and thread m < M of a group's first warp
// adds the S warps' sums in warp order: a fixed order, so the result does not depend on timing.
constexpr int kFewRowsMax = 4;
constexpr int kFewRowsThreads = 256;
constexpr int kFewRowsWarps = kFewRowsThreads / 32;
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
__global__ void __launch_bounds__(kFewRowsThreads)
    few_rows_kernel(T* c, const T* x, const T* w, int M, int N, int K, int S, int64_t ldc, int64_t ldx, int64_t ldw,
                    float alpha, float beta) {
  constexpr int E = Piece<T>::kElems;
  __shared__ float part[kFewRowsWarps][MT];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, G = 32 * S;
  const int n = blockIdx.x * (kFewRowsWarps / S) + warp / S;  // this group's weight row
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

// Runs c = alpha · a · b + beta · c with few_rows_kernel when the plan is the decode shape (one
// matrix, M ≤ 4, a row-major, b = Wᵀ with W row-major, K and both row strides whole 16-byte
// pieces, a and b 16-byte aligned) and returns true; otherwise returns false (cuBLAS runs).
template <class T>
bool few_rows_gemm(T* c, const T* a, const T* b, const GemmPlan& p, acc_t<T> alpha, acc_t<T> beta) {
  if constexpr (std::is_same_v<T, double>) {
    return false;  // float64 is the reference type, not a decode type: cuBLAS keeps it
  } else {
    constexpr int E = Piece<T>::kElems;
    const auto aligned = [](const T* q) { return reinterpret_cast<uintptr_t>(q) % 16 == 0; };
    if (!p.batch.empty() || p.M > kFewRowsMax || p.a.trans || !p.b.trans || p.K % E || p.a.ld % E ||
        p.b.ld % E || !aligned(a) || !aligned(b))
      return false;
    const int device = cuda_current_device();
    int sms = 0;
    SIMBA_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    int S = 1;  // warps a row: split K only while the rows alone leave SMs without a block
    while (S < kFewRowsWarps && (p.N * S + kFewRowsWarps - 1) / kFewRowsWarps < sms) S *= 2;
    const int64_t blocks = (p.N * S + kFewRowsWarps - 1) / kFewRowsWarps;
    const auto kernel = p.M == 1 ? few_rows_kernel<T, 1> : p.M == 2 ? few_rows_kernel<T, 2> : few_rows_kernel<T, 4>;
    kernel<<<unsigned(blocks), kFewRowsThreads, 0, cuda_stream(device)>>>(
        c, a, b, int(p.M), int(p.N), int(p.K), S, p.ldc, p.a.ld, p.b.ld, alpha, beta);
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
    if (few_rows_gemm(c, a, b, p, alpha, beta)) return;
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
