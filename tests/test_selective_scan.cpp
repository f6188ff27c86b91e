// tests/test_selective_scan.cpp: the selective-scan kernels (ssm/selective_scan.h).
//
// 1. The reference forward equals the unrolled closed form of the recurrence.
// 2. The reference backward equals float64 central differences for every input.
// 3. The fast path equals the reference, forward and backward, float64 and float32, over
//    awkward sizes, optional operands and strided (ld > width) views.
// 4. The fast backward is deterministic: bit-identical on repeat and for 1 vs 2 threads.
// 5. h_last is the final state, and h_last -> h0 hand-off reproduces the concatenated scan,
//    forward and backward (dh0 of a segment -> dh_last of the one before); step mode (L = 1,
//    state updated in place) reproduces the full scan bit for bit.
// 6. Unwanted gradients (dD, dz, dh0 = nullptr) are skipped without changing the others, and
//    inconsistent arguments throw simba::Error.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "ssm/selective_scan.h"
#include "tensor/half_types.h"
#include "tensor/error.h"

using namespace simba;

namespace {

struct Rng {
  std::mt19937_64 gen;
  explicit Rng(uint64_t seed) : gen(seed) {}
  double uniform(double lo, double hi) {  // 53 random bits -> [lo, hi)
    return lo + (hi - lo) * static_cast<double>(gen() >> 11) * 0x1.0p-53;
  }
};

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

// Value in every cell a kernel must neither read (inputs: NaN poisons any result that reads
// it) nor write (outputs: checked to survive).
const double kPadOut = 12345.0;

// Inputs laid out like the Mamba block does: u and z are the two halves of one in_proj-like
// buffer of width 2·Di, B and C sit after R dt columns of one x_proj-like buffer of width
// R + 2N, every row padded by cfg.pad unused (NaN) cells.
template <class T>
struct Inputs {
  Config cfg;
  static constexpr int64_t R = 3;
  int64_t ld_xz, ld_bc, ld_d;
  std::vector<T> xz, bc, delta, dout, A, D, h0, dh_last;

  Inputs(const Config& c, uint64_t seed) : cfg(c) {
    const int64_t rows = c.B * c.L;
    ld_xz = 2 * c.Di + c.pad;
    ld_bc = R + 2 * c.N + c.pad;
    ld_d = c.Di + c.pad;
    const T nan = T(std::numeric_limits<double>::quiet_NaN());
    xz.assign(rows * ld_xz, nan);
    bc.assign(rows * ld_bc, nan);
    delta.assign(rows * ld_d, nan);
    dout.assign(rows * ld_d, nan);
    Rng rng(seed);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t d = 0; d < c.Di; ++d) {
        xz[r * ld_xz + d] = T(rng.uniform(-1, 1));
        if (c.z) xz[r * ld_xz + c.Di + d] = T(rng.uniform(-2, 2));
        delta[r * ld_d + d] = T(rng.uniform(0.05, 1.0));
        dout[r * ld_d + d] = T(rng.uniform(-1, 1));
      }
      for (int64_t n = 0; n < 2 * c.N; ++n) bc[r * ld_bc + R + n] = T(rng.uniform(-1, 1));
    }
    A.resize(c.Di * c.N);
    for (T& a : A) a = T(-rng.uniform(0.1, 3.0));
    if (c.D) {
      D.resize(c.Di);
      for (T& v : D) v = T(rng.uniform(-1, 1));
    }
    if (c.h0) {
      h0.resize(c.B * c.Di * c.N);
      for (T& v : h0) v = T(rng.uniform(-1, 1));
    }
    if (c.dh_last) {
      dh_last.resize(c.B * c.Di * c.N);
      for (T& v : dh_last) v = T(rng.uniform(-1, 1));
    }
  }

  SeqView<const T> u() const { return {xz.data(), ld_xz}; }
  SeqView<const T> z() const { return {cfg.z ? xz.data() + cfg.Di : nullptr, ld_xz}; }
  SeqView<const T> Bm() const { return {bc.data() + R, ld_bc}; }
  SeqView<const T> Cm() const { return {bc.data() + R + cfg.N, ld_bc}; }
  SeqView<const T> dl() const { return {delta.data(), ld_d}; }
  SeqView<const T> go() const { return {dout.data(), ld_d}; }
  const T* Dp() const { return cfg.D ? D.data() : nullptr; }
  const T* h0p() const { return cfg.h0 ? h0.data() : nullptr; }
  const T* dhp() const { return cfg.dh_last ? dh_last.data() : nullptr; }

  // Pointers to the valid elements of every differentiable input, in the canonical order
  // (b, t, w) / (d, n) / (b, d, n) that the result maps below also use.
  std::map<std::string, std::vector<T*>> slots() {
    std::map<std::string, std::vector<T*>> s;
    const Config& c = cfg;
    for (int64_t r = 0; r < c.B * c.L; ++r) {
      for (int64_t d = 0; d < c.Di; ++d) {
        s["u"].push_back(&xz[r * ld_xz + d]);
        if (c.z) s["z"].push_back(&xz[r * ld_xz + c.Di + d]);
        s["delta"].push_back(&delta[r * ld_d + d]);
      }
      for (int64_t n = 0; n < c.N; ++n) {
        s["B"].push_back(&bc[r * ld_bc + R + n]);
        s["C"].push_back(&bc[r * ld_bc + R + c.N + n]);
      }
    }
    for (T& v : A) s["A"].push_back(&v);
    for (T& v : D) s["D"].push_back(&v);
    for (T& v : h0) s["h0"].push_back(&v);
    return s;
  }
};

