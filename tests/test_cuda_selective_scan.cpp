// tests/test_cuda_selective_scan.cpp: the CUDA selective-scan kernels (ssm/selective_scan.cu)
// against the CPU reference (ssm/selective_scan.h). Skipped without a CUDA device
// (tests/cuda_doctest_main.cpp).
//
// 1. Forward and backward equal the reference over the CPU tests' shapes plus long sequences
//    (L up to 8192; where they are few blocks, the forward runs them in segments), every
//    state bound (N = 1 .. 64), Di not a multiple of the 128-channel
//    block, B = 1, strided rows (column views of wider buffers) and every optional operand.
//    The reference runs in float64 on the same inputs, so the error measured is the CUDA
//    kernels' own; tolerance: normwise relative error ||got − ref||₂ / ||ref||₂ <= 1e-5 per
//    output tensor in float32 (float32 recurrences are contractive, a < 1, so rounding does not
//    grow with L; the sums over L·B terms of dA, dD add about eps·sqrt(L) relative), <= 1e-2 in
//    bfloat16 (the kernels compute in float32; each output is rounded once to 8 significant
//    bits, relative error <= 2^-9). The inputs are exact in bfloat16, so both storage types
//    run on the very values the reference sees. Row views are 16-byte aligned in some
//    configurations (the forward's asynchronous tile copies) and not in others (its
//    element-wise copies).
//    Every device output buffer is poisoned with NaN before each call: an element the kernel
//    fails to write stays NaN and fails; the cells outside the views must still be NaN after.
//    Input padding cells are NaN too, so reading outside a view poisons a result.
// 2. Unwanted gradients (dD, dz, dh0 = nullptr) are left untouched and the others unchanged.
// 3. The backward is bit-identical on repeat (no order-dependent atomics).
// 4. h_last -> h0 hand-off: two calls of L/2 equal one call of L; step mode (L = 1, h_last = h0
//    in place, the recurrent generation step) reproduces the full scan.
// 5. The calls queue work only: no device-to-host copy, no synchronisation.
// 6. Bad calls (N > 64, host pointers) throw simba::Error naming the problem.
// 7. The fused recurrent step (ssm/selective_step.h) against its float64 reference; the mixer's
//    step after in_proj (ssm/mixer_step.h) too.
// 8. A training forward's checkpoints against the reference's states, and the backward that
//    starts from them against the one that sweeps for itself.
// 9. The step sizes Δ = softplus(dt + b) (ssm/delta_softplus.h) against the float64 reference,
//    into a poisoned output, in 16-byte pieces and element by element; in float32 the same bits
//    as the GPU's add and softplus ops; the op's gradients equal the CPU's.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "ssm/delta_softplus.h"
#include "ssm/mixer_step.h"
#include "ssm/selective_scan.h"
#include "ssm/selective_step.h"
#include "tensor/cuda_device.h"
#include "tensor/error.h"
#include "tensor/half_types.h"
#include "tensor/random.h"
#include "tensor/storage.h"
#include "tests/cuda_test_util.h"
#include "tests/step_inputs.h"

using namespace simba;

namespace {

using cuda_test::kNaN;
using DevBuf = cuda_test::DevArray<float>;

// A random value rounded to bfloat16, so that float32 and bfloat16 buffers hold it exactly.
float bf16_exact(double v) { return float(bfloat16(v)); }

struct Config {
  int64_t B, L, Di, N;
  bool z, D, h0, dh_last;
  int64_t pad;  // extra row stride beyond the packed width of every sequence buffer
};

std::string describe(const Config& c) {
  return "B=" + std::to_string(c.B) + " L=" + std::to_string(c.L) + " Di=" + std::to_string(c.Di) +
         " N=" + std::to_string(c.N) + " z=" + std::to_string(c.z) + " D=" + std::to_string(c.D) +
         " h0=" + std::to_string(c.h0) + " dh_last=" + std::to_string(c.dh_last) +
         " pad=" + std::to_string(c.pad);
}

// Host inputs laid out like the Mamba block: u and z are the two halves of one in_proj-like
// buffer of width 2·Di, B and C sit after R dt columns of an x_proj-like buffer of width
// R + 2N; every row has cfg.pad extra NaN cells. R = 4 without padding (B and C rows then
// start 16-byte aligned), else 3. Fresh random values, never zeros, exact in bfloat16.
struct Inputs {
  Config c;
  int64_t R;
  int64_t ld_xz, ld_bc, ld_d;
  std::vector<float> xz, bc, delta, dout, A, D, h0, dh_last;

  Inputs(const Config& cfg, uint64_t seed) : c(cfg), R(cfg.pad == 0 ? 4 : 3) {
    const int64_t rows = c.B * c.L;
    ld_xz = 2 * c.Di + c.pad;
    ld_bc = R + 2 * c.N + c.pad;
    ld_d = c.Di + c.pad;
    xz.assign(rows * ld_xz, kNaN);
    bc.assign(rows * ld_bc, kNaN);
    delta.assign(rows * ld_d, kNaN);
    dout.assign(rows * ld_d, kNaN);
    std::mt19937_64 gen(seed);
    auto uni = [&](double lo, double hi) {
      return bf16_exact(std::uniform_real_distribution<double>(lo, hi)(gen));
    };
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t d = 0; d < c.Di; ++d) {
        xz[r * ld_xz + d] = uni(-1, 1);
        if (c.z) xz[r * ld_xz + c.Di + d] = uni(-2, 2);
        delta[r * ld_d + d] = uni(0.05, 1.0);
        dout[r * ld_d + d] = uni(-1, 1);
      }
      for (int64_t n = 0; n < 2 * c.N; ++n) bc[r * ld_bc + R + n] = uni(-1, 1);
    }
    A.resize(c.Di * c.N);
    for (float& a : A) a = -uni(0.1, 3.0);
    if (c.D) D.resize(c.Di);
    for (float& v : D) v = uni(-1, 1);
    if (c.h0) h0.resize(c.B * c.Di * c.N);
    for (float& v : h0) v = uni(-1, 1);
    if (c.dh_last) dh_last.resize(c.B * c.Di * c.N);
    for (float& v : dh_last) v = uni(-1, 1);
  }
};

