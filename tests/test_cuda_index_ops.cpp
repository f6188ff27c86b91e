// tests/test_cuda_index_ops.cpp: matmul / gemm (cuBLAS, the decode kernels), the index ops
// (index_select, index_add, gather, scatter_add, embedding and its backward) and cat / split on
// CUDA against the CPU path, forward and autograd gradients. Skipped without a CUDA device
// (tests/cuda_doctest_main.cpp).
//
// Method (a table of rows per op: sizes x layouts, each in float32, float64 and bfloat16):
// - Inputs are fresh random values (normals, never zeros), drawn on the host and moved with
//   .to(gpu); a layout (transposed, permuted, sliced, broadcast, expanded) is the same view
//   taken of the base tensor on each device, so both variants read the same strides.
// - Outputs: where a variant writes into a given output (gemm, the index kernels called
//   directly) it is poisoned with NaN first, and cells outside the written view must stay NaN.
//   An op that allocates its own output gets a block the pool has just taken back from a
//   NaN-filled tensor of the same size (poison_pool), so unwritten elements show as NaN.
// - Tolerances, normwise ||cuda − cpu||₂ / ||cpu||₂:
//     matmul / gemm: float32 1e-5, float64 1e-12. Both sides are float32 GEMMs with different
//       summation orders (OpenBLAS, cuBLAS without TF32); for normal inputs each result's
//       error grows like 6e-8·sqrt(K), about 2e-6 at the largest K here (1024), so 1e-5
//       holds for K up to a few thousand, not for arbitrary K.
//     bfloat16 matmul / gemm: 1e-2 (issue 7). Both sides accumulate in float32 and round once
//       to bfloat16 (tensor/matmul.h), so they differ by at most one bfloat16 rounding
//       (2^-8) in the few elements whose float32 sums straddle a rounding boundary.
//     index ops: exact. The forward ops copy elements; the adds take their terms in the same
//       order as the CPU (tensor/index.cu; bfloat16 accumulated in float32 on both), so the
//       bits must be equal, and repeat runs too.
// - An out-of-range index raises nothing at the call (no host sync in the op), and the next
//   sync point throws an error naming the op, the index and the bound.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "tensor/cuda_device.h"
#include "tensor/ops.h"
#include "tests/cuda_test_util.h"
#include "tests/test_util.h"

using namespace simba;
using cuda_test::kGpu;
using cuda_test::kNaN;
using cuda_test::normwise_error;

namespace {

using View = std::function<Tensor(const Tensor&)>;
const View kSame = [](const Tensor& t) { return t; };

double tol(DType dt) { return dt == DType::F64 ? 1e-12 : dt == DType::BF16 ? 1e-2 : 1e-5; }

Tensor random(const Shape& shape, DType dt, uint64_t seed) {
  Generator g(seed);
  return randn(shape, g, dt);
}

// int64 ids in [lo, hi) (repeats are likely when the range is small).
Tensor random_ids(const Shape& shape, int64_t lo, int64_t hi, uint64_t seed) {
  Generator g(seed);
  std::vector<int64_t> v(shape_numel(shape));
  for (int64_t& x : v) x = g.randint(lo, hi);
  return Tensor::from_ints(shape, v);
}

// ||got − ref|| / ||ref||, got on any device, ref on the CPU; NaN if got has a NaN.
double error(const Tensor& got, const Tensor& ref) {
  REQUIRE(got.shape() == ref.shape());
  return normwise_error(got.to_vector(), ref.to_vector());
}

// Makes the next allocation of `numel` elements of dt on the GPU likely to get memory that
// holds NaN: the stream-ordered pool hands a just-freed block to the next request that fits.
void poison_pool(int64_t numel, DType dt) { Tensor::full({numel}, kNaN, dt, kGpu); }

const DType kFloatTypes[] = {DType::F32, DType::F64, DType::BF16};

}  // namespace

// ---------------------------------------------------------------- matmul