using Results = std::map<std::string, std::vector<double>>;

// Reads the (rows, width) valid block of a buffer with row stride ld at column col, and
// checks that the kernel left every other cell of the buffer at kPadOut.
template <class T>
std::vector<double> take_rows(const std::vector<T>& buf, int64_t rows, int64_t ld,
                              std::vector<std::pair<int64_t, int64_t>> cols, size_t which) {
  std::vector<bool> valid(buf.size(), false);
  for (int64_t r = 0; r < rows; ++r)
    for (auto [c0, w] : cols)
      for (int64_t c = c0; c < c0 + w; ++c) valid[r * ld + c] = true;
  int64_t stray = 0;
  for (size_t i = 0; i < buf.size(); ++i) stray += !valid[i] && buf[i] != T(kPadOut);
  CHECK_MESSAGE(stray == 0, "kernel wrote " << stray << " cells outside its views");
  std::vector<double> v;
  const auto [c0, w] = cols[which];
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = c0; c < c0 + w; ++c) v.push_back(double(buf[r * ld + c]));
  return v;
}

template <class T>
std::vector<double> to_double(const std::vector<T>& v) {
  std::vector<double> w;
  for (const T& e : v) w.push_back(double(e));
  return w;
}

// The same inputs (every cell, NaN padding included) in storage type T: exact where T holds
// every value of S (bfloat16 -> float64).
template <class T, class S>
Inputs<T> cast_inputs(const Inputs<S>& in) {
  Inputs<T> out(in.cfg, 0);
  auto cast = [](std::vector<T>& dst, const std::vector<S>& src) {
    dst.clear();
    for (const S& e : src) dst.push_back(T(double(e)));
  };
  cast(out.xz, in.xz);
  cast(out.bc, in.bc);
  cast(out.delta, in.delta);
  cast(out.dout, in.dout);
  cast(out.A, in.A);
  cast(out.D, in.D);
  cast(out.h0, in.h0);
  cast(out.dh_last, in.dh_last);
  return out;
}