template <class T>
std::vector<double> widen(const std::vector<T>& v) {
  std::vector<double> w;
  for (const T& e : v) w.push_back(double(e));
  return w;
}

// The host values in storage type T (exact: they are bfloat16 values), NaN cells included.
template <class T>
std::vector<T> stored(const std::vector<float>& v) {
  std::vector<T> s;
  for (float e : v) s.push_back(T(e));
  return s;
}

// A poisoned device buffer of n elements of T.
template <class T>
cuda_test::DevArray<T> poisoned(int64_t n) {
  return cuda_test::DevArray<T>(std::vector<T>(n, T(kNaN)));
}

// The inputs on the GPU in storage type T.
template <class T>
struct DevInputs {
  using Buf = cuda_test::DevArray<T>;
  const Inputs& in;
  Buf xz, bc, delta, dout, A, D, h0, dh_last;
  explicit DevInputs(const Inputs& i)
      : in(i), xz(stored<T>(i.xz)), bc(stored<T>(i.bc)), delta(stored<T>(i.delta)),
        dout(stored<T>(i.dout)), A(stored<T>(i.A)) {
    if (i.c.D) D = Buf(stored<T>(i.D));
    if (i.c.h0) h0 = Buf(stored<T>(i.h0));
    if (i.c.dh_last) dh_last = Buf(stored<T>(i.dh_last));
  }
  SeqView<const T> u() const { return {xz.p(), in.ld_xz}; }
  SeqView<const T> z() const { return {in.c.z ? xz.p() + in.c.Di : nullptr, in.ld_xz}; }
  SeqView<const T> Bm() const { return {bc.p() + in.R, in.ld_bc}; }
  SeqView<const T> Cm() const { return {bc.p() + in.R + in.c.N, in.ld_bc}; }
  SeqView<const T> dl() const { return {delta.p(), in.ld_d}; }
  SeqView<const T> go() const { return {dout.p(), in.ld_d}; }
};

// Named results, each the valid elements in canonical order (b, t, w) / (d, n) / (b, d, n).
using Results = std::map<std::string, std::vector<double>>;

// The valid (rows, w) block at column c0 of a buffer with row stride ld; checks that every cell
// outside the column ranges `written` (all the views the kernel may write) is still NaN.
template <class T>
std::vector<double> take(const std::vector<T>& buf, int64_t rows, int64_t ld, int64_t c0,
                         int64_t w, const std::vector<std::pair<int64_t, int64_t>>& written) {
  std::vector<bool> valid(buf.size(), false);
  for (int64_t r = 0; r < rows; ++r)
    for (auto [a, n] : written)
      for (int64_t c = a; c < a + n; ++c) valid[r * ld + c] = true;
  int64_t stray = 0;
  for (size_t i = 0; i < buf.size(); ++i) stray += !valid[i] && !std::isnan(double(buf[i]));
  CHECK_MESSAGE(stray == 0, "kernel wrote " << stray << " cells outside its views");
  std::vector<double> v;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = c0; c < c0 + w; ++c) v.push_back(double(buf[r * ld + c]));
  return v;
}

// The forward's results; with_checkpoints also returns the checkpoints (ssm/selective_scan.h).
Results reference_forward(const Inputs& in, bool with_checkpoints = false) {
  const Config& c = in.c;
  const std::vector<double> xz = widen(in.xz), bc = widen(in.bc), dl = widen(in.delta);
  const std::vector<double> A = widen(in.A), D = widen(in.D), h0 = widen(in.h0);
  std::vector<double> out(c.B * c.L * c.Di), h_last(c.B * c.Di * c.N);
  std::vector<double> ck(with_checkpoints ? c.B * scan_checkpoint_count(c.L) * c.Di * c.N : 0);
  selective_scan_forward_ref<double>({out.data(), c.Di}, h_last.data(), {xz.data(), in.ld_xz},
                                     {dl.data(), in.ld_d}, A.data(), {bc.data() + in.R, in.ld_bc},
                                     {bc.data() + in.R + c.N, in.ld_bc}, c.D ? D.data() : nullptr,
                                     {c.z ? xz.data() + c.Di : nullptr, in.ld_xz},
                                     c.h0 ? h0.data() : nullptr, c.B, c.L, c.Di, c.N,
                                     with_checkpoints ? ck.data() : nullptr);
  Results r{{"out", out}, {"h_last", h_last}};
  if (with_checkpoints) r["checkpoints"] = ck;
  return r;
}