TEST_CASE("CUDA matmul equals the CPU: 2-D and batched, transposed, sliced, permuted, broadcast operands") {
  struct Row {
    const char* name;
    Shape a_base, b_base;
    View a_view, b_view;
  };
  const auto T = [](const Tensor& t) { return t.transpose(-1, -2); };
  const std::vector<Row> rows = {
      {"1x1 @ 1x1", {1, 1}, {1, 1}, kSame, kSame},
      {"7x33 @ 33x129", {7, 33}, {33, 129}, kSame, kSame},
      {"K = 1", {33, 1}, {1, 7}, kSame, kSame},
      {"M = N = 1", {1, 129}, {129, 1}, kSame, kSame},
      {"a transposed", {33, 7}, {33, 129}, T, kSame},
      {"b transposed", {7, 33}, {129, 33}, kSame, T},
      {"both transposed", {129, 33}, {7, 129}, T, T},
      {"sliced (ld > row, offset)", {7, 40}, {35, 129},
       [](const Tensor& t) { return t.narrow(1, 3, 33); }, [](const Tensor& t) { return t.narrow(0, 2, 33); }},
      {"stride-0 b (copied)", {7, 33}, {1, 129}, kSame, [](const Tensor& t) { return t.expand({33, 129}); }},
      {"no unit stride a (copied)", {33, 7, 2}, {33, 129},
       [](const Tensor& t) { return t.select(2, 0).transpose(0, 1); }, kSame},
      {"1024x768 @ 768x1024", {1024, 768}, {768, 1024}, kSame, kSame},
      {"batched", {5, 7, 33}, {5, 33, 129}, kSame, kSame},
      {"batched, M = N = 1", {9, 1, 129}, {9, 129, 1}, kSame, kSame},
      {"batched, a permuted (batch stride K)", {7, 5, 33}, {5, 33, 129},
       [](const Tensor& t) { return t.permute({1, 0, 2}); }, kSame},
      {"batched, b transposed", {5, 7, 33}, {5, 129, 33}, kSame, T},
      {"batched, sliced batch", {8, 7, 33}, {5, 33, 129}, [](const Tensor& t) { return t.narrow(0, 2, 5); },
       kSame},
      {"Linear: 3-D a @ 2-D b (one GEMM)", {4, 33, 129}, {129, 7}, kSame, kSame},
      {"Linear, sliced rows (strided batch)", {4, 40, 129}, {129, 7},
       [](const Tensor& t) { return t.narrow(1, 0, 33); }, kSame},
      {"broadcast batch dims", {3, 1, 7, 33}, {5, 33, 129}, kSame, kSame},
      {"batch dims that do not merge", {5, 3, 7, 33}, {3, 5, 33, 129},
       [](const Tensor& t) { return t.permute({1, 0, 2, 3}); }, kSame},
      {"K = 0", {7, 0}, {0, 5}, kSame, kSame},
  };
  for (DType dt : kFloatTypes) {
    uint64_t seed = 100;
    for (const Row& r : rows) {
      INFO(r.name << " " << dtype_name(dt));
      const Tensor a = random(r.a_base, dt, ++seed), b = random(r.b_base, dt, ++seed);
      const Tensor ref = matmul(r.a_view(a), r.b_view(b));
      poison_pool(ref.numel(), dt);
      const Tensor got = matmul(r.a_view(a.to(kGpu)), r.b_view(b.to(kGpu)));
      CHECK(got.device() == kGpu);
      CHECK(error(got, ref) <= tol(dt));
    }
  }
}

TEST_CASE("CUDA gemm equals the CPU: alpha, beta, NaN-poisoned out, out a slice of a wider buffer") {
  struct Row {
    const char* name;
    int64_t M, K, N;
    double alpha, beta;
    bool a_transposed;
  };
  const std::vector<Row> rows = {{"beta 0 ignores the NaN out", 33, 129, 7, 1.5, 0.0, false},
                                 {"alpha and beta", 7, 33, 129, -2.0, 0.5, true},
                                 {"1x1x1", 1, 1, 1, 0.75, 1.0, false},
                                 {"beta 1 (Linear's bias add)", 129, 7, 33, 1.0, 1.0, true}};
  for (DType dt : kFloatTypes) {
    uint64_t seed = 200;
    for (const Row& r : rows) {
      INFO(r.name << " " << dtype_name(dt));
      const Tensor a0 = random(r.a_transposed ? Shape{r.K, r.M} : Shape{r.M, r.K}, dt, ++seed);
      const Tensor b = random({r.K, r.N}, dt, ++seed);
      // out is columns [2, 2 + N) of an (M, N + 5) buffer; the other cells hold NaN and must
      // stay NaN. With beta = 0 the view is NaN too (BLAS does not read it then).
      Tensor buf = Tensor::full({r.M, r.N + 5}, kNaN, dt);
      if (r.beta != 0.0) buf.narrow(1, 2, r.N).copy_(random({r.M, r.N}, dt, ++seed));
      Tensor gbuf = buf.to(kGpu);
      const auto a_of = [&](const Tensor& t) { return r.a_transposed ? t.transpose(0, 1) : t; };
      Tensor out_cpu = buf.narrow(1, 2, r.N), out_gpu = gbuf.narrow(1, 2, r.N);
      gemm(out_cpu, a_of(a0), b, r.alpha, r.beta);
      gemm(out_gpu, a_of(a0.to(kGpu)), b.to(kGpu), r.alpha, r.beta);
      CHECK(error(out_gpu, out_cpu) <= tol(dt));
      int64_t nan_cells = 0;
      for (double v : gbuf.to_vector()) nan_cells += std::isnan(v);
      CHECK(nan_cells == r.M * 5);
    }
  }
}

