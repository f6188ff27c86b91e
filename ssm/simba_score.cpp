// ssm/simba_score.cpp: the Simba score kernels (Q1)-(Q2), the baseline criteria and the top-k
// selection of ssm/simba_score.h.
#include "ssm/simba_score.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "ssm/selective_scan_autograd.h"
#include "tensor/dispatch.h"
#include "tensor/ops.h"
#include "tensor/strided_loop.h"
#include "tensor/vector_math.h"

namespace simba {

namespace {

// What every row of (Q1) needs, built once per sequence: S of (Q2) as (n, Di) rows and A·log2e
// transposed to (N, Di) (the exponent of 2^x, ssm/simba_score.h), so the inner loop over
// channels reads both contiguously. Both in the compute type acc_t<T> of the inputs.
template <class T>
struct ScoreSetup {
  std::vector<acc_t<T>> S, At;
};

template <class T>
void check_score_inputs(const char* op, SeqView<const T> u, SeqView<const T> delta, const T* A, SeqView<const T> Bm,
                        SeqView<const T> Cm, int64_t n, int64_t Di, int64_t N) {
  SIMBA_CHECK(n >= 1 && Di >= 1 && N >= 1, op << ": sizes must be >= 1, got n=" << n << " Di=" << Di << " N=" << N);
  SIMBA_CHECK(u.p && delta.p && A && Bm.p && Cm.p, op << ": a null input (u, delta, A, B or C)");
  SIMBA_CHECK(u.ld >= Di && delta.ld >= Di && Bm.ld >= N && Cm.ld >= N,
              op << ": row strides u=" << u.ld << " delta=" << delta.ld << " B=" << Bm.ld << " C=" << Cm.ld
                 << " must be >= the widths Di=" << Di << " (u, delta) and N=" << N << " (B, C)");
}

template <class T>
ScoreSetup<T> setup(SeqView<const T> delta, const T* A, int64_t n, int64_t Di, int64_t N) {
  using Acc = acc_t<T>;
  ScoreSetup<T> s;
  s.S.resize(n * Di);
  s.At.resize(N * Di);
  for (int64_t d = 0; d < Di; ++d)
    for (int64_t k = 0; k < N; ++k) s.At[k * Di + d] = static_cast<Acc>(A[d * N + k]) * static_cast<Acc>(kLog2e);
  std::fill(s.S.end() - Di, s.S.end(), Acc(0));  // S_{n−1} = 0
  std::vector<double> acc(Di, 0.0);
  double* a = acc.data();
  for (int64_t t = n - 2; t >= 0; --t) {
    const T* next = delta.p + (t + 1) * delta.ld;
    Acc* row = s.S.data() + t * Di;
#pragma omp simd
    for (int64_t d = 0; d < Di; ++d) {
      a[d] += static_cast<double>(next[d]);
      row[d] = static_cast<Acc>(a[d]);
    }
  }
  return s;
}

// out (Di) = Δy_T(t) of (Q1), row t, in the compute type.
template <class T>
void contribution_row(acc_t<T>* out, int64_t t, const ScoreSetup<T>& s, SeqView<const T> u, SeqView<const T> delta,
                      SeqView<const T> Bm, SeqView<const T> Cm, int64_t n, int64_t Di, int64_t N) {
  using Acc = acc_t<T>;
  const Acc* St = s.S.data() + t * Di;
  const T* Bt = Bm.p + t * Bm.ld;
  const T* CT = Cm.p + (n - 1) * Cm.ld;
  std::fill(out, out + Di, Acc(0));
  for (int64_t k = 0; k < N; ++k) {
    const Acc cb = static_cast<Acc>(CT[k]) * static_cast<Acc>(Bt[k]);
    const Acc* Ak = s.At.data() + k * Di;
#pragma omp simd
    for (int64_t d = 0; d < Di; ++d) out[d] += cb * exp2_fast(Ak[d] * St[d]);
  }
  const T* ut = u.p + t * u.ld;
  const T* dt = delta.p + t * delta.ld;
#pragma omp simd
  for (int64_t d = 0; d < Di; ++d) out[d] *= static_cast<Acc>(dt[d]) * static_cast<Acc>(ut[d]);
}

// The channel reduction of a row of the compute type V; max and |·|-max as vector reductions
// (max is exact in any order; written as a conditional, since GCC does not vectorise std::max
// here), the l2 sum serially in double.
template <class V>
V reduce_row(const V* v, int64_t Di, SimbaCriterion criterion) {
  int nan = 0;
#pragma omp simd reduction(| : nan)
  for (int64_t d = 0; d < Di; ++d) nan |= v[d] != v[d];
  if (nan) return std::numeric_limits<V>::quiet_NaN();
  V m = -std::numeric_limits<V>::infinity();
  if (criterion == SimbaCriterion::Simba) {
#pragma omp simd reduction(max : m)
    for (int64_t d = 0; d < Di; ++d) m = v[d] > m ? v[d] : m;
    return m;
  }
  if (criterion == SimbaCriterion::SimbaAbs) {
#pragma omp simd reduction(max : m)
    for (int64_t d = 0; d < Di; ++d) m = std::fabs(v[d]) > m ? std::fabs(v[d]) : m;
    return m;
  }
  double ss = 0.0;
  for (int64_t d = 0; d < Di; ++d) ss += static_cast<double>(v[d]) * v[d];
  return static_cast<V>(std::sqrt(ss));
}

// The rows of a (B, L, W) tensor in the kernels' layout.
template <class T>
SeqView<const T> rows(const Tensor& t) {
  return {t.device_data<T>(), t.stride(1)};
}

void check_stream(const char* op, const Tensor& x, int64_t n) {
  SIMBA_CHECK(x.defined() && x.dim() == 3 && x.size(1) >= n && n >= 1,
              op << ": expected a (B, L, D) stream with L >= n = " << n << ", got "
                 << (x.defined() ? shape_str(x.shape()) : "undefined"));
}

}  // namespace

template <class T>
void simba_contribution_forward(SeqView<acc_t<T>> dy, SeqView<const T> u, SeqView<const T> delta, const T* A,
                                SeqView<const T> Bm, SeqView<const T> Cm, int64_t n, int64_t Di, int64_t N) {
  check_score_inputs("simba_contribution_forward", u, delta, A, Bm, Cm, n, Di, N);
  SIMBA_CHECK(dy.p && dy.ld >= Di, "simba_contribution_forward: dy is null or its row stride " << dy.ld << " < Di=" << Di);
  const ScoreSetup<T> s = setup(delta, A, n, Di, N);
#pragma omp parallel for schedule(static) if (n * Di * N > kParallelGrain)
  for (int64_t t = 0; t < n; ++t) contribution_row(dy.p + t * dy.ld, t, s, u, delta, Bm, Cm, n, Di, N);
}

template <class T>
void simba_score_forward(acc_t<T>* scores, SeqView<const T> u, SeqView<const T> delta, const T* A, SeqView<const T> Bm,
                         SeqView<const T> Cm, int64_t n, int64_t Di, int64_t N, SimbaCriterion criterion) {
  check_score_inputs("simba_score_forward", u, delta, A, Bm, Cm, n, Di, N);
  SIMBA_CHECK(scores, "simba_score_forward: scores is null");
  SIMBA_CHECK(is_ssm_criterion(criterion), "simba_score_forward: criterion " << criterion_name(criterion)
                                               << " is not computed from the SSM (expected simba, simba-abs or simba-l2)");
  const ScoreSetup<T> s = setup(delta, A, n, Di, N);
#pragma omp parallel if (n * Di * N > kParallelGrain)
  {
    std::vector<acc_t<T>> row(Di);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < n; ++t) {
      contribution_row(row.data(), t, s, u, delta, Bm, Cm, n, Di, N);
      scores[t] = reduce_row(row.data(), Di, criterion);
    }
  }
}

