// tests/test_cuda_nn.cpp: the CUDA kernels of nn/ (RMSNorm, causal conv1d, cross-entropy, the
// multi-tensor optimiser steps and the gradient norm) against their references. Skipped
// without a CUDA device (tests/cuda_doctest_main.cpp).
//
// Method, for every family:
// - Inputs are fresh random float32 values (never zeros); the reference (*_ref) runs in float64
//   on the same float32 values widened, so the error measured is the CUDA kernel's own.
// - Sizes include 1, sizes below the block, and rows / D / C / V that are not multiples of the
//   kernels' 256-thread blocks or of their row / time chunks.
// - Every device output is poisoned with NaN before each call: an element the kernel fails to
//   write stays NaN and fails the comparison (normwise_error is NaN then).
// - Tolerance: normwise relative error ||got − ref||₂ / ||ref||₂ <= 1e-5 per output unless a
//   check says otherwise (and why). Each output is a short float32 computation on exact inputs
//   (row sums in float32 or double, one rounding of the result), so the kernels sit near 1e-7.
// - Repeated calls give bit-identical results (no order-dependent atomics), and the calls queue
//   work only: no device-to-host copy, no synchronisation.
// - bfloat16 (RMSNorm, causal conv1d, cross-entropy): the CUDA kernels against the CPU bfloat16
//   kernels on the same bfloat16 inputs (random float32 values rounded once), normwise <= 1e-2
//   for bfloat16 outputs (issue 7's bound; both sides compute in float and round each element
//   once, so they differ where a float result straddles a bfloat16 rounding boundary, by one
//   bfloat16 ulp = 2^-8 relative at most). The outputs both keep in float32 (RMSNorm's rstd,
//   the losses and lse) are held to the float32 tolerance 1e-5. tests/test_bf16_nn.cpp holds the
//   CPU bfloat16 kernels to float64 (without a GPU).
// - The optimiser kernels (AdamW, SGD, the gradient norm) are float32/float64 only: updates and
//   optimiser state stay in full precision, float32 master weights under mixed precision
//   (nn/optim.h), so they have no bfloat16 rows; tests/test_bf16_nn.cpp checks the error a
//   bfloat16 parameter gets.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "nn/causal_conv1d.h"
#include "nn/cross_entropy.h"
#include "nn/optim.h"
#include "nn/rmsnorm.h"
#include "tensor/elementwise.h"
#include "tensor/error.h"
#include "tensor/random.h"
#include "tests/cuda_test_util.h"
#include "tests/test_util.h"

using namespace simba;
using cuda_test::DevArray;
using cuda_test::kGpu;
using cuda_test::kNaN;
using cuda_test::normwise_error;

namespace {

constexpr double kTol = 1e-5;

std::vector<float> uniform(size_t n, double lo, double hi, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = float(dist(gen));
  return v;
}

std::vector<double> widen(const std::vector<float>& v) { return {v.begin(), v.end()}; }
std::vector<float> poison(size_t n) { return std::vector<float>(n, kNaN); }

constexpr double kBf16Tol = 1e-2;

// The values of v rounded once to bfloat16 (NaN stays NaN).
std::vector<bfloat16> to_bf16(const std::vector<float>& v) {
  std::vector<bfloat16> b;
  for (float x : v) b.push_back(bfloat16(x));
  return b;
}
std::vector<double> widen(const std::vector<bfloat16>& v) {
  std::vector<double> d;
  for (bfloat16 x : v) d.push_back(static_cast<double>(x));
  return d;
}
std::vector<bfloat16> poison_bf16(size_t n) { return std::vector<bfloat16>(n, bfloat16(kNaN)); }

}  // namespace

// ---------------------------------------------------------------- RMSNorm

struct NormSize {
  int64_t rows, D;
};
// D = 1; D below, at and just past the block (256), the backward's register segments (256
// and 1024 columns) and the forward's columns kept in registers (1024); rows across 1, 2, 10
// and 257 dw chunks (32): 257 partial rows are summed in 8 slices of 32 or 33
// (tensor/cuda_reduce.cuh), 8 loads at a time and a remainder.
const NormSize kNormSizes[] = {{1, 1},      {7, 33},     {32, 256}, {37, 257},
                               {65, 768},   {300, 1000}, {41, 2100}, {8200, 33}};

TEST_CASE("CUDA RMSNorm forward and backward equal the reference") {
  for (const NormSize& sz : kNormSizes) {
    const int64_t rows = sz.rows, D = sz.D;
    INFO("rows=" << rows << " D=" << D);
    const std::vector<float> x = uniform(rows * D, -2, 2, 11 + rows), w = uniform(D, 0.5, 1.5, 12 + D);
    const std::vector<float> dy = uniform(rows * D, -1, 1, 13 + rows);
    const double eps = 1e-5;
    const DevArray<float> dx_(x), dw_(w), ddy(dy);

    DevArray<float> y(poison(rows * D)), rstd(poison(rows));
    rmsnorm_forward_cuda<float>(y.p(), rstd.p(), dx_.p(), dw_.p(), rows, D, eps);
    std::vector<double> y_ref(rows * D), rstd_ref(rows);
    const std::vector<double> x64 = widen(x), w64 = widen(w), dy64 = widen(dy);
    rmsnorm_forward_ref<double>(y_ref.data(), rstd_ref.data(), x64.data(), w64.data(), rows, D, eps);
    CHECK(normwise_error(y.read(), y_ref) <= kTol);
    const std::vector<float> rstd_got = rstd.read();
    CHECK(normwise_error(rstd_got, rstd_ref) <= kTol);

    // The backward takes the forward's float32 rstd; the reference gets the same values.
    const std::vector<double> rstd64 = widen(rstd_got);
    std::vector<double> dx_ref(rows * D), dw_ref(D);
    rmsnorm_backward_ref<double>(dx_ref.data(), dw_ref.data(), dy64.data(), x64.data(), w64.data(), rstd64.data(),
                                 rows, D, false);
    DevArray<float> dx(poison(rows * D)), dw(poison(D));
    rmsnorm_backward_cuda<float>(dx.p(), dw.p(), ddy.p(), dx_.p(), dw_.p(), rstd.p(), rows, D, false);
    const std::vector<float> dx1 = dx.read(), dw1 = dw.read();
    // dx = s·w·dy − (s³·x/D)·Σ dy·w·x is a difference of two terms; at D = 1 they cancel to
    // eps/(x² + eps) of their size (y = sign(x)·w there), so float32 rounding of the terms,
    // not the kernel, sets the error relative to the result. The error is measured against
    // the larger of the result and its first term, which is the result itself for D > 1.
    double ref_norm = 0.0, term_norm = 0.0;
    for (int64_t i = 0; i < rows * D; ++i) {
      const double term = rstd64[i / D] * w64[i % D] * dy64[i];
      ref_norm += dx_ref[i] * dx_ref[i];
      term_norm += term * term;
    }
    CHECK(normwise_error(dx1, dx_ref) * std::sqrt(ref_norm) <= kTol * std::max(std::sqrt(ref_norm), std::sqrt(term_norm)));
    CHECK(normwise_error(dw1, dw_ref) <= kTol);

    // Each output alone (the other null) gives the same bits, and a repeat is bit-identical.
    DevArray<float> dx2(poison(rows * D)), dw2(poison(D));
    rmsnorm_backward_cuda<float>(dx2.p(), nullptr, ddy.p(), dx_.p(), dw_.p(), rstd.p(), rows, D, false);
    rmsnorm_backward_cuda<float>(nullptr, dw2.p(), ddy.p(), dx_.p(), dw_.p(), rstd.p(), rows, D, false);
    CHECK(dx2.read() == dx1);
    CHECK(dw2.read() == dw1);

    // add_dx: dx holds a gradient already (random values) and gets the norm's added; dw unchanged.
    const std::vector<float> prior = uniform(rows * D, -2, 2, 41 + D);
    std::vector<double> dx_add_ref = widen(prior), dw_add_ref(D);
    rmsnorm_backward_ref<double>(dx_add_ref.data(), dw_add_ref.data(), dy64.data(), x64.data(), w64.data(),
                                 rstd64.data(), rows, D, true);
    DevArray<float> dx3(prior), dw3(poison(D));
    rmsnorm_backward_cuda<float>(dx3.p(), dw3.p(), ddy.p(), dx_.p(), dw_.p(), rstd.p(), rows, D, true);
    double add_norm = 0.0, prior_norm = 0.0;
    for (int64_t i = 0; i < rows * D; ++i) {
      add_norm += dx_add_ref[i] * dx_add_ref[i];
      prior_norm += double(prior[i]) * prior[i];
    }
    CHECK(normwise_error(dx3.read(), dx_add_ref) * std::sqrt(add_norm) <=
          kTol * (std::sqrt(prior_norm) + std::max(std::sqrt(ref_norm), std::sqrt(term_norm))));
    CHECK(dw3.read() == dw1);
  }
}