TEST_CASE("CUDA gemm of bfloat16 operands into a float32 out equals the CPU (no rounding to bfloat16)") {
  // The classifier's weight gradient (nn/linear_cross_entropy.cpp): G (V, n) transposed view
  // times h (n, D), added over chunks into a float32 buffer (beta 1). Both sides accumulate in
  // float32 and never round to bfloat16, so they agree to float32 summation order (1e-5).
  for (const double beta : {0.0, 1.0}) {
    INFO("beta " << beta);
    const Tensor g = random({97, 131}, DType::BF16, 300), h = random({97, 40}, DType::BF16, 301);
    Tensor buf = Tensor::full({131, 45}, kNaN, DType::F32);
    if (beta != 0.0) buf.narrow(1, 3, 40).copy_(random({131, 40}, DType::F32, 302));
    Tensor gbuf = buf.to(kGpu);
    Tensor out_cpu = buf.narrow(1, 3, 40), out_gpu = gbuf.narrow(1, 3, 40);
    gemm(out_cpu, g.transpose(0, 1), h, 1.0, beta);
    gemm(out_gpu, g.to(kGpu).transpose(0, 1), h.to(kGpu), 1.0, beta);
    CHECK(error(out_gpu, out_cpu) <= 1e-5);
    int64_t nan_cells = 0;
    for (double v : gbuf.to_vector()) nan_cells += std::isnan(v);
    CHECK(nan_cells == 131 * 5);
  }
}

