// Simba: the Δy_T score against a brute-force oracle (the reference scan run with u_t zeroed,
// rel. error <= 1e-9 in float64), float32 vs float64 and thread-count determinism of the score
// kernel, the schedule's token counts, the options parser and its errors, the pruned forward
// (keep=1 equals the dense model bit for bit; kept rows equal the dense block on the gathered
// subsequence; float64 finite-difference gradients w.r.t. every parameter with the kept sets
// fixed, tolerance 1e-6; leak-freedom under continuation changes; B>1 equals B runs of B=1),
// the continuation loss convention, and the FLOP formulas against hand counts.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <set>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "ssm/flops.h"
#include "ssm/selective_scan.h"
#include "ssm/simba_forward.h"
#include "ssm/simba_schedule.h"
#include "ssm/simba_score.h"
#include "tests/model_util.h"
#include "tests/test_util.h"

using namespace simba;

namespace {

const SimbaCriterion kAllCriteria[] = {SimbaCriterion::Simba,  SimbaCriterion::SimbaAbs, SimbaCriterion::SimbaL2,
                                       SimbaCriterion::Random, SimbaCriterion::Stride,   SimbaCriterion::Norm,
                                       SimbaCriterion::Clip,   SimbaCriterion::Delta};
const SimbaCriterion kSsmCriteria[] = {SimbaCriterion::Simba, SimbaCriterion::SimbaAbs, SimbaCriterion::SimbaL2};

SimbaOptions options(const std::string& text) { return parse_simba_options(text, "test"); }

// One random SSM problem of one sequence, rows padded to exercise the row strides.
struct Problem {
  int64_t n, Di, N, ld_u, ld_bc;
  std::vector<double> u, delta, A, Bm, Cm;
};

Problem make_problem(int64_t n, int64_t Di, int64_t N, uint64_t seed) {
  Generator g(seed);
  Problem p{n, Di, N, Di + 3, N + 2, {}, {}, {}, {}, {}};
  auto fill = [&](std::vector<double>& v, int64_t size, double lo, double hi) {
    v.resize(size);
    for (auto& x : v) x = lo + (hi - lo) * g.uniform();
  };
  fill(p.u, n * p.ld_u, -1.5, 1.5);
  fill(p.delta, n * p.ld_u, 0.05, 0.5);
  fill(p.A, Di * N, -2.0, -0.1);
  fill(p.Bm, n * p.ld_bc, -1.0, 1.0);
  fill(p.Cm, n * p.ld_bc, -1.0, 1.0);
  return p;
}

// y_T (Di) of the reference scan (no D skip, no gate) for the problem with input u.
std::vector<double> scan_last(const Problem& p, const std::vector<double>& u) {
  std::vector<double> out(p.n * p.Di);
  selective_scan_forward_ref<double>({out.data(), p.Di}, nullptr, {u.data(), p.ld_u}, {p.delta.data(), p.ld_u},
                                     p.A.data(), {p.Bm.data(), p.ld_bc}, {p.Cm.data(), p.ld_bc}, nullptr,
                                     {nullptr, 0}, nullptr, 1, p.n, p.Di, p.N);
  return std::vector<double>(out.end() - p.Di, out.end());
}

// |a − o| / max(|o|, floor): relative error with a floor for entries near zero.
double rel_err(double a, double o, double floor) { return std::fabs(a - o) / std::max(std::fabs(o), floor); }

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

// Row b of a (B, n) tensor.
std::vector<double> row(const Tensor& t, int64_t b) { return t.select(0, b).to_vector(); }
std::vector<int64_t> row_ints(const Tensor& t, int64_t b) { return t.select(0, b).contiguous().to_ints(); }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Score

TEST_CASE("score: Δy_T(t) is exactly the change of y_T when u_t alone is zeroed (brute-force oracle)") {
  struct Size {
    int64_t n, Di, N;
  };
  // Fixed corner sizes (n = 1, N = 1, Di = 1), one above the OpenMP grain (70·60·8 > 32768),
  // and random ones.
  std::vector<Size> sizes = {{1, 1, 1}, {1, 5, 3}, {7, 1, 1}, {6, 4, 1}, {13, 3, 16}, {70, 60, 8}};
  Generator gs(99);
  for (int i = 0; i < 6; ++i) sizes.push_back({gs.randint(1, 17), gs.randint(1, 21), gs.randint(1, 9)});
  double worst_dy = 0, worst_score = 0;
  uint64_t seed = 100;
  for (const Size& s : sizes) {
    INFO("n=" << s.n << " Di=" << s.Di << " N=" << s.N);
    const Problem p = make_problem(s.n, s.Di, s.N, ++seed);
    const std::vector<double> yT = scan_last(p, p.u);
    std::vector<double> oracle(s.n * s.Di);  // (n, Di)
    for (int64_t t = 0; t < s.n; ++t) {
      std::vector<double> u0 = p.u;
      std::fill(u0.begin() + t * p.ld_u, u0.begin() + t * p.ld_u + s.Di, 0.0);
      const std::vector<double> y0 = scan_last(p, u0);
      for (int64_t d = 0; d < s.Di; ++d) oracle[t * s.Di + d] = yT[d] - y0[d];
    }
    const double floor = 1e-6 * max_abs(oracle);
    REQUIRE(floor > 0);
    // The vector Δy_T(t) for every t and d, written with a padded row stride.
    const int64_t ld_dy = s.Di + 1;
    std::vector<double> dy(s.n * ld_dy, -7.0);
    simba_contribution_forward<double>({dy.data(), ld_dy}, {p.u.data(), p.ld_u}, {p.delta.data(), p.ld_u}, p.A.data(),
                                       {p.Bm.data(), p.ld_bc}, {p.Cm.data(), p.ld_bc}, s.n, s.Di, s.N);
    for (int64_t t = 0; t < s.n; ++t)
      for (int64_t d = 0; d < s.Di; ++d)
        worst_dy = std::max(worst_dy, rel_err(dy[t * ld_dy + d], oracle[t * s.Di + d], floor));
    // The three reductions.
    for (SimbaCriterion c : kSsmCriteria) {
      std::vector<double> scores(s.n);
      simba_score_forward<double>(scores.data(), {p.u.data(), p.ld_u}, {p.delta.data(), p.ld_u}, p.A.data(),
                                  {p.Bm.data(), p.ld_bc}, {p.Cm.data(), p.ld_bc}, s.n, s.Di, s.N, c);
      for (int64_t t = 0; t < s.n; ++t) {
        double mx = -INFINITY, mabs = 0, ss = 0;
        for (int64_t d = 0; d < s.Di; ++d) {
          const double o = oracle[t * s.Di + d];
          mx = std::max(mx, o);
          mabs = std::max(mabs, std::fabs(o));
          ss += o * o;
        }
        const double expect = c == SimbaCriterion::Simba ? mx : c == SimbaCriterion::SimbaAbs ? mabs : std::sqrt(ss);
        worst_score = std::max(worst_score, rel_err(scores[t], expect, floor));
      }
    }
  }
  MESSAGE("score vs brute-force oracle: max rel. error Δy " << worst_dy << ", scores " << worst_score);
  CHECK(worst_dy <= 1e-9);
  CHECK(worst_score <= 1e-9);
}

TEST_CASE("score: the anchor's Δy has no decay and the signed/abs/l2 criteria differ on a hand example") {
  // n = 2, Di = 2, N = 1: Δy_T(1)[d] = C_1·B_1·Δ_1[d]·u_1[d]; Δy_T(0)[d] = C_1·exp(A_d·Δ_1[d])·Δ_0[d]·B_0·u_0[d].
  const double u[] = {1.0, -2.0, 0.5, -3.0}, delta[] = {0.1, 0.2, 0.3, 0.4}, A[] = {-1.0, -2.0};
  const double Bm[] = {2.0, 1.0}, Cm[] = {0.0, 1.5};
  double dy[4];
  simba_contribution_forward<double>({dy, 2}, {u, 2}, {delta, 2}, A, {Bm, 1}, {Cm, 1}, 2, 2, 1);
  CHECK(dy[2] == doctest::Approx(1.5 * 1.0 * 0.3 * 0.5));
  CHECK(dy[3] == doctest::Approx(1.5 * 1.0 * 0.4 * -3.0));
  CHECK(dy[0] == doctest::Approx(1.5 * std::exp(-1.0 * 0.3) * 0.1 * 2.0 * 1.0));
  CHECK(dy[1] == doctest::Approx(1.5 * std::exp(-2.0 * 0.4) * 0.2 * 2.0 * -2.0));
  double s[2];
  simba_score_forward<double>(s, {u, 2}, {delta, 2}, A, {Bm, 1}, {Cm, 1}, 2, 2, 1, SimbaCriterion::Simba);
  CHECK(s[1] == doctest::Approx(dy[2]));  // signed max picks the positive channel
  simba_score_forward<double>(s, {u, 2}, {delta, 2}, A, {Bm, 1}, {Cm, 1}, 2, 2, 1, SimbaCriterion::SimbaAbs);
  CHECK(s[1] == doctest::Approx(-dy[3]));  // |−1.8| beats 0.225
  simba_score_forward<double>(s, {u, 2}, {delta, 2}, A, {Bm, 1}, {Cm, 1}, 2, 2, 1, SimbaCriterion::SimbaL2);
  CHECK(s[1] == doctest::Approx(std::hypot(dy[2], dy[3])));
  CHECK(error_of([&] {
          simba_score_forward<double>(s, {u, 2}, {delta, 2}, A, {Bm, 1}, {Cm, 1}, 2, 2, 1, SimbaCriterion::Norm);
        }).find("criterion norm is not computed from the SSM") != std::string::npos);
}

TEST_CASE("score kernel: float32 agrees with float64, and results are bit-identical for any thread count") {
  const int64_t n = 300, Di = 64, N = 8;  // n·Di·N above the OpenMP grain
  const Problem p = make_problem(n, Di, N, 7);
  auto to_f = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
  const std::vector<float> uf = to_f(p.u), df = to_f(p.delta), Af = to_f(p.A), Bf = to_f(p.Bm), Cf = to_f(p.Cm);
  // The float64 reference is computed from the float32-rounded inputs, so only arithmetic differs.
  const std::vector<double> ud(uf.begin(), uf.end()), dd(df.begin(), df.end()), Ad(Af.begin(), Af.end()),
      Bd(Bf.begin(), Bf.end()), Cd(Cf.begin(), Cf.end());
  for (SimbaCriterion c : kSsmCriteria) {
    INFO("criterion " << std::string(criterion_name(c)));
    std::vector<float> sf(n);
    std::vector<double> sd(n);
    simba_score_forward<float>(sf.data(), {uf.data(), p.ld_u}, {df.data(), p.ld_u}, Af.data(), {Bf.data(), p.ld_bc},
                               {Cf.data(), p.ld_bc}, n, Di, N, c);
    simba_score_forward<double>(sd.data(), {ud.data(), p.ld_u}, {dd.data(), p.ld_u}, Ad.data(), {Bd.data(), p.ld_bc},
                                {Cd.data(), p.ld_bc}, n, Di, N, c);
    double worst = 0;
    const double scale = max_abs(sd);
    for (int64_t t = 0; t < n; ++t) worst = std::max(worst, std::fabs(sf[t] - sd[t]) / scale);
    MESSAGE(std::string(criterion_name(c)) << ": float32 vs float64 max error / max|score| = " << worst);
    CHECK(worst <= 1e-5);
  }
#ifdef _OPENMP
  const int saved = omp_get_max_threads();
  std::vector<std::vector<double>> runs;
  std::vector<double> dy(n * Di);
  for (int threads : {1, 2, 3, 4}) {
    omp_set_num_threads(threads);
    std::vector<double> s(n);
    simba_score_forward<double>(s.data(), {p.u.data(), p.ld_u}, {p.delta.data(), p.ld_u}, p.A.data(),
                                {p.Bm.data(), p.ld_bc}, {p.Cm.data(), p.ld_bc}, n, Di, N, SimbaCriterion::SimbaL2);
    simba_contribution_forward<double>({dy.data(), Di}, {p.u.data(), p.ld_u}, {p.delta.data(), p.ld_u}, p.A.data(),
                                       {p.Bm.data(), p.ld_bc}, {p.Cm.data(), p.ld_bc}, n, Di, N);
    s.insert(s.end(), dy.begin(), dy.end());
    runs.push_back(s);
  }
  omp_set_num_threads(saved);
  for (size_t i = 1; i < runs.size(); ++i) CHECK(runs[i] == runs[0]);
#endif
}

TEST_CASE("selection: anchor always kept, ties to the earlier position, NaN lowest, original order") {
  // The anchor (index 4) has the lowest score and is still kept.
  CHECK(select_kept({5.0, 1.0, 9.0, 3.0, -100.0}, 3) == std::vector<int64_t>{0, 2, 4});
  // Ties: earlier first.
  CHECK(select_kept({2.0, 7.0, 2.0, 2.0, 0.0}, 3) == std::vector<int64_t>{0, 1, 4});
  // NaN ranks below every number.
  CHECK(select_kept({NAN, -5.0, 2.0, NAN, 1.0}, 3) == std::vector<int64_t>{1, 2, 4});
  CHECK(select_kept({NAN, -5.0, NAN, 1.0}, 3) == std::vector<int64_t>{0, 1, 3});  // NaNs tie: earlier first
  CHECK(select_kept({3.0}, 1) == std::vector<int64_t>{0});
  CHECK(select_kept({3.0, 1.0, 2.0}, 3) == std::vector<int64_t>{0, 1, 2});
  CHECK(error_of([] { select_kept({1.0, 2.0}, 3); }).find("keep k=3 of n=2") != std::string::npos);
  // Stride: evenly spaced back from the anchor.
  // n = 10, k = 3: positions 9 − floor(j·10/3) = 9, 6, 3.
  CHECK(row(stride_scores(2, 10, 3, DType::F64), 1) == std::vector<double>{0, 0, 0, 1, 0, 0, 1, 0, 0, 1});
  CHECK(row(stride_scores(1, 4, 4, DType::F64), 0) == std::vector<double>{1, 1, 1, 1});
}

// ---------------------------------------------------------------------------------------------
// Schedule and options

TEST_CASE("schedule: the documented n_ℓ for linear, uniform and custom schedules and the edge cases") {
  auto counts = [](const std::string& opt, int64_t layers, int64_t n0) {
    return simba_token_counts(options(opt), layers, n0);
  };
  using V = std::vector<int64_t>;
  // Linear, s = 0: r = 1, 0.7, 0.4, 0.1 (0.7·100 = 70.00000000000001 counts as 70).
  CHECK(counts("keep=0.1", 4, 100) == V{100, 70, 40, 10});
  // The 0.3·30 case: r_1 = 1 − 0.7·1/1 = 0.30000000000000004, and 9, not 10.
  CHECK(keep_count(1.0 - 0.7, 30) == 9);
  CHECK(counts("keep=0.3", 2, 30) == V{30, 9});
  CHECK(keep_count(0.301, 30) == 10);  // a real fraction still rounds up
  // Start layer: layers 0..s dense, then linear down to ρ.
  CHECK(counts("keep=0.2,start=2", 5, 50) == V{50, 50, 50, 30, 10});
  // s >= Lyr − 1: no pruning.
  CHECK(counts("keep=0.1,start=2", 3, 17) == V{17, 17, 17});
  CHECK(counts("keep=0.1,start=7", 3, 17) == V{17, 17, 17});
  // Lyr = 1.
  CHECK(counts("keep=0.1", 1, 9) == V{9});
  // n_0 = 1: the anchor alone everywhere.
  CHECK(counts("keep=0.1", 4, 1) == V{1, 1, 1, 1});
  // Small n_0: ceil, never below 1. r = 1, 0.55, 0.1 -> 3, ceil(1.65) = 2, max(1, ceil(0.3)) = 1.
  CHECK(counts("keep=0.1", 3, 3) == V{3, 2, 1});
  // keep = 1: dense.
  CHECK(counts("keep=1", 5, 12) == V{12, 12, 12, 12, 12});
  // Inverted (S4): Lyr = 4, s = 0, M = 3: r = 1 − 0.9·k(7 − k)/12 = 0.55, 0.25, 0.1.
  CHECK(counts("keep=0.1,schedule=inverted", 4, 100) == V{100, 55, 25, 10});
  // M = 1 (two layers, or s = Lyr − 2): one pruned layer, the same as linear.
  CHECK(counts("keep=0.3,schedule=inverted", 2, 30) == V{30, 9});
  CHECK(counts("keep=0.2,schedule=inverted,start=3", 5, 50) == V{50, 50, 50, 50, 10});
  // Start layer 1 of 5, M = 3: r = 1, 1, 0.55, 0.25, 0.1 again.
  CHECK(counts("keep=0.1,schedule=inverted,start=1", 5, 100) == V{100, 100, 55, 25, 10});
  // Every pruned layer in between keeps less than under linear; the last one keeps ρ.
  for (int64_t L : {3, 6, 12, 24}) {
    const V lin = counts("keep=0.1", L, 1000), inv = counts("keep=0.1,schedule=inverted", L, 1000);
    CHECK(inv.front() == 1000);
    CHECK(inv.back() == lin.back());
    for (int64_t l = 1; l + 1 < L; ++l) CHECK(inv[l] < lin[l]);
    for (int64_t l = 1; l < L; ++l) CHECK(inv[l] <= inv[l - 1]);
  }
  // Uniform: the linear schedule's mean ratio after s. Lyr = 4, s = 0: mean(0.7, 0.4, 0.1) = 0.4.
  CHECK(counts("keep=0.1,schedule=uniform", 4, 100) == V{100, 40, 40, 40});
  // s = 1: mean(0.55, 0.1) = 0.325 -> ceil(32.5) = 33.
  CHECK(counts("keep=0.1,schedule=uniform,start=1", 4, 100) == V{100, 100, 33, 33});
  CHECK(counts("keep=0.25,schedule=uniform", 2, 8) == V{8, 2});
  // Custom ratios and counts (counts clamped to n_0).
  CHECK(counts("schedule=custom,ratios=1:0.5:0.25", 3, 10) == V{10, 5, 3});
  CHECK(counts("schedule=custom,counts=64:32:8", 3, 40) == V{40, 32, 8});
  CHECK(counts("schedule=custom,counts=64:32:8", 3, 20) == V{20, 20, 8});
  // Errors against the model and context.
  CHECK(error_of([&] { counts("schedule=custom,ratios=1:0.5", 3, 10); })
            .find("schedule=custom gives 2 ratios, the model has 3 layers") != std::string::npos);
  CHECK(error_of([&] { counts("schedule=custom,counts=30:20:8", 3, 40); })
            .find("counts: entry 0 is 30 but the context has 40 tokens") != std::string::npos);
  CHECK(error_of([&] { counts("keep=0.1", 3, 0); }).find("context of 0 tokens") != std::string::npos);
}

TEST_CASE("options: defaults, parsing, canonical round trip") {
  const SimbaOptions d = options("");
  CHECK(d.keep == 0.1);
  CHECK(d.schedule == SimbaSchedule::Linear);
  CHECK(d.criterion == SimbaCriterion::Simba);
  CHECK(d.start == 0);
  CHECK(d.seed == 0);
  const SimbaOptions o = options(" keep=0.25 , schedule=uniform,criterion=simba-l2,start=3,seed=42");
  CHECK(o.keep == 0.25);
  CHECK(o.schedule == SimbaSchedule::Uniform);
  CHECK(o.criterion == SimbaCriterion::SimbaL2);
  CHECK(o.start == 3);
  CHECK(o.seed == 42);
  for (const std::string text : {"keep=0.1,schedule=linear,criterion=simba,start=0,seed=0",
                                 "keep=0.30000000000000004,schedule=uniform,criterion=clip,start=2,seed=9",
                                 "keep=0.1,schedule=custom,criterion=random,start=0,seed=0,ratios=1:0.5:0.125",
                                 "keep=0.1,schedule=custom,criterion=norm,start=0,seed=0,counts=50:20:5"}) {
    INFO(text);
    CHECK(options(text).to_string() == text);
  }
  for (SimbaCriterion c : kAllCriteria)
    CHECK(options(std::string("criterion=") + criterion_name(c)).criterion == c);
}

TEST_CASE("options: bad input gives clear errors naming the item") {
  auto err = [](const std::string& text) { return error_of([&] { parse_simba_options(text, "--simba"); }); };
  CHECK(err("keep=1.5").find("--simba: keep=1.5: expected a number in (0, 1]") != std::string::npos);
  CHECK(err("keep=0").find("keep=0: expected a number in (0, 1]") != std::string::npos);
  CHECK(err("keep=abc").find("keep=abc: expected a number in (0, 1]") != std::string::npos);
  CHECK(err("criterion=best").find("criterion=best: unknown criterion; valid: simba, simba-abs, simba-l2, random, "
                                   "stride, norm, clip, delta") != std::string::npos);
  CHECK(err("schedule=cosine").find("schedule=cosine: unknown schedule; valid: linear, uniform, inverted, custom") !=
        std::string::npos);
  CHECK(err("start=-1").find("start=-1: expected an integer >= 0") != std::string::npos);
  CHECK(err("start=1.5").find("start=1.5: expected an integer >= 0") != std::string::npos);
  CHECK(err("keep").find("malformed item 'keep': expected key=value") != std::string::npos);
  CHECK(err("keep=0.1,,start=1").find("malformed item '': expected key=value") != std::string::npos);
  CHECK(err("=3").find("malformed item '=3'") != std::string::npos);
  CHECK(err("speed=3").find("unknown key 'speed' in 'speed=3'; valid keys: keep, schedule, criterion, start, seed, "
                            "ratios, counts") != std::string::npos);
  CHECK(err("keep=0.1,keep=0.2").find("key 'keep' given twice") != std::string::npos);
  CHECK(err("seed=-4").find("seed=-4: expected an integer >= 0") != std::string::npos);
  CHECK(err("ratios=1:0.5").find("ratios= is only used with schedule=custom (got schedule=linear)") !=
        std::string::npos);
  CHECK(err("schedule=custom").find("schedule=custom needs exactly one of ratios= and counts=, got neither") !=
        std::string::npos);
  CHECK(err("schedule=custom,ratios=0.5:0.2").find("ratios: entry 0 is 0.5; layer 0 always processes the whole "
                                                   "context, so it must be 1") != std::string::npos);
  CHECK(err("schedule=custom,ratios=1:0.2:0.5").find("ratios: entry 2 (0.5) is larger than entry 1 (0.2)") !=
        std::string::npos);
  CHECK(err("schedule=custom,ratios=1:x").find("ratios=1:x: 'x' is not a number in (0, 1]") != std::string::npos);
  CHECK(err("schedule=custom,counts=8:0").find("counts: entry 1 (0) is not an integer >= 1") != std::string::npos);
  // A struct built by hand is validated where it is used.
  SimbaOptions bad;
  bad.keep = 1.5;
  MambaLM model(tiny_config(2), 1);
  CHECK(error_of([&] { simba_forward(model, random_ids(1, 5, 11, 1), 3, bad); })
            .find("simba_forward: keep=1.5: expected a number in (0, 1]") != std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Pruned forward

TEST_CASE("forward: keep=1 reproduces the dense forward bit for bit (logits and hidden states)") {
  for (DType dt : {DType::F32, DType::F64}) {
    INFO(dtype_name(dt));
    MambaConfig cfg = tiny_config(3);
    MambaLM model(cfg, 11, dt);
    jitter(model, 12, 0.05);
    const int64_t B = 2, c = 7, m = 4;
    const Tensor ids = random_ids(B, c + m, cfg.vocab_size, 13);
    NoGradGuard ng;
    const SimbaResult r = simba_forward(model, ids, c, options("keep=1"), true);
    const Tensor dense = model.forward(ids).data();  // (B, L, V)
    CHECK(r.logits.shape() == (Shape{B, m, cfg.vocab_size}));
    CHECK(r.logits.data().to_vector() == dense.narrow(1, c - 1, m).contiguous().to_vector());
    Variable h = model.embed(ids);
    for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
      h = model.backbone().layers[l]->forward(h);
      CHECK(r.layer_hidden[l].to_vector() == h.data().to_vector());
    }
    CHECK(r.hidden.data().to_vector() == h.data().to_vector());
    for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
      CHECK(r.counts[l] == c);
      CHECK(row_ints(r.kept[l], 1) == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6});
    }
  }
}