// The recurrent step's residual add fused with the next norm (nn/rmsnorm.h add_rmsnorm_forward):
// the same bits as the GPU's add followed by its norm, float32 and bfloat16; x updated in place.
TEST_CASE("CUDA add_rmsnorm_forward equals the tensor add then rmsnorm_forward_cuda, bit for bit") {
  for (const NormSize& sz : kNormSizes) {
    const int64_t rows = sz.rows, D = sz.D;
    INFO("rows=" << rows << " D=" << D);
    for (const DType dt : {DType::F32, DType::BF16}) {
      INFO(dtype_name(dt));
      Generator g(50 + rows);
      const Tensor x = randn({rows, D}, g).to(dt).to(kGpu), a = randn({rows, D}, g).to(dt).to(kGpu);
      const Tensor w = affine(rand({D}, g), 1.0, 0.5).to(dt).to(kGpu);
      const Tensor sum = add(x, a);
      const Tensor want = rms_norm(Variable(sum), Variable(w), 1e-5).data();
      Tensor xs = x.clone();
      const Tensor got = add_rms_norm_(xs, a, w, 1e-5);
      CHECK(xs.to(DType::F64).to(cpu()).to_vector() == sum.to(DType::F64).to(cpu()).to_vector());
      CHECK(got.to(DType::F64).to(cpu()).to_vector() == want.to(DType::F64).to(cpu()).to_vector());
    }
  }
}

// The norm of rows picked by index (nn/rmsnorm.h gather_rmsnorm_forward, Simba's pruned layers):
// the same bits as the GPU norm of the rows gathered first, into poisoned outputs; rows in any
// order with repeats; D of one row of registers (768), past them (2100) and odd (33). A bad row
// is reported at the next sync.
TEST_CASE("CUDA gather_rmsnorm_forward equals rmsnorm_forward_cuda of the gathered rows, bit for bit") {
  for (const auto& [S, D] : std::vector<std::pair<int64_t, int64_t>>{{300, 768}, {41, 2100}, {70, 33}}) {
    INFO("S=" << S << " D=" << D);
    std::mt19937_64 rng(60 + S);
    std::vector<int64_t> rows(S / 2 + 3);
    for (int64_t& r : rows) r = int64_t(rng() % uint64_t(S));
    const int64_t n = int64_t(rows.size());
    const std::vector<float> x = uniform(S * D, -2, 2, 61 + S), w = uniform(D, 0.5, 1.5, 62 + D);
    std::vector<float> gathered(n * D);
    for (int64_t i = 0; i < n; ++i) std::copy_n(x.begin() + rows[i] * D, D, gathered.begin() + i * D);
    const DevArray<float> dx(x), dw(w), dg(gathered);
    const DevArray<int64_t> drows(rows);
    DevArray<float> y(poison(n * D)), rstd(poison(n)), y_want(poison(n * D)), rstd_want(poison(n));
    gather_rmsnorm_forward_cuda<float>(y.p(), rstd.p(), dx.p(), drows.p(), dw.p(), n, S, D, 1e-5);
    rmsnorm_forward_cuda<float>(y_want.p(), rstd_want.p(), dg.p(), dw.p(), n, D, 1e-5);
    CHECK(y.read() == y_want.read());
    CHECK(rstd.read() == rstd_want.read());
    const DevArray<bfloat16> bx(to_bf16(x)), bw(to_bf16(w)), bg(to_bf16(gathered));
    DevArray<bfloat16> by(poison_bf16(n * D)), by_want(poison_bf16(n * D));
    gather_rmsnorm_forward_cuda<bfloat16>(by.p(), rstd.p(), bx.p(), drows.p(), bw.p(), n, S, D, 1e-5);
    rmsnorm_forward_cuda<bfloat16>(by_want.p(), rstd_want.p(), bg.p(), bw.p(), n, D, 1e-5);
    CHECK(widen(by.read()) == widen(by_want.read()));
    CHECK(rstd.read() == rstd_want.read());
  }
  const DevArray<float> x(uniform(10, -1, 1, 63)), w(uniform(5, 0.5, 1.5, 64));
  const DevArray<int64_t> bad(std::vector<int64_t>{1, 9});
  DevArray<float> y(poison(10)), rstd(poison(2));
  CHECK(error_of([&] { gather_rmsnorm_forward_cuda<float>(y.p(), rstd.p(), x.p(), bad.p(), w.p(), 2, 2, 5, 1e-5); }) ==
        "");
  const std::string m = error_of([] { cuda_synchronize(0); });
  CHECK_MESSAGE(m.find("gather_rmsnorm_forward_cuda on cuda:0: index 9 out of range (expected 0 <= index < 2)") !=
                    std::string::npos,
                m);
}

TEST_CASE("CUDA RMSNorm: zero rows give dw = 0; bad calls throw") {
  DevArray<float> w(uniform(5, 0.5, 1.5, 1)), dw(poison(5));
  rmsnorm_backward_cuda<float>(nullptr, dw.p(), nullptr, nullptr, w.p(), nullptr, 0, 5, false);
  CHECK(dw.read() == std::vector<float>(5, 0.f));
  std::vector<float> host(10);
  DevArray<float> x(uniform(10, -1, 1, 2)), y(poison(10)), rstd(poison(2));
  const std::string m = error_of([&] { rmsnorm_forward_cuda<float>(host.data(), rstd.p(), x.p(), w.p(), 2, 5, 1e-5); });
  CHECK_MESSAGE(m.find("rmsnorm_forward_cuda: y is not CUDA device memory") != std::string::npos, m);
  const std::string d = error_of([&] { rmsnorm_forward_cuda<float>(y.p(), rstd.p(), x.p(), w.p(), 2, 0, 1e-5); });
  CHECK_MESSAGE(d.find("rmsnorm_forward_cuda: sizes must be rows >= 0 and D >= 1") != std::string::npos, d);
}