template <class T>
void simba_scores_batch_cpu(acc_t<T>* scores, SeqView<const T> u, SeqView<const T> delta, const T* A,
                            SeqView<const T> Bm, SeqView<const T> Cm, int64_t B, int64_t L, int64_t n, int64_t Di,
                            int64_t N, SimbaCriterion criterion) {
  SIMBA_CHECK(B >= 0 && n >= 1 && n <= L, "simba_scores_batch_cpu: sizes must be B >= 0 and 1 <= n <= L, got B="
                                              << B << " n=" << n << " L=" << L);
  auto seq = [L](SeqView<const T> v, int64_t b) { return SeqView<const T>{v.p + b * L * v.ld, v.ld}; };
  for (int64_t b = 0; b < B; ++b)
    simba_score_forward<T>(scores + b * n, seq(u, b), seq(delta, b), A, seq(Bm, b), seq(Cm, b), n, Di, N, criterion);
}

template <class T>
void simba_select_cpu(int64_t* next, const T* scores, const int64_t* kept, int64_t B, int64_t n, int64_t k) {
  SIMBA_CHECK(B >= 0 && k >= 1 && k <= n, "simba_select_cpu: sizes must be B >= 0 and 1 <= k <= n, got B="
                                              << B << " n=" << n << " k=" << k);
  for (int64_t b = 0; b < B; ++b) {
    // Widening to double keeps every comparison (and NaN) exactly as it was in T.
    const std::vector<double> row(scores + b * n, scores + (b + 1) * n);
    const std::vector<int64_t> pick = select_kept(row, k);
    for (int64_t j = 0; j < k; ++j) next[b * k + j] = kept[b * n + pick[j]];
  }
}

