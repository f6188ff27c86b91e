// tests/tools/cublas_bf16_gemm_racecheck.cu: one bfloat16 GEMM through cuBLAS alone, no simba
// code, to show where the one report of `compute-sanitizer --tool racecheck` over the CUDA
// tests comes from (README, "CUDA tests"): run under racecheck, this program gets the same
// report inside cuBLAS's Hopper GEMM kernels (nvjet_sm90_*) with every algorithm cuBLAS offers.
//
//   cublas_bf16_gemm_racecheck [MODE [M N K]]
//     MODE: gemmex   cublasGemmEx, as tensor/matmul.cu calls it (default)
//           lt:I     cuBLASLt's I-th heuristic algorithm for the same product
//     M N K: C (M x N) = A (M x K) · B (K x N), row-major, default 1024 1024 768
//
// Operands are bfloat16 with float32 accumulation (CUBLAS_COMPUTE_32F), C poisoned before the
// call; 2000 sampled entries are compared with a float64 host product of the same bfloat16
// inputs. Exit status 0 when every sampled entry is within 2e-2 of it (relative to 1 + |c|;
// one bfloat16 rounding is 4e-3), 1 otherwise, 2 on a usage or CUDA/cuBLAS error.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

void check(int status, const char* what) {
  if (status != 0) {
    std::fprintf(stderr, "cublas_bf16_gemm_racecheck: %s failed with status %d\n", what, status);
    std::exit(2);
  }
}

// Row-major C = A·B is column-major Cᵀ = Bᵀ·Aᵀ: cuBLAS gets (B, A) with m = N, n = M.
void gemmex(const __nv_bfloat16* a, const __nv_bfloat16* b, __nv_bfloat16* c, int M, int N, int K) {
  cublasHandle_t h;
  check(cublasCreate(&h), "cublasCreate");
  const float alpha = 1, beta = 0;
  check(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, N, M, K, &alpha, b, CUDA_R_16BF, N, a, CUDA_R_16BF, K, &beta, c,
                     CUDA_R_16BF, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        "cublasGemmEx");
  check(cublasDestroy(h), "cublasDestroy");
}

void lt(int index, const __nv_bfloat16* a, const __nv_bfloat16* b, __nv_bfloat16* c, int M, int N, int K) {
  cublasLtHandle_t h;
  check(cublasLtCreate(&h), "cublasLtCreate");
  cublasLtMatmulDesc_t op;
  check(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
  cublasLtMatrixLayout_t lb, la, lc;
  check(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, N, K, N), "cublasLtMatrixLayoutCreate");
  check(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, K, M, K), "cublasLtMatrixLayoutCreate");
  check(cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, N, M, N), "cublasLtMatrixLayoutCreate");
  size_t workspace = size_t(32) << 20;
  void* ws = nullptr;
  check(cudaMalloc(&ws, workspace), "cudaMalloc");
  cublasLtMatmulPreference_t pref;
  check(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
  check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace,
                                             sizeof workspace),
        "cublasLtMatmulPreferenceSetAttribute");
  cublasLtMatmulHeuristicResult_t found[16];
  int n = 0;
  check(cublasLtMatmulAlgoGetHeuristic(h, op, lb, la, lc, lc, pref, 16, found, &n), "cublasLtMatmulAlgoGetHeuristic");
  if (index < 0 || index >= n) {
    std::fprintf(stderr, "cublas_bf16_gemm_racecheck: lt:%d: cuBLASLt offers %d algorithms (0 .. %d)\n", index, n,
                 n - 1);
    std::exit(2);
  }
  const float alpha = 1, beta = 0;
  check(cublasLtMatmul(h, op, &alpha, b, lb, a, la, &beta, c, lc, c, lc, &found[index].algo, ws, workspace, nullptr),
        "cublasLtMatmul");
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  std::printf("cuBLASLt algorithm %d of %d\n", index, n);
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(lc);
  cublasLtMatrixLayoutDestroy(la);
  cublasLtMatrixLayoutDestroy(lb);
  cublasLtMatmulDescDestroy(op);
  cublasLtDestroy(h);
  cudaFree(ws);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "gemmex";
  const int M = argc > 4 ? std::atoi(argv[2]) : 1024, N = argc > 4 ? std::atoi(argv[3]) : 1024,
            K = argc > 4 ? std::atoi(argv[4]) : 768;
  if ((mode != "gemmex" && mode.rfind("lt:", 0) != 0) || (argc != 2 && argc != 5 && argc != 1) || M < 1 || N < 1 ||
      K < 1) {
    std::fprintf(stderr, "usage: cublas_bf16_gemm_racecheck [gemmex|lt:I [M N K]] (M, N, K >= 1)\n");
    return 2;
  }
  std::vector<__nv_bfloat16> a(size_t(M) * K), b(size_t(K) * N), c(size_t(M) * N);
  uint64_t state = 12345;
  auto uniform = [&state] {  // a linear congruential generator: values in [-0.5, 0.5)
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return float((state >> 40) & 0xffff) / 65536.0f - 0.5f;
  };
  for (auto& x : a) x = __float2bfloat16(uniform());
  for (auto& x : b) x = __float2bfloat16(uniform());
  __nv_bfloat16 *da = nullptr, *db = nullptr, *dc = nullptr;
  check(cudaMalloc(&da, a.size() * 2), "cudaMalloc");
  check(cudaMalloc(&db, b.size() * 2), "cudaMalloc");
  check(cudaMalloc(&dc, c.size() * 2), "cudaMalloc");
  check(cudaMemcpy(da, a.data(), a.size() * 2, cudaMemcpyHostToDevice), "cudaMemcpy");
  check(cudaMemcpy(db, b.data(), b.size() * 2, cudaMemcpyHostToDevice), "cudaMemcpy");
  check(cudaMemset(dc, 0xff, c.size() * 2), "cudaMemset");  // NaN: unwritten entries fail the check
  if (mode == "gemmex")
    gemmex(da, db, dc, M, N, K);
  else
    lt(std::atoi(mode.c_str() + 3), da, db, dc, M, N, K);
  check(cudaMemcpy(c.data(), dc, c.size() * 2, cudaMemcpyDeviceToHost), "cudaMemcpy");
  double worst = 0;
  for (int t = 0; t < 2000; ++t) {
    const int i = int((t * 7919u) % unsigned(M)), j = int((t * 104729u) % unsigned(N));
    double ref = 0;
    for (int k = 0; k < K; ++k)
      ref += double(__bfloat162float(a[size_t(i) * K + k])) * double(__bfloat162float(b[size_t(k) * N + j]));
    const double e = std::fabs(ref - double(__bfloat162float(c[size_t(i) * N + j]))) / (1.0 + std::fabs(ref));
    if (!(e <= worst)) worst = std::isnan(e) ? INFINITY : e;
  }
  std::printf("%s %dx%dx%d bfloat16: worst sampled error %.3g (limit 2e-2)\n", mode.c_str(), M, N, K, worst);
  cudaFree(da);
  cudaFree(db);
  cudaFree(dc);
  return worst <= 2e-2 ? 0 : 1;
}