Results reference_backward(const Inputs& in) {
  const Config& c = in.c;
  const std::vector<double> xz = widen(in.xz), bc = widen(in.bc), dl = widen(in.delta);
  const std::vector<double> go = widen(in.dout), A = widen(in.A), D = widen(in.D);
  const std::vector<double> h0 = widen(in.h0), dh = widen(in.dh_last);
  const int64_t rows = c.B * c.L, Di = c.Di, N = c.N;
  std::vector<double> du(rows * Di), dz(rows * Di), ddelta(rows * Di), dB(rows * N), dC(rows * N);
  std::vector<double> dA(Di * N), dD(Di), dh0(c.B * Di * N);
  selective_scan_backward_ref<double>(
      {du.data(), Di}, {ddelta.data(), Di}, dA.data(), {dB.data(), N}, {dC.data(), N},
      c.D ? dD.data() : nullptr, {c.z ? dz.data() : nullptr, Di}, c.h0 ? dh0.data() : nullptr,
      {go.data(), in.ld_d}, c.dh_last ? dh.data() : nullptr, {xz.data(), in.ld_xz},
      {dl.data(), in.ld_d}, A.data(), {bc.data() + in.R, in.ld_bc},
      {bc.data() + in.R + N, in.ld_bc}, c.D ? D.data() : nullptr,
      {c.z ? xz.data() + Di : nullptr, in.ld_xz}, c.h0 ? h0.data() : nullptr, c.B, c.L, Di, N);
  Results r{{"u", du}, {"delta", ddelta}, {"A", dA}, {"B", dB}, {"C", dC}};
  if (c.z) r["z"] = dz;
  if (c.D) r["D"] = dD;
  if (c.h0) r["h0"] = dh0;
  return r;
}

// checkpoints: null, or a device buffer of scan_checkpoint_count(L)·B·Di·N elements the
// forward writes (read back into "checkpoints").
template <class T>
Results cuda_forward(const DevInputs<T>& dev, cuda_test::DevArray<acc_t<T>>* checkpoints = nullptr) {
  const Inputs& in = dev.in;
  const Config& c = in.c;
  auto out = poisoned<T>(c.B * c.L * in.ld_d), h_last = poisoned<T>(c.B * c.Di * c.N);
  selective_scan_forward_cuda<T>({out.p(), in.ld_d}, h_last.p(), dev.u(), dev.dl(), dev.A.p(), dev.Bm(),
                                 dev.Cm(), dev.D.p(), dev.z(), dev.h0.p(), c.B, c.L, c.Di, c.N,
                                 checkpoints ? checkpoints->p() : nullptr);
  Results r{{"out", take(out.read(), c.B * c.L, in.ld_d, 0, c.Di, {{0, c.Di}})}, {"h_last", widen(h_last.read())}};
  if (checkpoints) r["checkpoints"] = widen(checkpoints->read());
  return r;
}

// optional = false passes nullptr for dD, dz and dh0 even where the forward had D, z and h0,
// and checks those buffers stay untouched (all NaN).
template <class T>
Results cuda_backward(const DevInputs<T>& dev, bool optional = true, const acc_t<T>* checkpoints = nullptr) {
  const Inputs& in = dev.in;
  const Config& c = in.c;
  const int64_t rows = c.B * c.L, R = in.R;
  const bool want_D = c.D && optional, want_z = c.z && optional, want_h0 = c.h0 && optional;
  auto dxz = poisoned<T>(rows * in.ld_xz), dbc = poisoned<T>(rows * in.ld_bc);
  auto ddelta = poisoned<T>(rows * in.ld_d), dA = poisoned<T>(c.Di * c.N);
  auto dD = poisoned<T>(c.Di), dh0 = poisoned<T>(c.B * c.Di * c.N);
  selective_scan_backward_cuda<T>(
      {dxz.p(), in.ld_xz}, {ddelta.p(), in.ld_d}, dA.p(), {dbc.p() + R, in.ld_bc},
      {dbc.p() + R + c.N, in.ld_bc}, want_D ? dD.p() : nullptr,
      {want_z ? dxz.p() + c.Di : nullptr, in.ld_xz}, want_h0 ? dh0.p() : nullptr, dev.go(),
      dev.dh_last.p(), dev.u(), dev.dl(), dev.A.p(), dev.Bm(), dev.Cm(), dev.D.p(), dev.z(),
      dev.h0.p(), c.B, c.L, c.Di, c.N, checkpoints);
  std::vector<std::pair<int64_t, int64_t>> xz_cols = {{0, c.Di}};
  if (want_z) xz_cols.push_back({c.Di, c.Di});
  const std::vector<std::pair<int64_t, int64_t>> bc_cols = {{R, c.N}, {R + c.N, c.N}};
  const std::vector<T> hxz = dxz.read(), hbc = dbc.read();
  Results r;
  r["u"] = take(hxz, rows, in.ld_xz, 0, c.Di, xz_cols);
  if (want_z) r["z"] = take(hxz, rows, in.ld_xz, c.Di, c.Di, xz_cols);
  r["delta"] = take(ddelta.read(), rows, in.ld_d, 0, c.Di, {{0, c.Di}});
  r["B"] = take(hbc, rows, in.ld_bc, R, c.N, bc_cols);
  r["C"] = take(hbc, rows, in.ld_bc, R + c.N, c.N, bc_cols);
  r["A"] = widen(dA.read());
  const auto all_nan = [](const std::vector<T>& v) {
    for (const T& e : v)
      if (!std::isnan(double(e))) return false;
    return true;
  };
  if (want_D) r["D"] = widen(dD.read());
  else CHECK(all_nan(dD.read()));
  if (want_h0) r["h0"] = widen(dh0.read());
  else CHECK(all_nan(dh0.read()));
  return r;
}