void simba_rows_cpu(int64_t* flat, const int64_t* kept, int64_t B, int64_t n, int64_t c, int64_t m) {
  const int64_t L = c + m, T = n + m;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < T; ++j) flat[b * T + j] = b * L + (j < n ? kept[b * n + j] : c + (j - n));
}

#define SIMBA_INSTANTIATE_SCORE(T)                                                                               \
  template void simba_contribution_forward<T>(SeqView<acc_t<T>>, SeqView<const T>, SeqView<const T>, const T*,   \
                                              SeqView<const T>, SeqView<const T>, int64_t, int64_t, int64_t);    \
  template void simba_score_forward<T>(acc_t<T>*, SeqView<const T>, SeqView<const T>, const T*, SeqView<const T>, \
                                       SeqView<const T>, int64_t, int64_t, int64_t, SimbaCriterion);             \
  template void simba_scores_batch_cpu<T>(acc_t<T>*, SeqView<const T>, SeqView<const T>, const T*,               \
                                          SeqView<const T>, SeqView<const T>, int64_t, int64_t, int64_t, int64_t, \
                                          int64_t, SimbaCriterion);                                               \
  template void simba_select_cpu<T>(int64_t*, const T*, const int64_t*, int64_t, int64_t, int64_t);
SIMBA_INSTANTIATE_SCORE(float)
SIMBA_INSTANTIATE_SCORE(double)
SIMBA_INSTANTIATE_SCORE(bfloat16)
#undef SIMBA_INSTANTIATE_SCORE