TEST_CASE("CUDA decode products (up to 32 rows @ a weight's transpose) equal the CPU, bits repeat") {
  // The shapes the decode kernels take (tensor/matmul.cu). few_rows_kernel: each of its row
  // configurations (M = 1, 2, 3..4), N from 7 to a layer's 3072 (1, 2, 4 and 8 warps a row on any
  // GPU of 2 to 132 SMs), K from one 16-byte piece to more than a batch of pieces a thread.
  // row_tile_kernel (float32, 5 to 32 rows): each tile height (8, 16, 32 rows) with M below and
  // at it, N past a whole tile (131, 2051), K from part of one warp-step (24) to 4104 (1 to 8
  // warps splitting K, more warp-steps than the ring holds), parts of K ending inside a
  // warp-step. Rows of x and of W sliced out of wider buffers (row stride > K); both as matmul
  // (x @ Wᵀ) and as gemm with alpha, beta and a NaN-poisoned border around out. What the decode
  // kernels leave to cuBLAS is checked here on the same terms: M = 33, bfloat16 above 4 rows,
  // and the classifier's 50280 rows.
  struct Row {
    int64_t M, N, K, x_ld, w_ld;
  };
  const std::vector<Row> rows = {{1, 7, 8, 8, 8},           {1, 3072, 768, 768, 768}, {1, 80, 1536, 1544, 1536},
                                 {1, 768, 1536, 1536, 1536}, {1, 2051, 4104, 4104, 4104},
                                 {2, 129, 1536, 1536, 1544}, {2, 768, 24, 32, 24},    {3, 80, 1536, 1544, 1536},
                                 {4, 33, 776, 784, 776},     {4, 3072, 768, 768, 768}, {5, 129, 64, 72, 64},
                                 {8, 3072, 768, 768, 768},   {13, 80, 1536, 1544, 1536}, {16, 768, 1536, 1536, 1544},
                                 {17, 2051, 776, 784, 776},  {24, 1536, 48, 56, 48},   {31, 131, 4104, 4104, 4112},
                                 {32, 131, 24, 32, 24},      {32, 3072, 768, 768, 768}, {32, 50280, 768, 768, 768},
                                 {33, 131, 64, 64, 64}};
  for (DType dt : {DType::F32, DType::BF16}) {
    uint64_t seed = 300;
    for (const Row& r : rows) {
      INFO("M " << r.M << " N " << r.N << " K " << r.K << " " << dtype_name(dt));
      const Tensor x = random({r.M, r.x_ld}, dt, ++seed), w = random({r.N, r.w_ld}, dt, ++seed);
      const auto xv = [&](const Tensor& t) { return t.narrow(1, 0, r.K); };
      const auto wt = [&](const Tensor& t) { return t.narrow(1, 0, r.K).transpose(0, 1); };
      const Tensor xg = x.to(kGpu), wg = w.to(kGpu);
      const Tensor ref = matmul(xv(x), wt(w));
      poison_pool(ref.numel(), dt);
      const Tensor got = matmul(xv(xg), wt(wg));
      CHECK(error(got, ref) <= tol(dt));
      CHECK(matmul(xv(xg), wt(wg)).to_vector() == got.to_vector());  // a fixed summation order
      // gemm: out is columns [2, 2 + N) of an (M, N + 5) buffer of NaN, out itself random.
      Tensor buf = Tensor::full({r.M, r.N + 5}, kNaN, dt);
      buf.narrow(1, 2, r.N).copy_(random({r.M, r.N}, dt, ++seed));
      Tensor gbuf = buf.to(kGpu);
      Tensor out_cpu = buf.narrow(1, 2, r.N), out_gpu = gbuf.narrow(1, 2, r.N);
      gemm(out_cpu, xv(x), wt(w), -1.5, 0.5);
      gemm(out_gpu, xv(xg), wt(wg), -1.5, 0.5);
      CHECK(error(out_gpu, out_cpu) <= tol(dt));
      int64_t nan_cells = 0;
      for (double v : gbuf.to_vector()) nan_cells += std::isnan(v);
      CHECK(nan_cells == r.M * 5);
    }
  }
}

// ---------------------------------------------------------------- index ops

TEST_CASE("CUDA index_select and index_add equal the CPU bit for bit (repeated indices, every dim)") {
  // x (5, 7, 33) contiguous and as a permuted view; dims 0, 1, 2 and -1; more indices than the
  // dim has, so some repeat.
  const std::vector<std::pair<const char*, View>> layouts = {
      {"contiguous", kSame}, {"permuted", [](const Tensor& t) { return t.permute({2, 1, 0}); }}};
  for (DType dt : kFloatTypes) {
    for (const auto& [lname, view] : layouts) {
      const Shape base = lname == std::string("contiguous") ? Shape{5, 7, 33} : Shape{33, 7, 5};
      const Tensor x = random(base, dt, 300);
      const Tensor xv = view(x), xg = view(x.to(kGpu));
      for (int dim : {0, 1, 2, -1}) {
        INFO(lname << " dim " << dim << " " << dtype_name(dt));
        const int64_t S = xv.size(dim), n = S + 4;
        const Tensor idx = random_ids({n}, 0, S, 301 + dim);
        const Tensor sel = index_select(xv, dim, idx);
        poison_pool(sel.numel(), dt);
        const Tensor sel_gpu = index_select(xg, dim, idx.to(kGpu));
        CHECK(sel_gpu.to_vector() == sel.to_vector());

        Shape src_shape = xv.shape();
        src_shape[xv.wrap_dim(dim)] = n;
        const Tensor src = random(src_shape, dt, 302 + dim);
        const Tensor added = index_add(xv, dim, idx, src);
        const Tensor added_gpu = index_add(xg, dim, idx.to(kGpu), src.to(kGpu));
        CHECK(added_gpu.to_vector() == added.to_vector());
        CHECK(index_add(xg, dim, idx.to(kGpu), src.to(kGpu)).to_vector() == added_gpu.to_vector());
      }
    }
  }
}

