// tensor/matmul.cpp: matrix products on OpenBLAS sgemm/dgemm.
//
// BLAS reads a row-major matrix through (pointer, leading dimension, trans
// flag), so a view whose last dim has stride 1 is read as it is, and a
// transposed view (second-to-last dim has stride 1) is read as the transpose
// of the matrix it views. Only layouts BLAS cannot express (stride-0
// expansions, permutations with no unit stride) are copied. Batches of
// matrices are one GEMM call each, except the Linear case x (..., M, K) @ W
// (K, N), whose batch rows are handed to BLAS as one (prod(...)·M, K) matrix.
//
// Limitation: sizes and leading dimensions must fit BLAS's 32-bit int.
#include "tensor/matmul.h"

#include <cblas.h>

#include <algorithm>
#include <climits>
#include <string>

#include "tensor/elementwise.h"

namespace simba {

namespace {

// How BLAS reads a (rows, cols) operand in place: row-major with leading
// dimension ld (NoTrans), or as the transpose of a row-major (cols, rows)
// matrix with leading dimension ld (Trans).
struct BlasLayout {
  CBLAS_TRANSPOSE trans = CblasNoTrans;
  int64_t ld = 0;
};

// The layout of a (rows, cols) matrix with element strides (rs, cs), or false
// when BLAS cannot read it without a copy. A size-1 dim places no constraint
// on its stride, but BLAS still requires ld >= max(1, length of a stored row).
bool blas_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs, BlasLayout* layout) {
  if ((cols <= 1 || cs == 1) && (rows <= 1 || rs >= std::max<int64_t>(1, cols))) {
    layout->trans = CblasNoTrans;
    layout->ld = rows <= 1 ? std::max<int64_t>(1, cols) : rs;
    return true;
  }
  if ((rows <= 1 || rs == 1) && (cols <= 1 || cs >= std::max<int64_t>(1, rows))) {
    layout->trans = CblasTrans;
    layout->ld = cols <= 1 ? std::max<int64_t>(1, rows) : cs;
    return true;
  }
  return false;
}

bool has_blas_layout(const Tensor& x) {
  BlasLayout unused;
  return blas_layout(x.size(-2), x.size(-1), x.stride(-2), x.stride(-1), &unused);
}

void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, float alpha, const float* a, int lda,
               const float* b, int ldb, float beta, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, double alpha, const double* a, int lda,
               const double* b, int ldb, double beta, double* c, int ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// One GEMM: c (M, N) = alpha · a (M, K) @ b (K, N) + beta · c.
// c is row-major with row stride ldc (unit column stride); a and b are read
// through their BlasLayout. M, N, K >= 1.
template <class T>
void gemm_kernel(T* c, int64_t ldc, const T* a, BlasLayout la, const T* b, BlasLayout lb, int64_t M, int64_t N,
                 int64_t K, T alpha, T beta) {
  SIMBA_CHECK(std::max({M, N, K, ldc, la.ld, lb.ld}) <= INT_MAX,
              "matmul: sizes M=" << M << ", N=" << N << ", K=" << K
                                 << " (or a leading dimension) exceed the 32-bit int of BLAS");
  blas_gemm(la.trans, lb.trans, static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), alpha, a,
            static_cast<int>(la.ld), b, static_cast<int>(lb.ld), beta, c, static_cast<int>(ldc));
}

// If dims [0, n) of x (sizes, strides) walk a single arithmetic sequence of
// rows, that is they can be merged into one dim, returns its stride in *stride.
bool merge_dims(const Shape& sizes, const Shape& strides, int n, int64_t* stride) {
  bool any = false;
  int64_t expected = 0;
  for (int d = n - 1; d >= 0; --d) {
    if (sizes[d] == 1) continue;
    if (!any) {
      *stride = strides[d];
      any = true;
    } else if (strides[d] != expected) {
      return false;
    }
    expected = strides[d] * sizes[d];
  }
  if (!any) *stride = 0;  // a single row: blas_layout ignores the stride
  return true;
}

// out (batch..., M, N) = a (batch_a..., M, K) @ b (batch_b..., K, N), where
// batch is the broadcast of batch_a and batch_b; out is fresh and contiguous,
// a and b each have a BlasLayout in their last two dims; M, N, K >= 1.
template <class T>
void batched_matmul_kernel(Tensor& out, const Tensor& a, const Tensor& b, const Shape& batch) {
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  const int nb = static_cast<int>(batch.size());
  // Batch strides of each operand at the broadcast batch shape (0 = broadcast).
  Shape sa(nb, 0), sb(nb, 0);
  for (int d = 0; d < nb; ++d) {
    const int da = d - (nb - (a.dim() - 2)), db = d - (nb - (b.dim() - 2));
    if (da >= 0 && a.size(da) != 1) sa[d] = a.stride(da);
    if (db >= 0 && b.size(db) != 1) sb[d] = b.stride(db);
  }
  T* pc = out.data<T>();
  const T* pa = a.data<T>();
  const T* pb = b.data<T>();
  BlasLayout la, lb;
  blas_layout(K, N, b.stride(-2), b.stride(-1), &lb);

  // The Linear case: b is shared by every batch and a's (batch..., M) rows
  // form one strided sequence, so the whole product is one GEMM.
  const int64_t batch_count = shape_numel(batch);
  const bool b_shared = std::all_of(sb.begin(), sb.end(), [](int64_t s) { return s == 0; });
  if (b_shared) {
    Shape rows_sizes = batch, rows_strides = sa;
    rows_sizes.push_back(M);
    rows_strides.push_back(a.stride(-2));
    int64_t rs = 0;
    if (merge_dims(rows_sizes, rows_strides, nb + 1, &rs) &&
        blas_layout(batch_count * M, K, rs, a.stride(-1), &la)) {
      gemm_kernel<T>(pc, N, pa, la, pb, lb, batch_count * M, N, K, T(1), T(0));
      return;
    }
  }
  blas_layout(M, K, a.stride(-2), a.stride(-1), &la);
  for (int64_t i = 0; i < batch_count; ++i) {
    int64_t oa = 0, ob = 0, rest = i;
    for (int d = nb - 1; d >= 0; --d) {
      const int64_t k = rest % batch[d];
      rest /= batch[d];
      oa += k * sa[d];
      ob += k * sb[d];
    }
    gemm_kernel<T>(pc + i * M * N, N, pa + oa, la, pb + ob, lb, M, N, K, T(1), T(0));
  }
}