TEST_CASE("CUDA bfloat16 RMSNorm equals the CPU bfloat16 kernels") {
  for (const NormSize& sz : kNormSizes) {
    const int64_t rows = sz.rows, D = sz.D;
    INFO("rows=" << rows << " D=" << D);
    const std::vector<bfloat16> x = to_bf16(uniform(rows * D, -2, 2, 111 + rows));
    const std::vector<bfloat16> w = to_bf16(uniform(D, 0.5, 1.5, 112 + D));
    const std::vector<bfloat16> dy = to_bf16(uniform(rows * D, -1, 1, 113 + rows));
    const double eps = 1e-5;
    const DevArray<bfloat16> dx_(x), dw_(w), ddy(dy);

    DevArray<bfloat16> y(poison_bf16(rows * D));
    DevArray<float> rstd(poison(rows));
    rmsnorm_forward_cuda<bfloat16>(y.p(), rstd.p(), dx_.p(), dw_.p(), rows, D, eps);
    std::vector<bfloat16> y_cpu(rows * D);
    std::vector<float> rstd_cpu(rows);
    rmsnorm_forward_cpu<bfloat16>(y_cpu.data(), rstd_cpu.data(), x.data(), w.data(), rows, D, eps);
    CHECK(normwise_error(y.read(), widen(y_cpu)) <= kBf16Tol);
    CHECK(normwise_error(rstd.read(), widen(rstd_cpu)) <= kTol);

    // Each side's backward takes its own forward's rstd (they agree to float32 rounding).
    std::vector<bfloat16> dx_cpu(rows * D), dw_cpu(D);
    rmsnorm_backward_cpu<bfloat16>(dx_cpu.data(), dw_cpu.data(), dy.data(), x.data(), w.data(), rstd_cpu.data(), rows,
                                   D, false);
    DevArray<bfloat16> dx(poison_bf16(rows * D)), dw(poison_bf16(D));
    rmsnorm_backward_cuda<bfloat16>(dx.p(), dw.p(), ddy.p(), dx_.p(), dw_.p(), rstd.p(), rows, D, false);
    const std::vector<bfloat16> dx1 = dx.read(), dw1 = dw.read();
    CHECK(normwise_error(dw1, widen(dw_cpu)) <= kBf16Tol);
    // At D = 1 dx's two terms cancel to ~eps/x² of their size (see the float32 case above):
    // there only that every element is written and finite is checked.
    if (D > 1) CHECK(normwise_error(dx1, widen(dx_cpu)) <= kBf16Tol);
    int64_t nonfinite = 0;
    for (bfloat16 v : dx1) nonfinite += !std::isfinite(static_cast<float>(v));
    CHECK(nonfinite == 0);

    // A repeat gives the same bits.
    DevArray<bfloat16> dx2(poison_bf16(rows * D)), dw2(poison_bf16(D));
    rmsnorm_backward_cuda<bfloat16>(dx2.p(), dw2.p(), ddy.p(), dx_.p(), dw_.p(), rstd.p(), rows, D, false);
    CHECK(widen(dx2.read()) == widen(dx1));
    CHECK(widen(dw2.read()) == widen(dw1));

    // add_dx: onto a gradient already there (random values), CUDA as the CPU kernel.
    std::vector<bfloat16> prior(rows * D);
    {
      const std::vector<float> p = uniform(rows * D, -2, 2, 43 + D);
      for (int64_t i = 0; i < rows * D; ++i) prior[i] = bfloat16(p[i]);
    }
    std::vector<bfloat16> dx_add_cpu = prior, dw_add_cpu(D);
    rmsnorm_backward_cpu<bfloat16>(dx_add_cpu.data(), dw_add_cpu.data(), dy.data(), x.data(), w.data(),
                                   rstd_cpu.data(), rows, D, true);
    DevArray<bfloat16> dx3(prior);
    rmsnorm_backward_cuda<bfloat16>(dx3.p(), nullptr, ddy.p(), dx_.p(), dw_.p(), rstd.p(), rows, D, true);
    CHECK(normwise_error(dx3.read(), widen(dx_add_cpu)) <= kBf16Tol);
  }
}

// ---------------------------------------------------------------- causal conv1d

struct ConvSize {
  int64_t B, L, C, K;
  bool bias;
  int64_t pad = 3;
};
// L < K; C not a multiple of 256; L crossing the 64-step partial slices; K = 1; one long row;
// 66 slices, whose partials are summed in 8 runs of 8 or 9 (tensor/cuda_reduce.cuh).
// pad: the extra columns of x's buffer. 3 keeps rows off 16-byte boundaries (the plain kernel);
// 8 or 0 with C a multiple of 8 gives 16-byte rows (the vector kernel, float32 and bfloat16).
// The last two: the one-pass SiLU backward's one-channel kernel at K = 2 and 3 (C odd).
const ConvSize kConvSizes[] = {{1, 1, 1, 1, true},       {2, 3, 5, 4, true},       {3, 70, 129, 4, false},
                               {2, 200, 300, 3, true},   {1, 1000, 17, 4, true},   {4, 65, 257, 1, true},
                               {2, 100, 256, 4, true, 8}, {3, 37, 64, 3, false, 0}, {1, 50, 136, 2, true, 8},
                               {2, 40, 8, 1, true, 0},    {1, 70, 16, 5, true, 8},  {1, 4200, 40, 4, true, 8},
                               {2, 90, 131, 2, true, 3},  {1, 130, 33, 3, false, 0}};

TEST_CASE("CUDA causal conv1d forward and backward equal the reference (strided input)") {
  for (const ConvSize& sz : kConvSizes) {
    const int64_t B = sz.B, L = sz.L, C = sz.C, K = sz.K;
    INFO("B=" << B << " L=" << L << " C=" << C << " K=" << K << " bias=" << sz.bias);
    // x is the first C columns of a (B, L, C + pad) buffer whose other cells are NaN: a kernel
    // reading outside the view poisons its result.
    const int64_t ld = C + sz.pad, sb = L * ld, sl = ld;
    std::vector<float> xbuf(B * L * ld, kNaN);
    const std::vector<float> xv = uniform(B * L * C, -1, 1, 21 + C);
    for (int64_t r = 0; r < B * L; ++r)
      for (int64_t c = 0; c < C; ++c) xbuf[r * ld + c] = xv[r * C + c];
    const std::vector<float> w = uniform(C * K, -1, 1, 22 + K), bias = uniform(C, -1, 1, 23);
    const std::vector<float> g = uniform(B * L * C, -1, 1, 24 + L);
    const DevArray<float> dxbuf(xbuf), dwt(w), dbias(bias), dg(g);
    const std::vector<double> x64 = widen(xbuf), w64 = widen(w), b64 = widen(bias), g64 = widen(g);

    DevArray<float> out(poison(B * L * C));
    causal_conv1d_forward_cuda<float>(out.p(), dxbuf.p(), dwt.p(), sz.bias ? dbias.p() : nullptr, B, L, C, K, sb, sl);
    std::vector<double> out_ref(B * L * C);
    causal_conv1d_forward_ref<double>(out_ref.data(), x64.data(), w64.data(), sz.bias ? b64.data() : nullptr, B, L,
                                      C, K, sb, sl);
    CHECK(normwise_error(out.read(), out_ref) <= kTol);
    // SiLU fused into the same kernels (nn/causal_conv1d.h, silu).
    DevArray<float> out_silu(poison(B * L * C));
    causal_conv1d_forward_cuda<float>(out_silu.p(), dxbuf.p(), dwt.p(), sz.bias ? dbias.p() : nullptr, B, L, C, K, sb,
                                      sl, /*silu=*/true);
    causal_conv1d_forward_ref<double>(out_ref.data(), x64.data(), w64.data(), sz.bias ? b64.data() : nullptr, B, L,
                                      C, K, sb, sl, /*silu=*/true);
    CHECK(normwise_error(out_silu.read(), out_ref) <= kTol);
    // SiLU's gradient through the same kernels (causal_conv1d_silu_grad): g·SiLU'(conv).
    DevArray<float> dv(poison(B * L * C));
    causal_conv1d_silu_grad_cuda<float>(dv.p(), dg.p(), dxbuf.p(), dwt.p(), sz.bias ? dbias.p() : nullptr, B, L, C, K,
                                        sb, sl);
    causal_conv1d_silu_grad_ref<double>(out_ref.data(), g64.data(), x64.data(), w64.data(),
                                        sz.bias ? b64.data() : nullptr, B, L, C, K, sb, sl);
    CHECK(normwise_error(dv.read(), out_ref) <= kTol);

    std::vector<double> dx_ref(B * L * C), dw_ref(C * K), db_ref(C);
    causal_conv1d_backward_ref<double>(dx_ref.data(), dw_ref.data(), db_ref.data(), g64.data(), x64.data(),
                                       w64.data(), B, L, C, K, sb, sl);
    DevArray<float> dx(poison(B * L * C)), dw(poison(C * K)), db(poison(C));
    causal_conv1d_backward_cuda<float>(dx.p(), dw.p(), db.p(), dg.p(), dxbuf.p(), dwt.p(), B, L, C, K, sb, sl);
    const std::vector<float> dx1 = dx.read(), dw1 = dw.read(), db1 = db.read();
    CHECK(normwise_error(dx1, dx_ref) <= kTol);
    CHECK(normwise_error(dw1, dw_ref) <= kTol);
    CHECK(normwise_error(db1, db_ref) <= kTol);

    // Outputs one at a time give the same bits (a repeat is bit-identical).
    DevArray<float> dx2(poison(B * L * C)), dw2(poison(C * K)), db2(poison(C));
    causal_conv1d_backward_cuda<float>(dx2.p(), nullptr, nullptr, dg.p(), dxbuf.p(), dwt.p(), B, L, C, K, sb, sl);
    causal_conv1d_backward_cuda<float>(nullptr, dw2.p(), nullptr, dg.p(), dxbuf.p(), dwt.p(), B, L, C, K, sb, sl);
    causal_conv1d_backward_cuda<float>(nullptr, nullptr, db2.p(), dg.p(), dxbuf.p(), dwt.p(), B, L, C, K, sb, sl);
    CHECK(dx2.read() == dx1);
    CHECK(dw2.read() == dw1);
    CHECK(db2.read() == db1);
  }
}

