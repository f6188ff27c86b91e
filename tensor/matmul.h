// tensor/matmul.h: matrix products through OpenBLAS (sgemm/dgemm).
//
// An operand whose last dim has stride 1 goes to BLAS as row-major; one whose
// second-to-last dim has stride 1 (a transposed view) goes as its transpose
// (CblasTrans). Neither is copied. Other layouts are made contiguous first.
#pragma once

#include "tensor/tensor.h"

namespace simba {

// a (..., M, K) @ b (..., K, N) -> (..., M, N). Batch dims broadcast; a 2-D b is
// shared by every batch of a (the Linear case: one GEMM over all rows when a is
// contiguous in its batch dims).
Tensor matmul(const Tensor& a, const Tensor& b);

// out (M, N) = alpha · a (M, K) @ b (K, N) + beta · out. All 2-D, any of the
// layouts above for a and b; out must have stride 1 in its last dim.
void gemm(Tensor& out, const Tensor& a, const Tensor& b, double alpha = 1.0, double beta = 0.0);

}  // namespace simba