TEST_CASE("forward: kept rows equal the dense block on the gathered subsequence; pruned rows are frozen") {
  MambaConfig cfg = tiny_config(4);
  MambaLM model(cfg, 21, DType::F64);
  jitter(model, 22, 0.05);
  const int64_t B = 2, c = 20, m = 5, L = c + m;
  const Tensor ids = random_ids(B, L, cfg.vocab_size, 23);
  NoGradGuard ng;
  for (SimbaCriterion crit : kAllCriteria) {
    SimbaOptions opt = options("keep=0.3");
    opt.criterion = crit;
    INFO("criterion " << std::string(criterion_name(crit)));
    const SimbaResult r = simba_forward(model, ids, c, opt, true);
    REQUIRE(r.counts == std::vector<int64_t>{20, 16, 11, 6});
    double worst = 0;
    for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
      const Tensor in = l == 0 ? model.embed(ids).data() : r.layer_hidden[l - 1];
      const Tensor out = r.layer_hidden[l];
      CHECK(r.kept[l].shape() == (Shape{B, r.counts[l]}));
      CHECK(r.scores[l].shape() == (Shape{B, r.counts[l]}));  // keep_trace scores every layer
      for (int64_t b = 0; b < B; ++b) {
        std::vector<int64_t> P = row_ints(r.kept[l], b);
        CHECK(std::is_sorted(P.begin(), P.end()));
        CHECK(P.back() == c - 1);
        if (l > 0) {
          const std::vector<int64_t> prev = row_ints(r.kept[l - 1], b);
          CHECK(std::includes(prev.begin(), prev.end(), P.begin(), P.end()));
        }
        for (int64_t p = c; p < L; ++p) P.push_back(p);
        const Tensor index = Tensor::from_ints({static_cast<int64_t>(P.size())}, P);
        const Tensor x = index_select(in.select(0, b), 0, index).unsqueeze(0);  // (1, T, D)
        const Tensor y = model.backbone().layers[l]->forward(Variable(x)).data().squeeze(0);
        const Tensor got = index_select(out.select(0, b), 0, index);
        const std::vector<double> yv = y.to_vector(), gv = got.to_vector();
        for (size_t i = 0; i < yv.size(); ++i) worst = std::max(worst, std::fabs(yv[i] - gv[i]) / (1 + std::fabs(yv[i])));
        const std::set<int64_t> processed(P.begin(), P.end());
        for (int64_t q = 0; q < L; ++q)
          if (!processed.count(q)) CHECK(out.select(0, b).select(0, q).to_vector() == in.select(0, b).select(0, q).to_vector());
      }
    }
    MESSAGE(std::string(criterion_name(crit)) << ": kept rows vs dense block on the gathered rows, max error " << worst);
    CHECK(worst <= 1e-13);
  }
}