template <class T>
Results run_forward(const Inputs<T>& in, bool fast, acc_t<T>* checkpoints = nullptr) {
  const Config& c = in.cfg;
  const auto fwd = fast ? selective_scan_forward_cpu<T> : selective_scan_forward_ref<T>;
  std::vector<T> out(c.B * c.L * in.ld_d, T(kPadOut));
  std::vector<T> h_last(c.B * c.Di * c.N, T(kPadOut));
  fwd({out.data(), in.ld_d}, h_last.data(), in.u(), in.dl(), in.A.data(), in.Bm(), in.Cm(), in.Dp(),
      in.z(), in.h0p(), c.B, c.L, c.Di, c.N, checkpoints);
  Results res;
  res["out"] = take_rows(out, c.B * c.L, in.ld_d, {{0, c.Di}}, 0);
  res["h_last"] = to_double(h_last);
  return res;
}

// Every output buffer starts filled with kPadOut, so a kernel that accumulates instead of
// overwriting, or writes outside its views, is caught. optional = false passes nullptr for
// dD, dz and dh0 even where the forward had Dskip, z and h0.
template <class T>
Results run_backward(const Inputs<T>& in, bool fast, bool optional = true, const acc_t<T>* checkpoints = nullptr) {
  const Config& c = in.cfg;
  const auto bwd = fast ? selective_scan_backward_cpu<T> : selective_scan_backward_ref<T>;
  const bool want_D = c.D && optional, want_z = c.z && optional, want_h0 = c.h0 && optional;
  const int64_t rows = c.B * c.L;
  std::vector<T> dxz(rows * in.ld_xz, T(kPadOut)), dbc(rows * in.ld_bc, T(kPadOut));
  std::vector<T> ddelta(rows * in.ld_d, T(kPadOut)), dA(c.Di * c.N, T(kPadOut));
  std::vector<T> dD(c.Di, T(kPadOut)), dh0(c.B * c.Di * c.N, T(kPadOut));
  const int64_t R = Inputs<T>::R;
  bwd({dxz.data(), in.ld_xz}, {ddelta.data(), in.ld_d}, dA.data(), {dbc.data() + R, in.ld_bc},
      {dbc.data() + R + c.N, in.ld_bc}, want_D ? dD.data() : nullptr,
      {want_z ? dxz.data() + c.Di : nullptr, in.ld_xz}, want_h0 ? dh0.data() : nullptr, in.go(),
      in.dhp(), in.u(), in.dl(), in.A.data(), in.Bm(), in.Cm(), in.Dp(), in.z(), in.h0p(), c.B, c.L,
      c.Di, c.N, checkpoints);
  Results res;
  std::vector<std::pair<int64_t, int64_t>> xz_cols = {{0, c.Di}};
  if (want_z) xz_cols.push_back({c.Di, c.Di});
  res["u"] = take_rows(dxz, rows, in.ld_xz, xz_cols, 0);
  if (want_z) res["z"] = take_rows(dxz, rows, in.ld_xz, xz_cols, 1);
  res["delta"] = take_rows(ddelta, rows, in.ld_d, {{0, c.Di}}, 0);
  res["B"] = take_rows(dbc, rows, in.ld_bc, {{R, c.N}, {R + c.N, c.N}}, 0);
  res["C"] = take_rows(dbc, rows, in.ld_bc, {{R, c.N}, {R + c.N, c.N}}, 1);
  res["A"] = to_double(dA);
  if (want_D) res["D"] = to_double(dD);
  if (want_h0) res["h0"] = to_double(dh0);
  const auto untouched = [](const std::vector<T>& v) {
    return std::all_of(v.begin(), v.end(), [](T e) { return e == T(kPadOut); });
  };
  if (!want_D) CHECK(untouched(dD));
  if (!want_h0) CHECK(untouched(dh0));
  return res;
}