// ||got − ref||₂ / ||ref||₂, or ||got||₂ where ref is exactly zero (dA with L = 1 and no h0);
// any NaN gives infinity.
double normwise_error(const std::vector<double>& got, const std::vector<double>& ref) {
  REQUIRE(got.size() == ref.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  const double e = den == 0 ? std::sqrt(num) : std::sqrt(num) / std::sqrt(den);
  return std::isnan(e) ? INFINITY : e;
}

constexpr double kTol = 1e-5, kBf16Tol = 1e-2;

void check_close(const Results& got, const Results& ref, const std::string& what, double& worst,
                 double tol = kTol) {
  REQUIRE(got.size() == ref.size());
  for (const auto& [name, r] : ref) {
    REQUIRE(got.count(name) == 1);
    const double e = normwise_error(got.at(name), r);
    worst = std::max(worst, e);
    CHECK_MESSAGE(e <= tol, what << " " << name << ": normwise error " << e << " > " << tol);
  }
}

// The CPU tests' shapes (tests/test_selective_scan.cpp) and the CUDA-specific edges: both
// sides of every lanes-per-channel bound (N = 1, 3, 4, 7, 8, 9, 16, 17, 32, 33, 64), chunk
// lengths around the kernels' chunks (8 .. 64 steps), Di below, at and past the channel blocks
// (up to 32 channels), L up to 8192, B = 1.
const std::vector<Config> kConfigs = {
    {1, 1, 5, 1, false, false, false, false, 0},    {2, 7, 33, 4, true, true, true, true, 3},
    {3, 31, 17, 16, true, false, false, false, 1},  {1, 32, 64, 16, false, true, true, false, 0},
    {1, 33, 31, 2, true, true, false, true, 0},     {2, 63, 129, 3, true, false, true, true, 2},
    {2, 65, 127, 16, false, false, true, true, 0},  {2, 129, 40, 3, true, true, false, true, 5},
    {2, 300, 70, 16, true, true, true, true, 2},    {5, 130, 100, 8, false, true, true, true, 1},
    {1, 129, 300, 4, true, false, true, false, 0},  {3, 10, 1664, 4, true, true, true, true, 1},
    {2, 100, 130, 7, true, true, true, true, 1},    {2, 97, 200, 9, true, true, true, true, 0},
    {1, 77, 129, 17, true, true, true, true, 3},    {2, 50, 257, 32, true, true, true, true, 0},
    {1, 41, 131, 33, true, true, true, true, 1},    {2, 23, 150, 64, true, true, true, true, 2},
    {1, 1, 300, 64, true, true, true, true, 0},     {1, 8192, 130, 16, true, true, true, true, 1},
    {1, 4096, 70, 64, true, true, true, true, 0},   {2, 2048, 129, 1, false, true, false, true, 0},
    // Long sequences over few blocks run in segments (ssm/selective_scan.cu, FwdMode); here the
    // last segment is shorter than the others and ends in a partial chunk.
    {1, 3001, 40, 16, true, true, true, true, 1},   {1, 2500, 33, 5, false, true, true, false, 0},
};

}  // namespace

TEST_CASE("CUDA selective scan matches the float64 reference, forward and backward, float32 and bfloat16") {
  double worst_fwd = 0, worst_bwd = 0, worst_fwd16 = 0, worst_bwd16 = 0;
  uint64_t seed = 1000;
  for (const Config& cfg : kConfigs) {
    CAPTURE(describe(cfg));
    const Inputs in(cfg, ++seed);
    const Results ref_fwd = reference_forward(in), ref_bwd = reference_backward(in);
    {
      const DevInputs<float> dev(in);
      check_close(cuda_forward(dev), ref_fwd, "float32 forward", worst_fwd);
      check_close(cuda_backward(dev), ref_bwd, "float32 backward", worst_bwd);
    }
    const DevInputs<bfloat16> dev16(in);
    check_close(cuda_forward(dev16), ref_fwd, "bfloat16 forward", worst_fwd16, kBf16Tol);
    check_close(cuda_backward(dev16), ref_bwd, "bfloat16 backward", worst_bwd16, kBf16Tol);
  }
  MESSAGE("CUDA vs float64 reference: max normwise error float32 forward " << worst_fwd << ", backward "
          << worst_bwd << " (tolerance " << kTol << "); bfloat16 forward " << worst_fwd16 << ", backward "
          << worst_bwd16 << " (tolerance " << kBf16Tol << ")");
}

// A training forward's checkpoints (ssm/selective_scan.h): the states the reference passes
// through, written into a NaN-poisoned buffer, among them segmented forwards (the last two
// shapes); the forward's outputs are unchanged by writing them, and the backward that starts
// from them instead of its own sweep gives the sweep's results.
template <class T>
void check_checkpoints(const Inputs& in, double bwd_tol, double& worst) {
  const Config& c = in.c;
  const DevInputs<T> dev(in);
  cuda_test::DevArray<acc_t<T>> ck(std::vector<acc_t<T>>(c.B * scan_checkpoint_count(c.L) * c.Di * c.N, kNaN));
  Results with = cuda_forward(dev, &ck);
  const Results ref = reference_forward(in, true);
  check_close({{"checkpoints", with.at("checkpoints")}}, {{"checkpoints", ref.at("checkpoints")}},
              "checkpoints", worst);
  with.erase("checkpoints");
  CHECK(with == cuda_forward(dev));
  check_close(cuda_backward(dev, true, ck.p()), cuda_backward(dev), "backward from the checkpoints", worst, bwd_tol);
}

TEST_CASE("CUDA selective scan checkpoints equal the reference's states; the backward from them equals the sweep's") {
  double worst = 0, worst16 = 0;
  uint64_t seed = 700;
  for (const Config& cfg : {kConfigs[1], kConfigs[8], kConfigs[13], kConfigs[19], kConfigs[22], kConfigs[23]}) {
    CAPTURE(describe(cfg));
    const Inputs in(cfg, ++seed);
    check_checkpoints<float>(in, 1e-6, worst);
    check_checkpoints<bfloat16>(in, 1e-3, worst16);  // outputs rounded to bfloat16: an ulp here and there
  }
  MESSAGE("checkpoints and backward from them: max normwise error float32 " << worst << ", bfloat16 " << worst16);
}