TEST_CASE("forward: edge cases: one layer, a one-token context, a start layer past the last layer") {
  NoGradGuard ng;
  {
    MambaConfig cfg = tiny_config(1);
    MambaLM model(cfg, 35);
    const Tensor ids = random_ids(2, 9, cfg.vocab_size, 36);
    const SimbaResult r = simba_forward(model, ids, 6, options("keep=0.1"), true);
    CHECK(r.counts == std::vector<int64_t>{6});
    CHECK(r.scores[0].shape() == (Shape{2, 6}));  // the trace scores the only layer
    CHECK(r.logits.data().to_vector() == model.forward(ids).data().narrow(1, 5, 3).contiguous().to_vector());
  }
  MambaConfig cfg = tiny_config(3);
  MambaLM model(cfg, 37);
  const Tensor ids = random_ids(2, 5, cfg.vocab_size, 38);
  const Tensor dense = model.forward(ids).data();
  // c = 1: the anchor is token 0 and is all any layer keeps; nothing is pruned.
  const SimbaResult one = simba_forward(model, ids, 1, options("keep=0.1"));
  CHECK(one.counts == std::vector<int64_t>{1, 1, 1});
  CHECK(one.kept[2].to_ints() == std::vector<int64_t>{0, 0});
  CHECK(one.logits.data().to_vector() == dense.narrow(1, 0, 4).contiguous().to_vector());
  // start >= Lyr − 1: dense.
  const SimbaResult late = simba_forward(model, ids, 4, options("keep=0.1,start=2"));
  CHECK(late.counts == std::vector<int64_t>{4, 4, 4});
  CHECK(late.logits.data().to_vector() == dense.narrow(1, 3, 1).contiguous().to_vector());
  CHECK(late.scores[0].defined() == false);  // no layer needed scores
}