TEST_CASE("CUDA index_add_ over strictly increasing indices: the sorted path's and the CPU's bits") {
  // Simba's in-place residual update: rows of a (B·L, D) stream named once each, in increasing
  // order; D = 768 (whole 16-byte pieces of every type) and 37 (not), dims 0 and 1.
  const std::vector<std::pair<Shape, int>> cases = {{{300, 768}, 0}, {{9, 90, 37}, 0}, {{9, 90, 37}, 1}};
  for (DType dt : kFloatTypes) {
    for (const auto& [base_shape, dim] : cases) {
      INFO(dtype_name(dt) << " " << shape_str(base_shape) << " dim " << dim);
      // Each row with probability 1/2, and every third row surely (at least 3 of 9), in order.
      const int64_t S = base_shape[dim];
      const std::vector<int64_t> keep = random_ids({S}, 0, 2, 800 + S + dim).to_ints();
      std::vector<int64_t> rows;
      for (int64_t i = 0; i < S; ++i)
        if (keep[i] == 1 || i % 3 == 0) rows.push_back(i);
      REQUIRE(rows.size() >= 3);
      const Tensor idx = Tensor::from_ints({int64_t(rows.size())}, rows);
      Shape src_shape = base_shape;
      src_shape[dim] = idx.size(0);
      const Tensor base = random(base_shape, dt, 810 + dim), src = random(src_shape, dt, 811 + dim);
      const Tensor cpu = base.clone();
      index_add_(cpu, dim, idx, src);
      const Tensor sorted = base.to(kGpu), direct = base.to(kGpu);
      index_add_(sorted, dim, idx.to(kGpu), src.to(kGpu));
      index_add_(direct, dim, idx.to(kGpu), src.to(kGpu), IndexOrder::Increasing);
      CHECK(sorted.to_vector() == cpu.to_vector());
      CHECK(direct.to_vector() == cpu.to_vector());
    }
  }
}

TEST_CASE("CUDA gather and scatter_add equal the CPU bit for bit") {
  for (DType dt : kFloatTypes) {
    const Tensor x = random({6, 5, 17}, dt, 400);
    const Tensor xg = x.to(kGpu);
    for (int dim : {0, 1, 2}) {
      INFO("dim " << dim << " " << dtype_name(dt));
      Shape ishape = x.shape();
      ishape[dim] = x.size(dim) + 6;  // more entries than the dim has: repeats are certain
      const Tensor idx = random_ids(ishape, 0, x.size(dim), 401 + dim);
      const Tensor got = gather(x, dim, idx);
      poison_pool(got.numel(), dt);
      CHECK(gather(xg, dim, idx.to(kGpu)).to_vector() == got.to_vector());

      const Tensor src = random(ishape, dt, 402 + dim);
      const Tensor sum = scatter_add(x, dim, idx, src);
      const Tensor sum_gpu = scatter_add(xg, dim, idx.to(kGpu), src.to(kGpu));
      CHECK(sum_gpu.to_vector() == sum.to_vector());
      CHECK(scatter_add(xg, dim, idx.to(kGpu), src.to(kGpu)).to_vector() == sum_gpu.to_vector());
    }
  }
  // int64 data: the forward ops move any dtype.
  const Tensor xi = random_ids({4, 9}, -50, 50, 410), ii = random_ids({4, 3}, 0, 9, 411);
  CHECK(gather(xi.to(kGpu), 1, ii.to(kGpu)).to_ints() == gather(xi, 1, ii).to_ints());
  const Tensor row = ii.select(0, 0);
  CHECK(index_select(xi.to(kGpu), 1, row.to(kGpu)).to_ints() == index_select(xi, 1, row).to_ints());
}

