// tensor/matmul.h: matrix products through BLAS: OpenBLAS (sgemm/dgemm) on the CPU, cuBLAS on
// CUDA (kernels of simba's for decode's few-row products); float32, float64 and bfloat16
// (float32 accumulation, one rounding of the result).
//
// An operand whose last dim has stride 1 goes to BLAS as row-major; one whose
// second-to-last dim has stride 1 (a transposed view) goes as its transpose.
// Neither is copied. Other layouts are made contiguous first.
#pragma once

#include <array>

#include "tensor/tensor.h"

namespace simba {

// a (..., M, K) @ b (..., K, N) -> (..., M, N). Batch dims broadcast; a 2-D b is
// shared by every batch of a (the Linear case: one GEMM over all rows when a is
// contiguous in its batch dims).
Tensor matmul(const Tensor& a, const Tensor& b);

// out (M, N) = alpha · a (M, K) @ b (K, N) + beta · out. All 2-D, any of the
// layouts above for a and b; out must have stride 1 in its last dim. out has a's dtype, or is
// float32 for bfloat16 a and b: then the float32 products are added into out unrounded (a
// float32 sum of bfloat16 GEMMs, such as the classifier's weight gradient over its chunks).
void gemm(Tensor& out, const Tensor& a, const Tensor& b, double alpha = 1.0, double beta = 0.0);

// ---- the kernel family behind both ops ----------------------------------------------------

// How BLAS reads a row-major (rows, cols) operand in place: as stored, with row stride ld
// (trans false), or as the transpose of the row-major (cols, rows) matrix it views, whose row
// stride is ld (trans true).
struct BlasMatrix {
  bool trans = false;
  int64_t ld = 0;
};

// A batch of GEMMs c_i (M, N) = alpha · a_i (M, K) @ b_i (K, N) + beta · c_i, one per index i of
// the shape `batch` (row-major order; empty: a single GEMM). Matrix i of operand k (0: c, 1: a,
// 2: b) starts Σ_d i_d · batch_strides[k][d] elements after that operand's pointer; a stride
// of 0 shares one matrix across that batch dim. c_i is row-major with row stride ldc and
// never shared. M, N, K >= 1; M, N, K and the leading dimensions fit a 32-bit int (the BLAS
// interfaces' type), which the planner in matmul.cpp has checked.
struct GemmPlan {
  int64_t M = 0, N = 0, K = 0;
  BlasMatrix a, b;
  int64_t ldc = 0;
  Shape batch;
  std::array<Shape, 3> batch_strides;
};

// The variants (tensor/dispatch.h), T = float, double or bfloat16; pointers on the variant's
// device; alpha and beta in acc_t<T> (a bfloat16 GEMM scales in float, not in bfloat16). c has
// the operands' type C = T, or C = acc_t<T> (float32 c for bfloat16 operands: no rounding):
//   *_cpu:  tensor/matmul.cpp, one OpenBLAS call per matrix of the batch. bfloat16 has no
//           BLAS: each matrix is widened to a packed float32 copy (exact), multiplied by
//           sgemm, and the result rounded once into c (beta · c read through float32 too);
//           a float32 c is sgemm's own output.
//   *_cuda: tensor/matmul.cu, cuBLAS on the device's simba stream: one strided-batched call
//           over the innermost batch dim (one plain call without batch dims). FP32 stays
//           FP32 (no TF32), so both agree to float32 rounding; bfloat16 operands and result
//           with float32 accumulation (cublasGemmEx, CUBLAS_COMPUTE_32F), so both agree to
//           one bfloat16 rounding of the float32 product (a float32 c: CUDA_R_32F, no
//           rounding, so to float32 summation order). The decode shape (one matrix, at
//           most 4 rows of a, or 32 in float32, b the transpose of a row-major weight of fewer
//           than 128 rows an SM, 16-byte pieces) runs simba's decode kernels instead
//           (tensor/matmul.cu: few_rows_kernel, row_tile_kernel): float32 sums in a fixed
//           order, the same agreement with the CPU.
template <class T, class C = T>
void batched_gemm_cpu(C* c, const T* a, const T* b, const GemmPlan& plan, acc_t<T> alpha, acc_t<T> beta);
template <class T, class C = T>
void batched_gemm_cuda(C* c, const T* a, const T* b, const GemmPlan& plan, acc_t<T> alpha, acc_t<T> beta);

}  // namespace simba