TEST_CASE("forward: the scores of a pruned layer are the criterion of that layer's compacted context rows") {
  MambaConfig cfg = tiny_config(3);
  MambaLM model(cfg, 31, DType::F64);
  jitter(model, 32, 0.05);
  const int64_t c = 12, m = 3;
  const Tensor ids = random_ids(1, c + m, cfg.vocab_size, 33);
  NoGradGuard ng;
  const SimbaResult r = simba_forward(model, ids, c, options("keep=0.25"), true);
  // Layer 1 runs on its kept context rows + the continuation; re-run its mixer there and score.
  const int64_t l = 1, n = r.counts[l];
  std::vector<int64_t> P = row_ints(r.kept[l], 0);
  for (int64_t p = c; p < c + m; ++p) P.push_back(p);
  const Tensor x = index_select(r.layer_hidden[0].select(0, 0), 0, Tensor::from_ints({n + m}, P)).unsqueeze(0);
  const auto& block = *model.backbone().layers[l];
  MixerTrace tr;
  block.mixer->forward(block.norm->forward(Variable(x)), &tr);
  CHECK(simba_scores(tr, n, SimbaCriterion::Simba).to_vector() == r.scores[l].to_vector());
  // The kept set of layer 2 is the top of these scores.
  const std::vector<int64_t> pick = select_kept(r.scores[l].to_vector(), r.counts[l + 1]);
  std::vector<int64_t> expect;
  for (int64_t i : pick) expect.push_back(P[i]);
  CHECK(row_ints(r.kept[l + 1], 0) == expect);
}