TEST_CASE("CUDA selective scan backward skips unwanted dD, dz, dh0 and is bit-identical on repeat") {
  const Inputs in({2, 170, 140, 16, true, true, true, true, 1}, 9);
  const DevInputs<float> dev(in);
  const Results all = cuda_backward(dev), again = cuda_backward(dev);
  CHECK(all == again);
  const Results some = cuda_backward(dev, false);
  REQUIRE(some.size() == 5);  // u, delta, A, B, C
  for (const auto& [name, v] : some) CHECK(v == all.at(name));
}

TEST_CASE("CUDA selective scan h_last hand-off and in-place step mode reproduce the full scan") {
  const int64_t B = 2, L = 150, Di = 140, N = 16, L1 = 75;
  const Inputs in({B, L, Di, N, true, true, true, true, 1}, 21);
  const DevInputs<float> dev(in);
  const Results full = cuda_forward(dev);
  const Results full_bwd = cuda_backward(dev);

  // A (B, L, W) view places batch row b at rows b·L of the call's own L, so a time segment of a
  // batched operand is not a SeqView; each batch row is therefore handed off on its own, through
  // B = 1 calls on the segment [t0, t0 + len) of row b: no copies.
  const int64_t ld_out = in.ld_d;
  auto seg = [&](SeqView<const float> v, int64_t b, int64_t t0) {
    return SeqView<const float>{v.p + (b * L + t0) * v.ld, v.ld};
  };
  auto seg_out = [&](const DevBuf& buf, int64_t w, int64_t b, int64_t t0) {
    return SeqView<float>{buf.p() + (b * L + t0) * w, w};
  };
  auto state_of = [&](const float* p, int64_t b) { return p + b * Di * N; };
  auto state_of_mut = [&](const DevBuf& buf, int64_t b) { return buf.p() + b * Di * N; };

  SUBCASE("two halves with h_last -> h0 equal one call, forward and backward") {
    DevBuf out(std::vector<float>(B * L * ld_out, kNaN));
    DevBuf h_mid(std::vector<float>(B * Di * N, kNaN)), h_last(std::vector<float>(B * Di * N, kNaN));
    for (int64_t b = 0; b < B; ++b) {
      selective_scan_forward_cuda<float>(seg_out(out, ld_out, b, 0), state_of_mut(h_mid, b), seg(dev.u(), b, 0),
                                         seg(dev.dl(), b, 0), dev.A.p(), seg(dev.Bm(), b, 0), seg(dev.Cm(), b, 0),
                                         dev.D.p(), seg(dev.z(), b, 0), state_of(dev.h0.p(), b), 1, L1, Di, N);
      selective_scan_forward_cuda<float>(seg_out(out, ld_out, b, L1), state_of_mut(h_last, b), seg(dev.u(), b, L1),
                                         seg(dev.dl(), b, L1), dev.A.p(), seg(dev.Bm(), b, L1),
                                         seg(dev.Cm(), b, L1), dev.D.p(), seg(dev.z(), b, L1),
                                         state_of(h_mid.p(), b), 1, L - L1, Di, N);
    }
    // Each thread runs the same operations in the same order: bit-identical.
    CHECK(take(out.read(), B * L, ld_out, 0, Di, {{0, Di}}) == full.at("out"));
    CHECK(widen(h_last.read()) == full.at("h_last"));

    // Backward: dh0 of the second half is dh_last of the first; dA and dD, sums over batch and
    // time, are the sums of the four calls' results.
    const int64_t rows = B * L;
    DevBuf du(std::vector<float>(rows * Di, kNaN)), dz(std::vector<float>(rows * Di, kNaN));
    DevBuf dd(std::vector<float>(rows * Di, kNaN)), dB(std::vector<float>(rows * N, kNaN));
    DevBuf dC(std::vector<float>(rows * N, kNaN)), dh_mid(std::vector<float>(B * Di * N, kNaN));
    DevBuf dh0(std::vector<float>(B * Di * N, kNaN));
    DevBuf dA_call(std::vector<float>(Di * N, kNaN)), dD_call(std::vector<float>(Di, kNaN));
    std::vector<double> dA(Di * N, 0.0), dD(Di, 0.0);
    auto add_call = [&] {
      const std::vector<float> a = dA_call.read(), d = dD_call.read();
      for (size_t i = 0; i < dA.size(); ++i) dA[i] += a[i];
      for (size_t i = 0; i < dD.size(); ++i) dD[i] += d[i];
    };
    for (int64_t b = 0; b < B; ++b) {
      selective_scan_backward_cuda<float>(
          seg_out(du, Di, b, L1), seg_out(dd, Di, b, L1), dA_call.p(), seg_out(dB, N, b, L1),
          seg_out(dC, N, b, L1), dD_call.p(), seg_out(dz, Di, b, L1), state_of_mut(dh_mid, b),
          seg(dev.go(), b, L1), state_of(dev.dh_last.p(), b), seg(dev.u(), b, L1), seg(dev.dl(), b, L1),
          dev.A.p(), seg(dev.Bm(), b, L1), seg(dev.Cm(), b, L1), dev.D.p(), seg(dev.z(), b, L1),
          state_of(h_mid.p(), b), 1, L - L1, Di, N);
      add_call();
      selective_scan_backward_cuda<float>(
          seg_out(du, Di, b, 0), seg_out(dd, Di, b, 0), dA_call.p(), seg_out(dB, N, b, 0), seg_out(dC, N, b, 0),
          dD_call.p(), seg_out(dz, Di, b, 0), state_of_mut(dh0, b), seg(dev.go(), b, 0),
          state_of(dh_mid.p(), b), seg(dev.u(), b, 0), seg(dev.dl(), b, 0), dev.A.p(), seg(dev.Bm(), b, 0),
          seg(dev.Cm(), b, 0), dev.D.p(), seg(dev.z(), b, 0), state_of(dev.h0.p(), b), 1, L1, Di, N);
      add_call();
    }
    const Results halves{{"u", widen(du.read())}, {"z", widen(dz.read())},
                         {"delta", widen(dd.read())}, {"B", widen(dB.read())},
                         {"C", widen(dC.read())},  {"A", dA},
                         {"D", dD},                {"h0", widen(dh0.read())}};
    double worst = 0;
    check_close(halves, full_bwd, "hand-off backward", worst);
    MESSAGE("hand-off backward: max normwise error " << worst);
  }

  SUBCASE("L = 1 steps with the state updated in place (h_last = h0) reproduce the full scan") {
    DevBuf out(std::vector<float>(B * L * ld_out, kNaN));
    DevBuf state(in.h0);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < L; ++t)
        selective_scan_forward_cuda<float>(seg_out(out, ld_out, b, t), state_of_mut(state, b), seg(dev.u(), b, t),
                                           seg(dev.dl(), b, t), dev.A.p(), seg(dev.Bm(), b, t), seg(dev.Cm(), b, t),
                                           dev.D.p(), seg(dev.z(), b, t), state_of(state.p(), b), 1, 1, Di, N);
    CHECK(take(out.read(), B * L, ld_out, 0, Di, {{0, Di}}) == full.at("out"));
    CHECK(widen(state.read()) == full.at("h_last"));
  }
}