TEST_CASE("CUDA forward index kernels write every element of a NaN-poisoned output; odd sizes") {
  struct Size {
    int64_t outer, S, n, inner;
  };
  // Rows of 64 and 12 floats are whole 16-byte pieces (index_select moves those a piece a thread).
  for (Size sz : {Size{1, 1, 1, 1}, Size{3, 1, 4, 1}, Size{1, 7, 1, 33}, Size{2, 5, 9, 257}, Size{2, 5, 9, 64},
                  Size{3, 6, 11, 12}}) {
    INFO("outer " << sz.outer << " S " << sz.S << " n " << sz.n << " inner " << sz.inner);
    const Tensor x = random({sz.outer, sz.S, sz.inner}, DType::F32, 500 + sz.inner);
    const Tensor rows = random_ids({sz.n}, 0, sz.S, 501);
    const Tensor elems = random_ids({sz.outer, sz.n, sz.inner}, 0, sz.S, 502);
    const Tensor xg = x.to(kGpu), rows_g = rows.to(kGpu), elems_g = elems.to(kGpu);
    Tensor out = Tensor::full({sz.outer, sz.n, sz.inner}, kNaN, DType::F32, kGpu);
    index_select_forward_cuda<float>("index_select", 1, out.device_data<float>(), xg.device_data<float>(),
                                     rows_g.device_data<int64_t>(), sz.outer, sz.S, sz.n, sz.inner);
    CHECK(out.to_vector() == index_select(x, 1, rows).to_vector());
    out.fill_(kNaN);
    gather_forward_cuda<float>("gather", 1, out.device_data<float>(), xg.device_data<float>(),
                               elems_g.device_data<int64_t>(), sz.outer, sz.S, sz.n, sz.inner);
    CHECK(out.to_vector() == gather(x, 1, elems).to_vector());
  }
}

TEST_CASE("CUDA embedding and embedding_backward at the 130M shape equal the CPU bit for bit") {
  struct Size {
    int64_t V, D, B, L;
    DType dt;
  };
  // The Mamba-130M vocabulary and width with 8192 tokens; a small odd case in both dtypes.
  for (Size sz : {Size{50280, 768, 8, 1024, DType::F32}, Size{1000, 33, 3, 7, DType::F32},
                  Size{1000, 33, 3, 7, DType::F64}, Size{1000, 33, 3, 7, DType::BF16}}) {
    INFO("V " << sz.V << " D " << sz.D << " tokens " << sz.B * sz.L << " " << dtype_name(sz.dt));
    const Tensor w = random({sz.V, sz.D}, sz.dt, 600);
    // Half the tokens from 50 ids (many repeats, like frequent tokens), half from the full range.
    Tensor ids = random_ids({sz.B, sz.L}, 0, sz.V, 601);
    ids.narrow(1, 0, sz.L / 2).copy_(random_ids({sz.B, sz.L / 2}, 0, 50, 602));
    const Tensor wg = w.to(kGpu), ids_g = ids.to(kGpu);
    const Tensor emb = embedding(w, ids);
    poison_pool(emb.numel(), sz.dt);
    CHECK(embedding(wg, ids_g).to_vector() == emb.to_vector());

    const Tensor dout = random({sz.B, sz.L, sz.D}, sz.dt, 603);
    const Tensor dw = embedding_backward(dout, ids, sz.V);
    const Tensor dw_gpu = embedding_backward(dout.to(kGpu), ids_g, sz.V);
    const std::vector<double> dw_ref = dw.to_vector(), dw1 = dw_gpu.to_vector();
    CHECK(dw1 == dw_ref);
    CHECK(embedding_backward(dout.to(kGpu), ids_g, sz.V).to_vector() == dw1);
  }
}