// Max over a tensor of |got − ref| / (max|ref| + |ref_i|): a relative error whose floor is the
// tensor's own scale, so sums that cancel to ~0 (dA over B·L terms) are judged against the
// size of what they sum, not against rounding noise (atol = tol·max|ref|, rtol = tol).
double scaled_error(const std::vector<double>& got, const std::vector<double>& ref) {
  REQUIRE(got.size() == ref.size());
  double scale = 0, err = 0;
  for (double r : ref) scale = std::max(scale, std::fabs(r));
  for (size_t i = 0; i < ref.size(); ++i) {
    const double diff = std::fabs(got[i] - ref[i]);
    const double e = diff == 0 ? 0 : diff / (scale + std::fabs(ref[i]));
    err = std::max(err, std::isnan(e) ? INFINITY : e);  // NaN anywhere must fail
  }
  return err;
}

void check_close(const Results& got, const Results& ref, double tol, const std::string& what,
                 double& worst) {
  REQUIRE(got.size() == ref.size());
  for (const auto& [name, r] : ref) {
    REQUIRE(got.count(name) == 1);
    const double e = scaled_error(got.at(name), r);
    worst = std::max(worst, e);
    CHECK_MESSAGE(e <= tol, what << " " << name << ": scaled error " << e << " > " << tol);
  }
}

// ℓ = Σ dout·out + Σ dh_last·h_last, the scalar whose gradient the backward computes.
double loss(const Inputs<double>& in) {
  const Results f = run_forward(in, false);
  const Config& c = in.cfg;
  double s = 0;
  for (int64_t r = 0; r < c.B * c.L; ++r)
    for (int64_t d = 0; d < c.Di; ++d) s += in.dout[r * in.ld_d + d] * f.at("out")[r * c.Di + d];
  if (c.dh_last)
    for (size_t i = 0; i < in.dh_last.size(); ++i) s += in.dh_last[i] * f.at("h_last")[i];
  return s;
}

}  // namespace

TEST_CASE("selective_scan_forward_ref matches the unrolled closed form") {
  // y_T = Σ_{t<=T} Σ_n C_T[n]·exp(A·Σ_{k=t+1..T} Δ_k)·Δ_t·B_t[n]·u_t
  //       + Σ_n C_T[n]·exp(A·Σ_{k=0..T} Δ_k)·h0[n] + D·u_T
  for (bool with_h0 : {false, true}) {
    const Config cfg{2, 9, 3, 4, false, true, with_h0, false, 2};
    Inputs<double> in(cfg, 11 + with_h0);
    const Results f = run_forward(in, false);
    double worst = 0;
    for (int64_t b = 0; b < cfg.B; ++b)
      for (int64_t T = 0; T < cfg.L; ++T)
        for (int64_t d = 0; d < cfg.Di; ++d) {
          auto at = [&](SeqView<const double> v, int64_t t, int64_t w) {
            return v.p[(b * cfg.L + t) * v.ld + w];
          };
          double y = in.D[d] * at(in.u(), T, d);
          for (int64_t n = 0; n < cfg.N; ++n) {
            const double a = in.A[d * cfg.N + n], cT = at(in.Cm(), T, n);
            for (int64_t t = 0; t <= T; ++t) {
              double s = 0;
              for (int64_t k = t + 1; k <= T; ++k) s += at(in.dl(), k, d);
              y += cT * std::exp(a * s) * at(in.dl(), t, d) * at(in.Bm(), t, n) * at(in.u(), t, d);
            }
            if (with_h0) {
              double s = 0;
              for (int64_t k = 0; k <= T; ++k) s += at(in.dl(), k, d);
              y += cT * std::exp(a * s) * in.h0[(b * cfg.Di + d) * cfg.N + n];
            }
          }
          const double got = f.at("out")[(b * cfg.L + T) * cfg.Di + d];
          worst =
              std::max(worst, std::fabs(got - y) / std::max({std::fabs(got), std::fabs(y), 1e-3}));
        }
    MESSAGE("closed form, h0=" << with_h0 << ": max relative error " << worst);
    CHECK(worst <= 1e-12);
  }
}