Tensor simba_scores(const MixerTrace& trace, int64_t n, SimbaCriterion criterion) {
  SIMBA_CHECK(trace.u.defined() && trace.u.dim() == 3 && n >= 1 && trace.u.size(1) >= n,
              "simba_scores: expected a layer trace with u (B, L, Di), L >= n = "
                  << n << ", got " << (trace.u.defined() ? shape_str(trace.u.shape()) : "no trace"));
  const int64_t B = trace.u.size(0), L = trace.u.size(1), Di = trace.u.size(2);
  SIMBA_CHECK(trace.A.dim() == 2 && trace.A.size(0) == Di, "simba_scores: A must be (Di=" << Di << ", N), got "
                                                               << shape_str(trace.A.shape()));
  const int64_t N = trace.A.size(1);
  SIMBA_CHECK(trace.delta.shape() == (Shape{B, L, Di}) && trace.Bm.shape() == (Shape{B, L, N}) &&
                  trace.Cm.shape() == (Shape{B, L, N}),
              "simba_scores: trace shapes u " << shape_str(trace.u.shape()) << ", delta "
                                              << shape_str(trace.delta.shape()) << ", B " << shape_str(trace.Bm.shape())
                                              << ", C " << shape_str(trace.Cm.shape()) << " do not fit A "
                                              << shape_str(trace.A.shape()));
  const Tensor u = as_scan_rows(trace.u), delta = as_scan_rows(trace.delta);
  const Tensor Bm = as_scan_rows(trace.Bm), Cm = as_scan_rows(trace.Cm), A = trace.A.contiguous();
  const Device dev = op_device("simba_scores", {u, delta, Bm, Cm, A});
  Tensor out = Tensor::empty({B, n}, acc_dtype(trace.u.dtype()), dev);
  SIMBA_DISPATCH_COMPUTE_KERNEL(dev, trace.u.dtype(), "simba_scores", simba_scores_batch,
                                out.device_data<acc_t<scalar_t>>(), rows<scalar_t>(u), rows<scalar_t>(delta),
                                A.device_data<scalar_t>(), rows<scalar_t>(Bm), rows<scalar_t>(Cm), B, L, n, Di, N,
                                criterion);
  return out;
}

Tensor norm_scores(const Tensor& hidden, int64_t n) {
  check_stream("norm_scores", hidden, n);
  return sqrt(sum(square(hidden.narrow(1, 0, n)), -1));
}

Tensor delta_scores(const MixerTrace& trace, int64_t n) {
  check_stream("delta_scores", trace.delta, n);
  return sqrt(sum(square(trace.delta.narrow(1, 0, n)), -1));
}

Tensor clip_scores(const Tensor& mixer_out, int64_t n) {
  check_stream("clip_scores", mixer_out, n);
  return sum(clamp(mixer_out.narrow(1, 0, n), 0.0, INFINITY), -1);
}

Tensor random_scores(int64_t B, int64_t n, uint64_t seed, int64_t layer, DType dtype) {
  Generator g(seed ^ (0x9E3779B97F4A7C15ull * static_cast<uint64_t>(layer + 1)));
  return rand({n}, g, dtype).unsqueeze(0).expand({B, n}).contiguous();
}

Tensor stride_scores(int64_t B, int64_t n, int64_t k, DType dtype) {
  SIMBA_CHECK(k >= 1 && k <= n, "stride_scores: keep k=" << k << " of n=" << n << " tokens, expected 1 <= k <= n");
  std::vector<double> row(n, 0.0);
  for (int64_t j = 0; j < k; ++j) row[(n - 1) - j * n / k] = 1.0;
  return Tensor::from_vector({n}, row, dtype).unsqueeze(0).expand({B, n}).contiguous();
}

std::vector<int64_t> select_kept(const std::vector<double>& scores, int64_t k) {
  const int64_t n = static_cast<int64_t>(scores.size());
  SIMBA_CHECK(n >= 1 && k >= 1 && k <= n, "select_kept: keep k=" << k << " of n=" << n << " tokens, expected 1 <= k <= n");
  std::vector<int64_t> others(n - 1);
  for (int64_t t = 0; t < n - 1; ++t) others[t] = t;
  const auto key = [&](int64_t t) { return std::isnan(scores[t]) ? -INFINITY : scores[t]; };
  // Higher score first; NaN (as −inf) last; equal keys: earlier position first.
  std::partial_sort(others.begin(), others.begin() + (k - 1), others.end(), [&](int64_t a, int64_t b) {
    const double ka = key(a), kb = key(b);
    return ka != kb ? ka > kb : a < b;
  });
  std::vector<int64_t> kept(others.begin(), others.begin() + (k - 1));
  kept.push_back(n - 1);
  std::sort(kept.begin(), kept.end());
  return kept;
}

}  // namespace simba