TEST_CASE("CUDA index ops: an out-of-range index is reported at the next sync, not in the op") {
  const Tensor x = random({3, 5}, DType::F32, 700).to(kGpu);
  const Tensor src1 = random({3, 1}, DType::F32, 701).to(kGpu), src5 = random({1, 5}, DType::F32, 702).to(kGpu);
  const Tensor dout = random({1, 4}, DType::F32, 703).to(kGpu);
  const Tensor src3 = random({3, 3}, DType::F32, 704).to(kGpu);
  const auto add_increasing = [&](const Tensor& index) {
    const Tensor b = x.clone();
    index_add_(b, 1, index, src3, IndexOrder::Increasing);
    return b;
  };
  struct Case {
    std::function<Tensor()> run;
    const char* message;
  };
  const std::vector<Case> cases = {
      {[&] { return index_select(x, 1, Tensor::from_ints({2}, {0, 7}, kGpu)); },
       "index_select on cuda:0: index 7 out of range (expected 0 <= index < 5)"},
      {[&] { return index_add(x, 1, Tensor::from_ints({1}, {5}, kGpu), src1); },
       "index_add on cuda:0: index 5 out of range (expected 0 <= index < 5)"},
      {[&] { return gather(x, 1, Tensor::from_ints({3, 1}, {0, -2, 1}, kGpu)); },
       "gather on cuda:0: index -2 out of range (expected 0 <= index < 5)"},
      {[&] { return scatter_add(x, 0, Tensor::from_ints({1, 5}, {0, 1, 2, 3, 0}, kGpu), src5); },
       "scatter_add on cuda:0: index 3 out of range (expected 0 <= index < 3)"},
      {[&] { return embedding(x, Tensor::from_ints({2}, {1, 9}, kGpu)); },
       "embedding on cuda:0: index 9 out of range (expected 0 <= index < 3)"},
      {[&] { return embedding_backward(dout, Tensor::from_ints({1}, {3}, kGpu), 3); },
       "embedding_backward on cuda:0: index 3 out of range (expected 0 <= index < 3)"},
      // Given as increasing: a repeat, a fall, and past the end (the range after the one before).
      {[&] { return add_increasing(Tensor::from_ints({3}, {0, 3, 3}, kGpu)); },
       "index_add_ on cuda:0: index 3 out of range (expected 4 <= index < 5)"},
      {[&] { return add_increasing(Tensor::from_ints({3}, {2, 1, 4}, kGpu)); },
       "index_add_ on cuda:0: index 1 out of range (expected 3 <= index < 5)"},
      {[&] { return add_increasing(Tensor::from_ints({3}, {0, 1, 5}, kGpu)); },
       "index_add_ on cuda:0: index 5 out of range (expected 2 <= index < 5)"},
  };
  for (const Case& c : cases) {
    INFO(c.message);
    const CudaSyncCounts before = cuda_sync_counts();
    Tensor result;
    CHECK(error_of([&] { result = c.run(); }) == "");
    const CudaSyncCounts after = cuda_sync_counts();
    CHECK(after.device_to_host_copies == before.device_to_host_copies);
    CHECK(after.synchronizations == before.synchronizations);
    const std::string m = error_of([] { cuda_synchronize(0); });
    CHECK_MESSAGE(contains(m, c.message), m);
    CHECK(error_of([] { cuda_synchronize(0); }) == "");  // reported once, then cleared
  }
}

TEST_CASE("CUDA matmul, gemm and the index ops queue work only: no host sync") {
  const Tensor a = random({4, 33, 65}, DType::F32, 800).to(kGpu), b = random({65, 7}, DType::F32, 801).to(kGpu);
  const Tensor ids = random_ids({4, 33}, 0, 65, 802).to(kGpu);
  Tensor out = Tensor::empty({33, 7}, DType::F32, kGpu);
  const CudaSyncCounts before = cuda_sync_counts();
  const Tensor y = matmul(a, b);
  gemm(out, a.select(0, 1), b, 1.0, 0.0);
  const Tensor e = embedding(b, ids);
  const Tensor de = embedding_backward(e, ids, 65);
  const Tensor s = scatter_add(a, 2, ids.unsqueeze(2).expand({4, 33, 7}), y);
  const CudaSyncCounts after = cuda_sync_counts();
  CHECK(after.device_to_host_copies == before.device_to_host_copies);
  CHECK(after.synchronizations == before.synchronizations);
  CHECK(std::isfinite(de.to_vector()[0]));
}

// ---------------------------------------------------------------- cat / split

TEST_CASE("CUDA cat and split equal the CPU; split pieces are views") {
  for (DType dt : kFloatTypes) {
    INFO(dtype_name(dt));
    // Along dim 1: a contiguous input, a permuted one and a size-1 one.
    const Tensor p = random({3, 5, 7}, dt, 900), q0 = random({7, 2, 3}, dt, 901), r = random({3, 1, 7}, dt, 902);
    const auto q_of = [](const Tensor& t) { return t.permute({2, 1, 0}); };
    const Tensor ref = cat({p, q_of(q0), r}, 1);
    const Tensor got = cat({p.to(kGpu), q_of(q0.to(kGpu)), r.to(kGpu)}, 1);
    CHECK(got.to_vector() == ref.to_vector());
    const std::vector<Tensor> pieces = split(got, {5, 2, 1}, 1);
    REQUIRE(pieces.size() == 3);
    CHECK(pieces[0].to_vector() == p.to_vector());
    CHECK(pieces[1].to_vector() == q_of(q0).to_vector());
    CHECK(pieces[2].to_vector() == r.to_vector());
    for (const Tensor& piece : pieces) CHECK(piece.shares_storage(got));
    // Along the first and the last dim.
    CHECK(cat({p.to(kGpu), p.narrow(0, 1, 2).to(kGpu)}, 0).to_vector() == cat({p, p.narrow(0, 1, 2)}, 0).to_vector());
    CHECK(cat({p.to(kGpu), r.transpose(1, 2).expand({3, 7, 5}).transpose(1, 2).to(kGpu)}, -1).to_vector() ==
          cat({p, r.transpose(1, 2).expand({3, 7, 5}).transpose(1, 2)}, -1).to_vector());
  }
}