TEST_CASE("selective_scan_backward_ref matches float64 central differences for every input") {
  // error = |analytic − numeric| / max(|analytic|, |numeric|, 1e-3), numeric = central
  // difference with eps = 1e-5 of ℓ = Σ dout·out + Σ dh_last·h_last (random dout, dh_last).
  const double eps = 1e-5, tol = 1e-6;
  for (const Config& cfg : {Config{2, 6, 3, 4, true, true, true, true, 1},
                            Config{1, 5, 2, 1, false, false, false, false, 0}}) {
    Inputs<double> in(cfg, 7);
    const Results analytic = run_backward(in, false);
    auto slots = in.slots();
    REQUIRE(slots.size() == analytic.size());
    double worst = 0;
    for (auto& [name, ptrs] : slots) {
      const std::vector<double>& a = analytic.at(name);
      REQUIRE(a.size() == ptrs.size());
      for (size_t i = 0; i < ptrs.size(); ++i) {
        const double x = *ptrs[i];
        *ptrs[i] = x + eps;
        const double lp = loss(in);
        *ptrs[i] = x - eps;
        const double lm = loss(in);
        *ptrs[i] = x;
        const double numeric = (lp - lm) / (2 * eps);
        const double e =
            std::fabs(a[i] - numeric) / std::max({std::fabs(a[i]), std::fabs(numeric), 1e-3});
        worst = std::max(worst, e);
        CHECK_MESSAGE(e <= tol, describe(cfg) << " d" << name << "[" << i << "]: analytic " << a[i]
                                              << " numeric " << numeric);
      }
    }
    MESSAGE(describe(cfg) << ": max gradcheck error " << worst);
  }
}

namespace {

// Sizes that hit every edge of the fast path (as tuned: 32-step backward chunks, 32-channel
// forward and 128-channel backward blocks): L = 1, L around and not a multiple of the chunk;
// N = 1; Di below, around and not a multiple of a block or a vector; B = 1 (many channel
// groups) and B > 1; channel groups that do not divide the blocks evenly (Di = 1664, B = 3);
// every optional operand on and off; row strides ld > width.
const std::vector<Config> kFastConfigs = {
    {1, 1, 5, 1, false, false, false, false, 0},   {2, 7, 33, 4, true, true, true, true, 3},
    {3, 31, 17, 16, true, false, false, false, 1}, {1, 32, 64, 16, false, true, true, false, 0},
    {1, 33, 31, 2, true, true, false, true, 0},    {2, 63, 129, 3, true, false, true, true, 2},
    {2, 65, 127, 16, false, false, true, true, 0}, {2, 129, 40, 3, true, true, false, true, 5},
    {2, 300, 70, 16, true, true, true, true, 2},   {5, 130, 100, 8, false, true, true, true, 1},
    {1, 129, 300, 4, true, false, true, false, 0}, {3, 10, 1664, 4, true, true, true, true, 1},
};

template <class T>
void check_fast_matches_reference(double tol) {
  double worst_fwd = 0, worst_bwd = 0;
  uint64_t seed = 100;
  for (const Config& cfg : kFastConfigs) {
    CAPTURE(describe(cfg));
    const Inputs<T> in(cfg, ++seed);
    check_close(run_forward(in, true), run_forward(in, false), tol, "forward", worst_fwd);
    check_close(run_backward(in, true), run_backward(in, false), tol, "backward", worst_bwd);
  }
  MESSAGE((sizeof(T) * 8) << "-bit fast vs reference: max scaled error forward " << worst_fwd
                          << ", backward " << worst_bwd << " (tolerance " << tol << ")");
}

}  // namespace

TEST_CASE("selective_scan fast path matches the reference in float64") {
  check_fast_matches_reference<double>(1e-12);
}

TEST_CASE("selective_scan fast path matches the reference in float32") {
  // |fast − ref| <= 1e-5·(max|ref| + |ref|) per tensor: both run in float32 with different
  // summation orders and exp implementations, so they differ by accumulated rounding.
  check_fast_matches_reference<float>(1e-5);
}

