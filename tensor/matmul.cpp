// tensor/matmul.cpp: matrix products: the shared planning, and the CPU variant on OpenBLAS
// sgemm/dgemm, bfloat16 through sgemm on float32 copies (the CUDA variant, on cuBLAS, is
// tensor/matmul.cu).
//
// BLAS reads a row-major matrix through (pointer, leading dimension, trans
// flag), so a view whose last dim has stride 1 is read as it is, and a
// transposed view (second-to-last dim has stride 1) is read as the transpose
// of the matrix it views. Only layouts BLAS cannot express (stride-0
// expansions, permutations with no unit stride) are copied. Batches of
// matrices are one GEMM call each, except the Linear case x (..., M, K) @ W
// (K, N), whose batch rows are handed to BLAS as one (prod(...)·M, K) matrix.
// plan_gemm turns the operands' views into a GemmPlan (tensor/matmul.h) once, for
// either device: the layouts, the fold above, and the batch dims coalesced across
// out, a and b (tensor/strided_layout.h), so a batch that is uniformly strided is one
// dim, which cuBLAS runs as a single strided-batched call.
//
// Limitation: sizes and leading dimensions must fit BLAS's 32-bit int.
#include "tensor/matmul.h"

#include <cblas.h>

#include <algorithm>
#include <climits>
#include <string>
#include <type_traits>
#include <vector>

#include "tensor/dispatch.h"
#include "tensor/elementwise.h"
#include "tensor/strided_layout.h"

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

// The plan of out (batch..., M, N) = alpha · a @ b + beta · out, where out's last dim has
// stride 1 and a (batch_a..., M, K), b (batch_b..., K, N) each have a BlasLayout in their last
// two dims, their batch dims broadcasting to out's. M, N, K >= 1.
GemmPlan plan_gemm(const Tensor& out, const Tensor& a, const Tensor& b) {
  GemmPlan p;
  p.M = a.size(-2);
  p.K = a.size(-1);
  p.N = b.size(-1);
  const Shape batch(out.shape().begin(), out.shape().end() - 2);
  const int nb = static_cast<int>(batch.size());
  // Batch strides of each operand at the broadcast batch shape (0 = broadcast).
  std::array<Shape, 3> strides{Shape(nb, 0), Shape(nb, 0), Shape(nb, 0)};
  for (int d = 0; d < nb; ++d) {
    const int da = d - (nb - (a.dim() - 2)), db = d - (nb - (b.dim() - 2));
    strides[0][d] = out.stride(d);
    if (da >= 0 && a.size(da) != 1) strides[1][d] = a.stride(da);
    if (db >= 0 && b.size(db) != 1) strides[2][d] = b.stride(db);
  }
  BlasLayout la, lb, lc;
  blas_layout(p.K, p.N, b.stride(-2), b.stride(-1), &lb);
  blas_layout(p.M, p.N, out.stride(-2), out.stride(-1), &lc);

  // The Linear case: b is shared by every batch and the (batch..., M) rows of a and of out
  // each form one strided sequence, so the whole product is one GEMM.
  const bool b_shared = std::all_of(strides[2].begin(), strides[2].end(), [](int64_t s) { return s == 0; });
  Shape a_rows = strides[1], c_rows = strides[0], rows_sizes = batch;
  a_rows.push_back(a.stride(-2));
  c_rows.push_back(out.stride(-2));
  rows_sizes.push_back(p.M);
  const int64_t count = shape_numel(batch);
  int64_t ra = 0, rc = 0;
  BlasLayout fold_c;
  if (nb > 0 && b_shared && merge_dims(rows_sizes, a_rows, nb + 1, &ra) &&
      merge_dims(rows_sizes, c_rows, nb + 1, &rc) && blas_layout(count * p.M, p.K, ra, a.stride(-1), &la) &&
      blas_layout(count * p.M, p.N, rc, out.stride(-1), &fold_c) && fold_c.trans == CblasNoTrans) {
    p.M *= count;
    lc = fold_c;
  } else {
    blas_layout(p.M, p.K, a.stride(-2), a.stride(-1), &la);
    std::array<Shape, 3> merged;
    coalesce_dims<3>(batch, strides, p.batch, merged);
    p.batch_strides = merged;
  }
  SIMBA_CHECK(std::max({p.M, p.N, p.K, lc.ld, la.ld, lb.ld}) <= INT_MAX,
              "matmul: sizes M=" << p.M << ", N=" << p.N << ", K=" << p.K
                                 << " (or a leading dimension) exceed the 32-bit int of BLAS");
  p.a = BlasMatrix{la.trans == CblasTrans, la.ld};
  p.b = BlasMatrix{lb.trans == CblasTrans, lb.ld};
  p.ldc = lc.ld;
  return p;
}