TEST_CASE("CUDA selective scan queues work without device-to-host copies or synchronisations") {
  const Inputs in({2, 300, 200, 16, true, true, true, true, 0}, 5);
  const DevInputs<float> dev(in);
  const Config& c = in.c;
  DevBuf out(std::vector<float>(c.B * c.L * in.ld_d, kNaN));
  DevBuf dxz(std::vector<float>(c.B * c.L * in.ld_xz, kNaN)), dd(std::vector<float>(c.B * c.L * c.Di, kNaN));
  DevBuf dbc(std::vector<float>(c.B * c.L * 2 * c.N, kNaN)), dA(std::vector<float>(c.Di * c.N, kNaN));
  DevBuf dD(std::vector<float>(c.Di, kNaN)), dh0(std::vector<float>(c.B * c.Di * c.N, kNaN));
  cuda_reset_peak_bytes(0);
  const size_t before_bytes = cuda_memory_stats(0).current_bytes;
  const CudaSyncCounts before = cuda_sync_counts();
  selective_scan_forward_cuda<float>({out.p(), in.ld_d}, nullptr, dev.u(), dev.dl(), dev.A.p(), dev.Bm(),
                                     dev.Cm(), dev.D.p(), dev.z(), dev.h0.p(), c.B, c.L, c.Di, c.N);
  selective_scan_backward_cuda<float>(
      {dxz.p(), in.ld_xz}, {dd.p(), c.Di}, dA.p(), {dbc.p(), 2 * c.N}, {dbc.p() + c.N, 2 * c.N},
      dD.p(), {dxz.p() + c.Di, in.ld_xz}, dh0.p(), dev.go(), dev.dh_last.p(), dev.u(), dev.dl(),
      dev.A.p(), dev.Bm(), dev.Cm(), dev.D.p(), dev.z(), dev.h0.p(), c.B, c.L, c.Di, c.N);
  const CudaSyncCounts after = cuda_sync_counts();
  CHECK(after.device_to_host_copies == before.device_to_host_copies);
  CHECK(after.synchronizations == before.synchronizations);
  // The backward's scratch was allocated and given back (stream-ordered).
  const CudaMemoryStats mem = cuda_memory_stats(0);
  CHECK(mem.current_bytes == before_bytes);
  CHECK(mem.peak_bytes > before_bytes);
  cuda_synchronize(0);
  CHECK(cuda_sync_counts().synchronizations == after.synchronizations + 1);
  const std::vector<float> o = out.read();
  CHECK(cuda_sync_counts().device_to_host_copies == after.device_to_host_copies + 1);
  CHECK(!std::isnan(o[0]));
}

TEST_CASE("CUDA selective scan rejects unsupported sizes and host pointers") {
  const Inputs in({1, 4, 8, 65, true, true, false, false, 0}, 3);
  const DevInputs<float> dev(in);
  DevBuf out(std::vector<float>(4 * 8, kNaN));
  auto message_of = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  const std::string big_n = message_of([&] {
    selective_scan_forward_cuda<float>({out.p(), 8}, nullptr, dev.u(), dev.dl(), dev.A.p(), dev.Bm(),
                                       dev.Cm(), dev.D.p(), dev.z(), nullptr, 1, 4, 8, 65);
  });
  CHECK_MESSAGE(big_n.find("state size N=65 exceeds the CUDA kernels' maximum 64") != std::string::npos, big_n);
  std::vector<float> host_out(4 * 8);
  const std::string host = message_of([&] {
    selective_scan_forward_cuda<float>({host_out.data(), 8}, nullptr, dev.u(), dev.dl(), dev.A.p(),
                                       dev.Bm(), dev.Cm(), dev.D.p(), dev.z(), nullptr, 1, 4, 8, 64);
  });
  CHECK_MESSAGE(host.find("selective_scan_forward_cuda: out is not CUDA device memory") != std::string::npos,
                host);
}