// causal_conv1d_silu_backward_cuda (one pass for K <= 4, the two kernels past it) against
// causal_conv1d_silu_grad_cuda followed by causal_conv1d_backward_cuda: the same bits, every
// output alone too; x a NaN-padded view, outputs NaN-poisoned.
template <class T>
void check_silu_backward(const ConvSize& sz, std::vector<T> (*as_t)(const std::vector<float>&)) {
  const int64_t B = sz.B, L = sz.L, C = sz.C, K = sz.K;
  const int64_t ld = C + sz.pad, sb = L * ld, sl = ld;
  std::vector<float> xraw(B * L * ld, kNaN);
  const std::vector<float> xv = uniform(B * L * C, -2, 2, 221 + C);
  for (int64_t r = 0; r < B * L; ++r)
    for (int64_t c = 0; c < C; ++c) xraw[r * ld + c] = xv[r * C + c];
  const DevArray<T> dxbuf(as_t(xraw)), dwt(as_t(uniform(C * K, -1, 1, 222 + K))), dbias(as_t(uniform(C, -1, 1, 223)));
  const DevArray<T> dg(as_t(uniform(B * L * C, -1, 1, 224 + L)));
  const T* bias = sz.bias ? dbias.p() : nullptr;
  auto poisoned = [](int64_t n) { return DevArray<T>(std::vector<T>(size_t(n), T(kNaN))); };
  auto bits = [](const DevArray<T>& a) {
    std::vector<double> d;
    for (const T& v : a.read()) d.push_back(static_cast<double>(v));
    return d;
  };

  DevArray<T> dv = poisoned(B * L * C), dx2 = poisoned(B * L * C), dw2 = poisoned(C * K), db2 = poisoned(C);
  causal_conv1d_silu_grad_cuda<T>(dv.p(), dg.p(), dxbuf.p(), dwt.p(), bias, B, L, C, K, sb, sl);
  causal_conv1d_backward_cuda<T>(dx2.p(), dw2.p(), db2.p(), dv.p(), dxbuf.p(), dwt.p(), B, L, C, K, sb, sl);
  const std::vector<double> want_dx = bits(dx2), want_dw = bits(dw2), want_db = bits(db2);
  for (double v : want_dx) REQUIRE(std::isfinite(v));

  DevArray<T> dx = poisoned(B * L * C), dw = poisoned(C * K), db = poisoned(C);
  causal_conv1d_silu_backward_cuda<T>(dx.p(), dw.p(), db.p(), dg.p(), dxbuf.p(), dwt.p(), bias, B, L, C, K, sb, sl);
  CHECK(bits(dx) == want_dx);
  CHECK(bits(dw) == want_dw);
  CHECK(bits(db) == want_db);
  DevArray<T> dx1 = poisoned(B * L * C), dw1 = poisoned(C * K), db1 = poisoned(C);
  causal_conv1d_silu_backward_cuda<T>(dx1.p(), nullptr, nullptr, dg.p(), dxbuf.p(), dwt.p(), bias, B, L, C, K, sb, sl);
  causal_conv1d_silu_backward_cuda<T>(nullptr, dw1.p(), nullptr, dg.p(), dxbuf.p(), dwt.p(), bias, B, L, C, K, sb, sl);
  causal_conv1d_silu_backward_cuda<T>(nullptr, nullptr, db1.p(), dg.p(), dxbuf.p(), dwt.p(), bias, B, L, C, K, sb, sl);
  CHECK(bits(dx1) == want_dx);
  CHECK(bits(dw1) == want_dw);
  CHECK(bits(db1) == want_db);
}

std::vector<float> as_f32(const std::vector<float>& v) { return v; }

TEST_CASE("CUDA causal conv1d's backward under SiLU in one pass equals SiLU's gradient then the backward, bit for bit") {
  for (const ConvSize& sz : kConvSizes) {
    INFO("B=" << sz.B << " L=" << sz.L << " C=" << sz.C << " K=" << sz.K << " bias=" << sz.bias << " pad=" << sz.pad);
    check_silu_backward<float>(sz, as_f32);
    check_silu_backward<bfloat16>(sz, to_bf16);
  }
}