TEST_CASE("selective_scan in bfloat16: reference and fast path against float64 on the same values") {
  // Both bfloat16 variants compute in float32 and round every output once (8 significant
  // bits: relative error <= 2^-9 per element), so each is held to 1e-2 of the float64 scan of
  // the very same (bfloat16) inputs.
  double worst = 0;
  uint64_t seed = 300;
  for (const Config& cfg : kFastConfigs) {
    CAPTURE(describe(cfg));
    const Inputs<bfloat16> in(cfg, ++seed);
    const Inputs<double> exact = cast_inputs<double>(in);
    const Results fwd = run_forward(exact, false), bwd = run_backward(exact, false);
    for (const bool fast : {false, true}) {
      check_close(run_forward(in, fast), fwd, 1e-2, fast ? "bf16 fast forward" : "bf16 ref forward", worst);
      check_close(run_backward(in, fast), bwd, 1e-2, fast ? "bf16 fast backward" : "bf16 ref backward", worst);
    }
  }
  MESSAGE("bfloat16 vs float64: max scaled error " << worst << " (tolerance 1e-2)");
}

TEST_CASE("selective_scan fast path is bit-identical on repeat and across thread counts") {
  const Inputs<float> in({3, 150, 100, 16, true, true, true, true, 1}, 5);
  const Results f1 = run_forward(in, true), b1 = run_backward(in, true);
  const Results f2 = run_forward(in, true), b2 = run_backward(in, true);
  CHECK(f1 == f2);
  CHECK(b1 == b2);
#ifdef _OPENMP
  // 1 against 2 threads, set explicitly: comparing against the default count would
  // compare 1 with 1 under OMP_NUM_THREADS=1.
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const Results f3 = run_forward(in, true), b3 = run_backward(in, true);
  omp_set_num_threads(2);
  REQUIRE(omp_get_max_threads() == 2);
  const Results f4 = run_forward(in, true), b4 = run_backward(in, true);
  omp_set_num_threads(saved);
  CHECK(f1 == f3);
  CHECK(b1 == b3);
  CHECK(f3 == f4);
  CHECK(b3 == b4);
#endif
}

// The checkpoints a forward writes (ssm/selective_scan.h): h0 (or 0) first, then the state
// entering every 16th step, the same from the reference and the fast path; the forward's other
// outputs do not change, and a backward that starts from them gives what the fast path's own
// sweep gives. L = 37 ends inside a checkpoint interval, L = 80 on one; 33 channels leave a
// partial channel block.
template <class T>
void check_checkpoints(double tol) {
  for (const Config& c : {Config{2, 37, 5, 3, true, true, true, true, 1}, Config{1, 80, 33, 16, true, true, false, false, 0}}) {
    INFO(describe(c));
    const Inputs<T> in(c, 91);
    const int64_t nck = scan_checkpoint_count(c.L);
    const size_t count = size_t(c.B * nck * c.Di * c.N);
    const acc_t<T> nan = std::numeric_limits<acc_t<T>>::quiet_NaN();
    std::vector<acc_t<T>> ref(count, nan), fast(count, nan);
    double worst = 0;
    check_close(run_forward(in, false, ref.data()), run_forward(in, false), 0, "ref forward with checkpoints", worst);
    check_close(run_forward(in, true, fast.data()), run_forward(in, true), 0, "fast forward with checkpoints", worst);
    const std::vector<double> ref64(ref.begin(), ref.end()), fast64(fast.begin(), fast.end());
    CHECK(scaled_error(fast64, ref64) <= tol);  // NaN left anywhere fails
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t e = 0; e < c.Di * c.N; ++e)
        CHECK(ref[size_t(b * nck * c.Di * c.N + e)] == (c.h0 ? acc_t<T>(in.h0[size_t(b * c.Di * c.N + e)]) : 0));
    check_close(run_backward(in, true, true, fast.data()), run_backward(in, true), tol,
                "fast backward from the checkpoints", worst);
    check_close(run_backward(in, false, true, ref.data()), run_backward(in, false), 0,
                "the reference backward ignores them", worst);
  }
}