// The device both operands of `op` are on, after the checks every product shares.
Device check_matmul_operands(const char* op, const Tensor& a, const Tensor& b) {
  SIMBA_CHECK(a.defined() && b.defined(), op << ": undefined tensor");
  SIMBA_CHECK(is_floating(a.dtype()) && is_floating(b.dtype()),
              op << ": expected float32, float64 or bfloat16 operands, got " << dtype_name(a.dtype()) << " "
                 << shape_str(a.shape()) << " and " << dtype_name(b.dtype()) << " " << shape_str(b.shape()));
  check_same_dtype(op, a, b);
  return op_device(op, {a, b});
}

// out = alpha · a @ b + beta · out through the variant of out's device; the shapes are checked,
// M, N, K >= 1. An operand BLAS cannot read in place is copied first.
void run_gemm(const char* op, const Tensor& out, const Tensor& a, const Tensor& b, double alpha, double beta) {
  const Tensor ac = has_blas_layout(a) ? a : a.contiguous();
  const Tensor bc = has_blas_layout(b) ? b : b.contiguous();
  const GemmPlan plan = plan_gemm(out, ac, bc);
  if (out.dtype() == a.dtype()) {
    SIMBA_DISPATCH_COMPUTE_KERNEL(out.device(), a.dtype(), op, batched_gemm, out.device_data<scalar_t>(),
                                  ac.device_data<scalar_t>(), bc.device_data<scalar_t>(), plan,
                                  static_cast<acc_t<scalar_t>>(alpha), static_cast<acc_t<scalar_t>>(beta));
  } else {  // out in the accumulation dtype (gemm has checked: float32 out, bfloat16 operands)
    SIMBA_DISPATCH_COMPUTE_KERNEL(out.device(), a.dtype(), op, batched_gemm, out.device_data<acc_t<scalar_t>>(),
                                  ac.device_data<scalar_t>(), bc.device_data<scalar_t>(), plan,
                                  static_cast<acc_t<scalar_t>>(alpha), static_cast<acc_t<scalar_t>>(beta));
  }
}

}  // namespace

namespace {

// A (rows, cols) matrix stored row-major with row stride ld, widened into a packed float32
// (rows, cols) one (exact for bfloat16).
void widen_matrix(const bfloat16* src, int64_t rows, int64_t cols, int64_t ld, float* dst) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < cols; ++k) dst[r * cols + k] = src[r * ld + k];
}

}  // namespace