// The fused recurrent step of generation (ssm/selective_step.h): against the float64 reference
// on the same (bfloat16-exact) values, two steps in a row (the second from the state the first
// left on the device), y poisoned with NaN before each. Sizes 5, 6 and 8 have more channels
// than one wave of 16 lanes each on a GPU of up to 187 SMs (2048 threads each), so they take
// the 4-lane configuration (the 130M model's decode at batch 32, and N = 11 not a multiple of 4);
// sizes 7 (16 lanes) and 8 (4 lanes) have more states than a lane holds in registers (4 a lane),
// and sizes 9 (16 lanes) and 10 (4 lanes) more dt terms (R > 48: 3 a lane at 16 lanes, 12 at 4),
// so the rest go through the kernel's loops. x_dbl's rows are 3 elements longer than R + 2N
// (no row but the first starts a 16-byte piece), except in the last four sizes (pad 0): 4 lanes
// at N = 16 with R = 48, 16, 32 and 0, the packed form (a lane's 4 consecutive states, its
// consecutive terms in packs of 4); size 5 is the first of them with unaligned rows.
TEST_CASE("CUDA selective_step matches the float64 reference, float32 and bfloat16") {
  struct Size {
    int64_t B, Di, R, N;
    bool bias, skip;
    int64_t pad = 3;
  };
  for (const Size& sz : {Size{1, 1536, 48, 16, true, true}, Size{3, 37, 5, 16, true, false},
                         Size{32, 130, 3, 5, false, true}, Size{2, 64, 0, 64, true, true},
                         Size{32, 1536, 48, 16, true, true}, Size{24, 1000, 7, 11, true, false},
                         Size{2, 64, 3, 80, false, true}, Size{24, 1000, 7, 40, true, true},
                         Size{1, 100, 80, 16, true, true}, Size{32, 1536, 96, 16, true, false},
                         Size{32, 1536, 48, 16, true, true, 0}, Size{24, 1000, 16, 16, true, false, 0},
                         Size{40, 1000, 32, 16, false, true, 0}, Size{20, 1000, 0, 16, true, true, 0}}) {
    INFO("B=" << sz.B << " Di=" << sz.Di << " R=" << sz.R << " N=" << sz.N << " pad=" << sz.pad);
    const StepInputs s(sz.B, sz.Di, sz.R, sz.N, sz.bias, sz.skip, 40 + sz.Di, sz.pad);
    auto check = [&](auto tag, double tol) {
      using T = decltype(tag);
      const cuda_test::DevArray<T> x(StepInputs::as<T>(s.x_dbl)), u(StepInputs::as<T>(s.u)),
          z(StepInputs::as<T>(s.z)), W(StepInputs::as<T>(s.W_dt)), b(StepInputs::as<T>(s.b_dt)),
          Al(StepInputs::as<T>(s.A_log)), D(StepInputs::as<T>(s.Dskip));
      cuda_test::DevArray<T> h(StepInputs::as<T>(s.h));
      std::vector<double> h_ref = s.h;
      for (int step = 0; step < 2; ++step) {
        INFO("step " << step);
        std::vector<double> y_ref(s.B * s.Di);
        selective_step_ref<double>(y_ref.data(), h_ref.data(), s.x_dbl.data(), s.ld_dbl, s.u.data(), s.z.data(),
                                   s.ld_z, s.W_dt.data(), s.bias ? s.b_dt.data() : nullptr, s.A_log.data(),
                                   s.skip ? s.Dskip.data() : nullptr, s.B, s.Di, s.R, s.N);
        cuda_test::DevArray<T> y(std::vector<T>(s.B * s.Di, T(kNaN)));
        selective_step_cuda<T>(y.p(), h.p(), x.p(), s.ld_dbl, u.p(), z.p(), s.ld_z, W.p(), s.bias ? b.p() : nullptr,
                               Al.p(), s.skip ? D.p() : nullptr, s.B, s.Di, s.R, s.N);
        CHECK(cuda_test::normwise_error(y.read(), y_ref) <= tol);
        CHECK(cuda_test::normwise_error(h.read(), h_ref) <= tol);
        // The float64 reference goes on from its own state; the device from its rounded one.
      }
    };
    check(float{}, kTol);
    check(bfloat16{}, kBf16Tol);
  }
}