TEST_CASE("selective_scan checkpoints: written by both forwards, read by the fast backward") {
  check_checkpoints<double>(1e-13);
  check_checkpoints<float>(1e-5);
}

TEST_CASE("selective_scan backward skips unwanted dD, dz, dh0 without changing the rest") {
  const Inputs<double> in({2, 70, 40, 4, true, true, true, true, 1}, 9);
  for (bool fast : {false, true}) {
    CAPTURE(fast);
    const Results all = run_backward(in, fast), some = run_backward(in, fast, false);
    REQUIRE(some.size() == 5);  // u, delta, A, B, C
    for (const auto& [name, v] : some) CHECK(v == all.at(name));
  }
}

namespace {

// Columns [t0, t0 + len) of every sequence operand of `in`, as a problem of length len.
template <class T>
Inputs<T> segment(const Inputs<T>& in, int64_t t0, int64_t len) {
  Config c = in.cfg;
  c.L = len;
  Inputs<T> s(c, 0);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t t = 0; t < len; ++t) {
      const int64_t rs = b * len + t, ri = b * in.cfg.L + t0 + t;
      std::copy_n(&in.xz[ri * in.ld_xz], in.ld_xz, &s.xz[rs * s.ld_xz]);
      std::copy_n(&in.bc[ri * in.ld_bc], in.ld_bc, &s.bc[rs * s.ld_bc]);
      std::copy_n(&in.delta[ri * in.ld_d], in.ld_d, &s.delta[rs * s.ld_d]);
      std::copy_n(&in.dout[ri * in.ld_d], in.ld_d, &s.dout[rs * s.ld_d]);
    }
  s.A = in.A;
  s.D = in.D;
  return s;
}

// Rows of a (B, L1 + L2, W) result made from the (B, L1, W) and (B, L2, W) ones.
std::vector<double> concat(const std::vector<double>& a, const std::vector<double>& b, int64_t B,
                           int64_t L1, int64_t L2) {
  const int64_t W = static_cast<int64_t>(a.size()) / (B * L1);
  std::vector<double> v;
  for (int64_t i = 0; i < B; ++i) {
    v.insert(v.end(), a.begin() + i * L1 * W, a.begin() + (i + 1) * L1 * W);
    v.insert(v.end(), b.begin() + i * L2 * W, b.begin() + (i + 1) * L2 * W);
  }
  return v;
}

}  // namespace

TEST_CASE("selective_scan h_last hand-off reproduces the concatenated scan") {
  for (bool fast : {false, true}) {
    CAPTURE(fast);
    const int64_t L1 = 37, L2 = 90;
    const Inputs<double> whole({2, L1 + L2, 45, 5, true, true, true, true, 2}, 21);
    Inputs<double> first = segment(whole, 0, L1), second = segment(whole, L1, L2);
    first.h0 = whole.h0;
    second.dh_last = whole.dh_last;

    // Forward: the state is handed over exactly, so outputs are bit-identical.
    const Results fw = run_forward(whole, fast), f1 = run_forward(first, fast);
    CHECK(f1.at("h_last") != whole.h0);
    second.h0 = std::vector<double>(f1.at("h_last").begin(), f1.at("h_last").end());
    const Results f2 = run_forward(second, fast);
    CHECK(concat(f1.at("out"), f2.at("out"), 2, L1, L2) == fw.at("out"));
    CHECK(f2.at("h_last") == fw.at("h_last"));
    // h_last is the reference's final state.
    double worst = 0;
    check_close(Results{{"h_last", fw.at("h_last")}},
                Results{{"h_last", run_forward(whole, false).at("h_last")}}, 1e-12, "h_last",
                worst);

    // Backward: dh0 of the second segment is the dh_last of the first.
    const Results bw = run_backward(whole, fast), b2 = run_backward(second, fast);
    first.dh_last = std::vector<double>(b2.at("h0").begin(), b2.at("h0").end());
    const Results b1 = run_backward(first, fast);
    for (const char* name : {"u", "z", "delta", "B", "C"})
      check_close(Results{{name, concat(b1.at(name), b2.at(name), 2, L1, L2)}},
                  Results{{name, bw.at(name)}}, 1e-12, "hand-off backward", worst);
    for (const char* name : {"A", "D"}) {
      std::vector<double> sum = b1.at(name);
      for (size_t i = 0; i < sum.size(); ++i) sum[i] += b2.at(name)[i];
      check_close(Results{{name, sum}}, Results{{name, bw.at(name)}}, 1e-12, "hand-off backward",
                  worst);
    }
    check_close(Results{{"h0", b1.at("h0")}}, Results{{"h0", bw.at("h0")}}, 1e-12,
                "hand-off backward", worst);
    MESSAGE("hand-off (fast=" << fast << "): max scaled error " << worst);
  }
}