TEST_CASE("forward: the delta criterion scores a layer's tokens by the L2 norm of its step sizes Δ_t") {
  MambaConfig cfg = tiny_config(3);
  MambaLM model(cfg, 34, DType::F64);
  jitter(model, 35, 0.05);
  const int64_t c = 12, m = 3;
  const Tensor ids = random_ids(1, c + m, cfg.vocab_size, 36);
  NoGradGuard ng;
  const SimbaResult r = simba_forward(model, ids, c, options("keep=0.25,criterion=delta"), true);
  for (int64_t l : {int64_t(0), int64_t(1)}) {
    INFO("layer " << l);
    const int64_t n = r.counts[l];
    std::vector<int64_t> P = row_ints(r.kept[l], 0);
    for (int64_t p = c; p < c + m; ++p) P.push_back(p);
    const Tensor in = l == 0 ? model.embed(ids).data() : r.layer_hidden[l - 1];
    const Tensor x = index_select(in.select(0, 0), 0, Tensor::from_ints({n + m}, P)).unsqueeze(0);
    const auto& block = *model.backbone().layers[l];
    MixerTrace tr;
    block.mixer->forward(block.norm->forward(Variable(x)), &tr);
    const int64_t Di = tr.delta.size(2);
    const std::vector<double> delta = tr.delta.contiguous().to_vector(), got = r.scores[l].to_vector();
    REQUIRE(got.size() == static_cast<size_t>(n));
    for (int64_t t = 0; t < n; ++t) {
      double ss = 0;
      for (int64_t d = 0; d < Di; ++d) ss += delta[t * Di + d] * delta[t * Di + d];
      CHECK(got[t] == doctest::Approx(std::sqrt(ss)).epsilon(1e-12));
    }
    // Δ = softplus(...) > 0 varies by token: the criterion ranks, it does not tie.
    CHECK(*std::max_element(got.begin(), got.end()) > *std::min_element(got.begin(), got.end()));
  }
  CHECK(score_flops(SimbaCriterion::Delta, 3, cfg) == 2 * 3 * cfg.intermediate_size() + 3);
}