void check_matmul_operands(const char* op, const Tensor& a, const Tensor& b) {
  SIMBA_CHECK(a.defined() && b.defined(), op << ": undefined tensor");
  SIMBA_CHECK(is_floating(a.dtype()) && is_floating(b.dtype()),
              op << ": expected float32 or float64 operands, got " << dtype_name(a.dtype()) << " "
                 << shape_str(a.shape()) << " and " << dtype_name(b.dtype()) << " " << shape_str(b.shape()));
  check_same_dtype(op, a, b);
  check_same_device(op, a, b);
  SIMBA_CHECK_HINT(a.device().is_cpu(), op << " on " << a.device().str() << " is not available in this build",
                   "rebuild with CUDA enabled");
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  check_matmul_operands("matmul", a, b);
  SIMBA_CHECK(a.dim() >= 2 && b.dim() >= 2, "matmul: expected operands with at least 2 dims, got shapes "
                                                << shape_str(a.shape()) << " and " << shape_str(b.shape()));
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  SIMBA_CHECK(b.size(-2) == K, "matmul: shapes " << shape_str(a.shape()) << " and " << shape_str(b.shape())
                                                 << " do not align: " << K << " != " << b.size(-2));
  const Shape batch_a(a.shape().begin(), a.shape().end() - 2), batch_b(b.shape().begin(), b.shape().end() - 2);
  Shape batch = batch_a;
  if (batch_a != batch_b) {
    const std::string op = "matmul of shapes " + shape_str(a.shape()) + " and " + shape_str(b.shape()) +
                           ", batch dims";
    batch = broadcast_shapes(op.c_str(), batch_a, batch_b);
  }
  Shape out_shape = batch;
  out_shape.push_back(M);
  out_shape.push_back(N);
  Tensor out = Tensor::empty(out_shape, a.dtype(), a.device());
  if (out.numel() == 0) return out;
  if (K == 0) {  // an empty sum
    out.zero_();
    return out;
  }
  const Tensor ac = has_blas_layout(a) ? a : a.contiguous();
  const Tensor bc = has_blas_layout(b) ? b : b.contiguous();
  SIMBA_DISPATCH_FLOAT(a.dtype(), "matmul", [&] { batched_matmul_kernel<scalar_t>(out, ac, bc, batch); });
  return out;
}

void gemm(Tensor& out, const Tensor& a, const Tensor& b, double alpha, double beta) {
  check_matmul_operands("gemm", a, b);
  check_same_dtype("gemm", out, a);
  check_same_device("gemm", out, a);
  SIMBA_CHECK(out.dim() == 2 && a.dim() == 2 && b.dim() == 2,
              "gemm: expected 2-D out, a, b, got shapes " << shape_str(out.shape()) << ", " << shape_str(a.shape())
                                                          << ", " << shape_str(b.shape()));
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  SIMBA_CHECK(b.size(0) == K, "gemm: shapes " << shape_str(a.shape()) << " and " << shape_str(b.shape())
                                              << " do not align: " << K << " != " << b.size(0));
  SIMBA_CHECK(out.size(0) == M && out.size(1) == N, "gemm: out has shape " << shape_str(out.shape()) << ", expected ("
                                                                           << M << ", " << N << ") for "
                                                                           << shape_str(a.shape()) << " @ "
                                                                           << shape_str(b.shape()));
  BlasLayout lc;
  SIMBA_CHECK_HINT(blas_layout(M, N, out.stride(0), out.stride(1), &lc) && lc.trans == CblasNoTrans,
                   "gemm: out of shape " << shape_str(out.shape()) << " has strides " << shape_str(out.strides())
                                         << "; its last dim must have stride 1",
                   "write into a contiguous tensor (or a row slice of one)");
  if (M == 0 || N == 0) return;
  if (K == 0) {  // alpha · (empty sum) + beta · out; beta = 0 must not read out (BLAS rule)
    if (beta == 0.0)
      out.zero_();
    else
      out.copy_(affine(out, beta, 0.0));
    return;
  }
  const Tensor ac = has_blas_layout(a) ? a : a.contiguous();
  const Tensor bc = has_blas_layout(b) ? b : b.contiguous();
  BlasLayout la, lb;
  blas_layout(M, K, ac.stride(0), ac.stride(1), &la);
  blas_layout(K, N, bc.stride(0), bc.stride(1), &lb);
  SIMBA_DISPATCH_FLOAT(a.dtype(), "gemm", [&] {
    gemm_kernel<scalar_t>(out.data<scalar_t>(), lc.ld, ac.data<scalar_t>(), la, bc.data<scalar_t>(), lb, M, N, K,
                          static_cast<scalar_t>(alpha), static_cast<scalar_t>(beta));
  });
}

}  // namespace simba