// The mixer's step after in_proj (ssm/mixer_step.h): against the float64 reference on the same
// (bfloat16-exact) values, two steps in a row, y poisoned with NaN before each: the 130M shape
// at batch 1, 16, 33 and 64 (the selective step's 16-lane and packed 4-lane kernels, x_proj's
// product on cuBLAS), R > 48 and N = 64, R and N not whole 16-byte pieces, Di = 37, padded rows
// of an odd stride, and no optional operands.
TEST_CASE("CUDA mixer_step matches the float64 reference, float32, bfloat16 and float64") {
  struct Size {
    int64_t B, Di, K, R, N, pad;
    bool conv_bias, dt_bias, skip;
  };
  for (const Size& sz : {Size{1, 1536, 4, 48, 16, 0, true, true, true}, Size{16, 1536, 4, 48, 16, 0, true, true, true},
                         Size{33, 1536, 4, 48, 16, 8, true, true, true}, Size{3, 40, 4, 5, 16, 0, true, true, true},
                         Size{4, 64, 4, 80, 64, 8, true, false, true}, Size{2, 24, 2, 3, 5, 0, false, false, false},
                         Size{2, 37, 3, 7, 11, 1, true, true, true}, Size{5, 64, 4, 6, 16, 3, true, true, false},
                         Size{64, 1536, 4, 48, 16, 0, true, true, true}, Size{40, 256, 4, 16, 16, 8, true, true, true},
                         Size{6, 128, 4, 7, 5, 0, true, true, true}}) {
    INFO("B=" << sz.B << " Di=" << sz.Di << " K=" << sz.K << " R=" << sz.R << " N=" << sz.N << " pad=" << sz.pad);
    const MixerStepInputs s(sz.B, sz.Di, sz.K, sz.R, sz.N, sz.pad, sz.conv_bias, sz.dt_bias, sz.skip, 70 + sz.Di);
    auto check = [&](auto tag, double tol) {
      using T = decltype(tag);
      INFO(dtype_name(dtype_of<T>::value));
      const auto dev = [](const std::vector<double>& v) { return cuda_test::DevArray<T>(StepInputs::as<T>(v)); };
      const auto xz = dev(s.xz), cw = dev(s.conv_w), cb = dev(s.conv_b), Wx = dev(s.W_x), Wdt = dev(s.W_dt),
                 bdt = dev(s.b_dt), Al = dev(s.A_log), D = dev(s.Dskip);
      auto cs = dev(s.conv_state), h = dev(s.h);
      std::vector<double> cs_ref = s.conv_state, h_ref = s.h;
      for (int step = 0; step < 2; ++step) {
        INFO("step " << step);
        std::vector<double> y_ref(s.B * s.Di);
        mixer_step_ref<double>(y_ref.data(), cs_ref.data(), h_ref.data(), s.xz.data(), s.ld_xz, s.xz.data() + s.Di,
                               s.ld_xz, s.conv_w.data(), s.conv_bias ? s.conv_b.data() : nullptr, s.W_x.data(),
                               s.W_dt.data(), s.dt_bias ? s.b_dt.data() : nullptr, s.A_log.data(),
                               s.skip ? s.Dskip.data() : nullptr, s.B, s.Di, s.K, s.R, s.N);
        cuda_test::DevArray<T> y(std::vector<T>(s.B * s.Di, T(kNaN)));
        mixer_step_cuda<T>(y.p(), cs.p(), h.p(), xz.p(), s.ld_xz, xz.p() + s.Di, s.ld_xz, cw.p(),
                           s.conv_bias ? cb.p() : nullptr, Wx.p(), Wdt.p(), s.dt_bias ? bdt.p() : nullptr, Al.p(),
                           s.skip ? D.p() : nullptr, s.B, s.Di, s.K, s.R, s.N);
        CHECK(cuda_test::normwise_error(y.read(), y_ref) <= tol);
        CHECK(cuda_test::normwise_error(cs.read(), cs_ref) <= tol);
        CHECK(cuda_test::normwise_error(h.read(), h_ref) <= tol);
        // The float64 reference goes on from its own states; the device from its rounded ones.
      }
    };
    check(float{}, kTol);
    check(bfloat16{}, kBf16Tol);
    check(double{}, 1e-12);
  }
}

TEST_CASE("CUDA delta_softplus matches the float64 reference; float32 keeps the unfused ops' bits; gradients") {
  // Di = 1536 (Mamba-130M: 16-byte pieces), 24 (pieces, M not a multiple of a thread's 4 rows),
  // 19 (odd: element by element); dt spans e^v tiny, moderate and past the v > 20 cut.
  for (const auto& [M, Di] : std::vector<std::pair<int64_t, int64_t>>{{130, 1536}, {7, 24}, {37, 19}}) {
    INFO("M=" << M << " Di=" << Di);
    Generator g(90 + Di);
    const Tensor dt64 = affine(rand({M, Di}, g, DType::F64), 60.0, -35.0), b64 = randn({Di}, g, DType::F64);
    for (const DType dtype : {DType::F32, DType::F64, DType::BF16}) {
      INFO(dtype_name(dtype));
      const Tensor dt = dt64.to(dtype), b = b64.to(dtype);
      const std::vector<double> dtv = dt.to(DType::F64).to_vector(), bv = b.to(DType::F64).to_vector();
      std::vector<double> ref(M * Di);
      delta_softplus_forward_ref<double>(ref.data(), dtv.data(), bv.data(), M, Di);
      const Tensor dt_gpu = dt.to(cuda_test::kGpu), b_gpu = b.to(cuda_test::kGpu);
      Tensor out = Tensor::full({M, Di}, std::nan(""), dtype, cuda_test::kGpu);
      SIMBA_DISPATCH_COMPUTE(dtype, "test", [&] {
        delta_softplus_forward_cuda<scalar_t>(out.device_data<scalar_t>(), dt_gpu.device_data<scalar_t>(),
                                              b_gpu.device_data<scalar_t>(), M, Di);
      });
      const std::vector<double> got = out.to(cpu()).to_vector();
      const double tol = dtype == DType::BF16 ? kBf16Tol : dtype == DType::F32 ? kTol : 1e-12;
      CHECK(cuda_test::normwise_error(got, ref) <= tol);
      if (dtype == DType::F32) CHECK(got == softplus(add(dt_gpu, b_gpu)).to(cpu()).to_vector());
      // The op on both devices, and its gradients from one random upstream gradient.
      Variable vd(dt_gpu, true), vb(b_gpu, true), cd(dt, true), cb(b, true);
      const Tensor up = randn({M, Di}, g).to(dtype);
      Variable yg = delta_softplus(vd, vb), yc = delta_softplus(cd, cb);
      CHECK(yg.data().to(cpu()).to_vector() == got);
      yg.backward(up.to(cuda_test::kGpu));
      yc.backward(up);
      CHECK(cuda_test::normwise_error(vd.grad().to(cpu()).to_vector(), cd.grad().to(DType::F64).to_vector()) <= tol);
      CHECK(cuda_test::normwise_error(vb.grad().to(cpu()).to_vector(), cb.grad().to(DType::F64).to_vector()) <= tol);
    }
  }
}