TEST_CASE("CUDA bfloat16 causal conv1d forward, backward and step equal the CPU bfloat16 kernels") {
  for (const ConvSize& sz : kConvSizes) {
    const int64_t B = sz.B, L = sz.L, C = sz.C, K = sz.K;
    INFO("B=" << B << " L=" << L << " C=" << C << " K=" << K << " bias=" << sz.bias);
    // x: the first C columns of a (B, L, C + pad) buffer whose other cells are NaN.
    const int64_t ld = C + sz.pad, sb = L * ld, sl = ld;
    std::vector<float> xraw(B * L * ld, kNaN);
    const std::vector<float> xv = uniform(B * L * C, -1, 1, 121 + C);
    for (int64_t r = 0; r < B * L; ++r)
      for (int64_t c = 0; c < C; ++c) xraw[r * ld + c] = xv[r * C + c];
    const std::vector<bfloat16> x = to_bf16(xraw), w = to_bf16(uniform(C * K, -1, 1, 122 + K));
    const std::vector<bfloat16> bias = to_bf16(uniform(C, -1, 1, 123)), g = to_bf16(uniform(B * L * C, -1, 1, 124 + L));
    const DevArray<bfloat16> dxbuf(x), dwt(w), dbias(bias), dg(g);
    const bfloat16* bias_cpu = sz.bias ? bias.data() : nullptr;

    DevArray<bfloat16> out(poison_bf16(B * L * C));
    causal_conv1d_forward_cuda<bfloat16>(out.p(), dxbuf.p(), dwt.p(), sz.bias ? dbias.p() : nullptr, B, L, C, K, sb,
                                         sl);
    std::vector<bfloat16> out_cpu(B * L * C);
    causal_conv1d_forward_cpu<bfloat16>(out_cpu.data(), x.data(), w.data(), bias_cpu, B, L, C, K, sb, sl);
    CHECK(normwise_error(out.read(), widen(out_cpu)) <= kBf16Tol);
    DevArray<bfloat16> out_silu(poison_bf16(B * L * C));
    causal_conv1d_forward_cuda<bfloat16>(out_silu.p(), dxbuf.p(), dwt.p(), sz.bias ? dbias.p() : nullptr, B, L, C, K,
                                         sb, sl, /*silu=*/true);
    causal_conv1d_forward_cpu<bfloat16>(out_cpu.data(), x.data(), w.data(), bias_cpu, B, L, C, K, sb, sl, true);
    CHECK(normwise_error(out_silu.read(), widen(out_cpu)) <= kBf16Tol);
    DevArray<bfloat16> dv(poison_bf16(B * L * C));
    causal_conv1d_silu_grad_cuda<bfloat16>(dv.p(), dg.p(), dxbuf.p(), dwt.p(), sz.bias ? dbias.p() : nullptr, B, L, C,
                                           K, sb, sl);
    causal_conv1d_silu_grad_cpu<bfloat16>(out_cpu.data(), g.data(), x.data(), w.data(), bias_cpu, B, L, C, K, sb, sl);
    CHECK(normwise_error(dv.read(), widen(out_cpu)) <= kBf16Tol);

    std::vector<bfloat16> dx_cpu(B * L * C), dw_cpu(C * K), db_cpu(C);
    causal_conv1d_backward_cpu<bfloat16>(dx_cpu.data(), dw_cpu.data(), db_cpu.data(), g.data(), x.data(), w.data(), B,
                                         L, C, K, sb, sl);
    DevArray<bfloat16> dx(poison_bf16(B * L * C)), dw(poison_bf16(C * K)), db(poison_bf16(C));
    causal_conv1d_backward_cuda<bfloat16>(dx.p(), dw.p(), db.p(), dg.p(), dxbuf.p(), dwt.p(), B, L, C, K, sb, sl);
    const std::vector<bfloat16> dw1 = dw.read();
    CHECK(normwise_error(dx.read(), widen(dx_cpu)) <= kBf16Tol);
    CHECK(normwise_error(dw1, widen(dw_cpu)) <= kBf16Tol);
    CHECK(normwise_error(db.read(), widen(db_cpu)) <= kBf16Tol);
    DevArray<bfloat16> dw2(poison_bf16(C * K));
    causal_conv1d_backward_cuda<bfloat16>(nullptr, dw2.p(), nullptr, dg.p(), dxbuf.p(), dwt.p(), B, L, C, K, sb, sl);
    CHECK(widen(dw2.read()) == widen(dw1));  // a repeat gives the same bits
  }

  // The recurrent step: x_t a column view (x_ld = 2C) of a projection, out rows out_ld = C + 2
  // apart (the gap cells stay NaN on both sides: written by neither). K up to kMaxTaps = 4 keeps
  // the window in registers (K = 1: x alone); K = 6 walks the state in memory. K = 4 moves whole
  // state and tap rows where they are aligned (lead 0) and element by element where the state
  // and the taps start one element past an aligned address (lead 1).
  const std::pair<int64_t, int64_t> cases[] = {{1, 0}, {3, 0}, {4, 0}, {4, 1}, {6, 0}};  // (K, lead)
  for (const auto& [K, lead] : cases) {
    const int64_t B = 3, C = 37, out_ld = C + 2;
    std::vector<bfloat16> state_cpu = to_bf16(uniform(lead + B * C * K, -1, 1, 131));
    const std::vector<bfloat16> w = to_bf16(uniform(lead + C * K, -1, 1, 132)), bias = to_bf16(uniform(C, -1, 1, 133));
    DevArray<bfloat16> state(state_cpu);
    const DevArray<bfloat16> dw(w), db(bias);
    for (int step = 0; step < 6; ++step) {
      const bool silu = step % 2 == 1;  // the mixer's fused SiLU on odd steps
      INFO("K " << K << ", lead " << lead << ", step " << step << " silu " << silu);
      const std::vector<bfloat16> xz = to_bf16(uniform(B * 2 * C, -1, 1, 140 + step));
      const DevArray<bfloat16> dxz(xz);
      std::vector<bfloat16> out_cpu = poison_bf16(B * out_ld);
      causal_conv1d_step_cpu<bfloat16>(out_cpu.data(), out_ld, state_cpu.data() + lead, xz.data(), 2 * C,
                                       w.data() + lead, bias.data(), B, C, K, silu);
      DevArray<bfloat16> out(poison_bf16(B * out_ld));
      causal_conv1d_step_cuda<bfloat16>(out.p(), out_ld, state.p() + lead, dxz.p(), 2 * C, dw.p() + lead, db.p(), B, C,
                                        K, silu);
      const std::vector<double> got = widen(out.read()), ref = widen(out_cpu);
      std::vector<double> got_rows, ref_rows;
      int64_t gap_written = 0;
      for (int64_t i = 0; i < B * out_ld; ++i) {
        if (i % out_ld < C) {
          got_rows.push_back(got[i]);
          ref_rows.push_back(ref[i]);
        } else {
          gap_written += !std::isnan(got[i]);
        }
      }
      CHECK(normwise_error(got_rows, ref_rows) <= kBf16Tol);
      CHECK(gap_written == 0);
      CHECK(widen(state.read()) == widen(state_cpu));  // a shift and a copy: exact
    }
  }
}

// ---------------------------------------------------------------- cross-entropy

struct XentSize {
  int64_t rows, V;
};
// V = 1; V below and past the block; the GPT-NeoX vocabulary of the Mamba checkpoints.
const XentSize kXentSizes[] = {{1, 1}, {5, 7}, {33, 257}, {64, 1000}, {9, 50280}};