TEST_CASE("gradcheck: the pruned forward w.r.t. every parameter, kept sets fixed (float64, tied and untied)") {
  for (bool tied : {true, false}) {
    INFO("tied " << tied);
    MambaConfig cfg = tiny_config(3);
    cfg.tie_word_embeddings = tied;
    cfg.use_bias = !tied;
    MambaLM model(cfg, 41, DType::F64);
    jitter(model, 42, 0.05);
    const int64_t B = 2, c = 8, m = 3;
    const Tensor ids = random_ids(B, c + m, cfg.vocab_size, 43);
    const SimbaResult first = simba_forward(model, ids, c, options("keep=0.25"));
    REQUIRE(first.counts == std::vector<int64_t>{8, 5, 2});
    // The two sequences keep different sets (per-sequence gathers are exercised).
    CHECK(row_ints(first.kept[1], 0) != row_ints(first.kept[1], 1));
    const SimbaResult again = simba_forward_kept(model, ids, c, first.kept);
    CHECK(again.logits.data().to_vector() == first.logits.data().to_vector());
    auto params = model.named_parameters();
    std::vector<Variable> wrt;
    std::vector<std::string> names;
    for (auto& [name, p] : params) {
      wrt.push_back(p);
      names.push_back(name);
    }
    const GradcheckResult g =
        gradcheck_variables([&] { return simba_forward_kept(model, ids, c, first.kept).logits; }, wrt, names);
    MESSAGE("tied " << tied << ": logits max error " << g.max_error << " at " << g.where << " (" << g.checked
                    << " elements)");
    CHECK(g.checked > 0);
    CHECK(g.ok);
    // The loss is cross_entropy on those logits: a few parameters suffice to check the wiring.
    std::vector<Variable> some;
    std::vector<std::string> some_names;
    for (size_t i = 0; i < names.size(); ++i)
      if (names[i].find("layers.0.mixer.in_proj") != std::string::npos ||
          names[i].find("layers.2.norm") != std::string::npos || names[i] == "backbone.norm_f.weight") {
        some.push_back(wrt[i]);
        some_names.push_back(names[i]);
      }
    const GradcheckResult gl = gradcheck_variables(
        [&] { return continuation_loss(simba_forward_kept(model, ids, c, first.kept), ids); }, some, some_names);
    MESSAGE("tied " << tied << ": loss max error " << gl.max_error << " at " << gl.where << " (" << gl.checked
                    << " elements)");
    CHECK(gl.checked > 0);
    CHECK(gl.ok);
  }
}

TEST_CASE("forward: leak-freedom: changing the continuation never changes a kept set (every criterion)") {
  MambaConfig cfg = tiny_config(4);
  MambaLM model(cfg, 51);
  jitter(model, 52, 0.05);
  const int64_t B = 2, c = 16, m = 6, L = c + m;
  NoGradGuard ng;
  Generator g(53);
  for (SimbaCriterion crit : kAllCriteria) {
    SimbaOptions opt = options("keep=0.2,seed=5");
    opt.criterion = crit;
    for (int trial = 0; trial < 3; ++trial) {
      INFO("criterion " << std::string(criterion_name(crit)) << " trial " << trial);
      const Tensor ids = random_ids(B, L, cfg.vocab_size, 60 + trial);
      const SimbaResult base = simba_forward(model, ids, c, opt);
      std::vector<int64_t> changed = ids.to_ints();
      for (int64_t b = 0; b < B; ++b)
        for (int64_t p = c; p < L; ++p) changed[b * L + p] = (changed[b * L + p] + 1 + g.randint(0, 10)) % 11;
      const SimbaResult other = simba_forward(model, Tensor::from_ints({B, L}, changed), c, opt);
      // m = 0 (inspection only) must choose the same sets too.
      const SimbaResult none = simba_forward(model, ids.narrow(1, 0, c).contiguous(), c, opt);
      CHECK(none.logits.shape() == (Shape{B, 0, cfg.vocab_size}));
      for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
        CHECK(base.kept[l].to_ints() == other.kept[l].to_ints());
        CHECK(base.kept[l].to_ints() == none.kept[l].to_ints());
      }
      // The anchor's logits (predicting the first continuation token) see the context only.
      CHECK(base.logits.data().select(1, 0).to_vector() == other.logits.data().select(1, 0).to_vector());
      // The later continuation logits do change: the test can fail.
      CHECK(base.logits.data().select(1, m - 1).to_vector() != other.logits.data().select(1, m - 1).to_vector());
    }
  }
}

TEST_CASE("forward: a batch equals its sequences run one by one") {
  MambaConfig cfg = tiny_config(3);
  MambaLM model(cfg, 61, DType::F64);
  jitter(model, 62, 0.05);
  const int64_t B = 3, c = 10, m = 4, L = c + m;
  const Tensor ids = random_ids(B, L, cfg.vocab_size, 63);
  NoGradGuard ng;
  for (SimbaCriterion crit : kAllCriteria) {
    INFO("criterion " << std::string(criterion_name(crit)));
    SimbaOptions opt = options("keep=0.2");
    opt.criterion = crit;
    const SimbaResult all = simba_forward(model, ids, c, opt, true);
    double worst = 0;
    for (int64_t b = 0; b < B; ++b) {
      const SimbaResult one = simba_forward(model, ids.narrow(0, b, 1).contiguous(), c, opt, true);
      for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
        CHECK(row_ints(all.kept[l], b) == row_ints(one.kept[l], 0));
        const std::vector<double> sa = row(all.scores[l], b), so = row(one.scores[l], 0);
        for (size_t i = 0; i < sa.size(); ++i) worst = std::max(worst, std::fabs(sa[i] - so[i]) / (1 + std::fabs(so[i])));
      }
      const std::vector<double> la = all.logits.data().select(0, b).to_vector(), lo = one.logits.data().to_vector();
      for (size_t i = 0; i < la.size(); ++i) worst = std::max(worst, std::fabs(la[i] - lo[i]) / (1 + std::fabs(lo[i])));
    }
    MESSAGE(std::string(criterion_name(crit)) << ": batch vs one by one, max error " << worst);
    CHECK(worst <= 1e-12);
  }
}