// ---------------------------------------------------------------- gradients

namespace {

// Runs f on Variables of `inputs` (CPU tensors, moved to `device`), backpropagates a random
// upstream gradient (the same values on every device), returns the inputs' gradients on the CPU.
std::vector<Tensor> gradients(const std::function<Variable(const std::vector<Variable>&)>& f,
                              const std::vector<Tensor>& inputs, Device device) {
  std::vector<Variable> vars;
  for (const Tensor& t : inputs) vars.emplace_back(t.to(device), true);
  const Variable y = f(vars);
  y.backward(random(y.shape(), y.dtype(), 999).to(device));
  std::vector<Tensor> grads;
  for (const Variable& v : vars) grads.push_back(v.grad().to(cpu()));
  return grads;
}

}  // namespace

TEST_CASE("CUDA gradients of matmul and the index ops equal the CPU's") {
  struct Row {
    const char* name;
    std::vector<Shape> shapes;
    std::function<Variable(const std::vector<Variable>&)> f;
    bool exact;  // index ops: the same additions in the same order
  };
  const Tensor rows_idx = random_ids({9}, 0, 5, 1000);
  const Tensor elem_idx = random_ids({6, 11, 4}, 0, 5, 1001);
  const Tensor ids = random_ids({3, 8}, 0, 6, 1002);
  const auto on = [](const Tensor& t, const Variable& like) { return t.to(like.data().device()); };
  const std::vector<Row> rows = {
      {"matmul 2-D", {{7, 33}, {33, 129}}, [](const auto& v) { return matmul(v[0], v[1]); }, false},
      {"matmul batched", {{3, 7, 33}, {3, 33, 5}}, [](const auto& v) { return matmul(v[0], v[1]); }, false},
      {"matmul Linear (3-D @ 2-D)", {{4, 9, 33}, {33, 17}}, [](const auto& v) { return matmul(v[0], v[1]); },
       false},
      {"index_select dim 1", {{4, 5, 6}},
       [&](const auto& v) { return index_select(v[0], 1, on(rows_idx, v[0])); }, true},
      {"index_add dim 1", {{4, 5, 6}, {4, 9, 6}},
       [&](const auto& v) { return index_add(v[0], 1, on(rows_idx, v[0]), v[1]); }, true},
      {"gather dim 1", {{6, 5, 4}}, [&](const auto& v) { return gather(v[0], 1, on(elem_idx, v[0])); }, true},
      {"scatter_add dim 1", {{6, 5, 4}, {6, 11, 4}},
       [&](const auto& v) { return scatter_add(v[0], 1, on(elem_idx, v[0]), v[1]); }, true},
      {"embedding", {{6, 33}}, [&](const auto& v) { return embedding(v[0], on(ids, v[0])); }, true},
      {"cat", {{2, 3}, {2, 5}}, [](const auto& v) { return cat(std::vector<Variable>{v[0], v[1]}, 1); }, true},
  };
  for (DType dt : kFloatTypes) {
    uint64_t seed = 1100;
    for (const Row& r : rows) {
      INFO(r.name << " " << dtype_name(dt));
      std::vector<Tensor> inputs;
      for (const Shape& s : r.shapes) inputs.push_back(random(s, dt, ++seed));
      const std::vector<Tensor> ref = gradients(r.f, inputs, cpu()), got = gradients(r.f, inputs, kGpu);
      REQUIRE(got.size() == ref.size());
      for (size_t k = 0; k < ref.size(); ++k) {
        INFO("gradient of input " << k);
        if (r.exact)
          CHECK(got[k].to_vector() == ref[k].to_vector());
        else
          CHECK(error(got[k], ref[k]) <= tol(dt));
      }
    }
  }
}