TEST_CASE("CUDA cross-entropy forward and backward equal the reference, with ignored rows") {
  const int64_t ignore = -100;
  for (const XentSize& sz : kXentSizes) {
    const int64_t rows = sz.rows, V = sz.V;
    INFO("rows=" << rows << " V=" << V);
    std::vector<float> logits = uniform(rows * V, -4, 4, 31 + V);
    // Row 1 sits near +1000 and row 2 near −1000: exp without the max shift would overflow
    // or underflow to a wrong loss.
    for (int64_t r = 1; r < std::min<int64_t>(rows, 3); ++r)
      for (int64_t v = 0; v < V; ++v) logits[r * V + v] += r == 1 ? 1000.f : -1000.f;
    std::vector<int64_t> targets(rows);
    std::mt19937_64 gen(32 + rows);
    for (int64_t r = 0; r < rows; ++r)
      targets[r] = r % 3 == 2 ? ignore : int64_t(std::uniform_int_distribution<int64_t>(0, V - 1)(gen));
    const std::vector<float> dlosses = uniform(rows, 0.1, 2, 33);
    const DevArray<float> dl(logits), ddl(dlosses);
    const DevArray<int64_t> dt(targets);
    const std::vector<double> l64 = widen(logits), g64 = widen(dlosses);

    DevArray<float> losses(poison(rows)), lse(poison(rows));
    cross_entropy_forward_cuda<float>(losses.p(), lse.p(), dl.p(), dt.p(), rows, V, ignore);
    std::vector<double> losses_ref(rows), lse_ref(rows);
    cross_entropy_forward_ref<double>(losses_ref.data(), lse_ref.data(), l64.data(), targets.data(), rows, V, ignore);
    const std::vector<float> losses_got = losses.read(), lse_got = lse.read();
    CHECK(normwise_error(losses_got, losses_ref) <= kTol);
    CHECK(normwise_error(lse_got, lse_ref) <= kTol);
    for (int64_t r = 0; r < rows; ++r)
      if (targets[r] == ignore) CHECK((losses_got[r] == 0.f && lse_got[r] == 0.f));

    // The backward takes the forward's float32 lse; the reference gets the same values (an lse
    // near 1000 carries a float32 rounding of ~3e-5 absolute, which exp turns into a relative
    // error of the gradient: the forward's, not the backward's).
    const std::vector<double> lse64 = widen(lse_got);
    std::vector<double> d_ref(rows * V);
    cross_entropy_backward_ref<double>(d_ref.data(), g64.data(), l64.data(), lse64.data(), targets.data(), rows, V,
                                       ignore);
    DevArray<float> d(poison(rows * V));
    cross_entropy_backward_cuda<float>(d.p(), ddl.p(), dl.p(), lse.p(), dt.p(), rows, V, ignore);
    const std::vector<float> d_got = d.read();
    CHECK(normwise_error(d_got, d_ref) <= kTol);
    int64_t nonzero_ignored = 0;
    for (int64_t r = 0; r < rows; ++r)
      if (targets[r] == ignore)
        for (int64_t v = 0; v < V; ++v) nonzero_ignored += d_got[r * V + v] != 0.f;
    CHECK(nonzero_ignored == 0);
    // In place (dlogits == logits, as the fused classifier calls it): the same bits.
    DevArray<float> in_place(logits);
    cross_entropy_backward_cuda<float>(in_place.p(), ddl.p(), in_place.p(), lse.p(), dt.p(), rows, V, ignore);
    CHECK(in_place.read() == d_got);
  }
}

TEST_CASE("CUDA bfloat16 cross-entropy equals the CPU bfloat16 kernels: float32 losses, bfloat16 dlogits") {
  const int64_t ignore = -100;
  for (const XentSize& sz : kXentSizes) {
    const int64_t rows = sz.rows, V = sz.V;
    INFO("rows=" << rows << " V=" << V);
    std::vector<float> raw = uniform(rows * V, -4, 4, 131 + V);
    for (int64_t r = 1; r < std::min<int64_t>(rows, 3); ++r)
      for (int64_t v = 0; v < V; ++v) raw[r * V + v] += r == 1 ? 1000.f : -1000.f;
    const std::vector<bfloat16> logits = to_bf16(raw);
    std::vector<int64_t> targets(rows);
    std::mt19937_64 gen(132 + rows);
    for (int64_t r = 0; r < rows; ++r)
      targets[r] = r % 3 == 2 ? ignore : int64_t(std::uniform_int_distribution<int64_t>(0, V - 1)(gen));
    const std::vector<float> dlosses = uniform(rows, 0.1, 2, 133);
    const DevArray<bfloat16> dl(logits);
    const DevArray<float> ddl(dlosses);
    const DevArray<int64_t> dt(targets);

    DevArray<float> losses(poison(rows)), lse(poison(rows));
    cross_entropy_forward_cuda<bfloat16>(losses.p(), lse.p(), dl.p(), dt.p(), rows, V, ignore);
    std::vector<float> losses_cpu(rows), lse_cpu(rows);
    cross_entropy_forward_cpu<bfloat16>(losses_cpu.data(), lse_cpu.data(), logits.data(), targets.data(), rows, V,
                                        ignore);
    const std::vector<float> losses_got = losses.read(), lse_got = lse.read();
    CHECK(normwise_error(losses_got, widen(losses_cpu)) <= kTol);
    CHECK(normwise_error(lse_got, widen(lse_cpu)) <= kTol);
    for (int64_t r = 0; r < rows; ++r)
      if (targets[r] == ignore) CHECK((losses_got[r] == 0.f && lse_got[r] == 0.f));

    // Both backwards take the CPU's lse, so the comparison is of the backward alone.
    const DevArray<float> dlse(lse_cpu);
    std::vector<bfloat16> d_cpu(rows * V);
    cross_entropy_backward_cpu<bfloat16>(d_cpu.data(), dlosses.data(), logits.data(), lse_cpu.data(), targets.data(),
                                         rows, V, ignore);
    DevArray<bfloat16> d(poison_bf16(rows * V));
    cross_entropy_backward_cuda<bfloat16>(d.p(), ddl.p(), dl.p(), dlse.p(), dt.p(), rows, V, ignore);
    const std::vector<double> d_got = widen(d.read());
    CHECK(normwise_error(d_got, widen(d_cpu)) <= kBf16Tol);
    int64_t nonzero_ignored = 0;
    for (int64_t r = 0; r < rows; ++r)
      if (targets[r] == ignore)
        for (int64_t v = 0; v < V; ++v) nonzero_ignored += d_got[r * V + v] != 0.0;
    CHECK(nonzero_ignored == 0);
  }
}

TEST_CASE("CUDA cross-entropy: a target outside [0, V) gives NaN for its row, never a stray read, and is reported") {
  const int64_t rows = 4, V = 10, ignore = -100;
  const std::vector<int64_t> targets{3, V + 5, -1, ignore};
  const DevArray<float> logits(uniform(rows * V, -1, 1, 41)), dlosses(uniform(rows, 0.5, 1, 42));
  const DevArray<int64_t> t(targets);
  DevArray<float> losses(poison(rows)), lse(poison(rows)), d(poison(rows * V));
  cross_entropy_forward_cuda<float>(losses.p(), lse.p(), logits.p(), t.p(), rows, V, ignore);
  cross_entropy_backward_cuda<float>(d.p(), dlosses.p(), logits.p(), lse.p(), t.p(), rows, V, ignore);
  // The first read is the sync point where the recorded bad target becomes an error (which of
  // the two bad rows is recorded first depends on block scheduling); the record is then clear.
  const std::string msg = error_of([&] { losses.read(); });
  CHECK(msg.find("cross_entropy: target") != std::string::npos);
  CHECK((msg.find("index 15") != std::string::npos || msg.find("index -1") != std::string::npos));
  const std::vector<float> l = losses.read(), g = d.read();
  CHECK(std::isfinite(l[0]));
  CHECK(std::isnan(l[1]));
  CHECK(std::isnan(l[2]));
  CHECK(l[3] == 0.f);
  for (int64_t v = 0; v < V; ++v) {
    CHECK(std::isfinite(g[v]));
    CHECK(std::isnan(g[V + v]));
    CHECK(std::isnan(g[2 * V + v]));
    CHECK(g[3 * V + v] == 0.f);
  }
}

// ---------------------------------------------------------------- optimisers