TEST_CASE("forward: without autograd (residual updated in place) it equals the recorded forward bit for bit") {
  MambaConfig cfg = tiny_config(3);
  MambaLM model(cfg, 64, DType::F32);
  jitter(model, 65, 0.05);
  const int64_t B = 2, c = 12, m = 3;
  const Tensor ids = random_ids(B, c + m, cfg.vocab_size, 66);
  for (const char* spec : {"keep=0.25", "keep=0.5,schedule=uniform"}) {
    INFO(spec);
    const SimbaResult recorded = simba_forward(model, ids, c, options(spec));  // grad on: index_add copies
    REQUIRE(grad_enabled());
    NoGradGuard ng;
    const SimbaResult in_place = simba_forward(model, ids, c, options(spec));  // rows added into h itself
    CHECK(in_place.hidden.data().to_vector() == recorded.hidden.data().to_vector());
    CHECK(in_place.logits.data().to_vector() == recorded.logits.data().to_vector());
    for (size_t l = 0; l < recorded.kept.size(); ++l) CHECK(in_place.kept[l].to_ints() == recorded.kept[l].to_ints());
  }
}

TEST_CASE("continuation loss: position c+j−1 predicts token c+j; with c = 1 and keep=1 it is MambaLM::loss") {
  MambaConfig cfg = tiny_config(2);
  MambaLM model(cfg, 71, DType::F64);
  jitter(model, 72, 0.05);
  const int64_t B = 2, L = 9;
  const Tensor ids = random_ids(B, L, cfg.vocab_size, 73);
  NoGradGuard ng;
  const SimbaResult r = simba_forward(model, ids, 1, options("keep=1"));
  const double ours = continuation_loss(r, ids).item(), dense = model.loss(ids).item();
  MESSAGE("continuation loss " << ours << " vs MambaLM::loss " << dense);
  CHECK(std::fabs(ours - dense) <= 1e-12 * std::fabs(dense));
  // By hand for a pruned run: mean over (b, j) of lse(logits[b, j]) − logits[b, j, ids[b, c + j]].
  const int64_t c = 5, m = L - c;
  const SimbaResult p = simba_forward(model, ids, c, options("keep=0.5"));
  CHECK(continuation_targets(ids, c).to_ints() == ids.narrow(1, c, m).contiguous().to_ints());
  double sum_ce = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < m; ++j) {
      const std::vector<double> z = p.logits.data().select(0, b).select(0, j).to_vector();
      double mx = -INFINITY, se = 0;
      for (double v : z) mx = std::max(mx, v);
      for (double v : z) se += std::exp(v - mx);
      sum_ce += mx + std::log(se) - z[ids.at({b, c + j})];
    }
  CHECK(continuation_loss(p, ids).item() == doctest::Approx(sum_ce / (B * m)).epsilon(1e-12));
  const SimbaResult none = simba_forward(model, ids, L, options("keep=0.5"));
  CHECK(error_of([&] { continuation_loss(none, ids); }).find("continuation_loss: no continuation tokens") !=
        std::string::npos);
}