template <class T, class C>
void batched_gemm_cpu(C* c, const T* a, const T* b, const GemmPlan& p, acc_t<T> alpha, acc_t<T> beta) {
  const CBLAS_TRANSPOSE ta = p.a.trans ? CblasTrans : CblasNoTrans, tb = p.b.trans ? CblasTrans : CblasNoTrans;
  const int M = static_cast<int>(p.M), N = static_cast<int>(p.N), K = static_cast<int>(p.K);
  // bfloat16: packed float32 copies of one matrix of each operand (stored as (rows, cols), the
  // transpose of the product's operand when trans is set); the product sgemm writes into cf,
  // or straight into c when c is float32.
  const int64_t a_rows = p.a.trans ? p.K : p.M, a_cols = p.a.trans ? p.M : p.K;
  const int64_t b_rows = p.b.trans ? p.N : p.K, b_cols = p.b.trans ? p.K : p.N;
  constexpr bool widened = std::is_same_v<T, bfloat16>, rounded = widened && std::is_same_v<C, T>;
  std::vector<float> af, bf, cf;
  if constexpr (widened) {
    af.resize(a_rows * a_cols);
    bf.resize(b_rows * b_cols);
  }
  if constexpr (rounded) cf.resize(p.M * p.N);
  const int nb = static_cast<int>(p.batch.size());
  const int64_t count = shape_numel(p.batch);
  for (int64_t i = 0; i < count; ++i) {
    int64_t off[3] = {0, 0, 0}, rest = i;
    for (int d = nb - 1; d >= 0; --d) {
      const int64_t k = rest % p.batch[d];
      rest /= p.batch[d];
      for (int o = 0; o < 3; ++o) off[o] += k * p.batch_strides[o][d];
    }
    if constexpr (rounded) {
      widen_matrix(a + off[1], a_rows, a_cols, p.a.ld, af.data());
      widen_matrix(b + off[2], b_rows, b_cols, p.b.ld, bf.data());
      if (beta != 0.0f) widen_matrix(c + off[0], p.M, p.N, p.ldc, cf.data());  // beta = 0 reads no c
      blas_gemm(ta, tb, M, N, K, alpha, af.data(), static_cast<int>(a_cols), bf.data(), static_cast<int>(b_cols),
                beta, cf.data(), N);
      T* ci = c + off[0];
      for (int64_t r = 0; r < p.M; ++r)
        for (int64_t k = 0; k < p.N; ++k) ci[r * p.ldc + k] = T(cf[r * p.N + k]);
    } else if constexpr (widened) {  // a float32 c takes sgemm's result as it is
      widen_matrix(a + off[1], a_rows, a_cols, p.a.ld, af.data());
      widen_matrix(b + off[2], b_rows, b_cols, p.b.ld, bf.data());
      blas_gemm(ta, tb, M, N, K, alpha, af.data(), static_cast<int>(a_cols), bf.data(), static_cast<int>(b_cols),
                beta, c + off[0], static_cast<int>(p.ldc));
    } else {
      blas_gemm(ta, tb, M, N, K, alpha, a + off[1], static_cast<int>(p.a.ld), b + off[2], static_cast<int>(p.b.ld),
                beta, c + off[0], static_cast<int>(p.ldc));
    }
  }
}

template void batched_gemm_cpu<float>(float*, const float*, const float*, const GemmPlan&, float, float);
template void batched_gemm_cpu<double>(double*, const double*, const double*, const GemmPlan&, double, double);
template void batched_gemm_cpu<bfloat16>(bfloat16*, const bfloat16*, const bfloat16*, const GemmPlan&, float, float);
template void batched_gemm_cpu<bfloat16, float>(float*, const bfloat16*, const bfloat16*, const GemmPlan&, float,
                                                float);

Tensor matmul(const Tensor& a, const Tensor& b) {
  const Device device = check_matmul_operands("matmul", a, b);
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
  Tensor out = Tensor::empty(out_shape, a.dtype(), device);
  if (out.numel() == 0) return out;
  if (K == 0) {  // an empty sum
    out.zero_();
    return out;
  }
  run_gemm("matmul", out, a, b, 1.0, 0.0);
  return out;
}

void gemm(Tensor& out, const Tensor& a, const Tensor& b, double alpha, double beta) {
  check_matmul_operands("gemm", a, b);
  SIMBA_CHECK(out.defined(), "gemm: undefined out tensor");
  SIMBA_CHECK(out.dtype() == a.dtype() || (a.dtype() == DType::BF16 && out.dtype() == DType::F32),
              "gemm: out is " << dtype_name(out.dtype()) << " for " << dtype_name(a.dtype())
                              << " operands (expected " << dtype_name(a.dtype())
                              << (a.dtype() == DType::BF16 ? " or float32)" : ")"));
  op_device("gemm", {out, a});
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
  run_gemm("gemm", out, a, b, alpha, beta);
}

}  // namespace simba