TEST_CASE("selective_scan step mode (L = 1, h_last = h0 in place) reproduces the full scan") {
  const int64_t L = 20;
  const Inputs<double> whole({2, L, 45, 5, true, true, true, false, 1}, 31);
  for (bool fast : {false, true}) {
    CAPTURE(fast);
    const auto fwd = fast ? selective_scan_forward_cpu<double> : selective_scan_forward_ref<double>;
    const Results full = run_forward(whole, fast);
    std::vector<double> state = whole.h0, out;
    for (int64_t t = 0; t < L; ++t) {
      const Inputs<double> step = segment(whole, t, 1);
      std::vector<double> y(2 * step.ld_d);
      fwd({y.data(), step.ld_d}, state.data(), step.u(), step.dl(), step.A.data(), step.Bm(),
          step.Cm(), step.Dp(), step.z(), state.data(), 2, 1, 45, 5, nullptr);
      for (int64_t d = 0; d < 45; ++d) out.push_back(y[d]);              // batch 0, step t
      for (int64_t d = 0; d < 45; ++d) out.push_back(y[step.ld_d + d]);  // batch 1, step t
    }
    // out is (L, B, Di); the full scan's is (B, L, Di).
    std::vector<double> expect;
    for (int64_t t = 0; t < L; ++t)
      for (int64_t b = 0; b < 2; ++b)
        for (int64_t d = 0; d < 45; ++d) expect.push_back(full.at("out")[(b * L + t) * 45 + d]);
    CHECK(out == expect);  // same operations in the same order: bit-identical
    CHECK(state == full.at("h_last"));
  }
}

TEST_CASE("selective_scan rejects inconsistent arguments") {
  const Inputs<float> in({1, 4, 8, 2, true, true, false, false, 0}, 3);
  std::vector<float> out(4 * 8);
  for (const auto fwd : {selective_scan_forward_cpu<float>, selective_scan_forward_ref<float>}) {
    // out row stride smaller than Di.
    CHECK_THROWS_AS(fwd({out.data(), 4}, nullptr, in.u(), in.dl(), in.A.data(), in.Bm(), in.Cm(),
                        in.Dp(), in.z(), nullptr, 1, 4, 8, 2, nullptr),
                    Error);
    CHECK_THROWS_AS(fwd({out.data(), 8}, nullptr, in.u(), in.dl(), in.A.data(), in.Bm(), in.Cm(),
                        in.Dp(), in.z(), nullptr, 1, 0, 8, 2, nullptr),
                    Error);
  }
  std::vector<float> g(4 * 16), gA(16), gbc(4 * 4), gD(8);
  // dz wanted but the forward had no gate.
  CHECK_THROWS_AS(selective_scan_backward_cpu<float>(
                      {g.data(), 8}, {g.data(), 8}, gA.data(), {gbc.data(), 4}, {gbc.data() + 2, 4},
                      gD.data(), {g.data() + 8, 16}, nullptr, in.go(), nullptr, in.u(), in.dl(),
                      in.A.data(), in.Bm(), in.Cm(), in.Dp(), {nullptr, 0}, nullptr, 1, 4, 8, 2),
                  Error);
}