TEST_CASE("forward: bad arguments give clear errors") {
  MambaConfig cfg = tiny_config(3);
  MambaLM model(cfg, 81);
  const Tensor ids = random_ids(2, 8, cfg.vocab_size, 82);
  const SimbaOptions opt;
  CHECK(error_of([&] { simba_forward(model, ids, 9, opt); })
            .find("simba_forward: context 9 is longer than the sequence (8 tokens)") != std::string::npos);
  CHECK(error_of([&] { simba_forward(model, ids, 0, opt); })
            .find("simba_forward: context 0 must be >= 1: the anchor is the last context token") != std::string::npos);
  CHECK(error_of([&] { simba_forward(model, ids, -2, opt); }).find("context -2 must be >= 1") != std::string::npos);
  CHECK(error_of([&] { simba_forward(model, ids.to(DType::F32), 4, opt); })
            .find("expected int64 token ids (B, L)") != std::string::npos);
  CHECK(error_of([&] { simba_forward(model, ids, 4, options("schedule=custom,ratios=1:0.5")); })
            .find("schedule=custom gives 2 ratios, the model has 3 layers") != std::string::npos);
  // Fixed kept sets are checked.
  const SimbaResult r = simba_forward(model, ids, 6, options("schedule=custom,counts=6:4:3"));
  REQUIRE(r.counts == std::vector<int64_t>{6, 4, 3});
  std::vector<Tensor> k = r.kept;
  k[2] = Tensor::from_ints({2, 3}, {0, 1, 2, 0, 1, 2});
  CHECK(error_of([&] { simba_forward_kept(model, ids, 6, k); }).find("kept[2] row 0 lacks the anchor, position 5") !=
        std::string::npos);
  k = r.kept;
  std::vector<int64_t> v = k[1].to_ints();
  std::vector<int64_t> bad2 = k[2].to_ints();
  // Put into layer 2 a position layer 1 dropped.
  std::vector<int64_t> dropped;
  for (int64_t p = 0; p < 5; ++p)
    if (std::find(v.begin(), v.begin() + 4, p) == v.begin() + 4) dropped.push_back(p);
  REQUIRE(!dropped.empty());
  bad2[0] = dropped[0];
  std::sort(bad2.begin(), bad2.begin() + 3);
  k[2] = Tensor::from_ints({2, 3}, bad2);
  CHECK(error_of([&] { simba_forward_kept(model, ids, 6, k); })
            .find("kept[2] row 0 holds position " + std::to_string(dropped[0]) + ", which layer 1 had already pruned") !=
        std::string::npos);
  k = r.kept;
  k[0] = r.kept[1];
  CHECK(error_of([&] { simba_forward_kept(model, ids, 6, k); })
            .find("kept[0] has 4 tokens; layer 0 processes the whole context of 6") != std::string::npos);
  k.pop_back();
  CHECK(error_of([&] { simba_forward_kept(model, ids, 6, k); }).find("2 kept sets for a model of 3 layers") !=
        std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// FLOPs

TEST_CASE("flops: the formulas against a hand count on a tiny config") {
  MambaConfig cfg;
  cfg.vocab_size = 3;
  cfg.hidden_size = 2;  // D
  cfg.expand = 2;       // Di = 4
  cfg.state_size = 1;   // N
  cfg.time_step_rank = 1;
  cfg.conv_kernel = 2;
  cfg.num_hidden_layers = 1;
  cfg.use_bias = false;
  cfg.use_conv_bias = true;
  // One sequence of T = 3 tokens, logits at H = 1 position, no score:
  //   norm 3·(4·2+4) = 36; in_proj 2·3·2·8 = 96; conv 2·3·4·2 + 3·4 = 60; SiLU 5·3·4 = 60;
  //   x_proj 2·3·4·3 = 72; dt_proj 2·3·1·4 + 3·4 = 36; softplus 2·3·4 = 24; A 2·4·1 = 8;
  //   scan 3·4·(7+7) = 168; out_proj 2·3·4·2 = 48; residual 3·2 = 6  -> 614
  //   head: norm_f 12 + 2·1·2·3 = 24                                     -> 638
  const ForwardFlops f = dense_forward_flops(cfg, 1, 3, 1);
  REQUIRE(f.layers.size() == 1);
  const LayerFlops& l = f.layers[0];
  CHECK(l.norm == 36);
  CHECK(l.in_proj == 96);
  CHECK(l.conv == 60);
  CHECK(l.conv_act == 60);
  CHECK(l.x_proj == 72);
  CHECK(l.dt_proj == 36);
  CHECK(l.softplus == 24);
  CHECK(l.a == 8);
  CHECK(l.scan == 168);
  CHECK(l.out_proj == 48);
  CHECK(l.residual == 6);
  CHECK(l.score == 0);
  CHECK(l.total() == 614);
  CHECK(f.head == 24);
  CHECK(f.total() == 638);
  // Two sequences: everything doubles except A = −exp(A_log), once per call.
  CHECK(dense_forward_flops(cfg, 2, 3, 1).total() == 2 * 638 - 8);
  // Biases: in_proj +2Di, out_proj +D per token.
  cfg.use_bias = true;
  CHECK(dense_forward_flops(cfg, 1, 3, 1).layers[0].total() == 614 + 3 * 8 + 3 * 2);
  cfg.use_bias = false;
  // Scores of n = 3 tokens: cumsum 2·4 = 8, C_T·B_t 3·1 = 3, 4·3·4·1 = 48, 2·3·4 = 24 -> 83;
  // l2 adds 2·3·4 + 3 = 27; norm 2·3·2 + 3 = 15; clip 3·2 = 6.
  CHECK(score_flops(SimbaCriterion::Simba, 3, cfg) == 83);
  CHECK(score_flops(SimbaCriterion::SimbaAbs, 3, cfg) == 83);
  CHECK(score_flops(SimbaCriterion::SimbaL2, 3, cfg) == 110);
  CHECK(score_flops(SimbaCriterion::Norm, 3, cfg) == 15);
  CHECK(score_flops(SimbaCriterion::Clip, 3, cfg) == 6);
  CHECK(score_flops(SimbaCriterion::Random, 3, cfg) == 0);
  CHECK(score_flops(SimbaCriterion::Stride, 3, cfg) == 0);
  CHECK(layer_flops(cfg, 2, 3, 3, SimbaCriterion::Simba).score == 2 * 83);
}

TEST_CASE("flops: a Simba run reports the formula for its own token counts, below the dense count") {
  MambaConfig cfg = tiny_config(4);
  MambaLM model(cfg, 91);
  const int64_t B = 2, c = 20, m = 5;
  const Tensor ids = random_ids(B, c + m, cfg.vocab_size, 92);
  NoGradGuard ng;
  const SimbaResult r = simba_forward(model, ids, c, options("keep=0.1"), true);
  REQUIRE(r.counts == std::vector<int64_t>{20, 14, 8, 2});
  const ForwardFlops expect = forward_flops(cfg, B, {25, 19, 13, 7}, {20, 14, 8, 0}, SimbaCriterion::Simba, m);
  CHECK(r.flops.total() == expect.total());
  for (size_t l = 0; l < 4; ++l) CHECK(r.flops.layers[l].total() == expect.layers[l].total());
  const SimbaResult dense = simba_forward(model, ids, c, options("keep=1"));
  CHECK(dense.flops.total() == dense_forward_flops(cfg, B, c + m, m).total());
  CHECK(r.flops.total() < dense.flops.total());
}

TEST_CASE("flops: pruned_forward_flops follows simba_forward's rule; keep_for_flops_ratio finds the nearest step") {
  MambaConfig cfg = tiny_config(4);
  // Scored where the next layer keeps fewer, and only when the sets come from scores.
  CHECK(pruned_forward_flops(cfg, 2, {20, 14, 14, 2}, 5, true, SimbaCriterion::Simba).total() ==
        forward_flops(cfg, 2, {25, 19, 19, 7}, {20, 0, 14, 0}, SimbaCriterion::Simba, 5).total());
  CHECK(pruned_forward_flops(cfg, 2, {20, 14, 14, 2}, 5, false, SimbaCriterion::Simba).total() ==
        forward_flops(cfg, 2, {25, 19, 19, 7}, {}, SimbaCriterion::Simba, 5).total());

  const int64_t c = 400, m = 16;
  const double dense = static_cast<double>(dense_forward_flops(cfg, 1, c + m, m).total());
  auto ratio_at = [&](SimbaOptions o, double keep) {
    o.keep = keep;
    return static_cast<double>(
               pruned_forward_flops(cfg, 1, simba_token_counts(o, 4, c), m, true, o.criterion).total()) /
           dense;
  };
  for (const char* text : {"schedule=linear", "schedule=uniform", "schedule=inverted", "schedule=linear,start=1",
                           "schedule=linear,criterion=random", "schedule=uniform,criterion=simba-l2"}) {
    INFO(text);
    const SimbaOptions o = options(text);
    const double floor = ratio_at(o, 1e-9);  // one token a pruned layer
    REQUIRE(floor < 0.9);
    for (double frac : {0.2, 0.5, 0.8}) {
      const double target = floor + frac * (1 - floor);
      INFO("target " << target);
      const double keep = keep_for_flops_ratio(cfg, o, c, m, target);
      REQUIRE(keep > 0);
      REQUIRE(keep <= 1);
      const double r = ratio_at(o, keep);
      // Nearest step: no keep on a fine grid gets closer to the target.
      double best = 1e9;
      for (int i = 1; i <= 4000; ++i) best = std::min(best, std::fabs(ratio_at(o, i / 4000.0) - target));
      CHECK(std::fabs(r - target) <= best + 1e-12);
      CHECK(std::fabs(r - target) < 0.02);
    }
  }
  // Errors: a target out of range, a custom schedule, a target below one token a layer.
  CHECK(error_of([&] { keep_for_flops_ratio(cfg, options("keep=0.1"), c, m, 1.5); }).find("expected a number in (0, 1]") !=
        std::string::npos);
  CHECK(error_of([&] { keep_for_flops_ratio(cfg, options("schedule=custom,counts=400:200:100:50"), c, m, 0.5); })
            .find("schedule=custom") != std::string::npos);
  CHECK(error_of([&] { keep_for_flops_ratio(cfg, options("schedule=linear"), c, m, 0.5); }).find("below what") !=
        std::string::npos);
}