namespace {

// Parameter tensors of assorted sizes: 1, odd ones, one past the kernels' grid stride (512
// blocks × 256 threads = 131072), so a thread updates two elements of it, and one past four
// strides, so a thread updates two groups of 4 in the float32 AdamW's 16-byte path.
const std::vector<int64_t> kSizes{1, 7, 257, 1000, 131073, 3, 4 * 131072 + 5};

struct OptimCase {
  std::vector<std::vector<float>> param, grad, m, v;
  explicit OptimCase(uint64_t seed) {
    for (size_t k = 0; k < kSizes.size(); ++k) {
      const size_t n = size_t(kSizes[k]);
      param.push_back(uniform(n, -1, 1, seed + 10 * k));
      grad.push_back(uniform(n, -1, 1, seed + 10 * k + 1));
      m.push_back(uniform(n, -0.1, 0.1, seed + 10 * k + 2));
      v.push_back(uniform(n, 0.01, 0.1, seed + 10 * k + 3));  // a second moment is positive
    }
  }
};

// The case on the GPU: its buffers and the device array of descriptors (decay on even k), with
// NaN-poisoned bfloat16 copies of the parameters on odd k when with_copy (the others have none).
struct DevOptim {
  std::vector<DevArray<float>> param, grad, m, v;
  std::vector<DevArray<bfloat16>> copy;
  DevArray<OptimTensor<float>> tensors;
  DevOptim(const OptimCase& c, bool with_m, bool with_v, bool with_copy = false) {
    std::vector<OptimTensor<float>> d;
    for (size_t k = 0; k < kSizes.size(); ++k) {
      param.emplace_back(c.param[k]);
      grad.emplace_back(c.grad[k]);
      m.emplace_back(c.m[k]);
      v.emplace_back(c.v[k]);
      copy.emplace_back(poison_bf16(size_t(kSizes[k])));
      d.push_back({param[k].p(), grad[k].p(), with_m ? m[k].p() : nullptr, with_v ? v[k].p() : nullptr, kSizes[k],
                   int32_t(k % 2 == 0), with_copy && k % 2 == 1 ? copy[k].p() : nullptr});
    }
    tensors = DevArray<OptimTensor<float>>(d);
  }
  // Tensor k's copy holds its updated parameter rounded once to bfloat16, bit for bit (or, for
  // a tensor without a copy, still the NaN poison).
  void check_copies(bool with_copy) const {
    for (size_t k = 0; k < kSizes.size(); ++k) {
      INFO("copy of tensor " << k);
      const std::vector<float> p = param[k].read();
      const std::vector<bfloat16> got = copy[k].read();
      int64_t wrong = 0;
      for (size_t i = 0; i < p.size(); ++i)
        wrong += with_copy && k % 2 == 1 ? got[i].bits != bfloat16(p[i]).bits : !std::isnan(float(got[i]));
      CHECK(wrong == 0);
    }
  }
};

// The case in float64 for the reference, with host descriptors.
struct RefOptim {
  std::vector<std::vector<double>> param, grad, m, v;
  std::vector<OptimTensor<double>> tensors;
  RefOptim(const OptimCase& c, bool with_m, bool with_v) {
    for (size_t k = 0; k < kSizes.size(); ++k) {
      param.push_back(widen(c.param[k]));
      grad.push_back(widen(c.grad[k]));
      m.push_back(widen(c.m[k]));
      v.push_back(widen(c.v[k]));
    }
    for (size_t k = 0; k < kSizes.size(); ++k)
      tensors.push_back({param[k].data(), grad[k].data(), with_m ? m[k].data() : nullptr,
                         with_v ? v[k].data() : nullptr, kSizes[k], int32_t(k % 2 == 0)});
  }
};

// Every updated tensor matches the reference normwise, and every parameter element matches it
// to within 1e-5 of its own size and of its update: an element the kernel skipped keeps its old
// value, off from the reference by its whole update.
void check_same(const OptimCase& c, const DevOptim& dev, const RefOptim& ref, bool with_m, bool with_v) {
  for (size_t k = 0; k < kSizes.size(); ++k) {
    INFO("tensor " << k << " of size " << kSizes[k]);
    const std::vector<float> p = dev.param[k].read();
    CHECK(normwise_error(p, ref.param[k]) <= kTol);
    int64_t off = 0;
    for (size_t i = 0; i < p.size(); ++i) {
      const double r = ref.param[k][i], update = r - c.param[k][i];
      off += std::abs(p[i] - r) > kTol * (std::abs(r) + std::abs(update));
    }
    CHECK(off == 0);
    if (with_m) CHECK(normwise_error(dev.m[k].read(), ref.m[k]) <= kTol);
    if (with_v) CHECK(normwise_error(dev.v[k].read(), ref.v[k]) <= kTol);
  }
}

}  // namespace

TEST_CASE("CUDA AdamW step over many tensors equals the reference, with and without a gradient scale and copies") {
  const OptimCase c(51);
  const AdamWStep step{1e-2, 0.9, 0.999, 1e-8, 0.1, 3};
  for (bool scaled : {false, true}) {
    INFO("scaled=" << scaled);
    DevOptim dev(c, true, true, scaled);
    RefOptim ref(c, true, true);
    const float scale = 0.375f;
    const DevArray<float> dscale(std::vector<float>{scale});
    const double scale64 = scale;
    adamw_step_cuda<float>(dev.tensors.p(), int64_t(kSizes.size()), step, scaled ? dscale.p() : nullptr);
    adamw_step_ref<double>(ref.tensors.data(), int64_t(kSizes.size()), step, scaled ? &scale64 : nullptr);
    check_same(c, dev, ref, true, true);
    dev.check_copies(scaled);
  }
}

TEST_CASE("CUDA AdamW: buffers off the 16-byte grid (element by element) give the bits of aligned ones (groups of 4)") {
  const OptimCase c(57);
  const AdamWStep step{1e-2, 0.9, 0.999, 1e-8, 0.1, 2};
  // Tensor k's buffers as given (aligned), and the same values one element into buffers of
  // n + 1 (misaligned), with bfloat16 copies; both updated by one call each.
  std::vector<DevArray<float>> bufs;
  std::vector<DevArray<bfloat16>> copies;
  std::vector<OptimTensor<float>> da, dm;
  for (size_t k = 0; k < kSizes.size(); ++k) {
    const int64_t n = kSizes[k];
    for (const std::vector<float>* v : {&c.param[k], &c.grad[k], &c.m[k], &c.v[k]}) {
      bufs.emplace_back(*v);
      std::vector<float> shifted(1, kNaN);
      shifted.insert(shifted.end(), v->begin(), v->end());
      bufs.emplace_back(shifted);
    }
    copies.emplace_back(poison_bf16(size_t(n)));
    copies.emplace_back(poison_bf16(size_t(n) + 1));
  }
  for (size_t k = 0; k < kSizes.size(); ++k) {
    DevArray<float>* b = &bufs[8 * k];
    da.push_back({b[0].p(), b[2].p(), b[4].p(), b[6].p(), kSizes[k], int32_t(k % 2), copies[2 * k].p()});
    dm.push_back({b[1].p() + 1, b[3].p() + 1, b[5].p() + 1, b[7].p() + 1, kSizes[k], int32_t(k % 2),
                  copies[2 * k + 1].p() + 1});
  }
  const DevArray<OptimTensor<float>> ta(da), tm(dm);
  adamw_step_cuda<float>(ta.p(), int64_t(da.size()), step, nullptr);
  adamw_step_cuda<float>(tm.p(), int64_t(dm.size()), step, nullptr);
  for (size_t k = 0; k < kSizes.size(); ++k) {
    INFO("tensor " << k << " of size " << kSizes[k]);
    for (int j : {0, 4, 6}) {  // param, m, v
      const std::vector<float> a = bufs[8 * k + j].read(), m = bufs[8 * k + j + 1].read();
      CHECK(std::memcmp(a.data(), m.data() + 1, a.size() * sizeof(float)) == 0);
    }
    const std::vector<bfloat16> ca = copies[2 * k].read(), cm = copies[2 * k + 1].read();
    CHECK(std::memcmp(ca.data(), cm.data() + 1, ca.size() * sizeof(bfloat16)) == 0);
  }
}

TEST_CASE("CUDA SGD step over many tensors equals the reference, with and without momentum and copies") {
  const OptimCase c(61);
  for (double momentum : {0.0, 0.9}) {
    INFO("momentum=" << momentum);
    const bool with_m = momentum > 0.0;
    const SGDStep step{0.05, momentum, 0.01};
    DevOptim dev(c, with_m, false, with_m);
    RefOptim ref(c, with_m, false);
    const DevArray<float> dscale(std::vector<float>{0.75f});
    const double scale64 = 0.75;
    sgd_step_cuda<float>(dev.tensors.p(), int64_t(kSizes.size()), step, dscale.p());
    sgd_step_ref<double>(ref.tensors.data(), int64_t(kSizes.size()), step, &scale64);
    check_same(c, dev, ref, with_m, false);
    dev.check_copies(with_m);
  }
}

TEST_CASE("CUDA gradient norm and clipping: equal the reference, deterministic, no host round trip") {
  const OptimCase c(71);
  DevOptim dev(c, true, true);
  RefOptim ref(c, true, true);
  const int64_t count = int64_t(kSizes.size());
  double norm_ref = 0.0, scale_ref = 0.0;
  grad_norm_ref<double>(&norm_ref, &scale_ref, ref.tensors.data(), count, 1e9);
  CHECK(scale_ref == 1.0);

  // Below the norm: clipped. The squares of float32 values are exact in double, so the device
  // sum differs from the reference by double rounding only: 1e-12 relative.
  const double max_norm = norm_ref / 4;
  DevArray<double> norm(std::vector<double>{std::nan("")});
  DevArray<float> scale(poison(1));
  const CudaSyncCounts before = cuda_sync_counts();
  grad_norm_cuda<float>(norm.p(), scale.p(), dev.tensors.p(), count, max_norm);
  // The clipping factor feeds the step on the device: one norm, one step, no host read.
  const AdamWStep step{1e-3, 0.9, 0.999, 1e-8, 0.1, 1};
  adamw_step_cuda<float>(dev.tensors.p(), count, step, scale.p());
  const CudaSyncCounts after = cuda_sync_counts();
  CHECK(after.device_to_host_copies == before.device_to_host_copies);
  CHECK(after.synchronizations == before.synchronizations);

  const double norm_got = norm.read()[0];
  CHECK(std::abs(norm_got - norm_ref) <= 1e-12 * norm_ref);
  const float scale_got = scale.read()[0];
  const double want = max_norm / (norm_ref + 1e-6);
  CHECK(std::abs(scale_got - want) <= 1e-6 * want);
  const double scale64 = scale_got;
  adamw_step_ref<double>(ref.tensors.data(), count, step, &scale64);
  check_same(c, dev, ref, true, true);

  // Above the norm: factor 1. A repeat gives the same bits.
  DevArray<double> norm2(std::vector<double>{std::nan("")});
  DevArray<float> scale2(poison(1));
  grad_norm_cuda<float>(norm2.p(), scale2.p(), dev.tensors.p(), count, norm_ref * 2);
  CHECK(norm2.read()[0] == norm_got);
  CHECK(scale2.read()[0] == 1.f);
}

TEST_CASE("CUDA: a non-finite gradient makes the norm's factor NaN, and the steps given it write nothing") {
  for (const float bad : {kNaN, std::numeric_limits<float>::infinity()}) {
    CAPTURE(bad);
    OptimCase c(73);
    c.grad[2][5] = bad;
    DevOptim dev(c, true, true, true);
    const int64_t count = int64_t(kSizes.size());
    DevArray<double> norm(std::vector<double>{0.0});
    DevArray<float> scale(std::vector<float>{1.0f});
    grad_norm_cuda<float>(norm.p(), scale.p(), dev.tensors.p(), count, 1.0);
    CHECK_FALSE(std::isfinite(norm.read()[0]));
    CHECK(std::isnan(scale.read()[0]));
    adamw_step_cuda<float>(dev.tensors.p(), count, {1e-2, 0.9, 0.999, 1e-8, 0.1, 2}, scale.p());
    sgd_step_cuda<float>(dev.tensors.p(), count, {0.05, 0.9, 0.01}, scale.p());
    for (size_t k = 0; k < kSizes.size(); ++k) {
      CAPTURE(k);
      CHECK(dev.param[k].read() == c.param[k]);
      CHECK(dev.m[k].read() == c.m[k]);
      CHECK(dev.v[k].read() == c.v[k]);
    }
    dev.check_copies(false);  // the copies keep their poison: not one was written
  }
}

TEST_CASE("CUDA optimiser kernels reject host memory") {
  std::vector<OptimTensor<float>> host(1);
  const std::string m = error_of([&] { adamw_step_cuda<float>(host.data(), 1, {1e-3, 0.9, 0.999, 1e-8, 0, 1}, nullptr); });
  CHECK_MESSAGE(m.find("adamw_step_cuda: tensors is not CUDA device memory") != std::string::npos, m);
  const std::string t = error_of([&] { adamw_step_cuda<float>(nullptr, 1, {1e-3, 0.9, 0.999, 1e-8, 0, 1}, nullptr); });
  CHECK_MESSAGE(t.find("adamw_step_cuda: tensors is null") != std::string::npos, t);
}

TEST_CASE("CUDA widen_gradients: every tensor's bfloat16 values widened into a poisoned float32 buffer, bit for bit") {
  // kSizes plus an empty tensor; random bfloat16 bit patterns of finite values, signed zeros and
  // subnormals included, so that any rounding or flushing would show.
  std::vector<int64_t> sizes = kSizes;
  sizes.push_back(0);
  std::mt19937 gen(83);
  std::vector<DevArray<bfloat16>> src;
  std::vector<DevArray<float>> dst;
  std::vector<std::vector<bfloat16>> host;
  std::vector<WidenTensor> d;
  for (int64_t n : sizes) {
    std::vector<bfloat16> v(static_cast<size_t>(n));
    for (bfloat16& e : v) {
      do e.bits = uint16_t(gen());
      while ((e.bits & 0x7f80) == 0x7f80);  // no inf or NaN: a NaN poison must stay detectable
    }
    host.push_back(v);
    src.emplace_back(v);
    dst.emplace_back(std::vector<float>(size_t(n), kNaN));
  }
  for (size_t k = 0; k < sizes.size(); ++k) d.push_back({dst[k].p(), src[k].p(), sizes[k]});
  const DevArray<WidenTensor> table(d);
  widen_gradients_cuda(table.p(), int64_t(d.size()));
  for (size_t k = 0; k < sizes.size(); ++k) {
    INFO("tensor " << k << " of size " << sizes[k]);
    const std::vector<float> got = dst[k].read();
    std::vector<float> want(host[k].size());
    const WidenTensor h{want.data(), host[k].data(), sizes[k]};
    widen_gradients_cpu(&h, 1);
    int64_t wrong = 0;
    for (size_t i = 0; i < got.size(); ++i) wrong += std::memcmp(&got[i], &want[i], sizeof(float)) != 0;
    CHECK(wrong == 0);
  }
  const std::string m = error_of([&] { widen_gradients_cuda(d.data(), 1); });
  CHECK_MESSAGE(m.find("widen_gradients_cuda: tensors is not CUDA device memory") != std::string::npos, m);
}
